"""Verdicts of pre-registered comparisons: the primary family apart, Holm within the secondary one, TOST for
equivalence, Student-t intervals at small n, and the inconclusive verdict."""

from __future__ import annotations

import statistics

import pytest
from scipy import stats

from fars.evaluation.preregistered import judge
from fars.evaluation.stats import holm
from fars.paper.document import results_table
from fars.paper.grounding import Numbers
from fars.paper.prose import findings, verdict_words
from fars.run.contracts import Comparison, ConditionResult, EngineInfo, HypothesisRecord, Results, Stat
from fars.stages.experiment import adopt_registered
from fars.stages.open_research import results_text

BASE = [0.500, 0.510, 0.490, 0.505, 0.495]


def primary(candidate: str = "method", **kwargs: object) -> Comparison:
    fields: dict[str, object] = {"name": f"{candidate} vs baseline", "candidate": candidate, **kwargs}
    return Comparison.model_validate({**fields, "family": "primary"})


def secondary(candidate: str, **kwargs: object) -> Comparison:
    fields: dict[str, object] = {"name": f"{candidate} vs baseline", "candidate": candidate, "prediction": "different"}
    return Comparison.model_validate({**fields, **kwargs, "family": "secondary"})


def test_the_primary_is_not_corrected_for_the_secondary_family_which_holm_corrects_within_itself() -> None:
    values = {
        "baseline": BASE,
        "method": [0.515, 0.525, 0.505, 0.520, 0.510],  # +0.015: one-sided p about 0.01
        "a": [0.515, 0.525, 0.505, 0.520, 0.510],
        "b": [0.512, 0.522, 0.502, 0.517, 0.507],
        "c": [0.514, 0.524, 0.504, 0.519, 0.509],
    }
    comparisons = [primary(), secondary("a"), secondary("b"), secondary("c")]
    out = {o.name: o for o in judge(values, comparisons, alpha=0.05, higher_is_better=True)}
    main = out["method vs baseline"]
    one_sided = stats.ttest_ind(values["method"], BASE, equal_var=False, alternative="greater").pvalue
    assert main.p_value == pytest.approx(one_sided) and main.p_adjusted == pytest.approx(one_sided)
    assert main.p_value is not None and main.p_value < 0.05 and main.verdict == "better"
    raw = {n: stats.ttest_ind(values[n], BASE, equal_var=False).pvalue for n in "abc"}  # two-sided: undirected
    adjusted = holm({n: float(p) for n, p in raw.items()})
    for name in "abc":
        assert out[f"{name} vs baseline"].p_value == pytest.approx(raw[name])
        assert out[f"{name} vs baseline"].p_adjusted == pytest.approx(adjusted[name])
    assert (out["a vs baseline"].p_value or 1) < 0.05 < (out["a vs baseline"].p_adjusted or 0)  # Holm took it away
    assert all(out[f"{n} vs baseline"].verdict != "better" for n in "bc")


def test_the_difference_interval_is_welchs_student_t_at_two_seeds() -> None:
    values = {"baseline": [0.50, 0.52], "method": [0.56, 0.60]}
    (out,) = judge(values, [primary(effect=0.05)], alpha=0.05, higher_is_better=True)
    theirs = stats.ttest_ind(values["method"], values["baseline"], equal_var=False).confidence_interval(0.95)
    assert (out.ci_low, out.ci_high) == pytest.approx((theirs.low, theirs.high))
    assert out.difference == pytest.approx(0.07) and out.n == (2, 2)
    assert out.ci_high is not None and out.ci_low is not None
    assert out.ci_high - out.ci_low > 0.2  # two seeds say little: wide, never a zero-width bootstrap interval


def test_an_interval_spanning_zero_and_the_predicted_effect_is_inconclusive() -> None:
    values = {"baseline": [0.50, 0.60], "method": [0.55, 0.70]}
    (out,) = judge(values, [primary(effect=0.1)], alpha=0.05, higher_is_better=True)
    assert out.ci_low is not None and out.ci_high is not None and out.ci_low < 0 < 0.1 < out.ci_high
    assert out.verdict == "inconclusive"
    tight = {"baseline": BASE, "method": [b + 0.001 for b in BASE]}
    (ruled_out,) = judge(tight, [primary(effect=0.1)], alpha=0.05, higher_is_better=True)
    assert ruled_out.verdict == "no significant difference"  # the interval excludes +0.1: smaller, if any


