"""Weights on disk: verified by sha256 and size after a download and before the first
load in a process (a file that changed on disk is hashed again; a Hub file that fails is
deleted from the cache), found in the cache, downloaded through restore.hub, and built
into a model.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ChecksumError, ConfigError, NotCachedError, WeightsError
from .layers import load_registry
from .paths import file_stamp
from .schema import EmbeddedSource, HubSource, ModelSpec

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
    """check_file; a Hub file that fails is deleted from the cache, others are left alone."""
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
    return src.path if src.path.is_file() else None


def resolve_weights(spec: ModelSpec, offline: bool = False) -> Path:
    """The verified local file of an entry; Hub files are downloaded (unless ``offline``, or
    HF_HUB_OFFLINE) into the Hugging Face cache. Raises WeightsError (NotCachedError,
    ChecksumError) with what to do."""
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
