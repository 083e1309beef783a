"""DRCT (Dense-residual-connected Transformer), in its LayerNorm form and its i-LN form.

Matches the reference ``drct/archs/DRCT_arch.py`` of ming053l/DRCT (commit c0a8b51) key for
key, so the published DRCT and DRCT-L checkpoints load strictly, and its outputs to ~3e-6
in fp32 (bit for bit with the reference's explicit attention, ``set_fused_attention``).
What decides the match: every residual dense group (RDG) holds five Swin blocks whatever
``depths`` says; block k sees the group input concatenated with the previous blocks'
outputs, each squeezed to ``gc`` channels by a 1x1 conv and LeakyReLU(0.2); the last
block's 1x1 conv goes back to ``embed_dim`` with no activation and the group returns
``0.2 * that + input``; blocks 2 and 4 are shifted, blocks 4 and 5 use mlp_ratio 1, and the
head counts follow the reference's rule (``DRCTConfig.block_heads``). There is no conv at
the end of a group and no channel attention.

Differences from the reference, all additive: any input size (reflect padding to the
window multiple inside forward, the rule of DRCT's test code ``pre_process``, then
cropping), a scale-1 head (upsampler='') for denoising and JPEG artifact removal, and
SwinIR's lightweight head (upsampler='pixelshuffledirect') for small models. The reference
with any upsampler but pixelshuffle returns its input unchanged (upsampler='' in the
reference restores nothing); nearest+conv is refused here.

DRCT-iLN (``norm="iln"``) is this project's definition: the DRCT authors and the i-LN
authors released no DRCT i-LN code. It follows the recipe of SwinIR-iLN and HAT-iLN
(docs/iln.md): norm1/norm2 of every Swin block become i-LN with input-adaptive rescaling
(denorm) of the attention and MLP branches, the patch-embedding norm and the final norm
become a per-channel Affine, and the input is normalized by the dataset std ("stdnorm").
The dense connections are left as they are (the 1x1 convs and the 0.2 residual feed no
norm). Its only whole-image statistics are the i-LN ones, so ``forward_exact`` tiles it
exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..norms import NormKind, make_plain_norm
from .common import (
    attach_head, image_to_tokens, pad_to_multiple, relative_position_index, resi_conv, run_head,
    shift_attention_mask, tokens_to_image,
)
from .config import DRCT_BLOCKS, DRCTConfig
from .swinir import InputNorm, PatchEmbed, SwinBlock, _conv_halo, _init_weights, exact_block

SHIFTED = (False, True, False, True, False)  # blocks 2 and 4 of a group use shifted windows
LOW_MLP = (False, False, False, True, True)  # blocks 4 and 5 use mlp_ratio 1
DENSE_SLOPE = 0.2  # LeakyReLU after the squeezing 1x1 convs
GROUP_SCALE = 0.2  # the group returns GROUP_SCALE * last + input


class RDG(nn.Module):
    """Residual dense group: five Swin blocks with dense connections (keys swin1..swin5,
    adjust1..adjust5, as in the reference)."""

    def __init__(self, cfg: DRCTConfig, group: int, drop_path: float) -> None:
        super().__init__()
        self.use_checkpoint = cfg.use_checkpoint
        dims, heads = cfg.block_dims(), cfg.block_heads(group)
        for k in range(DRCT_BLOCKS):
            shift = cfg.window_size // 2 if SHIFTED[k] else 0
            # The reference gives every block of a group the group's first drop-path rate.
            setattr(self, f"swin{k + 1}", SwinBlock(
                cfg, heads[k], shift, drop_path, dim=dims[k],
                mlp_ratio=1.0 if LOW_MLP[k] else cfg.mlp_ratio))
            out = cfg.embed_dim if k == DRCT_BLOCKS - 1 else cfg.gc
            setattr(self, f"adjust{k + 1}", nn.Conv2d(dims[k], out, 1))

    def stages(self) -> list[tuple[SwinBlock, nn.Conv2d]]:
        """(block, its 1x1 conv) in order."""
        return [(getattr(self, f"swin{k}"), getattr(self, f"adjust{k}"))
                for k in range(1, DRCT_BLOCKS + 1)]

    def _block(self, blk: SwinBlock, x: Tensor, hw, rpi, mask) -> Tensor:
        if self.use_checkpoint and torch.is_grad_enabled():
            return checkpoint(blk, x, hw, rpi, mask, use_reentrant=False)
        return blk(x, hw, rpi, mask)

    def forward(self, x: Tensor, hw: tuple[int, int], rpi: Tensor, mask: Tensor | None) -> Tensor:
        """x: (B, H*W, embed_dim) tokens -> the same shape."""
        *dense, (last, adjust_last) = self.stages()
        feats = x
        for blk, adjust in dense:
            z = adjust(tokens_to_image(self._block(blk, feats, hw, rpi, mask), *hw))
            feats = torch.cat([feats, image_to_tokens(F.leaky_relu(z, DENSE_SLOPE))], dim=-1)
        z = adjust_last(tokens_to_image(self._block(last, feats, hw, rpi, mask), *hw))
        return image_to_tokens(z) * GROUP_SCALE + x


class DRCT(nn.Module):
    """DRCT. forward: (B, C, H, W) float in [0, 1] (any H, W) -> (B, C, sH, sW)."""

    def __init__(self, config: DRCTConfig) -> None:
        super().__init__()
        self.config = cfg = config
        self.scale = cfg.upscale
        self.size_multiple = cfg.window_size
        self.window_size = cfg.window_size
        dim = cfg.embed_dim
        self.input_norm = InputNorm(cfg.in_chans, cfg.img_range, cfg.stdnorm)
        # The reference keeps a relative position index in every attention and the shift
        # mask for img_size in every shifted block (persistent buffers); both are functions
        # of the config, recomputed here and dropped from checkpoints on load.
        self.register_buffer("rpi", relative_position_index(cfg.window_size), persistent=False)

        self.conv_first = nn.Conv2d(cfg.in_chans, dim, 3, 1, 1)
        self.patch_embed = PatchEmbed(
            make_plain_norm(cfg.norm, dim, cfg.eps) if cfg.patch_norm else None)
        self.pos_drop = nn.Dropout(cfg.drop_rate)
        # (on the CPU explicitly, so that the model can be built on the meta device)
        rates = torch.linspace(0, cfg.drop_path_rate, sum(cfg.depths), device="cpu").tolist()
        firsts = [rates[sum(cfg.depths[:i])] for i in range(len(cfg.depths))]
        self.layers = nn.ModuleList(RDG(cfg, i, firsts[i]) for i in range(len(cfg.depths)))
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
        """i-LN makes every output pixel depend on the whole image (DRCT pools nothing)."""
        return self.config.norm is NormKind.ILN

    def forward_exact(self, x: Tensor, run) -> Tensor:
        """The same result as ``forward``, computed over tiles by ``run`` (ExactRunner,
        restore.engine.exact). x: (B, C, H, W) float32 CPU in [0, 1]."""
        if x.shape[0] != 1:
            return torch.cat([self.forward_exact(xi[None], run) for xi in x])
        h, w = x.shape[2:]
        iln = self.has_global_statistics
        xin = self.input_norm(pad_to_multiple(x, self.window_size))
        shallow = run.local(self.conv_first, [xin], halo=1)
        embed_norm = self.patch_embed.norm
        t = shallow if embed_norm is None else run.local(_tokenwise(embed_norm), [shallow])
        mom = None  # (mean, var) of t when the pass that wrote it accumulated them
        for layer in self.layers:
            t, mom = _exact_group(layer, t, run, self.rpi, mom, iln)
        t = run.local(_tokenwise(self.norm), [t])
        head_halo = sum(_conv_halo(getattr(self, n)) for n in (
            "conv_after_body", "conv_before_upsample", "upsample", "conv_last") if hasattr(self, n))
        up = self.config.upsampler

        def head(deep, sh, xi):
            return run_head(self, up, xi, sh, deep)

        y = run.local(head, [t, shallow, xin], halo=head_halo, scale=self.scale, result=True)
        del t, shallow, xin  # free the body's maps before the output, the largest of all
        norm = self.input_norm  # its inverse, in place
        y.mul_(norm.std.to(y) / norm.img_range).add_(norm.mean.to(y))
        return y[:, :, : h * self.scale, : w * self.scale]


# -- exact tiled execution (restore.engine.exact) -----------------------------------------
def _tokenwise(norm: nn.Module):
    def fn(tc: Tensor) -> Tensor:
        return tokens_to_image(norm(image_to_tokens(tc)), tc.shape[2], tc.shape[3])
    return fn


def _exact_group(rdg: RDG, t: Tensor, run, rpi: Tensor, mom, iln: bool):
    """One RDG over whole maps. Each block runs as SwinIR's do (``exact_block``: i-LN
    statistics of its input, then the shifted-window attention and the MLP tile by tile);
    the dense concatenation and the group residual are pointwise, so each is one tile pass
    that also gathers the next block's input moments. Returns the group output and, for
    i-LN, its (mean, var)."""
    group_in, feats = t, t
    *dense, (last, adjust_last) = rdg.stages()
    for blk, adjust in dense:
        y, _ = exact_block(blk, feats, run, rpi, True, mom)

        def grow(yc, fc, a=adjust):
            return torch.cat([fc, F.leaky_relu(a(yc), DENSE_SLOPE)], dim=1)

        out = run.local(grow, [y, feats], moments=iln)
        feats, mom = out if iln else (out, None)
    y, _ = exact_block(last, feats, run, rpi, True, mom)
    out = run.local(lambda yc, g: adjust_last(yc) * GROUP_SCALE + g, [y, group_in], moments=iln)
    return out if iln else (out, None)
