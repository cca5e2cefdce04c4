"""Claims grounded like numbers: an effect claimed must be the one the corrected test found."""

from __future__ import annotations

from experiments.spec import load_template
from fars.paper.claims import check_claims, find_claims, repair_claims
from fars.paper.grounding import Numbers
from fars.paper.prose import findings, harness_discussion
from tests.paper.test_document import RESULTS


def test_an_overclaim_and_a_wrong_direction_are_caught_and_named() -> None:
    """The ablation's difference is not significant; the method is significantly better."""
    text = (
        "Without the schedule, the method still improves accuracy over the baseline. "  # overclaim
        "The sgd and cosine method hurts accuracy. "  # wrong direction
        "The method with sgd and cosine outperforms the baseline."  # supported
    )
    check = check_claims(text, RESULTS)
    assert (check.checked, check.supported, check.overclaims, check.wrong_direction) == (3, 1, 1, 1)
    problems = "\n".join(check.problems)
    assert "overclaim" in problems and "(method-without-schedule)" in problems and "still improves" in problems
    assert "wrong direction: worse claimed, the test found better (method)" in problems
    assert check.rate == 1 / 3


def test_the_hypothesis_under_test_is_not_a_claim_but_its_confirmation_is() -> None:
    """The llm_judge paper's own abstract ("We test a hypothesis about ...: ... raises the final accuracy") and
    Hypothesis section were counted as overclaims. Stating what is tested claims nothing; saying it was
    confirmed does."""
    stated = (
        "We test a hypothesis about modular addition: without the schedule, the method raises accuracy. "
        "We hypothesize that without the schedule the method still improves accuracy."
    )
    assert check_claims(stated, RESULTS).checked == 0
    confirmed = "The hypothesis is confirmed: without the schedule, the method still improves accuracy."
    check = check_claims(confirmed, RESULTS)
    assert check.overclaims == 1 and "(method-without-schedule)" in check.problems[0]
    from fars.stages.writing import _prose_only

    paper = "# T\n\n## Hypothesis\n\nWithout the schedule, the method improves accuracy.\n\n## Results\n\nIt ran.\n"
    assert "improves" not in _prose_only(paper) and "It ran." in _prose_only(paper)


def test_a_claim_on_the_metric_by_its_field_name_is_checked() -> None:
    """ "raises the final val_accuracy" was read as no claim at all: the underscore hid the metric's word."""
    check = check_claims("Without the schedule, the method raises the final val_accuracy.", RESULTS)
    assert check.checked == 1 and check.overclaims == 1


def test_no_effect_claimed_where_the_test_found_one_is_named_too() -> None:
    check = check_claims("The method did not change accuracy compared with the baseline.", RESULTS)
    assert check.unsupported_null == 1 and check.supported == 0
    assert check_claims("Without the schedule there was no significant difference.", RESULTS).supported == 1


def test_value_words_are_read_through_the_metric_direction() -> None:
    assert find_claims("The method gives a higher accuracy.", RESULTS)[0].claim == "better"
    lower_is_better = RESULTS.model_copy(update={"higher_is_better": False})
    assert find_claims("The method gives a higher accuracy.", lower_is_better)[0].claim == "worse"
    assert find_claims("We report the final accuracy (higher is better).", RESULTS) == []
    assert find_claims("Sgd does not improve accuracy.", RESULTS)[0].claim == "none"  # negation


def test_repair_drops_or_marks_exactly_the_unsupported_claims() -> None:
    text = "The method outperforms the baseline. Without the schedule, the method is better too. We used two seeds."
    fixed, changes = repair_claims(text, RESULTS)
    assert fixed == "The method outperforms the baseline. We used two seeds."
    assert len(changes) == 1 and "better too" in changes[0]
    marked, _ = repair_claims(text, RESULTS, mark=True)
    assert "better too. [unsupported claim]" in marked


