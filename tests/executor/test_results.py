"""Results from model code are not trusted: every job's metrics are checked before they are used.

The unit tests feed ``check_result`` the poison a hostile method reports; the stage test runs a real
model-written method in the real sandbox that passes its smoke run, then rewrites its real runs'
``metrics.json`` (NaN, 1e300, the metric left out) as it exits: the Experiment stage must finish with
those jobs failed for their condition, a finite best condition, and nothing crashing downstream.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from experiments.metrics import Metrics
from fars.executor.launch import JobFailed
from fars.executor.results import ResultRejected, accept_metrics, check_result, read_metrics, result_problems


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


def test_a_result_without_losses_is_fine() -> None:
    """Policy-gradient and inference templates report no losses: only the template's metric is required."""
    rl = metrics(
        final={"val_accuracy": 0.5}, curves={"step": [1, 2], "train_loss": [], "val_loss": [], "val_metric": [0.1, 0.5]}
    )
    assert result_problems(rl, "val_accuracy") == []


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


def test_one_acceptance_reads_validates_and_checks_and_its_refusal_is_a_failed_job(tmp_path: Path) -> None:
    """``accept_metrics`` is the one door for a job's metrics.json: what it refuses is a ``JobFailed`` like any
    failed job, whether the file is missing, not metrics, or poison."""
    good = metrics()
    (tmp_path / "metrics.json").write_text(good.model_dump_json())
    assert accept_metrics(tmp_path, "val_accuracy", seed=0) == good
    assert accept_metrics(tmp_path) == good  # the result's own metric when none is named
    with pytest.raises(ResultRejected, match="seed is 0, the job ran seed 3") as caught:
        accept_metrics(tmp_path, "val_accuracy", seed=3)
    assert isinstance(caught.value, JobFailed)
    (tmp_path / "metrics.json").write_text('{"template": "modadd"')  # a kill mid-write
    with pytest.raises(ResultRejected, match="is not valid metrics"):
        read_metrics(tmp_path)
    (tmp_path / "metrics.json").unlink()
    with pytest.raises(ResultRejected, match=r"wrote no metrics.json"):
        accept_metrics(tmp_path, "val_accuracy")
    poisoned = metrics(final__val_accuracy=1e300)
    (tmp_path / "metrics.json").write_text(poisoned.model_dump_json())
    with pytest.raises(ResultRejected, match=r"final.val_accuracy"):
        accept_metrics(tmp_path, "val_accuracy", rewrite=True)
    assert read_metrics(tmp_path) == poisoned  # rewritten by the harness, still refused


TAMPERING_METHOD = """method.py
```python
import atexit, json, sys

import torch


def _poison():
    # the smoke run stays clean, so the node goes on to its real runs; those report poison
    out = sys.argv[sys.argv.index("--out_dir") + 1]
    if "/smoke/" in out:
        return
    seed = int(sys.argv[sys.argv.index("--seed") + 1])
    with open(out + "/metrics.json") as f:
        data = json.load(f)
    if seed == 0:
        data["final"]["val_accuracy"] = float("nan")
    elif seed == 1:
        data["final"]["val_accuracy"] = 1e300
    else:
        del data["final"]["val_accuracy"]
    with open(out + "/metrics.json", "w") as f:
        json.dump(data, f)


atexit.register(_poison)


def loss(logits, targets):
    return torch.nn.functional.cross_entropy(logits, targets)
```"""


def test_poisoned_results_of_model_code_make_its_node_buggy_and_are_never_aggregated(tmp_path: Path) -> None:
    """Model code that poisons its own metrics.json after a clean smoke run: each seed's result refused."""
    from tests.code.harness import search_once

    outcome, recorded = search_once(
        tmp_path, "modadd", {"version n0)": [TAMPERING_METHOD]}, [0, 1, 2], drafts=1, max_nodes=1, improve_steps=0
    )
    (node,) = recorded
    assert node.edits == ["method.py: whole file"] and node.verdict == "buggy"
    assert "a run over the seeds failed" in (node.error or "") and "ResultRejected" in (node.error or "")
    assert outcome.winner_runs == [] and outcome.summary.winner is None  # nothing of it reaches the table
