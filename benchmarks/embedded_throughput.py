"""Embedded model throughput: a default run's papers per hour against the bound from its tokens.

The bound is the time llama.cpp needs for the tokens the run must evaluate: its unique prompt tokens
(each prompt less the longest prefix it shares with an earlier prompt) at the measured prompt rate,
plus its generated tokens at the measured generation rate, both rates measured afterwards by raw
llama-cpp-python on the same loaded model and thread in this process. Goal: papers per hour at least
0.8 of the bound. It also prints review seconds per paper and a digest of the reviews, so two
checkouts can be compared for the same outputs (``--code``), back to back under the same load:

    python benchmarks/embedded_throughput.py                         # a default run (2 papers, 2 in flight)
    python benchmarks/embedded_throughput.py --review-only --papers 2   # only the review workload, on dev papers
    python benchmarks/embedded_throughput.py --review-only --code ../main   # the same on another checkout (before)
    python benchmarks/embedded_throughput.py --prompt-cache-mb 0      # no prefix reuse at all
    python benchmarks/embedded_throughput.py --threads 2 --hog 2      # `fars run` as shipped, a busy process per core
    python benchmarks/embedded_throughput.py --threads 2 --hog 2 --keep runs/hog   # the same, its papers kept

``--hog N`` keeps N busy processes (one per core is the issue's "CPU hog") running for the whole run and
prints what became of every written paper: reviewed, kept unreviewed, or lost (there must be none).

``--review-only`` reviews dev papers as a default run's review stage does (ensemble of two and an
area chair, related work from the offline corpus), two papers in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEV = REPO.parent / "shared" / "data" / "iclr2022" / "dev.jsonl"
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("OMP_NUM_THREADS", "1")


def unique_prompt_tokens(prompts: list[tuple[int, ...]]) -> int:
    """Tokens of the prompts not shared as a prefix with an earlier prompt (the nodes of their trie)."""
    root: dict[int, Any] = {}
    unique = 0
    for prompt in prompts:
        node = root
        for token in prompt:
            child = node.get(token)
            if child is None:
                child = node[token] = {}
                unique += 1
            node = child
    return unique


def raw_rates(provider: Any, prompt: tuple[int, ...], rounds: int = 3) -> tuple[float, float]:
    """(prompt tokens/s, generated tokens/s) of raw llama-cpp-python on the provider's model and thread.

    The prompt rate evaluates ``prompt`` (a prompt of the run) on an empty context; the generation rate
    is greedy decoding without a grammar, less the time of its short prompt. Best of ``rounds``.
    """

    def prompt_rate(llm: Any) -> float:
        best = 0.0
        for _ in range(rounds):
            llm.reset()
            started = time.perf_counter()
            llm.eval(list(prompt))
            best = max(best, len(prompt) / (time.perf_counter() - started))
        return best

    def generation_rate(llm: Any) -> float:
        seed = llm.tokenize(b"Write a long, detailed story about a lighthouse keeper and the sea.")
        best = 0.0
        for _ in range(rounds):
            llm.reset()
            started = time.perf_counter()
            llm.eval(seed)
            read = time.perf_counter() - started
            llm.reset()
            started = time.perf_counter()
            out = llm.create_completion(
                llm.detokenize(seed).decode("utf-8", "ignore"), max_tokens=160, temperature=0.0, top_k=1
            )
            spent = time.perf_counter() - started - read
            best = max(best, out["usage"]["completion_tokens"] / max(spent, 1e-9))
        return best

    return provider.with_model("smollm2-135m", prompt_rate), provider.with_model("smollm2-135m", generation_rate)


def review_digest(reviews: list[Any]) -> str:
    """A short hash of the reviews' content (their timings left out), to compare outputs across runs."""
    text = json.dumps([r for r in reviews], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def providers_seen() -> list[Any]:
    """Every embedded provider built from now on (the benchmark reads their statistics)."""
    from fars.llm import local

    seen: list[Any] = []
    original = local.LocalLlamaProvider.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        seen.append(self)

    local.LocalLlamaProvider.__init__ = init  # type: ignore[method-assign]
    local.LocalLlamaProvider.record_prompts = True
    return seen


def overrides(args: argparse.Namespace) -> list[str]:
    """The run's overrides: the defaults, this machine's threads, no response cache, no tracker."""
    found = ["tracker=disabled", "llm.cache=false", f"llm.local.n_threads={args.threads}"]
    if args.prompt_cache_mb is not None:
        found.append(f"llm.local.prompt_cache_mb={args.prompt_cache_mb}")
    return found


def default_run(args: argparse.Namespace) -> dict[str, Any]:
    """A default ``fars run`` in this process; its papers per hour, review time and token counts."""
    from fars.commands.configured import compose_run
    from fars.pipeline.queue import Pipeline

    seen = providers_seen()
    cfg = compose_run([*overrides(args), f"pipeline.papers={args.papers}"])
    with tempfile.TemporaryDirectory(prefix="fars-embedded-") as scratch:
        tmp = str(args.keep) if args.keep else scratch
        started = time.perf_counter()
        record = asyncio.run(Pipeline(cfg, Path(tmp)).run())
        wall = time.perf_counter() - started
        reviews = [json.loads(p.read_text()) for p in sorted(Path(tmp).glob("projects/*/review.json"))]
    papers = record.papers
    fates = {"reviewed": 0, "kept unreviewed": 0, "written, then lost": 0}
    for p in record.projects:
        if "writing" not in p.stage_seconds:
            continue
        if p.rating is not None:
            fates["reviewed"] += 1
        elif p.error and p.error.startswith("unreviewed"):
            fates["kept unreviewed"] += 1
        else:
            fates["written, then lost"] += 1
    review_s = [p.stage_seconds["review"] for p in record.projects if "review" in p.stage_seconds]
    return {
        "wall_s": wall,
        "papers": papers,
        "papers_per_hour": papers / wall * 3600 if wall else 0.0,
        "review_s_per_paper": statistics.mean(review_s) if review_s else float("nan"),
        "review_tokens": sum(u.total_tokens for k, u in record.totals.by_stage.items() if k == "review"),
        "fates": fates,
        "digest": review_digest([{k: v for k, v in r.items() if k not in ("wall_s", "usage")} for r in reviews]),
        "providers": seen,
    }


def review_only(args: argparse.Namespace) -> dict[str, Any]:
    """Review dev papers as a default run's review stage does (two in flight); seconds per paper."""
    from fars.commands.configured import compose_run
    from fars.context import call_context
    from fars.literature import make_backend
    from fars.llm.client import LLMClient
    from fars.run.ledger import Ledger
    from fars.stages.reviewing import build_reviewer
    from review.ingest.paper import paper_from_text

    seen = providers_seen()
    cfg = compose_run(overrides(args))
    rows = []
    with DEV.open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            rows.append((row["id"], row["text"]))
            if len(rows) == args.papers:
                break
    with tempfile.TemporaryDirectory(prefix="fars-embedded-") as tmp:
        client = LLMClient(cfg.llm, Ledger(Path(tmp) / "ledger.sqlite"))
        reviewer = build_reviewer(
            client, cfg.reviewer, make_backend(cfg.literature), top_k=cfg.literature.top_k, model=cfg.llm.model
        )
        times: dict[str, float] = {}

        async def one(paper_id: str, text: str) -> Any:
            with call_context(paper_id, "review"):
                started = time.perf_counter()
                result = await reviewer.review(paper_from_text(text), paper_id=paper_id)
                times[paper_id] = time.perf_counter() - started
            return result.model_dump(exclude={"wall_s", "usage"})

        async def all_papers() -> list[Any]:
            gate = asyncio.Semaphore(cfg.pipeline.projects)  # as many papers in flight as a default run has

            async def gated(paper_id: str, text: str) -> Any:
                async with gate:
                    return await one(paper_id, text)

            return list(await asyncio.gather(*(gated(i, t) for i, t in rows)))

        started = time.perf_counter()
        try:
            reviews = asyncio.run(all_papers())
        finally:
            client.close()
        wall = time.perf_counter() - started
    return {
        "wall_s": wall,
        "papers": len(rows),
        "papers_per_hour": len(rows) / wall * 3600,
        "review_s_per_paper": statistics.mean(times.values()),
        "digest": review_digest(reviews),
        "providers": seen,
    }


def main() -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--papers", type=int, default=2, help="papers of the run (default run: 2)")
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads (1 is faster under load)")
    parser.add_argument("--prompt-cache-mb", type=int, default=None, help="llm.local.prompt_cache_mb (0: no reuse)")
    parser.add_argument("--review-only", action="store_true", help="only the review workload, on dev papers")
    parser.add_argument("--code", type=Path, default=REPO, help="the FARS checkout to import (compare before/after)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--hog", type=int, default=0, help="busy processes kept running during the run (0: none)")
    parser.add_argument("--keep", type=Path, default=None, help="run the default run in this (new) folder and keep it")
    args = parser.parse_args()
    if args.keep is not None and args.keep.exists() and any(args.keep.iterdir()):
        parser.error(f"--keep {args.keep}: the folder is not empty; name a new one")
    sys.path.insert(0, str(args.code.resolve()))
    load = os.getloadavg()
    print(
        f"code: {args.code}  threads: {args.threads}  load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.hog)]
    try:
        result = review_only(args) if args.review_only else default_run(args)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    if args.hog:
        print(
            f"under {args.hog} busy process(es): " + ", ".join(f"{v} {k}" for k, v in result.get("fates", {}).items())
        )
    providers = [p for p in result.pop("providers") if getattr(p, "stats", None) is not None and p.stats.calls]
    print(
        f"{'review-only' if args.review_only else 'default run'}: {result['papers']} paper(s) in {result['wall_s']:.0f} s"
        f" = {result['papers_per_hour']:.1f} papers/h; review {result['review_s_per_paper']:.0f} s per paper; "
        f"reviews digest {result['digest']}"
    )
    rates = (0.0, 0.0)
    if providers:
        stats = providers[0].stats
        rates = raw_rates(providers[0], max(stats.prompts, key=len))
    if providers and min(rates) <= 0:
        print(f"bound: n/a (the raw rates measured after the run were {rates[0]:.0f} and {rates[1]:.1f} tok/s)")
    elif providers:
        unique = unique_prompt_tokens(stats.prompts)
        prompt_rate, gen_rate = rates
        bound_s = unique / prompt_rate + stats.generated_tokens / gen_rate
        ratio = bound_s / result["wall_s"]
        result.update(
            prompt_tokens=stats.prompt_tokens, evaluated_tokens=stats.evaluated_tokens, unique_prompt_tokens=unique,
            generated_tokens=stats.generated_tokens, prompt_rate=prompt_rate, generation_rate=gen_rate,
            model_prompt_s=stats.prompt_s, model_generate_s=stats.generate_s, bound_s=bound_s, ratio_to_bound=ratio,
            bound_papers_per_hour=result["papers"] / bound_s * 3600,
        )  # fmt: skip
        print(
            f"tokens: {stats.prompt_tokens:,} prompt sent, {stats.evaluated_tokens:,} evaluated, {unique:,} unique; "
            f"{stats.generated_tokens:,} generated"
        )
        print(
            f"raw llama-cpp-python: {prompt_rate:.0f} prompt tok/s, {gen_rate:.1f} generated tok/s; "
            f"FARS's calls: {stats.evaluated_tokens / max(stats.prompt_s, 1e-9):.0f} and "
            f"{stats.generated_tokens / max(stats.generate_s, 1e-9):.1f} (evaluation only)"
        )
        print(
            f"bound: {bound_s:.0f} s of model work = {result['bound_papers_per_hour']:.1f} papers/h; "
            f"ratio to the bound {ratio:.2f} (goal >= 0.8)"
        )
    else:
        print("bound: n/a (this checkout's embedded provider keeps no token statistics)")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
