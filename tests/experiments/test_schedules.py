"""Learning-rate schedules: each template's ``schedule`` option does what its template.yaml says in words
(the text plans and papers show), and the shared schedules do what their names say."""

from __future__ import annotations

import importlib
import inspect

import pytest

from experiments.schedules import cosine_to, tenfold_drops, warmup_then_cosine_to
from experiments.spec import load_template

# the module whose lr_at runs each template's schedule component (abstracts_lm trains with chargpt's loop)
TRAIN = {
    "digits": "experiments.digits.train",
    "modadd": "experiments.modadd.train",
    "chargpt": "experiments.chargpt.train",
    "abstracts_lm": "experiments.chargpt.train",
}
FRACTIONS = {"a tenth": 0.1, "a hundredth": 0.01}
WARMUPS = {"the first tenth of the steps": 0.1, "the first warmup_frac of the steps": 0.1}  # warmup_frac as given


def test_the_shared_schedules_do_what_their_names_say() -> None:
    assert cosine_to(0.01, 0, 100, 2.0) == 2.0 and cosine_to(0.01, 100, 100, 2.0) == pytest.approx(0.02)
    assert cosine_to(0.1, 50, 100, 2.0) == pytest.approx(2.0 * (0.1 + 0.9 * 0.5))  # half-way: the mean of both
    assert cosine_to(0.1, 500, 100, 2.0) == pytest.approx(0.2)  # past the end: the floor
    assert [warmup_then_cosine_to(0.1, s, 100, 1.0, 4) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert warmup_then_cosine_to(0.1, 4, 100, 1.0, 4) == 1.0 and warmup_then_cosine_to(0.1, 100, 100, 1.0, 4) == 0.1
    assert warmup_then_cosine_to(0.1, 7, 100, 1.0, 0) == cosine_to(0.1, 7, 100, 1.0)  # no warm-up: plain cosine
    assert [tenfold_drops(s, 100, 1.0) for s in (0, 49, 50, 74, 75, 99)] == [1.0, 1.0, 0.1, 0.1, 0.01, 0.01]


@pytest.mark.parametrize("template", sorted(TRAIN))
def test_each_schedule_option_does_what_its_text_says(template: str) -> None:
    lr_at = importlib.import_module(TRAIN[template]).lr_at
    extra = {"warmup_frac": 0.1} if "warmup_frac" in inspect.signature(lr_at).parameters else {}
    steps, peak = 1000, 0.5
    for option, text in load_template(template).component("schedule").options.items():
        rates = [lr_at(option, step, steps, peak, **extra) for step in range(steps + 1)]
        warmup = next((int(f * steps) for words, f in WARMUPS.items() if words in text), 0)
        checked = False
        if "throughout" in text:
            assert set(rates) == {peak}, (option, text)
            checked = True
        if "cosine decay" in text:
            floor = next(f for words, f in FRACTIONS.items() if f"to {words} of" in text)
            assert "by the end of the run" in text and rates[-1] == pytest.approx(floor * peak), (option, text)
            assert min(rates[warmup:]) == pytest.approx(floor * peak) and max(rates) == pytest.approx(peak)
            checked = True
        if "warm-up" in text:
            assert warmup > 0, f"{text!r}: says how long the warm-up is in none of the words known here"
            assert rates[0] == pytest.approx(peak / warmup) and rates[warmup - 1] == pytest.approx(peak), text
            assert rates[:warmup] == sorted(rates[:warmup]), text  # rising to the peak
        else:
            assert rates[0] == peak, (option, text)
        if option == "step":
            assert "a tenth of it after half the steps, a hundredth after three quarters" in text
            assert (rates[499], rates[500], rates[749], rates[750]) == (peak, 0.1 * peak, 0.1 * peak, 0.01 * peak)
            checked = True
        assert checked, f"{template}: schedule option {option!r} ({text!r}) is checked by no rule here"


def test_sinusoidal_positions_start_at_the_token_embeddings_scale() -> None:
    """Fixed encodings of amplitude 1 added to embeddings of std 0.02 drowned the token: the option trained to
    4.5 bpc against the learned position's 3.7, and a paper concluded sinusoidal encodings hurt."""
    import torch

    from experiments.chargpt.train import GPT

    torch.manual_seed(0)
    model = GPT(vocab=64, block_size=32, n_layer=1, n_head=2, n_embd=32, dropout=0.0, activation="gelu",
                position="sinusoidal")  # fmt: skip
    token_rms = model.tok.weight.pow(2).mean().sqrt().item()
    position_rms = model.fixed_pos.pow(2).mean().sqrt().item()
    assert 0.5 < position_rms / token_rms < 2.0, (position_rms, token_rms)
    assert len({tuple(row.tolist()) for row in model.fixed_pos}) == 32  # every position still distinct
    learned = GPT(vocab=64, block_size=32, n_layer=1, n_head=2, n_embd=32, dropout=0.0, activation="gelu")
    assert 0.5 < learned.pos.weight.pow(2).mean().sqrt().item() / position_rms < 2.0
