"""The composition root: the run's shared parts, built once and handed to every stage factory.

One model client (one budget, one cache, one ledger of calls), ONE literature backend (so a
service's pacing holds across stages and the fallback chain remembers what it found when writing
verifies citations), one job runner (one GPU/CPU pool or SLURM queue for every project), the ledger
and the run folder. Stages never build these themselves; ``fars review`` and ``fars calibrate``
build the reviewer from the same parts with ``fars.stages.reviewing.build_reviewer``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from fars.config import FarsConfig, LLMConfig
from fars.executor.gateway import SubjectGateway
from fars.executor.runner import Runner
from fars.literature import LiteratureBackend, make_backend
from fars.llm.budget import Budget
from fars.llm.client import LLMClient
from fars.run.ledger import Ledger
from fars.stages.background import Background


@dataclass
class Services:
    """What every stage of a run shares."""

    llm: LLMClient
    literature: LiteratureBackend
    runner: Runner | None
    ledger: Ledger
    run_dir: Path
    budget: Budget | None = None
    subject_model: str | None = None  # inference templates' subject; None: the run's own model
    background: Background = field(default_factory=Background)  # work a stage left running (figures)
    _gateway: SubjectGateway | None = field(default=None, repr=False)
    _subject_client: LLMClient | None = field(default=None, repr=False)

    async def subject_gateway(self) -> SubjectGateway:
        """The run's gateway to the subject model of inference templates, started on first use."""
        if self._gateway is None:
            client = self.llm
            if self.subject_model and self.subject_model != self.llm.cfg.model:
                config: LLMConfig = replace(self.llm.cfg, model=self.subject_model, fallbacks=[])
                client = self._subject_client = LLMClient(config, self.ledger, self.budget)
            self._gateway = SubjectGateway(client)
            self._gateway.start()
        return self._gateway

    def require_runner(self) -> Runner:
        """The job runner; a clear error where a run was composed without one."""
        if self.runner is None:
            raise RuntimeError("this run has no job runner (services built with runner=None)")
        return self.runner

    def close(self) -> None:
        """Stop the subject gateway and release the model clients (cache file, loaded local model)."""
        if self._gateway is not None:
            self._gateway.close()
        if self._subject_client is not None:
            self._subject_client.close()
        self.llm.close()


def build_services(cfg: FarsConfig, ledger: Ledger, run_dir: Path, budget: Budget | None = None) -> Services:
    """Build the run's shared parts from its config (the one place they are constructed)."""
    llm = LLMClient(cfg.llm, ledger, budget)
    try:
        literature = make_backend(cfg.literature)
        runner = Runner(cfg.experiment, cfg.executor)
    except Exception:
        llm.close()
        raise
    return Services(
        llm=llm,
        literature=literature,
        runner=runner,
        ledger=ledger,
        run_dir=run_dir,
        budget=budget,
        subject_model=cfg.experiment.subject_model,
    )
