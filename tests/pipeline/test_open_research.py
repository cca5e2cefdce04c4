"""Open research driven end to end by what a capable model answers (``tests/pipeline/open_transcript.py``).

The idea is the model's (not a menu combination), its settings are checked against the template, its code is
written behind one switch per named code part, each named part is ablated, the model asks for a follow-up
condition that runs, and its revised analysis reaches the paper's prompt. The capability check that chooses
the mode for ``pipeline.research=auto`` is judged by arithmetic: a right reading passes, a wrong one fails.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from fars.config import LLMConfig
from fars.llm.client import LLMClient
from fars.run.contracts import HypothesisRecord, IdeationOutput, Plan, Results
from fars.run.ledger import Ledger
from fars.run.summary import read_run_record
from tests.conftest import run_fars
from tests.pipeline import open_transcript as transcript

OPEN_RUN = [
    "llm=scripted", "tracker=disabled", "pipeline.research=open", "pipeline.papers=1", "pipeline.projects=1",
    "pipeline.hypotheses_per_project=2", "experiment.templates=[simulated]", "experiment.steps=200",
    "experiment.seeds=2", "experiment.sensitivity=true", "experiment.max_variants=1", "experiment.code.drafts=1",
    "experiment.code.max_nodes=1", "experiment.code.improve_steps=0", "experiment.code.debug_depth=0",
    "experiment.code.smoke_timeout_s=10", "paper.compile=never",
]  # fmt: skip


@pytest.fixture(scope="module")
def open_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One open-research run on the scripted capable model; the tests below read its folder."""
    base = tmp_path_factory.mktemp("open")
    routes = base / "transcript.json"
    routes.write_text(json.dumps(transcript.OPEN), encoding="utf-8")
    run_dir = base / "run"
    done = run_fars(["run", *OPEN_RUN, f"llm.scripted.routes_file={routes}", f"hydra.run.dir={run_dir}"], base)
    assert done.returncode == 0, done.stderr[-4000:]
    return run_dir


def _stored(run_dir: Path, name: str) -> dict:
    stored = json.loads((run_dir / "projects" / "p000" / name).read_text())
    return stored.get("plan", stored) if name == "plan.json" else stored


def test_the_idea_is_the_models_own_checked_against_the_template(open_run: Path) -> None:
    ideas = IdeationOutput.model_validate(_stored(open_run, "hypotheses.json"))
    assert ideas.research == "open"
    chosen = ideas.require_chosen()
    assert chosen.source == "open" and chosen.title == transcript.IDEAS["ideas"][0]["title"]
    assert chosen.method == {"optimizer": "adam", "regularizer": "dropout"} and chosen.prediction == "better"
    assert chosen.effect == 0.05 and chosen.code_change.startswith("Evaluate an exponential moving average")
    assert [(p.name, p.settings, p.code) for p in chosen.parts] == [
        ("adaptive_steps", ["optimizer"], False), ("dropout_noise", ["regularizer"], False),
        ("weight_averaging", [], True), ("width_bonus", [], True),
    ]  # fmt: skip
    assert chosen.mechanism and len(chosen.risks) == 2
    other = ideas.hypotheses[1]  # the template has no schedule: dropped and said, the width kept
    assert other.knobs == {"width": 64} and other.method == {}
    assert any("schedule: not a setting of simulated" in r for r in other.repaired)
    assert ideas.overall[0] > ideas.overall[1]  # the rubric's scores, from the skeptical persona
    assert all(w.abstract for h in ideas.hypotheses for w in h.related[:1])  # novelty is judged on abstracts


