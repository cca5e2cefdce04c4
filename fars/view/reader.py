"""Reading a run for the view: its RunRecord, or the same summary built live from its ledger.

A finished run is read from its ``run_record.json``; a run still going (no record yet, or one saying
``running``) is summarised from its ledger with ``fars.summary.build_run_record``, opened read-only
(``Ledger(read_only=True)``: SQLite ``mode=ro``, WAL readers never block the writer). A change is
noticed through ``PRAGMA data_version`` and the record's mtime; a new summary is built at most once
per change and never more often than its own cost allows (so a large run is not slowed by a viewer).
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from fars.config import DEFAULT_STAGES
from fars.contracts import (
    CodeNode,
    ContractError,
    ExperimentOutput,
    IdeationOutput,
    PlanningOutput,
    ReviewOutput,
    WritingOutput,
    load_stored,
)
from fars.ledger import BoardRow, Ledger, connect_read_only
from fars.records import ProjectStatus, ProjectSummary, RunRecord
from fars.summary import RUN_RECORD_FILE, build_run_record, summarize_project, typed_outputs
from fars.view.folders import RunFolder, ServedFolders, read_text, served_file

LEDGER_FILE = "ledger.sqlite"
KNOWN_CONTRACTS = (IdeationOutput, PlanningOutput, ExperimentOutput, WritingOutput, ReviewOutput)
MAX_CURVE_RUNS = 200  # training runs drawn per project; more are listed, not drawn
MAX_METRICS_BYTES = 5_000_000


@dataclass
class RunSnapshot:
    """A run as of one read: its summary, its stages in order, each project's latest stage start."""

    folder: RunFolder
    record: RunRecord | None
    generation: int
    live: bool  # the run is still going (its summary comes from the ledger)
    stages: list[str]
    stage_started: dict[str, float | None] = field(default_factory=dict)
    last_activity: float | None = None  # mtime of the ledger or the record
    problem: str | None = None  # why the run could not be read in full
    read_at: float = field(default_factory=time.time)


