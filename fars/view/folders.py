"""What ``fars view`` serves: the run and sweep folders found under the folders it was given, and
the files inside them.

A run folder holds a ``ledger.sqlite`` or a ``run_record.json``; a sweep folder holds run folders
named by job number (Hydra's ``multirun.yaml`` beside them). Folders are walked without following
links, and a file is served only when its real path, every link resolved, lies inside a served run
folder and is a regular file: ``..``, absolute paths and links that lead outside are refused.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

RUN_MARKERS = ("ledger.sqlite", "run_record.json")
SWEEP_MARKER = "multirun.yaml"
_SKIP = {"projects", "wandb", ".hydra", "__pycache__", ".git", ".venv", "node_modules"}
MAX_DEPTH = 6  # outputs/DATE/TIME is 2 deep, multirun/DATE/TIME/JOB 3; a parent of several trees a few more


class NotServed(LookupError):
    """A path outside the served folders, or no regular file there; the server answers 404."""


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


def is_run_folder(path: Path) -> bool:
    """Whether ``path`` is a run folder (a ledger or a RunRecord in it)."""
    return any((path / marker).is_file() for marker in RUN_MARKERS)


def _job_order(name: str) -> tuple[int, str]:
    return (int(name), "") if name.isdigit() else (1 << 30, name)


class ServedFolders:
    """The folders ``fars view`` was given, and the runs and sweeps found under them (re-walked when stale)."""

    def __init__(self, roots: list[Path], rescan_s: float = 3.0) -> None:
        self.roots = [root.resolve() for root in roots]
        self.rescan_s = rescan_s
        self._lock = threading.Lock()
        self._scanned = -1e18
        self.runs: dict[str, RunFolder] = {}
        self.sweeps: dict[str, SweepFolder] = {}

    def scan(self, force: bool = False) -> None:
        """Walk the served folders again unless the last walk is recent; new runs appear this way."""
        with self._lock:
            if not force and time.monotonic() - self._scanned < self.rescan_s:
                return
            runs: dict[str, RunFolder] = {}
            sweeps: dict[str, SweepFolder] = {}
            for root in self.roots:
                self._walk(root, root, 0, runs, sweeps)
            self.runs, self.sweeps = runs, sweeps
            self._scanned = time.monotonic()

    def _walk(
        self, root: Path, folder: Path, depth: int, runs: dict[str, RunFolder], sweeps: dict[str, SweepFolder]
    ) -> None:
        label = str(folder.relative_to(root.parent)) if folder != root else root.name or str(root)
        if is_run_folder(folder):
            key = folder_key(folder)
            runs.setdefault(key, RunFolder(folder, key, label))
            return  # a run's own subfolders hold no other runs
        if depth >= MAX_DEPTH:
            return
        try:
            children = sorted(
                (e for e in os.scandir(folder) if e.is_dir(follow_symlinks=False) and e.name not in _SKIP),
                key=lambda e: _job_order(e.name),
            )
        except OSError:
            return  # unreadable: nothing served from it
        jobs = [Path(e.path) for e in children if is_run_folder(Path(e.path))]
        numbered = len(jobs) >= 2 and all(j.name.isdigit() for j in jobs)
        if jobs and ((folder / SWEEP_MARKER).is_file() or numbered):
            key = folder_key(folder)
            sweep = sweeps.setdefault(key, SweepFolder(folder, key, label))
            for job in jobs:
                job_key = folder_key(job)
                runs[job_key] = RunFolder(job, job_key, str(job.relative_to(root.parent)), key)
                sweep.jobs.append(job_key)
        for entry in children:
            child = Path(entry.path)
            if folder_key(child) not in runs:
                self._walk(root, child, depth + 1, runs, sweeps)

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

    Refused: absolute paths, NUL bytes, anything whose real path leaves the run folder (``..``, a link
    to elsewhere), and anything but a regular file (folders, FIFOs, devices, sockets).
    """
    if not relative or "\0" in relative or relative.startswith(("/", "\\")) or Path(relative).is_absolute():
        raise NotServed(f"{relative!r}: not a path inside the run folder")
    try:
        real = (run.path / relative).resolve(strict=True)
    except (OSError, RuntimeError):  # missing, or a loop of links
        raise NotServed(f"{relative!r}: no such file in the run folder") from None
    if not real.is_relative_to(run.path) or not served.is_served(real):
        raise NotServed(f"{relative!r}: outside the served folders")
    try:
        mode = real.stat().st_mode
    except OSError:
        raise NotServed(f"{relative!r}: unreadable") from None
    if not stat.S_ISREG(mode):
        raise NotServed(f"{relative!r}: not a regular file")
    return real


def read_text(run: RunFolder, relative: str, served: ServedFolders, limit: int = 2_000_000) -> str | None:
    """A served text file's content (at most ``limit`` bytes, decoded leniently), or None when not served."""
    try:
        path = served_file(run, relative, served)
        with path.open("rb") as handle:
            return handle.read(limit).decode("utf-8", errors="replace")
    except (NotServed, OSError):
        return None
