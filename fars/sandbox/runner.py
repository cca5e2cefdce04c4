"""Run one untrusted program in the sandbox and report what happened.

``run_sandboxed`` starts the program under the probed isolation (``backends``) with rlimits
(``limits``) and a secret-free environment (``environment``), watches its wall time, its folder (bytes,
files and depth, walked without following links) and the memory of all its processes together
(``memory``), kills the whole sandbox when a limit is passed, removes every process left under its user
id, and returns a ``SandboxResult``: exit code or signal, which limit (if any) ended it, the tails of
its output, its wall time and peak memory. The result can be written as JSON next to the harness's
records. What it leaves in its folder is read only through ``fars.safe_files`` (``read_sandbox_file``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import select
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from fars.safe_files import UnsafeFileError, chown_tree, open_append, read_file, tree_usage, write_atomic
from fars.sandbox.backends import Isolation, SandboxUnavailable, probe, wrap_command
from fars.sandbox.environment import sandbox_env
from fars.sandbox.limits import SandboxLimits, apply_rlimits
from fars.sandbox.memory import MemoryCgroup, MemoryWatch, job_processes

TAIL_BYTES = 16_000
_MB = 1024 * 1024
FOLDER_POLL_S = 0.5  # how often its folder is walked at least (less often when a walk is costly)
_UID_BASE, _UID_SPAN = 200_000, 800_000
_uid_lock = threading.Lock()
_uids_in_use: set[int] = set()
# what a program prints when a limit stops it (the kernel refuses rather than kills)
_EVIDENCE = (
    ("file_size", ("File too large", "EFBIG")),
    ("memory", ("MemoryError", "Cannot allocate memory", "std::bad_alloc", "out of memory")),
    ("processes", ("Resource temporarily unavailable", "can't start new thread", "fork failed")),
    ("open_files", ("Too many open files",)),
)


class SandboxError(RuntimeError):
    """The sandbox could not be set up (bad work folder, interpreter out of reach, ...)."""


@dataclass
class SandboxResult:
    """How a sandboxed program ended."""

    exit_code: int | None  # None when it died from a signal
    signal: str | None  # e.g. "SIGKILL"
    timed_out: bool
    limit_hit: str | None  # wall, cpu, memory, processes, file_size, disk, files, depth, open_files, cancelled
    stdout_tail: str
    stderr_tail: str
    wall_s: float
    backend: str
    uid: int | None
    refused_env: list[str] = field(default_factory=list)
    stragglers_killed: int = 0  # processes still alive under its user id after it ended
    peak_memory_mb: float = 0.0  # the most all its processes held together at one look, or one process at its peak
    memory_bound: str = "accounting"  # how its total memory was bounded: cgroup (kernel) or accounting (watchdog)

    @property
    def ok(self) -> bool:
        """Exited 0 within every limit."""
        return self.exit_code == 0 and self.limit_hit is None

    def summary(self) -> str:
        """One line for logs and error messages."""
        how = f"exit {self.exit_code}" if self.signal is None else f"killed by {self.signal}"
        limit = f", {self.limit_hit} limit hit" if self.limit_hit else ""
        return f"{how}{limit} after {self.wall_s:.1f}s ({self.backend})"

    def to_json(self) -> str:
        """The result as JSON (for the project's records)."""
        return json.dumps(asdict(self), indent=1)


def run_sandboxed(
    argv: Sequence[str],
    workdir: Path,
    limits: SandboxLimits | None = None,
    *,
    gpus: Sequence[int] = (),
    env: Mapping[str, str] | None = None,
    readable: Sequence[str | Path] = (),
    backend: str = "auto",
    require_network_isolation: bool = False,
    log_path: Path | None = None,
    record_path: Path | None = None,
    cancel: threading.Event | None = None,
) -> SandboxResult:
    """Run ``argv`` in ``workdir`` inside the sandbox and wait for it (see the module docstring).

    ``readable`` names extra host paths it may read (e.g. a template package); ``env`` adds variables
    (secret-looking ones are refused); ``gpus`` are the allocated GPU indices; ``log_path`` receives
    its output (capped at the file-size limit); ``record_path`` the result as JSON; setting ``cancel``
    kills it.
    """
    limits = limits or SandboxLimits()
    isolation = probe(backend)
    if require_network_isolation and not isolation.network_isolated:
        raise SandboxUnavailable(
            f"sandbox backend {isolation.backend} cannot cut the network here and "
            "sandbox.require_network_isolation is set; install bubblewrap or allow user namespaces"
        )
    workdir = Path(workdir).resolve()
    if not workdir.is_dir():
        raise SandboxError(f"sandbox work folder {workdir} does not exist; create it before running code in it")
    try:
        os.mkdir(workdir / ".tmp", 0o755)
    except FileExistsError:
        if not (workdir / ".tmp").is_dir() or (workdir / ".tmp").is_symlink():
            raise SandboxError(f"{workdir / '.tmp'} is not a folder; give the sandbox a clean work folder") from None
    uid = _allocate_uid() if isolation.own_user else None
    group: MemoryCgroup | None = None
    try:
        if uid is not None:
            _hand_over(workdir, uid)
            if isolation.backend != "bwrap":
                _check_reachable(argv, workdir)
        tmpdir = str(workdir / ".tmp")
        child_env, refused = sandbox_env(str(workdir), tmpdir, extra=env, gpus=gpus)
        command = wrap_command(
            isolation,
            argv,
            workdir,
            uid=uid,
            readable=[str(p) for p in readable],
            gpus=gpus,
            tmp_mb=min(limits.disk_mb, 64),
        )
        existing = 0 if uid is not None else _count_processes(os.getuid())
        rlimits = limits.rlimits(existing, gpu=bool(gpus))
        prlimit = shutil.which("prlimit")
        preexec = None
        if prlimit is not None:
            command = [prlimit, *limits.prlimit_args(existing, gpu=bool(gpus)), "--", *command]
        else:  # pragma: no cover - util-linux without prlimit is rare

            def preexec() -> None:
                apply_rlimits(rlimits)

        group = MemoryCgroup.create(limits.memory_mb * _MB)
        if group is not None:
            command = group.wrap(command)
        result = _supervise(command, workdir, child_env, limits, isolation, uid, preexec, log_path, cancel)
        result.refused_env = refused
        if group is not None:
            result.memory_bound = "cgroup"
            if group.oom_killed() and result.limit_hit is None:
                result.limit_hit = "memory"
    finally:
        if group is not None:
            group.close()
        if uid is not None:
            _release_uid(uid)
    if record_path is not None:
        write_atomic(record_path.parent, record_path.name, result.to_json())
    return result


async def run_sandboxed_async(
    argv: Sequence[str], workdir: Path, limits: SandboxLimits | None = None, **kw: Any
) -> SandboxResult:
    """``run_sandboxed`` for async callers: runs in a thread; cancelling the task kills the sandbox."""
    cancel = threading.Event()
    task = asyncio.ensure_future(asyncio.to_thread(run_sandboxed, argv, workdir, limits, cancel=cancel, **kw))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        cancel.set()
        with contextlib.suppress(Exception):
            await task
        raise


def read_sandbox_file(workdir: Path, name: str, max_bytes: int = 64 * 1024 * 1024) -> bytes:
    """Read a file the sandbox wrote, refusing links, special files, paths leaving its folder and oversized files.

    The harness must never follow a link the sandboxed code planted (e.g. ``metrics.json`` pointing
    at a host secret), block on a FIFO or read ``/dev/zero`` to the end: this opens the file without
    following links at any level, non-blocking, a regular file only, and reads at most ``max_bytes``.
    """
    root = Path(workdir).resolve()
    parts = Path(name).parts
    if Path(name).is_absolute() or ".." in parts or not parts:
        raise SandboxError(f"sandbox file name {name!r} leaves its folder {root}")
    try:
        return read_file(root, name, max_bytes=max_bytes)
    except UnsafeFileError as exc:
        raise SandboxError(f"cannot read {name!r} from sandbox folder {root}: {exc.strerror} (a link?)") from None
    except OSError as exc:
        raise SandboxError(f"cannot read {name!r} from sandbox folder {root}: {exc.strerror}") from None


# -- supervision ---------------------------------------------------------------------------------


class _Tail:
    """Keeps the last ``TAIL_BYTES`` of a stream and copies it to a capped log file."""

    def __init__(self, stream: IO[bytes], log: IO[bytes] | None, log_cap: int) -> None:
        self.buffer = bytearray()
        self.thread = threading.Thread(target=self._pump, args=(stream, log, log_cap), daemon=True)
        self.thread.start()

    def _pump(self, stream: IO[bytes], log: IO[bytes] | None, log_cap: int) -> None:
        written = 0
        while chunk := stream.read1(65536):  # type: ignore[attr-defined]  # a Popen pipe is a BufferedReader; IO[bytes] lacks read1
            self.buffer += chunk
            del self.buffer[:-TAIL_BYTES]
            if log is not None and written < log_cap:
                log.write(chunk[: log_cap - written])
                written += len(chunk)

    def text(self) -> str:
        self.thread.join(timeout=5)
        return self.buffer.decode("utf-8", errors="replace")


def _supervise(
    command: list[str],
    workdir: Path,
    env: dict[str, str],
    limits: SandboxLimits,
    isolation: Isolation,
    uid: int | None,
    preexec: Any,
    log_path: Path | None,
    cancel: threading.Event | None,
) -> SandboxResult:
    log = None
    if log_path is not None:
        write_atomic(log_path.parent, log_path.name, b"")  # a fresh log, whatever stood at its name
        log = open_append(log_path.parent, log_path.name)
    started = time.monotonic()
    killed_for: str | None = None
    watch: MemoryWatch | None = None
    exited: _ExitWaiter | None = None
    try:
        proc = subprocess.Popen(
            command,
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=preexec,
        )
        assert proc.stdout is not None and proc.stderr is not None
        cap = limits.file_size_mb * 1024 * 1024
        out, err = _Tail(proc.stdout, log, cap), _Tail(proc.stderr, log, cap)
        watch = MemoryWatch(limits.memory_mb * _MB, proc.pid, uid)
        exited = _ExitWaiter(proc)
        next_folder_check = next_memory_check = 0.0
        while proc.poll() is None:
            now = time.monotonic() - started
            if now >= limits.wall_s:
                killed_for = "wall"
            elif cancel is not None and cancel.is_set():
                killed_for = "cancelled"
            else:
                if now >= next_memory_check:
                    if watch.look(now):
                        killed_for = "memory"
                    next_memory_check = now + watch.next_look_in(now)
                if killed_for is None and now >= next_folder_check:
                    walked = time.monotonic()
                    killed_for = folder_limit(workdir, limits)
                    # a costly walk (a folder of many files) is repeated less often: at most ~20% of a core
                    next_folder_check = now + max(FOLDER_POLL_S, 4 * (time.monotonic() - walked))
            if killed_for is not None:
                _kill(proc, uid, watch.pids)
                break
            # wake for the next look, or at once when the program ends
            exited.wait(min(next_memory_check, next_folder_check, limits.wall_s) - (time.monotonic() - started))
        code = proc.wait()
        wall = time.monotonic() - started
        stragglers = _kill_user(uid) if uid is not None else 0
        if killed_for is None:  # what it left may have passed a limit after the last look
            killed_for = folder_limit(workdir, limits)
        stdout, stderr = out.text(), err.text()
    finally:
        if exited is not None:
            exited.close()
        if log is not None:
            log.close()
    exit_code, sig = _decode_status(code, isolation.backend)
    limit = killed_for or _limit_from(sig, stderr + stdout)
    return SandboxResult(
        exit_code=exit_code,
        signal=sig,
        timed_out=killed_for == "wall",
        limit_hit=limit,
        stdout_tail=stdout,
        stderr_tail=stderr,
        wall_s=round(wall, 3),
        backend=isolation.backend,
        uid=uid,
        stragglers_killed=stragglers,
        peak_memory_mb=round((watch.peak if watch is not None else 0) / _MB, 1),
    )


class _ExitWaiter:
    """Sleeps until a program ends or a time passes, whichever is first (a pidfd where Linux has one)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self._fd: int | None = None
        self._poll = select.poll()  # not select(): a busy harness may hold file descriptors past 1,024
        with contextlib.suppress(OSError, AttributeError):
            self._fd = os.pidfd_open(proc.pid)
            self._poll.register(self._fd, select.POLLIN)

    def wait(self, seconds: float) -> None:
        """Return after ``seconds`` (at most 0.1, at least 1 ms) or as soon as the program has ended."""
        seconds = min(max(seconds, 0.001), 0.1)
        if self._fd is None:
            time.sleep(seconds)
            return
        self._poll.poll(seconds * 1000)

    def close(self) -> None:
        """Release the pidfd."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _decode_status(code: int, backend: str) -> tuple[int | None, str | None]:
    if code < 0:
        return None, signal.Signals(-code).name
    if backend in ("bwrap", "unshare") and code > 128 and code - 128 in signal.valid_signals():
        return None, signal.Signals(code - 128).name  # the namespace's init reports a signal as 128+N
    return code, None


def _limit_from(sig: str | None, output: str) -> str | None:
    if sig == "SIGXCPU":
        return "cpu"
    if sig == "SIGXFSZ":
        return "file_size"
    for limit, phrases in _EVIDENCE:
        if any(p in output for p in phrases):
            return limit
    return None  # a bare SIGKILL may be the hard CPU limit or the kernel's OOM killer: signal recorded


def _kill(proc: subprocess.Popen[bytes], uid: int | None, pids: set[int] | None = None) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    for pid in (pids or set()) | job_processes(proc.pid, uid):  # descendants that left its process group too
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    if uid is not None:
        _kill_user(uid)


def folder_limit(workdir: Path, limits: SandboxLimits) -> str | None:
    """Which folder limit the work folder passes now (disk, files or depth), or None.

    Walked without following links and stopped at the first limit passed, so a hostile tree (200,000
    empty files, thousands of levels) costs the watchdog at most ``limits.files`` entries.
    """
    disk = limits.disk_mb * _MB
    try:
        usage = tree_usage(workdir, max_depth=limits.folder_depth, stop_bytes=disk, stop_entries=limits.files)
    except OSError:
        return None  # the folder is gone or unreadable: the program's own problem, found when results are read
    if usage.bytes > disk:
        return "disk"
    if usage.entries > limits.files:
        return "files"
    if usage.depth > limits.folder_depth:
        return "depth"
    return None


def folder_bytes(path: Path, stop_above: int | None = None) -> int:
    """Disk space used by a folder tree (allocated blocks; links not followed, any depth up to 1,024)."""
    return tree_usage(path, max_depth=1024, stop_bytes=stop_above).bytes


# -- user ids --------------------------------------------------------------------------------------


def _processes_of(uid: int) -> list[int]:
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if entry.stat().st_uid == uid:
                pids.append(int(entry.name))
    return pids


def _count_processes(uid: int) -> int:
    return len(_processes_of(uid))


def _kill_user(uid: int) -> int:
    """SIGKILL every process of the sandbox's user id until none is left; how many there were."""
    if uid == 0:
        raise SandboxError("refusing to kill every process of root")
    seen: set[int] = set()
    for _ in range(50):
        pids = _processes_of(uid)
        if not pids:
            break
        for pid in pids:
            seen.add(pid)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)
    return len(seen)


