"""The SLURM path against a real cluster: Debian's slurm-wlm, one node, started by ``.ci/slurm.sh start``.

Skipped when no cluster answers, unless ``FARS_REQUIRE_SLURM=1`` (CI), where that is a failure. The tests
that need the script's ``closed`` partition (takes jobs, never starts them) or switch accounting off
(``.ci/slurm.sh start --no-accounting``, then back) run only on a cluster that script configured.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from experiments.metrics import read_metrics
from fars.config import SlurmConfig
from fars.executor.cluster import Partition, read_partitions
from fars.executor.launch import JobFailed, job_env
from fars.executor.slurm import JobNotStarted, run_slurm_job
from tests.conftest import FAST, REPO, fars_command, run_fars

pytestmark = pytest.mark.xdist_group("slurm_cluster")  # one cluster: its tests count and cancel its jobs
REQUIRE = os.environ.get("FARS_REQUIRE_SLURM") == "1"
SCRIPT = REPO / ".ci" / "slurm.sh"
MARK = "# written by FARS .ci/slurm.sh"
CFG = SlurmConfig(poll_s=1.0)


def _no_cluster(reason: str) -> None:
    message = f"no SLURM cluster answers ({reason}); start one with `bash .ci/slurm.sh start`"
    if REQUIRE:
        pytest.fail(message + " (FARS_REQUIRE_SLURM=1)")
    pytest.skip(message)


@pytest.fixture(scope="module")
def partition() -> Partition:
    """The default partition of a cluster that answers (its node idle or in use)."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        _no_cluster("the SLURM client commands are not installed")
    done = subprocess.run(["sinfo", "-h", "-o", "%a"], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        _no_cluster(done.stderr.strip()[:200])
    default = next((p for p in read_partitions(refresh=True) if p.default), None)
    if default is None or not default.up:
        _no_cluster("no default partition that is up")
    assert default is not None
    return default


def _ours() -> bool:
    conf = Path("/etc/slurm/slurm.conf")
    return conf.is_file() and conf.read_text().startswith(MARK)


@pytest.fixture(scope="module")
def closed(partition: Partition) -> str:
    """The name of a partition that takes jobs and never starts them (the script's ``closed``)."""
    if not any(p.name == "closed" and not p.up for p in read_partitions(refresh=True)):
        if REQUIRE:
            pytest.fail("the cluster has no DOWN partition `closed`: start it with .ci/slurm.sh")
        pytest.skip("needs the `closed` partition of .ci/slurm.sh")
    return "closed"


def _queue(folder: Path) -> dict[str, str]:
    """Job id -> state of the jobs whose batch script lies under ``folder`` (the submitit folders of a test)."""
    done = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i|%T|%o"], capture_output=True, text=True, timeout=30)
    rows = (line.split("|") for line in done.stdout.splitlines())
    return {r[0]: r[1] for r in rows if len(r) == 3 and str(folder) in r[2]}


async def _until(predicate: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.3)


def _job(
    tmp: Path, name: str, module: str, args: list[str], cfg: SlurmConfig = CFG, **kw: Any
) -> Coroutine[Any, Any, None]:
    params: dict[str, Any] = {"ranks": 1, "nodes": 1, "env": job_env(1), "timeout_s": 300.0, **kw}
    return run_slurm_job(cfg, tmp / name / "submitit", module, args, **params)


def _train(tmp: Path, name: str, engine: str, ranks: int) -> Coroutine[Any, Any, None]:
    args = ["--engine", engine, "--steps", "30", "--eval_every", "10", "--out_dir", str(tmp / name / "run")]
    return _job(tmp, name, "experiments.modadd.train", args, ranks=ranks)


@pytest.mark.timeout(400)
def test_plain_ddp_and_deepspeed_jobs_and_one_outliving_submitits_signal(partition: Partition, tmp_path: Path) -> None:
    """Four jobs at once; the sleeper runs 40 s under a 100 s time-out, past submitit's USR2 at limit - 90 s."""

    async def main() -> None:
        await asyncio.gather(
            _train(tmp_path, "plain", "plain", 1),
            _train(tmp_path, "ddp", "ddp", 2),
            _train(tmp_path, "deepspeed", "deepspeed", 2),
            _job(tmp_path, "sleeper", "tests.executor.sleeper", ["40", str(tmp_path / "slept")], timeout_s=100.0),
        )

    asyncio.run(main())
    for name, engine, world in (("plain", "plain", 1), ("ddp", "ddp", 2), ("deepspeed", "deepspeed", 2)):
        metrics = read_metrics(tmp_path / name / "run" / "metrics.json")
        assert (metrics.engine, metrics.world_size) == (engine, world)
    assert (tmp_path / "slept").read_text() == "done"


@pytest.mark.timeout(120)
def test_a_job_submitted_from_inside_an_array_task_runs(
    partition: Partition, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a sweep job under hydra/launcher=slurm sees: its array variables must not reach the inner job."""
    for name, value in {"SLURM_ARRAY_JOB_ID": "9000", "SLURM_ARRAY_TASK_ID": "1", "SLURM_JOB_ID": "9001",
                        "SLURM_ARRAY_TASK_COUNT": "2", "SUBMITIT_EXECUTOR": "slurm"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    asyncio.run(_job(tmp_path, "inner", "tests.executor.sleeper", ["0", str(tmp_path / "ran")]))
    assert (tmp_path / "ran").exists()


@pytest.mark.timeout(400)
def test_a_sweep_on_the_slurm_launcher_whose_runs_train_on_slurm(partition: Partition, tmp_path: Path) -> None:
    """hydra/launcher=slurm places each run; executor=slurm its training jobs (failure 4: they all failed)."""
    done = run_fars(
        ["run", "-m", "hydra/launcher=slurm", "executor=slurm", "pipeline.projects=1,2", "pipeline.papers=1",
         "hydra.launcher.cpus_per_task=1", "hydra.launcher.timeout_min=30", "executor.slurm.poll_s=1", *FAST],
        tmp_path, timeout=380,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = sorted(p for p in (tmp_path / "multirun").glob("*/*/[0-9]") if p.is_dir())
    assert [j.name for j in jobs] == ["0", "1"]
    for job in jobs:
        record = json.loads((job / "run_record.json").read_text())
        assert record["status"] == "completed" and len(record["scores"]) == 1, record.get("projects")
        runs = list(job.glob("projects/*/runs/*/metrics.json"))
        assert runs and all((r.parent / "slurm").is_dir() for r in runs)  # trained as SLURM jobs


@pytest.mark.timeout(120)
def test_a_job_cancelled_mid_run_ends_with_a_clear_error(partition: Partition, tmp_path: Path) -> None:
    async def main() -> None:
        job = asyncio.ensure_future(_job(tmp_path, "long", "tests.executor.sleeper", ["300"]))
        await _until(lambda: "RUNNING" in _queue(tmp_path).values(), 60)
        subprocess.run(["scancel", *_queue(tmp_path)], check=True)
        await job

    started = time.monotonic()
    with pytest.raises(JobFailed, match=r"SLURM job \d+ ended CANCELLED") as err:
        asyncio.run(main())
    assert not isinstance(err.value, JobNotStarted) and time.monotonic() - started < 90


@pytest.mark.timeout(120)
def test_requests_the_node_cannot_hold_are_refused_before_anything_runs(partition: Partition, tmp_path: Path) -> None:
    too_many = partition.cpus_per_node + 1
    done = run_fars(
        ["run", "-m", "executor=slurm", f"executor.slurm.cpus_per_task={too_many}", "hydra/launcher=slurm",
         f"hydra.launcher.mem_gb={partition.mem_mb_per_node // 1024 + 8}", "pipeline.projects=1", *FAST],
        tmp_path, timeout=100,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"executor.slurm.cpus_per_task: the job needs {too_many} CPUs per node" in done.stderr
    assert f"partition {partition.name} has {partition.cpus_per_node}" in done.stderr
    assert "hydra.launcher.mem_gb=" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "multirun").exists() and _queue(tmp_path) == {}


@pytest.mark.timeout(120)
def test_jobs_that_can_never_start_end_with_their_pending_reason(
    partition: Partition, closed: str, tmp_path: Path
) -> None:
    """One asks its partition for more CPUs than a node has (past the check, via extra); one waits on a DOWN one."""
    greedy = SlurmConfig(poll_s=1.0, extra={"cpus_per_task": str(partition.cpus_per_node * 2)})
    waiting = SlurmConfig(poll_s=1.0, partition=closed, max_pending_s=4)

    async def main() -> tuple[BaseException | None, BaseException | None]:
        return await asyncio.gather(
            _job(tmp_path, "greedy", "tests.executor.sleeper", ["0"], greedy),
            _job(tmp_path, "waiting", "tests.executor.sleeper", ["0"], waiting),
            return_exceptions=True,
        )

    started = time.monotonic()
    greedy_error, waiting_error = asyncio.run(main())
    assert time.monotonic() - started < 60
    assert isinstance(greedy_error, JobNotStarted) and isinstance(waiting_error, JobNotStarted)
    assert "can never start, pending (PartitionConfig): needs 1 CPUs" in str(greedy_error)
    assert f"partition {partition.name} has {partition.cpus_per_node} CPUs" in str(greedy_error)
    assert "pending (PartitionDown)" in str(waiting_error) and "state DOWN" in str(waiting_error)
    assert "max_pending_s" in str(waiting_error)
    assert set(_queue(tmp_path).values()) <= {"CANCELLED"}  # nothing left queued


@pytest.mark.timeout(240)
def test_sigterm_to_fars_run_cancels_its_jobs_and_writes_the_record(partition: Partition, tmp_path: Path) -> None:
    args = ["run", "executor=slurm", "executor.slurm.poll_s=1", "pipeline.papers=1", *FAST, "experiment.steps=5000000",
            f"hydra.run.dir={tmp_path / 'run'}"]  # fmt: skip
    proc = subprocess.Popen(
        fars_command(args), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        asyncio.run(_until(lambda: "RUNNING" in _queue(tmp_path).values() or proc.poll() is not None, 150))
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, output[-3000:]
    assert "Traceback" not in output and "interrupted" in output
    time.sleep(1)
    assert set(_queue(tmp_path).values()) <= {"CANCELLED", "COMPLETED", "FAILED"}, _queue(tmp_path)
    record = json.loads((tmp_path / "run" / "run_record.json").read_text())
    assert record["status"] == "interrupted"


@pytest.fixture
def without_accounting(partition: Partition) -> Iterator[None]:
    """The cluster with accounting off (sacct fails), switched back on afterwards if it was on."""
    config = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=30).stdout
    if "accounting_storage/none" in config:
        yield
        return
    if not _ours():
        if REQUIRE:
            pytest.fail("cannot switch accounting off on a cluster .ci/slurm.sh did not configure")
        pytest.skip("switching accounting off needs a cluster configured by .ci/slurm.sh")
    subprocess.run(["bash", str(SCRIPT), "start", "--no-accounting"], check=True, timeout=120)
    try:
        yield
    finally:
        subprocess.run(["bash", str(SCRIPT), "start"], check=True, timeout=120)
        read_partitions(refresh=True)


@pytest.mark.timeout(180)
def test_without_accounting_cancelled_and_finished_jobs_end(
    without_accounting: None, closed: str, tmp_path: Path
) -> None:
    """Without sacct a cancelled or never-started job used to look unfinished for ever (and asyncio.run hung)."""
    never = SlurmConfig(poll_s=1.0, partition=closed)

    async def main() -> list[BaseException | None]:
        jobs = [
            asyncio.ensure_future(_job(tmp_path, "finishes", "tests.executor.sleeper", ["1", str(tmp_path / "f")])),
            asyncio.ensure_future(_job(tmp_path, "never", "tests.executor.sleeper", ["1"], never)),
            asyncio.ensure_future(_job(tmp_path, "killed", "tests.executor.sleeper", ["300"])),
        ]
        await _until(lambda: "RUNNING" in _queue(tmp_path / "killed").values(), 60)
        await _until(lambda: "PENDING" in _queue(tmp_path / "never").values(), 60)
        subprocess.run(["scancel", *_queue(tmp_path / "never"), *_queue(tmp_path / "killed")], check=True)
        return await asyncio.gather(*jobs, return_exceptions=True)

    started = time.monotonic()
    finished, never_started, killed = asyncio.run(main())
    assert time.monotonic() - started < 120
    assert finished is None and (tmp_path / "f").exists()
    assert isinstance(never_started, JobNotStarted) and "before it started" in str(never_started)
    assert isinstance(killed, JobFailed) and not isinstance(killed, JobNotStarted)
