"""Normalization layers: per-token LayerNorm, i-LN, and Affine.

All three work on token maps shaped (B, N, C) (channels last); i-LN also accepts any
(B, ...) tensor whose last dimension is the channel.

Every hyperparameter lives on the instance (``eps`` above all), and i-LN never keeps the
statistics of the last call on the module: ``normalize`` returns them and ``denorm`` takes
them back, so the same layer can be called on different images (or tiles of one image
with statistics computed elsewhere) without hidden state.

Statistics are always computed in fp32, whatever the activation dtype: fp16 features of
magnitude 1e4 have squares of 1e8, beyond the fp16 maximum of 65504.
"""

from __future__ import annotations

from enum import Enum
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "Affine",
    "ILN",
    "ILNStats",
    "LayerNorm",
    "NormKind",
    "iln_stats",
    "make_block_norm",
    "make_plain_norm",
]


class NormKind(str, Enum):
    """Which normalization a model uses throughout."""

    LAYERNORM = "layernorm"  # the vanilla per-token LayerNorm of SwinIR/HAT
    ILN = "iln"  # the paper's i-LN with input-adaptive rescaling


class ILNStats(NamedTuple):
    """Whole-image statistics of one i-LN input, fp32, shaped (B, 1, ..., 1) to broadcast.

    ``std`` is sqrt(var + eps): the value that normalizes and, in ``denorm``, rescales.
    """

    mean: Tensor
    std: Tensor


def iln_stats_from_moments(mean: Tensor, var: Tensor, eps: float) -> ILNStats:
    """ILNStats from a mean and biased variance accumulated elsewhere (e.g. over tiles)."""
    mean, var = mean.float(), var.float()
    return ILNStats(mean=mean, std=torch.sqrt(var + eps))


def iln_stats(x: Tensor, eps: float) -> ILNStats:
    """Mean and sqrt(biased variance + eps) over all values of each image of ``x`` (B, ...).

    Computed in fp32 regardless of ``x.dtype``, in two passes (the mean, then the mean
    square deviation from it): as exact as Welford's ``var_mean`` here (relative error
    ~1e-9 with a mean 300 stds away from zero) and 2-3x faster on a CPU.
    """
    dims = tuple(range(1, x.dim()))
    xf = x.float()
    mean = xf.mean(dim=dims, keepdim=True)
    var = (xf - mean).square_().mean(dim=dims, keepdim=True)
    return ILNStats(mean=mean, std=torch.sqrt(var + eps))


class LayerNorm(nn.Module):
    """Per-token LayerNorm over the channel (last) dimension; keys ``weight``/``bias``.

    Loads official SwinIR/HAT checkpoints. Computed in fp32 for fp16/bf16 inputs.
    As a block norm its ``denorm`` is the identity (vanilla blocks add the branch as is).
    """

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.dim = dim
        self.eps = float(eps)
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor) -> Tensor:
        y = F.layer_norm(x.float(), (self.dim,), self.weight.float(), self.bias.float(), self.eps)
        return y.to(x.dtype)

    def statistics(self, x: Tensor) -> None:
        """Per-token statistics are local: nothing to carry across tiles."""
        return None

    def normalize(self, x: Tensor, stats: None = None) -> tuple[Tensor, None]:
        return self(x), None

    def denorm(self, y: Tensor, stats: None) -> Tensor:
        return y

    def residual(self, x: Tensor, y: Tensor, stats: None) -> Tensor:
        return x + y

    def extra_repr(self) -> str:
        return f"{self.dim}, eps={self.eps}"


class ILN(nn.Module):
    """i-LN: holistic (whole-image) normalization with input-adaptive rescaling.

    For each image, mean and biased variance are taken over ALL tokens and channels;
    ``norm(x) = (x - mean) / sqrt(var + eps) * gamma + beta`` with per-channel gamma/beta
    (keys ``gamma``/``beta``, as in the authors' checkpoints), and
    ``denorm(y) = y * sqrt(var + eps)`` with the std of the norm's own input (the mean is
    not added back). Mathematically GroupNorm with one group plus a per-channel affine.
    """

    def __init__(self, dim: int, eps: float = 1e-4) -> None:
        super().__init__()
        self.dim = dim
        self.eps = float(eps)
        self.gamma = nn.Parameter(torch.ones(dim))
        self.beta = nn.Parameter(torch.zeros(dim))

    def statistics(self, x: Tensor) -> ILNStats:
        return iln_stats(x, self.eps)

    def normalize(self, x: Tensor, stats: ILNStats | None = None) -> tuple[Tensor, ILNStats]:
        """Normalize ``x`` (B, ..., C) with ``stats`` (computed from ``x`` when None).

        Returns the normalized tensor in ``x.dtype`` and the statistics used, computed in
        fp32 so that large fp16 features keep their precision.
        """
        if stats is None:
            stats = self.statistics(x)
        # (x - mean) / std * gamma + beta as one multiply-add, x * a + b, with per-image,
        # per-channel a = gamma / std and b = beta - mean * a (tiny tensors): one pass over
        # the features instead of four. fp32 arithmetic whatever x's dtype.
        a = self.gamma.float() / stats.std
        b = self.beta.float() - stats.mean * a
        y = torch.addcmul(b, x.float(), a)
        return y.to(x.dtype), stats

    def forward(self, x: Tensor) -> Tensor:
        return self.normalize(x)[0]

    def denorm(self, y: Tensor, stats: ILNStats) -> Tensor:
        """Rescale a residual branch by the std of the input this norm normalized."""
        return (y.float() * stats.std).to(y.dtype)

    def residual(self, x: Tensor, y: Tensor, stats: ILNStats) -> Tensor:
        """``x + denorm(y)``: in one multiply-add when x and y are fp32."""
        if x.dtype == y.dtype == torch.float32:
            return torch.addcmul(x, y, stats.std)
        return x + self.denorm(y, stats)

    def extra_repr(self) -> str:
        return f"{self.dim}, eps={self.eps}"


class Affine(nn.Module):
    """Per-channel ``x * gamma + beta`` with no statistics (keys ``gamma``/``beta``).

    i-LN models use it where a norm feeds no residual branch (after the patch embedding,
    and as the final norm): norm + affine + denorm collapses to an affine there.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.gamma = nn.Parameter(torch.ones(dim))
        self.beta = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma.to(x.dtype) + self.beta.to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.dim}"


def make_block_norm(kind: NormKind, dim: int, eps: float) -> LayerNorm | ILN:
    """The norm in front of a residual branch (norm1/norm2 of a block)."""
    if kind is NormKind.ILN:
        return ILN(dim, eps=eps)
    return LayerNorm(dim, eps=eps)


def make_plain_norm(kind: NormKind, dim: int, eps: float) -> LayerNorm | Affine:
    """A norm that feeds no residual branch (patch embedding, final norm)."""
    if kind is NormKind.ILN:
        return Affine(dim)
    return LayerNorm(dim, eps=eps)
