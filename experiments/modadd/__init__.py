"""Modular addition: an MLP learns (a + b) mod p from half of all pairs (a grokking-style task)."""

from experiments.spec import Knob, TemplateSpec

SPEC = TemplateSpec(
    name="modadd",
    description=(
        "An MLP over learned embeddings of a and b predicts (a + b) mod p, trained on a random "
        "fraction of all pairs and tested on the rest; generalisation to unseen pairs is the question."
    ),
    knobs=[
        Knob(name="lr", kind="float", default=1e-2, low=1e-5, high=0.3, log=True, help="AdamW learning rate"),
        Knob(name="weight_decay", kind="float", default=1.0, low=0.0, high=5.0, help="AdamW weight decay"),
        Knob(name="hidden", kind="int", default=128, low=8, high=2048, help="hidden width of the MLP"),
        Knob(name="depth", kind="int", default=2, low=1, high=6, help="number of hidden layers"),
        Knob(name="embed_dim", kind="int", default=32, low=4, high=512, help="embedding size of a and b"),
        Knob(
            name="train_fraction",
            kind="float",
            default=0.6,
            low=0.1,
            high=0.9,
            help="share of pairs trained on",
        ),
        Knob(name="batch_size", kind="int", default=256, low=8, high=4096, help="examples per step"),
        Knob(
            name="activation",
            kind="choice",
            default="relu",
            choices=["relu", "gelu", "tanh"],
            help="nonlinearity",
        ),
        Knob(name="modulus", kind="int", default=59, low=7, high=211, help="the prime p"),
    ],
    metric="val_accuracy",
    higher_is_better=True,
    module="experiments.modadd.train",
    extension=(
        "A Python module that may define any of: build_model(p: int, config: dict) -> torch.nn.Module "
        "(maps int64 pairs [batch, 2] to logits [batch, p]); make_optimizer(model, config) -> "
        "torch.optim.Optimizer; loss(logits [batch, p], targets [batch]) -> scalar tensor. Undefined ones keep "
        "the template's MLP, AdamW and cross-entropy. config holds the knobs."
    ),
)
