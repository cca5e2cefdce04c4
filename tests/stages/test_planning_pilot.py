"""Planning's pilot and power analysis on the simulated template: the baseline runs first, its spread sizes the
seeds, the comparisons are pre-registered, and a cap that binds is stated as the smallest detectable effect."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from experiments.spec import load_template
from fars.commands.configured import UsageError
from fars.evaluation.design import t_interval
from fars.paper.prose import reader_words
from fars.run.contracts import ExperimentOutput, HypothesisRecord, IdeationOutput, LiteratureInfo, Plan, PlanningOutput
from fars.stages.planning import design_prompt, pilot_lines
from tests.conftest import compose, run_stage, services_for, stage_context

DRAFT = json.dumps(json.dumps({"knob": "lr", "values": ["0.003"], "rationale": "because"}))
# simulated: accuracy = formula(settings) + N(0, 0.01) per seed; adam adds 0.02, dropout 0.01
FAST = ["llm=scripted", "tracker=disabled", "experiment.steps=5", f"llm.scripted.outputs=[{DRAFT}]"]


def simulated_idea() -> IdeationOutput:
    chosen = HypothesisRecord(
        title="adam and dropout",
        statement="Adam with dropout helps.",
        method={"optimizer": "adam", "regularizer": "dropout"},
    )
    return IdeationOutput(
        hypotheses=[chosen], scores=[], overall=[], screened=1, novel=1, literature=LiteratureInfo(backend="offline"),
        template="simulated", focus="lr", chosen=chosen,
    )  # fmt: skip


def planned(tmp_path: Path, *overrides: str) -> Plan:
    cfg = compose(*FAST, *overrides)
    services = services_for(cfg, tmp_path, runner=True)
    output = run_stage("planning", cfg, stage_context(services, "planning", [simulated_idea()]), services)
    assert isinstance(output, PlanningOutput)
    return output.plan


def test_the_pilot_runs_the_baseline_first_and_its_spread_sizes_the_seeds(tmp_path: Path) -> None:
    plan = planned(tmp_path, "experiment.seeds=20", "experiment.pilot_seeds=5", "experiment.effect=0.03")
    pilot, chosen = plan.pilot, plan.seed_design
    assert pilot is not None and chosen is not None
    # the pilot may change the seeds: it runs on seeds of its own, after the 20 the plan may take, so the
    # baseline's test never reuses the runs that chose its size
    assert pilot.seeds == [20, 21, 22, 23, 24] and pilot.steps == 5 and len(pilot.values) == 5 and not pilot.reused
    assert 0 < pilot.sd < 0.05 and not pilot.failures  # the template's seed noise is 0.01
    for seed in pilot.seeds:
        assert (tmp_path / "projects" / "p000" / "pilot" / f"baseline-seed{seed}" / "metrics.json").is_file()
    assert not (tmp_path / "projects" / "p000" / "runs").exists()
    assert chosen.method == "power" and chosen.family == "primary" and chosen.sides == "greater"
    assert chosen.alpha == 0.05  # the primary comparison alone in its family: not corrected for the ablations
    assert not chosen.capped and chosen.power is not None and chosen.power >= 0.8
    assert plan.seeds == list(range(chosen.seeds)) and chosen.seeds >= 2
    assert f"{chosen.seeds} seeds per condition give" in chosen.reason
    stored = Plan.model_validate_json((tmp_path / "projects" / "p000" / "plan.json").read_text())
    assert stored.pilot == pilot and stored.seed_design == chosen


def test_a_pilot_that_cannot_change_the_seeds_is_the_experiments_baseline(tmp_path: Path) -> None:
    """experiment.seeds=2 with a 3-seed pilot: 2 seeds whatever the spread, so the pilot runs the baseline's
    two seeds in the Experiment stage's folders and costs no extra run; the spread still says what 2 detect."""
    plan = planned(tmp_path, "experiment.seeds=2", "experiment.pilot_seeds=3")
    assert plan.pilot is not None and plan.pilot.reused and plan.pilot.seeds == [0, 1] and plan.seeds == [0, 1]
    for seed in plan.seeds:
        assert (tmp_path / "projects" / "p000" / "runs" / f"baseline-seed{seed}" / "metrics.json").is_file()
    chosen = plan.seed_design
    assert chosen is not None and chosen.capped and chosen.seeds == 2 and chosen.detectable is not None


