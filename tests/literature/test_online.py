"""Online backends against recorded responses (no network): parsing, look-ups, retries, 429 storms."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from fars.config import LiteratureConfig
from fars.literature import BackendUnavailable, LiteratureError, make_backend, make_single_backend
from fars.literature.chain import FallbackChain
from fars.literature.http import retry_after_seconds

RECORDED = Path(__file__).parent / "recorded"
Handler = Callable[[httpx.Request], httpx.Response]


def recorded(name: str, status: int = 200, headers: dict[str, str] | None = None) -> httpx.Response:
    """A response with a recorded body."""
    kind = "application/atom+xml" if name.endswith(".xml") else "application/json"
    return httpx.Response(
        status, content=(RECORDED / name).read_bytes(), headers={"content-type": kind, **(headers or {})}
    )


class Replay:
    """A mock service: routes requests by host and path to recorded responses and counts them."""

    def __init__(self, route: Handler) -> None:
        self.route = route
        self.seen: list[httpx.Request] = []
        self.hosts: Counter[str] = Counter()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        self.hosts[request.url.host] += 1
        return self.route(request)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


class Sleeps:
    """Records the waits instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def healthy(request: httpx.Request) -> httpx.Response:
    """Every service answering with its recorded responses."""
    host, path = request.url.host, request.url.path
    if host == "api.openalex.org":
        if path == "/works":
            return recorded("openalex_search.json")
        return recorded("openalex_work.json") if path.endswith("W4221143046") else httpx.Response(404)
    if host == "export.arxiv.org":
        if "id_list" in request.url.params:
            good = request.url.params["id_list"] == "2201.02177"
            return recorded("arxiv_search.xml" if good else "arxiv_bad_id.xml")
        return recorded("arxiv_search.xml")
    if host == "api.semanticscholar.org":
        if path.endswith("/paper/search"):
            return recorded("s2_search.json")
        if path.endswith("649def34f8be52c8b66281af98ae884c09aef38b"):
            return recorded("s2_paper.json")
        return recorded("s2_404.json", 404)
    raise AssertionError(f"unexpected request {request.url}")


def test_openalex_search_and_get_parse_recorded_responses() -> None:
    replay = Replay(healthy)
    backend = make_single_backend("openalex", LiteratureConfig(mailto="me@example.org"), transport=replay.transport)
    hits = asyncio.run(backend.search("grokking weight decay", 2))
    first = hits[0].record
    assert first.id == "openalex:W4221143046" and first.year == 2022
    assert first.abstract == "In this paper we study generalization on small algorithmic datasets."
    assert first.authors == ["Alethea Power", "Yuri Burda"] and first.venue == "arXiv (Cornell University)"
    assert hits[1].record.title == "Weight decay and the late phase of training"  # display_name when no title
    assert hits[0].score > hits[1].score
    assert replay.seen[0].url.params["search"] == "grokking weight decay"
    assert replay.seen[0].url.params["mailto"] == "me@example.org"
    assert asyncio.run(backend.get("openalex:W4221143046")).title.startswith("Grokking")  # type: ignore[union-attr]
    assert asyncio.run(backend.get("openalex:W999")) is None


def test_arxiv_parses_atom_and_treats_error_entries_as_missing() -> None:
    replay = Replay(healthy)
    backend = make_single_backend("arxiv", LiteratureConfig(), transport=replay.transport)
    hits = asyncio.run(backend.search("grokking and weight decay", 5))
    assert [h.record.id for h in hits] == ["arxiv:2201.02177", "arxiv:2205.10343"]  # version suffix dropped
    assert hits[0].record.title == "Grokking: Generalization Beyond Overfitting on Small Algorithmic Datasets"
    assert hits[0].record.authors == ["Alethea Power", "Yuri Burda"] and hits[0].record.year == 2022
    assert hits[1].record.venue == "NeurIPS 2022"
    query = replay.seen[0].url.params["search_query"]
    assert "all:grokking" in query and "all:and" not in query  # stop words are not searched
    assert asyncio.run(backend.get("arxiv:2201.02177")) is not None
    assert asyncio.run(backend.get("arxiv:9999.99999")) is None
    assert asyncio.run(backend.get("arxiv:not an id")) is None


def test_semantic_scholar_sends_the_optional_key(monkeypatch: pytest.MonkeyPatch) -> None:
    replay = Replay(healthy)
    backend = make_single_backend("semantic_scholar", LiteratureConfig(), transport=replay.transport)
    monkeypatch.delenv("SEMANTIC_SCHOLAR_API_KEY", raising=False)
    hits = asyncio.run(backend.search("grokking", 2))
    assert "x-api-key" not in replay.seen[-1].headers
    assert hits[0].record.id == "s2:649def34f8be52c8b66281af98ae884c09aef38b"
    assert hits[1].record.venue is None and hits[1].record.abstract is None
    monkeypatch.setenv("SEMANTIC_SCHOLAR_API_KEY", "secret-key")
    found = asyncio.run(backend.get("s2:649def34f8be52c8b66281af98ae884c09aef38b"))
    assert found is not None and found.authors == ["Alethea Power"]
    assert replay.seen[-1].headers["x-api-key"] == "secret-key"
    assert asyncio.run(backend.get("s2:0000000000000000000000000000000000000000")) is None


