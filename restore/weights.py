"""The model registry: weights.toml -> frozen typed specs, verified weights, loaded models.

The registry lives at the repository root and inside the installed wheel as
``restore/weights.toml``; an installed ``restore`` reads the packaged copy, a source
checkout (editable install) the one at the root. ``$RESTORE_REGISTRY`` names another file
to use instead (a mirror, or a test). A user registry (same format, written by
``restore models import``) is merged over it: ``$RESTORE_CONFIG_DIR/registry.toml``, else
``$XDG_CONFIG_HOME/restore/registry.toml``, else ``~/.config/restore/registry.toml``; the
files it imports live under ``$RESTORE_DATA_DIR``, else ``$XDG_DATA_HOME/restore``, else
``~/.local/share/restore``. (These paths are the one place below the CLI that reads the
environment: every caller of ``load_registry()`` must see the same registry.)

Format (schema 1)::

    schema = 1
    [defaults]                      # task key -> model name ("" = none yet)
    "sr-x4" = ""
    jpeg = ["a.jpeg", "a.jpeg-hq"]  # denoise/jpeg: or several, each for its declared range
                                    # (picked per image: see pick_by_level)
    [models."swinir-m.sr-x4"]       # family[-norm]-size.task[-training]
    description = "one line"
    family = "swinir"               # restore.archs.build(family, **config)
    norm = "layernorm"              # or "iln"; must agree with the config
    task = "sr"                     # "sr" | "denoise" | "jpeg"
    scale = 4                       # sr only, == config.upscale
    sigma_range = [0, 50]           # denoise only (optional)
    quality_range = [10, 40]        # jpeg only (optional)
    license = "Apache-2.0"
    params = 11900199
    fp16_safe = false
    training = "DF2K"               # optional
    sha256 = "<64 hex>"
    size = 67869037                 # bytes
    source = { kind = "hub", repo_id = "org/name", filename = "f.pth", revision = "<40 hex>" }
                                    # or { kind = "embedded", path = "models/x.safetensors" }
                                    # (inside the package) or { kind = "file", path = "..." }
                                    # (user registry: absolute, or under the data dir)
    psnr = { Set5 = 32.92 }         # benchmark -> dB (Y channel for SR)
    psnr_source = "published"       # or "measured", or a sentence saying where from
    [models."swinir-m.sr-x4".config]
    upscale = 4 ...                 # the reference constructor arguments
    [presets."swinir-m-x4"]         # named configs for `restore models import --family`
    family = "swinir" ...

Parsing needs no torch: configs are checked against the architecture when a model is
built (and every shipped entry is built by the tests).

Weights are verified by sha256 and size after a download and before the first load in a
process (a file that changed on disk is hashed again); a Hub file that fails is deleted
from the cache. Hub downloads go through ``restore.hub`` into the standard Hugging Face
cache (HF_HOME / HF_HUB_CACHE / HF_ENDPOINT / HF_TOKEN / HF_HUB_OFFLINE apply).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Union

from .errors import (  # noqa: F401  (the weights errors, importable from here too)
    ChecksumError, ConfigError, NotCachedError, RestoreError, UsageError, WeightsError,
)
from .tasks import Task

if TYPE_CHECKING:
    from torch import nn

REGISTRY_NAME = "weights.toml"
USER_REGISTRY_NAME = "registry.toml"
SCHEMA = 1

# What `restore sr x4` and friends ask the registry for.
TASK_KEYS = ("sr-x2", "sr-x3", "sr-x4", "denoise", "jpeg")
# restore.archs.FAMILIES, spelled out so that parsing does not import torch (a test keeps
# the two equal).
FAMILIES = ("swinir", "hat", "hat_iln", "drct")
NORMS = ("layernorm", "iln")

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_COMMIT_RE = re.compile(r"[0-9a-f]{40}")
_REPO_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")


# -- errors -------------------------------------------------------------------------------

# WeightsError, NotCachedError and ChecksumError live in restore.errors (the one error
# table; restore.hub raises them too) and are importable from here as before.


class UnknownModelError(UsageError):
    """A model or preset name that the registry does not have (lists close matches)."""


class NoDefaultModelError(UsageError):
    """The registry declares no default model for a task yet."""


# -- the typed registry -------------------------------------------------------------------

@dataclass(frozen=True)
class HubSource:
    """A file in a Hugging Face Hub model repo, pinned to a commit."""

    repo_id: str
    filename: str
    revision: str  # full 40-hex commit
    kind: ClassVar[str] = "hub"

    def describe(self) -> str:
        return f"hub:{self.repo_id}/{self.filename}@{self.revision[:7]}"

    def to_data(self) -> dict[str, Any]:
        return {"kind": self.kind, "repo_id": self.repo_id, "filename": self.filename,
                "revision": self.revision}


@dataclass(frozen=True)
class EmbeddedSource:
    """A file shipped inside the package (``relpath`` under the ``restore`` package dir)."""

    relpath: str
    path: Path
    kind: ClassVar[str] = "embedded"

    def describe(self) -> str:
        return f"embedded:{self.relpath}"

    def to_data(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.relpath}


@dataclass(frozen=True)
class FileSource:
    """A local file (what ``restore models import`` registers in the user registry)."""

    path: Path
    kind: ClassVar[str] = "file"

    def describe(self) -> str:
        return f"file:{self.path}"

    def to_data(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": str(self.path)}


Source = Union[HubSource, EmbeddedSource, FileSource]


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry. ``config`` is read-only (lists frozen to tuples); pass it as
    ``restore.archs.build(spec.family, **spec.config)``."""

    name: str
    family: str
    config: Mapping[str, Any]
    norm: str  # "layernorm" | "iln"
    task: Task
    scale: int  # 1 for denoise/jpeg
    sigma_range: tuple[float, float] | None
    quality_range: tuple[int, int] | None
    in_chans: int
    license: str
    source: Source
    sha256: str
    size: int
    psnr: Mapping[str, float]
    description: str
    fp16_safe: bool
    params: int | None = None
    psnr_source: str = ""
    training: str = ""
    origin: str = ""  # the registry file the entry comes from

    def __hash__(self) -> int:
        return hash((self.name, self.sha256, self.source))

    @property
    def task_key(self) -> str:
        """"sr-x4", "denoise" or "jpeg": the key of [defaults]."""
        return f"sr-x{self.scale}" if self.task is Task.SR else self.task.value

    def config_dict(self) -> dict[str, Any]:
        """The config as plain JSON/TOML-ready data (tuples back to lists)."""
        return _thaw(self.config)

    def to_data(self) -> dict[str, Any]:
        """The entry as weights.toml data (what ``entry_toml`` writes)."""
        out: dict[str, Any] = {"description": self.description, "family": self.family,
                               "norm": self.norm, "task": self.task.value}
        if self.task is Task.SR:
            out["scale"] = self.scale
        if self.sigma_range is not None:
            out["sigma_range"] = list(self.sigma_range)
        if self.quality_range is not None:
            out["quality_range"] = list(self.quality_range)
        out["license"] = self.license
        if self.params is not None:
            out["params"] = self.params
        out["fp16_safe"] = self.fp16_safe
        if self.training:
            out["training"] = self.training
        out["sha256"] = self.sha256
        out["size"] = self.size
        out["source"] = self.source.to_data()
        if self.psnr:
            out["psnr"] = dict(self.psnr)
            out["psnr_source"] = self.psnr_source
        out["config"] = self.config_dict()
        return out


