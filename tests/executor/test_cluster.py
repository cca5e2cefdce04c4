"""Reading ``sinfo`` and checking a request against a partition, without a cluster."""

from __future__ import annotations

import pytest

from fars.executor.cluster import (
    LAUNCHER_KEYS,
    Partition,
    Request,
    choose_partition,
    clean_slurm_env,
    fit_problems,
    launcher_problems,
    parse_sinfo,
    parse_time_min,
    time_limit_min,
)
from fars.executor.slurm import FIT_KEYS

# `sinfo -N -h -o SINFO_FORMAT` of a two-partition cluster: a CPU partition with two nodes, a GPU one
SINFO = """\
debug|debug*|up|2|19284|(null)|infinite|vm
debug|debug*|up|4|7800|(null)|infinite|vm2
gpu|gpu|up|64|512000|gpu:a100:8(S:0-1),shard:2|2-00:00:00|g1
closed|closed|down|2|19284|(null)|30:00|vm
"""


def test_partitions_are_read_from_sinfo() -> None:
    debug, gpu, closed = parse_sinfo(SINFO)
    assert debug == Partition("debug", True, True, 2, 4, 19284, 0, None)
    assert (gpu.gpus_per_node, gpu.max_time_min, gpu.default) == (8, 2880, False)
    assert not closed.up and closed.max_time_min == 30
    assert "state DOWN" in closed.describe() and "has 2 CPUs and 18.8 GB per node" in closed.describe()


@pytest.mark.parametrize(
    ("text", "minutes"),
    [("infinite", None), ("UNLIMITED", None), ("30", 30), ("30:00", 30), ("2:00:00", 120), ("1-12:00:00", 2160),
     ("0:30", 1)],
)  # fmt: skip
def test_slurm_times(text: str, minutes: int | None) -> None:
    assert parse_time_min(text) == minutes


def test_default_and_named_partitions() -> None:
    parts = parse_sinfo(SINFO)
    assert isinstance(choose_partition(parts, None), Partition)
    assert choose_partition(parts, "gpu") == parts[1]
    assert "does not exist; the cluster has debug, gpu, closed" in str(choose_partition(parts, "big"))


def test_a_request_beyond_its_partition_names_each_setting() -> None:
    debug = parse_sinfo(SINFO)[0]
    request = Request(nodes=3, tasks_per_node=2, cpus_per_task=4, mem_gb=32, gpus_per_node=1, time_min=13)
    problems = fit_problems(request, debug, FIT_KEYS)
    assert len(problems) == 4
    cpus, mem, gpus, nodes = problems
    assert cpus.startswith("executor.slurm.cpus_per_task: the job needs 8 CPUs per node") and "has 4" in cpus
    assert mem.startswith("executor.slurm.mem_gb=32") and "18.8 GB" in mem
    assert gpus.startswith("executor.slurm.gpus_per_node") and nodes.startswith("experiment.nodes=3")
    fits = Request(nodes=1, tasks_per_node=2, cpus_per_task=1, mem_gb=None, gpus_per_node=0, time_min=13)
    assert fit_problems(fits, debug, FIT_KEYS) == []
    assert fit_problems(fits, parse_sinfo(SINFO)[2], FIT_KEYS) == []  # a DOWN partition still takes jobs: they pend


def test_a_time_limit_past_the_partitions_maximum() -> None:
    closed = parse_sinfo(SINFO)[2]
    request = Request(nodes=1, tasks_per_node=1, cpus_per_task=1, mem_gb=None, gpus_per_node=0, time_min=45)
    (problem,) = fit_problems(request, closed, FIT_KEYS)
    assert "needs a time limit of 45 min, partition closed allows 30 min" in problem


def test_the_time_limit_leaves_room_for_the_warning_signal() -> None:
    assert time_limit_min(600, 90) == 13 and time_limit_min(30, 90) == 3
    assert all(time_limit_min(t, 90) * 60 - 90 > t for t in (1, 59, 60, 61, 100, 150, 599, 3600))


def test_only_the_slurm_launcher_is_checked() -> None:
    assert launcher_problems({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"}) == []
    assert LAUNCHER_KEYS["cpus"] == "hydra.launcher.cpus_per_task"


def test_an_enclosing_jobs_variables_are_dropped() -> None:
    env = {"PATH": "/bin", "SLURM_ARRAY_JOB_ID": "3", "SLURM_JOB_ID": "4", "SLURM_CONF": "/x", "SUBMITIT_FOLDER": "f"}
    assert clean_slurm_env(env) == {"PATH": "/bin", "SLURM_CONF": "/x"}