def test_each_named_part_is_ablated_and_the_primary_comparison_is_the_ideas_own(open_run: Path) -> None:
    plan = Plan.model_validate(_stored(open_run, "plan.json"))
    names = [c.name for c in plan.conditions]
    assert names == [
        "baseline", "method", "method-without-adaptive_steps", "method-without-dropout_noise", "method@lr=0.003",
    ]  # fmt: skip
    primary = next(c for c in plan.comparisons if c.family == "primary")
    assert (primary.candidate, primary.prediction, primary.effect) == ("code", "better", 0.05)
    # the seeds are sized for the effect the idea predicts, not for one pilot standard deviation
    assert plan.seed_design is not None and plan.seed_design.effect == 0.05
    assert plan.seed_design.effect_source == "the idea's predicted effect"
    results = Results.model_validate_json((open_run / "projects" / "p000" / "results.json").read_text())
    table = results.conditions
    assert {"code", "code-without-weight_averaging", "code-without-width_bonus"} <= set(table)
    assert results.code is not None and results.code.parts == [
        "code-without-weight_averaging: part 'weight_averaging' switched off",
        "code-without-width_bonus: part 'width_bonus' switched off",
    ]  # the code parts are switches, not diff hunks
    # the code node ran with the method's settings (Adam, dropout): the code condition beats the method by the
    # code's own gain, and switching the averaging off costs more than the width bonus
    assert table["code"].metric.mean > table["method"].metric.mean > table["baseline"].metric.mean
    assert table["code-without-weight_averaging"].metric.mean < table["code-without-width_bonus"].metric.mean
    outcome = next(o for o in results.comparisons if o.family == "primary")
    assert outcome.candidate == "code" and outcome.verdict in ("better", "inconclusive")


def test_the_model_asks_for_a_follow_up_and_revises_its_analysis(open_run: Path) -> None:
    results = Results.model_validate_json((open_run / "projects" / "p000" / "results.json").read_text())
    analysis = results.analysis
    assert analysis is not None and analysis.revised and analysis.verdict == "supported"
    assert analysis.finding == transcript.REVISED["finding"]
    [followup] = analysis.followups
    assert (followup.name, followup.status, followup.settings) == ("baseline-lr-check", "ran", {"lr": "0.003"})
    row = results.conditions["followup-baseline-lr-check"]
    assert row.role == "followup" and row.knobs == {"lr": 0.003} and len(row.values) == 2
    assert row.metric.mean < results.conditions["code"].metric.mean  # the confound it rules out
    record = read_run_record(open_run)
    assert record.research == {"open": 1} and record.projects[0].research == "open"
    paper = (open_run / "projects" / "p000" / "paper.md").read_text()
    assert "| followup-baseline-lr-check |" in paper and transcript.DRAFT["discussion"][:40] in paper
    # the setup counts what ran, not only what was planned (reviewers caught "2 conditions" beside 3 reported)
    assert "exploratory follow-up conditions chosen after reading the results (followup-baseline-lr-check)" in paper
    assert f"for {len(results.conditions)} conditions in all" in paper
    assert "| condition followup-baseline-lr-check | lr = 0.003 | follow-up (after the results) |" in paper


READING = {"mean_a": 0.405, "mean_b": 0.372, "better": "B", "difference": -0.033,
           "mechanism": "Weight decay penalises large weights, which reduces overfitting of the small MLP."}  # fmt: skip


@pytest.mark.parametrize(
    ("reply", "passed", "why"),
    [
        (READING, True, "read the table right"),
        ({**READING, "better": "A"}, False, "named 'A' the better condition"),
        ({**READING, "mean_b": 0.38}, False, "means 0.405 and 0.38"),
        ({**READING, "mechanism": "one sentence on why B might differ from A"}, False, "not a sentence about"),
    ],
)
def test_the_capability_check_is_judged_by_arithmetic(tmp_path: Path, reply: dict, passed: bool, why: str) -> None:
    from fars.stages.capability import check_capability

    cfg = LLMConfig(model="scripted/default", cache=False)
    cfg.scripted.outputs = [json.dumps(reply)]
    client = LLMClient(cfg, Ledger(tmp_path / "ledger.sqlite"))
    try:
        check = asyncio.run(check_capability(client))
    finally:
        client.close()
    assert check.passed is passed and why in check.reason, check.reason


def test_a_menu_record_still_reads_as_before() -> None:
    """Hypotheses stored before open research validate as menu ideas."""
    old = HypothesisRecord.model_validate({"title": "t", "statement": "s", "method": {"optimizer": "adam"}})
    assert old.source == "menu" and old.parts == [] and old.prediction is None


