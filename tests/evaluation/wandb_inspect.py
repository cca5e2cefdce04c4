"""Read an offline W&B run back from its folder with `wandb leet inspect` (no network)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def inspect_offline_run(run_folder: Path) -> dict[str, Any]:
    """The run's summary view plus its run record (group, job type, name) as one dict."""
    wandb_cli = Path(sys.executable).parent / "wandb"
    runs = sorted(run_folder.glob("wandb/offline-run-*"))
    assert len(runs) == 1, f"expected one offline W&B run under {run_folder}, found {runs}"
    summary = subprocess.run(
        [str(wandb_cli), "leet", "inspect", "--summary", "--json", str(runs[0])],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    records = subprocess.run(
        [str(wandb_cli), "leet", "inspect", "--json", str(runs[0])],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    run = next(json.loads(line)["run"] for line in records.stdout.splitlines() if '"type":"run"' in line)
    return {**json.loads(summary.stdout), "run": run}
