"""The search over programs on real templates, driven by transcripts a capable model would write.

Every node's code runs in the sandbox through the stage's own runner: a broken edit, a runtime error, a
NaN and a time-out are each recorded as buggy, the working node wins, its changes are ablated, and the
paper shows the diff with every number grounded. A kill mid-search and a resume rerun no node and pay no
call twice. Edits that try to leave the copy, read a secret or plant a linked result are refused.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from experiments.metrics import Metrics
from experiments.spec import load_template
from fars.code.search import FRESH_SEED_OFFSET, NO_CHANGE, _Node, context_text
from fars.config import CodeSearchConfig
from fars.run.contracts import CodeNode, Condition, Results
from fars.run.ledger import Ledger
from fars.run.summary import read_run_record
from tests.code import transcripts
from tests.code.harness import bare_search, in_process, search_once
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
    assert all("a fallback: the idea named no parts" in p for p in results.code.parts)
    table = results.conditions
    assert {"baseline", "code", "code-without-hunk1", "code-without-hunk2"} <= set(table)
    assert table["code"].metric.mean > table["baseline"].metric.mean
    assert table["code-without-hunk1"].role == "ablation" and table["code"].role == "method"
    # chosen by its runs on the plan's seeds, reported on fresh ones (its ablations too): not the best of 5 tries
    fresh = [s + FRESH_SEED_OFFSET for s in table["baseline"].seeds]
    assert results.code.fresh_seeds == fresh and table["code"].seeds == fresh == table["code-without-hunk1"].seeds
    assert found["n1"]["values"] != table["code"].values
    paper = (run_dir / "projects" / "p000" / "paper.md").read_text()
    assert "The winning code" in paper and "+    accuracy += 0.03 * (1 - 0.99 ** (args.steps / 10))" in paper
    assert "| code |" in paper
    body = paper.split("## Appendix", 1)[0]  # the search's node ids are its bookkeeping, not a reader's
    assert not re.search(r"\bnode\s+n\d|\bn\d\b", body), re.findall(r".{40}\bn\d\b.{40}", body)
    record = read_run_record(run_dir)
    assert record.projects[0].grounded_number_rate == 1.0
    replies = [(run_dir / "projects" / "p000" / "code" / n / "reply.txt").read_text() for n in sorted(found)]
    assert replies == [transcripts.SIMULATED[k][0] for k in sorted(transcripts.SIMULATED)]  # each node kept its reply


def _kill_when_nodes(proc: Any, ledger: Path, at_least: int) -> dict[str, float]:
    """SIGKILL ``proc`` once the ledger holds ``at_least`` finished nodes; the nodes (and their times) it held then."""
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
        if ledger.exists():
            with sqlite3.connect(ledger) as db:
                try:
                    if db.execute("SELECT COUNT(*) FROM code_nodes").fetchone()[0] >= at_least:
                        break
                except sqlite3.OperationalError:  # the file exists a moment before its tables
                    continue
    assert proc.poll() is None, "the run ended before the kill; slow it down"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with sqlite3.connect(ledger) as db:
        return dict(db.execute("SELECT node, ts FROM code_nodes").fetchall())


@pytest.mark.slow
def test_kills_mid_search_then_resume_rerun_no_node_and_pay_no_call_twice(tmp_path: Path) -> None:
    """Killed after its first node, resumed, killed again after its third, resumed to the end: no node that had
    finished before either kill runs again, and no call is paid twice."""
    run_dir = tmp_path / "run"
    args = ["run", *SEARCH, routes(tmp_path, transcripts.SIMULATED), "llm.scripted.latency_s=0.3"]
    ledger = run_dir / "ledger.sqlite"
    first = _kill_when_nodes(start_fars([*args, f"hydra.run.dir={run_dir}"], tmp_path), ledger, 1)
    assert 0 < len(first) < 3, f"not killed early in the search: {sorted(first)}"
    second = _kill_when_nodes(start_fars(["run", f"resume={run_dir}"], tmp_path), ledger, 3)
    assert 3 <= len(second) < 5, f"not killed late in the search: {sorted(second)}"
    assert {k: second[k] for k in first} == first, "a node finished before the first kill was run again"
    done = run_fars(["run", f"resume={run_dir}"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    with sqlite3.connect(ledger) as db:
        after = dict(db.execute("SELECT node, ts FROM code_nodes").fetchall())
        paid = db.execute(
            "SELECT project_id, stage, request_hash, ordinal, COUNT(*) FROM calls WHERE cache_hit=0 "
            "AND error IS NULL GROUP BY 1, 2, 3, 4 HAVING COUNT(*) > 1"
        ).fetchall()
    assert set(after) == {"n0", "n1", "n2", "n3", "n4"}
    assert {k: after[k] for k in second} == second, "a node finished before the second kill was run again"
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
    search = bare_search("simulated")
    failed = _Node(CodeNode(id="n0", kind="draft", verdict="buggy", diff="p000/code/n0/diff.patch",
                            error="Traceback ...\nAttributeError: 'Namespace' object has no attribute 'learning_rate'"),
                   dict(search.original))  # fmt: skip
    debug = search._prompt("n3", "debug", failed)[-1]["content"]
    assert "has no attribute 'learning_rate'" in debug and "(version n3, debugging n0)" in debug
    assert "accuracy = 0.9 - 0.08" in debug  # the code to fix, as it stands
    best = _Node(CodeNode(id="n1", kind="draft", verdict="better", mean=0.9, values=[0.9]), runs=[_run(0.9)])
    improve = search._prompt("n2", "improve", best)[-1]["content"]
    assert "reaches 0.9000 (the baseline 0.8850)" in improve and "step 500: 0.9000" in improve
    assert "Hypothesis to test: averaging the weights helps" in improve


def _run(value: float) -> Metrics:
    curve = {"step": [125, 250, 375, 500], "train_loss": [1, 0.6, 0.4, 0.1], "val_loss": [1, 0.7, 0.5, 0.1],
             "val_metric": [0.1, 0.4, 0.7, value]}  # fmt: skip
    return Metrics.model_validate({
        "template": "simulated", "engine": "plain", "device": "cpu", "seed": 0, "steps": 500, "config": {},
        "metric": "val_accuracy", "final": {"val_accuracy": value}, "curves": curve, "wall_s": 0.5,
        "examples_per_s": 0.0, "parameters": 1, "provenance": {"code_sha256": "-", "config_sha256": "-"},
    })  # fmt: skip


# -- the node is the idea: the method's settings plus its code ---------------------------------------------------

ADAM = Condition(name="adam", role="method", components={"optimizer": "adam"}, description="Adam instead of SGD")


def test_a_node_runs_with_the_methods_settings_and_so_differs_from_the_baseline(tmp_path: Path) -> None:
    """The node's code reads --optimizer: with the method's settings it is the idea and beats the baseline; run
    as before with the baseline's settings, the same code reproduces the baseline exactly (the bug of issue 27)."""
    transcript = {"version n0)": [transcripts.ADAPTIVE_EMA]}
    kept: dict[str, Any] = {"drafts": 1, "max_nodes": 1, "improve_steps": 0, "ablations": False}
    outcome, recorded = search_once(tmp_path / "method", "simulated", transcript, [0, 1], method=ADAM, sandbox=False,
                                    steps=20, **kept)  # fmt: skip
    node = recorded[0]
    assert node.verdict == "better" and node.mean is not None, node.error
    runs = tmp_path / "method" / "p000" / "code" / "n0" / "runs"
    assert json.loads((runs / "seed0" / "metrics.json").read_text())["config"]["optimizer"] == "adam"
    baseline = [json.loads((tmp_path / "method" / "p000" / "baseline" / f"seed{s}" / "metrics.json").read_text())
                ["final"]["val_accuracy"] for s in (0, 1)]  # fmt: skip
    assert node.mean - sum(baseline) / 2 > 0.03  # adam's 0.02 and the EMA's 0.03 under it, less seed noise (sd 0.01)
    assert outcome.summary.winner == "n0" and "not the method's settings" not in outcome.summary.reason
    _, before = search_once(tmp_path / "baseline", "simulated", transcript, [0, 1], sandbox=False, steps=20, **kept)
    assert before[0].values == baseline and before[0].verdict == "same"  # the method never ran


