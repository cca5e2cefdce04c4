"""Regenerate the bundled offline literature corpus: titles and abstracts of ICLR, ICML and NeurIPS papers.

The corpus (``fars/literature/data/ml_papers.jsonl.gz``) merges the ICLR 2022 dev split with public
paper lists of several ICLR, ICML and NeurIPS years, each read from a public GitHub repository pinned
to a commit (``SOURCES`` below). Only venue-years whose papers are on OpenReview are taken, because
OpenReview dedicates the metadata of its works (title, authors, abstract) to the public domain
(CC0 1.0) and ICLR's submissions are CC BY 4.0; ratings, decisions, keywords and full texts stay out.
Records are kept only with an abstract of at least ``MIN_ABSTRACT`` characters, deduplicated by
normalised title, and written as gzipped JSONL, byte for byte the same on every run. Usage::

    python benchmarks/build_literature_corpus.py --mirror DIR [--iclr-dev PATH] [--target PATH]
    python benchmarks/build_literature_corpus.py --dev-only --target /tmp/iclr2022.jsonl.gz

``DIR`` holds the fetched repositories, one folder each named ``owner+name``: either a bare git
directory under ``owner+name/repo`` (read at the pinned commit) or a checkout of that commit. Without
``--mirror`` only the ICLR 2022 dev split is read (``--dev-only``). The script prints the records per
venue and year and rewrites the counts table of ``fars/literature/data/README.md`` for the default target.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import json
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DEV = REPO.parent / "shared" / "data" / "iclr2022" / "dev.jsonl"
DATA = REPO / "fars" / "literature" / "data"
TARGET = DATA / "ml_papers.jsonl.gz"
README = DATA / "README.md"
MIN_ABSTRACT = 100  # characters: shorter "abstracts" are placeholders ("TBD", a title repeated)
FIRST_OPENREVIEW_YEAR = {"ICLR": 2013, "ICML": 2023, "NeurIPS": 2021}  # whose papers OpenReview hosts
LINKED_HEADER = ["paper_id", "title", "link", "keywords", "abstract"]  # the NeurIPS lists' columns
COUNTS_START, COUNTS_END = "<!-- counts:start -->", "<!-- counts:end -->"
csv.field_size_limit(10_000_000)


@dataclass(frozen=True)
class Source:
    """One file of a public repository at a pinned commit, and how to read it."""

    repo: str  # owner/name on GitHub
    commit: str
    path: str
    layout: str  # "csv": OpenReview forum id, title, abstract columns; "airas": a JSON list of papers
    venue: str
    year: int


DYLANJOO = ("DylanJoo/OpenReview", "4f17cbd97db48fa72a1168fe9b82d858f49de6af")
AIRAS = ("airas-org/airas-papers-db", "06f677c4d7b816a3fddc3ff804d657f0e2df94ae")
NEURIPS22 = ("346644054/NeurIPS2022-OpenReviewData", "99cd207b4ae5b10809f7df4c061fcd2c5fbaa6a9")
NEURIPS23 = ("chengyao-xie/NeurIPS2023-OpenReviewData", "0b8c5d786645ae55c84d37e7ae7b5635568d719c")
SOURCES = (
    Source(*DYLANJOO, "ICLR/ICLR17_submissions.csv", "csv", "ICLR", 2017),
    Source(*DYLANJOO, "ICLR/ICLR18_submissions.csv", "csv", "ICLR", 2018),
    *(Source(*AIRAS, f"data/iclr/{year}.json", "airas", "ICLR", year) for year in range(2020, 2025)),
    Source(*AIRAS, "data/icml/2023.json", "airas", "ICML", 2023),
    Source(*NEURIPS22, "papers.csv", "csv", "NeurIPS", 2022),
    *(Source(*NEURIPS23, f"{part}.csv", "csv", "NeurIPS", 2023) for part in ("oral", "spotlight", "poster")),
)


def clean(text: object) -> str:
    """``text`` with its whitespace folded to single spaces ('' for None)."""
    return " ".join(str(text or "").split())


def title_key(title: str) -> str:
    """The deduplication key of a title: lower-case letters and digits only."""
    return re.sub(r"[^a-z0-9]+", "", title.lower())


def openreview_row(forum_id: str, title: object, abstract: object, venue: str, year: int) -> dict[str, object]:
    """A corpus row for an OpenReview paper (the bare forum id; the reader prefixes ``openreview:``)."""
    return {
        "id": forum_id,
        "title": clean(title),
        "abstract": clean(abstract),
        "year": year,
        "venue": f"{venue} {year}",
        "url": f"https://openreview.net/forum?id={forum_id}",
    }


def dev_rows(path: Path) -> list[dict[str, object]]:
    """The ICLR 2022 dev split's papers (OpenReview forum ids): bibliographic fields only."""
    rows = []
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            paper = json.loads(line)
            if not paper.get("id") or not paper.get("title"):
                raise ValueError(f"{path}:{line_no}: a paper without id or title; is this the ICLR dev file?")
            year = int(paper.get("year") or 2022)
            rows.append(openreview_row(paper["id"], paper["title"], paper.get("abstract"), "ICLR", year))
    return rows


