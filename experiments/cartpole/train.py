"""Train a policy-gradient learner on gymnasium's CartPole-v1 and write ``metrics.json``.

Usage: ``python train.py --out_dir DIR --seed 0 --steps 100 --baseline value --returns gae ...`` (every
knob and component of template.yaml is a flag). A step is one policy update from ``episodes`` fresh
episodes. Under ``--engine ddp`` (torchrun) each rank simulates its own share of the episodes, and
the loss is normalised by the step count of all ranks, so the gradients DDP averages are exactly
those of one process simulating every episode; advantage statistics and the running-mean baseline
are taken over all ranks too. The metric is the mean return of the greedy policy on fixed seeded
evaluation episodes, so every condition and seed is scored on the same starting states.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.distributed as dist
from scipy.signal import lfilter
from torch import nn
from torch.nn import functional as F

from experiments.cartpole import SPEC
from experiments.engine import Engine, add_engine_args, evaluating
from experiments.extension import load_method
from experiments.metrics import Metrics

ENV_ID = "CartPole-v1"
OBS, ACTIONS = 4, 2
EVAL_SEED = 100_000  # the evaluation episodes start from reset(seed=EVAL_SEED) of eval_episodes envs, in every run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags: run options, engine options, plus one flag per knob and component."""
    p = SPEC.argument_parser()
    p.add_argument("--eval_every", type=int, default=0, help="0: about 10 evaluations per run")
    add_engine_args(p)
    return p.parse_args(argv)


def mlp(width: int, out: int, activation: str) -> nn.Sequential:
    """Observations -> two hidden layers of ``width`` -> ``out`` units."""
    act = nn.Tanh if activation == "tanh" else nn.ReLU
    return nn.Sequential(nn.Linear(OBS, width), act(), nn.Linear(width, width), act(), nn.Linear(width, out))


class ActorCritic(nn.Module):
    """A policy network and, with a learned baseline, a critic of its own; forward gives (logits, values).

    The critic predicts returns in units of 1/(1 - gamma), the largest discounted return, so its
    regression targets stay near [0, 1] whatever the discount.
    """

    def __init__(self, width: int, activation: str, critic: bool, gamma: float) -> None:
        super().__init__()
        self.policy = mlp(width, ACTIONS, activation)
        self.critic = mlp(width, 1, activation) if critic else None
        self.scale = 1.0 / max(1e-3, 1.0 - gamma)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Action logits [batch, 2] and values [batch] (zeros without a critic)."""
        logits = self.policy(obs)
        if self.critic is None:
            return logits, logits.new_zeros(obs.shape[0])
        return logits, self.critic(obs).squeeze(-1) * self.scale


@dataclass
class Episode:
    """One simulated episode: what was seen and done, and how it ended."""

    obs: np.ndarray  # [T, 4]
    actions: np.ndarray  # [T]
    rewards: np.ndarray  # [T]
    last_obs: np.ndarray  # the observation after the last action
    truncated: bool  # cut at the time limit (the pole still up), so its tail is bootstrapped


def simulate(
    policy: nn.Module, envs: Any, seed: int, gen: torch.Generator | None, device: torch.device
) -> list[Episode]:
    """One episode per sub-environment of ``envs``, in lockstep (one batched forward a step); greedy when ``gen`` is None.

    ``envs`` is gymnasium's vectorised CartPole-v1 (the same dynamics as the single environment, in
    numpy); an environment that has ended is reset by it on the next step, which is ignored here.
    """
    obs, _ = envs.reset(seed=seed)
    n = obs.shape[0]
    alive = np.ones(n, dtype=bool)
    truncated = np.zeros(n, dtype=bool)
    last_obs = np.zeros_like(obs)
    seen, taken, live = [], [], []
    with torch.no_grad():
        while alive.any():
            logits, _ = policy(torch.as_tensor(obs, device=device))
            if gen is None:
                actions = logits.argmax(-1).cpu().numpy()
            else:
                probs = F.softmax(logits.float(), -1).cpu()
                actions = torch.multinomial(probs, 1, generator=gen).squeeze(-1).numpy()
            following, _, term, trunc, _ = envs.step(actions)
            seen.append(obs)
            taken.append(actions)
            live.append(alive.copy())
            ended = alive & (term | trunc)
            last_obs[ended] = following[ended]
            truncated[ended] = trunc[ended] & ~term[ended]
            alive &= ~ended
            obs = following
    seen_all, taken_all, live_all = np.stack(seen), np.stack(taken), np.stack(live)
    episodes = []
    for i in range(n):
        mask = live_all[:, i]
        steps = int(mask.sum())
        episodes.append(
            Episode(
                seen_all[mask, i], taken_all[mask, i], np.ones(steps, dtype=np.float32), last_obs[i], bool(truncated[i])
            )
        )
    return episodes


def discounted(x: np.ndarray, rate: float, tail: float = 0.0) -> torch.Tensor:
    """sum_k rate^k x[t+k] for every t, plus rate^(T-t) * tail (a bootstrapped value after the last step)."""
    out = lfilter([1.0], [1.0, -rate], x[::-1].astype(np.float64))[::-1]
    if tail:
        out = out + tail * rate ** np.arange(len(x), 0, -1, dtype=np.float64)
    return torch.as_tensor(out.copy(), dtype=torch.float32)


def credit_assignment(
    args: argparse.Namespace, episodes: list[Episode], values: torch.Tensor, tails: torch.Tensor, running_mean: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Advantages, critic targets and credited returns of every step, by the baseline and returns components.

    ``values`` are the critic's (detached) values of the steps and ``tails`` those of each episode's
    last observation; an episode cut at the time limit is bootstrapped from the baseline's value
    there (the critic's, or the running mean), one that failed is not.
    """
    gamma, lam = float(args.gamma), float(args.gae_lambda)
    v_all = values.float().cpu().numpy()
    advantages, targets, credits, offset = [], [], [], 0
    for k, ep in enumerate(episodes):
        n = len(ep.rewards)
        if args.baseline == "value":
            v, boot = v_all[offset : offset + n], float(tails[k]) if ep.truncated else 0.0
        elif args.baseline == "running_mean":
            v, boot = np.full(n, running_mean), running_mean if ep.truncated else 0.0
        else:
            v, boot = np.zeros(n), 0.0
        offset += n
        to_go = discounted(ep.rewards, gamma, boot)  # the critic's target
        credit = torch.full((n,), float(to_go[0])) if args.returns == "episode" else to_go
        if args.returns == "gae":
            deltas = ep.rewards + gamma * np.append(v[1:], boot) - v
            advantages.append(discounted(deltas, gamma * lam))
        else:
            advantages.append(credit - torch.as_tensor(v, dtype=torch.float32))
        targets.append(to_go)
        credits.append(credit)
    return torch.cat(advantages), torch.cat(targets), torch.cat(credits)


