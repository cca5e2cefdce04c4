"""What the reviewer reads of a paper, within a character budget, and the record of it.

A paper that fits the budget is read whole. A longer one first loses its filler (``drop_filler``: a
sentence said again, after its first time, and loops of a few words), so the budget goes to content, not to
repetition that happens to open a section; what is still over the budget is read in parts, never cut silently:

* ``excerpts``: every section contributes its opening, the budget shared fairly among sections
  (short sections are read whole, their unused share goes to the long ones); references and
  acknowledgements are skipped. The model sees where each section continues.
* ``summaries``: the paper (references skipped) is cut into parts of ``chunk_chars``; the model
  writes notes on each part, and reviews from the notes. At most ``max_parts`` parts are read; a
  longer paper has its sections shortened first, as in ``excerpts``.

Either way ``Reading.parts`` records, per section, how many characters were read of how many, and
``Reading.ingest`` how the paper itself was read (reader, files or pages, and flags such as
``short_text`` when what was read looks too short for a paper).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field

from review.degenerate import words_of
from review.ingest.paper import IngestRecord, PaperText, Section

_SKIP = re.compile(r"^\W*(?:[A-Z]?\d*\.?\s*)?(references|bibliography|acknowledge?ments?)\b", re.I)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\[])")
_KEPT_LINE = re.compile(r"^\s*(?:[|#$\\]|```)")  # table rows, headings, display maths, LaTeX commands, code
MIN_REPEAT_WORDS = 5  # a sentence this long said twice is filler the second time; shorter ones ("See Table 1.") recur


class PartRead(BaseModel):
    """How much of one section was read."""

    heading: str
    chars_total: int
    chars_read: int
    skipped: str | None = None  # why a section was not read at all
    filler_dropped: int = 0  # characters of repeated or looping text left out before any cut


class Reading(BaseModel):
    """The record of what a review read of a paper."""

    mode: Literal["whole", "excerpts", "summaries"]
    chars_total: int
    chars_read: int
    budget_chars: int
    complete: bool
    parts: list[PartRead] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)  # the model's notes on each part (summaries mode)
    filler_dropped: int = 0  # characters of filler left out (``drop_filler``) because the paper was over budget
    ingest: IngestRecord | None = None  # how the paper was read from its file, and what looked wrong


def fair_shares(lengths: list[int], budget: int) -> list[int]:
    """Split ``budget`` over items of the given lengths: short ones whole, the rest equal shares."""
    shares = [0] * len(lengths)
    left = budget
    pending = sorted(range(len(lengths)), key=lambda i: lengths[i])
    while pending:
        share = left // len(pending)
        i = pending[0]
        if lengths[i] <= share:
            shares[i] = lengths[i]
            left -= lengths[i]
            pending.pop(0)
        else:
            for j in pending:
                shares[j] = share
            break
    return shares


def _looping(sentence: str) -> bool:
    words = words_of(sentence)
    if len(words) < 12:
        return False
    trigrams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
    return len(set(trigrams)) / len(trigrams) < 0.5


def drop_filler(sections: list[Section]) -> tuple[list[Section], list[int]]:
    """The sections without their filler, and the characters dropped from each.

    Filler: a sentence of ``MIN_REPEAT_WORDS`` or more words that the paper already said (its first time
    stays), and a sentence that loops a few words. Table rows, headings, maths and code are never touched.
    """
    seen: set[tuple[str, ...]] = set()
    kept_sections: list[Section] = []
    dropped: list[int] = []
    for section in sections:
        lines_out: list[str] = []
        lost = 0
        for line in section.text.split("\n"):
            if _KEPT_LINE.match(line) or not line.strip():
                lines_out.append(line)
                continue
            kept: list[str] = []
            for sentence in _SENTENCE_END.split(line):
                key = tuple(words_of(sentence))
                if (len(key) >= MIN_REPEAT_WORDS and key in seen) or _looping(sentence):
                    lost += len(sentence) + 1
                    continue
                seen.add(key)
                kept.append(sentence)
            if kept:
                lines_out.append(" ".join(kept))
            else:
                lost += 1  # the line's break
        kept_sections.append(Section(heading=section.heading, text="\n".join(lines_out)))
        dropped.append(min(lost, len(section.text)))
    return kept_sections, dropped


def _cut(text: str, limit: int) -> str:
    """The first ``limit`` characters of ``text``, ended at a word boundary when one is near."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    space = head.rfind(" ")
    return head[:space] if space > limit * 0.8 else head


def excerpts(sections: list[Section], budget: int) -> tuple[list[Section], list[PartRead]]:
    """Each section's opening within the budget, and the record of what was read."""
    skipped = [bool(_SKIP.match(s.heading)) for s in sections]
    readable = [i for i, skip in enumerate(skipped) if not skip]
    heads = sum(len(sections[i].heading) + 4 for i in readable)
    shares = fair_shares([len(sections[i].text) for i in readable], max(budget - heads, 0))
    share_of = dict(zip(readable, shares, strict=True))
    chosen, parts = [], []
    for i, section in enumerate(sections):
        if skipped[i]:
            parts.append(
                PartRead(heading=section.heading, chars_total=len(section.text), chars_read=0, skipped="references")
            )
            continue
        body = _cut(section.text, share_of[i])
        chosen.append(Section(heading=section.heading, text=body))
        parts.append(PartRead(heading=section.heading, chars_total=len(section.text), chars_read=len(body)))
    return chosen, parts


