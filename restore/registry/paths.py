"""Where the registries, the user's imported files and restore's download cache live.
These paths are the one place below the CLI that reads the environment ($RESTORE_REGISTRY,
$RESTORE_CONFIG_DIR, $RESTORE_DATA_DIR, $RESTORE_CACHE_DIR, the XDG variables): every
caller of load_registry() must see the same registry, and every process the same cache.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from ..errors import ConfigError
from .schema import REGISTRY_NAME, USER_REGISTRY_NAME


def registry_path() -> Path:
    """Path of the shipped weights.toml (packaged copy first, then the source tree's)."""
    packaged = resources.files("restore") / REGISTRY_NAME
    if packaged.is_file():
        return Path(str(packaged))
    source = package_dir().parent / REGISTRY_NAME
    if source.is_file():
        return source
    raise ConfigError(f"{REGISTRY_NAME} is missing from the installation (looked in "
                      f"{packaged} and {source}); reinstall restore")


def package_dir() -> Path:
    """The ``restore`` package folder (where embedded weights live, under models/)."""
    return Path(__file__).resolve().parent.parent  # restore/registry/paths.py -> restore/


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


def user_cache_dir() -> Path:
    """$RESTORE_CACHE_DIR, else $XDG_CACHE_HOME/restore, else ~/.cache/restore: restore's
    own download cache (Hub files go to the Hugging Face cache instead)."""
    return _xdg("RESTORE_CACHE_DIR", "XDG_CACHE_HOME", ".cache")


def downloads_dir() -> Path:
    """The folder of the url entries' files (``user_cache_dir() / "downloads"``)."""
    return user_cache_dir() / "downloads"


def download_path(sha256: str, filename: str) -> Path:
    """Where a url entry's file is kept: ``downloads/<sha256>/<filename>``. By content, so
    that two entries of one file share it and a new pin never finds a stale file."""
    return downloads_dir() / sha256 / filename


def user_registry_path() -> Path:
    return user_config_dir() / USER_REGISTRY_NAME


def base_registry_path() -> Path:
    """The registry the user registry is merged over: $RESTORE_REGISTRY or the shipped one."""
    env = os.environ.get("RESTORE_REGISTRY")
    return Path(env).expanduser() if env else registry_path()



def file_stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)
