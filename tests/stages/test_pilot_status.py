"""The pilot's curve status (converged, still improving, unstable, judged against the seed-to-seed noise) and the
floor on its spread where its seeds agree exactly, as recorded in the Pilot and said to the model."""

from __future__ import annotations

import math

import pytest

from experiments.metrics import Curves, Metrics, Provenance
from fars.evaluation import design
from fars.run.contracts import Comparison, Pilot
from fars.stages.planning import (
    CONVERGED_SHARE,
    PlanningSettings,
    effect_of_interest,
    pilot_lines,
    pilot_summary,
    seed_design,
)
from tests.conftest import compose


def run(seed: int, steps: list[int], curve: list[float], metric: str = "acc") -> Metrics:
    """A finished pilot run whose final value is its curve's last point."""
    return Metrics(
        template="t", engine="e", device="cpu", seed=seed, steps=steps[-1], config={}, metric=metric,
        final={metric: curve[-1]}, curves=Curves(step=steps, val_metric=curve), wall_s=1.0, examples_per_s=1.0,
        parameters=1, provenance=Provenance(code_sha256="c", config_sha256="k"),
    )  # fmt: skip


def pilot_of(curves: list[list[float]], steps: list[int], higher_is_better: bool, metric: str = "acc") -> Pilot:
    runs: list[Metrics | str] = [run(seed, steps, curve, metric) for seed, curve in enumerate(curves)]
    return pilot_summary(list(range(len(curves))), steps[-1], runs, metric, higher_is_better)


STEPS = list(range(0, 201, 10))


def bpc(step: int) -> float:
    """chargpt's validation bits per character: a huge early drop from ~6.6, still falling 0.15 over its last
    fifth (steps 160 to 200)."""
    return 1.85 + 0.00375 * (200 - step) + 4.0 * math.exp(-step / 15)


def test_a_curve_still_falling_by_more_than_the_noise_is_still_improving_though_its_share_is_small() -> None:
    base = [bpc(s) for s in STEPS]
    pilot = pilot_of([[v - 0.08 for v in base], [v + 0.08 for v in base]], STEPS, higher_is_better=False, metric="bpc")
    assert pilot.sd == pytest.approx(0.16 / math.sqrt(2))  # 0.113
    late = bpc(200) - bpc(160)
    assert late == pytest.approx(-0.150, abs=1e-3)
    assert pilot.late_change == pytest.approx(late)
    # the share test alone passes (3% of the drop from 6.6 bits): it called this curve converged
    share = -late / (bpc(0) - bpc(200))
    assert pilot.convergence == pytest.approx(share) and share < CONVERGED_SHARE
    assert pilot.trend == "still improving" and pilot.converged is False
    text = pilot_lines(pilot)
    assert (
        "its curve is still improving: the last fifth of training lowered it by 0.15, more than the seed-to-seed sd "
        "0.113 (3% of its improvement came in the last fifth of training)" in text
    )
    assert "converged" not in text


def test_a_curve_that_peaked_and_collapsed_is_unstable() -> None:
    """CartPole: a return of 411.8 at step 20, 132.5 at step 40. The last fifth's gain is clipped at 0, so the
    share test called it converged."""
    steps = [0, 5, 10, 15, 20, 25, 30, 35, 40]
    mean = [20.0, 150.0, 300.0, 380.0, 411.8, 350.0, 250.0, 180.0, 132.5]
    pilot = pilot_of([[v - 30 for v in mean], [v + 30 for v in mean]], steps, higher_is_better=True, metric="return")
    assert pilot.sd == pytest.approx(60 / math.sqrt(2))
    assert pilot.convergence == 0.0  # the old rule's "converged"
    assert pilot.trend == "unstable" and pilot.converged is False
    assert pilot.best == (20, pytest.approx(411.8)) and pilot.end == (40, pytest.approx(132.5))
    text = pilot_lines(pilot)
    assert (
        "its curve is unstable, not converged: it peaked at 411.8 at step 20 and ended at 132.5 at step 40, worse "
        "than its best by 279, more than the seed-to-seed sd 42.4" in text
    )


