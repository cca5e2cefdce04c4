"""Synthetic run folders for the view's tests and benchmark, written through the real ledger API.

Every stage output is a real contract (``fars.contracts``), every call a ``CallRow``, every file an
artifact the ledger knows, so the view reads them exactly as it reads a run of ``fars run``; only the
content is made up (and, where asked, hostile: script tags in titles, hypotheses and the paper).
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import yaml

from fars.contracts import (
    ConditionResult,
    EngineInfo,
    ExperimentOutput,
    GroundingCounts,
    GroundingSummary,
    HypothesisRecord,
    IdeationOutput,
    LiteratureInfo,
    NoveltyEvidence,
    NoveltyVerdict,
    Plan,
    PlanningOutput,
    RelatedEntry,
    Results,
    ReviewOutput,
    ReviewSummary,
    ScreeningScore,
    Stat,
    WritingOutput,
)
from fars.ledger import CallRow, Ledger
from fars.records import Artifact, ProjectStatus
from fars.summary import build_run_record, write_run_record
from review.reviewer import MemberReview, PaperReview

STAGES = ("ideation", "planning", "experiment", "writing", "review")
SCRIPT = "<script>window.__injected = 1; alert('x')</script>"


def _artifact(ledger: Ledger, run: Path, pid: str, stage: str, kind: str, name: str, content: str) -> str:
    relative = f"projects/{pid}/{name}"
    path = run / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")
    ledger.add_artifact(pid, Artifact(kind=kind, path=relative, sha256="0" * 64, stage=stage))
    return relative


def _calls(ledger: Ledger, pid: str, stage: str, n: int, rng: random.Random) -> None:
    for k in range(n):
        ledger.record_call(
            CallRow(
                project_id=pid, stage=stage, model="scripted/default", request_hash=f"{pid}{stage}{k}", ordinal=0,
                input_tokens=rng.randint(200, 2000), output_tokens=rng.randint(20, 400), cost_usd=0.0004,
                latency_s=rng.uniform(0.2, 3.0), cache_hit=k % 5 == 0, response='{"text": "' + "reply " * 60 + '"}',
            )
        )  # fmt: skip


def _ideation(i: int, hostile: bool) -> IdeationOutput:
    title = f"Hypothesis {i}" + (f" {SCRIPT}" if hostile else "")
    related = [
        RelatedEntry(id=f"openreview:{i}-{k}", title=f"Related work {k}", authors=["A. Author"], year=2022,
                     source="offline", score=3.0 - k, similarity=0.2 + 0.05 * k)
        for k in range(3)
    ]  # fmt: skip
    hypotheses = [
        HypothesisRecord(
            title=title if k == 0 else f"Alternative {k} of project {i}",
            statement=f"Weight decay changes grokking speed ({i}.{k})" + (f" {SCRIPT}" if hostile else ""),
            rationale="seen in small networks",
            related=related,
            novelty=NoveltyVerdict(
                checked=True, novel=k != 2, reason="below the similarity bar" if k != 2 else "too close to [0]",
                max_similarity=0.3 + 0.2 * k, nearest=related[0].title,
                evidence=[NoveltyEvidence(id=r.id, title=r.title, similarity=r.similarity) for r in related],
            ),
        )
        for k in range(3)
    ]  # fmt: skip
    return IdeationOutput(
        hypotheses=hypotheses, scores=[ScreeningScore(novelty=3, feasibility=4, clarity=3)] * 3,
        overall=[3.33] * 3, screened=2, novel=2, related=related, literature=LiteratureInfo(backend="offline"),
        template="modadd", focus="regularisation", chosen=hypotheses[0],
    )  # fmt: skip


def _results() -> ExperimentOutput:
    def stat(m: float) -> Stat:
        return Stat(mean=m, std=0.05, n=2)

    conditions = {
        name: ConditionResult(overrides={"lr": lr}, metric=stat(acc), val_loss=stat(1 - acc), train_loss=stat(0.1),
                              seeds=[0, 1], values=[acc - 0.01, acc + 0.01], p_vs_baseline=None if name == "baseline" else 0.04)
        for name, lr, acc in (("baseline", 0.01, 0.6), ("lr=0.03", 0.03, 0.8))
    }  # fmt: skip
    return ExperimentOutput(
        results=Results(template="modadd", metric="val_accuracy", higher_is_better=True, knob="lr", steps=300,
                        conditions=conditions, best="lr=0.03", engine=EngineInfo(name="plain"))
    )  # fmt: skip


def _metrics(run: Path, pid: str, name: str, lr: float) -> None:
    folder = run / "projects" / pid / "runs" / name
    folder.mkdir(parents=True, exist_ok=True)
    steps = list(range(15, 301, 15))
    loss = [4.0 * (1 - lr * 20) ** (s / 30) + 0.1 for s in steps]
    data = {"metric": "val_accuracy", "final": {"val_accuracy": 0.8, "val_loss": loss[-1], "train_loss": loss[-1]},
            "curves": {"step": steps, "train_loss": loss, "val_loss": [v + 0.2 for v in loss],
                       "val_accuracy": [min(1.0, s / 300) for s in steps]}}  # fmt: skip
    (folder / "metrics.json").write_text(json.dumps(data), encoding="utf-8")


def _review(title: str, rating: float) -> ReviewOutput:
    form = {"summary": "The paper studies weight decay.", "strengths": ["clear setup"], "weaknesses": ["tiny model"],
            "questions": [], "soundness": 3, "presentation": 2, "contribution": 2, "rating": rating,
            "confidence": 3, "decision": "reject"}  # fmt: skip
    paper_review = PaperReview(
        reviewer="model:scripted/default", form="iclr2025", title=title, source="paper.md",
        reviews=[MemberReview(persona="balanced", review=form, rating=rating,
                              subscores={"soundness": 3, "presentation": 2, "contribution": 2, "confidence": 3})],
        raw_rating=rating, subscores={"soundness": 3.0, "presentation": 2.0, "contribution": 2.0}, decision="reject",
    )  # fmt: skip
    summary = ReviewSummary(rating=rating, raw_rating=rating, decision="reject", subscores=paper_review.subscores)
    return ReviewOutput(rating=rating, review=summary, paper_review=paper_review)


def synthetic_run(
    run: Path,
    projects: int,
    *,
    finished: int | None = None,
    calls_per_stage: int = 4,
    hostile: tuple[int, ...] = (),
    curves: tuple[int, ...] = (0,),
    record: str | None = "completed",
    seed: int = 0,
) -> Path:
    """A run folder with ``projects`` projects; the first ``finished`` (all, by default) went through every
    stage, the others stop part-way and stay ``running``. ``hostile`` projects carry script tags in their
    model-written text; ``curves`` projects get training runs' ``metrics.json``. ``record``: the status of
    the ``run_record.json`` to write (None: none, as before a running run first writes one)."""
    rng = random.Random(seed)
    finished = projects if finished is None else finished
    run.mkdir(parents=True, exist_ok=True)
    (run / ".hydra").mkdir(exist_ok=True)
    config = {"seed": seed, "llm": {"model": "scripted/default"}, "pipeline": {"stages": list(STAGES)}}
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"seed={seed}"]), encoding="utf-8")
    ledger = Ledger(run / "ledger.sqlite")
    started = time.time() - 3600
    ledger.set_meta("started_at", str(started))
    ledger.set_meta("sessions", "1")
    for i in range(projects):
        pid = f"p{i:03d}"
        ledger.add_project(pid, i, "training dynamics of small neural networks")
        ledger.update_project(pid, status=ProjectStatus.running)
        hostile_here = i in hostile
        idea = _ideation(i, hostile_here)
        title = f"Paper {i}: weight decay and grokking" + (f" {SCRIPT}" if hostile_here else "")
        depth = len(STAGES) if i < finished else i % len(STAGES)
        for stage in STAGES[:depth]:
            ledger.update_project(pid, stage=stage)
            ledger.stage_started(pid, stage)
            _calls(ledger, pid, stage, calls_per_stage, rng)
            if stage == "ideation":
                _artifact(ledger, run, pid, stage, "hypothesis", "hypotheses.json", idea.model_dump_json())
                ledger.stage_finished(pid, stage, idea)
            elif stage == "planning":
                plan = Plan(template="modadd", knob="lr", baseline=0.01, variants=[0.03], seeds=[0, 1], steps=300)
                ledger.stage_finished(pid, stage, PlanningOutput(plan=plan))
            elif stage == "experiment":
                if i in curves:
                    for name, lr in (("baseline-seed0", 0.01), ("baseline-seed1", 0.01), ("lr_0.03-seed0", 0.03)):
                        _metrics(run, pid, name, lr)
                ledger.stage_finished(pid, stage, _results())
            elif stage == "writing":
                body = f"# {title}\n\n## Results\n\nThe baseline reached 0.60; lr=0.03 reached 0.80.\n"
                if hostile_here:
                    body += f"\n{SCRIPT}\n\n<img src=x onerror=alert(1)>\n"
                md = _artifact(ledger, run, pid, stage, "paper", "paper.md", body)
                counts = GroundingCounts(numbers=4, numbers_checked=4, citations=2)
                ledger.stage_finished(pid, stage, WritingOutput(
                    title=title, markdown=md, latex=md.replace(".md", ".tex"), grounded_number_rate=1.0,
                    verified_citation_rate=1.0, grounding=GroundingSummary(before=counts, after=counts, flagged=False),
                ))  # fmt: skip
                ledger.update_project(pid, title=title)
            else:
                review = _review(title, float(rng.choice((1, 3, 3, 5, 5, 6, 8))))
                _artifact(ledger, run, pid, stage, "review", "review.json", review.paper_review.model_dump_json())
                ledger.stage_finished(pid, stage, review)
        if depth == len(STAGES):
            ledger.update_project(pid, stage="done", status=ProjectStatus.done)
        else:
            current = STAGES[depth]
            ledger.update_project(pid, stage=current)
            ledger.stage_started(pid, current)
    if record is not None:
        write_run_record(build_run_record(ledger, run, config, record, started, 0), run)
    ledger.close()
    return run
