"""What a SLURM partition offers (from ``sinfo``) and whether a job's request fits it.

A request that can never run on its partition (more CPUs, memory or GPUs per node than any node has,
more nodes than the partition, a time limit past its maximum) is refused before anything is submitted,
with one message per problem that names the setting to change. The same facts word the reason of a
job that pends: "needs 4 CPUs per node, partition debug has 2".

``sinfo`` and the other SLURM commands run with :func:`clean_slurm_env`: the variables of an enclosing
SLURM job (a sweep job started by Hydra's SLURM launcher) would otherwise leak into the new job.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
from dataclasses import dataclass, field

# an enclosing job's variables that must not reach sbatch or the new job (SLURM_CONF still says where the cluster is)
_KEEP_SLURM = ("SLURM_CONF",)


class SlurmUnavailable(RuntimeError):
    """The SLURM commands are missing or the controller does not answer."""


def clean_slurm_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's) without the SLURM_* and SUBMITIT_* variables of an enclosing job.

    Inside a job of a SLURM array (a sweep under ``hydra/launcher=slurm``) the SLURM_ARRAY_* variables are
    set; a job submitted from there inherits them, and submitit in the new job then looks for the array
    task's pickle instead of its own ("could not find submitted jobs").
    """
    source = os.environ if env is None else env
    return {
        k: v for k, v in source.items() if k in _KEEP_SLURM or not (k.startswith("SLURM_") or k.startswith("SUBMITIT_"))
    }


def enclosing_job_variables(env: dict[str, str] | None = None) -> list[str]:
    """The variables :func:`clean_slurm_env` drops (what ``env -u`` must unset for sbatch)."""
    source = dict(os.environ) if env is None else env
    kept = clean_slurm_env(source)
    return sorted(k for k in source if k not in kept)


@dataclass(frozen=True)
class Partition:
    """One partition as ``sinfo`` reports it; per-node figures are those of its largest node."""

    name: str
    up: bool
    default: bool
    nodes: int
    cpus_per_node: int
    mem_mb_per_node: int
    gpus_per_node: int
    max_time_min: int | None  # None: no limit

    def describe(self) -> str:
        """The partition in a few words, for messages."""
        limit = "no time limit" if self.max_time_min is None else f"time limit {self.max_time_min} min"
        gpus = f", {self.gpus_per_node} GPU(s)" if self.gpus_per_node else ""
        state = "" if self.up else ", state DOWN"
        return (
            f"partition {self.name} has {self.cpus_per_node} CPUs and {self.mem_mb_per_node / 1024:.1f} GB per "
            f"node{gpus}, {self.nodes} node(s), {limit}{state}"
        )


@dataclass(frozen=True)
class Request:
    """What one job asks of SLURM; ``mem_gb`` None leaves memory to the cluster's default."""

    nodes: int
    tasks_per_node: int
    cpus_per_task: int
    mem_gb: float | None
    gpus_per_node: int
    time_min: int

    @property
    def cpus_per_node(self) -> int:
        """CPUs the job needs on each of its nodes."""
        return self.tasks_per_node * self.cpus_per_task

    def describe(self) -> str:
        """The request in a few words, for messages."""
        mem = "" if self.mem_gb is None else f" and {self.mem_gb:g} GB"
        gpus = f" and {self.gpus_per_node} GPU(s)" if self.gpus_per_node else ""
        return f"needs {self.cpus_per_node} CPUs{mem}{gpus} per node on {self.nodes} node(s) for {self.time_min} min"


def time_limit_min(timeout_s: float, signal_delay_s: int, margin_s: float = 60.0) -> int:
    """A SLURM time limit (minutes) long enough that a ``timeout_s`` time-out of FARS's own fires first.

    submitit asks SLURM for a warning signal (USR2) ``signal_delay_s`` before the limit and ends a task that
    cannot checkpoint when it arrives, so the limit leaves that delay plus ``margin_s`` after the time-out.
    """
    return max(1, math.ceil((timeout_s + signal_delay_s + margin_s) / 60))


