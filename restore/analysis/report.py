"""One model measured on probe images: loading, the probe inputs, the merged per-block
statistics and the fp16 verdict (``inspect_model``), as text or JSON.

The statistics and the verdict are defined in restore.analysis.stats (its docstring).

Inputs (``prepare_input``)
--------------------------
So that the activations are those the model sees in use, each image is degraded for the
model's task with the evaluation protocol's functions (restore.degrade): SR gets the
MATLAB-bicubic downscale by 1/scale of the (mod-cropped, 8-bit) image, denoising AWGN of
sigma 25 (0..255 scale, seeded, not clipped), JPEG artifact removal a libjpeg round trip at
quality 10; ``as_is`` feeds the image unchanged. Images are centre-cropped to ``max_side``
first (CPU cost). A gray image goes to a colour model as three equal channels; a colour
image to a gray model as its BT.601 luma.

JSON of ``ModelReport.to_dict`` (``restore inspect model --json``)
------------------------------------------------------------------
::

    {"model": str, "family": str, "norm": "layernorm"|"iln", "params": int,
     "task": "sr"|"denoise"|"jpeg", "scale": int, "device": str,
     "images": [{"path", "size": [h, w], "input_size": [h, w], "degradation": str}],
     "blocks": [{"layer", "mean_abs", "max_abs", "entropy", "max_entropy", "channels",
                 "fp16_headroom"}],
     "overall": {"block_max", "block_max_layer", "any_layer_max", "any_layer_max_layer",
                 "fp16_headroom", "fp16_headroom_log2"},
     "largest": [{"layer", "max_abs"}],          # the 5 largest module tensors
     "verdict": {"fp16_safe": bool, "margin": 16.0, "fp16_max": 65504.0,
                 "rule": "any_layer_max * margin < fp16_max"}}

``*_layer`` names a module and whether the tensor was its ``input`` or ``output``, e.g.
``"layers.3.residual_group.blocks.1.mlp.fc1 (output)"``. Non-finite numbers are null.

Torch and numpy are imported inside the functions that need them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from ..loader import Loaded, is_checkpoint_file, load
from ..tasks import Task
from .stats import (
    FP16_MARGIN,
    FP16_MAX,
    _nan_high,
    forward_stats,
    fp16_headroom,
    fp16_safe,
)

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "ModelReport", "Probe", "format_model_report", "inspect_model", "load_for_inspection",
    "model_task", "prepare_input", "sample_image",
]

N_LARGEST = 5


# -- a model and its inputs ---------------------------------------------------------------------

def sample_image() -> Path:
    """The bundled sample: a 160x160 crop of Kodak's kodim23 (the parrots), 8-bit RGB PNG."""
    return Path(__file__).resolve().parents[1] / "data" / "sample.png"


def load_for_inspection(model: str, offline: bool = False) -> Loaded:
    """``model`` is a checkpoint file (a restore safetensors file; others need
    ``restore models import`` first) or a registry name (restore.loader.load). A file that
    is not there is a usage error here: the command names a model to look at."""
    path = Path(model).expanduser()
    if is_checkpoint_file(model) and not path.is_file():
        raise UsageError(f"{path}: no such file")
    return load(model, offline)


def model_task(scale: int, declared: Task | None, requested: Task | None) -> Task:
    """The task whose degradation the probe images get.

    A model with scale > 1 is SR. A scale-1 model takes the task its registry entry or file
    metadata declares (``restore train-export`` records it); otherwise ``requested`` (the
    ``--task`` option) is required: denoising and JPEG inputs look different, and a wrong
    guess would measure the wrong activations.
    """
    if scale > 1:
        if requested not in (None, Task.SR):
            raise UsageError(f"--task {requested.value}: this is a x{scale} super-resolution "
                             "model")
        return Task.SR
    if requested is Task.SR:
        raise UsageError("--task sr: this model does not upscale (scale 1); use --task "
                         "denoise or --task jpeg")
    if declared is not None and requested is not None and declared is not requested:
        raise UsageError(f"--task {requested.value}: the model is declared a "
                         f"{declared.value} model")
    task = requested or declared
    if task is None:
        raise UsageError("a scale-1 model that does not record its task needs --task denoise "
                         "or --task jpeg")
    return task


@dataclass(frozen=True, eq=False)
class Probe:
    """One prepared input: ``tensor`` (1, C, H, W) float32 (in [0, 1] but for the noise),
    and where it comes from."""

    path: str
    size: tuple[int, int]  # (h, w) of the image after the centre crop
    degradation: str
    tensor: Any = field(repr=False)

    @property
    def input_size(self) -> tuple[int, int]:
        return int(self.tensor.shape[-2]), int(self.tensor.shape[-1])

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size": list(self.size), "input_size": list(self.input_size),
                "degradation": self.degradation}


