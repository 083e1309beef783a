"""Progress bars: on stderr when it is a terminal, never on stdout, never with --quiet.

One factory for every bar of the program (the files of a run, the tiles of an image, the
images of an evaluation, the steps of a training run), so that when and how they show is
decided once. A terminal that reports no size (a pseudo-terminal nobody sized: ``script``,
some containers and IDE consoles) gets 80 x 24: tqdm would otherwise draw its bar in zero
columns and hide every bar below row zero, that is, print nothing at all, which is how the
bars once vanished unnoticed.
"""

from __future__ import annotations

import os
import sys

from tqdm import tqdm

FALLBACK_COLUMNS, FALLBACK_ROWS = 80, 24


def enabled(quiet: bool = False) -> bool:
    """Whether bars show: not quiet, and stderr is a terminal."""
    return not quiet and sys.stderr.isatty()


def _size() -> tuple[int, int] | None:
    """None where the terminal reports a usable size (the bar then follows resizes), else
    the fallback (columns, rows): where it reports 0 or cannot be asked."""
    try:
        size = os.get_terminal_size(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        return FALLBACK_COLUMNS, FALLBACK_ROWS
    return None if size.columns > 0 and size.lines > 0 else (FALLBACK_COLUMNS, FALLBACK_ROWS)


def bar(total: int | None = None, *, desc: str | None = None, unit: str = "it",
        quiet: bool = False, leave: bool = True, initial: int = 0,
        mininterval: float = 0.1, unit_scale: bool = False) -> tqdm:
    """A tqdm bar on stderr, disabled (it still counts, draws nothing) off a terminal or
    when ``quiet``. ``unit_scale``: counts shown as k/M/G in steps of 1024 (bytes)."""
    on = enabled(quiet)
    fixed = _size() if on else None
    cols, rows = fixed or (None, None)
    return tqdm(total=total, desc=desc, unit=unit, leave=leave, initial=initial,
                file=sys.stderr, disable=not on, ncols=cols, nrows=rows,
                dynamic_ncols=on and fixed is None, mininterval=mininterval,
                unit_scale=unit_scale, unit_divisor=1024 if unit_scale else 1000)


def write(msg: str) -> None:
    """A line on stderr that does not tear an open bar."""
    tqdm.write(msg, file=sys.stderr)