def parse_time_min(text: str) -> int | None:
    """A SLURM time (``infinite``, ``30``, ``30:00``, ``2:00:00``, ``1-12:00:00``) in whole minutes; None: no limit."""
    text = text.strip()
    if text.lower() in ("infinite", "unlimited", "n/a", ""):
        return None
    days = 0
    if "-" in text:
        head, text = text.split("-", 1)
        days = int(head)
    parts = [int(p) for p in text.split(":")]
    if len(parts) == 1:  # minutes
        hours, minutes, seconds = 0, parts[0], 0
    elif len(parts) == 2:  # minutes:seconds
        hours, (minutes, seconds) = 0, parts
    else:
        hours, minutes, seconds = parts[-3:]
    return days * 1440 + hours * 60 + minutes + (1 if seconds else 0)


def _gpus(gres: str) -> int:
    """GPUs per node in a GRES string such as ``gpu:8`` or ``gpu:a100:4(S:0-1),shard:2``."""
    total = 0
    for item in gres.split(","):
        fields = re.sub(r"\(.*?\)", "", item).split(":")
        if fields[0] == "gpu" and len(fields) > 1 and fields[-1].isdigit():
            total += int(fields[-1])
    return total


def _int(text: str) -> int:
    match = re.match(r"\d+", text.strip())
    return int(match.group()) if match else 0


SINFO_FORMAT = "%R|%P|%a|%c|%m|%G|%l|%n"  # one line per node and partition


@dataclass
class _Nodes:
    """What the lines of one partition say, gathered node by node (the largest node's resources)."""

    default: bool
    up: bool
    nodes: set[str] = field(default_factory=set)
    cpus: int = 0
    mem: int = 0
    gpus: int = 0
    limit: int | None = None


def parse_sinfo(text: str) -> list[Partition]:
    """Partitions from ``sinfo -N -h -o SINFO_FORMAT`` output (one line per node of each partition)."""
    found: dict[str, _Nodes] = {}
    for line in text.splitlines():
        fields = line.strip().split("|")
        if len(fields) < 8:
            continue
        name, display, avail, cpus, mem, gres, limit, node = fields[:8]
        entry = found.setdefault(name, _Nodes(default=display.endswith("*"), up=avail.strip().lower() == "up"))
        entry.nodes.add(node)
        entry.cpus = max(entry.cpus, _int(cpus))
        entry.mem = max(entry.mem, _int(mem))
        entry.gpus = max(entry.gpus, _gpus(gres))
        entry.limit = parse_time_min(limit)
    return [
        Partition(
            name=name,
            up=e.up,
            default=e.default,
            nodes=len(e.nodes),
            cpus_per_node=e.cpus,
            mem_mb_per_node=e.mem,
            gpus_per_node=e.gpus,
            max_time_min=e.limit,
        )
        for name, e in found.items()
    ]


_partitions_cache: dict[str, list[Partition]] = {}


def read_partitions(refresh: bool = False) -> list[Partition]:
    """Every partition of the cluster, from ``sinfo`` (cached for the process; ``refresh`` asks again)."""
    key = os.environ.get("SLURM_CONF", "")
    if not refresh and key in _partitions_cache:
        return _partitions_cache[key]
    try:
        done = subprocess.run(
            ["sinfo", "-N", "-h", "-o", SINFO_FORMAT],
            capture_output=True,
            text=True,
            timeout=30,
            env=clean_slurm_env(),
        )
    except FileNotFoundError:
        raise SlurmUnavailable(
            "sinfo is not installed: executor=slurm and hydra/launcher=slurm need the SLURM client commands "
            "on this machine (or use executor.slurm.cluster=local to run the same jobs here)"
        ) from None
    except subprocess.TimeoutExpired:
        raise SlurmUnavailable("sinfo did not answer within 30 s: is slurmctld running?") from None
    if done.returncode != 0:
        raise SlurmUnavailable(f"sinfo failed: {(done.stderr or done.stdout).strip()[:300]}")
    _partitions_cache[key] = parse_sinfo(done.stdout)
    return _partitions_cache[key]


