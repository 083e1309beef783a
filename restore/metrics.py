"""PSNR and SSIM as the restoration literature computes them (see the evaluation protocol).

Conventions, shared by both metrics:
- Inputs are numpy (H, W) / (H, W, C) or torch (H, W) / (C, H, W) / (1, C, H, W), uint8 or
  float, with values on [0, ``data_range``] (255 for uint8 images, 1 for [0, 1] tensors).
  Both images are converted to float64 on the 0..255 scale first; nothing is rounded.
- ``y_channel=True`` scores an RGB image on its ITU-R BT.601 luma
  ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255`` (R, G, B in 0..255; Y is kept as a
  float in [16, 235]), as the super-resolution tables do. Otherwise RGB is scored on all
  three channels.
- A gray image (2-D, or one channel) is scored on its gray values directly, whatever
  ``y_channel`` says: taking the Y of a gray-to-RGB copy would shrink every difference by
  219/255.
- ``crop`` pixels are removed from every border before scoring (the SR protocol crops
  ``scale`` pixels).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .errors import UsageError

__all__ = ["Y_WEIGHTS", "psnr", "rgb_to_y", "ssim"]

# BT.601 luma for R, G, B on 0..255 (studio swing: black 16, white 235).
Y_WEIGHTS = (65.481, 128.553, 24.966)
Y_OFFSET = 16.0

# Wang et al. 2004: Gaussian window 11 x 11 with sigma 1.5, K1 = 0.01, K2 = 0.03, L = 255.
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
PEAK = 255.0


def _as_hwc255(x: Any, data_range: float) -> np.ndarray:
    """float64 (H, W, C) on 0..255 from any accepted image."""
    if type(x).__module__.startswith("torch"):
        t = x.detach().to("cpu")
        if t.ndim == 4:
            if t.shape[0] != 1:
                raise UsageError(f"metrics take one image, got a batch of {t.shape[0]}")
            t = t[0]
        if t.ndim == 3:
            t = t.permute(1, 2, 0)
        a = t.double().numpy() if t.is_floating_point() else t.numpy().astype(np.float64)
    elif isinstance(x, np.ndarray):
        a = x.astype(np.float64)
    else:
        raise UsageError(f"expected a numpy array or a torch tensor, got {type(x).__name__}")
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3):
        raise UsageError(f"expected a gray or RGB image, got shape {tuple(x.shape)}")
    if data_range != PEAK:
        a = a * (PEAK / data_range)
    return a


def rgb_to_y(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma of an (H, W, 3) RGB image on 0..255: float64 (H, W) in [16, 235]."""
    rgb = np.asarray(rgb, dtype=np.float64)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise UsageError(f"rgb_to_y takes an (H, W, 3) image, got shape {rgb.shape}")
    return rgb @ (np.asarray(Y_WEIGHTS) / PEAK) + Y_OFFSET


def _pair(a: Any, b: Any, crop: int, y_channel: bool,
          data_range: float) -> tuple[np.ndarray, np.ndarray]:
    """Both images as float64 (H, W, C) on 0..255 in the scored channel(s), border cropped."""
    if not (isinstance(crop, (int, np.integer)) and crop >= 0):
        raise UsageError(f"crop must be an integer >= 0, got {crop!r}")
    if not (data_range > 0):
        raise UsageError(f"data_range must be positive, got {data_range!r}")
    x, y = _as_hwc255(a, data_range), _as_hwc255(b, data_range)
    if x.shape != y.shape:
        raise UsageError(f"images differ in shape: {x.shape} vs {y.shape}")
    if y_channel and x.shape[2] == 3:
        x, y = rgb_to_y(x)[:, :, None], rgb_to_y(y)[:, :, None]
    if crop:
        if 2 * crop >= min(x.shape[:2]):
            raise UsageError(f"crop {crop} leaves nothing of a {x.shape[0]}x{x.shape[1]} image")
        x, y = x[crop:-crop, crop:-crop], y[crop:-crop, crop:-crop]
    return x, y


def psnr(a: Any, b: Any, *, crop: int = 0, y_channel: bool = False,
         data_range: float = PEAK) -> float:
    """Peak signal-to-noise ratio in dB, peak 255: ``10 log10(255^2 / MSE)``.

    The MSE is taken over all pixels and scored channels (see the module docstring for the
    inputs, ``y_channel``, gray images and ``crop``). Identical images give ``inf``.
    """
    x, y = _pair(a, b, crop, y_channel, data_range)
    mse = float(np.mean((x - y) ** 2))
    return math.inf if mse == 0.0 else 10.0 * math.log10(PEAK * PEAK / mse)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """The normalized 1-D Gaussian whose outer product is SSIM's 2-D window (float64)."""
    k = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(k * k) / (2.0 * sigma * sigma))
    return g / g.sum()


def _filter_valid(planes: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of float64 (N, H, W) planes with the window outer(g, g).

    OpenCV's sepFilter2D (computed in double) is several times faster than numpy here;
    cropping the 'same'-size result by half the window leaves exactly the 'valid' part,
    whatever the border rule.
    """
    import cv2

    r = len(g) // 2
    return np.stack([cv2.sepFilter2D(np.ascontiguousarray(p), cv2.CV_64F, g, g,
                                     borderType=cv2.BORDER_REFLECT)[r:-r, r:-r]
                     for p in planes])


def ssim(a: Any, b: Any, *, crop: int = 0, y_channel: bool = False,
         data_range: float = PEAK) -> float:
    """Structural similarity (Wang et al. 2004) as the MATLAB reference and BasicSR compute it.

    Local statistics come from an 11 x 11 Gaussian window (sigma 1.5) applied with 'valid'
    filtering (no padding: the map is 10 pixels smaller in H and W), on float values in
    0..255 with C1 = (0.01 * 255)^2 and C2 = (0.03 * 255)^2; the SSIM map is averaged. An
    RGB image scored on RGB averages the three channels' SSIM. Inputs, ``y_channel``, gray
    images and ``crop`` as in the module docstring. Identical images give 1.
    """
    x, y = _pair(a, b, crop, y_channel, data_range)
    if min(x.shape[:2]) < SSIM_WINDOW:
        raise UsageError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, "
                         f"got {x.shape[0]}x{x.shape[1]}")
    c1, c2 = (SSIM_K1 * PEAK) ** 2, (SSIM_K2 * PEAK) ** 2
    x, y = np.moveaxis(x, 2, 0), np.moveaxis(y, 2, 0)  # (C, H, W)
    n = x.shape[0]
    stats = _filter_valid(np.concatenate([x, y, x * x, y * y, x * y]), gaussian_window())
    mu_x, mu_y, e_xx, e_yy, e_xy = stats.reshape(5, n, *stats.shape[1:])
    var_x, var_y = e_xx - mu_x * mu_x, e_yy - mu_y * mu_y
    cov = e_xy - mu_x * mu_y
    ssim_map = ((2.0 * mu_x * mu_y + c1) * (2.0 * cov + c2)) / (
        (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2))
    return float(np.mean(ssim_map.reshape(ssim_map.shape[0], -1).mean(axis=1)))
