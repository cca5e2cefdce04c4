"""The capability check behind ``pipeline.research=auto``: can this model drive open research?

Open research asks the model for its own ideas, code and analysis; a model that cannot read a small results
table would fill the paper with confident nonsense that the harness then has to catch. So the run asks the
model once (per model, per run; a resumed run replays the answer from its ledger) to read three seeds of two
conditions: the mean of each, which is better, by how much, and a mechanism in one sentence. The answer is
checked by arithmetic, not by another model: every number within a rounding tolerance, the right condition,
and a mechanism that is a sentence of its own about the setting (not an echo of the schema). The embedded
135M model fails it; a frontier model passes. The check and its verdict are stored with each project's ideas.
"""

from __future__ import annotations

import statistics

from pydantic import BaseModel, Field

from fars.llm.client import LLMClient
from fars.paper.degenerate import degenerate_reasons
from fars.run.contracts import CapabilityCheck

# three seeds of two conditions; lower validation loss is better, and B adds weight decay
TABLE = {"A": [0.412, 0.398, 0.405], "B": [0.371, 0.380, 0.366]}
TOLERANCE = 0.002  # the model may round to three decimals


class CapabilityReply(BaseModel):
    """A reading of a small results table."""

    mean_a: float = Field(description="mean validation loss of condition A over its seeds")
    mean_b: float = Field(description="mean validation loss of condition B over its seeds")
    better: str = Field(min_length=1, max_length=8, description="A or B: the condition with the better result")
    difference: float = Field(description="mean of B minus mean of A")
    mechanism: str = Field(min_length=3, max_length=300, description="one sentence on why B might differ from A")


SCHEMA_TEXTS = [f.description or "" for f in CapabilityReply.model_fields.values()]


def capability_prompt() -> list[dict[str, str]]:
    """The check's request: the table, what lower means, and the five answers wanted."""
    rows = "\n".join(f"{name}: " + ", ".join(f"{v:.3f}" for v in values) for name, values in TABLE.items())
    return [
        {"role": "system", "content": "You are a machine learning researcher reading experiment results."},
        {
            "role": "user",
            "content": (
                "Validation loss (lower is better) of two conditions of a small MLP, three seeds each. Condition B is "
                f"condition A with weight decay 0.1 added.\n{rows}\nGive the mean of each condition (three decimals), "
                "which condition is better, the mean of B minus the mean of A, and one sentence on why weight decay "
                "might have this effect."
            ),
        },
    ]


def judge_reply(reply: CapabilityReply) -> tuple[bool, str]:
    """Whether the reply reads the table right, and what it got wrong (or right)."""
    mean_a, mean_b = (statistics.fmean(TABLE[k]) for k in ("A", "B"))
    wrong = []
    if abs(reply.mean_a - mean_a) > TOLERANCE or abs(reply.mean_b - mean_b) > TOLERANCE:
        wrong.append(f"means {reply.mean_a:.4g} and {reply.mean_b:.4g}, not {mean_a:.4g} and {mean_b:.4g}")
    if reply.better.strip().upper().rstrip(".") not in ("B", "CONDITION B"):
        wrong.append(f"named {reply.better!r} the better condition, not B (lower loss)")
    if abs(reply.difference - (mean_b - mean_a)) > 2 * TOLERANCE:
        wrong.append(f"difference {reply.difference:.4g}, not {mean_b - mean_a:.4g}")
    echoes = degenerate_reasons(
        reply.mechanism,
        echoes=SCHEMA_TEXTS,
        field_names=CapabilityReply.model_fields,
        expected=["weight decay", "regularization regularisation overfitting generalization penalty weights norm"],
    )
    if echoes:
        wrong.append("the mechanism is not a sentence about the setting: " + "; ".join(echoes[:2]))
    if wrong:
        return False, "; ".join(wrong)
    return True, "read the table right: both means, the better condition, the difference and a mechanism"


async def check_capability(llm: LLMClient) -> CapabilityCheck:
    """Ask the model to read the table once, and judge its answer (a failed call is a failed check, said)."""
    model = llm.cfg.model
    try:
        reply = await llm.structured(capability_prompt(), CapabilityReply, max_tokens=200)
    except (ValueError, RuntimeError) as exc:  # no valid reply within the repairs: a model for the menu
        return CapabilityCheck(model=model, passed=False, reason=f"no valid reply: {type(exc).__name__}: {exc}"[:300])
    passed, reason = judge_reply(reply)
    return CapabilityCheck(model=model, passed=passed, reason=reason, reply=reply.model_dump())
