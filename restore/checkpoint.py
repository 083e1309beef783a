"""Reading reference-style checkpoints and loading them strictly into a model.

Handles the wrappers of the field's releases: BasicSR ``{"params": ..., "params_ema": ...}``
(EMA preferred), ``{"state_dict": ...}``, KAIR's bare state dict, and a ``module.`` prefix
left by DataParallel. Buffers that are functions of the config (relative position
indices, SwinIR's attention mask for the training size) are dropped and recomputed.

``.pth`` files are read with ``torch.load(weights_only=True)`` only: a pickle that needs
anything but tensors and plain containers is refused, never executed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from .atomic import atomic_path
from .errors import CheckpointError

# Wrapper keys, in order of preference (EMA weights are what the authors evaluate).
WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model")

# Suffixes of buffers that are recomputed from the config and never trusted from a file.
RECOMPUTED_SUFFIXES = (
    "relative_position_index", "attn_mask", "relative_position_index_SA",
    "relative_position_index_OCA",
)

MAX_LISTED = 12


def unwrap_state_dict(obj: object) -> dict[str, Tensor]:
    """The tensors of a checkpoint object, unwrapped and without a ``module.`` prefix."""
    seen = 0
    while isinstance(obj, Mapping) and seen < 4:
        inner = next((obj[k] for k in WRAPPER_KEYS if k in obj and isinstance(obj[k], Mapping)),
                     None)
        if inner is None:
            break
        obj, seen = inner, seen + 1
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"expected a state dict, found {type(obj).__name__}")
    out: dict[str, Tensor] = {}
    for key, value in obj.items():
        if not isinstance(key, str):
            raise CheckpointError(f"state dict key {key!r} is not a string")
        if not isinstance(value, Tensor):
            raise CheckpointError(f"state dict entry {key!r} is a {type(value).__name__}, "
                                  "not a tensor")
        out[key.removeprefix("module.")] = value
    if not out:
        raise CheckpointError("the checkpoint holds no tensors")
    return out


def read_checkpoint(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read a ``.safetensors`` or ``.pth``/``.pt``/``.ckpt`` file into a flat state dict (CPU)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            return unwrap_state_dict(load_file(str(path), device="cpu"))
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 (torch raises many kinds for bad pickles)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            reason = ("it needs code beyond tensors and containers to unpickle, and restore "
                      "loads only weights (torch.load weights_only=True)")
        raise CheckpointError(f"{path}: refused: {reason}") from None
    try:
        return unwrap_state_dict(obj)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


def drop_recomputed(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The state dict without the buffers the model recomputes from its config."""
    return {k: v for k, v in state.items() if not k.endswith(RECOMPUTED_SUFFIXES)}


def infer_architecture(state: Mapping[str, Tensor]) -> tuple[str, dict] | None:
    """The (family, reference constructor arguments) of an unwrapped state dict, read from
    its key names and shapes, or None for a layout it does not know.

    Only DRCT is recognized (keys ``layers.<g>.swin1`` .. ``swin5``, ``adjust1`` ..
    ``adjust5``, which no other family has): its published files come with no config, and
    every argument that changes the weights shows in them. Read: in_chans and embed_dim
    (conv_first), the number of groups, gc (adjust1), window_size (the relative position
    bias table: (2w - 1)^2 rows) and each group's num_heads (its columns in swin1),
    mlp_ratio (swin1's fc1), qkv_bias, patch_norm, norm (LayerNorm weight/bias or i-LN
    gamma/beta), resi_connection (conv_after_body), the upsampler and scale (its convs), and
    img_size from the shifted blocks' attn_mask buffer where the file has one (64 where
    not). What the weights do not show is set to the published configs' value: img_range 1
    (pass img_range=255 for a model trained on 0..255), depths 6 per group and
    drop_path_rate 0 (depths only spread the drop-path rates, unused at inference).
    SwinIR and HAT files are not guessed: their releases differ in what the weights do not
    show (img_range, the training patch size), so they are imported with a preset.
    """
    import math

    prefix = "layers.0.swin1."
    if f"{prefix}attn.relative_position_bias_table" not in state \
            or "layers.0.adjust1.weight" not in state or "conv_first.weight" not in state:
        return None
    groups = 0
    while f"layers.{groups}.swin1.attn.relative_position_bias_table" in state:
        groups += 1
    embed_dim, in_chans = (int(n) for n in state["conv_first.weight"].shape[:2])
    rows = int(state[f"{prefix}attn.relative_position_bias_table"].shape[0])
    window = (math.isqrt(rows) + 1) // 2
    if (2 * window - 1) ** 2 != rows:
        raise CheckpointError(f"{prefix}attn.relative_position_bias_table has {rows} rows, "
                              "not (2 * window_size - 1)^2 for any window size")
    cfg: dict = {
        "in_chans": in_chans, "embed_dim": embed_dim, "window_size": window,
        "gc": int(state["layers.0.adjust1.weight"].shape[0]),
        "num_heads": [int(state[f"layers.{g}.swin1.attn.relative_position_bias_table"].shape[1])
                      for g in range(groups)],
        "depths": [6] * groups, "drop_path_rate": 0.0, "img_range": 1.0,
        "mlp_ratio": int(state[f"{prefix}mlp.fc1.weight"].shape[0]) / embed_dim,
        "qkv_bias": f"{prefix}attn.qkv.bias" in state,
        "patch_norm": any(k.startswith("patch_embed.norm.") for k in state),
        "norm": "iln" if f"{prefix}norm1.gamma" in state else "layernorm",
        "resi_connection": "1conv" if "conv_after_body.weight" in state else "identity",
    }
    mask = state.get("layers.0.swin2.attn_mask")
    side = math.isqrt(int(mask.shape[0])) if mask is not None and mask.dim() == 3 else 0
    cfg["img_size"] = side * window if side > 1 and side * side == mask.shape[0] else 64
    if "conv_before_upsample.0.weight" in state:
        steps = [int(state[k].shape[0]) // int(state["conv_last.weight"].shape[1])
                 for k in sorted(k for k in state if re.fullmatch(r"upsample\.\d+\.weight", k))]
        scale = 3 if steps == [9] else 2 ** len(steps)
        cfg.update(upsampler="pixelshuffle", upscale=scale)
    elif "upsample.0.weight" in state:  # one conv to scale^2 * in_chans, then PixelShuffle
        scale = math.isqrt(int(state["upsample.0.weight"].shape[0]) // in_chans)
        cfg.update(upsampler="pixelshuffledirect", upscale=scale)
    else:
        cfg.update(upsampler="", upscale=1)
    return "drct", cfg


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:MAX_LISTED])
    return shown + (f", ... ({len(keys) - MAX_LISTED} more)" if len(keys) > MAX_LISTED else "")