def test_an_idea_that_is_code_alone_plans_the_baseline_and_registers_the_code() -> None:
    """The relay run's frontier model proposed symmetrised logits, code with no setting: its plan had only the
    baseline, which a plan used to refuse; the code search's winner is the primary candidate."""
    from experiments.spec import load_template
    from fars.run.contracts import IdeaPart
    from fars.stages.methods import idea_conditions
    from fars.stages.planning import preregistered

    spec = load_template("simulated")
    idea = HypothesisRecord(
        title="t", statement="s", source="open", code_change="symmetrise the logits", prediction="better",
        effect=0.05, parts=[IdeaPart(name="symmetrise", code=True)],
    )  # fmt: skip
    conditions = idea_conditions(spec, idea, {})
    assert [c.name for c in conditions] == ["baseline"]
    plan = Plan.model_construct(template="simulated", design="components", conditions=conditions, seeds=[0, 1],
                                steps=10, comparisons=[])  # fmt: skip
    comparisons = preregistered(plan, None, idea)
    assert [(c.candidate, c.family, c.effect) for c in comparisons] == [("code", "primary", 0.05)]
    fields = {"template": "simulated", "design": "components", "conditions": conditions, "seeds": [0, 1], "steps": 10}
    Plan.model_validate({**fields, "comparisons": comparisons})  # valid: the code is registered
    with pytest.raises(ValueError, match="at least one other condition"):
        Plan.model_validate(fields)


def test_projects_on_one_template_take_the_open_ideas_in_turn(tmp_path: Path) -> None:
    """Temperature 0 gives every project on a template the same ideas: the n-th takes the n-th best."""
    from types import SimpleNamespace

    from fars.run.contracts import LiteratureInfo, ScreeningScore
    from fars.stages.ideation import keep_best

    records = [HypothesisRecord(title=f"idea {i}", statement=f"claim {i}", source="open") for i in range(3)]
    chosen = []
    for skip in range(4):
        output = IdeationOutput(
            hypotheses=records, scores=[ScreeningScore(novelty=3, feasibility=3, clarity=3)] * 3,
            overall=[3.0, 4.0, 3.5], screened=3, novel=3, literature=LiteratureInfo(backend="none"),
            template="simulated", focus="lr",
        )  # fmt: skip
        ctx = SimpleNamespace(save_artifact=lambda *a, **k: None)
        chosen.append(keep_best(ctx, output, [0, 1, 2], [0, 1, 2], {}, 1.5, skip).require_chosen().title)  # type: ignore[arg-type]
    assert chosen == ["idea 1", "idea 2", "idea 0", "idea 1"]


def test_open_ideas_are_proposed_against_the_budget_and_the_baselines_pilot(open_run: Path) -> None:
    """The relay's models sized effects without the step budget or the baseline's score: open ideation now runs
    the pilot first (Planning reads the same runs back) and shows the budget, the spread and the curve."""
    from experiments.spec import load_template
    from fars.stages.open_research import ideas_prompt
    from fars.stages.planning import pilot_lines

    plan = Plan.model_validate(_stored(open_run, "plan.json"))
    pilot = plan.pilot
    assert pilot is not None and pilot.mean is not None and len(pilot.curve) >= 2
    assert [step for step, _ in pilot.curve] == sorted(step for step, _ in pilot.curve)
    made = sorted(p.name for p in (open_run / "projects" / "p000" / "runs").iterdir() if p.name.startswith("base"))
    assert made == ["baseline-seed0", "baseline-seed1"]  # run once, in ideation, and reused by the plan
    text = ideas_prompt("area", load_template("simulated"), [], 2, "Budget: every condition trains for 200 steps.\n")
    assert "Budget: every condition trains for 200 steps." in text[1]["content"]
    assert pilot_lines(pilot).startswith("Pilot: the baseline over 2 seeds at 200 steps")


