"""What a training template declares: its knobs (the settings a plan may vary) and its metric.

A template is a package under ``experiments/`` whose ``__init__`` defines ``SPEC``; its
``train.py`` accepts ``--<knob> VALUE`` for every knob plus ``--out_dir``, ``--seed`` and ``--steps``,
and the engine flags of ``experiments.engine`` (``--engine plain|ddp|deepspeed``, ``--ds_config``,
``--method FILE`` for a model-written method module against the template's extension point).
"""

from __future__ import annotations

import argparse
import importlib
import math
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

# Plain dataclasses, not pydantic: every training process imports its template's SPEC, and building
# pydantic models at import costs ~0.15 s of CPU per process, most of a simulated job's whole cost.
KINDS = ("float", "int", "choice")


@dataclass(frozen=True, kw_only=True)
class Knob:
    """One setting a plan may choose, with its default and its allowed range or choices."""

    name: str
    kind: Literal["float", "int", "choice"]
    default: float | int | str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list[str] = field(default_factory=list)
    help: str = ""

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"knob name {self.name!r} must be a Python identifier (it becomes --{self.name})")
        if self.kind not in KINDS:
            raise ValueError(f"knob {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "choice" and self.default not in self.choices:
            raise ValueError(f"knob {self.name!r}: default {self.default!r} is not among its choices {self.choices}")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"knob {self.name!r}: low {self.low} is above high {self.high}")

    def coerce(self, value: object) -> float | int | str:
        """Turn a planned value into a valid one: parse, clamp into range, or fall back to default."""
        if self.kind == "choice":
            text = str(value).strip().lower()
            return text if text in self.choices else self.default
        try:
            number = float(str(value))
        except ValueError:
            return self.default
        if not math.isfinite(number):
            return self.default
        if self.low is not None:
            number = max(number, self.low)
        if self.high is not None:
            number = min(number, self.high)
        return round(number) if self.kind == "int" else float(f"{number:.4g}")


@dataclass(frozen=True, kw_only=True)
class TemplateSpec:
    """A template's name, what it studies, its knobs and the metric its papers report."""

    name: str
    description: str
    knobs: list[Knob]
    metric: str
    higher_is_better: bool = True
    module: str  # the importable train module, run as ``python -m <module>``
    extension: str = ""  # the contract a model-written method module must meet (``--method FILE``)

    def knob(self, name: str) -> Knob:
        """The knob of that name; KeyError names the valid ones."""
        for k in self.knobs:
            if k.name == name:
                return k
        raise KeyError(f"template {self.name!r} has no knob {name!r}; knobs: {[k.name for k in self.knobs]}")

    def argument_parser(self, default_steps: int) -> argparse.ArgumentParser:
        """The flags every ``train.py`` of this template starts from: run options and one per knob."""
        p = argparse.ArgumentParser(description=self.description)
        p.add_argument("--out_dir", type=Path, required=True)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--steps", type=int, default=default_steps)
        kinds: dict[str, type] = {"float": float, "int": int, "choice": str}
        for knob in self.knobs:
            p.add_argument(f"--{knob.name}", type=kinds[knob.kind], default=knob.default, help=knob.help)
        return p

    def defaults(self) -> dict[str, float | int | str]:
        """Every knob at its default."""
        return {k.name: k.default for k in self.knobs}


def available_templates() -> list[str]:
    """Names of all template packages under ``experiments/``."""
    import experiments

    return sorted(m.name for m in pkgutil.iter_modules(experiments.__path__) if m.ispkg)


def load_template(name: str) -> TemplateSpec:
    """The spec of a template by name; an unknown name gets the list of known ones."""
    known = available_templates()
    if name not in known:
        raise KeyError(f"unknown experiment template {name!r}; available: {known}")
    spec = importlib.import_module(f"experiments.{name}").SPEC
    assert isinstance(spec, TemplateSpec)
    return spec
