"""Pieces shared by SwinIR and HAT: windows, relative positions, attention, MLP, heads.

Token maps are (B, H*W, C) channels-last, as in the reference code; images are
(B, C, H, W).
"""

from __future__ import annotations

import math
from enum import Enum

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Input normalization constants of the reference code (DIV2K statistics).
RGB_MEAN = (0.4488, 0.4371, 0.4040)
RGB_STD = (0.2842, 0.2701, 0.2920)  # "stdnorm", used by i-LN models
GRAY_STD = (0.2842,)

NUM_FEAT = 64  # channels of the reconstruction head in the reference code


class Upsampler(str, Enum):
    """Reconstruction head. Values are the reference code's ``upsampler`` strings."""

    PIXELSHUFFLE = "pixelshuffle"  # classical SR: conv, (conv + PixelShuffle) per step, conv
    PIXELSHUFFLEDIRECT = "pixelshuffledirect"  # lightweight SR: one conv + PixelShuffle
    NEAREST_CONV = "nearest+conv"  # real-world SR: nearest x2 + conv per step
    NONE = ""  # scale 1 (denoising, JPEG): global residual on the input


class ResiConnection(str, Enum):
    """Conv at the end of each residual group and after the body."""

    ONECONV = "1conv"
    THREECONV = "3conv"
    IDENTITY = "identity"


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Reflect-pad (B, C, H, W) on the bottom/right up to a multiple of ``multiple``.

    This is the padding rule of the reference SwinIR forward and of HAT's test code.
    Reflect padding needs pad < size, so an input smaller than the missing amount is
    reflected in several steps (the reference fails there); a 1-pixel side is replicated.
    """
    _, _, h, w = x.shape
    th = math.ceil(h / multiple) * multiple
    tw = math.ceil(w / multiple) * multiple
    while x.shape[2] < th or x.shape[3] < tw:
        ph = min(th - x.shape[2], x.shape[2] - 1)
        pw = min(tw - x.shape[3], x.shape[3] - 1)
        if ph == 0 and pw == 0:  # a 1-pixel side cannot be reflected; replicate it
            x = F.pad(x, (0, tw - x.shape[3], 0, th - x.shape[2]), mode="replicate")
            break
        x = F.pad(x, (0, pw, 0, ph), mode="reflect")
    return x


def window_partition(x: Tensor, ws: int) -> Tensor:
    """(B, H, W, C) -> (B * nW, ws * ws, C), windows cut row-major."""
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, c)


def window_reverse(windows: Tensor, ws: int, h: int, w: int) -> Tensor:
    """(B * nW, ws * ws, C) -> (B, H, W, C); inverse of ``window_partition``."""
    c = windows.shape[-1]
    b = windows.shape[0] // ((h // ws) * (w // ws))
    x = windows.view(b, h // ws, w // ws, ws, ws, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)


def relative_position_index(ws: int) -> Tensor:
    """(ws², ws²) index into a ((2ws-1)², nH) bias table, the standard Swin layout."""
    coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij"))
    flat = coords.flatten(1)  # 2, ws*ws
    rel = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0)  # ws², ws², 2
    rel = rel + (ws - 1)
    return rel[..., 0] * (2 * ws - 1) + rel[..., 1]


def shift_attention_mask(h: int, w: int, ws: int, shift: int, device=None) -> Tensor:
    """(nW, ws², ws²) mask for shifted windows: 0 within a region, -100 across regions.

    ``h`` and ``w`` are the (padded) feature size, multiples of ``ws``.
    """
    img = torch.zeros((1, h, w, 1), device=device)
    cnt = 0
    for hs in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
        for wsl in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
            img[:, hs, wsl, :] = cnt
            cnt += 1
    regions = window_partition(img, ws).squeeze(-1)  # nW, ws²
    diff = regions.unsqueeze(1) - regions.unsqueeze(2)
    return torch.zeros_like(diff).masked_fill(diff != 0, -100.0)


def windowed_attention(
    q: Tensor, k: Tensor, v: Tensor, bias: Tensor, mask: Tensor | None, scale: float,
    attn_drop: nn.Module, fused: bool = True,
) -> Tensor:
    """Multi-head attention inside windows.

    q: (B*nW, nH, Nq, d), k/v: (B*nW, nH, Nk, d), bias: (nH, Nq, Nk),
    mask: (nW, Nq, Nk) or None. Returns (B*nW, nH, Nq, d).

    fused: ``scaled_dot_product_attention`` with the bias as its additive mask (2.5x faster
    on a CPU than the explicit form, and no (B*nW, nH, N, N) score tensor kept), and a
    second call for the few windows whose shift mask is not all zero. ``fused=False`` is the reference's explicit arithmetic, kept as
    the yardstick the fused path is tested against.
    """
    dropout = attn_drop.p if isinstance(attn_drop, nn.Dropout) and attn_drop.training else 0.0
    if fused:
        m = bias.to(q.dtype).unsqueeze(0)  # 1, nH, Nq, Nk: broadcast over the windows
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=m, dropout_p=dropout, scale=scale)
        if mask is None:
            return out
        # Only the windows that straddle the cyclic shift's seam have a nonzero mask (the
        # last row and column of windows, ~2/sqrt(nW) of them): redo just those with it,
        # rather than build and read a (nW, nH, N, N) mask, far larger than the features.
        nw = mask.shape[0]
        idx = mask.flatten(1).ne(0).any(1).nonzero().squeeze(1)
        if idx.numel() == 0:
            return out
        b = q.shape[0] // nw  # several images: windows are image-major

        def seam(t: Tensor) -> Tensor:
            return t.reshape(b, nw, *t.shape[1:]).index_select(1, idx).flatten(0, 1)

        mb = (m + mask.index_select(0, idx).to(q.dtype).unsqueeze(1)).repeat(b, 1, 1, 1)
        ob = F.scaled_dot_product_attention(seam(q), seam(k), seam(v), attn_mask=mb,
                                            dropout_p=dropout, scale=scale)
        out = out.reshape(b, nw, *out.shape[1:])
        ob = ob.reshape(b, idx.numel(), *ob.shape[1:])
        # In place when no graph needs the first result (inference); a copy when training.
        out = out.index_copy_(1, idx, ob) if not torch.is_grad_enabled() or not out.requires_grad \
            else out.index_copy(1, idx, ob)
        return out.flatten(0, 1)
    attn = (q * scale) @ k.transpose(-2, -1)
    attn = attn + bias.unsqueeze(0).to(attn.dtype)
    if mask is not None:
        nw = mask.shape[0]
        bnw, nh, nq, nk = attn.shape
        attn = attn.view(bnw // nw, nw, nh, nq, nk) + mask.to(attn.dtype)[None, :, None]
        attn = attn.view(bnw, nh, nq, nk)
    attn = attn_drop(attn.softmax(dim=-1))
    return attn @ v


class WindowAttention(nn.Module):
    """Window multi-head self-attention with a relative position bias (Swin, HAT HAB)."""

    def __init__(
        self, dim: int, window_size: int, num_heads: int, qkv_bias: bool = True,
        qk_scale: float | None = None, attn_drop: float = 0.0, proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.window_size = window_size
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window_size - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj_drop = nn.Dropout(proj_drop)
        self.fused = True  # see windowed_attention; set_fused_attention switches it

    def forward(self, x: Tensor, rpi: Tensor, mask: Tensor | None = None) -> Tensor:
        """x: (B*nW, N, C) windows; rpi: (N, N) relative position index; mask (nW, N, N)."""
        bn, n, c = x.shape
        qkv = self.qkv(x).reshape(bn, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        bias = self.relative_position_bias_table[rpi.reshape(-1)].view(n, n, -1).permute(2, 0, 1)
        out = windowed_attention(q, k, v, bias, mask, self.scale, self.attn_drop, self.fused)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(bn, n, c)))


def set_fused_attention(model: nn.Module, fused: bool) -> nn.Module:
    """Use the fused (default) or the reference explicit attention in every block."""
    for m in model.modules():
        if hasattr(m, "fused") and hasattr(m, "relative_position_bias_table"):
            m.fused = fused
    return model


class Mlp(nn.Module):
    """Linear, GELU (exact erf), Linear; keys fc1/fc2."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class DropPath(nn.Module):
    """Stochastic depth per sample; the identity in eval mode or with p = 0."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


def tokens_to_image(x: Tensor, h: int, w: int) -> Tensor:
    """(B, H*W, C) -> (B, C, H, W)."""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], h, w)


def image_to_tokens(x: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, H*W, C)."""
    return x.flatten(2).transpose(1, 2)