def test_a_loss_that_rose_again_is_unstable_and_said_so_as_a_loss() -> None:
    steps = [0, 10, 20, 30, 40]
    mean = [3.0, 2.0, 1.5, 1.9, 2.4]
    pilot = pilot_of([[v - 0.05 for v in mean], [v + 0.05 for v in mean]], steps, higher_is_better=False, metric="loss")
    assert pilot.trend == "unstable" and pilot.best == (20, pytest.approx(1.5))
    assert "it fell to 1.5 at step 20 and ended at 2.4 at step 40, worse than its best by 0.9" in pilot_lines(pilot)


def test_a_curve_flat_at_the_end_has_converged() -> None:
    base = [0.9 * (1 - math.exp(-s / 20)) for s in STEPS]
    pilot = pilot_of([[v - 0.01 for v in base], [v + 0.01 for v in base]], STEPS, higher_is_better=True)
    late = 0.9 * (math.exp(-8) - math.exp(-10))
    assert pilot.late_change == pytest.approx(late) and late < pilot.sd
    assert pilot.trend == "converged" and pilot.converged is True
    assert pilot.convergence == pytest.approx(late / (0.9 * (1 - math.exp(-10))))
    assert (
        "its curve converged: 0% of its improvement came in the last fifth of training, and the last fifth "
        f"changed it by {late:.3g}, within the seed-to-seed sd 0.0141" in pilot_lines(pilot)
    )


def test_a_large_share_of_the_gain_at_the_end_is_still_improving_within_the_noise() -> None:
    base = [0.5 + 0.001 * s for s in STEPS]  # linear: 20% of its 0.2 gain in the last fifth, 0.04 < sd 0.141
    pilot = pilot_of([[v - 0.1 for v in base], [v + 0.1 for v in base]], STEPS, higher_is_better=True)
    assert pilot.convergence == pytest.approx(0.2) and pilot.late_change == pytest.approx(0.04)
    assert pilot.trend == "still improving"
    assert (
        "its curve is still improving: 20% of its improvement came in the last fifth of training, more than the 10% "
        "of a converged curve" in pilot_lines(pilot)
    )


def test_one_image_gained_by_one_seed_in_the_last_fifth_is_flat_with_float32_accuracies() -> None:
    """The relay run's digits pilot at the research scale: three seeds at 0.975 to 0.978 on 360 images, one of
    them a single image better at the end (0.000926 in the mean, above half its sd 0.0016). Its float32
    accuracies and the mean's thirds of an image had hidden the metric's step, so it read as still improving."""
    import numpy as np

    steps = [150, 900, 1650, 2250, 3000]
    images = [[342, 350, 351, 351, 351], [343, 351, 352, 352, 352], [342, 350, 351, 350, 351]]
    curves = [[float(np.float32(k / 360)) for k in seed] for seed in images]
    assert design.metric_step(curves[0]) == pytest.approx(1 / 360, rel=1e-4)  # float32: k/360 only to ~1e-7
    pilot = pilot_of(curves, steps, higher_is_better=True)
    assert pilot.late_change == pytest.approx(1 / 1080, rel=1e-4)
    assert pilot.trend == "converged"
    # their sd (0.0016) is below one image: few seeds agreeing by chance, so the noise is floored at the step
    assert pilot.sd_floored and pilot.sd == pytest.approx(1 / 360, rel=1e-4)
    assert (
        "spread by less than one step of the metric (sd 0.0016), so the noise is taken as at least 0.00278"
        in pilot_lines(pilot)
    )
    gained = [[*seed[:-1], seed[-1] + 2] for seed in images]  # two images in every seed: still improving
    assert pilot_of([[float(np.float32(k / 360)) for k in s] for s in gained], steps, True).trend == "still improving"
    assert design.metric_step([2.5536, 2.5772, 2.6013]) == 0.0  # bits per char: no step


