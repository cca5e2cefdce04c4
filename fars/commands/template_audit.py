"""The option audit of ``fars template check --audit``: is every component option sound on its own?

A study compares a method against the baseline; if an option of the template is broken (chargpt's
``sinusoidal`` positions once added encodings of amplitude 1 to embeddings of std 0.02, and a paper
concluded "sinusoidal encodings hurt"), the study measures the template, not the idea. The audit runs the
baseline and each alternative option of each component slot alone (the other slots at the baseline's) over
a few seeds at a short scale, and compares each option's mean with the baseline's in units of their seed
spread. An option standing far outside it (``FAR`` spreads) is flagged: its author either fixes it or states
in the spec why it stands apart at that scale (``known_effects`` of its component: option -> {scale:
text}, or a text for every scale: "no position signal: worse by design"). An unexplained flag fails the check, so does a baseline whose seeds all give one value (no study
of it can have an interval), and so does an explanation of an option within ``NEAR`` spreads of the
baseline (it would hide a change); between ``NEAR`` and ``FAR`` an explanation may stand, so an effect near
the line flags neither way as machines round differently.

All runs share one process (``experiments.audit``), inside the sandbox for a training template: a smoke
run trains for a fraction of a second, and its interpreter and torch start once.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FAR = 6.0  # an option this many seed spreads from the baseline is flagged
NEAR = FAR / 2  # an explanation of an option closer than this to the baseline explains nothing any more
SEEDS = 3


@dataclass(frozen=True)
class OptionEffect:
    """One option's runs against the baseline's, seed for seed."""

    slot: str
    option: str
    baseline: list[float]
    values: list[float]
    higher_is_better: bool
    explanation: str | None = None

    @property
    def difference(self) -> float:
        """The option's mean minus the baseline's."""
        return statistics.fmean(self.values) - statistics.fmean(self.baseline)

    @property
    def spread(self) -> float:
        """The pooled seed-to-seed standard deviation of the two sets of runs."""
        return math.sqrt((statistics.variance(self.baseline) + statistics.variance(self.values)) / 2)

    @property
    def spreads(self) -> float:
        """The difference in seed spreads (signed; infinite when the runs have no spread and differ)."""
        if self.spread > 0:
            return self.difference / self.spread
        return 0.0 if self.difference == 0 else math.copysign(math.inf, self.difference)

    @property
    def flagged(self) -> bool:
        """Whether the option stands far outside the seed spread."""
        return abs(self.spreads) > FAR

    @property
    def direction(self) -> str:
        """better or worse than the baseline, by the template's metric."""
        return "better" if (self.difference > 0) == self.higher_is_better else "worse"


@dataclass(frozen=True)
class AuditReport:
    """The audit of one template: each option's effect and what the spec must answer for."""

    metric: str
    scale: str
    effects: list[OptionEffect]
    baseline: list[float]
    problems: list[str]
    notes: list[str]

    @property
    def unexplained(self) -> list[OptionEffect]:
        """Flagged options the spec does not explain."""
        return [e for e in self.effects if e.flagged and not e.explanation]

    @property
    def ok(self) -> bool:
        """Nothing flagged is unexplained and nothing else is wrong."""
        return not self.unexplained and not self.problems

    def lines(self) -> list[str]:
        """The audit as the check prints it."""
        base = ", ".join(f"{v:.4g}" for v in self.baseline)
        out = [
            f"option audit at the {self.scale} scale, {len(self.baseline)} seeds each: baseline {self.metric} {base}"
        ]
        for e in self.effects:
            spreads = f"{e.spreads:+.1f}" if math.isfinite(e.spreads) else f"{'+' if e.spreads > 0 else '-'}inf"
            head = f"  {e.slot}={e.option}: {statistics.fmean(e.values):.4g} ({e.difference:+.3g}, {spreads} spreads"
            if not e.flagged:
                out.append(f"{head}) ok" + (f"; the spec notes: {e.explanation}" if e.explanation else ""))
            elif e.explanation:
                out.append(f"{head}, {e.direction}) explained: {e.explanation}")
            else:
                out.append(f"{head}, {e.direction}) FLAGGED: far outside the seed spread; fix the option or state why")
                out.append(f"    in template.yaml, components.{e.slot}.known_effects.{e.option}.{self.scale}")
        out += [f"  {p}" for p in [*self.problems, *self.notes]]
        return out


