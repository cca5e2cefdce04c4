"""Train the character-level GPT on the bundled corpus and write ``metrics.json``.

Usage: ``python train.py --out_dir DIR --steps 200 --n_layer 4 --norm rmsnorm ...`` (every knob and
component of template.yaml is a flag). The defaults are a tiny model for CPU; ``--n_layer 12
--n_head 12 --n_embd 768 --block_size 1024`` is about 86M parameters for a GPU (bf16, ZeRO via
``--engine deepspeed``). The corpus ships in this folder; nothing is downloaded. ``run`` trains the
same model on any text: the abstracts template (experiments/abstracts_lm) reuses it.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from experiments.engine import Engine, add_engine_args, evaluating
from experiments.extension import load_method
from experiments.metrics import Metrics
from experiments.schedules import warmup_then_cosine_to
from experiments.spec import TemplateSpec, load_spec

CORPUS = Path(__file__).with_name("corpus.txt")

EVAL_CHARS, EVAL_STRETCH, EVAL_CHUNK = 8192, 1024, 2048  # eval_windows; 8192 = 4 batches of 32 x 64 as before


def parse_args(spec: TemplateSpec, argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags: run options, engine options, plus one flag per knob and component."""
    p = spec.argument_parser()
    p.add_argument("--eval_every", type=int, default=0, help="0: about 20 evaluations per run")
    p.add_argument("--eval_chars", type=int, default=EVAL_CHARS, help="characters evaluated in each split")
    p.add_argument("--eval_batches", type=int, default=0, help="deprecated: --eval_chars N*2048")
    add_engine_args(p)
    args = p.parse_args(argv)
    args.eval_chars = args.eval_batches * 2048 or args.eval_chars
    return args


def load_corpus(text: str) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """A text as character ids, split 90/10 into train and validation, and the vocabulary."""
    vocab = sorted(set(text))
    index = {ch: i for i, ch in enumerate(vocab)}
    data = torch.tensor([index[ch] for ch in text], dtype=torch.long)
    cut = int(0.9 * len(data))
    return data[:cut], data[cut:], vocab


class RMSNorm(nn.Module):
    """Root-mean-square normalization with a learned gain (no mean subtraction, no bias)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x scaled to unit RMS over its last dimension, times the gain."""
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def make_norm(kind: str, dim: int) -> nn.Module:
    """The norm component: LayerNorm or RMSNorm."""
    return RMSNorm(dim) if kind == "rmsnorm" else nn.LayerNorm(dim)


def make_activation(kind: str) -> nn.Module:
    """The activation component: GELU (tanh approximation), ReLU or SiLU."""
    if kind == "relu":
        return nn.ReLU()
    return nn.SiLU() if kind == "silu" else nn.GELU(approximate="tanh")


INIT_STD = 0.02  # the normal init of every weight matrix and embedding (GPT-2's)