def test_a_result_against_the_predicted_direction_needs_the_two_sided_test() -> None:
    values = {"baseline": BASE, "method": [b - 0.03 for b in BASE]}
    (out,) = judge(values, [primary()], alpha=0.05, higher_is_better=True)
    two_sided = stats.ttest_ind(values["method"], BASE, equal_var=False).pvalue
    assert out.p_value == pytest.approx(two_sided) and out.verdict == "worse"


def test_lower_is_better_turns_the_direction() -> None:
    values = {"baseline": [3.70, 3.72, 3.71, 3.69], "method": [3.60, 3.62, 3.61, 3.59]}  # a loss that fell
    (out,) = judge(values, [primary()], alpha=0.05, higher_is_better=False)
    assert out.difference is not None and out.difference < 0 and out.verdict == "better"


def test_an_equivalence_prediction_is_judged_by_tost_against_its_margin() -> None:
    values = {"baseline": BASE, "same": [b + 0.001 for b in BASE], "far": [b + 0.05 for b in BASE]}
    comparisons = [
        secondary("same", prediction="equivalent", margin=0.02),
        secondary("far", prediction="equivalent", margin=0.02),
    ]
    same, far = judge(values, comparisons, alpha=0.05, higher_is_better=True)
    assert same.tost_p is not None and same.p_value == same.tost_p and same.verdict == "equivalent"
    assert same.p_adjusted == pytest.approx(holm({"same": same.tost_p, "far": far.tost_p})["same"])
    assert far.verdict == "better"  # the whole interval lies beyond the margin: not equivalent, better
    wide = {"baseline": [0.50, 0.60], "same": [0.52, 0.61]}
    (unsure,) = judge(
        wide, [secondary("same", prediction="equivalent", margin=0.02)], alpha=0.05, higher_is_better=True
    )
    assert unsure.verdict == "inconclusive"  # two noisy seeds cannot show equivalence


def test_a_condition_with_one_seed_is_inconclusive_and_untested() -> None:
    (out,) = judge({"baseline": BASE, "method": [0.9]}, [primary()], alpha=0.05, higher_is_better=True)
    assert out.verdict == "inconclusive" and out.p_value is None and out.difference is None and out.n == (1, 5)


def test_an_equivalence_prediction_without_a_margin_is_refused() -> None:
    with pytest.raises(ValueError, match="predicts equivalence: it needs a margin"):
        secondary("x", prediction="equivalent")


def _row(values: list[float], role: str = "method", base: list[float] | None = None) -> ConditionResult:
    mean = statistics.fmean(values)
    row = ConditionResult(
        role=role,  # type: ignore[arg-type]
        metric=Stat(mean=mean, std=statistics.stdev(values), n=len(values)),
        seeds=list(range(len(values))),
        values=values,
    )
    if base is not None:
        row.difference = mean - statistics.fmean(base)
    return row


