"""Run training jobs on SLURM through submitit (the engine of Hydra's submitit launcher).

One submitit job per training run; ``nodes x tasks_per_node`` tasks, one per rank. Each task reads its
place from ``submitit.JobEnvironment`` and starts the template with the rendezvous variables DDP and
DeepSpeed read (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``), so
multi-node DeepSpeed needs no launcher of its own. ``slurm.cluster=local`` runs the very same tasks
with submitit's local executor, which is how the CPU-only tests exercise this path.

Waiting never takes a thread: the job's state is polled with ``asyncio.sleep`` between calls of
``squeue`` (one call for every job in flight), then ``sacct`` for jobs that left the queue when the
cluster keeps accounting; a job neither knows is judged by its result files. So cancelled, killed,
vanished and never-started jobs end, with or without accounting. A pending job's reason is logged and
named in its error; one that can never start (its partition cannot hold it) is cancelled at once,
one that pends past ``slurm.max_pending_s`` then. The run clock starts when the job runs, and the
SLURM time limit leaves room for submitit's warning signal, so ``experiment.timeout_s`` fires first.
sbatch runs without the variables of an enclosing SLURM job. Every job in flight is in a registry that
:func:`cancel_all` scancels, which the ``fars run`` signal handler calls (:func:`cancel_jobs_on_exit`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fars.config import FarsConfig, SlurmConfig
from fars.executor.cluster import (
    Partition,
    Request,
    SlurmUnavailable,
    check_request,
    choose_partition,
    clean_slurm_env,
    enclosing_job_variables,
    read_partitions,
    time_limit_min,
)
from fars.executor.launch import JobFailed, JobTimeout

log = logging.getLogger(__name__)

SIGNAL_DELAY_S = 90  # submitit's USR2 warning this long before the SLURM time limit
RUNNING = frozenset({"RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED", "STAGE_OUT", "SIGNALING", "RESIZING"})
PENDING = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED"})
VANISHED = "VANISHED"  # in neither squeue nor sacct
# pending reasons that no amount of waiting resolves: the job asks for what its partition, account or QOS never gives
HARD_REASONS = (
    "PartitionConfig",
    "PartitionNodeLimit",
    "PartitionTimeLimit",
    "BadConstraints",
    "InvalidAccount",
    "InvalidQOS",
    "AccountNotAllowed",
    "QOSNotAllowed",
    "DependencyNeverSatisfied",
)
FIT_KEYS = {
    "cpus": "executor.slurm.cpus_per_task",
    "mem": "executor.slurm.mem_gb",
    "gpus": "executor.slurm.gpus_per_node",
    "nodes": "experiment.nodes",
    "time": "experiment.timeout_s (or executor.slurm.time_min)",
    "partition": "executor.slurm.partition",
}


class JobNotStarted(JobFailed):
    """A SLURM job was refused, could never start, pended past its limit, or ended before it ran."""


class SlurmFitError(RuntimeError):
    """The configured request can never run on its partition; found from ``sinfo`` before submitting."""


@dataclass
class RankTask:
    """What each SLURM task runs: the template's entry (a script path, or a module) as one rank of the job (picklable)."""

    module: str
    args: list[str]
    env: dict[str, str]
    log_dir: str

    def __call__(self) -> int:
        """Run this task's rank to the end; raises with the log's tail when it fails."""
        import submitit

        job = submitit.JobEnvironment()
        env = dict(self.env)
        env.update(
            RANK=str(job.global_rank),
            LOCAL_RANK=str(job.local_rank),
            WORLD_SIZE=str(job.num_tasks),
            MASTER_ADDR=job.hostnames[0] if job.num_nodes > 1 else "127.0.0.1",
            MASTER_PORT=str(20000 + int(str(job.job_id).split("_")[0]) % 20000),
        )
        log_path = Path(self.log_dir) / f"rank{job.global_rank}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as out:
            code = subprocess.call(
                [sys.executable, *([self.module] if self.module.endswith(".py") else ["-m", self.module]), *self.args],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        if code != 0:
            tail = log_path.read_text(errors="replace")[-1500:]
            raise RuntimeError(f"rank {job.global_rank} exited {code}:\n{tail}")
        return code


# ---------------------------------------------------------------- what a job asks for


def build_request(cfg: SlurmConfig, *, ranks: int, nodes: int, timeout_s: float, device: str, threads: int) -> Request:
    """The resources of one training job of ``ranks`` ranks per node on ``nodes`` nodes.

    Defaults fit any partition: one CPU per thread of a rank (``experiment.threads_per_job``), memory left to
    the cluster's default, GPUs only with ``device=cuda``, and a time limit derived from ``timeout_s``.
    """
    derived = time_limit_min(timeout_s, SIGNAL_DELAY_S)
    return Request(
        nodes=nodes,
        tasks_per_node=ranks,
        cpus_per_task=cfg.cpus_per_task or threads,
        mem_gb=cfg.mem_gb,
        gpus_per_node=(cfg.gpus_per_node or ranks) if device == "cuda" else 0,
        time_min=max(derived, cfg.time_min or 0),
    )


def time_problems(cfg: SlurmConfig, timeout_s: float) -> list[str]:
    """An explicit ``time_min`` too short for FARS's own time-out to come first."""
    derived = time_limit_min(timeout_s, SIGNAL_DELAY_S)
    if cfg.time_min is not None and cfg.time_min < derived:
        return [
            f"executor.slurm.time_min={cfg.time_min}: experiment.timeout_s={timeout_s:g} plus submitit's "
            f"{SIGNAL_DELAY_S} s warning signal needs at least {derived} min; raise it or leave it null"
        ]
    return []


def slurm_parameters(cfg: SlurmConfig, request: Request) -> dict[str, Any]:
    """submitit ``SlurmExecutor`` parameters (sbatch options) for ``request``."""
    params: dict[str, Any] = {
        "job_name": "fars-train",
        "nodes": request.nodes,
        "ntasks_per_node": request.tasks_per_node,
        "cpus_per_task": request.cpus_per_task,
        "time": request.time_min,
        "signal_delay_s": SIGNAL_DELAY_S,
    }
    if request.mem_gb is not None:
        params["mem"] = f"{int(request.mem_gb * 1024)}MB"
    if request.gpus_per_node:
        params["gpus_per_node"] = request.gpus_per_node
    if cfg.partition:
        params["partition"] = cfg.partition
    if cfg.account:
        params["account"] = cfg.account
    if cfg.extra:
        params["additional_parameters"] = dict(cfg.extra)
    return params


def local_parameters(request: Request) -> dict[str, Any]:
    """submitit ``LocalExecutor`` parameters for ``request`` (one node; the same time-limit rule)."""
    params: dict[str, Any] = {
        "tasks_per_node": request.tasks_per_node,
        "timeout_min": request.time_min,
        "signal_delay_s": SIGNAL_DELAY_S,
    }
    if request.gpus_per_node:
        params["gpus_per_node"] = request.gpus_per_node
    return params


def preflight_problems(cfg: FarsConfig) -> list[str]:
    """Why the training jobs of ``cfg`` could never run on its SLURM partition (empty when they fit or not on SLURM).

    For ``fars run``'s check before anything runs; asks ``sinfo`` once per process.
    """
    ex, exp = cfg.executor, cfg.experiment
    if ex.kind != "slurm":
        return []
    problems = time_problems(ex.slurm, exp.timeout_s)
    if ex.slurm.cluster != "slurm":
        return problems
    request = build_request(
        ex.slurm,
        ranks=max(1, exp.ranks_per_job // exp.nodes),
        nodes=exp.nodes,
        timeout_s=exp.timeout_s,
        device=exp.device,
        threads=exp.threads_per_job,
    )
    return problems + check_request(request, ex.slurm.partition, FIT_KEYS)


# ---------------------------------------------------------------- job states


@dataclass(frozen=True)
class JobState:
    """A job's state as SLURM reports it (``VANISHED`` when no command knows the job)."""

    state: str
    reason: str = ""

    @property
    def finished(self) -> bool:
        """Whether the job will not change any more."""
        return self.state not in RUNNING and self.state not in PENDING


def parse_squeue(text: str) -> dict[str, JobState]:
    """``squeue -h -t all -o '%i|%T|%r'`` lines as job id -> state."""
    states = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) >= 2 and parts[0]:
            states[parts[0]] = JobState(parts[1].strip().upper(), parts[2].strip() if len(parts) > 2 else "")
    return states


def parse_sacct(text: str) -> dict[str, JobState]:
    """``sacct -n -P -X -o JobID,State,Reason`` lines as job id -> state (``CANCELLED by 0`` -> CANCELLED)."""
    states = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) >= 2 and parts[0] and "." not in parts[0]:
            reason = parts[2].strip() if len(parts) > 2 else ""
            states[parts[0]] = JobState(parts[1].split()[0].upper() if parts[1].strip() else "UNKNOWN", reason)
    return states


