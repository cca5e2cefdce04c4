"""Simulated training: sleep ``steps`` milliseconds (x a lognormal factor per seed), write ``metrics.json``.

Usage: ``python train.py --out_dir DIR --seed 0 --steps 5000 --lr 0.01 --width 128 --optimizer adam``.
Engine flags the Experiment stage passes (``--engine``, ``--device``, ...) are accepted and ignored.

Standard library and PyYAML only (the spec), so a simulated job costs the CPU of a bare Python start (~90 ms), not the
~0.25 s that importing pydantic would add: the harness benchmark runs hundreds of these on 2 cores.
The file follows ``experiments.metrics.Metrics``, and the Experiment stage validates it on reading.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import time
from pathlib import Path
from typing import Any

from experiments.provenance import config_sha256, file_sha256
from experiments.simulated import SPEC

SPREAD = 0.3  # lognormal sigma of the sleep around its nominal length


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Run options and one flag per knob; unknown flags (engine options) are ignored."""
    p = SPEC.argument_parser(default_steps=1000)  # steps: simulated milliseconds of training
    p.add_argument("--engine", default="plain")
    p.add_argument("--device", default="cpu")
    return p.parse_known_args(argv)[0]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Sleep for the simulated duration, then write and return the metrics."""
    args = parse_args(argv)
    config: dict[str, float | int | str] = {name: getattr(args, name) for name in SPEC.setting_names}
    rng = random.Random(f"{args.seed}-{json.dumps(config, sort_keys=True)}")
    duration = args.steps / 1000 * rng.lognormvariate(-(SPREAD**2) / 2, SPREAD)
    started = time.perf_counter()
    time.sleep(duration)
    wall = time.perf_counter() - started
    # a smooth response: best near lr 3e-3, wider is slightly better; seed noise on top
    accuracy = 0.9 - 0.08 * (math.log10(float(args.lr)) + 2.5) ** 2 + 0.01 * math.log2(int(args.width) / 128)
    accuracy += 0.02 * (args.optimizer == "adam") + 0.01 * (args.regularizer == "dropout")
    accuracy = min(1.0, max(0.0, accuracy + rng.gauss(0, 0.01)))
    metrics = {
        "template": SPEC.name,
        "engine": args.engine,
        "device": args.device,
        "seed": args.seed,
        "steps": args.steps,
        "config": config,
        "metric": SPEC.metric,
        "final": {SPEC.metric: accuracy, "val_loss": 1 - accuracy, "train_loss": 0.9 * (1 - accuracy)},
        "curves": {
            "step": [max(1, args.steps * i // 4) for i in range(1, 5)],
            "train_loss": [1.0, 0.6, 0.4, 0.9 * (1 - accuracy)],
            "val_loss": [1.0, 0.7, 0.5, 1 - accuracy],
            "val_metric": [0.1, 0.4, 0.7, accuracy],
        },
        "wall_s": wall,
        "examples_per_s": 0.0,
        "parameters": int(args.width) * 64,
        "provenance": {
            "code_sha256": file_sha256(Path(__file__)),
            "config_sha256": config_sha256(config),
            "python": platform.python_version(),
        },
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    tmp = args.out_dir / "metrics.json.tmp"
    tmp.write_text(json.dumps(metrics, indent=1), encoding="utf-8")
    tmp.replace(args.out_dir / "metrics.json")
    return metrics


if __name__ == "__main__":
    main()
