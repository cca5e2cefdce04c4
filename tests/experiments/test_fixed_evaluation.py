"""chargpt and abstracts_lm measure every condition and seed on the same held-out characters.

A study compares conditions that differ in knobs or components, so the validation measurement must
not move with them: evaluation once drew its windows with the training micro-batch size, so
``batch_size=128`` was scored on four times as many (different) windows as the baseline. Here the
evaluated targets are recorded from real runs (one step each) and compared across batch sizes and
seeds, and an untrained model (lr 0) must score the same to 1e-6 whatever the batch size.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import experiments.chargpt.train as chargpt
from experiments.abstracts_lm.train import main as abstracts_main

TINY = ["--steps", "1", "--n_embd", "16", "--n_head", "2", "--n_layer", "1", "--lr", "0", "--schedule", "constant"]
RUNS = {"chargpt": chargpt.main, "abstracts_lm": abstracts_main}
CPU = torch.device("cpu")


def scored(chunks: list[tuple[torch.Tensor, ...]]) -> torch.Tensor:
    """The targets that count (the rest are -100), in order."""
    targets = torch.cat([y.reshape(-1) for _, y in chunks])
    return targets[targets >= 0]


def evaluated(
    template: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *flags: str
) -> tuple[dict[str, torch.Tensor], float]:
    """The targets a one-step run evaluates on each split, and its final val_bpc."""
    seen: list[torch.Tensor] = []
    build = chargpt.eval_windows

    def spy(data: torch.Tensor, chars: int, block: int, device: torch.device) -> list[tuple[torch.Tensor, ...]]:
        chunks = build(data, chars, block, device)
        seen.append(scored(chunks))
        return chunks

    monkeypatch.setattr(chargpt, "eval_windows", spy)
    out = tmp_path / "-".join(flags).replace("--", "")
    metrics = RUNS[template]([*TINY, "--out_dir", str(out), *flags])
    assert len(seen) == 2, "evaluation should build its windows once per split"
    return {"train": seen[0], "val": seen[1]}, metrics.final["val_bpc"]


@pytest.mark.parametrize("template", sorted(RUNS))
def test_batch_size_and_seed_do_not_move_the_evaluated_targets(
    template: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small, bpc_small = evaluated(template, tmp_path, monkeypatch, "--batch_size", "8", "--seed", "0")
    large, bpc_large = evaluated(template, tmp_path, monkeypatch, "--batch_size", "64", "--seed", "0")
    reseeded, _ = evaluated(template, tmp_path, monkeypatch, "--batch_size", "8", "--seed", "1")
    for split in ("train", "val"):
        assert len(small[split]) == chargpt.EVAL_CHARS
        assert torch.equal(small[split], large[split]) and torch.equal(small[split], reseeded[split])
    # lr 0: the model stays at its initialisation (the seed's), so the batch size must not move the score
    assert bpc_small == pytest.approx(bpc_large, abs=1e-6)


@pytest.mark.parametrize("length", [20_023, 61_207, 3_000, 40])
def test_block_size_changes_the_context_not_the_targets(length: int) -> None:
    """Every block size predicts the same characters, each once, from windows of its own length.

    The "text" is the positions themselves, so a scored target names the character it predicts.
    """
    positions = torch.arange(length)

    def targets(block: int) -> list[int]:
        chunks = chargpt.eval_windows(positions, chargpt.EVAL_CHARS, block, CPU)
        for x, y in chunks:
            assert x.shape == y.shape and x.shape[1] == min(block, length - 1)
            assert torch.equal(y[y >= 0], (x + 1)[y >= 0])  # a target is the character after its input
        return scored(chunks).tolist()

    reference = sorted(targets(64))
    assert len(reference) == len(set(reference)) == min(chargpt.EVAL_CHARS, (length - 1) // 8 * 8)
    for block in (8, 32, 100, 1000, 1024, 2000):
        found = targets(block)
        assert len(found) == len(set(found)) and sorted(found) == reference, block


def test_chunking_does_not_change_the_score(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same model and windows score the same whatever size the evaluation's forward passes have."""
    _, val, vocab = chargpt.load_corpus(chargpt.CORPUS.read_text(encoding="utf-8"))
    torch.manual_seed(0)
    model = chargpt.GPT(len(vocab), 48, 1, 2, 16, 0.0, "gelu").eval()

    def score() -> float:
        total, count = 0.0, 0
        with torch.no_grad():
            for x, y in chargpt.eval_windows(val, 4096, 48, CPU):
                logits, target = model(x).reshape(-1, len(vocab)), y.reshape(-1)
                total += float(torch.nn.functional.cross_entropy(logits, target, reduction="sum"))
                count += int((target >= 0).sum())
        assert count == 4096
        return total / count

    reference = score()
    for chunk in (48, 500, 100_000):
        monkeypatch.setattr(chargpt, "EVAL_CHUNK", chunk)
        assert score() == pytest.approx(reference, abs=1e-6)