async def _command(argv: list[str], timeout_s: float = 30.0) -> tuple[int, str, str]:
    """Run a SLURM command as an asyncio subprocess (no thread of the loop's pool); exit code, stdout, stderr."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=clean_slurm_env(),
        )
    except FileNotFoundError:
        raise SlurmUnavailable(f"{argv[0]} is not installed; executor=slurm needs the SLURM client commands") from None
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise SlurmUnavailable(f"{argv[0]} did not answer within {timeout_s:g} s: is slurmctld up?") from None
    return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


class SlurmQueue:
    """The states of the jobs in flight, one ``squeue`` call per poll for all of them.

    Jobs squeue no longer lists are asked of ``sacct``; a cluster without accounting answers that with an
    error once, and sacct is not asked again. A job neither knows is ``VANISHED``.
    """

    def __init__(self, min_age_s: float = 0.5) -> None:
        self.min_age_s = min_age_s
        self._lock = asyncio.Lock()
        self._states: dict[str, JobState] = {}
        self._taken = -1.0e9  # monotonic time of the last squeue call
        self._asked: set[str] = set()
        self.accounting: bool | None = None  # None: not known yet

    async def state(self, job_id: str) -> JobState:
        """The latest state of ``job_id``, refreshed when older than ``min_age_s`` (one call serves every job)."""
        async with self._lock:
            if job_id not in self._asked or time.monotonic() - self._taken >= self.min_age_s:
                await self._refresh({job_id, *_slurm_ids_in_flight()})
        return self._states.get(job_id, JobState(VANISHED))

    async def _refresh(self, ids: set[str]) -> None:
        joined = ",".join(sorted(ids, key=lambda i: (len(i), i)))
        code, out, err = await _command(["squeue", "-h", "-t", "all", "-j", joined, "-o", "%i|%T|%r"])
        if code != 0 and "Invalid job id" not in err:
            raise SlurmUnavailable(f"squeue failed: {(err or out).strip()[:300]}")
        states = parse_squeue(out) if code == 0 else {}
        missing = ids - states.keys()
        if missing and self.accounting is not False:
            code, out, err = await _command(
                ["sacct", "-n", "-P", "-X", "-o", "JobID,State,Reason", "-j", ",".join(sorted(missing))]
            )
            if code == 0:
                self.accounting = True
                states.update({k: v for k, v in parse_sacct(out).items() if k in missing})
            elif "accounting storage is disabled" in err.lower() or "slurmdbd" in err.lower():
                self.accounting = False
                log.info("this SLURM cluster keeps no accounting (sacct: %s); job states come from squeue", err.strip())
        self._states = states
        self._asked = ids
        self._taken = time.monotonic()


_queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SlurmQueue] = weakref.WeakKeyDictionary()


def queue_for_loop() -> SlurmQueue:
    """The running loop's :class:`SlurmQueue` (an asyncio lock belongs to one loop)."""
    loop = asyncio.get_running_loop()
    if loop not in _queues:
        _queues[loop] = SlurmQueue()
    return _queues[loop]