def test_the_table_prose_and_model_read_the_registered_test_and_follow_ups_join_no_confirmatory_family() -> None:
    # the relay run's CartPole study: 2 seeds, method far above baseline, one follow-up; the table had
    # Holm-corrected the primary with the follow-up (0.085 -> 0.17, 'no significant difference') while the
    # registered one-sided primary said 'better' (p 0.043): the paper and the model read two answers
    base, method, follow = [118.1, 146.9], [500.0, 396.0], [147.7, 467.9]
    table = {"baseline": _row(base, "baseline"), "method": _row(method, base=base)}
    table["followup-lower-lr"] = _row(follow, "followup", base)
    outcomes = judge(
        {n: r.values for n, r in table.items()}, [primary(prediction="better")], alpha=0.05, higher_is_better=True
    )
    adopt_registered(table, outcomes, 0.05, True)
    main, extra = table["method"], table["followup-lower-lr"]
    one_sided = float(stats.ttest_ind(method, base, equal_var=False, alternative="greater").pvalue)
    assert main.family == "primary" and main.p_vs_baseline == pytest.approx(one_sided) == main.p_adjusted
    assert one_sided < 0.05 and main.verdict == outcomes[0].verdict == "better"
    assert main.test is not None and main.test.startswith("one-sided")
    two_sided = float(stats.ttest_ind(follow, base, equal_var=False).pvalue)
    assert extra.family == "exploratory" and extra.p_adjusted == pytest.approx(two_sided)  # a family of one
    assert extra.verdict == "no significant difference"
    # more follow-ups change nothing of the primary's test
    table["followup-b"] = _row([150.0, 160.0], "followup", base)
    adopt_registered(table, outcomes, 0.05, True)
    assert table["method"].p_adjusted == pytest.approx(one_sided) and table["method"].verdict == "better"
    p_b = float(stats.ttest_ind([150.0, 160.0], base, equal_var=False).pvalue)
    expected = holm({"followup-lower-lr": two_sided, "followup-b": p_b})["followup-lower-lr"]
    assert expected != pytest.approx(two_sided) and table["followup-lower-lr"].p_adjusted == pytest.approx(expected)
    results = Results(
        template="cartpole",
        metric="eval_return",
        higher_is_better=True,
        knob="lr",
        steps=40,
        alpha=0.05,
        conditions=table,
        best="method",
        engine=EngineInfo(name="plain", parameters=4610),
    )
    numbers = Numbers()
    said = numbers.plain(findings(results, numbers))
    assert "one-sided Welch p = 0.0" in said
    # the other conditions' numbers are the table's; the prose gives their verdicts
    assert "Holm-adjusted p" not in said and "of the other conditions, followup-lower-lr" in said
    assert "pre-registered primary comparison (method against the baseline) is tested alone" in said
    assert "2 exploratory (not in the plan) conditions (followup-lower-lr, followup-b)" in said
    assert "corrected for 3 comparisons" not in said
    numbers = Numbers()
    shown = results_table(results, numbers)
    assert shown.header[6] == "p (adj.)" and numbers.plain(shown.rows[1][6]).endswith("(primary)")
    assert (
        numbers.plain(shown.rows[2][6]).endswith("(exploratory)")
        and "pre-registered primary (one-sided" in shown.caption
    )
    # the caption names the families the table has: no secondary family here, and none but the primary below
    assert "exploratory conditions (not in the plan) two-sided" in shown.caption and "secondary" not in shown.caption
    two = results.model_copy(update={"conditions": {k: table[k] for k in ("baseline", "method")}})
    caption = results_table(two, Numbers()).caption
    assert "primary (one-sided" in caption and "exploratory" not in caption and "secondary" not in caption
    results.comparisons = outcomes
    text = results_text(results, HypothesisRecord.model_validate({"statement": "s", "title": "t"}))
    assert "pre-registered primary, uncorrected" in text and "-> verdict better" in text
    assert "exploratory, Holm within the exploratory family" in text and "can pass while" in text


def test_a_condition_untested_because_every_seed_agreed_says_so_not_too_few_seeds() -> None:
    # the relay run's digits follow-up: 2 seeds each, both arms' seeds identical; the paper said "too few seeds"
    base, same = _row([0.9694, 0.9694], "baseline"), _row([0.9667, 0.9667], "followup", [0.9694, 0.9694])
    one = _row([0.9694, 0.9667], "followup", [0.9694, 0.9694])
    one.metric = Stat(mean=0.968, std=0.0, n=1)
    results = Results(
        template="digits",
        metric="val_accuracy",
        higher_is_better=True,
        knob="lr",
        steps=600,
        conditions={"baseline": base, "followup-wd": same, "followup-one": one},
        best="baseline",
        engine=EngineInfo(name="plain", parameters=1),
    )
    assert verdict_words(results, "followup-wd") == (
        "not tested against the baseline (every seed of it and of the baseline gave the same value, so a t-test "
        "has no spread to use)"
    )
    assert verdict_words(results, "followup-one", predicate=True).endswith("(too few seeds)")