def linked_fields(line: str) -> list[str]:
    """The five fields of one line of a NeurIPS list (``LINKED_HEADER``), read around its forum link.

    Those lists were written without CSV escaping: a title's commas unquoted, an abstract's quotes not
    doubled. A line is one paper, so the title is what lies between the id and the forum link, the
    keywords the next (quoted) field, and the abstract the rest, its enclosing quotes removed."""
    parsed = next(csv.reader([line]))
    link = f"https://openreview.net/forum?id={parsed[0]}"
    if len(parsed) == len(LINKED_HEADER) and parsed[2] == link:
        return parsed
    forum_id = line.split(",", 1)[0]
    title, found, rest = line[len(forum_id) + 1 :].partition(f",https://openreview.net/forum?id={forum_id},")
    if not found:
        raise ValueError(f"a line without its forum link: {line[:80]!r}")
    if rest.startswith('"'):
        keywords, _, abstract = rest[1:].partition('",')
    else:
        keywords, _, abstract = rest.partition(",")
    if len(abstract) > 1 and abstract[0] == abstract[-1] == '"':
        abstract = abstract[1:-1]
    return [forum_id, title, f"https://openreview.net/forum?id={forum_id}", keywords, abstract]


def csv_rows(text: str, source: Source) -> list[dict[str, object]]:
    """Papers of an OpenReview paper-list CSV: columns ``paper_id`` or ``PID``, ``title``, ``abstract`` (any case)."""
    header = [name.strip().lower() for name in next(csv.reader([text.partition("\n")[0]]))]
    if header == LINKED_HEADER:
        records = [linked_fields(line) for line in text.splitlines()[1:] if line.strip()]
    else:
        records = list(csv.reader(io.StringIO(text)))[1:]
    id_col = "paper_id" if "paper_id" in header else "pid"
    rows = []
    for fields in records:
        if len(fields) != len(header):
            raise ValueError(
                f"{source.repo}:{source.path}: a row of {len(fields)} fields, not {len(header)}: {fields[:2]}"
            )
        row = dict(zip(header, fields, strict=True))
        forum_id = clean(row[id_col])
        if not re.fullmatch(r"[\w-]+", forum_id):
            raise ValueError(f"{source.repo}:{source.path}: a row without an OpenReview id: {fields[:3]}")
        rows.append(openreview_row(forum_id, row["title"], row["abstract"], source.venue, source.year))
    return rows


def airas_rows(text: str, source: Source) -> list[dict[str, object]]:
    """Papers of an airas-papers-db file: OpenReview ids where its URL gives one, else ``venue:year-hash``."""
    rows = []
    for paper in json.loads(text):
        url = clean(paper.get("paper_url"))
        forum = re.fullmatch(r"https://openreview\.net/forum\?id=([\w-]+)", url)
        if forum:
            row = openreview_row(forum.group(1), paper.get("title"), paper.get("abstract"), source.venue, source.year)
        else:  # the list's own ids repeat across years and even within one: make one from venue, year and title
            digest = hashlib.sha1(title_key(clean(paper.get("title"))).encode()).hexdigest()[:12]
            row = {
                "id": f"{source.venue.lower()}:{source.year}-{digest}",
                "title": clean(paper.get("title")),
                "abstract": clean(paper.get("abstract")),
                "year": source.year,
                "venue": f"{source.venue} {source.year}",
                "url": url or None,
            }
        authors = [clean(a) for a in paper.get("authors") or [] if clean(a)]
        if authors:
            row["authors"] = authors
        rows.append(row)
    return rows


