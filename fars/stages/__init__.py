"""The pipeline's stages: ideation, planning, experiment, writing, review, and the registry that finds them.

``fars.stages.base`` holds what a stage is (its spec, context and outcomes); ``fars.stages.registry``
knows every registered stage, FARS's own and those of installed packages (entry point group
``fars.stages``), and orders a pipeline by what each stage consumes.
"""

from fars.stages.base import StageContext, StageSpec, StopProject, register_stage
from fars.stages.registry import get_stage, registered_stages, resolve_stages

__all__ = [
    "StageContext",
    "StageSpec",
    "StopProject",
    "get_stage",
    "register_stage",
    "registered_stages",
    "resolve_stages",
]
