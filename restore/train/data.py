"""Training and validation data: clean images degraded on the fly, or paired LQ/GT folders.

Resumable randomness: sample number ``k`` (a global counter, see ``sample_indices``) draws
everything it needs (image, crop, flips, rotation, noise sigma and noise, JPEG quality)
from ``numpy.random.default_rng([seed, k])``. Nothing depends on worker-global RNG state,
so the stream of batches is a pure function of (seed, step, rank): any number of workers,
and a resumed run sees exactly the batches the uninterrupted one would have.

Degradations are the evaluation's own (restore.degrade.degrade): for SR the LR of every
training image is made once, at load, with the MATLAB-exact ``imresize`` of the whole
(mod-cropped) image, exactly as the benchmark LR images are made, and aligned LR/HR crops
are cut from the pair; noise and JPEG are applied to each crop as it is drawn.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..degrade import degrade, modcrop
from ..errors import ConfigError
from ..io import walk_images
from .config import DataConfig, Task


def list_images(folder: str | Path) -> list[Path]:
    """Image files under ``folder`` (recursive; hidden files and folders left out, other
    files ignored), sorted for a reproducible order (restore.io.walk_images)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no such folder of images")
    return walk_images(folder)[0]


def read_image(path: Path, gray: bool) -> np.ndarray:
    """uint8 (H, W) for gray, (H, W, 3) RGB otherwise, read by restore.io (EXIF orientation
    applied, alpha dropped). A colour file read as gray gets Pillow's "L" luma
    (ITU-R 601-2, integer-rounded as Pillow does it); a gray file read as colour is copied
    to three channels."""
    from ..io import read_image as io_read

    px = io_read(path).pixels  # (H, W, C) float32 in [0, 1]; exact k/255 for 8-bit files
    a = np.round(px * 255.0).astype(np.uint8)
    if gray:
        if a.shape[2] == 3:
            r, g, b = (a[:, :, i].astype(np.uint32) for i in range(3))
            return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)
        return a[:, :, 0]
    return np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a


def to_tensor(a: np.ndarray):
    """uint8 or float (H, W[, C]) array -> float32 (C, H, W) tensor in [0, 1] (float input
    is taken as already in [0, 1] and not clipped: AWGN inputs stay unclipped)."""
    import torch

    if a.ndim == 2:
        a = a[:, :, None]
    t = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))
    return t.float().div_(255.0) if a.dtype == np.uint8 else t.float()


