"""Learning-rate schedules of the templates, one function per schedule, each named for what it does.

A template's ``schedule`` component picks one; its ``template.yaml`` says in words exactly what the
function does (the floor, the warm-up), since that text is what plans and papers show. Standard
library only: training processes import it inside the sandbox, with the rest of ``experiments``.
"""

from __future__ import annotations

import math


def cosine_to(floor_ratio: float, step: int, steps: int, peak: float) -> float:
    """Cosine decay over ``steps`` from ``peak`` at step 0 to ``floor_ratio * peak`` at the last step (and after)."""
    progress = min(1.0, step / max(1, steps))
    return peak * (floor_ratio + (1 - floor_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def warmup_then_cosine_to(floor_ratio: float, step: int, steps: int, peak: float, warmup_steps: int) -> float:
    """Linear warm-up over the first ``warmup_steps`` (``peak / warmup_steps`` at step 0, ``peak`` at the end of
    it), then ``cosine_to(floor_ratio)`` over the remaining steps."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    return cosine_to(floor_ratio, step - warmup_steps, steps - warmup_steps, peak)


def tenfold_drops(step: int, steps: int, peak: float) -> float:
    """``peak`` for the first half of the ``steps``, a tenth of it until three quarters, a hundredth after."""
    progress = step / max(1, steps)
    return peak * (1.0 if progress < 0.5 else 0.1 if progress < 0.75 else 0.01)
