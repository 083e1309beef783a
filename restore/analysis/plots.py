"""Figures of a model report (``plot_model``) and of training runs (``plot_runs``, the
paper's Figure 1 view), written so that the same data give the same bytes.

matplotlib is an optional extra ('restore[plot]'): ``require_matplotlib`` says how to
install it; it and numpy are imported only when drawing.
"""

from __future__ import annotations

import itertools
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path

from ..atomic import atomic_path
from ..errors import UsageError
from .report import ModelReport
from .runs import RunsView, _transform
from .stats import FP16_MAX

__all__ = ["plot_model", "plot_runs", "require_matplotlib"]

PLOT_FORMATS = (".png", ".pdf", ".svg")


def require_matplotlib():
    """The matplotlib module, or UsageError saying how to install it."""
    try:
        import matplotlib
        from matplotlib.figure import Figure  # noqa: F401  (the part we use)
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'restore[plot]'") from None
    return matplotlib


def _check_plot_path(path: Path) -> None:
    if path.suffix.lower() not in PLOT_FORMATS:
        raise UsageError(f"--plot {path}: the file name must end in "
                         f"{', '.join(PLOT_FORMATS)}")
    if not path.parent.is_dir():
        raise UsageError(f"--plot {path}: the folder {path.parent} does not exist")


def _save(fig, path: Path) -> Path:
    """Write ``fig`` atomically with no date or version in the file: the same data give the
    same bytes (PNG tested; PDF and SVG with their date fields removed)."""
    import matplotlib

    fmt = path.suffix.lower().lstrip(".")
    metadata = {"png": {"Software": None}, "pdf": {"Creator": None, "Producer": None,
                                                   "CreationDate": None},
                "svg": {"Creator": None, "Date": None}}[fmt]
    with atomic_path(path) as tmp, matplotlib.rc_context({"svg.hashsalt": "restore",
                                                           "svg.fonttype": "none"}):
        fig.savefig(tmp, format=fmt, metadata=metadata)
    return path


def _short(layer: str) -> str:
    """"layers.3.residual_group.blocks.1" -> "3.1" (group.block), DRCT's "layers.3.swin2" ->
    "3.2"; other names unchanged."""
    m = re.search(r"layers\.(\d+)\.(?:.*\.)?(?:blocks\.|swin)(\d+)$", layer)
    return f"{m.group(1)}.{m.group(2)}" if m else layer


def plot_model(report: ModelReport, path: str | os.PathLike) -> Path:
    """Two panels: per block max |x| (bars) and mean |x| (line) on a log axis with the fp16
    limit, the verdict threshold and the any-layer max; channel entropy with ln C."""
    require_matplotlib()
    from matplotlib.figure import Figure

    path = Path(path)
    _check_plot_path(path)
    names = [_short(b["layer"]) for b in report.blocks]
    xs = list(range(len(names)))
    fig = Figure(figsize=(max(7.5, 0.45 * len(names) + 3.5), 6.5), dpi=100, layout="constrained")
    ax1, ax2 = fig.subplots(2, 1, sharex=True)
    ax1.bar(xs, [b["max_abs"] for b in report.blocks], color="#4878a8", label="max |x| (block)")
    ax1.plot(xs, [b["mean_abs"] for b in report.blocks], "o-", color="#222222",
             label="mean |x| (block)")
    amax = report.any_layer_max[0]
    ax1.axhline(FP16_MAX, color="#c0392b", label="fp16 max 65504")
    ax1.axhline(FP16_MAX / report.margin, color="#e67e22", ls="--",
                label=f"verdict threshold 65504/{report.margin:g}")
    if math.isfinite(amax) and amax > 0:
        ax1.axhline(amax, color="#7f8c8d", ls=":", label=f"any-layer max {amax:.3g}")
    ax1.set_yscale("log")
    ax1.set_ylabel("|x|")
    ax1.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
    ax1.set_title(f"{report.model}: fp16-safe {'yes' if report.fp16_safe else 'no'}",
                  fontsize=10)
    ax2.bar(xs, [b["entropy"] for b in report.blocks], color="#59a14f", label="entropy")
    ax2.plot(xs, [b["max_entropy"] for b in report.blocks], "_", color="#222222",
             markersize=14, mew=2, label="ln C (even energy)")
    ax2.set_ylabel("channel entropy (nats)")
    ax2.set_ylim(0, max([b["max_entropy"] for b in report.blocks] + [1.0]) * 1.1)
    ax2.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
    ax2.set_xticks(xs, names, rotation=90 if len(names) > 16 else 0, fontsize=7)
    ax2.set_xlabel("block (group.block)")
    return _save(fig, path)


def _edges(steps: Sequence[int]) -> list[float]:
    """Cell edges around each step (midpoints; the outer cells as wide as their neighbour)."""
    s = [float(v) for v in steps]
    if len(s) == 1:
        return [s[0] - 0.5, s[0] + 0.5]
    mids = [(a + b) / 2 for a, b in itertools.pairwise(s)]
    return [s[0] - (mids[0] - s[0])] + mids + [s[-1] + (s[-1] - mids[-1])]


def _matrix(stat: str, rows: Sequence[Sequence[float | None]]):
    import numpy as np

    return np.ma.masked_invalid(np.array(
        [[np.nan if (t := _transform(stat, v)) is None else t for v in row] for row in rows],
        dtype=np.float64))


def plot_runs(view: RunsView, path: str | os.PathLike) -> Path:
    """The paper's Figure 1 view: per run (columns), a heatmap of the stat (log10 for
    magnitudes) over (training step, block), and one of the channel entropy, each row on
    one colour scale shared by all runs."""
    require_matplotlib()
    from matplotlib.figure import Figure

    path = Path(path)
    _check_plot_path(path)
    rows = [view.stat] if view.stat == "entropy" else [view.stat, "entropy"]
    n = len(view.runs)
    fig = Figure(figsize=(3.6 * n + 1.4, 3.0 * len(rows) + 0.4), dpi=100, layout="constrained")
    axes = fig.subplots(len(rows), n, squeeze=False)
    labels = {"max_abs": "log10 max |x|", "mean_abs": "log10 mean |x|",
              "entropy": "channel entropy (nats)"}
    for i, stat in enumerate(rows):
        vmin, vmax = view.entropy_scale if stat == "entropy" else view.scale
        mesh = None
        for j, r in enumerate(view.runs):
            ax = axes[i][j]
            mesh = ax.pcolormesh(_edges(r.steps), [k - 0.5 for k in range(len(r.blocks) + 1)],
                                 _matrix(stat, r.values[stat]), vmin=vmin, vmax=vmax,
                                 cmap="magma" if stat != "entropy" else "viridis",
                                 shading="flat")
            ax.set_yticks(range(len(r.blocks)), [_short(b) for b in r.blocks], fontsize=7)
            ax.invert_yaxis()
            ax.tick_params(axis="x", labelsize=7)
            if i == 0:
                ax.set_title(Path(r.run).name or r.run, fontsize=9)
            if i == len(rows) - 1:
                ax.set_xlabel("training step")
            if j == 0:
                ax.set_ylabel("block")
        fig.colorbar(mesh, ax=list(axes[i]), label=labels[stat])
    return _save(fig, path)
