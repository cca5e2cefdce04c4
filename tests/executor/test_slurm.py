"""The SLURM path without a cluster: requests, time limits, the state machine, the registry, submitit's local executor.

The same code against a real cluster is in ``test_slurm_cluster.py``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from experiments.metrics import read_metrics
from fars.config import SlurmConfig
from fars.executor import slurm
from fars.executor.cluster import SlurmUnavailable
from fars.executor.launch import JobFailed, JobTimeout, job_env
from fars.executor.slurm import (
    SIGNAL_DELAY_S,
    JobNotStarted,
    JobState,
    as_main,
    build_request,
    cancel_all,
    cancel_jobs_on_exit,
    clean_env_executor_class,
    in_flight,
    parse_sacct,
    parse_squeue,
    run_slurm_job,
    slurm_parameters,
    time_problems,
    wait_for_state,
)

LOCAL = SlurmConfig(cluster="local", poll_s=0.5)


def test_parameters_for_a_multi_node_gpu_job() -> None:
    cfg = SlurmConfig(partition="gpu", account="lab", gpus_per_node=8, mem_gb=64, extra={"constraint": "h100"})
    request = build_request(cfg, ranks=8, nodes=4, timeout_s=3600, device="cuda", threads=2)
    params = slurm_parameters(cfg, request)
    assert params["nodes"] == 4 and params["ntasks_per_node"] == 8 and params["gpus_per_node"] == 8
    assert params["partition"] == "gpu" and params["account"] == "lab" and params["mem"] == "65536MB"
    assert params["additional_parameters"] == {"constraint": "h100"} and params["cpus_per_task"] == 2


def test_default_request_fits_any_partition() -> None:
    """No memory asked (the cluster's default applies), one CPU per thread, no GPU on CPU."""
    request = build_request(SlurmConfig(), ranks=2, nodes=1, timeout_s=600, device="cpu", threads=1)
    params = slurm_parameters(SlurmConfig(), request)
    assert "mem" not in params and "gpus_per_node" not in params and "partition" not in params
    assert params["cpus_per_task"] == 1 and request.cpus_per_node == 2


@pytest.mark.parametrize("timeout_s", [30, 100, 150, 600, 3600])
def test_farss_own_time_out_fires_before_submitits_warning_signal(timeout_s: float) -> None:
    """submitit ends a job SIGNAL_DELAY_S before its limit; FARS's own time-out must come before that."""
    params = slurm_parameters(SlurmConfig(), build_request(SlurmConfig(), ranks=1, nodes=1, timeout_s=timeout_s,
                                                             device="cpu", threads=1))  # fmt: skip
    assert params["signal_delay_s"] == SIGNAL_DELAY_S
    assert params["time"] * 60 - SIGNAL_DELAY_S > timeout_s + 30


def test_a_time_limit_too_short_for_the_time_out_is_refused() -> None:
    assert time_problems(SlurmConfig(time_min=30), 600) == []
    (problem,) = time_problems(SlurmConfig(time_min=5), 600)
    assert "executor.slurm.time_min=5" in problem and "at least 13" in problem


def test_queue_output_is_read() -> None:
    assert parse_squeue("12|PENDING|PartitionConfig\n13|RUNNING|None\n") == {
        "12": JobState("PENDING", "PartitionConfig"),
        "13": JobState("RUNNING", "None"),
    }
    done = parse_sacct("12|CANCELLED by 0|PartitionDown\n12.batch|CANCELLED|\n14|COMPLETED|None\n")
    assert done == {"12": JobState("CANCELLED", "PartitionDown"), "14": JobState("COMPLETED", "None")}


def test_sbatch_runs_without_the_enclosing_jobs_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside an array task (a sweep job under hydra/launcher=slurm) its SLURM_ARRAY_* must not reach the new job."""
    for name, value in {
        "SLURM_ARRAY_JOB_ID": "41",
        "SLURM_ARRAY_TASK_ID": "0",
        "SLURM_JOB_ID": "42",
        "SUBMITIT_EXECUTOR": "slurm",
        "SLURM_CONF": "/etc/slurm/slurm.conf",
    }.items():
        monkeypatch.setenv(name, value)
    cmd = clean_env_executor_class()._make_submission_command(None, Path("job.sh"))
    assert cmd[0] == "env" and cmd[-2:] == ["sbatch", "job.sh"]
    unset = set(cmd[2:-2:2])
    assert {"SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_JOB_ID", "SUBMITIT_EXECUTOR"} <= unset
    assert "SLURM_CONF" not in unset and set(cmd[1:-2:2]) == {"-u"}


def _states(*seq: JobState | Exception) -> tuple[list[int], Callable[[], Awaitable[JobState]]]:
    calls: list[int] = []
    items = list(seq)

    async def state_of() -> JobState:
        calls.append(1)
        item = items.pop(0) if len(items) > 1 else items[0]
        if isinstance(item, Exception):
            raise item
        return item

    return calls, state_of


def _wait(state_of: Callable[[], Awaitable[JobState]], cancelled: list[bool], **kw: float | None) -> JobState:
    args: dict[str, float | None] = {"timeout_s": 60.0, "max_pending_s": None, **kw}
    return asyncio.run(
        wait_for_state(
            state_of,
            "7",
            poll_s=0.05,
            timeout_s=float(args["timeout_s"] or 60.0),
            max_pending_s=args["max_pending_s"],
            describe_pending=lambda reason: f"pending ({reason}): needs 4 CPUs per node, partition debug has 2",
            cancel=lambda: cancelled.append(True),
            folder=Path("logs"),
        )
    )


def test_a_job_its_partition_can_never_hold_is_cancelled_with_the_reason() -> None:
    cancelled: list[bool] = []
    _, state_of = _states(JobState("PENDING", "None"), JobState("PENDING", "PartitionConfig"))
    with pytest.raises(JobNotStarted, match=r"can never start, pending \(PartitionConfig\): needs 4 CPUs") as err:
        _wait(state_of, cancelled)
    assert "partition debug has 2" in str(err.value) and cancelled == [True]


def test_which_pending_reasons_never_resolve() -> None:
    for reason in ("PartitionConfig", "PartitionTimeLimit", "BadConstraints", "QOSMaxCpuPerJobLimit", "InvalidAccount"):
        assert slurm.never_starts(reason), reason
    for reason in ("Resources", "Priority", "PartitionDown", "ReqNodeNotAvail", "QOSMaxCpuPerUserLimit", "None"):
        assert not slurm.never_starts(reason), reason


def test_a_job_pending_past_its_limit_is_cancelled_with_the_reason() -> None:
    cancelled: list[bool] = []
    _, state_of = _states(JobState("PENDING", "Resources"))
    with pytest.raises(JobNotStarted, match=r"after \d+ s pending \(Resources\).*max_pending_s"):
        _wait(state_of, cancelled, max_pending_s=0.3)
    assert cancelled == [True]


def test_the_run_clock_starts_when_the_job_runs() -> None:
    """Time in the queue is not time running: a job that pends, then runs past its limit, is a time-out."""
    cancelled: list[bool] = []
    _, state_of = _states(*[JobState("PENDING", "Priority")] * 8, JobState("RUNNING"))
    started = time.monotonic()
    with pytest.raises(JobTimeout, match=r"ran past 0\.5 s"):
        _wait(state_of, cancelled, timeout_s=0.5)
    assert time.monotonic() - started > 0.5 + 8 * 0.05 and cancelled == [True]


def test_cancelled_vanished_and_finished_jobs_end() -> None:
    for final in ("CANCELLED", "VANISHED", "COMPLETED", "NODE_FAIL"):
        _, state_of = _states(JobState("PENDING", "Priority"), JobState(final))
        assert _wait(state_of, []).state == final
    _, state_of = _states(JobState("RUNNING"), JobState("CANCELLED", "None"))
    assert _wait(state_of, []).reason.startswith("started:")  # seen running: it did not end before it started


def test_a_controller_that_does_not_answer_for_a_moment_is_asked_again() -> None:
    calls, state_of = _states(SlurmUnavailable("squeue failed"), SlurmUnavailable("again"), JobState("COMPLETED"))
    assert _wait(state_of, []).state == "COMPLETED" and len(calls) == 3


def _sleep_job(seconds: float, tmp: Path, name: str, timeout_s: float = 120) -> Coroutine[Any, Any, None]:
    return run_slurm_job(
        LOCAL,
        tmp / name,
        "tests.executor.sleeper",
        [str(seconds), str(tmp / f"{name}.done")],
        ranks=1,
        nodes=1,
        env=job_env(1),
        timeout_s=timeout_s,
    )


def test_waiting_jobs_take_no_thread_of_the_loops_shared_pool(tmp_path: Path) -> None:
    """litellm runs model calls in the loop's default pool: three jobs in flight must leave it free."""

    async def main() -> float:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(max_workers=2))
        jobs = [asyncio.ensure_future(_sleep_job(4, tmp_path, f"j{i}")) for i in range(3)]
        await asyncio.sleep(1.5)  # every job submitted and waiting
        started = time.monotonic()
        await loop.run_in_executor(None, time.sleep, 0)  # what a model call does
        latency = time.monotonic() - started
        await asyncio.gather(*jobs)
        return latency

    assert asyncio.run(main()) < 0.5
    assert all((tmp_path / f"j{i}.done").exists() for i in range(3))


