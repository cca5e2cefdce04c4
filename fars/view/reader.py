"""Reading a run for the view: its RunRecord, or the same summary built live from its ledger.

A finished run is read from its ``run_record.json``; a run still going (no record yet, or one saying
``running``) is summarised from its ledger with ``fars.run.summary.build_run_record``, opened read-only
(``Ledger(read_only=True)``: SQLite ``mode=ro``, WAL readers never block the writer). A change is
noticed through ``PRAGMA data_version`` and the record's mtime; a new summary is built at most once
per change and never more often than its own cost allows (so a large run is not slowed by a viewer).

A run folder may hold whatever a program in it left, so every file is read through ``fars.safe_files``
(``read_file``: no link followed, no FIFO or device opened, a bounded size; ``load_yaml``: no alias
bomb), each kind of file with its own cap; the ledger is opened only once it, and any ``-wal``, ``-shm``
or ``-journal`` beside it, is a regular file of its own (``ledger_identity``). A file refused is named
with the reason on the page and in ``/api/runs``, never read.
"""

from __future__ import annotations

import errno
import json
import math
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from fars.config import DEFAULT_STAGES
from fars.run.contracts import (
    CodeNode,
    ContractError,
    ExperimentOutput,
    IdeationOutput,
    PlanningOutput,
    ReviewOutput,
    WritingOutput,
)
from fars.run.ledger import LEDGER_FILE, BoardRow, Ledger, load_stored
from fars.run.records import ProjectStatus, ProjectSummary, RunRecord
from fars.run.summary import RUN_RECORD_FILE, build_run_record, summarize_project, typed_outputs
from fars.safe_files import UnsafeFileError, UnsafeYamlError, load_yaml, read_file
from fars.view.folders import RefusedFile, RunFolder, ServedFolders, list_folders, open_plain, refusal

LEDGER_SIBLINGS = ("-wal", "-shm", "-journal")  # files SQLite opens beside the ledger, by name
CONFIG_FILE = ".hydra/config.yaml"
KNOWN_CONTRACTS = (IdeationOutput, PlanningOutput, ExperimentOutput, WritingOutput, ReviewOutput)
# caps per kind of file: a RunRecord is a few kB a project (32 MB: over 10,000 projects, ~200 MB to parse);
# a metrics.json a few kB to a few MB; Hydra's config a few kB
RECORD_MAX_BYTES = 32 * 1024 * 1024
CONFIG_MAX_BYTES = 256 * 1024
MAX_METRICS_BYTES = 5_000_000
MAX_METRICS_TOTAL_BYTES = 40_000_000  # all of a project's metrics.json files together, per read
MAX_CURVE_RUNS = 200  # training runs drawn per project; more are listed, not drawn
MAX_CURVE_SERIES = 16  # series drawn per training run
MAX_CURVE_POINTS = 1000  # points kept per series (evenly thinned past that, the last one always kept)
MAX_LISTED_PROBLEMS = 5
REFUSAL_HINT = (
    "fars view reads only a run folder's own regular files, each of a bounded size: a link, FIFO, device or "
    "hard link there was not written by FARS; remove it, or put the run's own file back"
)


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
    problem: str | None = None  # why the run could not be read in full (every refusal named in it too)
    refused: list[str] = field(default_factory=list)  # files of the run folder refused, each with why
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
        return os.lstat(path).st_mtime  # a link's own time: nothing is followed, even to look
    except OSError:
        return None


def _mtime_ns(path: Path) -> int | None:
    try:
        return os.lstat(path).st_mtime_ns
    except OSError:
        return None


