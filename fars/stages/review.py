"""Review: score the written paper on the configured form through structured output."""

from __future__ import annotations

from fars.config import FarsConfig
from fars.stages.base import StageContext, StageFn, StageOutput, register_stage
from review.reviewer import review_paper


@register_stage("review")
def review(cfg: FarsConfig) -> StageFn:
    """Factory of the Review stage."""

    async def run(ctx: StageContext) -> StageOutput:
        paper = (ctx.run_dir / ctx.outputs["writing"]["markdown"]).read_text(encoding="utf-8")
        result = await review_paper(ctx.llm, paper, form=cfg.reviewer.form, max_chars=cfg.reviewer.max_paper_chars)
        ctx.save_artifact("review", "review.json", result.model_dump_json(indent=1))
        return result.model_dump()

    return run