def render(sections: list[Section], parts: list[PartRead], shown_of: list[int] | None = None) -> str:
    """Sections as Markdown, each cut one marked with how much of it is shown (``shown_of``: the length of each
    section, skipped ones included, that a cut is measured against, when filler was dropped first)."""
    lengths = [p.chars_total for p in parts] if shown_of is None else shown_of
    by_heading = [(p, n) for p, n in zip(parts, lengths, strict=True) if p.skipped is None]
    out = []
    for section, (part, length) in zip(sections, by_heading, strict=True):
        head = f"## {section.heading}\n" if section.heading else ""
        tail = ""
        if part.chars_read < length:
            tail = f"\n[... section continues; {part.chars_read} of {part.chars_total} characters shown]"
        elif part.filler_dropped:
            # what was dropped, said plainly: a bare "repeated text" read as filler to a capable reviewer
            tail = (
                f"\n[the review harness left out {part.filler_dropped} characters here: sentences the paper "
                "already said, word for word, or that loop the same words]"
            )
        out.append(f"{head}{section.text}{tail}")
    return "\n\n".join(out)


def plan_reading(paper: PaperText, budget: int) -> tuple[str, Reading]:
    """The text to show the reviewer and its record (``whole`` or ``excerpts``)."""
    sections = paper.sections or [Section(heading="", text=paper.text)]
    if paper.chars <= budget:
        parts = [PartRead(heading=s.heading, chars_total=len(s.text), chars_read=len(s.text)) for s in sections]
        reading = Reading(
            mode="whole",
            chars_total=paper.chars,
            chars_read=paper.chars,
            budget_chars=budget,
            complete=True,
            parts=parts,
            ingest=paper.ingest,
        )
        return paper.text, reading
    cleaned, dropped = drop_filler(sections)
    chosen, parts = excerpts(cleaned, budget)
    for part, original, lost in zip(parts, sections, dropped, strict=True):
        part.chars_total, part.filler_dropped = len(original.text), lost  # of the paper as written
    text = render(chosen, parts, shown_of=[len(s.text) for s in cleaned])
    read = sum(p.chars_read for p in parts)
    reading = Reading(
        mode="excerpts",
        chars_total=paper.chars,
        chars_read=read,
        budget_chars=budget,
        complete=False,
        parts=parts,
        ingest=paper.ingest,
        filler_dropped=sum(dropped),
    )
    return text, reading


def chunk_sections(sections: list[Section], parts: list[PartRead], chunk_chars: int) -> list[str]:
    """Rendered sections packed into chunks of at most about ``chunk_chars`` characters."""
    chunks: list[str] = []
    current = ""
    for piece in render(sections, parts).split("\n\n## "):
        piece = piece if not chunks and not current else "## " + piece
        while len(piece) > chunk_chars:  # one long section: split it on its own
            if current:
                chunks.append(current)
                current = ""
            chunks.append(piece[:chunk_chars])
            piece = piece[chunk_chars:]
        if current and len(current) + len(piece) + 2 > chunk_chars:
            chunks.append(current)
            current = ""
        current = f"{current}\n\n{piece}" if current else piece
    if current.strip():
        chunks.append(current)
    return chunks


def plan_parts(paper: PaperText, chunk_chars: int, max_parts: int) -> tuple[list[str], Reading]:
    """Parts for ``summaries`` mode: at most ``max_parts`` chunks, sections shortened if needed."""
    sections = paper.sections or [Section(heading="", text=paper.text)]
    budget = int(chunk_chars * max_parts * 0.85)  # headroom: packing sections into chunks is not exact
    dropped = [0] * len(sections)
    if paper.chars > budget:  # over what the parts can hold: filler goes before any section is cut
        sections, dropped = drop_filler(sections)
    chosen, parts = excerpts(sections, budget)
    for part, lost in zip(parts, dropped, strict=True):
        part.filler_dropped = lost
    chunks = chunk_sections(chosen, parts, chunk_chars)
    read = sum(p.chars_read for p in parts)
    complete = all(p.chars_read == p.chars_total for p in parts if p.skipped is None)
    if len(chunks) > max_parts:  # rare: what was dropped is taken off the record
        read -= sum(len(c) for c in chunks[max_parts:])
        chunks, complete = chunks[:max_parts], False
    reading = Reading(
        mode="summaries",
        chars_total=paper.chars,
        chars_read=read,
        budget_chars=budget,
        complete=complete,
        parts=parts,
        ingest=paper.ingest,
        filler_dropped=sum(dropped),
    )
    return chunks, reading
