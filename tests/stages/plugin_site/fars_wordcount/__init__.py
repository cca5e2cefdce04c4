"""A stage from outside FARS, found through the ``fars.stages`` entry point: it counts a paper's words.

It consumes the Writing stage's contract and produces its own, so ``pipeline.stages`` may place it
between writing and review; its settings come from ``pipeline.stage_options.wordcount``.
"""

from __future__ import annotations

from typing import Any

from fars.run.contracts import StageOutput, WritingOutput, register_contract
from fars.stages.base import StageContext, StageFn, register_stage


@register_contract("wordcount", version=1)
class WordCount(StageOutput):
    """How long the written paper is."""

    words: int
    minimum: int
    long_enough: bool


@register_stage("wordcount", produces=WordCount, consumes=(WritingOutput,))
def wordcount(settings: dict[str, Any], services: Any) -> StageFn:
    """Factory: ``settings`` is this stage's entry of ``pipeline.stage_options``."""
    minimum = int(settings.get("minimum", 100))

    async def run(ctx: StageContext) -> WordCount:
        text = (ctx.run_dir / ctx.input(WritingOutput).markdown).read_text(encoding="utf-8")
        words = len(text.split())
        ctx.save_artifact("wordcount", "wordcount.txt", f"{words}\n")
        return WordCount(words=words, minimum=minimum, long_enough=words >= minimum)

    return run