def _stamp(path: Path) -> tuple[int, ...] | None:
    """What changes when a file is rewritten or replaced (by a link, a FIFO, another file): lstat only."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    return (info.st_mtime_ns, info.st_size, info.st_ino, info.st_mode)


def invalid(exc: ValidationError) -> str:
    """What is wrong with a file pydantic refused, without quoting its content (it may be anything)."""
    shown = [f"{'.'.join(str(x) for x in e['loc']) or 'the file'}: {e['msg']}" for e in exc.errors()[:3]]
    more = f" and {exc.error_count() - 3} more" if exc.error_count() > 3 else ""
    return "; ".join(shown)[:400] + more


@dataclass(frozen=True)
class StoredRecord:
    """A run folder's ``run_record.json`` as last read: the record, or why not (``refused``: the file itself
    was refused, a link, a special file, a hard link or too large, and never read)."""

    stamp: tuple[int, ...] | None
    record: RunRecord | None = None
    problem: str | None = None
    refused: bool = False


_records: dict[Path, StoredRecord] = {}
_records_lock = threading.Lock()


def read_stored_record(run_dir: Path) -> StoredRecord:
    """A run folder's ``run_record.json``, through ``read_file`` (at most ``RECORD_MAX_BYTES``, no link
    followed), parsed again only when it changed."""
    path = run_dir / RUN_RECORD_FILE
    stamp = _stamp(path)
    if stamp is None:
        return StoredRecord(None)
    with _records_lock:
        cached = _records.get(path)
    if cached is not None and cached.stamp == stamp:
        return cached
    try:
        entry = StoredRecord(
            stamp, RunRecord.model_validate_json(read_file(run_dir, RUN_RECORD_FILE, max_bytes=RECORD_MAX_BYTES))
        )
    except FileNotFoundError:
        entry = StoredRecord(None)
    except (RefusedFile, UnsafeFileError) as exc:
        entry = StoredRecord(stamp, problem=refusal(exc, run_dir), refused=True)
    except OSError as exc:
        entry = StoredRecord(stamp, problem=f"{RUN_RECORD_FILE} is unreadable ({exc.strerror or exc})")
    except ValidationError as exc:
        entry = StoredRecord(stamp, problem=f"{RUN_RECORD_FILE} is not a RunRecord ({invalid(exc)})")
    with _records_lock:
        _records[path] = entry
    return entry


def stored_record(run_dir: Path) -> tuple[RunRecord | None, str | None]:
    """A run folder's ``run_record.json`` (read again only when it changed), and why it is unreadable or refused."""
    stored = read_stored_record(run_dir)
    return stored.record, stored.problem


def ledger_identity(run_dir: Path) -> tuple[int, int] | None:
    """(device, inode) of the run's ``ledger.sqlite``, None when there is none.

    ``RefusedFile`` (naming it and why) unless the ledger and each ``-wal``, ``-shm`` or ``-journal`` beside it
    is a regular file of its own in the run folder: SQLite opens them by name and follows links, so a link
    there would show another run's ledger or a file from anywhere, and a FIFO would hang the reader.
    """
    fd, info = open_plain(run_dir, LEDGER_FILE)
    os.close(fd)
    for suffix in LEDGER_SIBLINGS:
        try:
            fd, _ = open_plain(run_dir, LEDGER_FILE + suffix)
        except FileNotFoundError:
            continue
        os.close(fd)
    return info.st_dev, info.st_ino


