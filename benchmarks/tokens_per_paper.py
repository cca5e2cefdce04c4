"""Tokens per paper by stage, from a run's RunRecord, beside the reference system's 114M a paper.

The reference system spent 11.4 billion tokens on 100 papers (about 114M a paper, $1,000 a paper).
This reads a finished run folder (or runs `fars run` first with ``--run`` and any overrides) and
prints input, output and total tokens per paper for each stage, the dollars per paper, and the
ratio to the reference. Usage:

    python benchmarks/tokens_per_paper.py outputs/2026-11-27/01-00-00-000000
    python benchmarks/tokens_per_paper.py --run pipeline.papers=2          # the embedded model, fresh run
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
REFERENCE_TOKENS_PER_PAPER = 114_000_000
REFERENCE_DOLLARS_PER_PAPER = 1_000.0


def main() -> None:
    """Print the per-stage token table of one run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", type=Path, help="a finished fars run folder")
    parser.add_argument("--run", nargs="*", metavar="OVERRIDE", help="run `fars run OVERRIDES` first, in a temp folder")
    args = parser.parse_args()

    from fars.run.summary import read_run_record

    run_dir = args.run_dir
    if args.run is not None:
        run_dir = Path(tempfile.mkdtemp()) / "run"
        cmd = [sys.executable, "-m", "fars.cli", "run", *args.run, "tracker=disabled", f"hydra.run.dir={run_dir}"]
        subprocess.run(cmd, check=False)
    if run_dir is None:
        parser.error("give a run folder or --run")
    record = read_run_record(run_dir)
    papers = len(record.scores)
    if papers == 0:
        print(f"{run_dir}: no paper was written; nothing to divide by")
        raise SystemExit(1)
    models = ", ".join(record.totals.by_model) or "none"
    print(f"run: {run_dir}  papers: {papers}  model(s): {models}")
    print(f"{'stage':<12}{'calls/paper':>12}{'input/paper':>13}{'output/paper':>14}{'total/paper':>13}")
    for stage, usage in record.totals.by_stage.items():
        print(
            f"{stage or '-':<12}{usage.calls / papers:>12.1f}{usage.input_tokens / papers:>13,.0f}"
            f"{usage.output_tokens / papers:>14,.0f}{usage.total_tokens / papers:>13,.0f}"
        )
    overall = record.totals.overall
    per_paper = overall.total_tokens / papers
    print(f"{'all':<12}{overall.calls / papers:>12.1f}{overall.input_tokens / papers:>13,.0f}"
          f"{overall.output_tokens / papers:>14,.0f}{per_paper:>13,.0f}")  # fmt: skip
    print(
        f"reference system: {REFERENCE_TOKENS_PER_PAPER:,} tokens and ${REFERENCE_DOLLARS_PER_PAPER:,.0f} a paper; "
        f"this run: {per_paper:,.0f} tokens ({per_paper / REFERENCE_TOKENS_PER_PAPER:.2e} of it) and "
        f"${overall.cost_usd / papers:.4f} a paper"
    )


if __name__ == "__main__":
    main()
