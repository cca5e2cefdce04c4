"""The HTTP layer every online backend shares: time-outs, retries with backoff, Retry-After, pacing.

A request that meets a rate limit (429), a server fault (5xx), a time-out or a dropped connection is
retried up to ``literature.max_retries`` times; each wait is the server's Retry-After when it gave
one, else ``backoff_s`` doubled per attempt, never more than ``max_wait_s``. When the retries are
spent, ``BackendUnavailable`` says so and the fallback chain moves on. A 404 is an answer (the record
does not exist), not a fault. ``transport`` and ``sleep`` are injectable so tests replay recorded
responses without network and without waiting.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
from typing import Any

import httpx

from fars.config import LiteratureConfig
from fars.literature.base import BackendUnavailable, LiteratureError, Sleep

log = logging.getLogger(__name__)
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
USER_AGENT = "fars-literature/0.1 (automated research pipeline; +https://github.com/)"


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds a Retry-After header asks for (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class HttpFetcher:
    """GET requests to one service, with the retry policy above; counts what it did for the record."""

    def __init__(
        self,
        service: str,
        cfg: LiteratureConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        self.service = service
        self.cfg = cfg
        self.transport = transport
        self.sleep: Sleep = sleep or asyncio.sleep
        self.requests = 0
        self.retries = 0
        self.waited_s = 0.0
        self._last_request = 0.0
        self._pace = asyncio.Lock() if cfg.min_interval_s > 0 else None

    async def get(
        self, url: str, params: dict[str, Any] | None = None, headers: dict[str, str] | None = None
    ) -> httpx.Response | None:
        """The response to a GET (None for 404); raises BackendUnavailable once retries are spent."""
        attempts = self.cfg.max_retries + 1
        fault = ""
        for attempt in range(attempts):
            await self._respect_interval()
            self.requests += 1
            try:
                async with httpx.AsyncClient(
                    transport=self.transport,
                    timeout=self.cfg.timeout_s,
                    headers={"User-Agent": USER_AGENT, **(headers or {})},
                    follow_redirects=True,
                ) as client:
                    response = await client.get(url, params=params)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                fault = f"{type(exc).__name__}: {exc}"
                wait = None
            else:
                if response.status_code == 404:
                    return None
                if response.status_code < 400:
                    return response
                if response.status_code not in RETRY_STATUS:
                    raise LiteratureError(
                        f"{self.service} rejected {response.request.url} with HTTP {response.status_code}: "
                        f"{response.text[:200]!r}; check literature.* settings (API key, query)"
                    )
                fault = f"HTTP {response.status_code}"
                wait = retry_after_seconds(response.headers.get("retry-after"))
            if attempt + 1 == attempts:
                break
            delay = min(self.cfg.max_wait_s, wait if wait is not None else self.cfg.backoff_s * 2**attempt)
            log.warning("%s: %s; retry %d/%d in %.1fs", self.service, fault, attempt + 1, attempts - 1, delay)
            self.retries += 1
            self.waited_s += delay
            await self.sleep(delay)
        raise BackendUnavailable(
            f"{self.service} did not answer after {attempts} attempt(s) (last: {fault}); "
            "falling back if a fallback is configured (literature.fallback / literature.chain), "
            "else raise literature.max_retries or set an API key"
        )

    async def _respect_interval(self) -> None:
        if self._pace is None:
            return
        async with self._pace:
            gap = self.cfg.min_interval_s - (time.monotonic() - self._last_request)
            if gap > 0 and self._last_request:
                await self.sleep(gap)
            self._last_request = time.monotonic()
