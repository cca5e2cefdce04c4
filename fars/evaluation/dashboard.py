"""A W&B workspace that shows scores, throughput, tokens and cost across a sweep's runs.

Built with the ``wandb-workspaces`` library (optional extra ``fars[dashboard]``). Constructing the
workspace needs no network; applying it does: once the runs are synced (``wandb sync
multirun/DATE/TIME/*/wandb/offline-run-*``) and you are logged in, run

    python -m fars.evaluation.dashboard --entity ME --project fars [--group SWEEP_FOLDER_NAME]

The panels plot the summary metrics ``fars.pipeline.tracking.summary_metrics`` logs, runs grouped by their
W&B group (one group per sweep).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from fars.config import DEFAULT_STAGES

SCORE_METRICS = ["score/mean", "score/min", "score/max"]
THROUGHPUT_METRICS = ["papers_per_hour", "papers", "wall_s"]
TOKEN_METRICS = ["tokens_per_paper", "cost_usd_per_paper", "tokens/total", "cost_usd/total"]
FUNNEL_METRICS = [f"funnel/{k}" for k in ("hypotheses", "screened", "planned", "experimented", "written", "reviewed")]
STAGE_TOKEN_METRICS = [f"tokens/{stage}" for stage in DEFAULT_STAGES]


class DashboardError(RuntimeError):
    """The workspace library is missing or W&B refused the workspace."""


def _libraries() -> tuple[Any, Any]:
    try:
        import wandb_workspaces.reports.v2 as wr
        import wandb_workspaces.workspaces as ws
    except ImportError as exc:
        raise DashboardError(
            f"the dashboard needs the wandb-workspaces package ({exc}); install it: pip install 'fars[dashboard]'"
        ) from None
    return ws, wr


def sweep_workspace(entity: str, project: str, group: str | None = None, name: str | None = None) -> Any:
    """The workspace object (not saved): sections for scores, throughput, tokens and cost, funnel, papers."""
    ws, wr = _libraries()
    sections = [
        ws.Section(
            name="Scores",
            is_open=True,
            panels=[
                wr.BarPlot(title="Mean review score per run", metrics=["score/mean"], orientation="h"),
                wr.BarPlot(title="Score range per run", metrics=SCORE_METRICS, orientation="h"),
                wr.ScatterPlot(title="Score against cost per paper", x="cost_usd_per_paper", y="score/mean"),
                wr.LinePlot(title="Score of each paper as it lands", x="papers", y=["score/last"]),
            ],
        ),
        ws.Section(
            name="Throughput",
            is_open=True,
            panels=[
                wr.BarPlot(title="Papers per hour", metrics=["papers_per_hour"], orientation="h"),
                wr.LinePlot(title="Papers per hour over the run", x="_runtime", y=["papers_per_hour"]),
                wr.BarPlot(title="Papers and wall time", metrics=["papers", "wall_s"], orientation="h"),
            ],
        ),
        ws.Section(
            name="Tokens and cost",
            is_open=True,
            panels=[
                wr.BarPlot(title="Tokens per paper", metrics=["tokens_per_paper"], orientation="h"),
                wr.BarPlot(title="Dollars per paper", metrics=["cost_usd_per_paper"], orientation="h"),
                wr.BarPlot(title="Tokens by stage", metrics=STAGE_TOKEN_METRICS, orientation="h"),
                wr.LinePlot(title="Tokens over the run", x="_runtime", y=["tokens/total"]),
            ],
        ),
        ws.Section(
            name="Funnel",
            is_open=False,
            panels=[wr.BarPlot(title="Funnel", metrics=FUNNEL_METRICS, orientation="h")],
        ),
        ws.Section(
            name="Sweep",
            is_open=True,
            panels=[
                wr.ParallelCoordinatesPlot(
                    title="Config against outcome",
                    columns=[
                        wr.ParallelCoordinatesPlotColumn(metric=wr.Config("llm.model")),
                        wr.ParallelCoordinatesPlotColumn(metric=wr.Config("pipeline.projects")),
                        wr.ParallelCoordinatesPlotColumn(metric=wr.SummaryMetric("tokens_per_paper")),
                        wr.ParallelCoordinatesPlotColumn(metric=wr.SummaryMetric("papers_per_hour")),
                        wr.ParallelCoordinatesPlotColumn(metric=wr.SummaryMetric("score/mean")),
                    ],
                ),
                wr.RunComparer(diff_only=True),
                wr.WeavePanelSummaryTable(table_name="papers_table"),
            ],
        ),
    ]
    runset = ws.RunsetSettings(
        filters=[ws.Metric("Group") == group] if group else [],
        groupby=[ws.Metric("Group")],
    )
    return ws.Workspace(
        entity=entity,
        project=project,
        name=name or (f"FARS sweep {group}" if group else "FARS sweeps"),
        sections=sections,
        runset_settings=runset,
    )


def main(argv: list[str] | None = None) -> int:
    """Build the workspace; save it to W&B unless ``--dry-run`` (which prints its spec instead)."""
    p = argparse.ArgumentParser(prog="python -m fars.evaluation.dashboard", description=__doc__.split("\n\n")[0])
    p.add_argument("--entity", required=True, help="your W&B user or team")
    p.add_argument("--project", default="fars", help="the W&B project the runs were synced to")
    p.add_argument("--group", help="show one sweep only: its W&B group (the sweep folder's name)")
    p.add_argument("--name", help="the workspace's name")
    p.add_argument("--dry-run", action="store_true", help="print the workspace spec as JSON, save nothing")
    ns = p.parse_args(argv)
    try:
        workspace = sweep_workspace(ns.entity, ns.project, ns.group, ns.name)
        if ns.dry_run:
            print(workspace._to_model().model_dump_json(indent=1))
            return 0
        workspace.save()
    except DashboardError as exc:
        print(f"dashboard: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the W&B API: not logged in, no network, no such project
        print(
            f"dashboard: W&B did not take the workspace ({type(exc).__name__}: {exc}); run `wandb login` and "
            "check --entity/--project, or use --dry-run to inspect it offline",
            file=sys.stderr,
        )
        return 2
    print(f"workspace saved: {workspace.url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
