"""Exact tiled inference for models with whole-image statistics.

i-LN normalizes every block over the whole image and HAT's channel attention pools over
the whole image, so independent tiles cannot reproduce the whole-image result. This
executor runs the network layer by layer instead: every feature map is kept whole (on the
CPU), each local step (convolutions, window attention) is computed tile by tile on the
device with the halo of context that step needs, and each global statistic (i-LN mean and
variance, channel means) is accumulated over all tiles of the current map, in fp64, before
the step that uses it. The result equals the whole-image forward up to float rounding,
whatever the tile size, with device memory bounded by one tile. The whole maps live where
restore.engine.maps puts them: on the device while they fit, then host RAM up to a budget,
then a memory-mapped scratch file, so host memory stays bounded too.

The model describes its dataflow through ``forward_exact(x, runner)`` using three
primitives of the runner below (``local``, ``moments``, ``channel_mean``), and its blocks'
``branches``/``merge``/``mlp_step`` steps: the engine knows no architecture.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from .devices import Precision, autocast
from .maps import MapStore
from .tiling import round_up


def _spans(length: int, tile: int) -> list[tuple[int, int]]:
    return [(s, min(s + tile, length)) for s in range(0, length, tile)]


def _wrap_parts(lo: int, hi: int, length: int, wrap: int) -> list[tuple[int, int]]:
    """The spans of an axis of ``length`` that crop [lo, hi) reads, in order.

    With ``wrap`` (a shifted-window block's shift), a crop that touches one border of the
    axis but not the other reads its ``wrap`` positions at the far end from the opposite
    border of the map instead. The block rolls its crop cyclically by ``wrap``, as the
    whole-image forward rolls the whole map: the last window then joins the crop's first
    and last ``wrap`` positions where the whole map joins its own. The two halves are
    masked from each other, but with a finite mask (-100, as in the reference code) a
    large attention logit still leaks across it, so the border core must see the very
    positions it sees in the whole image. The positions replaced lie in the crop's halo,
    whose output is discarded anyway.
    """
    if wrap <= 0 or (lo == 0) == (hi == length) or hi - lo < 2 * wrap:
        return [(lo, hi)]
    if lo == 0:
        return [(0, hi - wrap), (length - wrap, length)]
    return [(0, wrap), (lo + wrap, hi)]


def _crop(m: Tensor, rows: list[tuple[int, int]], cols: list[tuple[int, int]],
          device: torch.device) -> Tensor:
    """The crop of map ``m`` over the row and column spans, on ``device``, as one
    contiguous channels-last tensor: the layout in which the blocks' token views
    (``image_to_tokens``) are free, where a strided view of the map would be copied by
    every one of them."""
    parts = [m[:, :, a:b] for a, b in rows]
    parts = [torch.cat([p[:, :, :, a:b] for a, b in cols], 3) if len(cols) > 1
             else p[:, :, :, cols[0][0]:cols[0][1]] for p in parts]
    crop = torch.cat(parts, 2) if len(parts) > 1 else parts[0]
    return crop.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)


def _tile_moments(core: Tensor) -> tuple[int, Tensor, Tensor]:
    """(count, mean, biased variance) of one tile's values, combined over tiles in fp64 by
    ``combine_moments``.

    The reductions are fp32 around the tile's own fp32 mean (its deviations are exact in
    fp32, and their mean corrects the shift): relative errors of 1e-8 to 1e-7 with a mean 3000 stds
    from zero, at a sixth of the time of a copy to fp64 and ``var_mean`` there (on a CPU,
    the largest cost of exact tiling after the model itself).
    """
    shift = core.mean()
    d = core - shift
    dm = d.mean().double()
    var = d.square_().mean().double() - dm * dm
    return core.numel(), (shift.double() + dm).cpu(), var.clamp_min(0).cpu()


class ExactRunner:
    """Runs per-tile steps over whole (1, C, H, W) float32 feature maps.

    tile: core side in pixels of the map being processed (rounded to each step's
    alignment). progress: optional callable(n) called after each tile. store: where the
    whole maps live (restore.engine.maps: device, RAM or a scratch file, by budget; None:
    a MapStore with the default budgets).
    """

    def __init__(self, device: torch.device, precision: Precision, tile: int,
                 progress: Callable[[int], object] | None = None,
                 store: MapStore | None = None) -> None:
        self.device = device
        self.precision = precision
        self.tile = int(tile)
        self.progress = progress
        self.store = MapStore(device) if store is None else store
        self.tiles_run = 0

    def local(self, fn: Callable[..., Tensor | tuple[Tensor, ...]], maps: Sequence[Tensor],
              halo: int = 0, scale: int = 1, align: int = 1, moments: bool = False,
              wrap: int = 0, result: bool = False):
        """Apply ``fn`` to tiles of ``maps`` and assemble the cores of its output(s).

        ``fn`` takes crops (1, C_i, h, w) on the device and returns one or more
        (1, C_o, scale*h, scale*w) tensors; each crop is its core plus ``halo`` pixels of
        context (clipped at the map border), starting on multiples of ``align`` (the
        window grid). Outputs are float32 maps of the full size times ``scale``, from the
        store (``result``: the caller's result, a plain CPU tensor whatever the budgets).

        With ``moments``, also returns the (mean, biased variance) of the (first) output
        over the whole map, as ``moments`` would compute them, but accumulated while each
        core is still on the device: no second pass over the map.

        ``wrap``: the cyclic shift of a shifted-window step (see ``_wrap_parts``); its crops at
        one border of an axis read the opposite border's positions into their halo.
        """
        _, _, h, w = maps[0].shape
        tile = round_up(self.tile, align)
        pad = 0 if halo <= 0 else round_up(halo, align)
        outs: list[Tensor] | None = None
        single = True
        parts: list[tuple[int, Tensor, Tensor]] = []
        for t, b in _spans(h, tile):
            for l, r in _spans(w, tile):
                ct, cb, cl, cr = max(0, t - pad), min(h, b + pad), max(0, l - pad), min(w, r + pad)
                rows, cols = _wrap_parts(ct, cb, h, wrap), _wrap_parts(cl, cr, w, wrap)
                xs = [_crop(m, rows, cols, self.device) for m in maps]
                with torch.inference_mode(), autocast(self.device, self.precision):
                    ys = fn(*xs)
                if isinstance(ys, Tensor):
                    ys = (ys,)
                else:
                    single = False
                if outs is None:
                    outs = [torch.empty(1, y.shape[1], h * scale, w * scale) if result else
                            self.store.empty(y.shape[1], h * scale, w * scale) for y in ys]
                for i, (o, y) in enumerate(zip(outs, ys)):
                    core = y[:, :, (t - ct) * scale:(b - ct) * scale,
                             (l - cl) * scale:(r - cl) * scale].float()
                    if moments and i == 0:
                        parts.append(_tile_moments(core))
                    o[:, :, t * scale:b * scale, l * scale:r * scale] = core.to(o.device)
                self.store.release()
                self.tiles_run += 1
                if self.progress is not None:
                    self.progress(1)
        assert outs is not None
        out = outs[0] if single else tuple(outs)
        return (out, combine_moments(parts)) if moments else out

    def moments(self, m: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and biased variance over all values of the map, accumulated over tiles in
        fp64 around a shift (the first tile's mean) so that large means lose nothing."""
        _, _, h, w = m.shape
        shift = None
        total = torch.zeros((), dtype=torch.float64)
        total_sq = torch.zeros((), dtype=torch.float64)
        n = 0
        for t, b in _spans(h, self.tile):
            for l, r in _spans(w, self.tile):
                x = m[:, :, t:b, l:r].double()  # summed where the map lives
                if shift is None:
                    shift = x.mean()
                x = x - shift
                total += x.sum().cpu()
                total_sq += x.square().sum().cpu()
                n += x.numel()
                self.store.release()
        shift = shift.cpu()
        mean = total / n
        var = (total_sq / n - mean * mean).clamp_min(0)
        return (mean + shift).view(1, 1, 1), var.view(1, 1, 1)

    def channel_mean(self, m: Tensor) -> Tensor:
        """(1, C) per-channel mean over all pixels, accumulated over tiles in fp64."""
        _, c, h, w = m.shape
        total = torch.zeros(1, c, dtype=torch.float64)
        for t, b in _spans(h, self.tile):
            for l, r in _spans(w, self.tile):
                total += m[:, :, t:b, l:r].double().sum(dim=(2, 3)).cpu()
                self.store.release()
        return (total / (h * w)).float()


def combine_moments(parts: Sequence[tuple[int, Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """(mean, biased variance), shaped (1, 1, 1), of the union of parts (count, mean, var),
    combined in fp64 around the overall mean (Chan et al.), so a large mean loses nothing."""
    n = torch.tensor([float(c) for c, _, _ in parts], dtype=torch.float64)
    means = torch.stack([m.double() for _, m, _ in parts])
    vars_ = torch.stack([v.double() for _, _, v in parts])
    mean = (n * means).sum() / n.sum()
    var = (n * (vars_ + (means - mean) ** 2)).sum() / n.sum()
    return mean.view(1, 1, 1), var.view(1, 1, 1)


def has_global_statistics(model) -> bool:
    """Whether independent tiles change the model's output (i-LN, channel attention)."""
    return bool(getattr(model, "has_global_statistics", False))


def supports_exact(model) -> bool:
    return callable(getattr(model, "forward_exact", None))