def test_a_429_storm_is_retried_with_retry_after_then_falls_back() -> None:
    """Semantic Scholar answers only 429 (Retry-After: 3): retried, then OpenAlex answers."""

    def storm(request: httpx.Request) -> httpx.Response:
        if request.url.host == "api.semanticscholar.org":
            return recorded("s2_429.json", 429, {"Retry-After": "3"})
        return healthy(request)

    replay, sleeps = Replay(storm), Sleeps()
    cfg = LiteratureConfig(backend="online", max_retries=4, backoff_s=1.0)
    backend = make_backend(cfg, transport=replay.transport, sleep=sleeps)
    assert isinstance(backend, FallbackChain)
    assert backend.name == "semantic_scholar+openalex+arxiv+offline"
    hits = asyncio.run(backend.search("grokking", 2))
    assert hits[0].record.id.startswith("openalex:")
    assert replay.hosts["api.semanticscholar.org"] == 5  # 1 try + 4 retries
    assert sleeps.waits == [3.0, 3.0, 3.0, 3.0]  # the server's Retry-After, not our backoff
    event = backend.events[-1]
    assert event.answered_by == "openalex" and "HTTP 429" in event.failures[0]


def test_every_online_service_down_falls_back_to_the_offline_corpus() -> None:
    def outage(request: httpx.Request) -> httpx.Response:
        if request.url.host == "export.arxiv.org":
            raise httpx.ConnectError("network unreachable", request=request)
        return httpx.Response(503 if request.url.host == "api.openalex.org" else 429)

    replay, sleeps = Replay(outage), Sleeps()
    cfg = LiteratureConfig(backend="online", max_retries=2, backoff_s=0.5, max_wait_s=1.5)
    backend = make_backend(cfg, transport=replay.transport, sleep=sleeps)
    hits = asyncio.run(backend.search("learning rate schedule decay", 3))
    assert hits and all(h.record.source == "openreview" for h in hits)  # the offline corpus answered
    assert sleeps.waits == [0.5, 1.0] * 3  # no Retry-After: exponential backoff, per service
    assert sum(replay.hosts.values()) == 9


def test_waits_are_capped_and_http_dates_understood() -> None:
    assert retry_after_seconds("120") == 120.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None

    replay, sleeps = Replay(lambda r: httpx.Response(429, headers={"Retry-After": "3600"})), Sleeps()
    backend = make_single_backend(
        "openalex", LiteratureConfig(max_retries=1, max_wait_s=60), transport=replay.transport, sleep=sleeps
    )
    with pytest.raises(BackendUnavailable, match=r"openalex did not answer after 2 attempt\(s\) \(last: HTTP 429\)"):
        asyncio.run(backend.search("anything", 3))
    assert sleeps.waits == [60.0]


def test_a_transient_fault_is_retried_and_a_bad_request_is_not() -> None:
    answers = iter([httpx.Response(500), recorded("openalex_search.json")])
    replay, sleeps = Replay(lambda r: next(answers)), Sleeps()
    backend = make_single_backend("openalex", LiteratureConfig(), transport=replay.transport, sleep=sleeps)
    assert len(asyncio.run(backend.search("grokking", 2))) == 2 and sleeps.waits == [1.0]

    replay = Replay(lambda r: httpx.Response(400, json={"error": "bad filter"}))
    backend = make_single_backend("openalex", LiteratureConfig(), transport=replay.transport, sleep=sleeps)
    with pytest.raises(LiteratureError, match="HTTP 400") as err:
        asyncio.run(backend.search("grokking", 2))
    assert not isinstance(err.value, BackendUnavailable) and len(replay.seen) == 1


def test_single_backend_configs_fall_back_to_offline_and_none_finds_nothing() -> None:
    replay = Replay(lambda r: httpx.Response(503))
    backend = make_backend(LiteratureConfig(backend="arxiv", max_retries=0), transport=replay.transport)
    assert backend.name == "arxiv+offline"
    assert asyncio.run(backend.search("transformer attention", 2))[0].record.source == "openreview"
    assert make_backend(LiteratureConfig(backend="none")).name == "none"
    assert make_backend(LiteratureConfig(backend="offline", fallback=[])).name == "offline"


def test_chain_lookups_go_to_the_owner_and_remember_what_it_returned() -> None:
    down = {"on": False}

    def flaky(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503) if down["on"] else healthy(request)

    replay = Replay(flaky)
    cfg = LiteratureConfig(backend="online", chain=["openalex", "offline"], max_retries=0)
    backend = make_backend(cfg, transport=replay.transport)
    asyncio.run(backend.search("grokking", 2))
    down["on"] = True
    # openalex is down now: a record it returned earlier in this process still resolves, an unknown one does not
    assert asyncio.run(backend.get("openalex:W4221143046")) is not None
    assert asyncio.run(backend.get("openalex:W123")) is None
    assert asyncio.run(backend.get("openreview:-3Qj7Jl6UP5")) is not None  # offline owns openreview ids