def test_the_harness_own_results_and_discussion_claim_only_what_the_tests_found() -> None:
    from fars.run.contracts import Condition, Plan

    numbers = Numbers()
    plan = Plan(
        template="modadd", design="components", seeds=[0, 1], steps=30,
        conditions=[Condition(name="baseline", role="baseline"), Condition(name="method", role="method",
                    components={"optimizer": "sgd", "schedule": "cosine"}),
                    Condition(name="method-without-schedule", role="ablation", components={"optimizer": "sgd"},
                              of="method", removed="schedule")],
    )  # fmt: skip
    discussion = harness_discussion(load_template("modadd"), plan, RESULTS, numbers)
    text = numbers.plain(findings(RESULTS, numbers) + " " + discussion)
    check = check_claims(text, RESULTS)
    assert check.checked >= 2 and check.problems == [], check.problems  # the primary and the grouped verdicts
    assert "CPU-scale model" in discussion
    # an inference template trains no model: its limits are its items and its one subject model
    judged = harness_discussion(load_template("llm_judge"), plan, RESULTS, Numbers())
    assert "parameters" not in judged and "items per seed and the one subject model asked" in judged
    # the measures beside the metric are given as values, each traced to its field, and claim nothing
    plain = numbers.plain(discussion)
    assert "train loss was 0.9000 in the baseline and 0.4500 in the method" in plain
    assert ("0.4500", "results.conditions.method.secondary.train_loss.mean") in numbers.entries


def test_the_setup_states_a_training_length_the_pilot_found_unconverged_as_a_limit() -> None:
    from fars.paper.prose import setup_text
    from fars.run.contracts import Condition, Pilot, Plan

    def setup(pilot: Pilot) -> str:
        plan = Plan(
            template="cartpole", design="components", seeds=[0, 1], steps=40, pilot=pilot,
            conditions=[Condition(name="baseline", role="baseline"),
                        Condition(name="method", role="method", components={"advantage_norm": "standardize"})],
        )  # fmt: skip
        numbers = Numbers()
        return numbers.plain(setup_text(plan, load_template("cartpole"), numbers))

    # the relay run's CartPole pilot: best at step 20, collapsed by step 40 (its paper said nothing of it)
    collapsed = Pilot(
        seeds=[2, 3], steps=40, values=[118.1, 146.9], sd=20.4, trend="unstable", late_change=-150.0,
        best=(20, 411.8), end=(40, 132.5),
    )  # fmt: skip
    assert "A limit: the baseline's pilot (2 seeds) was unstable at this length: its mean eval_return was best (411.8) at step 20 and ended at 132.5" in setup(collapsed)  # fmt: skip
    climbing = collapsed.model_copy(update={"trend": "still improving", "late_change": 35.0, "best": None})
    assert "was still improving at 40 steps (the last fifth of training raised its mean eval_return by 35; its seed-to-seed spread (sd 20.4))" in setup(climbing)  # fmt: skip
    settled = collapsed.model_copy(update={"trend": "converged", "late_change": 3.0})
    assert "had converged by 40 steps: the last fifth of training changed its mean eval_return by 3, within its seed-to-seed spread" in setup(settled)  # fmt: skip
    untold = setup(collapsed.model_copy(update={"trend": None}))
    assert "A limit" not in setup(settled) and "pilot (" not in untold and "converged" not in untold
    # a pilot on seeds of its own says so (a reviewer asked why the baseline's mean moved from the pilot's)
    assert "The pilot ran the baseline on seeds of its own (2, 3), apart from the study's" in untold
    reused = setup(settled.model_copy(update={"reused": True}))
    assert "The baseline's runs are the pilot's own: the seed budget was no larger than the pilot" in reused
    assert "pilot's own" not in setup(settled)


def test_a_question_and_a_sentence_about_cited_work_claim_nothing_of_ours() -> None:
    # the relay run's CartPole introduction lost both of these as "unsupported claims" of the method
    asked = "We ask a narrow question: does setting the optimizer to sgd raise the final val_accuracy after 30 steps?"
    cited = "Policy-gradient methods are noisy, and work on control variates reduces their variance [@x2018] or gives better estimates [3]."
    assert find_claims(asked, RESULTS) == [] and find_claims(cited, RESULTS) == []
    ours = "Our method gives better val_accuracy, as [@x2018] found for PPO."
    assert [c.condition for c in find_claims(ours, RESULTS)] == ["method"]  # names our method: still checked


