"""A registry of named entries, each module imported only when its name is first looked up.

Modelled on lm-evaluation-harness's lazy ``Registry``. Every name is known from the start: FARS's own
entries by the module that registers them, other packages' by the entry points of a group, read from
their metadata without importing them. The module behind a name is imported the first time the name is
looked up, and registers its entry there (``add``, called by a decorator such as ``register_stage``).
So listing the names, and refusing an unknown one with the nearest names suggested, imports nothing:
``fars run pipeline.stages=[nope]`` is refused without loading a model library.
"""

from __future__ import annotations

import difflib
import importlib
import logging
from importlib import metadata
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class RegistryError(LookupError):
    """A name's module cannot give its entry: another package's fails to import, or registers no such name."""


class Registry(Generic[T]):
    """Names to entries of type ``of``; ``kind`` names an entry in messages ("stage"). See the module docstring.

    ``modules`` maps FARS's own names to the modules that register them; ``entry_points`` is the group
    whose entry points (``name = module`` or ``name = module:attribute``) add other packages' names.
    Looked up like a dict (``registry[name]``, ``name in registry``, ``registry.get(name)``).
    """

    def __init__(
        self, kind: str, of: type[T], *, modules: dict[str, str] | None = None, entry_points: str | None = None
    ) -> None:
        self.kind = kind
        self.of = of
        self.group = entry_points
        self._entries: dict[str, T] = {}  # registered: their module was imported
        self._targets: dict[str, str] = dict(modules or {})  # known but not imported yet: "module[:attribute]"
        self._origins = {name: target.split(":")[0] for name, target in self._targets.items()}  # who registers each
        self._plugins: set[str] = set()  # names from entry points: their import failing is their package's fault
        self._entry_points_read = entry_points is None

    def add(self, name: str, entry: T, origin: str) -> None:
        """Register ``entry`` under ``name`` as module ``origin`` is imported; a name another module owns is refused."""
        earlier = self._origins.get(name)
        if earlier is not None and earlier != origin:
            raise ValueError(f"{self.kind} {name!r} is registered twice: by {earlier} and by {origin}")
        self._entries[name] = entry
        self._origins[name] = origin
        self._targets.pop(name, None)

    def names(self) -> list[str]:
        """Every name, registered or not imported yet (nothing is imported)."""
        self._read_entry_points()
        return sorted({*self._entries, *self._targets})

    def __contains__(self, name: object) -> bool:
        self._read_entry_points()
        return name in self._entries or name in self._targets

    def __getitem__(self, name: str) -> T:
        """The entry of ``name``, its module imported first when need be; ``KeyError`` names the nearest names."""
        if name in self._entries:
            return self._entries[name]
        if name not in self:
            raise KeyError(f"no {self.kind} named {name!r}{self.nearest(name, 3)} (registered: {self.names()})")
        return self._load(name)

    def get(self, name: str, default: T | None = None) -> T | None:
        """The entry of ``name`` (imported when need be), or ``default`` when no such name is known."""
        if name not in self:
            return default
        return self[name]

    def __setitem__(self, name: str, entry: T) -> None:
        """Put ``entry`` in place of what ``name`` holds (a test's stand-in; ``add`` is the way to register)."""
        self._entries[name] = entry
        self._targets.pop(name, None)

    def __delitem__(self, name: str) -> None:
        if name not in self._entries and name not in self._targets:
            raise KeyError(name)
        self._entries.pop(name, None)
        self._targets.pop(name, None)
        self._origins.pop(name, None)

    def load_all(self) -> dict[str, T]:
        """Every entry, each module imported; another package's that cannot load is logged and left out."""
        found: dict[str, T] = {}
        for name in self.names():
            try:
                found[name] = self[name]
            except RegistryError as exc:  # a broken plug-in must not hide every other entry
                log.warning("%s", exc)
        return found

    def nearest(self, name: str, n: int) -> str:
        """The hint for a typo: '; did you mean a or b?' with up to ``n`` names near ``name`` (empty when none is)."""
        close = difflib.get_close_matches(name, self.names(), n=n)
        return f"; did you mean {' or '.join(close)}?" if close else ""

    def _load(self, name: str) -> T:
        """Import the module behind ``name``; it registers the entry (or names it as ``module:attribute``)."""
        target = self._targets[name]
        module, _, attribute = target.partition(":")
        try:
            imported = importlib.import_module(module)
            found = getattr(imported, attribute) if attribute else self._entries.get(name)
        except Exception as exc:
            if name not in self._plugins:
                raise  # FARS's own module: a bug to see whole, not a plug-in to step over
            raise RegistryError(f"entry point {name} = {target} ({self.group}) failed to load: {exc}") from exc
        if not isinstance(found, self.of):
            raise RegistryError(f"{target} registers no {self.kind} named {name!r} (the name {self.group} gives it)")
        self._entries[name] = found
        self._targets.pop(name, None)
        return found

    def _read_entry_points(self) -> None:
        """Add the names of the group's entry points, from installed packages' metadata, importing none."""
        if self._entry_points_read:
            return
        self._entry_points_read = True
        for point in metadata.entry_points(group=self.group or ""):
            owner = self._origins.get(point.name)
            if owner is not None and owner != point.module:
                log.warning(
                    "entry point %s = %s (%s) is left out: %s %r is %s's",
                    point.name,
                    point.value,
                    self.group,
                    self.kind,
                    point.name,
                    owner,
                )
                continue
            if point.name not in self._entries:
                self._targets.setdefault(point.name, point.value)
            self._origins[point.name] = point.module
            self._plugins.add(point.name)
