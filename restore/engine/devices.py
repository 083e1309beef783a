"""Devices and precisions: from the strings of the command line to torch objects, once."""

from __future__ import annotations

import contextlib
from enum import Enum

import torch

from ..errors import UsageError


class Precision(str, Enum):
    AUTO = "auto"
    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"

    @property
    def dtype(self) -> torch.dtype:
        return {Precision.FP32: torch.float32, Precision.BF16: torch.bfloat16,
                Precision.FP16: torch.float16}[self]


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto`` (CUDA, then MPS, then CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``."""
    spec = spec.strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError:
        raise UsageError(f"--device {spec!r} is not a device (auto, cpu, cuda, cuda:N, mps)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {spec}: CUDA is not available on this machine "
                             "(this torch build or driver has no GPU); use --device cpu")
        index = 0 if dev.index is None else dev.index
        if index >= torch.cuda.device_count():
            raise UsageError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s)")
        return torch.device("cuda", index)
    if dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise UsageError("--device mps: MPS is not available on this machine")
        return dev
    if dev.type != "cpu":
        raise UsageError(f"--device {spec!r}: unsupported device type {dev.type!r}")
    return dev


def resolve_precision(requested: Precision | str, device: torch.device,
                      fp16_safe: bool) -> tuple[Precision, str | None]:
    """The precision to run in, and a warning to show (or None).

    auto: fp32 on CPU; on a GPU fp16 where the model is known to be fp16-safe, else bf16
    where the device supports it, else fp32. fp16 on a model flagged unsafe runs, with a
    warning (outputs that overflow are recomputed in fp32 tile by tile).
    """
    p = Precision(requested)
    if p is Precision.AUTO:
        if device.type == "cpu":
            return Precision.FP32, None
        if fp16_safe:
            return Precision.FP16, None
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return Precision.BF16, None
        return Precision.FP32, None
    if p is Precision.FP16 and not fp16_safe:
        return p, ("this model is not known to be fp16-safe (LayerNorm SwinIR/HAT features "
                   "overflow fp16); overflowing tiles are recomputed in fp32. Prefer bf16.")
    if p is Precision.FP16 and device.type == "cpu":
        return p, "fp16 on the CPU is slow and rarely useful; fp32 or bf16 is recommended"
    return p, None


def autocast(device: torch.device, precision: Precision):
    """The autocast context for ``precision`` on ``device``. fp32 on CUDA means fp32: TF32
    matmuls and convolutions (cuDNN's default) are switched off inside the context."""
    if precision is Precision.FP32:
        return _no_tf32() if device.type == "cuda" else contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=precision.dtype)


@contextlib.contextmanager
def _no_tf32():
    """IEEE fp32 matmuls and convolutions inside. Through torch's fp32_precision settings
    where this torch has them, else the legacy allow_tf32 flags (torch refuses to read one
    API after the other was set, so the one in use is kept)."""
    try:
        flags = [(torch.backends.cuda.matmul, "fp32_precision", "ieee"),
                 (torch.backends.cudnn.conv, "fp32_precision", "ieee")]
        saved = [getattr(obj, name) for obj, name, _ in flags]
    except (AttributeError, RuntimeError):
        flags = [(torch.backends.cuda.matmul, "allow_tf32", False),
                 (torch.backends.cudnn, "allow_tf32", False)]
        saved = [getattr(obj, name) for obj, name, _ in flags]
    for obj, name, value in flags:
        setattr(obj, name, value)
    try:
        yield
    finally:
        for (obj, name, _), old in zip(flags, saved):
            setattr(obj, name, old)
