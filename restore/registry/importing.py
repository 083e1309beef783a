"""`restore models import`: an outside checkpoint (.pth / .safetensors) checked against
an architecture, converted to safetensors under the data dir, and entered in the user
registry.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..tasks import Task
from .layers import load_registry
from .parse import PATTERN_HELP
from .paths import user_data_dir, user_registry_path
from .schema import FAMILIES, NAME_RE, FileSource, ModelSpec
from .sources import sha256_file
from .writing import add_user_entry, make_spec


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
    from ..archs import build
    from ..checkpoint import (
        META_FORMAT,
        infer_architecture,
        load_state_dict,
        read_checkpoint,
        read_metadata,
        save_model,
    )
    from ..errors import CheckpointError

    src = Path(path).expanduser()
    if not NAME_RE.fullmatch(name):
        raise UsageError(f"model name {name!r} is malformed (expected "
                         f"{PATTERN_HELP[NAME_RE]})")
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
