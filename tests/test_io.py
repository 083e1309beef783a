"""restore.io on real files written to tmp_path by Pillow, OpenCV and restore itself: exact
round trips, modes, alpha, orientation, metadata, errors, and atomic writes."""

import os
import re
import stat
import warnings

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps, JpegImagePlugin

import restore.io as rio
from restore.errors import RestoreError, UsageError
from restore.estimate import estimate_jpeg_quality
from restore.io import (
    IMAGE_SUFFIXES, ImageData, ImageReadError, ImageWriteError, is_image_path, read_image,
    walk_images, write_image,
)

SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
ORIENTATION = 0x0112


def _ints(shape, bits, seed=0):
    top = (1 << bits) - 1
    return np.random.default_rng(seed).integers(0, top + 1, shape,
                                                dtype=np.uint16 if bits == 16 else np.uint8)


def _as_ints(a: np.ndarray, bits: int) -> np.ndarray:
    return np.rint(a * ((1 << bits) - 1)).astype(np.int64)


def _quadrants(h=32, w=64) -> np.ndarray:
    """(h, w, 3) uint8 with four flat, well-separated colours: positions survive JPEG."""
    a = np.zeros((h, w, 3), np.uint8)
    a[: h // 2, : w // 2] = (255, 0, 0)
    a[: h // 2, w // 2:] = (0, 255, 0)
    a[h // 2:, : w // 2] = (0, 0, 255)
    a[h // 2:, w // 2:] = (255, 255, 255)
    return a


def _check_error(exc: Exception, path, *words):
    """A one-line "PATH: reason" message that names the file and says why."""
    msg = str(exc)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: "), msg
    for w in words:
        assert w in msg, msg


def _only_file_left(folder, name):
    assert sorted(os.listdir(folder)) == [name]


def _exif_of(path) -> Image.Exif:
    """The EXIF of a file, its Exif IFD loaded while the file is open."""
    with Image.open(path) as im:
        exif = im.getexif()
        exif.get_ifd(0x8769)
        return exif


# -- exact round trips -----------------------------------------------------------------------

@pytest.mark.parametrize("suffix, bits, channels, with_alpha", [
    (".png", 8, 1, False), (".png", 8, 3, False), (".png", 16, 1, False),
    (".png", 16, 3, False), (".tif", 16, 1, False), (".tif", 16, 3, False),
    (".tif", 8, 1, False), (".tiff", 8, 3, False), (".bmp", 8, 3, False),
    (".png", 8, 3, True), (".png", 8, 1, True), (".png", 16, 3, True), (".png", 16, 1, True),
    (".tif", 8, 3, True), (".tif", 8, 1, True), (".tif", 16, 3, True),
])
def test_lossless_round_trip_is_exact(tmp_path, suffix, bits, channels, with_alpha):
    values = _ints((23, 37, channels + with_alpha), bits)
    top = (1 << bits) - 1
    pixels = values[:, :, :channels].astype(np.float32) / top
    alpha = values[:, :, -1].astype(np.float32) / top if with_alpha else None
    out = tmp_path / f"img{suffix}"
    result = write_image(out, pixels, alpha=alpha, bit_depth=bits)
    assert result.path == out and result.warnings == ()
    img = read_image(out)
    assert isinstance(img, ImageData)
    assert img.pixels.dtype == np.float32 and img.pixels.shape == (23, 37, channels)
    assert (img.height, img.width, img.channels, img.is_gray) == (23, 37, channels,
                                                                  channels == 1)
    assert img.bit_depth == bits
    assert np.array_equal(_as_ints(img.pixels, bits), values[:, :, :channels])
    if with_alpha:
        assert img.alpha.dtype == np.float32
        assert np.array_equal(_as_ints(img.alpha, bits), values[:, :, -1])
    else:
        assert img.alpha is None
    assert img.warnings == ()


def test_sixteen_bit_round_trip_covers_every_value(tmp_path):
    values = np.arange(65536, dtype=np.uint16).reshape(256, 256, 1)
    for suffix in (".png", ".tif"):
        for dtype in (np.float32, np.float64):
            write_image(tmp_path / f"all{suffix}", values.astype(dtype) / 65535, bit_depth=16)
            img = read_image(tmp_path / f"all{suffix}")
            assert np.array_equal(_as_ints(img.pixels, 16), values)
            assert np.array_equal(np.rint(img.pixels * np.float32(65535)), values)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("channels", [3, 4])
def test_sixteen_bit_colour_files_are_read_by_opencv_exactly(tmp_path, suffix, channels):
    # restore encodes these itself: an independent decoder must agree.
    values = _ints((19, 21, channels), 16)
    out = tmp_path / f"deep{suffix}"
    write_image(out, values[:, :, :3] / 65535.0, bit_depth=16,
                alpha=values[:, :, 3] / 65535.0 if channels == 4 else None)
    bgr = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    order = [2, 1, 0, 3][:channels]
    assert bgr.dtype == np.uint16 and np.array_equal(bgr[:, :, order], values)


def test_sixteen_bit_gray_alpha(tmp_path):
    values = _ints((9, 11, 2), 16)
    png, tif = tmp_path / "la.png", tmp_path / "la.tif"
    for out in (png, tif):
        write_image(out, values[:, :, :1] / 65535.0, alpha=values[:, :, 1] / 65535.0,
                    bit_depth=16)
    img = read_image(png)
    assert img.mode == "LA;16" and img.channels == 1 and img.bit_depth == 16
    assert np.array_equal(_as_ints(img.pixels, 16), values[:, :, :1])
    assert np.array_equal(_as_ints(img.alpha, 16), values[:, :, 1])
    # Neither Pillow nor OpenCV reads a 16-bit gray+alpha TIFF: it is written as RGBA.
    img = read_image(tif)
    assert img.channels == 3 and img.bit_depth == 16
    assert all(np.array_equal(_as_ints(img.pixels[:, :, i], 16), values[:, :, 0])
               for i in range(3))
    assert np.array_equal(_as_ints(img.alpha, 16), values[:, :, 1])


# -- files from other writers ----------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("channels", [3, 4])
def test_sixteen_bit_colour_from_opencv(tmp_path, suffix, channels):
    values = _ints((17, 13, channels), 16, seed=3)  # RGB(A)
    path = tmp_path / f"cv{suffix}"
    assert cv2.imwrite(str(path), values[:, :, [2, 1, 0, 3][:channels]])
    img = read_image(path)
    assert img.bit_depth == 16 and img.mode == ("RGB;16" if channels == 3 else "RGBA;16")
    assert np.array_equal(_as_ints(img.pixels, 16), values[:, :, :3])
    if channels == 4:
        assert np.array_equal(_as_ints(img.alpha, 16), values[:, :, 3])


def test_sixteen_bit_colour_at_a_non_ascii_path(tmp_path):
    values = _ints((5, 6, 3), 16)
    path = tmp_path / "Bild-ü-写真.png"
    write_image(path, values / 65535.0, bit_depth=16)
    assert np.array_equal(_as_ints(read_image(path).pixels, 16), values)


def test_sixteen_bit_gray_from_pillow(tmp_path):
    values = _ints((8, 9), 16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    img = read_image(tmp_path / "g16.png")
    assert img.mode == "I;16" and img.bit_depth == 16
    assert np.array_equal(_as_ints(img.pixels[:, :, 0], 16), values)


def test_rgba_keeps_alpha(tmp_path):
    values = _ints((10, 12, 4), 8)
    Image.fromarray(values, "RGBA").save(tmp_path / "rgba.png")
    img = read_image(tmp_path / "rgba.png")
    assert img.mode == "RGBA" and img.channels == 3
    assert np.array_equal(_as_ints(img.alpha, 8), values[:, :, 3])
    out = write_image(tmp_path / "out.webp", img.pixels, alpha=img.alpha)
    assert out.warnings == ()
    assert np.array_equal(_as_ints(read_image(out.path).alpha, 8), values[:, :, 3])


def test_palette_images(tmp_path):
    rgb = Image.fromarray(_ints((12, 16, 3), 8))
    pal = rgb.quantize(8)
    pal.save(tmp_path / "p.png")
    img = read_image(tmp_path / "p.png")
    assert img.mode == "P" and img.channels == 3 and img.alpha is None
    assert np.array_equal(_as_ints(img.pixels, 8), np.asarray(pal.convert("RGB")))

    pal.save(tmp_path / "pt.png", transparency=2)  # palette index 2 is transparent
    img = read_image(tmp_path / "pt.png")
    index = np.asarray(pal)
    assert img.channels == 3 and img.alpha is not None
    assert np.array_equal(img.alpha == 0, index == 2)

    gray = Image.fromarray(_ints((12, 16), 8)).quantize(8)  # a palette of grays
    gray.save(tmp_path / "pg.png")
    img = read_image(tmp_path / "pg.png")
    assert img.mode == "P" and img.channels == 1
    assert np.array_equal(_as_ints(img.pixels[:, :, 0], 8), np.asarray(gray.convert("L")))


def test_one_bit_and_gray_with_a_transparent_value(tmp_path):
    bits = _ints((9, 10), 8) > 127
    Image.fromarray(bits).save(tmp_path / "b.png")
    img = read_image(tmp_path / "b.png")
    assert img.mode == "1" and img.channels == 1 and img.bit_depth == 8
    assert np.array_equal(img.pixels[:, :, 0], bits.astype(np.float32))

    gray = _ints((9, 10), 8)
    Image.fromarray(gray).save(tmp_path / "lt.png", transparency=int(gray[0, 0]))
    img = read_image(tmp_path / "lt.png")
    assert img.channels == 1 and np.array_equal(img.alpha == 0, gray == gray[0, 0])


def test_cmyk_is_converted_to_rgb(tmp_path):
    cmyk = Image.fromarray(_quadrants()).convert("CMYK")
    fake_cmyk_icc = bytes(16) + b"CMYK" + bytes(16) + b"acsp" + bytes(92)
    for name, icc in (("plain.jpg", None), ("icc.jpg", fake_cmyk_icc), ("plain.tif", None)):
        cmyk.save(tmp_path / name, icc_profile=icc)
        img = read_image(tmp_path / name)
        assert img.mode == "CMYK" and img.channels == 3 and img.icc_profile is None
        with Image.open(tmp_path / name) as im:
            assert np.array_equal(_as_ints(img.pixels, 8), np.asarray(im.convert("RGB")))
        assert any("CMYK" in w for w in img.warnings)
        if icc:
            assert any("ICC" in w for w in img.warnings)


def test_float_and_32_bit_integer_images(tmp_path):
    f = np.linspace(0, 1, 48, dtype=np.float32).reshape(6, 8)
    Image.fromarray(f).save(tmp_path / "f.tif")
    img = read_image(tmp_path / "f.tif")
    assert img.mode == "F" and img.bit_depth == 16 and np.array_equal(img.pixels[:, :, 0], f)

    Image.fromarray(f * 3 - 1).save(tmp_path / "f2.tif")
    img = read_image(tmp_path / "f2.tif")
    assert img.pixels.min() == 0 and img.pixels.max() == 1
    assert any("clipped" in w for w in img.warnings)

    i = (np.arange(48, dtype=np.int32) * 1000).reshape(6, 8)
    Image.fromarray(i).save(tmp_path / "i.tif")
    img = read_image(tmp_path / "i.tif")
    assert img.mode == "I" and img.bit_depth == 16
    assert np.array_equal(_as_ints(img.pixels[:, :, 0], 16), i)

    Image.fromarray(i * 100).save(tmp_path / "i2.tif")
    with pytest.raises(ImageReadError) as err:
        read_image(tmp_path / "i2.tif")
    _check_error(err.value, tmp_path / "i2.tif", "unsupported mode I")


def test_animated_and_multi_page_files_give_their_first_frame(tmp_path):
    frames = [Image.fromarray(np.full((8, 10, 3), c, np.uint8)) for c in (40, 120, 200)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    img = read_image(tmp_path / "a.gif")
    assert img.format == "GIF"
    assert np.all(_as_ints(img.pixels, 8) == 40)
    assert img.warnings == ("animated (3 frames): only the first frame is restored",)

    frames[0].save(tmp_path / "m.tif", save_all=True, append_images=frames[1:2])
    img = read_image(tmp_path / "m.tif")
    assert np.all(_as_ints(img.pixels, 8) == 40)
    assert img.warnings == ("multi-page (2 frames): only the first frame is restored",)


# -- orientation and metadata ------------------------------------------------------------------

def test_jpeg_with_orientation_6_is_read_upright_and_written_with_orientation_1(tmp_path):
    src = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # stored landscape, displayed rotated 90 degrees clockwise
    exif[0x010F] = "Camera Maker"
    Image.fromarray(_quadrants(32, 64)).save(src, quality=95, exif=exif)

    img = read_image(src)
    assert (img.height, img.width) == (64, 32)  # portrait, as displayed
    # Clockwise: the stored left column becomes the top row, read right to left.
    def colour_at(y, x):
        return tuple(int(v) for v in np.round(img.pixels[y, x] * 255 / 85) * 85)
    assert colour_at(8, 24) == (255, 0, 0)     # stored top-left: red -> top-right
    assert colour_at(8, 8) == (0, 0, 255)      # stored bottom-left: blue -> top-left
    assert colour_at(56, 24) == (0, 255, 0)    # stored top-right: green -> bottom-right
    assert colour_at(56, 8) == (255, 255, 255)
    kept = Image.Exif()
    kept.load(img.exif)
    assert kept[ORIENTATION] == 1 and kept[0x010F] == "Camera Maker"

    out = write_image(tmp_path / "upright.jpg", img.pixels, exif=img.exif).path
    with Image.open(out) as written:
        assert written.size == (32, 64)
        assert written.getexif()[ORIENTATION] == 1
        assert written.getexif()[0x010F] == "Camera Maker"
    again = read_image(out)
    assert (again.height, again.width) == (64, 32)  # not rotated a second time


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_matches_pillow(tmp_path, orientation):
    values = _ints((5, 7, 4), 8)
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    Image.fromarray(values, "RGBA").save(tmp_path / "o.png", exif=exif)
    img = read_image(tmp_path / "o.png")
    with Image.open(tmp_path / "o.png") as im:
        expected = np.asarray(ImageOps.exif_transpose(im))
    assert np.array_equal(_as_ints(img.pixels, 8), expected[:, :, :3])
    assert np.array_equal(_as_ints(img.alpha, 8), expected[:, :, 3])


def test_write_image_resets_a_stale_orientation(tmp_path):
    exif = Image.Exif()
    exif[ORIENTATION] = 8
    exif[0x0110] = "Model X"
    out = write_image(tmp_path / "o.png", np.zeros((4, 6, 3)), exif=exif.tobytes()).path
    assert _exif_of(out)[ORIENTATION] == 1 and _exif_of(out)[0x0110] == "Model X"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's complaint is a note, never a warning
        out = write_image(tmp_path / "bad.png", np.zeros((4, 6, 3)), exif=b"Exif\0\0MM\0*junk")
    assert len(out.warnings) == 1 and out.warnings[0].startswith("exif is not valid EXIF data")
    assert not _exif_of(out.path)


def test_useful_exif_is_kept_and_the_rest_dropped(tmp_path):
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[ORIENTATION] = "Maker", "Model", 3
    exif[0x0131] = "Editor 1.0"
    exif[0x8769] = {0x9003: "2024:05:06 07:08:09", 0x829A: 0.01, 0x927C: b"vendor blob" * 10,
                    0xA002: 64, 0xA003: 32}
    exif[0x8825] = {0x0001: "N"}
    Image.fromarray(_quadrants()).save(tmp_path / "e.jpg", exif=exif)
    img = read_image(tmp_path / "e.jpg")
    kept = Image.Exif()
    kept.load(img.exif)
    assert kept[0x010F] == "Maker" and kept[0x0110] == "Model" and kept[0x0131] == "Editor 1.0"
    assert kept[ORIENTATION] == 1
    sub = kept.get_ifd(0x8769)
    assert sub[0x9003] == "2024:05:06 07:08:09" and float(sub[0x829A]) == 0.01
    assert 0x927C not in sub and 0xA002 not in sub and 0xA003 not in sub
    assert kept.get_ifd(0x8825)[0x0001] == "N"

    for suffix in (".png", ".jpg", ".webp", ".tif"):
        for bits in (8, 16):
            out = write_image(tmp_path / f"k{bits}{suffix}", img.pixels, exif=img.exif,
                              bit_depth=bits).path
            written = _exif_of(out)
            assert written[0x010F] == "Maker" and written[ORIENTATION] == 1, (suffix, bits)
            assert written.get_ifd(0x8769)[0x9003] == "2024:05:06 07:08:09", (suffix, bits)


def test_icc_profile_is_read_and_written(tmp_path):
    Image.fromarray(_quadrants()).save(tmp_path / "icc.png", icc_profile=SRGB_ICC)
    img = read_image(tmp_path / "icc.png")
    assert img.icc_profile == SRGB_ICC
    for suffix in (".png", ".jpg", ".webp", ".tif"):
        for bits in (8, 16):
            for alpha in (None, np.ones(img.pixels.shape[:2])):
                out = write_image(tmp_path / f"w{bits}{alpha is None}{suffix}", img.pixels,
                                  alpha=alpha, bit_depth=bits, icc_profile=img.icc_profile)
                with Image.open(out.path) as written:
                    assert written.info.get("icc_profile") == SRGB_ICC, (suffix, bits)
                assert read_image(out.path).icc_profile == SRGB_ICC


def test_icc_profile_of_the_wrong_colour_space_is_dropped(tmp_path):
    out = write_image(tmp_path / "g.png", np.zeros((4, 4, 1)), icc_profile=SRGB_ICC)
    assert out.warnings == ("the ICC profile is for RGB data, not gray: dropped",)
    with Image.open(out.path) as written:
        assert "icc_profile" not in written.info


def test_jpeg_inputs_carry_their_quantization_tables(tmp_path):
    Image.fromarray(_quadrants()).save(tmp_path / "q.jpg", quality=37)
    img = read_image(tmp_path / "q.jpg")
    assert img.format == "JPEG" and set(img.jpeg_qtables) == {0, 1}
    assert all(len(t) == 64 for t in img.jpeg_qtables.values())
    assert estimate_jpeg_quality(img.jpeg_qtables) == 37
    Image.fromarray(_quadrants()).save(tmp_path / "q.png")
    assert read_image(tmp_path / "q.png").jpeg_qtables is None


# -- read errors -------------------------------------------------------------------------------

def test_read_errors_name_the_file_and_the_reason(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "notes.png"
    text.write_text("not an image\n")
    Image.fromarray(_ints((64, 64, 3), 8)).save(tmp_path / "full.png")
    Image.fromarray(_ints((64, 64, 3), 8)).save(tmp_path / "full.jpg", quality=90)
    cut_png, cut_jpg = tmp_path / "cut.png", tmp_path / "cut.jpg"
    cut_png.write_bytes((tmp_path / "full.png").read_bytes()[:3000])
    cut_jpg.write_bytes((tmp_path / "full.jpg").read_bytes()[:2000])
    cases = [
        (tmp_path / "missing.png", "no such file"),
        (tmp_path, "is a folder"),
        (empty, "empty file"),
        (text, "not an image"),
        (cut_png, "corrupt or truncated"),
        (cut_jpg, "corrupt or truncated"),
    ]
    for path, reason in cases:
        with pytest.raises(ImageReadError) as err:
            read_image(path)
        _check_error(err.value, path, reason)
        assert isinstance(err.value, RestoreError)


def test_too_large_images_are_refused_before_decoding(tmp_path, monkeypatch):
    Image.fromarray(_quadrants(30, 40)).save(tmp_path / "big.png")
    with pytest.raises(ImageReadError) as err:
        read_image(tmp_path / "big.png", max_pixels=1000)
    _check_error(err.value, tmp_path / "big.png", "too large", "40x30 = 0.0 megapixels",
                 "the limit is 0.0 megapixels", "RESTORE_MAX_MEGAPIXELS=N raises it")
    assert read_image(tmp_path / "big.png", max_pixels=1200).height == 30
    monkeypatch.setenv("RESTORE_MAX_MEGAPIXELS", "0.001")  # 1000 pixels
    with pytest.raises(ImageReadError, match="the limit is 0.0 megapixels"):
        read_image(tmp_path / "big.png")
    monkeypatch.setenv("RESTORE_MAX_MEGAPIXELS", "0.0012")
    assert read_image(tmp_path / "big.png").height == 30
    assert rio.DEFAULT_MAX_PIXELS == 2 * Image.MAX_IMAGE_PIXELS


def test_pillow_bomb_warning_and_error_never_leak(tmp_path, monkeypatch):
    Image.fromarray(_quadrants(10, 15)).save(tmp_path / "150.png")  # 150 pixels
    Image.fromarray(_quadrants(20, 30)).save(tmp_path / "600.png")  # 600 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # warns above 100, fails above 200
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        img = read_image(tmp_path / "150.png")
    assert img.height == 10 and img.warnings == ()
    with pytest.raises(ImageReadError) as err:
        read_image(tmp_path / "600.png")
    _check_error(err.value, tmp_path / "600.png", "too large", "MAX_IMAGE_PIXELS")


# -- writing -----------------------------------------------------------------------------------

def test_jpeg_defaults_quality_95_with_full_chroma(tmp_path):
    out = write_image(tmp_path / "d.jpg", _quadrants() / 255.0).path
    with Image.open(out) as im:
        assert estimate_jpeg_quality(im.quantization) == rio.DEFAULT_QUALITY == 95
        assert JpegImagePlugin.get_sampling(im) == 0  # 4:4:4
    out = write_image(tmp_path / "q.jpg", _quadrants() / 255.0, quality=75).path
    with Image.open(out) as im:
        assert estimate_jpeg_quality(im.quantization) == 75
        assert JpegImagePlugin.get_sampling(im) == 2  # 4:2:0


def test_what_a_format_cannot_hold_is_dropped_with_a_note(tmp_path):
    rgb, alpha = np.full((4, 5, 3), 0.5), np.full((4, 5), 0.25)
    out = write_image(tmp_path / "a.jpg", rgb, alpha=alpha, bit_depth=16)
    assert out.warnings == ("JPEG has no alpha channel: transparency dropped",
                            "JPEG holds 8 bits per sample: written at 8 bits")
    with Image.open(out.path) as im:
        assert im.mode == "RGB"
    exif = Image.Exif()
    exif[0x010F] = "Maker"
    out = write_image(tmp_path / "a.bmp", rgb, alpha=alpha, icc_profile=SRGB_ICC,
                      exif=exif.tobytes())
    assert out.warnings == ("BMP has no alpha channel: transparency dropped",
                            "BMP cannot hold metadata: ICC profile and EXIF dropped")
    out = write_image(tmp_path / "a.webp", rgb, bit_depth=16)
    assert out.warnings == ("WEBP holds 8 bits per sample: written at 8 bits",)


def test_values_are_clipped_and_rounded(tmp_path):
    row = np.array([-0.5, 0.0, 0.49 / 255, 0.51 / 255, 254.5 / 255 - 1e-6, 1.0, 7.0])
    out = write_image(tmp_path / "c.png", row.reshape(1, -1))  # (H, W) is gray
    with Image.open(out.path) as im:
        assert im.mode == "L"
        assert np.asarray(im)[0].tolist() == [0, 0, 0, 1, 254, 255, 255]


def test_format_comes_from_the_suffix_or_the_argument(tmp_path):
    px = np.zeros((3, 3, 3))
    assert write_image(tmp_path / "x.JPEG", px).path.exists()
    write_image(tmp_path / "x.out", px, format="jpg")
    with Image.open(tmp_path / "x.out") as im:
        assert im.format == "JPEG"
    with pytest.raises(UsageError, match="suffix '.gif'.*png"):
        write_image(tmp_path / "x.gif", px)
    with pytest.raises(UsageError, match="unknown image format 'gif'.*BMP, JPEG, PNG"):
        write_image(tmp_path / "x.png", px, format="gif")
    assert sorted(os.listdir(tmp_path)) == ["x.JPEG", "x.out"]


@pytest.mark.parametrize("kwargs, message", [
    (dict(pixels=np.zeros((3, 3, 3), np.uint8)), "float"),
    (dict(pixels=np.zeros((3, 3, 2))), r"\(H, W, 1\) or \(H, W, 3\)"),
    (dict(pixels=np.full((3, 3, 3), np.nan)), "NaN"),
    (dict(alpha=np.zeros((3, 4))), "alpha"),
    (dict(bit_depth=12), "bit_depth"),
    (dict(quality=0), "quality"),
    (dict(quality=101), "quality"),
    (dict(quality=True), "quality"),
    (dict(quality=90.0), "quality"),
])
def test_bad_write_arguments_are_usage_errors(tmp_path, kwargs, message):
    args = dict(pixels=np.zeros((3, 3, 3))) | kwargs
    with pytest.raises(UsageError, match=message):
        write_image(tmp_path / "bad.jpg", **args)
    assert os.listdir(tmp_path) == []


# -- atomic writes -----------------------------------------------------------------------------

@pytest.fixture
def existing(tmp_path):
    path = tmp_path / "out.png"
    path.write_bytes(b"the previous image")
    return path


def test_a_failing_encoder_leaves_the_old_file_and_no_temporary(existing, monkeypatch):
    def broken_save(self, fp, *args, **kwargs):
        fp.write(b"\x89PNG half an image")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(ImageWriteError) as err:
        write_image(existing, np.zeros((4, 4, 3)))
    _check_error(err.value, existing, "cannot write: no space left on the device")
    assert existing.read_bytes() == b"the previous image"
    _only_file_left(existing.parent, "out.png")


def test_an_interrupt_mid_write_leaves_no_temporary(existing, monkeypatch):
    def interrupted(fp, *args):
        fp.write(b"\x89PNG partial")
        raise KeyboardInterrupt
    monkeypatch.setattr(rio, "_encode_png16", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_image(existing, np.zeros((4, 4, 3)), bit_depth=16)
    assert existing.read_bytes() == b"the previous image"
    _only_file_left(existing.parent, "out.png")


def test_a_failing_rename_leaves_the_old_file_and_no_temporary(existing, monkeypatch):
    def failing_replace(src, dst):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(ImageWriteError) as err:
        write_image(existing, np.zeros((4, 4, 3)))
    _check_error(err.value, existing, "cannot write: permission denied")
    assert existing.read_bytes() == b"the previous image"
    _only_file_left(existing.parent, "out.png")


def test_the_temporary_file_is_hidden_beside_the_target(existing, monkeypatch):
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append((os.fspath(src), os.fspath(dst)))
        assert os.path.getsize(src) > 0
        real_replace(src, dst)
    monkeypatch.setattr(os, "replace", spy)
    write_image(existing, np.zeros((4, 4, 3)))
    [(src, dst)] = seen
    assert dst == os.fspath(existing)
    assert os.path.dirname(src) == os.path.dirname(dst)
    assert re.fullmatch(r"\.out\.png\.[0-9a-f]{8}\.tmp", os.path.basename(src))
    assert existing.read_bytes().startswith(b"\x89PNG")
    _only_file_left(existing.parent, "out.png")


def test_a_folder_in_the_way_or_a_missing_folder_is_an_error(tmp_path):
    (tmp_path / "taken.png").mkdir()
    with pytest.raises(ImageWriteError) as err:
        write_image(tmp_path / "taken.png", np.zeros((2, 2, 3)))
    _check_error(err.value, tmp_path / "taken.png", "is a folder")
    with pytest.raises(ImageWriteError) as err:
        write_image(tmp_path / "nowhere" / "x.png", np.zeros((2, 2, 3)))
    _check_error(err.value, tmp_path / "nowhere" / "x.png", "does not exist")
    _only_file_left(tmp_path, "taken.png")


def test_permissions_are_those_of_a_normal_new_or_replaced_file(tmp_path, existing):
    existing.chmod(0o640)
    write_image(existing, np.zeros((2, 2, 3)))
    assert stat.S_IMODE(existing.stat().st_mode) == 0o640
    umask = os.umask(0)
    os.umask(umask)
    fresh = write_image(tmp_path / "new.png", np.zeros((2, 2, 3))).path
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o666 & ~umask


# -- suffixes ----------------------------------------------------------------------------------

def test_image_suffixes():
    assert set(IMAGE_SUFFIXES) == {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp"}
    for name in ("a.png", "b.JPG", "c.JpEg", "d.webp", "e.TIF", "f.tiff", "g.Bmp", "dir/h.png"):
        assert is_image_path(name), name
    for name in ("a.gif", "b.png.tmp", "c", "d.txt", ".png.bak", "e.pn"):
        assert not is_image_path(name), name


# -- walking a folder --------------------------------------------------------------------------

def test_walk_images_sorts_skips_hidden_and_returns_the_other_files(tmp_path):
    for rel in ("b.png", "A.JPG", "a-b.png", "a/z.webp", "a/deeper/y.tif", "notes.txt",
                "a/README", ".hidden.png", ".cache/x.png", "a/.dot/w.png", "a/.junk.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"not opened")
    (tmp_path / "folder.png").mkdir()  # a folder named like an image is neither
    (tmp_path / "link.png").symlink_to(tmp_path / "b.png")  # a link to a file counts
    (tmp_path / "gone.png").symlink_to(tmp_path / "nowhere.png")  # a broken one does not

    def rel(paths):
        return [p.relative_to(tmp_path).as_posix() for p in paths]

    images, others = walk_images(tmp_path)
    # pathlib's order, component by component: "a/..." before "a-b.png", "A" before "a".
    assert rel(images) == ["A.JPG", "a/deeper/y.tif", "a/z.webp", "a-b.png", "b.png",
                           "link.png"]
    assert rel(others) == ["a/README", "notes.txt"]
    images, others = walk_images(str(tmp_path), recursive=False)
    assert rel(images) == ["A.JPG", "a-b.png", "b.png", "link.png"]
    assert rel(others) == ["notes.txt"]
    # Hidden is judged below the folder walked, not on the folder's own path.
    assert rel(walk_images(tmp_path / ".cache")[0]) == [".cache/x.png"]
    for bad in (tmp_path / "b.png", tmp_path / "missing"):
        with pytest.raises(UsageError, match="not a folder"):
            walk_images(bad)