# ---------------------------------------------------------------- the registry of jobs in flight


@dataclass
class InFlight:
    """A submitted job this process waits on."""

    job_id: str
    cluster: str
    folder: Path
    job: Any = field(repr=False)  # the submitit job


_registry: dict[str, InFlight] = {}
_registry_lock = threading.Lock()
_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="fars-sbatch")  # submissions only, never the loop's


def in_flight() -> list[InFlight]:
    """Jobs submitted by this process that have not ended yet."""
    with _registry_lock:
        return list(_registry.values())


def _slurm_ids_in_flight() -> set[str]:
    return {j.job_id for j in in_flight() if j.cluster == "slurm"}


def _register(entry: InFlight) -> None:
    with _registry_lock:
        _registry[entry.job_id] = entry


def _unregister(job_id: str) -> None:
    with _registry_lock:
        _registry.pop(job_id, None)


def _scancel(job_ids: list[str]) -> None:
    """scancel ``job_ids`` in one call; a controller that does not answer is logged, not raised."""
    if not job_ids:
        return
    try:
        done = subprocess.run(["scancel", *job_ids], capture_output=True, text=True, timeout=30, env=clean_slurm_env())
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("could not cancel SLURM job(s) %s: %s", ", ".join(job_ids), exc)
        return
    if done.returncode != 0 and "already completing or completed" not in done.stderr:
        log.warning("scancel %s: %s", " ".join(job_ids), done.stderr.strip()[:300])


