"""CartPole: a policy-gradient learner (REINFORCE to advantage actor-critic) on gymnasium's CartPole-v1."""

from pathlib import Path

from experiments.spec import load_spec

SPEC = load_spec(Path(__file__).resolve().parent)