def audit_plan(spec: Any) -> list[tuple[str, str, dict[str, str]]]:
    """The audited conditions: (slot, option, components) for the baseline ("", "") and each alternative alone."""
    plan: list[tuple[str, str, dict[str, str]]] = [("", "", {})]
    for c in spec.components:
        plan += [(c.name, option, {c.name: option}) for option in c.alternatives]
    return plan


def judge(
    spec: Any, results: dict[tuple[str, str], list[float]], scale: str, first: list[float] | None = None
) -> AuditReport:
    """The report from each condition's per-seed metric values (key: (slot, option), the baseline ("", ""));
    ``first``: the baseline's metric at its first evaluation, seed by seed (how far training moved it)."""
    baseline = results[("", "")]
    problems = []
    notes = []
    if first and len(set(baseline)) > 1:
        moved = (statistics.fmean(baseline) - statistics.fmean(first)) / statistics.stdev(baseline)
        if abs(moved) < FAR:
            notes.append(
                f"note: from its first evaluation to its last the baseline moved only {moved:+.1f} seed spreads at "
                f"this scale, so an option's effect can hardly show; audit at a longer --scale to see one"
            )
    if len(set(baseline)) == 1:
        problems.append(
            f"FLAGGED: every seed of the baseline gives {spec.metric}={baseline[0]:.6g}: the seed changes nothing at "
            f"this scale, so no study of the template can estimate its seed-to-seed spread"
        )
    effects = []
    for c in spec.components:
        for option in c.alternatives:
            effect = OptionEffect(
                c.name,
                option,
                baseline,
                results[(c.name, option)],
                spec.higher_is_better,
                c.known_effects.get(option, {}).get(scale) or c.known_effects.get(option, {}).get("*"),
            )
            effects.append(effect)
            # an explanation for this scale that the audit no longer needs (between NEAR and FAR one may stand);
            # one for every scale ("*") is not held to each scale's numbers
            if scale in c.known_effects.get(option, {}) and abs(effect.spreads) < NEAR:
                problems.append(
                    f"FLAGGED: components.{c.name}.known_effects.{option} explains an effect the audit no longer "
                    f"sees ({effect.spreads:+.1f} spreads; under {NEAR:g} there is none to explain, from {FAR:g} "
                    "one must be): remove it, or the note hides a change"
                )
    return AuditReport(spec.metric, scale, effects, baseline, problems, notes)


async def run_audit(
    spec: Any, root: Path, *, seeds: int, scale: str, timeout_s: float
) -> tuple[AuditReport | None, list[str]]:
    """Run every audited condition over ``seeds`` seeds, and one method changing every slot at once, in one
    process; each run's ``metrics.json`` is held to the metrics contract. The report (None when a run
    failed) and what broke the contract or the runs."""
    from experiments.metrics import Metrics
    from fars.commands.template_runs import contract_problems, launch, method_of_every_slot, run_argv, smoke_flags
    from fars.sandbox import SandboxError, read_sandbox_file

    work = root / "audit"
    work.mkdir(parents=True)
    conditions = [(slot, option, comps, seeds) for slot, option, comps in audit_plan(spec)]
    if len(spec.components) > 1:
        conditions.append(("every-component", "", method_of_every_slot(spec), 1))
    runs, made = [], []
    for slot, option, components, n in conditions:
        steps, flags = smoke_flags(spec, components, scale)
        for seed in range(n):
            name = f"{slot or 'baseline'}-{option or 'default'}-s{seed}"
            runs.append(run_argv(work / name, seed, steps, flags))
            made.append(((slot, option), name, flags))
    (work / "runs.json").write_text(json.dumps(runs), encoding="utf-8")
    argv = [sys.executable, "-m", "experiments.audit", str(spec.entry_path), str(work / "runs.json")]
    problems = await launch(spec, argv, work, root / "audit.log", timeout_s)
    results: dict[tuple[str, str], list[float]] = {}
    first: list[float] = []
    for key, name, flags in made:
        broken = contract_problems(spec, work, flags, file=f"{name}/metrics.json")
        if broken:
            problems += [f"{name}: {p}" for p in broken]
            continue
        if key[0] == "every-component":
            continue
        try:
            metrics = Metrics.model_validate_json(read_sandbox_file(work, f"{name}/metrics.json"))
        except (SandboxError, ValueError) as exc:  # checked just above; a file changed under us
            problems.append(f"{name}: {exc}"[:300])
            continue
        results.setdefault(key, []).append(float(metrics.final[spec.metric]))
        if key == ("", ""):
            first.append(metrics.curves.val_metric[0])
    if problems:
        return None, problems
    return judge(spec, results, scale, first=first), []