def choose_partition(partitions: list[Partition], name: str | None) -> Partition | str:
    """The partition a job goes to (``name``, else the cluster's default), or a message saying why there is none."""
    if not partitions:
        return "sinfo lists no partition: the cluster has no nodes configured"
    if name is None:
        default = next((p for p in partitions if p.default), None)
        if default is None:
            names = ", ".join(p.name for p in partitions)
            return f"the cluster has no default partition; set one of {names}"
        return default
    match = next((p for p in partitions if p.name == name), None)
    if match is None:
        return f"partition {name!r} does not exist; the cluster has {', '.join(p.name for p in partitions)}"
    return match


def fit_problems(request: Request, partition: Partition, keys: dict[str, str]) -> list[str]:
    """Why ``request`` can never start on ``partition`` (empty when it fits).

    ``keys`` names the setting behind each figure (``cpus``, ``mem``, ``gpus``, ``nodes``, ``time``,
    ``partition``) so every message says what to change.
    """
    problems = []
    where = f"partition {partition.name}"
    if request.cpus_per_node > partition.cpus_per_node:
        problems.append(
            f"{keys['cpus']}: the job needs {request.cpus_per_node} CPUs per node ({request.tasks_per_node} task(s) x "
            f"{request.cpus_per_task} CPU(s)), {where} has {partition.cpus_per_node}; lower it or pick another "
            f"partition with {keys['partition']}"
        )
    if request.mem_gb is not None and request.mem_gb * 1024 > partition.mem_mb_per_node:
        problems.append(
            f"{keys['mem']}={request.mem_gb:g}: the job needs {request.mem_gb:g} GB per node, {where} has "
            f"{partition.mem_mb_per_node / 1024:.1f} GB; lower it (null leaves memory to the cluster's default)"
        )
    if request.gpus_per_node > partition.gpus_per_node:
        problems.append(
            f"{keys['gpus']}: the job needs {request.gpus_per_node} GPU(s) per node, {where} has "
            f"{partition.gpus_per_node}; pick a GPU partition with {keys['partition']}"
        )
    if request.nodes > partition.nodes:
        problems.append(f"{keys['nodes']}={request.nodes}: {where} has {partition.nodes} node(s)")
    if partition.max_time_min is not None and request.time_min > partition.max_time_min:
        problems.append(
            f"{keys['time']}: the job needs a time limit of {request.time_min} min, {where} allows "
            f"{partition.max_time_min} min; lower it or pick another partition with {keys['partition']}"
        )
    return problems


def check_request(request: Request, partition_name: str | None, keys: dict[str, str]) -> list[str]:
    """``sinfo``'s view of whether ``request`` fits its partition: every problem, or a note that SLURM is missing."""
    try:
        partitions = read_partitions()
    except SlurmUnavailable as exc:
        return [str(exc)]
    partition = choose_partition(partitions, partition_name)
    if isinstance(partition, str):
        return [f"{keys['partition']}: {partition}"]
    return fit_problems(request, partition, keys)


LAUNCHER_KEYS = {
    "cpus": "hydra.launcher.cpus_per_task",
    "mem": "hydra.launcher.mem_gb",
    "gpus": "hydra.launcher.gpus_per_node",
    "nodes": "hydra.launcher.nodes",
    "time": "hydra.launcher.timeout_min",
    "partition": "hydra.launcher.partition",
}


def launcher_problems(launcher: dict[str, object]) -> list[str]:
    """Why the sweep jobs of Hydra's SLURM launcher (the ``hydra.launcher`` node) could never start; empty otherwise.

    Other launchers (basic, joblib, submitit's local one) have nothing to check.
    """
    if not str(launcher.get("_target_", "")).endswith("SlurmLauncher"):
        return []

    def number(key: str, default: int) -> int:
        value = launcher.get(key)
        return int(value) if isinstance(value, (int, float)) else default

    mem = launcher.get("mem_gb")
    request = Request(
        nodes=number("nodes", 1),
        tasks_per_node=number("tasks_per_node", 1),
        cpus_per_task=number("cpus_per_task", 1),
        mem_gb=float(mem) if isinstance(mem, (int, float)) else None,
        gpus_per_node=number("gpus_per_node", 0),
        time_min=number("timeout_min", 60),
    )
    partition = launcher.get("partition")
    return check_request(request, str(partition) if partition else None, LAUNCHER_KEYS)
