"""The digits template's data and augmentation: a fixed stratified split, shifts that move whole images."""

from __future__ import annotations

import torch

from experiments.digits.train import load_split, shift


def test_the_split_is_fixed_and_stratified() -> None:
    xtr, ytr, xva, yva = load_split(1.0)
    assert len(ytr) == len(xtr) and not set(ytr.unique().tolist()) ^ set(range(10))
    assert (len(xtr), len(xva)) == (1437, 360) and xtr.shape[1:] == (1, 8, 8)
    assert torch.bincount(yva, minlength=10).tolist() == [36] * 10
    again = load_split(1.0)
    assert torch.equal(again[2], xva)  # the same held-out images on every call (and for every seed)
    assert abs(float(xtr.mean())) < 1e-4 and abs(float(xtr.std()) - 1) < 1e-3
    small = load_split(0.1)  # a tenth of each digit's training images; the same held-out images
    assert 140 <= len(small[0]) <= 150 and torch.equal(small[3], yva)

    def unit(x: torch.Tensor) -> torch.Tensor:
        return (x - x.min()) / (x.max() - x.min())

    assert torch.allclose(unit(small[2]), unit(xva), atol=1e-5)  # only the standardisation (from train) differs


def test_a_shift_moves_the_image_by_at_most_one_pixel_and_fills_with_background() -> None:
    image = torch.zeros(1, 1, 8, 8)
    image[0, 0, 3, 4] = 5.0
    moved = shift(image.repeat(64, 1, 1, 1), fill=0.0, gen=torch.Generator().manual_seed(0))
    spots = {tuple((m[0] == 5.0).nonzero()[0].tolist()) for m in moved}
    assert spots <= {(3 + dy, 4 + dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)} and len(spots) > 4
    assert all(float(m.sum()) == 5.0 for m in moved)
