"""The template contract: a folder with a declarative ``template.yaml``, an entry point and a baseline.

A template is a folder::

    mytask/
      template.yaml   what the task is and what a plan may change (read without running any code)
      train.py        the entry point: ``python train.py --out_dir DIR --seed S --steps N --KNOB V --SLOT OPTION``
                      writes DIR/metrics.json (``experiments.metrics.Metrics``)
      ...             anything else it needs (data it ships, helpers); nothing is downloaded at run time

``template.yaml`` declares (see ``TemplateSpec``): a name, title, domain and description; the metric
and its direction; *knobs* (numbers or choices with ranges, for sensitivity sweeps); *components*
(slots of the method space, each with its options and the baseline's option: optimizer, schedule,
regularizer, normalization, architecture, augmentation, loss, prompt format, ...); the *extension
points* model-written code may implement and the files it may edit; the data's provenance and
licence; and named *scales*: ``smoke`` (a few seconds, for ``fars template check``), ``ci`` (the
default) and larger ones worth a GPU. The baseline is every knob and component at its default.

FARS finds the bundled templates under ``experiments/`` and the folders of ``experiment.template_dirs``
(a template folder, or a folder of them). ``fars template check DIR`` validates one: the spec, a
sandboxed smoke run of the baseline and of a method, and the metrics contract.

A template folder may come from anywhere, so its spec is untrusted input: read through
``fars.safe_files`` (a plain file of at most ``SPEC_MAX_BYTES``, never a link, FIFO or device; YAML with
bounded nesting and alias expansion), and every path it names (``entry``, ``editable``) must stay inside
its folder without passing a link. A refused spec is named with what to do, never its content.

Plain dataclasses, PyYAML and ``fars.safe_files`` (standard library only): every training process reads
its spec at start, and building pydantic models at import would cost more than a simulated job itself.
"""

from __future__ import annotations

import argparse
import math
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fars import safe_files  # the one reading path for untrusted files (standard library only; mounted in the sandbox)

KINDS = ("float", "int", "choice")
SPEC_FILE = "template.yaml"
# a spec is a few KB (the bundled ones 1-6 KB): a larger one is refused by its size before it is read, which also
# bounds what PyYAML's pure-Python parser spends on it (about 40 microseconds a token on a busy core)
SPEC_MAX_BYTES = 64 * 1024
SPEC_MAX_VALUES = 10_000  # scalars, lists and maps once aliases are expanded (a spec has a few hundred)
SPEC_MAX_BRACKETS = 32  # [ and { open at once (a spec has 3): PyYAML's scanner spends time per token on each
BUNDLED_DIR = Path(__file__).resolve().parent
Value = float | int | str
_PLAIN_SPEC = (
    "A template.yaml must be a plain file of its own in its template folder (no link, FIFO or device, no hard "
    f"link) of at most {SPEC_MAX_BYTES // 1024} KiB, with no YAML anchors repeated without end"
)


class TemplateError(ValueError):
    """A template folder or its spec is invalid; the message names the file and the field.

    ``problems`` holds one line per problem when several templates were refused at once (discovery).
    """

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


@dataclass(frozen=True, kw_only=True)
class Knob:
    """One setting a plan may choose, with its default and its allowed range or choices."""

    name: str
    kind: Literal["float", "int", "choice"]
    default: float | int | str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list[str] = field(default_factory=list)
    help: str = ""
    # {slot: options}: the knob acts only where that component takes one of those options (digits' dropout
    # probability only under regularizer dropout); empty: it always acts. A paper's settings table leaves out
    # a knob no condition of the study used (relay reviewers read dropout 0.3 under "regularizer: none" as a
    # contradiction)
    used_with: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"knob name {self.name!r} must be a Python identifier (it becomes --{self.name})")
        if self.kind not in KINDS:
            raise ValueError(f"knob {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "choice" and self.default not in self.choices:
            raise ValueError(f"knob {self.name!r}: default {self.default!r} is not among its choices {self.choices}")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"knob {self.name!r}: low {self.low} is above high {self.high}")

    def acts_under(self, components: dict[str, str]) -> bool:
        """Whether the knob acts in a run with these component choices (``used_with``)."""
        return all(components.get(slot) in options for slot, options in self.used_with.items())

    def coerce(self, value: object) -> float | int | str:
        """Turn a planned value into a valid one: parse, clamp into range, or fall back to default."""
        if self.kind == "choice":
            text = str(value).strip().lower()
            return text if text in self.choices else self.default
        try:
            number = float(str(value))
        except ValueError:
            return self.default
        if not math.isfinite(number):
            return self.default
        if self.low is not None:
            number = max(number, self.low)
        if self.high is not None:
            number = min(number, self.high)
        return round(number) if self.kind == "int" else float(f"{number:.4g}")