def sinusoidal(block_size: int, dim: int) -> torch.Tensor:
    """Fixed sinusoidal position encodings [block_size, dim] (Vaswani et al., 2017)."""
    position = torch.arange(block_size, dtype=torch.float32)[:, None]
    rate = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(block_size, dim)
    table[:, 0::2] = torch.sin(position * rate)
    table[:, 1::2] = torch.cos(position * rate)[:, : dim // 2]
    return table


class Block(nn.Module):
    """Pre-norm transformer block: causal self-attention, then an MLP, each with a residual."""

    def __init__(self, n_embd: int, n_head: int, dropout: float, activation: str, norm: str = "layernorm") -> None:
        super().__init__()
        self.n_head, self.dropout = n_head, dropout
        self.ln1, self.ln2 = make_norm(norm, n_embd), make_norm(norm, n_embd)
        self.qkv = nn.Linear(n_embd, 3 * n_embd)
        self.proj = nn.Linear(n_embd, n_embd)
        act = make_activation(activation)
        self.mlp = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), act, nn.Linear(4 * n_embd, n_embd), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [batch, time, n_embd]."""
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        drop = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, is_causal=True)
        x = x + F.dropout(self.proj(y.transpose(1, 2).reshape(b, t, c)), drop, self.training)
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """Token and position embeddings, ``n_layer`` blocks, a final norm and an output head (tied by default)."""

    fixed_pos: torch.Tensor  # the buffer of sinusoidal encodings (position ``sinusoidal`` only)

    def __init__(
        self,
        vocab: int,
        block_size: int,
        n_layer: int,
        n_head: int,
        n_embd: int,
        dropout: float,
        activation: str,
        *,
        norm: str = "layernorm",
        position: str = "learned",
        head: str = "tied",
    ) -> None:
        super().__init__()
        if n_embd % n_head:
            raise SystemExit(f"n_embd {n_embd} is not divisible by n_head {n_head}; pick values that divide")
        self.block_size, self.position = block_size, position
        self.tok = nn.Embedding(vocab, n_embd)
        if position == "learned":
            self.pos = nn.Embedding(block_size, n_embd)
        else:
            # at the scale the embeddings start at (each coordinate's RMS = INIT_STD, as for a learned position):
            # at amplitude 1 against token embeddings of std 0.02 the position drowned the token (val bpc 4.5
            # against the learned position's 3.7 in a relay run, and its paper blamed sinusoidal encodings)
            table = sinusoidal(block_size, n_embd) * INIT_STD * math.sqrt(2)
            self.register_buffer("fixed_pos", table, persistent=False)
        self.blocks = nn.ModuleList(Block(n_embd, n_head, dropout, activation, norm) for _ in range(n_layer))
        self.ln = make_norm(norm, n_embd)
        self.head = nn.Linear(n_embd, vocab, bias=False)
        if head == "tied":
            self.head.weight = self.tok.weight
        for name, param in self.named_parameters():
            if param.dim() == 2:
                residual = name.endswith(("proj.weight", "mlp.2.weight"))
                std = INIT_STD / math.sqrt(2 * n_layer) if residual else INIT_STD
                nn.init.normal_(param, 0.0, std)
            elif name.endswith("bias"):
                nn.init.zeros_(param)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits [batch, time, vocab] for token ids [batch, time]."""
        x = self.tok(idx)
        if self.position == "learned":
            x = x + self.pos(torch.arange(idx.shape[1], device=idx.device))
        elif self.position == "sinusoidal":
            x = x + self.fixed_pos[: idx.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x))


