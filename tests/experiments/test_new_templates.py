"""The digits, cartpole and abstracts_lm templates: they train at smoke size with the network cut off (their
data ships), every component option runs, DDP over 2 gloo ranks works, and their folders stay small.

Runs go through the executor's own command builder (``python -m`` one rank, torchrun for two), so the
launch path is the Experiment stage's. Option sweeps call ``main`` in-process to spare a torch import per run.
"""

from __future__ import annotations

import importlib
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.metrics import Metrics, read_metrics
from experiments.spec import TemplateSpec, load_template
from fars.executor.launch import build_command, job_env

TRAINED = ("digits", "cartpole", "abstracts_lm")
TINY_GPT = ["--n_embd", "32", "--block_size", "32", "--batch_size", "8", "--eval_batches", "1"]


def smoke_args(spec: TemplateSpec, steps: int | None = None) -> list[str]:
    """The template's smoke scale as flags (its steps and knob values)."""
    smoke = spec.scale("smoke")
    knobs = [f"--{k}={v}" for k, v in smoke.knobs.items()]
    extra = TINY_GPT if spec.name == "abstracts_lm" else []
    return ["--steps", str(steps or smoke.steps), *knobs, *extra]


# imported at start-up by every Python process that has its folder on the path: connects and name
# lookups raise, so a template that downloaded anything at run time would fail
NO_NETWORK = """
import socket

def _refuse(*args, **kwargs):
    raise OSError("network use is forbidden in this test")

socket.socket.connect = _refuse
socket.socket.connect_ex = _refuse
socket.create_connection = _refuse
socket.getaddrinfo = _refuse
"""


def launch(
    name: str, out: Path, *extra: str, ranks: int = 1, engine: str = "plain", offline: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a template's entry point as the Runner would and return the finished process.

    With ``offline`` (a folder) the process starts with the network cut off (see NO_NETWORK).
    """
    spec = load_template(name)
    args = [*smoke_args(spec), *extra, "--engine", engine, "--out_dir", str(out), "--seed", "1"]
    cmd = build_command(f"experiments.{name}.train", args, ranks=ranks, launcher="torchrun")
    env = job_env(1)
    if offline is not None:
        offline.mkdir(parents=True, exist_ok=True)
        (offline / "sitecustomize.py").write_text(NO_NETWORK, encoding="utf-8")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(offline), env.get("PYTHONPATH", "")) if p)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)


def check_metrics(out: Path, name: str, engine: str = "plain", world: int = 1) -> Metrics:
    """metrics.json validates, names this run, and holds the declared metric as a finite number."""
    done = read_metrics(out / "metrics.json")
    spec = load_template(name)
    assert (done.template, done.engine, done.world_size, done.metric) == (name, engine, world, spec.metric)
    assert math.isfinite(done.final[spec.metric]), done.final
    assert done.curves.val_metric[-1] == pytest.approx(done.final[spec.metric])
    assert done.examples_per_s > 0 and done.parameters > 0
    assert any(key.startswith(f"{name}/") for key in done.provenance.files)
    return done


def option_runs(spec: TemplateSpec) -> list[list[str]]:
    """Flag sets that, together, use every option of every component slot (run k takes option k of each)."""
    widest = max(len(c.options) for c in spec.components)
    return [[f"--{c.name}={list(c.options)[k % len(c.options)]}" for c in spec.components] for k in range(widest)]


@pytest.mark.parametrize("name", TRAINED)
def test_trains_at_smoke_size_plain_with_the_network_cut_off(name: str, tmp_path: Path) -> None:
    done = launch(name, tmp_path / "run", offline=tmp_path / "offline")
    assert done.returncode == 0, done.stderr[-3000:]
    check_metrics(tmp_path / "run", name)


def test_the_network_cut_off_is_real(tmp_path: Path) -> None:
    """The guard the smoke runs start under does refuse a connection (so their passing means something)."""
    (tmp_path / "sitecustomize.py").write_text(NO_NETWORK, encoding="utf-8")
    probe = "import urllib.request\ntry:\n    urllib.request.urlopen('http://127.0.0.1:9/', timeout=2)\nexcept OSError as e:\n    print(e)"
    done = subprocess.run(
        [sys.executable, "-c", probe], env={**job_env(1), "PYTHONPATH": str(tmp_path)}, capture_output=True, text=True
    )
    assert "network use is forbidden" in done.stdout, done.stdout + done.stderr


@pytest.mark.parametrize("name", TRAINED)
def test_every_component_option_runs(name: str, tmp_path: Path) -> None:
    spec = load_template(name)
    train = importlib.import_module(f"experiments.{name}.train")
    runs = option_runs(spec)
    used: dict[str, set[str]] = {c.name: set() for c in spec.components}
    for k, flags in enumerate(runs):
        out = tmp_path / str(k)
        metrics = train.main([*smoke_args(spec, steps=2), *flags, "--out_dir", str(out), "--seed", str(k)])
        assert metrics.metric == spec.metric and math.isfinite(metrics.final[spec.metric])
        check_metrics(out, name)
        for slot, value in metrics.config.items():
            if slot in used:
                used[slot].add(str(value))
    assert used == {c.name: set(c.options) for c in spec.components}


@pytest.mark.slow
@pytest.mark.parametrize("name", TRAINED)
def test_two_ranks_over_gloo(name: str, tmp_path: Path) -> None:
    done = launch(name, tmp_path, ranks=2, engine="ddp")
    assert done.returncode == 0, done.stderr[-3000:]
    check_metrics(tmp_path, name, "ddp", 2)


@pytest.mark.slow
def test_digits_under_deepspeed_zero2(tmp_path: Path) -> None:
    done = launch("digits", tmp_path, "--zero_stage", "2", "--normalization", "batchnorm", ranks=2, engine="deepspeed")
    assert done.returncode == 0, done.stderr[-3000:]
    check_metrics(tmp_path, "digits", "deepspeed", 2)


def test_a_method_module_replaces_the_model(tmp_path: Path) -> None:
    """The extension point: --method FILE with build_model trains that model instead (digits)."""
    method = tmp_path / "method.py"
    method.write_text(
        "import torch\n"
        "def build_model(config):\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))\n",
        encoding="utf-8",
    )
    from experiments.digits.train import main

    done = main(["--steps", "20", "--method", str(method), "--out_dir", str(tmp_path / "run")])
    assert done.parameters == 64 * 10 + 10 and done.method is not None
    assert done.final["val_accuracy"] > 0.5  # a linear model of the pixels learns digits in 20 steps


@pytest.mark.parametrize("name", TRAINED)
def test_data_ships_small_and_is_attributed(name: str) -> None:
    spec = load_template(name)
    size = sum(p.stat().st_size for p in spec.folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    assert size < 1_000_000, f"{spec.folder} holds {size} bytes; templates ship small data"
    assert spec.data is not None and spec.data.licence and spec.data.description
    assert spec.higher_is_better == (spec.metric != "val_bpc")
    assert {"smoke", "ci", "gpu"} <= set(spec.scales)
    assert all(2 <= len(c.options) <= 4 for c in spec.components) and len(spec.components) >= 4
    if name != "cartpole":
        assert spec.data.attribution and "CC BY 4.0" in spec.data.licence


def test_digits_images_come_from_inside_scikit_learn() -> None:
    import sklearn

    bundled = Path(sklearn.__file__).parent / "datasets" / "data" / "digits.csv.gz"
    assert bundled.is_file()
