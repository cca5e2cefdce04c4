"""Train the modular-addition MLP and write ``metrics.json``.

Usage: ``python -m experiments.modadd.train --out_dir DIR --seed 0 --steps 300 --lr 0.003 ...``
(every knob of ``experiments.modadd.SPEC`` is a flag). Data is made here, nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from torch import nn

from experiments.metrics import Curves, Metrics, Provenance, config_sha256, file_sha256
from experiments.modadd import SPEC


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags: run options plus one flag per knob."""
    p = argparse.ArgumentParser(description=SPEC.description)
    p.add_argument("--out_dir", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--eval_every", type=int, default=0, help="0: about 20 evaluations per run")
    p.add_argument("--engine", choices=["plain"], default="plain")
    p.add_argument("--device", default="cpu")
    for knob in SPEC.knobs:
        kind = {"float": float, "int": int, "choice": str}[knob.kind]
        p.add_argument(f"--{knob.name}", type=kind, default=knob.default, help=knob.help)
    return p.parse_args(argv)


def make_data(p: int, train_fraction: float, seed: int) -> tuple[torch.Tensor, ...]:
    """All pairs (a, b) with labels (a + b) mod p, split at random into train and validation."""
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    x = torch.stack([a.flatten(), b.flatten()], dim=1)
    y = (x[:, 0] + x[:, 1]) % p
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_train = max(1, int(train_fraction * len(x)))
    tr, va = perm[:n_train], perm[n_train:]
    return x[tr], y[tr], x[va], y[va]


class ModAddMLP(nn.Module):
    """Shared embedding for a and b, concatenated, then an MLP to p logits."""

    def __init__(self, p: int, embed_dim: int, hidden: int, depth: int, activation: str) -> None:
        super().__init__()
        act = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}[activation]
        self.embed = nn.Embedding(p, embed_dim)
        layers: list[nn.Module] = []
        width = 2 * embed_dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), act()]
            width = hidden
        layers.append(nn.Linear(width, p))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits over the p residues."""
        return self.mlp(self.embed(x).flatten(1))


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy and accuracy on a split."""
    model.eval()
    logits = model(x)
    loss = nn.functional.cross_entropy(logits, y).item()
    acc = (logits.argmax(-1) == y).float().mean().item()
    model.train()
    return loss, acc


def main(argv: list[str] | None = None) -> Metrics:
    """Train, evaluate along the way, write ``metrics.json`` and return it."""
    args = parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    torch.manual_seed(args.seed)
    config = {k.name: getattr(args, k.name) for k in SPEC.knobs}
    p = int(args.modulus)
    xtr, ytr, xva, yva = make_data(p, float(args.train_fraction), seed=args.seed)
    model = ModAddMLP(p, args.embed_dim, args.hidden, args.depth, args.activation).to(args.device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    eval_every = args.eval_every or max(1, args.steps // 20)
    gen = torch.Generator().manual_seed(args.seed + 1)
    curves: dict[str, list] = {"step": [], "train_loss": [], "val_loss": [], "val_metric": []}
    start = time.perf_counter()
    seen = 0
    for step in range(1, args.steps + 1):
        idx = torch.randint(0, len(xtr), (min(args.batch_size, len(xtr)),), generator=gen)
        loss = nn.functional.cross_entropy(model(xtr[idx]), ytr[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seen += len(idx)
        if step % eval_every == 0 or step == args.steps:
            tr_loss, _ = evaluate(model, xtr, ytr)
            va_loss, va_acc = evaluate(model, xva, yva)
            for key, value in zip(curves, (step, tr_loss, va_loss, va_acc), strict=True):
                curves[key].append(value)
    wall = time.perf_counter() - start
    metrics = Metrics(
        template=SPEC.name,
        engine=args.engine,
        device=str(args.device),
        seed=args.seed,
        steps=args.steps,
        config=config,
        metric=SPEC.metric,
        final={
            "train_loss": curves["train_loss"][-1],
            "val_loss": curves["val_loss"][-1],
            "val_accuracy": curves["val_metric"][-1],
        },
        curves=Curves(**curves),
        wall_s=wall,
        examples_per_s=seen / max(wall, 1e-9),
        parameters=sum(p.numel() for p in model.parameters()),
        provenance=Provenance(
            code_sha256=file_sha256(Path(__file__)),
            config_sha256=config_sha256(config),
            torch=torch.__version__,
        ),
    )
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "metrics.json").write_text(json.dumps(metrics.model_dump(), indent=1), encoding="utf-8")
    return metrics


if __name__ == "__main__":
    main()