def check_state_dict(model: nn.Module, state: Mapping[str, Tensor]) -> None:
    """Raise CheckpointError naming missing, unexpected and mis-shaped keys, if any."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(f"{k} {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
                    for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    problems = []
    if missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    if shapes:
        problems.append(f"shape mismatch: {_listing(shapes)}")
    if problems:
        hint = ""
        if any(k.endswith((".gamma", ".beta")) for k in unexpected) and any(
                k.endswith((".weight", ".bias")) for k in missing):
            hint = " (an i-LN checkpoint for a LayerNorm model? use norm='iln')"
        elif any(k.endswith((".weight", ".bias")) for k in unexpected) and any(
                k.endswith((".gamma", ".beta")) for k in missing):
            hint = " (a LayerNorm checkpoint for an i-LN model? use norm='layernorm')"
        raise CheckpointError("checkpoint does not fit the model: " + "; ".join(problems) + hint)


def load_state_dict(model: nn.Module, state: Mapping[str, Tensor] | object) -> nn.Module:
    """Load a (possibly wrapped) reference state dict strictly; returns the model.

    Unwraps params_ema/params/state_dict, strips ``module.``, drops recomputed buffers,
    and raises CheckpointError with the offending keys by name if anything does not fit.
    """
    sd = drop_recomputed(unwrap_state_dict(state))
    check_state_dict(model, sd)
    model.load_state_dict(sd, strict=True)
    return model


# -- restore's own files: safetensors with the architecture in the metadata ----------------

META_FORMAT = "restore"


def save_model(model: nn.Module, path: str | os.PathLike,
               metadata: Mapping[str, str] | None = None) -> Path:
    """Write ``model``'s weights as safetensors with its architecture config in the metadata.

    Metadata keys: ``format`` = "restore", ``family`` ("swinir"/"hat"), ``config`` (JSON of
    the reference constructor arguments, norm included), plus ``metadata``. The file is
    written to a temporary name in the same folder and renamed: never half-written.
    """
    import json

    from safetensors.torch import save_file

    cfg = getattr(model, "config", None)
    if cfg is None:
        raise CheckpointError(f"{type(model).__name__} has no architecture config to record")
    meta = {"format": META_FORMAT, "family": cfg.family, "config": json.dumps(cfg.to_kwargs())}
    meta.update(metadata or {})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata of a safetensors file ({} when it has none)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None


def load_model(path: str | os.PathLike, family: str | None = None,
               config: Mapping[str, object] | None = None) -> nn.Module:
    """Build the model a checkpoint describes and load it strictly (eval mode, CPU, fp32).

    A restore safetensors file carries its own family/config; any other checkpoint needs
    ``family`` and ``config`` (reference constructor arguments).
    """
    import json

    from .archs import build

    path = Path(path)
    if family is None or config is None:
        meta = read_metadata(path) if path.suffix == ".safetensors" and path.is_file() else {}
        if meta.get("format") != META_FORMAT:
            raise CheckpointError(
                f"{path}: the file does not say which architecture it holds; give the family "
                "and config (or import it with 'restore models import')")
        family = family or meta["family"]
        config = config if config is not None else json.loads(meta["config"])
    model = build(family, **dict(config))
    state = read_checkpoint(path)
    try:
        load_state_dict(model, state)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    return model.eval()
