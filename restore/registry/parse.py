"""Registry TOML -> typed entries: one file's data checked key by key (unknown keys,
types, patterns, the family's config, ranges, sources), each error naming the file, the
entry and the key. No merging here (restore.registry.layers) and no torch: a config is
checked against its architecture when the model is built.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from .. import checks
from ..errors import ConfigError
from ..tasks import Task
from .paths import package_dir, user_data_dir
from .schema import (
    COMMIT_RE, FAMILIES, FILENAME_RE, NAME_RE, NORMS, REPO_ID_RE, SCHEMA, SHA256_RE, TASK_KEYS,
    EmbeddedSource, FileSource, HubSource, ModelSpec, Preset, Source, UrlSource, freeze,
)


def toml_loads(text: str):
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    return tomllib.loads(text)


def read_toml(path: Path) -> dict:
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



class _Table:
    """A TOML table read key by key, with errors that name the entry and the key."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: must be a table, found {_tname(data)}")
        self.data, self.where = data, where

    def err(self, key: str, msg: str) -> ConfigError:
        return ConfigError(f"{self.where}: {key}: {msg}")

    def _checked(self, key: str, value, check, *args, **kwargs):
        """``check(value, ...)`` (restore.checks), its complaint naming the key."""
        try:
            return check(value, *args, **kwargs)
        except checks.Invalid as exc:
            raise self.err(key, f"{value!r} {exc}") from None

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
        if choices is not None:
            self._checked(key, v, checks.one_of, choices)
        if pattern is not None and not pattern.fullmatch(v):
            raise self.err(key, f"{v!r} is malformed (expected {PATTERN_HELP[pattern]})")
        return v

    def integer(self, key: str, required: bool = True, minimum: int = 1) -> int | None:
        v = self.raw(key, required)
        if v is None:
            return None
        return self._checked(key, v, checks.integer, minimum)

    def flag(self, key: str, required: bool = True, default: bool = False) -> bool:
        v = self.raw(key, required)
        if v is None:
            return default
        return self._checked(key, v, checks.flag)

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


PATTERN_HELP = {
    NAME_RE: "letters, digits and . _ + - , starting with a letter or digit",
    SHA256_RE: "64 lowercase hex digits",
    COMMIT_RE: "a full 40-hex commit hash, lowercase; branches and tags are not pinned",
    REPO_ID_RE: "ORG/NAME",
    FILENAME_RE: "a plain file name (no folders): letters, digits and . _ + - , starting with "
                 "a letter or digit",
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
               "url": frozenset({"kind", "url", "filename"}),
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
        return HubSource(repo_id=s.text("repo_id", pattern=REPO_ID_RE),
                         filename=_relpath(s, "filename"),
                         revision=s.text("revision", pattern=COMMIT_RE))
    if kind == "url":
        return UrlSource(url=_url(s, "url"), filename=s.text("filename", pattern=FILENAME_RE))
    if kind == "embedded":
        rel = _relpath(s, "path")
        return EmbeddedSource(relpath=rel, path=embedded_root / rel)
    path = Path(s.text("path")).expanduser()
    return FileSource(path=path if path.is_absolute() else data_dir / path)


# Plain http only to this machine: the tests' local server, a mirror on localhost. The
# sha256 would catch altered bytes on any http, but not the eavesdropping, and every real
# host (Google Drive, GitHub, Zenodo) serves https.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def _url(s: _Table, key: str) -> str:
    v = s.text(key)
    try:
        parts = urlsplit(v)
        host, _ = parts.hostname or "", parts.port  # .port raises on a malformed port
    except ValueError as exc:
        raise s.err(key, f"{v!r} is not a URL ({exc})") from None
    if not (parts.scheme == "https" or parts.scheme == "http" and host in LOOPBACK_HOSTS):
        raise s.err(key, f"{v!r} must be an https:// address (http:// only to "
                         f"{' / '.join(LOOPBACK_HOSTS)}, for tests and local mirrors)")
    if not host or any(c.isspace() for c in v):
        raise s.err(key, f"{v!r} is malformed (expected https://HOST/PATH, no spaces)")
    if parts.username is not None or parts.password is not None:
        raise s.err(key, f"{v!r} must not hold a user name or password (the registry is "
                         "shared and printed)")
    return v


def _relpath(s: _Table, key: str) -> str:
    v = s.text(key)
    parts = v.split("/")
    if v.startswith("/") or "\\" in v or any(p in ("", ".", "..") for p in parts):
        raise s.err(key, f"{v!r} must be a relative path with '/' separators and no '..'")
    return v


def _open_table(section: str, name: str, data: Any, origin: str, keys) -> tuple:
    """Check an entry's name and keys; returns its table, family and norm."""
    where = f'{origin}: [{section}."{name}"]'
    if not NAME_RE.fullmatch(name):
        raise ConfigError(f"{where}: the name is malformed (expected {PATTERN_HELP[NAME_RE]})")
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
        name=name, family=family, config=freeze(config), norm=norm, task=task, scale=scale,
        sigma_range=sigma, quality_range=quality, in_chans=int(config.get("in_chans", 3)),
        license=t.text("license"),
        source=_source(t, embedded_root or package_dir(), data_dir or user_data_dir()),
        sha256=t.text("sha256", pattern=SHA256_RE), size=t.integer("size"),
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
        name=name, family=family, config=freeze(config), norm=norm, task=task,
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
