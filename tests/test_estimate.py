"""The estimators: noise level (synthetic cases and real benchmark images) and JPEG quality.

Tolerances are about twice the largest error measured over 5 noise seeds; the figures over
whole benchmarks are in estimate_noise_sigma's docstring.
"""

import io

import numpy as np
import pytest
from PIL import Image

from restore.errors import UsageError
from restore.estimate import (
    IJG_LUMINANCE, estimate_jpeg_quality, estimate_noise_sigma, ijg_table,
)

from shared_paths import BENCHMARKS, require

SIGMAS = (5, 15, 25, 50)


def _noisy(clean: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """AWGN of ``sigma`` (0..255 scale), seeded, not clipped (the estimator's model)."""
    rng = np.random.default_rng(seed)
    return (clean + rng.normal(0.0, sigma / 255.0, clean.shape)).astype(np.float32)


def _smooth(h: int = 96, w: int = 128) -> np.ndarray:
    """A clean gray (H, W, 1) image: a ramp, a wave and a disc, all within (0, 1)."""
    yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w]).reshape(2, 1, 1)
    disc = np.hypot(xx - 0.5, yy - 0.5) < 0.25
    return (0.2 + 0.3 * xx + 0.2 * np.sin(6 * yy) + 0.2 * disc)[:, :, None]


def _load(relpath: str, mode: str) -> np.ndarray:
    with Image.open(require(BENCHMARKS / relpath)) as im:
        a = np.asarray(im.convert(mode), dtype=np.float32) / 255
    return a if a.ndim == 3 else a[:, :, None]


# -- noise: synthetic ------------------------------------------------------------------------

@pytest.mark.parametrize("sigma", SIGMAS)
@pytest.mark.parametrize("channels", [1, 3])
def test_noise_on_a_flat_image_is_the_noise(sigma, channels):
    # Pure noise reads a little low (the mean = median rule on a finite sample): measured
    # at most 1.1% over 3 seeds.
    est = estimate_noise_sigma(_noisy(np.full((128, 128, channels), 0.5), sigma))
    assert est == pytest.approx(sigma, rel=0.025, abs=0.15)


def _colour(gray: np.ndarray) -> np.ndarray:
    return np.concatenate([gray, 1 - gray, 0.5 * gray + 0.2], axis=2)


@pytest.mark.parametrize("sigma", SIGMAS)
def test_noise_on_smooth_gray_and_colour_images(sigma):
    # Measured: at most 1.6% off over 3 seeds.
    for clean in (_smooth(), _colour(_smooth())):
        assert estimate_noise_sigma(_noisy(clean, sigma)) == pytest.approx(sigma, rel=0.03,
                                                                           abs=0.3)


def test_clean_images_read_near_zero():
    assert estimate_noise_sigma(np.full((64, 64, 3), 0.25, dtype=np.float32)) == 0.0
    assert estimate_noise_sigma(_smooth()) < 0.5


@pytest.mark.parametrize("sigma", [5, 15])
@pytest.mark.parametrize("channels", [1, 3])
def test_saturated_regions_are_not_taken_for_noise_free_ones(sigma, channels):
    # Half the image clipped to white: flat, but not noise-free. Counted, it makes the gray
    # estimate 2.8 for 5 and 8.5 for 15. Measured here: at most 0.8 off over 4 seeds.
    half = _smooth()[:, :64]
    clean = np.concatenate([np.ones((96, 64, channels)),
                            half if channels == 1 else _colour(half)], axis=1)
    noisy = np.clip(_noisy(clean, sigma, seed=1), 0, 1)
    assert estimate_noise_sigma(noisy) == pytest.approx(sigma, abs=1.0)


def test_rgb_with_identical_channels_is_estimated_as_gray():
    gray = _noisy(_smooth(), 15)
    assert estimate_noise_sigma(np.repeat(gray, 3, axis=2)) == estimate_noise_sigma(gray)
    assert estimate_noise_sigma(gray[:, :, 0]) == estimate_noise_sigma(gray)  # (H, W) too


def test_noise_estimate_is_deterministic_and_leaves_its_input_alone():
    x = _noisy(_smooth(), 25)
    before = x.copy()
    assert estimate_noise_sigma(x) == estimate_noise_sigma(x)
    assert np.array_equal(x, before)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((20, 100, 3), np.float32), "too small"),
    (np.zeros((64, 64, 3), np.uint8), "float"),
    (np.zeros((64, 64, 2), np.float32), "H, W, 1|3"),
    (np.zeros((64,), np.float32), "H, W, 1|3"),
])
def test_noise_rejects_what_it_cannot_measure(bad, message):
    with pytest.raises(UsageError, match=message):
        estimate_noise_sigma(bad)


# -- noise: real benchmark images -------------------------------------------------------------

@pytest.mark.parametrize("relpath, mode, tolerance", [
    # Measured |error|: at most 0.19 at sigma <= 25 and 0.40 at sigma 50.
    ("CBSD68/HR/101087.png", "RGB", 0.4),
    # At most 0.13.
    ("Kodak24/HR/kodim05.png", "RGB", 0.4),
    # At most 0.27 at sigma <= 25 and 0.48 at sigma 50.
    ("Set12/HR/05.png", "L", 0.8),
])
def test_noise_on_benchmark_images(relpath, mode, tolerance):
    clean = _load(relpath, mode)
    for sigma in SIGMAS:
        est = estimate_noise_sigma(_noisy(clean, sigma, seed=sigma))
        allowed = tolerance + 0.01 * sigma
        assert abs(est - sigma) <= allowed, f"{relpath} sigma {sigma}: estimated {est:.3f}"


# -- JPEG quality ---------------------------------------------------------------------------

def test_ijg_tables_follow_libjpeg_scaling():
    assert tuple(ijg_table(50)) == IJG_LUMINANCE
    assert set(ijg_table(100)) == {1}
    assert ijg_table(1).max() == 255 and ijg_table(1).min() == 255  # clamped (baseline)
    assert ijg_table(75)[0] == (16 * 50 + 50) // 100 == 8
    assert ijg_table(10)[0] == (16 * 500 + 50) // 100 == 80
    with pytest.raises(UsageError):
        ijg_table(0)


@pytest.mark.parametrize("quality", range(1, 101))
def test_quality_of_standard_tables_is_exact(quality):
    assert estimate_jpeg_quality({0: list(ijg_table(quality))}) == quality


@pytest.mark.parametrize("subsampling", [0, 2])
@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_quality_of_pillow_encoded_images(mode, subsampling):
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).convert(mode)
    for quality in range(10, 96):
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=quality, subsampling=subsampling)
        with Image.open(buf) as decoded:
            assert estimate_jpeg_quality(decoded.quantization) == quality


def test_quality_of_a_custom_table_is_the_nearest_ijg_one():
    custom = np.clip(np.asarray(ijg_table(80)) + np.tile([1, 0], 32), 1, 255)
    assert estimate_jpeg_quality({0: custom}) == 80
    assert estimate_jpeg_quality([list(ijg_table(30)), list(ijg_table(90))]) == 30  # table 0


def test_quality_without_tables_is_none():
    assert estimate_jpeg_quality(None) is None
    assert estimate_jpeg_quality({}) is None
    assert estimate_jpeg_quality({1: list(ijg_table(50))}) is None  # no luminance table


def test_quality_rejects_a_malformed_table():
    with pytest.raises(UsageError, match="64 entries"):
        estimate_jpeg_quality({0: [1] * 63})
