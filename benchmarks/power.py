"""Does a planned power come true? Simulated studies with known true effects, through Planning's design and
the verdicts of the pre-registered comparisons.

Each study runs the ``simulated`` template's own ``train.py`` in-process (one simulated millisecond a step:
its metric is a formula of the settings plus N(0, 0.01) seed noise, the same code a run executes): a pilot
of the baseline over ``--pilot`` seeds (external, on seeds of its own, as the stage runs it when it may change
the seeds), then Planning's steps (``pilot_summary``, ``powered_plan``: the
effect of interest, the pre-registered comparisons, ``seeds_for_power`` on the debiased pilot spread, the
cap), the remaining runs, and ``fars.evaluation.preregistered.judge``. The template takes a known effect
through its knobs, so nothing is added to it: ``width`` adds 0.01 * log2(width / 128) to the accuracy, and
``lr=0.001`` scores exactly as the default ``lr=0.01`` (the formula is symmetric about 10^-2.5), a true
zero with its own noise. The primary condition (the "method") is a width; a secondary condition is the
zero-effect ``lr=0.001`` (its false positives are the secondary family's).

Printed: per true effect, the mean planned power against the share of studies whose primary verdict was
"better"; under the null, the false-positive rate of the primary ("better", one-sided at alpha) and of
the secondary (two-sided, Holm), each with a 95% Wilson interval. Exit 1 when a realised rate is more
than 0.1 from the planned power at a planned power near 0.8, or a false-positive rate's interval lies
wholly above alpha.

    python benchmarks/power.py                  # 720 studies, about 2 minutes on one core
    python benchmarks/power.py --studies 40     # per effect; the null gets 5x as many
    python benchmarks/power.py --studies 0 --null 1200   # the false-positive rates alone, tighter
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from experiments.metrics import Metrics
from experiments.simulated import train
from fars.commands.configured import compose_run
from fars.evaluation.preregistered import judge
from fars.run.contracts import Condition, Plan, Value
from fars.stages.planning import PlanningSettings, pilot_summary, powered_plan

NOISE = 0.01  # the template's seed noise (train.py: rng.gauss(0, 0.01))
WIDTHS = {0.005: 181, 0.01: 256, 0.015: 362, 0.02: 512}  # true improvement -> width (0.01 * log2(w / 128))
NULL_TARGET = 0.01  # what a study of a true zero is powered for: the effect its hypothesis predicted


@dataclass
class Study:
    """One simulated study's design and outcome."""

    effect: float
    seeds: int
    planned: float
    capped: bool
    primary: str
    secondary: str


def run(out: Path, seed: int, knobs: dict[str, Value]) -> float:
    """One run of the simulated template, in-process: its validated metric."""
    argv = ["--out_dir", str(out / f"{seed}-{'-'.join(f'{k}{v}' for k, v in knobs.items())}"), "--seed", str(seed)]
    argv += ["--steps", "1", *(f"--{k}={v}" for k, v in knobs.items())]
    return Metrics.model_validate(train.main(argv)).final[train.SPEC.metric]


def study(effect: float, first_seed: int, settings: PlanningSettings, out: Path) -> Study:
    """Pilot, design, runs and verdicts of one study of a known true ``effect``."""
    settings = replace(
        settings,
        seeds=tuple(range(first_seed, first_seed + settings.experiment.seeds)),
        experiment=replace(settings.experiment, effect=effect or NULL_TARGET),
    )
    pilots = [Metrics.model_validate(train.main(pilot_argv(out, s))) for s in settings.pilot_seeds]
    pilot = pilot_summary(list(settings.pilot_seeds), 1, list(pilots), train.SPEC.metric, True)
    method: dict[str, Value] = {"width": WIDTHS[effect]} if effect else {"lr": 0.001}
    plan = Plan(
        template="simulated",
        design="components",
        conditions=[
            Condition(name="baseline", role="baseline"),
            Condition(name="method", role="method", knobs=method),
            Condition(name="null", role="variant", knobs={"lr": 0.001, "width": 129}),  # 0.01*log2(129/128) ~ 1e-4
        ],
        seeds=list(settings.seeds),
        steps=1,
    )
    plan = powered_plan(plan, pilot, settings)
    reused = pilot.values if settings.pilot_reused else []  # the stage reuses a pilot only where it fixes nothing
    values = {"baseline": reused + [run(out, s, {}) for s in plan.seeds[len(reused) :]]}
    for condition in plan.conditions[1:]:
        values[condition.name] = [run(out, s, dict(condition.knobs)) for s in plan.seeds]
    verdicts = {o.family: o.verdict for o in judge(values, plan.comparisons, alpha=0.05, higher_is_better=True)}
    chosen = plan.seed_design
    assert chosen is not None and chosen.power is not None
    return Study(effect, chosen.seeds, chosen.power, chosen.capped, verdicts["primary"], verdicts["secondary"])


