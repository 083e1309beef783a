"""Benchmark evaluation: degrade ground truth per the protocol, restore, score (no printing).

The protocol (``docs/protocol.md`` of the project data) per task:

- ``sr``: HR mod-cropped to a multiple of the scale; LR = MATLAB bicubic ``imresize(HR, 1/s)``
  (or the given LR files); output rounded to uint8; PSNR/SSIM on BT.601 Y with ``s`` pixels
  cropped from every border.
- ``denoise``: noisy input = HR / 255 + N(0, (sigma / 255)^2) in float, neither clipped nor
  quantized, drawn from ``numpy.random.default_rng(seed)`` in sorted file order (one
  generator per set); a model's output is clamped to [0, 1] and rounded to uint8 (as
  SwinIR's test does); PSNR/SSIM on RGB, no crop.
- ``jpeg``: input = libjpeg encode/decode at the quality (4:2:0 colour, grayscale for gray
  images); output rounded to uint8; gray images scored on gray, colour images on RGB with
  the Y scores reported beside.

Gray images are the files stored with one channel (mode L, e.g. Set14 ``bridge``, Classic5):
they are scored on their gray values. An RGB file whose channels happen to be equal (Set14
``man``) stays RGB, as the published tables score it.

Baselines: ``bicubic`` (sr: MATLAB ``imresize(LR, s)`` of the uint8 LR) and ``identity``
(denoise, jpeg: the degraded input itself; for denoising that is the float noisy image,
unquantized, so it scores 20 log10(255 / sigma)).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from .degrade import degrade, imresize, modcrop
from .errors import RestoreError, UnknownModelError, UsageError
from .io import IMAGE_SUFFIXES, walk_images
from .metrics import psnr, ssim
from .tasks import Task

__all__ = [
    "Baseline", "Channel", "IMAGE_SUFFIXES", "ImageScore", "Method", "Protocol", "SetResult",
    "Task", "dataset_name", "degrade_image", "evaluate_folder", "list_images", "load_method",
    "model_method", "read_image", "restore_image", "score_image",
]


# Folder names that hold a set's ground truth: the set is named by their parent.
GT_FOLDER_NAMES = ("hr", "gt")


class Baseline(str, Enum):
    BICUBIC = "bicubic"
    IDENTITY = "identity"


# Which task each baseline means something for.
BASELINE_TASKS = {Baseline.BICUBIC: (Task.SR,), Baseline.IDENTITY: (Task.DENOISE, Task.JPEG)}


class Channel(str, Enum):
    """What a score was computed on."""

    Y = "y"          # BT.601 luma of RGB, float in [16, 235]
    RGB = "rgb"      # all three channels
    GRAY = "gray"    # a one-channel image's own values


@dataclass(frozen=True)
class Protocol:
    """One task setting of the evaluation protocol; build it with ``Protocol.make``."""

    task: Task
    scale: int = 1                 # sr: the factor; 1 otherwise
    sigma: float | None = None     # denoise: AWGN std on 0..255
    quality: int | None = None     # jpeg: IJG quality 1..100
    seed: int = 0                  # denoise: seed of the set's noise generator

    @classmethod
    def make(cls, task: Task | str, *, scale: int | None = None, sigma: float | None = None,
             quality: int | None = None, seed: int = 0) -> Protocol:
        """Validate a task and its one setting; settings of other tasks are an error."""
        try:
            task = Task(task)
        except ValueError:
            raise UsageError(f"unknown task {task!r} (valid: "
                             f"{', '.join(t.value for t in Task)})") from None
        given = {"scale": scale, "sigma": sigma, "quality": quality}
        needed = {Task.SR: "scale", Task.DENOISE: "sigma", Task.JPEG: "quality"}[task]
        extra = [k for k, v in given.items() if v is not None and k != needed]
        if extra:
            raise UsageError(f"--{extra[0]} does not apply to --task {task.value} "
                             f"(it takes --{needed})")
        if given[needed] is None:
            raise UsageError(f"--task {task.value} needs --{needed}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise UsageError(f"seed must be an integer >= 0, got {seed!r}")
        if task is Task.SR:
            if isinstance(scale, bool) or not isinstance(scale, int) or scale < 2:
                raise UsageError(f"--scale must be an integer >= 2, got {scale!r}")
            return cls(task, scale=scale, seed=seed)
        if task is Task.DENOISE:
            if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
                raise UsageError(f"--sigma must be a number > 0, got {sigma!r}")
            return cls(task, sigma=float(sigma), seed=seed)
        if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
            raise UsageError(f"--quality must be an integer in 1..100, got {quality!r}")
        return cls(task, quality=quality, seed=seed)

    @property
    def crop(self) -> int:
        """Border pixels removed before scoring (the SR scale; none otherwise)."""
        return self.scale if self.task is Task.SR else 0

    @property
    def setting(self) -> tuple[str, float | int]:
        """The task's one parameter as (name, value): ("scale", 4), ("sigma", 25.0), ..."""
        if self.task is Task.SR:
            return "scale", self.scale
        if self.task is Task.DENOISE:
            return "sigma", self.sigma  # type: ignore[return-value]
        return "quality", self.quality  # type: ignore[return-value]

    def describe(self) -> str:
        """Short human form: "sr x4", "denoise sigma 25", "jpeg q10"."""
        if self.task is Task.SR:
            return f"sr x{self.scale}"
        if self.task is Task.DENOISE:
            return f"denoise sigma {self.sigma:g} (seed {self.seed})"
        return f"jpeg q{self.quality}"


