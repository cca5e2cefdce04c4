"""LLM as a judge: accuracy, position bias and order consistency of a subject model (see template.yaml)."""

from pathlib import Path

from experiments.spec import load_spec

SPEC = load_spec(Path(__file__).resolve().parent)
