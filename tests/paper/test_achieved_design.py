"""The results say what the seeds run could detect at the spread the baseline showed, beside what the plan
assumed from its pilot (a reviewer of the third relay run computed the shortfall himself)."""

from __future__ import annotations

from fars.evaluation import design
from fars.paper.grounding import Numbers
from fars.run.contracts import Condition, Plan, SeedDesign
from fars.stages.writing import achieved_design
from tests.paper.test_document import RESULTS


def plan_with(seed_design: SeedDesign | None) -> Plan:
    conditions = [Condition(name="baseline", role="baseline"), Condition(name="method", role="method")]
    return Plan(
        template="modadd", design="components", conditions=conditions, seeds=[0, 1], steps=30, seed_design=seed_design
    )


def powered(sd: float, effect: float = 0.25) -> SeedDesign:
    return SeedDesign(
        method="power", seeds=2, cap=20, alpha=0.05, sides="greater", wanted_power=0.8, effect=effect, sd=sd,
        power=0.85, reason="2 seeds per condition give 85% power",
    )  # fmt: skip


def test_a_pilot_that_saw_less_spread_than_the_baseline_is_said_with_the_power_the_study_had() -> None:
    numbers = Numbers()
    text = numbers.plain(achieved_design(plan_with(powered(sd=0.02)), RESULTS, numbers))
    power = design.power_of(0.25, 0.1, 2, 0.05, "greater")  # the baseline's sd 0.1 over its 2 seeds
    assert power < 0.8
    assert "sized on the pilot's seed-to-seed sd of 0.02; the baseline's own runs gave 0.1" in text
    assert f"had {100 * power:.0f}% power for the effect it was sized for (0.25)" in text
    assert "less power than planned" in text
    mde = design.detectable_effect(0.1, 2, 0.05, 0.8, "greater")
    assert f"detect with 80% power is {mde:.3g}" in text
    assert "plan.seed_design#achieved_power" in {path for _, path in numbers.entries}


def test_a_pilot_that_matched_the_baseline_is_no_shortfall_and_a_fixed_design_says_nothing() -> None:
    numbers = Numbers()
    text = numbers.plain(achieved_design(plan_with(powered(sd=0.1, effect=1.0)), RESULTS, numbers))
    assert "the baseline's own runs gave 0.1" in text and "less power than planned" not in text
    fixed = SeedDesign(method="fixed", seeds=2, cap=2)
    assert achieved_design(plan_with(fixed), RESULTS, Numbers()) == ""
    assert achieved_design(plan_with(None), RESULTS, Numbers()) == ""


def test_a_baseline_without_spread_says_nothing() -> None:
    results = RESULTS.model_copy(deep=True)
    results.conditions["baseline"].metric.std = 0.0
    assert achieved_design(plan_with(powered(sd=0.02)), results, Numbers()) == ""


def test_a_shortfall_without_null_results_weakens_nothing_and_the_setup_gives_each_models_size() -> None:
    results = RESULTS.model_copy(deep=True)
    results.conditions["method-without-schedule"].verdict = "better"
    numbers = Numbers()
    text = numbers.plain(achieved_design(plan_with(powered(sd=0.02)), results, numbers))
    assert text.endswith("so the study had less power than planned.")
    # every reviewer of the relay runs' CNN-vs-MLP papers asked how large each model was
    from experiments.spec import load_template
    from fars.paper.prose import setup_table

    results.conditions["baseline"].parameters = 8970
    results.conditions["method"].parameters = 29034
    numbers = Numbers()
    table = setup_table(plan_with(None), load_template("modadd"), numbers, results)
    [row] = [r for r in table.rows if r[0] == "trainable parameters"]
    assert numbers.plain(row[1]) == "baseline: 8,970; method: 29,034" and row[2] == "per condition (measured)"


def test_power_above_the_plans_at_a_larger_spread_says_why() -> None:
    """Both reviewers of a relay run asked how power rose from the plan's 82% at sd 0.00278 to 86% at 0.00421:
    the plan's figure is averaged over the pilot sd's uncertainty. The results say so where the seen power is
    higher; where it is lower there is nothing to explain."""
    numbers = Numbers()
    text = numbers.plain(achieved_design(plan_with(powered(sd=0.1, effect=1.0)), RESULTS, numbers))
    assert design.power_of(1.0, 0.1, 2, 0.05, "greater") > 0.85
    assert "(The planned 85% is averaged over the uncertainty of the pilot's sd estimate" in text
    other = Numbers()
    lower = other.plain(achieved_design(plan_with(powered(sd=0.02)), RESULTS, other))
    assert "is averaged over the uncertainty" not in lower


def test_a_floored_sd_is_not_called_the_pilots_spread() -> None:
    """Two answerers of a relay run read 'the pilot's sd of 0.00278' beside the pilot's own 0.0016 as a
    contradiction: where the pilot's seeds agreed exactly the sd was a floor, and the sentence says so."""
    from fars.run.contracts import Pilot

    plan = plan_with(powered(sd=0.02))
    plan.pilot = Pilot(seeds=[7, 8, 9], steps=30, values=[0.5, 0.5, 0.5], mean=0.5, sd=0.02, sd_floored=True)
    numbers = Numbers()
    text = numbers.plain(achieved_design(plan, RESULTS, numbers))
    assert (
        "sized on a seed-to-seed sd floored at the metric's resolution (the pilot's 3 seeds gave identical values) of "
        "0.02" in text
    )
    assert "the pilot's seed-to-seed sd" not in text
    # the fifth relay run's pilot, 0.975, 0.978 and 0.978 on an accuracy of 1/360 steps, was called "agreed exactly"
    plan.pilot = Pilot(seeds=[7, 8, 9], steps=30, values=[0.975, 0.97778, 0.97778], mean=0.9769, sd=0.00278,
                       sd_floored=True)  # fmt: skip
    numbers = Numbers()
    text = numbers.plain(achieved_design(plan, RESULTS, numbers))
    assert "(the pilot's 3 seeds spread by less than one step of it (sd 0.0016))" in text, text
    assert "agreed exactly" not in text and "identical" not in text