def test_the_primary_comparison_is_registered_apart_from_the_ablations(tmp_path: Path) -> None:
    plan = planned(tmp_path, "experiment.seeds=4")
    families = {c.name: (c.family, c.prediction) for c in plan.comparisons}
    assert families == {
        "method vs baseline": ("primary", "better"),
        "method-without-optimizer vs method": ("secondary", "different"),  # what the part adds to the method
        "method-without-regularizer vs method": ("secondary", "different"),
    }
    assert {c.reference for c in plan.comparisons if c.family == "secondary"} == {"method"}
    assert plan.seed_design is not None and plan.seed_design.effect_source.startswith("1 pilot standard deviation")
    # the plan names the config key for its user; the paper says what it means
    read = reader_words(plan.seed_design.reason)
    assert "experiment.effect_sds" in plan.seed_design.reason and "experiment." not in read
    assert "1 pilot standard deviation(s), the smallest effect of interest)" in read


def test_a_cap_that_binds_states_the_smallest_detectable_effect(tmp_path: Path) -> None:
    """0.001 against a spread of 0.01 needs hundreds of seeds: the plan runs 4 and says what 4 can detect."""
    plan = planned(tmp_path, "experiment.seeds=4", "experiment.pilot_seeds=3", "experiment.effect=0.001")
    chosen = plan.seed_design
    assert chosen is not None and chosen.capped and chosen.seeds == 4 and plan.seeds == [0, 1, 2, 3]
    assert chosen.power is not None and chosen.power < 0.8
    assert chosen.detectable is not None and chosen.detectable > 0.001
    assert f"the smallest effect they detect with 80% power is {chosen.detectable:.3g}" in chosen.reason
    assert "experiment.seeds caps them at 4" in chosen.reason
    assert "the study's seed budget caps them at 4" in reader_words(chosen.reason)
    assert "(the smallest effect of interest set for this study)" in reader_words(chosen.reason)


def test_a_job_time_budget_caps_the_seeds_too(tmp_path: Path) -> None:
    plan = planned(
        tmp_path, "experiment.seeds=20", "experiment.pilot_seeds=2", "experiment.effect=0.001",
        "experiment.plan_budget_s=0.001",
    )  # fmt: skip
    chosen = plan.seed_design
    assert chosen is not None and chosen.capped and chosen.cap == 1 and chosen.seeds == 2  # the pilot's 2 stay
    assert "experiment.plan_budget_s=0.001" in chosen.reason
    read = reader_words(chosen.reason)
    assert "experiment." not in read and "the study's compute budget (at " in read


def test_without_a_pilot_the_configured_seeds_stand(tmp_path: Path) -> None:
    plan = planned(tmp_path, "experiment.seeds=3", "experiment.pilot_seeds=0")
    assert plan.pilot is None and plan.seeds == [0, 1, 2]
    assert plan.seed_design is not None and plan.seed_design.method == "fixed"
    assert plan.seed_design.reason == "3 seeds (experiment.seeds): no pilot ran"
    assert [c.family for c in plan.comparisons] == ["primary", "secondary", "secondary"]


