"""The memory of a whole sandboxed job: a cgroup where one can be made, else accounting by polling.

Per-process address-space limits (``RLIMIT_AS``, CPU jobs) hold each process to the limit in the kernel,
but let six processes hold six times the limit together. So the harness also bounds the job's total:
where the machine offers a delegated cgroup v2 memory controller, the job runs in a cgroup of its own
whose ``memory.max`` is the limit (the kernel enforces it); everywhere, the watchdog (``MemoryWatch``)
sums the memory of every process of the job, which is every descendant of the sandbox's first process
plus every process of its own user id, and kills the job when the sum passes the limit.

Without a cgroup the total holds only as well as the watchdog looks, so it looks often where it
matters, and cheaply: every 5 ms in a job's first second and whenever a job allocating at
``ALLOCATION_RATE`` per CPU could reach the limit before the next look, at most every 0.25 s. A look
reads each process's resident and peak memory from ``/proc/PID/status`` (microseconds) and finds new
processes from ``/proc``'s listing (reading only process ids it has not seen). Forked processes share
pages that a resident sum counts once per process, so from ``NEAR`` the limit on it subtracts what the
last proportional set size reading (PSS: shared pages split between sharers, about 10 ms a GiB to
read) found shared, reading PSS again every 0.25 s and before it kills for a sum a new process may
inflate. The peak reported includes each process's own high-water mark (``VmHWM``), so a burst between
two looks, or a job that ends between them, still shows.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
_PAGE = os.sysconf("SC_PAGE_SIZE")
_counter = itertools.count()
FAST_POLL_S = 0.005  # the watchdog's shortest wait between two looks
SLOW_POLL_S = 0.25  # its longest
STARTUP_S = 1.0  # a job's first second is watched at FAST_POLL_S: most jobs allocate as they start
ALLOCATION_RATE = 4 * 1024**3  # bytes a second one CPU can fault in (page faults, 4 KiB pages): what a look outruns
FULL_SCAN_S = 0.25  # how often every process is looked up afresh (new ones are found at every look)
NEAR = 0.8  # from this share of the limit on, the resident sum is corrected for shared pages (PSS)


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


def _stat_fields(pid: int) -> list[bytes] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state first), None if it ended."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None


class JobProcesses:
    """The live processes of one job, kept up to date cheaply enough to look every few milliseconds.

    The same processes as ``job_processes`` (descendants of ``root_pid`` and processes of ``uid``), plus
    any that were found once and left the tree (a daemon reparented away). A look lists ``/proc`` and
    reads only process ids it has not seen; every ``FULL_SCAN_S`` it reads them all again, so a reused
    process id is not mistaken for an old one for long.
    """

    def __init__(self, root_pid: int, uid: int | None) -> None:
        self.root_pid = root_pid
        self.uid = uid
        self.members: dict[int, bytes] = {}  # pid -> start time (field 22 of stat), to notice a reused pid
        self._others: set[int] = set()  # live processes known not to be the job's
        self._next_full = 0.0

    def refresh(self, now: float) -> set[int]:
        """The job's processes now (the sandbox's first process included while it lives)."""
        try:
            listed = {int(name) for name in os.listdir("/proc") if name.isdigit()}
        except OSError:
            return set(self.members)
        if now >= self._next_full:
            self._next_full = now + FULL_SCAN_S
            self._others.clear()
            fresh = {pid: start for pid, start in ((p, self._start_time(p)) for p in self.members) if start}
            self.members = {pid: start for pid, start in fresh.items() if start == self.members[pid]}
        self.members = {pid: start for pid, start in self.members.items() if pid in listed}
        self._others &= listed
        pending: dict[int, int] = {}
        for pid in sorted(listed - self._others - set(self.members)):
            fields = _stat_fields(pid)
            if fields is None or len(fields) < 20:
                continue
            owned = False
            if self.uid is not None:
                with contextlib.suppress(OSError):
                    owned = os.stat(f"/proc/{pid}").st_uid == self.uid
            if pid == self.root_pid or owned or int(fields[1]) in self.members:
                self.members[pid] = fields[19]
            else:
                pending[pid] = int(fields[1])
        changed = True
        while changed and pending:  # a child listed before its parent (process ids wrap around)
            changed = False
            for pid, parent in list(pending.items()):
                if parent in self.members:
                    start = self._start_time(pid)
                    if start:
                        self.members[pid] = start
                    del pending[pid]
                    changed = True
        self._others |= set(pending)
        return set(self.members)

    @staticmethod
    def _start_time(pid: int) -> bytes:
        fields = _stat_fields(pid)
        return fields[19] if fields is not None and len(fields) > 19 else b""


def resident_memory(pid: int) -> tuple[int, int]:
    """(resident bytes now, peak resident bytes) of a process from ``/proc/PID/status``; (0, 0) if it ended."""
    resident = peak = 0
    with contextlib.suppress(OSError, ValueError, IndexError), open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmHWM:"):
                peak = int(line.split()[1]) * 1024
            elif line.startswith(b"VmRSS:"):
                resident = int(line.split()[1]) * 1024
                break  # VmRSS follows VmHWM
    return resident, max(peak, resident)


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


class MemoryWatch:
    """The watchdog's account of one job's memory (see the module docstring): ``look`` says whether it is over.

    What a look holds the job to: its resident sum while that is under ``NEAR`` of the limit (PSS is never
    more); above, the sum less each process's shared pages as the last PSS reading found them (read again
    every ``SLOW_POLL_S``, or less often as its cost allows, and at once for a process not read yet, whose
    shared pages are unknown). So a job is killed without waiting for a slow PSS reading, and never for
    pages its processes share.
    """

    def __init__(self, limit_bytes: int, root_pid: int, uid: int | None, cpus: int | None = None) -> None:
        self.limit = limit_bytes
        self.processes = JobProcesses(root_pid, uid)
        self.pids: set[int] = set()
        self.held = 0  # what its processes held together at the last look
        self.peak = 0  # the most seen: a sum at one look, or one process's own high-water mark
        self.cost_s = 0.0  # what the last look cost the harness, PSS readings aside (they have their own pace)
        self._cpus = cpus or len(os.sched_getaffinity(0))
        self._shared: dict[int, int] = {}  # pid -> resident bytes that its last PSS reading found shared
        self._next_pss = 0.0

    def look(self, now: float) -> bool:
        """Sum the job's memory now; True when it is over the limit."""
        began = time.perf_counter()
        self.pids = self.processes.refresh(now)
        resident: dict[int, int] = {}
        for pid in self.pids:
            resident[pid], hwm = resident_memory(pid)
            self.peak = max(self.peak, hwm)  # its own high-water mark: a burst between two looks shows
        total = sum(resident.values())
        self.held = total
        self.cost_s = time.perf_counter() - began
        if total > NEAR * self.limit:  # shared pages count once per sharer in a resident sum: less them
            estimate = sum(max(0, rss - self._shared.get(pid, 0)) for pid, rss in resident.items())
            # an estimate can exceed PSS only where sharing grew since the last reading: a process forked since
            confirmed = all(pid in self._shared for pid in resident)
            if now >= self._next_pss or (estimate > self.limit and not confirmed):
                self.held = self._proportional(resident, now)
            else:
                self.held = min(total, estimate)
        self.peak = max(self.peak, self.held)
        return self.held > self.limit

    def _proportional(self, resident: dict[int, int], now: float) -> int:
        """The PSS sum (about 10 ms a GiB to read); it also refreshes each process's shared pages."""
        began = time.perf_counter()
        total = 0
        for pid, rss in resident.items():
            pss = process_memory(pid)
            self._shared[pid] = max(0, rss - pss)
            total += pss
        self._shared = {pid: shared for pid, shared in self._shared.items() if pid in resident}
        self._next_pss = now + max(SLOW_POLL_S, 4 * (time.perf_counter() - began))
        return total

    def next_look_in(self, since_start: float) -> float:
        """Seconds to the next look: soon while the job starts or its headroom could be used up by then."""
        if since_start < STARTUP_S:
            wait = FAST_POLL_S
        else:
            wait = max(0, self.limit - self.held) / (ALLOCATION_RATE * self._cpus)
        return min(SLOW_POLL_S, max(FAST_POLL_S, wait, 4 * self.cost_s))  # at most ~20% of a core for looking


def delegated_cgroup(root: Path = Path("/sys/fs/cgroup")) -> Path | None:
    """This process's cgroup v2 if it delegates the memory controller to cgroups below it, else None."""
    try:
        if not (root / "cgroup.controllers").is_file():
            return None
        own = next(
            (
                line.split("::", 1)[1].strip()
                for line in Path("/proc/self/cgroup").read_text().splitlines()
                if line.startswith("0::")
            ),
            None,
        )
        if own is None:
            return None
        parent = root / own.lstrip("/")
        if "memory" not in (parent / "cgroup.subtree_control").read_text().split():
            return None
    except OSError:
        return None
    return parent


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
        parent = delegated_cgroup(root)
        if parent is None:
            return None
        try:
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
                time.sleep(0.02)
        log.warning("could not remove the sandbox's cgroup %s", self.path)
