"""The run ledger: an SQLite database (WAL) in the run folder, written as things happen.

It holds projects, stage events with each finished stage's output, every model call (with its reply,
so a resumed run replays instead of paying twice) and every artifact. One writer: the run's event
loop thread. The RunRecord is computed from it, so their totals agree by construction.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
import urllib.parse
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from fars.run.contracts import ContractError, StageOutput, contract_class, load_output
from fars.run.records import Artifact, ProjectStatus, Usage
from fars.safe_files import UnsafeFileError, check_plain

LEDGER_FILE = "ledger.sqlite"  # a run's ledger, in its run folder
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS projects (
    id TEXT PRIMARY KEY, idx INTEGER NOT NULL, area TEXT NOT NULL, stage TEXT, status TEXT NOT NULL,
    title TEXT, error TEXT, created REAL NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS stage_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, project_id TEXT NOT NULL, stage TEXT NOT NULL,
    event TEXT NOT NULL, ts REAL NOT NULL, output TEXT, error TEXT, contract TEXT, contract_version INTEGER);
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT, project_id TEXT, stage TEXT, model TEXT NOT NULL,
    request_hash TEXT NOT NULL, ordinal INTEGER NOT NULL, input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL, cost_usd REAL NOT NULL, latency_s REAL NOT NULL,
    cache_hit INTEGER NOT NULL, ts REAL NOT NULL, response TEXT, error TEXT,
    cached_input_tokens INTEGER NOT NULL DEFAULT 0, evaluated_input_tokens INTEGER NOT NULL DEFAULT 0,
    saved_usd REAL NOT NULL DEFAULT 0, structured_mode TEXT);
CREATE INDEX IF NOT EXISTS calls_replay ON calls (project_id, stage, request_hash, ordinal);
CREATE TABLE IF NOT EXISTS artifacts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, project_id TEXT NOT NULL, stage TEXT NOT NULL,
    kind TEXT NOT NULL, path TEXT NOT NULL, sha256 TEXT NOT NULL, ts REAL NOT NULL);
CREATE TABLE IF NOT EXISTS code_nodes (
    id INTEGER PRIMARY KEY AUTOINCREMENT, project_id TEXT NOT NULL, node TEXT NOT NULL, parent TEXT,
    kind TEXT NOT NULL, verdict TEXT NOT NULL, record TEXT NOT NULL, reply TEXT, ts REAL NOT NULL,
    UNIQUE (project_id, node));
CREATE INDEX IF NOT EXISTS stage_events_project ON stage_events (project_id, stage, event);
CREATE INDEX IF NOT EXISTS artifacts_project ON artifacts (project_id);
"""


# What each typed column may hold. SQLite stores whatever a hand edit puts in a column ('abc' in a REAL, -100 as
# a cost), so these are checked when a run folder is read back (``value_problems``): a negative cost would be
# credited to the budget, a word where a number belongs would end the resume in a traceback.
_COUNT, _AMOUNT, _FLAG = "a whole number, 0 or more", "a finite number, 0 or more", "0 or 1"
_NUMBER = "a finite number"  # saved_usd: a cache write alone saves less than nothing
_COLUMNS: dict[str, dict[str, str]] = {
    "calls": {
        "input_tokens": _COUNT,
        "output_tokens": _COUNT,
        "cached_input_tokens": _COUNT,
        "evaluated_input_tokens": _COUNT,
        "ordinal": _COUNT,
        "cost_usd": _AMOUNT,
        "saved_usd": _NUMBER,
        "latency_s": _AMOUNT,
        "cache_hit": _FLAG,
        "ts": _AMOUNT,
    },
    "projects": {"idx": _COUNT, "created": _AMOUNT, "updated": _AMOUNT},
    "stage_events": {"ts": _AMOUNT},
    "artifacts": {"ts": _AMOUNT},
    "code_nodes": {"ts": _AMOUNT},
}
_NULLABLE = {("stage_events", "contract_version"): _COUNT}
_WHERE_BAD = {  # SQL true for a value that is not what the column may hold (9e999 is SQLite's infinity)
    _COUNT: "typeof({c}) != 'integer' OR {c} < 0",
    _AMOUNT: "typeof({c}) NOT IN ('integer', 'real') OR {c} < 0 OR {c} >= 9e999",
    _NUMBER: "typeof({c}) NOT IN ('integer', 'real') OR abs({c}) >= 9e999",
    _FLAG: "typeof({c}) != 'integer' OR {c} NOT IN (0, 1)",
}
_CHOICES = {
    ("projects", "status"): tuple(s.value for s in ProjectStatus),
    ("stage_events", "event"): ("start", "finish", "fail"),
}
# run-level values read back as numbers or JSON (``project_started:<id>`` too: a finite time)
_META = {
    "sessions": _COUNT,
    "started_at": _AMOUNT,
    "active_s": _AMOUNT,
    "identity": "a JSON object",
    "forced_resumes": "a JSON list",
}


