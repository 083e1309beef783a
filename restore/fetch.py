"""Getting a pinned file into place: downloaded from a plain HTTPS URL, or copied from a
file the user downloaded by hand, and hashed while it is written.

The bytes go to a temporary file beside the target (restore.atomic) that is renamed into
place only when the size and the sha256 match the registry's; on any failure (no
connection, an error status, a web page instead of the file, too few or too many bytes,
other content, a full disk, Ctrl-C) the temporary is removed, with the folders made for
it, so nothing is left behind and a later run starts again from nothing (no resuming).
A process killed outright (kill -9, a power cut) cannot remove its temporary: the next
download of the same file removes those of its temporaries that no live download holds
(each holds an advisory lock on its own, which the system drops when the process dies;
where there are no such locks, one unwritten for ten minutes counts as abandoned).

The one module that opens URLs itself (restore.hub leaves that to huggingface_hub), with
the standard library only: urllib's proxies (https_proxy, no_proxy), the system's
certificates (verified), redirects followed (Google Drive and release pages redirect to
their download hosts). A progress bar on stderr when it is a terminal (restore.progress).

Failures raise restore.errors.WeightsError (ChecksumError for other content) whose
message is the reason alone: the caller adds which model and what to do.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from .atomic import atomic_path

try:
    import fcntl  # advisory locks: the mark of a live download (_hold)
except ImportError:  # Windows: _remove_abandoned goes by age there
    fcntl = None
from .errors import ChecksumError, WeightsError, os_error_words

BLOCK = 1 << 20  # bytes read, hashed and written at a time
TIMEOUT = 60.0  # seconds without a byte from the server before giving up
ABANDONED_S = 600.0  # without file locks: a temporary unwritten this long is abandoned
CREATED_S = 5.0  # with them: younger than this, it may be one just made and not locked yet
# How an HTML page starts (after white space or a byte-order mark); no weights file does:
# a zip (torch.save) starts with PK, a pickle with 0x80, safetensors with a header length.
_HTML_STARTS = (b"<!doctype html", b"<html", b"<head", b"<body")
_SNIFF = 512  # bytes looked at
_WEB_PAGE = ("the server answered with a web page ({how}) instead of the file (Google Drive "
             "does this when the file's download quota is used up, or to ask for a sign-in "
             "or a virus-scan confirmation)")


def download(url: str, dest: Path, *, sha256: str, size: int, desc: str | None = None) -> Path:
    """Download ``url`` to ``dest`` (folders made as needed), verified against ``sha256``
    and ``size`` (bytes) while it is written; returns ``dest``. Raises WeightsError (the
    reason) and leaves nothing behind on any failure."""
    import http.client
    import urllib.error
    import urllib.request

    # some hosts refuse urllib's own "Python-urllib/3.x"
    request = urllib.request.Request(url, headers={"User-Agent": "restore", "Accept": "*/*"})
    with _placing(dest) as tmp:
        try:
            response = urllib.request.urlopen(request, timeout=TIMEOUT)
        except urllib.error.HTTPError as exc:
            raise WeightsError(f"the server answered {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            raise WeightsError(f"the server could not be reached ({_net_words(exc.reason)})"
                               ) from None
        except (http.client.HTTPException, OSError, ValueError) as exc:
            raise WeightsError(f"the request failed ({_net_words(exc)})") from None
        with response:
            if response.status != 200:
                raise WeightsError(f"the server answered {response.status} {response.reason}")
            ctype = (response.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if ctype in ("text/html", "application/xhtml+xml"):
                raise WeightsError(_WEB_PAGE.format(how=f"Content-Type {ctype}"))
            announced = (response.headers.get("Content-Length") or "").strip()
            if announced.isdigit() and int(announced) != size:
                raise WeightsError(
                    f"the server announces {int(announced):,} bytes, the registry expects "
                    f"{size:,} (the file at the URL changed, or it is not the file)")
            # read1: what has arrived (up to a block), so the bar moves on a slow link
            _stream(response.read1, tmp, sha256=sha256, size=size, desc=desc,
                    broke="the connection broke off", what="the downloaded file")
    return dest


def copy_verified(source: Path, dest: Path, *, sha256: str, size: int,
                  desc: str | None = None) -> Path:
    """Copy ``source`` to ``dest`` (folders made as needed) if it has ``size`` bytes and
    ``sha256``, checked while it is copied; returns ``dest``. Raises WeightsError /
    ChecksumError (naming ``source``) and leaves ``dest`` as it was otherwise."""
    try:
        actual_size = source.stat().st_size
        if not source.is_file():
            raise IsADirectoryError(21, "Is a directory")
    except FileNotFoundError:
        raise WeightsError(f"{source}: cannot read it (no such file)") from None
    except OSError as exc:
        raise WeightsError(f"{source}: cannot read it ({os_error_words(exc)})") from None
    if actual_size != size:
        raise ChecksumError(
            f"{source} is {actual_size:,} bytes, the registry expects {size:,}: it is not the "
            "file (a web page saved in its place, or an unfinished download?)",
            expected=sha256)
    try:
        with open(source, "rb") as f, _placing(dest) as tmp:
            _stream(f.read1, tmp, sha256=sha256, size=size, desc=desc,
                    broke="reading it broke off", what=str(source))
    except OSError as exc:  # opening the source
        raise WeightsError(f"{source}: cannot read it ({os_error_words(exc)})") from None
    return dest


@contextlib.contextmanager
def _placing(dest: Path) -> Iterator[Path]:
    """A temporary file beside ``dest``, renamed over it when the block ends normally; when
    it raises, the temporary and the folders made for it are removed."""
    made: list[Path] = []
    try:
        try:
            folder = dest.parent
            while not folder.exists() and folder != folder.parent:
                made.append(folder)
                folder = folder.parent
            dest.parent.mkdir(parents=True, exist_ok=True)
            _remove_abandoned(dest)
            lock = None
            try:
                with atomic_path(dest) as tmp:
                    lock = _hold(tmp)
                    yield tmp
            finally:  # after the rename (or the removal): never an unlocked, finished temporary
                if lock is not None:
                    os.close(lock)
        except OSError as exc:  # the target's folder: the callers map their other errors
            raise WeightsError(f"cannot write into {dest.parent} "
                               f"({os_error_words(exc)})") from None
    except BaseException:
        for path in made:  # innermost first; one another process is filling stays
            with contextlib.suppress(OSError):
                path.rmdir()
        raise


def _hold(tmp: Path) -> int | None:
    """An exclusive advisory lock on ``tmp``, the mark of a live download: the descriptor
    that holds it (closing it drops the lock), or None where there are no locks (no fcntl,
    or a file system that refuses them). Opened for writing: NFS locks nothing else."""
    if fcntl is None:
        return None
    fd = os.open(tmp, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError:  # the file system takes no locks: the download goes on unmarked; the
        os.close(fd)  # next one cannot lock it either, so it never removes it as abandoned
        return None
    return fd


def _remove_abandoned(dest: Path) -> None:
    """Remove the temporaries of ``dest`` (restore.atomic's names, ``.NAME.XXXXXXXX.tmp``)
    that belong to a download killed outright: unlocked (see _hold) and older than
    CREATED_S, or, without file locks, unwritten for ABANDONED_S."""
    import glob
    import time

    for tmp in dest.parent.glob(f".{glob.escape(dest.name)}.{'[0-9a-f]' * 8}.tmp"):
        with contextlib.suppress(OSError):  # gone already, or not ours to remove
            age = time.time() - tmp.stat().st_mtime
            if fcntl is None:
                if age > ABANDONED_S:
                    tmp.unlink()
                continue
            if age < CREATED_S:
                continue
            fd = os.open(tmp, os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError: live
                tmp.unlink()
            finally:
                os.close(fd)


def _stream(read: Callable[[int], bytes], tmp: Path, *, sha256: str, size: int,
            desc: str | None, broke: str, what: str) -> None:
    """Copy ``read``'s blocks into ``tmp`` while hashing them; raise unless exactly
    ``size`` bytes with ``sha256`` came."""
    import http.client

    from . import progress

    digest = hashlib.sha256()
    done = 0
    head = b""  # the first bytes, for telling a web page (blocks may be a few bytes)
    with open(tmp, "wb") as out, progress.bar(total=size, desc=desc, unit="B",
                                              unit_scale=True) as bar:
        while True:
            try:
                block = read(BLOCK)
            except (http.client.HTTPException, OSError, ValueError) as exc:
                raise WeightsError(f"{broke} after {done:,} of {size:,} bytes "
                                   f"({_net_words(exc)})") from None
            if not block:
                break
            if len(head) < _SNIFF:
                head += block[:_SNIFF - len(head)]
                if len(head) == _SNIFF and _looks_like_html(head):
                    raise WeightsError(_WEB_PAGE.format(how="it starts as HTML"))
            done += len(block)
            if done > size:
                raise WeightsError(f"{what} has more than the {size:,} bytes the registry "
                                   "expects (the file at the URL changed, or it is not the file)")
            digest.update(block)
            try:
                out.write(block)
            except OSError as exc:
                raise WeightsError(f"cannot write into {tmp.parent} "
                                   f"({os_error_words(exc)})") from None
            bar.update(len(block))
    if len(head) < _SNIFF and _looks_like_html(head):
        raise WeightsError(_WEB_PAGE.format(how="it starts as HTML"))
    if done < size:
        raise WeightsError(f"{broke} after {done:,} of {size:,} bytes")
    actual = digest.hexdigest()
    if actual != sha256:
        raise ChecksumError(f"{what} does not match the registry: sha256 expected {sha256}, "
                            f"actual {actual} (the file at the URL changed, or it is not the "
                            "file)", expected=sha256, actual=actual)


def _looks_like_html(block: bytes) -> bool:
    head = block[:_SNIFF].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith(_HTML_STARTS)


def _net_words(exc: BaseException | str) -> str:
    """A network failure in words ("[Errno -2] Name or service not known" names no host
    and no remedy)."""
    import http.client
    import socket
    import ssl

    if isinstance(exc, str):
        return exc
    if isinstance(exc, socket.gaierror):
        return "the host name could not be resolved: no connection or no DNS?"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return f"no answer within {TIMEOUT:g} s"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset by the server"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"the server's TLS certificate could not be verified: {exc.verify_message}"
    if isinstance(exc, http.client.IncompleteRead):
        return "the server closed the connection early"
    if isinstance(exc, OSError) and exc.errno is not None:
        return os_error_words(exc)
    text = str(exc).strip().splitlines()
    return text[0] if text and text[0] else type(exc).__name__
