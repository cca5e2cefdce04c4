"""The one door to the models: a litellm client with ledger, cache, budget, retries and schemas."""

from __future__ import annotations

import os
from typing import Any

# before anything under fars.llm imports litellm: no network look-up of its price table at import
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def stamp_free(model_response: Any) -> None:
    """Tell litellm the reply's cost up front (the client prices calls itself).

    Without a stamped cost litellm's logging prices every reply of an unlisted model by matching it
    against hundreds of model-name patterns: about 1 ms of CPU a call, for a number nobody reads.
    """
    model_response._hidden_params["response_cost"] = 0.0