def test_the_model_sees_the_pilot(tmp_path: Path) -> None:
    plan = planned(tmp_path, "experiment.seeds=3")
    assert plan.pilot is not None
    text = pilot_lines(plan.pilot)
    assert text.startswith(f"Pilot: the baseline over 3 seeds at 5 steps scored {plan.pilot.mean:.4g}")
    assert "of its improvement came in the last fifth of training" in text
    idea = simulated_idea()
    assert idea.chosen is not None
    prompt = design_prompt(load_template("simulated"), idea.chosen, {"optimizer": "adam"}, "lr", 2, plan.pilot)
    assert text in prompt[1]["content"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("experiment.pilot_seeds=1", "experiment.pilot_seeds=1 measures no seed-to-seed spread"),
        ("experiment.power=1.5", "experiment.power: Input should be less than 1"),
        ("experiment.effect=0", "experiment.effect: Input should be greater than 0"),
    ],
)
def test_a_bad_design_setting_is_refused_with_the_field_named(override: str, message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        compose(override)


def test_the_experiment_stage_reuses_the_pilots_baseline_runs(tmp_path: Path) -> None:
    """A reused pilot costs no run: the Experiment stage finds the baseline's seeds finished in its folders."""
    cfg = compose(*FAST, "experiment.seeds=2", "experiment.pilot_seeds=2", "experiment.figures=false")
    services = services_for(cfg, tmp_path, runner=True)
    idea = simulated_idea()
    planning = run_stage("planning", cfg, stage_context(services, "planning", [idea]), services)
    assert isinstance(planning, PlanningOutput) and planning.plan.pilot is not None and planning.plan.pilot.reused
    runs = tmp_path / "projects" / "p000" / "runs"
    written = {p: p.stat().st_mtime_ns for p in runs.glob("baseline-seed*/metrics.json")}
    assert len(written) == 2
    services = services_for(cfg, tmp_path, runner=True)
    ctx = stage_context(services, "experiment", [idea, planning])
    results = run_stage("experiment", cfg, ctx, services)
    assert isinstance(results, ExperimentOutput)
    assert results.results.conditions["baseline"].values == planning.plan.pilot.values
    assert {p: p.stat().st_mtime_ns for p in runs.glob("baseline-seed*/metrics.json")} == written
    # the plan's pre-registered comparisons are judged as registered, each condition's interval is Student-t
    table = results.results.conditions
    judged = {c.name: c for c in results.results.comparisons}
    assert [c.name for c in planning.plan.comparisons] == list(judged)
    (primary,) = [c for c in results.results.comparisons if c.family == "primary"]
    assert primary.candidate in table and primary.n == (2, 2) and primary.ci_low is not None
    assert primary.verdict in ("better", "worse", "equivalent", "no significant difference", "inconclusive")
    for row in table.values():  # Student-t, cut to an accuracy's range [0, 1]
        interval = t_interval(row.values)
        assert (row.ci_low, row.ci_high) == pytest.approx((max(0.0, interval.low), min(1.0, interval.high)))


def test_a_detectable_effect_wider_than_the_metrics_range_is_said_so() -> None:
    """The relay run's plan quoted 'smallest detectable effect 6.57' for an accuracy; its reviewers called the unit-
    less number broken. Beyond the metric's whole range, the plan says no difference it can show is detectable."""
    from fars.evaluation.design import SeedPlan
    from fars.run.contracts import Pilot
    from fars.stages.planning import beyond_range

    pilot = Pilot(seeds=[0, 1], steps=300, values=[0.98, 0.0115], mean=0.496, sd=0.685)
    plan = SeedPlan(seeds=2, needed=86, power=0.156, capped=True, detectable=6.57, effect=0.1, sd=0.685,
                    alpha=0.05, wanted_power=0.8)  # fmt: skip
    assert "more than the metric's whole range (0 to 1)" in beyond_range(plan, pilot)
    assert beyond_range(dataclasses.replace(plan, detectable=0.4), pilot) == ""  # within the range: the number says it
    loss = pilot.model_copy(update={"values": [2.5, 3.1]})  # a loss: no upper end, so any width may be shown
    assert beyond_range(plan, loss) == ""
