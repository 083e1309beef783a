"""Weights on disk: verified by sha256 and size after a download and before the first
load in a process (a file that changed on disk is hashed again; a downloaded file that
fails is deleted from its cache), found in the cache, downloaded (Hub entries through
restore.hub into the Hugging Face cache, url entries through restore.fetch into restore's
download cache, restore.registry.paths.download_path), and built into a model.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ChecksumError, ConfigError, NotCachedError, UsageError, WeightsError
from .layers import load_registry
from .paths import download_path, downloads_dir, file_stamp
from .schema import EmbeddedSource, HubSource, ModelSpec, UrlSource

if TYPE_CHECKING:
    from torch import nn


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
    stamp = file_stamp(real)
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
    """check_file; a downloaded (Hub or url) file that fails is deleted from its cache,
    others are left alone."""
    try:
        check_file(spec, path, rehash=rehash)
    except ChecksumError as exc:
        if isinstance(spec.source, HubSource):
            from .. import hub

            hub.evict(path)
            raise ChecksumError(
                f"{exc}; the file was deleted from the Hugging Face cache and was not used. "
                f"Run 'restore models download {spec.name}' to fetch it again (if it fails "
                "again, the file on the Hub changed or a proxy alters it)",
                expected=exc.expected, actual=exc.actual) from None
        if isinstance(spec.source, UrlSource):
            _evict_download(path)
            raise ChecksumError(
                f"{exc}; the file was deleted from restore's download cache and was not used. "
                f"Run 'restore models download {spec.name}' to fetch it again, or "
                f"{_by_hand(spec, spec.source)}", expected=exc.expected,
                actual=exc.actual) from None
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
        from .. import hub

        return hub.cached_file(src.repo_id, src.filename, src.revision)
    if isinstance(src, UrlSource):
        path = download_path(spec.sha256, src.filename)
        return path if path.is_file() else None
    return src.path if src.path.is_file() else None


def resolve_weights(spec: ModelSpec, offline: bool = False) -> Path:
    """The verified local file of an entry; Hub and url files are downloaded (unless
    ``offline``, or HF_HUB_OFFLINE) into the Hugging Face cache and restore's download cache.
    Raises WeightsError (NotCachedError, ChecksumError) with what to do."""
    src = spec.source
    if isinstance(src, HubSource):
        from .. import hub

        try:
            path = hub.download(src.repo_id, src.filename, src.revision, offline=offline)
        except WeightsError as exc:
            hint = ""
            if isinstance(exc, NotCachedError):
                hint = (f". Get it with 'restore models download {spec.name}' while online, or "
                        f"copy the folder {hub.repo_folder(src.repo_id)} from the Hugging Face "
                        f"cache of a machine that has it into {hub.cache_dir()}")
            raise type(exc)(f"model {spec.name!r}: {exc}{hint}") from None
    elif isinstance(src, UrlSource):
        path = download_path(spec.sha256, src.filename)
        if not path.is_file():
            return _download(spec, src, path, offline)  # verified while it was written
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
    A mismatch raises ChecksumError (and deletes a Hub or url file from its cache)."""
    path = cached_path(spec)
    if path is not None:
        _check_or_evict(spec, path, rehash=True)
    return path


def _by_hand(spec: ModelSpec, src: UrlSource) -> str:
    return (f"download {src.url} by hand (in a browser) and run 'restore models download "
            f"{spec.name} --file PATH' on the file you saved")


def _download(spec: ModelSpec, src: UrlSource, path: Path, offline: bool) -> Path:
    """A url entry's file fetched into ``path`` (its place in the download cache)."""
    from .. import fetch, hub

    by_env = hub.offline_by_env()
    if offline or by_env:
        why = "HF_HUB_OFFLINE is set" if by_env else "--offline"
        raise NotCachedError(
            f"model {spec.name!r}: {src.filename} is not in restore's download cache "
            f"({downloads_dir()}) and downloads are off ({why}); get it with 'restore models "
            f"download {spec.name}' while online, or {_by_hand(spec, src)}")
    try:
        return fetch.download(src.url, path, sha256=spec.sha256, size=spec.size,
                              desc=src.filename)
    except WeightsError as exc:
        msg = (f"model {spec.name!r}: cannot download {src.url}: {exc}; nothing was kept in "
               "the cache")
        if isinstance(exc, ChecksumError):  # trying again would get the same bytes
            raise ChecksumError(f"{msg}. To use a copy of the right file, "
                                f"{_by_hand(spec, src)}", expected=exc.expected,
                                actual=exc.actual) from None
        raise WeightsError(f"{msg}. Try again later, or {_by_hand(spec, src)}") from None


def _evict_download(path: Path) -> None:
    """Delete a file of restore's download cache, and its folder once empty (only inside
    the cache; anything else is left alone)."""
    root = downloads_dir().resolve()
    try:
        inside = path.parent.resolve().is_relative_to(root)
    except OSError:
        inside = False
    if inside:
        path.unlink(missing_ok=True)
        try:
            path.parent.rmdir()
        except OSError:  # not empty (another file of that content), or already gone
            pass


def install_file(spec: ModelSpec, file: str | os.PathLike) -> Path:
    """Put a file the user downloaded by hand where a url entry's download would go,
    verified (size, then sha256 while it is copied) and written atomically; returns its
    place in the cache. A file that does not match leaves the cache as it was."""
    from .. import fetch

    src = spec.source
    if not isinstance(src, UrlSource):
        how = {"hub": f"'restore models download {spec.name}' fetches it into the Hugging Face "
                      "cache",
               "embedded": "it ships inside restore",
               "file": "it is a file you imported"}[src.kind]
        raise UsageError(f"model {spec.name!r} is a {src.kind} entry ({src.describe()}): "
                         f"{how}; --file is for url entries only (to use a checkpoint you "
                         "have, register it with 'restore models import PATH --name NAME')")
    dest = download_path(spec.sha256, src.filename)
    try:
        fetch.copy_verified(Path(file).expanduser(), dest, sha256=spec.sha256,
                            size=spec.size, desc=src.filename)
    except WeightsError as exc:
        msg = (f"model {spec.name!r}: {exc}; the cache was not changed. The file to give is "
               f"the one at {src.url}")
        if isinstance(exc, ChecksumError):
            raise ChecksumError(msg, expected=exc.expected, actual=exc.actual) from None
        raise WeightsError(msg) from None
    return dest


def load_registry_model(name_or_spec: str | ModelSpec, offline: bool = False) -> nn.Module:
    """The entry's model: built from its config, weights verified and loaded strictly,
    eval mode, CPU, fp32."""
    from ..archs import build
    from ..checkpoint import load_state_dict, read_checkpoint
    from ..errors import CheckpointError

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