# A restorer maps (1, C, H, W) float32 in [0, 1] (CPU) to (1, C, H * s, W * s) float.
Restorer = Callable[[Any], Any]


@dataclass(frozen=True)
class Method:
    """What produces the restored image: a baseline, or a restorer callable (a model)."""

    name: str
    baseline: Baseline | None = None
    restorer: Restorer | None = None
    in_chans: int | None = None    # channels the restorer takes (None: any)
    scale: int | None = None       # its upscale factor, when known

    def __post_init__(self) -> None:
        if (self.baseline is None) == (self.restorer is None):
            raise UsageError("a Method is either a baseline or a restorer")


@dataclass(frozen=True)
class ImageScore:
    """Scores of one image. ``psnr``/``ssim`` are in the protocol's channel (``channel``);
    ``psnr_y``/``ssim_y`` are the extra Y scores of colour JPEG images (None otherwise)."""

    name: str
    psnr: float
    ssim: float
    channel: Channel
    psnr_y: float | None = None
    ssim_y: float | None = None


def _mean(values: Sequence[float | None]) -> float | None:
    if not values or any(v is None for v in values):
        return None
    return float(np.mean(np.asarray(values, dtype=np.float64)))


def _json_number(v: float | None, digits: int) -> float | None:
    # JSON has no inf/nan: identical images (PSNR inf) are written as null.
    return None if v is None or not math.isfinite(v) else round(v, digits)


@dataclass(frozen=True)
class SetResult:
    """One set's per-image scores and their means (each image weighs the same)."""

    protocol: Protocol
    model: str
    dataset: str
    images: tuple[ImageScore, ...]
    psnr: float = field(init=False)
    ssim: float = field(init=False)
    psnr_y: float | None = field(init=False)
    ssim_y: float | None = field(init=False)

    def __post_init__(self) -> None:
        if not self.images:
            raise UsageError(f"{self.dataset}: no images were scored")
        object.__setattr__(self, "psnr", _mean([s.psnr for s in self.images]))
        object.__setattr__(self, "ssim", _mean([s.ssim for s in self.images]))
        object.__setattr__(self, "psnr_y", _mean([s.psnr_y for s in self.images]))
        object.__setattr__(self, "ssim_y", _mean([s.ssim_y for s in self.images]))

    @property
    def n(self) -> int:
        return len(self.images)

    @property
    def channels(self) -> str:
        """The channel(s) the set's main scores are on, e.g. "y" or "y+gray" (Set14)."""
        return "+".join(sorted({s.channel.value for s in self.images}))

    def to_dict(self, per_image: bool = False) -> dict[str, Any]:
        """JSON-ready summary: task, its setting, model, dataset, n, psnr, ssim, ..."""
        key, value = self.protocol.setting
        out: dict[str, Any] = {"task": self.protocol.task.value, key: value,
                               "model": self.model, "dataset": self.dataset, "n": self.n,
                               "psnr": _json_number(self.psnr, 4),
                               "ssim": _json_number(self.ssim, 5),
                               "channel": self.channels, "crop": self.protocol.crop}
        if self.protocol.task is Task.DENOISE:
            out["seed"] = self.protocol.seed
        if self.psnr_y is not None:
            out["psnr_y"] = _json_number(self.psnr_y, 4)
            out["ssim_y"] = _json_number(self.ssim_y, 5)
        if per_image:
            out["images"] = [
                {k: v for k, v in {"name": s.name, "psnr": _json_number(s.psnr, 4),
                                   "ssim": _json_number(s.ssim, 5), "channel": s.channel.value,
                                   "psnr_y": _json_number(s.psnr_y, 4),
                                   "ssim_y": _json_number(s.ssim_y, 5)}.items()
                 if v is not None or k in ("psnr", "ssim")}
                for s in self.images]
        return out


