"""Feature statistics of a restoration network: the paper's analysis as a library.

The i-LN paper (Lee et al., ICLR 2026, its Figure 1) shows that with per-token LayerNorm the
features of image-restoration transformers grow to ~1e7 and their channel entropy collapses
to ~0. This module measures both, on a trained model (``inspect_model``) and over a
training run (``load_runs``, from the ``stats.jsonl`` that ``restore train`` writes with
``feature_stats``), and turns the magnitude into an fp16 verdict.

Statistics of a block
---------------------
A *block* is a module whose qualified name ends in ``blocks.<n>`` (the Swin blocks of
SwinIR, the HABs of HAT) or ``swin<n>`` (the five Swin blocks of each DRCT group, keys
``layers.<g>.swin1`` .. ``swin5``: ``BLOCK_NAME``). Its output is read as tokens x of shape
(B, N, C) (a (B, C, H, W) output is flattened to N = H*W tokens of C channels); in DRCT, C
grows within a group (block k sees ``embed_dim + (k - 1) * gc`` channels), so each block
has its own ln C. Per block:

- ``mean_abs``: mean of |x| over all tokens and channels;
- ``max_abs``: max of |x|;
- ``entropy``: the channel entropy in nats. With the per-channel energy
  ``E_c = mean over tokens of x_c^2`` and its normalized distribution
  ``p_c = E_c / sum_c E_c``, ``H = -sum_c p_c ln p_c`` (terms with p_c = 0 count 0). It is
  ``max_entropy`` = ln(C) (3.47 for C = 32, 4.09 for C = 60) when the energy is spread
  evenly over the channels and 0 when one channel holds all of it (the collapse the paper
  reports for LayerNorm);
- ``channels``: C, and ``max_entropy``: ln C;
- ``fp16_headroom`` (``inspect_model`` only): 65504 / max_abs, the factor by which the
  features could grow before overflowing fp16 (None when max_abs is 0).

Values are computed in float64 from the fp32 activations: per image, mean_abs and entropy
averaged over the images (the batch, or the images given to ``inspect_model``), max_abs the
maximum over them.

The fp16 verdict
----------------
fp16 overflows above 65504, and the risk is in any intermediate tensor, not only at block
outputs. ``inspect_model`` therefore also records, with forward hooks on *every* submodule
(each nn.Linear, nn.Conv2d, norm, activation, attention, MLP, block, group), the max |x| of
every module's first argument (its input features; later arguments such as SwinIR's
attention mask, -100 where masked, are constants, not features) and of every floating
tensor it returns: the *any-layer max*. The verdict is

    fp16-safe  <=>  any_layer_max * margin < 65504,   margin = FP16_MARGIN = 16

The margin is an assumption, not a measurement: it covers images whose features are larger
than the probe images' (the statistics of a 40x40 crop are not those of every photo),
intermediate values that are no module's input or output (the attention logits inside the
fused attention kernel; i-LN's variance, which restore computes in fp32 on purpose), and
the rounding of a half-precision forward. ``headroom`` = 65504 / any_layer_max is reported
as a factor and as log2 (how many doublings the features may still take).

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

Torch and numpy are imported inside the functions that need them, so reading a run's
statistics (``load_runs``) stays fast.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UsageError
from .tasks import Task

if TYPE_CHECKING:
    from torch import Tensor, nn

__all__ = [
    "BLOCK_NAME", "FP16_MARGIN", "FP16_MAX", "ModelReport", "Probe", "RunStats", "RunsView",
    "block_modules", "channel_entropy", "feature_stats", "format_model_report", "format_runs",
    "format_stats", "forward_stats", "fp16_headroom", "fp16_safe", "inspect_model",
    "load_for_inspection", "load_runs", "model_task", "plot_model", "plot_runs",
    "prepare_input", "read_stats", "require_matplotlib", "sample_image", "tensor_stats",
]

FP16_MAX = 65504.0  # the largest finite float16
FP16_MARGIN = 16.0  # assumption: see the module docstring
# SwinIR/HAT: layers.<g>.residual_group.blocks.<n>; DRCT: layers.<g>.swin<n>
BLOCK_NAME = re.compile(r"(^|\.)(blocks\.\d+|swin\d+)$")
RUN_STATS = ("max_abs", "mean_abs", "entropy")  # what `inspect run --stat` may show
N_LARGEST = 5


# -- statistics of one tensor -----------------------------------------------------------------

def channel_entropy(x: Tensor) -> float:
    """Channel entropy in nats of tokens x (B, N, C), averaged over the batch (see module)."""
    import torch

    e = _host_float64(x).pow(2).mean(dim=1)  # (B, C): E_c per image
    p = e / e.sum(dim=1, keepdim=True).clamp_min(1e-300)
    h = -(p * torch.log(p.clamp_min(1e-300))).sum(dim=1)
    return float(h.mean())


def _host_float64(t: Tensor) -> Tensor:
    """``t`` detached in float64 (on the CPU for MPS, which has no float64)."""
    t = t.detach()
    if t.device.type == "mps":
        t = t.cpu()
    return t.double()


def _tokens(t: Tensor) -> Tensor:
    """(B, N, C) tokens of a block output: (B, C, H, W) maps become H*W tokens."""
    return t.flatten(2).transpose(1, 2) if t.dim() == 4 else t


def tensor_stats(t: Tensor) -> dict[str, Any]:
    """mean_abs, max_abs, entropy, channels, max_entropy of a block output (B, N, C) or
    (B, C, H, W), in float64 (see the module docstring)."""
    t = _tokens(t)
    a = _host_float64(t).abs()
    c = int(t.shape[-1])
    return {"mean_abs": float(a.mean()), "max_abs": float(a.max()),
            "entropy": channel_entropy(t), "channels": c, "max_entropy": math.log(c)}


def fp16_headroom(max_abs: float) -> float | None:
    """65504 / max_abs: how far the features may grow before fp16 overflows (None for 0;
    0.0 for a non-finite max)."""
    if not math.isfinite(max_abs):
        return 0.0
    return FP16_MAX / max_abs if max_abs > 0 else None


def fp16_safe(any_layer_max: float, margin: float = FP16_MARGIN) -> bool:
    """The verdict: ``any_layer_max * margin < 65504`` (see the module docstring)."""
    return math.isfinite(any_layer_max) and any_layer_max * margin < FP16_MAX


# -- hooks ----------------------------------------------------------------------------------------

def block_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The (name, module) of each transformer block, in forward order."""
    return [(n, m) for n, m in model.named_modules() if BLOCK_NAME.search(n)]


