"""Train a digit classifier on scikit-learn's bundled 8x8 digits and write ``metrics.json``.

Usage: ``python train.py --out_dir DIR --seed 0 --steps 600 --architecture cnn --regularizer dropout ...``
(every knob and component of template.yaml is a flag; ``--engine ddp|deepspeed`` under torchrun or
the DeepSpeed launcher trains on several ranks, each drawing its own batches). The images ship inside
scikit-learn; nothing is downloaded. The train/validation split is fixed (it does not move with the
seed), so every condition and seed is scored on the same 360 held-out images.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from experiments.digits import SPEC
from experiments.engine import Engine, add_engine_args, evaluating
from experiments.extension import load_method
from experiments.metrics import Metrics
from experiments.schedules import cosine_to, tenfold_drops

SPLIT_SEED = 1998  # the split is part of the task, not of a run: the same for every seed
VAL_PER_CLASS = 36
CLASSES = 10


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags: run options, engine options, plus one flag per knob and component."""
    p = SPEC.argument_parser()
    p.add_argument("--eval_every", type=int, default=0, help="0: about 20 evaluations per run")
    add_engine_args(p)
    return p.parse_args(argv)


def load_split(train_fraction: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The fixed split: 36 images of each digit held out, a class-stratified share of the rest to train on.

    Images come back standardised (one mean and std over the training pixels) as [n, 1, 8, 8].
    """
    from sklearn.datasets import load_digits  # reads the copy inside the scikit-learn package

    data, target = load_digits(return_X_y=True)
    x = torch.tensor(data, dtype=torch.float32).view(-1, 1, 8, 8)
    y = torch.tensor(target, dtype=torch.long)
    gen = torch.Generator().manual_seed(SPLIT_SEED)
    train_idx, val_idx = [], []
    for digit in range(CLASSES):
        members = (y == digit).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=gen)]
        val_idx.append(members[:VAL_PER_CLASS])
        rest = members[VAL_PER_CLASS:]
        train_idx.append(rest[: max(1, math.ceil(train_fraction * len(rest)))])
    tr, va = torch.cat(train_idx), torch.cat(val_idx)
    mean, std = x[tr].mean(), x[tr].std()
    x = (x - mean) / std
    return x[tr], y[tr], x[va], y[va]


def background(x_train: torch.Tensor) -> float:
    """The standardised value of a blank (0) pixel: what a shifted image is filled with."""
    return float(x_train.min())


def shift(images: torch.Tensor, fill: float, gen: torch.Generator) -> torch.Tensor:
    """The shift augmentation: each image moved by -1, 0 or +1 pixels in each direction, blank-filled."""
    n = images.shape[0]
    padded = F.pad(images, (1, 1, 1, 1), value=fill)
    dy = torch.randint(0, 3, (n,), generator=gen)
    dx = torch.randint(0, 3, (n,), generator=gen)
    out = torch.empty_like(images)
    for i in range(3):
        for j in range(3):
            chosen = ((dy == i) & (dx == j)).nonzero().flatten()
            if len(chosen):
                out[chosen] = padded[chosen, :, i : i + 8, j : j + 8]
    return out


def augment(kind: str, images: torch.Tensor, fill: float, noise_std: float, gen: torch.Generator) -> torch.Tensor:
    """The augmentation component: none, a random one-pixel shift, or Gaussian pixel noise."""
    if kind == "shift":
        return shift(images, fill, gen)
    if kind == "noise":
        return images + noise_std * torch.randn(images.shape, generator=gen)
    return images


def norm_layer(kind: str, features: int, image: bool) -> nn.Module:
    """The normalization component for a hidden layer of ``features`` units (or channels when ``image``)."""
    if kind == "batchnorm":
        return nn.BatchNorm2d(features) if image else nn.BatchNorm1d(features)
    if kind == "layernorm":
        return nn.GroupNorm(1, features) if image else nn.LayerNorm(features)
    return nn.Identity()


class MLP(nn.Module):
    """64 pixels -> two hidden layers of ``width`` (norm, ReLU, dropout) -> 10 logits."""

    def __init__(self, width: int, normalization: str, dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        fan_in = 64
        for _ in range(2):
            layers += [
                nn.Linear(fan_in, width),
                norm_layer(normalization, width, False),
                nn.ReLU(),
                nn.Dropout(dropout),
            ]
            fan_in = width
        layers.append(nn.Linear(fan_in, CLASSES))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [batch, 10] for images [batch, 1, 8, 8]."""
        return self.net(x)

    def macs(self) -> int:
        """Multiply-accumulates of one image's forward pass."""
        return sum(m.weight.numel() for m in self.modules() if isinstance(m, nn.Linear))


class CNN(nn.Module):
    """Two 3x3 convolutions (width/2 then width channels; norm, ReLU), 2x2 max-pooling, dropout, a linear head."""

    def __init__(self, width: int, normalization: str, dropout: float) -> None:
        super().__init__()
        first = max(1, width // 2)
        self.features = nn.Sequential(
            nn.Conv2d(1, first, 3, padding=1),
            norm_layer(normalization, first, True),
            nn.ReLU(),
            nn.Conv2d(first, width, 3, padding=1),
            norm_layer(normalization, width, True),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(width * 16, CLASSES))
        self.first, self.width = first, width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [batch, 10] for images [batch, 1, 8, 8]."""
        return self.head(self.features(x))

    def macs(self) -> int:
        """Multiply-accumulates of one image's forward pass (both convolutions over 8x8, then the head)."""
        return 9 * 64 * (self.first + self.first * self.width) + 16 * self.width * CLASSES


def build_model(args: argparse.Namespace) -> MLP | CNN:
    """The architecture component with this run's width, normalization and (if chosen) dropout."""
    dropout = args.dropout if args.regularizer == "dropout" else 0.0
    kind = CNN if args.architecture == "cnn" else MLP
    return kind(args.width, args.normalization, dropout)


def make_optimizer(args: argparse.Namespace, model: nn.Module) -> torch.optim.Optimizer:
    """The optimizer component; weight decay (regularizer weight_decay only) applies to weights, not biases or gains."""
    decay = args.weight_decay if args.regularizer == "weight_decay" else 0.0
    weights = [p for p in model.parameters() if p.dim() > 1]
    others = [p for p in model.parameters() if p.dim() <= 1]
    groups = [{"params": weights, "weight_decay": decay}, {"params": others, "weight_decay": 0.0}]
    if args.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=args.lr, momentum=0.9, nesterov=True)
    if args.optimizer == "adam":
        return torch.optim.Adam(groups, lr=args.lr)
    return torch.optim.AdamW(groups, lr=args.lr)


def lr_at(schedule: str, step: int, steps: int, peak: float) -> float:
    """The rate of the schedule component's option at ``step`` (template.yaml says what each option does)."""
    if schedule == "cosine":
        return cosine_to(0.01, step, steps, peak)
    if schedule == "step":
        return tenfold_drops(step, steps, peak)
    return peak


def main(argv: list[str] | None = None) -> Metrics:
    """Train, evaluate along the way, write ``metrics.json`` (rank 0) and return it."""
    args = parse_args(argv)
    engine = Engine(args)
    torch.manual_seed(args.seed)
    config = {name: getattr(args, name) for name in [*(k.name for k in SPEC.knobs), *SPEC.component_names]}
    method = load_method(args.method)
    xtr, ytr, xva, yva = load_split(float(args.train_fraction))
    fill = background(xtr)
    build = getattr(method, "build_model", None)
    model = build(dict(config)) if build else build_model(args)
    make_opt = getattr(method, "make_optimizer", None)
    opt = make_opt(model, dict(config)) if make_opt else make_optimizer(args, model)
    smoothing = args.label_smoothing if args.regularizer == "label_smoothing" else 0.0
    loss_fn = getattr(method, "loss", None) or (lambda logits, y: F.cross_entropy(logits, y, label_smoothing=smoothing))
    custom_augment = getattr(method, "augment", None)
    module = engine.prepare(model, opt, args.batch_size, compile=args.compile)
    micro = min(engine.micro_batch(args.batch_size), len(xtr))
    gen = torch.Generator().manual_seed(args.seed + 1 + 1000 * engine.rank)  # each rank draws its own batches
    eval_every = args.eval_every or max(1, args.steps // 20)

    def micro_loss(_: int) -> torch.Tensor:
        idx = torch.randint(0, len(xtr), (micro,), generator=gen)
        images = xtr[idx]
        images = (
            custom_augment(images, gen)
            if custom_augment
            else augment(args.augmentation, images, fill, args.noise_std, gen)
        )
        return loss_fn(module(images.to(engine.device)).float(), ytr[idx].to(engine.device))

    def evaluate(x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        """Plain cross-entropy (no smoothing, so conditions compare) and accuracy over a whole split."""
        with evaluating(module), engine.autocast():
            logits = module(x.to(engine.device)).float()
            target = y.to(engine.device)
            return F.cross_entropy(logits, target).item(), (logits.argmax(-1) == target).float().mean().item()

    curves: dict[str, list] = {"step": [], "train_loss": [], "val_loss": [], "val_metric": []}
    eval_s, train_acc = 0.0, 0.0
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        # constant keeps the optimizer's own rate (a method's make_optimizer may set it)
        if args.schedule != "constant":
            engine.set_lr(lr_at(args.schedule, step - 1, args.steps, args.lr))
        engine.step(micro_loss)
        if step % eval_every == 0 or step == args.steps:
            engine.synchronize()
            t0 = time.perf_counter()
            tr_loss, train_acc = evaluate(xtr, ytr)
            va_loss, va_acc = evaluate(xva, yva)
            for key, value in zip(curves, (step, tr_loss, va_loss, va_acc), strict=True):
                curves[key].append(value)
            eval_s += time.perf_counter() - t0
    engine.synchronize()
    wall = time.perf_counter() - start
    examples = args.steps * micro * engine.grad_accum
    parameters = sum(t.numel() for t in model.parameters())
    macs = model.macs() if isinstance(model, MLP | CNN) else parameters
    final = {
        "train_loss": curves["train_loss"][-1],
        "val_loss": curves["val_loss"][-1],
        "val_accuracy": curves["val_metric"][-1],
        "train_accuracy": train_acc,
        "train_images": float(len(xtr)),
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
        tokens=examples,  # one image is one "token" here
        parameters=parameters,
        flops_per_token=6.0 * macs,  # forward and backward of one image
        template_dir=Path(__file__).parent,
    )
    engine.close()
    return metrics


if __name__ == "__main__":
    main()
