"""The model registry (weights.toml): where the shipped file is found.

The registry lives at the repository root and inside the installed wheel as
``restore/weights.toml``; an installed ``restore`` reads the packaged copy, a source
checkout (editable install) the one at the root.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from .errors import ConfigError

REGISTRY_NAME = "weights.toml"


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


def read_registry() -> dict:
    """The parsed weights.toml as plain data (typed parsing comes with the registry)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    path = registry_path()
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
