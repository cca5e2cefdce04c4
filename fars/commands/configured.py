"""Compose a command's primary config with Hydra and validate it, listing every problem at once.

The same pattern as ``fars run``'s preflight: each override Hydra rejects is named, then the composed
config is checked against the command's pydantic dataclass schema; any problem raises ``UsageError``
with one line per problem (the CLI prints it and exits 2).
"""

from __future__ import annotations

from typing import Any, TypeVar

from fars.cli import CONF_DIR, UsageError
from fars.config import ConfigError, validate_as

T = TypeVar("T")


def compose_job(config_name: str, overrides: list[str]) -> tuple[dict[str, Any] | None, list[str]]:
    """``conf/CONFIG_NAME.yaml`` composed with ``overrides`` as a plain dict, and every override Hydra
    rejected (each named); the dict is None when nothing could be composed. Call inside
    ``initialize_config_dir(CONF_DIR)``."""
    from hydra import compose
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    def attempt(chosen: list[str]) -> tuple[Any, str | None]:
        try:
            return compose(config_name, overrides=chosen), None
        except (HydraException, OmegaConfBaseException) as exc:
            return None, " ".join(str(exc).split()).split(" Config search path")[0]

    problems: list[str] = []
    composed, error = attempt(overrides)
    if error is not None:  # find every override Hydra rejects, then compose the rest
        rejected = {o: err for o in overrides for _, err in [attempt([o])] if err is not None}
        problems += [f"{o}: {err}" for o, err in rejected.items()]
        composed, error = attempt([o for o in overrides if o not in rejected])
        if error is not None:
            return None, [*problems, error]
    raw: dict[str, Any] = OmegaConf.to_container(composed, resolve=True)  # type: ignore[assignment]
    return raw, problems


def compose_config(config_name: str, overrides: list[str], schema: type[T]) -> tuple[T, dict[str, Any]]:
    """``conf/CONFIG_NAME.yaml`` composed with ``overrides``, validated against ``schema``."""
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        raw, problems = compose_job(config_name, overrides)
    cfg = None
    if raw is not None:
        try:
            cfg = validate_as(schema, raw)
        except ConfigError as exc:
            problems += exc.problems
    if problems or cfg is None or raw is None:
        raise UsageError(listing(problems))
    return cfg, raw


def listing(problems: list[str]) -> str:
    """The one message that lists every problem of a config."""
    lines = "\n".join(f"  - {p}" for p in problems)
    return f"invalid config, nothing was run ({len(problems)} problem(s)):\n{lines}"
