"""Writing a file all at once or not at all: the one atomic writer of restore.

Every file restore writes (images, checkpoints, run state, the user registry, plots) is
written under a hidden temporary name beside its target (``.NAME.XXXXXXXX.tmp``), flushed
to disk and renamed over the target, so a crash or Ctrl-C never leaves half a file, and a
failed write leaves neither a temporary file nor a changed target. A new file gets the
usual mode (0666 less the umask; mkstemp's 0600 would be wrong for an output), a replaced
one keeps its mode, as when a file is overwritten in place.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a new, empty temporary file beside ``path`` to write (by name: torch.save,
    safetensors, matplotlib, or ``open(tmp, "wb")``). When the block ends normally the file
    is synced to disk and renamed over ``path``; when it raises (KeyboardInterrupt too) it
    is removed and ``path`` is left as it was. OSError where the folder cannot take it."""
    path = Path(path)
    try:
        keep_mode: int | None = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        keep_mode = None
    tmp = None
    try:
        with _signals_held():  # a Ctrl-C or SIGTERM lands once ``tmp`` is known
            tmp = _create_beside(path)
        if keep_mode is None:
            # the mode os.open gave it (0666 less the umask); a writer that replaces the file
            # by its own temporary (safetensors does, at 0600) must not change it
            keep_mode = stat.S_IMODE(tmp.stat().st_mode)
        yield tmp
        _sync(tmp)
        os.chmod(tmp, keep_mode)
        os.replace(tmp, path)
    except BaseException:
        if tmp is not None:
            with _signals_held(), contextlib.suppress(OSError):  # a second Ctrl-C waits
                os.unlink(tmp)
        raise


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM deferred to the end of the block: each one that comes meanwhile
    goes to its handler (KeyboardInterrupt, restore's SIGTERM one, the default) as the
    block ends. Python runs signal handlers in the main thread only, so there the handlers
    are swapped for the block; in any other thread nothing can interrupt the block. (A
    thread's signal mask would not do: the kernel hands a process signal to another thread,
    torch's or the reader's, and Python still raises in the main thread.)"""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[int] = []
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(sig)
        if handler not in (signal.SIG_IGN, None):  # None: set outside Python, left alone
            previous[sig] = signal.signal(sig, lambda signum, _frame: came.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(came):
            signal.raise_signal(sig)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """``data`` into ``path``, atomically (see ``atomic_path``)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _create_beside(path: Path) -> Path:
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            # 0o666 and the process umask, as for any new file
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                         0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(errno.EEXIST, f"cannot create a temporary file in {path.parent}")


def _sync(tmp: Path) -> None:
    """On disk before the rename, or a crash could leave an empty file under the target's
    name. Some network and FUSE file systems cannot sync: there it is skipped."""
    fd = os.open(tmp, os.O_RDWR | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.ENOSYS):
            raise
    finally:
        os.close(fd)
