"""A start-up check of ``llm.api_base``: is a server there at all, before anything runs?

A wrong port or a server not started yet would otherwise surface minutes into a run, as retried
faults and then failed projects. The check asks the base for its model list (``GET {api_base}/models``,
which OpenAI-compatible servers answer) with a short time-out: any HTTP answer means a server is
listening; a refused connection, an unknown host or silence is a problem named with the setting.
"""

from __future__ import annotations

import functools

from fars.config import LLMConfig

CHECK_TIMEOUT_S = 5.0


def api_base_problems(cfg: LLMConfig) -> list[str]:
    """What is wrong with ``llm.api_base`` (empty when it is unset or a server answers there)."""
    if not cfg.api_base:
        return []
    problem = _probe(cfg.api_base.rstrip("/"))
    return [] if problem is None else [f"llm.api_base={cfg.api_base}: {problem}"]


@functools.lru_cache(maxsize=32)
def _probe(base: str) -> str | None:
    """Why nothing usable answers at ``base`` (None: a server answered). Remembered, so a sweep asks once."""
    import httpx  # here, not at the top: a config refusal without llm.api_base must not pay for it

    if not base.startswith(("http://", "https://")):
        return "not an http:// or https:// address; give the server's base URL, e.g. http://127.0.0.1:8000/v1"
    try:
        httpx.get(f"{base}/models", timeout=CHECK_TIMEOUT_S, follow_redirects=True)
    except httpx.ConnectError as exc:
        reason = str(exc) or type(exc).__name__
        if "refused" in reason.lower():
            return "connection refused (no server listens there); start the server or fix llm.api_base"
        return f"cannot connect ({reason[:160]}); check the host name and port of llm.api_base"
    except httpx.TimeoutException:
        return f"no answer within {CHECK_TIMEOUT_S:g}s; is the server up, and is llm.api_base its address?"
    except httpx.HTTPError as exc:
        return f"the request failed ({type(exc).__name__}: {str(exc)[:160]})"
    return None
