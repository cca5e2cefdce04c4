"""Regenerate the abstracts language-model template's text from the bundled ICLR 2022 corpus.

The ``abstracts_lm`` template trains a character-level GPT on the titles and abstracts of the 459
ICLR 2022 submissions that FARS ships as its offline literature corpus (OpenReview content, CC BY
4.0; see fars/literature/data/README.md). This script writes the text it trains on,
``experiments/abstracts_lm/abstracts.jsonl.gz``: one paper a line (``id``, ``title``, ``abstract``,
``split``), the text folded to printable ASCII so the model's vocabulary stays small (typographic
quotes and dashes to plain ones, ligatures split, Greek letters spelled out, anything else dropped),
and a fixed held-out split *by paper*: about a tenth of the characters, chosen by a hash of the
OpenReview id, topped up and swapped so they fill the tenth almost exactly. Usage::

    python benchmarks/build_abstracts_corpus.py [--source fars/literature/data/iclr2022_corpus.jsonl]

It prints the papers and characters of each split and the file's size. The output is byte for byte
the same on every run (sorted keys, gzip without a time stamp).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import sys
import unicodedata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = REPO / "fars" / "literature" / "data" / "iclr2022_corpus.jsonl"
TARGET = REPO / "experiments" / "abstracts_lm" / "abstracts.jsonl.gz"
VAL_SHARE = 0.1
PLAIN = {
    "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-", "\u2212": "-",
    "\u00d7": "x", "\u2217": "*", "\u00b7": ".", "\u2026": "...", "\u2032": "'", "\u00b4": "'", "\u223c": "~",
    "\u2248": "~", "\u2192": "->", "\u2264": "<=", "\u2265": ">=", "\u226a": "<<", "\u27e8": "<", "\u27e9": ">",
    "\u221e": "infinity", "\u221a": "sqrt", "\u2206": "Delta", "\u2113": "l", "\u0131": "i",
}  # fmt: skip


def to_ascii(text: str) -> str:
    """``text`` in printable ASCII: the replacements above, then compatibility decomposition (ligatures,
    accents), Greek letters by name (``theta``), and anything still outside ASCII dropped; whitespace folded."""
    out = []
    for ch in unicodedata.normalize("NFKD", "".join(PLAIN.get(c, c) for c in text)):
        if " " <= ch <= "~":
            out.append(ch)
        elif ch.isspace():
            out.append(" ")
        elif unicodedata.name(ch, "").startswith("GREEK") and "LETTER" in unicodedata.name(ch, ""):
            word = unicodedata.name(ch).split("LETTER ")[-1].split()[0].lower()
            out.append(word.capitalize() if "CAPITAL" in unicodedata.name(ch) else word)
    return " ".join("".join(out).split())


def document(title: str, abstract: str) -> str:
    """How one paper appears in the training text: its title, a line break, its abstract, a blank line."""
    return f"{title}\n{abstract}\n\n"


def papers(source: Path) -> list[dict[str, str]]:
    """Every paper of ``source`` with an abstract: id, ASCII title and abstract."""
    rows = []
    with source.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            paper = json.loads(line)
            if not paper.get("id") or not paper.get("title"):
                raise ValueError(f"{source}:{line_no}: a paper without id or title; is this the bundled corpus?")
            if paper.get("abstract"):
                rows.append(
                    {"id": paper["id"], "title": to_ascii(paper["title"]), "abstract": to_ascii(paper["abstract"])}
                )
    return rows


def split(rows: list[dict[str, str]]) -> dict[str, str]:
    """id -> 'train' or 'val': papers by hashed id until a tenth of the text, then the best fits and swaps."""
    size = {r["id"]: len(document(r["title"], r["abstract"])) for r in rows}
    target = VAL_SHARE * sum(size.values())
    order = sorted(size, key=lambda i: hashlib.sha256(i.encode()).hexdigest())
    val: set[str] = set()
    taken = 0
    for pid in order:
        if taken + size[pid] > target:
            break
        val.add(pid)
        taken += size[pid]
    while True:  # top up with the largest paper that still fits, so the held-out share is close to a tenth
        fits = [pid for pid in order if pid not in val and taken + size[pid] <= target]
        if not fits:
            break
        best = max(fits, key=lambda i: size[i])
        val.add(best)
        taken += size[best]
    while True:  # then swap a held-out paper for a longer training one while that closes the gap further
        gap = target - taken
        swaps = [(size[t] - size[v], v, t) for v in val for t in order if t not in val and 0 < size[t] - size[v] <= gap]
        if not swaps:
            break
        gain, out, into = max(swaps)
        val.remove(out)
        val.add(into)
        taken += gain
    return {pid: "val" if pid in val else "train" for pid in order}


def encode(rows: list[dict[str, str]], splits: dict[str, str]) -> bytes:
    """The gzip bytes of the JSONL file (no time stamp in the header, so rebuilding changes nothing)."""
    lines = [
        json.dumps({**r, "split": splits[r["id"]]}, sort_keys=True) + "\n" for r in sorted(rows, key=lambda r: r["id"])
    ]
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=9, mtime=0, filename="") as handle:
        handle.write("".join(lines).encode("ascii"))
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    """Write the template's text and print what was written."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="the bundled ICLR 2022 corpus (JSONL)")
    parser.add_argument("--target", type=Path, default=TARGET)
    args = parser.parse_args(argv)
    if not args.source.is_file():
        print(f"no such file {args.source}; pass --source PATH/TO/iclr2022_corpus.jsonl", file=sys.stderr)
        return 2
    rows = papers(args.source)
    splits = split(rows)
    data = encode(rows, splits)
    args.target.parent.mkdir(parents=True, exist_ok=True)
    args.target.write_bytes(data)
    for name in ("train", "val"):
        chosen = [r for r in rows if splits[r["id"]] == name]
        chars = sum(len(document(r["title"], r["abstract"])) for r in chosen)
        print(f"{name}: {len(chosen)} papers, {chars} characters")
    print(f"wrote {args.target} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
