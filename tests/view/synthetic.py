"""Synthetic run folders for the view's tests and benchmark, written through the real ledger API.

Every stage output is a real contract (``fars.run.contracts``), every call a ``CallRow``, every file an
artifact the ledger knows, so the view reads them exactly as it reads a run of ``fars run``; only the
content is made up (and, where asked, hostile: script tags in titles, hypotheses and the paper).

The runs read like runs of the ``modadd`` template: even projects plan a component design (a baseline,
a method of two components, an ablation of each), odd ones a sweep of the learning rate; the Experiment
stage's table is built by the stage's own ``aggregate`` from per-seed ``Metrics``, so its intervals,
Holm-corrected p-values, effect sizes and verdicts are the ones a real run would report for those
values. ``code`` projects also searched over programs: four nodes (a refused draft, a worse draft, an
improvement that wins, a debug step that still fails), each in the ledger with its diff, the winner run
as the condition ``code`` with an ablation of each of its two changes.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import yaml

from experiments.metrics import Curves, Metrics, Provenance, write_metrics
from fars.code.edits import unified_diff
from fars.code.search import change_regions
from fars.evaluation.stats import welch_t
from fars.run.contracts import (
    ClaimCheck,
    CodeNode,
    CodeSearchSummary,
    Condition,
    EngineInfo,
    ExperimentOutput,
    GroundingCounts,
    GroundingSummary,
    HypothesisRecord,
    IdeationOutput,
    LiteratureInfo,
    MethodCandidate,
    NoveltyEvidence,
    NoveltyVerdict,
    Plan,
    PlanningOutput,
    RelatedEntry,
    Results,
    ReviewOutput,
    ReviewSummary,
    ScreeningScore,
    WritingOutput,
)
from fars.run.ledger import CallRow, Ledger
from fars.run.records import Artifact, ProjectStatus
from fars.run.summary import build_run_record, write_run_record
from fars.stages.experiment import aggregate
from review.reviewer import MemberReview, PaperReview

STAGES = ("ideation", "planning", "experiment", "writing", "review")
SCRIPT = "<script>window.__injected = 1; alert('x')</script>"
TEMPLATE, METRIC, STEPS, SEEDS = "modadd", "val_accuracy", 300, [0, 1, 2]
METHOD = {"schedule": "warmup_cosine", "normalization": "layernorm"}

# val_accuracy of each condition over the seeds (a project adds a small offset of its own)
COMPONENT_VALUES = {
    "baseline": [0.412, 0.398, 0.431],
    "method": [0.563, 0.547, 0.589],
    "method-without-schedule": [0.521, 0.498, 0.544],
    "method-without-normalization": [0.433, 0.419, 0.447],
}
KNOB_VALUES = {"baseline": [0.412, 0.398, 0.431], "lr=0.003": [0.301, 0.322, 0.289], "lr=0.03": [0.518, 0.537, 0.502]}
CODE_VALUES = {
    "code": [0.612, 0.597, 0.628],
    "code-without-change1": [0.571, 0.552, 0.580],
    "code-without-change2": [0.428, 0.405, 0.441],
}
WORSE_DRAFT = [0.392, 0.377, 0.401]

# a stretch of the template's train.py and the winning node's version of it (two changes: two ablations)
TRAIN_BEFORE = """\
        for _ in range(depth):
            layers.append(nn.Linear(width, hidden))
            if normalization == "layernorm":
                layers.append(nn.LayerNorm(hidden))
            layers.append(act())
            width = hidden
        layers.append(nn.Linear(width, p))
        self.mlp = nn.Sequential(*layers)

    loss_fn = getattr(method, "loss", nn.functional.cross_entropy)
    module = engine.prepare(model, opt, args.batch_size, compile=args.compile)
