"""The one small hierarchy of errors that library code raises.

The CLI maps each class to a one-line message and an exit code (see restore.cli.main):
ConfigError and UsageError are usage errors (exit 2), everything else is a runtime failure
(exit 1).
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
