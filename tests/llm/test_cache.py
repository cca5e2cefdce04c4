"""The shared response cache: where a reply came from is part of its key, and a broken file is set aside.

The cache is shared by every run on the machine, so a clobbered file (overwritten by a careless user or
through a planted link), a link put in its place, or damage found mid-run must cost one warning, never
every later run.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import sqlite3
from pathlib import Path

import pytest

from fars.config import LLMConfig
from fars.llm.cache import ResponseCache
from fars.llm.client import LLMClient

HELLO = [{"role": "user", "content": "hello there, general"}]


def client(cache_dir: Path, api_base: str | None = None) -> LLMClient:
    return LLMClient(LLMConfig(model="scripted/same-name", cache_dir=str(cache_dir), api_base=api_base))


def ask(c: LLMClient) -> bool:
    """Whether one fixed request was served from the cache."""
    try:
        return asyncio.run(c.complete(HELLO)).cache_hit
    finally:
        c.close()


def test_two_servers_with_one_model_name_never_share_replies(tmp_path: Path) -> None:
    assert not ask(client(tmp_path, "http://127.0.0.1:8001/v1"))
    assert not ask(client(tmp_path, "http://127.0.0.1:8002/v1")), "a reply of another server was served"
    assert ask(client(tmp_path, "http://127.0.0.1:8001/v1"))  # the same server still hits
    assert not ask(client(tmp_path))  # the provider's default server is a server of its own
    assert ask(client(tmp_path))


def _broken_files(cache_dir: Path) -> list[str]:
    return sorted(p.name for p in cache_dir.iterdir() if ".broken-" in p.name)


def test_a_clobbered_cache_is_set_aside_with_a_warning_and_runs_go_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert not ask(client(tmp_path))
    path = tmp_path / "llm-cache.sqlite"
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.write_bytes(os.urandom(8192))  # overwritten by something else
    with caplog.at_level(logging.WARNING):
        assert not ask(client(tmp_path))  # no crash: a miss, then a fresh cache
    assert "set aside" in caplog.text and str(path) in caplog.text
    assert _broken_files(tmp_path) == [n for n in _broken_files(tmp_path) if n.startswith("llm-cache.sqlite.broken-")]
    assert _broken_files(tmp_path)
    assert ask(client(tmp_path))  # the fresh cache works for the next run


def test_a_link_in_place_of_the_cache_is_renamed_not_followed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    victim = tmp_path / "ledger.sqlite"
    victim.write_bytes(b"the run's ledger, not a cache")
    before = hashlib.sha256(victim.read_bytes()).hexdigest()
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    (cache_dir / "llm-cache.sqlite").symlink_to(victim)
    with caplog.at_level(logging.WARNING):
        assert not ask(client(cache_dir))
    assert hashlib.sha256(victim.read_bytes()).hexdigest() == before
    assert not (cache_dir / "llm-cache.sqlite").is_symlink() and "set aside" in caplog.text
    assert any(p.is_symlink() for p in cache_dir.iterdir())  # the link itself was moved aside


def test_damage_found_during_a_run_sets_the_cache_aside_and_the_run_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = ResponseCache(tmp_path / "llm-cache.sqlite")
    cache.put("k1", "m", "reply one")
    other = sqlite3.connect(tmp_path / "llm-cache.sqlite")
    other.execute("DROP TABLE replies")  # another process broke it under us
    other.commit()
    other.close()
    with caplog.at_level(logging.WARNING):
        assert cache.get("k1") is None
        cache.put("k2", "m", "reply two")
    assert cache.get("k2") == "reply two" and "set aside" in caplog.text
    cache.close()
