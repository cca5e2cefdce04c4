"""Train the modular-addition MLP and write ``metrics.json``.

Usage: ``python train.py --out_dir DIR --seed 0 --steps 300 --lr 0.003 --optimizer sgd ...`` (every
knob and component of template.yaml is a flag; ``--engine ddp|deepspeed`` under torchrun or the
DeepSpeed launcher trains on several ranks). Data is made here, nothing is downloaded.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import nn

from experiments.engine import Engine, add_engine_args, evaluating
from experiments.extension import load_method
from experiments.metrics import Metrics
from experiments.modadd import SPEC
from experiments.schedules import cosine_to, warmup_then_cosine_to


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags: run options, engine options, plus one flag per knob."""
    p = SPEC.argument_parser(default_steps=300)
    p.add_argument("--eval_every", type=int, default=0, help="0: about 20 evaluations per run")
    add_engine_args(p)
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
    """Embeddings of a and b (one shared table or two), concatenated, then an MLP to p logits."""

    def __init__(
        self, p: int, embed_dim: int, hidden: int, depth: int, activation: str, normalization: str, embedding: str
    ) -> None:
        super().__init__()
        act = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}[activation]
        self.embed_a = nn.Embedding(p, embed_dim)
        self.embed_b = self.embed_a if embedding == "shared" else nn.Embedding(p, embed_dim)
        layers: list[nn.Module] = []
        width = 2 * embed_dim
        for _ in range(depth):
            layers.append(nn.Linear(width, hidden))
            if normalization == "layernorm":
                layers.append(nn.LayerNorm(hidden))
            layers.append(act())
            width = hidden
        layers.append(nn.Linear(width, p))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits over the p residues."""
        return self.mlp(torch.cat([self.embed_a(x[:, 0]), self.embed_b(x[:, 1])], dim=1))


def make_optimizer(name: str, model: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """The optimizer component: AdamW (decoupled decay), Adam (decay as L2) or SGD with momentum."""
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)


def lr_at(schedule: str, step: int, steps: int, peak: float) -> float:
    """The rate of the schedule component's option at ``step`` (template.yaml says what each option does)."""
    if schedule == "cosine":
        return cosine_to(0.1, step, steps, peak)
    if schedule == "warmup_cosine":
        return warmup_then_cosine_to(0.1, step, steps, peak, warmup_steps=max(1, steps // 10))
    return peak


def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn=nn.functional.cross_entropy
) -> tuple[float, float]:
    """Mean loss and accuracy on a split (run on every rank: ZeRO-3 gathers weights collectively)."""
    with evaluating(model):
        logits = model(x).float()
        return loss_fn(logits, y).item(), (logits.argmax(-1) == y).float().mean().item()


def main(argv: list[str] | None = None) -> Metrics:
    """Train, evaluate along the way, write ``metrics.json`` (rank 0) and return it."""
    args = parse_args(argv)
    engine = Engine(args)
    torch.manual_seed(args.seed)
    config = {name: getattr(args, name) for name in SPEC.setting_names}
    method = load_method(args.method)
    p = int(args.modulus)
    xtr, ytr, xva, yva = make_data(p, float(args.train_fraction), seed=args.seed)
    xtr, ytr, xva, yva = (t.to(engine.device) for t in (xtr, ytr, xva, yva))
    build = getattr(method, "build_model", None)
    model = (
        build(p, dict(config))
        if build
        else ModAddMLP(p, args.embed_dim, args.hidden, args.depth, args.activation, args.normalization, args.embedding)
    )
    make_opt = getattr(method, "make_optimizer", None)
    opt = (
        make_opt(model, dict(config)) if make_opt else make_optimizer(args.optimizer, model, args.lr, args.weight_decay)
    )
    loss_fn = getattr(method, "loss", nn.functional.cross_entropy)
    module = engine.prepare(model, opt, args.batch_size, compile=args.compile)
    micro = min(engine.micro_batch(args.batch_size), len(xtr))
    eval_every = args.eval_every or max(1, args.steps // 20)
    gen = torch.Generator().manual_seed(args.seed + 1 + 1000 * engine.rank)  # each rank draws its own batches
    curves: dict[str, list] = {"step": [], "train_loss": [], "val_loss": [], "val_metric": []}

    def micro_loss(_: int) -> torch.Tensor:
        idx = torch.randint(0, len(xtr), (micro,), generator=gen).to(engine.device)
        return loss_fn(module(xtr[idx]).float(), ytr[idx])

    eval_s = 0.0
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        # constant keeps the optimizer's own rate (a method's make_optimizer may set it)
        if args.schedule != "constant":
            engine.set_lr(lr_at(args.schedule, step - 1, args.steps, args.lr))
        engine.step(micro_loss)
        if step % eval_every == 0 or step == args.steps:
            t0 = time.perf_counter()
            tr_loss, _ = evaluate(module, xtr, ytr, loss_fn)
            va_loss, va_acc = evaluate(module, xva, yva, loss_fn)
            for key, value in zip(curves, (step, tr_loss, va_loss, va_acc), strict=True):
                curves[key].append(value)
            eval_s += time.perf_counter() - t0
    engine.synchronize()
    wall = time.perf_counter() - start
    examples = args.steps * micro * engine.grad_accum
    parameters = sum(t.numel() for t in model.parameters())
    final = {
        "train_loss": curves["train_loss"][-1],
        "val_loss": curves["val_loss"][-1],
        "val_accuracy": curves["val_metric"][-1],
    }
    metrics = engine.report(
        args,
        SPEC,
        config,
        curves,
        final,
        wall_s=wall,
        train_s=wall - eval_s,
        examples=examples,
        tokens=2 * examples,  # a and b
        parameters=parameters,
        flops_per_token=3.0 * parameters,  # 6N per example of two tokens
        template_dir=Path(__file__).parent,
    )
    engine.close()
    return metrics


if __name__ == "__main__":
    main()
