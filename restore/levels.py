"""An image's degradation level, and the model for it: the noise sigma of ``restore
denoise`` and the JPEG quality of ``restore jpeg``, given or measured per file.

A level is recorded in the output's JSON, checked against the range the model declares (a
warning outside it), and picks the model where the task's defaults are several (one per
range, gray and colour ones: restore.registry.pick_by_level). ``LevelPicker`` gives
restore.pipeline its two per-image hooks (``pick``/``choose`` and ``before``) and reports
what it finds through the ``say`` it is given: this module prints nothing itself.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .errors import UsageError
from .loader import Loaded


@dataclass(frozen=True)
class Level:
    """How a task's level is named, given and measured.

    measure: ImageData -> (value or None when unknown, "given"/"estimated"/"unknown", the
    note to report or None); it reports nothing itself (it runs before the model)."""

    given: float | None  # on the command line (then it is every file's level)
    key: str  # the JSON key: "sigma", "jpeg_quality"
    option: str  # the command-line option: "sigma", "quality"
    name: str  # in messages: "sigma", "JPEG quality"
    fmt: str  # of a value in messages: ".1f", "d"
    measure: Callable[[object], tuple]
    verb: str  # "the range the model ... (lo-hi)"
    tail: str = ""  # after that warning

    def label(self, value) -> str:
        return f"{self.name} {value:{self.fmt}}"


def sigma_level(sigma: float | None) -> Level:
    """Denoising: ``sigma`` on the 0..255 scale, else estimated per image."""
    def measure(img) -> tuple:
        from .estimate import estimate_noise_sigma

        if sigma is not None:
            return float(sigma), "given", None
        try:
            value = float(estimate_noise_sigma(img.pixels))
        except UsageError as exc:  # too small to estimate: the blind model still runs
            return None, "unknown", f"{img.path}: noise level not estimated ({exc})"
        return value, "estimated", f"{img.path}: estimated noise sigma {value:.1f}"

    return Level(sigma, "sigma", "sigma", "sigma", ".1f", measure, "was trained for")


def quality_level(quality: int | None) -> Level:
    """JPEG: ``quality``, else read from each JPEG's quantization tables."""
    def measure(img) -> tuple:
        from .estimate import estimate_jpeg_quality

        if quality is not None:
            return quality, "given", None
        q = estimate_jpeg_quality(img.jpeg_qtables) if img.jpeg_qtables else None
        if q is None:
            return None, "unknown", f"{img.path}: not a JPEG file, quality unknown"
        return q, "estimated", f"{img.path}: estimated JPEG quality {q}"

    return Level(quality, "jpeg_quality", "quality", "JPEG quality", "d", measure, "is for",
                 ": the result may be worse than the input")


def span_text(span: tuple) -> str:
    return f"{span[0]:g}-{span[1]:g}"


class LevelPicker:
    """Per image: its level (measured once), the model for it (``pick``), and what to
    record and report (``before``: the note, the out-of-range warning, the JSON info)."""

    def __init__(self, level: Level, models: Sequence[Loaded],
                 say: Callable[[str], None]) -> None:
        self.level, self.models, self.say = level, list(models), say
        # the last image (weakly: it is not kept alive for this) and its measure: measured
        # once, used by pick and by before (which come in either order)
        self._last: list = [lambda: None, None]

    def _measured(self, img) -> tuple:
        if self._last[0]() is not img:
            self._last[:] = [weakref.ref(img), self.level.measure(img)]
        return self._last[1]

    def pick(self, img) -> Loaded:
        from .registry import pick_by_level

        return pick_by_level(self.models, self._measured(img)[0], span_of=lambda m: m.span,
                             channels=img.channels)

    def before(self, img) -> dict:
        level = self.level
        value, how, note = self._measured(img)
        lm = self.pick(img)
        info = {level.key: value if value is None or isinstance(value, int) else round(value, 2),
                f"{level.key}_source": how}
        if len(self.models) > 1:
            info["model"] = lm.name
            note = (note or f"{img.path}: {level.label(value)}") + f": model {lm.name}"
            if value is None:
                note += f" (the first; --{level.option} picks another)"
        if note:
            self.say(note)
        span = lm.span
        if value is not None and span and not (span[0] <= value <= span[1]):
            self.say(f"{img.path}: warning: {level.label(value)} is outside the range the "
                     f"model {level.verb} ({span_text(span)}){level.tail}")
        return info
