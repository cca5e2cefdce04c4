"""The parts of a paper the harness writes from the records: setup, results, and (for weak models) the prose.

Every number goes through ``fars.paper.grounding.Numbers`` with the field it came from, so grounding traces
it by provenance. The results paragraph states each condition's corrected test in the words the
claim checker reads (significantly better, significantly worse, no significant difference), so the
harness's own text is always consistent with the tests. Title, abstract, introduction and discussion
written here replace the model's where its text is degenerate (``fars.paper.degenerate``): they state the
study and what the corrected tests show, and claim nothing the tests do not.
"""

from __future__ import annotations

import math
import re

from experiments.spec import TemplateSpec
from fars.paper.document import ResultsTable
from fars.paper.grounding import Numbers
from fars.run.contracts import SEARCH_WINNER, Condition, ConditionResult, HypothesisRecord, Plan, Results

VERDICT_WORDS = {
    "better": "significantly better than the baseline",
    "worse": "significantly worse than the baseline",
    "no significant difference": "no significant difference from the baseline",
    "equivalent": "equivalent to the baseline within the pre-registered margin",
    "inconclusive": "inconclusive (the interval spans both no difference and the predicted effect)",
    "untested": "not tested against the baseline (too few seeds)",
    "baseline": "the baseline",
}
# the same verdicts as what a condition did (a predicate: "the method was significantly better than ...")
VERDICT_PREDICATES = {
    "better": "was significantly better than the baseline",
    "worse": "was significantly worse than the baseline",
    "no significant difference": "showed no significant difference from the baseline",
    "equivalent": "was equivalent to the baseline within the pre-registered margin",
    "inconclusive": "was inconclusive against the baseline (its interval spans both no difference and the predicted effect)",
    "untested": "could not be tested against the baseline (too few seeds)",
    "baseline": "is the baseline",
}


def untested_why(results: Results, name: str) -> str:
    """Why a condition has no test against the baseline: too few seeds, or seeds that all agreed in both."""
    row, base = results.conditions[name], results.conditions.get("baseline")
    if base is not None and min(row.metric.n, base.metric.n) >= 2 and row.metric.std == 0 == base.metric.std:
        return "every seed of it and of the baseline gave the same value, so a t-test has no spread to use"
    return "too few seeds"


def verdict_words(results: Results, name: str, *, predicate: bool = False) -> str:
    """A condition's verdict in words ('significantly better than the baseline'; as a predicate, 'was ...')."""
    verdict = results.conditions[name].verdict
    words = (VERDICT_PREDICATES if predicate else VERDICT_WORDS)[verdict]
    if verdict == "inconclusive" and results.conditions[name].family != "primary":
        # only the primary carries the idea's prediction; a secondary or follow-up is judged against the study's
        # effect of interest (a relay model asked what "the predicted effect" of an ablation was)
        return words.replace("the predicted effect", "the effect of interest")
    return words.replace("(too few seeds)", f"({untested_why(results, name)})") if verdict == "untested" else words


def sentence_case(text: str) -> str:
    """The text with its first letter capitalised (the rest left as written)."""
    return text[:1].upper() + text[1:] if text else text


_DANGLING = {"a", "an", "and", "as", "at", "by", "for", "from", "in", "of", "on", "or", "the", "to", "with"}


def article(word: str) -> str:
    """'a' or 'an' before ``word`` as it is read aloud ("an accuracy", "a val_bpc", "an eval_return")."""
    return "an" if word[:1].lower() in "aeio" else "a"