def test_curve_trend_and_resolution_directly() -> None:
    flat = design.curve_trend([0, 1, 2, 3, 4], [0.0, 0.5, 0.9, 1.0, 1.0], True, noise=0.05)
    assert flat is not None and flat.status == "converged" and flat.share == 0.0
    rising = design.curve_trend([0, 1, 2, 3, 4], [0.0, 0.5, 0.9, 1.0, 1.0], True, noise=0.0, converged_share=0.1)
    assert rising is not None and rising.status == "converged"  # no change in the last fifth at all
    dropped = design.curve_trend([0, 1, 2, 3, 4], [0.0, 0.5, 1.0, 1.0, 0.9], True, noise=0.05)
    assert dropped is not None and dropped.status == "unstable" and dropped.drop == pytest.approx(0.1)
    within = design.curve_trend([0, 1, 2, 3, 4], [0.0, 0.5, 1.0, 1.0, 0.97], True, noise=0.05)
    assert within is not None and within.status == "converged"  # a fall within the noise is no collapse
    # a step of exactly the noise floor (a difference of means, off by round-off) is not beyond it
    step = design.curve_trend([0, 1, 2, 3, 4], [0.0, 0.5, 0.9, 0.9, 0.9 + 1 / 360], True, noise=1 / 360)
    assert step is not None and step.status == "converged"
    assert design.curve_trend([0, 1], [0.0, 1.0], True, noise=0.1) is None
    never = design.curve_trend([0, 1, 2], [1.0, 1.0, 1.0], True, noise=0.1)
    assert never is not None and never.status is None and never.share is None
    assert design.resolution([349 / 360, 347 / 360, 349 / 360, 200 / 360, 348 / 360]) == pytest.approx(1 / 360)
    assert design.resolution([0.5, 0.5 + 1e-15, 0.5]) is None  # round-off is no step of the metric
    assert design.resolution([0.25]) is None


def digits_pilot() -> Pilot:
    """Digits: accuracy on 360 images; both seeds end at 349/360 = 0.9694."""
    steps = [0, 50, 100, 150, 200]
    curves = [[c / 360 for c in (200, 300, 340, 349, 349)], [c / 360 for c in (210, 305, 338, 348, 349)]]
    return pilot_of(curves, steps, higher_is_better=True)


def test_identical_pilot_values_floor_the_spread_at_the_metrics_resolution() -> None:
    pilot = digits_pilot()
    assert pilot.values == [349 / 360, 349 / 360]
    assert pilot.sd_floored and pilot.sd == pytest.approx(1 / 360)  # the gaps 347-348-349 of 360 images
    assert pilot.sd_floor_reason.startswith("the metric's resolution")
    text = pilot_lines(pilot)
    assert text.startswith(
        "Pilot: the baseline over 2 seeds at 200 steps scored 0.9694; the 2 seeds gave identical values, so the "
        "noise is taken as at least 0.00278, the metric's resolution (the smallest gap between distinct values in "
        "the pilot's results and curves), not as zero; "
    )
    # the curve is judged against the floored noise: the mean moved by half an image at the end
    assert pilot.late_change == pytest.approx(0.5 / 360) and pilot.trend == "converged"
    assert "within the noise floor 0.00278" in text


def test_the_power_analysis_uses_the_floored_spread() -> None:
    pilot = digits_pilot()
    settings = PlanningSettings.of(compose("experiment.seeds=20"))
    effect, source = effect_of_interest(settings.experiment, pilot)
    assert effect == pytest.approx(settings.experiment.effect_sds / 360) and "pilot standard deviation" in source
    comparison = Comparison(name="method vs baseline", candidate="method", family="primary", effect=effect)
    chosen = seed_design(pilot, [comparison], 2, settings, effect, source)
    assert chosen.method == "power" and chosen.sd == pytest.approx(1 / 360)
    expected = design.seeds_for_power(
        effect, 1 / 360, alpha=settings.experiment.alpha, power=settings.experiment.power, cap=20, pilot_n=2
    )
    assert chosen.seeds == expected.seeds and chosen.seeds > 2  # not the degenerate "2 seeds" of a zero spread
    assert chosen.detectable is not None and chosen.detectable > 0
    assert "a floor at the metric's resolution: the pilot's 2 seeds gave identical values" in chosen.reason