def test_a_runner_that_drops_the_methods_settings_is_caught(tmp_path: Path) -> None:
    """The prompt promises --optimizer=adam; a runner passing the baseline's flags shows in the runs' recorded
    config, and the summary says so (the stage's wiring, not the model, is at fault)."""
    search = bare_search("simulated", llm=Recorder({"version n0)": [transcripts.ADAPTIVE_EMA]}, []),
                         folder=tmp_path / "code", run_dir=tmp_path, run_code=in_process(load_template("simulated"), []),
                         steps=20, method_settings={"optimizer": "adam"},
                         settings=CodeSearchConfig(drafts=1, max_nodes=1, improve_steps=0, ablations=False))  # fmt: skip
    outcome = asyncio.run(search.search())
    assert "the nodes ran with {'optimizer': 'sgd'}, not the method's settings {'optimizer': 'adam'}" in (
        outcome.summary.reason
    )


def test_the_prompt_says_what_each_node_runs_with_and_asks_for_the_mechanism_in_code() -> None:
    search = bare_search("simulated", method_settings={"optimizer": "adam", "lr": 0.003})
    prompt = search._prompt("n0", "draft", None)[-1]["content"]
    assert "runs as `python train.py --seed S --steps 500 --lr=0.003 --optimizer=adam`" in prompt
    assert "implement the mechanism the hypothesis names in code" in prompt
    assert "better than settings can" not in prompt
    old = bare_search("simulated")._prompt("n0", "draft", None)[-1]["content"]
    assert "runs as `python train.py --seed S --steps 500` with the baseline's settings" in old


