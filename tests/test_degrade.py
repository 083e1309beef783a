"""Degradations: MATLAB bicubic (against MATLAB-made LR files), AWGN, JPEG."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from restore.degrade import (
    add_gaussian_noise, cubic, degrade, imresize, jpeg_compress, modcrop, resize_matrix,
    resize_weights,
)
from restore.errors import UsageError
from restore.tasks import Task
from restore.evaluate import list_images, read_image

SR_SETS = ("Set5", "Set14")
SCALES = (2, 3, 4)


# -- the kernel and the weights ---------------------------------------------------------------

def test_cubic_kernel_values():
    x = np.array([0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, -0.5, -1.5])
    want = [1.0, 0.8671875, 0.5625, 0.2265625, 0.0, -0.0703125, -0.0625, -0.0234375, 0.0, 0.0,
            0.5625, -0.0625]
    np.testing.assert_allclose(cubic(x), want, rtol=0, atol=1e-15)


@pytest.mark.parametrize("in_len,out_len", [(17, 6), (48, 12), (9, 27), (5, 10), (1, 3), (7, 2)])
def test_weights_are_normalized_and_inside_the_image(in_len, out_len):
    w, idx = resize_weights(in_len, out_len, out_len / in_len)
    assert w.shape == idx.shape and w.shape[0] == out_len
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)
    assert idx.min() >= 0 and idx.max() < in_len
    np.testing.assert_allclose(resize_matrix(in_len, out_len, out_len / in_len).sum(axis=1), 1.0,
                               atol=1e-12)


def test_upscale_known_values_with_mirrored_border():
    # By hand from MATLAB's contributions (scale 2, n = 2): the first output is
    # 1.09375 p1 - 0.09375 p2 (the tap left of pixel 1 mirrors onto pixel 2).
    out = imresize(np.array([[0.0, 64.0]]), size=(1, 4))
    np.testing.assert_allclose(out, [[-6.0, 13.0, 51.0, 70.0]], atol=1e-12)
    out8 = imresize(np.array([[0, 64]], dtype=np.uint8), size=(1, 4))
    assert out8.dtype == np.uint8 and out8.tolist() == [[0, 13, 51, 70]]  # -6 saturates


def test_downscale_known_values_and_matlab_rounding():
    # scale 1/2 with antialiasing: out1 = .546875 p1 + .3984375 p2 + .1015625 p3 - .046875 p4.
    out = imresize(np.array([[0.0, 64.0, 128.0, 192.0]]), 0.5)
    np.testing.assert_allclose(out, [[29.5, 162.5]], atol=1e-12)
    # uint8 rounds half away from zero as MATLAB (numpy's half-to-even would give 162).
    out8 = imresize(np.array([[0, 64, 128, 192]], dtype=np.uint8), 0.5)
    assert out8.tolist() == [[30, 163]]


@pytest.mark.parametrize("scale", [0.5, 1 / 3, 0.25, 2.0, 3.0, 4.0, 0.7, 1.5])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_constant_image_stays_constant(scale, dtype):
    img = np.full((23, 31, 3), 117, dtype=dtype)
    out = imresize(img, scale)
    assert out.dtype == dtype
    np.testing.assert_allclose(out.astype(np.float64), 117.0, atol=1e-9)


def test_output_shapes():
    img = np.zeros((13, 17, 3), dtype=np.uint8)
    assert imresize(img, 0.5).shape == (7, 9, 3)          # MATLAB: ceil(scale * size)
    assert imresize(img, 3).shape == (39, 51, 3)
    assert imresize(img, (2, 0.5)).shape == (26, 9, 3)
    assert imresize(img, size=(20, 5)).shape == (20, 5, 3)
    assert imresize(img[:, :, 0], 0.25).shape == (4, 5)
    assert imresize(np.zeros((12, 12, 3)), 1 / 3).shape == (4, 4, 3)
    assert imresize(torch.zeros(2, 3, 12, 16), 0.5).shape == (2, 3, 6, 8)
    assert imresize(torch.zeros(1, 12, 16), 2).shape == (1, 24, 32)


def test_downscale_then_upscale_round_trip_of_smooth_image():
    yy, xx = np.mgrid[0:64, 0:48]
    img = 100 + 50 * np.sin(xx / 9.0) * np.cos(yy / 11.0)
    back = imresize(imresize(img, 0.5), 2)
    assert back.shape == img.shape
    assert np.abs(back - img)[4:-4, 4:-4].max() < 1.0


def test_torch_and_numpy_give_the_same_result():
    rng = np.random.default_rng(0)
    img = rng.random((20, 26, 3)).astype(np.float32)
    t = torch.from_numpy(img.transpose(2, 0, 1).copy())
    for scale in (0.25, 3):
        a = imresize(img, scale)
        b = imresize(t, scale)
        assert isinstance(b, torch.Tensor) and b.dtype == torch.float32
        np.testing.assert_array_equal(b.numpy().transpose(1, 2, 0), a)
    u8 = (img * 255).astype(np.uint8)
    t8 = torch.from_numpy(u8.transpose(2, 0, 1).copy())[None]
    np.testing.assert_array_equal(imresize(t8, 0.5)[0].numpy().transpose(1, 2, 0),
                                  imresize(u8, 0.5))


def test_bad_arguments_are_usage_errors():
    img = np.zeros((8, 8), dtype=np.uint8)
    with pytest.raises(UsageError):
        imresize(img)
    with pytest.raises(UsageError):
        imresize(img, 0.5, size=(4, 4))
    with pytest.raises(UsageError):
        imresize(img, -2)
    with pytest.raises(UsageError):
        imresize(img.astype(np.int8), 2)
    with pytest.raises(UsageError):
        modcrop(img, 0)


def test_modcrop():
    img = np.arange(7 * 10 * 3).reshape(7, 10, 3)
    out = modcrop(img, 3)
    assert out.shape == (6, 9, 3) and np.shares_memory(out, img)
    np.testing.assert_array_equal(out, img[:6, :9])
    assert modcrop(img[:, :, 0], 4).shape == (4, 8)
    assert modcrop(torch.zeros(2, 3, 7, 10), 2).shape == (2, 3, 6, 10)


# -- against the MATLAB-made LR files ---------------------------------------------------------

def _lr_pairs(benchmarks, set_name, scale):
    lr_dir = benchmarks / set_name / "LR_bicubic" / f"X{scale}"
    for hr_path in list_images(benchmarks / set_name / "HR"):
        yield hr_path, lr_dir / f"{hr_path.stem}x{scale}.png"


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("set_name", SR_SETS)
def test_imresize_reproduces_the_matlab_lr_files(benchmarks, set_name, scale):
    n = 0
    for hr_path, lr_path in _lr_pairs(benchmarks, set_name, scale):
        lr = read_image(lr_path)
        ours = imresize(modcrop(read_image(hr_path), scale), 1 / scale)
        assert ours.shape == lr.shape, hr_path.name
        diff = np.abs(ours.astype(np.int16) - lr.astype(np.int16))
        assert (diff == 0).mean() >= 0.99, f"{lr_path.name}: {(diff == 0).mean():.4%} identical"
        assert diff.max() <= 2, f"{lr_path.name}: off by {diff.max()}"
        n += 1
    assert n == {"Set5": 5, "Set14": 14}[set_name]


def test_height_is_resized_first(benchmarks):
    # MATLAB resizes the axis with the smaller scale first, H on a tie; with the uint8
    # rounding between the passes the order shows: W first misses many pixels.
    hr_path, lr_path = next(_lr_pairs(benchmarks, "Set5", 4))
    hr, lr = modcrop(read_image(hr_path), 4), read_image(lr_path)
    w_first = np.swapaxes(imresize(np.swapaxes(hr, 0, 1), 0.25), 0, 1)
    assert (imresize(hr, 0.25) == lr).all()
    assert (w_first == lr).mean() < 0.95


# -- noise ------------------------------------------------------------------------------------

def test_noise_is_deterministic_per_seed():
    img = np.full((64, 48, 3), 0.5)
    a, b = add_gaussian_noise(img, 25, seed=3), add_gaussian_noise(img, 25, seed=3)
    c = add_gaussian_noise(img, 25, seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    rng = np.random.default_rng(3)
    np.testing.assert_array_equal(add_gaussian_noise(img, 25, rng), a)
    assert not np.array_equal(add_gaussian_noise(img, 25, rng), a)  # the generator advanced


def test_noise_statistics_unclipped_unquantized():
    img = np.full((256, 256, 3), 0.02, dtype=np.float64)
    noisy = add_gaussian_noise(img, 50, seed=0)
    n = noisy - img
    assert noisy.dtype == np.float64 and noisy.shape == img.shape
    assert abs(n.std() * 255 - 50) < 0.5 and abs(n.mean() * 255) < 0.5
    assert noisy.min() < 0  # not clipped
    assert not np.allclose(noisy * 255, np.round(noisy * 255))  # not quantized


def test_noise_torch_matches_numpy_and_keeps_dtype():
    img = np.random.default_rng(1).random((16, 20, 3)).astype(np.float32)
    t = torch.from_numpy(img.transpose(2, 0, 1).copy())
    a = add_gaussian_noise(img, 15, seed=7)
    b = add_gaussian_noise(t, 15, seed=7)
    assert a.dtype == np.float32 and b.dtype == torch.float32
    np.testing.assert_array_equal(b.numpy().transpose(1, 2, 0), a)


def test_noise_refuses_uint8_and_bad_seeds():
    with pytest.raises(UsageError):
        add_gaussian_noise(np.zeros((4, 4), dtype=np.uint8), 25, seed=0)
    with pytest.raises(UsageError):
        add_gaussian_noise(np.zeros((4, 4)), 25, seed=None)
    with pytest.raises(UsageError):
        add_gaussian_noise(np.zeros((4, 4)), -1, seed=0)


# -- JPEG -------------------------------------------------------------------------------------

def _photo(benchmarks, set_name="LIVE1", i=0):
    return read_image(list_images(benchmarks / set_name / "HR")[i])


def test_jpeg_shapes_dtypes_gray_and_colour(benchmarks):
    rgb = _photo(benchmarks)[:96, :128]
    out = jpeg_compress(rgb, 10)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert not np.array_equal(out, rgb)
    gray = rgb[:, :, 1].copy()
    g = jpeg_compress(gray, 10)
    assert g.shape == gray.shape and g.dtype == np.uint8
    g1 = jpeg_compress(gray[:, :, None], 10)
    assert g1.shape == (96, 128, 1)
    np.testing.assert_array_equal(g1[:, :, 0], g)
    np.testing.assert_array_equal(jpeg_compress(rgb, 10), out)  # deterministic


def test_jpeg_matches_opencv_libjpeg_420(benchmarks):
    import cv2

    rgb = _photo(benchmarks)
    for q in (10, 40):
        _, enc = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
        np.testing.assert_array_equal(jpeg_compress(rgb, q), cv2.imdecode(enc, 1)[:, :, ::-1])
        gray = np.ascontiguousarray(rgb[:, :, 0])
        _, enc = cv2.imencode(".jpg", gray, [cv2.IMWRITE_JPEG_QUALITY, q])
        np.testing.assert_array_equal(jpeg_compress(gray, q), cv2.imdecode(enc, 0))


def test_jpeg_quality_orders_the_error(benchmarks):
    rgb = _photo(benchmarks).astype(np.float64)
    err = [np.mean((jpeg_compress(rgb.astype(np.uint8), q) - rgb) ** 2) for q in (10, 40, 90)]
    assert err[0] > err[1] > err[2] > 0


def test_jpeg_torch_and_float_inputs(benchmarks):
    rgb = _photo(benchmarks)[:64, :80]
    ref = jpeg_compress(rgb, 20)
    t = torch.from_numpy(rgb.transpose(2, 0, 1).copy())
    np.testing.assert_array_equal(jpeg_compress(t, 20).numpy().transpose(1, 2, 0), ref)
    batch = jpeg_compress(torch.stack([t, t]), 20)
    assert batch.shape == (2, 3, 64, 80)
    np.testing.assert_array_equal(batch[1].numpy().transpose(1, 2, 0), ref)
    f = jpeg_compress(t.float() / 255, 20)
    assert f.dtype == torch.float32
    np.testing.assert_allclose(f.numpy().transpose(1, 2, 0) * 255, ref, atol=1e-4)
    with pytest.raises(UsageError):
        jpeg_compress(rgb, 0)
    with pytest.raises(UsageError):
        jpeg_compress(rgb.astype(np.uint16), 20)


# -- degrade: a task's input -----------------------------------------------------------------

def test_degrade_sr_is_the_matlab_lr_file(benchmarks):
    hr = modcrop(read_image(benchmarks / "Set5" / "HR" / "bird.png"), 4)
    lr = degrade("sr", hr, scale=4)
    assert lr.dtype == np.uint8
    np.testing.assert_array_equal(lr, read_image(benchmarks / "Set5" / "LR_bicubic" / "X4" /
                                                 "birdx4.png"))
    gray = hr[:, :, 0].copy()
    np.testing.assert_array_equal(degrade(Task.SR, gray, scale=2), imresize(gray, 0.5))


def test_degrade_denoise_keeps_the_dtype_and_the_generator():
    hr = np.random.default_rng(0).integers(0, 256, (24, 20, 3), dtype=np.uint8)
    noisy = degrade(Task.DENOISE, hr, sigma=25, rng=3)
    assert noisy.dtype == np.float64 and noisy.shape == hr.shape
    np.testing.assert_array_equal(noisy, add_gaussian_noise(hr.astype(np.float64) / 255, 25, 3))
    assert noisy.min() < 0 < 1 < noisy.max()  # not clipped
    assert abs((noisy - hr / 255.0).std() * 255 - 25) < 1.5
    f32 = degrade(Task.DENOISE, hr, sigma=25, rng=3, dtype=np.float32)
    assert f32.dtype == np.float32
    np.testing.assert_array_equal(f32, add_gaussian_noise(hr.astype(np.float32) / 255, 25, 3))
    assert not np.array_equal(f32, noisy.astype(np.float32))  # float32 arithmetic throughout
    rng, fresh = np.random.default_rng(5), np.random.default_rng(5)
    first, second = (degrade("denoise", hr, sigma=15, rng=rng) for _ in range(2))
    np.testing.assert_array_equal(first, add_gaussian_noise(hr / 255.0, 15, fresh))
    np.testing.assert_array_equal(second, add_gaussian_noise(hr / 255.0, 15, fresh))  # advanced


def test_degrade_jpeg_and_the_levels_of_other_tasks_are_ignored(benchmarks):
    hr = _photo(benchmarks)[:48, :64]
    out = degrade(Task.JPEG, hr, quality=35)
    assert out.dtype == np.uint8 and out.shape == hr.shape and not np.array_equal(out, hr)
    np.testing.assert_array_equal(out, jpeg_compress(hr, 35))
    assert not np.array_equal(degrade(Task.JPEG, hr, quality=10), out)
    np.testing.assert_array_equal(
        degrade("jpeg", hr, scale=3, sigma=50, quality=35, rng=None, dtype=np.float32), out)
    np.testing.assert_array_equal(degrade("sr", hr, scale=2, sigma=50, quality=5, rng=1),
                                  imresize(hr, 0.5))


@pytest.mark.parametrize("task,kwargs,message", [
    ("sr", {}, "task sr needs scale"),
    ("sr", {"sigma": 25, "quality": 10}, "task sr needs scale"),
    ("denoise", {"rng": 0}, "task denoise needs sigma"),
    ("denoise", {"sigma": 25}, "task denoise needs rng"),
    ("jpeg", {"sigma": 25}, "task jpeg needs quality"),
    ("sr", {"scale": 0}, "positive integer"),
    ("sr", {"scale": 2.0}, "positive integer"),
    ("sr", {"scale": 3}, "not a multiple of the scale 3: modcrop"),
    ("denoise", {"sigma": 25, "rng": 0, "dtype": np.uint8}, "float type"),
    ("deblur", {"scale": 2}, "unknown task 'deblur' .valid: sr, denoise, jpeg"),
])
def test_degrade_refuses_a_missing_level_with_a_clear_error(task, kwargs, message):
    hr = np.zeros((8, 10, 3), dtype=np.uint8)
    with pytest.raises(UsageError, match=message):
        degrade(task, hr, **kwargs)


def test_degrade_takes_a_uint8_ground_truth_only():
    for hr in (np.zeros((8, 8, 3)), np.zeros((8, 8, 3), np.uint16), np.zeros(8, np.uint8),
               torch.zeros(3, 8, 8, dtype=torch.uint8)):
        with pytest.raises(UsageError, match="uint8"):
            degrade("jpeg", hr, quality=50)
