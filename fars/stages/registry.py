"""The stage registry: FARS's own stages, the stages of installed packages, and their run order.

A package outside FARS adds stages through the entry point group ``fars.stages``: the entry point
names a module that registers its stages on import (``fars.stages.base.register_stage``), or a
``StageSpec``. Users then list them in ``pipeline.stages``; ``resolve_stages`` puts every stage
after the stages whose contracts it consumes.
"""

from __future__ import annotations

import difflib
import logging
from importlib import metadata

from fars.stages import experiment, ideation, planning, review, writing  # noqa: F401  (they register on import)
from fars.stages.base import _REGISTRY, StageConfigError, StageSpec

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "fars.stages"
_entry_points_loaded = False


def load_entry_points() -> list[str]:
    """Import the stages other packages declare (entry point group ``fars.stages``); problems, one per line."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return []
    _entry_points_loaded = True
    problems = []
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = ep.load()
        except Exception as exc:  # a broken plug-in must not hide every other stage
            problems.append(f"entry point {ep.name} = {ep.value} ({ENTRY_POINT_GROUP}) failed to load: {exc}")
            continue
        if isinstance(loaded, StageSpec):
            _REGISTRY.setdefault(loaded.name, loaded)
    for line in problems:
        log.warning("%s", line)
    return problems


def registered_stages() -> dict[str, StageSpec]:
    """Every registered stage, FARS's own and those of installed packages."""
    load_entry_points()
    return dict(_REGISTRY)


def get_stage(name: str) -> StageSpec:
    """The stage registered as ``name``; a typo gets the nearest names suggested."""
    known = registered_stages()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise KeyError(f"no stage named {name!r}{hint} (registered: {sorted(known)})")
    return known[name]


def resolve_stages(names: list[str]) -> list[StageSpec]:
    """The listed stages in run order: each after the stages whose contracts it consumes.

    Order among independent stages is the listed order. Raises ``StageConfigError`` naming every
    unknown stage, duplicate, and input that no listed stage produces.
    """
    known = registered_stages()
    problems: list[str] = []
    specs: list[StageSpec] = []
    for name in names:
        if name in (s.name for s in specs):
            problems.append(f"pipeline.stages: {name!r} is listed twice")
        elif name not in known:
            close = difflib.get_close_matches(name, known, n=2)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            problems.append(f"pipeline.stages: no stage named {name!r}{hint} (registered: {sorted(known)})")
        else:
            specs.append(known[name])
    producers = {s.produces: s for s in specs}
    for spec in specs:
        for needed in spec.consumes:
            if needed not in producers:
                makers = [s.name for s in known.values() if s.produces is needed]
                hint = f"; add {' or '.join(makers)} to pipeline.stages" if makers else ""
                problems.append(
                    f"pipeline.stages: {spec.name!r} consumes {needed.__name__}, which no listed stage produces{hint}"
                )
    if problems:
        raise StageConfigError(problems)
    ordered: list[StageSpec] = []
    remaining = list(specs)
    while remaining:
        ready = next(
            (s for s in remaining if all(producers[c] in ordered for c in s.consumes if producers[c] is not s)),
            None,
        )
        if ready is None:
            cycle = ", ".join(s.name for s in remaining)
            raise StageConfigError([f"pipeline.stages: stages {cycle} consume each other's outputs (a cycle)"])
        ordered.append(ready)
        remaining.remove(ready)
    return ordered