def test_the_prompt_shows_the_template_code_the_editable_files_import() -> None:
    """abstracts_lm's train.py imports the chargpt model: the model is shown, so it is built on, not rewritten."""
    prompt = bare_search("abstracts_lm")._prompt("n0", "draft", None)[-1]["content"]
    chargpt = (Path(__file__).resolve().parents[2] / "experiments" / "chargpt" / "train.py").read_text()
    gpt = chargpt[chargpt.index("class GPT") : chargpt.index("class GPT") + 200]
    assert "experiments/chargpt/train.py (imported as experiments.chargpt.train; whole)" in prompt and gpt in prompt
    assert "you cannot edit these, but your code may call, subclass or replace" in prompt
    context = context_text(load_template("abstracts_lm"), bare_search("abstracts_lm").original, budget=3_000)
    assert len(context) < 3_000 + 800  # over the budget, modules are outlined or only named
    assert "experiments/chargpt/train.py (experiments.chargpt.train): not shown" in context or "def run(" in context


def test_a_later_draft_is_shown_the_earlier_drafts_it_must_differ_from(tmp_path: Path) -> None:
    transcript = {"version n0)": [transcripts.ADAPTIVE_EMA], "version n1)": [transcripts.SHARPNESS]}
    seen: list[str] = []
    search = bare_search("simulated", llm=Recorder(transcript, seen), folder=tmp_path / "code", run_dir=tmp_path,
                         run_code=in_process(load_template("simulated"), []), steps=20,
                         settings=CodeSearchConfig(drafts=2, max_nodes=2, improve_steps=0, ablations=False))  # fmt: skip
    asyncio.run(search.search())
    assert "Earlier drafts" not in seen[0]
    later = seen[1]
    assert re.search(r"Draft n0 \((better|same|worse), mean 0\.\d{4}\)\. Its approach: ", later)
    assert "An EMA of the weights averages out iterate noise" in later
    assert "+    iterate_noise = 1.0 if args.optimizer" in later  # its diff
    assert "Take an approach different from each of these." in later


def test_a_refused_reply_is_shown_back_with_the_code_unchanged(tmp_path: Path) -> None:
    """A reply whose second block misquotes the file: no file half-applied, and its debug prompt shows the reply,
    the reason and the code as it was."""
    seen: list[str] = []
    transcript = {"version n0)": [transcripts.HALF_RIGHT], "version n1,": [transcripts.ADAPTIVE_EMA]}
    search = bare_search("simulated", llm=Recorder(transcript, seen), folder=tmp_path / "code", run_dir=tmp_path,
                         run_code=in_process(load_template("simulated"), []), steps=20,
                         settings=CodeSearchConfig(drafts=1, max_nodes=2, improve_steps=0, ablations=False))  # fmt: skip
    outcome = asyncio.run(search.search())
    first, second = outcome.summary.nodes
    assert (
        first.verdict == "buggy" and first.diff is None and "train.py, edit 2: the SEARCH text" in (first.error or "")
    )
    assert search.nodes[0].files == search.original  # the first block, though right, was not applied
    assert not (tmp_path / "code" / "n0" / "src").exists()
    debug = seen[1]
    assert "was refused and none of its edits was applied" in debug and transcripts.HALF_RIGHT.strip() in debug
    assert "    accuracy += 0.03  # the EMA of the weights" not in debug.split("The code as it stands")[1]
    assert second.kind == "debug" and second.verdict != "buggy"


