"""The pipeline's stages, registered by name: ideation, planning, experiment, writing, review."""

from fars.stages import experiment, ideation, planning, review, writing
from fars.stages.base import StageContext, StopProject, get_stage, register_stage

__all__ = [
    "StageContext",
    "StopProject",
    "experiment",
    "get_stage",
    "ideation",
    "planning",
    "register_stage",
    "review",
    "writing",
]
