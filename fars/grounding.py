"""Grounding: trace every number in a paper to the results or config, and every citation to a record.

``check_text`` reads a paper's final Markdown (or any text) and returns one verdict per number and
per citation:

- a number is ``result`` or ``config`` when a value of the sources (results, plan, template defaults,
  novelty evidence, config), rounded as the text shows it, equals it; ``not_a_result`` when it is a
  year, a section, table, figure or list number, or part of the bibliography; else ``ungrounded``;
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
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
UNVERIFIED_MARK = "[unverified]"


class NumberVerdict(BaseModel):
    """One number found in the text, and where it comes from (or why it needs no source)."""

    text: str
    value: float
    kind: NumberKind
    source: str | None = None  # e.g. "results.conditions.baseline.val_accuracy.mean", "year", "label"
    context: str = ""
    start: int = -1  # where it stands in the checked text
    end: int = -1


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
        lines = [f"ungrounded number {n.text!r} in “{n.context}”" for n in self.ungrounded]
        lines += [f"unverified citation {c.text!r}: {c.reason}" for c in self.unverified_citations]
        return lines

    def summary(self) -> dict[str, Any]:
        """Counts and rates, for stage outputs, the RunRecord and W&B."""
        return {
            "numbers": len(self.numbers),
            "numbers_checked": len(self.checked_numbers),
            "numbers_ungrounded": len(self.ungrounded),
            "citations": len(self.citations),
            "citations_unverified": len(self.unverified_citations),
            "grounded_number_rate": round(self.grounded_number_rate, 4),
            "verified_citation_rate": round(self.verified_citation_rate, 4),
        }


class Sources:
    """The numbers a paper may state: every numeric leaf of the given objects, with its path."""

    def __init__(self, **named: Any) -> None:
        self.values: list[tuple[str, float, str]] = []  # (path, value, kind)
        for name, obj in named.items():
            if isinstance(obj, BaseModel):  # a stage contract: its fields, as the paper's numbers name them
                obj = obj.model_dump(mode="json")
            kind = "result" if name in ("results", "novelty") else "config"
            self.values += [(path, v, kind) for path, v in _numeric_leaves(obj, name)]

    def trace(self, token: str, value: float, percent: bool) -> tuple[str, str] | None:
        """(path, kind) of a source value the token shows, rounded as written; None when there is none."""
        shown = value / 100 if percent else value
        tolerance = _tolerance(token) / (100 if percent else 1)
        integer = re.fullmatch(r"\d+", token.replace(",", "")) is not None and not percent
        best: tuple[str, str] | None = None
        for path, v, kind in self.values:
            if integer:
                hit = v == value or (abs(value) >= 10 and round(v) == value)
            else:
                hit = math.isclose(v, shown, rel_tol=0, abs_tol=tolerance * 1.0001) or (
                    percent and math.isclose(v, value, abs_tol=tolerance * 100 * 1.0001)
                )
            if hit and (best is None or (best[1] != "result" and kind == "result")):
                best = (path, kind)
        return best


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
            for part in re.findall(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?", obj):  # e.g. condition "lr=0.03"
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


def _blank(text: str, spans: Iterable[tuple[int, int]]) -> str:
    chars = list(text)
    for start, end in spans:
        chars[start:end] = " " * (end - start)
    return "".join(chars)


def check_text(text: str, sources: Sources, bibliography: list[BibEntry]) -> GroundingReport:
    """Verdicts on every number and citation of ``text`` (see the module docstring)."""
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

    scan = _blank(body, [*cited_spans, *(x.span() for x in _LINK_TARGET.finditer(body))])
    scan = _blank(scan, [x.span() for x in _HTML_COMMENT.finditer(scan)])
    for m in _NUMBER.finditer(scan):
        token = m.group("body") or m.group("body2")
        percent = bool(m.group("pct") or m.group("pct2"))
        sign = -1.0 if m.group("sign") else 1.0
        value = sign * float(token.replace(",", ""))
        shown = m.group(0).strip()
        context = _context(body, m.start(), m.end())
        structural = _structural(scan, m.start(), token)
        traced = None if structural else sources.trace(token, value, percent)
        if traced is not None:
            report.numbers.append(
                NumberVerdict(
                    text=shown,
                    value=value,
                    kind=traced[1],  # type: ignore[arg-type]
                    source=traced[0],
                    context=context,
                    start=m.start(),
                    end=m.end(),
                )
            )
            continue
        reason = structural or _year(scan, m.start(), token, value)
        report.numbers.append(
            NumberVerdict(
                text=shown,
                value=value,
                kind="not_a_result" if reason else "ungrounded",
                source=reason,
                context=context,
                start=m.start(),
                end=m.end(),
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


_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z\[(\"“])")


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