def value_problems(db: sqlite3.Connection, *, limit: int = 5) -> list[str]:
    """Values of a ledger that FARS never writes, as 'table.column = value (row id N): must be ...', at most
    ``limit`` of them: typed columns holding text or a negative or infinite number, an unknown status, and
    run-level values (``meta``) that are read back as numbers or JSON but are not."""
    tables = {str(r[0]) for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    found: list[str] = []
    for table, columns in _COLUMNS.items():
        if table not in tables:
            continue
        present = {str(r[1]) for r in db.execute(f"PRAGMA table_info({table})")}
        checks = [(c, kind, _WHERE_BAD[kind].format(c=c)) for c, kind in columns.items() if c in present]
        checks += [
            (c, kind, f"{c} IS NOT NULL AND ({_WHERE_BAD[kind].format(c=c)})")
            for (t, c), kind in _NULLABLE.items()
            if t == table and c in present
        ]
        checks += [
            (c, f"one of {', '.join(allowed)}", f"{c} IS NULL OR {c} NOT IN ({', '.join('?' * len(allowed))})")
            for (t, c), allowed in _CHOICES.items()
            if t == table and c in present
        ]
        for column, kind, where in checks:
            args = _CHOICES.get((table, column), ())
            for rowid, value in db.execute(
                f"SELECT rowid, {column} FROM {table} WHERE {where} LIMIT ?", (*args, limit)
            ):
                found.append(f"{table}.{column} = {_shown(value)} (row id {rowid}): must be {kind}")
    if "meta" in tables:
        for key, value in db.execute("SELECT key, value FROM meta"):
            wanted = _META.get(str(key)) or (_AMOUNT if str(key).startswith("project_started:") else None)
            if wanted is not None and not _meta_fits(value, wanted):
                found.append(f"meta {key} = {_shown(value)}: must be {wanted}")
    return found[:limit]


def _meta_fits(value: object, kind: str) -> bool:
    """Whether a run-level value reads back as ``kind`` (what ``Ledger.get_meta``'s readers parse it as)."""
    text = str(value)
    try:
        if kind == _COUNT:
            return not isinstance(value, bytes) and int(text) >= 0
        if kind == _AMOUNT:
            number = float(text)
            return not isinstance(value, bytes) and math.isfinite(number) and number >= 0
        parsed = json.loads(text)
    except (ValueError, OverflowError):
        return False
    return isinstance(parsed, dict if kind == "a JSON object" else list)


def _shown(value: object) -> str:
    """A stored value as a message shows it: its repr, cut short (a hand edit may have put anything there)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def connect_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection to a ledger that may be in use by its run.

    Opened with SQLite's ``mode=ro`` URI and ``query_only``, so it can never write or take a write lock;
    in WAL mode a reader never blocks the writer. Autocommit: each query is its own short read, so the
    run's checkpoints are never held back. FileNotFoundError when there is no ledger at ``path``.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no ledger there")
    db = sqlite3.connect(
        f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None, check_same_thread=False, timeout=2.0
    )
    db.execute("PRAGMA query_only=1")
    return db


@dataclass(frozen=True)
class LedgerCheck:
    """What a ledger file holds, as a resume checks it (``check_ledger``); each field as far as the check got."""

    damage: list[str]  # what ``PRAGMA quick_check`` found; empty when the file is intact
    holds_run: bool = False  # a session opened it (its ``sessions`` is set); not: emptied, or killed at start-up
    unwritten: list[str] = field(default_factory=list)  # values FARS never writes (``value_problems``)
    rows: tuple[int, int] | None = None  # (projects, calls) it knows; None when either table is missing


def check_ledger(path: Path) -> LedgerCheck:
    """Read a ledger file for the checks before a resume, leaving the run folder exactly as it was.

    Read-only; without a WAL file there is nothing beyond the main file to read, and ``immutable=1`` then
    makes no ``-wal`` or ``-shm``. The check stops at damage (nothing more of a damaged file is read) and at
    a ledger no session opened. ``sqlite3.Error`` when the file cannot be opened or read as SQLite.
    """
    flags = "mode=ro" if os.path.lexists(f"{path}-wal") else "mode=ro&immutable=1"
    db = sqlite3.connect(f"file:{urllib.parse.quote(str(path))}?{flags}", uri=True, timeout=30)
    try:
        verdict = [str(r[0]) for r in db.execute("PRAGMA quick_check").fetchall()]
        if verdict != ["ok"]:
            return LedgerCheck(damage=verdict)
        tables = {str(r[0]) for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        row = db.execute("SELECT value FROM meta WHERE key='sessions'").fetchone() if "meta" in tables else None
        if row is None or row[0] is None:
            return LedgerCheck(damage=[])
        rows = None
        if {"projects", "calls"} <= tables:
            rows = (_count(db, "projects"), _count(db, "calls"))
        return LedgerCheck(damage=[], holds_run=True, unwritten=value_problems(db), rows=rows)
    finally:
        db.close()


def _count(db: sqlite3.Connection, table: str) -> int:
    return int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def _dicts(cursor: sqlite3.Cursor) -> list[dict[str, Any]]:
    """A query's rows as {column: value}."""
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


@dataclass(frozen=True)
class CallRow:
    """One model call as the ledger stores it."""

    project_id: str | None
    stage: str | None
    model: str
    request_hash: str
    ordinal: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    latency_s: float
    cache_hit: bool
    response: str | None
    error: str | None = None
    cached_input_tokens: int = 0  # input tokens served by a prompt cache (provider's reads, embedded prefix reuse)
    evaluated_input_tokens: int = 0  # input tokens the model evaluated: input_tokens minus the cached ones
    saved_usd: float = 0.0  # the cached tokens' saving against the full input price
    structured_mode: str | None = None  # how structured output was asked: json_schema, json_object, tools, text


# columns added after the first release, with their SQL types: ``Ledger._migrate`` adds them to older ledgers
_ADDED_COLUMNS = {
    "stage_events": (("contract", "TEXT"), ("contract_version", "INTEGER")),
    "calls": (
        ("cached_input_tokens", "INTEGER NOT NULL DEFAULT 0"),
        ("evaluated_input_tokens", "INTEGER NOT NULL DEFAULT 0"),
        ("saved_usd", "REAL NOT NULL DEFAULT 0"),
        ("structured_mode", "TEXT"),
    ),
}


@dataclass(frozen=True)
class StoredOutput:
    """A finished stage's output as the ledger holds it: plain data and the contract it was written under.

    The JSON is decoded on first use of ``data``: a summary whose outputs are already validated (by event
    id, ``fars.run.summary.typed_outputs``) reads a large run's outputs without decoding them again.
    """

    event_id: int
    project_id: str
    stage: str
    contract: str  # the contract's name (older ledgers: the stage's name)
    version: int | None
    text: str | None = field(default=None, repr=False)  # the stored JSON

    @cached_property
    def _decoded(self) -> tuple[dict[str, Any], str | None]:
        try:
            data = json.loads(self.text) if self.text else {}
        except ValueError as exc:
            return {}, f"the stored output is not JSON ({exc})"
        if not isinstance(data, dict):
            return {}, f"the stored output is a JSON {type(data).__name__}, not an object"
        return data, None

    @property
    def data(self) -> dict[str, Any]:
        """The output as plain data (empty when the stored text is not a JSON object)."""
        return self._decoded[0]

    @property
    def problem(self) -> str | None:
        """Why the stored text is not a JSON object, when it is not."""
        return self._decoded[1]


def load_stored(stored: StoredOutput, cls: type[StageOutput] | None = None) -> StageOutput | None:
    """A ledger's stored output as its contract (``cls``, else the one registered under its name).

    None when the contract is not known here (a stage of a package that is not installed);
    ``ContractError`` when the stored data does not fit its contract.
    """
    cls = cls or contract_class(stored.contract)
    if cls is None:
        return None
    if stored.problem:
        raise ContractError(stored.project_id, stored.stage, [stored.problem])
    return load_output(cls, stored.data, project_id=stored.project_id, stage=stored.stage, version=stored.version)


@dataclass(frozen=True)
class BoardRow:
    """What the live status board shows of a project, read from the ledger."""

    id: str
    stage: str | None
    status: ProjectStatus
    title: str | None
    error: str | None
    stage_started: float | None  # when its latest stage began
    last_event: float | None  # its latest stage event (start, finish or failure)


@dataclass(frozen=True)
class ProjectRow:
    """A project's current state in the ledger."""

    id: str
    idx: int
    area: str
    stage: str | None
    status: ProjectStatus
    title: str | None
    error: str | None


class LedgerError(ValueError):
    """The ledger file cannot be used (damaged, not SQLite, a link); the message names it and what to do."""


class Ledger:
    """SQLite ledger of one run; every write commits at once so a kill loses nothing written."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        if read_only:  # a reader beside the run (``fars view``): never creates, migrates or locks for writing
            self._db = connect_read_only(path)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            check_plain(path)  # a link or special file in its place is refused, never followed
            self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            self._migrate()
        except (sqlite3.DatabaseError, UnsafeFileError) as exc:
            raise LedgerError(
                f"{path} is not a usable ledger ({exc}); restore it from a backup, or start a new run in another folder"
            ) from None

    def _migrate(self) -> None:
        """Bring a ledger written by an older FARS up to this schema (columns are only ever added)."""
        for table, added in _ADDED_COLUMNS.items():
            columns = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            for name, kind in added:
                if name not in columns:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def open_files(self) -> None:
        """Make SQLite open the ledger's files now (the database, and in WAL mode its ``-wal`` and ``-shm``), so a
        reader that checks which files it opened checks after this."""
        self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()

    def data_version(self) -> int:
        """A number that changes whenever another connection (the run) commits to the ledger: a reader's cheap
        look for news."""
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    # -- run metadata -------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        """A run-level value, or None."""
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Set a run-level value."""
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # -- projects -----------------------------------------------------------------------------
    def add_project(self, project_id: str, idx: int, area: str) -> None:
        """Register a queued project (no-op if it exists, as on resume)."""
        now = time.time()
        self._db.execute(
            "INSERT OR IGNORE INTO projects (id, idx, area, stage, status, created, updated) "
            "VALUES (?, ?, ?, NULL, ?, ?, ?)",
            (project_id, idx, area, ProjectStatus.queued.value, now, now),
        )

    def update_project(
        self,
        project_id: str,
        *,
        stage: str | None = None,
        status: ProjectStatus | None = None,
        title: str | None = None,
        error: str | None = None,
    ) -> None:
        """Change the given fields of a project."""
        sets: list[str] = ["updated=?"]
        args: list[object] = [time.time()]
        for column, value in (("stage", stage), ("title", title), ("error", error)):
            if value is not None:
                sets.append(f"{column}=?")
                args.append(value)
        if status is not None:
            sets.append("status=?")
            args.append(status.value)
        self._db.execute(f"UPDATE projects SET {', '.join(sets)} WHERE id=?", (*args, project_id))

    def project(self, project_id: str) -> ProjectRow:
        """One project's row (KeyError if the ledger has no such project)."""
        row = self._db.execute(
            "SELECT id, idx, area, stage, status, title, error FROM projects WHERE id=?", (project_id,)
        ).fetchone()
        if row is None:
            raise KeyError(f"no project {project_id!r} in this run's ledger")
        return ProjectRow(row[0], row[1], row[2], row[3], ProjectStatus(row[4]), row[5], row[6])

    def has_project(self, project_id: str) -> bool:
        """Whether the ledger knows the project."""
        return self._db.execute("SELECT 1 FROM projects WHERE id=?", (project_id,)).fetchone() is not None

    def projects(self) -> list[ProjectRow]:
        """All projects in queue order."""
        rows = self._db.execute(
            "SELECT id, idx, area, stage, status, title, error FROM projects ORDER BY idx"
        ).fetchall()
        return [ProjectRow(r[0], r[1], r[2], r[3], ProjectStatus(r[4]), r[5], r[6]) for r in rows]

    # -- stages -------------------------------------------------------------------------------
    def stage_started(self, project_id: str, stage: str) -> None:
        """Record that a stage began for a project."""
        self._event(project_id, stage, "start")

    def stage_finished(self, project_id: str, stage: str, output: BaseModel) -> None:
        """Record a finished stage with its output (what resume hands to the next stage) and its contract."""
        self._db.execute(
            "INSERT INTO stage_events (project_id, stage, event, ts, output, error, contract, contract_version) "
            "VALUES (?,?,?,?,?,NULL,?,?)",
            (
                project_id,
                stage,
                "finish",
                time.time(),
                output.model_dump_json(),
                getattr(output, "contract", "") or stage,
                getattr(output, "version", None),
            ),
        )

    def stage_failed(self, project_id: str, stage: str, error: str) -> None:
        """Record a failed stage."""
        self._event(project_id, stage, "fail", error=error)

    def _event(self, project_id: str, stage: str, event: str, **extra: str | None) -> None:
        self._db.execute(
            "INSERT INTO stage_events (project_id, stage, event, ts, output, error) VALUES (?,?,?,?,?,?)",
            (project_id, stage, event, time.time(), extra.get("output"), extra.get("error")),
        )

    def stage_output(self, project_id: str, stage: str) -> StoredOutput | None:
        """The output of a finished stage, or None when it has not finished."""
        row = self._db.execute(
            "SELECT id, project_id, stage, output, contract, contract_version FROM stage_events "
            "WHERE project_id=? AND stage=? AND event='finish' ORDER BY id DESC LIMIT 1",
            (project_id, stage),
        ).fetchone()
        return None if row is None else _stored(row)

    def finished_outputs(self, project_id: str | None = None) -> dict[tuple[str, str], StoredOutput]:
        """The latest output of every finished (project, stage), in one query (of one project if given)."""
        where, args = ("AND project_id=?", (project_id,)) if project_id is not None else ("", ())
        rows = self._db.execute(
            "SELECT id, project_id, stage, output, contract, contract_version FROM stage_events WHERE id IN "
            f"(SELECT MAX(id) FROM stage_events WHERE event='finish' {where} GROUP BY project_id, stage)",
            args,
        ).fetchall()
        return {(r[1], r[2]): _stored(r) for r in rows}

    def board(self, ids: list[str] | None = None) -> list[BoardRow]:
        """Every project (or those in ``ids``) with its latest stage's start and its latest event: the status
        board's one query; with ``ids`` it reads only their rows (indexed), whatever the run's size."""
        if ids is None:
            rows = self._db.execute(
                "SELECT p.id, p.stage, p.status, p.title, p.error, e.started, e.last FROM projects p LEFT JOIN "
                "(SELECT project_id, MAX(CASE WHEN event='start' THEN ts END) AS started, MAX(ts) AS last "
                "FROM stage_events GROUP BY project_id) e ON e.project_id = p.id ORDER BY p.idx"
            ).fetchall()
        else:
            found = [
                self._db.execute(
                    "SELECT p.id, p.stage, p.status, p.title, p.error, (SELECT MAX(ts) FROM stage_events "
                    "WHERE project_id=p.id AND event='start'), (SELECT MAX(ts) FROM stage_events WHERE project_id=p.id) "
                    "FROM projects p WHERE p.id=?",
                    (pid,),
                ).fetchone()
                for pid in ids
            ]
            rows = [r for r in found if r is not None]  # in the order of ``ids``
        return [BoardRow(r[0], r[1], ProjectStatus(r[2]), r[3], r[4], r[5], r[6]) for r in rows]

    def all_stage_seconds(self) -> dict[str, dict[str, float]]:
        """``stage_seconds`` of every project, in one query."""
        rows = self._db.execute("SELECT project_id, stage, event, ts FROM stage_events ORDER BY id").fetchall()
        return _stage_seconds(rows)

    def stage_seconds(self, project_id: str) -> dict[str, float]:
        """Wall seconds of each finished stage of a project (last start to its finish)."""
        rows = self._db.execute(
            "SELECT project_id, stage, event, ts FROM stage_events WHERE project_id=? ORDER BY id", (project_id,)
        ).fetchall()
        return _stage_seconds(rows).get(project_id, {})

    def project_times(self, project_id: str | None = None) -> dict[str, tuple[float, float]]:
        """Each project's first stage start and its last stage event (finish or failure), as epoch seconds."""
        where, args = ("WHERE project_id=?", (project_id,)) if project_id is not None else ("", ())
        rows = self._db.execute(
            f"SELECT project_id, MIN(ts), MAX(ts) FROM stage_events {where} GROUP BY project_id", args
        ).fetchall()
        return {r[0]: (float(r[1]), float(r[2])) for r in rows}

    def project_events(self, project_id: str) -> list[dict[str, Any]]:
        """A project's stage events in order, each as {stage, event, ts, error}."""
        return _dicts(
            self._db.execute(
                "SELECT stage, event, ts, error FROM stage_events WHERE project_id=? ORDER BY id", (project_id,)
            )
        )

    def stage_events(self) -> list[tuple[str, str, str]]:
        """Every (project, stage, event) in order; tests use it to prove nothing ran twice."""
        rows = self._db.execute("SELECT project_id, stage, event FROM stage_events ORDER BY id").fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    # -- model calls --------------------------------------------------------------------------
    def record_call(self, row: CallRow) -> None:
        """Store one model call, its usage and its reply."""
        self._db.execute(
            "INSERT INTO calls (project_id, stage, model, request_hash, ordinal, input_tokens, "
            "output_tokens, cost_usd, latency_s, cache_hit, ts, response, error, cached_input_tokens, "
            "evaluated_input_tokens, saved_usd, structured_mode) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                row.project_id,
                row.stage,
                row.model,
                row.request_hash,
                row.ordinal,
                row.input_tokens,
                row.output_tokens,
                row.cost_usd,
                row.latency_s,
                int(row.cache_hit),
                time.time(),
                row.response,
                row.error,
                row.cached_input_tokens,
                row.evaluated_input_tokens,
                row.saved_usd,
                row.structured_mode,
            ),
        )

    def project_calls(self, project_id: str) -> list[dict[str, Any]]:
        """A project's model calls in order, each as every column the ledger stores of it."""
        return _dicts(self._db.execute("SELECT * FROM calls WHERE project_id=? ORDER BY id", (project_id,)))

    def answered_places(self) -> set[tuple[str | None, str | None]]:
        """Every (project, stage) with at least one answered call: the only places a call can be replayed."""
        rows = self._db.execute("SELECT DISTINCT project_id, stage FROM calls WHERE response IS NOT NULL")
        return {(r[0], r[1]) for r in rows}

    def replay(self, project_id: str | None, stage: str | None, request_hash: str, ordinal: int) -> str | None:
        """The reply of an earlier identical call at the same place in the run, if any."""
        row = self._db.execute(
            "SELECT response FROM calls WHERE project_id IS ? AND stage IS ? AND request_hash=? "
            "AND ordinal=? AND response IS NOT NULL ORDER BY id LIMIT 1",
            (project_id, stage, request_hash, ordinal),
        ).fetchone()
        return None if row is None else str(row[0])

    def usage(self, by: str | None = None, project_id: str | None = None) -> dict[str, Usage]:
        """Summed usage of all calls, grouped by 'stage', 'model' or 'project_id' (key '' if None)."""
        if by not in (None, "stage", "model", "project_id"):
            raise ValueError(f"cannot group usage by {by!r}")
        key = by or "''"
        where, args = ("WHERE project_id=?", (project_id,)) if project_id is not None else ("", ())
        rows = self._db.execute(
            f"SELECT {key}, {_USAGE_SUMS} FROM calls {where} GROUP BY {key}",
            args,
        ).fetchall()
        return {str(r[0] or ""): _summed_usage(r) for r in rows}

    def structured_modes(self) -> dict[str, dict[str, int]]:
        """Answered calls per model and structured-output mode (how each model was asked for JSON)."""
        rows = self._db.execute(
            "SELECT model, structured_mode, COUNT(*) FROM calls WHERE structured_mode IS NOT NULL "
            "AND response IS NOT NULL GROUP BY model, structured_mode"
        ).fetchall()
        modes: dict[str, dict[str, int]] = {}
        for model, mode, count in rows:
            modes.setdefault(str(model), {})[str(mode)] = int(count)
        return modes

    def total_usage(self) -> Usage:
        """Usage of every call of the run."""
        return self.usage().get("", Usage())

    def usage_since(self, after_id: int) -> tuple[int, Usage]:
        """Summed usage of the calls recorded after call id ``after_id``, and the last call id (a running total's
        step: it reads only the new rows, by primary key)."""
        r = self._db.execute(
            f"SELECT MAX(id), {_USAGE_SUMS} FROM calls WHERE id > ?",
            (after_id,),
        ).fetchone()
        usage = _summed_usage(r)
        return (int(r[0]) if r[0] is not None else after_id), usage

    # -- artifacts ----------------------------------------------------------------------------
    def add_artifact(self, project_id: str, artifact: Artifact) -> None:
        """Record an artifact a stage wrote."""
        self._db.execute(
            "INSERT INTO artifacts (project_id, stage, kind, path, sha256, ts) VALUES (?,?,?,?,?,?)",
            (project_id, artifact.stage, artifact.kind, artifact.path, artifact.sha256, time.time()),
        )

    def record_code_node(self, project_id: str, node: BaseModel, reply: str | None) -> None:
        """Record a finished node of a project's search over programs (its record and the reply that made it)."""
        data = node.model_dump(mode="json")
        self._db.execute(
            "INSERT OR REPLACE INTO code_nodes (project_id, node, parent, kind, verdict, record, reply, ts) "
            "VALUES (?,?,?,?,?,?,?,?)",
            (
                project_id,
                data["id"],
                data.get("parent"),
                data["kind"],
                data["verdict"],
                json.dumps(data),
                reply,
                time.time(),
            ),
        )

    def code_nodes(self, project_id: str) -> list[tuple[dict[str, Any], str | None]]:
        """A project's finished code nodes in the order they finished: (record, reply)."""
        rows = self._db.execute(
            "SELECT record, reply FROM code_nodes WHERE project_id=? ORDER BY id", (project_id,)
        ).fetchall()
        return [(json.loads(r[0]), r[1]) for r in rows]

    def artifacts(self, project_id: str) -> list[Artifact]:
        """A project's artifacts, latest version of each path."""
        rows = self._db.execute(
            "SELECT project_id, kind, path, sha256, stage FROM artifacts WHERE project_id=? ORDER BY id", (project_id,)
        ).fetchall()
        return _latest_artifacts(rows).get(project_id, [])

    def all_artifacts(self) -> dict[str, list[Artifact]]:
        """``artifacts`` of every project, in one query."""
        rows = self._db.execute("SELECT project_id, kind, path, sha256, stage FROM artifacts ORDER BY id").fetchall()
        return _latest_artifacts(rows)


