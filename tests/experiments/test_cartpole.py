"""The cartpole template's credit assignment: each baseline and returns option computes what it says."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from experiments.cartpole.train import Episode, credit_assignment, discounted


def episode(steps: int, truncated: bool = False) -> Episode:
    obs = np.zeros((steps, 4), dtype=np.float32)
    return Episode(obs, np.zeros(steps, dtype=np.int64), np.ones(steps, dtype=np.float32), obs[0], truncated)


def options(**kw: object) -> argparse.Namespace:
    base = {"gamma": 0.9, "gae_lambda": 0.95, "baseline": "none", "returns": "reward_to_go"}
    return argparse.Namespace(**{**base, **kw})


def naive_to_go(rewards: list[float], gamma: float, tail: float = 0.0) -> list[float]:
    return [
        sum(gamma**k * r for k, r in enumerate(rewards[t:])) + gamma ** (len(rewards) - t) * tail
        for t in range(len(rewards))
    ]


def test_discounted_sums_match_the_definition() -> None:
    x = np.array([1.0, 0.5, 2.0, -1.0])
    assert discounted(x, 0.9).tolist() == pytest.approx(naive_to_go(x.tolist(), 0.9))
    assert discounted(x, 0.9, tail=3.0).tolist() == pytest.approx(naive_to_go(x.tolist(), 0.9, 3.0))


def test_reward_to_go_episode_return_and_baselines() -> None:
    eps = [episode(3), episode(2)]
    values = torch.tensor([0.5, 0.4, 0.3, 0.2, 0.1])
    tails = torch.zeros(2)
    adv, target, _ = credit_assignment(options(), eps, values, tails, 0.0)
    expected = naive_to_go([1, 1, 1], 0.9) + naive_to_go([1, 1], 0.9)
    assert adv.tolist() == pytest.approx(expected) and target.tolist() == pytest.approx(expected)
    adv, _, credit = credit_assignment(options(returns="episode"), eps, values, tails, 0.0)
    assert adv.tolist() == pytest.approx([expected[0]] * 3 + [expected[3]] * 2) and credit.tolist() == adv.tolist()
    adv, _, _ = credit_assignment(options(baseline="value"), eps, values, tails, 0.0)
    assert adv.tolist() == pytest.approx([e - v for e, v in zip(expected, values.tolist(), strict=True)])
    adv, _, _ = credit_assignment(options(baseline="running_mean"), eps, values, tails, 1.5)
    assert adv.tolist() == pytest.approx([e - 1.5 for e in expected])


def test_gae_is_reward_to_go_without_values_at_lambda_one_and_td_at_zero() -> None:
    eps = [episode(4)]
    values, tails = torch.tensor([0.3, 0.2, 0.6, 0.1]), torch.zeros(1)
    adv, _, _ = credit_assignment(options(returns="gae", gae_lambda=1.0), eps, values, tails, 0.0)
    assert adv.tolist() == pytest.approx(naive_to_go([1, 1, 1, 1], 0.9))
    adv, _, _ = credit_assignment(options(returns="gae", gae_lambda=0.0, baseline="value"), eps, values, tails, 0.0)
    v = values.tolist()
    assert adv.tolist() == pytest.approx(
        [1 + 0.9 * v[1] - v[0], 1 + 0.9 * v[2] - v[1], 1 + 0.9 * v[3] - v[2], 1 - v[3]]
    )


def test_a_truncated_episode_is_bootstrapped_from_the_critic_and_a_failed_one_is_not() -> None:
    values = torch.zeros(3)
    cut, _, _ = credit_assignment(
        options(baseline="value"), [episode(3, truncated=True)], values, torch.tensor([10.0]), 0.0
    )
    failed, _, _ = credit_assignment(options(baseline="value"), [episode(3)], values, torch.tensor([10.0]), 0.0)
    assert cut.tolist() == pytest.approx(naive_to_go([1, 1, 1], 0.9, tail=10.0))
    assert failed.tolist() == pytest.approx(naive_to_go([1, 1, 1], 0.9))
