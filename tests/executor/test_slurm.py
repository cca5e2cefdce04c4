"""The SLURM path through submitit's local executor: two tasks become two DDP ranks of one training run."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from experiments.metrics import read_metrics
from fars.config import SlurmConfig
from fars.executor.launch import JobFailed, job_env
from fars.executor.slurm import executor_parameters, run_slurm_job


def test_parameters_for_a_multi_node_gpu_job() -> None:
    cfg = SlurmConfig(partition="gpu", account="lab", gpus_per_node=8, extra={"constraint": "h100"})
    params = executor_parameters(cfg, ranks=8, nodes=4, timeout_s=3600, device="cuda")
    assert params["nodes"] == 4 and params["tasks_per_node"] == 8 and params["gpus_per_node"] == 8
    assert params["slurm_partition"] == "gpu" and params["slurm_account"] == "lab"
    assert params["slurm_additional_parameters"] == {"constraint": "h100"} and params["timeout_min"] == 61
    local = executor_parameters(SlurmConfig(cluster="local"), ranks=2, nodes=1, timeout_s=60, device="cpu")
    assert "mem_gb" not in local and "gpus_per_node" not in local


@pytest.mark.slow
def test_two_tasks_train_as_two_ranks_with_submitit_local(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["--engine", "ddp", "--steps", "40", "--eval_every", "10", "--seed", "2", "--out_dir", str(out)]
    asyncio.run(
        run_slurm_job(
            SlurmConfig(cluster="local"),
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
                SlurmConfig(cluster="local"),
                tmp_path / "submitit",
                "experiments.modadd.train",
                ["--steps", "0", "--out_dir", str(tmp_path / "run"), "--modulus", "not-a-number"],
                ranks=1,
                nodes=1,
                env=job_env(1),
                timeout_s=120,
            )
        )
