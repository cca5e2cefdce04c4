"""A stand-in training job for the SLURM tests: sleeps ``SECONDS`` (argv[1]), then writes ``done`` to argv[2].

``python -m tests.executor.sleeper 40 /tmp/out``; a job that must outlive a limit or be cancelled mid-run.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

if __name__ == "__main__":
    time.sleep(float(sys.argv[1]))
    if len(sys.argv) > 2:
        Path(sys.argv[2]).write_text("done", encoding="utf-8")
