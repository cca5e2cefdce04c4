"""What ``fars view`` serves: the run and sweep folders found under the folders it was given, and
the files inside them.

A run folder holds a ``ledger.sqlite`` or a ``run_record.json``; a sweep folder holds run folders
named by job number (Hydra's ``multirun.yaml`` beside them). Folders are walked by descriptor without
following links (bounded in depth and entries), and a file is served only when its real path, every
link resolved, lies inside a served run folder and is a regular file: ``..``, absolute paths and links
that lead outside are refused. Whatever is then read is opened along that real path one component at a
time with ``O_NOFOLLOW`` and non-blocking (``open_plain``, as ``fars.safe_files`` does), so a link
swapped in after the check, a FIFO, a device or a hard link is refused, never followed or waited on.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from fars.safe_files import UnsafeFileError, kind_of, open_folder, open_regular

log = logging.getLogger("fars.view")

RUN_MARKERS = ("ledger.sqlite", "run_record.json")
SWEEP_MARKER = "multirun.yaml"
_SKIP = {"projects", "wandb", ".hydra", "__pycache__", ".git", ".venv", "node_modules"}
MAX_DEPTH = 6  # outputs/DATE/TIME is 2 deep, multirun/DATE/TIME/JOB 3; a parent of several trees a few more
MAX_SCAN_ENTRIES = 200_000  # entries looked at per walk: a folder of millions costs a bounded time, not minutes
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class NotServed(LookupError):
    """A path outside the served folders, or no regular file there; the server answers 404."""


class RefusedFile(NotServed):
    """A file of a run folder the view will not read: a link leading outside, a FIFO, a device, a hard link,
    or too large. The message names the file (relative to its run folder) and why."""


def refusal(exc: OSError | RefusedFile, root: Path) -> str:
    """The message of a refused or unreadable file, named relative to ``root`` (its run folder)."""
    text = str(exc) if isinstance(exc, RefusedFile) else (exc.strerror or str(exc))
    text = text.replace(f"{root}{os.sep}", "")
    return text if "refused" in text else f"{text}; refused"


def open_plain(root: Path, relative: str | Path) -> tuple[int, os.stat_result]:
    """An fd (read-only, non-blocking) of regular file ``root/relative`` and its ``fstat``, opened by
    ``fars.safe_files.open_regular`` (no link followed, no special or hard-linked file); the caller closes it.
    ``FileNotFoundError`` when it is not there; ``RefusedFile`` (naming it and why) otherwise."""
    try:
        return open_regular(root, relative)
    except UnsafeFileError as exc:
        raise RefusedFile(refusal(exc, root)) from None


def read_head(fd: int, limit: int) -> bytes:
    """At most ``limit`` bytes from the start of an open file (the rest is not read)."""
    chunks, total = [], 0
    while total < limit and (chunk := os.read(fd, min(1 << 20, limit - total))):
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def list_folders(root: Path, relative: str | Path, limit: int = 10_000) -> list[str]:
    """Names of the subfolders (not links to folders) of ``root/relative``, looking at ``limit`` entries at most.

    ``FileNotFoundError`` when it is not there; ``RefusedFile`` when a component on the way is a link.
    """
    try:
        fd = open_folder(root, relative)
    except UnsafeFileError as exc:
        raise RefusedFile(refusal(exc, root)) from None
    names: list[str] = []
    try:
        with os.scandir(fd) as entries:
            for count, entry in enumerate(entries):
                if count >= limit:
                    break
                if entry.is_dir(follow_symlinks=False):
                    names.append(entry.name)
    finally:
        os.close(fd)
    return names


def folder_key(path: Path) -> str:
    """A short stable name for a folder in URLs (from its real path, so the same folder keeps it)."""
    return hashlib.sha1(str(path).encode("utf-8", "surrogateescape")).hexdigest()[:12]


@dataclass
class RunFolder:
    """One run folder: where it is, its key in URLs, its label (path below the served folder), its sweep."""

    path: Path  # resolved
    key: str
    label: str
    sweep: str | None = None  # key of the sweep it is a job of


@dataclass
class SweepFolder:
    """A sweep folder and the keys of its jobs, in job order."""

    path: Path
    key: str
    label: str
    jobs: list[str] = field(default_factory=list)


def _holds(dir_fd: int, name: str, *, regular: bool = False) -> bool:
    """Whether folder ``dir_fd`` has an entry ``name`` (not a folder; a regular file if asked), link unfollowed."""
    try:
        mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except OSError:
        return False
    return stat.S_ISREG(mode) if regular else not stat.S_ISDIR(mode)


def _is_run_fd(dir_fd: int) -> bool:
    # any entry at a marker's name makes a run: a planted link or FIFO there shows as a run that says it was refused
    return any(_holds(dir_fd, marker) for marker in RUN_MARKERS)


def _child_is_run(dir_fd: int, name: str) -> bool:
    """Whether subfolder ``name`` of ``dir_fd`` (opened without following a link) is a run folder."""
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError:
        return False
    try:
        return _is_run_fd(fd)
    finally:
        os.close(fd)


def is_run_folder(path: Path) -> bool:
    """Whether ``path`` is a run folder (a ledger or a RunRecord in it; links there count, unfollowed)."""
    try:
        fd = os.open(path, _DIR_FLAGS)
    except OSError:
        return False
    try:
        return _is_run_fd(fd)
    finally:
        os.close(fd)


def _job_order(name: str) -> tuple[int, str]:
    return (int(name), "") if name.isdigit() and len(name) < 12 else (1 << 40, name)


class ServedFolders:
    """The folders ``fars view`` was given, and the runs and sweeps found under them (re-walked when stale)."""

    def __init__(self, roots: list[Path], rescan_s: float = 3.0) -> None:
        self.roots = [root.resolve() for root in roots]
        self.rescan_s = rescan_s
        self._lock = threading.Lock()
        self._scanned = -1e18
        self._left = MAX_SCAN_ENTRIES
        self.runs: dict[str, RunFolder] = {}
        self.sweeps: dict[str, SweepFolder] = {}
        self.incomplete = False  # the last walk stopped at MAX_SCAN_ENTRIES

    def scan(self, force: bool = False) -> None:
        """Walk the served folders again unless the last walk is recent; new runs appear this way."""
        with self._lock:
            if not force and time.monotonic() - self._scanned < self.rescan_s:
                return
            runs: dict[str, RunFolder] = {}
            sweeps: dict[str, SweepFolder] = {}
            self._left = MAX_SCAN_ENTRIES
            for root in self.roots:
                try:
                    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # the user's folder, as given
                except OSError:
                    continue
                try:
                    self._walk(root, root, fd, 0, runs, sweeps)
                finally:
                    os.close(fd)
            if self._left <= 0 and not self.incomplete:
                log.warning(
                    "fars view: stopped looking for runs after %s entries under %s",
                    MAX_SCAN_ENTRIES,
                    ", ".join(map(str, self.roots)),
                )
            self.incomplete = self._left <= 0
            self.runs, self.sweeps = runs, sweeps
            self._scanned = time.monotonic()

    def _subfolders(self, fd: int) -> list[str]:
        """Names of the subfolders of ``fd`` worth walking (not links, not a run's own parts), in job order."""
        names = []
        try:
            with os.scandir(fd) as entries:
                for entry in entries:
                    self._left -= 1
                    if self._left < 0:
                        break
                    if entry.name not in _SKIP and entry.is_dir(follow_symlinks=False):
                        names.append(entry.name)
        except OSError:
            return []  # unreadable: nothing served from it
        return sorted(names, key=_job_order)

    def _walk(
        self, root: Path, folder: Path, fd: int, depth: int, runs: dict[str, RunFolder], sweeps: dict[str, SweepFolder]
    ) -> None:
        label = str(folder.relative_to(root.parent)) if folder != root else root.name or str(root)
        if _is_run_fd(fd):
            key = folder_key(folder)
            runs.setdefault(key, RunFolder(folder, key, label))
            return  # a run's own subfolders hold no other runs
        if depth >= MAX_DEPTH or self._left <= 0:
            return
        children = self._subfolders(fd)
        jobs = [name for name in children if _child_is_run(fd, name)]
        numbered = len(jobs) >= 2 and all(name.isdigit() for name in jobs)
        if jobs and (_holds(fd, SWEEP_MARKER, regular=True) or numbered):
            key = folder_key(folder)
            sweep = sweeps.setdefault(key, SweepFolder(folder, key, label))
            for name in jobs:
                job = folder / name
                job_key = folder_key(job)
                runs[job_key] = RunFolder(job, job_key, str(job.relative_to(root.parent)), key)
                sweep.jobs.append(job_key)
        for name in children:
            if folder_key(folder / name) in runs:
                continue
            try:
                child_fd = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                continue  # gone, or a link swapped in since the listing: not walked
            try:
                self._walk(root, folder / name, child_fd, depth + 1, runs, sweeps)
            finally:
                os.close(child_fd)

    def run(self, key: str) -> RunFolder:
        """The run folder of that key (rescanning once if it is new); NotServed if there is none."""
        if key not in self.runs:
            self.scan(force=True)
        if key not in self.runs:
            raise NotServed(f"no run {key!r} under the served folders")
        return self.runs[key]

    def sweep(self, key: str) -> SweepFolder:
        """The sweep folder of that key; NotServed if there is none."""
        if key not in self.sweeps:
            self.scan(force=True)
        if key not in self.sweeps:
            raise NotServed(f"no sweep {key!r} under the served folders")
        return self.sweeps[key]

    def is_served(self, path: Path) -> bool:
        """Whether a resolved path lies inside one of the served folders."""
        return any(path == root or path.is_relative_to(root) for root in self.roots)


def served_file(run: RunFolder, relative: str, served: ServedFolders) -> Path:
    """The regular file at ``relative`` inside a run folder, its links resolved; NotServed otherwise.

    Refused (``RefusedFile``): absolute paths, NUL bytes, anything whose real path leaves the run folder
    (``..``, a link to elsewhere), and anything but a regular file (folders, FIFOs, devices, sockets).
    Only ``stat`` is used here; read it with ``open_served``, which opens what was checked, not a swap.
    """
    if not relative or "\0" in relative or relative.startswith(("/", "\\")) or Path(relative).is_absolute():
        raise RefusedFile(f"{relative!r}: not a path inside the run folder; refused")
    try:
        real = (run.path / relative).resolve(strict=True)
    except FileNotFoundError:
        raise NotServed(f"{relative!r}: no such file in the run folder") from None
    except (OSError, RuntimeError):  # a loop of links, or unreadable
        raise RefusedFile(f"{relative!r}: a loop of links or unreadable; refused") from None
    if not real.is_relative_to(run.path) or not served.is_served(real):
        raise RefusedFile(f"{relative}: a link that leads outside the run folder; refused")
    try:
        mode = real.stat().st_mode
    except OSError:
        raise NotServed(f"{relative!r}: unreadable") from None
    if not stat.S_ISREG(mode):
        raise RefusedFile(f"{relative} is {kind_of(mode)}, not a regular file; refused")
    return real


def open_served(run: RunFolder, relative: str, served: ServedFolders) -> tuple[int, os.stat_result, Path]:
    """An fd of the served file at ``relative`` (``served_file``'s checks, then opened by ``open_plain`` along
    its real path, so nothing swapped in meanwhile is followed), its ``fstat`` and real path; the caller closes it."""
    real = served_file(run, relative, served)
    try:
        return (*open_plain(run.path, real.relative_to(run.path)), real)
    except FileNotFoundError:
        raise NotServed(f"{relative!r}: no such file in the run folder") from None


def read_text(
    run: RunFolder, relative: str, served: ServedFolders, limit: int = 2_000_000, problems: list[str] | None = None
) -> str | None:
    """A served text file's first ``limit`` bytes, decoded leniently; None when it is missing or refused
    (why it was refused is added to ``problems`` when given)."""
    try:
        fd, _, _ = open_served(run, relative, served)
    except RefusedFile as exc:
        if problems is not None:
            problems.append(refusal(exc, run.path))
        return None
    except (NotServed, OSError):
        return None
    try:
        return read_head(fd, limit).decode("utf-8", errors="replace")
    except OSError:
        return None
    finally:
        os.close(fd)
