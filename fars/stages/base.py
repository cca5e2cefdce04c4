"""What every stage shares: the open registry, the context a stage runs in, and its outcomes.

A stage is registered by name with the contract it produces, the contracts it consumes and how its
settings come out of the run's config::

    @register_stage("planning", produces=PlanningOutput, consumes=(IdeationOutput,), settings=PlanningSettings.of)
    def planning(settings: PlanningSettings, services: Services) -> StageFn: ...

The factory runs once per run and returns ``async run(ctx) -> output``; the output is validated
against the declared contract and stored in the ledger, and later stages read it, typed, with
``ctx.input(PlanningOutput)``. A stage that decides its project should stop raises ``StopProject``.
What the queue does around a stage is registered with it too, so the queue names no stage: what to
check before anything runs (``check=``), how often to try again after a failure (``retries=``), and
whether a failure that outlasts them fails the project (``on_failure=``).

The registry (``fars.stages.lazy_registry.Registry``) knows FARS's own stages by module and the stages of other
packages by their entry points (group ``fars.stages``: ``name = module``, a module that registers the
stage on import, or ``name = module:attribute``, a ``StageSpec``), and imports a stage's module only
when the stage is looked up. ``fars.stages.registry`` finds stages there and orders them by what each consumes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from fars.run.contracts import StageOutput
from fars.run.ledger import Ledger
from fars.run.records import Artifact, ProjectStatus
from fars.safe_files import sha256_file, write_atomic
from fars.stages.lazy_registry import Registry

if TYPE_CHECKING:
    from fars.config import FarsConfig
    from fars.stages.services import Services

log = logging.getLogger(__name__)
OutputT = TypeVar("OutputT", bound=StageOutput)
StageFn = Callable[["StageContext"], Awaitable[StageOutput]]
StageFactory = Callable[[Any, "Services"], StageFn]
# what a failure of the stage that outlasts its retries does: fail the project, or (a review) keep its written
# paper as a paper without a rating
OnFailure = Literal["fail_project", "keep_paper_unreviewed"]
ENTRY_POINT_GROUP = "fars.stages"
# FARS's own stages, by the module that registers each (imported when the stage is first looked up)
OWN_STAGES = {name: f"fars.stages.{name}" for name in ("ideation", "planning", "experiment", "writing", "review")}


def _options_of(name: str) -> Callable[[FarsConfig], dict[str, Any]]:
    """The default settings of a stage: its entry of ``pipeline.stage_options`` (a plain dict)."""

    def settings(cfg: FarsConfig) -> dict[str, Any]:
        return dict(cfg.pipeline.stage_options.get(name, {}))

    return settings


@dataclass(frozen=True)
class StageSpec:
    """A registered stage: name, factory, the contracts it produces and consumes, and what the queue does around it."""

    name: str
    factory: StageFactory
    produces: type[StageOutput]
    consumes: tuple[type[StageOutput], ...] = ()
    settings: Callable[[FarsConfig], Any] | None = None  # None: its ``pipeline.stage_options`` entry
    origin: str = ""  # the module that registered it
    check: Callable[[FarsConfig], list[str]] | None = None  # what this machine lacks to run it (before anything runs)
    retries: Callable[[FarsConfig], int] | None = None  # tries after a failure (not after a budget or a stop)
    on_failure: OnFailure = "fail_project"
    doing: str = ""  # what it does, for the log ("reviewing again"); "running <name>" when not given

    def settings_for(self, cfg: FarsConfig) -> Any:
        """This stage's own settings, taken out of the run's config."""
        return (self.settings or _options_of(self.name))(cfg)

    def build(self, cfg: FarsConfig, services: Services) -> StageFn:
        """The stage's ``run`` for this run: the factory called with its settings and the shared services."""
        return self.factory(self.settings_for(cfg), services)


# filled by register_stage as each stage's module is imported; read through fars.stages.registry
_REGISTRY: Registry[StageSpec] = Registry("stage", StageSpec, modules=OWN_STAGES, entry_points=ENTRY_POINT_GROUP)


def register_stage(
    name: str,
    *,
    produces: type[StageOutput],
    consumes: tuple[type[StageOutput], ...] = (),
    settings: Callable[[FarsConfig], Any] | None = None,
    check: Callable[[FarsConfig], list[str]] | None = None,
    retries: Callable[[FarsConfig], int] | None = None,
    on_failure: OnFailure = "fail_project",
    doing: str = "",
) -> Callable[[StageFactory], StageFactory]:
    """Register a stage factory under ``name`` (see the module docstring and ``StageSpec``'s fields)."""
    if not produces.contract:
        raise ValueError(f"stage {name!r}: {produces.__name__} is not a registered contract (@register_contract)")

    def decorate(factory: StageFactory) -> StageFactory:
        origin = getattr(factory, "__module__", "")
        spec = StageSpec(
            name,
            factory,
            produces,
            tuple(consumes),
            settings,
            origin,
            check=check,
            retries=retries,
            on_failure=on_failure,
            doing=doing,
        )
        _REGISTRY.add(name, spec, origin)
        return factory

    return decorate


class StageConfigError(ValueError):
    """``pipeline.stages`` names unknown stages, or stages whose inputs no listed stage produces."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class StopProject(Exception):
    """Ends a project early with a final status (e.g. every hypothesis screened out)."""

    def __init__(self, status: ProjectStatus, reason: str, output: StageOutput | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.output = output


@dataclass
class StageContext:
    """What a stage gets for one project: who it is, where its files go, and the earlier stages' outputs."""

    project_id: str
    index: int
    area: str
    run_dir: Path
    ledger: Ledger
    stage: str = ""
    inputs: dict[type[StageOutput], StageOutput] = field(default_factory=dict)

    def input(self, contract: type[OutputT]) -> OutputT:
        """The output of the earlier stage that produced ``contract`` (declared in ``consumes``)."""
        found = self.inputs.get(contract)
        if found is None:
            raise KeyError(
                f"stage {self.stage!r} of {self.project_id} has no {contract.__name__} input; "
                f"declare it in consumes= and list its producer in pipeline.stages"
            )
        assert isinstance(found, contract)
        return found

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
        data = content.encode("utf-8") if isinstance(content, str) else content
        relative = path.relative_to(self.project_dir.resolve())
        write_atomic(self.project_dir, relative, data)  # never written through a link
        return self.record_artifact(kind, self.project_dir / relative)

    def record_artifact(self, kind: str, path: Path) -> Artifact:
        """Hash an existing file in the run folder and record it (a link or special file is refused)."""
        relative = Path(os.path.abspath(path)).relative_to(os.path.abspath(self.run_dir))
        artifact = Artifact(
            kind=kind,
            path=str(relative),
            sha256=sha256_file(self.run_dir, relative),
            stage=self.stage,
        )
        self.ledger.add_artifact(self.project_id, artifact)
        return artifact