"""
TRAIN_WINNER = TRAIN_BEFORE.replace(
    "            layers.append(act())\n",
    "            layers.append(act())\n            layers.append(nn.Dropout(0.1))\n",
).replace(
    '    loss_fn = getattr(method, "loss", nn.functional.cross_entropy)\n',
    "    def loss_fn(logits, y):\n        return nn.functional.cross_entropy(logits, y, label_smoothing=0.1)\n",
)
TRAIN_WORSE = TRAIN_BEFORE.replace(
    "            layers.append(act())\n",
    "            layers.append(nn.Dropout(0.5))\n            layers.append(act())\n",
)
TRAIN_BUGGY = TRAIN_WINNER.replace("nn.Linear(width, p)", "nn.Linear(hidden // 2, p)")
SMOKE_ERROR = (
    "the smoke run failed: JobFailed: train.py exited with status 1\nTraceback (most recent call last):\n"
    '  File "train.py", line 66, in forward\n'
    "    return self.mlp(torch.cat([self.embed_a(x[:, 0]), self.embed_b(x[:, 1])], dim=1))\n"
    "RuntimeError: mat1 and mat2 shapes cannot be multiplied (256x128 and 64x59)"
)


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
            method=dict(METHOD) if k == 0 and i % 2 == 0 else {},
        )
        for k in range(3)
    ]  # fmt: skip
    candidates = [
        MethodCandidate(id=0, components=dict(METHOD),
                        summary="linear warm-up over the first tenth, then cosine decay; LayerNorm before each "
                                "hidden layer's nonlinearity"),
        MethodCandidate(id=1, components={"optimizer": "sgd"}, summary="SGD with momentum 0.9 and weight decay"),
    ]  # fmt: skip
    return IdeationOutput(
        hypotheses=hypotheses, scores=[ScreeningScore(novelty=3, feasibility=4, clarity=3)] * 3,
        overall=[3.33] * 3, screened=2, novel=2, related=related, literature=LiteratureInfo(backend="offline"),
        template=TEMPLATE, focus="lr", chosen=hypotheses[0], candidates=candidates if i % 2 == 0 else [],
        fields_checked=9,
    )  # fmt: skip


def _plan(i: int) -> Plan:
    """Even projects: a component design with its ablations; odd ones: a sweep of the learning rate."""
    if i % 2:
        return Plan(
            template=TEMPLATE, hypothesis="the learning rate sets how soon the network generalises", design="knob",
            knob="lr", seeds=SEEDS, steps=STEPS,
            conditions=[
                Condition(name="baseline", role="baseline", description="lr at its default 0.01"),
                *(Condition(name=f"lr={v}", role="variant", knobs={"lr": v}, description=f"lr={v} instead of 0.01")
                  for v in (0.003, 0.03)),
            ],
        )  # fmt: skip
    return Plan(
        template=TEMPLATE, hypothesis="warm-up and LayerNorm together speed up generalisation", design="components",
        seeds=SEEDS, steps=STEPS, rationale="the two components act on the early, unstable phase of training",
        conditions=[
            Condition(name="baseline", role="baseline", description="every component at the template's default"),
            Condition(name="method", role="method", components=dict(METHOD),
                      description="schedule=warmup_cosine, normalization=layernorm"),
            *(Condition(name=f"method-without-{slot}", role="ablation",
                        components={s: o for s, o in METHOD.items() if s != slot}, of="method", removed=slot,
                        description=f"the method with {slot} back at the baseline's option")
              for slot in METHOD),
        ],
    )  # fmt: skip


def _metrics(condition: Condition, seed: int, final: float) -> Metrics:
    """One training run's report, its learning curve rising to ``final``."""
    steps = list(range(15, STEPS + 1, 15))
    lr = float(condition.knobs.get("lr", 0.01))
    loss = [4.0 * (1 - lr * 20) ** (s / 30) + 1.2 * (1 - final) + 0.01 * seed if lr < 0.05 else 4.0 for s in steps]
    metric = [round(final * min(1.0, (s / STEPS) ** 0.7), 4) for s in steps]
    config: dict[str, float | int | str] = {"lr": lr, **condition.components, **condition.knobs}
    return Metrics(
        template=TEMPLATE, engine="plain", device="cpu", seed=seed, steps=STEPS, config=config, metric=METRIC,
        final={METRIC: final, "val_loss": loss[-1] + 0.2, "train_loss": loss[-1]},
        curves=Curves(step=steps, train_loss=loss, val_loss=[v + 0.2 for v in loss], val_metric=metric),
        wall_s=4.8 + 0.1 * seed, examples_per_s=16000.0, parameters=27_323,
        provenance=Provenance(code_sha256="0" * 64, config_sha256="1" * 64),
    )  # fmt: skip