def batch(
    data: torch.Tensor, size: int, block: int, gen: torch.Generator, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """``size`` random windows of ``block`` characters and the same windows shifted by one."""
    starts = torch.randint(0, len(data) - block - 1, (size,), generator=gen)
    x = torch.stack([data[s : s + block] for s in starts.tolist()])
    y = torch.stack([data[s + 1 : s + block + 1] for s in starts.tolist()])
    return x.to(device), y.to(device)


def eval_windows(data: torch.Tensor, chars: int, block: int, device: torch.device) -> list[tuple[torch.Tensor, ...]]:
    """(inputs, targets) in batches of EVAL_CHUNK characters, unscored targets -100. Scored, whatever the knobs and
    seed: a fixed count of characters, not windows (block_size would move those), in ceil(chars / EVAL_STRETCH)
    stretches centred in equal shares of ``data``, cut into windows of ``block`` (the rest: one more ending there)."""
    count, n, xs, ys = max(1, math.ceil(chars / EVAL_STRETCH)), len(data) - 1, [], []
    size, width = max(1, min(EVAL_STRETCH, n // count)), min(block, n)
    for k in range(count):
        first = min(max(0, round((k + 0.5) * n / count - size / 2)), n - size)
        for i in range(first, first + size, width):
            start = max(0, min(i, first + size - width))
            xs.append(data[start : start + width])
            at = torch.arange(start, start + width)
            ys.append(data[start + 1 : start + width + 1].masked_fill((at < i) | (at >= first + size), -100))
    x, y, per = torch.stack(xs).to(device), torch.stack(ys).to(device), max(1, EVAL_CHUNK // width)
    return [(x[j : j + per], y[j : j + per]) for j in range(0, len(x), per)]


def lr_at(schedule: str, step: int, steps: int, peak: float, warmup_frac: float) -> float:
    """The rate of the schedule component's option at ``step`` (template.yaml says what each option does)."""
    if schedule == "warmup_cosine":
        return warmup_then_cosine_to(0.1, step, steps, peak, warmup_steps=int(warmup_frac * steps))
    return peak


def run(spec: TemplateSpec, text: str, argv: list[str] | None = None) -> Metrics:
    """Train the GPT of ``spec``'s knobs and components on ``text``, write ``metrics.json`` (rank 0), return it."""
    args = parse_args(spec, argv)
    engine = Engine(args)
    torch.manual_seed(args.seed)
    config = {name: getattr(args, name) for name in spec.setting_names}
    method = load_method(args.method)
    train, val, vocab = load_corpus(text)
    build = getattr(method, "build_model", None)
    model = (
        build(len(vocab), dict(config))
        if build
        else GPT(
            len(vocab),
            args.block_size,
            args.n_layer,
            args.n_head,
            args.n_embd,
            args.dropout,
            args.activation,
            norm=args.norm,
            position=args.position,
            head=args.head,
        )
    )
    make_opt = getattr(method, "make_optimizer", None)
    opt = (
        make_opt(model, dict(config))
        if make_opt
        else torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay, betas=(0.9, 0.95))
    )
    loss_fn = getattr(method, "loss", F.cross_entropy)
    module = engine.prepare(model, opt, args.batch_size, compile=args.compile)
    micro, block = engine.micro_batch(args.batch_size), args.block_size
    gen = torch.Generator().manual_seed(args.seed + 1 + 1000 * engine.rank)  # each rank draws its own windows
    eval_every = args.eval_every or max(1, args.steps // 20)

    def micro_loss(_: int) -> torch.Tensor:
        x, y = batch(train, micro, block, gen, engine.device)
        return loss_fn(module(x).float().view(-1, len(vocab)), y.view(-1))

    sets = {n: eval_windows(d, args.eval_chars, block, engine.device) for n, d in (("tr", train), ("va", val))}

    def evaluate(split: str) -> tuple[float, float]:
        """Plain cross-entropy (not a method's loss, so bits per character compare) and accuracy."""
        total, hits, count = 0.0, 0.0, 0
        with evaluating(module), engine.autocast():
            for x, y in sets[split]:
                logits, target = module(x).float().view(-1, len(vocab)), y.view(-1)
                total += F.cross_entropy(logits, target, reduction="sum").item()  # ignores the -100 targets
                hits += (logits.argmax(-1) == target).sum().item()
                count += int((target >= 0).sum())
        return engine.mean(total / count), engine.mean(hits / count)

    curves: dict[str, list] = {"step": [], "train_loss": [], "val_loss": [], "val_metric": []}
    eval_s, val_acc = 0.0, 0.0
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        # constant keeps the optimizer's own rate (a method's make_optimizer may set it)
        if args.schedule != "constant":
            engine.set_lr(lr_at(args.schedule, step - 1, args.steps, args.lr, args.warmup_frac))
        engine.step(micro_loss)
        if step % eval_every == 0 or step == args.steps:
            engine.synchronize()
            t0 = time.perf_counter()
            tr_loss, _ = evaluate("tr")
            va_loss, val_acc = evaluate("va")
            for key, value in zip(curves, (step, tr_loss, va_loss, va_loss / math.log(2)), strict=True):
                curves[key].append(value)
            eval_s += time.perf_counter() - t0
    engine.synchronize()
    wall = time.perf_counter() - start
    parameters = sum(t.numel() for t in model.parameters())
    n_embd, n_layer = args.n_embd, args.n_layer
    final = {
        "train_loss": curves["train_loss"][-1],
        "val_loss": curves["val_loss"][-1],
        "val_bpc": curves["val_metric"][-1],
        "val_accuracy": val_acc,
    }
    tokens = args.steps * micro * engine.grad_accum * block
    metrics = engine.report(
        args,
        spec,
        config,
        curves,
        final,
        wall_s=wall,
        train_s=wall - eval_s,
        examples=args.steps * micro * engine.grad_accum,
        tokens=tokens,
        parameters=parameters,
        flops_per_token=6.0 * parameters + 12.0 * n_layer * n_embd * block,  # matmuls plus attention (PaLM appendix B)
        template_dir=spec.folder,
    )
    engine.close()
    return metrics


def main(argv: list[str] | None = None) -> Metrics:
    """Train on the bundled corpus (this template's own data)."""
    return run(load_spec(Path(__file__).resolve().parent), CORPUS.read_text(encoding="utf-8"), argv)


if __name__ == "__main__":
    main()