@dataclass(frozen=True)
class Preset:
    """A named architecture config for importing official checkpoints (``--family``)."""

    name: str
    family: str
    config: Mapping[str, Any]
    norm: str
    task: Task
    description: str
    license: str = ""
    params: int | None = None
    training: str = ""
    psnr: Mapping[str, float] = dataclasses.field(default_factory=lambda: MappingProxyType({}))
    psnr_source: str = ""
    sigma_range: tuple[float, float] | None = None
    quality_range: tuple[int, int] | None = None

    def config_dict(self) -> dict[str, Any]:
        return _thaw(self.config)


@dataclass(frozen=True)
class Registry:
    """The merged registry: shipped weights.toml, then the user registry over it."""

    models: Mapping[str, ModelSpec]
    defaults: Mapping[str, tuple[str, ...]]  # task key -> its default(s) in order, () = none
    presets: Mapping[str, Preset]
    files: tuple[Path, ...] = ()

    def get(self, name: str) -> ModelSpec:
        """The entry called ``name``; an unknown name lists the close matches."""
        spec = self.models.get(name)
        if spec is None:
            raise UnknownModelError(_unknown("model", name, list(self.models),
                                             "see 'restore models list'"))
        return spec

    def preset(self, name: str) -> Preset:
        preset = self.presets.get(name)
        if preset is None:
            raise UnknownModelError(_unknown("preset", name, list(self.presets),
                                             "valid: " + ", ".join(sorted(self.presets))))
        return preset

    def default_for(self, task_key: str) -> ModelSpec | None:
        """The default model for "sr-x2"/"sr-x3"/"sr-x4"/"denoise"/"jpeg" (the first of
        several: see defaults_for), or None."""
        if task_key not in TASK_KEYS:
            raise UsageError(f"unknown task key {task_key!r} (valid: {', '.join(TASK_KEYS)})")
        names = self.defaults.get(task_key)
        return self.models[names[0]] if names else None

    def require_default(self, task_key: str) -> ModelSpec:
        """``default_for``, or an error that says no default exists and how to pass a model."""
        spec = self.default_for(task_key)
        if spec is None:
            task = task_key.split("-")[0]
            raise NoDefaultModelError(
                f"no default model is available for {task_key} yet (no trained model for it "
                f"ships with this version of restore); pass one with --model NAME (see "
                f"'restore models list --task {task}') or --model FILE.safetensors, or import "
                "an official checkpoint with 'restore models import'")
        return spec

    def defaults_for(self, task_key: str) -> list[ModelSpec]:
        """Every default model of a task key (several for denoise/jpeg where the registry
        lists one per range of the degradation level), in registry order; [] for none."""
        self.default_for(task_key)  # checks the key
        return [self.models[n] for n in self.defaults.get(task_key, ())]

    def for_task(self, task: str | Task | None = None) -> list[ModelSpec]:
        """Entries of one task ("sr", "denoise", "jpeg" or a key like "sr-x4"), or all."""
        specs = list(self.models.values())
        if task is None:
            return specs
        task = task.value if isinstance(task, Task) else str(task)
        if task in TASK_KEYS and task.startswith("sr-"):
            return [s for s in specs if s.task_key == task]
        try:
            kind = Task(task)
        except ValueError:
            valid = ", ".join([t.value for t in Task] + [k for k in TASK_KEYS if "-" in k])
            raise UsageError(f"unknown task {task!r} (valid: {valid})") from None
        return [s for s in specs if s.task is kind]

    def defaults_of(self, name: str) -> list[str]:
        """The task keys whose default is (or, of several, includes) ``name``."""
        return [k for k, names in self.defaults.items() if name in names]


def level_range(spec: ModelSpec | Preset) -> tuple[float, float] | None:
    """The degradation levels a model declares it is for: sigma_range (denoise) or
    quality_range (jpeg); None for SR and where none is declared."""
    return (spec.sigma_range if spec.task is Task.DENOISE else
            spec.quality_range if spec.task is Task.JPEG else None)


def pick_by_level(items: Sequence, level: float | None, span_of=level_range,
                  channels: int | None = None):
    """Of several models for one task (a task's defaults), the one for an image whose
    noise sigma / JPEG quality is ``level``: the first whose range (``span_of(item)``: the
    declared sigma_range / quality_range by default) holds it, else the one whose range is
    nearest (a level beyond them all goes to the closest model), and the first when the
    level is unknown (None).

    ``channels``: the image's (1 gray, 3 colour). Models that take as many input channels
    (``item.in_chans``) come first: a gray image goes to a gray model whose range holds its
    level, else to a colour model whose range does (as RGB), else to the nearest gray one;
    a colour image never goes to a gray model while there is a colour one."""
    if not items:
        raise ValueError("no models to pick from")
    same = list(items) if channels is None else (
        [i for i in items if i.in_chans == channels] or list(items))
    if level is None or len(items) == 1:
        return same[0]

    def distance(item) -> float:
        span = span_of(item)
        if span is None:
            return math.inf
        return max(span[0] - level, 0.0, level - span[1])

    holding = [i for i in same if distance(i) == 0]
    if not holding and channels == 1:  # gray through a colour model made for this level
        holding = [i for i in items if distance(i) == 0]
    return holding[0] if holding else min(same, key=distance)  # min keeps the first of equals


