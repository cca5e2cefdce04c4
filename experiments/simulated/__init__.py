"""Simulated training, a benchmark tool: sleeps instead of training and writes a valid ``metrics.json``.

``benchmarks/harness_throughput.py`` uses it to measure the harness itself (queue, client, ledger)
under many projects in flight, without the CPU cost of real training: one step is one simulated
millisecond (``experiment.steps=5000`` sleeps about 5 s, varied per seed), and the reported metric
moves with the knobs and components as a real one would. Never pick it for research.
"""

from pathlib import Path

from experiments.spec import load_spec

SPEC = load_spec(Path(__file__).resolve().parent)
