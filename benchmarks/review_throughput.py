"""Reviewer throughput: reviews per hour and tokens per review, per model.

Reviews the first N papers of the ICLR 2022 dev data (or a Markdown file) with the agentic reviewer
as configured (form, ensemble, meta-review, reading budget), one model after another, with the
response cache off so every call is really made. Usage:

    python benchmarks/review_throughput.py                                  # scripted and embedded model
    python benchmarks/review_throughput.py --models local/smollm2-135m --papers 3 --threads 1
    python benchmarks/review_throughput.py --ensemble 1 --no-meta --max-chars 2500

It prints one line per model: papers, valid-form rate, seconds per review, reviews per hour,
input/output tokens per review and model calls per review.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DEV = REPO.parent / "shared" / "data" / "iclr2022" / "dev.jsonl"


def load_texts(source: Path, n: int) -> list[tuple[str, str]]:
    """(id, text) of the first ``n`` papers of a JSONL file, or the one paper of a Markdown file."""
    if source.suffix in (".md", ".txt"):
        return [(source.stem, source.read_text(encoding="utf-8"))]
    out = []
    with source.open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            out.append((row["id"], row["text"]))
            if len(out) == n:
                break
    return out


async def bench_model(model: str, papers: list[tuple[str, str]], args: argparse.Namespace) -> dict[str, float]:
    """Review every paper with one model; usage from the run's ledger."""
    from fars.config import LLMConfig, LocalModelConfig
    from fars.context import call_context
    from fars.llm.client import LLMClient
    from fars.run.ledger import Ledger
    from review.ingest.paper import paper_from_text
    from review.reviewer import AgenticReviewer
    from review.settings import ReviewerConfig

    settings = ReviewerConfig(
        form=args.form, ensemble=args.ensemble, meta_review=not args.no_meta, max_paper_chars=args.max_chars,
        related_works=0, calibration=None,
    )  # fmt: skip
    folder = Path(tempfile.mkdtemp(prefix="fars-review-bench-"))
    ledger = Ledger(folder / "ledger.sqlite")
    client = LLMClient(LLMConfig(model=model, cache=False, local=LocalModelConfig(n_threads=args.threads)), ledger)
    reviewer = AgenticReviewer(client, settings, name=f"model:{model}")
    valid, started = 0, time.perf_counter()
    try:
        for paper_id, text in papers:
            with call_context(paper_id, "review"):
                try:
                    await reviewer.review(paper_from_text(text), paper_id=paper_id)
                    valid += 1
                except Exception as exc:  # a failed review counts against the valid-form rate
                    print(f"  {model} {paper_id}: no valid review ({type(exc).__name__}: {str(exc)[:120]})")
    finally:
        client.close()
    wall = time.perf_counter() - started
    usage = ledger.total_usage()
    n = len(papers)
    return {
        "papers": n,
        "valid": valid / n,
        "s_per_review": wall / n,
        "reviews_per_hour": 3600 * n / wall if wall > 0 else float("inf"),
        "input_tokens": usage.input_tokens / n,
        "output_tokens": usage.output_tokens / n,
        "calls": usage.calls / n,
    }


def main() -> int:
    """Run the benchmark and print its figures."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["scripted/default", "local/smollm2-135m"])
    p.add_argument("--papers", type=int, default=2, help="papers per model")
    p.add_argument("--data", type=Path, default=DEV, help="JSONL of papers (text field) or one .md paper")
    p.add_argument("--form", default="iclr2025", choices=["iclr2025", "iclr2022"])
    p.add_argument("--ensemble", type=int, default=2)
    p.add_argument("--no-meta", action="store_true", help="no area-chair meta-review")
    p.add_argument("--max-chars", type=int, default=6000, help="paper characters one review reads")
    p.add_argument("--threads", type=int, default=1, help="llama.cpp threads for the embedded model")
    args = p.parse_args()
    if not args.data.is_file():
        print(f"no data at {args.data}; pass --data with a JSONL of papers or a .md paper", file=sys.stderr)
        return 2
    papers = load_texts(args.data, args.papers)
    print(
        f"review throughput: {len(papers)} paper(s) per model, form {args.form}, ensemble {args.ensemble}, "
        f"meta-review {not args.no_meta}, reading budget {args.max_chars} chars"
    )
    print(
        f"{'model':<24} {'papers':>6} {'valid':>6} {'s/review':>9} {'reviews/h':>10} {'in tok':>8} {'out tok':>8} {'calls':>6}"
    )
    for model in args.models:
        r = asyncio.run(bench_model(model, papers, args))
        print(
            f"{model:<24} {r['papers']:>6.0f} {r['valid']:>6.0%} {r['s_per_review']:>9.1f} {r['reviews_per_hour']:>10.1f} "
            f"{r['input_tokens']:>8.0f} {r['output_tokens']:>8.0f} {r['calls']:>6.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
