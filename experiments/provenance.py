"""Git-free provenance hashes of code and config (standard library only: training processes import it)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def config_sha256(config: dict[str, float | int | str]) -> str:
    """sha256 of a config, independent of key order."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def combined_sha256(files: dict[str, str]) -> str:
    """One sha256 over many files' hashes, independent of order."""
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
