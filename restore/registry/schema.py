"""The registry's typed form: the constants of the format (schema number, task keys,
families, norms, name patterns), the four weight sources (Hub, plain URL, embedded, file), one model
entry (ModelSpec), one preset, the merged Registry, and the choice of a model by noise
level or JPEG quality among several defaults (pick_by_level). No I/O here.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, Union
from urllib.parse import urlsplit

from ..errors import NoDefaultModelError, UnknownModelError, UsageError
from ..tasks import Task

REGISTRY_NAME = "weights.toml"
USER_REGISTRY_NAME = "registry.toml"
SCHEMA = 1

# What `restore sr x4` and friends ask the registry for.
TASK_KEYS = ("sr-x2", "sr-x3", "sr-x4", "denoise", "jpeg")
# restore.archs.FAMILIES, spelled out so that parsing does not import torch (a test keeps
# the two equal).
FAMILIES = ("swinir", "hat", "hat_iln", "drct")
NORMS = ("layernorm", "iln")

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
SHA256_RE = re.compile(r"[0-9a-f]{64}")
COMMIT_RE = re.compile(r"[0-9a-f]{40}")
REPO_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
# The name a url entry's file is kept under: one plain file name, no folders.
FILENAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


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
class UrlSource:
    """A file at a plain HTTPS address (the authors' Google Drive, a release page), pinned
    by the entry's sha256 and size. It is kept in restore's own download cache under
    ``filename`` (restore.registry.paths.download_path); the URL need not end with it."""

    url: str
    filename: str
    kind: ClassVar[str] = "url"

    @property
    def host(self) -> str:
        return urlsplit(self.url).netloc

    def describe(self) -> str:
        parts = urlsplit(self.url)
        if parts.path.rsplit("/", 1)[-1] == self.filename and not parts.query:
            return f"url:{parts.netloc}{parts.path}"
        return f"url:{parts.netloc}/...{self.filename}"

    def to_data(self) -> dict[str, Any]:
        return {"kind": self.kind, "url": self.url, "filename": self.filename}


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


Source = Union[HubSource, UrlSource, EmbeddedSource, FileSource]


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
        return thaw(self.config)

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
        return thaw(self.config)


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
            raise UnknownModelError(unknown_message("model", name, list(self.models),
                                             "see 'restore models list'"))
        return spec

    def preset(self, name: str) -> Preset:
        preset = self.presets.get(name)
        if preset is None:
            raise UnknownModelError(unknown_message("preset", name, list(self.presets),
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


def unknown_message(what: str, name: str, names: list[str], hint: str) -> str:
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    msg = f"unknown {what} {name!r}"
    if close:
        msg += f" (did you mean {', '.join(repr(c) for c in close)}?)"
    return f"{msg}; {hint}"


def freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    return value