def clip_words(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters at a word boundary (never inside a word)."""
    if len(text) <= limit:
        return text
    cut = text[: limit + 1].rsplit(" ", 1)[0] if " " in text[: limit + 1] else text[:limit]
    words = cut.rstrip(" ,;:-(").split(" ")
    while len(words) > 1 and words[-1].lower() in _DANGLING:  # "... control of" reads as cut off
        words.pop()
    return " ".join(words).rstrip(" ,;:-(")


def in_sentence(title: str) -> str:
    """A template's title inside a sentence: a capitalised first word is lowered; names such as GPT, CartPole
    or ML keep their case ("Character-level GPT" -> "character-level GPT")."""
    first, _, rest = title.partition(" ")
    if first[:1].isupper() and first[1:] == first[1:].lower():
        first = first.lower()
    return f"{first} {rest}" if rest else first


def option_label(spec: TemplateSpec, slot: str, option: str) -> str:
    """An option as a title names it: its name as its description spells it ("ReLU", "RMSNorm", "JSON"),
    and the slot after it unless the name already says it ("RMSNorm", not "RMSNorm norm")."""

    def key(word: str) -> str:
        return word.lower().replace("_", "").replace("-", "")

    words = [w.strip(".,;:()'\"") for w in spec.component(slot).options.get(option, "").split()]
    words += [w.strip(".,;:()'\"") for w in spec.description.split()]
    name = next((w for w in words if key(w) == key(option)), option.replace("_", " "))
    if name == option and option.isalpha() and len(option) <= 5 and not set(option) & set("aeiou"):
        name = option.upper()  # an acronym no text spells ("cnn", "mlp", "sgd"): a relay title read "Cnn architecture"
    return name if key(slot) in key(name) else f"{name} {slot.replace('_', ' ')}"


def method_phrase(spec: TemplateSpec, components: dict[str, str]) -> str:
    """A method in a few words for a title: "ReLU activation and RMSNorm"."""
    return " and ".join(option_label(spec, slot, option) for slot, option in components.items())


def _path(name: str, field: str) -> str:
    return f"results.conditions.{name}.{field}"


def described(spec: TemplateSpec, components: dict[str, str], numbers: Numbers) -> str:
    """``fars.stages.methods.describe`` with the numbers of the template's option descriptions traced to them."""
    if not components:
        return "the baseline"
    parts = [
        numbers.numbers_in(spec.component(slot).options.get(option, option), f"template.components.{slot}.{option}")
        + f" ({slot}: {option})"
        for slot, option in components.items()
    ]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def metric_value(numbers: Numbers, results: Results, name: str) -> str:
    """A condition's mean metric, with its interval when there is one."""
    row = results.conditions[name]
    text = numbers.num(row.metric.mean, _path(name, "metric.mean"))
    if row.ci_low is not None and row.ci_high is not None:
        level = numbers.num(100 * results.confidence, "results.confidence", "{:g}%")
        text += (
            f" ({level} interval {numbers.num(row.ci_low, _path(name, 'ci_low'))} to "
            f"{numbers.num(row.ci_high, _path(name, 'ci_high'))})"
        )
    return text


def test_clause(numbers: Numbers, results: Results, name: str) -> str:
    """'a difference of +0.0120 (Hedges' g = 0.85; p = 0.04, Holm-adjusted p = 0.08): no significant difference ...'."""
    row: ConditionResult = results.conditions[name]
    parts = []
    if row.difference is not None:
        parts.append(f"a difference of {numbers.num(row.difference, _path(name, 'difference'), '{:+.4f}')}")
    # the primary's difference with its interval: a relay paper said "a gain of the predicted size is unlikely
    # given the interval of the difference", and its reviewer found no such interval in it
    i, primary = results.outcome(name, family="primary") or (0, None)
    if parts and primary is not None and primary.ci_low is not None and primary.ci_high is not None:
        level = numbers.num(100 * primary.confidence, f"results.comparisons[{i}].confidence", "{:g}%")
        parts[0] += (
            f" ({level} interval {numbers.num(primary.ci_low, f'results.comparisons[{i}].ci_low', '{:+.4f}')} to "
            f"{numbers.num(primary.ci_high, f'results.comparisons[{i}].ci_high', '{:+.4f}')})"
        )
    stats = []
    if row.effect_size is not None:
        stats.append(f"Hedges' g = {numbers.num(row.effect_size, _path(name, 'effect_size'), '{:.2f}')}")
    if row.family == "primary" and row.p_vs_baseline is not None:  # a family of one: nothing to adjust
        kind = {"tost": "TOST", "tost-beyond-margin": "TOST", "one-sided": "one-sided Welch"}.get(
            row.test_kind or "", "two-sided Welch"
        )
        stats.append(f"{kind} p = {numbers.num(row.p_vs_baseline, _path(name, 'p_vs_baseline'), '{:.3g}')}")
        if row.test_kind == "tost-beyond-margin":
            # TOST's p says only that equivalence failed; the verdict is the interval's, past the margin, and the
            # two-sided Welch p says the difference is real (relay reviewers read "TOST p = 1: significantly
            # better" as a superiority claim on the wrong test, and asked for the superiority test)
            stats.append("not equivalent, and the difference's whole interval lies beyond the margin")
            if row.p_two_sided is not None:
                stats.append(
                    f"two-sided Welch p = {numbers.num(row.p_two_sided, _path(name, 'p_two_sided'), '{:.3g}')}"
                )
    else:
        if row.p_vs_baseline is not None:
            stats.append(f"Welch p = {numbers.num(row.p_vs_baseline, _path(name, 'p_vs_baseline'), '{:.3g}')}")
        if row.p_adjusted is not None:
            stats.append(f"Holm-adjusted p = {numbers.num(row.p_adjusted, _path(name, 'p_adjusted'), '{:.3g}')}")
    detail = f" ({'; '.join(stats)})" if stats else ""
    return f"{', '.join(parts) or 'no test'}{detail}: {verdict_words(results, name)}"


# the other conditions' verdicts, grouped, as the results paragraph states them (the table gives their numbers)
_GROUPED = (
    ("better", "significantly better than the baseline"),
    ("worse", "significantly worse than the baseline"),
    ("equivalent", "equivalent to the baseline within the pre-registered margin"),
    ("no significant difference", "not significantly different from the baseline"),
    ("inconclusive", "inconclusive against the baseline"),
    ("untested", "not tested against the baseline"),
)


def findings(results: Results, numbers: Numbers) -> str:
    """The results paragraph: the baseline, the primary comparison with its test, the other conditions' verdicts
    (their numbers are in the results table: relay reviewers read a paragraph restating every row as a machine
    report), and what each ablated part contributes. A study without a registered primary states every row."""
    metric = results.metric
    base = results.conditions["baseline"]
    lines = [
        f"The baseline reached a mean {metric} of {metric_value(numbers, results, 'baseline')} over "
        f"{numbers.num(base.metric.n, _path('baseline', 'metric.n'), '{:d}')} seeds."
    ]
    primary = next((n for n, r in results.conditions.items() if r.family == "primary"), None)
    for name in results.conditions:
        if name == "baseline" or (primary is not None and name != primary):
            continue
        lead = f"The primary comparison, condition {name}," if name == primary else f"Condition {name}"
        lines.append(f"{lead} reached {metric_value(numbers, results, name)}; {test_clause(numbers, results, name)}.")
    if primary is not None:
        others = [
            n for n, r in results.conditions.items() if n not in ("baseline", primary) and not r.registered_against
        ]
        groups = []
        for verdict, words in _GROUPED:
            named = [n for n in others if results.conditions[n].verdict == verdict]
            if named:
                joined = named[0] if len(named) == 1 else ", ".join(named[:-1]) + " and " + named[-1]
                groups.append(f"{joined} {'was' if len(named) == 1 else 'were'} {words}")
        if groups:
            lines.append(
                "The results table gives every condition's mean, interval and test; of the other conditions, "
                + "; ".join(groups)
                + "."
            )
    lines += ablation_sentences(results, numbers)
    lines += other_values(results, numbers)
    lines.append(tests_sentence(results, numbers))
    return " ".join(lines)


def other_values(results: Results, numbers: Numbers) -> list[str]:
    """The runs' other final values (training loss and accuracy, validation loss), as means over seeds: relay
    reviewers read "every condition fits the training set" in a discussion whose numbers were nowhere in the
    paper. A value equal in every condition is said once."""
    keys = list(dict.fromkeys(k for r in results.conditions.values() for k in r.secondary))
    said = []
    for key in keys:
        rows = [(n, r.secondary[key].mean) for n, r in results.conditions.items() if key in r.secondary]
        shown = [(n, numbers.num(v, f"results.conditions.{n}.secondary.{key}.mean", "{:.3g}")) for n, v in rows]
        if len({f"{v:.3g}" for _, v in rows}) == 1 and len(rows) > 1:
            said.append(f"{key} {shown[0][1]} in every condition")
        elif rows:
            said.append(f"{key} " + ", ".join(f"{value} ({name})" for name, value in shown))
    return [f"Other final values, as means over seeds: {'; '.join(said)}."] if said else []


def ablation_sentences(results: Results, numbers: Numbers) -> list[str]:
    """What each removed part contributes: every ablation registered against the condition it removes the part
    from, with the difference, its interval and the corrected test (each reviewer of the relay runs asked for the
    ablations against the full method, not against the baseline)."""
    out = []
    level = numbers.num(100 * results.confidence, "results.confidence", "{:g}%")
    for i, o in enumerate(results.comparisons):
        if o.reference == "baseline" or o.difference is None or "-without-" not in o.candidate:
            continue
        path = f"results.comparisons[{i}]"
        part = o.candidate.split("-without-", 1)[1]
        interval = (
            f" ({level} interval {numbers.num(o.ci_low, f'{path}.ci_low', '{:+.4f}')} to "
            f"{numbers.num(o.ci_high, f'{path}.ci_high', '{:+.4f}')}"
            if o.ci_low is not None and o.ci_high is not None
            else " ("
        )
        stats = [f"Welch p = {numbers.num(o.p_value, f'{path}.p_value', '{:.3g}')}"] if o.p_value is not None else []
        if o.p_adjusted is not None:
            stats.append(f"Holm-adjusted p = {numbers.num(o.p_adjusted, f'{path}.p_adjusted', '{:.3g}')}")
        said = {
            "better": f"removing it helped {o.reference}",
            "worse": f"{part} contributes to {o.reference}",
            "no significant difference": "no significant difference",
            "inconclusive": "inconclusive",
            "equivalent": "equivalent within its margin",
        }[o.verdict]
        row = results.conditions.get(o.candidate)
        at = f"results.conditions.{o.candidate}"
        versus_baseline = (
            f" Against the baseline it differed by {numbers.num(row.difference, f'{at}.difference', '{:+.4f}')} "
            f"(two-sided Welch p = {numbers.num(row.p_vs_baseline, f'{at}.p_vs_baseline', '{:.3g}')}, descriptive)."
            if row is not None and row.difference is not None and row.p_vs_baseline is not None
            else ""
        )
        out.append(
            f"Against {o.reference} itself, removing {part} (condition {o.candidate}) changed {results.metric} by "
            f"{numbers.num(o.difference, f'{path}.difference', '{:+.4f}')}{interval}"
            + ("; " if interval != " (" and stats else "")
            + "; ".join(stats)
            + f"): {said}.{versus_baseline}"
        )
    return out


def tests_sentence(results: Results, numbers: Numbers) -> str:
    """How the conditions were tested against the baseline: the registered families, or one Holm family."""
    alpha = numbers.num(results.alpha, "results.alpha", "{:g}")
    rows = {n: r for n, r in results.conditions.items() if n != "baseline"}
    if not any(r.family for r in rows.values()):
        return (
            f"Tests are two-sided Welch t-tests of each condition against the baseline, corrected for "
            f"{numbers.num(len(rows), 'results.conditions#tested', '{:d}')} comparisons with Holm's method at a "
            f"family-wise level of {alpha}."
        )
    parts = []
    for name, row in rows.items():
        if row.family == "primary":
            test = numbers.numbers_in(row.test, _path(name, "test")) if row.test else "Welch t-test"
            parts.append(
                f"the pre-registered primary comparison ({name} against the baseline) is tested alone by a "
                f"{test}, with no correction (a family of one)"
            )
    against = sorted({r.registered_against for r in rows.values() if r.registered_against})
    if against:
        ablations = [n for n, r in rows.items() if r.registered_against]
        parts.append(
            f"each ablation ({', '.join(ablations)}) is a pre-registered secondary comparison against the condition "
            f"it removes a part from ({', '.join(against)}), given above and in the results table, with Holm's "
            "correction among the secondary comparisons"
        )
    for family, what in (("secondary", "pre-registered secondary"), ("exploratory", "exploratory (not in the plan)")):
        members = [
            n
            for n, r in rows.items()
            if r.family == family and r.p_vs_baseline is not None and not r.registered_against
        ]
        if members:
            count = numbers.num(len(members), f"results.conditions#{family}", "{:d}")
            parts.append(
                f"the {count} {what} conditions ({', '.join(members)}) are tested two-sided against the baseline "
                "with Holm's correction among themselves"
                if len(members) > 1
                else f"the {what} condition {members[0]} is tested two-sided against the baseline, uncorrected (the "
                "only one in its family)"
            )
    return sentence_case("; ".join(parts)) + f", each at a level of {alpha}."


def setup_text(plan: Plan, spec: TemplateSpec, numbers: Numbers, results: Results | None = None) -> str:
    """The experimental setup, from the plan: the task, each condition, seeds and steps; and the conditions added
    after the plan (the code search's, the model's follow-ups), so the count matches the results."""
    conditions = "; ".join(
        f"{c.name}: {numbers.numbers_in(c.description, f'plan.conditions[{i}].description')}"
        for i, c in enumerate(plan.conditions)
    )
    seeds = ", ".join(numbers.num(s, f"plan.seeds[{i}]", "{:d}") for i, s in enumerate(plan.seeds))
    count = numbers.num(len(plan.conditions), "plan.conditions#count", "{:d}")
    plural = "condition" if len(plan.conditions) == 1 else "conditions"
    return (
        f"{numbers.numbers_in(spec.description, 'template.description')} The plan has {count} {plural} "
        f"({conditions}). Every condition "
        f"runs for {numbers.num(plan.steps, 'plan.steps', '{:d}')} steps with seeds {seeds}; Table 1 lists every "
        f"setting the conditions ran with and where it differs from the template's default. We report the final {spec.metric} "
        f"({'higher' if spec.higher_is_better else 'lower'} is better).{_added_conditions(plan, results, numbers)}"
        f"{training_length(plan, spec.metric, numbers)}{pilot_reuse(plan, numbers)}{_seeds_sentence(plan, numbers)}"
    )


def _seeds_sentence(plan: Plan, numbers: Numbers) -> str:
    """The power analysis that chose the seeds, as a sentence of the setup."""
    sentence = _power_sentence(plan)
    if sentence is None:
        return ""
    said = numbers.numbers_in(sentence, "plan.seed_design.reason")
    return f" The number of seeds comes from a power analysis on the pilot: {said[0].lower()}{said[1:]}."


def pilot_reuse(plan: Plan, numbers: Numbers) -> str:
    """Where the pilot's runs are the baseline's, the setup says so and why (a reviewer of the second relay run
    asked whether the power analysis and the test reuse the same data)."""
    if plan.pilot is None:
        return ""
    if not plan.pilot.reused:
        # a reviewer of the fourth relay run asked why the baseline moved from the pilot's 0.9769 to 0.9729
        seeds = ", ".join(numbers.num(s, f"plan.pilot.seeds[{i}]", "{:d}") for i, s in enumerate(plan.pilot.seeds))
        return (
            f" The pilot ran the baseline on seeds of its own ({seeds}), apart from the study's, so that its spread "
            "could choose the number of seeds without its runs being part of the test; the baseline's runs here are "
            "new ones, on the study's seeds, so their mean is not the pilot's."
        )
    return (
        " The baseline's runs are the pilot's own: the seed budget was no larger than the pilot, so the pilot "
        "could not change how many seeds ran, and its spread sized the design without choosing it."
    )


def training_length(plan: Plan, metric: str, numbers: Numbers) -> str:
    """What the pilot says of the training length, as a limit where the baseline had not converged (empty
    without a pilot trend): still improving at the end, or unstable (it peaked and fell back)."""
    pilot = plan.pilot
    if pilot is None or pilot.trend is None or pilot.late_change is None:
        return ""
    seeds = numbers.num(len(pilot.values), "plan.pilot.values#count", "{:d}")
    sd = numbers.num(pilot.sd, "plan.pilot.sd", "{:.3g}")
    spread = f"the noise floor {sd}" if pilot.sd_floored else f"its seed-to-seed spread (sd {sd})"
    late = numbers.num(abs(pilot.late_change), "plan.pilot.late_change", "{:.3g}")
    steps = numbers.num(plan.steps, "plan.steps", "{:d}")
    if pilot.trend == "unstable" and pilot.best is not None and pilot.end is not None:
        best = numbers.num(pilot.best[1], "plan.pilot.best", "{:.4g}")
        at = numbers.num(pilot.best[0], "plan.pilot.best#step", "{:d}")
        end = numbers.num(pilot.end[1], "plan.pilot.end", "{:.4g}")
        return (
            f" A limit: the baseline's pilot ({seeds} seeds) was unstable at this length: its mean {metric} was best "
            f"({best}) at step {at} and ended at {end}, so a final value depends on where training stops."
        )
    if pilot.trend == "still improving":
        moved = "raised" if pilot.late_change > 0 else "lowered"
        return (
            f" A limit: the baseline's pilot ({seeds} seeds) was still improving at {steps} steps (the last fifth of "
            f"training {moved} its mean {metric} by {late}; {spread}), so the comparison is at this fixed training "
            "length, not at convergence."
        )
    return (
        f" The baseline's pilot ({seeds} seeds) had converged by {steps} steps: the last fifth of training changed its "
        f"mean {metric} by {late}, within {spread}."
    )


def _added_conditions(plan: Plan, results: Results | None, numbers: Numbers) -> str:
    """The conditions the results hold beyond the plan's, in one sentence (empty when there are none)."""
    planned = {c.name for c in plan.conditions}
    added = [n for n in (results.conditions if results else {}) if n not in planned]
    if not added or results is None:
        return ""
    code = [n for n in added if n == SEARCH_WINNER or n.startswith(f"{SEARCH_WINNER}-without-")]
    followups = [n for n in added if results.conditions[n].role == "followup"]
    said = []
    if code:
        said.append(f"the code we wrote against the template and its ablations ({', '.join(code)})")
    if followups:
        said.append(f"exploratory follow-up conditions chosen after reading the results ({', '.join(followups)})")
    rest = [n for n in added if n not in code and n not in followups]
    if rest:
        said.append(", ".join(rest))
    total = numbers.num(len(results.conditions), "results.conditions#count", "{:d}")
    return f" Added after the plan: {'; '.join(said)}, for {total} conditions in all."


def _cell(numbers: Numbers, value: object, path: str) -> str:
    """A table cell: a number traced to ``path``, anything else as written."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return numbers.num(value, path, "{:d}" if isinstance(value, int) else "{:g}")


# The plan's reasons name the config keys that set a value (for the user who runs the study); a paper's reader
# gets what the key means. Relay reviewers quoted "experiment.effect_sds" from a paper as pipeline text.
_READER_WORDS = (
    (re.compile(r"\bexperiment\.seeds caps them"), "the study's seed budget caps them"),
    (
        re.compile(r"\bexperiment\.plan_budget_s=\S+ at (\S+) s a run caps them"),
        r"the study's compute budget (at \1 s of training a run) caps them",
    ),
    (re.compile(r", experiment\.effect_sds\)"), ", the smallest effect of interest)"),
    (re.compile(r"\(experiment\.effect\)"), "(the smallest effect of interest set for this study)"),
    (re.compile(r" \(experiment\.seeds\)"), ""),
)


def reader_words(text: str) -> str:
    """``text`` (a plan's reason) with the config keys it names said as what they mean, for a paper."""
    for pattern, words in _READER_WORDS:
        text = pattern.sub(words, text)
    return text


def _power_sentence(plan: Plan) -> str | None:
    """The seed design's own sentence, where a power analysis chose the seeds (else None)."""
    design = plan.seed_design
    powered = design is not None and design.method == "power" and design.reason
    return reader_words(design.reason.rstrip(".")) if powered and design is not None else None


def seeds_reason(plan: Plan) -> str:
    """Why the plan has as many seeds as it has, in words (the seed design's own sentence when there is one)."""
    design = plan.seed_design
    if design is None:
        return "the configured count"
    said = _power_sentence(plan)
    if said is not None:
        return said
    return "the configured count" if design.method == "fixed" else "a power analysis on the pilot's spread"


def setup_table(plan: Plan, spec: TemplateSpec, numbers: Numbers, results: Results | None = None) -> ResultsTable:
    """Table 1: every setting the conditions ran with (the template's components and knobs at the values used,
    steps, seeds and why that many), and every condition's departures from the template's defaults, those added
    after the plan (the model's follow-ups) included. A knob that acts only under options no condition took
    (``Knob.used_with``) is left out; one that acts in some conditions says under which."""
    scale = spec.scale(plan.scale).knobs if plan.scale in spec.scales or plan.scale == "ci" else {}
    rows = [["template", f"{spec.title} ({spec.name})", "plan"]]
    for slot, option in spec.baseline_components().items():
        shown = "none" if option == "none" else option_label(spec, slot, option)  # not "none regularizer"
        rows.append([slot, shown, "template default (baseline)"])
    ran = [{**spec.baseline_components(), **c.components} for c in plan.conditions]
    ran += [{**spec.baseline_components(), **r.components} for r in (results.conditions if results else {}).values()]
    for name, default in spec.defaults().items():
        knob = spec.knob(name)
        users = [c for c in ran if knob.acts_under(c)]
        if not users:  # acts only under options no condition took (dropout's rate under regularizer none)
            continue
        value = scale.get(name, default)
        where = (
            f"set for this study's size (default {default})"
            if name in scale and value != default
            else "template default"
        )
        if len(users) < len(ran):
            where += " (acts with " + "; ".join(f"{slot} {' or '.join(o)}" for slot, o in knob.used_with.items()) + ")"
        path = f"template.scales.{plan.scale}.{name}" if name in scale else f"template.{name}"
        rows.append([name, _cell(numbers, value, path), where])
    rows.append(["steps", numbers.num(plan.steps, "plan.steps", "{:d}"), "set for this study's size"])
    sizes = {n: r.parameters for n, r in (results.conditions if results else {}).items() if r.parameters}
    if sizes:
        said = "; ".join(
            f"{name}: {numbers.num(count, f'results.conditions.{name}.parameters', '{:,d}')}"
            for name, count in sizes.items()
        )
        same = len(set(sizes.values())) == 1
        rows.append(
            [
                "trainable parameters",
                said
                if not same
                else numbers.num(
                    next(iter(sizes.values())), f"results.conditions.{next(iter(sizes))}.parameters", "{:,d}"
                ),
                "every condition" if same else "per condition (measured)",
            ]
        )
    count = numbers.num(len(plan.seeds), "plan.seeds#count", "{:d}")
    # the power analysis's sentence stands in the setup's prose: as a cell it made Table 1 too tall to share a
    # page (a relay run's PDF gave it a page of its own, half white)
    in_setup = _power_sentence(plan) is not None
    rows.append(
        ["seeds per condition", count, "by a power analysis (in the setup)" if in_setup else seeds_reason(plan)]
    )
    for i, c in enumerate(plan.conditions[1:], 1):
        changed = [option_label(spec, slot, option) for slot, option in c.components.items()]  # "CNN architecture"
        changed += [f"{k} = {_cell(numbers, v, f'plan.conditions[{i}].knobs.{k}')}" for k, v in c.knobs.items()]
        rows.append([f"condition {c.name}", "; ".join(changed) or "as the baseline", c.role])
    planned = {c.name for c in plan.conditions}
    for name, row in (results.conditions if results else {}).items():
        if name in planned or row.role != "followup":
            continue
        changed = [option_label(spec, slot, option) for slot, option in row.components.items()]
        changed += [f"{k} = {_cell(numbers, v, f'results.conditions.{name}.knobs.{k}')}" for k, v in row.knobs.items()]
        rows.append([f"condition {name}", "; ".join(changed) or "as the baseline", "follow-up (after the results)"])
    return ResultsTable(
        caption="Settings every condition ran with; a condition's row lists what it changes from the baseline.",
        header=["Setting", "Value", "Source"],
        rows=rows,
    )


def _main(results: Results) -> str | None:
    return next((n for n, r in results.conditions.items() if r.role in ("method", "variant")), None)


def headline(results: Results) -> str:
    """The main finding in a few words, as the corrected test of the main condition has it."""
    main = _main(results)
    metric = results.metric.replace("_", " ")
    if main is None:
        return f"{metric} of the baseline"
    verdict = results.conditions[main].verdict
    return {
        "better": f"a significantly better {metric}",
        "worse": f"a significantly worse {metric}",
    }.get(verdict, f"no significant difference in {metric}")


def method_condition(plan: Plan) -> Condition:
    """The plan's method: its second condition, or, for an open idea that is code alone (a plan of the baseline
    only), the code search's winner."""
    if len(plan.conditions) > 1:
        return plan.conditions[1]
    return Condition(
        name=SEARCH_WINNER, role="method", description="our change to the template's code (its diff is in the appendix)"
    )


def harness_title(spec: TemplateSpec, plan: Plan, results: Results) -> str:
    """A title that states the study and its result."""
    main = method_condition(plan)
    what = (
        method_phrase(spec, main.components)
        if main.components
        else ", ".join(f"{k}={v}" for k, v in main.knobs.items())
    )
    main_result = _main(results)
    verdict = results.conditions[main_result].verdict if main_result is not None else None
    metric = results.metric.replace("_", " ")
    task = in_sentence(spec.title)
    # a sentence, not "X on Y: a significantly better val accuracy" (a relay reviewer: "generic and ungrammatical")
    said = {
        "better": f"{clip_words(what, 70)} significantly improves {metric} on {task}",
        "worse": f"{clip_words(what, 70)} significantly worsens {metric} on {task}",
    }.get(verdict or "", f"{clip_words(what, 70)} on {task}: {headline(results)}")
    return clip_words(sentence_case(said), 120)


def harness_abstract(
    spec: TemplateSpec, plan: Plan, results: Results, hypothesis: HypothesisRecord, numbers: Numbers
) -> str:
    """The abstract: question, design, the main corrected test, the ablations."""
    main = _main(results)
    method = method_condition(plan)
    what = (
        described(spec, method.components, numbers)
        if method.components
        else numbers.numbers_in(method.description, "plan.conditions[1].description")
    )
    ablations = [c for c in plan.conditions if c.role == "ablation"]
    count = numbers.num(len(ablations), "plan.conditions#ablations", "{:d}")
    design = f"the baseline with {what}" + (
        f", and {count} ablations that each remove one component" if ablations else ""
    )
    parts = [
        # a relay paper's reviewers read "We test a hypothesis about X (domain): ..." as pasted boilerplate
        f"On {in_sentence(spec.title)}, we test the prediction that "
        f"{numbers.numbers_in(after_colon(hypothesis.statement.rstrip('.'), template_words(spec)), 'ideation.chosen.statement')}.",
        f"We compare {design}, over {numbers.num(len(plan.seeds), 'plan.seeds#count', '{:d}')} seeds at "
        f"{numbers.num(plan.steps, 'plan.steps', '{:d}')} steps each.",
    ]
    if main is not None:
        parts.append(
            f"The baseline reached {article(results.metric)} {results.metric} of "
            f"{metric_value(numbers, results, 'baseline')} and the "
            f"{main} reached {metric_value(numbers, results, main)}; {test_clause(numbers, results, main)}."
        )
    for cond in ablations:
        if cond.name in results.conditions:
            said = verdict_words(results, cond.name, predicate=True)
            parts.append(f"Without its {cond.removed} ({cond.name}), the method {said}.")
    return " ".join(parts)


def harness_introduction(spec: TemplateSpec, plan: Plan, hypothesis: HypothesisRecord, numbers: Numbers) -> str:
    """The introduction: the question, why it might hold, and how the experiment answers it."""
    method = method_condition(plan)
    # the method's short name, as the title has it: its options' full descriptions belong to the setup (the third
    # relay run's reviewers read "two 3x3 convolutions (width/2, ...) (architecture: cnn) and ..." as pasted text)
    what = (
        method_phrase(spec, method.components)
        if method.components
        else numbers.numbers_in(method.description, "plan.conditions[1].description")
    )
    verb = "change" if len(method.components) > 1 else "changes"
    return (
        f"This paper asks whether {what} {verb} the final {spec.metric} of {in_sentence(spec.title)} ({spec.domain}). "
        f"{numbers.numbers_in(hypothesis.rationale.rstrip('.'), 'ideation.chosen.rationale')}. We answer with a "
        "small controlled experiment: every condition shares the template, the data and the seeds, and only the "
        "components under test change."
    )


def template_words(spec: TemplateSpec) -> str:
    """A template's own texts (its description, options and knobs' help), where its words' usual case shows."""
    options = " ".join(f"{o} {d}" for c in spec.components for o, d in c.options.items())
    return " ".join([spec.description, options, *(k.help for k in spec.knobs)])


def after_colon(text: str, context: str = "") -> str:
    """A sentence continued after a colon (or "that"): its first word in lower case unless it is a name or an
    acronym (a relay run's reviewer quoted "...(image classification): Switching ..." as spliced text). A word
    the ``context`` (the template's texts) writes in lower case and never capitalised inside a sentence is no
    name ("Cosine decay" -> "cosine decay"; "Adam", written "Adam" there, keeps its capital)."""
    first = text.split(" ", 1)[0]
    # only words that start a sentence and are no name: an article, or a verb's -ing form ("Switching the MLP ...");
    # "Adam with dropout raises ..." keeps its capital
    common = first in ("The", "A", "An", "Each", "Every", "Both") or (first.endswith("ing") and first[1:].islower())
    if not common and first.isalpha() and first[1:].islower() and context:
        lower = re.search(rf"(?<![\w-]){re.escape(first.lower())}(?![\w-])", context) is not None
        named = re.search(rf"[a-z,;]\s+{re.escape(first)}(?![\w-])", context) is not None
        common = lower and not named
    return text[0].lower() + text[1:] if common and first.isalpha() else text


def other_measures(results: Results, numbers: Numbers, most: int = 3) -> str:
    """The measures beside the metric that moved most between the baseline and the main condition, as
    values only (they were not tested): llm_judge's position bias, a training run's losses."""
    main = _main(results)
    if main is None or "baseline" not in results.conditions:
        return ""
    base, cond = results.conditions["baseline"].secondary, results.conditions[main].secondary
    moved = []
    for key in sorted(set(base) & set(cond)):
        a, b = base[key].mean, cond[key].mean
        if key == results.metric or not (math.isfinite(a) and math.isfinite(b)) or a == b:
            continue
        moved.append((abs(b - a) / max(abs(a), abs(b)), key))
    if not moved:
        return ""
    where = "the method" if main == "method" else f"condition {main}"
    parts = [
        f"{key.replace('_', ' ')} was {numbers.num(base[key].mean, _path('baseline', f'secondary.{key}.mean'))} "
        f"in the baseline and {numbers.num(cond[key].mean, _path(main, f'secondary.{key}.mean'))} in {where}"
        for _, key in sorted(moved, reverse=True)[:most]
    ]
    return (
        "Beside the tested metric, the runs recorded other measures (means over seeds, not tested): "
        + "; ".join(parts)
        + "."
    )


def harness_discussion(spec: TemplateSpec, plan: Plan, results: Results, numbers: Numbers) -> str:
    """The discussion: what the corrected tests show, what the ablations add, and the limits."""
    lines = []
    for name in results.conditions:
        if name != "baseline":
            lines.append(f"Condition {name} {verdict_words(results, name, predicate=True)}.")
    other = other_measures(results, numbers)
    if other:
        lines.append(other)
    seeds = numbers.num(len(plan.seeds), "plan.seeds#count", "{:d}")
    steps = numbers.num(plan.steps, "plan.steps", "{:d}")
    scale = (
        f"{steps} steps and the template's small, CPU-scale model "
        f"({numbers.num(results.engine.parameters, 'results.engine.parameters', '{:,d}')} parameters)"
        if spec.kind == "training"
        else f"{steps} items per seed and the one subject model asked (other models may behave otherwise)"
    )
    lines.append(
        f"These conclusions hold for the settings tested: {seeds} seeds per condition, {scale}. With this "
        "few seeds the intervals are wide: a difference the tests cannot detect here may still exist, and a "
        "larger scale of the template, more seeds or other settings may change the picture."
    )
    return " ".join(lines)