def _centre_crop(a, max_side: int):
    if max_side <= 0:
        return a
    h, w = a.shape[:2]
    ch, cw = min(h, max_side), min(w, max_side)
    top, left = (h - ch) // 2, (w - cw) // 2
    return a[top:top + ch, left:left + cw]


def prepare_input(path: str | os.PathLike, task: Task, scale: int, in_chans: int, *,
                  as_is: bool = False, max_side: int = 256, sigma: float = 25.0,
                  quality: int = 10, seed: int = 0) -> Probe:
    """Read ``path`` (restore.io.read_image), centre-crop it to ``max_side`` (0: no crop),
    match the model's channels and degrade it for ``task`` (see the module docstring).

    Raises ImageReadError for an unreadable file, UsageError for an image too small.
    """
    import numpy as np
    import torch

    from ..degrade import degrade, modcrop
    from ..io import read_image

    pix = _centre_crop(read_image(path).pixels, max_side)  # (H, W, C) float32 [0, 1]
    if in_chans == 3 and pix.shape[2] == 1:
        pix = np.repeat(pix, 3, axis=2)
    elif in_chans == 1 and pix.shape[2] == 3:
        pix = (pix @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[:, :, None]
    size = (int(pix.shape[0]), int(pix.shape[1]))
    u8 = np.round(np.clip(pix, 0.0, 1.0) * 255.0).astype(np.uint8)
    if as_is:
        lq, what = pix.astype(np.float32), "as is"
    elif task is Task.SR:
        hr = modcrop(u8, scale)
        if min(hr.shape[:2]) < scale:
            raise UsageError(f"{path}: {size[1]}x{size[0]} is too small for x{scale}")
        lq = degrade(Task.SR, hr, scale=scale).astype(np.float32) / 255.0
        what = f"bicubic 1/{scale}"
    elif task is Task.DENOISE:
        lq = degrade(Task.DENOISE, u8, sigma=sigma, rng=seed, dtype=np.float64).astype(np.float32)
        what = f"AWGN sigma {sigma:g} (seed {seed})"
    else:
        lq = degrade(Task.JPEG, u8, quality=quality).astype(np.float32) / 255.0
        what = f"JPEG q{quality}"
    t = torch.from_numpy(np.ascontiguousarray(lq.transpose(2, 0, 1)))[None]
    return Probe(path=str(path), size=size, degradation=what, tensor=t)


# -- the report of a model ------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelReport:
    """What ``inspect_model`` measured (see the module docstring for the fields)."""

    model: str
    family: str
    norm: str
    params: int
    task: Task
    scale: int
    device: str
    images: tuple[Probe, ...]
    blocks: tuple[dict[str, Any], ...]
    layer_max: Mapping[str, float]
    margin: float = FP16_MARGIN

    @property
    def block_max(self) -> tuple[float, str]:
        """(max |x| over the block outputs, the block)."""
        b = max(self.blocks, key=lambda r: r["max_abs"], default=None)
        return (b["max_abs"], b["layer"]) if b else (0.0, "")

    @property
    def any_layer_max(self) -> tuple[float, str]:
        """(max |x| over every module's inputs and outputs, where)."""
        if not self.layer_max:
            return self.block_max
        key = max(self.layer_max, key=lambda k: _nan_high(self.layer_max[k]))
        return self.layer_max[key], key

    @property
    def fp16_safe(self) -> bool:
        return fp16_safe(self.any_layer_max[0], self.margin)

    def largest(self, n: int = N_LARGEST) -> list[tuple[str, float]]:
        items = sorted(self.layer_max.items(), key=lambda kv: -_nan_high(kv[1]))
        return items[:n]

    def to_dict(self) -> dict[str, Any]:
        bmax, bwhere = self.block_max
        amax, awhere = self.any_layer_max
        head = fp16_headroom(amax)
        return {
            "model": self.model, "family": self.family, "norm": self.norm,
            "params": self.params, "task": self.task.value, "scale": self.scale,
            "device": self.device, "images": [p.to_dict() for p in self.images],
            "blocks": [{**{k: _num(v) for k, v in b.items()},
                        "fp16_headroom": _num(fp16_headroom(b["max_abs"]))} for b in self.blocks],
            "overall": {"block_max": _num(bmax), "block_max_layer": bwhere,
                        "any_layer_max": _num(amax), "any_layer_max_layer": awhere,
                        "fp16_headroom": _num(head),
                        "fp16_headroom_log2": _num(math.log2(head) if head else None)},
            "largest": [{"layer": k, "max_abs": _num(v)} for k, v in self.largest()],
            "verdict": {"fp16_safe": self.fp16_safe, "margin": self.margin,
                        "fp16_max": FP16_MAX, "rule": "any_layer_max * margin < fp16_max"},
        }



def _num(v: Any) -> Any:
    """JSON-safe: non-finite floats become None."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def inspect_model(model: nn.Module, probes: Sequence[Probe], *, name: str, task: Task,
                  device: str | Any = "cpu", margin: float = FP16_MARGIN) -> ModelReport:
    """Run ``model`` (fp32, on ``device``) on each probe and merge the statistics: per block,
    mean_abs and entropy averaged over the probes, max_abs their maximum; per module tensor
    the maximum."""
    import torch

    if not probes:
        raise UsageError("no images to inspect")
    device = torch.device(device)
    model = model.to(device=device, dtype=torch.float32).eval()
    per_image = [forward_stats(model, p.tensor.to(device)) for p in probes]
    blocks = _merge_blocks([s.blocks for s in per_image])
    layer_max: dict[str, float] = {}
    for s in per_image:
        for k, v in s.layer_max.items():
            layer_max[k] = max(layer_max.get(k, v), v, key=_nan_high)
    cfg = getattr(model, "config", None)
    norm = getattr(cfg, "norm", "")
    return ModelReport(
        model=name, family=getattr(cfg, "family", type(model).__name__),
        norm=getattr(norm, "value", str(norm)), params=sum(p.numel() for p in model.parameters()),
        task=task, scale=int(getattr(model, "scale", 1)), device=str(device),
        images=tuple(probes), blocks=blocks, layer_max=layer_max, margin=margin)


def _merge_blocks(runs: Sequence[Sequence[Mapping[str, Any]]]) -> tuple[dict[str, Any], ...]:
    out = []
    for rows in zip(*runs):
        first = rows[0]
        n = len(rows)
        out.append({"layer": first["layer"],
                    "mean_abs": sum(r["mean_abs"] for r in rows) / n,
                    "max_abs": max((r["max_abs"] for r in rows), key=_nan_high),
                    "entropy": sum(r["entropy"] for r in rows) / n,
                    "max_entropy": first["max_entropy"], "channels": first["channels"]})
    return tuple(out)


def _times(h: float | None) -> str:
    if h is None:
        return "inf"
    return f"{h:.0f}x" if h >= 1000 else f"{h:.3g}x"


def _log2(h: float | None) -> str:
    return "inf" if h is None else ("-inf" if h == 0 else f"2^{math.log2(h):.1f}")


def format_model_report(r: ModelReport) -> list[str]:
    """The report as text lines: model, inputs, one row per block, the maxima, the verdict."""
    norm = {"iln": "i-LN", "layernorm": "LayerNorm"}.get(r.norm, r.norm or "?")
    task = f"sr x{r.scale}" if r.task is Task.SR else r.task.value
    lines = [(f"model  {r.model} ({r.family}, {norm}, {r.params:,} params, {task}, "
              f"fp32 on {r.device})")]
    lines += [f"image  {p.path}: {p.size[1]}x{p.size[0]}, {p.degradation} -> "
              f"{p.input_size[1]}x{p.input_size[0]} input" for p in r.images]
    width = max([len("block")] + [len(b["layer"]) for b in r.blocks])
    lines.append(f"{'block':<{width}}  {'mean|x|':>9}  {'max|x|':>9}  {'H (nats)':>8}  "
                 f"{'ln C':>5}  {'fp16 headroom':>16}")
    for b in r.blocks:
        h = fp16_headroom(b["max_abs"])
        lines.append(f"{b['layer']:<{width}}  {b['mean_abs']:>9.4g}  {b['max_abs']:>9.4g}  "
                     f"{b['entropy']:>8.3f}  {b['max_entropy']:>5.2f}  "
                     f"{_times(h) + ' (' + _log2(h) + ')':>16}")
    bmax, bwhere = r.block_max
    amax, awhere = r.any_layer_max
    head = fp16_headroom(amax)
    lines.append(f"block max      {bmax:.4g}  at {bwhere or '-'}")
    lines.append(f"any-layer max  {amax:.4g}  at {awhere or '-'}")
    lines.append(f"fp16-safe: {'yes' if r.fp16_safe else 'no'} (headroom {_times(head)}, "
                 f"{_log2(head)}; rule: any-layer max x {r.margin:g} < {FP16_MAX:.0f})")
    return lines

