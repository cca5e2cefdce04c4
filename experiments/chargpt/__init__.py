"""A character-level GPT on a bundled text; its size scales by knobs from tiny (CI) to about 100M (GPU)."""

from experiments.spec import Knob, TemplateSpec

SPEC = TemplateSpec(
    name="chargpt",
    description=(
        "A decoder-only transformer (GPT) predicts the next character of a small bundled English-like "
        "corpus; validation bits per character on held-out text measure how well it models language."
    ),
    knobs=[
        Knob(name="lr", kind="float", default=3e-3, low=1e-5, high=3e-2, log=True, help="peak AdamW learning rate"),
        Knob(name="weight_decay", kind="float", default=0.1, low=0.0, high=2.0, help="AdamW weight decay"),
        Knob(name="dropout", kind="float", default=0.0, low=0.0, high=0.5, help="dropout after attention and MLP"),
        Knob(name="n_layer", kind="int", default=2, low=1, high=24, help="transformer blocks"),
        Knob(name="n_head", kind="int", default=2, low=1, high=16, help="attention heads (must divide n_embd)"),
        Knob(name="n_embd", kind="int", default=64, low=16, high=1536, help="model width"),
        Knob(name="block_size", kind="int", default=64, low=8, high=1024, help="context length in characters"),
        Knob(name="batch_size", kind="int", default=32, low=1, high=1024, help="sequences per optimizer step"),
        Knob(name="warmup_frac", kind="float", default=0.1, low=0.0, high=0.5, help="share of steps warming up the lr"),
        Knob(name="activation", kind="choice", default="gelu", choices=["gelu", "relu"], help="MLP nonlinearity"),
    ],
    metric="val_bpc",
    higher_is_better=False,
    module="experiments.chargpt.train",
    extension=(
        "A Python module that may define any of: build_model(vocab_size: int, config: dict) -> torch.nn.Module "
        "(maps int64 tokens [batch, time] to logits [batch, time, vocab]); make_optimizer(model, config) -> "
        "torch.optim.Optimizer; loss(logits [N, vocab], targets [N]) -> scalar tensor. Undefined ones keep the "
        "template's GPT, AdamW and cross-entropy. config holds the knobs."
    ),
)
