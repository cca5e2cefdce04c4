"""Run one template's entry point many times in one process: the option audit of ``fars template check``.

Usage: ``python -m experiments.audit ENTRY RUNS.json``, where RUNS.json is a list of argument lists, each
passed to ENTRY as its command line in turn (``runpy``, as ``python ENTRY ARGS`` would run it). One process
pays the interpreter's and torch's start once, not once per run: a smoke run trains for a fraction of a
second and starts for two. A run that fails is named on stderr and the rest go on; the exit status is the
number of failed runs (at most 100). Standard library only; it runs inside the sandbox beside the template.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
import traceback


def main(argv: list[str]) -> int:
    """Run ENTRY once per argument list of RUNS.json; the number of runs that failed."""
    if len(argv) != 2:
        print("usage: python -m experiments.audit ENTRY RUNS.json", file=sys.stderr)
        return 100
    entry, runs_file = argv
    with open(runs_file, encoding="utf-8") as f:
        runs = json.load(f)
    sys.path.insert(0, os.path.dirname(os.path.abspath(entry)))  # as `python ENTRY` would find its neighbours
    failed = 0
    for i, args in enumerate(runs):
        sys.argv = [entry, *[str(a) for a in args]]
        try:
            runpy.run_path(entry, run_name="__main__")
        except SystemExit as exc:
            if exc.code not in (None, 0):
                failed += 1
                print(f"audit run {i} exited {exc.code}: {' '.join(sys.argv[1:])}", file=sys.stderr)
        except Exception:  # a failing option must not hide the others' results
            failed += 1
            print(f"audit run {i} failed: {' '.join(sys.argv[1:])}\n{traceback.format_exc(limit=-3)}", file=sys.stderr)
    return min(failed, 100)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
