"""The memory of a whole sandboxed job: a cgroup where one can be made, else accounting by polling.

Per-process address-space limits let six processes hold six times the limit together. So the harness
also bounds the job's total: where the machine offers a delegated cgroup v2 memory controller, the job
runs in a cgroup of its own whose ``memory.max`` is the limit (the kernel enforces it); everywhere, the
watchdog sums the proportional set size (PSS, or RSS where PSS cannot be read) of every process of the
job, which is every descendant of the sandbox's first process plus every process of its own user id,
and kills the job when the sum passes the limit.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
_PAGE = os.sysconf("SC_PAGE_SIZE")
_counter = itertools.count()


def job_processes(root_pid: int, uid: int | None) -> set[int]:
    """Every live process of a job: descendants of ``root_pid`` (itself included) and processes of ``uid``."""
    children: dict[int, list[int]] = {}
    owned: set[int] = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            if uid is not None and entry.stat().st_uid == uid:
                owned.add(pid)
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(pid)
    found = {root_pid} if os.path.exists(f"/proc/{root_pid}") else set()
    todo = [root_pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found | owned


def process_memory(pid: int) -> int:
    """Bytes of memory a process holds: its PSS (shared pages split between sharers), else its RSS."""
    with contextlib.suppress(OSError, ValueError), open(f"/proc/{pid}/smaps_rollup", "rb") as f:
        for line in f:
            if line.startswith(b"Pss:"):
                return int(line.split()[1]) * 1024
    with contextlib.suppress(OSError, ValueError, IndexError), open(f"/proc/{pid}/statm", "rb") as f:
        return int(f.read().split()[1]) * _PAGE
    return 0


def total_memory(pids: Iterable[int]) -> int:
    """The memory of these processes together (processes that ended meanwhile count 0)."""
    return sum(process_memory(pid) for pid in pids)


@dataclass
class MemoryCgroup:
    """A cgroup v2 of one job with ``memory.max`` set; ``wrap`` puts a command into it as it starts."""

    path: Path

    @classmethod
    def create(cls, limit_bytes: int, root: Path = Path("/sys/fs/cgroup")) -> MemoryCgroup | None:
        """A fresh cgroup under this process's own, limited to ``limit_bytes``; None where none can be made.

        Needs a unified (v2) hierarchy at ``root`` whose cgroup of this process delegates the memory
        controller to its children (``memory`` in its ``cgroup.subtree_control``), e.g. a systemd unit
        with ``Delegate=yes``. Anything less and the watchdog's accounting alone bounds the job.
        """
        try:
            if not (root / "cgroup.controllers").is_file():
                return None
            own = next(
                (line.split("::", 1)[1].strip() for line in Path("/proc/self/cgroup").read_text().splitlines()
                 if line.startswith("0::")),
                None,
            )  # fmt: skip
            if own is None:
                return None
            parent = root / own.lstrip("/")
            if "memory" not in (parent / "cgroup.subtree_control").read_text().split():
                return None
            path = parent / f"fars-sandbox-{os.getpid()}-{next(_counter)}"
            path.mkdir()
        except OSError:
            return None
        group = cls(path)
        try:
            (path / "memory.max").write_text(str(limit_bytes))
            if (path / "memory.swap.max").exists():
                (path / "memory.swap.max").write_text("0")
            if (path / "memory.oom.group").exists():
                (path / "memory.oom.group").write_text("1")  # an OOM kill takes the whole job, not one rank
        except OSError as exc:
            log.warning("could not limit the sandbox's cgroup %s (%s); memory is bounded by accounting only", path, exc)
            group.close()
            return None
        return group

    def wrap(self, command: list[str]) -> list[str]:
        """``command`` started inside this cgroup: a shell moves itself in, then becomes the command."""
        enter = 'echo 0 > "$1/cgroup.procs" 2>/dev/null; shift; exec "$@"'
        return ["/bin/sh", "-c", enter, "sh", str(self.path), *command]

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process of the job for passing ``memory.max``."""
        with contextlib.suppress(OSError, ValueError):
            for line in (self.path / "memory.events").read_text().splitlines():
                name, _, value = line.partition(" ")
                if name == "oom_kill" and int(value) > 0:
                    return True
        return False

    def close(self) -> None:
        """Kill what is left in the cgroup and remove it."""
        with contextlib.suppress(OSError):
            if (self.path / "cgroup.kill").exists():
                (self.path / "cgroup.kill").write_text("1")
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                import time

                time.sleep(0.02)
        log.warning("could not remove the sandbox's cgroup %s", self.path)
