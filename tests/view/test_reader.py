"""Reading a run for the view: the same summary as the run's own, from a ledger it never locks or changes."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from fars.run.ledger import Ledger
from fars.run.records import ProjectStatus
from fars.run.summary import build_run_record
from fars.view.folders import ServedFolders, folder_key
from fars.view.reader import RunReader
from tests.view.synthetic import STAGES, synthetic_run


def reader_of(run: Path) -> RunReader:
    served = ServedFolders([run])
    served.scan()
    return RunReader(served.run(folder_key(run.resolve())), served)


def test_a_running_run_is_summarised_from_its_ledger_as_the_run_would(tmp_path: Path) -> None:
    run = synthetic_run(tmp_path / "run", 7, finished=3, record=None)
    snap = reader_of(run).snapshot()
    assert snap.live and snap.record is not None and snap.record.status == "running"
    ledger = Ledger(run / "ledger.sqlite")
    expected = build_run_record(ledger, run, {}, "running", snap.record.started_at, 0)
    assert snap.record.totals == expected.totals and snap.record.funnel == expected.funnel
    assert snap.record.papers == 3 and snap.record.scores == expected.scores
    assert [p.status for p in snap.record.projects].count(ProjectStatus.running) == 4
    assert snap.stages == list(STAGES)
    assert all(snap.stage_started[p.id] is not None for p in snap.record.projects)


def test_a_finished_run_is_read_from_its_record_and_its_ledger_is_left_as_it_was(tmp_path: Path) -> None:
    run = synthetic_run(tmp_path / "run", 4)
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in run.iterdir() if p.is_file()}
    reader = reader_of(run)
    snap = reader.snapshot()
    assert not snap.live and snap.record is not None and snap.record.status == "completed"
    detail = reader.project("p000")
    assert detail is not None and detail.review is not None and len(detail.calls) == 4 * len(STAGES)
    reader.close()
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in run.iterdir() if p.is_file()}
    assert {k: v for k, v in after.items() if k in before} == before  # nothing it read was changed


def test_the_read_only_ledger_cannot_write_and_creates_nothing(tmp_path: Path) -> None:
    run = synthetic_run(tmp_path / "run", 1)
    ledger = Ledger(run / "ledger.sqlite", read_only=True)
    assert [p.id for p in ledger.projects()] == ["p000"]
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        ledger.add_project("p999", 9, "x")
    with pytest.raises(FileNotFoundError):
        Ledger(tmp_path / "none" / "ledger.sqlite", read_only=True)
    assert not (tmp_path / "none").exists()


def test_the_view_never_holds_back_the_runs_writer(tmp_path: Path) -> None:
    run = synthetic_run(tmp_path / "run", 3, finished=1, record=None)
    writer = Ledger(run / "ledger.sqlite")  # the run, still going
    reader = reader_of(run)
    first = reader.snapshot()
    writer._db.execute("BEGIN IMMEDIATE")  # the writer takes its write lock while the view is open
    writer.add_project("p003", 3, "area")
    writer._db.execute("COMMIT")
    for i in range(50):
        writer.stage_started("p003", STAGES[i % len(STAGES)])
    # a full checkpoint needs every reader out of the WAL: the view keeps no read transaction open
    busy, _, _ = writer._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    assert busy == 0
    reader._built_at = float("-inf")  # past the rebuild throttle
    later = reader.snapshot()
    assert later.generation > first.generation
    assert later.record is not None and len(later.record.projects) == 4
    writer.close()


def test_project_detail_has_outputs_calls_events_and_training_curves(tmp_path: Path) -> None:
    run = synthetic_run(tmp_path / "run", 2, finished=1, curves=(0,), record=None)
    reader = reader_of(run)
    detail = reader.project("p000")
    assert detail is not None
    assert detail.ideation is not None and len(detail.ideation.hypotheses) == 3
    assert detail.planning is not None and detail.experiment is not None and detail.writing is not None
    assert [e["event"] for e in detail.events].count("finish") == len(STAGES)
    assert {c["stage"] for c in detail.calls} == set(STAGES)
    conditions = [c.name for c in detail.planning.plan.conditions]
    assert sorted(r.name for r in detail.curves) == sorted(f"{c}-seed{s}" for c in conditions for s in (0, 1, 2))
    assert len(detail.curves[0].steps) == len(detail.curves[0].curves["train_loss"]) == 20
    results = detail.experiment.results  # the v2 table: every condition tested against the baseline, corrected
    assert set(results.conditions) == {*conditions, "code", "code-without-change1", "code-without-change2"}
    assert results.best == "code" and results.conditions["method"].verdict == "better"
    assert results.conditions["method-without-normalization"].verdict == "no significant difference"
    assert results.code is not None and [n.id for n in detail.code_nodes] == [n.id for n in results.code.nodes]
    assert set(detail.code_replies) == {"n0", "n1", "n2", "n3"} and results.code.winner == "n2"
    unfinished = reader.project("p001")
    assert unfinished is not None and unfinished.review is None and unfinished.summary.status == ProjectStatus.running
    assert unfinished.code_nodes == [] and unfinished.experiment is None  # still planning
    assert reader.project("p404") is None


def test_a_broken_stored_output_is_named_on_the_page_not_raised(tmp_path: Path) -> None:
    run = synthetic_run(tmp_path / "run", 2, finished=1, record=None)
    db = sqlite3.connect(run / "ledger.sqlite")
    db.execute("UPDATE stage_events SET output='{oops' WHERE project_id='p001' AND stage='ideation' AND event='finish'")
    db.commit()
    db.close()
    snap = reader_of(run).snapshot()
    assert snap.problem is not None and "p001" in snap.problem and "not JSON" in snap.problem