def test_a_sentence_that_fails_a_check_goes_back_to_the_model_and_its_rewrite_stands_where_it_passes(
    open_run: Path,
) -> None:
    """The relay runs' papers spliced the harness's sentences into the model's argument where a check failed. In
    open research the model rewrites a failing sentence in place; a rewrite that still fails (the discussion's
    0.99, kept) is the harness's to repair, and what the model first wrote is what "before" measures."""
    grounding = json.loads((open_run / "projects" / "p000" / "grounding.json").read_text())
    paper = (open_run / "projects" / "p000" / "paper.md").read_text()
    rewritten = [r for r in grounding["repairs"] if "rewritten by the model" in r]
    assert len(rewritten) == 1 and rewritten[0].startswith("abstract: "), grounding["repairs"]
    abstract = paper.split("## Abstract", 1)[1].split("\n## ", 1)[0]
    assert "the combined method's difference from the baseline is inconclusive" in abstract.lower()
    assert "the ablations attribute most of the gain" not in paper  # the failing sentence is gone, not kept
    assert (
        "reached 0.99 in every" not in paper
        and "near 0.99" not in paper
        and any(r.startswith("discussion: ") for r in grounding["repairs"])
    )
    assert grounding["before"]["numbers_ungrounded"] >= 1  # the draft's 0.99, measured before any repair


def test_the_model_writes_the_related_work_from_the_works_abstracts_and_cites_only_what_bears(open_run: Path) -> None:
    """Every relay reviewer read the harness's related-work sentence ("found in a corpus of ...", "None of the
    retrieved works states ...") as bookkeeping. In open research the model places the study among the listed
    works, shown their abstracts; a listed work it leaves uncited is not left in the references."""
    paper = (open_run / "projects" / "p000" / "paper.md").read_text()
    related = paper.split("## Related Work", 1)[1].split("\n## ", 1)[0]
    assert related.strip().startswith("Lookaround [1] averages the weights") and "[3]" in related
    references = paper.split("## References", 1)[1].split("\n## ", 1)[0]
    assert "Lookaround Optimizer" in references and "Autonomous Reinforcement Learning" not in references
    assert "[4]" not in references
    # the model's own search queries found works its statement's words did not
    chosen = IdeationOutput.model_validate(_stored(open_run, "hypotheses.json")).require_chosen()
    assert chosen.searches == ["stochastic weight averaging flat minima", "Adam dropout generalization"]
    assert any(r.title.startswith("Stochastic Weight Averaging in Parallel") for r in chosen.related)
    for bookkeeping in ("corpus", "retrieved", "found in", "similarity"):
        assert bookkeeping not in related
    # a sentence on other work is not read as a claim about ours ("degrades", "method"), so it is kept whole
    assert "performance degrades without resets, a setting unlike ours" in related


def test_each_ablation_is_tested_against_the_condition_it_removes_a_part_from(open_run: Path) -> None:
    """Every reviewer of the relay runs asked for the ablations against the full method, not the baseline: each
    is registered against its parent (settings parts against method, code parts against code), the table keeps
    its difference from the baseline as description, and the results give what each part contributes."""
    results = Results.model_validate(_stored(open_run, "results.json"))
    against = {o.candidate: o.reference for o in results.comparisons}
    assert against["method-without-adaptive_steps"] == "method" and against["code-without-weight_averaging"] == "code"
    assert against["code"] == "baseline"
    row = results.conditions["code-without-weight_averaging"]
    assert row.registered_against == "code" and row.test and "its registered test is against code" in row.test
    paper = (open_run / "projects" / "p000" / "paper.md").read_text()
    found = paper.split("## Results", 1)[1].split("\n## ", 1)[0]
    assert "Against code itself, removing weight_averaging (condition code-without-weight_averaging) changed" in found
    assert "each ablation (" in found and "exploratory (not in the plan) conditions (code-without" not in found
    appendix = paper.split("## Appendix: The winning code", 1)[1]
    assert (
        "weight_averaging (evaluate the EMA of the weights; switched off in code-without-weight_averaging)" in appendix
    )
    row = next(line for line in found.splitlines() if line.startswith("| code-without-weight_averaging |"))
    assert (
        "| ablation of code |" in row and "(vs code)" in row and row.endswith("no significant difference (vs code) |")
    )
