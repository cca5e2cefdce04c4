"""The modular-addition template trains on CPU, its loss falls, and metrics.json validates."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from experiments.metrics import read_metrics
from experiments.spec import Knob, available_templates, load_template


def test_template_trains_and_writes_valid_metrics(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "experiments.modadd.train",
        "--out_dir",
        str(tmp_path),
        "--steps",
        "120",
        "--seed",
        "3",
    ]
    subprocess.run(cmd, check=True, timeout=300, capture_output=True)
    metrics = read_metrics(tmp_path / "metrics.json")
    assert metrics.template == "modadd" and metrics.engine == "plain" and metrics.seed == 3
    assert metrics.curves.train_loss[-1] < 0.75 * metrics.curves.train_loss[0]  # it learns
    assert len(metrics.curves.step) == len(metrics.curves.val_metric) == 20
    assert 0.0 <= metrics.final["val_accuracy"] <= 1.0
    assert metrics.examples_per_s > 0 and metrics.parameters > 1000
    assert len(metrics.provenance.code_sha256) == 64


def test_knobs_coerce_model_values_into_range() -> None:
    lr = Knob(name="lr", kind="float", default=0.01, low=1e-5, high=0.3)
    assert lr.coerce("0.003") == 0.003
    assert lr.coerce(5) == 0.3
    assert lr.coerce("fast") == 0.01
    assert lr.coerce("nan") == 0.01
    assert lr.coerce(0.009000000000000001) == 0.009
    width = Knob(name="hidden", kind="int", default=128, low=8, high=2048)
    assert width.coerce("300.7") == 301
    act = Knob(name="activation", kind="choice", default="relu", choices=["relu", "gelu"])
    assert act.coerce(" GELU ") == "gelu" and act.coerce("swish") == "relu"


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({"name": "lr rate", "kind": "float", "default": 0.1}, "identifier"),
        ({"name": "lr", "kind": "double", "default": 0.1}, "kind must be one of"),
        ({"name": "act", "kind": "choice", "default": "elu", "choices": ["relu"]}, "not among its choices"),
        ({"name": "lr", "kind": "float", "default": 0.1, "low": 1.0, "high": 0.5}, "above high"),
    ],
)
def test_a_malformed_knob_is_refused_when_the_template_is_declared(fields: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        Knob(**fields)


def test_unknown_template_names_the_known_ones() -> None:
    assert "modadd" in available_templates()
    with pytest.raises(KeyError, match="available"):
        load_template("nope")