def _unknown(what: str, name: str, names: list[str], hint: str) -> str:
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    msg = f"unknown {what} {name!r}"
    if close:
        msg += f" (did you mean {', '.join(repr(c) for c in close)}?)"
    return f"{msg}; {hint}"


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_thaw(v) for v in value]
    return value


# -- locations ----------------------------------------------------------------------------

def registry_path() -> Path:
    """Path of the shipped weights.toml (packaged copy first, then the source tree's)."""
    packaged = resources.files("restore") / REGISTRY_NAME
    if packaged.is_file():
        return Path(str(packaged))
    source = Path(__file__).resolve().parent.parent / REGISTRY_NAME
    if source.is_file():
        return source
    raise ConfigError(f"{REGISTRY_NAME} is missing from the installation (looked in "
                      f"{packaged} and {source}); reinstall restore")


def package_dir() -> Path:
    """The ``restore`` package folder (where embedded weights live, under models/)."""
    return Path(__file__).resolve().parent


def _xdg(env: str, xdg_env: str, fallback: str) -> Path:
    value = os.environ.get(env)
    if value:
        return Path(value).expanduser()
    xdg = os.environ.get(xdg_env)
    return (Path(xdg).expanduser() if xdg else Path.home() / fallback) / "restore"


def user_config_dir() -> Path:
    """$RESTORE_CONFIG_DIR, else $XDG_CONFIG_HOME/restore, else ~/.config/restore."""
    return _xdg("RESTORE_CONFIG_DIR", "XDG_CONFIG_HOME", ".config")


def user_data_dir() -> Path:
    """$RESTORE_DATA_DIR, else $XDG_DATA_HOME/restore, else ~/.local/share/restore."""
    return _xdg("RESTORE_DATA_DIR", "XDG_DATA_HOME", ".local/share")


def user_registry_path() -> Path:
    return user_config_dir() / USER_REGISTRY_NAME


def base_registry_path() -> Path:
    """The registry the user registry is merged over: $RESTORE_REGISTRY or the shipped one."""
    env = os.environ.get("RESTORE_REGISTRY")
    return Path(env).expanduser() if env else registry_path()


def _toml_loads(text: str):
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    return tomllib.loads(text)


def _read_toml(path: Path) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the registry ({exc.strerror or exc})") from None


def read_registry() -> dict:
    """The shipped weights.toml as plain data (``load_registry`` gives the typed form)."""
    return _read_toml(registry_path())


# -- parsing ------------------------------------------------------------------------------

