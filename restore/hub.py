"""The Hugging Face Hub: the only module that imports huggingface_hub.

Downloads go into the standard Hugging Face cache, never into the installation, with
huggingface_hub's own settings left alone: HF_HOME / HF_HUB_CACHE (where), HF_ENDPOINT
(which server), HF_TOKEN (private or gated repos), HF_HUB_OFFLINE (cache only),
HF_HUB_DISABLE_PROGRESS_BARS. Revisions are full commit hashes, so a cached file is
returned without any request to the server. huggingface_hub shows a progress bar while
downloading (on a terminal; TQDM_POSITION=-1 forces it elsewhere) and writes each file to
a temporary name that is renamed into the cache only when complete, so an interrupted
download leaves nothing behind. Repos stored with Xet are fetched with hf_xet when it is
installed; plain HTTP otherwise.

Failures become ``restore.errors.WeightsError`` (``NotCachedError`` when offline) with
a message that says what to do; verification of the content (sha256) is the caller's job
(``restore.registry.resolve_weights``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from .errors import NotCachedError, WeightsError


def cache_dir() -> Path:
    """The Hugging Face hub cache in use (HF_HUB_CACHE, else HF_HOME/hub, else the default)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def offline_by_env() -> bool:
    """Whether HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set."""
    from huggingface_hub import constants

    return bool(constants.is_offline_mode())


def repo_folder(repo_id: str) -> str:
    """The cache folder name of a model repo ("models--org--name")."""
    return "models--" + repo_id.replace("/", "--")


def file_url(repo_id: str, filename: str, revision: str) -> str:
    from huggingface_hub import hf_hub_url

    return hf_hub_url(repo_id, filename, revision=revision)


def cached_file(repo_id: str, filename: str, revision: str) -> Path | None:
    """The cached file of a pinned revision, or None (no request, no hashing)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename, revision=revision)
    return Path(found) if isinstance(found, str) and os.path.isfile(found) else None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


def download(repo_id: str, filename: str, revision: str, *, offline: bool = False) -> Path:
    """The local path of ``filename`` at ``revision`` of a model repo, downloading it into
    the HF cache if needed (never when ``offline`` or HF_HUB_OFFLINE)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError, RemoteEntryNotFoundError,
        RepositoryNotFoundError, RevisionNotFoundError,
    )

    # A pinned file already in the cache is returned from the file system: no request at
    # all (hf_hub_download would still send a telemetry request before its own shortcut).
    cached = cached_file(repo_id, filename, revision)
    if cached is not None:
        return cached
    what = f"{filename} from {repo_id} at revision {revision}"
    if offline or offline_by_env():
        # not hf_hub_download(local_files_only=True): it would look in the same place, but
        # not before sending a telemetry request
        why = "HF_HUB_OFFLINE is set" if offline_by_env() else "--offline"
        raise NotCachedError(f"{what} is not in the Hugging Face cache ({cache_dir()}) and "
                             f"downloads are off ({why})")
    try:
        path = hf_hub_download(repo_id, filename, revision=revision, repo_type="model")
    except LocalEntryNotFoundError as exc:
        cause = exc.__cause__ or exc
        raise WeightsError(
            f"cannot download {what}: the Hub at {endpoint()} could not be reached or did not "
            f"answer as a Hub ({_first_line(cause)}), and the file is not cached; check the "
            "connection (and HF_ENDPOINT), or use a machine that has it and copy the cache"
        ) from None
    except RemoteEntryNotFoundError:
        raise WeightsError(
            f"{filename} does not exist in {repo_id} at revision {revision} "
            f"({file_url(repo_id, filename, revision)}): the registry entry is wrong or the "
            "file was removed from the Hub") from None
    except RevisionNotFoundError:
        raise WeightsError(f"revision {revision} does not exist in {repo_id} (history "
                           "rewritten on the Hub?); the registry entry needs a new pin") from None
    except GatedRepoError:
        raise WeightsError(f"{repo_id} is gated: accept its conditions on the Hub and set "
                           "HF_TOKEN (or run 'hf auth login')") from None
    except RepositoryNotFoundError:
        raise WeightsError(f"repository {repo_id} not found on {endpoint()} (or it is private: "
                           "set HF_TOKEN or run 'hf auth login')") from None
    except HfHubHTTPError as exc:
        raise WeightsError(f"download of {what} failed: {_first_line(exc)}; nothing was kept "
                           "in the cache, try again") from None
    except (OSError, ValueError) as exc:
        raise WeightsError(f"download of {what} failed: {_first_line(exc)}; nothing was kept "
                           "in the cache, try again") from None
    except Exception as exc:  # noqa: BLE001 (network stacks raise many kinds)
        raise WeightsError(f"download of {what} failed ({type(exc).__name__}: "
                           f"{_first_line(exc)}); nothing was kept in the cache, try again"
                           ) from None
    return Path(path)


def evict(path: str | os.PathLike) -> None:
    """Delete a cached file: its snapshot entry and the blob it points to (only inside the
    HF cache; anything else is left alone)."""
    path = Path(path)
    root = cache_dir().resolve()
    targets = [path, path.resolve()]
    for target in targets:
        try:
            inside = target.parent.resolve().is_relative_to(root)
        except OSError:
            inside = False
        if inside and (target.is_symlink() or target.exists()):
            target.unlink(missing_ok=True)


def push(repo_id: str, files: Mapping[str, str | os.PathLike | bytes], *, message: str,
         private: bool = False) -> tuple[str, str]:
    """Upload ``files`` (path in repo -> local file or bytes) as one commit on the main
    branch of model repo ``repo_id``, creating the repo if needed. Returns (commit hash,
    commit URL). Endpoint and token: HF_ENDPOINT, HF_TOKEN (or the saved login)."""
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError

    if offline_by_env():
        raise WeightsError("cannot push while HF_HUB_OFFLINE is set")
    api = HfApi()
    ops = [CommitOperationAdd(path_in_repo=name,
                              path_or_fileobj=data if isinstance(data, bytes) else str(data))
           for name, data in files.items()]
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        info = api.create_commit(repo_id, operations=ops, commit_message=message,
                                 repo_type="model")
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status in (401, 403):
            raise WeightsError(f"the Hub at {api.endpoint} refused the upload to {repo_id} "
                               f"({status}): set HF_TOKEN to a token with write access (or "
                               "run 'hf auth login')") from None
        raise WeightsError(f"upload to {repo_id} failed: {_first_line(exc)}") from None
    except (OSError, ValueError, RuntimeError) as exc:
        raise WeightsError(f"upload to {repo_id} failed: {_first_line(exc)}") from None
    return str(info.oid), str(info.commit_url)