def _first_tensor(out: Any) -> Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


def _floating(obj: Any) -> Iterable[Tensor]:
    """The floating-point tensors in a module's inputs or outputs (tuples, lists, dicts)."""
    import torch

    if isinstance(obj, torch.Tensor):
        if obj.is_floating_point() and obj.numel():
            yield obj
    elif isinstance(obj, (tuple, list)):
        for o in obj:
            yield from _floating(o)
    elif isinstance(obj, Mapping):
        for o in obj.values():
            yield from _floating(o)


def _max_abs(obj: Any) -> float | None:
    # max is exact in the tensor's own dtype: no float64 copy needed
    values = [float(t.detach().abs().amax()) for t in _floating(obj)]
    return max(values) if values else None


@dataclass(frozen=True)
class ForwardStats:
    """What one forward pass showed: per-block statistics and, per module tensor, max |x|.

    ``blocks``: one dict per block (layer, mean_abs, max_abs, entropy, channels,
    max_entropy), in forward order. ``layer_max``: "NAME (input)" / "NAME (output)" -> max
    |x| of the module's first argument / over the floating tensors it returns.
    """

    blocks: tuple[dict[str, Any], ...]
    layer_max: Mapping[str, float]


def forward_stats(model: nn.Module, x: Tensor, *, every_module: bool = True) -> ForwardStats:
    """Run ``model`` on ``x`` (no gradients) with forward hooks and return what they saw.

    Blocks (``block_modules``) get ``tensor_stats`` of their output; with ``every_module``
    each submodule's inputs and outputs also get their max |x| (the any-layer max). Hooks
    are removed whatever happens; nothing is stored on the model.
    """
    import torch

    blocks = {name for name, _ in block_modules(model)}
    rows: list[dict[str, Any]] = []
    layer_max: dict[str, float] = {}

    def note(key: str, value: float | None) -> None:
        if value is not None and (key not in layer_max
                                  or _nan_high(value) > _nan_high(layer_max[key])):
            layer_max[key] = value

    def hook(name: str):
        def fn(_mod, inp, out):
            if name in blocks:
                rows.append({"layer": name, **tensor_stats(_first_tensor(out))})
            if every_module:
                # the first argument is the activation; later ones are side inputs such
                # as SwinIR's attention mask (-100 where masked), not features
                note(f"{name} (input)", _max_abs(inp[:1]))
                note(f"{name} (output)", _max_abs(out))
        return fn

    handles = [mod.register_forward_hook(hook(name)) for name, mod in model.named_modules()
               if name and (every_module or name in blocks)]
    try:
        with torch.no_grad():  # not inference_mode: the training loop calls this too
            model(x)
    finally:
        for h in handles:
            h.remove()
    return ForwardStats(blocks=tuple(rows), layer_max=layer_max)