def _cancel(entry: InFlight) -> None:
    if entry.cluster == "slurm":
        _scancel([entry.job_id])
    else:
        with contextlib.suppress(Exception):  # submitit's local and debug jobs: best effort, the process may be gone
            entry.job.cancel(check=False)
        # submitit cancels a local job with SIGINT, which a run started with SIGINT ignored (`cmd &` in a script, a
        # test runner's worker) passes on to its jobs: they trained on. A kill cannot be ignored.
        process = getattr(entry.job, "_process", None)
        with contextlib.suppress(Exception):
            if process is not None and process.poll() is None:
                process.kill()


def cancel_all() -> list[str]:
    """Cancel every job this process has in flight (scancel for SLURM jobs); returns their ids.

    Synchronous and quick, so a signal handler or an ``atexit`` hook can call it; waiters see the jobs
    end as cancelled.
    """
    jobs = in_flight()
    _scancel([j.job_id for j in jobs if j.cluster == "slurm"])
    for job in jobs:
        if job.cluster != "slurm":
            _cancel(job)
    if jobs:
        log.warning("cancelled %d job(s) in flight: %s", len(jobs), ", ".join(j.job_id for j in jobs))
    return [j.job_id for j in jobs]


@dataclass
class _Main:
    """The task :func:`as_main` runs, and whether SIGTERM has cancelled it."""

    task: asyncio.Task[Any] | None = None
    terminated: bool = False


_MAIN = _Main()


async def as_main(awaitable: Awaitable[Any]) -> Any:
    """Await ``awaitable`` as the run's main task: the one SIGTERM cancels when SIGINT is ignored.

    ``asyncio.run`` handles Ctrl-C only when SIGINT has Python's default handler. A process started in the
    background by a script has SIGINT ignored, so there is no handler to pass SIGTERM on to; raising
    KeyboardInterrupt would then land at whatever line is running. Cancelling this task instead stops the
    run the way Ctrl-C does: the pipeline sees CancelledError where it awaits and writes its record.
    """
    _MAIN.task = asyncio.current_task()
    try:
        return await awaitable
    finally:
        _MAIN.task = None


@contextlib.contextmanager
def cancel_jobs_on_exit() -> Iterator[None]:
    """For the body, SIGTERM is handled as Ctrl-C, and on the way out every job still in flight is cancelled.

    Ctrl-C (and so SIGTERM) makes ``asyncio.run`` cancel the pipeline: each job's waiter scancels its job and
    the pipeline writes its RunRecord as interrupted. With SIGINT ignored, SIGTERM cancels the task run by
    :func:`as_main` and the body's CancelledError is raised as KeyboardInterrupt. A job submitted while that
    happened is caught by :func:`cancel_all` at the end. Outside the main thread (no signals there) only the
    last part applies.
    """
    previous: Any = None
    main = threading.current_thread() is threading.main_thread()
    if main:
        previous = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        yield
    except asyncio.CancelledError:
        if _MAIN.terminated:
            raise KeyboardInterrupt from None
        raise
    finally:
        _MAIN.terminated = False
        if main:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
        cancel_all()


def _sigterm_as_interrupt(signum: int, frame: Any) -> None:
    if _MAIN.terminated:  # a second SIGTERM (a process manager and a wrapper both sent one): already stopping
        log.warning("SIGTERM again: the run is already stopping (SIGKILL stops it at once)")
        return
    _MAIN.terminated = True
    log.warning("SIGTERM: stopping the run, cancelling its jobs")
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler) and handler is not _sigterm_as_interrupt:
        handler(signal.SIGINT, frame)  # asyncio.run's own Ctrl-C handler: cancels the main task
        return
    task = _MAIN.task
    if task is not None and not task.done():  # SIGINT ignored: cancel the run as Ctrl-C would
        task.get_loop().call_soon_threadsafe(task.cancel)
        return
    raise KeyboardInterrupt  # no run to cancel: stop here


