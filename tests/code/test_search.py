"""The search over programs on real templates, driven by transcripts a capable model would write.

Every node's code runs in the sandbox through the stage's own runner: a broken edit, a runtime error, a
NaN and a time-out are each recorded as buggy, the working node wins, its changes are ablated, and the
paper shows the diff with every number grounded. A kill mid-search and a resume rerun no node and pay no
call twice. Edits that try to leave the copy, read a secret or plant a linked result are refused.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from experiments.spec import load_template
from fars.code.search import CodeSearch
from fars.config import CodeSearchConfig
from fars.run.contracts import CodeNode, Results
from fars.run.ledger import Ledger
from fars.run.summary import read_run_record
from tests.code import transcripts
from tests.code.harness import search_once
from tests.conftest import run_fars, start_fars

SEARCH = [
    "llm=scripted",
    "tracker=disabled",
    "pipeline.status_interval_s=1",
    "pipeline.papers=1",
    "pipeline.projects=1",
    "experiment.templates=[simulated]",
    "experiment.steps=500",
    "experiment.seeds=2",
    "experiment.max_variants=1",
    "experiment.code.drafts=2",
    "experiment.code.max_nodes=5",
    "experiment.code.parallel=2",
    "experiment.code.smoke_timeout_s=5",
]


def routes(tmp_path: Path, transcript: dict[str, list[str]]) -> str:
    path = tmp_path / "transcript.json"
    path.write_text(json.dumps(transcript), encoding="utf-8")
    return f"llm.scripted.routes_file={path}"


def nodes(ledger: Path, project: str = "p000") -> dict[str, dict[str, Any]]:
    return {record["id"]: record for record, _ in Ledger(ledger).code_nodes(project)}


@pytest.mark.slow
def test_the_search_finds_the_working_method_ablates_it_and_the_paper_shows_it(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    done = run_fars(["run", *SEARCH, routes(tmp_path, transcripts.SIMULATED), f"hydra.run.dir={run_dir}"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    found = nodes(run_dir / "ledger.sqlite")
    assert {k: (n["kind"], n["parent"], n["verdict"]) for k, n in found.items()} == {
        "n0": ("draft", None, "buggy"),  # a SEARCH block misquoting the file
        "n1": ("draft", None, "better"),  # the EMA method
        "n2": ("improve", "n1", "buggy"),  # inf/inf: a NaN metric
        "n3": ("debug", "n0", "buggy"),  # args.learning_rate: a runtime error
        "n4": ("debug", "n2", "buggy"),  # time.sleep(args.steps): past the smoke run's time limit
    }
    assert "SEARCH text is not in the file" in found["n0"]["error"]
    assert "non-finite" in found["n2"]["error"] or "NaN" in found["n2"]["error"] or "nan" in found["n2"]["error"]
    assert "learning_rate" in found["n3"]["error"]  # the traceback's tail came back
    assert "JobTimeout" in found["n4"]["error"]
    results = Results.model_validate_json((run_dir / "projects" / "p000" / "results.json").read_text())
    assert results.code is not None and results.code.winner == "n1" and len(results.code.parts) == 2
    table = results.conditions
    assert {"baseline", "code", "code-without-change1", "code-without-change2"} <= set(table)
    assert table["code"].metric.mean > table["baseline"].metric.mean
    assert table["code-without-change1"].role == "ablation" and table["code"].role == "method"
    paper = (run_dir / "projects" / "p000" / "paper.md").read_text()
    assert "The winning code" in paper and "+    accuracy += 0.03 * (1 - 0.99 ** (args.steps / 10))" in paper
    assert "| code |" in paper
    record = read_run_record(run_dir)
    assert record.projects[0].grounded_number_rate == 1.0
    replies = [(run_dir / "projects" / "p000" / "code" / n / "reply.txt").read_text() for n in sorted(found)]
    assert replies == [transcripts.SIMULATED[k][0] for k in sorted(transcripts.SIMULATED)]  # each node kept its reply


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [1, 3])
def test_a_kill_mid_search_then_resume_reruns_no_node_and_pays_no_call_twice(tmp_path: Path, kill_after: int) -> None:
    run_dir = tmp_path / "run"
    args = ["run", *SEARCH, routes(tmp_path, transcripts.SIMULATED), "llm.scripted.latency_s=0.3",
            f"hydra.run.dir={run_dir}"]  # fmt: skip
    proc = start_fars(args, tmp_path)
    ledger = run_dir / "ledger.sqlite"
    deadline = time.time() + 300
    before: dict[str, float] = {}
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
        if ledger.exists():
            with sqlite3.connect(ledger) as db:
                before = dict(db.execute("SELECT node, ts FROM code_nodes").fetchall())
            if len(before) >= kill_after:
                break
    assert proc.poll() is None, "the run ended before the kill; slow it down"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with sqlite3.connect(ledger) as db:
        before = dict(db.execute("SELECT node, ts FROM code_nodes").fetchall())
    assert 0 < len(before) < 5, f"not killed mid-search: {sorted(before)}"
    done = run_fars(["run", f"resume={run_dir}"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    with sqlite3.connect(ledger) as db:
        after = dict(db.execute("SELECT node, ts FROM code_nodes").fetchall())
        paid = db.execute(
            "SELECT project_id, stage, request_hash, ordinal, COUNT(*) FROM calls WHERE cache_hit=0 "
            "AND error IS NULL GROUP BY 1, 2, 3, 4 HAVING COUNT(*) > 1"
        ).fetchall()
    assert set(after) == {"n0", "n1", "n2", "n3", "n4"}
    assert {k: after[k] for k in before} == before, "a node finished before the kill was run again"
    assert paid == [], f"calls paid twice: {paid}"
    results = Results.model_validate_json((run_dir / "projects" / "p000" / "results.json").read_text())
    assert results.code is not None and results.code.winner == "n1"


def test_real_training_code_on_modadd_runs_in_the_sandbox(tmp_path: Path) -> None:
    """Two methods a capable model writes for modadd: a new method module and an optimizer edit; both train."""
    outcome, recorded = search_once(tmp_path, "modadd", transcripts.MODADD, [0], drafts=2, max_nodes=2, improve_steps=0)
    assert [(n.id, n.edits) for n in recorded] == [
        ("n0", ["method.py: whole file"]),
        ("n1", ["train.py: replace 1 line(s)"]),
    ]
    assert all(n.verdict != "buggy" and n.mean is not None for n in recorded), [n.error for n in recorded]
    metrics = json.loads((tmp_path / "p000" / "code" / "n0" / "runs" / "seed0" / "metrics.json").read_text())
    assert metrics["method"] is not None  # the template loaded the model's module
    assert outcome.summary.nodes == recorded


def test_edits_that_leave_the_copy_read_secrets_or_plant_links_are_refused_and_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("hunter2-file-secret")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-hunter2-env-secret")
    target = tmp_path / "harness-file.json"
    target.write_text(json.dumps({"template": "simulated"}))
    reader = transcripts.READ_A_SECRET.replace('os.environ.get("FARS_TEST_SECRET_FILE", "")', repr(str(secret)))
    linker = transcripts.PLANT_A_LINK.replace('os.environ.get("FARS_TEST_TARGET", "/etc/passwd")', repr(str(target)))
    transcript = {"version n0)": [transcripts.LEAVE_THE_COPY], "version n1)": [reader], "version n2)": [linker]}
    outcome, recorded = search_once(
        tmp_path, "simulated", transcript, [0, 1], drafts=3, max_nodes=3, debug_depth=0, parallel=3
    )
    by_id = {n.id: n for n in recorded}
    assert by_id["n0"].verdict == "buggy" and "leaves the working copy" in (by_id["n0"].error or "")
    assert not (tmp_path / "p000" / "code" / "n0" / "src").exists()  # refused before any copy was made or run
    # the reader ran, in the sandbox: neither secret reached it, so neither is anywhere in what it left
    assert by_id["n1"].verdict != "buggy", by_id["n1"].error
    logs = [p.read_text() for p in (tmp_path / "p000" / "code" / "n1").rglob("*.log")]
    assert any("LEAKED: ['']" in log for log in logs), logs  # it looked, and found an empty environment
    for path in (tmp_path / "p000").rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            assert "hunter2" not in text or path.name == "reply.txt", path
    # the linked metrics.json was refused, not followed
    assert by_id["n2"].verdict == "buggy" and "metrics.json" in (by_id["n2"].error or "")
    assert json.loads(target.read_text()) == {"template": "simulated"}
    assert outcome.summary.winner != "n2"


def test_the_model_gets_back_the_error_tail_the_metrics_and_the_curve() -> None:
    """What the debugging and improvement prompts show: the failed node's error, the best node's mean and curve."""
    from experiments.metrics import Metrics
    from fars.code.search import _Node

    spec = load_template("simulated")
    search = CodeSearch(
        llm=None, spec=spec, hypothesis="averaging the weights helps", method="adam", baseline=[0.88, 0.89],
        seeds=[0, 1], steps=500, settings=CodeSearchConfig(), folder=Path("."), run_dir=Path("."),
        run_code=None, remember=lambda node, reply: None, known={},
    )  # type: ignore[arg-type]  # fmt: skip
    failed = _Node(CodeNode(id="n0", kind="draft", verdict="buggy", error="Traceback ...\nAttributeError: 'Namespace' "
                            "object has no attribute 'learning_rate'"), dict(search.original))  # fmt: skip
    debug = search._prompt("n3", "debug", failed)[-1]["content"]
    assert "has no attribute 'learning_rate'" in debug and "(version n3, debugging n0)" in debug
    assert "accuracy = 0.9 - 0.08" in debug  # the code to fix, as it stands
    curve = {"step": [125, 250, 375, 500], "train_loss": [1, 0.6, 0.4, 0.1], "val_loss": [1, 0.7, 0.5, 0.1],
             "val_metric": [0.1, 0.4, 0.7, 0.9]}  # fmt: skip
    run = Metrics.model_validate({
        "template": "simulated", "engine": "plain", "device": "cpu", "seed": 0, "steps": 500, "config": {},
        "metric": "val_accuracy", "final": {"val_accuracy": 0.9}, "curves": curve, "wall_s": 0.5,
        "examples_per_s": 0.0, "parameters": 1, "provenance": {"code_sha256": "-", "config_sha256": "-"},
    })  # fmt: skip
    best = _Node(CodeNode(id="n1", kind="draft", verdict="better", mean=0.9, values=[0.9]), runs=[run])
    improve = search._prompt("n2", "improve", best)[-1]["content"]
    assert "reaches 0.9000 (the baseline 0.8850)" in improve and "step 500: 0.9000" in improve
    assert "Hypothesis to test: averaging the weights helps" in improve
