"""One run folder, one session, one config: the lock and the checks before a run folder is (re)used.

* ``hold_run_folder`` takes ``.fars.lock`` with ``flock`` for the whole session; a second session on the
  same folder is refused at once, naming the holder (pid, host, start), so two resumes never both run
  and pay twice. The kernel drops the lock when its process dies, however it dies.
* ``resume_problems`` says why a folder cannot be resumed as it is: a ledger that is missing, a link,
  damaged (``PRAGMA quick_check``) or emptied while the folder still holds a run; a ledger holding values
  FARS never writes (a negative cost, a word for the session count: ``fars.run.ledger.value_problems``); a
  ledger that lost rows against its ``run_record.json``; a config that differs from the run's own in what makes it one run
  (model, seeds, area, ...; ``resume_force=true`` overrides, recorded); files of unfinished projects that
  were deleted. ``fresh_run_problems`` refuses a new run into a folder that already holds one.
* ``open_session`` records the run's config identity on its first session and every forced resume.
* ``active_seconds`` / ``note_active``: wall time of every session so far (the wall budget counts it).
* ``tracker_run_id``: the W&B run id kept in the ledger, so every session continues the run's own W&B run.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import socket
import sqlite3
import string
import threading
import time
from pathlib import Path
from typing import Any

from fars.config import FarsConfig, config_dict
from fars.run.ledger import LEDGER_FILE, Ledger, LedgerCheck, check_ledger
from fars.run.summary import RUN_RECORD_FILE, read_run_record
from fars.safe_files import UnsafeFileError, check_plain

LOCK_FILE = ".fars.lock"
# what makes a run one run: resuming with another value would mix configs in one RunRecord (or, for the
# model and its settings, replay nothing and pay again)
IDENTITY = (
    "area",
    "seed",
    "llm.model",
    "llm.fallbacks",
    "llm.temperature",
    "llm.api_base",
    "experiment.templates",
    "experiment.template_overrides",
    "experiment.engine",
    "experiment.seeds",
    "experiment.steps",
    "pipeline.stages",
    "reviewer.form",
)
FORCE = "resume_force=true"
_RESUMABLE = ("queued", "running", "failed", "budget_exhausted")


class RunFolderBusy(RuntimeError):
    """Another session holds the run folder; the message names it and what to do."""


class RunFolderError(ValueError):
    """The run folder cannot be used as it is; the message names the file and what to do."""


# -- one session per folder ---------------------------------------------------------------------


class RunLock:
    """``flock`` on the run folder's lock file, held (and re-entered) by one process for its session."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.fd: int | None = None
        self.holds = 0

    def acquire(self) -> None:
        """Take the lock or raise ``RunFolderBusy`` naming who holds it."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise RunFolderError(f"{path} is a link; remove it and run again") from None
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise RunFolderBusy(
                f"{self.run_dir} is in use by another fars session ({holder}); wait for it to end, or stop it "
                f"(Ctrl-C, or kill its pid), then `fars run resume={self.run_dir}`"
            ) from None
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": started}).encode())
        self.fd = fd

    def release(self) -> None:
        """Let go of the lock (the file stays; the next session takes it)."""
        if self.fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {info['pid']} on host {info['host']}, started {info['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a session that has not written its name yet"


_held: dict[str, RunLock] = {}
_held_lock = threading.Lock()


def hold_run_folder(run_dir: Path) -> RunLock:
    """This process's hold on ``run_dir`` (taken now, or counted again when it already holds it)."""
    key = os.path.realpath(run_dir)
    with _held_lock:
        lock = _held.get(key)
        if lock is None:
            lock = RunLock(Path(run_dir))
            lock.acquire()
            _held[key] = lock
        lock.holds += 1
        return lock


def release_run_folder(lock: RunLock) -> None:
    """Give back one hold taken with ``hold_run_folder``; the last one releases the lock."""
    with _held_lock:
        lock.holds -= 1
        if lock.holds <= 0:
            lock.release()
            _held.pop(os.path.realpath(lock.run_dir), None)


# -- checks before a folder is used ------------------------------------------------------------


