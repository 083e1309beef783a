"""Registers every command module on the app (imported by main before dispatch)."""

from __future__ import annotations

from . import eval as _eval  # noqa: F401
from . import inspect as _inspect  # noqa: F401
from . import models as _models  # noqa: F401
from . import process as _process  # noqa: F401
from . import train as _train  # noqa: F401
