"""Grounding: trace every number in a paper to the field it came from, and every citation to a record.

``check_text`` reads a paper's final Markdown (or any text) and returns one verdict per number and
per citation:

- a number the harness wrote carries its provenance: the harness writes numbers through ``Numbers``,
  which records the field each one came from (``results.conditions.method.metric.mean``), so it is
  grounded by that field, not by any value that happens to be equal;
- a number the model wrote is ``result`` or ``config`` only when a value of the sources (results,
  plan, template defaults, novelty evidence, config), rounded as the text shows it, equals it AND that
  field is what its sentence is about (it names the condition and the quantity, or the setting): a
  right number from the wrong source is ``ungrounded``; ``not_a_result`` is a year, a section, table,
  figure or list number, or part of the bibliography;
- a citation (``[3]``, ``[@key]``, ``\\cite{key}``, "Smith et al. (2019)") is verified only when it
  names an entry of the paper's bibliography whose record the literature backend resolved.

The writing stage runs it on each block of model prose (to repair: drop what cannot be traced) and on
the final paper; what survives repair unverified is marked in the text and flagged in the record.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from typing import Any, Literal

from pydantic import BaseModel, Field

NumberKind = Literal["result", "config", "not_a_result", "ungrounded"]

_NUMBER = re.compile(
    r"(?<![A-Za-z_\d.])(?<![A-Za-z]-)(?P<sign>[-−])?(?P<body>\d+(?:,\d{3})*(?:\.\d+)?(?:[eE][-+]?\d+)?)(?P<pct>\s?%)?(?![A-Za-z_\d])"
    r"|(?<![A-Za-z_\d.])(?P<sign2>)(?P<body2>\.\d+)(?P<pct2>\s?%)?(?![A-Za-z_\d])"
)
_NUMERIC_CITE = re.compile(r"\[(\d+(?:\s*[,–\-]\s*\d+)*)\](?!\()")
_KEY_CITE = re.compile(r"\[@([A-Za-z0-9_:\-]+)\]")
_TEX_CITE = re.compile(r"\\cite[pt]?\*?(?:\[[^\]]*\])?\{([^}]*)\}")
_AUTHOR_YEAR = re.compile(
    r"\(?\b([A-Z][A-Za-z'\-]+)(?:\s+et\s+al\.?|\s+(?:and|&)\s+[A-Z][A-Za-z'\-]+)?,?\s+\(?((?:19|20)\d{2})[a-z]?\)?"
)
_LABEL_BEFORE = re.compile(
    r"(?:section|sec\.|table|tab\.|figure|fig\.|equation|eq\.|appendix|algorithm|alg\.|chapter|step|line|item)\s*$",
    re.IGNORECASE,
)
_YEAR_BEFORE = re.compile(r"(?:\bin|\bsince|\bfrom|\buntil|\bby|\byear|\bcirca|\bof|[(,])\s*$", re.IGNORECASE)
_LINK_TARGET = re.compile(r"\]\([^)]*\)")  # Markdown link/image targets: file names, not claims
# a work's title in italics before its citation ("*An Image is Worth 16x16 Words* [@key]"): its digits are the title's
_TITLE_CITE = re.compile(r"\*([^*\n]+)\*\s*\[(?:@([A-Za-z0-9_:\-]+)|(\d+))\]")  # by key, or numbered as rendered
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
UNVERIFIED_MARK = "[unverified]"


class NumberVerdict(BaseModel):
    """One number found in the text, and where it comes from (or why it needs no source)."""

    text: str
    value: float
    kind: NumberKind
    source: str | None = None  # e.g. "results.conditions.baseline.metric.mean", "year", "label"
    provenance: Literal["harness", "value", "none"] = "none"  # harness: written from ``source``; value: matched
    context: str = ""
    start: int = -1  # where it stands in the checked text
    end: int = -1
    note: str = ""  # e.g. the fields a model-written number equals but its sentence is not about


class CitationVerdict(BaseModel):
    """One citation found in the text, and whether it resolves to a verified literature record."""

    text: str
    key: str | None = None
    record_id: str | None = None
    verified: bool
    reason: str = ""
    start: int = -1
    end: int = -1


class BibEntry(BaseModel):
    """One bibliography entry: the cite key, the record it stands for, and whether the backend resolved it."""

    key: str
    record_id: str
    title: str
    authors: list[str] = Field(default_factory=list)
    year: int | None = None
    venue: str | None = None
    url: str | None = None
    verified: bool = False


_MARK_OPEN, _MARK_CLOSE = "\ue000", "\ue001"  # private-use characters: a harness number's marker
_MARK = re.compile(f"{_MARK_OPEN}(\\d+){_MARK_CLOSE}")
_PLAIN_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*%?")


class Span(BaseModel):
    """Where a harness-written number stands in a text, and the field it came from."""

    start: int
    end: int
    path: str


class Numbers:
    """The numbers the harness writes into a paper, each with the field it came from.

    ``num(value, path)`` returns a marker to put in the text; ``resolve(text)`` replaces every marker
    with the formatted number and returns where each one stands, so grounding can trace a harness
    number to its field (its provenance) instead of matching it by value.
    """

    def __init__(self) -> None:
        self.entries: list[tuple[str, str]] = []  # (formatted text, field path)

    def num(self, value: float | int, path: str, fmt: str = "{:.4f}") -> str:
        """A marker for ``value`` formatted with ``fmt``, recorded as coming from ``path``."""
        self.entries.append((fmt.format(value), path))
        return f"{_MARK_OPEN}{len(self.entries) - 1}{_MARK_CLOSE}"

    def shown(self, text: str, path: str) -> str:
        """A marker for a number already written out (``text``, e.g. "95%"), recorded as coming from ``path``."""
        self.entries.append((text, path))
        return f"{_MARK_OPEN}{len(self.entries) - 1}{_MARK_CLOSE}"

    def numbers_in(self, text: str, path: str) -> str:
        """``text`` with every number in it marked as coming from ``path`` (harness text stored in a field)."""
        return _PLAIN_NUMBER.sub(lambda m: self.shown(m.group(0), path), text)

    def resolve(self, text: str) -> tuple[str, list[Span]]:
        """The text with its markers replaced by their numbers, and the provenance span of each."""
        out: list[str] = []
        spans: list[Span] = []
        last = 0
        length = 0
        for m in _MARK.finditer(text):
            out.append(text[last : m.start()])
            length += m.start() - last
            shown, path = self.entries[int(m.group(1))]
            spans.append(Span(start=length, end=length + len(shown), path=path))
            out.append(shown)
            length += len(shown)
            last = m.end()
        out.append(text[last:])
        return "".join(out), spans

    def plain(self, text: str) -> str:
        """The text with its markers replaced by their numbers."""
        return self.resolve(text)[0]


class GroundingReport(BaseModel):
    """Every number and citation verdict of a text, with the two rates the run records."""

    numbers: list[NumberVerdict] = Field(default_factory=list)
    citations: list[CitationVerdict] = Field(default_factory=list)

    @property
    def checked_numbers(self) -> list[NumberVerdict]:
        """Numbers that are claims (grounded or not); years, labels and the bibliography excluded."""
        return [n for n in self.numbers if n.kind != "not_a_result"]

    @property
    def ungrounded(self) -> list[NumberVerdict]:
        """Numbers traced to nothing."""
        return [n for n in self.numbers if n.kind == "ungrounded"]

    @property
    def unverified_citations(self) -> list[CitationVerdict]:
        """Citations that resolve to no verified record."""
        return [c for c in self.citations if not c.verified]

    @property
    def grounded_number_rate(self) -> float:
        """Share of result-like numbers traced to results or config (1.0 when there are none)."""
        checked = self.checked_numbers
        return 1.0 if not checked else (len(checked) - len(self.ungrounded)) / len(checked)

    @property
    def verified_citation_rate(self) -> float:
        """Share of citations that resolve to a verified record (1.0 when there are none)."""
        return (
            1.0 if not self.citations else (len(self.citations) - len(self.unverified_citations)) / len(self.citations)
        )

    @property
    def ok(self) -> bool:
        """Nothing ungrounded and nothing unverified."""
        return not self.ungrounded and not self.unverified_citations

    def problem_ends(self) -> list[int]:
        """Where each ungrounded number and unverified citation ends in the checked text."""
        return [v.end for v in self.ungrounded] + [c.end for c in self.unverified_citations]

    def problems(self) -> list[str]:
        """One line per ungrounded number and unverified citation, naming it and its context."""
        lines = [
            f"ungrounded number {n.text!r} in “{n.context}”" + (f" ({n.note})" if n.note else "")
            for n in self.ungrounded
        ]
        lines += [f"unverified citation {c.text!r}: {c.reason}" for c in self.unverified_citations]
        return lines

    def summary(self) -> dict[str, Any]:
        """Counts and rates, for stage outputs, the RunRecord and W&B."""
        return {
            "numbers": len(self.numbers),
            "numbers_from_harness": sum(1 for n in self.numbers if n.provenance == "harness"),
            "numbers_checked": len(self.checked_numbers),
            "numbers_ungrounded": len(self.ungrounded),
            "citations": len(self.citations),
            "citations_unverified": len(self.unverified_citations),
            "grounded_number_rate": round(self.grounded_number_rate, 4),
            "verified_citation_rate": round(self.verified_citation_rate, 4),
        }


# the words a sentence uses when it talks about a field (by the field's last name in its path)
_FIELD_WORDS: dict[str, tuple[str, ...]] = {
    "p_vs_baseline": ("p =", "p=", "p <", "p-value", "signific"),
    "p_adjusted": ("p =", "p=", "p <", "p-value", "signific", "holm", "adjusted", "corrected"),
    "effect_size": ("effect", "hedges", " g "),
    "confidence": ("interval", "confidence", "ci "),
    "ci_low": ("interval", "ci", "confidence", "between", "to "),
    "ci_high": ("interval", "ci", "confidence", "between", "to "),
    "difference": ("difference", "differ", "higher", "lower", "more", "less", "by ", "gain", "drop"),
    "std": ("std", "standard deviation", "deviation", "±", "+/-", "spread"),
    "n": ("seed", "run"),
    "seeds": ("seed",),
    "values": ("seed", "run"),
    "steps": ("step", "update", "iteration"),  # cartpole's step is one policy update
    "significance_level": ("signific", "level", "alpha", "α"),
    "alpha": ("signific", "level", "alpha", "α"),
    "novelty_max_similarity": ("novelty", "similarity"),
    "max_similarity": ("similarity",),
    "similarity": ("similarity",),
    "parameters": ("parameter",),
    # knobs, as prose names them ("a peak rate near 1e-2", "batches of 128", "a 2-layer model")
    "lr": ("lr", "learning rate", "learning-rate", "rate", "step size"),
    "batch_size": ("batch",),
    "n_layer": ("layer",),
    "n_embd": ("width", "embedding", "dimension"),
    "block_size": ("context", "block"),
    "warmup_frac": ("warm-up", "warmup"),
    "world_size": ("rank", "gpu", "process"),
    # the task's own numbers, as its description gives them ("a fixed 360-image held-out split")
    "description": (
        "image",
        "split",
        "held",
        "train",
        "class",
        "digit",
        "example",
        "sample",
        "character",
        "corpus",
        "episode",
        "data",
        "token",
        "vocab",
        "modul",
    ),
    # the hypothesis's own numbers ("improves accuracy by at least 0.5 points"), restated as what is predicted
    "prediction": ("hypothes", "predict", "expect", "whether", "would", "at least", "at most", "test if", "registered"),
}


class Sources:
    """The numbers a paper may state: every numeric leaf of the given objects, with its path.

    ``aliases`` names, for each condition, the other words a sentence may call it by (its components'
    option names, e.g. ``{"method": ["sgd", "cosine"]}``); ``metric`` is the template's metric.
    """

    def __init__(self, *, aliases: dict[str, list[str]] | None = None, metric: str = "", **named: Any) -> None:
        self.values: list[tuple[str, float, str]] = []  # (path, value, kind)
        self.aliases = {k: [w.lower() for w in v] for k, v in (aliases or {}).items()}
        self.metric = metric
        for name, obj in named.items():
            if isinstance(obj, BaseModel):  # a stage contract: its fields, as the paper's numbers name them
                obj = obj.model_dump(mode="json")
            kind = "result" if name in ("results", "novelty") else "config"
            self.values += [(path, v, kind) for path, v in _numeric_leaves(obj, name)]

    def _metric_words(self) -> list[str]:
        parts = [
            p for p in re.split(r"[_\W]+", self.metric.lower()) if p and p not in ("val", "valid", "test", "final")
        ]
        return [*parts, "metric", self.metric.lower().replace("_", " ")]

    def about(self, path: str, sentence: str) -> bool:
        """Whether a sentence talks about the field at ``path`` (names its condition and its quantity)."""
        text = f" {sentence.lower()} "
        parts = [p for p in re.split(r"[.\[\]]", path) if p and not p.isdigit()]
        last = parts[-1].removesuffix("#key") if parts else ""
        if len(parts) >= 3 and parts[0] == "results" and parts[1] == "conditions":
            condition = parts[2]
            aliases = self.aliases.get(condition, [])
            names = [
                condition.lower(),
                *re.split(r"[^a-z0-9]+", condition.lower()),
                *aliases,
                *(a.replace("_", " ") for a in aliases),  # "label_smoothing" as prose spells it
            ]
            if not any(len(w) >= 3 and w in text for w in names if w not in ("method", "without")) and not (
                condition.lower() in text or (condition == "baseline" and "baseline" in text)
            ):
                return False
            quantity = parts[3] if len(parts) > 3 else ""
            if quantity == "metric":
                if last in ("mean", "metric"):
                    return any(w in text for w in self._metric_words())
                return any(w in text for w in _FIELD_WORDS.get(last, ())) and any(
                    w in text for w in self._metric_words()
                )
            if quantity == "knobs" and len(parts) > 4:
                # a setting of a condition the sentence names, by the knob's words ("smoothing 0.3", "a peak rate
                # of 0.01"): a relay answerer's "a stronger smoothing, at strength 0.3" was sent back as ungrounded
                knob = parts[4].lower()
                words = [w for w in re.split(r"[_\W]+", knob) if len(w) >= 3]
                return any(w in text for w in (*_FIELD_WORDS.get(knob, ()), *words, "strength", "setting"))
            if quantity == "secondary" and len(parts) > 4:
                words = [w for w in re.split(r"[_\W]+", parts[4].lower()) if w and w not in ("val", "train")]
                return any(w in text for w in words)
            return any(w in text for w in _FIELD_WORDS.get(quantity or last, (quantity,)))
        cue = _FIELD_WORDS.get(last)
        if cue is not None:
            return any(w in text for w in cue)
        spoken = last.replace("_", " ").lower()
        return bool(spoken) and (spoken in text or last.lower() in text)

    def trace(
        self, token: str, value: float, percent: bool, sentence: str | None = None
    ) -> tuple[str, str] | tuple[None, str]:
        """(path, kind) of a source value the token shows, rounded as written, that its sentence is about.

        Without ``sentence`` any equal value counts. When equal values exist but the sentence is about
        none of them, the result is ``(None, note)`` naming them: a right number from the wrong source.
        """
        shown = value / 100 if percent else value
        tolerance = _tolerance(token) / (100 if percent else 1)
        integer = re.fullmatch(r"\d+", token.replace(",", "")) is not None and not percent
        matches: list[tuple[str, str]] = []
        for path, v, kind in self.values:
            if integer:
                hit = v == value or (abs(value) >= 10 and round(v) == value)
            else:
                hit = math.isclose(v, shown, rel_tol=0, abs_tol=tolerance * 1.0001) or (
                    percent and math.isclose(v, value, abs_tol=tolerance * 100 * 1.0001)
                )
            if hit:
                matches.append((path, kind))
        relevant = matches if sentence is None else [m for m in matches if self.about(m[0], sentence)]
        if relevant:
            return next((m for m in relevant if m[1] == "result"), relevant[0])
        if matches:
            shown_paths = ", ".join(p for p, _ in matches[:3])
            return None, f"equals {shown_paths} by value, but its sentence is not about that field"
        return None, ""


def _numeric_leaves(obj: Any, path: str) -> Iterator[tuple[str, float]]:
    if isinstance(obj, bool) or obj is None:
        return
    if isinstance(obj, int | float):
        if math.isfinite(obj):
            yield path, float(obj)
    elif isinstance(obj, str):
        try:
            number = float(obj)
        except ValueError:
            # e.g. condition "lr=0.03"; a description's "1,437 trained on" is 1437 (and, should the comma
            # separate a list, "128,256", its parts too)
            for group in re.findall(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?", obj):
                parts = [group.replace(",", ""), *group.split(",")] if "," in group else [group]
                for part in parts:
                    if math.isfinite(float(part)):  # "1e999" in a model's text is inf, which no number can show
                        yield path, float(part)
        else:
            if math.isfinite(number):
                yield path, number
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from _numeric_leaves(key, f"{path}.{key}#key") if isinstance(key, str) else iter(())
            yield from _numeric_leaves(value, f"{path}.{key}")
    elif isinstance(obj, list | tuple):
        for i, value in enumerate(obj):
            yield from _numeric_leaves(value, f"{path}[{i}]")


def _tolerance(token: str) -> float:
    """Half a unit in the last digit the token shows (0.5 for integers)."""
    mantissa, _, exponent = token.replace(",", "").lower().partition("e")
    decimals = len(mantissa.split(".", 1)[1]) if "." in mantissa else 0
    scale = 10.0 ** int(exponent) if exponent else 1.0
    return 0.5 * 10.0**-decimals * scale


def _context(text: str, start: int, end: int, width: int = 50) -> str:
    return " ".join(text[max(0, start - width) : min(len(text), end + width)].split())


def _split_bibliography(text: str) -> tuple[str, int]:
    """The text before its References section, and where that section starts (len(text) if none)."""
    match = re.search(r"^(?:#+\s*|\\section\*?\{)References\b.*$", text, re.MULTILINE | re.IGNORECASE)
    return (text, len(text)) if match is None else (text[: match.start()], match.start())


def _same_title(written: str, title: str) -> bool:
    """Whether ``written`` is the record's ``title`` (case, spacing and punctuation aside)."""

    def norm(t: str) -> str:
        return " ".join(re.findall(r"\w+", t.lower()))

    return bool(title.strip()) and norm(written) == norm(title)


