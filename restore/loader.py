"""One loader, one descriptor: a model by registry name or checkpoint file -> ``Loaded``,
the network and its facts, which the engine, the pipeline, eval, inspect and the Python API
take as they are.

    loaded = load("swinir-iln-t.sr-x4")          # or a .safetensors file
    loaded.module, loaded.task, loaded.scale, loaded.in_chans, loaded.size_multiple, ...
    load_for_task(Task.DENOISE, 1)                # the task's default(s), checked for it

The facts come from the registry entry (task, fp16 safety, the noise sigmas / JPEG
qualities it is for) or, for a file, from the file: its architecture (scale, channels,
window) and the task ``restore train-export`` records in its metadata.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UsageError
from .tasks import Task

CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt")


@dataclass(frozen=True)
class Loaded:
    """A loaded network (eval mode, CPU, fp32) and its facts."""

    name: str  # the registry name, or the file as given
    module: Any  # torch.nn.Module (restore.archs)
    task: Task | None  # declared by the registry or the file; SR for a model that
    #                    upscales; None for a scale-1 file that does not say
    scale: int
    in_chans: int
    size_multiple: int  # inputs are padded to a multiple of it (the window)
    family: str
    norm: str
    fp16_safe: bool  # measured and registered; False for a file
    span: tuple | None = None  # the noise sigmas / JPEG qualities it declares it is for


def is_checkpoint_file(model: str | Path) -> bool:
    """Whether ``--model`` names a file (an existing path, or a checkpoint suffix) rather
    than a registry entry."""
    path = Path(model).expanduser()
    return path.suffix in CHECKPOINT_SUFFIXES or path.is_file()


def load(model: str | Path, offline: bool = False) -> Loaded:
    """A registry name or a checkpoint file (a restore safetensors file carries its
    architecture; other files need ``restore models import`` first)."""
    if is_checkpoint_file(model):
        from .checkpoint import load_model, read_metadata

        path = Path(model).expanduser()
        module = load_model(path)  # CheckpointError when it is missing or not a model
        meta = read_metadata(path) if path.suffix == ".safetensors" else {}
        declared = meta.get("task")
        task = (Task(declared) if declared in {t.value for t in Task}
                else Task.SR if module.scale > 1 else None)
        return _describe(str(model), module, task, fp16_safe=False, span=None)
    from . import registry

    spec = registry.load_registry().get(str(model))
    module = registry.load_registry_model(spec, offline=offline)
    return _describe(spec.name, module, spec.task, fp16_safe=bool(spec.fp16_safe),
                     span=registry.level_range(spec))


def load_for_task(task: Task, scale: int, model: str | None = None, offline: bool = False,
                  level: float | None = None) -> list[Loaded]:
    """The model(s) to run ``task`` at ``scale``: ``model`` (a file or registry name), or
    the task's default(s) (several where the registry lists one per range of noise level
    or JPEG quality, or gray and colour ones; with ``level``, only the one for it, for gray
    and for colour images). A model of another task or scale is a UsageError."""
    if model:
        loaded = [load(model, offline)]
    else:
        from . import registry

        reg = registry.load_registry()
        key = f"sr-x{scale}" if task is Task.SR else task.value
        specs = reg.defaults_for(key) or [reg.require_default(key)]
        if level is not None:  # the one for that level, for gray and for colour images
            specs = list(dict.fromkeys(registry.pick_by_level(specs, level, channels=c)
                                       for c in (3, 1)))
        loaded = [load(spec.name, offline) for spec in specs]
    return [fit_for(lm, task, scale) for lm in loaded]


def fit_for(lm: Loaded, task: Task, scale: int) -> Loaded:
    """``lm`` to run ``task`` at ``scale`` (its task set to it): a UsageError where the
    model's scale does not fit."""
    if task is Task.SR and lm.scale != scale:
        raise UsageError(f"model {lm.name} is x{lm.scale}, not x{scale}")
    if task is not Task.SR and lm.scale != 1:
        raise UsageError(f"model {lm.name} is a x{lm.scale} super-resolution model, "
                         f"not a {task.value} model")
    return dataclasses.replace(lm, task=task)


def _describe(name: str, module, task: Task | None, *, fp16_safe: bool,
              span: tuple | None) -> Loaded:
    cfg = module.config
    return Loaded(name=name, module=module, task=task, scale=module.scale,
                  in_chans=cfg.in_chans, size_multiple=module.size_multiple,
                  family=cfg.family, norm=getattr(cfg.norm, "value", str(cfg.norm)),
                  fp16_safe=fp16_safe, span=span)