# -- the idea's named parts are switches; hunks only as a labelled fallback ------------------------------------


def test_each_named_part_is_a_switch_and_each_ablation_turns_one_off(tmp_path: Path) -> None:
    parts = ["weight averaging", "width bonus"]
    transcript = {"version n0)": [transcripts.SWITCHED_PARTS]}
    outcome, recorded = search_once(
        tmp_path, "simulated", transcript, [0, 1], method=ADAM, parts=parts, drafts=1, max_nodes=1, improve_steps=0
    )  # fmt: skip  (in the sandbox)
    assert recorded[0].verdict == "better", recorded[0].error
    assert set(outcome.ablations) == {"code-without-weight_averaging", "code-without-width_bonus"}
    assert outcome.summary.parts == [
        "code-without-weight_averaging: part 'weight averaging' switched off",
        "code-without-width_bonus: part 'width bonus' switched off",
    ]
    code = tmp_path / "p000" / "code"
    assert json.loads((code / "n0" / "src" / "parts.json").read_text()) == {
        "weight_averaging": True,
        "width_bonus": True,
    }
    off = json.loads((code / "n0-code-without-width_bonus" / "src" / "parts.json").read_text())
    assert off == {"weight_averaging": True, "width_bonus": False}
    assert (code / "n0-code-without-width_bonus" / "src" / "train.py").read_text() == (
        code / "n0" / "src" / "train.py"
    ).read_text()
    winner = [m.final["val_accuracy"] for m in outcome.winner_runs]
    assert (
        [m.seed for m in outcome.winner_runs]
        == [FRESH_SEED_OFFSET, FRESH_SEED_OFFSET + 1]
        == outcome.summary.fresh_seeds
    )
    for name, gain in (("code-without-weight_averaging", 0.03), ("code-without-width_bonus", 0.01)):
        description, runs = outcome.ablations[name]
        assert "switched off (parts.json" in description
        # the same code and settings, so the same seeded noise: switching a part off removes exactly its gain
        assert [w - m.final["val_accuracy"] for w, m in zip(winner, runs, strict=True)] == pytest.approx([gain] * 2)


def test_without_named_parts_the_ablations_fall_back_to_hunks_and_say_so(tmp_path: Path) -> None:
    transcript = {"version n0)": [transcripts.EMA]}
    outcome, _ = search_once(tmp_path / "none", "simulated", transcript, [0, 1], method=ADAM, sandbox=False, steps=20,
                             drafts=1, max_nodes=1, improve_steps=0)  # fmt: skip
    assert set(outcome.ablations) == {"code-without-hunk1", "code-without-hunk2"}
    assert all("a fallback ablation by hunk, since the idea named no parts" in d for d, _ in outcome.ablations.values())
    # parts were named, but the winning code reads no switch: the same fallback, with that reason
    outcome, _ = search_once(tmp_path / "unread", "simulated", transcript, [0, 1], method=ADAM, sandbox=False,
                             steps=20, parts=["weight averaging"], drafts=1, max_nodes=1, improve_steps=0)  # fmt: skip
    assert set(outcome.ablations) == {"code-without-hunk1", "code-without-hunk2"}
    assert all("the winning code reads no part switch" in p for p in outcome.summary.parts)