def read_source(mirror: Path, source: Source) -> str:
    """The text of ``source``'s file from the fetched repository under ``mirror`` (git dir or checkout)."""
    folder = mirror / source.repo.replace("/", "+")
    git_dir = folder / "repo"
    if (git_dir / "HEAD").is_file():
        done = subprocess.run(
            ["git", f"--git-dir={git_dir}", "show", f"{source.commit}:{source.path}"],
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            raise FileNotFoundError(
                f"{git_dir} has no {source.path} at {source.commit[:12]}: {done.stderr.decode(errors='replace').strip()}"
            )
        return done.stdout.decode("utf-8")
    if (folder / source.path).is_file():
        return (folder / source.path).read_text(encoding="utf-8")
    raise FileNotFoundError(
        f"{folder} holds neither a git directory (repo/) nor {source.path}; fetch github:{source.repo} "
        f"(commit {source.commit[:12]}) into {folder}"
    )


def merge(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """Rows with a real abstract, one per normalised title and one per id, sorted by id.

    Of rows sharing a title, one with an OpenReview id (bare, no prefix) beats one with a made-up id, and
    otherwise the first listed wins: the ICLR 2022 dev split, then ``SOURCES`` in order."""
    ranked = sorted(range(len(rows)), key=lambda i: (":" in str(rows[i]["id"]), i))
    kept: dict[str, dict[str, object]] = {}
    for row in (rows[i] for i in ranked):
        key = title_key(str(row["title"]))
        if key and len(str(row["abstract"])) >= MIN_ABSTRACT and key not in kept:
            kept[key] = row
    merged = sorted(kept.values(), key=lambda r: str(r["id"]))
    repeated = [r["id"] for r, after in pairwise(merged) if r["id"] == after["id"]]
    if repeated:
        raise ValueError(f"papers with different titles share the ids {repeated[:5]}")
    return merged


def gzipped_jsonl(rows: list[dict[str, object]]) -> bytes:
    """``rows`` as JSONL (sorted keys), gzipped without a file name or time stamp: the same bytes every run."""
    text = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, compresslevel=9, mtime=0) as handle:
        handle.write(text.encode("utf-8"))
    return buffer.getvalue()


def counts_table(rows: list[dict[str, object]]) -> str:
    """The records per venue and year as a Markdown table, with a total line."""
    counts = Counter(str(r["venue"]) for r in rows)
    lines = ["| venue | records |", "| --- | ---: |"]
    lines += [f"| {venue} | {n} |" for venue, n in sorted(counts.items())]
    lines.append(f"| total | {len(rows)} |")
    return "\n".join(lines)


def update_readme(readme: Path, table: str) -> None:
    """Replace the table between the counts markers of ``readme`` with ``table``."""
    text = readme.read_text(encoding="utf-8")
    start, end = text.find(COUNTS_START), text.find(COUNTS_END)
    if start < 0 or end < start:
        raise ValueError(f"{readme} lacks the {COUNTS_START} ... {COUNTS_END} markers around its counts table")
    readme.write_text(text[: start + len(COUNTS_START)] + "\n" + table + "\n" + text[end:], encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Read the sources, write the corpus, print what was written."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--mirror", type=Path, help="folder of the fetched repositories (owner+name each)")
    parser.add_argument("--iclr-dev", type=Path, default=DEFAULT_DEV, help="the ICLR 2022 dev.jsonl")
    parser.add_argument("--dev-only", action="store_true", help="read only the ICLR 2022 dev split")
    parser.add_argument("--target", type=Path, default=TARGET)
    args = parser.parse_args(argv)
    if not args.iclr_dev.is_file():
        print(f"no such file {args.iclr_dev}; pass --iclr-dev PATH/TO/dev.jsonl", file=sys.stderr)
        return 2
    if args.mirror is None and not args.dev_only:
        repos = ", ".join(sorted({f"github:{s.repo}@{s.commit[:12]}" for s in SOURCES}))
        print(f"pass --mirror DIR holding {repos}, or --dev-only for the ICLR 2022 dev split alone", file=sys.stderr)
        return 2
    rows = dev_rows(args.iclr_dev)
    for source in () if args.dev_only else SOURCES:
        if source.year < FIRST_OPENREVIEW_YEAR[source.venue]:
            raise ValueError(f"{source.venue} {source.year} is not on OpenReview: its abstracts carry no open licence")
        text = read_source(args.mirror, source)
        rows += csv_rows(text, source) if source.layout == "csv" else airas_rows(text, source)
    merged = merge(rows)
    data = gzipped_jsonl(merged)
    args.target.parent.mkdir(parents=True, exist_ok=True)
    args.target.write_bytes(data)
    table = counts_table(merged)
    if args.target.resolve() == TARGET.resolve():
        update_readme(README, table)
    print(table)
    print(f"wrote {len(merged)} of {len(rows)} records, {len(data) / 2**20:.2f} MiB gzipped -> {args.target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
