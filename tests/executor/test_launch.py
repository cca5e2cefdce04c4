"""Rendezvous ports of jobs that run at once on one machine: distinct, free, and a lost port is retried."""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

import pytest

from experiments.metrics import read_metrics
from fars.executor import launch
from fars.executor.launch import JobFailed, build_command, job_env, run_command


def _port(cmd: list[str]) -> int:
    return int(cmd[cmd.index("--master_port") + 1])


def test_deepspeed_jobs_each_get_their_own_free_port(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as busy:
        busy.bind(("", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        monkeypatch.setattr(launch, "PORT_RANGE", (taken, taken + 3))  # the busy port and two others
        ports = [_port(build_command("m", [], ranks=2, launcher="deepspeed")) for _ in range(2)]
    assert taken not in ports and len(set(ports)) == 2  # never the DeepSpeed default, never one in use, never twice
    assert _port(build_command("m", [], ranks=2, launcher="deepspeed", master_port=29600)) == 29600


def test_a_job_that_lost_its_port_runs_again_on_a_new_one(tmp_path: Path) -> None:
    marker = tmp_path / "first-try"
    script = (
        "import pathlib, sys\n"
        f"m = pathlib.Path({str(marker)!r})\n"
        "print('port', sys.argv[sys.argv.index('--master_port') + 1])\n"
        "if not m.exists():\n"
        "    m.write_text('x'); print('RuntimeError: EADDRINUSE: address already in use'); raise SystemExit(1)\n"
    )
    cmd = [sys.executable, "-c", script, "--master_port", "29500"]
    asyncio.run(run_command(cmd, job_env(1), tmp_path / "log", timeout_s=30))
    ports = [line.split()[1] for line in (tmp_path / "log").read_text().splitlines() if line.startswith("port")]
    assert ports[0] == "29500" and len(ports) == 2 and ports[1] != "29500"


def test_other_failures_are_not_retried(tmp_path: Path) -> None:
    cmd = [sys.executable, "-c", "print('boom'); raise SystemExit(4)", "--master_port", "29500"]
    with pytest.raises(JobFailed, match="exited 4"):
        asyncio.run(run_command(cmd, job_env(1), tmp_path / "log", timeout_s=30))
    assert (tmp_path / "log").read_text().count("boom") == 1


@pytest.mark.slow
def test_two_deepspeed_jobs_at_once_both_train(tmp_path: Path) -> None:
    """Two 2-rank DeepSpeed jobs started together on one machine (their default port, 29500, clashed)."""

    async def job(name: str) -> None:
        out = tmp_path / name
        args = ["--engine", "deepspeed", "--steps", "30", "--eval_every", "10", "--out_dir", str(out)]
        cmd = build_command("experiments.modadd.train", args, ranks=2, launcher="deepspeed", device="cpu")
        await run_command(cmd, job_env(1), out / "train.log", timeout_s=400)

    async def both() -> None:
        await asyncio.gather(job("a"), job("b"))

    asyncio.run(both())
    for name in ("a", "b"):
        assert read_metrics(tmp_path / name / "metrics.json").world_size == 2


def test_a_job_cancelled_while_it_is_being_started_does_not_outlive_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C just as two seeds started left both training on, orphaned, 28 minutes after the run ended."""
    import os

    real = asyncio.create_subprocess_exec
    made: list[int] = []

    async def slow_start(*args: object, **kwargs: object) -> asyncio.subprocess.Process:
        proc = await real(*args, **kwargs)  # type: ignore[arg-type]
        made.append(proc.pid)
        await asyncio.sleep(0.5)  # the process exists; the caller has not got it yet
        return proc

    monkeypatch.setattr(asyncio, "create_subprocess_exec", slow_start)
    cmd = [sys.executable, "-c", "import time; time.sleep(120)"]

    async def go() -> None:
        job = asyncio.ensure_future(run_command(cmd, job_env(1), tmp_path / "log", timeout_s=300))
        while not made:
            await asyncio.sleep(0.01)
        job.cancel()  # inside the start
        with pytest.raises(asyncio.CancelledError):
            await job

    asyncio.run(go())
    with pytest.raises(ProcessLookupError):
        os.killpg(made[0], 0)  # the group is gone
    assert not launch._LIVE_GROUPS
