"""Claims grounded like numbers: a sentence that says a condition helps, hurts or changes nothing must
agree with the corrected test of that condition against the baseline.

``find_claims`` reads sentences of a paper and keeps those that claim an effect: quality words
("improves", "outperforms", "hurts", "worse"), value words on the metric ("higher accuracy", "lower
loss": read through the metric's direction), or null words ("no significant difference", "does
not change", "comparable"); a negation flips an effect claim into a null one. The condition is the
one the sentence names (its name, or its components' option words; "the method" or a bare claim
about the metric means the main method). ``check_claims`` compares each with the condition's
verdict (better, worse, no significant difference after Holm's correction) and names every
overclaim (an effect the test did not find), wrong direction, and unsupported "no effect".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from fars.run.contracts import ClaimCheck, Results

Claim = Literal["better", "worse", "none"]
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z\[(\"“])")
_QUALITY_UP = re.compile(
    r"\b(improv\w*|outperform\w*|better|beats?|boost\w*|benefit\w*|helps?|helped|enhanc\w*|superior|gains?)\b", re.I
)
_QUALITY_DOWN = re.compile(r"\b(hurts?|harm\w*|worse|degrad\w*|impair\w*|inferior|underperform\w*)\b", re.I)
_VALUE_UP = re.compile(r"\b(higher|increas\w*|rais\w*|more)\b", re.I)
_VALUE_DOWN = re.compile(r"\b(lower\w*|decreas\w*|reduc\w*|less|fewer)\b", re.I)
_NULL = re.compile(
    r"\b(no (?:significant |measurable |clear |detectable )?(?:effect|difference|change|improvement|gain)s?"
    r"|not (?:significant\w*|different|change\w*|differ\w*)|(?:did|does|do) not (?:change|improve|affect|differ|help|hurt)"
    r"|comparable|on par|indistinguishable|similar to|same as|statistically indistinguishable)\b",
    re.I,
)
_NEGATION = re.compile(r"\b(not|no|never|neither|nor|without|fail\w*)\b", re.I)
_DIRECTION_NOTE = re.compile(r"\(?\b(?:higher|lower) is better\b\)?", re.I)  # "(higher is better)" claims nothing
# a sentence that states the hypothesis under test ("We test a hypothesis about X: the method raises accuracy")
# claims nothing yet, unless it also says what was found ("the hypothesis is confirmed: ...")
_HYPOTHESIS = re.compile(
    r"\b(?:we (?:test|ask|study|examine) (?:a |the |our )?(?:hypothes[ie]s|whether|prediction)|we hypothesi[sz]e"
    r"|hypothesis:"
    r"|(?:the|our) hypothesis (?:is|states) that|this paper asks whether|asks whether"
    # the prediction as registered ("we predicted that X would raise accuracy"): a relay paper's abstract and
    # introduction lost it as an unsupported claim, and the introduction then said "The prediction failed." of
    # nothing stated
    r"|we (?:\w+ )?(?:had )?(?:pre-?registered|predicted|expected|hypothesi[sz]ed)(?: the prediction)? that\b[^.;]*"
    r"\b(?:would|will|should)\b)",
    re.I,
)
_FINDING = re.compile(
    r"\b(?:confirm\w*|support\w*|found|finds?|show(?:s|ed|n)?|demonstrat\w*|reached|achiev\w*|(?:it|they|this) did)\b",
    re.I,
)
_CITES = re.compile(r"\[@[\w:.-]+|\[\d+(?:[,–-]\s*\d+)*\]|\\cite\w*\{")
# an italic title followed by its citation (related work lists them): the fourth relay run's related work was read
# as an overclaim about our method for "IPMix: Label-Preserving Data Augmentation Method for ... Better ..."
_CITED_TITLE = re.compile(r"\*[^*\n]+\*\s*(?=\[(?:@|\d))")
# "the corrected tests support the primary prediction", "the hypothesis is confirmed": a claim about the registered
# primary comparison in its predicted direction (the open transcript's draft said so of an inconclusive primary)
_PREDICTION_HELD = re.compile(
    r"\b(?:support\w*|confirm\w*|bears? out|borne out|upheld|uphold\w*|vindicat\w*)\b[^.;]{0,40}?\b(?:prediction|hypothes[ie]s)\b"
    r"|\b(?:prediction|hypothes[ie]s)\b[^.;]{0,30}?\b(?:is|was|are|were)\s+(?:not\s+|never\s+)?(?:\w+ly\s+)?(?:supported|confirmed|borne out|upheld)\b",
    re.I,
)
_FOLLOWUP = re.compile(r"\b(?:follow-?up|exploratory)\b", re.IGNORECASE)
_GENERIC_METHOD = ("method", "methods", "approach", "proposed", "intervention", "combination", "our model")


# clauses a sentence joins, each read as its own claim: the relay model's rewrite "the CNN without shifts is also
# significantly better ..., while the MLP with shifts is inconclusive: its interval spans both no difference and
# ..." was read as one null claim about the first condition
# clause joints: a semicolon, a contrast, or a comma before a negated continuation ("Shifts Help a Small CNN, With
# No Detectable Gain for an MLP": a relay title read whole as a null claim about the CNN, and dropped)
_CLAUSE = re.compile(
    r";\s+|,\s+(?:while|whereas|but)\s+|,\s+(?=(?:with|and|yet)\s+(?:no|little|not)\b)"
    r"|,\s+(?=and\s+(?:removing|dropping|ablating|without)\b)",  # "..., and removing either part made it worse"
    re.I,
)
# a clause about removing parts ("removing either the convolutions or the shifts made it worse"): a claim about an
# ablation, never about the condition whose option words it repeats (a relay abstract lost its main result so)
_REMOVING = re.compile(r"^\s*(?:and\s+)?(?:removing|dropping|ablating|without)\b", re.I)
_BASELINE = re.compile(r"\bbaselines?\b", re.I)


# paper parts about other work: their sentences are checked for numbers and citations, not as claims about this
# study's conditions (a relay model's "the other listed works, on MLP architectures ... and on diffusion with
# deterministic degradation" was read as a claim that the MLP got worse, and replaced by a list of those works)
OTHERS_WORK_PARTS = frozenset({"related_work"})


@dataclass(frozen=True)
class FoundClaim:
    """One sentence (or a clause of it) that claims an effect of a condition, against ``versus``: the baseline,
    or for an ablation registered against the condition it removes a part from, that condition."""

    sentence: str
    condition: str
    claim: Claim
    versus: str = "baseline"


def _mentions(sentence: str, words: list[str]) -> bool:
    text = sentence.lower()
    return any(len(w) >= 3 and re.search(rf"\b{re.escape(w.lower())}\b", text) for w in words)


def condition_words(results: Results) -> dict[str, list[str]]:
    """For each condition, the words a sentence may name it by (its name and its components' options)."""
    words: dict[str, list[str]] = {}
    for name, cond in results.conditions.items():
        base = [name, name.replace("-", " "), name.replace("_", " ")]
        if cond.role in ("method", "sensitivity", "variant"):
            base += list(cond.components.values())
        if cond.role == "ablation":
            # the part as prose names it: "without shift_augmentation", "removing the shift augmentation",
            # "without the shifts" (a relay answerer's "removing the shifts from this method lowered accuracy" was
            # read as a claim about the method)
            for slot in re.findall(r"without-(\w+)", name):
                spoken = slot.replace("_", " ")
                head = spoken.split()[0]
                leads = ("without", "without its", "without the", "removing", "removing the", "removing its")
                for part in dict.fromkeys((slot, spoken, head, f"{head}s")):
                    base += [f"{lead} {part}" for lead in leads]
        words[name] = base
    return words


def knob_words(knobs: Mapping[str, object]) -> list[str]:
    """How prose names a knob's value: "width 256", "width of 256", "width=256", "lr = 0.03"."""
    return [
        f"{name}{sep}{value}"
        for knob, value in knobs.items()
        for name in {knob, knob.replace("_", " ")}
        for sep in (" ", " of ", "=", " = ")
    ]


def _condition_of(sentence: str, results: Results, words: dict[str, list[str]]) -> str | None:
    """The condition a sentence is about: a condition named by its full name first (an ablation before others),
    then by its words, then "the method" by name. A full name wins over option words: "followup-wide-mlp-shift"
    contains the method's option "shift", and the third relay run's claim check read the harness's own
    sentence about that follow-up as a claim about the method."""
    exact = [  # identifiers only ("method" is also a plain word, which the ablation's words outrank below)
        c
        for c in results.conditions
        if c != "baseline"
        and re.search(r"[-_\d]", c)
        and re.search(rf"(?<![\w-]){re.escape(c)}(?![\w-])", sentence, re.IGNORECASE)
    ]
    exact = [c for c in exact if results.conditions[c].role == "ablation"] or exact
    if exact:
        return exact[0]
    # a condition by the knob value it sets ("an MLP of width 256"), before option words another condition shares:
    # the third relay run's abstract said the width-256 follow-up "did not differ significantly from the baseline
    # MLP", comparing it with "the CNN" in passing, and the sentence was dropped as a null claim about the CNN
    by_knob = [c for c, r in results.conditions.items() if c != "baseline" and _mentions(sentence, knob_words(r.knobs))]
    if by_knob:
        return by_knob[0]
    # "an exploratory follow-up with a twice-wider MLP shows no significant gain": the one follow-up there is
    followups = [c for c, r in results.conditions.items() if r.role == "followup"]
    if len(followups) == 1 and _FOLLOWUP.search(sentence):
        return followups[0]
    named = [c for c in results.conditions if c != "baseline" and _mentions(sentence, words[c])]
    ablations = [c for c in named if results.conditions[c].role == "ablation"]
    if ablations:
        return ablations[0]
    if named:
        return named[0]
    methods = [c for c, r in results.conditions.items() if r.role in ("method", "variant")]
    # a sentence citing prior work ("methods that reduce variance [@x]") speaks of that work, not of ours,
    # unless it names one of our conditions (above)
    if methods and _mentions(sentence, list(_GENERIC_METHOD)) and not _CITES.search(sentence):
        return methods[0]
    return None


def _claim_of(sentence: str, metric_words: list[str], higher_is_better: bool) -> Claim | None:
    if _NULL.search(sentence):
        return "none"
    up, down = bool(_QUALITY_UP.search(sentence)), bool(_QUALITY_DOWN.search(sentence))
    if _mentions(sentence.replace("_", " "), metric_words):  # "val_accuracy" names accuracy too
        value_up, value_down = bool(_VALUE_UP.search(sentence)), bool(_VALUE_DOWN.search(sentence))
        if value_up != value_down:
            better = value_up == higher_is_better
            up, down = up or better, down or not better
    if up == down:
        return None
    claim: Claim = "better" if up else "worse"
    # the word that makes the claim: a quality word, else the value's ("did not raise accuracy", sent back by a
    # relay run's check as a claim that accuracy rose)
    effect = (_QUALITY_UP if up else _QUALITY_DOWN).search(sentence) or next(
        (m for m in (_VALUE_UP.search(sentence), _VALUE_DOWN.search(sentence)) if m is not None), None
    )
    if effect and _negates(sentence[max(0, effect.start() - 25) : effect.start()]):
        return "none"  # "does not improve", "without hurting", "did not raise": no effect claimed
    return claim


def _negates(before: str) -> bool:
    """Whether the words just before an effect word negate it. "without" does only right before it ("without
    hurting"); "the method without its schedule lowered accuracy" names an ablation, and was read as no effect."""
    words = [m.group(0).lower() for m in _NEGATION.finditer(before)]
    if any(w != "without" for w in words):
        return True
    return bool(words) and re.search(r"\bwithout\s*$", before, re.IGNORECASE) is not None


def find_claims(text: str, results: Results) -> list[FoundClaim]:
    """Every sentence of ``text`` that claims an effect (or no effect) of a condition on the metric."""
    words = condition_words(results)
    metric_words = [w for w in re.split(r"[_\W]+", results.metric) if w and w not in ("val", "test")]
    found = []
    for raw in _SENTENCE.split(text.strip()):
        sentence = " ".join(raw.split())
        if not sentence or sentence.startswith(("|", "#", "![", "*Table", "*Figure")):
            continue
        if _HYPOTHESIS.search(sentence) and not _FINDING.search(sentence):  # the question, not an answer
            continue
        if sentence.endswith("?"):  # "does standardizing raise the final return?" asks; it claims nothing
            continue
        # a cited work's title says what that work claims ("... Augmentation Method for Better ..." [3])
        own = _CITED_TITLE.sub(" [cited] ", sentence)
        clauses = [c for c in _CLAUSE.split(own) if c.strip()]
        claimed = False
        for clause in clauses:
            claim = _claim_of(_DIRECTION_NOTE.sub(" ", clause), metric_words, results.higher_is_better)
            condition = _condition_of(clause, results, words) if claim is not None else None
            if condition is not None and _REMOVING.search(clause) and results.conditions[condition].role != "ablation":
                condition = None  # which ablation it means is not said: no claim the check can hold it to
            if claim is not None and condition is not None:
                found.append(FoundClaim(sentence, condition, claim, _versus(clause, condition, results)))
                claimed = True
        if not claimed and (held := _prediction_claim(own, results)) is not None:  # no effect named: the prediction's
            found.append(held)
    return found


def _versus(clause: str, condition: str, results: Results) -> str:
    """What a claim about ``condition`` compares it with: the condition an ablation removes a part from, where
    its test is registered against that condition and the clause does not name the baseline ("removing the
    schedule lowers accuracy" is about the method with it); else the baseline."""
    parent = results.conditions[condition].registered_against
    return parent if parent and not _BASELINE.search(clause) and _outcome(results, condition, parent) else "baseline"


def _outcome(results: Results, condition: str, versus: str) -> str | None:
    found = results.outcome(condition, versus)
    return None if found is None else found[1].verdict


def _prediction_claim(sentence: str, results: Results) -> FoundClaim | None:
    """A sentence saying the registered prediction held (or, negated, did not) as a claim on the primary
    comparison's candidate: its predicted effect, or no effect when negated."""
    match = _PREDICTION_HELD.search(sentence)
    primary = next((c for c in results.comparisons if c.family == "primary"), None)
    if match is None or primary is None or primary.candidate not in results.conditions:
        return None
    negated = bool(_NEGATION.search(sentence[max(0, match.start() - 25) : match.start()] + match.group(0)))
    if primary.prediction == "equivalent":
        return None if negated else FoundClaim(sentence, primary.candidate, "none")
    if negated:  # "the results do not support the prediction": the predicted effect was not found
        return FoundClaim(sentence, primary.candidate, "none")
    verdict = results.conditions[primary.candidate].verdict
    # "different" holds in either direction: the claim is whichever the test found, an effect all the same
    claim: Claim = (
        primary.prediction if primary.prediction != "different" else "worse" if verdict == "worse" else "better"
    )
    return FoundClaim(sentence, primary.candidate, claim)


def verdict_claim(results: Results, condition: str, versus: str = "baseline") -> Claim | None:
    """What the corrected test lets one claim of a condition against ``versus`` (None: it was not tested)."""
    verdict = results.conditions[condition].verdict if versus == "baseline" else _outcome(results, condition, versus)
    claims: dict[str, Claim] = {
        "better": "better",
        "worse": "worse",
        "no significant difference": "none",
        "equivalent": "none",
        "inconclusive": "none",
    }
    return claims.get(verdict) if verdict is not None else None


def check_claims(text: str, results: Results) -> ClaimCheck:
    """Every effect claim of ``text`` checked against the corrected tests (see the module docstring)."""
    check = ClaimCheck()
    for found in find_claims(text, results):
        allowed = verdict_claim(results, found.condition, found.versus)
        if allowed is None:
            continue
        check.checked += 1
        if found.claim == allowed:
            check.supported += 1
            continue
        what = (
            results.conditions[found.condition].verdict
            if found.versus == "baseline"
            else f"{_outcome(results, found.condition, found.versus)} against {found.versus}"
        )
        if found.claim == "none":
            check.unsupported_null += 1
            kind = "no effect claimed, but the test found one"
        elif allowed == "none":
            check.overclaims += 1
            kind = "overclaim: an effect claimed, but the corrected test found no significant difference"
        else:
            check.wrong_direction += 1
            kind = f"wrong direction: {found.claim} claimed, the test found {what}"
        check.problems.append(f"{kind} ({found.condition}): “{found.sentence[:200]}”")
    return check


def repair_claims(text: str, results: Results, mark: bool = False) -> tuple[str, list[str]]:
    """The text with every unsupported claim dropped (or, with ``mark``, followed by a visible mark)."""
    bad = {
        f.sentence
        for f in find_claims(text, results)
        if verdict_claim(results, f.condition, f.versus) not in (None, f.claim)
    }
    if not bad:
        return text, []
    kept, changes = [], []
    for raw in _SENTENCE.split(text.strip()):
        sentence = " ".join(raw.split())
        if sentence in bad:
            changes.append(f"{'marked' if mark else 'dropped'} unsupported claim “{sentence[:160]}”")
            if mark:
                kept.append(f"{sentence} [unsupported claim]")
            continue
        kept.append(raw)
    return " ".join(kept), changes