# -- files ------------------------------------------------------------------------------------

def read_image(path: str | os.PathLike) -> np.ndarray:
    """An 8-bit image file as uint8 (H, W) (gray files) or (H, W, 3), read by restore.io
    (EXIF orientation applied, palette expanded, alpha dropped).

    16-bit and float files are refused: the benchmarks and their published numbers are
    8-bit, and rounding them to 8 bits here would score a different image.
    """
    from .io import read_image as io_read

    img = io_read(path)  # ImageReadError (a RestoreError): one line, "PATH: reason"
    if img.bit_depth != 8:
        raise RestoreError(f"{img.path}: {img.mode} image with {img.bit_depth}-bit samples; "
                           "evaluation reads 8-bit gray or RGB only")
    a = np.rint(img.pixels * 255.0).astype(np.uint8)  # exact: 8-bit pixels are k/255
    return a[:, :, 0] if img.is_gray else a


def write_png(path: str | os.PathLike, img: np.ndarray) -> Path:
    """Write a uint8 (H, W) or (H, W, 3) image as PNG, atomically, creating the folder."""
    from .io import write_image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_image(path, np.asarray(img, dtype=np.float32) / 255.0, format="PNG").path


def list_images(folder: str | os.PathLike) -> list[Path]:
    """The image files (png/jpg/jpeg/bmp/tif/tiff/webp, any case) directly in ``folder``, sorted,
    hidden ones left out (restore.io.walk_images, not recursive)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"{folder}: not a folder")
    files, _ = walk_images(folder, recursive=False)
    if not files:
        raise UsageError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def dataset_name(folder: str | os.PathLike) -> str:
    """The set's name: the folder's, or its parent's for an ``HR``/``GT`` folder."""
    folder = Path(folder).resolve()
    if folder.name.lower() in GT_FOLDER_NAMES and folder.parent.name:
        return folder.parent.name
    return folder.name


def _match_lq(hr_files: Sequence[Path], lq_folder: Path, scale: int) -> list[Path]:
    """The LR file for each HR file, matched by name: ``baby`` -> baby, babyx4, baby_x4,
    babyX4, or HR -> LR in the name (``img_001_SRF_4_HR`` -> ``img_001_SRF_4_LR``)."""
    by_stem = {p.stem: p for p in list_images(lq_folder)}
    out, missing = [], []
    for hr in hr_files:
        s = hr.stem
        candidates = [s, f"{s}x{scale}", f"{s}_x{scale}", f"{s}X{scale}",
                      s.replace("HR", "LR")]
        found = next((by_stem[c] for c in candidates if c in by_stem), None)
        if found is None:
            missing.append(hr.name)
        out.append(found)
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5
                                          else "")
        raise UsageError(f"{lq_folder}: no input found for {shown} (looked for the same name, "
                         f"NAMEx{scale}, NAME_x{scale}, or HR -> LR)")
    return out


# -- methods ------------------------------------------------------------------------------------

def model_method(model: Any, name: str, device: str = "cpu", tile: int = 0,
                 tile_mode: str = "auto", precision: str = "fp32",
                 exact_memory: int | None = None) -> Method:
    """A Method running ``model`` under ``torch.inference_mode()``: whole-image in fp32 by
    default (true fp32 on CUDA), or through the engine's Restorer, as `restore sr` runs it,
    with ``tile`` (input pixels; exact or independent tiles per ``tile_mode``) and/or a
    reduced ``precision``.

    ``model`` takes (B, C, H, W) float in [0, 1] and pads internally; it is moved to
    ``device`` and put in eval mode. Its ``config.in_chans``/``config.upscale`` are used
    when it has them.
    """
    import torch

    from .engine import Precision, Restorer, autocast

    dev = torch.device(device)
    model = model.to(device=dev, dtype=torch.float32).eval()
    cfg = getattr(model, "config", None)
    prec = Precision(precision)
    if prec is Precision.AUTO:
        raise UsageError("--precision: give fp32, bf16 or fp16 (evaluation does not guess)")

    if tile or prec is not Precision.FP32:
        engine = Restorer(model, scale=int(getattr(cfg, "upscale", 1) or 1),
                          size_multiple=int(getattr(model, "size_multiple", 1)), device=dev,
                          precision=prec, tile=int(tile), tile_mode=tile_mode,
                          exact_memory=exact_memory)

        def run(x: torch.Tensor) -> torch.Tensor:
            return torch.stack([engine(image)[0] for image in x.float()])
    else:
        def run(x: torch.Tensor) -> torch.Tensor:  # true fp32: no TF32 on CUDA
            with torch.inference_mode(), autocast(dev, Precision.FP32):
                return model(x.to(dev)).float().cpu()

    return Method(name=name, restorer=run, in_chans=getattr(cfg, "in_chans", None),
                  scale=getattr(cfg, "upscale", None))