def test_a_condition_named_in_full_is_the_one_a_sentence_is_about_not_the_method_whose_option_it_contains() -> None:
    """The third relay run: a follow-up "followup-sgd-wide" (here) contains the method's option "sgd"; the
    harness's own sentence that it made no significant difference was read as a null claim about the method."""
    from fars.run.contracts import ConditionResult, Stat

    results = RESULTS.model_copy(deep=True)
    results.conditions["followup-sgd-wide"] = ConditionResult(
        role="followup", components={"optimizer": "sgd"}, knobs={"width": 256}, metric=Stat(mean=0.49, std=0.05, n=2),
        seeds=[0, 1], values=[0.45, 0.53], difference=-0.01, p_vs_baseline=0.9, p_adjusted=0.9, effect_size=-0.1,
        verdict="no significant difference",
    )  # fmt: skip
    text = "Condition followup-sgd-wide reached 0.49: no significant difference from the baseline."
    [claim] = find_claims(text, results)
    assert claim.condition == "followup-sgd-wide"
    assert check_claims(text, results).problems == []
    # by the knob value it sets, comparing with the method in passing (the relay run's abstract)
    said = "An MLP of width 256 (more parameters than the sgd method) did not differ significantly from the baseline."
    assert find_claims(said, results)[0].condition == "followup-sgd-wide" and not check_claims(said, results).problems
    # as "the follow-up", where there is one
    said = (
        "An exploratory follow-up with a wider MLP shows no significant gain over the baseline, unlike the sgd method."
    )
    assert find_claims(said, results)[0].condition == "followup-sgd-wide"
    # by its option alone, "sgd" still names the method
    assert find_claims("The sgd method shows no significant difference in accuracy.", results)[0].condition == "method"


def test_a_cited_works_title_is_not_a_claim_about_our_method() -> None:
    """The fourth relay run's related work listed "*IPMix: ... Data Augmentation Method for Training Robust
    Classifiers* [3]" beside "... for Better Regularization* [2]"; the paper was flagged for an overclaim."""
    text = (
        "Further work on this topic includes *SaliencyMix: A Saliency Guided Data Augmentation Strategy for Better "
        "Regularization* [2] and *IPMix: Label-Preserving Data Augmentation Method for Training Robust Classifiers* "
        "[3]. Without the schedule, the method still *improves* accuracy [@power2022]."
    )
    [claim] = find_claims(text, RESULTS)  # emphasis in our own sentence still counts
    assert claim.condition == "method-without-schedule" and claim.claim == "better"


def test_saying_the_prediction_held_is_a_claim_on_the_primary_comparison() -> None:
    """The open transcript's draft said "the corrected tests support the primary prediction" whatever the test
    found: a sentence that the registered prediction held (or did not) is checked against the primary verdict."""
    from fars.run.contracts import ComparisonOutcome

    primary = ComparisonOutcome(
        name="method vs baseline", family="primary", candidate="method", reference="baseline",
        prediction="better", n=(3, 3), verdict="better",
    )  # fmt: skip
    held = RESULTS.model_copy(update={"comparisons": [primary]})
    said = ["The corrected tests support the primary prediction.", "The hypothesis was not confirmed here.",
            "Our prediction is strongly supported."]  # fmt: skip
    assert [not check_claims(s, held).problems for s in said] == [True, False, True]
    conditions = {**held.conditions, "method": held.conditions["method"].model_copy(update={"verdict": "inconclusive"})}
    missed = held.model_copy(update={"conditions": conditions})
    assert [not check_claims(s, missed).problems for s in said] == [False, True, False]
    assert "overclaim" in check_claims(said[0], missed).problems[0]
    # a sentence naming its own effect is judged on that effect, not on the prediction's
    assert (
        find_claims("The hypothesis is confirmed: without the schedule, the method still improves accuracy.", missed)[
            0
        ].condition
        == "method-without-schedule"
    )
    assert check_claims(said[0], RESULTS).checked == 0  # no registered primary: nothing to hold it to


def test_a_hypothesis_continued_after_a_colon_reads_as_one_sentence() -> None:
    """A relay run's reviewer quoted "...(image classification): Switching the MLP ..." as spliced text."""
    from fars.paper.prose import after_colon

    assert after_colon("Switching the MLP to a CNN raises accuracy") == "switching the MLP to a CNN raises accuracy"
    assert after_colon("The CNN beats the MLP") == "the CNN beats the MLP"
    assert after_colon("Adam with dropout raises accuracy") == "Adam with dropout raises accuracy"
    assert after_colon("CNNs beat MLPs") == "CNNs beat MLPs"