class _Table:
    """A TOML table read key by key, with errors that name the entry and the key."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: must be a table, found {_tname(data)}")
        self.data, self.where = data, where

    def err(self, key: str, msg: str) -> ConfigError:
        return ConfigError(f"{self.where}: {key}: {msg}")

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str, required: bool = True) -> Any:
        if key not in self.data:
            if required:
                raise ConfigError(f"{self.where}: missing key {key!r}")
            return None
        return self.data[key]

    def text(self, key: str, required: bool = True, choices: tuple[str, ...] | None = None,
            pattern: re.Pattern | None = None, default: str = "") -> str:
        v = self.raw(key, required)
        if v is None:
            return default
        if not isinstance(v, str) or not v.strip():
            raise self.err(key, f"{v!r} must be a non-empty string")
        if "\n" in v:
            raise self.err(key, "must be one line")
        if choices is not None and v not in choices:
            raise self.err(key, f"{v!r} is not one of {', '.join(repr(c) for c in choices)}")
        if pattern is not None and not pattern.fullmatch(v):
            raise self.err(key, f"{v!r} is malformed (expected {_PATTERN_HELP[pattern]})")
        return v

    def integer(self, key: str, required: bool = True, minimum: int = 1) -> int | None:
        v = self.raw(key, required)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.err(key, f"{v!r} must be an integer")
        if v < minimum:
            raise self.err(key, f"{v} must be >= {minimum}")
        return v

    def flag(self, key: str, required: bool = True, default: bool = False) -> bool:
        v = self.raw(key, required)
        if v is None:
            return default
        if not isinstance(v, bool):
            raise self.err(key, f"{v!r} must be true or false")
        return v

    def span(self, key: str, lo: float, hi: float, integer: bool):
        v = self.raw(key, required=False)
        if v is None:
            return None
        ok = (isinstance(v, list) and len(v) == 2 and all(
            not isinstance(x, bool) and isinstance(x, int if integer else (int, float))
            for x in v))
        if not ok:
            kind = "integers" if integer else "numbers"
            raise self.err(key, f"{v!r} must be [low, high], two {kind}")
        a, b = v
        if not (lo <= a <= b <= hi):
            raise self.err(key, f"{v!r} must satisfy {lo} <= low <= high <= {hi}")
        return (int(a), int(b)) if integer else (float(a), float(b))

    def finish(self, allowed: set[str] | frozenset[str]) -> None:
        unknown = sorted(set(self.data) - set(allowed))
        if unknown:
            raise ConfigError(f"{self.where}: unknown key(s) {', '.join(map(repr, unknown))} "
                              f"(valid: {', '.join(sorted(allowed))})")


_PATTERN_HELP = {
    _NAME_RE: "letters, digits and . _ + - , starting with a letter or digit",
    _SHA256_RE: "64 lowercase hex digits",
    _COMMIT_RE: "a full 40-hex commit hash, lowercase; branches and tags are not pinned",
    _REPO_ID_RE: "ORG/NAME",
}


def _tname(v: Any) -> str:
    return {dict: "a table", list: "an array", str: "a string"}.get(type(v), type(v).__name__)


ENTRY_KEYS = frozenset({
    "description", "family", "norm", "task", "scale", "sigma_range", "quality_range",
    "license", "params", "fp16_safe", "training", "sha256", "size", "source", "config",
    "psnr", "psnr_source"})
PRESET_KEYS = frozenset({
    "description", "family", "norm", "task", "config", "license", "params", "training",
    "psnr", "psnr_source", "sigma_range", "quality_range"})
SOURCE_KEYS = {"hub": frozenset({"kind", "repo_id", "filename", "revision"}),
               "embedded": frozenset({"kind", "path"}),
               "file": frozenset({"kind", "path"})}


def _config(t: _Table, family: str, norm: str, task: Task, scale: int | None) -> dict:
    cfg = t.raw("config")
    where = f"{t.where}: config"
    if not isinstance(cfg, Mapping) or not cfg:
        raise t.err("config", "must be a non-empty table of constructor arguments")
    for k, v in cfg.items():
        if not isinstance(v, (str, int, float, bool, list)):
            raise ConfigError(f"{where}.{k}: {v!r} is not a plain value")
    cfg_norm = "iln" if family == "hat_iln" else cfg.get("norm", "layernorm")
    if cfg_norm != norm:
        raise t.err("norm", f"{norm!r} contradicts the config (family {family!r}, config norm "
                            f"{cfg_norm!r})")
    upscale = cfg.get("upscale")
    if task is Task.SR:
        if upscale != scale:
            raise ConfigError(f"{where}.upscale: {upscale!r} must equal scale = {scale}")
    elif upscale != 1:
        raise ConfigError(f"{where}.upscale: {upscale!r} must be 1 for task {task.value!r}")
    if cfg.get("in_chans", 3) not in (1, 3):
        raise ConfigError(f"{where}.in_chans: {cfg['in_chans']!r} must be 1 or 3")
    return dict(cfg)


def _psnr(t: _Table, required: bool) -> tuple[dict[str, float], str]:
    raw = t.raw("psnr", required)
    if raw is None:
        if t.has("psnr_source"):
            raise t.err("psnr_source", "given without psnr")
        return {}, ""
    if not isinstance(raw, Mapping) or (required and not raw):
        raise t.err("psnr", "must be a table benchmark = dB with at least one benchmark")
    out = {}
    for k, v in raw.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                or not 0 < v < 100:
            raise ConfigError(f"{t.where}: psnr.{k}: {v!r} must be a PSNR in dB")
        out[str(k)] = float(v)
    source = t.text("psnr_source", required=bool(out))
    return out, source


def _task_fields(t: _Table) -> tuple[Task, int, Any, Any]:
    task = Task(t.text("task", choices=tuple(x.value for x in Task)))
    if task is Task.SR:
        scale = t.integer("scale", minimum=2)
    else:
        scale = t.integer("scale", required=False, minimum=1) or 1
        if scale != 1:
            raise t.err("scale", f"{scale} must be 1 (or absent) for task {task.value!r}")
    return (task, scale, *_ranges(t, task))


def _ranges(t: _Table, task: Task) -> tuple[Any, Any]:
    """sigma_range and quality_range, each allowed only for its own task."""
    sigma = t.span("sigma_range", 0, 255, integer=False)
    quality = t.span("quality_range", 1, 100, integer=True)
    if sigma is not None and task is not Task.DENOISE:
        raise t.err("sigma_range", "is for task 'denoise' only")
    if quality is not None and task is not Task.JPEG:
        raise t.err("quality_range", "is for task 'jpeg' only")
    return sigma, quality


def _source(t: _Table, embedded_root: Path, data_dir: Path) -> Source:
    raw = t.raw("source")
    s = _Table(raw, f"{t.where}: source")
    kind = s.text("kind", choices=tuple(SOURCE_KEYS))
    s.finish(SOURCE_KEYS[kind])
    if kind == "hub":
        return HubSource(repo_id=s.text("repo_id", pattern=_REPO_ID_RE),
                         filename=_relpath(s, "filename"),
                         revision=s.text("revision", pattern=_COMMIT_RE))
    if kind == "embedded":
        rel = _relpath(s, "path")
        return EmbeddedSource(relpath=rel, path=embedded_root / rel)
    path = Path(s.text("path")).expanduser()
    return FileSource(path=path if path.is_absolute() else data_dir / path)


def _relpath(s: _Table, key: str) -> str:
    v = s.text(key)
    parts = v.split("/")
    if v.startswith("/") or "\\" in v or any(p in ("", ".", "..") for p in parts):
        raise s.err(key, f"{v!r} must be a relative path with '/' separators and no '..'")
    return v


def _open_table(section: str, name: str, data: Any, origin: str, keys) -> tuple:
    """Check an entry's name and keys; returns its table, family and norm."""
    where = f'{origin}: [{section}."{name}"]'
    if not _NAME_RE.fullmatch(name):
        raise ConfigError(f"{where}: the name is malformed (expected {_PATTERN_HELP[_NAME_RE]})")
    t = _Table(data, where)
    t.finish(keys)
    return t, t.text("family", choices=FAMILIES), t.text("norm", choices=NORMS)


def parse_entry(name: str, data: Any, origin: str, *, embedded_root: Path | None = None,
                data_dir: Path | None = None, strict: bool = True) -> ModelSpec:
    """One ``[models."NAME"]`` table -> ModelSpec. ``strict`` (the shipped registry) also
    requires ``params`` and at least one PSNR."""
    t, family, norm = _open_table("models", name, data, origin, ENTRY_KEYS)
    task, scale, sigma, quality = _task_fields(t)
    config = _config(t, family, norm, task, scale)
    psnr, psnr_source = _psnr(t, required=strict)
    return ModelSpec(
        name=name, family=family, config=_freeze(config), norm=norm, task=task, scale=scale,
        sigma_range=sigma, quality_range=quality, in_chans=int(config.get("in_chans", 3)),
        license=t.text("license"),
        source=_source(t, embedded_root or package_dir(), data_dir or user_data_dir()),
        sha256=t.text("sha256", pattern=_SHA256_RE), size=t.integer("size"),
        psnr=MappingProxyType(psnr), description=t.text("description"),
        fp16_safe=t.flag("fp16_safe"), params=t.integer("params", required=strict),
        psnr_source=psnr_source, training=t.text("training", required=False), origin=origin)


