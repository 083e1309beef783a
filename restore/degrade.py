"""The degradations of the evaluation protocol: MATLAB bicubic resize, AWGN and JPEG, and
``degrade``, the one place that maps a task to its degradation (evaluation, training,
validation and ``restore inspect`` all build their inputs with it).

Pure functions: no state, randomness only through an explicit seed or numpy Generator.
One implementation in numpy float64; numpy arrays and torch tensors are converted at the edge.

Layouts (the usual one for each type):
- numpy arrays are (H, W) or (H, W, C) (extra trailing axes are carried along);
- torch tensors are (H, W), (C, H, W) or (B, C, H, W): the last two axes are H and W.
A torch tensor comes back on its device with its dtype.

Value conventions follow MATLAB: an integer image (uint8) is resized to a rounded, saturated
integer image of the same dtype; a float image is resized to a float image, values unchanged
in scale (no clipping).
"""

from __future__ import annotations

import io
import math
from typing import Any, TypeVar

import numpy as np

from .errors import UsageError
from .tasks import Task

__all__ = ["add_gaussian_noise", "cubic", "degrade", "imresize", "jpeg_compress", "modcrop",
           "resize_matrix", "resize_weights"]

ArrayLike = TypeVar("ArrayLike")  # np.ndarray or torch.Tensor: returned as the type given

# Keys' cubic convolution kernel with a = -0.5 (MATLAB 'bicubic'); its support is [-2, 2].
CUBIC_WIDTH = 4.0


def _is_torch(x: Any) -> bool:
    # No torch import here: degrade works in numpy-only programs too.
    return type(x).__module__.startswith("torch")


def _to_numpy(x: Any) -> np.ndarray:
    """numpy (H, W, ...) view of an image; torch (..., H, W) is moved to (H, W, ...)."""
    if _is_torch(x):
        t = x.detach().to("cpu")
        if t.ndim < 2:
            raise UsageError(f"expected an image tensor (..., H, W), got shape {tuple(t.shape)}")
        if t.is_floating_point() and t.element_size() < 4:  # half/bfloat16: no numpy dtype
            t = t.float()
        return t.movedim((-2, -1), (0, 1)).numpy()
    if isinstance(x, np.ndarray):
        if x.ndim < 2:
            raise UsageError(f"expected an image array (H, W[, C]), got shape {x.shape}")
        return x
    raise UsageError(f"expected a numpy array or a torch tensor, got {type(x).__name__}")


def _from_numpy(y: np.ndarray, like: Any) -> Any:
    """The inverse of _to_numpy: back to ``like``'s type, layout, dtype and device."""
    if _is_torch(like):
        import torch

        y = np.ascontiguousarray(y)
        if not y.flags.writeable:  # torch.from_numpy warns on read-only memory
            y = y.copy()
        t = torch.from_numpy(y).movedim((0, 1), (-2, -1))
        return t.to(device=like.device, dtype=like.dtype).contiguous()
    return y.astype(like.dtype, copy=False)


