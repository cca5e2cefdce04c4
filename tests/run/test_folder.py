"""Resume and ledger hygiene, as a careless user and a second terminal would find them.

Two sessions on one run folder, a truncated, garbled, emptied or replaced ledger, a resume with another
model, seeds or area, a new run into an old folder, a deleted project folder, the wall budget across
sessions, and the W&B run a resumed run continues. Every refusal is exit 2 with the file and what to do,
never a traceback, and nothing is paid twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fars.run.folder import (
    LOCK_FILE,
    RunFolderBusy,
    config_identity,
    hold_run_folder,
    identity_changes,
    ledger_problems,
    release_run_folder,
)
from fars.run.ledger import Ledger, LedgerError
from fars.run.records import ProjectStatus
from fars.run.summary import read_run_record
from tests.conftest import FAST, compose, run_fars, start_fars

pytestmark = pytest.mark.xdist_group("run_folder")  # its module's finished and killed runs, made once
QUICK = [*FAST, "pipeline.stages=[ideation,planning]", "llm.cache=false"]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _calls(run_dir: Path) -> int:
    """Calls paid (answered by the model, not replayed from the ledger or the cache)."""
    with sqlite3.connect(run_dir / "ledger.sqlite") as db:
        return int(db.execute("SELECT COUNT(*) FROM calls WHERE cache_hit=0 AND error IS NULL").fetchone()[0])


def _paid_twice(run_dir: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(run_dir / "ledger.sqlite") as db:
        return db.execute(
            "SELECT project_id, stage, request_hash, ordinal, COUNT(*) FROM calls WHERE cache_hit=0 "
            "AND error IS NULL GROUP BY 1, 2, 3, 4 HAVING COUNT(*) > 1"
        ).fetchall()


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small finished run (ideation and planning of one paper)."""
    base = tmp_path_factory.mktemp("finished")
    run_dir = base / "run"
    done = run_fars(["run", *QUICK, "pipeline.papers=1", "pipeline.projects=1", f"hydra.run.dir={run_dir}"], cwd=base)
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir


