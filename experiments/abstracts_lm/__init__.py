"""A character-level GPT on ICLR 2022 titles and abstracts, with whole papers held out (see template.yaml)."""

from pathlib import Path

from experiments.spec import load_spec

SPEC = load_spec(Path(__file__).resolve().parent)