def _round_to(y: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """float64 -> integer dtype as MATLAB converts: round half away from zero, saturate."""
    info = np.iinfo(dtype)
    return np.clip(np.floor(y + 0.5), info.min, info.max).astype(dtype)


# -- MATLAB bicubic imresize ---------------------------------------------------------------

def cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic kernel, a = -0.5 (MATLAB's ``cubic``); float64, zero outside [-2, 2]."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return ((1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2)))


def resize_weights(in_len: int, out_len: int, scale: float,
                   antialias: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB's ``contributions``: the taps of one bicubic resize along one axis.

    Returns ``(weights, indices)``, both (out_len, P): output sample k is
    ``sum_j weights[k, j] * x[indices[k, j]]`` (float64 weights, 0-based int64 indices).
    Output pixel centres map back by ``u = x / scale + (1 - 1 / scale) / 2`` (1-based); when
    downscaling with antialiasing the kernel is stretched by 1 / scale (and scaled by
    ``scale``); each row of weights is normalized to sum 1; taps outside the image are
    mirrored (symmetric padding: index 0 -> 1, -1 -> 2, ..., n + 1 -> n, with period 2n as
    MATLAB's ``aux = [1:n, n:-1:1]``); columns that are zero for every output are dropped.
    """
    if in_len < 1 or out_len < 1:
        raise UsageError(f"cannot resize a length of {in_len} to {out_len}")
    if antialias and scale < 1:
        width = CUBIC_WIDTH / scale

        def kernel(d: np.ndarray) -> np.ndarray:
            return scale * cubic(scale * d)
    else:
        width, kernel = CUBIC_WIDTH, cubic
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - width / 2.0)
    # One tap more than the support needs, as MATLAB; zero columns are dropped below.
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]
    w = kernel(u[:, None] - idx)
    w /= w.sum(axis=1, keepdims=True)
    period = 2 * in_len
    m = np.mod(idx.astype(np.int64) - 1, period)
    src = np.where(m < in_len, m, period - 1 - m)
    keep = np.any(w != 0, axis=0)
    return w[:, keep], src[:, keep]


def resize_matrix(in_len: int, out_len: int, scale: float, antialias: bool = True) -> np.ndarray:
    """The same resize as a dense (out_len, in_len) float64 matrix (mirrored taps summed)."""
    w, src = resize_weights(in_len, out_len, scale, antialias)
    mat = np.zeros((out_len, in_len), dtype=np.float64)
    np.add.at(mat, (np.repeat(np.arange(out_len), w.shape[1]), src.ravel()), w.ravel())
    return mat


def _output_len(in_len: int, scale: float) -> int:
    # MATLAB: ceil(scale * size), in double. For integer factors and their reciprocals this
    # is exact (n * s * (1 / s) never lands above an integer for realistic n).
    return int(math.ceil(in_len * scale))


def _resize_axis(x: np.ndarray, axis: int, weights: np.ndarray,
                 indices: np.ndarray) -> np.ndarray:
    """Resize float64 ``x`` along ``axis``: a weighted sum of P gathered slices.

    Tap by tap, in MATLAB's order (mirrored taps as separate terms): a few passes over the
    output instead of a dense (out, in) product that is mostly zeros.
    """
    # Contiguous with the resized axis first: each gather below copies whole rows.
    moved = np.ascontiguousarray(np.moveaxis(x, axis, 0))
    shape = (-1,) + (1,) * (moved.ndim - 1)
    out = weights[:, 0].reshape(shape) * moved[indices[:, 0]]
    for j in range(1, weights.shape[1]):
        out += weights[:, j].reshape(shape) * moved[indices[:, j]]
    return np.moveaxis(out, 0, axis)


def imresize(img: ArrayLike, scale: float | tuple[float, float] | None = None, *,
             size: tuple[int, int] | None = None, antialias: bool = True) -> ArrayLike:
    """MATLAB's ``imresize(img, scale)`` with its default 'bicubic' method.

    Reproduces every pixel of the MATLAB-made LR files of Set5 and Set14 (x2, x3, x4).

    img: numpy (H, W) / (H, W, C) or torch (H, W) / (C, H, W) / (B, C, H, W); uint8 (or any
    unsigned integer) or float. Give ``scale`` (one factor or (scale_h, scale_w); output size
    ``ceil(scale * size)``) or ``size`` = (out_h, out_w) (scale = out / in per axis).

    As MATLAB: the cubic kernel (a = -0.5) is widened by 1 / scale when downscaling
    (antialiasing), borders are mirrored symmetrically, the axis with the smaller scale is
    resized first (H first on a tie), and everything is computed in float64. An integer image
    is rounded (half away from zero) and saturated back to its dtype after each axis, as
    MATLAB's resize kernel returns the input's class; a float image stays float (its dtype)
    with no clipping.
    """
    a = _to_numpy(img)
    in_hw = a.shape[:2]
    if (scale is None) == (size is None):
        raise UsageError("imresize needs exactly one of scale and size")
    if size is not None:
        out_hw = (int(size[0]), int(size[1]))
        if min(out_hw) < 1:
            raise UsageError(f"output size must be positive, got {out_hw}")
        scales = (out_hw[0] / in_hw[0], out_hw[1] / in_hw[1])
    else:
        scales = (float(scale), float(scale)) if np.isscalar(scale) else (
            float(scale[0]), float(scale[1]))
        if not all(math.isfinite(s) and s > 0 for s in scales):
            raise UsageError(f"scale must be positive and finite, got {scale}")
        out_hw = (_output_len(in_hw[0], scales[0]), _output_len(in_hw[1], scales[1]))

    integer = np.issubdtype(a.dtype, np.integer)
    if not (integer or np.issubdtype(a.dtype, np.floating)):
        raise UsageError(f"imresize takes integer or float images, got {a.dtype}")
    if integer and np.iinfo(a.dtype).min < 0:
        raise UsageError(f"imresize takes unsigned integer images, got {a.dtype}")

    y = a
    # Stable sort: equal scales resize H (MATLAB's dimension 1) first.
    for axis in sorted((0, 1), key=lambda k: scales[k]):
        w, idx = resize_weights(in_hw[axis], out_hw[axis], scales[axis], antialias)
        y = _resize_axis(y.astype(np.float64, copy=False), axis, w, idx)
        if integer:
            y = _round_to(y, a.dtype)
    return _from_numpy(y if integer else y.astype(a.dtype, copy=False), img)


def modcrop(img: ArrayLike, scale: int) -> ArrayLike:
    """Crop H and W down to multiples of ``scale``, keeping the top-left corner.

    numpy (H, W[, C]) or torch (..., H, W); the result is a view of ``img``.
    """
    if not isinstance(scale, (int, np.integer)) or scale < 1:
        raise UsageError(f"modcrop scale must be a positive integer, got {scale!r}")
    if _is_torch(img):
        h, w = img.shape[-2:]
        return img[..., : h - h % scale, : w - w % scale]
    if not isinstance(img, np.ndarray) or img.ndim < 2:
        raise UsageError("modcrop takes a numpy (H, W[, C]) array or a torch (..., H, W) tensor")
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


# -- additive white Gaussian noise ---------------------------------------------------------

def _generator(seed: int | np.random.Generator) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0:
        return np.random.default_rng(int(seed))
    raise UsageError(f"seed must be a non-negative integer or a numpy Generator, got {seed!r}")


def add_gaussian_noise(img: ArrayLike, sigma: float,
                       seed: int | np.random.Generator) -> ArrayLike:
    """``img + N(0, (sigma / 255)^2)`` per value: the AWGN of the denoising protocol.

    img: float image in [0, 1] (numpy or torch, any layout above). sigma is on the 0..255
    scale (15, 25, 50). Neither clipped nor quantized. The noise is drawn in float64 from
    ``numpy.random.default_rng(seed)`` (or the Generator given, which advances) in the numpy
    (H, W, C) layout, so a torch (C, H, W) tensor gets the same noise as its numpy (H, W, C)
    copy. Returns the input's type and float dtype.
    """
    if not (isinstance(sigma, (int, float, np.number)) and math.isfinite(sigma) and sigma >= 0):
        raise UsageError(f"sigma must be a finite number >= 0, got {sigma!r}")
    a = _to_numpy(img)
    if not np.issubdtype(a.dtype, np.floating):
        raise UsageError(f"add_gaussian_noise takes a float image in [0, 1], got {a.dtype} "
                         "(convert first: a quantized noisy image is not the protocol's)")
    rng = _generator(seed)
    noisy = a.astype(np.float64) + rng.standard_normal(a.shape) * (float(sigma) / 255.0)
    return _from_numpy(noisy.astype(a.dtype, copy=False), img)


# -- JPEG ------------------------------------------------------------------------------------

def _jpeg_uint8(a: np.ndarray, quality: int) -> np.ndarray:
    """Encode/decode one (H, W) or (H, W, 1|3) uint8 image with Pillow's libjpeg."""
    from PIL import Image

    gray = a.ndim == 2 or a.shape[2] == 1
    if not gray and a.shape[2] != 3:
        raise UsageError(f"jpeg_compress takes gray or RGB images, got {a.shape[2]} channels")
    pil = Image.fromarray(np.ascontiguousarray(a.reshape(a.shape[:2]) if gray else a),
                          mode="L" if gray else "RGB")
    buf = io.BytesIO()
    # subsampling=2 is 4:2:0 (the IJG default that MATLAB and OpenCV use); it is ignored
    # for gray images, which are encoded as single-component JPEGs.
    pil.save(buf, format="JPEG", quality=int(quality), subsampling=2)
    buf.seek(0)
    with Image.open(buf) as dec:
        out = np.array(dec.convert("L" if gray else "RGB"), dtype=np.uint8)
    return out.reshape(a.shape)


def jpeg_compress(img: ArrayLike, quality: int) -> ArrayLike:
    """JPEG encode and decode at ``quality`` (1..100) with libjpeg (Pillow), baseline 4:2:0.

    img: uint8 numpy (H, W) / (H, W, 1) / (H, W, 3), or torch (H, W) / (C, H, W) /
    (B, C, H, W) with C in {1, 3}. Gray images (2-D or one channel) are encoded as
    grayscale JPEGs, colour ones as YCbCr 4:2:0. A float image is taken as [0, 1]: rounded
    to uint8 before encoding and returned as float (value / 255) in its dtype. Returns the
    input's type, shape and dtype.
    """
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not (
            1 <= quality <= 100):
        raise UsageError(f"JPEG quality must be an integer in 1..100, got {quality!r}")
    a = _to_numpy(img)
    floating = np.issubdtype(a.dtype, np.floating)
    if floating:
        u8 = _round_to(np.clip(a.astype(np.float64), 0.0, 1.0) * 255.0, np.dtype(np.uint8))
    elif a.dtype == np.uint8:
        u8 = a
    else:
        raise UsageError(f"jpeg_compress takes uint8 or float [0, 1] images, got {a.dtype}")
    if u8.ndim == 4:  # torch (B, C, H, W) arrives as (H, W, B, C): one JPEG per image
        out = np.stack([_jpeg_uint8(u8[:, :, b], quality) for b in range(u8.shape[2])], axis=2)
    elif u8.ndim in (2, 3):
        out = _jpeg_uint8(u8, quality)
    else:
        raise UsageError(f"jpeg_compress takes one image or a batch, got shape {a.shape}")
    if floating:
        return _from_numpy((out.astype(np.float64) / 255.0).astype(a.dtype), img)
    return _from_numpy(out, img)


# -- a task's degradation ----------------------------------------------------------------------

def degrade(task: Task | str, hr: np.ndarray, *, scale: int | None = None,
            sigma: float | None = None, quality: int | None = None,
            rng: int | np.random.Generator | None = None,
            dtype: Any = np.float64) -> np.ndarray:
    """The degraded input of one uint8 ground-truth image for ``task``, per the protocol.

    hr: uint8 numpy (H, W) or (H, W, C).
    - sr: ``imresize(hr, 1 / scale)``, MATLAB bicubic, uint8 (H / scale, W / scale[, C]);
      ``hr`` must already be mod-cropped (``modcrop(hr, scale)``), as the target it is
      scored against, so that the two align.
    - denoise: ``hr.astype(dtype) / 255`` + N(0, (sigma / 255)^2) by ``add_gaussian_noise``
      from ``rng`` (a Generator, which advances, or a seed), in ``dtype`` (a float dtype;
      the arithmetic is that dtype's, so float32 and float64 differ in the last bits),
      neither clipped nor quantized.
    - jpeg: ``jpeg_compress(hr, quality)``, the libjpeg round trip, uint8.
    Only the task's own level is read (``rng`` and ``dtype`` only for denoise), so a caller
    may pass its whole setting. A missing level or generator, a task that is not one, or
    an ``hr`` that is not uint8 (or not mod-cropped, for sr) is a UsageError.
    """
    try:
        task = Task(task)
    except ValueError:
        raise UsageError(f"unknown task {task!r} (valid: "
                         f"{', '.join(t.value for t in Task)})") from None
    if not isinstance(hr, np.ndarray) or hr.dtype != np.uint8 or hr.ndim not in (2, 3):
        what = f"{hr.dtype} {hr.shape}" if isinstance(hr, np.ndarray) else type(hr).__name__
        raise UsageError(f"degrade takes a uint8 (H, W[, C]) ground truth, got {what}")
    if task is Task.SR:
        if scale is None:
            raise UsageError("degrade: task sr needs scale")
        if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 1:
            raise UsageError(f"degrade: scale must be a positive integer, got {scale!r}")
        h, w = hr.shape[:2]
        if h % scale or w % scale:
            raise UsageError(f"degrade: a {w}x{h} ground truth is not a multiple of the scale "
                             f"{scale}: modcrop(hr, {scale}) it first")
        return imresize(hr, 1.0 / scale)
    if task is Task.DENOISE:
        if sigma is None:
            raise UsageError("degrade: task denoise needs sigma")
        if rng is None:
            raise UsageError("degrade: task denoise needs rng, a numpy Generator or a seed "
                             "for the noise")
        dt = np.dtype(dtype)
        if not np.issubdtype(dt, np.floating):
            raise UsageError(f"degrade: the noisy image's dtype must be a float type, got {dt}")
        return add_gaussian_noise(hr.astype(dt) / 255.0, sigma, rng)
    if quality is None:
        raise UsageError("degrade: task jpeg needs quality")
    return jpeg_compress(hr, quality)
