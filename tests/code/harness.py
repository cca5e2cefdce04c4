"""One project's search over programs in process, with the Experiment stage's own sandboxed runner or a stand-in.

The nodes run with the flags of the plan's method condition (``method``), the baseline with the baseline's, as
the stage builds them (``fars.stages.experiment.condition_args``).
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
from pathlib import Path
from typing import Any

from experiments.metrics import Metrics
from experiments.spec import TemplateSpec, load_template
from fars.code.search import CodeSearch, RunCode, SearchOutcome
from fars.config import CodeSearchConfig
from fars.executor.runner import Runner
from fars.run.contracts import CodeNode, Condition
from fars.stages.experiment import base_config, code_runner, condition_args
from tests.conftest import compose

BASELINE = Condition(name="baseline", role="baseline")
_loaded = itertools.count()


def in_process(spec: TemplateSpec, flags: list[str]) -> RunCode:
    """A stand-in for the stage's sandboxed runner on the ``simulated`` template: the copy's entry point is
    imported and its ``main`` run in this process with ``flags`` (as the stage passes them), one seed after
    another; a failure comes back as its error text, as the runner reports a failed job."""

    async def run_code(
        src: Path, out: Path, seeds: list[int], steps: int, timeout: float | None
    ) -> list[Metrics] | str:
        runs = []
        for seed in seeds:
            loaded = importlib.util.spec_from_file_location(f"fars_test_copy_{next(_loaded)}", src / spec.entry)
            assert loaded is not None and loaded.loader is not None
            module = importlib.util.module_from_spec(loaded)
            argv = ["--seed", str(seed), "--steps", str(steps), *flags, "--out_dir", str(out / f"seed{seed}")]
            try:
                loaded.loader.exec_module(module)
                runs.append(Metrics.model_validate(module.main(argv)))
            except Exception as exc:  # the model's code may raise anything; the runner reports it as the job's error
                return f"{type(exc).__name__}: {exc}"
        return runs

    return run_code


def bare_search(template: str, **overrides: Any) -> CodeSearch:
    """A search on ``template`` with no model and no runner, for reading the prompts it writes."""
    settings: dict[str, Any] = {
        "llm": None, "spec": load_template(template), "hypothesis": "averaging the weights helps", "method": "adam",
        "baseline": [0.88, 0.89], "seeds": [0, 1], "steps": 500, "settings": CodeSearchConfig(), "folder": Path("."),
        "run_dir": Path("."), "run_code": None, "remember": lambda node, reply: None, "known": {},
    }  # fmt: skip
    return CodeSearch(**{**settings, **overrides})


def search_once(
    tmp_path: Path,
    template: str,
    transcript: dict[str, list[str]],
    seeds: list[int],
    *,
    method: Condition = BASELINE,
    parts: list[str] | None = None,
    sandbox: bool = True,
    steps: int | None = None,
    **settings: Any,
) -> tuple[SearchOutcome, list[CodeNode]]:
    """The search on ``template`` (at its smoke scale unless ``steps``), the scripted model answering from
    ``transcript``; the outcome and every node recorded, in order. The baseline runs first, as the stage runs the
    plan first. ``method``: the condition whose settings the nodes run with (the baseline's: as before the
    search ran nodes with the method's). ``sandbox`` False: the in-process stand-in (simulated template only)."""
    cfg = compose("llm=scripted", "tracker=disabled", "experiment.seeds=2")
    cfg.llm.scripted.routes = transcript
    from fars.llm.client import LLMClient

    spec = load_template(template)
    base = base_config(spec, {}, "smoke")
    project = tmp_path / "p000"  # as the run makes a project's folder: readable to the sandbox's own user
    project.parent.mkdir(parents=True, exist_ok=True)
    project.mkdir(mode=0o755)
    (project / "ds_config.json").write_text("{}")
    baseline_flags, method_flags = condition_args(spec, base, BASELINE), condition_args(spec, base, method)
    if sandbox:
        runner = Runner(cfg.experiment, cfg.executor)
        ds_config = project / "ds_config.json"
        run_baseline = code_runner(runner, spec, baseline_flags, ds_config, cfg.sandbox, "cpu")
        run_code = code_runner(runner, spec, method_flags, ds_config, cfg.sandbox, "cpu")
    else:
        run_baseline, run_code = in_process(spec, baseline_flags), in_process(spec, method_flags)
    recorded: list[CodeNode] = []
    client = LLMClient(cfg.llm)

    async def go() -> Any:
        length = steps or spec.scale("smoke").steps
        baseline = await run_baseline(spec.folder, project / "baseline", seeds, length, None)
        assert not isinstance(baseline, str), baseline
        search = CodeSearch(
            llm=client, spec=spec, hypothesis="h", method="the plan's method",
            baseline=[m.final[spec.metric] for m in baseline], seeds=seeds, steps=length,
            settings=CodeSearchConfig(**settings), folder=project / "code", run_dir=tmp_path,
            run_code=run_code, remember=lambda node, reply: recorded.append(node), known={},
            method_settings=None if method is BASELINE else {**method.knobs, **method.components}, parts=parts,
        )  # fmt: skip
        return await search.search()

    try:
        return asyncio.run(go()), recorded
    finally:
        client.close()