class Recorder:
    """A model that answers from a transcript by the version each prompt asks for, keeping every prompt."""

    def __init__(self, transcript: dict[str, list[str]], seen: list[str]) -> None:
        self.transcript, self.seen = transcript, seen

    async def complete(self, messages: list[dict[str, str]], *, max_tokens: int | None = None) -> Any:
        prompt = messages[-1]["content"]
        self.seen.append(prompt)
        key = next(k for k in self.transcript if k in prompt)
        return SimpleNamespace(text=self.transcript[key][0])


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (  # a capable model: the method is settings only, and code would repeat them
            "NO CHANGE\n--schedule=cosine already decays the rate to 1% of its peak and --regularizer=dropout puts "
            "dropout after each hidden ReLU, so new code would only repeat the settings or change a second factor.",
            "the model wrote no code: it judged that the method's settings already implement the idea (its words: "
            "--schedule=cosine already",
        ),
        (  # a weak model reading the format back: no explanation, no edit
            "Reply format. Begin with two or three sentences on what your code does (later drafts are shown them",
            "the first draft held no edit (the reply ignores the edit format)",
        ),
        ("ok ok ok ok ok ok ok ok ok ok", "the first draft held no edit"),  # a loop
    ],
)
def test_a_first_draft_without_an_edit_is_told_apart_by_why(tmp_path: Path, reply: str, reason: str) -> None:
    """The relay run's frontier model answered 'no code change is needed' for a settings-only method; the search
    had called that ignoring the edit format. Now the prompt offers NO CHANGE and the summary gives the model's why."""
    kept: dict[str, Any] = {"drafts": 2, "max_nodes": 3, "improve_steps": 0, "ablations": False}
    outcome, recorded = search_once(
        tmp_path, "simulated", {"version n0)": [reply]}, [0, 1], method=ADAM, sandbox=False, steps=20, **kept
    )
    assert len(recorded) == 1 and recorded[0].edits == []  # one call, nothing run: the plan's conditions stand
    assert outcome.summary.reason.startswith(reason) and outcome.summary.reason.endswith("stand alone")
    assert f"only {NO_CHANGE} and one sentence" in bare_search("simulated")._task()


def test_a_model_call_that_fails_is_a_recorded_node_not_a_lost_search(tmp_path: Path) -> None:
    """The embedded model's 8,192-token window: a prompt over it failed the call, the search raised, and the node
    went unrecorded (CI's e2e check caught it). Now the failed call is a buggy node with its reason, and a model
    with a small window is not shown the imported modules or earlier drafts."""
    import types

    from fars.config import LLMConfig
    from fars.llm.client import register_providers

    class Refusing:
        cfg = types.SimpleNamespace(model="scripted/any")

        async def complete(self, messages: object, max_tokens: int) -> object:
            raise ValueError("Requested tokens (9120) exceed context window of 8192")

    recorded: list[tuple[CodeNode, str | None]] = []
    search = bare_search("simulated", llm=Refusing(), folder=tmp_path, run_dir=tmp_path,
                         remember=lambda node, reply: recorded.append((node, reply)))  # fmt: skip
    outcome = asyncio.run(search.search())
    assert [(n.id, n.verdict, r) for n, r in recorded] == [("n0", "buggy", None)]
    assert recorded[0][0].error is not None and "exceed context window" in recorded[0][0].error
    assert outcome.summary.reason.startswith("the model call failed (ValueError")
    register_providers(LLMConfig())  # the embedded model's window, as the run registers it
    small = bare_search("digits", llm=types.SimpleNamespace(cfg=LLMConfig()))
    assert not small.roomy and small.context == "" and "class" not in small._drafts_shown()
    assert bare_search("digits").roomy  # a model whose window litellm does not know: shown everything


def test_the_template_context_is_worked_out_once_per_template_and_again_when_a_module_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every project on a template asks for the same context; it is kept, and rebuilt when a module it read
    changes on disk (a template edited during a long run is shown as it now is)."""
    import os
    import shutil

    from experiments.spec import load_spec
    from fars.code import search as code_search

    folder = tmp_path / "lm"
    shutil.copytree(Path(__file__).resolve().parents[2] / "experiments" / "simulated", folder)
    (folder / "helpers.py").write_text('def warmup(step):\n    """Linear warm-up."""\n    return min(1.0, step / 10)\n')
    train = folder / "train.py"
    train.write_text("from helpers import warmup\n" + train.read_text())
    spec = load_spec(folder)
    files = {"train.py": train.read_text()}
    first = context_text(spec, files)
    assert "def warmup(step)" in first and "Linear warm-up" in first
    calls: list[object] = []
    real = code_search._context_text
    monkeypatch.setattr(code_search, "_context_text", lambda *a: calls.append(a) or real(*a))
    assert context_text(spec, files) == first and not calls  # kept
    helpers = folder / "helpers.py"
    helpers.write_text('def warmup(step):\n    """Cosine warm-up."""\n    return 1.0\n')
    os.utime(helpers, ns=(helpers.stat().st_atime_ns, helpers.stat().st_mtime_ns + 10**9))
    again = context_text(spec, files)
    assert "Cosine warm-up" in again and len(calls) == 1  # rebuilt from the changed module