def _blank(text: str, spans: Iterable[tuple[int, int]]) -> str:
    chars = list(text)
    for start, end in spans:
        chars[start:end] = " " * (end - start)
    return "".join(chars)


def _sentence_at(text: str, start: int, end: int) -> str:
    """The sentence (or table row, or line) a span stands in."""
    left = max(text.rfind(". ", 0, start), text.rfind("\n", 0, start), text.rfind("|", 0, start))
    candidates = [i for i in (text.find(". ", end), text.find("\n", end), text.find("|", end)) if i != -1]
    right = min(candidates) if candidates else len(text)
    return text[left + 1 : right]


def check_text(
    text: str, sources: Sources, bibliography: list[BibEntry], provenance: list[Span] | None = None
) -> GroundingReport:
    """Verdicts on every number and citation of ``text`` (see the module docstring).

    ``provenance``: where the harness wrote numbers into ``text`` and from which field (``Numbers``).
    """
    report = GroundingReport()
    body, bib_start = _split_bibliography(text)
    by_key = {e.key: e for e in bibliography}
    cited_spans: list[tuple[int, int]] = []

    def entry_verdict(
        written: str, entry: BibEntry | None, key: str | None, why_missing: str, span: tuple[int, int]
    ) -> CitationVerdict:
        if entry is None:
            return CitationVerdict(
                text=written, key=key, verified=False, reason=why_missing, start=span[0], end=span[1]
            )
        return CitationVerdict(
            text=written,
            key=entry.key,
            record_id=entry.record_id,
            verified=entry.verified,
            reason="resolved"
            if entry.verified
            else f"record {entry.record_id} was not found by the literature backend",
            start=span[0],
            end=span[1],
        )

    for m in _NUMERIC_CITE.finditer(body):
        cited_spans.append(m.span())
        for n in _expand_numbers(m.group(1)):
            entry = bibliography[n - 1] if 1 <= n <= len(bibliography) else None
            report.citations.append(
                entry_verdict(
                    f"[{n}]", entry, None, f"the bibliography has {len(bibliography)} entries, no [{n}]", m.span()
                )
            )
    for m in _KEY_CITE.finditer(body):
        cited_spans.append(m.span())
        key = m.group(1)
        report.citations.append(
            entry_verdict(m.group(0), by_key.get(key), key, f"no bibliography entry {key!r}", m.span())
        )
    for m in _TEX_CITE.finditer(body):
        cited_spans.append(m.span())
        for key in (k.strip() for k in m.group(1).split(",") if k.strip()):
            report.citations.append(
                entry_verdict(f"\\cite{{{key}}}", by_key.get(key), key, f"no bibliography entry {key!r}", m.span())
            )
    for m in _AUTHOR_YEAR.finditer(_blank(body, cited_spans)):
        name, year = m.group(1), int(m.group(2))
        if name.lower() in {"in", "since", "from", "until", "by", "table", "figure", "section", "the", "of"}:
            continue
        entry = next(
            (e for e in bibliography if e.year == year and any(name.lower() in a.lower() for a in e.authors)), None
        )
        cited_spans.append(m.span())
        written = m.group(0).strip()
        if written.count("(") != written.count(")"):
            written = written.lstrip("(") if written.startswith("(") else written.rstrip(")")
        report.citations.append(
            entry_verdict(written, entry, None, f"no bibliography entry by {name} from {year}", m.span())
        )

    def cited(m: re.Match[str]) -> BibEntry | None:
        if m.group(2):
            return by_key.get(m.group(2))
        n = int(m.group(3))
        return bibliography[n - 1] if 1 <= n <= len(bibliography) else None

    titles = [
        m.span(1)
        for m in _TITLE_CITE.finditer(body)
        if (entry := cited(m)) is not None and _same_title(m.group(1), entry.title)
    ]
    scan = _blank(body, [*cited_spans, *titles, *(x.span() for x in _LINK_TARGET.finditer(body))])
    scan = _blank(scan, [x.span() for x in _HTML_COMMENT.finditer(scan)])
    for m in _NUMBER.finditer(scan):
        token = m.group("body") or m.group("body2")
        percent = bool(m.group("pct") or m.group("pct2"))
        sign = -1.0 if m.group("sign") else 1.0
        value = sign * float(token.replace(",", ""))
        shown = m.group(0).strip()
        context = _context(body, m.start(), m.end())
        structural = _structural(scan, m.start(), token)
        harness = next((sp for sp in provenance or [] if sp.start <= m.start() and m.end() <= sp.end), None)
        if harness is not None and not structural:
            origin: NumberKind = "result" if harness.path.startswith(("results", "novelty")) else "config"
            report.numbers.append(
                NumberVerdict(
                    text=shown,
                    value=value,
                    kind=origin,
                    source=harness.path,
                    provenance="harness",
                    context=context,
                    start=m.start(),
                    end=m.end(),
                )
            )
            continue
        note = ""
        if not structural:
            path, kind_or_note = sources.trace(token, value, percent, _sentence_at(body, m.start(), m.end()))
            if path is not None:
                report.numbers.append(
                    NumberVerdict(
                        text=shown,
                        value=value,
                        kind=kind_or_note,  # type: ignore[arg-type]  # trace() gives a NumberKind whenever path is set
                        source=path,
                        provenance="value",
                        context=context,
                        start=m.start(),
                        end=m.end(),
                    )
                )
                continue
            note = kind_or_note
        reason = structural or _year(scan, m.start(), token, value) or _product(body, m.start(), m.end(), value)
        report.numbers.append(
            NumberVerdict(
                text=shown,
                value=value,
                kind="not_a_result" if reason else "ungrounded",
                source=reason,
                context=context,
                start=m.start(),
                end=m.end(),
                note="" if reason else note,
            )
        )
    for m in _NUMBER.finditer(text[bib_start:]):
        report.numbers.append(
            NumberVerdict(
                text=m.group(0).strip(),
                value=float((m.group("body") or m.group("body2")).replace(",", "")),
                kind="not_a_result",
                source="bibliography",
            )
        )
    return report