def parse_preset(name: str, data: Any, origin: str) -> Preset:
    t, family, norm = _open_table("presets", name, data, origin, PRESET_KEYS)
    where = t.where
    task = Task(t.text("task", choices=tuple(x.value for x in Task)))
    cfg_raw = t.raw("config")
    scale = cfg_raw.get("upscale") if isinstance(cfg_raw, Mapping) else None
    if task is Task.SR and (isinstance(scale, bool) or not isinstance(scale, int) or scale < 2):
        raise ConfigError(f"{where}: config.upscale: {scale!r} must be an integer >= 2 for "
                          "task 'sr'")
    config = _config(t, family, norm, task, scale)
    psnr, psnr_source = _psnr(t, required=False)
    sigma, quality = _ranges(t, task)
    return Preset(
        name=name, family=family, config=_freeze(config), norm=norm, task=task,
        description=t.text("description"), license=t.text("license", required=False),
        params=t.integer("params", required=False),
        training=t.text("training", required=False), psnr=MappingProxyType(psnr),
        psnr_source=psnr_source, sigma_range=sigma, quality_range=quality)


@dataclass(frozen=True)
class RegistryLayer:
    models: dict[str, ModelSpec]
    defaults: dict[str, tuple[str, ...] | None]  # task key -> its default(s), None = none yet
    presets: dict[str, Preset]


def parse_registry(data: Mapping, origin: str, *, embedded_root: Path | None = None,
                   data_dir: Path | None = None, strict: bool = True) -> RegistryLayer:
    """One registry file's data -> its entries, defaults and presets (unmerged)."""
    top = _Table(data, origin)
    top.finish({"schema", "defaults", "models", "presets"})
    schema = top.raw("schema")
    if schema != SCHEMA:
        raise top.err("schema", f"{schema!r} is not supported (this restore reads schema "
                                f"{SCHEMA}); upgrade restore")
    models_raw = top.raw("models", required=False) or {}
    if not isinstance(models_raw, Mapping):
        raise top.err("models", "must be a table of [models.\"NAME\"] tables")
    models = {name: parse_entry(name, entry, origin, embedded_root=embedded_root,
                                data_dir=data_dir, strict=strict)
              for name, entry in models_raw.items()}
    presets_raw = top.raw("presets", required=False) or {}
    if not isinstance(presets_raw, Mapping):
        raise top.err("presets", "must be a table of [presets.\"NAME\"] tables")
    presets = {name: parse_preset(name, p, origin) for name, p in presets_raw.items()}
    defaults_raw = _Table(top.raw("defaults", required=False) or {}, f"{origin}: [defaults]")
    defaults_raw.finish(set(TASK_KEYS))
    defaults: dict[str, tuple[str, ...] | None] = {}
    for key in TASK_KEYS:
        if defaults_raw.has(key):
            v = defaults_raw.raw(key)
            if isinstance(v, list) and key in ("denoise", "jpeg"):
                if not v or not all(isinstance(n, str) and n for n in v):
                    raise defaults_raw.err(key, f"{v!r} must be a non-empty list of model names")
                if len(set(v)) != len(v):
                    raise defaults_raw.err(key, f"{v!r} names a model twice")
                defaults[key] = tuple(v)
            elif isinstance(v, str):
                defaults[key] = (v,) if v else None
            else:
                several = " or a list of names" if key in ("denoise", "jpeg") else ""
                raise defaults_raw.err(key, f"{v!r} must be a model name{several} or \"\" "
                                            "(none yet)")
    return RegistryLayer(models, defaults, presets)


def merge_layers(layers: list[tuple[str, RegistryLayer]],
                 files: tuple[Path, ...] = ()) -> Registry:
    """Later layers win: entries and presets by name, defaults per task key (non-empty)."""
    models: dict[str, ModelSpec] = {}
    presets: dict[str, Preset] = {}
    defaults: dict[str, tuple[str, ...] | None] = {k: None for k in TASK_KEYS}
    where: dict[str, str] = {}
    for origin, layer in layers:
        models.update(layer.models)
        presets.update(layer.presets)
        for k, v in layer.defaults.items():
            if v is not None or k not in where:
                defaults[k] = v
                where[k] = origin
    for key, names in defaults.items():
        for name in names or ():
            spec = models.get(name)
            if spec is None:
                raise ConfigError(f"{where[key]}: [defaults]: {key}: " + _unknown(
                    "model", name, list(models), "the default must name a registry entry"))
            if spec.task_key != key:
                raise ConfigError(f"{where[key]}: [defaults]: {key}: {name!r} is a "
                                  f"{spec.task_key} model")
            if len(names) > 1 and level_range(spec) is None:
                what = "sigma_range" if key == "denoise" else "quality_range"
                raise ConfigError(f"{where[key]}: [defaults]: {key}: {name!r} declares no "
                                  f"{what}, which each of several defaults needs (it picks "
                                  "the model per image)")
    return Registry(models=MappingProxyType(models),
                    defaults=MappingProxyType({k: v or () for k, v in defaults.items()}),
                    presets=MappingProxyType(presets), files=files)


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


@lru_cache(maxsize=8)
def _load_registry(base: str, base_stamp, user: str, user_stamp, data_dir: str) -> Registry:
    del base_stamp, user_stamp  # cache keys only: an edited file is read again
    base_path = Path(base)
    layers = [(base, parse_registry(_read_toml(base_path), base))]
    files = [base_path]
    user_path = Path(user)
    if user_path.is_file():
        layers.append((user, parse_registry(_read_toml(user_path), user,
                                            data_dir=Path(data_dir), strict=False)))
        files.append(user_path)
    return merge_layers(layers, tuple(files))