# ---------------------------------------------------------------- submitting and waiting


def _executor(cfg: SlurmConfig, request: Request, folder: Path) -> Any:
    import submitit

    if cfg.cluster == "slurm":
        executor: Any = clean_env_executor_class()(folder=str(folder), max_num_timeout=0)
        executor.update_parameters(**slurm_parameters(cfg, request))
    elif cfg.cluster == "local":
        executor = submitit.LocalExecutor(folder=str(folder), max_num_timeout=0)
        executor.update_parameters(**local_parameters(request))
    else:
        executor = submitit.DebugExecutor(folder=str(folder))
    return executor


@functools.cache
def clean_env_executor_class() -> Any:
    """submitit's SLURM executor whose sbatch runs without an enclosing job's SLURM_* variables (built on first use,
    so importing this module does not import submitit)."""
    import submitit

    class CleanEnvSlurmExecutor(submitit.SlurmExecutor):
        """sbatch under ``env -u VAR ...`` for every variable :func:`clean_slurm_env` drops."""

        def _make_submission_command(self, submission_file_path: Path) -> list[str]:
            unset = [arg for name in enclosing_job_variables() for arg in ("-u", name)]
            sbatch = ["sbatch", str(submission_file_path)]
            return ["env", *unset, *sbatch] if unset else sbatch

    return CleanEnvSlurmExecutor


def _submit(cfg: SlurmConfig, request: Request, folder: Path, task: RankTask) -> InFlight:
    """Submit in a thread of this module's own pool; the job is registered before the thread returns."""
    job = _executor(cfg, request, folder).submit(task)
    entry = InFlight(str(job.job_id), cfg.cluster, folder, job)
    _register(entry)
    return entry


_fit_checked: dict[tuple[str | None, Request], list[str]] = {}


def _fit(cfg: SlurmConfig, request: Request) -> list[str]:
    key = (cfg.partition, request)
    if key not in _fit_checked:
        _fit_checked[key] = check_request(request, cfg.partition, FIT_KEYS)
    return _fit_checked[key]


def _partition(cfg: SlurmConfig) -> Partition | None:
    try:
        found = choose_partition(read_partitions(), cfg.partition)
    except SlurmUnavailable:
        return None
    return found if isinstance(found, Partition) else None


async def run_slurm_job(
    cfg: SlurmConfig,
    folder: Path,
    module: str,
    args: list[str],
    *,
    ranks: int,
    nodes: int,
    env: dict[str, str],
    timeout_s: float,
    device: str = "cpu",
    threads: int | None = None,
) -> None:
    """Submit one training run, wait for every rank (``timeout_s`` of running), cancel it on time-out or cancellation.

    Raises ``SlurmFitError`` before submitting when the request can never run on its partition,
    ``JobNotStarted`` when SLURM refuses the job, it can never start, pends past ``cfg.max_pending_s`` or
    ends before it ran, ``JobTimeout`` past ``timeout_s``, and ``JobFailed`` (with the log's tail) otherwise.
    """
    loop = asyncio.get_running_loop()
    threads = threads or int(env.get("OMP_NUM_THREADS") or 1)  # job_env sets it from experiment.threads_per_job
    request = build_request(cfg, ranks=ranks, nodes=nodes, timeout_s=timeout_s, device=device, threads=threads)
    problems = time_problems(cfg, timeout_s)
    if cfg.cluster == "slurm":
        problems += await loop.run_in_executor(_pool, _fit, cfg, request)
    if problems:
        raise SlurmFitError("; ".join(problems))
    task = RankTask(module, list(args), {**env, "PYTHONPATH": _pythonpath(env)}, str(folder / "ranks"))
    submission = loop.run_in_executor(_pool, _submit, cfg, request, folder, task)
    try:
        entry = await asyncio.shield(submission)
    except asyncio.CancelledError:  # the job may still be submitted: cancel it when it is
        submission.add_done_callback(lambda f: None if f.cancelled() or f.exception() else _cancel(f.result()))
        raise
    except Exception as exc:  # sbatch refused the job
        raise JobNotStarted(await _refusal(cfg, request, exc)) from exc
    try:
        if cfg.cluster == "debug":
            await loop.run_in_executor(_pool, entry.job.results)
            return
        await _wait(entry, cfg, request, timeout_s)
    except asyncio.CancelledError:
        _cancel(entry)
        raise
    finally:
        _unregister(entry.job_id)