def test_each_clause_is_its_own_claim_and_an_ablation_is_judged_against_what_it_ablates() -> None:
    """The relay model's correct rewrite "the CNN ... is significantly better, while the MLP with shifts is
    inconclusive" was read as one null claim about the first condition. And "removing the schedule lowers
    accuracy" is about the method with the schedule: with the ablation registered against it, that test decides."""
    from fars.run.contracts import ComparisonOutcome

    two = "The sgd and cosine method is significantly better than the baseline, while without the schedule there is no significant difference."
    check = check_claims(two, RESULTS)
    assert (check.checked, check.supported) == (2, 2), check.problems
    spliced = "The sgd and cosine method outperforms the baseline; without the schedule it is also better."
    assert check_claims(spliced, RESULTS).overclaims == 1  # the second clause, on its own condition
    results = RESULTS.model_copy(deep=True)
    results.conditions["method-without-schedule"].registered_against = "method"
    results.comparisons = [
        ComparisonOutcome(name="method-without-schedule vs method", family="secondary",
                          candidate="method-without-schedule", reference="method", prediction="different", n=(2, 2),
                          difference=-0.2, p_value=0.01, p_adjusted=0.01, verdict="worse"),
    ]  # fmt: skip
    removing = "Without the schedule, accuracy is significantly worse."
    assert check_claims(removing, RESULTS).overclaims == 1  # against the baseline: no significant difference
    assert check_claims(removing, results).supported == 1  # against the method it ablates: worse
    against_base = "Without the schedule, the method is significantly worse than the baseline."
    assert check_claims(against_base, results).overclaims == 1  # naming the baseline: judged against the baseline
    wrong = check_claims("Without the schedule, accuracy is better.", results)
    assert wrong.wrong_direction == 1 and "the test found worse against method" in wrong.problems[0]


def test_a_negated_value_word_claims_no_effect() -> None:
    """'did not raise accuracy' was read by a relay run's check as a claim that accuracy rose."""
    from fars.paper.claims import _claim_of

    assert _claim_of("Shifts did not raise accuracy.", ["accuracy"], True) == "none"
    assert _claim_of("Shifts raised accuracy.", ["accuracy"], True) == "better"
    assert _claim_of("Smoothing did not lower accuracy.", ["accuracy"], True) == "none"


def test_a_sentence_stating_the_registered_prediction_is_not_a_claim() -> None:
    """A relay paper's abstract and introduction lost "We predicted that cosine decay ... would raise held-out
    accuracy" as an unsupported claim; the introduction then said "The prediction failed." of nothing stated."""
    for stated in (
        "We predicted that cosine decay with a higher peak rate would raise held-out accuracy by half a point.",
        "We therefore predicted that the method would improve final accuracy, and pre-registered this comparison.",
    ):
        assert find_claims(stated, RESULTS) == [], stated
    # a finding in the same sentence is still read
    assert find_claims("We predicted that the method would raise accuracy, and it did improve accuracy.", RESULTS)


def test_a_comma_before_a_negated_continuation_splits_the_claim() -> None:
    """A relay title, "Shifts Help a Small CNN, With No Detectable Gain for an MLP", was read whole as a null
    claim about the CNN (the method, significantly better) and dropped."""
    from fars.paper.claims import _CLAUSE

    assert _CLAUSE.split("Shifts help the method, with no detectable gain for an MLP") == [
        "Shifts help the method",
        "with no detectable gain for an MLP",
    ]
    assert len(_CLAUSE.split("The method, with its schedule, improved accuracy")) == 1


def test_a_clause_on_removing_parts_is_no_claim_about_the_whole_method() -> None:
    """A relay abstract's main result, "... was significantly more accurate than a two-layer MLP, and removing either
    the convolutions or the shifts made it significantly worse", was read as "worse" about the method and dropped."""
    said = "The method improved accuracy over the baseline, and removing either part made it significantly worse."
    assert [(c.condition, c.claim) for c in find_claims(said, RESULTS)] == [("method", "better")]
    # an ablation the clause does name is still held to its test
    assert [c.condition for c in find_claims("Removing the schedule lowered accuracy.", RESULTS)] == [
        "method-without-schedule"
    ]