def _expand_numbers(group: str) -> list[int]:
    out: list[int] = []
    for part in re.split(r"\s*,\s*", group):
        bounds = re.split(r"\s*[–\-]\s*", part)
        if len(bounds) == 2 and bounds[0].isdigit() and bounds[1].isdigit() and int(bounds[1]) - int(bounds[0]) < 50:
            out += range(int(bounds[0]), int(bounds[1]) + 1)
        elif part.isdigit():
            out.append(int(part))
    return out


def _structural(text: str, start: int, token: str) -> str | None:
    """ "label" for a section, table or figure number; "heading or list number" at a line's start; else None."""
    before = text[max(0, start - 24) : start]
    if _LABEL_BEFORE.search(before):
        return "label"
    line_before = text[text.rfind("\n", 0, start) + 1 : start]
    if re.fullmatch(r"\s*(?:#+\s*)?(?:\d+\.)*", line_before) and (
        text.startswith(".", start + len(token)) or line_before.lstrip().startswith("#")
    ):
        return "heading or list number"
    return None


_DIMENSIONS = re.compile(r"(?<![\d.])(\d+)\s*[x×]\s*(\d+)(?![\d.])")


def _product(text: str, start: int, end: int, value: float) -> str | None:
    """A count its sentence derives from dimensions it states ("each 8x8 image's 64 pixels"): a relay answerer's
    sentence was sent back because 64 equals the batch size and the width by value."""
    if value == 1 and re.match(r"/\s*\d", text[end : end + 3]):
        return "the unit of a fraction (1/360: one held-out image)"  # a relay answerer's "steps of 1/360"
    sentence = _sentence_at(text, start, end)
    for a, b in _DIMENSIONS.findall(sentence):
        if int(a) * int(b) == value and f"{a}x{b}" != text[start:end]:
            return f"the product of {a}x{b} in its sentence"
    return None