def test_an_equivalence_primary_is_sized_by_tosts_power_within_its_margin() -> None:
    """A relay paper's equivalence claim (margin 0.004) had its seeds sized for a one-sided test of a 1-sd effect,
    and both reviewers asked how that powered a TOST."""
    pilot = digits_pilot()
    settings = PlanningSettings.of(compose("experiment.seeds=20"))
    effect, source = effect_of_interest(settings.experiment, pilot)
    comparison = Comparison(name="method vs baseline", candidate="method", family="primary", effect=effect,
                            prediction="equivalent", margin=0.004)  # fmt: skip
    chosen = seed_design(pilot, [comparison], 2, settings, effect, source)
    assert chosen.sides == "equivalence" and chosen.effect == 0.004
    assert chosen.effect_source == "the pre-registered equivalence margin"
    expected = design.seeds_for_power(0.004, 1 / 360, alpha=settings.experiment.alpha, power=settings.experiment.power,
                                      cap=20, sides="equivalence", pilot_n=2)  # fmt: skip
    assert chosen.seeds == expected.seeds and chosen.power == pytest.approx(expected.power)
    assert "to show equivalence within a margin of 0.004 (the pre-registered equivalence margin)" in chosen.reason
    assert "(TOST, the true difference taken as zero)" in chosen.reason and "one-sided" not in chosen.reason
    # TOST's power: none where the margin is under the critical value, rising with seeds, above one-sided's need
    assert design.power_of(0.004, 1 / 360, 2, 0.05, "equivalence") == 0.0
    assert design.power_of(0.004, 1 / 360, 10, 0.05, "equivalence") < design.power_of(
        0.004, 1 / 360, 20, 0.05, "equivalence"
    )


def test_a_pilot_that_never_varied_keeps_the_configured_seeds_and_says_why() -> None:
    steps = [0, 1, 2]
    pilot = pilot_of([[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]], steps, higher_is_better=True)
    assert pilot.sd == 0.0 and not pilot.sd_floored and pilot.trend is None and pilot.converged is None
    assert pilot_lines(pilot) == (
        "Pilot: the baseline over 2 seeds at 2 steps scored 0.5; the 2 seeds gave identical values and no value it "
        "logged differed, so its noise is unknown; its curve did not improve.\n"
    )
    settings = PlanningSettings.of(compose("experiment.seeds=3"))
    chosen = seed_design(pilot, [], 2, settings, 0.01, "experiment.effect")
    assert chosen.method == "fixed" and chosen.seeds == 3
    assert chosen.reason == (
        "3 seeds (experiment.seeds): the pilot's seeds agreed exactly and no two values it logged differed, so its "
        "noise is unknown"
    )


def test_a_plan_written_before_trends_still_loads_and_reads() -> None:
    old = Pilot.model_validate(
        {"seeds": [0, 1], "steps": 5, "values": [0.8, 0.82], "mean": 0.81, "sd": 0.0141, "convergence": 0.05,
         "converged": True}
    )  # fmt: skip
    assert old.trend is None and not old.sd_floored and old.best is None
    assert pilot_lines(old) == (
        "Pilot: the baseline over 2 seeds at 5 steps scored 0.81 (seed-to-seed sd 0.0141); 5% of its improvement "
        "came in the last fifth of training (converged).\n"
    )


def test_a_last_fifth_moving_by_half_the_noise_is_still_improving() -> None:
    # the second relay run: chargpt's last fifth of 200 steps lowered bpc by 0.113 with a seed sd of 0.115, and the
    # pilot said "converged"; the model answered "still dropping ~0.003 bpc a step, which is not convergence"
    bpc = [6.60, 3.40, 2.90, 2.75, 2.637]
    trend = design.curve_trend([0, 50, 100, 160, 200], bpc, False, noise=0.115)
    assert trend is not None and trend.status == "still improving" and trend.late_change == pytest.approx(-0.113)
    settled = design.curve_trend([0, 50, 100, 160, 200], [*bpc[:4], 2.72], False, noise=0.115)
    assert settled is not None and settled.status == "converged"  # 0.03 in the last fifth: a quarter of the sd


def test_a_curve_still_improving_by_half_its_noise_says_so_not_that_its_small_share_is_large() -> None:
    """Both relay models of the fourth run read "4% of its improvement came in the last fifth, more than the 10%
    of a converged curve": the curve was called still improving for its late change (over half the sd), and the
    words gave the share's reason."""
    base = [0.9 * (1 - math.exp(-s / 20)) + 0.004 * s / 200 for s in STEPS]
    pilot = pilot_of([[v - 0.001 for v in base], [v + 0.001 for v in base]], STEPS, higher_is_better=True)
    assert pilot.trend == "still improving" and pilot.convergence is not None and pilot.convergence < CONVERGED_SHARE
    assert pilot.sd / 2 < pilot.late_change < pilot.sd
    text = pilot_lines(pilot)
    assert "more than half of the seed-to-seed sd 0.00141" in text and "more than the 10%" not in text