def feature_stats(model: nn.Module, x: Tensor) -> list[dict]:
    """Run ``model`` on ``x`` and return one dict per block: layer, mean_abs, max_abs,
    entropy, channels, max_entropy (the records of a run's stats.jsonl)."""
    return [dict(r) for r in forward_stats(model, x, every_module=False).blocks]


# -- a model and its inputs ---------------------------------------------------------------------

def sample_image() -> Path:
    """The bundled sample: a 160x160 crop of Kodak's kodim23 (the parrots), 8-bit RGB PNG."""
    return Path(__file__).resolve().parent / "data" / "sample.png"


@dataclass(frozen=True)
class LoadedForInspection:
    """A model ready to inspect: the module (eval, CPU, fp32), the name as given, and the
    task its registry entry or file metadata declares (None when neither says)."""

    module: Any
    name: str
    declared_task: Task | None


def load_for_inspection(model: str, offline: bool = False) -> LoadedForInspection:
    """``model`` is a checkpoint file (a restore safetensors file; others need
    ``restore models import`` first) or a registry name."""
    path = Path(model).expanduser()
    if path.is_file() or path.suffix in (".safetensors", ".pth", ".pt"):
        from .checkpoint import load_model, read_metadata

        if not path.is_file():
            raise UsageError(f"{path}: no such file")
        module = load_model(path)
        meta = read_metadata(path) if path.suffix == ".safetensors" else {}
        declared = Task(meta["task"]) if meta.get("task") in {t.value for t in Task} else None
        return LoadedForInspection(module, model, declared)
    from .weights import load_registry, load_registry_model

    spec = load_registry().get(model)
    return LoadedForInspection(load_registry_model(spec, offline=offline), spec.name, spec.task)


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

    from .degrade import add_gaussian_noise, imresize, jpeg_compress, modcrop
    from .io import read_image

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
        lq, what = imresize(hr, 1.0 / scale).astype(np.float32) / 255.0, f"bicubic 1/{scale}"
    elif task is Task.DENOISE:
        lq = add_gaussian_noise(u8.astype(np.float64) / 255.0, sigma, seed).astype(np.float32)
        what = f"AWGN sigma {sigma:g} (seed {seed})"
    else:
        lq, what = jpeg_compress(u8, quality).astype(np.float32) / 255.0, f"JPEG q{quality}"
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


def _nan_high(v: float) -> float:
    return math.inf if math.isnan(v) else v


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


# -- training runs (stats.jsonl) ------------------------------------------------------------------

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


# -- plots (matplotlib, optional) ---------------------------------------------------------------

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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with matplotlib.rc_context({"svg.hashsalt": "restore", "svg.fonttype": "none"}):
            fig.savefig(tmp, format=fmt, metadata=metadata)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
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
