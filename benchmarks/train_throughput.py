"""Training throughput of one template under plain torch, DDP and DeepSpeed ZeRO 0/2/3, with the ratios.

    python benchmarks/train_throughput.py                 # CPU: tiny GPT, 2 gloo ranks for DDP/DeepSpeed
    python benchmarks/train_throughput.py --gpu           # one GPU: the ~86M GPT, bf16, plain vs ZeRO-2, MFU

Every configuration is a real run of ``experiments/chargpt/train.py`` through the executor's command
builder; tokens/s (training time only, summed over ranks) and MFU come from its ``metrics.json``.
The GPU goals: MFU >= 40% on an H100 and DeepSpeed within 5% of plain torch.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.metrics import read_metrics
from fars.executor.launch import build_command, job_env

CPU_MODEL = ["--n_layer", "2", "--n_head", "2", "--n_embd", "64", "--block_size", "64", "--batch_size", "32"]
GPU_MODEL = ["--n_layer", "12", "--n_head", "12", "--n_embd", "768", "--block_size", "1024", "--batch_size", "16"]


def run(
    name: str, engine: str, ranks: int, extra: list[str], common: list[str], threads: int
) -> dict[str, float | None]:
    """Train one configuration; its tokens/s and MFU."""
    with tempfile.TemporaryDirectory() as tmp:
        args = [*common, "--engine", engine, "--out_dir", tmp, *extra]
        cmd = build_command("experiments.chargpt.train", args, ranks=ranks, launcher="torchrun")
        done = subprocess.run(cmd, env=job_env(threads), capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
        m = read_metrics(Path(tmp) / "metrics.json")
        return {"tokens_per_s": m.tokens_per_s, "mfu": m.mfu, "parameters": float(m.parameters)}


def main() -> None:
    """Run the configurations and print a table with ratios against plain torch."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gpu", action="store_true", help="one GPU: the ~86M model in bf16, plain vs DeepSpeed ZeRO-2")
    p.add_argument("--steps", type=int, default=0, help="0: 60 on CPU, 300 on GPU")
    p.add_argument("--no-compile", action="store_true", help="GPU: skip torch.compile")
    a = p.parse_args()
    if a.gpu:
        steps = a.steps or 300
        common = [
            *GPU_MODEL,
            "--device",
            "cuda",
            "--precision",
            "bf16",
            "--steps",
            str(steps),
            "--eval_every",
            str(steps),
        ]
        common += [] if a.no_compile else ["--compile"]
        configs = [("plain bf16", "plain", 1, []), ("deepspeed ZeRO-2 bf16", "deepspeed", 1, ["--zero_stage", "2"])]
        threads = 4
    else:
        steps = a.steps or 60
        common = [*CPU_MODEL, "--steps", str(steps), "--eval_every", str(steps)]
        configs = [
            ("plain (1 rank)", "plain", 1, []),
            ("ddp (2 ranks)", "ddp", 2, []),
            ("deepspeed ZeRO-0 (2 ranks)", "deepspeed", 2, ["--zero_stage", "0"]),
            ("deepspeed ZeRO-2 (2 ranks)", "deepspeed", 2, ["--zero_stage", "2"]),
            ("deepspeed ZeRO-3 (2 ranks)", "deepspeed", 2, ["--zero_stage", "3"]),
        ]
        threads = 1
    results = {name: run(name, engine, ranks, extra, common, threads) for name, engine, ranks, extra in configs}
    plain = results[configs[0][0]]["tokens_per_s"] or 1.0
    ddp = results.get("ddp (2 ranks)", {}).get("tokens_per_s")
    print(f"chargpt, {int(next(iter(results.values()))['parameters'] or 0):,} parameters, {steps} steps")
    print(f"{'configuration':30s} {'tokens/s':>12s} {'vs plain':>9s} {'vs ddp':>8s} {'MFU':>7s}")
    for name, r in results.items():
        tps = r["tokens_per_s"] or 0.0
        vs_ddp = f"{tps / ddp:8.2f}" if ddp else f"{'—':>8s}"
        mfu = f"{100 * r['mfu']:6.1f}%" if r["mfu"] is not None else f"{'—':>7s}"
        print(f"{name:30s} {tps:12,.0f} {tps / plain:9.2f} {vs_ddp} {mfu}")


if __name__ == "__main__":
    main()
