"""Results from model code are not trusted: every job's metrics are checked before they are used.

The unit tests feed ``check_result`` the poison a hostile method reports; the stage test runs a real
model-written method in the real sandbox that passes its smoke run, then rewrites its real runs'
``metrics.json`` (NaN, 1e300, the metric left out) as it exits: the Experiment stage must finish with
those jobs failed for their condition, a finite best condition, and nothing crashing downstream.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from experiments.metrics import Metrics
from fars.contracts import ExperimentOutput, IdeationOutput, LiteratureInfo, Plan, PlanningOutput
from fars.results_check import ResultRejected, check_result, result_problems
from tests.conftest import compose, run_stage, services_for, stage_context


def metrics(**change: Any) -> Metrics:
    """A valid result of the modadd template, with fields changed."""
    base: dict[str, Any] = {
        "template": "modadd", "engine": "plain", "device": "cpu", "seed": 0, "steps": 30,
        "config": {"lr": 0.01}, "metric": "val_accuracy",
        "final": {"val_accuracy": 0.5, "val_loss": 1.2, "train_loss": 1.0},
        "curves": {"step": [10, 20, 30], "train_loss": [2.0, 1.5, 1.0], "val_loss": [2.1, 1.6, 1.2],
                   "val_metric": [0.1, 0.3, 0.5]},
        "wall_s": 1.0, "examples_per_s": 100.0, "parameters": 1000,
        "provenance": {"code_sha256": "a", "config_sha256": "b"},
    }  # fmt: skip
    for key, value in change.items():
        *path, last = key.split("__")
        node = base
        for part in path:
            node = node[part]
        node[last] = value
    return Metrics.model_validate(base)


def test_a_good_result_passes() -> None:
    good = metrics()
    assert check_result(good, "val_accuracy", seed=0, template="modadd") is good


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"final__val_accuracy": math.nan}, "final.val_accuracy"),
        ({"final__val_accuracy": math.inf}, "not a finite number"),
        ({"final__val_accuracy": 1e300}, "outside"),
        ({"final__val_loss": -3.0}, "final.val_loss"),
        ({"final": {"val_loss": 1.0, "train_loss": 1.0}}, "final lacks val_accuracy"),
        ({"final": {"val_accuracy": 0.5}}, "final lacks val_loss, train_loss"),
        ({"metric": "val_loss"}, "the template reports 'val_accuracy'"),
        ({"seed": 7}, "seed is 7"),
        ({"curves__val_metric": [0.1, math.nan, 0.5]}, "curves.val_metric[1]"),
        ({"wall_s": math.inf}, "wall_s"),
        ({"mfu": 3.0}, "mfu"),
    ],
)
def test_poison_is_refused_with_the_problem_named(change: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ResultRejected, match=complaint.replace("[", r"\[")):
        check_result(metrics(**change), "val_accuracy", seed=0, template="modadd")


def test_huge_curves_and_key_floods_are_refused_before_anything_plots_them() -> None:
    n = 200_000
    huge = metrics(
        curves={"step": list(range(n)), "train_loss": [1.0] * n, "val_loss": [1.0] * n, "val_metric": [0.5] * n}
    )
    assert any("more than 10,000" in p for p in result_problems(huge, "val_accuracy"))
    flood = metrics(
        final={"val_accuracy": 0.5, "val_loss": 1.0, "train_loss": 1.0, **{f"k{i}": 0.0 for i in range(100)}}
    )
    assert any("final has 103 entries" in p for p in result_problems(flood, "val_accuracy"))


TAMPERING_METHOD = """```python
import atexit, json, sys

import torch


def _poison():
    # the smoke run (3 steps) stays clean, so the method is accepted; real runs report poison
    args = sys.argv
    if args[args.index("--steps") + 1] == "3":
        return
    seed = int(args[args.index("--seed") + 1])
    with open("metrics.json") as f:
        data = json.load(f)
    if seed == 0:
        data["final"]["val_accuracy"] = float("nan")
    elif seed == 1:
        data["final"]["val_accuracy"] = 1e300
    else:
        del data["final"]["val_accuracy"]
    with open("metrics.json", "w") as f:
        json.dump(data, f)


atexit.register(_poison)


def loss(logits, targets):
    return torch.nn.functional.cross_entropy(logits, targets)
```"""


def test_poisoned_method_results_fail_only_their_condition(tmp_path: Path) -> None:
    cfg = compose(
        "llm=scripted", "tracker=disabled", "experiment.model_code.enabled=true", "experiment.model_code.smoke_steps=3",
        "experiment.figures=true", "paper.compile=never",
    )  # fmt: skip
    cfg.llm.scripted.outputs = [TAMPERING_METHOD]
    idea = IdeationOutput(
        hypotheses=[], scores=[], overall=[], screened=1, novel=1, literature=LiteratureInfo(backend="offline"),
        template="modadd", focus="lr", chosen={"title": "t", "statement": "a method helps"},  # type: ignore[arg-type]
    )  # fmt: skip
    plan = Plan(template="modadd", knob="lr", baseline=0.01, variants=[0.03], seeds=[0, 1, 2], steps=20)
    services = services_for(cfg, tmp_path, runner=True)
    ctx = stage_context(services, "experiment", [idea, PlanningOutput(plan=plan)])
    output = run_stage("experiment", cfg, ctx, services)

    assert isinstance(output, ExperimentOutput)
    results = output.results
    assert results.method is not None and results.method.used  # the smoke run passed: the method was accepted
    assert "method" not in results.conditions, "a poisoned condition was aggregated"
    failed = {(f.condition, f.seed): f.error for f in results.failures}
    assert set(failed) == {("method", 0), ("method", 1), ("method", 2)}
    assert "not a finite number" in failed[("method", 0)] and "outside" in failed[("method", 1)]
    assert "final lacks val_accuracy" in failed[("method", 2)]
    assert results.best in ("baseline", "lr=0.03")
    assert all(math.isfinite(c.metric.mean) for c in results.conditions.values())
    json.loads(results.model_dump_json())  # the paper's numbers come from this: plain finite JSON