def _allocate_uid() -> int:
    with _uid_lock:
        for _ in range(100):
            uid = _UID_BASE + random.randrange(_UID_SPAN)
            if uid not in _uids_in_use and not _processes_of(uid):
                _uids_in_use.add(uid)
                return uid
    raise SandboxError("no free sandbox user id found")


def _release_uid(uid: int) -> None:
    with _uid_lock:
        _uids_in_use.discard(uid)


def _hand_over(workdir: Path, uid: int) -> None:
    """Give the work folder (without following links) to the sandbox's user id."""
    try:
        chown_tree(workdir, uid, uid, max_depth=256)
    except UnsafeFileError as exc:
        raise SandboxError(f"{exc.strerror}; give the sandbox a clean work folder") from None


def _check_reachable(argv: Sequence[str], workdir: Path) -> None:
    """Without a mount namespace the sandbox user must reach its program and folder as 'other'."""
    program = shutil.which(argv[0]) if argv else None
    for target in [p for p in (program, str(workdir)) if p]:
        path = Path(target).resolve()
        for parent in [*reversed(path.parents)]:
            if not os.stat(parent).st_mode & 0o001:
                raise SandboxError(
                    f"{target} is out of reach of the sandbox user: {parent} is not searchable by others. "
                    "Install bubblewrap (apt-get install bubblewrap), or keep the interpreter and run folder "
                    "outside private folders such as /root"
                )