def resi_conv(kind: ResiConnection, dim: int) -> nn.Module:
    """The conv closing a residual group (and the body), per ``resi_connection``."""
    if kind is ResiConnection.ONECONV:
        return nn.Conv2d(dim, dim, 3, 1, 1)
    if kind is ResiConnection.THREECONV:
        # keys 0, 2, 4 as in the reference Sequential
        return nn.Sequential(
            nn.Conv2d(dim, dim // 4, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(dim // 4, dim // 4, 1, 1, 0), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(dim // 4, dim, 3, 1, 1))
    return nn.Identity()


class Upsample(nn.Sequential):
    """(conv to 4C, PixelShuffle 2) per x2 step, or (conv to 9C, PixelShuffle 3)."""

    def __init__(self, scale: int, num_feat: int) -> None:
        layers: list[nn.Module] = []
        if scale & (scale - 1) == 0:
            for _ in range(int(math.log2(scale))):
                layers += [nn.Conv2d(num_feat, 4 * num_feat, 3, 1, 1), nn.PixelShuffle(2)]
        elif scale == 3:
            layers += [nn.Conv2d(num_feat, 9 * num_feat, 3, 1, 1), nn.PixelShuffle(3)]
        else:
            raise ValueError(f"scale {scale} is not 2^n or 3")
        super().__init__(*layers)


def attach_head(model: nn.Module, upsampler: Upsampler, scale: int, embed_dim: int,
                out_ch: int) -> None:
    """Register the reconstruction layers of ``upsampler`` on ``model``.

    They are attributes of the model itself, not of a head submodule, so that the
    state-dict keys are the reference's (conv_before_upsample, upsample, conv_up1, ...).
    """
    if upsampler is Upsampler.PIXELSHUFFLE:
        model.conv_before_upsample = nn.Sequential(
            nn.Conv2d(embed_dim, NUM_FEAT, 3, 1, 1), nn.LeakyReLU(inplace=True))
        model.upsample = Upsample(scale, NUM_FEAT)
        model.conv_last = nn.Conv2d(NUM_FEAT, out_ch, 3, 1, 1)
    elif upsampler is Upsampler.PIXELSHUFFLEDIRECT:
        model.upsample = nn.Sequential(
            nn.Conv2d(embed_dim, scale**2 * out_ch, 3, 1, 1), nn.PixelShuffle(scale))
    elif upsampler is Upsampler.NEAREST_CONV:
        model.conv_before_upsample = nn.Sequential(
            nn.Conv2d(embed_dim, NUM_FEAT, 3, 1, 1), nn.LeakyReLU(inplace=True))
        model.conv_up1 = nn.Conv2d(NUM_FEAT, NUM_FEAT, 3, 1, 1)
        if scale == 4:
            model.conv_up2 = nn.Conv2d(NUM_FEAT, NUM_FEAT, 3, 1, 1)
        model.conv_hr = nn.Conv2d(NUM_FEAT, NUM_FEAT, 3, 1, 1)
        model.conv_last = nn.Conv2d(NUM_FEAT, out_ch, 3, 1, 1)
        model.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)
    else:
        model.conv_last = nn.Conv2d(embed_dim, out_ch, 3, 1, 1)


def run_head(model: nn.Module, upsampler: Upsampler, x_in: Tensor, shallow: Tensor,
             deep: Tensor) -> Tensor:
    """Reconstruct from shallow features ``shallow`` and body output ``deep``.

    ``x_in`` is the normalized input image (used by the scale-1 global residual).
    """
    feat = model.conv_after_body(deep) + shallow
    if upsampler is Upsampler.PIXELSHUFFLE:
        return model.conv_last(model.upsample(model.conv_before_upsample(feat)))
    if upsampler is Upsampler.PIXELSHUFFLEDIRECT:
        return model.upsample(feat)
    if upsampler is Upsampler.NEAREST_CONV:
        x = model.conv_before_upsample(feat)
        x = model.lrelu(model.conv_up1(F.interpolate(x, scale_factor=2, mode="nearest")))
        if hasattr(model, "conv_up2"):
            x = model.lrelu(model.conv_up2(F.interpolate(x, scale_factor=2, mode="nearest")))
        return model.conv_last(model.lrelu(model.conv_hr(x)))
    return x_in + model.conv_last(feat)
