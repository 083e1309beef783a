"""Architectures: SwinIR, HAT and DRCT, each with LayerNorm or i-LN.

``build(family, **kwargs)`` is the public entry point: ``family`` is "swinir", "hat",
"hat_iln" (HAT with i-LN, the authors' name) or "drct", and kwargs are the reference
constructor arguments (see ``SwinIRConfig`` / ``HATConfig`` / ``DRCTConfig``), plus ``norm``
("layernorm" or "iln").
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..errors import ConfigError
from ..norms import NormKind
from .config import DRCTConfig, HATConfig, SwinIRConfig, TransformerConfig
from .drct import DRCT
from .hat import HAT
from .swinir import SwinIR

__all__ = ["DRCT", "DRCTConfig", "FAMILIES", "HAT", "HATConfig", "SwinIR", "SwinIRConfig", "build",
           "build_from_config", "make_config"]

FAMILIES = ("swinir", "hat", "hat_iln", "drct")


def make_config(family: str, **kwargs: Any) -> TransformerConfig:
    """The frozen config for ``family`` from reference constructor arguments."""
    if family == "swinir":
        return SwinIRConfig.from_kwargs(**kwargs)
    if family == "hat":
        return HATConfig.from_kwargs(**kwargs)
    if family == "hat_iln":
        norm = kwargs.pop("norm", "iln")
        if norm not in ("iln", NormKind.ILN):
            raise ConfigError(f"family 'hat_iln' is HAT with i-LN; norm={norm!r} contradicts it "
                              "(use family 'hat' for LayerNorm)")
        return HATConfig.from_kwargs(norm=NormKind.ILN, **kwargs)
    if family == "drct":
        return DRCTConfig.from_kwargs(**kwargs)
    raise ConfigError(f"unknown architecture family {family!r} (valid: {', '.join(FAMILIES)})")


def build_from_config(config: TransformerConfig) -> nn.Module:
    """The model for a config (randomly initialized, train mode as any new nn.Module)."""
    if isinstance(config, HATConfig):
        return HAT(config)
    if isinstance(config, DRCTConfig):
        return DRCT(config)
    if isinstance(config, SwinIRConfig):
        return SwinIR(config)
    raise ConfigError(f"not an architecture config: {type(config).__name__}")


def build(family: str, **kwargs: Any) -> nn.Module:
    """Build a model from the reference constructor arguments; unknown names raise."""
    return build_from_config(make_config(family, **kwargs))
