"""Regenerate the bundled offline literature corpus from the ICLR 2022 dev data.

Only titles and abstracts (OpenReview content, CC BY 4.0) and bibliographic fields are kept; the
ratings, decisions and full texts stay out of the package. Usage:

    python benchmarks/build_literature_corpus.py [--source ../shared/data/iclr2022/dev.jsonl]

It prints how many records it wrote and the file's size.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "iclr2022" / "dev.jsonl"
TARGET = REPO / "fars" / "literature" / "data" / "iclr2022_corpus.jsonl"
KEPT = ("id", "title", "abstract", "year", "venue", "url")


def corpus_rows(source: Path) -> list[dict[str, object]]:
    """One corpus row per paper of ``source``: id, title, abstract, year, venue and URL only."""
    rows = []
    with source.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            paper = json.loads(line)
            if not paper.get("id") or not paper.get("title"):
                raise ValueError(f"{source}:{line_no}: a paper without id or title; is this the ICLR dev file?")
            rows.append(
                {
                    "id": paper["id"],
                    "title": " ".join(paper["title"].split()),
                    "abstract": " ".join((paper.get("abstract") or "").split()) or None,
                    "year": paper.get("year"),
                    "venue": f"{paper.get('venue', 'ICLR')} {paper.get('year', '')}".strip(),
                    "url": paper.get("openreview_url") or f"https://openreview.net/forum?id={paper['id']}",
                }
            )
    rows.sort(key=lambda r: str(r["id"]))
    return rows


def main(argv: list[str] | None = None) -> int:
    """Write the corpus file and print what was written."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="the ICLR 2022 dev.jsonl")
    parser.add_argument("--target", type=Path, default=TARGET)
    args = parser.parse_args(argv)
    if not args.source.is_file():
        print(f"no such file {args.source}; pass --source PATH/TO/dev.jsonl", file=sys.stderr)
        return 2
    rows = corpus_rows(args.source)
    assert all(set(r) == set(KEPT) for r in rows)
    args.target.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)
    args.target.write_text(text, encoding="utf-8")
    print(f"wrote {len(rows)} records, {len(text.encode()) / 1024:.0f} KiB -> {args.target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
