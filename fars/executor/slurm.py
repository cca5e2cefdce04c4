"""Run training jobs on SLURM through submitit (the engine of Hydra's submitit launcher).

One submitit job per training run; ``nodes x tasks_per_node`` tasks, one per rank. Each task reads its
place from ``submitit.JobEnvironment`` and starts the template with the rendezvous variables DDP and
DeepSpeed read (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``), so
multi-node DeepSpeed needs no launcher of its own. ``slurm.cluster=local`` runs the very same tasks
with submitit's local executor, which is how the tests exercise this path.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fars.config import SlurmConfig
from fars.executor.launch import JobFailed, JobTimeout


@dataclass
class RankTask:
    """What each SLURM task runs: the template module as one rank of the job (picklable)."""

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
        log = Path(self.log_dir) / f"rank{job.global_rank}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            code = subprocess.call(
                [sys.executable, "-m", self.module, *self.args], env=env, stdout=out, stderr=subprocess.STDOUT
            )
        if code != 0:
            raise RuntimeError(f"rank {job.global_rank} exited {code}:\n{log.read_text(errors='replace')[-1500:]}")
        return code


def executor_parameters(cfg: SlurmConfig, ranks: int, nodes: int, timeout_s: float, device: str) -> dict[str, Any]:
    """submitit parameters for a job of ``ranks`` ranks per node on ``nodes`` nodes."""
    params: dict[str, Any] = {
        "nodes": nodes,
        "tasks_per_node": ranks,
        "cpus_per_task": cfg.cpus_per_task,
        "timeout_min": max(1, int(timeout_s // 60) + 1),
        "name": "fars-train",
    }
    if device == "cuda":
        params["gpus_per_node"] = cfg.gpus_per_node or ranks
    if cfg.cluster == "slurm":
        params["mem_gb"] = cfg.mem_gb
        if cfg.partition:
            params["slurm_partition"] = cfg.partition
        if cfg.account:
            params["slurm_account"] = cfg.account
        if cfg.extra:
            params["slurm_additional_parameters"] = dict(cfg.extra)
    return params


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
) -> None:
    """Submit one training run, wait for every rank, cancel it on time-out or cancellation."""
    import submitit

    executor = submitit.AutoExecutor(folder=str(folder), cluster=cfg.cluster)
    executor.update_parameters(**executor_parameters(cfg, ranks, nodes, timeout_s, device))
    task = RankTask(module, list(args), {**env, "PYTHONPATH": _pythonpath(env)}, str(folder / "ranks"))
    job = executor.submit(task)
    try:
        await asyncio.wait_for(asyncio.to_thread(job.results), timeout=timeout_s)
    except asyncio.TimeoutError:
        job.cancel(check=False)
        raise JobTimeout(
            f"SLURM job {job.job_id} ran past {timeout_s:g} s and was cancelled; logs in {folder}"
        ) from None
    except asyncio.CancelledError:
        job.cancel(check=False)
        raise
    except Exception as exc:  # submitit re-raises the task's failure as its own error types
        raise JobFailed(f"SLURM job {job.job_id} failed; logs in {folder}:\n{str(exc)[-1500:]}") from exc


def _pythonpath(env: dict[str, str]) -> str:
    """The repository root first, so tasks import ``experiments`` wherever the cluster starts them."""
    root = str(Path(__file__).resolve().parents[2])
    rest = env.get("PYTHONPATH") or os.environ.get("PYTHONPATH", "")
    return os.pathsep.join(p for p in (root, rest) if p)
