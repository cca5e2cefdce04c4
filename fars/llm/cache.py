"""A response cache shared across runs, keyed by the sha256 of a deterministic request.

Replaying a run with the same config and cache costs zero tokens. Only deterministic requests
(temperature 0) are cached; sampling requests always go to the model.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path


def default_cache_dir() -> Path:
    """``$FARS_CACHE_DIR`` if set, else ``~/.cache/fars``."""
    return Path(os.environ.get("FARS_CACHE_DIR") or Path.home() / ".cache" / "fars")


class ResponseCache:
    """SQLite key-value store of model replies (WAL, so parallel runs can share it)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(str(path), isolation_level=None, timeout=30, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, model TEXT NOT NULL, "
            "reply TEXT NOT NULL, created REAL NOT NULL)"
        )

    def get(self, key: str) -> str | None:
        """The cached reply for a request hash, or None."""
        row = self._db.execute("SELECT reply FROM replies WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def put(self, key: str, model: str, reply: str) -> None:
        """Store a reply."""
        self._db.execute(
            "INSERT OR REPLACE INTO replies (key, model, reply, created) VALUES (?,?,?,?)",
            (key, model, reply, time.time()),
        )

    def close(self) -> None:
        """Close the database."""
        self._db.close()