def _check_device(device: str) -> str:
    """``--device``: cpu, cuda or cuda:N (restore.engine.resolve_device's words when it is
    not one here)."""
    from .engine import resolve_device

    dev = resolve_device(device)
    if dev.type not in ("cpu", "cuda"):
        raise UsageError(f"--device {device}: restore eval runs on cpu, cuda or cuda:N")
    return str(dev)


def load_method(model: str, task: Task, device: str = "cpu", **run: Any) -> Method:
    """Resolve ``--model``: a baseline name, or a checkpoint file or registry name
    (restore.loader.load). Unknown names are a UsageError. ``run``: the tile, tile_mode,
    precision and exact_memory of ``model_method``."""
    try:
        baseline = Baseline(model)
    except ValueError:
        baseline = None
    if baseline is not None:
        if task not in BASELINE_TASKS[baseline]:
            valid = ", ".join(t.value for t in BASELINE_TASKS[baseline])
            raise UsageError(f"the {baseline.value!r} baseline applies to --task {valid}, "
                             f"not {task.value}")
        return Method(name=baseline.value, baseline=baseline)
    from .loader import is_checkpoint_file, load

    path = Path(model).expanduser()
    if is_checkpoint_file(model) and not path.is_file():
        raise UsageError(f"{path}: no such file")
    try:
        loaded = load(model)
    except UnknownModelError as exc:  # the registry's message, plus what else --model accepts
        baselines = ", ".join(f"{b.value} ({'/'.join(t.value for t in BASELINE_TASKS[b])})"
                              for b in Baseline)
        raise UsageError(f"{exc}; --model also takes a baseline ({baselines}) or a checkpoint "
                         "file") from None
    return model_method(loaded.module, name=model, device=_check_device(device), **run)


# -- one image ----------------------------------------------------------------------------------

