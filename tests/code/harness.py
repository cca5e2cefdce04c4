"""One project's search over programs in process, with the Experiment stage's own sandboxed runner."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from experiments.spec import load_template
from fars.code.search import CodeSearch, SearchOutcome
from fars.config import CodeSearchConfig
from fars.executor.runner import Runner
from fars.run.contracts import CodeNode, Condition
from fars.stages.experiment import base_config, code_runner, condition_args
from tests.conftest import compose


def search_once(
    tmp_path: Path, template: str, transcript: dict[str, list[str]], seeds: list[int], **settings: Any
) -> tuple[SearchOutcome, list[CodeNode]]:
    """The search on ``template`` at its smoke scale, the scripted model answering from ``transcript``; the
    outcome and every node recorded, in order. The baseline runs first, as the stage runs the plan first."""
    cfg = compose("llm=scripted", "tracker=disabled", "experiment.seeds=2")
    cfg.llm.scripted.routes = transcript
    from fars.llm.client import LLMClient

    spec = load_template(template)
    base = base_config(spec, {}, "smoke")
    defaults = condition_args(spec, base, Condition(name="baseline", role="baseline"))
    project = tmp_path / "p000"  # as the run makes a project's folder: readable to the sandbox's own user
    project.mkdir(mode=0o755)
    (project / "ds_config.json").write_text("{}")
    runner = Runner(cfg.experiment, cfg.executor)
    run_code = code_runner(runner, spec, defaults, project / "ds_config.json", cfg.sandbox, "cpu")
    recorded: list[CodeNode] = []
    client = LLMClient(cfg.llm)

    async def go() -> Any:
        steps = spec.scale("smoke").steps
        baseline = await run_code(spec.folder, project / "baseline", seeds, steps, None)
        assert not isinstance(baseline, str), baseline
        search = CodeSearch(
            llm=client, spec=spec, hypothesis="h", method="the plan's method",
            baseline=[m.final[spec.metric] for m in baseline], seeds=seeds, steps=steps,
            settings=CodeSearchConfig(**settings), folder=project / "code", run_dir=tmp_path,
            run_code=run_code, remember=lambda node, reply: recorded.append(node), known={},
        )  # fmt: skip
        return await search.search()

    try:
        return asyncio.run(go()), recorded
    finally:
        client.close()
