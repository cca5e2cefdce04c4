"""What every stage shares: the registry, the context a stage runs in, and its outcomes.

A stage is registered by name as a factory: ``factory(cfg) -> async run(ctx) -> output``. The output
is a JSON-able dict the ledger stores; the next stages read it from ``ctx.outputs``. A stage that
decides the project should stop raises ``StopProject`` with the final status.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fars.config import FarsConfig
from fars.ledger import Ledger
from fars.llm.client import LLMClient
from fars.records import Artifact, ProjectStatus

StageOutput = dict[str, Any]
StageFn = Callable[["StageContext"], Awaitable[StageOutput]]
StageFactory = Callable[[FarsConfig], StageFn]

_REGISTRY: dict[str, StageFactory] = {}


def register_stage(name: str) -> Callable[[StageFactory], StageFactory]:
    """Register a stage factory under ``name``."""

    def decorate(factory: StageFactory) -> StageFactory:
        _REGISTRY[name] = factory
        return factory

    return decorate


def get_stage(name: str) -> StageFactory:
    """The factory registered as ``name``; a typo gets the nearest names suggested."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f"; did you mean {close}?" if close else ""
        raise KeyError(f"no stage named {name!r}{hint} (registered: {sorted(_REGISTRY)})")
    return _REGISTRY[name]


class StopProject(Exception):
    """Ends a project early with a final status (e.g. every hypothesis screened out)."""

    def __init__(self, status: ProjectStatus, reason: str, output: StageOutput | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.output = output or {}


@dataclass
class StageContext:
    """Everything a stage may use for one project."""

    cfg: FarsConfig
    project_id: str
    index: int
    area: str
    run_dir: Path
    llm: LLMClient
    ledger: Ledger
    outputs: dict[str, StageOutput] = field(default_factory=dict)
    stage: str = ""

    @property
    def project_dir(self) -> Path:
        """The project's own folder inside the run folder."""
        path = self.run_dir / "projects" / self.project_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def save_artifact(self, kind: str, name: str, content: str | bytes) -> Artifact:
        """Write a file into the project folder, hash it and record it in the ledger."""
        path = (self.project_dir / name).resolve()
        if not path.is_relative_to(self.project_dir.resolve()):
            raise ValueError(f"artifact name {name!r} leaves the project folder")
        path.parent.mkdir(parents=True, exist_ok=True)
        data = content.encode("utf-8") if isinstance(content, str) else content
        path.write_bytes(data)
        return self.record_artifact(kind, path)

    def record_artifact(self, kind: str, path: Path) -> Artifact:
        """Hash an existing file in the run folder and record it."""
        artifact = Artifact(
            kind=kind,
            path=str(path.resolve().relative_to(self.run_dir.resolve())),
            sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
            stage=self.stage,
        )
        self.ledger.add_artifact(self.project_id, artifact)
        return artifact
