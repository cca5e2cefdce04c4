"""The model server the server tests talk to: CI's (``FARS_LLAMA_SERVER``), else one started here."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.llm.llama_server import LlamaServer


def server_available() -> None:
    """Skip (or, with ``FARS_REQUIRE_LLAMA_SERVER=1`` as in CI, fail) where the server cannot run."""
    if importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("llama_cpp") is None:
        message = "llama-cpp-python's server extras are not installed: pip install 'llama-cpp-python[server]'"
        if os.environ.get("FARS_REQUIRE_LLAMA_SERVER") == "1":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def llama_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of a running llama-cpp-python server with the embedded model (served as ``smollm2``)."""
    given = os.environ.get("FARS_LLAMA_SERVER")
    if given:
        yield given
        return
    server_available()
    server = LlamaServer(Path(tmp_path_factory.mktemp("llama-server")) / "server.log")
    server.start()
    try:
        yield server.base_url
    finally:
        server.stop()
