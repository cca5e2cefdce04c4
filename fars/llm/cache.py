"""A response cache shared across runs, keyed by the sha256 of a deterministic request.

Replaying a run with the same config and cache costs zero tokens. Only deterministic requests
(temperature 0) are cached; sampling requests always go to the model. The key
(``LLMClient.cache_key``) is the request with the model that answered (a fallback's reply is never
served as the primary model's) and every setting that shapes a reply: the server (``llm.api_base``),
so two servers serving one model name never share replies, ``llm.structured_mode``, the embedded
model's GGUF file and context size, and the scripted model's script.

The cache is shared by every run on the machine, so one broken file must not break them all: a cache
file that is not SQLite (clobbered), damaged, a link or a special file is set aside (renamed to
``NAME.broken-TIME``, a link renamed itself, never followed) with a warning and a fresh cache is
started; damage found later during a run sets it aside the same way and the run goes on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import stat
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)
_SIDE_FILES = ("-wal", "-shm", "-journal")


def default_cache_dir() -> Path:
    """``$FARS_CACHE_DIR`` if set, else ``~/.cache/fars``."""
    return Path(os.environ.get("FARS_CACHE_DIR") or Path.home() / ".cache" / "fars")


class ResponseCache:
    """SQLite key-value store of model replies (WAL, so parallel runs can share it)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        try:
            self._db = self._open()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):
                self._set_aside(exc)
                self._db = self._open()
            else:  # busy with other runs for 30 s: this run goes without, the file is fine
                log.warning("the response cache %s is locked by other runs (%s); this run goes without it", path, exc)
        except (sqlite3.DatabaseError, OSError) as exc:
            self._set_aside(exc)
            self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        """Connect, refusing a link or special file at the cache's path or its side files."""
        for suffix in ("", *_SIDE_FILES):
            with contextlib.suppress(FileNotFoundError):
                mode = os.lstat(f"{self.path}{suffix}").st_mode
                if not stat.S_ISREG(mode):
                    raise OSError(f"{self.path}{suffix} is not a regular file (a link or special file)")
        db = sqlite3.connect(str(self.path), isolation_level=None, timeout=30, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, model TEXT NOT NULL, "
                "reply TEXT NOT NULL, created REAL NOT NULL)"
            )
            db.execute("SELECT key FROM replies LIMIT 1").fetchall()
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def _set_aside(self, exc: BaseException) -> None:
        """Move the broken cache file (and its side files) out of the way; a fresh cache starts there."""
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = Path(f"{self.path}.broken-{stamp}-{os.getpid()}")
        for suffix in ("", *_SIDE_FILES):
            with contextlib.suppress(FileNotFoundError):
                os.rename(f"{self.path}{suffix}", f"{aside}{suffix}")  # a link is renamed, never followed
        log.warning(
            "the response cache %s could not be used (%s); set aside as %s, starting a fresh cache (delete the "
            "old one when you no longer need it)",
            self.path,
            exc,
            aside,
        )

    def _recover(self, exc: sqlite3.DatabaseError) -> None:
        """Damage found during a run: set the file aside and go on with a fresh one."""
        with self._lock:
            self._set_aside(exc)
            try:
                self._db = self._open()
            except (sqlite3.DatabaseError, OSError) as again:
                log.warning("no response cache for the rest of this run (%s)", again)
                self._db = None

    def get(self, key: str) -> str | None:
        """The cached reply for a request hash, or None."""
        if self._db is None:
            return None
        try:
            row = self._db.execute("SELECT reply FROM replies WHERE key=?", (key,)).fetchone()
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                return None  # another run holds it for now: a miss, not damage
            self._recover(exc)
            return None
        return None if row is None else str(row[0])

    def put(self, key: str, model: str, reply: str) -> None:
        """Store a reply."""
        if self._db is None:
            return
        try:
            self._db.execute(
                "INSERT OR REPLACE INTO replies (key, model, reply, created) VALUES (?,?,?,?)",
                (key, model, reply, time.time()),
            )
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                return
            self._recover(exc)

    def close(self) -> None:
        """Close the database."""
        if self._db is not None:
            self._db.close()
            self._db = None
