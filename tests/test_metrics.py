"""PSNR and SSIM: known values, channel conventions, and an independent SSIM reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from restore.errors import UsageError
from restore.metrics import gaussian_window, psnr, rgb_to_y, ssim


def _rand(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


# -- PSNR -------------------------------------------------------------------------------------

def test_psnr_identical_is_inf():
    a = _rand((16, 16, 3))
    assert psnr(a, a) == math.inf
    assert psnr(a, a, y_channel=True, crop=2) == math.inf


def test_psnr_known_mse():
    a = np.full((10, 12, 3), 100.0)
    assert psnr(a, a + 1) == pytest.approx(20 * math.log10(255), abs=1e-12)  # MSE 1: 48.13 dB
    assert psnr(a, a + 25.5) == pytest.approx(20.0, abs=1e-12)
    b = a.copy()
    b[0, 0, 0] += 12  # MSE = 144 / 360
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 * 360 / 144), abs=1e-12)


def test_psnr_uint8_and_float_agree():
    a, b = _rand((20, 20, 3), 1), _rand((20, 20, 3), 2)
    assert psnr(a, b) == psnr(a.astype(np.float64), b.astype(np.float32))


def test_y_channel_definition():
    px = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]]],
                  dtype=np.uint8)
    np.testing.assert_allclose(rgb_to_y(px), [[16.0, 235.0, 81.481, 144.553, 40.966]],
                               atol=1e-12)


def test_y_psnr_is_on_the_luma():
    a = np.full((8, 8, 3), 100.0)
    b = a + np.array([10.0, 0.0, 0.0])  # Y moves by 65.481 * 10 / 255
    dy = 65.481 * 10 / 255
    assert psnr(a, b, y_channel=True) == pytest.approx(10 * math.log10(255**2 / dy**2), abs=1e-9)
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / (100 / 3)), abs=1e-9)


def test_gray_images_are_scored_on_gray_values():
    a, b = _rand((24, 24), 3), _rand((24, 24), 4)
    assert psnr(a, b, y_channel=True) == psnr(a, b)
    assert psnr(a[:, :, None], b[:, :, None], y_channel=True) == psnr(a, b)
    # The Y of a gray-to-RGB copy shrinks differences by 219/255: +1.32 dB (the wrong way).
    rgb_a, rgb_b = np.repeat(a[:, :, None], 3, 2), np.repeat(b[:, :, None], 3, 2)
    gain = psnr(rgb_a, rgb_b, y_channel=True) - psnr(a, b)
    assert gain == pytest.approx(20 * math.log10(255 / 219), abs=1e-9)


def test_crop_removes_the_border():
    a = np.full((20, 20, 3), 50, dtype=np.uint8)
    b = a.copy()
    b[:3] = 0
    b[:, -3:] = 0
    assert psnr(a, b, crop=2) < 30
    assert psnr(a, b, crop=3) == math.inf
    assert ssim(a, b, crop=3) == pytest.approx(1.0)
    with pytest.raises(UsageError):
        psnr(a, b, crop=10)


def test_shape_mismatch_is_an_error():
    with pytest.raises(UsageError):
        psnr(np.zeros((8, 8, 3)), np.zeros((8, 9, 3)))
    with pytest.raises(UsageError):
        ssim(np.zeros((8, 8, 4)), np.zeros((8, 8, 4)))


# -- SSIM -------------------------------------------------------------------------------------

def _ssim_reference(x: np.ndarray, y: np.ndarray) -> float:
    """Straight from Wang et al.: the full 2-D window at every 'valid' position."""
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    win = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    vals = []
    for i in range(x.shape[0] - 10):
        for j in range(x.shape[1] - 10):
            px, py = x[i:i + 11, j:j + 11], y[i:i + 11, j:j + 11]
            mx, my = (win * px).sum(), (win * py).sum()
            vx = (win * (px - mx) ** 2).sum()
            vy = (win * (py - my) ** 2).sum()
            cxy = (win * (px - mx) * (py - my)).sum()
            vals.append(((2 * mx * my + c1) * (2 * cxy + c2))
                        / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(vals))


def test_gaussian_window():
    g = gaussian_window()
    assert g.shape == (11,) and g.sum() == pytest.approx(1.0) and g.argmax() == 5
    assert g[4] / g[5] == pytest.approx(math.exp(-1 / (2 * 1.5**2)))


def test_ssim_matches_the_definition_with_valid_filtering():
    a = _rand((23, 29), 5).astype(np.float64)
    b = np.clip(a + np.random.default_rng(6).normal(0, 20, a.shape), 0, 255)
    assert ssim(a, b) == pytest.approx(_ssim_reference(a, b), abs=1e-10)


def test_ssim_identical_is_one_and_symmetric():
    a, b = _rand((40, 40, 3), 7), _rand((40, 40, 3), 8)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    assert ssim(a, b) == pytest.approx(ssim(b, a), abs=1e-12)
    assert ssim(a, b) < 0.1


def test_ssim_of_constant_images():
    # Flat images: only the luminance term is left, (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1).
    c1 = (0.01 * 255) ** 2
    want = (2 * 100 * 110 + c1) / (100**2 + 110**2 + c1)
    assert ssim(np.full((16, 16), 100.0), np.full((16, 16), 110.0)) == pytest.approx(want)


def test_ssim_rgb_is_the_mean_over_channels():
    a, b = _rand((30, 30, 3), 9), _rand((30, 30, 3), 10)
    b[:, :, 1] = a[:, :, 1]
    per_channel = [ssim(a[:, :, c], b[:, :, c]) for c in range(3)]
    assert ssim(a, b) == pytest.approx(np.mean(per_channel), abs=1e-12)
    assert ssim(a, b, y_channel=True) == pytest.approx(ssim(rgb_to_y(a), rgb_to_y(b)),
                                                       abs=1e-12)


def test_ssim_needs_a_window_of_pixels():
    assert ssim(np.zeros((11, 11)), np.ones((11, 11))) < 1
    with pytest.raises(UsageError):
        ssim(np.zeros((10, 12)), np.zeros((10, 12)))


# -- torch ------------------------------------------------------------------------------------

def test_torch_and_numpy_inputs_give_the_same_result():
    a, b = _rand((32, 36, 3), 11), _rand((32, 36, 3), 12)
    ta = torch.from_numpy(a.transpose(2, 0, 1).copy()).float() / 255
    tb = torch.from_numpy(b.transpose(2, 0, 1).copy()).float() / 255
    for kw in ({}, {"y_channel": True, "crop": 4}):
        assert psnr(ta, tb, data_range=1.0, **kw) == pytest.approx(psnr(a, b, **kw), abs=1e-5)
        assert ssim(ta[None], tb[None], data_range=1.0, **kw) == pytest.approx(
            ssim(a, b, **kw), abs=1e-6)
    u8 = torch.from_numpy(a.transpose(2, 0, 1).copy())
    assert psnr(u8, tb * 255) == pytest.approx(psnr(a, b), abs=1e-4)
    with pytest.raises(UsageError):
        psnr(torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 8, 8))