def _augment(arrays: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """The same random flip / 90-degree rotation (8 dihedral cases) for every array."""
    hflip, vflip, transpose = (bool(b) for b in rng.integers(0, 2, size=3))
    out = []
    for a in arrays:
        if hflip:
            a = a[:, ::-1]
        if vflip:
            a = a[::-1]
        if transpose:
            a = a.swapaxes(0, 1)
        out.append(np.ascontiguousarray(a))
    return out


@dataclass(frozen=True)
class Pair:
    """One training image: GT uint8 and, for SR or paired data, its LQ (else None)."""

    gt: np.ndarray
    lq: np.ndarray | None


def load_pairs(cfg: DataConfig) -> list[Pair]:
    """All training images in memory (SR: with their MATLAB-bicubic LR, made once).

    Images too small for one patch are skipped; none left is a ConfigError.
    """
    scale = cfg.scale
    need = cfg.patch_size * scale
    pairs, skipped = [], 0
    for i, folder in enumerate(cfg.train):
        for path in list_images(folder):
            gt = read_image(path, cfg.gray)
            if cfg.train_lq:
                lq_path = Path(cfg.train_lq[i]) / path.relative_to(folder)
                if not lq_path.is_file():
                    raise ConfigError(f"data.train_lq: {lq_path} (the LQ of {path}) is missing")
                lq = read_image(lq_path, cfg.gray)
                gt = gt[: lq.shape[0] * scale, : lq.shape[1] * scale]
                if gt.shape[:2] != (lq.shape[0] * scale, lq.shape[1] * scale):
                    raise ConfigError(f"data.train_lq: {lq_path} {lq.shape[:2]} does not match "
                                      f"{path} {gt.shape[:2]} at scale {scale}")
            elif cfg.task is Task.SR:
                gt = modcrop(gt, scale)
                lq = None
            else:
                lq = None
            if min(gt.shape[:2]) < need:
                skipped += 1
                continue
            if lq is None and cfg.task is Task.SR:
                lq = degrade(Task.SR, gt, scale=scale)
            pairs.append(Pair(gt, lq))
    if not pairs:
        raise ConfigError(f"data.train: no image of at least {need}x{need} pixels in "
                          f"{', '.join(cfg.train)} ({skipped} smaller ones skipped)")
    return pairs


def make_sample(pairs: list[Pair], cfg: DataConfig, seed: int, k: int):
    """Sample number ``k``: (lq, gt) float32 (C, p, p) and (C, p*s, p*s) tensors in [0, 1].

    Every random choice comes from ``default_rng([seed, k])``: the image, the crop, the
    flips/rotation, the noise level and noise, the JPEG quality.
    """
    rng = np.random.default_rng([seed, k])
    pair = pairs[int(rng.integers(len(pairs)))]
    s, p = cfg.scale, cfg.patch_size
    if pair.lq is not None:  # SR or paired: aligned crops
        h, w = pair.lq.shape[:2]
        y, x = int(rng.integers(h - p + 1)), int(rng.integers(w - p + 1))
        lq = pair.lq[y:y + p, x:x + p]
        gt = pair.gt[y * s:(y + p) * s, x * s:(x + p) * s]
        lq, gt = _augment([lq, gt], rng)
        return to_tensor(lq), to_tensor(gt)
    h, w = pair.gt.shape[:2]
    y, x = int(rng.integers(h - p + 1)), int(rng.integers(w - p + 1))
    (gt,) = _augment([pair.gt[y:y + p, x:x + p]], rng)
    # One rng, in this order: crop, flips, level, noise. Reordering changes every batch.
    sigma = quality = None
    if cfg.task is Task.DENOISE:
        lo, hi = cfg.sigma[0], cfg.sigma[-1]
        sigma = lo if lo == hi else float(rng.uniform(lo, hi))
    else:
        lo, hi = cfg.quality[0], cfg.quality[-1]
        quality = lo if lo == hi else int(rng.integers(lo, hi + 1))
    lq = degrade(cfg.task, gt, sigma=sigma, quality=quality, rng=rng, dtype=np.float32)
    return to_tensor(lq), to_tensor(gt)


class TrainSet:
    """Map-style dataset: item ``k`` is sample number k (see ``make_sample``)."""

    def __init__(self, pairs: list[Pair], cfg: DataConfig, seed: int) -> None:
        self.pairs, self.cfg, self.seed = pairs, cfg, seed

    def __len__(self) -> int:  # only used by DataLoader bookkeeping
        return 2 ** 62

    def __getitem__(self, k: int):
        return make_sample(self.pairs, self.cfg, self.seed, int(k))


class SampleIndices:
    """Sampler of the global sample numbers of steps ``start..stop-1`` for one rank.

    Step ``t`` of rank ``r`` (of ``world``) takes samples ``(t * world + r) * B + i``,
    i < B: disjoint across ranks, and a pure function of the step (resumable).
    """

    def __init__(self, start: int, stop: int, batch: int, rank: int = 0, world: int = 1):
        self.start, self.stop, self.batch, self.rank, self.world = start, stop, batch, rank, world

    def __iter__(self):
        for t in range(self.start, self.stop):
            base = (t * self.world + self.rank) * self.batch
            yield from range(base, base + self.batch)

    def __len__(self) -> int:
        return max(0, self.stop - self.start) * self.batch


def _ignore_interrupts(worker_id: int) -> None:
    """In each loader worker: Ctrl-C is the main process's to handle (it finishes the step
    and writes a checkpoint); a worker that died of it would fail the run first."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def make_loader(pairs: list[Pair], cfg: DataConfig, seed: int, start_step: int, stop_step: int,
                rank: int = 0, world: int = 1):
    """A DataLoader of (lq, gt) batches for steps start_step..stop_step-1."""
    import torch
    from torch.utils.data import DataLoader

    sampler = SampleIndices(start_step, stop_step, cfg.batch_size, rank, world)
    # An own generator: otherwise creating the iterator draws a worker seed from the global
    # torch RNG, which is also the drop-path RNG that a resumed run restores.
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(TrainSet(pairs, cfg, seed), batch_size=cfg.batch_size, sampler=sampler,
                      num_workers=cfg.workers, persistent_workers=False, generator=gen,
                      prefetch_factor=4 if cfg.workers else None, drop_last=False,
                      worker_init_fn=_ignore_interrupts if cfg.workers else None)


VAL_NOISE_SEED = 0


def validation_level(cfg: DataConfig) -> tuple[float, int]:
    """The (sigma, quality) validation uses: the middle of a range, the value otherwise."""
    sigma = 0.5 * (cfg.sigma[0] + cfg.sigma[-1])
    quality = int(round(0.5 * (cfg.quality[0] + cfg.quality[-1])))
    return sigma, quality


def load_validation(cfg: DataConfig) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, lq, gt) for each validation image, degraded as the evaluation protocol does.

    SR: gt mod-cropped, lq = imresize(gt, 1/scale) (uint8). Denoise: lq = gt/255 + AWGN at
    the validation sigma, seed ``VAL_NOISE_SEED + index`` (float32, unclipped). JPEG: lq =
    libjpeg at the validation quality (uint8). ``val_max_side`` centre-crops the GT first
    (to a multiple of the scale) to keep validation cheap on a CPU.
    """
    if not cfg.val:
        return []
    sigma, quality = validation_level(cfg)
    out = []
    paths = list_images(cfg.val)
    if cfg.val_max_images:
        paths = paths[: cfg.val_max_images]
    for i, path in enumerate(paths):
        gt = read_image(path, cfg.gray)
        if cfg.val_max_side:
            m = cfg.val_max_side - cfg.val_max_side % cfg.scale
            h, w = gt.shape[:2]
            y, x = max(0, (h - m) // 2), max(0, (w - m) // 2)
            gt = gt[y:y + m, x:x + m]
        gt = modcrop(gt, cfg.scale)
        lq = degrade(cfg.task, gt, scale=cfg.scale, sigma=sigma, quality=quality,
                     rng=VAL_NOISE_SEED + i, dtype=np.float32)
        out.append((path.stem, lq, gt))
    if not out:
        raise ConfigError(f"data.val: no images in {cfg.val}")
    return out