def test_a_primary_result_against_the_prediction_names_both_tests() -> None:
    """The fourth relay run: the plan registered a one-sided test, the paper said 'two-sided' with no reason,
    and both reviewers asked which one was pre-registered."""
    from fars.evaluation.preregistered import test_words

    worse = [v - 0.004 for v in BASE]
    [outcome] = judge({"baseline": BASE, "method": worse}, [primary()], alpha=0.05, higher_is_better=True)
    assert outcome.p_value is not None and outcome.difference is not None and outcome.difference < 0
    words = test_words(outcome, higher_is_better=True)
    assert words.startswith("two-sided Welch t-test, as the result went against the direction the registered")
    assert f"(p = {1 - outcome.p_value / 2:.3g} in that direction)" in words
    one_sided = stats.ttest_ind(worse, BASE, equal_var=False, alternative="greater").pvalue
    assert 1 - outcome.p_value / 2 == pytest.approx(one_sided)


def test_an_inconclusive_secondary_is_judged_against_the_effect_of_interest_not_a_prediction() -> None:
    """Only the primary carries the idea's prediction; a relay model asked what an ablation's 'predicted effect' was."""
    base = _row([0.96, 0.97], "baseline")
    ablation, method = _row([0.95, 0.98], "ablation", [0.96, 0.97]), _row([0.95, 0.99], "method", [0.96, 0.97])
    ablation.verdict = method.verdict = "inconclusive"
    ablation.family, method.family = "secondary", "primary"
    results = Results(
        template="digits", metric="val_accuracy", higher_is_better=True, knob="lr", steps=600, best="method",
        conditions={"baseline": base, "method": method, "method-without-x": ablation},
        engine=EngineInfo(name="plain", parameters=1),
    )  # fmt: skip
    assert verdict_words(results, "method").endswith("spans both no difference and the predicted effect)")
    assert verdict_words(results, "method-without-x").endswith("spans both no difference and the effect of interest)")


def test_a_failed_equivalence_past_its_margin_says_its_verdict_is_the_intervals_not_tosts() -> None:
    """A relay paper printed 'a difference of +0.0069 (TOST p = 1): significantly better' and a caption calling
    the primary one-sided: both reviewers read a superiority claim on the wrong test. The paper now gives the
    difference's interval, says the verdict is the interval's, past the margin, and the caption names TOST."""
    far = [b + 0.05 for b in BASE]
    [outcome] = judge({"baseline": BASE, "method": far}, [primary(prediction="equivalent", margin=0.02)],
                      alpha=0.05, higher_is_better=True)  # fmt: skip
    assert outcome.verdict == "better" and outcome.tost_p is not None and outcome.tost_p > 0.5
    table = {"baseline": _row(BASE, "baseline"), "method": _row(far, base=BASE)}
    table["baseline"].verdict = "baseline"
    adopt_registered(table, [outcome], 0.05, True)
    results = Results(template="digits", metric="val_accuracy", higher_is_better=True, knob="lr", steps=40,
                      alpha=0.05, conditions=table, best="method", engine=EngineInfo(name="plain", parameters=10),
                      comparisons=[outcome])  # fmt: skip
    numbers = Numbers()
    said = numbers.plain(findings(results, numbers))
    assert f"(95% interval {outcome.ci_low:+.4f} to {outcome.ci_high:+.4f})" in said
    assert "TOST p = " in said and "not equivalent, and the difference's whole interval lies beyond the margin" in said
    # the superiority test beside it: the next relay run's reviewers asked whether "better" came from one
    assert outcome.two_sided_p is not None and outcome.two_sided_p < 0.05
    assert f"two-sided Welch p = {outcome.two_sided_p:.3g}" in said
    numbers = Numbers()
    shown = results_table(results, numbers)
    assert "the pre-registered primary (TOST against its pre-registered equivalence margin" in shown.caption
    assert "with the two-sided Welch p beside it" in shown.caption and "one-sided" not in shown.caption
    row = [numbers.plain(c) for c in shown.rows[1]]
    assert row[6].endswith(f"(primary, TOST); two-sided {outcome.two_sided_p:.3g}"), row[6]
    assert row[8] == "better (interval beyond the margin)"


