"""Handwritten digits: an MLP or small CNN on scikit-learn's bundled 8x8 digits (see template.yaml)."""

from pathlib import Path

from experiments.spec import load_spec

SPEC = load_spec(Path(__file__).resolve().parent)
