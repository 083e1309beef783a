"""The one small hierarchy of errors that library code raises.

The CLI maps each class to a one-line message and an exit code (see restore.cli.main):
ConfigError and UsageError are usage errors (exit 2), Interrupted carries its own code (130
for Ctrl-C, 143 for SIGTERM), everything else is a runtime failure (exit 1).
"""

from __future__ import annotations


class RestoreError(Exception):
    """Base class: a failure the user can act on, with a message that says how."""


class ConfigError(RestoreError, ValueError):
    """A configuration (arch kwargs, TOML, registry entry) is invalid; the message names the key."""


class UsageError(RestoreError):
    """The command line asks for something that cannot be done."""


class CheckpointError(RestoreError):
    """A checkpoint cannot be read or does not fit the model (names the missing/unexpected keys)."""


class DestinationError(RestoreError):
    """An output folder cannot be created or written to (checked before any model loads)."""


class WeightsError(RestoreError):
    """Weights cannot be had: download failed, not cached while offline, file missing."""


class NotCachedError(WeightsError):
    """Offline, and the file is not in the cache."""


class ChecksumError(WeightsError):
    """A weights file does not have the registered sha256/size."""

    def __init__(self, message: str, expected: str = "", actual: str = "") -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


# What the operating system's errors mean to a user, in words ("[Errno 20] Not a
# directory: 'one.png/sub'" says neither which part is wrong nor what to do).
_OS_WORDS = {
    "ENOTDIR": "a file is in the way (a part of the path is a file, not a folder)",
    "EEXIST": "a file is in the way (it exists and is not a folder)",
    "EACCES": "permission denied",
    "EPERM": "not permitted here",
    "EROFS": "the file system is read-only",
    "ENOSPC": "no space left on the device",
    "EDQUOT": "the disk quota is exhausted",
    "ENAMETOOLONG": "the name is too long",
    "ENOENT": "a folder on the way does not exist",
    "EISDIR": "it is a folder",
    "EIO": "an input/output error on the device",
}


def os_error_words(exc: OSError) -> str:
    """An OSError's reason in words, without its errno number or repeated path."""
    import errno as _errno

    name = _errno.errorcode.get(exc.errno or -1, "")
    return _OS_WORDS.get(name) or (exc.strerror.lower() if exc.strerror else str(exc))


class Interrupted(RestoreError):
    """Ctrl-C or SIGTERM stopped a command; the message says what was finished and how to
    go on. Exit code 128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM), as shells
    report a process a signal stopped."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


class UnknownModelError(UsageError):
    """A model or preset name that the registry does not have (lists close matches)."""


class NoDefaultModelError(UsageError):
    """The registry declares no default model for a task yet."""
