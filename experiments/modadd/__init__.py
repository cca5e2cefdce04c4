"""Modular addition: an MLP learns (a + b) mod p from a fraction of all pairs (see template.yaml)."""

from pathlib import Path

from experiments.spec import load_spec

SPEC = load_spec(Path(__file__).resolve().parent)
