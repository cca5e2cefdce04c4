"""Simulated training, a benchmark tool: sleeps instead of training and writes a valid ``metrics.json``.

``benchmarks/harness_throughput.py`` uses it to measure the harness itself (queue, client, ledger)
under many projects in flight, without the CPU cost of real training: one step is one simulated
millisecond (``experiment.steps=5000`` sleeps about 5 s, varied per seed), and the reported metric
moves with the knobs as a real one would. Never pick it for research.
"""

from experiments.spec import Knob, TemplateSpec

SPEC = TemplateSpec(
    name="simulated",
    description=(
        "A simulated training run (benchmark tool): it sleeps instead of training and reports a "
        "validation accuracy that depends smoothly on the learning rate and width."
    ),
    knobs=[
        Knob(name="lr", kind="float", default=1e-2, low=1e-5, high=0.3, log=True, help="learning rate"),
        Knob(name="width", kind="int", default=128, low=8, high=2048, help="hidden width"),
    ],
    metric="val_accuracy",
    higher_is_better=True,
    module="experiments.simulated.train",
)
