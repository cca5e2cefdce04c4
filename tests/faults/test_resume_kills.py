"""`fars run` killed with SIGKILL at several random moments, resumed each time, finishes exactly once.

Nothing lost (every project done, every stage finished), nothing repeated (no stage finished twice),
nothing paid twice (no model call answered twice at the same place), and the RunRecord's totals are
the ledger's sums. Each kill comes at a random moment after a random number of stages has finished,
from a seeded generator (``FARS_KILL_SEED`` changes them).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest

from fars.run.ledger import Ledger
from fars.run.records import ProjectStatus
from fars.run.summary import read_run_record
from tests.conftest import FAST, finished_stages, run_fars, start_fars
from tests.pipeline.test_queue import assert_record_matches_ledger

KILLS = 3


@pytest.mark.slow
def test_three_random_sigkills_then_resume_lose_and_repeat_nothing(tmp_path: Path) -> None:
    seed = int(os.environ.get("FARS_KILL_SEED", "7"))
    rng = random.Random(seed)
    run_dir = tmp_path / "run"
    ledger_path = run_dir / "ledger.sqlite"
    first = ["run", *FAST, "pipeline.papers=2", "pipeline.projects=2", "llm.scripted.latency_s=0.15"]
    first.append(f"hydra.run.dir={run_dir}")
    kills: list[tuple[float, int]] = []  # (seconds into the session, stages finished when killed)
    targets = sorted(rng.sample(range(1, 9), KILLS))  # of the 10 stages (2 projects x 5)
    for session in range(KILLS):
        # killed before Hydra saved the overrides, nothing was started: the same command starts it
        started = (run_dir / ".hydra" / "overrides.yaml").is_file()
        args = ["run", f"resume={run_dir}"] if started else first
        proc = start_fars(args, tmp_path)
        # kill once the run has reached its random target (stages finished), a random moment later
        target, extra = targets[session], rng.uniform(0.0, 1.5)
        began = time.time()
        while proc.poll() is None and finished_stages(ledger_path) < target and time.time() - began < 120:
            time.sleep(0.05)
        time.sleep(extra)
        if proc.poll() is not None:
            break  # it finished before this kill: the remaining sessions have nothing to kill
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills.append((round(time.time() - began, 2), finished_stages(ledger_path)))
        assert not (run_dir / "run_record.json").exists() or read_run_record(run_dir).status != "completed"
    assert len(kills) >= 2, f"the run ended too soon to be killed repeatedly (seed {seed}): {kills}"

    done = run_fars(["run", f"resume={run_dir}"], cwd=tmp_path)
    assert done.returncode == 0, f"seed {seed}, kills {kills}:\n{done.stderr[-3000:]}"
    record = read_run_record(run_dir)
    assert record.status == "completed"
    assert [p.status for p in record.projects] == [ProjectStatus.done] * 2  # nothing lost
    ledger = Ledger(ledger_path)
    finishes = Counter((p, s) for p, s, e in ledger.stage_events() if e == "finish")
    assert len(finishes) == 2 * 5 and max(finishes.values()) == 1, f"a stage ran twice: {finishes}"
    with sqlite3.connect(ledger_path) as db:
        paid = db.execute(
            "SELECT project_id, stage, request_hash, ordinal, COUNT(*) FROM calls WHERE cache_hit=0 "
            "AND error IS NULL GROUP BY 1, 2, 3, 4 HAVING COUNT(*) > 1"
        ).fetchall()
    assert paid == [], f"calls paid twice (seed {seed}, kills {kills}): {paid}"
    assert record.resumed >= 2  # sessions that reopened the ledger (a kill during start-up may come first)
    assert_record_matches_ledger(run_dir)
