"""Compose a command's primary config with Hydra and validate it, listing every problem at once.

The schemas (pydantic dataclasses in ``fars.config`` and the command modules) hold every default;
before Hydra composes, each schema's defaults are registered as a config node (``_defaults_<name>``)
that the primary config lists first, so the YAML files under ``conf/`` only say what an option
changes. Each override Hydra rejects is named, then the composed config is checked against the
schema; any problem raises ``UsageError`` with one line per problem (the CLI prints it, exit 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from fars.config import ConfigError, FarsConfig, schema_defaults, validate_as

T = TypeVar("T")


def _conf_dir() -> Path:
    """``conf/`` of a source checkout, or the copy a built wheel carries inside the package."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "conf", package.parent / "conf"):
        if (candidate / "run.yaml").is_file():
            return candidate
    return package / "conf"


CONF_DIR = _conf_dir()


class UsageError(Exception):
    """Bad command-line input; the message says what to do (the CLI prints it and exits 2)."""


def register_defaults(config_name: str, schema: type[Any]) -> None:
    """Store ``schema``'s defaults as the Hydra node ``_defaults_<config_name>`` (the first default of the
    primary config ``conf/<config_name>.yaml``)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name=f"_defaults_{config_name}", node=schema_defaults(schema))


def compose_job(config_name: str, overrides: list[str]) -> tuple[dict[str, Any] | None, list[str]]:
    """``conf/CONFIG_NAME.yaml`` composed with ``overrides`` as a plain dict, and every override Hydra
    rejected (each named); the dict is None when nothing could be composed. Call inside
    ``initialize_config_dir(CONF_DIR)`` after ``register_defaults``."""
    from hydra import compose
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    def attempt(chosen: list[str]) -> tuple[Any, str | None]:
        try:
            return compose(config_name, overrides=chosen), None
        except (HydraException, OmegaConfBaseException) as exc:
            return None, " ".join(str(exc).split()).split(" Config search path")[0]
        except (TypeError, ValueError) as exc:  # Hydra's own crash on a value it cannot take (named per override below)
            return None, f"Hydra cannot apply this ({' '.join(str(exc).split())[:200]})"

    misgiven = {o: problem for o in overrides if (problem := group_problem(o)) is not None}
    problems = list(misgiven.values())
    overrides = [o for o in overrides if o not in misgiven]
    composed, error = attempt(overrides)
    if error is not None:  # find every override Hydra rejects, then compose the rest
        rejected = {o: err for o in overrides for _, err in [attempt([o])] if err is not None}
        composed, error = attempt([o for o in overrides if o not in rejected])
        known = _keys(OmegaConf.to_container(composed, resolve=False)) if error is None else []
        problems += [f"{o}: {_hint(o, err, known)}" for o, err in rejected.items()]
        if error is not None:
            return None, [*problems, error]
    try:
        raw: dict[str, Any] = OmegaConf.to_container(composed, resolve=True)  # type: ignore[assignment]
    except OmegaConfBaseException as exc:  # e.g. ${oc.env:MISSING} with no such variable
        found, unresolved = _without_unresolvable(composed)
        if found is None:
            return None, [*problems, " ".join(str(exc).split())]
        return found, [*problems, *unresolved]
    return raw, problems


def group_problem(override: str) -> str | None:
    """Why ``override`` gives a config group (``budget``, ``llm``, ...: a folder of ``conf/``) something other
    than option names, e.g. ``budget=[1,2]`` or ``llm=3`` (None when it does not). Hydra crashes on those
    with a TypeError instead of naming them."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides([override])[0]
    except HydraException:
        return None  # malformed: Hydra names it when it composes
    group = parsed.key_or_group
    if parsed.is_delete() or "." in group or not (CONF_DIR / group).is_dir():
        return None
    value = parsed.value()
    if isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        return None
    options = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
    example = f", e.g. {group}={options[0]}" if options else ""
    return (
        f"{override}: {group!r} is a config group: give the name of one of its options "
        f"({', '.join(options) or 'none in conf/'}){example}; to set a value inside it, write "
        f"{group.replace('/', '.')}.KEY=VALUE (`fars run --cfg job` lists every key)"
    )