def pilot_argv(out: Path, seed: int) -> list[str]:
    return ["--out_dir", str(out / f"pilot-{seed}"), "--seed", str(seed), "--steps", "1"]


def wilson(hits: int, n: int) -> tuple[float, float]:
    """The 95% Wilson interval of a proportion."""
    z, p = 1.96, hits / n
    centre, half = (p + z * z / (2 * n)), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--studies", type=int, default=80, help="studies per nonzero effect")
    parser.add_argument("--null", type=int, default=None, help="studies of a true zero (default: 5x --studies)")
    parser.add_argument("--pilot", type=int, default=3, help="pilot seeds (experiment.pilot_seeds)")
    parser.add_argument("--max-seeds", type=int, default=20, help="the cap (experiment.seeds)")
    ns = parser.parse_args()
    cfg = compose_run([f"experiment.seeds={ns.max_seeds}", f"experiment.pilot_seeds={ns.pilot}"])
    settings = PlanningSettings.of(cfg)
    alpha = cfg.experiment.alpha
    nulls = 5 * ns.studies if ns.null is None else ns.null
    plan_of = [0.0] * nulls + [e for e in WIDTHS for _ in range(ns.studies)]
    started, studies = time.perf_counter(), []
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        for i, effect in enumerate(plan_of):
            studies.append(study(effect, 1000 * i, settings, Path(tmp) / str(i % 50)))
    print(f"{len(studies)} studies in {time.perf_counter() - started:.0f} s; noise sd {NOISE}, pilot {ns.pilot} seeds, "
          f"cap {ns.max_seeds} seeds, power {cfg.experiment.power}, alpha {alpha}")  # fmt: skip
    print(
        f"{'true effect':>11} {'d':>4} {'studies':>7} {'seeds':>6} {'capped':>6} {'planned':>7} {'realised':>8}  95% CI"
    )
    failed = []
    for effect in WIDTHS:
        group = [s for s in studies if s.effect == effect]
        if not group:
            continue
        hits = sum(s.primary == "better" for s in group)
        planned, realised = statistics.fmean(s.planned for s in group), hits / len(group)
        low, high = wilson(hits, len(group))
        capped, seeds = sum(s.capped for s in group) / len(group), statistics.fmean(s.seeds for s in group)
        print(f"{effect:>11.3f} {effect / NOISE:>4.1f} {len(group):>7} {seeds:>6.1f} "
              f"{capped:>6.0%} {planned:>7.2f} {realised:>8.2f}  [{low:.2f}, {high:.2f}]")  # fmt: skip
        if 0.75 <= planned <= 0.9 and abs(planned - realised) > 0.1:
            failed.append(f"effect {effect}: planned {planned:.2f}, realised {realised:.2f}")
    null = [s for s in studies if s.effect == 0]
    if not null:
        return 1 if failed else 0
    for label, hits in [
        ("primary 'better' (one-sided)", sum(s.primary == "better" for s in null)),
        ("primary any claim (better or worse)", sum(s.primary in ("better", "worse") for s in null)),
        ("secondary 'better' or 'worse' (two-sided, Holm)", sum(s.secondary in ("better", "worse") for s in null)),
    ]:
        low, high = wilson(hits, len(null))
        print(f"null, {len(null)} studies: {label}: {hits / len(null):.3f} [{low:.3f}, {high:.3f}] (nominal {alpha})")
        if label.startswith(("primary 'better'", "secondary")) and low > alpha:
            failed.append(f"{label}: {hits / len(null):.3f} above alpha {alpha}")
    for problem in failed:
        print("FAILED:", problem, file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
