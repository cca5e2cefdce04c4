"""Values a hand edit can plant in a ledger that stays valid SQLite, and a group given a value.

SQLite keeps whatever is written into a column: 'abc' as the session count, -100 as a call's cost, a word
as the run's start. Read back, the first ended the resume in a traceback and the second was credited to the
budget. Each is now named (file, table and column or key, value, what it must be, what to do) and the
resume exits 2 before anything is opened for writing or paid. ``fars run budget=[1,2]`` (a list where a
config group's option name belongs) is one listed config problem naming the key, exit 2, not Hydra's
TypeError.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path

import pytest

from fars.cli import preflight
from fars.config import BudgetConfig
from fars.llm.budget import Budget
from fars.run.folder import LEDGER_FILE, ledger_problems
from fars.run.ledger import CallRow, Ledger, value_problems
from fars.run.records import ProjectStatus
from tests.conftest import run_fars

# a hand edit -> what the refusal names
EDITS = {
    "UPDATE meta SET value='abc' WHERE key='sessions'": "meta sessions = 'abc': must be a whole number",
    "UPDATE meta SET value='-3' WHERE key='sessions'": "meta sessions = '-3': must be a whole number",
    "UPDATE meta SET value='yesterday' WHERE key='started_at'": "meta started_at = 'yesterday': must be a finite",
    "UPDATE meta SET value='nan' WHERE key='active_s'": "meta active_s = 'nan': must be a finite number",
    "INSERT INTO meta VALUES ('project_started:p000', 'soon')": "meta project_started:p000 = 'soon'",
    "UPDATE meta SET value='[1]' WHERE key='identity'": "meta identity = '[1]': must be a JSON object",
    "UPDATE calls SET cost_usd=-100 WHERE id=1": "calls.cost_usd = -100.0 (row id 1): must be a finite number, 0 or",
    "UPDATE calls SET cost_usd='abc' WHERE id=2": "calls.cost_usd = 'abc' (row id 2)",
    "UPDATE calls SET cost_usd=9e999 WHERE id=1": "calls.cost_usd = inf (row id 1)",
    "UPDATE calls SET input_tokens=-5 WHERE id=2": "calls.input_tokens = -5 (row id 2): must be a whole number",
    "UPDATE calls SET output_tokens=2.5 WHERE id=1": "calls.output_tokens = 2.5 (row id 1)",
    "UPDATE calls SET cache_hit=7 WHERE id=1": "calls.cache_hit = 7 (row id 1): must be 0 or 1",
    "UPDATE projects SET status='victorious'": "projects.status = 'victorious' (row id 1): must be one of queued",
    "UPDATE stage_events SET ts='later' WHERE id=1": "stage_events.ts = 'later' (row id 1)",
}


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A run folder whose ledger a session of FARS wrote (one project, two calls), as a hand edit finds it."""
    folder = tmp_path / "run"
    ledger = Ledger(folder / LEDGER_FILE)
    ledger.set_meta("sessions", "1")
    ledger.set_meta("started_at", "1796574119.94")
    ledger.set_meta("active_s", "12.5")
    ledger.set_meta("identity", "{}")
    ledger.add_project("p000", 0, "optimisation")
    ledger.update_project("p000", status=ProjectStatus.running, stage="ideation")
    ledger.stage_started("p000", "ideation")
    for ordinal in range(2):
        ledger.record_call(
            CallRow("p000", "ideation", "scripted/default", "h", ordinal, 100, 7, 0.25, 0.01, False, "reply")
        )
    ledger.close()
    return folder


def _edit(run_dir: Path, statement: str) -> None:
    """Change the ledger as `sqlite3 ledger.sqlite` would (closed after, so the change is checkpointed)."""
    db = sqlite3.connect(run_dir / LEDGER_FILE)
    try:
        with db:
            db.execute(statement)
    finally:
        db.close()


def test_a_ledger_as_fars_writes_it_holds_no_impossible_value(run_dir: Path) -> None:
    assert ledger_problems(run_dir) == []
    db = sqlite3.connect(run_dir / LEDGER_FILE)
    try:
        assert value_problems(db) == []
    finally:
        db.close()