def test_a_job_running_past_its_time_out_is_cancelled(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(JobTimeout, match="ran past 1 s"):
        asyncio.run(_sleep_job(60, tmp_path, "slow", timeout_s=1))
    assert time.monotonic() - started < 20 and in_flight() == []


@pytest.fixture
def no_jobs_left() -> Iterator[None]:
    yield
    assert in_flight() == [], "a job stayed in the registry"


def test_cancel_all_ends_every_job_in_flight(tmp_path: Path, no_jobs_left: None) -> None:
    async def main() -> list[str]:
        jobs = [asyncio.ensure_future(_sleep_job(60, tmp_path, f"c{i}")) for i in range(2)]
        while len(in_flight()) < 2:
            await asyncio.sleep(0.1)
        cancelled = cancel_all()
        results = await asyncio.gather(*jobs, return_exceptions=True)
        assert all(isinstance(r, JobFailed) for r in results), results
        return cancelled

    started = time.monotonic()
    assert len(asyncio.run(main())) == 2
    assert time.monotonic() - started < 30 and not list(tmp_path.glob("*.done"))


def test_sigterm_interrupts_the_run_and_cancels_its_jobs(tmp_path: Path, no_jobs_left: None) -> None:
    """What ``fars run`` does around the pipeline: SIGTERM acts as Ctrl-C and nothing stays queued."""
    pids: list[int] = []

    async def main() -> None:
        job = asyncio.ensure_future(_sleep_job(60, tmp_path, "t"))
        while not in_flight():
            await asyncio.sleep(0.1)
        pids.append(in_flight()[0].job._process.pid)
        threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM)).start()
        await job

    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), cancel_jobs_on_exit():
        asyncio.run(main())
    assert signal.getsignal(signal.SIGTERM) == previous
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(pids[0]):
        time.sleep(0.1)
    assert not _alive(pids[0]), "the job's process outlived the run"


