"""Typed contracts between stages: the pydantic model each stage returns and the next ones read.

Every stage declares the contract it produces and the contracts it consumes (``fars.stages.base``).
The ledger stores each finished stage's output with its contract's name and version; a resumed run
validates what it reads back with ``load_output``, so an old or hand-edited run folder fails with a
message naming the project, stage and field instead of a ``KeyError`` deep inside a stage. The
RunRecord, W&B, ``fars compare`` and the stages themselves read attributes of these models, never
string keys. Contracts of stages from other packages register here too (``register_contract``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from review.reviewer import PaperReview

Value = float | int | str  # a knob's value


class StageOutput(BaseModel):
    """Base of every stage's output: a versioned contract; ``stopped`` says why a stage ended its project."""

    model_config = ConfigDict(extra="forbid")
    contract: ClassVar[str] = ""
    version: ClassVar[int] = 1
    stopped: str | None = None


C = TypeVar("C", bound=type[StageOutput])
_CONTRACTS: dict[str, type[StageOutput]] = {}


def register_contract(name: str, version: int = 1) -> Any:
    """Class decorator: register a ``StageOutput`` subclass under ``name`` at ``version``."""

    def decorate(cls: C) -> C:
        if name in _CONTRACTS and _CONTRACTS[name] is not cls:
            raise ValueError(
                f"contract {name!r} is registered twice ({_CONTRACTS[name].__module__} and {cls.__module__})"
            )
        cls.contract, cls.version = name, version
        _CONTRACTS[name] = cls
        return cls

    return decorate


def contract_class(name: str) -> type[StageOutput] | None:
    """The registered contract of that name, or None (a stage from a package that is not installed)."""
    return _CONTRACTS.get(name)


class ContractError(ValueError):
    """A stored stage output does not match its contract; the message names project, stage and fields."""

    def __init__(self, project_id: str, stage: str, problems: list[str]) -> None:
        self.project_id, self.stage, self.problems = project_id, stage, problems
        super().__init__(f"project {project_id}, stage {stage}: stored output is invalid: " + "; ".join(problems))


