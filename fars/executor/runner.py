"""The run's one job runner: every training job of every project goes through it.

On the local executor it holds the run's slot pool (whole GPUs, or CPU slots) and runs each job as a
subprocess, or inside ``fars.sandbox`` when the job loads model-written code; on SLURM it submits
through submitit with a cap on jobs in flight. What a job reports is accepted only through
``fars.executor.results.accept_metrics`` (read, validated and checked). A job whose folder already holds a
valid ``metrics.json`` (a resumed project) is not run again; any other folder is recreated clean before the
job runs in it (a killed run's leftovers, or links and special files planted by model-written code).
Every file of a job folder is read and written through ``fars.safe_files`` (no link followed, no FIFO
blocked on, bounded sizes), off the event loop every project shares.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import replace
from pathlib import Path

from experiments.metrics import Metrics
from fars.config import ExecutorConfig, ExperimentConfig, SandboxConfig
from fars.executor.launch import JobFailed, JobTimeout, build_command, job_env, run_command
from fars.executor.pool import PoolError, SlotPool
from fars.executor.results import METRICS_FILE, ResultRejected, accept_metrics, check_result, read_metrics
from fars.executor.slurm import run_slurm_job
from fars.safe_files import UnsafeFileError, fresh_dir, open_append, write_atomic
from fars.sandbox import SandboxLimits, run_sandboxed_async

log = logging.getLogger(__name__)


class RunnerConfigError(ValueError):
    """The experiment and executor settings cannot run on this executor (said before anything runs)."""


def runner_problems(exp: ExperimentConfig, ex: ExecutorConfig) -> list[str]:
    """Every reason the runner could not be built for these settings (empty when it can)."""
    if ex.kind != "local":
        return []
    problems = []
    if exp.nodes > 1:
        problems.append(f"experiment.nodes={exp.nodes} needs executor=slurm (the local pool is one machine)")
    try:
        pool = SlotPool.for_config(exp.device, ex.gpus, ex.slots)
    except PoolError as exc:
        return [*problems, str(exc)]
    if exp.ranks_per_job > pool.capacity:
        problems.append(
            f"experiment.ranks_per_job={exp.ranks_per_job} but the local pool has {pool.capacity} "
            f"{pool.kind} slot(s); lower it or raise executor.slots / executor.gpus"
        )
    return problems


class Runner:
    """Runs training jobs for every project of a run: the local pool, or SLURM via submitit."""

    def __init__(self, experiment: ExperimentConfig, executor: ExecutorConfig) -> None:
        problems = runner_problems(experiment, executor)
        if problems:
            raise RunnerConfigError("; ".join(problems))
        self.experiment = experiment
        self.executor = executor
        self.pool: SlotPool | None = None
        self.slurm_slots: asyncio.Semaphore | None = None
        if executor.kind == "local":
            self.pool = SlotPool.for_config(experiment.device, executor.gpus, executor.slots)
        else:
            self.slurm_slots = asyncio.Semaphore(executor.max_jobs or 10**6)

    async def train(
        self,
        target: str,
        args: list[str],
        out_dir: Path,
        *,
        metric: str | None = None,
        seed: int | None = None,
        ranks: int | None = None,
        timeout_s: float | None = None,
        sandbox: SandboxConfig | None = None,
        readable: tuple[Path, ...] = (),
        env: dict[str, str] | None = None,
    ) -> Metrics:
        """Run one job (or reuse its finished metrics) and return its accepted metrics; ``JobFailed`` (a
        ``ResultRejected`` for a result that must not be used) or ``JobTimeout`` otherwise.

        The result is checked against the template's ``metric`` and the job's ``seed`` where given (its own
        metric otherwise): NaN, 1e300 or a missing metric fail the job. ``target`` is the template's entry point (a script path) or a module. With ``sandbox`` (every
        job that loads model-written code) the job runs in ``fars.sandbox``: no network, no secrets,
        read-only host but ``readable``, its own folder, hard limits. ``env`` adds variables (the
        subject gateway's address for inference templates) to the job's scrubbed environment.
        """
        finished = await asyncio.to_thread(finished_metrics, out_dir)
        if finished is not None:
            return check_result(finished, metric, seed=seed)
        try:
            await asyncio.to_thread(fresh_dir, out_dir)  # nothing an earlier attempt left is reused or followed
        except OSError as exc:
            raise JobFailed(f"job folder {out_dir} could not be recreated clean: {exc}") from None
        exp = self.experiment
        ranks = ranks or exp.ranks_per_job
        timeout = timeout_s or exp.timeout_s
        args = [*args, "--out_dir", str(out_dir)]
        if self.pool is not None:
            async with self.pool.lease(ranks, name=str(out_dir)) as lease:
                cmd = build_command(target, args, ranks=ranks, launcher=self.executor.launcher, device=exp.device)
                job = job_env(exp.threads_per_job, {**lease.env(), **(env or {})})
                write_atomic(out_dir, "command.json", json.dumps({"argv": cmd, "slots": lease.ids}))
                if sandbox is None:
                    open_append(out_dir, "train.log").close()
                    await run_command(cmd, job, out_dir / "train.log", timeout)
                else:
                    gpus = lease.ids if lease.kind == "gpu" else ()
                    await _run_in_sandbox(cmd, out_dir, sandbox, timeout, gpus, readable, job)
                    return await asyncio.to_thread(accept_metrics, out_dir, metric, seed=seed, rewrite=True)
        elif sandbox is not None:
            raise RunnerConfigError(
                "model-written code runs only on the local executor, inside fars.sandbox; "
                "experiment.code.enabled=false with executor=slurm"
            )
        else:
            assert self.slurm_slots is not None
            async with self.slurm_slots:
                await run_slurm_job(
                    self.executor.slurm,
                    out_dir / self.executor.slurm.folder,
                    target,
                    args,
                    ranks=max(1, ranks // exp.nodes),
                    nodes=exp.nodes,
                    env=job_env(exp.threads_per_job, env),
                    timeout_s=timeout,
                    device=exp.device,
                    threads=exp.threads_per_job,
                )
        return await asyncio.to_thread(accept_metrics, out_dir, metric, seed=seed)


def finished_metrics(out_dir: Path) -> Metrics | None:
    """The metrics of a job that finished in an earlier session, or None when it has to run (again).

    A half-written, invalid or planted file (a link, FIFO, oversized) is never followed or trusted:
    the job runs again in a folder recreated clean. A readable result is still checked by the caller
    (``check_result``): poison fails the job as it did the first time, rather than running it again.
    """
    try:
        return read_metrics(out_dir)
    except ResultRejected as exc:
        if os.path.lexists(out_dir / METRICS_FILE):
            log.warning("%s; running the job again in a clean folder", exc)
        return None
    except (FileNotFoundError, UnsafeFileError):  # no folder yet, or a link in its place
        return None


# variables a sandboxed job needs from the job environment (the sandbox builds the rest itself)
_SANDBOX_PASS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "PYTHONUNBUFFERED", "CUDA_VISIBLE_DEVICES")


def template_runtime() -> tuple[list[str], str]:
    """What a sandboxed template job may read of the harness, and the PYTHONPATH that finds it: the
    experiments package, and the one reading path its spec loader uses (``fars/__init__.py`` and
    ``fars/safe_files.py``, nothing else of fars), where this harness found them (a checkout, an editable or
    a wheel install alike)."""
    import experiments
    import fars
    import fars.safe_files

    files = [str(fars.__file__), str(fars.safe_files.__file__)]
    roots = dict.fromkeys([*(str(Path(p).parent) for p in experiments.__path__), str(Path(files[0]).parent.parent)])
    return [*experiments.__path__, *files], os.pathsep.join(roots)


async def _run_in_sandbox(
    cmd: list[str],
    out_dir: Path,
    sandbox: SandboxConfig,
    timeout_s: float,
    gpus: tuple[int, ...],
    readable: tuple[Path, ...],
    env: dict[str, str],
) -> None:
    """Run a job that loads model-written code inside the sandbox; JobFailed/JobTimeout like any job."""
    limits = replace(SandboxLimits.from_config(sandbox), wall_s=min(timeout_s, sandbox.wall_s))
    passed = {k: v for k, v in env.items() if k in _SANDBOX_PASS}
    mounts, passed["PYTHONPATH"] = template_runtime()
    result = await run_sandboxed_async(
        cmd,
        out_dir,
        limits,
        gpus=gpus,
        env=passed,
        readable=[*mounts, *(str(p) for p in readable)],
        backend=sandbox.backend,
        require_network_isolation=sandbox.require_network_isolation,
        log_path=out_dir.parent / f"{out_dir.name}.log",
        record_path=out_dir.parent / f"{out_dir.name}.sandbox.json",
    )
    if result.timed_out:
        raise JobTimeout(f"sandboxed job {out_dir.name} ran past {limits.wall_s:.0f}s and was killed")
    if not result.ok:
        raise JobFailed(
            f"sandboxed job {out_dir.name}: {result.summary()}\n{(result.stderr_tail or result.stdout_tail)[-1500:]}"
        )
