"""The method space of a template: candidate methods, their plain-words descriptions, and plans from them.

A *method* changes some component slots of a template from the baseline's options (``{"optimizer":
"sgd", "schedule": "cosine"}``). Ideation offers candidates drawn from that space so even a weak model
picks a real, runnable method; Planning turns the chosen method into conditions: the baseline, the
method, one ablation per changed slot (the method with that slot put back), and, when asked, a
sensitivity sweep of one knob on the method. Templates with knobs only get plans over one knob's
values. Everything here is deterministic, so parallel projects can be steered to different methods.
"""

from __future__ import annotations

import itertools

from experiments.spec import TemplateSpec
from fars.literature.similarity import text_similarity
from fars.run.contracts import Condition, HypothesisRecord, MethodCandidate, TemplateChoice, Value


def rank_templates(area: str, specs: list[TemplateSpec]) -> list[TemplateChoice]:
    """Templates by relevance of their title, domain and description to the research area, best first."""
    scored = [
        TemplateChoice(
            name=s.name, relevance=round(text_similarity(area, f"{s.title}. {s.domain}. {s.description}"), 4)
        )
        for s in specs
    ]
    order = {s.name: i for i, s in enumerate(specs)}
    return sorted(scored, key=lambda c: (-c.relevance, order[c.name]))


def describe(spec: TemplateSpec, components: dict[str, str]) -> str:
    """A method in words, from the template's option descriptions: 'SGD with momentum (optimizer) and ...'."""
    parts = []
    for slot, option in components.items():
        what = spec.component(slot).options.get(option, option)
        parts.append(f"{what} ({slot}: {option})")
    if not parts:
        return "the baseline"
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def inert_slots(spec: TemplateSpec, method: dict[str, str]) -> dict[str, str]:
    """Slots of ``method`` whose option acts exactly as the baseline's in this setting, each with the reason.

    The template says so with ``acts_only_with`` (digits: Adam is AdamW unless the regularizer is weight
    decay); the other slots are read from the method, or the baseline where the method leaves them.
    """
    setting = {**spec.baseline_components(), **method}
    found: dict[str, str] = {}
    for slot, option in method.items():
        needs = spec.component(slot).acts_only_with.get(option)
        if needs and not any(setting.get(other) in options for other, options in needs.items()):
            wanted = " or ".join(f"{other} is {' or '.join(options)}" for other, options in needs.items())
            found[slot] = f"{slot}={option} acts as the baseline's {spec.component(slot).default} unless {wanted}"
    return found


def candidate_methods(spec: TemplateSpec, size: int, *, offset: int = 0, count: int = 3) -> list[MethodCandidate]:
    """``count`` methods that each change ``size`` slots, starting ``offset`` places into a fixed order.

    The order walks the slot combinations first and the options within them second, so neighbouring
    candidates (and neighbouring projects, given consecutive offsets) differ in which slots they change.
    """
    slots = spec.components
    size = max(1, min(size, len(slots)))
    if not slots:
        return []
    combos = list(itertools.combinations(slots, size))
    per_combo = [list(itertools.product(*(c.alternatives for c in combo))) for combo in combos]
    ordered: list[dict[str, str]] = []
    for depth in range(max(len(p) for p in per_combo)):
        for combo, options in zip(combos, per_combo, strict=True):
            if depth < len(options):
                method = {c.name: o for c, o in zip(combo, options[depth], strict=True)}
                if not inert_slots(spec, method):  # a method that changes a slot in name only is no method
                    ordered.append(method)
    if not ordered:
        return []
    start = offset % len(ordered)
    picked = [ordered[(start + i) % len(ordered)] for i in range(min(count, len(ordered)))]
    return [MethodCandidate(id=i + 1, components=m, summary=describe(spec, m)) for i, m in enumerate(picked)]


def knob_values(spec: TemplateSpec, knob: str, count: int) -> list[Value]:
    """Distinct values of a knob away from its default (choices, or multiples of a number clamped in range)."""
    k = spec.knob(knob)
    if k.kind == "choice":
        choices: list[Value] = [c for c in k.choices if c != k.default]
        return choices[:count]
    base = float(k.default) or 1.0
    factors = (3.0, 1 / 3, 10.0, 0.1) if k.log or k.kind == "int" else (2.0, 0.5, 4.0, 0.25)
    out: list[Value] = []
    for factor in factors:
        value = k.coerce(base * factor)
        if value != k.default and value not in out:
            out.append(value)
    return out[:count]


