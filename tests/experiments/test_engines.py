"""Every template trains for a few steps under plain torch, DDP (2 gloo ranks) and DeepSpeed ZeRO-2 (2 ranks).

Each run must lower its loss and write a ``metrics.json`` that validates. Multi-rank runs go through the
executor's own command builder, so the launch path the stage uses is the one tested.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from experiments.chargpt.train import GPT
from experiments.engine import model_flops_utilization, peak_flops
from experiments.metrics import read_metrics
from experiments.spec import available_templates, load_template
from fars.executor.launch import build_command, job_env

# a few steps of a tiny model per template; enough for the loss to fall clearly
TINY = {
    "modadd": ["--steps", "100", "--eval_every", "10"],
    "chargpt": ["--steps", "40", "--eval_every", "10", "--n_embd", "32", "--block_size", "32", "--batch_size", "16"],
}


def train(template: str, out: Path, engine: str, ranks: int, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run a template's train.py through the executor's command builder and return the process."""
    args = [*TINY[template], "--engine", engine, "--out_dir", str(out), "--seed", "1", *extra]
    cmd = build_command(str(load_template(template).entry_path), args, ranks=ranks, launcher="torchrun")
    return subprocess.run(cmd, env=job_env(1), capture_output=True, text=True, timeout=600)


def check_learned(out: Path, template: str, engine: str, world: int) -> None:
    done = read_metrics(out / "metrics.json")
    assert (done.template, done.engine, done.world_size) == (template, engine, world)
    assert done.curves.train_loss[-1] < 0.9 * done.curves.train_loss[0], done.curves.train_loss
    assert done.tokens_per_s > 0 and done.examples_per_s > 0 and done.mfu is None  # no MFU on CPU
    assert len(done.provenance.code_sha256) == 64 and any(k.endswith("engine.py") for k in done.provenance.files)


def test_every_template_is_covered() -> None:
    """Every research template is trained here under each engine, or has a test module of its own (the newer
    templates: their own engines' runs and what they must learn, e.g. returns rather than losses)."""
    research = set(available_templates()) - {"simulated"}  # "simulated" sleeps instead of training (benchmarks)
    own = {t for t in research if (Path(__file__).parent / f"test_{t}.py").is_file()}
    assert set(TINY) <= research and research == set(TINY) | own, research - set(TINY) - own


@pytest.mark.parametrize("template", sorted(TINY))
def test_plain(template: str, tmp_path: Path) -> None:
    done = train(template, tmp_path, "plain", 1)
    assert done.returncode == 0, done.stderr[-2000:]
    check_learned(tmp_path, template, "plain", 1)


@pytest.mark.slow
@pytest.mark.parametrize("template", sorted(TINY))
@pytest.mark.parametrize(("engine", "extra"), [("ddp", []), ("deepspeed", ["--zero_stage", "2", "--grad_clip", "1.0"])])
def test_two_ranks_over_gloo(template: str, engine: str, extra: list[str], tmp_path: Path) -> None:
    done = train(template, tmp_path, engine, 2, *extra)
    assert done.returncode == 0, done.stderr[-3000:]
    check_learned(tmp_path, template, engine, 2)


def test_fp16_on_cpu_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    done = train("modadd", tmp_path, "plain", 1, "--precision", "fp16")
    assert done.returncode != 0
    assert "fp16 on CPU is not supported" in done.stderr and "bf16" in done.stderr
    assert not (tmp_path / "metrics.json").exists()


def test_bf16_plain_run_records_its_precision(tmp_path: Path) -> None:
    done = train("modadd", tmp_path, "plain", 1, "--precision", "bf16")
    assert done.returncode == 0, done.stderr[-2000:]
    assert read_metrics(tmp_path / "metrics.json").precision == "bf16"


def test_gpt_scales_from_tiny_to_about_100m_parameters() -> None:
    with torch.device("meta"):
        big = GPT(vocab=64, block_size=1024, n_layer=12, n_head=12, n_embd=768, dropout=0.0, activation="gelu")
    tiny = GPT(vocab=64, block_size=64, n_layer=2, n_head=2, n_embd=64, dropout=0.0, activation="gelu")
    assert 80e6 < sum(p.numel() for p in big.parameters()) < 110e6
    assert sum(p.numel() for p in tiny.parameters()) < 200e3


def test_mfu_uses_the_devices_peak() -> None:
    assert peak_flops("NVIDIA H100 80GB HBM3", "bf16") == 989e12
    assert peak_flops("NVIDIA A100-SXM4-40GB", "fp32") == 19.5e12
    assert peak_flops("cpu", "bf16") is None
    # 6 * 86M FLOPs per token at 400k tokens/s on one H100 in bf16: about 21% of its peak
    mfu = model_flops_utilization(6 * 86e6, 400e3, "NVIDIA H100 80GB HBM3", "bf16", world_size=1)
    assert mfu == pytest.approx(6 * 86e6 * 400e3 / 989e12)
    assert model_flops_utilization(1e9, 1e3, "NVIDIA H100", "bf16", world_size=2) == pytest.approx(1e12 / (2 * 989e12))
    assert model_flops_utilization(1e9, 1e3, "Mystery GPU", "bf16", world_size=1) is None