def load_registry() -> Registry:
    """The registry (shipped weights.toml, or $RESTORE_REGISTRY, with the user registry
    merged over it). Parsed once per process; read again if either file changes."""
    base = base_registry_path()
    user = user_registry_path()
    return _load_registry(str(base), _stamp(base), str(user), _stamp(user), str(user_data_dir()))


# -- verification ---------------------------------------------------------------------------

# restore.checkpoint.META_FORMAT: the "format" metadata of restore's own safetensors files
# (spelled out so that reading it needs no torch; a test keeps the two equal).
RESTORE_FORMAT = "restore"


def safetensors_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file, read from its JSON header (no torch)."""
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if not 2 <= n <= 100_000_000:
                raise ValueError(f"header length {n}")
            header = json.loads(f.read(n))
        meta = header.get("__metadata__") or {}
        if not isinstance(meta, dict):
            raise ValueError("__metadata__ is not a table")
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{path}: not a readable safetensors file ({exc})") from None
    return {str(k): str(v) for k, v in meta.items()}


def sha256_file(path: str | os.PathLike) -> str:
    """The sha256 of a file (hex), read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@lru_cache(maxsize=256)
def _sha256_once(path: str, stamp) -> str:
    del stamp  # cache key: a file that changes on disk is hashed again
    return sha256_file(path)


def check_file(spec: ModelSpec, path: Path, *, rehash: bool = False) -> None:
    """Raise ChecksumError unless ``path`` has the entry's size and sha256.

    The hash of a given file (path, mtime, size, inode) is computed once per process unless
    ``rehash``: the first load in a process checks, later loads trust it.
    """
    path = Path(path)
    real = path.resolve()
    stamp = _stamp(real)
    if stamp is None:
        raise WeightsError(f"model {spec.name!r}: {path} cannot be read")
    actual = sha256_file(real) if rehash else _sha256_once(str(real), stamp)
    size = stamp[1]
    if actual != spec.sha256 or size != spec.size:
        raise ChecksumError(
            f"model {spec.name!r}: {path} does not match the registry: sha256 expected "
            f"{spec.sha256}, actual {actual} (size expected {spec.size}, actual {size})",
            expected=spec.sha256, actual=actual)


def _check_or_evict(spec: ModelSpec, path: Path, rehash: bool = False) -> None:
    """check_file; a Hub file that fails is deleted from the cache, others are left alone."""
    try:
        check_file(spec, path, rehash=rehash)
    except ChecksumError as exc:
        if isinstance(spec.source, HubSource):
            from . import hub

            hub.evict(path)
            raise ChecksumError(
                f"{exc}; the file was deleted from the Hugging Face cache and was not used. "
                f"Run 'restore models download {spec.name}' to fetch it again (if it fails "
                "again, the file on the Hub changed or a proxy alters it)",
                expected=exc.expected, actual=exc.actual) from None
        if isinstance(spec.source, EmbeddedSource):
            raise ChecksumError(f"{exc}; the installation is damaged, reinstall restore",
                                expected=exc.expected, actual=exc.actual) from None
        raise ChecksumError(f"{exc}; the file changed since it was registered: import the "
                            "checkpoint again ('restore models import ... --force')",
                            expected=exc.expected, actual=exc.actual) from None


def cached_path(spec: ModelSpec) -> Path | None:
    """Where the entry's file is, if it is on this machine (no download, no hashing)."""
    src = spec.source
    if isinstance(src, HubSource):
        from . import hub

        return hub.cached_file(src.repo_id, src.filename, src.revision)
    return src.path if src.path.is_file() else None


def resolve_weights(spec: ModelSpec, offline: bool = False) -> Path:
    """The verified local file of an entry; Hub files are downloaded (unless ``offline``, or
    HF_HUB_OFFLINE) into the Hugging Face cache. Raises WeightsError (NotCachedError,
    ChecksumError) with what to do."""
    src = spec.source
    if isinstance(src, HubSource):
        from . import hub

        try:
            path = hub.download(src.repo_id, src.filename, src.revision, offline=offline)
        except WeightsError as exc:
            hint = ""
            if isinstance(exc, NotCachedError):
                hint = (f". Get it with 'restore models download {spec.name}' while online, or "
                        f"copy the folder {hub.repo_folder(src.repo_id)} from the Hugging Face "
                        f"cache of a machine that has it into {hub.cache_dir()}")
            raise type(exc)(f"model {spec.name!r}: {exc}{hint}") from None
    elif isinstance(src, EmbeddedSource):
        path = src.path
        if not path.is_file():
            raise WeightsError(f"model {spec.name!r}: its embedded file {src.relpath} is missing "
                               f"from the installation ({path}); reinstall restore")
    else:
        path = src.path
        if not path.is_file():
            raise WeightsError(f"model {spec.name!r}: its file {path} is gone; import the "
                               "checkpoint again with 'restore models import'")
    _check_or_evict(spec, path)
    return path


def verify_cached(spec: ModelSpec) -> Path | None:
    """Hash the entry's local file again (no download); None if it is not on this machine.
    A mismatch raises ChecksumError (and deletes a Hub file from the cache)."""
    path = cached_path(spec)
    if path is not None:
        _check_or_evict(spec, path, rehash=True)
    return path


def load_registry_model(name_or_spec: str | ModelSpec, offline: bool = False) -> nn.Module:
    """The entry's model: built from its config, weights verified and loaded strictly,
    eval mode, CPU, fp32."""
    from .archs import build
    from .checkpoint import load_state_dict, read_checkpoint
    from .errors import CheckpointError

    spec = load_registry().get(name_or_spec) if isinstance(name_or_spec, str) else name_or_spec
    path = resolve_weights(spec, offline=offline)
    try:
        model = build(spec.family, **spec.config)
    except ConfigError as exc:
        raise ConfigError(f"{spec.origin}: [models.\"{spec.name}\"]: config: {exc}") from None
    try:
        load_state_dict(model, read_checkpoint(path))
    except CheckpointError as exc:
        raise CheckpointError(f"model {spec.name!r} ({path}): {exc}") from None
    return model.eval()