def load_output(
    cls: type[StageOutput], raw: dict[str, Any], *, project_id: str, stage: str, version: int | None = None
) -> StageOutput:
    """Validate a stored stage output against its contract; ``ContractError`` names every bad field."""
    if version is not None and version > cls.version:
        raise ContractError(
            project_id,
            stage,
            [f"written by a newer FARS ({cls.contract} version {version}; this one reads up to {cls.version})"],
        )
    try:
        return cls.model_validate(raw)
    except ValidationError as exc:
        problems = [f"field {'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()[:8]]
        raise ContractError(project_id, stage, problems) from None


# -- ideation -------------------------------------------------------------------------------------
class RelatedEntry(BaseModel):
    """A retrieved work as stored with a hypothesis: the record, the backend's score, the similarity."""

    id: str
    title: str
    authors: list[str] = Field(default_factory=list)
    year: int | None = None
    venue: str | None = None
    url: str | None = None
    source: str = ""
    score: float = 0.0
    similarity: float = 0.0
    abstract: str = ""  # its first 400 characters: what novelty is judged against, and what open ideation is shown


class NoveltyEvidence(BaseModel):
    """One of the nearest works a novelty verdict was judged against."""

    id: str
    title: str
    similarity: float


class NoveltyVerdict(BaseModel):
    """Whether a hypothesis is new against its nearest works, and the evidence."""

    checked: bool
    novel: bool
    reason: str
    max_similarity: float | None = None
    nearest: str | None = None
    model: dict[str, Any] | None = None  # the model's own judgement (novel, closest, reason)
    evidence: list[NoveltyEvidence] = Field(default_factory=list)


class MethodCandidate(BaseModel):
    """A method drawn from a template's component space: the slots it changes and to which options."""

    id: int
    components: dict[str, str]  # slot -> option, only the slots that differ from the baseline
    summary: str  # what it does, in words the harness writes from the template's option descriptions


class IdeaPart(BaseModel):
    """A named part of an idea that an ablation can remove: settings of the template, or a switch of the code."""

    name: str
    what: str = ""
    settings: list[str] = Field(default_factory=list)  # the component slots and knobs it sets (removed together)
    code: bool = False  # implemented in the method's code, behind a switch of this name


class HypothesisRecord(BaseModel):
    """A proposed hypothesis with what was found about it.

    ``source``: menu, a method the harness drew from the template's components and the model worded; open, an
    idea of the model's own (its mechanism, the settings and code it changes, its prediction, parts and risks).
    """

    title: str
    statement: str
    rationale: str = ""
    related: list[RelatedEntry] = Field(default_factory=list)
    novelty: NoveltyVerdict | None = None
    method: dict[str, str] = Field(default_factory=dict)  # the components it is about (slot -> option)
    written_by: Literal["model", "harness"] = "model"  # harness: the model's text was degenerate, see ``degenerate``
    degenerate: list[str] = Field(default_factory=list)  # why the model's text was replaced
    source: Literal["menu", "open"] = "menu"
    mechanism: str = ""  # open: why the change should work
    knobs: dict[str, Value] = Field(default_factory=dict)  # open: knobs the method sets away from their defaults
    code_change: str = ""  # open: what the method's code does that settings cannot ("" for settings alone)
    prediction: Literal["better", "worse", "equivalent"] | None = None  # open: the predicted effect on the metric
    effect: float | None = Field(default=None, gt=0)  # open: its predicted size (better/worse), metric units
    margin: float | None = Field(default=None, gt=0)  # open: the equivalence margin (equivalent), metric units
    parts: list[IdeaPart] = Field(default_factory=list)  # open: what each ablation removes, by name
    risks: list[str] = Field(default_factory=list)  # open: threats to the study's validity, as the model saw them
    searches: list[str] = Field(default_factory=list)  # open: the model's literature queries for the closest work
    repaired: list[str] = Field(default_factory=list)  # open: what the harness dropped or fixed of the idea, and why


class TemplateChoice(BaseModel):
    """A template considered for the research area, and how relevant it was judged."""

    name: str
    relevance: float


class ScreeningScore(BaseModel):
    """A screening score, 1 (bad) to 5 (excellent) on each axis."""

    novelty: int = Field(ge=1, le=5)
    feasibility: int = Field(ge=1, le=5)
    clarity: int = Field(ge=1, le=5)

    @property
    def overall(self) -> float:
        """The mean of the three axes, rounded as the screening threshold compares it."""
        return round((self.novelty + self.feasibility + self.clarity) / 3, 2)


class LiteratureInfo(BaseModel):
    """Which literature backend a stage used, which services answered this project, and any failure."""

    backend: str
    error: str | None = None
    answered_by: list[str] = Field(default_factory=list)


class CapabilityCheck(BaseModel):
    """The short test that decides ``pipeline.research=auto``: a model that reads a small results table right
    (means, the better condition, a mechanism in words) drives open research; one that does not gets the menu."""

    model: str
    passed: bool
    reason: str  # what it got right or wrong
    reply: dict[str, Any] | None = None


@register_contract("ideation", version=2)
class IdeationOutput(StageOutput):
    """Hypotheses with their screening, related work and novelty; the chosen one (None when stopped)."""

    hypotheses: list[HypothesisRecord]
    scores: list[ScreeningScore]
    overall: list[float]
    screened: int = Field(ge=0)
    novel: int = Field(ge=0)
    related: list[RelatedEntry] = Field(default_factory=list)
    literature: LiteratureInfo
    template: str
    focus: str  # the knob this project leans on (sensitivity sweeps, knob-only templates)
    chosen: HypothesisRecord | None = None
    candidates: list[MethodCandidate] = Field(default_factory=list)
    templates_considered: list[TemplateChoice] = Field(default_factory=list)
    fields_checked: int = 0  # model-written text fields checked for degenerate output
    degenerate_fields: int = 0  # of those, how many were degenerate (and replaced)
    research: Literal["menu", "open"] = "menu"  # how the ideas were made (pipeline.research)
    capability: CapabilityCheck | None = None  # the check that chose the mode, with pipeline.research=auto

    def require_chosen(self) -> HypothesisRecord:
        """The chosen hypothesis; a clear error when ideation stopped without one."""
        if self.chosen is None:
            raise ValueError(f"ideation chose no hypothesis ({self.stopped or 'no reason recorded'})")
        return self.chosen


# -- planning -------------------------------------------------------------------------------------
Role = Literal["baseline", "method", "ablation", "sensitivity", "variant", "followup"]


class Condition(BaseModel):
    """One condition of a plan: the components and knobs it runs with, and its part in the design."""

    name: str
    role: Role
    components: dict[str, str] = Field(default_factory=dict)  # slots that differ from the baseline
    knobs: dict[str, Value] = Field(default_factory=dict)  # knobs that differ from the template's defaults
    of: str | None = None  # ablation, sensitivity: the method it varies
    removed: str | None = None  # ablation: the component slot put back to the baseline's option
    description: str = ""


class Pilot(BaseModel):
    """The baseline run over a few seeds before the plan: its seed-to-seed spread and how its curve ends.

    ``sd`` is the spread the design uses: the sample standard deviation over seeds, or, where the seeds all
    agreed exactly (``sd_floored``), a floor no smaller than the metric's resolution, with why in
    ``sd_floor_reason`` (fars.stages.planning.pilot_summary). ``trend`` is how the mean validation curve over
    seeds ends against that noise (fars.evaluation.design.curve_trend): "converged", "still improving" (its
    last fifth improved it by more than fars.stages.planning.CONVERGED_SHARE of its whole gain, or by more than
    ``sd``) or "unstable" (it ended worse than its best by more than ``sd``); None where the curve never
    improved, or in a plan written before trends were recorded. ``convergence`` is that curve's share of its
    improvement made in the last fifth of training (0: flat at the end; near 1: still climbing), None where
    it showed no improvement. ``late_change`` is what the last fifth changed it by (metric units), ``best``
    and ``end`` its best and last points (step, value).
    """

    seeds: list[int]
    steps: int
    values: list[float]  # the template's metric, one per seed that finished
    mean: float | None = None  # None: no pilot run finished
    sd: float  # sample standard deviation over seeds (0 with one value), or its floor where they agreed
    sd_floored: bool = False  # the seeds agreed exactly: sd is a floor, not a measured spread
    sd_floor_reason: str = ""  # what the floor is, in words ("the metric's resolution, ...")
    convergence: float | None = None
    converged: bool | None = None  # True only for trend "converged" (older plans: convergence <= CONVERGED_SHARE)
    trend: Literal["converged", "still improving", "unstable"] | None = None
    late_change: float | None = None
    best: tuple[int, float] | None = None
    end: tuple[int, float] | None = None
    job_s: float = 0.0  # mean wall time of a pilot run
    failures: list[str] = Field(default_factory=list)
    reused: bool = False  # its runs are the experiment's baseline runs (it could not change the seeds)
    curve: list[tuple[int, float]] = Field(default_factory=list)  # (step, mean validation metric), a few points


class SeedDesign(BaseModel):
    """How many seeds each condition gets and why: a power analysis on the pilot's spread, or the config's count.

    ``effect`` is the improvement the design is powered for (metric units), ``detectable`` the smallest one the
    chosen seeds detect with ``wanted_power`` at ``alpha`` (stated instead of pretending when ``capped``).
    """

    method: Literal["power", "fixed"]
    seeds: int = Field(ge=1)
    cap: int = Field(ge=1)
    capped: bool = False
    family: Literal["primary", "secondary"] = "primary"  # which comparisons the power is for
    alpha: float | None = None  # the level of the powered test, corrected for its family
    sides: Literal["greater", "two-sided", "equivalence"] = "greater"  # equivalence: TOST, effect = its margin
    wanted_power: float | None = None
    effect: float | None = None
    effect_source: str = ""
    sd: float | None = None  # the pilot's seed-to-seed sd (power is averaged over its uncertainty)
    power: float | None = None  # expected of the chosen seeds for ``effect`` (design.expected_power)
    needed: int | None = None  # seeds the wanted power takes (None: more than the search's limit)
    detectable: float | None = None
    reason: str = ""  # one sentence for the plan, the prompt and the paper


Prediction = Literal["better", "worse", "different", "equivalent"]
SEARCH_WINNER = "code"  # the condition of the code search's winning program (added by the Experiment stage)


def ablated(name: str, names: Iterable[str]) -> str | None:
    """The condition an ablation removes a part from (``method-without-schedule`` -> ``method``,
    ``code-without-averaging`` -> ``code``), if it is one of ``names``."""
    parent = name.split("-without-", 1)[0] if "-without-" in name else None
    return parent if parent is not None and parent in set(names) else None


class Comparison(BaseModel):
    """A comparison pre-registered in the plan: candidate against reference, in its family, with its prediction.

    The primary family (method vs baseline) is tested alone; the secondary family (ablations, sweeps,
    variants) is corrected with Holm within itself. ``effect`` is the predicted (or smallest interesting)
    size of the difference in metric units; ``margin`` bounds a difference that counts as none (TOST).
    """

    name: str
    candidate: str
    reference: str = "baseline"
    family: Literal["primary", "secondary"]
    prediction: Prediction = "better"
    effect: float | None = Field(default=None, gt=0)
    margin: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _margin_for_equivalence(self) -> Comparison:
        if self.prediction == "equivalent" and self.margin is None:
            raise ValueError(f"comparison {self.name!r} predicts equivalence: it needs a margin")
        return self


# the test a row's p comes from: TOST (and TOST failed with the whole interval past the margin, whose verdict is
# the interval's), one-sided in the predicted direction, two-sided as the result went against the registered
# direction, or two-sided (no direction registered, or an exploratory row)
TestKind = Literal["tost", "tost-beyond-margin", "one-sided", "two-sided-against", "two-sided"]


class ComparisonOutcome(BaseModel):
    """What a pre-registered comparison found: the difference with its Welch t-interval, the p of its claim
    (raw and Holm-adjusted within its family), TOST's p where a margin was set, and the verdict."""

    name: str
    family: Literal["primary", "secondary"]
    candidate: str
    reference: str
    prediction: Prediction
    n: tuple[int, int]  # seeds of candidate and reference
    difference: float | None = None  # mean(candidate) - mean(reference), metric units
    ci_low: float | None = None
    ci_high: float | None = None
    confidence: float = 0.95
    p_value: float | None = None
    p_adjusted: float | None = None
    tost_p: float | None = None
    two_sided_p: float | None = None  # the two-sided Welch p, whatever the claim's test (said beside a failed TOST)
    verdict: Literal["better", "worse", "equivalent", "no significant difference", "inconclusive"]


class Plan(BaseModel):
    """A runnable experiment: a baseline, methods, ablations (and sweeps), over seeds."""

    template: str
    hypothesis: str = ""
    design: Literal["components", "knob"]  # components: methods from the component space; knob: values of one knob
    conditions: list[Condition]
    seeds: list[int]
    steps: int = Field(ge=1)
    scale: str = "ci"
    knob: str | None = None  # the knob a knob design or a sensitivity sweep varies
    rationale: str = ""
    repaired: list[str] = Field(default_factory=list)
    # optional, so plans written before pilots and pre-registration still load
    pilot: Pilot | None = None
    seed_design: SeedDesign | None = None
    comparisons: list[Comparison] = Field(default_factory=list)

    @model_validator(mode="after")
    def _well_formed(self) -> Plan:
        names = [c.name for c in self.conditions]
        if len(set(names)) != len(names):
            raise ValueError(f"condition names repeat: {names}")
        if not names or self.conditions[0].role != "baseline":
            raise ValueError("a plan's first condition must be its baseline")
        code_alone = any(c.candidate == SEARCH_WINNER for c in self.comparisons)  # an open idea that is code only
        if len(self.conditions) < 2 and not code_alone:
            raise ValueError("a plan needs a baseline and at least one other condition")
        # the code search's winner (SEARCH_WINNER) is not known before the runs: an open idea's code registers it
        unknown = {n for c in self.comparisons for n in (c.candidate, c.reference)} - {*names, SEARCH_WINNER}
        if unknown:
            raise ValueError(f"comparisons name conditions the plan does not have: {sorted(unknown)}")
        return self

    def condition(self, name: str) -> Condition:
        """The condition of that name."""
        for c in self.conditions:
            if c.name == name:
                return c
        raise KeyError(f"plan has no condition {name!r}; conditions: {[c.name for c in self.conditions]}")


@register_contract("planning", version=2)
class PlanningOutput(StageOutput):
    """The plan the Experiment stage runs."""

    plan: Plan


# -- experiment -----------------------------------------------------------------------------------
class Stat(BaseModel):
    """Mean, sample standard deviation and count of a quantity over seeds."""

    mean: float
    std: float
    n: int = Field(ge=1)


Verdict = Literal["baseline", "better", "worse", "equivalent", "no significant difference", "inconclusive", "untested"]
Family = Literal["primary", "secondary", "exploratory"]


class ConditionResult(BaseModel):
    """One condition's statistics over its seeds and its corrected test against the baseline.

    ``metric`` is the template's metric (mean, std, n) with a Student-t interval of the mean;
    ``p_vs_baseline`` is the test against the baseline and ``p_adjusted`` the same corrected within its
    ``family``: the plan's pre-registered comparison against the baseline where it has one (the primary alone,
    one-sided in a predicted direction, TOST for equivalence; the secondary ones with Holm), else an
    exploratory two-sided Welch t-test with Holm over the exploratory conditions (the follow-ups). A plan
    written before comparisons were registered leaves ``family`` unset: every condition two-sided, one Holm
    family. ``test`` says which test in words; ``effect_size`` is Hedges' g (positive: better).
    """

    role: Role = "method"
    components: dict[str, str] = Field(default_factory=dict)
    knobs: dict[str, Value] = Field(default_factory=dict)
    metric: Stat
    ci_low: float | None = None
    ci_high: float | None = None
    secondary: dict[str, Stat] = Field(default_factory=dict)  # the run's other final values (losses, ...)
    seeds: list[int]
    values: list[float]
    difference: float | None = None  # mean minus the baseline's mean
    p_vs_baseline: float | None = None
    p_adjusted: float | None = None
    effect_size: float | None = None
    verdict: Verdict = "untested"
    family: Family | None = None
    test: str | None = None
    test_kind: TestKind | None = None
    p_two_sided: float | None = None  # beside a failed TOST: the two-sided Welch p of the difference it found
    registered_against: str | None = None  # an ablation's registered test is against this condition, not the baseline
    wall_s: float = 0.0
    tokens_per_s: float = 0.0
    mfu: float | None = None
    parameters: int | None = None  # the model's trainable parameters in this condition (None: not reported)


class JobFailure(BaseModel):
    """A training job that produced no valid result."""

    condition: str
    seed: int
    error: str


class FigureFile(BaseModel):
    """A figure's files, relative to the project folder (PNG for Markdown; PDF, when drawn, for LaTeX)."""

    caption: str
    png: str | None = None
    pdf: str | None = None


class EngineInfo(BaseModel):
    """How the baseline's first run trained."""

    name: str
    world_size: int = 1
    precision: str = "fp32"
    device: str = "cpu"
    parameters: int = 0


NodeKind = Literal["draft", "debug", "improve", "ablation"]
NodeVerdict = Literal["buggy", "worse", "same", "better"]


class CodeNode(BaseModel):
    """One node of the search over programs: a version of the template's code, its parent, and how it ran."""

    id: str
    parent: str | None = None
    kind: NodeKind
    depth: int = 0  # debug steps from its last working ancestor
    verdict: NodeVerdict
    error: str | None = None  # why it is buggy: the edit, syntax, the smoke run's error tail, NaN, time-out
    edits: list[str] = Field(default_factory=list)  # what the reply changed, file by file
    diff: str | None = None  # the unified diff against the template (a file, relative to the run folder)
    mean: float | None = None  # the metric over the plan's seeds (nodes that ran)
    values: list[float] = Field(default_factory=list)
    p_vs_baseline: float | None = None  # Welch, uncorrected: it guides the search, the paper's tests are corrected
    seconds: float = 0.0


class CodeSearchSummary(BaseModel):
    """The search over programs of a project: every node, the winner, and the changes its ablations removed."""

    nodes: list[CodeNode] = Field(default_factory=list)
    winner: str | None = None  # the node run as condition ``code`` (None: no node beat the baseline)
    reason: str = ""
    parts: list[str] = Field(default_factory=list)  # the winner's changes, one ablation condition each
    diff: str | None = None  # the winner's diff (the paper's appendix)
    # the seeds the winner and its ablations are reported on (not those it was chosen by); [] before fresh seeds
    fresh_seeds: list[int] = Field(default_factory=list)


class FollowupRequest(BaseModel):
    """A condition the model asked for after reading the results, and what became of it."""

    name: str
    settings: dict[str, Value] = Field(default_factory=dict)  # component slots and knobs, on top of the baseline
    why: str = ""
    status: Literal["ran", "refused"] = "refused"
    note: str = ""  # why it was refused, or what the harness changed


class ModelAnalysis(BaseModel):
    """The model's reading of the results (open research), written before the paper; the paper's claims are
    checked against the results as any prose is."""

    finding: str  # what was found, relative to the prediction
    verdict: Literal["supported", "refuted", "equivalent", "inconclusive"]
    analysis: str  # the paragraphs of analysis
    followups: list[FollowupRequest] = Field(default_factory=list)
    revised: bool = False  # rewritten after the follow-up conditions ran


class Results(BaseModel):
    """What the Experiment stage found: statistics per condition, the best one, failures, figures."""

    template: str
    metric: str
    higher_is_better: bool
    knob: str | None = None
    steps: int
    alpha: float = 0.05  # family-wise level of the corrected tests
    correction: str = "holm"
    confidence: float = 0.95  # of the intervals (Student-t over seeds; a bootstrap before 2026-12)
    conditions: dict[str, ConditionResult]
    best: str
    failures: list[JobFailure] = Field(default_factory=list)
    figures: list[FigureFile] = Field(default_factory=list)
    engine: EngineInfo
    code: CodeSearchSummary | None = None  # the search over programs, when it ran
    comparisons: list[ComparisonOutcome] = Field(default_factory=list)  # the plan's pre-registered ones, judged
    analysis: ModelAnalysis | None = None  # the model's own reading (open research), with its follow-ups

    def outcome(
        self, candidate: str, reference: str | None = None, family: str | None = None
    ) -> tuple[int, ComparisonOutcome] | None:
        """The registered comparison of ``candidate`` (against ``reference``, or in ``family``) with its index in
        ``comparisons`` (for a number's path), or None where none was registered."""
        return next(
            (
                (i, o)
                for i, o in enumerate(self.comparisons)
                if o.candidate == candidate
                and (reference is None or o.reference == reference)
                and (family is None or o.family == family)
            ),
            None,
        )

    @model_validator(mode="after")
    def _has_baseline(self) -> Results:
        if "baseline" not in self.conditions:
            raise ValueError("results have no 'baseline' condition")
        if self.best not in self.conditions:
            raise ValueError(f"best condition {self.best!r} is not among the conditions {sorted(self.conditions)}")
        return self


@register_contract("experiment", version=2)
class ExperimentOutput(StageOutput):
    """The experiment's results (also written as ``results.json``)."""

    results: Results


# -- writing --------------------------------------------------------------------------------------
class GroundingCounts(BaseModel):
    """Counts and rates of one grounding check of a paper."""

    numbers: int = 0
    numbers_from_harness: int = 0  # written by the harness from a recorded field (traced by provenance)
    numbers_checked: int = 0
    numbers_ungrounded: int = 0
    citations: int = 0
    citations_unverified: int = 0
    grounded_number_rate: float = 1.0
    verified_citation_rate: float = 1.0


class GroundingSummary(BaseModel):
    """Grounding of a paper before and after repair, and what was repaired or is still wrong."""

    before: GroundingCounts
    after: GroundingCounts
    flagged: bool
    unmarked: int = 0
    problems: list[str] = Field(default_factory=list)
    repairs: list[str] = Field(default_factory=list)
    latex_citation_problems: list[str] = Field(default_factory=list)
    bibliography: int = 0
    unresolved_records: list[str] = Field(default_factory=list)


class ClaimCheck(BaseModel):
    """Claims of an effect in a paper checked against the corrected tests (see ``fars.paper.claims``)."""

    checked: int = 0  # sentences that claim an effect (or its absence) of a condition
    supported: int = 0
    overclaims: int = 0  # an effect claimed where the corrected test found none
    wrong_direction: int = 0  # the opposite of what the test found
    unsupported_null: int = 0  # "no effect" claimed where the test found one
    problems: list[str] = Field(default_factory=list)
    repaired: list[str] = Field(default_factory=list)

    @property
    def rate(self) -> float:
        """Share of checked claims the tests support (1.0 with none)."""
        return 1.0 if not self.checked else self.supported / self.checked


@register_contract("writing", version=2)
class WritingOutput(StageOutput):
    """The written paper: its files (relative to the run folder), grounding, and the PDF when compiled."""

    title: str
    markdown: str
    latex: str
    grounded_number_rate: float
    verified_citation_rate: float
    claim_grounding_rate: float = 1.0  # after repair: claims the corrected tests support
    grounding: GroundingSummary
    claims_before: ClaimCheck = Field(default_factory=ClaimCheck)  # the model's prose as written
    claims: ClaimCheck = Field(default_factory=ClaimCheck)  # the final paper
    degenerate: dict[str, list[str]] = Field(default_factory=dict)  # part -> why the model's text was replaced
    fields_checked: int = 0  # model-written parts checked for degenerate output
    degenerate_fields: int = 0
    pdf: str | None = None
    pdf_pages: int | None = None
    pdf_error: str | None = None


# -- review ---------------------------------------------------------------------------------------
class ReviewSummary(BaseModel):
    """The review's figures the RunRecord, W&B and ``fars compare`` read."""

    rating: float  # the area chair's rating when there is a meta-review, else the ensemble mean
    raw_rating: float
    meta_rating: float | None = None
    calibrated_rating: float | None = None
    calibration: str | None = None
    calibration_status: str | None = None  # e.g. withheld: the calibration showed no signal on its own validation
    calibration_note: str | None = None
    decision: str
    ensemble: int = 1
    subscores: dict[str, float] = Field(default_factory=dict)  # the form's sub-scores, ensemble means
    injection_flagged: bool = False  # the paper carried text aimed at its reviewer (removed before reviewing)
    reviewer: str | None = None  # the judge ("model:NAME"): compare refuses a verdict between different judges
    validated: bool | None = None  # False: no calibration shows signal for this judge; rating and decision unvalidated
    signal_note: str | None = None  # why, for the label shown beside the rating and decision
    checklist: dict[str, dict[str, int]] = Field(
        default_factory=dict
    )  # per integrity item: reviewers answering yes/no/...

    @model_validator(mode="before")
    @classmethod
    def _from_flat(cls, data: Any) -> Any:
        """Read RunRecords of version 1, whose review dict held the sub-scores beside the ratings."""
        if isinstance(data, dict) and "subscores" not in data:
            known = set(cls.model_fields)
            flat = {k: v for k, v in data.items() if k not in known and isinstance(v, int | float)}
            data = {k: v for k, v in data.items() if k in known} | {"subscores": flat}
            data.setdefault("raw_rating", data.get("rating"))
        return data


@register_contract("review", version=1)
class ReviewOutput(StageOutput):
    """The review of the paper: its summary figures and the whole ``PaperReview``."""

    rating: float
    review: ReviewSummary
    paper_review: PaperReview
