"""FARS's in-process providers (``local/...`` and ``scripted/...``) as litellm custom providers.

litellm keeps custom providers in one process-global list. Rewriting that list per client would let
a second client swap the first one's provider (its scripted outputs, its loaded model), so each name
is registered once, as a router: a call goes to the handler of the client that makes it, which the
client names for the duration of its call (a context variable, so concurrent clients never mix).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from litellm import CustomLLM

FREE_PROVIDERS = ("local", "scripted")
_active: ContextVar[dict[str, CustomLLM] | None] = ContextVar("fars_provider_handlers", default=None)
_install_lock = threading.Lock()


class ProviderRouter(CustomLLM):
    """The one litellm handler of a provider name; forwards each call to the calling client's handler."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def _handler(self) -> CustomLLM:
        handlers = _active.get()
        if not handlers or self.name not in handlers:
            raise RuntimeError(
                f"model '{self.name}/...' was called outside a FARS LLMClient; call it through fars.llm.client.LLMClient"
            )
        return handlers[self.name]

    def completion(self, *args: Any, **kwargs: Any) -> Any:
        """Blocking call of the calling client's handler."""
        return self._handler().completion(*args, **kwargs)

    async def acompletion(self, *args: Any, **kwargs: Any) -> Any:
        """Async call of the calling client's handler."""
        return await self._handler().acompletion(*args, **kwargs)


def install_routers() -> None:
    """Register the routers with litellm once per process (leaving other custom providers alone)."""
    import litellm

    with _install_lock:
        current = list(litellm.custom_provider_map or [])
        present = {p.get("provider") for p in current if isinstance(p.get("custom_handler"), ProviderRouter)}
        missing = [name for name in FREE_PROVIDERS if name not in present]
        if missing:
            kept = [p for p in current if p.get("provider") not in missing]
            routers = [{"provider": n, "custom_handler": ProviderRouter(n)} for n in missing]
            litellm.custom_provider_map = [*kept, *routers]  # type: ignore[list-item]  # litellm types entries as a TypedDict of its own


@contextlib.contextmanager
def calling_with(handlers: dict[str, CustomLLM]) -> Iterator[None]:
    """Route the in-process provider calls made inside the block to these handlers."""
    token = _active.set(handlers)
    try:
        yield
    finally:
        _active.reset(token)
