"""Frozen architecture configs whose field names are the reference constructor names.

A published config (``fixtures/reference/*/config.json``, the authors' YAML) maps 1:1:
``SwinIRConfig.from_kwargs(**kwargs)``. Strings become enums here, once; an unknown name or
a bad value is a ConfigError that names it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from .. import checks
from ..errors import ConfigError
from ..norms import NormKind
from .common import ResiConnection, Upsampler


def _checked(name: str, value, check, *args, **kwargs):
    """``check(value, ...)`` (restore.checks), its complaint as ConfigError("name=value ...")."""
    try:
        return check(value, *args, **kwargs)
    except checks.Invalid as exc:
        raise ConfigError(f"{name}={value!r} {exc}") from None


def _enum(enum_cls, name: str, value):
    if value is None and enum_cls is Upsampler:
        value = ""
    return _checked(name, value, checks.one_of, enum_cls)


def _int(name: str, value, minimum: int = 1) -> int:
    return _checked(name, value, checks.integer, minimum, whole_floats=True)


def _float(name: str, value, positive: bool = False, minimum: float | None = None) -> float:
    return _checked(name, value, checks.number, positive=positive, minimum=minimum)


def _bool(name: str, value) -> bool:
    return _checked(name, value, checks.flag)


def _int_tuple(name: str, value) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ConfigError(f"{name}={value!r} must be a list of integers")
    out = tuple(_int(f"{name}[{i}]", v) for i, v in enumerate(value))
    if not out:
        raise ConfigError(f"{name} must not be empty")
    return out


@dataclass(frozen=True)
class TransformerConfig:
    """Fields shared by SwinIR and HAT (reference names and defaults).

    ``norm``, ``stdnorm`` and ``eps`` select LayerNorm ("layernorm", the official models)
    or the paper's i-LN ("iln"); ``stdnorm``/``eps`` default per norm (i-LN: stdnorm on,
    eps 1e-4; LayerNorm: stdnorm off, eps 1e-5).
    ``img_size`` is the training patch size: it only sets the reference's (dropped)
    attention-mask buffer; any input size works.
    """

    family: ClassVar[str] = ""

    upscale: int = 2
    in_chans: int = 3
    img_size: int | tuple[int, int] = 64
    patch_size: int = 1
    window_size: int = 7
    img_range: float = 1.0
    depths: tuple[int, ...] = (6, 6, 6, 6)
    embed_dim: int = 96
    num_heads: tuple[int, ...] = (6, 6, 6, 6)
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    qk_scale: float | None = None
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.1
    ape: bool = False
    patch_norm: bool = True
    use_checkpoint: bool = False
    upsampler: Upsampler = Upsampler.NONE
    resi_connection: ResiConnection = ResiConnection.ONECONV
    norm: NormKind = NormKind.LAYERNORM
    stdnorm: bool | None = None
    eps: float | None = None

    _allowed_resi: ClassVar[tuple[ResiConnection, ...]] = (
        ResiConnection.ONECONV, ResiConnection.THREECONV)
    _allowed_upsamplers: ClassVar[tuple[Upsampler, ...]] = tuple(Upsampler)

    @classmethod
    def from_kwargs(cls, **kwargs: Any):
        """Build from reference constructor arguments; unknown names are an error."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(kwargs) - set(names))
        if unknown:
            raise ConfigError(
                f"unknown {cls.family} argument(s): {', '.join(unknown)} "
                f"(valid: {', '.join(names)})")
        return cls(**kwargs)

    def to_kwargs(self) -> dict[str, Any]:
        """JSON/TOML-ready constructor arguments (enums as their reference strings)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, (Upsampler, ResiConnection, NormKind)):
                v = v.value
            elif isinstance(v, tuple):
                v = list(v)
            if v is not None:
                out[f.name] = v
        return out

    def replace(self, **changes: Any):
        return dataclasses.replace(self, **changes)

    # -- validation -----------------------------------------------------------------------
    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        set_("upscale", _int("upscale", self.upscale))
        set_("in_chans", _int("in_chans", self.in_chans))
        if self.in_chans not in (1, 3):
            raise ConfigError(f"in_chans={self.in_chans} must be 1 or 3")
        if isinstance(self.img_size, (list, tuple)):
            if len(self.img_size) != 2:
                raise ConfigError(f"img_size={self.img_size!r} must be an int or [h, w]")
            set_("img_size", (_int("img_size", self.img_size[0]),
                              _int("img_size", self.img_size[1])))
        else:
            set_("img_size", _int("img_size", self.img_size))
        set_("patch_size", _int("patch_size", self.patch_size))
        if self.patch_size != 1:
            raise ConfigError("patch_size must be 1 (the only size SwinIR/HAT use)")
        set_("window_size", _int("window_size", self.window_size, minimum=2))
        min_img = min(self.img_size) if isinstance(self.img_size, tuple) else self.img_size
        if min_img <= self.window_size:
            raise ConfigError(
                f"img_size={self.img_size} must be larger than window_size={self.window_size}")
        set_("img_range", _float("img_range", self.img_range, positive=True))
        set_("depths", _int_tuple("depths", self.depths))
        set_("num_heads", _int_tuple("num_heads", self.num_heads))
        if len(self.depths) != len(self.num_heads):
            raise ConfigError(
                f"depths has {len(self.depths)} groups but num_heads has {len(self.num_heads)}")
        set_("embed_dim", _int("embed_dim", self.embed_dim))
        for h in self.num_heads:
            if self.embed_dim % h:
                raise ConfigError(f"embed_dim={self.embed_dim} is not divisible by num_heads {h}")
        set_("mlp_ratio", _float("mlp_ratio", self.mlp_ratio, positive=True))
        set_("qkv_bias", _bool("qkv_bias", self.qkv_bias))
        if self.qk_scale is not None:
            set_("qk_scale", _float("qk_scale", self.qk_scale, positive=True))
        for name in ("drop_rate", "attn_drop_rate", "drop_path_rate"):
            v = _float(name, getattr(self, name), minimum=0.0)
            if v >= 1:
                raise ConfigError(f"{name}={v} must be < 1")
            set_(name, v)
        set_("ape", _bool("ape", self.ape))
        if self.ape:
            raise ConfigError("ape=true (absolute position embedding) is not supported: "
                              "it ties the model to one input size")
        set_("patch_norm", _bool("patch_norm", self.patch_norm))
        set_("use_checkpoint", _bool("use_checkpoint", self.use_checkpoint))
        set_("upsampler", _enum(Upsampler, "upsampler", self.upsampler))
        if self.upsampler not in self._allowed_upsamplers:
            valid = ", ".join(repr(u.value) for u in self._allowed_upsamplers)
            raise ConfigError(
                f"upsampler={self.upsampler.value!r} is not available for {self.family} "
                f"(valid: {valid})")
        set_("resi_connection", _enum(ResiConnection, "resi_connection", self.resi_connection))
        if self.resi_connection not in self._allowed_resi:
            valid = ", ".join(repr(r.value) for r in self._allowed_resi)
            raise ConfigError(
                f"resi_connection={self.resi_connection.value!r} is not available for "
                f"{self.family} (valid: {valid})")
        self._check_scale()
        set_("norm", _enum(NormKind, "norm", self.norm))
        iln = self.norm is NormKind.ILN
        set_("stdnorm", iln if self.stdnorm is None else _bool("stdnorm", self.stdnorm))
        set_("eps", (1e-4 if iln else 1e-5) if self.eps is None
             else _float("eps", self.eps, positive=True))

    def _check_scale(self) -> None:
        u, s = self.upsampler, self.upscale
        if u is Upsampler.NONE and s != 1:
            raise ConfigError(f"upscale={s} needs an upsampler (upsampler='' is for scale 1)")
        if u is not Upsampler.NONE and s == 1:
            raise ConfigError(f"upscale=1 takes upsampler='' (got {u.value!r})")
        if u is Upsampler.PIXELSHUFFLE and not (s & (s - 1) == 0 or s == 3):
            raise ConfigError(f"upscale={s} with pixelshuffle must be 2^n or 3")
        if u is Upsampler.NEAREST_CONV and s not in (2, 4):
            raise ConfigError(f"upscale={s} with nearest+conv must be 2 or 4")


@dataclass(frozen=True)
class SwinIRConfig(TransformerConfig):
    """SwinIR (Liang et al. 2021). Reference: JingyunLiang/SwinIR models/network_swinir.py."""

    family: ClassVar[str] = "swinir"


@dataclass(frozen=True)
class HATConfig(TransformerConfig):
    """HAT (Chen et al. 2023) with its hybrid attention blocks and OCAB.

    The reference has only the pixelshuffle upsampler; upsampler='' adds a scale-1 head
    for denoising/JPEG (global residual on the input, as SwinIR does it).
    """

    family: ClassVar[str] = "hat"

    compress_ratio: int = 3
    squeeze_factor: int = 30
    conv_scale: float = 0.01
    overlap_ratio: float = 0.5

    _allowed_resi: ClassVar[tuple[ResiConnection, ...]] = (
        ResiConnection.ONECONV, ResiConnection.IDENTITY)
    _allowed_upsamplers: ClassVar[tuple[Upsampler, ...]] = (
        Upsampler.PIXELSHUFFLE, Upsampler.NONE)

    def __post_init__(self) -> None:
        super().__post_init__()
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        set_("compress_ratio", _int("compress_ratio", self.compress_ratio))
        set_("squeeze_factor", _int("squeeze_factor", self.squeeze_factor))
        for name, div in (("compress_ratio", self.compress_ratio),
                          ("squeeze_factor", self.squeeze_factor)):
            if self.embed_dim // div < 1:
                raise ConfigError(f"{name}={div} leaves no channels of embed_dim={self.embed_dim}")
        set_("conv_scale", _float("conv_scale", self.conv_scale, minimum=0.0))
        set_("overlap_ratio", _float("overlap_ratio", self.overlap_ratio, minimum=0.0))
        ows = int(self.window_size * self.overlap_ratio) + self.window_size
        if (ows - self.window_size) % 2:
            raise ConfigError(
                f"overlap_ratio={self.overlap_ratio} with window_size={self.window_size} gives "
                f"an odd overlap ({ows - self.window_size}); OCAB needs an even one")


# DRCT's residual dense group (RDG), as the reference builds it whatever ``depths`` says.
DRCT_BLOCKS = 5  # Swin blocks per group


@dataclass(frozen=True)
class DRCTConfig(TransformerConfig):
    """DRCT (Hsu, Lee and Chen, CVPR workshops 2024). Reference: ming053l/DRCT
    ``drct/archs/DRCT_arch.py``.

    ``gc``: the channels each block's 1x1 conv adds to the group's dense concatenation
    (block k of a group sees ``embed_dim + (k - 1) * gc`` channels). ``depths`` only sets
    the drop-path rates (every group holds five blocks, see ``DRCT_BLOCKS``);
    ``num_heads[i]`` is the first block's head count, the others follow the reference's
    rule (``block_heads``). ``compress_ratio``, ``squeeze_factor``, ``conv_scale`` and
    ``overlap_ratio`` are taken because the reference constructor (and its configs) take
    them, and are unused: DRCT builds no CAB or OCAB.

    The reference has only the pixelshuffle upsampler (any other value returns the input
    unchanged); upsampler='' adds a scale-1 head for denoising/JPEG (global residual on
    the input, as SwinIR and our HAT do it), and 'pixelshuffledirect' SwinIR's lightweight
    head (one conv to scale^2 * in_chans channels and a PixelShuffle), for models too
    small to carry pixelshuffle's 64-channel head (~0.3M parameters at x4).
    """

    family: ClassVar[str] = "drct"

    gc: int = 32
    compress_ratio: int = 3
    squeeze_factor: int = 30
    conv_scale: float = 0.01
    overlap_ratio: float = 0.5

    _allowed_resi: ClassVar[tuple[ResiConnection, ...]] = (
        ResiConnection.ONECONV, ResiConnection.IDENTITY)
    _allowed_upsamplers: ClassVar[tuple[Upsampler, ...]] = (
        Upsampler.PIXELSHUFFLE, Upsampler.PIXELSHUFFLEDIRECT, Upsampler.NONE)

    def __post_init__(self) -> None:
        super().__post_init__()
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        set_("gc", _int("gc", self.gc))
        set_("compress_ratio", _int("compress_ratio", self.compress_ratio))
        set_("squeeze_factor", _int("squeeze_factor", self.squeeze_factor))
        set_("conv_scale", _float("conv_scale", self.conv_scale, minimum=0.0))
        set_("overlap_ratio", _float("overlap_ratio", self.overlap_ratio, minimum=0.0))
        for i in range(len(self.num_heads)):
            for k, (c, h) in enumerate(zip(self.block_dims(), self.block_heads(i)), start=1):
                if c % h:
                    raise ConfigError(
                        f"num_heads[{i}]={self.num_heads[i]} with embed_dim={self.embed_dim} "
                        f"and gc={self.gc}: block {k} of group {i} has {c} channels, which the "
                        f"reference's {h} heads (num_heads - channels % num_heads) do not divide")

    def block_dims(self) -> tuple[int, ...]:
        """Channels each of a group's five blocks sees (the dense concatenation so far)."""
        return tuple(self.embed_dim + k * self.gc for k in range(DRCT_BLOCKS))

    def block_heads(self, group: int) -> tuple[int, ...]:
        """Heads of each block of ``group``: ``num_heads[group]`` for the first, and the
        reference's ``num_heads - channels % num_heads`` for the others (e.g. 180 channels,
        gc 32, 6 heads: 6, 4, 2, 6, 4)."""
        h = self.num_heads[group]
        return (h,) + tuple(h - c % h for c in self.block_dims()[1:])
