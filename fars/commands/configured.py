"""Compose a command's primary config with Hydra and validate it, listing every problem at once.

The schemas (pydantic dataclasses in ``fars.config`` and the command modules) hold every default;
before Hydra composes, each schema's defaults are registered as a config node (``_defaults_<name>``)
that the primary config lists first, so the YAML files under ``conf/`` only say what an option
changes. Each override Hydra rejects is named, then the composed config is checked against the
schema; any problem raises ``UsageError`` with one line per problem (the CLI prints it, exit 2).

Every composition goes through ``compose_job`` (``fars run``'s preflight, ``--cfg job --resolve``, the
other commands, the tests), and every ``-m`` sweep is expanded by ``sweep_jobs``: Hydra's public API only.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
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


@contextlib.contextmanager
def hydra_session(config_name: str, schema: type[Any]) -> Iterator[None]:
    """Hydra initialised on ``CONF_DIR`` with ``schema``'s defaults registered: where ``compose_job`` and
    ``sweep_jobs`` are called (several compositions share one session)."""
    from hydra import initialize_config_dir

    register_defaults(config_name, schema)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        yield


@dataclass
class Composed:
    """What composing one job gave: its config as a plain dict (None when nothing could be composed), every
    problem found (each rejected override named), and Hydra's own node (``hydra``, unresolved) when asked for."""

    raw: dict[str, Any] | None
    problems: list[str]
    hydra: dict[str, Any] | None = None


def plain(node: Any, *, resolve: bool) -> dict[str, Any]:
    """A composed config node as a plain dict (``OmegaConf.to_container`` is typed as returning any container)."""
    from omegaconf import OmegaConf

    data = OmegaConf.to_container(node, resolve=resolve)
    if not isinstance(data, dict):
        raise TypeError(f"a config node that is no mapping: {type(data).__name__}")
    return {str(key): value for key, value in data.items()}


def _compose_once(config_name: str, overrides: list[str], *, hydra: bool) -> tuple[Any, str | None]:
    """The one call of Hydra's ``compose`` (inside ``hydra_session``): the config, or None and why not."""
    from hydra import compose
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        return compose(config_name, overrides=overrides, return_hydra_config=hydra), None
    except (HydraException, OmegaConfBaseException) as exc:
        return None, " ".join(str(exc).split()).split(" Config search path")[0]
    except (TypeError, ValueError) as exc:  # Hydra's own crash on a value it cannot take (named per override)
        return None, f"Hydra cannot apply this ({' '.join(str(exc).split())[:200]})"


def compose_job(config_name: str, overrides: list[str], *, hydra: bool = False) -> Composed:
    """``conf/CONFIG_NAME.yaml`` composed with ``overrides`` (``hydra.*`` ones too), and every override Hydra
    rejects, each named; with ``hydra`` also Hydra's node (its launcher, its sweeper's params). Call inside
    ``hydra_session``: one composition when every override is good, one more per override when some are not."""
    from omegaconf import open_dict, read_write
    from omegaconf.errors import OmegaConfBaseException

    misgiven = {o: problem for o in overrides if (problem := group_problem(o)) is not None}
    problems = list(misgiven.values())
    overrides = [o for o in overrides if o not in misgiven]
    composed, error = _compose_once(config_name, overrides, hydra=hydra)
    if error is not None:  # find every override Hydra rejects, then compose the rest
        rejected = _rejected(config_name, overrides)
        composed, error = _compose_once(config_name, [o for o in overrides if o not in rejected], hydra=hydra)
        known = _keys(plain(composed, resolve=False)) if error is None else []
        problems += [f"{o}: {_hint(o, err, known)}" for o, err in rejected.items()]
        if error is not None:
            return Composed(None, [*problems, error])
    hydra_node = None
    if hydra and "hydra" in composed:
        hydra_node = plain(composed.hydra, resolve=False)
        with read_write(composed), open_dict(composed):
            del composed["hydra"]  # what the job sees, as Hydra hands it over
    try:
        return Composed(plain(composed, resolve=True), problems, hydra_node)
    except OmegaConfBaseException as exc:  # e.g. ${oc.env:MISSING} with no such variable
        found, unresolved = _without_unresolvable(composed)
        if found is None:
            return Composed(None, [*problems, " ".join(str(exc).split())], hydra_node)
        return Composed(found, [*problems, *unresolved], hydra_node)


