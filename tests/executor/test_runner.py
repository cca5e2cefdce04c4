"""The job runner against what model code leaves in its folder, on the first run and on resume.

An attacker's method plants links (its result to a host secret, the harness's ``command.json`` to the
run's ledger), FIFOs, links to ``/dev/zero`` and huge files; a careless earlier session leaves
half-written results and deep trees. The runner (root) must follow none of it, block on none of it,
read none of it unbounded, and keep the event loop every project shares responsive.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import os
import textwrap
import time
from pathlib import Path

import pytest

from fars.config import FarsConfig, validate_config
from fars.executor.launch import JobFailed
from fars.executor.results import ResultRejected
from fars.executor.runner import Runner
from fars.run.ledger import Ledger

SIMULATED = "experiments.simulated.train"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A run folder with a real ledger and a project's runs/ folder, as the pipeline lays them out."""
    run = tmp_path / "run"
    ledger = Ledger(run / "ledger.sqlite")
    ledger.set_meta("sessions", "1")
    ledger.close()
    (run / "projects" / "p000" / "runs").mkdir(parents=True)
    return run


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "shadow"
    path.write_text("root:$6$not-for-the-harness:19000:0:99999:7:::\n")
    path.chmod(0o600)
    return path


def _runner(cfg: FarsConfig | None = None) -> Runner:
    cfg = cfg or validate_config({})
    return Runner(cfg.experiment, cfg.executor)


def _deep(root: Path, levels: int) -> None:
    fd = os.open(root, os.O_RDONLY)
    for _ in range(levels):
        os.mkdir("d", dir_fd=fd)
        nxt = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = nxt
    os.close(fd)


def test_resume_into_a_folder_of_planted_links_follows_none_of_them(run_dir: Path, secret: Path) -> None:
    """What killed a run on main: on resume, root read the 'result' (a link to /etc/shadow) and wrote
    ``command.json`` through a link to the ledger, overwriting it."""
    out = run_dir / "projects" / "p000" / "runs" / "method-seed0"
    out.mkdir()
    (out / "metrics.json").symlink_to(secret)
    (out / "command.json").symlink_to("../../../../ledger.sqlite")
    (out / "train.log").symlink_to("../../../../ledger.sqlite")
    os.mkfifo(out / "stuck.fifo")
    _deep(out, 3000)  # clean-up on main failed with RecursionError here, on every resume
    ledger_before, secret_before = _sha(run_dir / "ledger.sqlite"), _sha(secret)

    metrics = asyncio.run(_runner().train(SIMULATED, ["--steps", "20", "--seed", "0"], out))

    assert metrics.template == "simulated" and metrics.seed == 0
    assert _sha(run_dir / "ledger.sqlite") == ledger_before and _sha(secret) == secret_before
    assert Ledger(run_dir / "ledger.sqlite").get_meta("sessions") == "1"  # still a working ledger
    assert sorted(p.name for p in out.iterdir()) == ["command.json", "metrics.json", "train.log"]
    assert not any(p.is_symlink() for p in out.iterdir())
    assert "not-for-the-harness" not in (out / "train.log").read_text() + (out / "command.json").read_text()


def test_a_finished_result_is_reused_and_a_half_written_one_is_not(run_dir: Path) -> None:
    out = run_dir / "projects" / "p000" / "runs" / "baseline-seed0"
    runner = _runner()
    first = asyncio.run(runner.train(SIMULATED, ["--steps", "20", "--seed", "1"], out))
    stamp = (out / "metrics.json").stat().st_mtime_ns
    again = asyncio.run(runner.train(SIMULATED, ["--steps", "20", "--seed", "1"], out))
    assert again == first and (out / "metrics.json").stat().st_mtime_ns == stamp  # not trained twice
    (out / "metrics.json").write_text('{"template": "simul')  # a kill mid-write
    third = asyncio.run(runner.train(SIMULATED, ["--steps", "20", "--seed", "1"], out))
    assert third.seed == 1 and (out / "metrics.json").stat().st_mtime_ns != stamp


