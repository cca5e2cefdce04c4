"""A character-level GPT on a bundled text; its size scales by knobs from tiny (CI) to about 86M (GPU)."""

from pathlib import Path

from experiments.spec import load_spec

SPEC = load_spec(Path(__file__).resolve().parent)
