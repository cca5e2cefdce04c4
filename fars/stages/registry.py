"""Finding stages by name and putting a pipeline in run order.

The registry itself is ``fars.stages.base``'s: FARS's own stages by module, those of installed packages
by their entry points (group ``fars.stages``), each stage's module imported only when the stage is
looked up, so refusing an unknown name imports none. Users list stages in ``pipeline.stages``;
``resolve_stages`` puts every stage after the stages whose contracts it consumes.
"""

from __future__ import annotations

from fars.stages.base import _REGISTRY, StageConfigError, StageSpec
from fars.stages.lazy_registry import RegistryError


def registered_stages() -> dict[str, StageSpec]:
    """Every registered stage, FARS's own and those of installed packages (each imported)."""
    return _REGISTRY.load_all()


def get_stage(name: str) -> StageSpec:
    """The stage registered as ``name``; a typo gets the nearest names suggested."""
    return _REGISTRY[name]


def listed_stages(names: list[str]) -> list[StageSpec]:
    """The registered stages among ``names``, each once, in listed order; unknown ones and another package's
    that cannot load are left out (``resolve_stages`` names them)."""
    found = []
    for name in dict.fromkeys(names):
        try:
            spec = _REGISTRY.get(name)
        except RegistryError:
            continue
        if spec is not None:
            found.append(spec)
    return found


def resolve_stages(names: list[str]) -> list[StageSpec]:
    """The listed stages in run order: each after the stages whose contracts it consumes.

    Order among independent stages is the listed order. Raises ``StageConfigError`` naming every
    unknown stage, duplicate, and input that no listed stage produces. Only the listed stages are imported
    (every stage, to name the producers of a missing input).
    """
    problems: list[str] = []
    specs: list[StageSpec] = []
    for name in names:
        if name in (s.name for s in specs):
            problems.append(f"pipeline.stages: {name!r} is listed twice")
        elif name not in _REGISTRY:
            problems.append(
                f"pipeline.stages: no stage named {name!r}{_REGISTRY.nearest(name, 2)} "
                f"(registered: {_REGISTRY.names()})"
            )
        else:
            try:
                specs.append(_REGISTRY[name])
            except RegistryError as exc:
                problems.append(f"pipeline.stages: {exc}")
    problems += _missing_inputs(specs)
    if problems:
        raise StageConfigError(problems)
    return _in_run_order(specs)


def _missing_inputs(specs: list[StageSpec]) -> list[str]:
    """Each input of a listed stage that no listed stage produces, with the stages that would."""
    produced = {s.produces for s in specs}
    problems = []
    for spec in specs:
        for needed in spec.consumes:
            if needed not in produced:
                makers = [s.name for s in registered_stages().values() if s.produces is needed]
                hint = f"; add {' or '.join(makers)} to pipeline.stages" if makers else ""
                problems.append(
                    f"pipeline.stages: {spec.name!r} consumes {needed.__name__}, which no listed stage produces{hint}"
                )
    return problems


def _in_run_order(specs: list[StageSpec]) -> list[StageSpec]:
    """The stages ordered so that each comes after the producers of what it consumes (listed order otherwise)."""
    producers = {s.produces: s for s in specs}
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