def _nodes(pid: str, offset: float) -> list[tuple[CodeNode, str, str | None]]:
    """The search's nodes in the order they finished: (record, the reply that made it, its train.py or None)."""
    folder = f"projects/{pid}/code"

    def values(of: list[float]) -> list[float]:
        return [round(v + offset, 4) for v in of]

    def p(of: list[float]) -> float | None:  # uncorrected, as the search records it
        test = welch_t(values(COMPONENT_VALUES["baseline"]), values(of))
        return test.p_value if test else None

    refused = "train.py\n<<<<<<< SEARCH\n    loss_fn = getattr(method, \"loss\", nn.functional.cross_entropy)\n" \
              "=======\n    loss_fn = lambda logits, y: nn.functional.cross_entropy(logits, y,\n" \
              ">>>>>>> REPLACE\n"  # fmt: skip
    return [
        (CodeNode(id="n0", kind="draft", verdict="buggy", edits=["train.py: replace 1 line(s)"], seconds=3.1,
                  error="the edits were refused: train.py: SyntaxError: '(' was never closed (line 118)"),
         refused, None),
        (CodeNode(id="n1", kind="draft", verdict="worse", edits=["train.py: replace 1 line(s)"], seconds=21.7,
                  diff=f"{folder}/n1/diff.patch", values=values(WORSE_DRAFT),
                  mean=sum(values(WORSE_DRAFT)) / 3, p_vs_baseline=p(WORSE_DRAFT)),
         "train.py\n<<<<<<< SEARCH\n(dropout before the nonlinearity)\n>>>>>>> REPLACE\n", TRAIN_WORSE),
        (CodeNode(id="n2", parent="n1", kind="improve", verdict="better", seconds=23.4,
                  edits=["train.py: replace 1 line(s)", "train.py: replace 1 line(s)"], diff=f"{folder}/n2/diff.patch",
                  values=values(CODE_VALUES["code"]), mean=sum(values(CODE_VALUES["code"])) / 3,
                  p_vs_baseline=p(CODE_VALUES["code"])),
         "train.py\n<<<<<<< SEARCH\n(lighter dropout after the nonlinearity; label smoothing)\n>>>>>>> REPLACE\n",
         TRAIN_WINNER),
        (CodeNode(id="n3", parent="n0", kind="debug", depth=1, verdict="buggy", seconds=6.2,
                  edits=["train.py: replace 2 line(s)"], diff=f"{folder}/n3/diff.patch", error=SMOKE_ERROR),
         "train.py\n<<<<<<< SEARCH\n(the loss, closed; a narrower output layer)\n>>>>>>> REPLACE\n", TRAIN_BUGGY),
    ]  # fmt: skip


def _record_nodes(ledger: Ledger, run: Path, pid: str, nodes: list[tuple[CodeNode, str, str | None]]) -> None:
    """What the stage's search writes as each node finishes: its reply and diff, its record in the ledger."""
    for node, reply, train in nodes:
        folder = run / "projects" / pid / "code" / node.id
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "reply.txt").write_text(reply, encoding="utf-8")
        if node.diff and train is not None:
            (run / node.diff).write_text(unified_diff({"train.py": TRAIN_BEFORE}, {"train.py": train}), "utf-8")
            ledger.add_artifact(pid, Artifact(kind="code", path=node.diff, sha256="0" * 64, stage="experiment"))
        ledger.record_code_node(pid, node, reply)


def _parts() -> list[tuple[str, str]]:
    """The winner's changes as the search names its ablations: (condition, where)."""
    regions = change_regions(TRAIN_BEFORE, TRAIN_WINNER)
    return [(f"code-without-change{k}", f"train.py lines {j1 + 1}-{j2}") for k, (_, _, j1, j2) in enumerate(regions, 1)]


def _experiment(i: int, plan: Plan, code: bool, offset: float) -> tuple[Results, dict[str, list[Metrics]]]:
    """The stage's table for the plan (and the code search's conditions), by the stage's own ``aggregate``."""
    conditions = {c.name: c for c in plan.conditions}
    table = dict(KNOB_VALUES if plan.design == "knob" else COMPONENT_VALUES)
    search = None
    if code:
        nodes = _nodes(f"p{i:03d}", offset)
        search = CodeSearchSummary(
            nodes=[n for n, _, _ in nodes], winner="n2", diff=nodes[2][0].diff,
            reason=f"n2 reached {nodes[2][0].mean:.4f} against the baseline's {sum(table['baseline']) / 3 + offset:.4f}",
            parts=[f"{name}: {where}" for name, where in _parts()],
        )  # fmt: skip
        conditions["code"] = Condition(
            name="code",
            role="method",
            description="the model-written code that won the search over programs (its changes are in the appendix)",
        )
        for name, where in _parts():
            conditions[name] = Condition(
                name=name,
                role="ablation",
                of="code",
                description=f"the winning code (n2) without its change at {where}",
            )
        table |= CODE_VALUES
    runs = {name: [_metrics(conditions[name], s, round(v + offset, 4)) for s, v in zip(SEEDS, values, strict=True)]
            for name, values in table.items()}  # fmt: skip
    rows, best = aggregate(runs, conditions, METRIC, True)
    results = Results(
        template=TEMPLATE, metric=METRIC, higher_is_better=True, knob=plan.knob, steps=STEPS, conditions=rows,
        best=best, engine=EngineInfo(name="plain", device="cpu", parameters=27_323), code=search,
    )  # fmt: skip
    return results, runs


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)[:60]