@dataclass
class ProjectDetail:
    """Everything the project page shows, read from the ledger (or only the RunRecord when there is none)."""

    summary: ProjectSummary
    ideation: IdeationOutput | None = None
    planning: PlanningOutput | None = None
    experiment: ExperimentOutput | None = None
    writing: WritingOutput | None = None
    review: ReviewOutput | None = None
    other_outputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # stages with contracts unknown here
    events: list[dict[str, Any]] = field(default_factory=list)  # stage starts, finishes and failures
    calls: list[dict[str, Any]] = field(default_factory=list)  # every column the ledger has
    code_nodes: list[CodeNode] = field(default_factory=list)  # the search over programs, as its nodes finished
    code_replies: dict[str, str] = field(default_factory=dict)  # node id -> the model's reply that made it
    curves: list[TrainingRun] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class TrainingRun(BaseModel):
    """One training run's ``metrics.json``, as far as the view draws it."""

    name: str
    path: str  # relative to the run folder
    metric: str | None = None
    final: dict[str, float] = {}
    curves: dict[str, list[float]] = {}
    steps: list[float] = []


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _mtime_ns(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


_records: dict[Path, tuple[int, RunRecord | None, str | None]] = {}
_records_lock = threading.Lock()


def stored_record(run_dir: Path) -> tuple[RunRecord | None, str | None]:
    """A run folder's ``run_record.json`` (parsed again only when its mtime changed), and why it is unreadable."""
    path = run_dir / RUN_RECORD_FILE
    stamp = _mtime_ns(path)
    if stamp is None:
        return None, None
    with _records_lock:
        cached = _records.get(path)
    if cached is not None and cached[0] == stamp:
        return cached[1], cached[2]
    try:
        entry: tuple[int, RunRecord | None, str | None] = (
            stamp,
            RunRecord.model_validate_json(path.read_bytes()),
            None,
        )
    except (OSError, ValueError, ValidationError) as exc:
        entry = (stamp, None, f"{RUN_RECORD_FILE} is unreadable ({str(exc)[:200]})")
    with _records_lock:
        _records[path] = entry
    return entry[1], entry[2]


def change_stamp(run_dir: Path) -> tuple[int | None, ...]:
    """File times that change whenever the run writes its ledger or RunRecord (stat calls only)."""
    return (
        _mtime_ns(run_dir / LEDGER_FILE),
        _mtime_ns(run_dir / (LEDGER_FILE + "-wal")),
        _mtime_ns(run_dir / RUN_RECORD_FILE),
    )


def stage_order(config: dict[str, Any], seen: list[str]) -> list[str]:
    """The run's stages: those its config names (else FARS's defaults), then any other stage its ledger saw."""
    pipeline = config.get("pipeline") if isinstance(config, dict) else None
    named = pipeline.get("stages") if isinstance(pipeline, dict) else None
    stages = [str(s) for s in named] if isinstance(named, list) and named else list(DEFAULT_STAGES)
    for stage in seen:
        if stage and stage != "done" and stage not in stages:
            stages.append(stage)
    return stages


class RunReader:
    """One run folder, read-only; see the module docstring."""

    def __init__(self, folder: RunFolder, served: ServedFolders) -> None:
        self.folder = folder
        self.served = served
        self._lock = threading.RLock()
        self._ledger: Ledger | None = None
        self._raw: sqlite3.Connection | None = None  # the same ledger, for the rows Ledger has no reader for
        self._key: tuple[Any, ...] | None = None
        self._generation = 0
        self._snapshot: RunSnapshot | None = None
        self._built_at = -math.inf
        self._build_s = 0.0
        self._config: dict[str, Any] | None = None

    @property
    def ledger_path(self) -> Path:
        """Where the run's ledger is (it may not exist yet)."""
        return self.folder.path / LEDGER_FILE

    def _open(self) -> Ledger | None:
        if self._ledger is None and self.ledger_path.is_file():
            try:
                self._ledger = Ledger(self.ledger_path, read_only=True)
                self._raw = connect_read_only(self.ledger_path)
            except (OSError, sqlite3.Error):
                self._ledger = self._raw = None
        return self._ledger

    def close(self) -> None:
        """Close the read-only connections."""
        with self._lock:
            for db in (self._ledger, self._raw):
                if db is not None:
                    db.close()
            self._ledger = self._raw = None

    def poll(self) -> int:
        """The run's generation: a number that grows whenever its ledger or RunRecord changed."""
        with self._lock:
            self._open()
            version = None
            if self._raw is not None:
                try:
                    version = self._raw.execute("PRAGMA data_version").fetchone()[0]
                except sqlite3.Error:
                    version = None
            key = (
                version,
                _mtime_ns(self.ledger_path),
                _mtime_ns(self.ledger_path.with_name(LEDGER_FILE + "-wal")),
                _mtime_ns(self.folder.path / RUN_RECORD_FILE),
            )
            if key != self._key:
                self._key = key
                self._generation += 1
            return self._generation

    def stored_record(self) -> tuple[RunRecord | None, str | None]:
        """The run's ``run_record.json`` (read again only when it changed), and why it is unreadable."""
        return stored_record(self.folder.path)

    def config(self, record: RunRecord | None) -> dict[str, Any]:
        """The run's config: from its RunRecord, else the ``.hydra/config.yaml`` Hydra wrote at the start."""
        if record is not None:
            return record.config
        if self._config is None:
            text = read_text(self.folder, ".hydra/config.yaml", self.served)
            try:
                loaded = yaml.safe_load(text) if text else None
            except yaml.YAMLError:
                loaded = None
            self._config = loaded if isinstance(loaded, dict) else {}
        return self._config

    def snapshot(self) -> RunSnapshot:
        """The run as of now, rebuilt only after a change, and at most as often as its cost allows."""
        with self._lock:
            generation = self.poll()
            cached = self._snapshot
            if cached is not None and cached.generation == generation:
                return cached
            # a rebuild costs CPU beside the run: at most one per 0.5 s, or per 4x the last build's time
            if cached is not None and time.monotonic() - self._built_at < max(0.5, 4 * self._build_s):
                return cached
            began = time.monotonic()
            snap = self._build(generation)
            self._build_s = time.monotonic() - began
            self._built_at = time.monotonic()
            self._snapshot = snap
            return snap

    def _build(self, generation: int) -> RunSnapshot:
        stored, problem = self.stored_record()
        ledger = self._open()
        activity = max(
            (t for t in (_mtime(self.ledger_path), _mtime(self.folder.path / RUN_RECORD_FILE)) if t is not None),
            default=None,
        )
        record = stored
        live = stored is None or stored.status == "running"
        board: dict[str, BoardRow] = {}
        if ledger is not None:
            try:
                board = {row.id: row for row in ledger.board()}
                if live:
                    record = self._from_ledger(ledger, stored)
            except (sqlite3.Error, ContractError, ValueError) as exc:
                problem = f"the ledger could not be read in full ({type(exc).__name__}: {str(exc)[:300]})"
        elif live and stored is None:
            problem = problem or "no ledger and no RunRecord yet (the run is starting)"
        seen = [p.stage or "" for p in record.projects] if record else []
        seen += [s for p in record.projects for s in p.stage_seconds] if record else []
        return RunSnapshot(
            folder=self.folder,
            record=record,
            generation=generation,
            live=live and record is not None and record.status == "running",
            stages=stage_order(self.config(record), seen),
            stage_started={pid: row.stage_started for pid, row in board.items()},
            last_activity=activity,
            problem=problem,
        )

    def _from_ledger(self, ledger: Ledger, stored: RunRecord | None) -> RunRecord:
        """The summary of a run still going, built as the run builds it (``fars.summary``)."""
        started_text = ledger.get_meta("started_at")
        sessions = ledger.get_meta("sessions")
        started = float(started_text) if started_text else (stored.started_at if stored else time.time())
        resumed = max(0, int(sessions) - 1) if sessions else 0
        record = build_run_record(
            ledger, self.folder.path, self.config(stored), "running", started, resumed, stored.error if stored else None
        )
        return record

    # -- one project --------------------------------------------------------------------------
    def project(self, project_id: str) -> ProjectDetail | None:
        """Everything about one project, or None when the run has no such project."""
        with self._lock:
            ledger = self._open()
            if ledger is None or self._raw is None:
                return self._project_from_record(project_id)
            try:
                known = {row[0] for row in self._raw.execute("SELECT id FROM projects WHERE id=?", (project_id,))}
                if not known:
                    return self._project_from_record(project_id)
                detail = ProjectDetail(summary=summarize_project(ledger, project_id))
                self._outputs(ledger, project_id, detail)
                detail.events = _rows(
                    self._raw,
                    "SELECT stage, event, ts, error FROM stage_events WHERE project_id=? ORDER BY id",
                    (project_id,),
                )
                detail.calls = _rows(self._raw, "SELECT * FROM calls WHERE project_id=? ORDER BY id", (project_id,))
                _code_nodes(ledger, project_id, detail)
            except (sqlite3.Error, ContractError, ValueError) as exc:
                fallback = self._project_from_record(project_id)
                if fallback is None:
                    raise
                fallback.problems.append(f"the ledger could not be read in full ({type(exc).__name__}: {exc})")
                return fallback
        detail.curves = self.training_runs(project_id)
        return detail

    def _outputs(self, ledger: Ledger, project_id: str, detail: ProjectDetail) -> None:
        stored = ledger.finished_outputs(project_id)
        outputs = typed_outputs(ledger, stored).get(project_id)
        if outputs is not None:
            detail.ideation = outputs.get(IdeationOutput)
            detail.planning = outputs.get(PlanningOutput)
            detail.experiment = outputs.get(ExperimentOutput)
            detail.writing = outputs.get(WritingOutput)
            detail.review = outputs.get(ReviewOutput)
        for (_pid, stage), item in stored.items():
            typed = load_stored(item)
            if typed is None or not isinstance(typed, KNOWN_CONTRACTS):
                detail.other_outputs[stage] = item.data

    def _project_from_record(self, project_id: str) -> ProjectDetail | None:
        record, _ = self.stored_record()
        found = next((p for p in record.projects if p.id == project_id), None) if record else None
        if found is None:
            return None
        detail = ProjectDetail(summary=found, problems=["no ledger in this run folder: only its RunRecord is shown"])
        detail.curves = self.training_runs(project_id)
        return detail

    def training_runs(self, project_id: str) -> list[TrainingRun]:
        """The project's training runs (``projects/ID/runs/*/metrics.json``), as served files only."""
        runs_dir = self.folder.path / "projects" / project_id / "runs"
        try:
            names = sorted(p.name for p in runs_dir.iterdir() if not p.is_symlink())
        except OSError:
            return []
        found: list[TrainingRun] = []
        for name in names[:MAX_CURVE_RUNS]:
            relative = f"projects/{project_id}/runs/{name}/metrics.json"
            try:
                path = served_file(self.folder, relative, self.served)
                if path.stat().st_size > MAX_METRICS_BYTES:
                    continue
                found.append(_training_run(name, relative, json.loads(path.read_bytes())))
            except (LookupError, OSError, ValueError):
                continue  # not served, unreadable or not JSON: listed among the files, not drawn
        return found


def _code_nodes(ledger: Ledger, project_id: str, detail: ProjectDetail) -> None:
    """The project's code nodes: the finished experiment's own list (``Results.code``), else those the ledger
    holds so far (the search is under way); the replies, which only the ledger keeps, beside them."""
    stored = ledger.code_nodes(project_id)
    nodes: dict[str, CodeNode] = {}
    for record, reply in stored:
        try:
            node = CodeNode.model_validate(record)
        except ValidationError as exc:
            detail.problems.append(f"code node {record.get('id')!r} in the ledger is unreadable ({str(exc)[:200]})")
            continue
        nodes[node.id] = node
        if reply is not None:
            detail.code_replies[node.id] = reply
    search = detail.experiment.results.code if detail.experiment is not None else None
    if search is not None and search.nodes:
        nodes = {n.id: n for n in search.nodes}
    detail.code_nodes = list(nodes.values())


def _rows(db: sqlite3.Connection, sql: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
    cursor = db.execute(sql, args)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _numbers(values: Any) -> list[float]:
    if not isinstance(values, list):
        return []
    return [float(v) if isinstance(v, int | float) and math.isfinite(v) else math.nan for v in values]


def _training_run(name: str, relative: str, data: Any) -> TrainingRun:
    """A TrainingRun from a ``metrics.json`` (the templates' format: ``curves`` with ``step``, ``final``)."""
    if not isinstance(data, dict):
        raise ValueError("metrics.json is not an object")
    curves: dict[str, Any] = data["curves"] if isinstance(data.get("curves"), dict) else {}
    final: dict[str, Any] = data["final"] if isinstance(data.get("final"), dict) else {}
    steps = _numbers(curves.get("step"))
    series = {str(k): _numbers(v) for k, v in curves.items() if k != "step" and isinstance(v, list)}
    return TrainingRun(
        name=name,
        path=relative,
        metric=str(data["metric"]) if isinstance(data.get("metric"), str) else None,
        final={str(k): float(v) for k, v in final.items() if isinstance(v, int | float)},
        curves=series,
        steps=steps or [float(i) for i in range(max((len(v) for v in series.values()), default=0))],
    )


class Readers:
    """One RunReader per run folder viewed, opened when first needed, the least recently used closed past a cap."""

    def __init__(self, served: ServedFolders, cap: int = 32) -> None:
        self.served = served
        self.cap = cap
        self._lock = threading.Lock()
        self._readers: dict[str, RunReader] = {}

    def get(self, key: str) -> RunReader:
        """The reader of the run with that key (NotServed when there is no such run)."""
        folder = self.served.run(key)
        with self._lock:
            reader = self._readers.pop(key, None) or RunReader(folder, self.served)
            self._readers[key] = reader  # most recently used last
            while len(self._readers) > self.cap:
                oldest = next(iter(self._readers))
                self._readers.pop(oldest).close()
            return reader

    def close(self) -> None:
        """Close every reader."""
        with self._lock:
            for reader in self._readers.values():
                reader.close()
            self._readers.clear()


def is_open(status: ProjectStatus) -> bool:
    """Whether a project is still queued or running."""
    return status in (ProjectStatus.queued, ProjectStatus.running)
