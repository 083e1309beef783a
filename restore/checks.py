"""The one set of value checks behind restore's three readers of typed settings: the
architecture configs (restore.archs.config), the registry (restore.registry.parse) and the
training configs (restore.train.config).

Each check returns the value in its type or raises ``Invalid`` with what is wrong in words
that follow the value ("must be an integer"); the reader adds where the value came from
(``upscale=2.5``, ``weights.toml: [models."x"]: size: 2.5``, ``train.lr=...``) and raises
its ConfigError. So every setting of restore is refused in the same words.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from enum import Enum
from typing import Any


class Invalid(ValueError):
    """What is wrong with a value: the words after it."""


def integer(value: Any, minimum: int | None = None, whole_floats: bool = False) -> int:
    """An int (not a bool); ``whole_floats``: 4.0 is taken as 4."""
    if isinstance(value, bool) or not isinstance(value, int):
        if whole_floats and isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise Invalid("must be an integer")
    if minimum is not None and value < minimum:
        raise Invalid(f"must be >= {minimum}")
    return value


def number(value: Any, *, positive: bool = False, minimum: float | None = None) -> float:
    """A finite int or float (not a bool) as float; ``positive``: > 0; ``minimum``: >= it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Invalid("must be a number")
    value = float(value)
    bounded = positive or minimum is not None
    if not math.isfinite(value) or (positive and value <= 0) or (
            minimum is not None and value < minimum):
        bound = "> 0" if positive else f">= {minimum}"
        raise Invalid(f"must be finite and {bound}" if bounded else "must be finite")
    return value


def flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Invalid("must be true or false")
    return value


def string(value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid("must be a string")
    return value


def one_of(value: Any, choices: type[Enum] | Iterable[str]):
    """A member of an Enum (by value) or one of the given strings."""
    if isinstance(choices, type) and issubclass(choices, Enum):
        try:
            return choices(value)
        except ValueError:
            valid = ", ".join(repr(e.value) for e in choices)
            raise Invalid(f"is not one of {valid}") from None
    choices = tuple(choices)
    if value not in choices:
        raise Invalid(f"is not one of {', '.join(repr(c) for c in choices)}")
    return value