def resolve(name: str, offline: bool = False) -> nn.Module:
    """A registry name -> its loaded model (``load_registry_model``)."""
    return load_registry_model(name, offline=offline)


# -- writing entries (import, push) -------------------------------------------------------

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError(f"{v} cannot be written to TOML")
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # a valid TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise ValueError(f"{v!r} cannot be written to TOML")


def _toml_table(header: str, data: Mapping[str, Any], subtables: tuple[str, ...]) -> str:
    lines = [f"[{header}]"]
    lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in data.items() if k not in subtables]
    for sub in subtables:
        if sub in data:
            lines.append(f"[{header}.{_toml_key(sub)}]")
            lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in data[sub].items()]
    return "\n".join(lines) + "\n"


def entry_toml(spec: ModelSpec) -> str:
    """The entry as a ``[models."NAME"]`` TOML block (what weights.toml holds)."""
    return _toml_table(f"models.{_toml_key(spec.name)}", spec.to_data(), ("config",))


def dump_registry(data: Mapping[str, Any], header: str = "") -> str:
    """A whole registry document (schema, defaults, models, presets) as TOML text."""
    out = [header] if header else []
    out.append(f"schema = {_toml_value(data.get('schema', SCHEMA))}\n")
    if data.get("defaults"):
        out.append(_toml_table("defaults", data["defaults"], ()))
    for name, entry in (data.get("models") or {}).items():
        out.append(_toml_table(f"models.{_toml_key(name)}", entry, ("config",)))
    for name, preset in (data.get("presets") or {}).items():
        out.append(_toml_table(f"presets.{_toml_key(name)}", preset, ("config",)))
    return "\n".join(out)


USER_REGISTRY_HEADER = (
    "# restore user registry: models imported with 'restore models import', merged over the\n"
    "# shipped weights.toml (same format). Written by restore; edits are kept, comments not.\n")


def add_user_entry(spec: ModelSpec, *, replace: bool = False) -> Path:
    """Write ``spec`` into the user registry (atomically); returns the registry path.
    An existing entry of that name is an error unless ``replace``."""
    path = user_registry_path()
    data = _read_toml(path) if path.is_file() else {"schema": SCHEMA}
    # the file must stay loadable: refuse to extend a registry that does not parse
    parse_registry(data, str(path), data_dir=user_data_dir(), strict=False)
    models = dict(data.get("models") or {})
    if spec.name in models and not replace:
        raise UsageError(f"{path} already has a model {spec.name!r}; pass --force to replace it")
    models[spec.name] = spec.to_data()
    data = {**data, "schema": SCHEMA, "models": models}
    text = dump_registry(data, USER_REGISTRY_HEADER)
    layer = parse_registry(_toml_loads(text), str(path), data_dir=user_data_dir(), strict=False)
    # and merged over the shipped registry (a replaced entry must still suit the defaults
    # that name it: several defaults each need their range)
    base = base_registry_path()
    merge_layers([(str(base), parse_registry(_read_toml(base), str(base))), (str(path), layer)])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def make_spec(name: str, *, family: str, config: Mapping[str, Any], task: Task | str,
              source: Source, sha256: str, size: int, license: str, description: str,
              fp16_safe: bool = False, params: int | None = None,
              psnr: Mapping[str, float] | None = None, psnr_source: str = "",
              training: str = "", sigma_range=None, quality_range=None,
              origin: str = "") -> ModelSpec:
    """A validated ModelSpec from Python values (goes through the TOML parser's checks)."""
    task = Task(task)
    cfg = dict(config)
    norm = "iln" if family == "hat_iln" else str(cfg.get("norm", "layernorm"))
    data: dict[str, Any] = {"description": description, "family": family, "norm": norm,
                            "task": task.value, "license": license, "fp16_safe": fp16_safe,
                            "sha256": sha256, "size": size, "source": source.to_data(),
                            "config": _thaw(cfg)}
    if task is Task.SR:
        data["scale"] = cfg.get("upscale")
    if params is not None:
        data["params"] = params
    if training:
        data["training"] = training
    if psnr:
        data["psnr"] = dict(psnr)
        data["psnr_source"] = psnr_source or "measured"
    if sigma_range is not None:
        data["sigma_range"] = list(sigma_range)
    if quality_range is not None:
        data["quality_range"] = list(quality_range)
    embedded_root = None
    if isinstance(source, EmbeddedSource):  # the folder that relpath is relative to
        embedded_root = source.path.parents[len(Path(source.relpath).parts) - 1]
    return parse_entry(name, data, origin or "<new entry>", embedded_root=embedded_root,
                       strict=False)


