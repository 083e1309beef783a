"""The engine: runs any image-to-image callable on whole images or window-aligned tiles.

It knows no architecture: it takes a callable ``(B, C, h, w) -> (B, C, s*h, s*w)``, its
scale, its size multiple and whether it is fp16-safe. The whole image stays on the CPU;
only tiles travel to the device. Tiles of the same shape are batched. Under fp16/bf16 a
tile whose output is not finite is recomputed in fp32 and counted (never written as a
black patch). On a device out-of-memory error the tile size is halved and the image is
restarted from scratch, so no stale tile is ever pasted.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

import torch
from torch import Tensor

from ..errors import RestoreError
from .devices import Precision, autocast
from .exact import ExactRunner, has_global_statistics, supports_exact
from .maps import MapStore
from .tiling import Tile, round_up, tile_grid, tile_weights

TILE_AUTO = -1  # the --tile auto sentinel


class TileMode(str, Enum):
    """How tiles are computed (see restore.engine.exact and docs in the README)."""

    AUTO = "auto"  # exact for models with whole-image statistics, else independent
    EXACT = "exact"  # layer by layer with global statistics carried across tiles
    INDEPENDENT = "independent"  # each tile a separate forward, blended over the overlap


class OutOfMemory(RestoreError):
    """Even the smallest tile does not fit in the device's memory."""


SPILL_NOTE = ("exact tiling: the feature maps did not fit the RAM budget and went through "
              "a scratch file (--exact-memory raises the budget)")
RECOMPUTED_NOTE = ("non-finite values (fp16 overflow?) in reduced precision: recomputed in "
                   "fp32; --precision fp32 avoids the double work")


@dataclass
class RunStats:
    """What happened while restoring one image (for reports and --json)."""

    tile: int | None = None  # tile side used (None: whole image)
    tile_mode: str | None = None  # "exact" or "independent" when tiled
    tiles: int = 0
    fp32_recomputed: int = 0
    oom_retries: int = 0
    notes: list[str] = field(default_factory=list)


def _is_oom(exc: BaseException) -> bool:
    """CUDA/MPS out-of-memory errors, and the CPU allocator's."""
    if isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    msg = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(
        s in msg for s in ("out of memory", "can't allocate memory", "not enough memory"))


def _available_ram() -> int | None:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