def _stored(row: tuple[Any, ...]) -> StoredOutput:
    """A StoredOutput from (id, project, stage, output JSON, contract, version); its JSON decoded when used."""
    return StoredOutput(int(row[0]), row[1], row[2], row[4] or row[2], row[5], row[3])


def _stage_seconds(rows: list[tuple[str, str, str, float]]) -> dict[str, dict[str, float]]:
    """Wall seconds of each finished stage per project, from (project, stage, event, ts) rows in order."""
    started: dict[tuple[str, str], float] = {}
    seconds: dict[str, dict[str, float]] = {}
    for project, stage, event, ts in rows:
        if event == "start":
            started[(project, stage)] = ts
        elif event == "finish" and (project, stage) in started:
            seconds.setdefault(project, {})[stage] = ts - started[(project, stage)]
    return seconds


def _latest_artifacts(rows: list[tuple[str, str, str, str, str]]) -> dict[str, list[Artifact]]:
    """The latest version of each artifact path per project, from (project, kind, path, sha, stage) rows."""
    latest: dict[str, dict[str, Artifact]] = {}
    for project, kind, path, sha, stage in rows:
        latest.setdefault(project, {})[path] = Artifact(kind=kind, path=path, sha256=sha, stage=stage)
    return {project: list(paths.values()) for project, paths in latest.items()}


_USAGE_SUMS = (  # the sums a Usage is made of, in _summed_usage's order (after one leading column)
    "COUNT(*), SUM(input_tokens), SUM(output_tokens), SUM(cost_usd), SUM(latency_s), SUM(cache_hit), "
    "SUM(cached_input_tokens), SUM(evaluated_input_tokens), SUM(saved_usd)"
)


def _summed_usage(r: tuple[Any, ...]) -> Usage:
    """A Usage from a row of ``_USAGE_SUMS`` (its first column is the group's key or a call id)."""
    return Usage(
        calls=r[1],
        input_tokens=r[2] or 0,
        output_tokens=r[3] or 0,
        cost_usd=r[4] or 0.0,
        latency_s=r[5] or 0.0,
        cache_hits=r[6] or 0,
        cached_input_tokens=r[7] or 0,
        evaluated_input_tokens=r[8] or 0,
        saved_usd=r[9] or 0.0,
    )
