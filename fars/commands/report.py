"""``fars report RUN [--out FILE]``: write one self-contained HTML page of a run.

RUN is a run folder or its ``run_record.json``. The page (default ``RUN/report.html``) needs no
network: inline SVG charts, inline CSS, links to each paper and review relative to the page.
Exit status: 0 written, 2 bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fars.evaluation.compare import CompareError, load_runs
from fars.evaluation.report import write_report


def main(args: list[str]) -> int:
    """Write the report and print its path."""
    p = argparse.ArgumentParser(prog="fars report", description="Write a self-contained HTML report of a run.")
    p.add_argument("run", help="a run folder (outputs/DATE/TIME) or its run_record.json")
    p.add_argument("--out", type=Path, help="where to write the page (default: RUN/report.html)")
    ns = p.parse_args(args)
    try:
        runs = load_runs(ns.run)
    except CompareError as exc:
        print(f"fars report: {exc}", file=sys.stderr)
        return 2
    if len(runs) != 1:
        print(
            f"fars report: {ns.run} holds {len(runs)} runs (a sweep folder?); give one run folder, "
            f"e.g. {ns.run}/0, or compare them with `fars compare {ns.run}`",
            file=sys.stderr,
        )
        return 2
    out = write_report(runs[0].path, runs[0].record, ns.out)
    print(out)
    return 0