class Restorer:
    """Restore (C, H, W) float32 CPU images in [0, 1] with ``model``.

    tile: 0 for the whole image, TILE_AUTO to decide from free memory, or a side in input
    pixels (rounded up to ``size_multiple``). overlap: context per side in input pixels
    (rounded up to ``size_multiple``; None: twice the multiple, at least 16).
    bytes_per_pixel: peak device memory per input pixel of one forward (None: measured
    with a probe on CUDA, or a conservative guess elsewhere). exact_memory: bytes of host
    RAM exact tiling may keep its whole feature maps in (None: the default of
    restore.engine.maps); beyond it they go to a scratch file.
    """

    def __init__(self, model: Callable[[Tensor], Tensor], *, scale: int, size_multiple: int,
                 device: torch.device, precision: Precision = Precision.FP32,
                 tile: int = 0, overlap: int | None = None, batch: int = 1, tta: bool = False,
                 tile_mode: TileMode | str = TileMode.AUTO, bytes_per_pixel: float | None = None,
                 progress: Callable[[int], object] | None = None,
                 exact_memory: int | None = None) -> None:
        if precision is Precision.AUTO:
            raise ValueError("resolve the precision before building a Restorer")
        if isinstance(model, torch.nn.Module):
            model.eval()  # inference: no dropout / drop-path, whatever state it arrived in
            # Convolutions in NHWC, the layout oneDNN/cuDNN prefer; the token layout the
            # transformer body wants is then a free view (benchmarks/optimizations.py).
            model.to(memory_format=torch.channels_last)
        self.model = model
        self.scale = int(scale)
        self.multiple = int(size_multiple)
        self.device = device
        self.precision = precision
        self.tile = tile
        self.overlap = max(16, 2 * self.multiple) if overlap is None else int(overlap)
        self.batch = max(1, int(batch))
        self.tta = tta
        self.bytes_per_pixel = bytes_per_pixel
        self._probed = False  # CUDA: bytes_per_pixel measured once, on first use
        self.progress = progress
        self.exact_memory = exact_memory
        mode = TileMode(tile_mode)
        if mode is TileMode.AUTO:
            mode = (TileMode.EXACT if has_global_statistics(model) and supports_exact(model)
                    else TileMode.INDEPENDENT)
        if mode is TileMode.EXACT and not supports_exact(model):
            raise RestoreError("exact tiling needs a model with forward_exact (SwinIR, HAT); "
                               "use --tile-mode independent")
        self.tile_mode = mode  # factory: total tiles -> a tqdm-like object (update/close)

    # -- public ------------------------------------------------------------------------
    def __call__(self, image: Tensor) -> tuple[Tensor, RunStats]:
        """(C, H, W) float32 in [0, 1] on the CPU -> ((C, sH, sW) float32 CPU, stats)."""
        if image.dim() != 3:
            raise ValueError(f"expected (C, H, W), got {tuple(image.shape)}")
        with torch.inference_mode():
            return self._call(image)

    def _call(self, image: Tensor) -> tuple[Tensor, RunStats]:
        stats = RunStats()
        if not self.tta:
            return self._restore(image, stats), stats
        acc = None
        for k in range(4):
            for flip in (False, True):
                x = torch.rot90(image, k, dims=(1, 2))
                x = x.flip(2) if flip else x
                y = self._restore(x.contiguous(), stats)
                y = y.flip(2) if flip else y
                y = torch.rot90(y, -k, dims=(1, 2))
                acc = y if acc is None else acc.add_(y)
        return acc.div_(8), stats

    # -- internals ---------------------------------------------------------------------
    def _restore(self, image: Tensor, stats: RunStats) -> Tensor:
        _, h, w = image.shape
        tile = self._initial_tile(h, w)
        while True:
            try:
                if tile == 0:
                    out = self._forward(image.unsqueeze(0), stats)[0]
                    stats.tile, stats.tiles = None, stats.tiles + 1
                    return out
                if self.tile_mode is TileMode.EXACT:
                    return self._exact(image, tile, stats)
                return self._tiled(image, tile, stats)
            except Exception as exc:  # noqa: BLE001
                if not _is_oom(exc):
                    raise
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                side = max(h, w) if tile == 0 else tile
                smaller = round_up(side // 2, self.multiple)
                if smaller >= side:
                    raise OutOfMemory(
                        f"out of memory on {self.device} even with {side}px tiles; try "
                        "--device cpu or a smaller --batch") from None
                stats.oom_retries += 1
                stats.notes.append(f"out of memory: tile {side}px -> {smaller}px, restarted")
                tile = smaller

    def _initial_tile(self, h: int, w: int) -> int:
        if self.tile != TILE_AUTO:
            t = 0 if self.tile <= 0 else round_up(self.tile, self.multiple)
            return 0 if t and t >= h and t >= w else t
        bpp = self._bytes_per_pixel()
        budget = self._memory_budget()
        if bpp is None or budget is None or h * w * bpp <= budget:
            return 0
        side = int(math.sqrt(budget / bpp / self.batch))
        side = max(2 * self.multiple, side // self.multiple * self.multiple)
        return side

    def _memory_budget(self) -> int | None:
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            return int(free * 0.6)
        avail = _available_ram()
        return None if avail is None else int(avail * 0.5)

    def _bytes_per_pixel(self) -> float | None:
        """Measured on CUDA; elsewhere the caller's estimate (None: whole image)."""
        if self.device.type == "cuda" and not self._probed:
            self.bytes_per_pixel = self._probe_cuda()
            self._probed = True
        return self.bytes_per_pixel

    def _probe_cuda(self) -> float:
        """Peak memory per input pixel of one forward, measured on a 4x4-window probe."""
        side = 4 * self.multiple
        x = torch.rand(1, 3, side, side, device=self.device).contiguous(
            memory_format=torch.channels_last)  # as _forward feeds it
        try:
            with torch.inference_mode(), autocast(self.device, self.precision):
                torch.cuda.synchronize(self.device)
                base = torch.cuda.memory_allocated(self.device)
                torch.cuda.reset_peak_memory_stats(self.device)
                self.model(x)
                peak = torch.cuda.max_memory_allocated(self.device)
        except Exception:  # noqa: BLE001 (a model with 1 input channel, say)
            x = x[:, :1].contiguous(memory_format=torch.channels_last)
            with torch.inference_mode(), autocast(self.device, self.precision):
                base = torch.cuda.memory_allocated(self.device)
                torch.cuda.reset_peak_memory_stats(self.device)
                self.model(x)
                peak = torch.cuda.max_memory_allocated(self.device)
        return max(1.0, (peak - base) / (side * side)) * 1.3

    def _forward(self, x: Tensor, stats: RunStats) -> Tensor:
        """(B, C, h, w) CPU -> (B, C, sh, sw) float32 CPU; non-finite results redone in fp32."""
        xd = x.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            with autocast(self.device, self.precision):
                y = self.model(xd)
            y = y.float()
            if self.precision is not Precision.FP32:
                bad = ~torch.isfinite(y).flatten(1).all(dim=1)
                if bad.any():
                    stats.fp32_recomputed += int(bad.sum())
                    if RECOMPUTED_NOTE not in stats.notes:  # say it: the output hides it
                        stats.notes.append(RECOMPUTED_NOTE)
                    with autocast(self.device, Precision.FP32):
                        y[bad] = self.model(xd[bad].float()).float()
            if not torch.isfinite(y).all():
                raise RestoreError("the model produced non-finite values (NaN/Inf) even in fp32")
        return y.cpu()

    def _exact_passes(self, channels: int) -> int:
        """How many tile passes the model's exact forward makes over a map (measured once,
        on a one-window image, where every pass is one tile)."""
        if getattr(self, "_passes", None) is None:
            m = self.multiple
            probe = ExactRunner(torch.device("cpu"), Precision.FP32, m,
                                store=MapStore(torch.device("cpu"), ram_budget=1 << 30))
            device = next(self.model.parameters()).device
            self.model.to("cpu")
            try:
                with torch.inference_mode():
                    self.model.forward_exact(torch.zeros(1, channels, m, m), probe)
            finally:
                self.model.to(device)
            self._passes = probe.tiles_run
        return self._passes

    def _exact(self, image: Tensor, tile: int, stats: RunStats) -> Tensor:
        bar = None
        if self.progress:  # passes x tiles per pass: known before the first tile
            c, h, w = image.shape
            side = round_up(tile, self.multiple)
            bar = self.progress(self._exact_passes(c) * math.ceil(round_up(h, self.multiple) / side)
                                * math.ceil(round_up(w, self.multiple) / side))
        store = MapStore(self.device, ram_budget=self.exact_memory)
        runner = ExactRunner(self.device, self.precision, tile, store=store,
                             progress=(lambda n: bar.update(n)) if bar is not None else None)
        try:
            y = self.model.forward_exact(image.unsqueeze(0), runner)[0]
        finally:
            if bar is not None:
                bar.close()
        if store.maps["disk"] and SPILL_NOTE not in stats.notes:
            stats.notes.append(SPILL_NOTE)
        if not torch.isfinite(y).all():
            if self.precision is Precision.FP32:
                raise RestoreError("the model produced non-finite values (NaN/Inf) even in fp32")
            stats.fp32_recomputed += 1
            stats.notes.append(RECOMPUTED_NOTE)
            runner = ExactRunner(self.device, Precision.FP32, tile, store=store)
            y = self.model.forward_exact(image.unsqueeze(0), runner)[0]
        stats.tile, stats.tile_mode = round_up(tile, self.multiple), "exact"
        stats.tiles += runner.tiles_run
        return y

    def _tiled(self, image: Tensor, tile: int, stats: RunStats) -> Tensor:
        c, h, w = image.shape
        s = self.scale
        tiles = tile_grid(h, w, tile, self.overlap, self.multiple)
        out = torch.zeros(c, h * s, w * s)
        wsum = torch.zeros(1, h * s, w * s)
        groups: dict[tuple[int, int], list[Tile]] = defaultdict(list)
        for t in tiles:
            groups[t.crop_shape].append(t)
        bar = self.progress(len(tiles)) if self.progress and len(tiles) > 1 else None
        try:
            for group in groups.values():
                for i in range(0, len(group), self.batch):
                    chunk = group[i:i + self.batch]
                    x = torch.stack([image[:, t.crop[0]:t.crop[1], t.crop[2]:t.crop[3]]
                                     for t in chunk])
                    y = self._forward(x, stats)
                    for t, yt in zip(chunk, y):
                        wt = tile_weights(t, h, w, s)
                        ys, xs = slice(t.crop[0] * s, t.crop[1] * s), slice(t.crop[2] * s, t.crop[3] * s)
                        out[:, ys, xs] += yt * wt
                        wsum[:, ys, xs] += wt
                    if bar is not None:
                        bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
        stats.tile, stats.tiles = round_up(tile, self.multiple), stats.tiles + len(tiles)
        stats.tile_mode = "independent"
        return out.div_(wsum)
