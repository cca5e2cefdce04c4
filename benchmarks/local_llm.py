"""Embedded model speed: generated tokens/s through FARS's client against raw llama-cpp-python.

Both sides run the same prompts in the same process, on the very same loaded model and thread, at
temperature 0 with the same output limit, alternating rounds so machine noise hits both alike. The client side
goes through everything a stage call does (litellm, the custom provider, ledger, budget; the cache
off). Goal: client/raw ratio at least 0.95. Usage:

    python benchmarks/local_llm.py                # 3 rounds of 4 prompts, 2 threads
    python benchmarks/local_llm.py --rounds 5 --threads 1 --max-tokens 128
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

PROMPTS = [
    "Explain in a paragraph why weight decay can help a small network generalise.",
    "Write a short abstract for a paper on learning-rate warm-up in tiny transformers.",
    "List three risks of drawing conclusions from experiments with only two random seeds.",
    "Describe how modular addition is used to study generalisation in neural networks.",
]


def main() -> None:
    """Run the comparison and print tokens/s for both sides and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=96)
    args = parser.parse_args()

    from fars.config import LLMConfig, LocalModelConfig
    from fars.llm.client import LLMClient
    from fars.llm.local import LocalLlamaProvider, bundled_model_path
    from fars.run.ledger import Ledger

    path = bundled_model_path("smollm2-135m")
    cfg = LLMConfig(cache=False, max_tokens=args.max_tokens, local=LocalModelConfig(n_threads=args.threads, n_ctx=4096))
    ledger = Ledger(Path(tempfile.mkdtemp()) / "ledger.sqlite")
    client = LLMClient(cfg, ledger)
    provider: LocalLlamaProvider = client.handlers["local"]

    def raw_round() -> tuple[int, float]:
        tokens, start = 0, time.perf_counter()
        for prompt in PROMPTS:
            out = provider.with_model(
                "smollm2-135m",
                lambda llm, p=prompt: llm.create_chat_completion(
                    messages=[{"role": "user", "content": p}], temperature=0.0, max_tokens=args.max_tokens
                ),
            )
            tokens += out["usage"]["completion_tokens"]
        return tokens, time.perf_counter() - start

    async def client_round() -> tuple[int, float]:
        tokens, start = 0, time.perf_counter()
        for prompt in PROMPTS:
            done = await client.complete([{"role": "user", "content": prompt}])
            tokens += done.output_tokens
        return tokens, time.perf_counter() - start

    asyncio.run(client_round())  # warm-up: loads the client's copy of the model, imports litellm paths
    raw_round()
    raw_rates, client_rates = [], []
    for _ in range(args.rounds):
        tokens, seconds = raw_round()
        raw_rates.append(tokens / seconds)
        tokens, seconds = asyncio.run(client_round())
        client_rates.append(tokens / seconds)
    client.close()
    raw_median, client_median = statistics.median(raw_rates), statistics.median(client_rates)
    print(f"model: {path.name}  threads: {args.threads}  max_tokens: {args.max_tokens}  rounds: {args.rounds}")
    print(f"raw llama-cpp-python : {raw_median:7.1f} generated tok/s (median; {[round(r, 1) for r in raw_rates]})")
    print(
        f"through the client   : {client_median:7.1f} generated tok/s (median; {[round(r, 1) for r in client_rates]})"
    )
    print(f"ratio client/raw     : {client_median / raw_median:.3f}  (goal >= 0.95)")


if __name__ == "__main__":
    main()