def _paper(title: str, results: Results, hostile: bool) -> str:
    rows = results.conditions
    other = "code" if "code" in rows else "method" if "method" in rows else "lr=0.03"
    body = (
        f"# {title}\n\n## Results\n\nThe baseline reached {rows['baseline'].metric.mean:.2f}; {other} reached "
        f"{rows[other].metric.mean:.2f} ({rows[other].verdict}, Holm-adjusted p = {rows[other].p_adjusted:.3g}).\n\n"
        "| condition | val_accuracy |\n|---|---|\n"
        + "".join(f"| {name} | {c.metric.mean:.3f} ± {c.metric.std:.3f} |\n" for name, c in rows.items())
    )
    if hostile:
        body += f"\n{SCRIPT}\n\n<img src=x onerror=alert(1)>\n"
    return body


def _writing(title: str, md: str, hostile: bool) -> WritingOutput:
    counts = GroundingCounts(numbers=14, numbers_from_harness=12, numbers_checked=14, citations=2)
    before = ClaimCheck(checked=3, supported=2, overclaims=1,
                        problems=["'method-without-normalization improves on the baseline': the corrected test "
                                  "found no significant difference"])  # fmt: skip
    after = ClaimCheck(checked=3, supported=3, repaired=before.problems)
    return WritingOutput(
        title=title, markdown=md, latex=md.replace(".md", ".tex"), grounded_number_rate=1.0, verified_citation_rate=1.0,
        claim_grounding_rate=after.rate, grounding=GroundingSummary(before=counts, after=counts, flagged=False,
                                                                    bibliography=2),
        claims_before=before, claims=after, fields_checked=6, degenerate_fields=1 if hostile else 0,
        degenerate={"abstract": ["repeats one phrase"]} if hostile else {},
    )  # fmt: skip


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
    code: tuple[int, ...] = (0,),
    record: str | None = "completed",
    seed: int = 0,
) -> Path:
    """A run folder with ``projects`` projects; the first ``finished`` (all, by default) went through every
    stage, the others stop part-way and stay ``running``. ``hostile`` projects carry script tags in their
    model-written text; ``curves`` projects get training runs' ``metrics.json``; ``code`` projects searched
    over programs (a project still in its experiment has the search's first two nodes in the ledger, no
    results yet). ``record``: the status of the ``run_record.json`` to write (None: none, as before a
    running run first writes one)."""
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
        plan = _plan(i)
        searched = i in code and plan.design == "components"
        offset = 0.004 * (i % 5)
        title = f"Paper {i}: weight decay and grokking" + (f" {SCRIPT}" if hostile_here else "")
        depth = len(STAGES) if i < finished else i % len(STAGES)
        results: Results | None = None
        for stage in STAGES[:depth]:
            ledger.update_project(pid, stage=stage)
            ledger.stage_started(pid, stage)
            _calls(ledger, pid, stage, calls_per_stage, rng)
            if stage == "ideation":
                _artifact(ledger, run, pid, stage, "hypothesis", "hypotheses.json", idea.model_dump_json())
                ledger.stage_finished(pid, stage, idea)
            elif stage == "planning":
                ledger.stage_finished(pid, stage, PlanningOutput(plan=plan))
            elif stage == "experiment":
                if searched:
                    _record_nodes(ledger, run, pid, _nodes(pid, offset))
                results, runs = _experiment(i, plan, searched, offset)
                if i in curves:
                    for name, metrics in runs.items():
                        if not name.startswith("code"):  # the search's runs live under code/, not runs/
                            for m in metrics:
                                write_metrics(m, run / "projects" / pid / "runs" / f"{_slug(name)}-seed{m.seed}")
                _artifact(ledger, run, pid, stage, "results", "results.json", results.model_dump_json(indent=1))
                ledger.stage_finished(pid, stage, ExperimentOutput(results=results))
            elif stage == "writing":
                assert results is not None
                md = _artifact(ledger, run, pid, stage, "paper", "paper.md", _paper(title, results, hostile_here))
                ledger.stage_finished(pid, stage, _writing(title, md, hostile_here))
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
            if current == "experiment" and searched:  # the search is under way: its first round is in
                _record_nodes(ledger, run, pid, _nodes(pid, offset)[:2])
    if record is not None:
        write_run_record(build_run_record(ledger, run, config, record, started, 0), run)
    ledger.close()
    return run
