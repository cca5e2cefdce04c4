"""The llm_judge template: its generated items, its scoring, and whole runs against a real SubjectGateway.

The gateway is started in the test's own event loop and the template runs as a subprocess with the
environment a job gets (``job_env`` plus the gateway's grant), over the scripted model and, in a slow
test, the real embedded SmolLM2-135M.
"""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from experiments.llm_judge import SPEC
from experiments.llm_judge.items import FAMILIES, make_item
from experiments.llm_judge.train import Judged, build_messages, parse_verdict, summary
from experiments.metrics import read_metrics
from fars.config import BudgetConfig, LLMConfig, ScriptedModelConfig
from fars.executor.gateway import SubjectGateway
from fars.executor.launch import job_env
from fars.llm.budget import Budget
from fars.llm.client import LLMClient

ENTRY = SPEC.entry_path


def judge(client: LLMClient, out: Path, *flags: str, timeout: float = 600) -> tuple[int, str, int]:
    """Run the template against ``client`` behind a gateway: (exit code, stderr, calls the gateway answered)."""

    async def go() -> tuple[int, str, int]:
        gateway = SubjectGateway(client)
        gateway.start()
        try:
            token, env = gateway.grant("p-judge", "experiment", out.name)
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(ENTRY),
                "--out_dir",
                str(out),
                *flags,
                env=job_env(1, env),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            _, err = await asyncio.wait_for(proc.communicate(), timeout)
            gateway.revoke(token)
            assert proc.returncode is not None
            return proc.returncode, err.decode(), gateway.calls
        finally:
            gateway.close()

    try:
        return asyncio.run(go())
    finally:
        client.close()


def scripted(**kw: Any) -> LLMClient:
    return LLMClient(LLMConfig(model="scripted/judge", cache=False, scripted=ScriptedModelConfig(**kw)))


# -- items and scoring -----------------------------------------------------------------------------
@pytest.mark.parametrize("difficulty", [1, 2, 3, 4, 5])
def test_items_have_one_right_answer(difficulty: int) -> None:
    for index in range(30):
        item = make_item("mixed", difficulty, 0, index)
        assert item == make_item("mixed", difficulty, 0, index) and item.correct != item.wrong
        if item.family == "arithmetic":
            a, op, b = item.question.removeprefix("What is ").rstrip("?").split()
            assert int(item.correct) == (int(a) + int(b) if op == "+" else int(a) * int(b))
        elif item.family == "comparison":
            assert float(item.correct) > float(item.wrong)
        else:
            right, wrong = item.correct.split(), item.wrong.split()
            assert len(right) == len(wrong) and sum(r != w for r, w in zip(right, wrong, strict=True)) == 1
    assert [make_item("mixed", 2, 0, i).family for i in range(3)] == list(FAMILIES)
    assert make_item("mixed", 2, 0, 0) != make_item("mixed", 2, 1, 0)


def test_the_decimal_trap_at_difficulty_four() -> None:
    items = [make_item("comparison", 4, 3, i) for i in range(20)]
    assert all(len(i.wrong) > len(i.correct) and float(i.wrong) < float(i.correct) for i in items)


def test_verdicts_are_read_from_json_or_a_lone_label() -> None:
    assert parse_verdict('{"answer": "B"}', ["A", "B"]) == 1
    assert parse_verdict('{ "answer": "first"}', ["first", "second"]) == 0
    assert parse_verdict("The second candidate is correct.", ["first", "second"]) == 1
    assert parse_verdict("2", ["1", "2"]) == 1
    assert parse_verdict("A or B, hard to say", ["A", "B"]) is None
    assert parse_verdict("a cat", ["A", "B"]) is None  # the article is not the label
    assert parse_verdict("", ["A", "B"]) is None


def test_scores_ties_and_bias_measures() -> None:
    always_first = [Judged("arithmetic", (0, 0), 0, k % 2) for k in range(4)]
    out = summary(always_first, "single")
    assert (out["accuracy"], out["first_slot_rate"], out["position_bias"], out["consistency"]) == (0.5, 1.0, 1.0, 0.0)
    assert summary(always_first, "both")["accuracy"] == 0.5  # every item a tie
    perfect = [Judged("comparison", (0, 1), 0, 0)] * 3
    assert summary(perfect, "both")["accuracy"] == 1.0 and summary(perfect, "single")["consistency"] == 1.0
    half_valid = [Judged("agreement", (None, 1), 1, 0)]
    assert summary(half_valid, "both")["accuracy"] == 1.0 and summary(half_valid, "single")["accuracy"] == 0.0
    assert summary(half_valid, "single")["invalid_rate"] == 0.5


def test_two_shots_put_the_answer_in_each_slot_once() -> None:
    config = {**{c.name: c.default for c in SPEC.components}, "task": "arithmetic", "difficulty": 2, "shots": "two"}
    item = {"index": 5, "seed": 0, "family": "arithmetic", "question": "What is 2 + 2?", "candidates": ["4", "5"]}
    messages = build_messages(item, ["A", "B"], config)
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert sorted(m["content"] for m in messages if m["role"] == "assistant") == ['{"answer": "A"}', '{"answer": "B"}']
    assert "What is 2 + 2?" in messages[-1]["content"] and "What is 2 + 2?" not in messages[0]["content"]


