"""Training runs: the stats.jsonl that ``restore train`` writes at each validation (one
record of ``stats.feature_stats`` per line), read and compared, several runs on shared
colour scales (for ``plots.plot_runs``).

No torch, no numpy: reading a run's statistics stays fast.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError

__all__ = ["RunStats", "RunsView", "format_runs", "format_stats", "load_runs", "read_stats"]

RUN_STATS = ("max_abs", "mean_abs", "entropy")  # what `inspect run --stat` may show


def read_stats(path: str | os.PathLike) -> list[dict]:
    """The records of a run's stats.jsonl: {"step", "image", "blocks": [per-block dicts]}
    (``path`` is the file or the run directory)."""
    path = Path(path)
    if path.is_dir():
        path = path / "stats.jsonl"
    if not path.is_file():
        raise UsageError(f"{path}: no feature statistics (written at each validation)")
    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip()]
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not a stats.jsonl file ({exc})") from None


def format_stats(record: dict) -> list[str]:
    """One record as fixed-width rows: block, mean |x|, max |x|, entropy (nats) / ln C."""
    width = max(len("block"), *(len(b["layer"]) for b in record["blocks"]))
    rows = [f"{'block':<{width}}  {'mean|x|':>10}  {'max|x|':>10}  {'H (nats)':>8}  {'ln C':>5}"]
    rows += [f"{b['layer']:<{width}}  {b['mean_abs']:>10.4g}  {b['max_abs']:>10.4g}  "
             f"{b['entropy']:>8.3f}  {b['max_entropy']:>5.2f}" for b in record["blocks"]]
    return rows


@dataclass(frozen=True)
class RunStats:
    """One run's statistics as matrices: ``values[stat][block][step]`` (None where a record
    lacks the block), blocks in first-seen order, steps in file order."""

    run: str
    image: str
    steps: tuple[int, ...]
    blocks: tuple[str, ...]
    max_entropy: tuple[float, ...]
    values: Mapping[str, tuple[tuple[float | None, ...], ...]]
    records: tuple[dict, ...] = field(repr=False)


def _run_stats(path: str | os.PathLike) -> RunStats:
    records = read_stats(path)
    if not records:
        raise UsageError(f"{path}: stats.jsonl is empty (no validation has run yet)")
    try:
        blocks: dict[str, float] = {}
        for r in records:
            for b in r["blocks"]:
                blocks.setdefault(b["layer"], float(b["max_entropy"]))
        by_step = [{b["layer"]: b for b in r["blocks"]} for r in records]
        values = {s: tuple(tuple(_float(rows.get(name, {}).get(s)) for rows in by_step)
                           for name in blocks) for s in RUN_STATS}
        steps = tuple(int(r["step"]) for r in records)
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"{path}: malformed statistics record ({exc!r})") from None
    return RunStats(run=str(path), image=str(records[-1].get("image", "")), steps=steps,
                    blocks=tuple(blocks), max_entropy=tuple(blocks.values()), values=values,
                    records=tuple(records))


def _float(v: Any) -> float | None:
    return None if v is None else float(v)


def _transform(stat: str, v: float | None) -> float | None:
    """The value a heatmap shows: log10 for magnitudes (None for 0 or missing)."""
    if v is None or not math.isfinite(v):
        return None
    if stat == "entropy":
        return v
    return math.log10(v) if v > 0 else None


def _scale(stat: str, runs: Sequence[RunStats]) -> tuple[float, float]:
    vals = [t for r in runs for row in r.values[stat] for v in row
            if (t := _transform(stat, v)) is not None]
    if not vals:
        return (0.0, 1.0)
    return (min(vals), max(vals))


@dataclass(frozen=True)
class RunsView:
    """Several runs ready to compare: ``scale`` is the (vmin, vmax) of the shown ``stat``
    (log10 for mean_abs/max_abs) over ALL runs, ``entropy_scale`` the same for entropy, so
    that one colour means one value in every panel."""

    stat: str
    runs: tuple[RunStats, ...]
    scale: tuple[float, float]
    entropy_scale: tuple[float, float]

    @property
    def transform(self) -> str:
        return "none" if self.stat == "entropy" else "log10"

    def to_dict(self) -> dict[str, Any]:
        return {"stat": self.stat, "transform": self.transform,
                "scale": {"vmin": self.scale[0], "vmax": self.scale[1]},
                "entropy_scale": {"vmin": self.entropy_scale[0], "vmax": self.entropy_scale[1]},
                "runs": [{"run": r.run, "image": r.image, "steps": list(r.steps),
                          "blocks": list(r.blocks), "records": list(r.records)}
                         for r in self.runs]}


def load_runs(paths: Sequence[str | os.PathLike], stat: str = "max_abs") -> RunsView:
    """Read each run's stats.jsonl; the colour scales are shared by all of them."""
    if stat not in RUN_STATS:
        raise UsageError(f"--stat {stat!r}: one of {', '.join(RUN_STATS)}")
    if not paths:
        raise UsageError("give at least one run directory")
    runs = tuple(_run_stats(p) for p in paths)
    return RunsView(stat=stat, runs=runs, scale=_scale(stat, runs),
                    entropy_scale=_scale("entropy", runs))


def _cell(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def format_runs(view: RunsView) -> list[str]:
    """Per run: a header, then per block max |x| and entropy at the first and last step."""
    lines: list[str] = []
    for r in view.runs:
        if lines:
            lines.append("")
        first, last = r.steps[0], r.steps[-1]
        lines.append(f"{r.run}: {len(r.steps)} records, steps {first}..{last}, image {r.image}")
        width = max([len("block")] + [len(b) for b in r.blocks])
        a, b = f"@{first}", f"@{last}"
        lines.append(f"{'block':<{width}}  {'max|x|':>9}  {'max|x|':>9}  {'H':>6}  {'H':>6}  "
                     f"{'ln C':>5}")
        lines.append(f"{'':<{width}}  {a:>9}  {b:>9}  {a:>6}  {b:>6}")
        mx, en = r.values["max_abs"], r.values["entropy"]
        for i, name in enumerate(r.blocks):
            lines.append(f"{name:<{width}}  {_cell(mx[i][0], '.4g'):>9}  "
                         f"{_cell(mx[i][-1], '.4g'):>9}  {_cell(en[i][0], '.3f'):>6}  "
                         f"{_cell(en[i][-1], '.3f'):>6}  {r.max_entropy[i]:>5.2f}")
    return lines

