"""The ``metrics.json`` contract every template's ``train.py`` writes, validated on both sides."""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path

from pydantic import BaseModel, Field


class Curves(BaseModel):
    """Per-evaluation curves; every list has one entry per evaluated step."""

    step: list[int]
    train_loss: list[float]
    val_loss: list[float]
    val_metric: list[float]


class Provenance(BaseModel):
    """Git-free provenance: hashes of the code and config that produced the run, and versions."""

    code_sha256: str
    config_sha256: str
    python: str = Field(default_factory=platform.python_version)
    torch: str = ""


class Metrics(BaseModel):
    """What one training run reports."""

    template: str
    engine: str
    device: str
    world_size: int = 1
    seed: int
    steps: int
    config: dict[str, float | int | str]
    metric: str
    final: dict[str, float]
    curves: Curves
    wall_s: float
    examples_per_s: float
    parameters: int
    provenance: Provenance


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def config_sha256(config: dict[str, float | int | str]) -> str:
    """sha256 of a config, independent of key order."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def read_metrics(path: Path) -> Metrics:
    """Load and validate a ``metrics.json``."""
    return Metrics.model_validate_json(path.read_text(encoding="utf-8"))
