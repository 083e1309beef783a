"""SwinIR, in its LayerNorm form (loads the official checkpoints) and its i-LN form.

Matches JingyunLiang/SwinIR ``models/network_swinir.py`` (the version that reflect-pads
inside forward) key for key and to ~1e-6 in fp32.

SwinIR-iLN: the authors of i-LN released code for HAT only, not for SwinIR. This project
defines SwinIR-iLN by the same recipe (docs/iln.md): norm1/norm2 of every Swin block
become i-LN with input-adaptive rescaling (denorm) of the attention and MLP branches, the
patch-embedding norm and the final norm become a per-channel Affine, and the input is
normalized by the dataset std ("stdnorm") as well as the mean.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..norms import ILN, ILNStats, NormKind, iln_stats_from_moments, make_block_norm, make_plain_norm
from .common import (
    GRAY_STD, RGB_MEAN, RGB_STD, DropPath, Mlp, WindowAttention, attach_head, image_to_tokens,
    pad_to_multiple, relative_position_index, resi_conv, run_head, shift_attention_mask,
    tokens_to_image, window_partition, window_reverse,
)
from .config import SwinIRConfig, TransformerConfig


class SwinBlock(nn.Module):
    """x + denorm(attn(norm1(x))), then x + denorm(mlp(norm2(x))).

    With LayerNorm the denorm is the identity: the vanilla Swin block.
    ``dim`` and ``mlp_ratio`` default to the config's; DRCT's dense blocks (restore.archs.drct)
    see more channels than ``embed_dim`` and some use another MLP ratio.
    """

    def __init__(self, cfg: TransformerConfig, num_heads: int, shift: int,
                 drop_path: float, *, dim: int | None = None,
                 mlp_ratio: float | None = None) -> None:
        super().__init__()
        dim = cfg.embed_dim if dim is None else dim
        mlp_ratio = cfg.mlp_ratio if mlp_ratio is None else mlp_ratio
        ws = cfg.window_size
        self.window_size = ws
        self.shift_size = shift
        self.norm1 = make_block_norm(cfg.norm, dim, cfg.eps)
        self.attn = WindowAttention(dim, ws, num_heads, cfg.qkv_bias, cfg.qk_scale,
                                    cfg.attn_drop_rate, cfg.drop_rate)
        self.drop_path = DropPath(drop_path)
        self.norm2 = make_block_norm(cfg.norm, dim, cfg.eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), cfg.drop_rate)

    def attention(self, x: Tensor, hw: tuple[int, int], rpi: Tensor, mask: Tensor | None) -> Tensor:
        """(shifted) window attention of normalized tokens x (B, H*W, C)."""
        h, w = hw
        b, _, c = x.shape
        ws, s = self.window_size, self.shift_size
        x = x.view(b, h, w, c)
        if s:
            x = torch.roll(x, shifts=(-s, -s), dims=(1, 2))
        out = self.attn(window_partition(x, ws), rpi, mask if s else None)
        out = window_reverse(out, ws, h, w)
        if s:
            out = torch.roll(out, shifts=(s, s), dims=(1, 2))
        return out.reshape(b, h * w, c)

    # The block in three steps, so that an executor can run it over tiles with the global
    # statistics of the whole image (restore.engine.exact): ``branches`` is local (it needs
    # ``halo`` pixels of context), ``merge`` and ``mlp_step`` are pointwise given the
    # statistics. ``forward`` is their composition.
    @property
    def halo(self) -> int:
        """Context (pixels) a tile needs around its core for ``branches`` to be exact."""
        return self.window_size if self.shift_size else 0

    def branches(self, x: Tensor, hw: tuple[int, int], rpi: Tensor, mask: Tensor | None,
                 st1) -> dict[str, Tensor]:
        y, _ = self.norm1.normalize(x, st1)
        return {"attn": self.attention(y, hw, rpi, mask)}

    def merge(self, x: Tensor, br: dict[str, Tensor], st1, pooled=None) -> Tensor:
        return self.norm1.residual(x, self.drop_path(br["attn"]), st1)

    def mlp_step(self, x: Tensor, st2) -> Tensor:
        y, st2 = self.norm2.normalize(x, st2)
        return self.norm2.residual(x, self.drop_path(self.mlp(y)), st2)

    def forward(self, x: Tensor, hw: tuple[int, int], rpi: Tensor, mask: Tensor | None) -> Tensor:
        st1 = self.norm1.statistics(x)
        x = self.merge(x, self.branches(x, hw, rpi, mask, st1), st1)
        return self.mlp_step(x, self.norm2.statistics(x))


class BasicLayer(nn.Module):
    """The blocks of one residual group (key ``residual_group.blocks``)."""

    def __init__(self, cfg: TransformerConfig, depth: int, num_heads: int,
                 drop_paths: list[float]) -> None:
        super().__init__()
        self.use_checkpoint = cfg.use_checkpoint
        self.blocks = nn.ModuleList(
            SwinBlock(cfg, num_heads, 0 if i % 2 == 0 else cfg.window_size // 2, drop_paths[i])
            for i in range(depth))

    def forward(self, x: Tensor, hw, rpi, mask) -> Tensor:
        for blk in self.blocks:
            if self.use_checkpoint and torch.is_grad_enabled():
                x = checkpoint(blk, x, hw, rpi, mask, use_reentrant=False)
            else:
                x = blk(x, hw, rpi, mask)
        return x


class RSTB(nn.Module):
    """Residual Swin Transformer Block: blocks, conv, plus the group input."""

    def __init__(self, cfg: TransformerConfig, depth: int, num_heads: int,
                 drop_paths: list[float]) -> None:
        super().__init__()
        self.residual_group = BasicLayer(cfg, depth, num_heads, drop_paths)
        self.conv = resi_conv(cfg.resi_connection, cfg.embed_dim)

    def forward(self, x: Tensor, hw: tuple[int, int], rpi: Tensor, mask: Tensor | None) -> Tensor:
        y = self.residual_group(x, hw, rpi, mask)
        return image_to_tokens(self.conv(tokens_to_image(y, *hw))) + x


class PatchEmbed(nn.Module):
    """Holds the norm after the first conv (key ``patch_embed.norm``); patch size 1."""

    def __init__(self, norm: nn.Module | None) -> None:
        super().__init__()
        self.norm = norm

    def forward(self, x: Tensor) -> Tensor:
        x = image_to_tokens(x)
        return x if self.norm is None else self.norm(x)


class InputNorm(nn.Module):
    """(x - mean) * img_range / std on the way in, the inverse on the way out.

    mean/std are not part of the state dict (the reference keeps them as plain tensors).
    """

    def __init__(self, in_chans: int, img_range: float, stdnorm: bool) -> None:
        super().__init__()
        if in_chans == 3:
            mean, std = RGB_MEAN, RGB_STD if stdnorm else (1.0, 1.0, 1.0)
        else:
            mean, std = (0.0,), GRAY_STD if stdnorm else (1.0,)
        self.img_range = img_range
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean.to(x)) * self.img_range / self.std.to(x)

    def inverse(self, x: Tensor) -> Tensor:
        return x * self.std.to(x) / self.img_range + self.mean.to(x)


def drop_path_schedule(cfg: TransformerConfig) -> list[list[float]]:
    """Stochastic-depth rate per block, rising linearly to drop_path_rate (per group)."""
    total = sum(cfg.depths)
    rates = torch.linspace(0, cfg.drop_path_rate, total).tolist()
    out, start = [], 0
    for d in cfg.depths:
        out.append(rates[start:start + d])
        start += d
    return out


class SwinIR(nn.Module):
    """SwinIR. forward: (B, C, H, W) float in [0, 1] (any H, W) -> (B, C, sH, sW).

    The input is reflect-padded on the bottom/right to a multiple of the window inside
    forward and the output cropped back, as the reference does.
    """

    def __init__(self, config: SwinIRConfig) -> None:
        super().__init__()
        self.config = cfg = config
        self.scale = cfg.upscale
        self.size_multiple = cfg.window_size
        self.window_size = cfg.window_size
        dim = cfg.embed_dim
        self.input_norm = InputNorm(cfg.in_chans, cfg.img_range, cfg.stdnorm)
        self.register_buffer("rpi", relative_position_index(cfg.window_size), persistent=False)

        self.conv_first = nn.Conv2d(cfg.in_chans, dim, 3, 1, 1)
        self.patch_embed = PatchEmbed(
            make_plain_norm(cfg.norm, dim, cfg.eps) if cfg.patch_norm else None)
        self.pos_drop = nn.Dropout(cfg.drop_rate)
        dprs = drop_path_schedule(cfg)
        self.layers = nn.ModuleList(
            RSTB(cfg, d, h, dprs[i]) for i, (d, h) in enumerate(zip(cfg.depths, cfg.num_heads)))
        self.norm = make_plain_norm(cfg.norm, dim, cfg.eps)
        self.conv_after_body = resi_conv(cfg.resi_connection, dim)
        attach_head(self, cfg.upsampler, cfg.upscale, dim, cfg.in_chans)
        self.apply(_init_weights)

    def forward_features(self, x: Tensor) -> Tensor:
        """Deep features of the shallow features x (B, C, H, W), H and W window multiples."""
        hw = (x.shape[2], x.shape[3])
        mask = shift_attention_mask(*hw, self.window_size, self.window_size // 2, x.device)
        t = self.pos_drop(self.patch_embed(x))
        for layer in self.layers:
            t = layer(t, hw, self.rpi, mask)
        return tokens_to_image(self.norm(t), *hw)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[2:]
        x = self.input_norm(pad_to_multiple(x, self.size_multiple))
        shallow = self.conv_first(x)
        y = run_head(self, self.config.upsampler, x, shallow, self.forward_features(shallow))
        y = self.input_norm.inverse(y)
        return y[:, :, : h * self.scale, : w * self.scale]

    @property
    def has_global_statistics(self) -> bool:
        """i-LN makes every output pixel depend on the whole image."""
        return self.config.norm is NormKind.ILN

    def forward_exact(self, x: Tensor, run) -> Tensor:
        """The same result as ``forward``, computed over tiles (see restore.engine.exact)."""
        return forward_exact(self, x, run, lambda layer: [
            (b, self.rpi, True) for b in layer.residual_group.blocks])


# -- exact tiled execution (restore.engine.exact) -----------------------------------------
def _block_stats(norm: nn.Module, t: Tensor, run, mom=None) -> ILNStats | None:
    """Whole-map i-LN statistics of ``t`` (None for LN): from ``mom`` (mean, var) when the
    pass that wrote ``t`` accumulated them, else from the runner's fp64 tile sums."""
    if not isinstance(norm, ILN):
        return None
    mean, var = mom if mom is not None else run.moments(t)
    return iln_stats_from_moments(mean, var, norm.eps)