def import_checkpoint(path: str | os.PathLike, name: str, *, family: str | None = None,
                      config: Mapping[str, Any] | None = None, task: str | None = None,
                      license: str | None = None, description: str | None = None,
                      psnr: Mapping[str, float] | None = None, psnr_source: str = "",
                      fp16_safe: bool = False, sigma_range=None, quality_range=None,
                      replace: bool = False) -> ModelSpec:
    """Check a downloaded checkpoint against an architecture, convert it to safetensors in
    the user data dir and register it in the user registry; returns the new entry.

    ``family`` is a preset name (``restore models presets`` shows them; see weights.toml
    [presets]) or an architecture family with ``config`` (reference constructor arguments;
    with a preset, ``config`` overrides some of its values). Without either, the file must
    be a restore safetensors file that records its architecture, or a DRCT checkpoint,
    whose architecture is read from its keys and shapes
    (``restore.checkpoint.infer_architecture``; ``config`` overrides what it reads).
    """
    from .archs import build
    from .checkpoint import (
        META_FORMAT, infer_architecture, load_state_dict, read_checkpoint, read_metadata,
        save_model,
    )
    from .errors import CheckpointError

    src = Path(path).expanduser()
    if not _NAME_RE.fullmatch(name):
        raise UsageError(f"model name {name!r} is malformed (expected "
                         f"{_PATTERN_HELP[_NAME_RE]})")
    if not src.is_file():
        raise CheckpointError(f"{src}: no such file")
    reg = load_registry()
    preset = None
    if family is not None and family not in FAMILIES:
        preset = reg.preset(family)
    if preset is not None:
        fam, cfg = preset.family, {**preset.config_dict(), **(config or {})}
    elif family is not None:
        if not config:
            raise UsageError(f"family {family!r} needs --config (the reference constructor "
                             "arguments), or use a preset: " + ", ".join(sorted(reg.presets)))
        fam, cfg = family, dict(config)
    state = read_checkpoint(src)  # weights_only: code in the pickle is refused
    inferred = False
    if preset is None and family is None:
        meta = read_metadata(src) if src.suffix == ".safetensors" and src.is_file() else {}
        if meta.get("format") == META_FORMAT:
            fam, cfg = meta["family"], {**json.loads(meta["config"]), **(config or {})}
        elif (found := infer_architecture(state)) is not None:
            fam, cfg, inferred = found[0], {**found[1], **(config or {})}, True
        else:
            raise UsageError(f"{src}: say which architecture it holds with --family PRESET "
                             f"(one of {', '.join(sorted(reg.presets))}) or --family "
                             f"{'/'.join(FAMILIES)} --config ... (restore reads the "
                             "architecture from the keys of DRCT files only)")
    model = build(fam, **cfg)
    load_state_dict(model, state)  # strict: names missing / unexpected / mis-shaped keys
    full_cfg = model.config.to_kwargs()
    upscale = full_cfg.get("upscale", 1)
    kind = Task(task) if task else (preset.task if preset else (Task.SR if upscale > 1 else None))
    if kind is None:
        raise UsageError("a scale-1 model needs --task denoise or --task jpeg")
    existing = reg.models.get(name)
    if existing is not None and not replace and existing.origin == str(user_registry_path()):
        raise UsageError(f"the user registry already has a model {name!r}; pass --force "
                         "to replace it")
    out = user_data_dir() / "models" / f"{name}.safetensors"
    save_model(model.eval(), out, {"name": name, "imported_from": src.name,
                                   "imported_sha256": sha256_file(src)})
    spec = make_spec(
        name, family=fam, config=full_cfg, task=kind, source=FileSource(out.resolve()),
        sha256=sha256_file(out), size=out.stat().st_size,
        license=license or (preset.license if preset and preset.license else "unknown"),
        description=description or (
            f"{preset.description}, imported from {src.name}" if preset else
            f"{fam}, architecture read from the keys of {src.name}" if inferred else
            f"imported from {src.name}"),
        fp16_safe=fp16_safe, params=sum(p.numel() for p in model.parameters()),
        psnr=psnr if psnr else (preset.psnr if preset else None),
        psnr_source=psnr_source if psnr else (preset.psnr_source if preset else ""),
        training=preset.training if preset else "",
        sigma_range=sigma_range or (preset.sigma_range if preset else None),
        quality_range=quality_range or (preset.quality_range if preset else None),
        origin=str(user_registry_path()))
    add_user_entry(spec, replace=True)
    return spec


# -- model cards (push) -------------------------------------------------------------------

_HUB_LICENSES = {"apache-2.0": "apache-2.0", "mit": "mit", "bsd-3-clause": "bsd-3-clause",
                 "bsd-2-clause": "bsd-2-clause", "cc-by-4.0": "cc-by-4.0",
                 "cc-by-sa-4.0": "cc-by-sa-4.0", "cc-by-nc-4.0": "cc-by-nc-4.0",
                 "cc-by-nc-sa-4.0": "cc-by-nc-sa-4.0", "gpl-3.0": "gpl-3.0"}
_TASK_TAGS = {Task.SR: "super-resolution", Task.DENOISE: "image-denoising",
              Task.JPEG: "jpeg-artifact-removal"}


def model_card(spec: ModelSpec, filename: str) -> str:
    """README.md for a Hub repo holding ``spec``'s safetensors file: YAML metadata (licence,
    tags) and the evaluation table."""
    lic = _HUB_LICENSES.get(spec.license.lower())
    tags = ["image-to-image", _TASK_TAGS[spec.task], spec.family.replace("_iln", ""),
            "i-LN" if spec.norm == "iln" else "layernorm", "safetensors", "restore"]
    meta = ["---", f"license: {lic or 'other'}"]
    if lic is None:
        meta.append(f"license_name: {json.dumps(spec.license)}")
    meta += ["library_name: restore", "pipeline_tag: image-to-image", "tags:"]
    meta += [f"- {t}" for t in tags]
    meta.append("---")
    what = {Task.SR: f"x{spec.scale} super-resolution", Task.DENOISE: "Gaussian denoising",
            Task.JPEG: "JPEG artifact removal"}[spec.task]
    norm = "i-LN (Lee et al., ICLR 2026)" if spec.norm == "iln" else "LayerNorm (as published)"
    body = [
        "", f"# {spec.name}", "", spec.description, "",
        f"- task: {what}", f"- architecture: {spec.family}, normalization: {norm}",
        f"- parameters: {spec.params:,}" if spec.params else "- parameters: not recorded",
        f"- input channels: {spec.in_chans}",
        f"- fp16: {'safe' if spec.fp16_safe else 'not safe (use fp32 or bf16)'}",
    ]
    if spec.training:
        body.append(f"- training data: {spec.training}")
    body += ["", "Weights: `" + filename + "` (safetensors; the architecture config is in its "
             "metadata). Use with restore:", "", "```", f"restore models download {spec.name}",
             "```", "", "## Evaluation", ""]
    if spec.psnr:
        body += [f"PSNR in dB ({spec.psnr_source}).", "", "| benchmark | PSNR (dB) |",
                 "|---|---|"]
        body += [f"| {b} | {v:.2f} |" for b, v in spec.psnr.items()]
    else:
        body.append("Not evaluated yet.")
    body += ["", "## Architecture config", "", "```json",
             json.dumps(spec.config_dict(), indent=1), "```", ""]
    return "\n".join(meta + body)