def ledger_refusal(run_dir: Path) -> str | None:
    """Why the run's ledger is refused (``ledger_identity``), or None when it is fine or missing."""
    try:
        ledger_identity(run_dir)
    except RefusedFile as exc:
        return refusal(exc, run_dir)
    except OSError:
        return None
    return None


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
        self._key: tuple[Any, ...] | None = None
        self._generation = 0
        self._snapshot: RunSnapshot | None = None
        self._built_at = -math.inf
        self._build_s = 0.0
        self._config: dict[str, Any] | None = None
        self._config_problem: tuple[str, bool] | None = None  # why the config was not used, and whether refused
        self._ledger_problem: tuple[str, bool] | None = None  # why the ledger is not open, and whether refused

    @property
    def ledger_path(self) -> Path:
        """Where the run's ledger is (it may not exist yet)."""
        return self.folder.path / LEDGER_FILE

    def _open(self) -> Ledger | None:
        """The read-only ledger, opened once it (and what SQLite opens beside it) is a regular file of its own.

        Checked again once SQLite has opened its files: a link swapped in between the check and the open
        is refused too (the connection is closed before a single row is used).
        """
        if self._ledger is not None:
            return self._ledger
        run_dir = self.folder.path
        ledger: Ledger | None = None
        try:
            before = ledger_identity(run_dir)
            ledger = Ledger(self.ledger_path, read_only=True)
            ledger.open_files()
            if ledger_identity(run_dir) != before:
                raise RefusedFile(f"{LEDGER_FILE} was replaced while it was opened; refused")
        except FileNotFoundError:
            self._ledger_problem = None
        except RefusedFile as exc:
            self._ledger_problem = (refusal(exc, run_dir), True)
        except (OSError, sqlite3.Error) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else f"{type(exc).__name__}: {exc}"
            self._ledger_problem = (f"{LEDGER_FILE} could not be opened ({str(why)[:300]})", False)
        else:
            self._ledger, self._ledger_problem = ledger, None
            return ledger
        if ledger is not None:
            ledger.close()
        return None

    def close(self) -> None:
        """Close the read-only connection."""
        with self._lock:
            if self._ledger is not None:
                self._ledger.close()
            self._ledger = None

    def poll(self) -> int:
        """The run's generation: a number that grows whenever its ledger or RunRecord changed."""
        with self._lock:
            ledger = self._open()
            version = None
            if ledger is not None:
                try:
                    version = ledger.data_version()
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
        """The run's config: from its RunRecord, else the ``.hydra/config.yaml`` Hydra wrote at the start
        (at most ``CONFIG_MAX_BYTES``, no link followed, no alias bomb; ``{}`` and a problem otherwise)."""
        if record is not None:
            return record.config
        if self._config is None:
            loaded: Any = None
            try:
                data = read_file(self.folder.path, CONFIG_FILE, max_bytes=CONFIG_MAX_BYTES)
                loaded = load_yaml(data, source=CONFIG_FILE, max_bytes=CONFIG_MAX_BYTES)
            except FileNotFoundError:
                pass
            except (RefusedFile, UnsafeFileError, UnsafeYamlError) as exc:
                why = str(exc) if isinstance(exc, UnsafeYamlError) else refusal(exc, self.folder.path)
                self._config_problem = (why, True)
            except OSError as exc:
                self._config_problem = (f"{CONFIG_FILE} is unreadable ({exc.strerror or exc})", False)
            except yaml.YAMLError as exc:
                self._config_problem = (f"{CONFIG_FILE} is not YAML ({str(exc).splitlines()[0][:200]})", False)
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
        read = read_stored_record(self.folder.path)
        stored, problem = read.record, read.problem
        refused = [problem] if read.refused and problem else []
        problems = [problem] if problem else []
        ledger = self._open()
        if self._ledger_problem is not None:
            problems.append(self._ledger_problem[0])
            if self._ledger_problem[1]:
                refused.append(self._ledger_problem[0])
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
                problems.append(f"the ledger could not be read in full ({type(exc).__name__}: {str(exc)[:300]})")
        elif live and stored is None and not problems:
            problems.append("no ledger and no RunRecord yet (the run is starting)")
        seen = [p.stage or "" for p in record.projects] if record else []
        seen += [s for p in record.projects for s in p.stage_seconds] if record else []
        stages = stage_order(self.config(record), seen)
        if stored is None and self._config_problem is not None:  # the config came from config.yaml
            problems.append(self._config_problem[0] + " (FARS's default stages are shown)")
            if self._config_problem[1]:
                refused.append(self._config_problem[0])
        if refused:
            problems.append(REFUSAL_HINT)
        return RunSnapshot(
            folder=self.folder,
            record=record,
            generation=generation,
            live=live and record is not None and record.status == "running",
            stages=stages,
            stage_started={pid: row.stage_started for pid, row in board.items()},
            last_activity=activity,
            problem="; ".join(problems) or None,
            refused=refused,
        )

    def _from_ledger(self, ledger: Ledger, stored: RunRecord | None) -> RunRecord:
        """The summary of a run still going, built as the run builds it (``fars.run.summary``)."""
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
            if ledger is None:
                return self._project_from_record(project_id)
            try:
                if not ledger.has_project(project_id):
                    return self._project_from_record(project_id)
                detail = ProjectDetail(summary=summarize_project(ledger, project_id))
                self._outputs(ledger, project_id, detail)
                detail.events = ledger.project_events(project_id)
                detail.calls = ledger.project_calls(project_id)
                _code_nodes(ledger, project_id, detail)
            except (sqlite3.Error, ContractError, ValueError) as exc:
                fallback = self._project_from_record(project_id)
                if fallback is None:
                    raise
                fallback.problems.append(f"the ledger could not be read in full ({type(exc).__name__}: {exc})")
                return fallback
        detail.curves = self.training_runs(project_id, detail.problems)
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
        why = self._ledger_problem[0] if self._ledger_problem is not None else "no ledger in this run folder"
        detail = ProjectDetail(summary=found, problems=[f"{why}: only its RunRecord is shown"])
        detail.curves = self.training_runs(project_id, detail.problems)
        return detail

    def training_runs(self, project_id: str, problems: list[str] | None = None) -> list[TrainingRun]:
        """The project's training runs (``projects/ID/runs/*/metrics.json``), each read through ``read_file``
        (no link followed, at most ``MAX_METRICS_BYTES``, ``MAX_METRICS_TOTAL_BYTES`` in all); why any was
        refused is added to ``problems``. Unreadable or not JSON: listed among the files, not drawn."""
        run_dir = self.folder.path
        refused: list[str] = []
        try:
            names = sorted(list_folders(run_dir, f"projects/{project_id}/runs"))
        except RefusedFile as exc:
            refused.append(refusal(exc, run_dir))
            names = []
        except OSError:
            names = []
        found: list[TrainingRun] = []
        budget = MAX_METRICS_TOTAL_BYTES
        for name in names[:MAX_CURVE_RUNS]:
            relative = f"projects/{project_id}/runs/{name}/metrics.json"
            cap = min(MAX_METRICS_BYTES, budget)
            try:
                data = read_file(run_dir, relative, max_bytes=cap)
                budget -= len(data)
                found.append(_training_run(name, relative, json.loads(data)))
            except FileNotFoundError:
                continue
            except UnsafeFileError as exc:
                if exc.errno == errno.EFBIG and cap < MAX_METRICS_BYTES:
                    refused.append(
                        f"training runs from {name} on are not drawn: their metrics.json files pass "
                        f"{MAX_METRICS_TOTAL_BYTES:,} bytes together"
                    )
                    break
                refused.append(refusal(exc, run_dir))
            except (OSError, ValueError, RecursionError):
                continue
        if problems is not None and refused:
            problems.extend(refused[:MAX_LISTED_PROBLEMS])
            if len(refused) > MAX_LISTED_PROBLEMS:
                problems.append(f"and {len(refused) - MAX_LISTED_PROBLEMS} more training run file(s) refused")
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