def _on(st: ILNStats | None, device) -> ILNStats | None:
    return None if st is None else ILNStats(st.mean.to(device), st.std.to(device))


def exact_block(blk: nn.Module, t: Tensor, run, rpi: Tensor, shifted_mask: bool, mom=None):
    """One block over whole maps: stats, local branches, global pools, pointwise merge+MLP.

    t: (1, C, H, W) float32 CPU token map in image layout; ``mom``: its (mean, var) if
    known. Returns the block's output map and, for i-LN, its (mean, var) (else None). Uses
    the block's own branches/merge/mlp_step, so there is one implementation of the math.
    Without pooled branches (Swin blocks, OCAB) the merge is pointwise given the input
    statistics and runs in the same tile pass as the attention: two passes per block.
    """
    ws = blk.window_size
    wrap = blk.shift_size if shifted_mask else 0
    iln = isinstance(blk.norm1, ILN)
    st1 = _block_stats(blk.norm1, t, run, mom)
    pooled_keys = tuple(getattr(blk, "pooled_branches", ()))
    keys: list[str] = []
    masks: dict[tuple, Tensor] = {}  # one shift mask per tile shape, not per tile

    def branches(crop: Tensor):
        hw = (crop.shape[2], crop.shape[3])
        mask = None
        if shifted_mask and getattr(blk, "shift_size", 0):
            key = (hw, crop.device)
            if key not in masks:
                masks[key] = shift_attention_mask(*hw, ws, blk.shift_size, crop.device)
            mask = masks[key]
        x = image_to_tokens(crop)
        st = _on(st1, crop.device)
        br = blk.branches(x, hw, rpi.to(crop.device), mask, st)
        if not pooled_keys:
            return tokens_to_image(blk.merge(x, br, st), *hw)
        keys[:] = list(br)
        return tuple(tokens_to_image(br[k], *hw) for k in keys)

    def local(fn, maps, **kw):  # -> (map, its (mean, var) for i-LN, else None)
        out = run.local(fn, maps, moments=iln, **kw)
        return out if iln else (out, None)

    if not pooled_keys:
        t1, mom1 = local(branches, [t], halo=blk.halo, align=ws, wrap=wrap)
    else:
        maps = run.local(branches, [t], halo=blk.halo, align=ws, wrap=wrap)
        maps = (maps,) if isinstance(maps, Tensor) else maps
        pooled = {k: run.channel_mean(maps[keys.index(k)]) for k in pooled_keys}

        def merge(tc: Tensor, *bs: Tensor):
            hw = (tc.shape[2], tc.shape[3])
            br = {k: image_to_tokens(b) for k, b in zip(keys, bs)}
            p = {k: v.to(tc.device) for k, v in pooled.items()}
            return tokens_to_image(blk.merge(image_to_tokens(tc), br, _on(st1, tc.device), p),
                                   *hw)

        t1, mom1 = local(merge, [t, *maps])
    st2 = _block_stats(blk.norm2, t1, run, mom1)

    def mlp(tc: Tensor):
        hw = (tc.shape[2], tc.shape[3])
        return tokens_to_image(blk.mlp_step(image_to_tokens(tc), _on(st2, tc.device)), *hw)

    return local(mlp, [t1])


