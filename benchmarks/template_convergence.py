"""Does a template's scale train its baseline to convergence? The question Planning's pilot asks, per scale.

For each template and scale named, the baseline (every knob at the scale's value, every component at the
baseline's) trains over ``--seeds`` seeds, one CPU thread each, ``--parallel`` at a time, exactly as the
template's entry point runs in a study (``python train.py --out_dir ... --seed ... --steps ...``). Its mean
validation curve is judged by the pilot's own rule (``fars.stages.planning.pilot_trend``: converged, still
improving or unstable against the seed-to-seed sd, the share of improvement in the last fifth of training),
and a row is printed per template and scale: steps, seconds per run, final mean and sd, the trend and the
last fifth's change. Use it to size a scale that answers questions at convergence (a template's ``research``
scale) and to check one still does after a change to the template.

    python benchmarks/template_convergence.py                                  # every CPU template, research
    python benchmarks/template_convergence.py --templates chargpt --scales ci research --seeds 3

Exit 1 where a ``research`` scale's baseline did not converge (the scale promises it does).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from experiments.metrics import Metrics, read_metrics
from experiments.spec import load_template
from fars.commands.template_runs import run_argv, smoke_flags
from fars.stages.planning import pilot_trend

CPU_TEMPLATES = ("chargpt", "abstracts_lm", "digits", "modadd", "cartpole")


def train_once(template: str, scale: str, seed: int, work: Path, steps: int | None) -> tuple[Metrics, float]:
    """One baseline run at ``scale`` (``steps`` instead of its own where given) on ``seed``: its metrics and
    wall seconds."""
    spec = load_template(template)
    own, flags = smoke_flags(spec, {}, scale)
    steps = steps or own
    out = work / f"{template}-{scale}-{steps}-{seed}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, str(spec.folder / spec.entry), *run_argv(out, seed, steps, flags)],
        check=True,
        env=env,
        capture_output=True,
    )
    return read_metrics(out / "metrics.json"), time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--templates", nargs="+", default=list(CPU_TEMPLATES))
    parser.add_argument("--scales", nargs="+", default=["research"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, nargs="+", default=[0], help="steps to try instead of the scale's")
    parser.add_argument("--parallel", type=int, default=2, help="runs at a time (one thread each)")
    args = parser.parse_args(argv)
    failed = []
    print(f"{'template':<13} {'scale':<9} {'steps':>6} {'s/run':>7} {'mean':>9} {'sd':>8}  trend (last fifth)")
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.parallel) as pool:
        for template in args.templates:
            spec = load_template(template)
            for scale, steps in [(scale, steps) for scale in args.scales for steps in args.steps]:
                if scale not in spec.scales:
                    print(f"{template:<13} {scale:<9} (no such scale)")
                    continue
                jobs = [pool.submit(train_once, template, scale, s, Path(tmp), steps) for s in range(args.seeds)]
                runs = [j.result() for j in jobs]
                metrics = [m for m, _ in runs]
                finals = [float(m.final[m.metric]) for m in metrics]
                sd = statistics.stdev(finals) if len(finals) > 1 else 0.0
                trend = pilot_trend(metrics, spec.higher_is_better, sd)
                words = "no curve" if trend is None else f"{trend.status} ({trend.late_change:+.4g})"
                print(
                    f"{template:<13} {scale:<9} {steps or spec.scale(scale).steps:>6} "
                    f"{statistics.fmean(s for _, s in runs):>7.1f} {statistics.fmean(finals):>9.4g} {sd:>8.3g}  {words}",
                    flush=True,
                )
                if scale == "research" and not steps and (trend is None or trend.status != "converged"):
                    failed.append(f"{template}/{scale}")
    if failed:
        print("not converged at the research scale: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