def test_the_power_seen_uses_both_arms_spread_and_an_equivalence_design_speaks_of_its_margin() -> None:
    """Relay reviewers named the power 'computed from the baseline's sd only' (the method's runs spread 1.5 times
    as wide), and asked how a design sized for a one-sided 1-sd effect powered a TOST with margin 0.004."""
    results = RESULTS.model_copy(deep=True)
    method = results.conditions["method"]
    method.family, method.metric.std = "primary", 0.3
    base = results.conditions["baseline"].metric
    numbers = Numbers()
    text = numbers.plain(achieved_design(plan_with(powered(sd=0.02)), results, numbers))
    pooled = ((base.std**2 + 0.3**2) / 2) ** 0.5
    assert f"the runs of the baseline and method gave a pooled sd of {pooled:.3g}" in text, text
    power = design.power_of(0.25, pooled, min(base.n, method.metric.n), 0.05, "greater")
    assert f"had {100 * power:.0f}% power for the effect it was sized for (0.25)" in text
    tost = powered(sd=0.02, effect=0.5).model_copy(update={"sides": "equivalence"})
    numbers = Numbers()
    text = numbers.plain(achieved_design(plan_with(tost), results, numbers))
    power = design.power_of(0.5, pooled, min(base.n, method.metric.n), 0.05, "equivalence")
    assert (
        f"had {100 * power:.0f}% power to show equivalence within its margin (0.5) were the true difference zero"
        in text
    )
    assert "the smallest margin they show equivalence within with 80% power is" in text, text


def test_the_setup_table_leaves_out_a_knob_no_condition_used() -> None:
    """The fifth relay run's reviewers read Table 1's 'dropout 0.3' and 'label_smoothing 0.1' under 'regularizer:
    none' as settings of the study: a knob that acts only under options no condition took is left out, and one
    that acts in some conditions says under which."""
    from experiments.spec import TemplateError, load_template
    from fars.paper.prose import setup_table

    spec = load_template("digits")
    cnn = Condition(name="method", role="method", components={"architecture": "cnn", "augmentation": "shift"})
    plan = Plan(template="digits", design="components", conditions=[Condition(name="baseline", role="baseline"), cnn],
                seeds=[0, 1], steps=30)  # fmt: skip
    rows = {r[0]: r for r in setup_table(plan, spec, Numbers()).rows}
    assert {"lr", "batch_size", "width", "train_fraction"} <= set(rows)
    assert not {"dropout", "label_smoothing", "weight_decay", "noise_std"} & set(rows)
    dropped = Condition(name="method", role="method", components={"regularizer": "dropout"})
    plan = plan.model_copy(update={"conditions": [plan.conditions[0], dropped]})
    rows = {r[0]: r for r in setup_table(plan, spec, Numbers()).rows}
    assert rows["dropout"][2] == "template default (acts with regularizer dropout)" and "label_smoothing" not in rows
    from experiments.spec import read_spec_data, spec_from_dict, template_folders

    folder = template_folders()["digits"]
    raw = read_spec_data(folder)
    raw["knobs"] = [
        {**k, "used_with": {"regularizer": ["drop"]}} if k["name"] == "dropout" else k for k in raw["knobs"]
    ]
    try:
        spec_from_dict(raw, folder)
    except TemplateError as exc:
        assert "knob 'dropout': used_with names ['drop'], which are not options of 'regularizer'" in str(exc)
    else:
        raise AssertionError("a used_with option the component lacks must be refused")


def test_a_figure_caption_names_holm_only_where_a_family_has_several_members() -> None:
    """A relay paper's Figure 1 caption named Holm's correction with one comparison in the figure."""
    from fars.paper.figures import _by_test

    results = RESULTS.model_copy(deep=True)
    rows = results.conditions
    for row in rows.values():
        row.family = None
    alone = {"baseline": rows["baseline"], "method": rows["method"]}
    assert _by_test(alone) == "by a two-sided Welch t-test"
    rows["method"].family = "primary"
    assert "Holm" not in _by_test(alone)
    follow = rows["method-without-schedule"]
    follow.family = "exploratory"
    one = {**alone, "followup": follow}
    assert "Holm" not in _by_test(one) and "each other one uncorrected" in _by_test(one)
    two = {**one, "followup2": follow.model_copy()}
    assert "the others with Holm's correction within their family" in _by_test(two)


def test_a_figure_caption_says_an_ablations_mark_is_its_descriptive_test() -> None:
    """A relay figure marked an ablation "better" (its descriptive test against the baseline) beside the table's
    "worse (vs method)" (its registered test against what it ablates)."""
    from fars.paper.figures import _by_test

    rows = RESULTS.model_copy(deep=True).conditions
    rows["method"].family = "primary"
    rows["method-without-schedule"].family, rows["method-without-schedule"].registered_against = "exploratory", "method"
    said = _by_test(rows)
    assert said.startswith("by the pre-registered primary test the results table names")
    assert "an ablation's mark is its uncorrected, descriptive test against the baseline" in said