def test_a_caption_names_the_test_the_primary_was_reported_with_and_no_holm_for_a_family_of_one() -> None:
    """A relay paper registered a one-sided test, reported the two-sided one as the result went the other way, and
    its caption still said 'one-sided' (both reviewers named it); an exploratory family of one was 'corrected
    with Holm among itself'."""
    against = [b - 0.004 for b in BASE]
    [outcome] = judge({"baseline": BASE, "method": against}, [primary()], alpha=0.05, higher_is_better=True)
    table = {"baseline": _row(BASE, "baseline"), "method": _row(against, base=BASE),
             "followup": _row([b + 0.01 for b in BASE], base=BASE)}  # fmt: skip
    table["baseline"].verdict = "baseline"
    adopt_registered(table, [outcome], 0.05, True)
    assert table["method"].test_kind == "two-sided-against" and table["followup"].test_kind == "two-sided"
    results = Results(template="digits", metric="val_accuracy", higher_is_better=True, knob="lr", steps=40,
                      alpha=0.05, conditions=table, best="method", engine=EngineInfo(name="plain", parameters=10),
                      comparisons=[outcome])  # fmt: skip
    numbers = Numbers()
    caption = results_table(results, numbers).caption
    assert "the pre-registered primary (two-sided, uncorrected: registered one-sided" in caption, caption
    assert "one-sided in the predicted direction" not in caption
    assert "the exploratory condition (not in the plan) two-sided, uncorrected (one in its family)" in caption
    assert "Holm" not in caption
    said = numbers.plain(findings(results, numbers))
    assert "two-sided Welch p = " in said and "Holm" not in said, said


def test_an_ablations_test_against_the_baseline_is_descriptive_and_joins_no_family() -> None:
    """Relay reviewers asked what removing a part leaves against the baseline; that test is given beside the
    registered one, uncorrected, and kept out of the follow-ups' Holm family (in it, it weakened their correction
    while the paper called a follow-up the only one in its family)."""
    whole, part_gone, follow = [b + 0.05 for b in BASE], [b + 0.001 for b in BASE], [b + 0.004 for b in BASE]
    comparisons = [primary(), Comparison(name="method-without-x vs method", candidate="method-without-x",
                                         reference="method", family="secondary", prediction="different")]  # fmt: skip
    values = {"baseline": BASE, "method": whole, "method-without-x": part_gone, "followup": follow}
    outcomes = judge(values, comparisons, alpha=0.05, higher_is_better=True)
    table = {"baseline": _row(BASE, "baseline"), "method": _row(whole, base=BASE),
             "method-without-x": _row(part_gone, "ablation", base=BASE), "followup": _row(follow, base=BASE)}  # fmt: skip
    table["baseline"].verdict = "baseline"
    adopt_registered(table, outcomes, 0.05, True)
    ablation, followup = table["method-without-x"], table["followup"]
    assert ablation.registered_against == "method" and ablation.p_adjusted == ablation.p_vs_baseline
    assert "descriptive and uncorrected" in (ablation.test or "")
    assert followup.p_adjusted == followup.p_vs_baseline  # alone in its Holm family
    results = Results(template="digits", metric="val_accuracy", higher_is_better=True, knob="lr", steps=40,
                      alpha=0.05, conditions=table, best="method", engine=EngineInfo(name="plain", parameters=10),
                      comparisons=outcomes)  # fmt: skip
    numbers = Numbers()
    row = next(r for r in results_table(results, numbers).rows if r[0] == "method-without-x")
    cells = [numbers.plain(c) for c in row]
    assert cells[4].endswith(f"(vs method); {ablation.difference:+.4f} (vs baseline)"), cells[4]
    assert cells[6].endswith(f"; {ablation.p_vs_baseline:.3g} (vs baseline, descriptive)"), cells[6]
    said = numbers.plain(findings(results, numbers))
    assert f"Against the baseline it differed by {ablation.difference:+.4f}" in said