@dataclass(frozen=True, kw_only=True)
class Component:
    """A slot of the method space: the options a method may pick (option -> what it does) and the baseline's."""

    name: str
    help: str
    options: dict[str, str]
    default: str
    # option -> {other slot: options}: the option acts exactly as the default unless one of those slots has
    # one of those options (digits: Adam is AdamW unless the regularizer is weight decay)
    acts_only_with: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    # option -> {scale: why it stands far from the baseline at that scale} (``fars template check --audit``);
    # "*" for every scale (a plain string in template.yaml)
    known_effects: dict[str, dict[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"component name {self.name!r} must be a Python identifier (it becomes --{self.name})")
        if len(self.options) < 2:
            raise ValueError(f"component {self.name!r} needs at least two options (got {sorted(self.options)})")
        if self.default not in self.options:
            raise ValueError(f"component {self.name!r}: default {self.default!r} is not among {sorted(self.options)}")
        bad = [o for o in self.options if not o.replace("_", "").replace("-", "").isalnum()]
        if bad:
            raise ValueError(f"component {self.name!r}: option names must be plain words (got {bad})")
        for option in self.acts_only_with:
            if option not in self.options or option == self.default:
                raise ValueError(
                    f"component {self.name!r}: acts_only_with names {option!r}, which is not one of its "
                    f"alternatives {self.alternatives}"
                )
        for option, why in self.known_effects.items():
            if option not in self.options or option == self.default or not all(w.strip() for w in why.values()):
                raise ValueError(
                    f"component {self.name!r}: known_effects.{option} must explain one of its alternatives "
                    f"{self.alternatives} in words"
                )

    @property
    def alternatives(self) -> list[str]:
        """The options other than the baseline's, in declared order."""
        return [o for o in self.options if o != self.default]


@dataclass(frozen=True, kw_only=True)
class ExtensionPoint:
    """A function model-written code may define to change the template (``--method FILE``)."""

    name: str
    signature: str
    help: str = ""


@dataclass(frozen=True, kw_only=True)
class DataSource:
    """Where the template's data comes from and under which licence."""

    description: str
    licence: str
    attribution: str = ""
    generated: bool = False  # made by the template itself (no third-party data)


@dataclass(frozen=True, kw_only=True)
class Scale:
    """A named size of the template: steps and knob values (smoke for checks, ci by default, gpu for GPUs)."""

    steps: int
    knobs: dict[str, Value] = field(default_factory=dict)
    note: str = ""


@dataclass(frozen=True, kw_only=True)
class TemplateSpec:
    """A template's declared contract (see the module docstring)."""

    name: str
    title: str
    domain: str
    description: str
    knobs: list[Knob]
    metric: str
    higher_is_better: bool = True
    # the metric's possible values (cartpole's return: 0 to 500): intervals are cut to it; None: inferred
    metric_range: tuple[float, float] | None = None
    components: list[Component] = field(default_factory=list)
    extension_points: list[ExtensionPoint] = field(default_factory=list)
    editable: list[str] = field(default_factory=list)  # files of the folder model-written code may edit
    data: DataSource | None = None
    scales: dict[str, Scale] = field(default_factory=dict)
    entry: str = "train.py"
    kind: Literal["training", "inference"] = "training"  # inference: the subject is a model (no training)
    engines: tuple[str, ...] = ("plain", "ddp", "deepspeed")
    research: bool = True  # false: never picked by `experiment.templates: [auto]` (e.g. a benchmark tool)
    folder: Path = BUNDLED_DIR

    @property
    def entry_path(self) -> Path:
        """The entry point's file."""
        return self.folder / self.entry

    @property
    def bundled(self) -> bool:
        """Whether the template ships with FARS (under ``experiments/``)."""
        return self.folder.parent == BUNDLED_DIR

    def knob(self, name: str) -> Knob:
        """The knob of that name; KeyError names the valid ones."""
        for k in self.knobs:
            if k.name == name:
                return k
        raise KeyError(f"template {self.name!r} has no knob {name!r}; knobs: {[k.name for k in self.knobs]}")

    def component(self, name: str) -> Component:
        """The component slot of that name; KeyError names the valid ones."""
        for c in self.components:
            if c.name == name:
                return c
        raise KeyError(f"template {self.name!r} has no component {name!r}; components: {self.component_names}")

    @property
    def setting_names(self) -> list[str]:
        """Every flag a plan may set: the knobs, then the component slots."""
        return [*(k.name for k in self.knobs), *(c.name for c in self.components)]

    @property
    def component_names(self) -> list[str]:
        """The component slots, in declared order."""
        return [c.name for c in self.components]

    @property
    def extension(self) -> str:
        """The extension points as one contract text (what a model-written method module may define)."""
        if not self.extension_points:
            return ""
        parts = [f"{e.signature}" + (f" ({e.help})" if e.help else "") for e in self.extension_points]
        return (
            "A Python module that may define any of: " + "; ".join(parts) + ". Undefined ones keep the template's "
            "own; config holds the knobs and components."
        )

    def argument_parser(self, default_steps: int | None = None) -> argparse.ArgumentParser:
        """The flags every entry point of this template starts from: run options, one per knob and component."""
        p = argparse.ArgumentParser(description=self.description)
        p.add_argument("--out_dir", type=Path, required=True)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--steps", type=int, default=default_steps or self.scale("ci").steps)
        kinds: dict[str, type] = {"float": float, "int": int, "choice": str}
        for knob in self.knobs:
            kwargs: dict[str, Any] = {"choices": knob.choices} if knob.kind == "choice" else {}
            p.add_argument(f"--{knob.name}", type=kinds[knob.kind], default=knob.default, help=knob.help, **kwargs)
        for slot in self.components:
            p.add_argument(f"--{slot.name}", choices=list(slot.options), default=slot.default, help=slot.help)
        return p

    def defaults(self) -> dict[str, Value]:
        """Every knob at its default."""
        return {k.name: k.default for k in self.knobs}

    def baseline_components(self) -> dict[str, str]:
        """Every component slot at the baseline's option."""
        return {c.name: c.default for c in self.components}

    def has_scale(self, name: str) -> bool:
        """Whether the template runs at scale ``name`` (``ci`` always: a spec without one has a fallback)."""
        return name == "ci" or name in self.scales

    def scale(self, name: str) -> Scale:
        """A named scale; ``ci`` falls back to 300 steps at the defaults when the spec declares none."""
        if name in self.scales:
            return self.scales[name]
        if name == "ci":
            return Scale(steps=300)
        raise KeyError(f"template {self.name!r} declares no scale {name!r}; scales: {sorted(self.scales)}")


# -- reading template.yaml ------------------------------------------------------------------------
def _require(data: dict[str, Any], key: str, where: str) -> Any:
    if key not in data:
        raise TemplateError(f"{where}: missing required field {key!r}")
    return data[key]


def _knob(raw: Any, where: str) -> Knob:
    if not isinstance(raw, dict):
        raise TemplateError(f"{where}: each knob must be a mapping (got {raw!r})")
    known = {"name", "kind", "default", "low", "high", "log", "choices", "help", "used_with"}
    extra = sorted(set(raw) - known)
    if extra:
        raise TemplateError(f"{where}: unknown field(s) {extra} (known: {sorted(known)})")
    try:
        return Knob(
            name=str(_require(raw, "name", where)),
            kind=_require(raw, "kind", where),
            default=_require(raw, "default", where),
            low=None if raw.get("low") is None else float(raw["low"]),
            high=None if raw.get("high") is None else float(raw["high"]),
            log=bool(raw.get("log", False)),
            choices=[str(c) for c in raw.get("choices") or []],
            help=str(raw.get("help", "")),
            used_with={str(slot): [str(o) for o in options] for slot, options in (raw.get("used_with") or {}).items()},
        )
    except (ValueError, TypeError, AttributeError) as exc:
        raise TemplateError(f"{where}: {exc}") from None


def _component(name: str, raw: Any, where: str) -> Component:
    if not isinstance(raw, dict) or not isinstance(raw.get("options"), dict):
        raise TemplateError(f"{where}: a component needs 'options' (option -> what it does) and 'default'")
    unknown = sorted(set(raw) - {"help", "options", "default", "acts_only_with", "known_effects"})
    if unknown:
        raise TemplateError(
            f"{where}: unknown field(s) {unknown} (known: acts_only_with, default, help, known_effects, options)"
        )
    effects = raw.get("known_effects") or {}
    if not isinstance(effects, dict):
        raise TemplateError(f"{where}: known_effects must map an option to why it differs from the baseline")
    scoped = {
        str(option): {str(k): str(v) for k, v in why.items()} if isinstance(why, dict) else {"*": str(why)}
        for option, why in effects.items()
    }
    acts = raw.get("acts_only_with") or {}
    if not isinstance(acts, dict) or not all(isinstance(v, dict) and v for v in acts.values()):
        raise TemplateError(f"{where}: acts_only_with must map an option to {{other slot: [options]}}")
    try:
        return Component(
            name=name,
            help=str(raw.get("help", "")),
            options={str(k): str(v) for k, v in raw["options"].items()},
            default=str(_require(raw, "default", where)),
            acts_only_with={
                str(o): {str(slot): [str(x) for x in (v if isinstance(v, list) else [v])] for slot, v in w.items()}
                for o, w in acts.items()
            },
            known_effects=scoped,
        )
    except ValueError as exc:
        raise TemplateError(f"{where}: {exc}") from None


def spec_from_dict(data: dict[str, Any], folder: Path, where: str = SPEC_FILE) -> TemplateSpec:
    """A ``TemplateSpec`` from the parsed contents of ``template.yaml``; ``TemplateError`` names what is wrong."""
    if not isinstance(data, dict):
        raise TemplateError(f"{where}: must be a YAML mapping (got {type(data).__name__})")
    known = {
        "name",
        "title",
        "domain",
        "description",
        "metric",
        "higher_is_better",
        "metric_range",
        "knobs",
        "components",
        "extension_points",
        "editable",
        "data",
        "scales",
        "entry",
        "kind",
        "engines",
        "research",
    }
    extra = sorted(set(data) - known)
    if extra:
        raise TemplateError(f"{where}: unknown field(s) {extra} (known: {sorted(known)})")
    missing = [k for k in ("name", "domain", "description", "metric", "data", "scales") if k not in data]
    if missing:
        raise TemplateError(
            f"{where}: missing required field {missing[0]!r}" + (f" (and {missing[1:]})" if missing[1:] else "")
        )
    name = str(_require(data, "name", where))
    if not name.replace("_", "").isalnum() or not name[0].isalpha():
        raise TemplateError(f"{where}: name {name!r} must be letters, digits and underscores, starting with a letter")
    knobs = [_knob(k, f"{where}: knobs[{i}]") for i, k in enumerate(data.get("knobs") or [])]
    components_raw = data.get("components") or {}
    if not isinstance(components_raw, dict):
        raise TemplateError(f"{where}: components must be a mapping of slot -> {{options, default, help}}")
    components = [_component(str(n), c, f"{where}: components.{n}") for n, c in components_raw.items()]
    by_slot = {c.name: c for c in components}
    for c in components:
        for option, needs in c.acts_only_with.items():
            for slot, options in needs.items():
                other = by_slot.get(slot)
                if other is None or slot == c.name:
                    raise TemplateError(
                        f"{where}: components.{c.name}.acts_only_with.{option} names slot {slot!r}, which is no "
                        f"other component (components: {sorted(by_slot)})"
                    )
                wrong = [o for o in options if o not in other.options]
                if wrong:
                    raise TemplateError(
                        f"{where}: components.{c.name}.acts_only_with.{option}: {wrong} are not options of "
                        f"{slot!r} ({sorted(other.options)})"
                    )
    for k in knobs:
        for slot, options in k.used_with.items():
            other = by_slot.get(slot)
            wrong = [o for o in options if other is None or o not in other.options]
            if other is None or wrong:
                raise TemplateError(
                    f"{where}: knob {k.name!r}: used_with names "
                    + (
                        f"slot {slot!r}, which is no component ({sorted(by_slot)})"
                        if other is None
                        else f"{wrong}, which are not options of {slot!r} ({sorted(other.options)})"
                    )
                )
    clash = {k.name for k in knobs} & {c.name for c in components}
    if clash:
        raise TemplateError(f"{where}: {sorted(clash)} are both a knob and a component; rename one")
    if not knobs and not components:
        raise TemplateError(f"{where}: a template needs at least one knob or component for plans to vary")
    points = [
        ExtensionPoint(
            name=str(_require(e, "name", where)),
            signature=str(_require(e, "signature", where)),
            help=str(e.get("help", "")),
        )
        for e in data.get("extension_points") or []
    ]
    data_raw = data.get("data")
    if not isinstance(data_raw, dict):
        raise TemplateError(f"{where}: 'data' must say where the data comes from: {{description, licence}}")
    source = DataSource(
        description=str(_require(data_raw, "description", f"{where}: data")),
        licence=str(_require(data_raw, "licence", f"{where}: data")),
        attribution=str(data_raw.get("attribution", "")),
        generated=bool(data_raw.get("generated", False)),
    )
    scales: dict[str, Scale] = {}
    for scale_name, raw in (data.get("scales") or {}).items():
        if not isinstance(raw, dict) or "steps" not in raw:
            raise TemplateError(f"{where}: scales.{scale_name} needs 'steps'")
        scales[str(scale_name)] = Scale(
            steps=int(raw["steps"]), knobs=dict(raw.get("knobs") or {}), note=str(raw.get("note", ""))
        )
    if "smoke" not in scales:
        raise TemplateError(f"{where}: scales.smoke is required (a run of a few seconds for `fars template check`)")
    kinds: tuple[Literal["training", "inference"], ...] = ("training", "inference")
    kind = next((k for k in kinds if k == data.get("kind", "training")), None)
    if kind is None:
        raise TemplateError(f"{where}: kind must be 'training' or 'inference' (got {data.get('kind')!r})")
    metric = str(_require(data, "metric", where))
    bounds = data.get("metric_range")
    if bounds is not None:
        try:
            low, high = (float(b) for b in bounds)
        except (TypeError, ValueError):
            raise TemplateError(f"{where}: metric_range must be [low, high], two numbers (got {bounds!r})") from None
        if not low < high:
            raise TemplateError(f"{where}: metric_range must be [low, high] with low < high (got {bounds!r})")
        bounds = (low, high)
    spec = TemplateSpec(
        name=name,
        title=str(data.get("title", name)),
        domain=str(_require(data, "domain", where)),
        description=" ".join(str(_require(data, "description", where)).split()),
        knobs=knobs,
        metric=metric,
        higher_is_better=bool(data.get("higher_is_better", True)),
        metric_range=bounds,
        components=components,
        extension_points=points,
        editable=[str(f) for f in data.get("editable") or []],
        data=source,
        scales=scales,
        entry=str(data.get("entry", "train.py")),
        kind=kind,
        engines=tuple(data.get("engines") or (("plain",) if kind == "inference" else ("plain", "ddp", "deepspeed"))),
        research=bool(data.get("research", True)),
        folder=folder,
    )
    for c in components:
        for option, why in c.known_effects.items():
            wrong = sorted(set(why) - set(scales) - {"*"})
            if wrong:
                raise TemplateError(
                    f"{where}: components.{c.name}.known_effects.{option} names {wrong}, which are no scales "
                    f"({sorted(scales)}); give a text, or a mapping of scale -> text"
                )
    for scale_name, scale in scales.items():
        for key in scale.knobs:
            if key not in {k.name for k in knobs}:
                raise TemplateError(f"{where}: scales.{scale_name}.knobs names {key!r}, which is no knob")
    for what, name in [("entry", spec.entry), *(("editable file", edit) for edit in spec.editable)]:
        parts = Path(name).parts
        if not parts or Path(name).is_absolute() or ".." in parts:
            raise TemplateError(
                f"{where}: {what} {name!r} must be a path inside the template folder (relative, without '..')"
            )
    return spec


_SPECS: dict[Path, TemplateSpec] = {}


def load_spec(folder: Path) -> TemplateSpec:
    """The spec of the template in ``folder`` (its ``template.yaml``), read once per process.

    The spec is read as untrusted input (``read_spec_data``), and every path it names (``entry``, the
    ``editable`` files) must lie inside the folder without passing a link; ``TemplateError`` names what not.
    """
    folder = Path(folder).resolve()
    if folder in _SPECS:
        return _SPECS[folder]
    path = folder / SPEC_FILE
    if not os.path.lexists(path):
        raise TemplateError(f"{folder}: no {SPEC_FILE}; a template folder holds one (see experiments/spec.py)")
    data = read_spec_data(folder)
    try:
        spec = spec_from_dict(data, folder, where=str(path))
    except TemplateError:
        raise
    except (TypeError, AttributeError, KeyError, ValueError) as exc:  # a field of another YAML type than its own
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
        raise TemplateError(
            f"{path}: a field has the wrong type ({detail}); see TemplateSpec in experiments/spec.py for each "
            "field's type"
        ) from None
    for what, name, required in [("entry", spec.entry, True), *(("editable file", e, False) for e in spec.editable)]:
        problem = _path_problem(folder, name, required=required, hard_links_ok=spec.bundled)
        if problem is not None:
            raise TemplateError(f"{path}: {what} {name!r} {problem}")
    _SPECS[folder] = spec
    return spec


_PARSED: dict[Path, tuple[tuple[int, ...], Any]] = {}  # spec file -> (its identity when read, data or refusal)


def read_spec_data(folder: Path) -> Any:
    """The parsed ``template.yaml`` of ``folder``, read as untrusted input: a plain file of its own of at most
    ``SPEC_MAX_BYTES`` (refused by its size before it is read), opened without following a link or blocking
    on a FIFO, and YAML parsed with limits on nesting and alias expansion (``fars.safe_files``).
    ``TemplateError`` names the file, what was refused and what to do, never the file's content.

    Parsed once per version of the file (its inode, size and times): every lookup of a template by name
    scans them all, and a refused one costs its parse once, not once per lookup. The data is shared: read it,
    never change it.
    """
    path = folder / SPEC_FILE
    try:
        info = os.lstat(path)
        key: tuple[int, ...] | None = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
    except OSError:
        key = None
    cached = _PARSED.get(path)
    if key is not None and cached is not None and cached[0] == key:
        if isinstance(cached[1], TemplateError):
            raise TemplateError(str(cached[1])) from None
        return cached[1]
    try:
        data = _parse_spec(folder)
    except TemplateError as exc:
        if key is not None:
            _PARSED[path] = (key, exc)
        raise
    if key is not None:
        _PARSED[path] = (key, data)
    return data


def _parse_spec(folder: Path) -> Any:
    import yaml

    path = folder / SPEC_FILE
    todo = f"{_PLAIN_SPEC}: replace it with one, or leave {folder} out of experiment.template_dirs"
    try:
        raw = safe_files.read_file(folder, SPEC_FILE, max_bytes=SPEC_MAX_BYTES, allow_hard_links=_bundled(folder))
        return safe_files.load_yaml(
            raw, source=str(path), max_bytes=SPEC_MAX_BYTES, max_nodes=SPEC_MAX_VALUES, max_depth=SPEC_MAX_BRACKETS
        )
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise TemplateError(f"{reason if str(path) in reason else f'{path}: {reason}'}. {todo}") from None
    except yaml.YAMLError as exc:
        raise TemplateError(f"{path}: not readable YAML ({_yaml_problem(exc)})") from None
    except ValueError as exc:  # fars.safe_files.UnsafeYamlError: too large, too deep, or a YAML bomb
        raise TemplateError(f"{exc}. {todo}") from None


def _bundled(folder: Path) -> bool:
    """Whether ``folder`` is one of FARS's own templates (an installer may hard-link their files)."""
    try:
        return Path(folder).resolve().parent == BUNDLED_DIR
    except OSError:
        return False


def _yaml_problem(exc: Exception) -> str:
    """PyYAML's complaint and where, without the snippet of the file it quotes."""
    problem = getattr(exc, "problem", None)
    if problem is None:
        return " ".join(str(exc).split())[:200]
    mark = getattr(exc, "problem_mark", None)
    context = getattr(exc, "context", None)
    at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{f'{context}: ' if context else ''}{problem}{at}"[:300]


def _path_problem(folder: Path, name: str, *, required: bool, hard_links_ok: bool) -> str | None:
    """Why the file ``name`` a spec names is not a plain file inside ``folder`` (None: it is, or it is optional
    and missing). Every component is looked at without following it: a link could lead anywhere."""
    current, info = folder, None
    parts = Path(name).parts
    for i, part in enumerate(parts):
        current = current / part
        try:
            info = os.lstat(current)
        except (FileNotFoundError, NotADirectoryError):
            return f"does not exist in {folder}" if required else None
        if stat.S_ISLNK(info.st_mode):
            return (
                f"passes through a link ({current}), which may lead out of the template folder; make it a plain "
                f"file inside {folder}"
            )
        if i < len(parts) - 1 and not stat.S_ISDIR(info.st_mode):
            return f"does not exist in {folder}" if required else None
    if info is None or not stat.S_ISREG(info.st_mode):
        return f"is not a plain file (a folder, FIFO or device?); make it a plain file inside {folder}"
    if info.st_nlink > 1 and not hard_links_ok:
        return (
            f"has {info.st_nlink} hard links (one may be a file outside the template folder); make it a file of "
            f"its own in {folder} (copy it to a new name, then move that over it)"
        )
    return None


def scan_templates(extra_dirs: list[str] | tuple[str, ...] = ()) -> tuple[dict[str, Path], list[str]]:
    """Every template FARS can use by name (the bundled ones, then those under ``extra_dirs``), and one
    problem per template folder it cannot use (each naming the folder or file and what to do).

    Each extra entry is a template folder (it holds ``template.yaml``) or a folder of template folders. A
    folder of them is scanned without following links (a linked template folder is named, not entered) and
    without opening anything but the specs, each read as untrusted input (``read_spec_data``). A name
    defined twice is a problem naming both folders.
    """
    found: dict[str, Path] = {}
    problems: list[str] = []

    def add(folder: Path) -> None:
        try:
            data = read_spec_data(folder)
        except TemplateError as exc:
            problems.append(str(exc))
            return
        name = str(data.get("name") or "") if isinstance(data, dict) else ""
        if not name:
            problems.append(f"{folder / SPEC_FILE}: missing required field 'name'")
        elif name in found and found[name] != folder:
            problems.append(f"template {name!r} is defined twice: in {found[name]} and in {folder}")
        else:
            found[name] = folder

    for folder in _template_subfolders(BUNDLED_DIR, problems):
        add(folder)
    for entry in extra_dirs:
        root = Path(entry).expanduser().resolve()  # the user's own path: followed as they named it
        if os.path.lexists(root / SPEC_FILE):
            add(root)
        elif root.is_dir():
            before = len(problems)
            subs = _template_subfolders(root, problems)
            if not subs and len(problems) == before:
                problems.append(f"experiment.template_dirs: {root} holds no template ({SPEC_FILE} in it or below)")
            for sub in subs:
                add(sub)
        else:
            problems.append(f"experiment.template_dirs: {root} is not a folder")
    return found, problems


def _template_subfolders(root: Path, problems: list[str]) -> list[Path]:
    """The folders directly under ``root`` that hold a ``template.yaml`` (of whatever kind: one that is a link
    or a FIFO is refused by name when read). Links are never entered: one to a template folder is a problem."""
    subs = []
    try:
        with os.scandir(root) as scan:
            entries = sorted(scan, key=lambda e: e.name)
    except OSError as exc:
        problems.append(f"experiment.template_dirs: {root} cannot be listed ({exc.strerror})")
        return []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_symlink():
            if os.path.lexists(os.path.join(entry.path, SPEC_FILE)):  # looked at, never read
                problems.append(
                    f"{entry.path} is a link to a template folder; links inside a template_dirs folder are not "
                    f"followed: add the folder it leads to to experiment.template_dirs itself, if you trust it"
                )
            continue
        if entry.is_dir(follow_symlinks=False) and os.path.lexists(os.path.join(entry.path, SPEC_FILE)):
            subs.append(Path(entry.path))
    return subs


def template_folders(extra_dirs: list[str] | tuple[str, ...] = ()) -> dict[str, Path]:
    """Every template FARS can use by name: the bundled ones, then those under ``extra_dirs``.

    Each extra entry is a template folder (it holds ``template.yaml``) or a folder of template
    folders. Any folder that cannot be used (an unreadable or refused spec, a name defined twice) is a
    ``TemplateError`` listing every such problem (``scan_templates`` returns them instead).
    """
    found, problems = scan_templates(extra_dirs)
    if len(problems) == 1:
        raise TemplateError(problems[0])
    if problems:
        raise TemplateError(f"{len(problems)} template problems:\n  " + "\n  ".join(problems), problems)
    return found


def available_templates(extra_dirs: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Names of every template (bundled and under ``extra_dirs``)."""
    return sorted(template_folders(extra_dirs))


def load_template(name: str, extra_dirs: list[str] | tuple[str, ...] = ()) -> TemplateSpec:
    """The spec of a template by name; an unknown name gets the list of known ones."""
    folders = template_folders(extra_dirs)
    if name not in folders:
        raise KeyError(f"unknown experiment template {name!r}; available: {sorted(folders)}")
    return load_spec(folders[name])