def component_conditions(
    spec: TemplateSpec,
    method: dict[str, str],
    *,
    ablations: bool = True,
    sensitivity: tuple[str, list[Value]] | None = None,
) -> list[Condition]:
    """Baseline, the method, one ablation per changed slot (when two or more changed), a sweep if asked."""
    conditions = [
        Condition(name="baseline", role="baseline", description="every component at the template's default"),
        Condition(name="method", role="method", components=dict(method), description=describe(spec, method)),
    ]
    if ablations and len(method) >= 2:
        for slot in method:
            kept = {s: o for s, o in method.items() if s != slot}
            conditions.append(
                Condition(
                    name=f"method-without-{slot}",
                    role="ablation",
                    components=kept,
                    of="method",
                    removed=slot,
                    description=f"the method with {slot} back at the baseline's {spec.component(slot).default}",
                )
            )
    return conditions + sweep_conditions(spec, method, {}, sensitivity)


def sweep_conditions(
    spec: TemplateSpec, method: dict[str, str], knobs: dict[str, Value], sensitivity: tuple[str, list[Value]] | None
) -> list[Condition]:
    """The method (its components and knobs) at each value of one knob: the sensitivity sweep, if asked."""
    if sensitivity is None:
        return []
    knob, values = sensitivity
    return [
        Condition(
            name=f"method@{knob}={value}",
            role="sensitivity",
            components=dict(method),
            knobs={**knobs, knob: value},
            of="method",
            description=f"the method with {knob}={value} (default {spec.knob(knob).default})",
        )
        for value in values
    ]


def idea_conditions(
    spec: TemplateSpec,
    record: HypothesisRecord,
    method: dict[str, str],
    *,
    ablations: bool = True,
    sensitivity: tuple[str, list[Value]] | None = None,
) -> list[Condition]:
    """An open idea's conditions: the baseline, the method (its components and knobs; none for an idea that is
    code alone, whose code condition the search adds), and one ablation per named part that sets something (the
    method with that part's settings put back) when there are two parts or more; code parts are ablated by the
    code search, switch by switch. A sweep of one knob on the method, if asked."""
    knobs = {k: v for k, v in record.knobs.items() if not (sensitivity and k == sensitivity[0])}
    conditions = [Condition(name="baseline", role="baseline", description="every setting at the template's default")]
    if not (method or knobs):
        return conditions
    what = ", ".join([describe(spec, method)] * bool(method) + [f"{k}={v}" for k, v in knobs.items()])
    conditions.append(Condition(name="method", role="method", components=dict(method), knobs=knobs, description=what))
    if ablations and len(record.parts) >= 2:
        for part in record.parts:
            if part.code or not part.settings:
                continue
            put_back = [s for s in part.settings if s in method or s in knobs]
            if not put_back:
                continue
            conditions.append(
                Condition(
                    name=f"method-without-{part.name}",
                    role="ablation",
                    components={s: o for s, o in method.items() if s not in put_back},
                    knobs={k: v for k, v in knobs.items() if k not in put_back},
                    of="method",
                    removed=part.name,
                    description=f"the method without {part.name} ({', '.join(put_back)} back at the baseline's)",
                )
            )
    return conditions + sweep_conditions(spec, method, knobs, sensitivity)


def knob_conditions(spec: TemplateSpec, knob: str, values: list[Value]) -> list[Condition]:
    """Baseline and one condition per value of a knob (templates without components)."""
    default = spec.knob(knob).default
    return [
        Condition(name="baseline", role="baseline", description=f"{knob} at its default {default}"),
        *(
            Condition(
                name=f"{knob}={v}", role="variant", knobs={knob: v}, description=f"{knob}={v} instead of {default}"
            )
            for v in values
        ),
    ]


def study_terms(spec: TemplateSpec, method: dict[str, str]) -> list[str]:
    """Words a text about this study should share some of: the task, its metric and the method's parts."""
    terms = [spec.title, spec.domain, spec.metric.replace("_", " "), *method, *method.values()]
    terms += [spec.component(s).options.get(o, "") for s, o in method.items()]
    return [t for t in terms if t]