def _holds_a_run(run_dir: Path) -> list[str]:
    """What in the folder shows that a run was there (besides its ledger)."""
    return [name for name in ("projects", RUN_RECORD_FILE) if (run_dir / name).exists()]


def fresh_run_problems(run_dir: Path) -> list[str]:
    """Why a new run (no ``resume=``) cannot start in ``run_dir``: it already holds a run's ledger."""
    if os.path.lexists(run_dir / LEDGER_FILE):
        return [
            f"{run_dir} already holds a run ({LEDGER_FILE}); continue it with `fars run resume={run_dir}`, "
            "or give a new folder (hydra.run.dir=...) for a new run"
        ]
    return []


def ledger_problems(run_dir: Path) -> list[str]:
    """Why the ledger of ``run_dir`` cannot be resumed: missing, a link, damaged, emptied, or behind its record."""
    path = run_dir / LEDGER_FILE
    traces = _holds_a_run(run_dir)
    restore = "restore it from a backup, or start a new run in another folder (FARS will not guess what was paid)"
    if not os.path.lexists(path):
        if traces:
            return [f"{path} is missing but the folder holds a run ({', '.join(traces)}); {restore}"]
        return []  # a run killed during start-up: it starts afresh there
    try:
        check_plain(path)
    except UnsafeFileError as exc:
        return [f"{exc.strerror}; {restore}"]
    try:
        check = check_ledger(path)  # read-only, and the folder left exactly as it was
    except sqlite3.DatabaseError as exc:
        return [f"{path} is not a readable ledger ({exc}); {restore}"]
    except sqlite3.Error as exc:
        return [f"{path}: cannot be opened ({exc}); {restore}"]
    if check.damage:
        return [f"{path} is damaged ({' '.join('; '.join(check.damage[:3]).split())}); {restore}"]
    if not check.holds_run:
        if traces:
            return [f"{path} holds no run but the folder does ({', '.join(traces)}): emptied or replaced? {restore}"]
        return []
    return [*_unwritten_values(check, path, restore), *_behind_record(check, run_dir, restore)]


def _unwritten_values(check: LedgerCheck, path: Path, restore: str) -> list[str]:
    """A ledger holding values FARS never writes (a negative cost, 'abc' as the session count, ...): a hand
    edit that kept it valid SQLite. Read back they would be credited to the budget or end the run in a
    traceback, so the resume is refused naming them."""
    if not check.unwritten:
        return []
    found = "; ".join(check.unwritten)
    return [f"{path} holds values FARS never writes ({found}): edited by hand? Correct them, or {restore}"]


def _behind_record(check: LedgerCheck, run_dir: Path, restore: str) -> list[str]:
    """A ledger that knows fewer projects or calls than the folder's own RunRecord lost rows."""
    if not (run_dir / RUN_RECORD_FILE).is_file() or check.rows is None:
        return []
    try:
        record = read_run_record(run_dir)
    except (OSError, ValueError):
        return []  # an unreadable record is rewritten from the ledger; the ledger is the truth
    projects, calls = check.rows
    if projects < len(record.projects) or calls < record.totals.overall.calls:
        return [
            f"{run_dir / LEDGER_FILE} knows {projects} project(s) and {calls} call(s) but {RUN_RECORD_FILE} "
            f"{len(record.projects)} and {record.totals.overall.calls}: rows were lost; {restore}"
        ]
    return []


def config_identity(cfg: FarsConfig) -> dict[str, Any]:
    """The values of ``IDENTITY`` in a config: what must stay the same across the sessions of one run."""
    data = config_dict(cfg)
    found: dict[str, Any] = {}
    for key in IDENTITY:
        node: Any = data
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        found[key] = node
    return found


def identity_changes(ledger_identity: dict[str, Any], cfg: FarsConfig) -> list[str]:
    """Each identity setting that differs between the run's first session and ``cfg``, as 'key: old -> new'."""
    now = config_identity(cfg)
    return [
        f"{key}: {ledger_identity.get(key)!r} -> {now[key]!r}"
        for key in IDENTITY
        if key in ledger_identity and ledger_identity.get(key) != now[key]
    ]