def degrade_image(protocol: Protocol, hr: np.ndarray,
                  rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(target, degraded input) of one uint8 ground-truth image, per the protocol.

    sr: target = mod-cropped HR (uint8), input = MATLAB bicubic 1/s (uint8).
    denoise: target = HR (uint8), input = float64 HR / 255 + noise from ``rng`` (required).
    jpeg: target = HR (uint8), input = the decoded JPEG (uint8).
    (restore.degrade.degrade makes the input.)
    """
    if protocol.task is Task.DENOISE and rng is None:
        raise UsageError("denoising needs the set's noise generator")
    target = modcrop(hr, protocol.scale) if protocol.task is Task.SR else hr
    return target, degrade(protocol.task, target, scale=protocol.scale, sigma=protocol.sigma,
                           quality=protocol.quality, rng=rng, dtype=np.float64)


def _to_tensor(lq: np.ndarray):
    """(1, C, H, W) float32 in [0, 1] from uint8 or float [0, 1] (H, W[, C])."""
    import torch

    a = lq.astype(np.float32) / 255.0 if lq.dtype == np.uint8 else lq.astype(np.float32)
    a = a[:, :, None] if a.ndim == 2 else a
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None]


def restore_image(method: Method, protocol: Protocol, lq: np.ndarray) -> np.ndarray:
    """The restored image to score: uint8 (H, W[, 3]), or float64 on 0..255 for the
    unquantized identity of a float (noisy) input.

    A restorer's output is clamped to [0, 1] and rounded to uint8. A gray image through a
    3-channel model is replicated to RGB and the output averaged back to gray.
    """
    scale = protocol.scale if protocol.task is Task.SR else 1
    if method.baseline is Baseline.BICUBIC:
        return imresize(lq, float(scale))
    if method.baseline is Baseline.IDENTITY:
        return lq * 255.0 if np.issubdtype(lq.dtype, np.floating) else lq
    if method.scale is not None and method.scale != scale:
        raise UsageError(f"model {method.name!r} upscales x{method.scale}, but the protocol "
                         f"({protocol.describe()}) needs x{scale}")
    import torch

    x = _to_tensor(lq)
    chans = x.shape[1]
    replicate = False
    if method.in_chans is not None and method.in_chans != chans:
        if chans == 1 and method.in_chans == 3:
            x, replicate = x.repeat(1, 3, 1, 1), True
        else:
            raise UsageError(f"model {method.name!r} takes {method.in_chans}-channel images, "
                             f"the input has {chans}")
    y = method.restorer(x)
    expected = (1, x.shape[1], x.shape[2] * scale, x.shape[3] * scale)
    if tuple(y.shape) != expected:
        raise RestoreError(f"model {method.name!r} returned shape {tuple(y.shape)} for input "
                           f"{tuple(x.shape)}; expected {expected}")
    if replicate:
        y = y.mean(dim=1, keepdim=True)
    # SwinIR's test: clamp to [0, 1], scale, round (half to even), uint8.
    out = (y[0].float().clamp(0, 1) * 255.0).round().to(torch.uint8)
    out = out.permute(1, 2, 0).numpy()
    return out[:, :, 0] if out.shape[2] == 1 else out


def score_image(protocol: Protocol, name: str, output: np.ndarray,
                target: np.ndarray) -> ImageScore:
    """Score one restored image against its target in the protocol's channel."""
    if output.shape != target.shape:
        raise RestoreError(f"{name}: output {output.shape} and target {target.shape} differ")
    crop = protocol.crop
    if target.ndim == 2:
        return ImageScore(name, psnr(output, target, crop=crop), ssim(output, target, crop=crop),
                          Channel.GRAY)
    if protocol.task is Task.SR:
        return ImageScore(name, psnr(output, target, crop=crop, y_channel=True),
                          ssim(output, target, crop=crop, y_channel=True), Channel.Y)
    if protocol.task is Task.JPEG:
        return ImageScore(name, psnr(output, target), ssim(output, target), Channel.RGB,
                          psnr_y=psnr(output, target, y_channel=True),
                          ssim_y=ssim(output, target, y_channel=True))
    return ImageScore(name, psnr(output, target), ssim(output, target), Channel.RGB)


def _quantized(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint8:
        return img
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


# -- one set ------------------------------------------------------------------------------------

def evaluate_folder(protocol: Protocol, folder: str | os.PathLike, method: Method, *,
                    lq_folder: str | os.PathLike | None = None,
                    save_dir: str | os.PathLike | None = None,
                    on_image: Callable[[ImageScore], None] | None = None,
                    max_images: int | None = None) -> SetResult:
    """Evaluate ``method`` on every ground-truth image in ``folder`` (sorted by name), or on
    the first ``max_images`` of them (their noise is the full set's: one generator per set,
    drawn in file order).

    ``lq_folder``: use these degraded inputs (matched by name) instead of degrading; their
    size must be the (mod-cropped) target's divided by the scale. ``save_dir``: write each
    restored image as ``save_dir/<dataset>/<stem>.png`` (uint8). ``on_image`` is called after
    each image (progress). Returns the per-image scores and the set means.
    """
    files = list_images(folder)[:max_images or None]
    name = dataset_name(folder)
    scale = protocol.scale if protocol.task is Task.SR else 1
    lq_files = _match_lq(files, Path(lq_folder), scale) if lq_folder is not None else None
    rng = np.random.default_rng(protocol.seed) if protocol.task is Task.DENOISE else None
    scores = []
    for i, path in enumerate(files):
        hr = read_image(path)
        if lq_files is None:
            target, lq = degrade_image(protocol, hr, rng)
        else:
            target = modcrop(hr, scale)
            lq = read_image(lq_files[i])
            want = (target.shape[0] // scale, target.shape[1] // scale) + target.shape[2:]
            if lq.shape != want:
                raise UsageError(f"{lq_files[i]}: shape {lq.shape}, expected {want} for "
                                 f"{path.name} ({protocol.describe()})")
        output = restore_image(method, protocol, lq)
        if save_dir is not None:
            write_png(Path(save_dir) / name / f"{path.stem}.png", _quantized(output))
        score = score_image(protocol, path.name, output, target)
        scores.append(score)
        if on_image is not None:
            on_image(score)
    return SetResult(protocol=protocol, model=method.name, dataset=name, images=tuple(scores))
