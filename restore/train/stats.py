"""Per-block feature statistics: the numbers behind the paper's Figure 1.

For every transformer block (a module whose qualified name ends in ``blocks.<n>``: the
Swin blocks of SwinIR, the HABs of HAT) a forward hook records, on one validation image,
the block's output tokens x of shape (B, N, C):

- ``mean_abs``: mean of |x| over all tokens and channels (the feature magnitude that grows
  to ~1e7 in LayerNorm networks);
- ``max_abs``: max of |x|;
- ``entropy``: the channel entropy, in nats. With the per-channel energy
  ``E_c = mean over tokens of x_c^2`` and its normalized distribution ``p_c = E_c / sum_c E_c``,
  ``H = -sum_c p_c ln p_c`` (terms with p_c = 0 count 0). It is ln(C) (4.09 for C = 60)
  when the energy is spread evenly over the channels and 0 when one channel holds all of it
  (the collapse the paper reports for LayerNorm).

Values are computed in float64 from the fp32 activations, per image, and averaged over the
batch.
"""

from __future__ import annotations

import math
import re

import torch
from torch import Tensor, nn

BLOCK_NAME = re.compile(r"(^|\.)blocks\.\d+$")


def channel_entropy(x: Tensor) -> float:
    """Channel entropy in nats of tokens x (B, N, C), averaged over the batch (see module)."""
    e = x.detach().double().pow(2).mean(dim=1)  # (B, C): E_c per image
    p = e / e.sum(dim=1, keepdim=True).clamp_min(1e-300)
    h = -(p * torch.log(p.clamp_min(1e-300))).sum(dim=1)
    return float(h.mean())


def block_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The (name, module) of each transformer block, in forward order."""
    return [(n, m) for n, m in model.named_modules() if BLOCK_NAME.search(n)]


@torch.no_grad()
def feature_stats(model: nn.Module, x: Tensor) -> list[dict]:
    """Run ``model`` on ``x`` and return one dict per block: name, mean_abs, max_abs, entropy."""
    rows: list[dict] = []
    hooks = []

    def hook(name: str):
        def fn(_mod, _inp, out):
            t = out[0] if isinstance(out, tuple) else out
            if t.dim() == 4:  # (B, C, H, W) block outputs: tokens are pixels
                t = t.flatten(2).transpose(1, 2)
            a = t.detach().double().abs()
            rows.append({"layer": name, "mean_abs": float(a.mean()), "max_abs": float(a.max()),
                         "entropy": channel_entropy(t), "channels": int(t.shape[-1]),
                         "max_entropy": math.log(t.shape[-1])})
        return fn

    for name, mod in block_modules(model):
        hooks.append(mod.register_forward_hook(hook(name)))
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
    return rows


def read_stats(path) -> list[dict]:
    """The records of a run's stats.jsonl: {"step", "image", "blocks": [per-block dicts]}."""
    import json
    from pathlib import Path

    path = Path(path)
    if path.is_dir():
        path = path / "stats.jsonl"
    if not path.is_file():
        from ..errors import UsageError

        raise UsageError(f"{path}: no feature statistics (written at each validation)")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def format_stats(record: dict) -> list[str]:
    """One record as fixed-width rows: block, mean |x|, max |x|, entropy (nats) / ln C."""
    width = max(len("block"), *(len(b["layer"]) for b in record["blocks"]))
    rows = [f"{'block':<{width}}  {'mean|x|':>10}  {'max|x|':>10}  {'H (nats)':>8}  {'ln C':>5}"]
    rows += [f"{b['layer']:<{width}}  {b['mean_abs']:>10.4g}  {b['max_abs']:>10.4g}  "
             f"{b['entropy']:>8.3f}  {b['max_entropy']:>5.2f}" for b in record["blocks"]]
    return rows