def _float(value: Any) -> float | None:
    """A JSON number as a float; None for anything else (an integer too large for a float included)."""
    if not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


def _number(value: Any) -> float:
    """A point of a curve: a finite float, else NaN (not drawn)."""
    number = _float(value)
    return number if number is not None and math.isfinite(number) else math.nan


def _thin(values: list[Any], keep: list[int] | None) -> list[Any]:
    return values if keep is None else [values[i] for i in keep if i < len(values)]


def _training_run(name: str, relative: str, data: Any) -> TrainingRun:
    """A TrainingRun from a ``metrics.json`` (the templates' format: ``curves`` with ``step``, ``final``).

    At most ``MAX_CURVE_SERIES`` series of at most ``MAX_CURVE_POINTS`` points are kept (evenly thinned,
    the last point kept), so a file of millions of values draws as fast as one of twenty.
    """
    if not isinstance(data, dict):
        raise ValueError("metrics.json is not an object")
    curves: dict[str, Any] = data["curves"] if isinstance(data.get("curves"), dict) else {}
    final: dict[str, Any] = data["final"] if isinstance(data.get("final"), dict) else {}
    step = curves.get("step")
    raw_steps: list[Any] = step if isinstance(step, list) else []
    raw = {str(k)[:200]: v for k, v in curves.items() if k != "step" and isinstance(v, list)}
    raw = dict(list(raw.items())[:MAX_CURVE_SERIES])
    length = max([len(raw_steps), *(len(v) for v in raw.values())])
    keep = None
    if length > MAX_CURVE_POINTS:
        stride = math.ceil(length / MAX_CURVE_POINTS)
        keep = [*range(0, length - 1, stride), length - 1]
    steps = [_number(v) for v in _thin(raw_steps, keep)]
    series = {k: [_number(v) for v in _thin(values, keep)] for k, values in raw.items()}
    finals = {str(k)[:200]: _float(v) for k, v in list(final.items())[:MAX_CURVE_SERIES]}
    return TrainingRun(
        name=name,
        path=relative,
        metric=str(data["metric"])[:200] if isinstance(data.get("metric"), str) else None,
        final={k: v for k, v in finals.items() if v is not None},
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