def _year(text: str, start: int, token: str, value: float) -> str | None:
    """ "year" for a four-digit year written as one (after "in", "since", a comma or in parentheses)."""
    if re.fullmatch(r"(?:19|20)\d{2}", token) and 1950 <= value <= 2100:
        before = text[max(0, start - 24) : start]
        after = text[start + len(token) : start + len(token) + 2]
        if _YEAR_BEFORE.search(before) or after.startswith((")", ",")):
            return "year"
    return None


def mark_unverified(text: str, report: GroundingReport) -> str:
    """The text with every ungrounded number and unverified citation of ``report`` followed by a mark.

    ``report`` must come from ``check_text`` on this very text (it marks by position).
    """
    ends = sorted({end for end in report.problem_ends() if end >= 0}, reverse=True)
    for end in ends:
        if not text.startswith(" " + UNVERIFIED_MARK, end):
            text = f"{text[:end]} {UNVERIFIED_MARK}{text[end:]}"
    return text


def mark_unverified_keeping(text: str, report: GroundingReport, spans: list[Span]) -> tuple[str, list[Span]]:
    """``mark_unverified``, with the provenance spans moved to where their numbers stand afterwards."""
    marked = mark_unverified(text, report)
    if marked == text:
        return text, spans
    inserted = sorted(
        end for end in {e for e in report.problem_ends() if e >= 0} if not text.startswith(" " + UNVERIFIED_MARK, end)
    )
    step = len(" " + UNVERIFIED_MARK)
    moved = []
    for span in spans:
        shift = step * sum(1 for end in inserted if end <= span.start)
        moved.append(Span(start=span.start + shift, end=span.end + shift, path=span.path))
    return marked, moved


_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z\[(\"“])")


def split_sentences(text: str) -> list[str]:
    """The sentences of a paragraph, as repair reads them."""
    return [s for s in _SENTENCE.split(text.strip()) if s]


def repair_prose(text: str, sources: Sources, bibliography: list[BibEntry]) -> tuple[str, list[str]]:
    """Model prose with every sentence dropped that states an untraceable number or cites no verified record.

    Returns the repaired text and one line per dropped sentence saying why.
    """
    kept, dropped = [], []
    for sentence in _SENTENCE.split(text.strip()):
        report = check_text(sentence, sources, bibliography)
        if report.ok:
            kept.append(sentence)
        else:
            dropped.append(f"dropped “{sentence[:160]}”: {'; '.join(report.problems())}")
    return " ".join(kept), dropped
