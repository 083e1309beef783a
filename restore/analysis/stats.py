"""Statistics of a restoration network's blocks, and the fp16 rule.

The definitions that ``restore inspect`` reports and ``restore train`` logs (stats.jsonl).

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
- ``fp16_headroom`` (``report.inspect_model`` only): 65504 / max_abs, the factor by which the
  features could grow before overflowing fp16 (None when max_abs is 0).

Values are computed in float64 from the fp32 activations: per image, mean_abs and entropy
averaged over the images (the batch, or the images given to ``report.inspect_model``),
max_abs the maximum over them.

The fp16 verdict
----------------
fp16 overflows above 65504, and the risk is in any intermediate tensor, not only at block
outputs. ``report.inspect_model`` therefore also records (``forward_stats``), with forward
hooks on *every* submodule (each nn.Linear, nn.Conv2d, norm, activation, attention, MLP,
block, group), the max |x| of every module's first argument (its input features; later
arguments such as SwinIR's attention mask, -100 where masked, are constants, not features)
and of every floating tensor it returns: the *any-layer max*. The verdict is

    fp16-safe  <=>  any_layer_max * margin < 65504,   margin = FP16_MARGIN = 16

The margin is an assumption, not a measurement: it covers images whose features are larger
than the probe images' (the statistics of a 40x40 crop are not those of every photo),
intermediate values that are no module's input or output (the attention logits inside the
fused attention kernel; i-LN's variance, which restore computes in fp32 on purpose), and
the rounding of a half-precision forward. ``headroom`` = 65504 / any_layer_max is reported
as a factor and as log2 (how many doublings the features may still take).

Torch is imported inside the functions that need it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor, nn

__all__ = [
    "BLOCK_NAME", "FP16_MARGIN", "FP16_MAX", "block_modules", "channel_entropy",
    "feature_stats", "forward_stats", "fp16_headroom", "fp16_safe", "tensor_stats",
]

FP16_MAX = 65504.0  # the largest finite float16
FP16_MARGIN = 16.0  # assumption: see the module docstring
# SwinIR/HAT: layers.<g>.residual_group.blocks.<n>; DRCT: layers.<g>.swin<n>
BLOCK_NAME = re.compile(r"(^|\.)(blocks\.\d+|swin\d+)$")


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


def _nan_high(v: float) -> float:
    return math.inf if math.isnan(v) else v