def _stored_identity(ledger: Ledger) -> dict[str, Any] | None:
    text = ledger.get_meta("identity")
    try:
        value = json.loads(text) if text else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def resume_problems(run_dir: Path, cfg: FarsConfig) -> list[str]:
    """Every reason ``run_dir`` cannot be resumed with ``cfg`` (empty: it can)."""
    problems = ledger_problems(run_dir)
    if problems or not (run_dir / LEDGER_FILE).is_file():
        return problems
    ledger = Ledger(run_dir / LEDGER_FILE)
    try:
        stored = _stored_identity(ledger)
        changes = identity_changes(stored, cfg) if stored else []
        return [] if cfg.resume_force else _refusals(run_dir, changes, missing_files(ledger, run_dir))
    finally:
        ledger.close()


def _refusals(run_dir: Path, changes: list[str], missing: list[str]) -> list[str]:
    """The messages for settings changed and files deleted since the run's first session."""
    problems = []
    if changes:
        problems.append(
            f"resume={run_dir}: this run was started with other settings ({'; '.join(changes)}); one run mixes "
            f"no configs: start a new run for these, or add {FORCE} to continue anyway (recorded in the ledger)"
        )
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        problems.append(
            f"resume={run_dir}: files written by finished stages of unfinished projects are gone ({shown}); "
            f"the stages after them would go on without them: restore them, or add {FORCE} to continue "
            "anyway (recorded in the ledger)"
        )
    return problems


def missing_files(ledger: Ledger, run_dir: Path) -> list[str]:
    """Files of finished stages, of projects a resume continues, that are no longer in the run folder."""
    finished = set(ledger.finished_outputs())
    missing = []
    for project in ledger.projects():
        if project.status.value not in _RESUMABLE:
            continue
        for artifact in ledger.artifacts(project.id):
            if (project.id, artifact.stage) in finished and not os.path.lexists(run_dir / artifact.path):
                missing.append(artifact.path)
    return missing


def open_session(ledger: Ledger, cfg: FarsConfig) -> list[str]:
    """Record the run's identity on its first session; check it on every later one.

    Returns what a forced resume (``resume_force=true``) accepted, also recorded in the ledger's meta
    ``forced_resumes``; raises ``RunFolderError`` for changed settings or deleted files without it.
    """
    stored = _stored_identity(ledger)
    if stored is None:
        ledger.set_meta("identity", json.dumps(config_identity(cfg)))
        return []
    run_dir = ledger.path.parent
    changes, missing = identity_changes(stored, cfg), missing_files(ledger, run_dir)
    if not (changes or missing):
        return []
    if not cfg.resume_force:
        raise RunFolderError("; ".join(_refusals(run_dir, changes, missing)))
    try:
        forced = json.loads(ledger.get_meta("forced_resumes") or "[]")
    except ValueError:
        forced = []
    forced.append({"at": time.time(), "changes": changes, "missing": missing[:100]})
    ledger.set_meta("forced_resumes", json.dumps(forced))
    ledger.set_meta("identity", json.dumps(config_identity(cfg)))
    return [*changes, *(f"missing: {m}" for m in missing)]


# -- what spans sessions -------------------------------------------------------------------------


def active_seconds(ledger: Ledger) -> float:
    """Wall seconds the run's earlier sessions were running (what the run's wall budget has used)."""
    try:
        return max(0.0, float(ledger.get_meta("active_s") or 0.0))
    except ValueError:
        return 0.0


def note_active(ledger: Ledger, seconds: float) -> None:
    """Record the run's wall seconds so far (every session's together)."""
    ledger.set_meta("active_s", f"{seconds:.1f}")


def tracker_run_id(ledger: Ledger) -> str:
    """The run's W&B run id: made on its first session, kept in the ledger for every later one."""
    found = ledger.get_meta("wandb_run_id")
    if found:
        return found
    alphabet = string.ascii_lowercase + string.digits
    made = "".join(secrets.choice(alphabet) for _ in range(8))
    ledger.set_meta("wandb_run_id", made)
    return made
