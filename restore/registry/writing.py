"""Writing the registry: an entry as registry-ready TOML, the user registry (written
atomically, and refused unless it still parses and merges over the shipped one), and the
ModelSpec of a new entry (make_spec).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..atomic import write_bytes
from ..errors import UsageError
from ..tasks import Task
from .layers import merge_layers
from .parse import parse_entry, parse_registry, read_toml, toml_loads
from .paths import base_registry_path, user_data_dir, user_registry_path
from .schema import SCHEMA, EmbeddedSource, ModelSpec, Source, thaw

# TOML is written by tomli-w (the writer that goes with tomllib): strings escaped, tables
# in order. Nested tables (source, psnr, config) come out as [models."NAME".source] and so
# on, which reads back to the same data as weights.toml's inline form.


def _dumps(data: Mapping[str, Any]) -> str:
    import tomli_w

    return tomli_w.dumps(_plain(data))


def _plain(v: Any) -> Any:
    """Data for tomli-w: mappings as dicts, tuples as lists, non-finite floats refused
    (TOML has them, the registry's numbers must not)."""
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        raise ValueError(f"{v} cannot be written to the registry")
    return v


def entry_toml(spec: ModelSpec) -> str:
    """The entry as a ``[models."NAME"]`` TOML block (what weights.toml holds)."""
    return _dumps({"models": {spec.name: spec.to_data()}})


def dump_registry(data: Mapping[str, Any], header: str = "") -> str:
    """A whole registry document (schema, defaults, models, presets) as TOML text."""
    doc = {"schema": data.get("schema", SCHEMA)}
    doc.update({k: data[k] for k in ("defaults", "models", "presets") if data.get(k)})
    return header + _dumps(doc)


USER_REGISTRY_HEADER = (
    "# restore user registry: models imported with 'restore models import', merged over the\n"
    "# shipped weights.toml (same format). Written by restore; edits are kept, comments not.\n")


def add_user_entry(spec: ModelSpec, *, replace: bool = False) -> Path:
    """Write ``spec`` into the user registry (atomically); returns the registry path.
    An existing entry of that name is an error unless ``replace``."""
    path = user_registry_path()
    data = read_toml(path) if path.is_file() else {"schema": SCHEMA}
    # the file must stay loadable: refuse to extend a registry that does not parse
    parse_registry(data, str(path), data_dir=user_data_dir(), strict=False)
    models = dict(data.get("models") or {})
    if spec.name in models and not replace:
        raise UsageError(f"{path} already has a model {spec.name!r}; pass --force to replace it")
    models[spec.name] = spec.to_data()
    data = {**data, "schema": SCHEMA, "models": models}
    text = dump_registry(data, USER_REGISTRY_HEADER)
    layer = parse_registry(toml_loads(text), str(path), data_dir=user_data_dir(), strict=False)
    # and merged over the shipped registry (a replaced entry must still suit the defaults
    # that name it: several defaults each need their range)
    base = base_registry_path()
    merge_layers([(str(base), parse_registry(read_toml(base), str(base))), (str(path), layer)])
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(path, text.encode("utf-8"))
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
                            "config": thaw(cfg)}
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