def _without_unresolvable(composed: Any) -> tuple[dict[str, Any] | None, list[str]]:
    """The config with every value whose interpolation fails left out, and one problem per such value.

    So ``${oc.env:NOPE}`` in one key does not hide what is wrong with the others: the schema still
    checks the rest (the keys left out take their defaults and are reported here).
    """
    import copy

    from omegaconf import DictConfig, OmegaConf, open_dict
    from omegaconf.errors import OmegaConfBaseException

    problems: list[str] = []
    trimmed = copy.deepcopy(composed)

    def visit(node: DictConfig, prefix: str) -> None:
        for key in list(node.keys()):
            name = str(key)
            path = prefix + name
            if OmegaConf.is_interpolation(node, name):
                try:
                    node[name]  # resolving it is the check
                except OmegaConfBaseException as exc:
                    problems.append(f"{path}: {' '.join(str(exc).split()).split(' full_key:')[0]}")
                    with open_dict(node):
                        del node[name]
                continue
            child = node._get_node(name)
            if isinstance(child, DictConfig):
                visit(child, f"{path}.")

    try:
        visit(trimmed, "")
        raw: dict[str, Any] = OmegaConf.to_container(trimmed, resolve=True)  # type: ignore[assignment]
    except OmegaConfBaseException:
        return None, []
    return raw, problems


def _keys(node: Any, prefix: str = "") -> list[str]:
    """Every dotted key of a composed config (``hydra`` left out)."""
    if not isinstance(node, dict):
        return [prefix] if prefix else []
    out = [prefix] if prefix else []
    for key, value in node.items():
        if not prefix and key == "hydra":
            continue
        out += _keys(value, f"{prefix}.{key}" if prefix else str(key))
    return out


def _hint(override: str, error: str, known: list[str]) -> str:
    """Hydra's message for a key that does not exist, with the nearest real keys instead of its "+key" advice
    (which would add the misspelt key, not set the one meant)."""
    import difflib

    if "Could not override" not in error and "Key '" not in error:
        return error
    key = override.split("=", 1)[0].lstrip("+~")
    near = [k for k in difflib.get_close_matches(key, known, n=5, cutoff=0.6) if not key.startswith(k + ".")][:2]
    if not near:
        leaf = key.rsplit(".", 1)[-1]
        near = [k for k in known if k.rsplit(".", 1)[-1] == leaf][:3]
    where = f"did you mean {' or '.join(near)}?" if near else "`fars run --cfg job` lists every key"
    return f"{key!r} is not a setting; {where}"


def compose_raw(config_name: str, overrides: list[str], schema: type[Any]) -> tuple[dict[str, Any] | None, list[str]]:
    """``compose_job`` with the schema's defaults registered and Hydra initialised on ``CONF_DIR``."""
    from hydra import initialize_config_dir

    register_defaults(config_name, schema)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose_job(config_name, overrides)


def compose_config(config_name: str, overrides: list[str], schema: type[T]) -> tuple[T, dict[str, Any]]:
    """``conf/CONFIG_NAME.yaml`` composed with ``overrides``, validated against ``schema``."""
    raw, problems = compose_raw(config_name, overrides, schema)
    cfg = None
    if raw is not None:
        try:
            cfg = validate_as(schema, raw)
        except ConfigError as exc:
            problems += exc.problems
    if problems or cfg is None or raw is None:
        raise UsageError(listing(problems))
    return cfg, raw


def compose_run(overrides: list[str]) -> FarsConfig:
    """The validated ``fars run`` config for these overrides (tests and benchmarks compose with this)."""
    return compose_config("run", overrides, FarsConfig)[0]


def listing(problems: list[str]) -> str:
    """The one message that lists every problem of a config."""
    lines = "\n".join(f"  - {p}" for p in problems)
    return f"invalid config, nothing was run ({len(problems)} problem(s)):\n{lines}"


def track_report(
    cfg: Any, out: Path, raw: dict[str, Any], *, job: str, summary: dict[str, Any], table: tuple[str, list[str], list[Any]],
    image: tuple[str, Path],
) -> None:  # fmt: skip
    """Log a command's report to W&B (``cfg`` is its TrackerConfig): the summary figures, one table of
    ``(key, columns, rows)`` (each row read by attribute) and one image. The report is already written, so a
    failure is a warning, never the end of the command."""
    import logging

    if cfg.backend != "wandb":
        return
    try:
        import wandb

        run = wandb.init(
            project=cfg.project, entity=cfg.entity, group=cfg.group, tags=[*cfg.tags, job], name=f"{job}-{out.name}",
            mode=cfg.mode, dir=str(out), config=raw, job_type=job,
            settings=wandb.Settings(console="off", silent=True, x_disable_stats=True),
        )  # fmt: skip
        key, columns, rows = table
        data = [[getattr(row, column) for column in columns] for row in rows]
        run.log({**summary, key: wandb.Table(columns=list(columns), data=data), image[0]: wandb.Image(str(image[1]))})
        for name, value in summary.items():
            run.summary[name] = value
        run.finish()
    except Exception as exc:  # tracking must never lose the report, which is already written
        logging.getLogger(__name__).warning(
            "W&B logging failed (%s: %s); the report is in %s", type(exc).__name__, exc, out
        )