# -- whole runs through the gateway ----------------------------------------------------------------
def test_scripted_judge_through_the_gateway(tmp_path: Path) -> None:
    rc, err, calls = judge(scripted(), tmp_path / "a", "--steps", "12")
    assert rc == 0, err[-3000:]
    done = read_metrics(tmp_path / "a" / "metrics.json")
    assert calls == 24 and done.template == "llm_judge" and done.config["subject"] == "scripted/judge"
    final = done.final
    assert math.isfinite(final["accuracy"]) and 0.0 <= final["accuracy"] <= 1.0
    assert final["items"] == 12 and final["invalid_rate"] == 0.0  # the schema keeps replies to the labels
    assert done.curves.step[-1] == 12 and done.curves.val_metric[-1] == pytest.approx(final["accuracy"])
    assert not done.curves.train_loss and done.tokens_per_s > 0
    rc, err, _ = judge(scripted(), tmp_path / "b", "--steps", "12")
    assert rc == 0, err[-3000:]
    assert read_metrics(tmp_path / "b" / "metrics.json").final == final  # same seed, same subject: same result


def test_every_prompt_option_runs(tmp_path: Path) -> None:
    widest = max(len(c.options) for c in SPEC.components)
    used: dict[str, set[str]] = {c.name: set() for c in SPEC.components}
    for k in range(widest):
        flags = [f"--{c.name}={list(c.options)[k % len(c.options)]}" for c in SPEC.components]
        rc, err, _ = judge(scripted(), tmp_path / str(k), "--steps", "4", "--seed", str(k), *flags)
        assert rc == 0, err[-3000:]
        done = read_metrics(tmp_path / str(k) / "metrics.json")
        assert math.isfinite(done.final["accuracy"])
        for slot in used:
            used[slot].add(str(done.config[slot]))
    assert used == {c.name: set(c.options) for c in SPEC.components}


@pytest.mark.parametrize("aggregation", ["single", "both"])
def test_a_judge_that_always_picks_the_first_slot(tmp_path: Path, aggregation: str) -> None:
    """Position bias end to end: a subject answering "A" to everything is at chance, fully biased, never consistent."""
    client = scripted(outputs=['{"answer": "A"}'] * 8)
    rc, err, _ = judge(client, tmp_path, "--steps", "4", "--aggregation", aggregation)
    assert rc == 0, err[-3000:]
    final = read_metrics(tmp_path / "metrics.json").final
    assert (final["first_slot_rate"], final["position_bias"], final["consistency"]) == (1.0, 1.0, 0.0)
    assert (final["accuracy_correct_first"], final["accuracy_correct_second"], final["accuracy"]) == (1.0, 0.0, 0.5)


def test_a_spent_budget_ends_the_run_with_the_items_done(tmp_path: Path) -> None:
    cfg = LLMConfig(model="scripted/judge", cache=False)
    client = LLMClient(cfg, budget=Budget(BudgetConfig(max_tokens=600)))
    rc, err, _ = judge(client, tmp_path, "--steps", "20", "--workers", "1")
    assert rc == 0, err[-3000:]
    final = read_metrics(tmp_path / "metrics.json").final
    assert 1 <= final["items"] < 20 and "budget" in err


def test_without_a_subject_it_says_how_to_give_one(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ENTRY), "--out_dir", str(tmp_path), "--steps", "2"],
        env=job_env(1),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and "FARS_SUBJECT_URL" in done.stderr and "Traceback" not in done.stderr
    gone = subprocess.run(
        [sys.executable, str(ENTRY), "--out_dir", str(tmp_path), "--steps", "2"],
        env=job_env(1, {"FARS_SUBJECT_URL": "http://127.0.0.1:9/v1"}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert gone.returncode != 0 and "cannot reach the subject model" in gone.stderr and "Traceback" not in gone.stderr
    ddp = subprocess.run(
        [sys.executable, str(ENTRY), "--out_dir", str(tmp_path), "--engine", "ddp"],
        env=job_env(1),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ddp.returncode == 2 and "inference template" in ddp.stderr
    assert not (tmp_path / "metrics.json").exists()


@pytest.mark.slow
def test_the_embedded_model_judges_at_smoke_size(tmp_path: Path) -> None:
    """The real 135M model answers inside the labels (constrained output); near chance is a finding."""
    client = LLMClient(LLMConfig(cache=False))
    rc, err, calls = judge(client, tmp_path, "--steps", str(SPEC.scale("smoke").steps), timeout=1200)
    assert rc == 0, err[-3000:]
    done = read_metrics(tmp_path / "metrics.json")
    assert calls == 2 * SPEC.scale("smoke").steps and done.config["subject"] == "local/smollm2-135m"
    assert done.final["invalid_rate"] == 0.0 and 0.0 <= done.final["accuracy"] <= 1.0