class Moments:
    """Sums over all ranks (for advantage statistics and the running-mean baseline)."""

    def __init__(self, engine: Engine) -> None:
        self.distributed = engine.distributed and engine.world_size > 1

    def sums(self, *values: float) -> list[float]:
        """Each value summed over ranks."""
        t = torch.tensor(values, dtype=torch.float64)
        if self.distributed:
            dist.all_reduce(t)
        return t.tolist()


def main(argv: list[str] | None = None) -> Metrics:
    """Train, evaluate along the way, write ``metrics.json`` (rank 0) and return it."""
    args = parse_args(argv)
    engine = Engine(args)
    torch.manual_seed(args.seed)
    config = {name: getattr(args, name) for name in [*(k.name for k in SPEC.knobs), *SPEC.component_names]}
    method = load_method(args.method)
    build = getattr(method, "build_model", None)
    model = (
        build(dict(config))
        if build
        else ActorCritic(args.hidden, args.activation, args.baseline == "value", args.gamma)
    )
    make_opt = getattr(method, "make_optimizer", None)
    if make_opt:
        opt = make_opt(model, dict(config))
    elif args.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    elif args.optimizer == "rmsprop":
        opt = torch.optim.RMSprop(model.parameters(), lr=args.lr, alpha=0.99)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    custom_loss = getattr(method, "loss", None)
    module = engine.prepare(model, opt, args.episodes, compile=args.compile)
    actor = model.to(engine.device)  # simulation and evaluation run without the wrapper (no gradients)
    per_rank = engine.micro_batch(args.episodes)
    train_envs = gym.make_vec(ENV_ID, num_envs=per_rank, vectorization_mode="vector_entry_point")
    eval_envs = gym.make_vec(ENV_ID, num_envs=args.eval_episodes, vectorization_mode="vector_entry_point")
    gen = torch.Generator().manual_seed(args.seed + 1 + 1000 * engine.rank)  # each rank samples its own actions
    starts = np.random.default_rng([args.seed, engine.rank])  # and its own starting states
    moments = Moments(engine)
    state = {"mean": 0.0, "updates": 0, "train_return": 0.0, "env_steps": 0, "episodes": 0}

    def micro_loss(_: int) -> torch.Tensor:
        episodes = simulate(actor, train_envs, int(starts.integers(2**31)), gen, engine.device)
        obs = torch.as_tensor(np.concatenate([e.obs for e in episodes]), device=engine.device)
        actions = torch.as_tensor(np.concatenate([e.actions for e in episodes]), device=engine.device)
        logits, values = module(obs)
        logp_all = F.log_softmax(logits.float(), -1)
        logp = logp_all.gather(1, actions[:, None].long()).squeeze(1)
        entropy = -(logp_all.exp() * logp_all).sum(-1)
        with torch.no_grad():
            tails = actor(torch.as_tensor(np.stack([e.last_obs for e in episodes]), device=engine.device))[1]
        adv, target, credit = credit_assignment(args, episodes, values.detach(), tails, state["mean"])
        steps, adv_sum, adv_sq, credit_sum = moments.sums(
            len(adv), float(adv.sum()), float((adv**2).sum()), float(credit.sum())
        )
        if args.advantage_norm == "standardize":
            mean = adv_sum / steps
            adv = (adv - mean) / (max(adv_sq / steps - mean**2, 0.0) ** 0.5 + 1e-8)
        if args.baseline == "running_mean":  # updated after use: it never sees the returns it is subtracted from
            state["mean"] = args.mean_decay * state["mean"] + (1 - args.mean_decay) * credit_sum / steps
        state["train_return"] = steps / (per_rank * engine.world_size)  # a reward of 1 per step
        state["env_steps"] += int(steps)
        state["episodes"] += per_rank * engine.world_size
        adv, target = adv.to(engine.device), target.to(engine.device)
        share = engine.world_size / steps  # sums over the steps of all ranks (DDP averages over ranks)
        if args.baseline == "value":
            scale = float(getattr(model, "scale", 1.0))
            value_term = 0.5 * ((values.float() - target) / scale).pow(2).sum() * share
        else:
            value_term = values.sum() * 0.0
        if custom_loss:
            return custom_loss(logp, adv, entropy, value_term, dict(config))
        loss = -(logp * adv).sum() * share + value_term
        if args.entropy == "bonus":
            loss = loss - args.entropy_coef * entropy.sum() * share
        if not torch.isfinite(loss):
            raise SystemExit(f"training diverged: non-finite loss at update {state['updates'] + 1}; lower --lr")
        return loss

    def evaluate() -> float:
        """Mean return of the greedy policy over the fixed evaluation episodes."""
        with evaluating(actor):
            episodes = simulate(actor, eval_envs, EVAL_SEED, None, engine.device)
        return float(np.mean([len(e.rewards) for e in episodes]))

    eval_every = args.eval_every or max(1, args.steps // 10)
    curves: dict[str, list] = {"step": [], "val_metric": []}
    eval_s = 0.0
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        engine.step(micro_loss)
        state["updates"] = step
        if step % eval_every == 0 or step == args.steps:
            t0 = time.perf_counter()
            curves["step"].append(step)
            curves["val_metric"].append(evaluate())
            eval_s += time.perf_counter() - t0
    engine.synchronize()
    wall = time.perf_counter() - start
    train_envs.close()
    eval_envs.close()
    parameters = sum(t.numel() for t in model.parameters())
    final = {
        "eval_return": curves["val_metric"][-1],
        "best_eval_return": max(curves["val_metric"]),
        "mean_eval_return": float(np.mean(curves["val_metric"])),  # over the run's evaluations: how fast it learned
        "train_return": float(state["train_return"]),
        "env_steps": float(state["env_steps"]),
        "episodes": float(state["episodes"]),
    }
    metrics = engine.report(
        args,
        SPEC,
        config,
        curves,
        final,
        wall_s=wall,
        train_s=wall - eval_s,
        examples=int(state["episodes"]) // engine.world_size,
        tokens=int(state["env_steps"]) // engine.world_size,  # an environment step is a "token"
        parameters=parameters,
        flops_per_token=8.0 * parameters,  # a forward while simulating, then forward and backward in the update
        template_dir=Path(__file__).parent,
    )
    engine.close()
    return metrics


if __name__ == "__main__":
    main()