@pytest.mark.parametrize("statement", sorted(EDITS))
def test_each_planted_value_is_named_with_the_file_and_what_to_do(run_dir: Path, statement: str) -> None:
    _edit(run_dir, statement)
    problems = ledger_problems(run_dir)
    assert len(problems) == 1, problems
    assert str(run_dir / LEDGER_FILE) in problems[0] and EDITS[statement] in problems[0], problems[0]
    assert "Correct them, or restore it from a backup" in problems[0]


def test_many_planted_values_are_named_a_few_at_a_time(run_dir: Path) -> None:
    for i in range(50):
        _edit(
            run_dir,
            "INSERT INTO calls (model, request_hash, ordinal, input_tokens, output_tokens, cost_usd, latency_s, "
            f"cache_hit, ts) VALUES ('m', 'h', 0, 1, 1, {-1 - i}, 0, 0, 1)",
        )
    problems = ledger_problems(run_dir)
    assert len(problems) == 1 and problems[0].count("calls.cost_usd") == 5, problems


def test_a_long_planted_value_is_cut_short_in_the_message(run_dir: Path) -> None:
    _edit(run_dir, "UPDATE meta SET value='" + "x" * 5000 + "' WHERE key='sessions'")
    (problem,) = ledger_problems(run_dir)
    assert "x" * 40 not in problem and len(problem) < 600


def test_the_budget_refuses_spending_no_call_could_have_made() -> None:
    with pytest.raises(ValueError, match=r"impossible.*hand-edited ledger"):
        Budget(BudgetConfig(max_dollars=1.0), dollars=-100.0)
    with pytest.raises(ValueError, match="impossible"):
        Budget(BudgetConfig(), tokens=-5)
    budget = Budget(BudgetConfig(project_max_dollars=1.0))
    with pytest.raises(ValueError, match="project p000's spending"):
        budget.project("p000", dollars=float("nan"))
    assert budget.dollars == 0.0 and Budget(BudgetConfig(), tokens=3, dollars=0.5).dollars == 0.5


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("statement", "named"),
    [
        ("UPDATE meta SET value='abc' WHERE key='sessions'", "meta sessions = 'abc'"),
        ("UPDATE calls SET cost_usd=-100 WHERE id=1", "calls.cost_usd = -100.0"),
        ("UPDATE meta SET value='yesterday' WHERE key='started_at'", "meta started_at = 'yesterday'"),
    ],
)
def test_resuming_a_hand_edited_ledger_exits_2_and_credits_nothing(
    run_dir: Path, tmp_path: Path, statement: str, named: str
) -> None:
    _edit(run_dir, statement)
    before = _sha(run_dir / LEDGER_FILE)
    args = ["run", f"resume={run_dir}", "llm=scripted", "tracker=disabled", "pipeline.stages=[ideation]"]
    done = run_fars(args, cwd=tmp_path, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert str(run_dir / LEDGER_FILE) in done.stderr and named in done.stderr
    assert _sha(run_dir / LEDGER_FILE) == before  # no session opened, nothing paid or credited
    shutil.rmtree(run_dir)


def test_a_group_given_a_list_is_one_listed_problem_naming_it() -> None:
    problems = preflight([["llm=scripted", "budget=[1,2]", "executor=3", "budget.max_dollars=[1,2]"]])
    text = "\n".join(problems)
    assert "budget=[1,2]: 'budget' is a config group" in text and "budget=default" in text, text
    assert "executor=3: 'executor' is a config group" in text and "executor=local" in text
    assert "budget.max_dollars" in text  # a value inside the group is still checked by the schema
    assert "TypeError" not in text and "not iterable" not in text


def test_fars_run_with_a_list_for_a_group_exits_2_naming_the_key(tmp_path: Path) -> None:
    done = run_fars(["run", "budget=[1,2]", "llm=scripted", "pipeline.stages=[ideation]"], cwd=tmp_path, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "invalid config, nothing was run (1 problem(s))" in done.stderr
    assert "budget=[1,2]: 'budget' is a config group" in done.stderr
    assert not (tmp_path / "outputs").exists()