async def _refusal(cfg: SlurmConfig, request: Request, exc: BaseException) -> str:
    partition = await asyncio.get_running_loop().run_in_executor(_pool, _partition, cfg)
    where = f"; {partition.describe()}" if partition else ""
    text = " ".join(str(exc).split())[-600:]
    return f"SLURM refused the job ({request.describe()}{where}): {text}"


async def _wait(entry: InFlight, cfg: SlurmConfig, request: Request, timeout_s: float) -> None:
    """Poll the job until it ends; raise as :func:`run_slurm_job` says."""
    state_of: Callable[[], Awaitable[JobState]]
    if entry.cluster == "slurm":
        queue = queue_for_loop()

        async def state_of() -> JobState:
            return await queue.state(entry.job_id)
    else:

        async def state_of() -> JobState:
            return _local_state(entry.job)

    final = await wait_for_state(
        state_of,
        entry.job_id,
        poll_s=cfg.poll_s,
        timeout_s=timeout_s,
        max_pending_s=cfg.max_pending_s,
        describe_pending=lambda reason: _pending_text(cfg, request, reason),
        cancel=lambda: _cancel(entry),
        folder=entry.folder,
    )
    outcomes = await _outcomes(entry.job, wait_s=5.0 if final.state in ("COMPLETED", VANISHED) else 0.0)
    errors = [trace for outcome, trace in outcomes if outcome == "error"]
    if errors:
        raise JobFailed(f"SLURM job {entry.job_id} failed; logs in {entry.folder}:\n{str(errors[0])[-1500:]}")
    if final.state == "COMPLETED" and all(o is not None for o, _ in outcomes):
        return
    if final.state == VANISHED and outcomes and all(o == "success" for o, _ in outcomes):
        return  # left the queue (no accounting) after every task wrote its result
    # SLURM opens a job's output file when it starts: a job that ran between two polls is still seen as started
    started = final.reason.startswith("started:") or Path(entry.job.paths.stdout).exists()
    reason = final.reason.removeprefix("started:")
    what = "vanished from the queue" if final.state == VANISHED else f"ended {final.state}"
    detail = f" ({reason})" if reason and reason != "None" else ""
    tail = _log_tail(entry.job)
    if not started:
        raise JobNotStarted(
            f"SLURM job {entry.job_id} {what} before it started{detail}; {request.describe()}; logs in {entry.folder}"
        )
    raise JobFailed(f"SLURM job {entry.job_id} {what}{detail} without a result; logs in {entry.folder}{tail}")


