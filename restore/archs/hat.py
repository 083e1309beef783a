"""HAT (Hybrid Attention Transformer), in its LayerNorm form and its i-LN form.

Matches the reference ``hat_arch.py`` / ``hat_iLN_arch.py`` of 2minkyulee/i-LN (the same
HAT as XPixelGroup/HAT) key for key and to ~1e-6 in fp32. HAT-iLN (the paper): i-LN with
denorm in HAB and OCAB, Affine for the patch-embedding and final norms, stdnorm input.

Differences from the reference, all additive: any input size (reflect padding to the
window multiple inside forward, the rule of HAT's test code, then cropping), and a scale-1
head (upsampler='') for denoising and JPEG artifact removal.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..norms import make_block_norm, make_plain_norm
from .common import (
    DropPath, Mlp, WindowAttention, attach_head, image_to_tokens, pad_to_multiple,
    relative_position_index, resi_conv, run_head, shift_attention_mask, tokens_to_image,
    window_partition, window_reverse, windowed_attention,
)
from .config import HATConfig
from .swinir import InputNorm, PatchEmbed, _init_weights, drop_path_schedule, forward_exact


def overlap_relative_position_index(ws: int, ows: int) -> Tensor:
    """(ws², ows²) index into OCAB's ((ws + ows - 1)², nH) bias table."""
    def flat(n: int) -> Tensor:
        return torch.stack(torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")).flatten(1)

    rel = (flat(ows)[:, None, :] - flat(ws)[:, :, None]).permute(1, 2, 0)  # ws², ows², 2
    rel = rel + (ws - ows + 1)
    return rel[..., 0] * (ws + ows - 1) + rel[..., 1]


class ChannelAttention(nn.Module):
    """RCAN channel attention: global average pool, 1x1 down, ReLU, 1x1 up, sigmoid.

    The pool is over the whole (padded) image: a global statistic, like i-LN's.
    Keys ``attention.1`` and ``attention.3`` as in the reference Sequential.
    """

    def __init__(self, dim: int, squeeze_factor: int) -> None:
        super().__init__()
        self.attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(dim, dim // squeeze_factor, 1),
            nn.ReLU(inplace=True), nn.Conv2d(dim // squeeze_factor, dim, 1), nn.Sigmoid())

    def weights(self, pooled: Tensor) -> Tensor:
        """Per-channel gates (B, C) from the channel means ``pooled`` (B, C)."""
        a = self.attention
        y = pooled[:, :, None, None].to(a[1].weight.dtype)
        return a[4](a[3](a[2](a[1](y))))[:, :, 0, 0]

    def forward(self, x: Tensor) -> Tensor:
        return x * self.weights(x.mean(dim=(2, 3)))[:, :, None, None]


class CAB(nn.Module):
    """Channel attention block: 3x3 conv to C/compress, GELU, 3x3 conv back, channel attention."""

    def __init__(self, dim: int, compress_ratio: int, squeeze_factor: int) -> None:
        super().__init__()
        self.cab = nn.Sequential(
            nn.Conv2d(dim, dim // compress_ratio, 3, 1, 1), nn.GELU(),
            nn.Conv2d(dim // compress_ratio, dim, 3, 1, 1), ChannelAttention(dim, squeeze_factor))

    def body(self, x: Tensor) -> Tensor:
        """The convolutions before the channel attention (local: 2 pixels of context)."""
        return self.cab[2](self.cab[1](self.cab[0](x)))

    def forward(self, x: Tensor) -> Tensor:
        return self.cab(x)


class HAB(nn.Module):
    """Hybrid attention block.

    x + denorm1(attn(norm1 x) + conv_scale * cab(norm1 x)), then x + denorm2(mlp(norm2 x)).
    """

    def __init__(self, cfg: HATConfig, num_heads: int, shift: int, drop_path: float) -> None:
        super().__init__()
        dim, ws = cfg.embed_dim, cfg.window_size
        self.window_size, self.shift_size = ws, shift
        self.conv_scale = cfg.conv_scale
        self.norm1 = make_block_norm(cfg.norm, dim, cfg.eps)
        self.attn = WindowAttention(dim, ws, num_heads, cfg.qkv_bias, cfg.qk_scale,
                                    cfg.attn_drop_rate, cfg.drop_rate)
        self.conv_block = CAB(dim, cfg.compress_ratio, cfg.squeeze_factor)
        self.drop_path = DropPath(drop_path)
        self.norm2 = make_block_norm(cfg.norm, dim, cfg.eps)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio), cfg.drop_rate)

    # branches (local, ``halo`` pixels of context) -> channel means of "cab" (global) ->
    # merge and mlp_step (pointwise given the statistics): see SwinBlock and engine.exact.
    pooled_branches = ("cab",)

    @property
    def halo(self) -> int:
        return self.window_size  # shifted windows need ws/2, the CAB convs 2

    def branches(self, x: Tensor, hw: tuple[int, int], rpi: Tensor, mask: Tensor | None,
                 st1) -> dict[str, Tensor]:
        """Attention output and the CAB's pre-attention convs, as tokens (B, H*W, C)."""
        h, w = hw
        b, _, c = x.shape
        ws, s = self.window_size, self.shift_size
        y, _ = self.norm1.normalize(x, st1)
        y = y.view(b, h, w, c)
        cab = self.conv_block.body(y.permute(0, 3, 1, 2)).permute(0, 2, 3, 1).reshape(b, h * w, c)
        if s:
            y = torch.roll(y, shifts=(-s, -s), dims=(1, 2))
        a = window_reverse(self.attn(window_partition(y, ws), rpi, mask if s else None), ws, h, w)
        if s:
            a = torch.roll(a, shifts=(s, s), dims=(1, 2))
        return {"attn": a.reshape(b, h * w, c), "cab": cab}

    def merge(self, x: Tensor, br: dict[str, Tensor], st1, pooled: dict[str, Tensor]) -> Tensor:
        """``pooled["cab"]``: (B, C) channel means of br["cab"] over the whole image."""
        gate = self.conv_block.cab[3].weights(pooled["cab"]).to(br["cab"].dtype)
        conv_x = br["cab"] * gate[:, None, :]
        return self.norm1.residual(x, self.drop_path(br["attn"]) + conv_x * self.conv_scale, st1)

    def mlp_step(self, x: Tensor, st2) -> Tensor:
        y, st2 = self.norm2.normalize(x, st2)
        return self.norm2.residual(x, self.drop_path(self.mlp(y)), st2)

    def forward(self, x: Tensor, hw: tuple[int, int], rpi: Tensor, mask: Tensor | None) -> Tensor:
        st1 = self.norm1.statistics(x)
        br = self.branches(x, hw, rpi, mask, st1)
        x = self.merge(x, br, st1, {"cab": br["cab"].mean(dim=1)})
        return self.mlp_step(x, self.norm2.statistics(x))


class OCAB(nn.Module):
    """Overlapping cross-attention block.

    Queries from ws x ws windows, keys/values from overlapping ows x ows windows
    (ows = ws + int(overlap_ratio * ws), zero padding), then projection and an MLP.
    """

    def __init__(self, cfg: HATConfig, num_heads: int) -> None:
        super().__init__()
        dim, ws = cfg.embed_dim, cfg.window_size
        self.dim, self.window_size, self.num_heads = dim, ws, num_heads
        self.overlap_win_size = ows = int(ws * cfg.overlap_ratio) + ws
        self.scale = cfg.qk_scale or (dim // num_heads) ** -0.5
        self.norm1 = make_block_norm(cfg.norm, dim, cfg.eps)
        self.qkv = nn.Linear(dim, dim * 3, bias=cfg.qkv_bias)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((ws + ows - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = make_block_norm(cfg.norm, dim, cfg.eps)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio))
        self.attn_drop = nn.Identity()
        self.fused = True  # see common.windowed_attention

    def cross_attention(self, x: Tensor, hw: tuple[int, int], rpi: Tensor) -> Tensor:
        """Overlapping window attention of normalized tokens x (B, H*W, C) -> (B, H*W, C)."""
        h, w = hw
        b, _, c = x.shape
        ws, ows, nh = self.window_size, self.overlap_win_size, self.num_heads
        d = c // nh
        qkv = self.qkv(x).view(b, h, w, 3, c)
        q = window_partition(qkv[..., 0, :], ws)  # b*nw, ws², c
        kv = qkv[..., 1:, :].permute(0, 3, 4, 1, 2).reshape(b, 2 * c, h, w)
        kv = F.unfold(kv, kernel_size=ows, stride=ws, padding=(ows - ws) // 2)  # b, 2c*ows², nw
        nw = kv.shape[-1]
        kv = kv.view(b, 2, c, ows * ows, nw).permute(1, 0, 4, 3, 2).reshape(2, b * nw, ows * ows, c)
        q = q.view(b * nw, ws * ws, nh, d).transpose(1, 2)
        k = kv[0].view(b * nw, ows * ows, nh, d).transpose(1, 2)
        v = kv[1].view(b * nw, ows * ows, nh, d).transpose(1, 2)
        bias = self.relative_position_bias_table[rpi.reshape(-1)].view(ws * ws, ows * ows, -1)
        out = windowed_attention(q, k, v, bias.permute(2, 0, 1), None, self.scale, self.attn_drop,
                                 self.fused)
        out = out.transpose(1, 2).reshape(b * nw, ws * ws, c)
        return window_reverse(out, ws, h, w).reshape(b, h * w, c)

    @property
    def halo(self) -> int:
        return self.window_size  # covers the (ows - ws) / 2 overlap of the key windows

    def branches(self, x: Tensor, hw: tuple[int, int], rpi: Tensor, mask=None,
                 st1=None) -> dict[str, Tensor]:
        y, _ = self.norm1.normalize(x, st1)
        return {"attn": self.proj(self.cross_attention(y, hw, rpi))}

    def merge(self, x: Tensor, br: dict[str, Tensor], st1, pooled=None) -> Tensor:
        return self.norm1.residual(x, br["attn"], st1)

    def mlp_step(self, x: Tensor, st2) -> Tensor:
        y, st2 = self.norm2.normalize(x, st2)
        return self.norm2.residual(x, self.mlp(y), st2)

    def forward(self, x: Tensor, hw: tuple[int, int], rpi: Tensor) -> Tensor:
        st1 = self.norm1.statistics(x)
        x = self.merge(x, self.branches(x, hw, rpi, None, st1), st1)
        return self.mlp_step(x, self.norm2.statistics(x))


class AttenBlocks(nn.Module):
    """The HABs and the OCAB of one RHAG (key ``residual_group``)."""

    def __init__(self, cfg: HATConfig, depth: int, num_heads: int, drop_paths: list[float]) -> None:
        super().__init__()
        self.use_checkpoint = cfg.use_checkpoint
        self.blocks = nn.ModuleList(
            HAB(cfg, num_heads, 0 if i % 2 == 0 else cfg.window_size // 2, drop_paths[i])
            for i in range(depth))
        self.overlap_attn = OCAB(cfg, num_heads)

    def forward(self, x: Tensor, hw, rpi_sa, mask, rpi_oca) -> Tensor:
        ckpt = self.use_checkpoint and torch.is_grad_enabled()
        for blk in self.blocks:
            x = checkpoint(blk, x, hw, rpi_sa, mask, use_reentrant=False) if ckpt else blk(
                x, hw, rpi_sa, mask)
        if ckpt:
            return checkpoint(self.overlap_attn, x, hw, rpi_oca, use_reentrant=False)
        return self.overlap_attn(x, hw, rpi_oca)


class RHAG(nn.Module):
    """Residual hybrid attention group: HABs, OCAB, conv, plus the group input."""

    def __init__(self, cfg: HATConfig, depth: int, num_heads: int, drop_paths: list[float]) -> None:
        super().__init__()
        self.residual_group = AttenBlocks(cfg, depth, num_heads, drop_paths)
        self.conv = resi_conv(cfg.resi_connection, cfg.embed_dim)

    def forward(self, x: Tensor, hw, rpi_sa, mask, rpi_oca) -> Tensor:
        y = self.residual_group(x, hw, rpi_sa, mask, rpi_oca)
        return image_to_tokens(self.conv(tokens_to_image(y, *hw))) + x


class HAT(nn.Module):
    """HAT. forward: (B, C, H, W) float in [0, 1] (any H, W) -> (B, C, sH, sW)."""

    def __init__(self, config: HATConfig) -> None:
        super().__init__()
        self.config = cfg = config
        self.scale = cfg.upscale
        self.size_multiple = cfg.window_size
        self.window_size = cfg.window_size
        dim = cfg.embed_dim
        ows = int(cfg.window_size * cfg.overlap_ratio) + cfg.window_size
        self.input_norm = InputNorm(cfg.in_chans, cfg.img_range, cfg.stdnorm)
        # The reference stores these as (persistent) buffers; they are functions of the
        # config, so they are recomputed here and dropped from checkpoints on load.
        self.register_buffer("rpi_sa", relative_position_index(cfg.window_size), persistent=False)
        self.register_buffer("rpi_oca", overlap_relative_position_index(cfg.window_size, ows),
                             persistent=False)

        self.conv_first = nn.Conv2d(cfg.in_chans, dim, 3, 1, 1)
        self.patch_embed = PatchEmbed(
            make_plain_norm(cfg.norm, dim, cfg.eps) if cfg.patch_norm else None)
        self.pos_drop = nn.Dropout(cfg.drop_rate)
        dprs = drop_path_schedule(cfg)
        self.layers = nn.ModuleList(
            RHAG(cfg, d, h, dprs[i]) for i, (d, h) in enumerate(zip(cfg.depths, cfg.num_heads)))
        self.norm = make_plain_norm(cfg.norm, dim, cfg.eps)
        self.conv_after_body = resi_conv(cfg.resi_connection, dim)
        attach_head(self, cfg.upsampler, cfg.upscale, dim, cfg.in_chans)
        self.apply(_init_weights)

    def forward_features(self, x: Tensor) -> Tensor:
        hw = (x.shape[2], x.shape[3])
        mask = shift_attention_mask(*hw, self.window_size, self.window_size // 2, x.device)
        t = self.pos_drop(self.patch_embed(x))
        for layer in self.layers:
            t = layer(t, hw, self.rpi_sa, mask, self.rpi_oca)
        return tokens_to_image(self.norm(t), *hw)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[2:]
        x = self.input_norm(pad_to_multiple(x, self.size_multiple))
        shallow = self.conv_first(x)
        y = run_head(self, self.config.upsampler, x, shallow, self.forward_features(shallow))
        y = self.input_norm.inverse(y)
        return y[:, :, : h * self.scale, : w * self.scale]

    # Channel attention pools over the whole image, so HAT has global statistics even with
    # LayerNorm.
    has_global_statistics = True

    def forward_exact(self, x: Tensor, run) -> Tensor:
        """The same result as ``forward``, computed over tiles (see restore.engine.exact)."""
        def blocks(layer):
            g = layer.residual_group
            return [(b, self.rpi_sa, True) for b in g.blocks] + [(g.overlap_attn, self.rpi_oca, False)]
        return forward_exact(self, x, run, blocks)
