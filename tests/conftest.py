"""Shared fixtures: an isolated response cache, the composed config, stage harnesses, and the real `fars` command."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fars.commands.configured import compose_run
from fars.config import FarsConfig
from fars.run.contracts import StageOutput
from fars.run.ledger import Ledger
from fars.stages.base import StageContext
from fars.stages.services import Services, build_services
from tests.fars_process import Finished, run_warm

REPO = Path(__file__).resolve().parent.parent
# Cheap by construction: the scripted model, no tracker, and the `simulated` template (a formula and a sleep of
# steps milliseconds, no torch) wherever training is not what a test is about; those that train name a template
FAST = [
    "llm=scripted",
    "tracker=disabled",
    "experiment.templates=[simulated]",
    "experiment.steps=30",
    "experiment.seeds=2",
    "experiment.max_variants=1",
    "pipeline.status_interval_s=1",
]


FIRST_GROUP = "embedded_run"  # the run on the real embedded model: the longest unit of the suite


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest first, so two workers finish together: the embedded run's group, then the tests marked
    ``slow``, then the rest, each in file order (the same order on every worker, as xdist requires)."""

    def cost(item: pytest.Item) -> int:
        group = item.get_closest_marker("xdist_group")
        if group is not None and (group.args or [group.kwargs.get("name")])[0] == FIRST_GROUP:
            return 0
        return 1 if item.get_closest_marker("slow") else 2

    items.sort(key=cost)


@pytest.fixture(scope="session")
def chromium_endpoint() -> Iterator[str]:
    """One headless Chromium process for the browser tests of this worker: its DevTools endpoint."""
    from tests.chromium import require_browser, start_chromium

    require_browser()
    with start_chromium() as endpoint:
        yield endpoint


@pytest.fixture
def browser(chromium_endpoint: str) -> Iterator[Any]:
    """The worker's Chromium as a Playwright ``Browser``, connected for one test (Playwright's sync API keeps
    an event loop running while it is open, so it is never held across tests that call ``asyncio.run``)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        connected = driver.chromium.connect_over_cdp(chromium_endpoint)
        try:
            yield connected
        finally:
            connected.close()


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own response cache (nothing is served from an earlier run) and the environment of a
    plain shell (one thread per process, no terminal size forced on programs)."""
    path = tmp_path_factory.mktemp("fars-cache")
    monkeypatch.setenv("FARS_CACHE_DIR", str(path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    for name in ("COLUMNS", "LINES"):  # set by pytest-xdist's workers; a program sizes itself to its terminal
        monkeypatch.delenv(name, raising=False)
    return path


def fars_command(args: list[str]) -> list[str]:
    """The argv that runs `fars` with this interpreter."""
    return [sys.executable, "-m", "fars.cli", *args]


def run_fars(args: list[str], cwd: Path, timeout: float = 600, *, cold: bool = False) -> Finished:
    """Run `fars ARGS` in ``cwd`` as its own process and return it finished (output captured). The process
    starts warm (``tests.fars_process``), without the seconds of imports a cold start costs; ``cold`` starts
    the console command itself (a loky worker of the joblib launcher cannot start its figure pool from a
    forkserver's child)."""
    if cold:
        done = subprocess.run(
            fars_command(args), cwd=cwd, capture_output=True, text=True, timeout=timeout, env=dict(os.environ)
        )
        return Finished(done.args, done.returncode, done.stdout, done.stderr)
    return run_warm(args, cwd, timeout)


def start_fars(args: list[str], cwd: Path, *, stdout: Path | None = None, stderr: Path | None = None) -> Any:
    """Start `fars ARGS` in ``cwd`` as its own warm process (``tests.fars_process.WarmProcess``, used as a
    ``subprocess.Popen`` is), its output into the given files; for tests that kill or race runs."""
    from tests.fars_process import start_warm

    return start_warm(args, cwd, stdout=stdout, stderr=stderr)


def finished_stages(ledger: Path) -> int:
    """Stages finished so far in the ledger of a run that is writing it (0 before it has its tables)."""
    if not ledger.exists():
        return 0
    try:
        with sqlite3.connect(ledger) as db:
            return int(db.execute("SELECT COUNT(*) FROM stage_events WHERE event='finish'").fetchone()[0])
    except sqlite3.OperationalError:  # created, tables not made yet, or locked for a moment
        return 0


def compose(*overrides: str) -> FarsConfig:
    """The validated ``fars run`` config composed from conf/ with these overrides (as the CLI composes it)."""
    return compose_run(list(overrides))


@pytest.fixture(name="compose")
def compose_fixture() -> Callable[..., FarsConfig]:
    """``compose(*overrides)`` as a fixture: in-process tests use the very config the CLI would build."""
    return compose


def services_for(cfg: FarsConfig, run_dir: Path, *, runner: bool = False) -> Services:
    """The run's shared services for an in-process stage test (a ledger in ``run_dir``, no job runner
    unless asked)."""
    ledger = Ledger(run_dir / "ledger.sqlite")
    services = build_services(cfg, ledger, run_dir)
    if not runner:
        services.runner = None
    return services


def stage_context(
    services: Services, stage: str, inputs: list[StageOutput] | None = None, *, project_id: str = "p000"
) -> StageContext:
    """The context a stage gets for one project, with the given outputs of earlier stages."""
    services.ledger.add_project(project_id, 0, "training dynamics")
    return StageContext(
        project_id=project_id,
        index=0,
        area="training dynamics",
        run_dir=services.run_dir,
        ledger=services.ledger,
        stage=stage,
        inputs={type(o): o for o in inputs or []},
    )


def run_stage(name: str, cfg: FarsConfig, ctx: StageContext, services: Services) -> StageOutput:
    """Build the registered stage ``name`` for ``cfg`` and run it on ``ctx`` (the client closed after)."""
    from fars.context import call_context
    from fars.stages.registry import get_stage

    async def go() -> StageOutput:
        with call_context(ctx.project_id, name):
            return await get_stage(name).build(cfg, services)(ctx)

    try:
        return asyncio.run(go())
    finally:
        services.close()