def _conv_halo(m: nn.Module) -> int:
    """Context a stack of convolutions needs (sum of their radii)."""
    return sum(c.kernel_size[0] // 2 for c in m.modules() if isinstance(c, nn.Conv2d))


def forward_exact(model: nn.Module, x: Tensor, run, layer_blocks) -> Tensor:
    """The whole-image forward of SwinIR/HAT, computed over tiles by ``run`` (ExactRunner).

    ``layer_blocks(layer)`` lists (block, rpi, uses_shift_mask) of one residual group.
    x: (1, C, H, W) float32 CPU in [0, 1]. Returns (1, C, sH, sW) float32 CPU; the maps
    in between are the runner's (device, RAM or scratch file).
    """
    if x.shape[0] != 1:
        return torch.cat([forward_exact(model, xi[None], run, layer_blocks) for xi in x])
    h, w = x.shape[2:]
    ws = model.window_size
    xin = model.input_norm(pad_to_multiple(x, ws))
    shallow = run.local(model.conv_first, [xin], halo=1)
    embed_norm = model.patch_embed.norm

    def tokenwise(norm):
        def fn(tc):
            return tokens_to_image(norm(image_to_tokens(tc)), tc.shape[2], tc.shape[3])
        return fn

    t = shallow if embed_norm is None else run.local(tokenwise(embed_norm), [shallow])
    for layer in model.layers:
        group_in = t
        mom = None  # (mean, var) of t when the pass that wrote it accumulated them
        for blk, rpi, shifted in layer_blocks(layer):
            t, mom = exact_block(blk, t, run, rpi, shifted, mom)
        t = run.local(lambda a, g, c=layer.conv: c(a) + g, [t, group_in],
                      halo=_conv_halo(layer.conv))
    t = run.local(tokenwise(model.norm), [t])
    head_halo = _conv_halo(model) - sum(_conv_halo(m) for m in (model.layers, model.conv_first))
    up = model.config.upsampler

    def head(deep, sh, xi):
        return run_head(model, up, xi, sh, deep)

    y = run.local(head, [t, shallow, xin], halo=head_halo, scale=model.scale, result=True)
    del t, shallow, xin  # the body's maps are done with: free them before the output
    norm = model.input_norm  # its inverse, in place: the output is the largest map of all
    y.mul_(norm.std.to(y) / norm.img_range).add_(norm.mean.to(y))
    return y[:, :, : h * model.scale, : w * model.scale]


def _init_weights(m: nn.Module) -> None:
    """The reference initialization (matters for training from scratch only)."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