@pytest.fixture(scope="module")
def killed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run SIGKILLed after its first finished stage and over a second of wall time, projects unfinished."""
    base = tmp_path_factory.mktemp("killed")
    run_dir = base / "run"
    args = ["run", *QUICK, "pipeline.papers=2", "pipeline.projects=2", "llm.scripted.latency_s=0.4"]
    proc = start_fars([*args, f"hydra.run.dir={run_dir}"], base)
    ledger = run_dir / "ledger.sqlite"
    deadline = time.time() + 180
    while proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
        if not ledger.exists():
            continue
        try:
            with sqlite3.connect(ledger) as db:
                finished = db.execute("SELECT COUNT(*) FROM stage_events WHERE event='finish'").fetchone()[0]
                row = db.execute("SELECT value FROM meta WHERE key='active_s'").fetchone()
        except sqlite3.OperationalError:
            continue
        if finished >= 1 and row and float(row[0]) >= 1.5:
            break
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return run_dir


def copy_of(run_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(run_dir, target, symlinks=True)
    return target


# -- one session per folder ---------------------------------------------------------------------


def test_the_lock_is_reentrant_in_one_process_and_names_its_holder_to_another(tmp_path: Path) -> None:
    first = hold_run_folder(tmp_path)
    again = hold_run_folder(tmp_path)  # the CLI holds it, then the pipeline it runs: one session
    assert again is first
    code = (
        "import sys; from pathlib import Path; from fars.run.folder import hold_run_folder, RunFolderBusy\n"
        f"try:\n    hold_run_folder(Path({str(tmp_path)!r}))\nexcept RunFolderBusy as exc:\n    print(exc); sys.exit(2)"
    )
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert other.returncode == 2
    assert f"pid {os.getpid()} on host {socket.gethostname()}" in other.stdout
    release_run_folder(again)
    release_run_folder(first)
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120).returncode == 0
    info = json.loads((tmp_path / LOCK_FILE).read_text())
    assert info["pid"] != os.getpid()  # the other process took it once it was free


def test_a_second_session_on_a_running_folder_exits_2_naming_the_first(killed: Path, tmp_path: Path) -> None:
    run_dir = copy_of(killed, tmp_path)
    slow = ["llm.scripted.latency_s=0.5", "pipeline.papers=3"]  # still running when the second one starts
    first = start_fars(["run", f"resume={run_dir}", *slow], tmp_path, stderr=tmp_path / "first.err")
    deadline = time.time() + 120
    while time.time() < deadline and first.poll() is None:
        lock = run_dir / LOCK_FILE
        if lock.exists() and f'"pid": {first.pid}' in lock.read_text():
            break
        time.sleep(0.1)
    second = run_fars(["run", f"resume={run_dir}"], cwd=tmp_path, timeout=300)
    first.wait(timeout=300)
    first_err = (tmp_path / "first.err").read_text()
    assert second.returncode == 2, second.stderr[-2000:]
    assert f"in use by another fars session (pid {first.pid} on host {socket.gethostname()}" in second.stderr
    assert "Traceback" not in second.stderr
    assert first.returncode == 0, first_err[-3000:]
    assert _paid_twice(run_dir) == []


def test_two_resumes_started_together_run_once_and_pay_once(killed: Path, tmp_path: Path) -> None:
    slow = ["llm.scripted.latency_s=0.4", "pipeline.papers=3"]  # the winner still runs when the loser starts
    for round_ in range(2):
        run_dir = copy_of(killed, tmp_path / f"round{round_}")
        errs = [tmp_path / f"round{round_}" / f"resume{i}.err" for i in range(2)]
        procs = [start_fars(["run", f"resume={run_dir}", *slow], tmp_path, stderr=err) for err in errs]
        results = [(p.wait(timeout=300), err.read_text()) for p, err in zip(procs, errs, strict=True)]
        codes = sorted(code for code, _ in results)
        assert codes == [0, 2], results
        assert "in use by another fars session" in next(err for code, err in results if code == 2)
        assert _paid_twice(run_dir) == []
        record = read_run_record(run_dir)
        assert record.status == "completed" and [p.status for p in record.projects] == [ProjectStatus.done] * 3


# -- the ledger ---------------------------------------------------------------------------------


def _damage(run_dir: Path, how: str) -> None:
    ledger = run_dir / "ledger.sqlite"
    for suffix in ("-wal", "-shm"):
        Path(f"{ledger}{suffix}").unlink(missing_ok=True)
    data = ledger.read_bytes()
    if how == "truncated":
        ledger.write_bytes(data[: len(data) // 2])
    elif how == "garbled":
        ledger.write_bytes(data[:8192] + os.urandom(4096) + data[12288:])
    elif how == "emptied":
        ledger.write_bytes(b"")
    elif how == "deleted":
        ledger.unlink()
    elif how == "rows deleted":
        with sqlite3.connect(ledger) as db:
            db.execute("DELETE FROM calls")
            db.execute("DELETE FROM projects")
    elif how == "a link":
        (run_dir / "elsewhere.sqlite").write_bytes(data)
        ledger.unlink()
        ledger.symlink_to(run_dir / "elsewhere.sqlite")
    elif how == "not sqlite":
        ledger.write_bytes(b"this is the output of `echo hi > ledger.sqlite`\n" * 10)


DAMAGE = {
    "truncated": "not a readable ledger",
    "garbled": "is damaged",
    "emptied": "holds no run but the folder does",
    "deleted": "is missing but the folder holds a run",
    "rows deleted": "rows were lost",
    "a link": "symbolic link",
    "not sqlite": "cannot be opened|not a readable ledger",
}


@pytest.mark.parametrize("how", sorted(DAMAGE))
def test_a_damaged_ledger_is_named_with_what_to_do(finished: Path, tmp_path: Path, how: str) -> None:
    run_dir = copy_of(finished, tmp_path)
    _damage(run_dir, how)
    problems = ledger_problems(run_dir)
    assert len(problems) == 1, problems
    assert any(part in problems[0] for part in DAMAGE[how].split("|")), problems
    assert "ledger.sqlite" in problems[0] and "restore it from a backup" in problems[0]


def test_resuming_a_truncated_ledger_exits_2_without_a_traceback_and_changes_nothing(
    finished: Path, tmp_path: Path
) -> None:
    run_dir = copy_of(finished, tmp_path)
    _damage(run_dir, "truncated")
    before = {p.name: _sha(p) for p in run_dir.iterdir() if p.is_file()}
    done = run_fars(["run", f"resume={run_dir}"], cwd=tmp_path, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert str(run_dir / "ledger.sqlite") in done.stderr and "restore it from a backup" in done.stderr
    after = {p.name: _sha(p) for p in run_dir.iterdir() if p.is_file() and p.name != LOCK_FILE}
    assert after == {k: v for k, v in before.items() if k != LOCK_FILE}


def test_an_emptied_ledger_is_not_silently_restarted(finished: Path, tmp_path: Path) -> None:
    run_dir = copy_of(finished, tmp_path)
    _damage(run_dir, "emptied")
    done = run_fars(["run", f"resume={run_dir}"], cwd=tmp_path, timeout=300)
    assert done.returncode == 2 and "holds no run but the folder does" in done.stderr
    assert (run_dir / "ledger.sqlite").stat().st_size == 0  # nothing was started (or paid) there


def test_opening_a_garbage_ledger_raises_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "ledger.sqlite").write_bytes(os.urandom(4096))
    with pytest.raises(LedgerError, match=r"ledger\.sqlite is not a usable ledger.*restore it from a backup"):
        Ledger(tmp_path / "ledger.sqlite")


# -- one config per run -------------------------------------------------------------------------


def test_identity_changes_name_each_setting() -> None:
    first = config_identity(compose("llm=scripted"))
    later = compose("llm=scripted", "llm.model=scripted/other", "experiment.seeds=5", "area=robotics")
    changes = identity_changes(first, later)
    assert [c.split(":")[0] for c in changes] == ["area", "llm.model", "experiment.seeds"]
    assert identity_changes(first, compose("llm=scripted", "pipeline.papers=9", "budget.max_tokens=5")) == []


def test_resuming_with_other_settings_is_refused_unless_forced_and_then_recorded(
    finished: Path, tmp_path: Path
) -> None:
    run_dir = copy_of(finished, tmp_path)
    calls = _calls(run_dir)
    refused = run_fars(["run", f"resume={run_dir}", "llm.model=scripted/other", "experiment.seeds=3"], cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "llm.model: 'scripted/default' -> 'scripted/other'" in refused.stderr
    assert "experiment.seeds: 2 -> 3" in refused.stderr and "resume_force=true" in refused.stderr
    assert _calls(run_dir) == calls
    forced = run_fars(
        ["run", f"resume={run_dir}", "area=robotics", "resume_force=true", "pipeline.papers=2"], cwd=tmp_path
    )
    assert forced.returncode == 0, forced.stderr[-3000:]
    ledger = Ledger(run_dir / "ledger.sqlite")
    record = json.loads(ledger.get_meta("forced_resumes") or "[]")
    assert len(record) == 1 and record[0]["changes"][0].startswith("area: ")
    ledger.close()
    overrides = (run_dir / ".hydra" / "overrides.yaml").read_text()
    again = run_fars(["run", f"resume={run_dir}", "llm.model=scripted/other"], cwd=tmp_path)
    assert "resume_force" in overrides and again.returncode == 2  # a forced resume is never carried over


def test_a_new_run_into_a_folder_holding_a_run_is_refused(finished: Path, tmp_path: Path) -> None:
    run_dir = copy_of(finished, tmp_path)
    before = _sha(run_dir / "ledger.sqlite")
    done = run_fars(["run", *QUICK, f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert done.returncode == 2 and "already holds a run" in done.stderr and f"resume={run_dir}" in done.stderr
    sweep = tmp_path / "sweep"
    shutil.copytree(finished, sweep / "0")
    swept = run_fars(["run", "-m", *QUICK, "pipeline.projects=1,2", f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert swept.returncode == 2 and "already holds a run" in swept.stderr
    assert _sha(run_dir / "ledger.sqlite") == before


def test_a_deleted_project_folder_is_refused_on_resume_or_forced(killed: Path, tmp_path: Path) -> None:
    run_dir = copy_of(killed, tmp_path)
    with sqlite3.connect(run_dir / "ledger.sqlite") as db:
        project = db.execute("SELECT project_id FROM stage_events WHERE event='finish' ORDER BY id LIMIT 1").fetchone()[
            0
        ]
    shutil.rmtree(run_dir / "projects" / project)
    done = run_fars(["run", f"resume={run_dir}"], cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"projects/{project}/hypotheses.json" in done.stderr and "restore them" in done.stderr


# -- what spans sessions ------------------------------------------------------------------------


def test_the_wall_budget_counts_earlier_sessions(killed: Path, tmp_path: Path) -> None:
    run_dir = copy_of(killed, tmp_path)
    ledger = Ledger(run_dir / "ledger.sqlite")
    earlier = float(ledger.get_meta("active_s") or 0)
    ledger.close()
    assert earlier >= 1.5
    calls = _calls(run_dir)
    done = run_fars(["run", f"resume={run_dir}", "budget.max_wall_s=1"], cwd=tmp_path)
    record = read_run_record(run_dir)
    assert done.returncode == 1, done.stderr[-3000:]
    assert {p.status for p in record.projects} == {ProjectStatus.budget_exhausted}
    assert all("wall time of 1s used up" in (p.error or "") for p in record.projects)
    assert _calls(run_dir) == calls  # the earlier session had used it up: nothing more was paid


def test_a_resumed_run_continues_its_own_wandb_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = [*QUICK, "tracker=wandb_offline", "pipeline.papers=1", "pipeline.projects=1", "pipeline.stages=[ideation]"]
    first = run_fars(["run", *args, f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    again = run_fars(["run", f"resume={run_dir}", "pipeline.papers=2"], cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    ledger = Ledger(run_dir / "ledger.sqlite")
    run_id = ledger.get_meta("wandb_run_id")
    ledger.close()
    assert len(runs) == 2 and run_id and all(r.name.endswith(f"-{run_id}") for r in runs), runs


def test_a_busy_folder_refusal_in_process(tmp_path: Path) -> None:
    """The pipeline itself refuses a folder another process holds (a sweep job, or a caller of Pipeline)."""
    code = (
        "import time; from pathlib import Path; from fars.run.folder import hold_run_folder\n"
        f"hold_run_folder(Path({str(tmp_path)!r})); print('held', flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        from fars.pipeline.queue import Pipeline

        with pytest.raises(RunFolderBusy, match=f"pid {holder.pid}"):
            Pipeline(compose("llm=scripted", "tracker=disabled"), tmp_path)
        assert not (tmp_path / "ledger.sqlite").exists() and not (tmp_path / "run_record.json").exists()
    finally:
        holder.kill()
        holder.wait()
