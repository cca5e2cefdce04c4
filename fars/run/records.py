"""The run's central types: projects, artifacts, usage and the versioned RunRecord.

The ledger (``fars.run.ledger``) is the truth while a run goes on; the RunRecord is the summary written
from it into the run folder, read by dashboards, ``compare`` and the tests.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import BaseModel, Field

from fars.run.contracts import ReviewSummary

# 2: typed project reviews (sub-scores under ``subscores``), ``papers`` and ``error``; version 1 still reads
RUN_RECORD_VERSION = 2


class ProjectStatus(str, Enum):
    """Where a project stands: ``final`` once it has ended, ``resumable`` while a resumed run takes it up again.

    A failure or a used-up budget is both: it ends the project in its session, and a resume tries it
    again; ``done`` and ``screened_out`` are final for good; ``queued`` and ``running`` have not ended.
    """

    queued = "queued"
    running = "running"
    done = "done"
    screened_out = "screened_out"
    failed = "failed"
    budget_exhausted = "budget_exhausted"

    @property
    def final(self) -> bool:
        """The project has ended (in this session, at least): it is neither queued nor running."""
        return self not in (ProjectStatus.queued, ProjectStatus.running)

    @property
    def resumable(self) -> bool:
        """A resumed run takes the project up again: it has not ended for good (done or screened out)."""
        return self not in (ProjectStatus.done, ProjectStatus.screened_out)


class Usage(BaseModel):
    """Tokens, dollars and time spent by model calls; summed by stage, model or project."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    cache_hits: int = 0  # calls answered by the response cache or the ledger's replay (no model call)
    # input tokens a prompt cache served: the provider's cached reads (hosted), the reused prefix (embedded)
    cached_input_tokens: int = 0
    evaluated_input_tokens: int = 0  # input tokens the model actually evaluated (sent minus cached)
    saved_usd: float = 0.0  # what the cached input tokens saved against the full input price (litellm's prices)

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens


class Artifact(BaseModel):
    """A file a stage produced, named relative to the run folder, with its content hash."""

    kind: str
    path: str
    sha256: str
    stage: str


class Funnel(BaseModel):
    """How many items reached each step of the pipeline."""

    hypotheses: int = 0
    screened: int = 0
    novel: int = 0  # screened hypotheses that passed the novelty check against the literature
    planned: int = 0
    experimented: int = 0
    written: int = 0
    reviewed: int = 0


class ProjectSummary(BaseModel):
    """One project's line in the RunRecord."""

    id: str
    status: ProjectStatus
    stage: str | None
    title: str | None = None
    hypothesis: str | None = None
    error: str | None = None
    stage_seconds: dict[str, float] = Field(default_factory=dict)
    usage: Usage = Field(default_factory=Usage)
    artifacts: list[Artifact] = Field(default_factory=list)
    rating: float | None = None
    review: ReviewSummary | None = None
    started_at: float | None = None  # first stage start (epoch seconds); reports plot throughput from these
    finished_at: float | None = None  # last stage event: when the project ended (a paper, for done ones)
    grounded_number_rate: float | None = None  # share of the paper's result numbers traced to results/config
    verified_citation_rate: float | None = None  # share of its citations that resolve to a literature record
    grounding_flagged: bool | None = None  # something unverified remains (marked in the paper's text)
    claim_grounding_rate: float | None = None  # share of the paper's effect claims its corrected tests support
    degenerate_fields: int = 0  # model-written text fields replaced by the harness (ideation and writing)
    fields_checked: int = 0
    research: str | None = None  # menu or open (pipeline.research), once ideation finished
    capability: str | None = None  # with pipeline.research=auto: the check's verdict and reason


class Totals(BaseModel):
    """Usage overall, by stage and by model."""

    overall: Usage = Field(default_factory=Usage)
    by_stage: dict[str, Usage] = Field(default_factory=dict)
    by_model: dict[str, Usage] = Field(default_factory=dict)


class RunRecord(BaseModel):
    """The versioned summary of a run: its config, status, funnel, totals, projects and scores."""

    version: int = RUN_RECORD_VERSION
    run_dir: str
    status: str  # running, completed, interrupted or failed
    error: str | None = None  # why the run failed, when it did
    started_at: float
    finished_at: float | None = None
    wall_s: float = 0.0
    resumed: int = 0
    config: dict[str, Any]
    funnel: Funnel
    totals: Totals
    papers: int = 0  # finished projects (``fars.run.summary.is_paper``)
    papers_per_hour: float = 0.0
    scores: list[float] = Field(default_factory=list)
    mean_score: float | None = None
    grounded_number_rate: float | None = None  # over every written paper's checked numbers (pooled)
    verified_citation_rate: float | None = None  # over every written paper's citations (pooled)
    papers_flagged: int = 0  # written papers with something unverified left (marked in their text)
    claim_grounding_rate: float | None = None  # over every written paper's effect claims (pooled)
    claims_before_rate: float | None = None  # the same of the model's own prose as it wrote it, before repair
    degenerate_rate: float | None = None  # model-written text fields found degenerate (before replacement)
    research: dict[str, int] = Field(default_factory=dict)  # projects by research mode (menu, open)
    projects: list[ProjectSummary] = Field(default_factory=list)
