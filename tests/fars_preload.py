"""What a warm `fars` child has imported before it starts (``tests.fars_process``): the CLI, the pipeline,
the stages with the model client (litellm), the commands, and the reviewer."""

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network look-up when litellm is imported

import fars.cli
import fars.commands.configured
import fars.pipeline.queue
import fars.stages.registry  # noqa: F401
