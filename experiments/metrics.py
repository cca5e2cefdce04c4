"""The ``metrics.json`` contract every template's ``train.py`` writes, validated on both sides."""

from __future__ import annotations

import json
import platform
from pathlib import Path

from pydantic import BaseModel, Field, model_validator


class Curves(BaseModel):
    """Per-evaluation curves; every list given has one entry per evaluated step.

    ``val_metric`` is the template's metric; the losses are there for templates that train (an
    inference-only template, whose subject is a model, leaves them empty).
    """

    step: list[int]
    train_loss: list[float] = Field(default_factory=list)
    val_loss: list[float] = Field(default_factory=list)
    val_metric: list[float]

    @model_validator(mode="after")
    def _same_lengths(self) -> Curves:
        given: list[list[float] | list[int]] = [self.step, self.val_metric]
        given += [c for c in (self.train_loss, self.val_loss) if c]
        lengths = {len(c) for c in given}
        if len(lengths) != 1 or not self.step:
            raise ValueError(f"curves must be non-empty and of one length (got lengths {sorted(lengths)})")
        if self.step != sorted(self.step):
            raise ValueError("curve steps must increase")
        return self


class Provenance(BaseModel):
    """Git-free provenance: hashes of the code and config that produced the run, and versions."""

    code_sha256: str
    config_sha256: str
    files: dict[str, str] = Field(default_factory=dict)  # sha256 of each code file (template, engine, method)
    python: str = Field(default_factory=platform.python_version)
    torch: str = ""


class Metrics(BaseModel):
    """What one training run reports."""

    template: str
    engine: str
    device: str
    world_size: int = Field(default=1, ge=1)
    precision: str = "fp32"
    seed: int
    steps: int
    config: dict[str, float | int | str]
    metric: str
    final: dict[str, float]
    curves: Curves
    wall_s: float
    examples_per_s: float
    tokens_per_s: float = 0.0
    flops_per_token: float | None = None
    mfu: float | None = None  # model FLOPs utilisation; only on a GPU whose peak is known
    device_name: str = "cpu"
    method: str | None = None  # sha256 of a model-written method module, when one was used
    parameters: int
    provenance: Provenance


def write_metrics(metrics: Metrics, out_dir: Path) -> Path:
    """Write ``metrics.json`` atomically (a killed run never leaves half a file)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "metrics.json"
    tmp = out_dir / "metrics.json.tmp"
    tmp.write_text(json.dumps(metrics.model_dump(), indent=1), encoding="utf-8")
    tmp.replace(path)
    return path


def read_metrics(path: Path) -> Metrics:
    """Load and validate a ``metrics.json``."""
    return Metrics.model_validate_json(path.read_text(encoding="utf-8"))
