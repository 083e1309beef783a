"""The shipped registry (or $RESTORE_REGISTRY) with the user registry merged over it:
later layers win by name, defaults per task key; parsed once per process and read again
when either file changes on disk.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from types import MappingProxyType

from ..errors import ConfigError
from .parse import RegistryLayer, parse_registry, read_toml
from .paths import base_registry_path, file_stamp, registry_path, user_data_dir, user_registry_path
from .schema import TASK_KEYS, ModelSpec, Preset, Registry, level_range, unknown_message


def read_registry() -> dict:
    """The shipped weights.toml as plain data (``load_registry`` gives the typed form)."""
    return read_toml(registry_path())


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
                raise ConfigError(f"{where[key]}: [defaults]: {key}: " + unknown_message(
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


@lru_cache(maxsize=8)
def _load_registry(base: str, base_stamp, user: str, user_stamp, data_dir: str) -> Registry:
    del base_stamp, user_stamp  # cache keys only: an edited file is read again
    base_path = Path(base)
    layers = [(base, parse_registry(read_toml(base_path), base))]
    files = [base_path]
    user_path = Path(user)
    if user_path.is_file():
        layers.append((user, parse_registry(read_toml(user_path), user,
                                            data_dir=Path(data_dir), strict=False)))
        files.append(user_path)
    return merge_layers(layers, tuple(files))


def load_registry() -> Registry:
    """The registry (shipped weights.toml, or $RESTORE_REGISTRY, with the user registry
    merged over it). Parsed once per process; read again if either file changes."""
    base = base_registry_path()
    user = user_registry_path()
    return _load_registry(str(base), file_stamp(base), str(user), file_stamp(user), str(user_data_dir()))