def _rejected(config_name: str, overrides: list[str]) -> dict[str, str]:
    """Each override Hydra rejects, and why, in the order given: a config group's choice (``llm=x``,
    ``hydra/launcher=joblib``) composed alone, any other beside the good choices (a key of a group's option,
    e.g. ``hydra.launcher.n_jobs``, exists only once that option is chosen)."""

    def is_choice(override: str) -> bool:
        key = override.split("=", 1)[0].lstrip("+~")
        return "/" in key or (CONF_DIR / key).is_dir()

    choices = [o for o in overrides if is_choice(o)]
    errors = {o: _compose_once(config_name, [o], hydra=False)[1] for o in choices}
    good = [o for o in choices if errors[o] is None]
    for o in overrides:
        if o not in errors:
            errors[o] = _compose_once(config_name, [*good, o], hydra=False)[1]
    return {o: error for o in overrides if (error := errors[o]) is not None}


def sweep_jobs(config_name: str, overrides: list[str]) -> list[list[str]]:
    """The overrides of every job of a ``-m`` sweep (inside ``hydra_session``): the product of the sweeps given
    (``a=1,2``, ``range(1,3)``, ``glob(iclr*)``) and of those a preset declares in ``hydra.sweeper.params``
    (``+sweep=...``) for keys not given, in the order Hydra's basic sweeper makes them. A preset's params are
    read from the config composed without the sweeps, as Hydra composes a sweep's own config."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import Override
    from hydra.errors import HydraException

    # glob(...) lists a config group's options: the parser needs the session's config loader for that
    parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())

    def parse(override: str) -> Override:
        try:
            return parser.parse_overrides([override])[0]
        except HydraException as exc:
            raise UsageError(f"cannot expand the sweep: {override}: {' '.join(str(exc).split())}") from None

    given = {o: parse(o) for o in overrides}
    fixed = [o for o, p in given.items() if not p.is_sweep_override()]
    composed, _ = _compose_once(config_name, fixed, hydra=True)  # a problem with it: preflight names it
    params = {} if composed is None else (plain(composed.hydra, resolve=False).get("sweeper") or {}).get("params")
    keys = {p.key_or_group for p in given.values()}
    preset = [f"{key}={value}" for key, value in (params or {}).items() if key not in keys]
    lists: dict[str, list[str]] = {}  # one list of overrides per key, the product taken over them
    for override, p in [*given.items(), *((o, parse(o)) for o in preset)]:
        key = p.get_key_element()
        try:
            if not p.is_sweep_override():
                lists[key] = [f"{key}={p.get_value_element_as_str()}"]
            elif p.is_discrete_sweep():
                lists[key] = [f"{key}={value}" for value in p.sweep_string_iterator()]
            else:
                raise UsageError(f"cannot expand the sweep: {override}: only lists, range() and glob() sweep here")
        except HydraException as exc:
            raise UsageError(f"cannot expand the sweep: {override}: {' '.join(str(exc).split())}") from None
    return [list(job) for job in itertools.product(*lists.values())]


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
        return plain(trimmed, resolve=True), problems
    except OmegaConfBaseException:
        return None, []


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
    """``compose_job`` in a session of its own: the config as a plain dict (None when nothing composed) and
    every problem found."""
    with hydra_session(config_name, schema):
        composed = compose_job(config_name, overrides)
    return composed.raw, composed.problems


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
    cfg: Any,
    out: Path,
    raw: dict[str, Any],
    *,
    job: str,
    summary: dict[str, Any],
    table: tuple[str, list[str], list[Any]],
    image: tuple[str, Path],
) -> None:
    """Log a command's report to W&B (``cfg`` is its TrackerConfig): the summary figures, one table of
    ``(key, columns, rows)`` (each row read by attribute) and one image. The report is already written, so a
    failure is a warning, never the end of the command."""
    import logging

    if cfg.backend != "wandb":
        return
    try:
        import wandb

        run = wandb.init(
            project=cfg.project,
            entity=cfg.entity,
            group=cfg.group,
            tags=[*cfg.tags, job],
            name=f"{job}-{out.name}",
            mode=cfg.mode,
            dir=str(out),
            config=raw,
            job_type=job,
            settings=wandb.Settings(console="off", silent=True, x_disable_stats=True),
        )
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