async def wait_for_state(
    state_of: Callable[[], Awaitable[JobState]],
    job_id: str,
    *,
    poll_s: float,
    timeout_s: float,
    max_pending_s: float | None,
    describe_pending: Callable[[str], str],
    cancel: Callable[[], None],
    folder: Path,
) -> JobState:
    """Poll ``state_of`` (0.5 s at first, growing to ``poll_s``) until the job ends; its final state.

    The final state's reason starts with ``started:`` when the job was seen running. A pending reason is
    logged when it changes; one that :func:`never_starts` cancels the job at once, and so does pending past
    ``max_pending_s``; running past ``timeout_s`` cancels it as a time-out. A query that fails (the
    controller restarting) is retried for up to 5 minutes.
    """
    submitted = time.monotonic()
    started: float | None = None
    interval = min(0.5, poll_s)
    reason_seen: str | None = None
    last_note = submitted
    failing_since: float | None = None
    while True:
        await asyncio.sleep(interval)
        interval = min(poll_s, interval * 1.5)
        try:
            state = await state_of()
            failing_since = None
        except SlurmUnavailable as exc:
            failing_since = failing_since or time.monotonic()
            if time.monotonic() - failing_since > 300:
                cancel()
                raise JobFailed(f"SLURM job {job_id}: its state could not be read for 5 minutes ({exc})") from exc
            log.warning("SLURM job %s: %s; asking again", job_id, exc)
            continue
        now = time.monotonic()
        if state.state in PENDING and started is None:
            if state.reason != reason_seen:
                reason_seen = state.reason
                if state.reason and state.reason != "None":
                    log.info("SLURM job %s %s", job_id, describe_pending(state.reason))
            if never_starts(state.reason):
                cancel()
                raise JobNotStarted(f"SLURM job {job_id} can never start, {describe_pending(state.reason)}")
            waited = now - submitted
            if max_pending_s is not None and waited > max_pending_s:
                cancel()
                raise JobNotStarted(
                    f"SLURM job {job_id} was cancelled after {waited:.0f} s {describe_pending(state.reason)} "
                    "(executor.slurm.max_pending_s)"
                )
            if now - last_note >= 300:
                last_note = now
                log.warning("SLURM job %s still %s after %.0f s", job_id, describe_pending(state.reason), waited)
        elif state.state in RUNNING or state.state in PENDING:  # requeued after it ran: its clock goes on
            if started is None:
                started = now
                log.info("SLURM job %s running after %.0f s in the queue; logs in %s", job_id, now - submitted, folder)
            if now - started > timeout_s:
                cancel()
                raise JobTimeout(f"SLURM job {job_id} ran past {timeout_s:g} s and was cancelled; logs in {folder}")
        else:
            prefix = "started:" if started is not None or state.state in ("COMPLETED", "FAILED", "TIMEOUT") else ""
            return JobState(state.state, prefix + state.reason)


def never_starts(reason: str) -> bool:
    """Whether a pending reason means the job can never start (its partition, account or QOS will not hold it)."""
    per_job_limit = reason.startswith(("QOS", "Assoc")) and "PerJob" in reason  # e.g. QOSMaxCpuPerJobLimit
    return per_job_limit or any(reason.startswith(r) for r in HARD_REASONS)


def _pending_text(cfg: SlurmConfig, request: Request, reason: str) -> str:
    """``pending (Reason): needs ..., partition ... has ...``: the job's request beside what its partition offers."""
    partition = _partition(cfg) if cfg.cluster == "slurm" else None
    where = f"; {partition.describe()}" if partition else ""
    return f"pending ({reason or 'no reason given'}): {request.describe()}{where}"


def _local_state(job: Any) -> JobState:
    """A submitit local job's state from its controller process (running, or ended with its exit code)."""
    process = getattr(job, "_process", None)
    if process is None:
        return JobState("COMPLETED" if job.paths.result_pickle.exists() else VANISHED)
    code = process.poll()
    if code is None:
        return JobState("RUNNING")
    return JobState("COMPLETED" if code == 0 else ("CANCELLED" if code < 0 else "FAILED"), "started:")


async def _outcomes(job: Any, wait_s: float) -> list[tuple[str | None, Any]]:
    """Each task's (outcome, result or trace) from its result pickle; (None, None) for a task that wrote none.

    A finished job's files may show up a moment late on a shared file system: up to ``wait_s`` is waited.
    """
    from submitit.core.utils import pickle_load

    tasks = [job.task(i) for i in range(job.num_tasks)] if job.num_tasks > 1 else [job]
    deadline = time.monotonic() + wait_s
    while not all(t.paths.result_pickle.exists() for t in tasks) and time.monotonic() < deadline:
        await asyncio.sleep(0.25)
    outcomes: list[tuple[str | None, Any]] = []
    for t in tasks:
        try:
            outcome, value = pickle_load(t.paths.result_pickle)
        except (OSError, EOFError):
            outcome, value = None, None
        outcomes.append((outcome, value))
    return outcomes


def _log_tail(job: Any) -> str:
    for path in (job.paths.stderr, job.paths.stdout):
        with contextlib.suppress(OSError):
            text = Path(path).read_text(errors="replace").strip()
            if text:
                return f":\n{text[-1500:]}"
    return ""


def _pythonpath(env: dict[str, str]) -> str:
    """The repository root first, so tasks import ``experiments`` wherever the cluster starts them."""
    root = str(Path(__file__).resolve().parents[2])
    rest = env.get("PYTHONPATH") or os.environ.get("PYTHONPATH", "")
    return os.pathsep.join(p for p in (root, rest) if p)