def test_sigterm_with_sigint_ignored_cancels_the_run_where_it_awaits() -> None:
    """A run started in the background by a script has SIGINT ignored, so asyncio.run has no Ctrl-C handler:
    SIGTERM must still stop it as Ctrl-C would (CancelledError where it awaits, then KeyboardInterrupt),
    not by a KeyboardInterrupt raised in the middle of whatever code is running."""
    seen: list[str] = []

    async def main() -> None:
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
        try:
            busy_until = time.monotonic() + 1.0
            while time.monotonic() < busy_until:  # running code when the signal lands, as a pipeline often is
                pass
            seen.append("work finished")
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen.append("cancelled")  # where the pipeline writes its record as interrupted
            raise

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with pytest.raises(KeyboardInterrupt), cancel_jobs_on_exit():
            asyncio.run(as_main(main()))
    finally:
        signal.signal(signal.SIGINT, previous)
    assert seen == ["work finished", "cancelled"]


def _alive(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
        os.kill(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        return False
    return True


def test_the_fit_check_runs_before_anything_is_submitted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(slurm, "_fit", lambda cfg, request: ["executor.slurm.cpus_per_task: needs 4 CPUs"])
    with pytest.raises(slurm.SlurmFitError, match="needs 4 CPUs"):
        asyncio.run(run_slurm_job(SlurmConfig(), tmp_path, "m", [], ranks=1, nodes=1, env=job_env(1), timeout_s=60))
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_two_tasks_train_as_two_ranks_with_submitit_local(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["--engine", "ddp", "--steps", "40", "--eval_every", "10", "--seed", "2", "--out_dir", str(out)]
    asyncio.run(
        run_slurm_job(
            LOCAL,
            tmp_path / "submitit",
            "experiments.modadd.train",
            args,
            ranks=2,
            nodes=1,
            env=job_env(1),
            timeout_s=300,
        )
    )
    metrics = read_metrics(out / "metrics.json")
    assert metrics.engine == "ddp" and metrics.world_size == 2
    assert sorted(p.name for p in (tmp_path / "submitit" / "ranks").iterdir()) == ["rank0.log", "rank1.log"]


def test_a_failing_task_is_reported(tmp_path: Path) -> None:
    with pytest.raises(JobFailed, match="failed"):
        asyncio.run(
            run_slurm_job(
                LOCAL,
                tmp_path / "submitit",
                "experiments.modadd.train",
                ["--steps", "0", "--out_dir", str(tmp_path / "run"), "--modulus", "not-a-number"],
                ranks=1,
                nodes=1,
                env=job_env(1),
                timeout_s=120,
            )
        )


def test_cancel_all_ends_local_jobs_of_a_run_started_with_sigint_ignored(tmp_path: Path, no_jobs_left: None) -> None:
    """A run started in the background (`cmd &` in a script) has SIGINT ignored, and so have its local jobs:
    submitit's SIGINT did not stop them (the suite's xdist worker had it ignored, and two tests saw jobs run on)."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:

        async def main() -> list[BaseException | None]:
            jobs = [asyncio.ensure_future(_sleep_job(60, tmp_path, f"i{i}")) for i in range(2)]
            while len(in_flight()) < 2:
                await asyncio.sleep(0.1)
            cancel_all()
            return await asyncio.gather(*jobs, return_exceptions=True)

        started = time.monotonic()
        results = asyncio.run(main())
    finally:
        signal.signal(signal.SIGINT, previous)
    assert all(isinstance(r, JobFailed) for r in results), results
    assert time.monotonic() - started < 30 and not list(tmp_path.glob("*.done"))