@pytest.mark.parametrize("plant", ["fifo", "zero"])
def test_a_fifo_or_dev_zero_left_as_the_result_neither_hangs_nor_exhausts_the_harness(
    run_dir: Path, plant: str
) -> None:
    out = run_dir / "projects" / "p000" / "runs" / "method-seed1"
    out.mkdir()
    if plant == "fifo":
        os.mkfifo(out / "metrics.json")
    else:
        (out / "metrics.json").symlink_to("/dev/zero")
    ticks: list[float] = []

    async def go() -> None:
        async def ticker() -> None:
            while True:
                ticks.append(time.monotonic())
                await asyncio.sleep(0.05)

        tick = asyncio.create_task(ticker())
        try:
            await asyncio.wait_for(_runner().train(SIMULATED, ["--steps", "20", "--seed", "1"], out), 60)
        finally:
            tick.cancel()

    started = time.monotonic()
    asyncio.run(go())
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert time.monotonic() - started < 60 and max(gaps) < 1.0, "the event loop was blocked"
    assert json.loads((out / "metrics.json").read_text())["seed"] == 1  # retrained, in a clean folder


HOOK = """
import atexit, os

def _tamper():  # runs after train.py wrote a good metrics.json: replace it with a trap
    os.remove("metrics.json")
    {action}

atexit.register(_tamper)

{trap}

def loss(logits, targets):
    import torch
    return torch.nn.functional.cross_entropy(logits, targets)
"""
TRAPS = {
    "shadow": ("os.symlink({secret!r}, 'metrics.json')", ""),
    "fifo": ("os.mkfifo('metrics.json')", ""),
    "zero": ("os.symlink('/dev/zero', 'metrics.json')", ""),
    "huge": ("open('metrics.json', 'w').write('{{\"pad\": \"' + 'x' * (59 * 1024 * 1024) + '\"}}')", ""),
    # the harness's own file turned into a link to the ledger, then the job fails: the project is resumed
    "ledger": (
        "pass",
        "os.remove('command.json'); os.symlink('../../../../ledger.sqlite', 'command.json'); raise SystemExit(3)",
    ),
}


@pytest.mark.parametrize("trap", sorted(TRAPS))
def test_a_method_planting_traps_in_its_own_folder_gets_a_failed_job_and_nothing_else(
    run_dir: Path, secret: Path, trap: str, tmp_path: Path
) -> None:
    """Real model-written code in the real sandbox plants the trap; the runner refuses it, twice (resume)."""
    action, at_import = TRAPS[trap]
    method = tmp_path / "method" / "method.py"
    method.parent.mkdir()
    method.write_text(textwrap.dedent(HOOK).format(action=action.format(secret=str(secret)), trap=at_import))
    cfg = validate_config({})
    out = run_dir / "projects" / "p000" / "runs" / "method-seed0"
    args = ["--steps", "3", "--eval_every", "3", "--method", str(method)]
    ledger_before, secret_before = _sha(run_dir / "ledger.sqlite"), _sha(secret)
    runner = _runner(cfg)
    sessions = 2 if trap in ("shadow", "ledger") else 1  # the first run, then a resume of the same folder
    for _session in range(sessions):
        started = time.monotonic()
        with pytest.raises(JobFailed) as caught:
            asyncio.run(
                runner.train(
                    "experiments.modadd.train", args, out, ranks=1, sandbox=cfg.sandbox, readable=(method.parent,)
                )
            )
        assert isinstance(caught.value, ResultRejected) == (trap != "ledger"), caught.value
        assert time.monotonic() - started < 120
        assert "not-for-the-harness" not in str(caught.value)
        assert _sha(run_dir / "ledger.sqlite") == ledger_before and _sha(secret) == secret_before
    assert Ledger(run_dir / "ledger.sqlite").get_meta("sessions") == "1"
