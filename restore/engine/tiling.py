"""Tile grids aligned to the model's window grid, and feathered blending weights.

A tile is a *core* box (the pixels it is responsible for) and a *crop* box (core plus
``overlap`` pixels of context on each side, clipped to the image). Tile size and overlap
are multiples of the model's size multiple (its window), so every crop starts on the
window grid of the whole image: a tile sees the same windows, and the same reflect padding
at the bottom/right border, as the whole image does. Neighbouring tiles are blended with
complementary linear ramps over a band of ``overlap`` pixels centred on the core boundary,
so every blended pixel is at least ``overlap / 2`` pixels away from the crop's edge.

For models whose output at a pixel depends only on a bounded neighbourhood (LayerNorm
SwinIR), enough overlap makes tiled output equal the whole-image output. For models with
whole-image statistics (i-LN, HAT's channel attention) it does not: see docs/iln.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Tile:
    """Boxes in input pixels, half-open: (top, bottom, left, right)."""

    core: tuple[int, int, int, int]
    crop: tuple[int, int, int, int]
    band: int = 0  # width of the feather ramps at core boundaries with a neighbour

    @property
    def crop_shape(self) -> tuple[int, int]:
        t, b, l, r = self.crop
        return b - t, r - l


def round_up(value: int, multiple: int) -> int:
    return max(multiple, math.ceil(value / multiple) * multiple)


def _spans(length: int, tile: int) -> list[tuple[int, int]]:
    return [(s, min(s + tile, length)) for s in range(0, length, tile)]


def tile_grid(height: int, width: int, tile: int, overlap: int, multiple: int) -> list[Tile]:
    """Tiles covering (height, width); ``tile`` and ``overlap`` rounded up to ``multiple``.

    The last row/column of cores may be smaller than ``tile``; all crops of interior tiles
    have the same shape, so they batch together.
    """
    tile = round_up(tile, multiple)
    overlap = 0 if overlap <= 0 else round_up(overlap, multiple)
    tiles = []
    for t, b in _spans(height, tile):
        for l, r in _spans(width, tile):
            crop = (max(0, t - overlap), min(height, b + overlap),
                    max(0, l - overlap), min(width, r + overlap))
            tiles.append(Tile(core=(t, b, l, r), crop=crop, band=min(overlap, tile)))
    return tiles


def _ramp(n_out: int, start_out: int, lo: int | None, hi: int | None, band: float,
          scale: int) -> torch.Tensor:
    """1-D weights over a crop's output pixels [start_out, start_out + n_out).

    ``lo``/``hi``: core boundaries (input pixels) that have a neighbour, or None at the
    image border. The weight rises 0 -> 1 across [lo - band/2, lo + band/2] and falls
    1 -> 0 across [hi - band/2, hi + band/2] (in output pixels, times ``scale``).
    """
    g = torch.arange(start_out, start_out + n_out, dtype=torch.float64) + 0.5
    w = torch.ones(n_out, dtype=torch.float64)
    if band <= 0:
        if lo is not None:
            w = torch.where(g < lo * scale, 0.0, w)
        if hi is not None:
            w = torch.where(g >= hi * scale, 0.0, w)
        return w
    width = band * scale
    if lo is not None:
        w = w * ((g - (lo - band / 2) * scale) / width).clamp(0, 1)
    if hi is not None:
        w = w * (((hi + band / 2) * scale - g) / width).clamp(0, 1)
    return w


def tile_weights(tile: Tile, height: int, width: int, scale: int) -> torch.Tensor:
    """(sh, sw) float32 blending weights of ``tile``'s output crop; they sum to 1 over tiles.

    The feather band is the overlap, but never wider than the tile (set by ``tile_grid``),
    so that at most two ramps meet at any pixel of an axis.
    """
    overlap = tile.band
    t, b, l, r = tile.core
    ct, cb, cl, cr = tile.crop
    wy = _ramp((cb - ct) * scale, ct * scale, t if t > 0 else None, b if b < height else None,
               overlap, scale)
    wx = _ramp((cr - cl) * scale, cl * scale, l if l > 0 else None, r if r < width else None,
               overlap, scale)
    return (wy[:, None] * wx[None, :]).float()
