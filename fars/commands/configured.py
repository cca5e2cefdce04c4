"""Compose a command's primary config with Hydra and validate it, listing every problem at once.

The same pattern as ``fars run``'s preflight: each override Hydra rejects is named, then the composed
config is checked against the command's pydantic dataclass schema; any problem raises ``UsageError``
with one line per problem (the CLI prints it and exits 2).
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from fars.cli import CONF_DIR, UsageError

T = TypeVar("T")


def compose_config(config_name: str, overrides: list[str], schema: type[T]) -> tuple[T, dict[str, Any]]:
    """``conf/CONFIG_NAME.yaml`` composed with ``overrides``, validated against ``schema``."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    def attempt(chosen: list[str]) -> tuple[Any, str | None]:
        try:
            return compose(config_name, overrides=chosen), None
        except (HydraException, OmegaConfBaseException) as exc:
            return None, " ".join(str(exc).split()).split(" Config search path")[0]

    problems: list[str] = []
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        composed, error = attempt(overrides)
        if error is not None:
            rejected = {o: err for o in overrides for _, err in [attempt([o])] if err is not None}
            problems += [f"{o}: {err}" for o, err in rejected.items()]
            composed, error = attempt([o for o in overrides if o not in rejected])
            if error is not None:
                problems.append(error)
    if composed is None:
        raise UsageError(_listing(problems))
    raw: dict[str, Any] = OmegaConf.to_container(composed, resolve=True)  # type: ignore[assignment]
    try:
        cfg = TypeAdapter(schema).validate_python(raw)
    except ValidationError as exc:
        problems += [_describe(e) for e in exc.errors()]
        cfg = None
    if problems:
        raise UsageError(_listing(problems))
    return cfg, raw  # type: ignore[return-value]


def _listing(problems: list[str]) -> str:
    lines = "\n".join(f"  - {p}" for p in problems)
    return f"invalid config, nothing was run ({len(problems)} problem(s)):\n{lines}"


def _describe(err: Any) -> str:
    loc = ".".join(str(part) for part in err["loc"]) or "<root>"
    if err["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        return f"{loc}: unknown key (check its spelling against the yaml files in {CONF_DIR})"
    value = err.get("input")
    shown = "" if isinstance(value, dict) else f" (got {value!r})"
    return f"{loc}: {err['msg']}{shown}"
