"""The Experiment stage's parts: the Hydra node as DeepSpeed JSON, aggregation, figures, the sandbox for model code.

The search over programs (model-written edits of the template) is tested in tests/code/."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from experiments.spec import load_template
from fars.config import ConfigError, FarsConfig, validate_config
from fars.executor.runner import Runner
from fars.paper.figures import learning_curve_figures
from fars.run.contracts import Condition
from fars.stages.experiment import aggregate, base_config, deepspeed_json
from tests.conftest import compose as composed


def runner_for(cfg: FarsConfig) -> Runner:
    """The run's job runner for this config."""
    return Runner(cfg.experiment, cfg.executor)


def test_the_hydra_node_becomes_the_deepspeed_json() -> None:
    cfg = composed("experiment=gpt_gpu")
    ds = deepspeed_json(cfg.experiment.deepspeed)
    assert ds["zero_optimization"]["stage"] == 2 and ds["bf16"] == {"enabled": True}
    assert ds["gradient_clipping"] == 1.0 and ds["gradient_accumulation_steps"] == 1
    assert "train_micro_batch_size_per_gpu" not in ds  # null: derived from the template's batch
    assert cfg.experiment.template_overrides["n_layer"] == 12 and cfg.experiment.device == "cuda"
    assert (
        deepspeed_json(composed("experiment=deepspeed_zero3").experiment.deepspeed)["zero_optimization"]["stage"] == 3
    )


def test_bad_numerics_are_refused_with_clear_messages() -> None:
    with pytest.raises(ConfigError, match="fp16 is not supported on CPU"):
        validate_config({"experiment": {"deepspeed": {"fp16": {"enabled": True}}}})
    with pytest.raises(ConfigError, match="needs engine=deepspeed"):
        validate_config({"experiment": {"engine": "ddp", "deepspeed": {"zero_optimization": {"stage": 2}}}})
    with pytest.raises(ConfigError, match="enable at most one"):
        validate_config(
            {"experiment": {"device": "cuda", "deepspeed": {"bf16": {"enabled": True}, "fp16": {"enabled": True}}}}
        )
    validate_config({"experiment": {"device": "cuda", "engine": "deepspeed", "deepspeed": {"fp16": {"enabled": True}}}})


def test_template_overrides_are_checked_against_the_knobs() -> None:
    gpt = load_template("chargpt")
    assert base_config(gpt, {"n_layer": 12, "n_embd": 768})["n_layer"] == 12
    with pytest.raises(Exception, match="no knob 'layers'"):
        base_config(gpt, {"layers": 3})


def test_aggregation_and_figures_from_real_runs(tmp_path: Path) -> None:
    cfg = validate_config({"executor": {"slots": 2}})
    runner = runner_for(cfg)
    module = str(load_template("modadd").entry_path)

    async def runs() -> dict[str, list[Any]]:
        jobs = {
            (name, seed): runner.train(
                module, ["--steps", "20", "--seed", str(seed), "--lr", lr], tmp_path / f"{name}{seed}"
            )
            for name, lr in (("baseline", "0.01"), ("lr=0.001", "0.001"))
            for seed in (0, 1)
        }
        done = dict(zip(jobs, await asyncio.gather(*jobs.values()), strict=True))
        return {name: [m for (n, _), m in done.items() if n == name] for name in ("baseline", "lr=0.001")}

    per = asyncio.run(runs())
    assert runner.pool is not None and runner.pool.book.free == 2 and runner.pool.stats.granted == 4
    conditions = {
        "baseline": Condition(name="baseline", role="baseline"),
        "lr=0.001": Condition(name="lr=0.001", role="variant", knobs={"lr": 0.001}),
    }
    table, best = aggregate(per, conditions, "val_accuracy", True)
    assert table["lr=0.001"].verdict in ("better", "worse", "no significant difference")
    assert table["lr=0.001"].p_adjusted == table["lr=0.001"].p_vs_baseline  # one comparison: Holm changes nothing
    assert table["baseline"].metric.n == 2 and table["baseline"].p_vs_baseline is None
    p = table["lr=0.001"].p_vs_baseline
    assert p is not None and 0.0 <= p <= 1.0 and best in table
    figures = learning_curve_figures(per, "val_accuracy", tmp_path / "figures", tmp_path)
    assert len(figures) == 2
    for fig in figures:
        assert fig.png is not None and fig.pdf is not None
        assert (tmp_path / fig.png).read_bytes()[:4] == b"\x89PNG"
        assert (tmp_path / fig.pdf).read_bytes()[:4] == b"%PDF" and "seeds" in fig.caption
    # no LaTeX compile ahead: PNG only (the PDF copies cost ~40% of the drawing)
    raster = learning_curve_figures(per, "val_accuracy", tmp_path / "png-only", tmp_path, vector=False)
    assert [f.pdf for f in raster] == [None, None] and not list((tmp_path / "png-only").glob("*.pdf"))


HOSTILE_METHOD = """
import os
import socket
import torch

# what a careless or hostile model-written method might try, at import time
assert not os.environ.get("OPENAI_API_KEY"), "a secret leaked into the sandbox"
probe = socket.socket()
probe.settimeout(2)
try:
    probe.connect(("127.0.0.1", int(os.environ.get("FARS_TEST_PORT", "1"))))
except OSError:
    pass
else:
    raise RuntimeError("the sandbox reached the host network")
try:
    open("/etc/fars-sandbox-escape", "w").write("x")
except OSError:
    pass
else:
    raise RuntimeError("the sandbox wrote outside its folder")


def loss(logits, targets):
    return torch.nn.functional.cross_entropy(logits, targets, label_smoothing=0.1)
"""


def test_model_written_code_trains_only_inside_the_sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-must-not-reach-the-sandbox")
    method = tmp_path / "method" / "method.py"
    method.parent.mkdir()
    method.write_text(HOSTILE_METHOD)
    cfg = validate_config({})
    out = tmp_path / "runs" / "method-seed0"
    args = ["--steps", "3", "--eval_every", "3", "--method", str(method)]
    metrics = asyncio.run(
        runner_for(cfg).train(
            "experiments.modadd.train", args, out, ranks=1, sandbox=cfg.sandbox, readable=(method.parent,)
        )
    )
    listener.close()
    assert metrics.steps == 3 and metrics.method is not None
    record = json.loads((out.parent / "method-seed0.sandbox.json").read_text())
    assert record["exit_code"] == 0 and record["backend"] in ("bwrap", "unshare", "rlimits")
    assert not Path("/etc/fars-sandbox-escape").exists()
