"""Reading and writing image files: the only module of restore that opens them.

Inside restore an image is ``pixels``: (H, W, C) float32 in [0, 1], C = 1 (gray) or 3 (RGB),
upright (the EXIF orientation applied), with an optional ``alpha``: (H, W) float32 in [0, 1]
kept apart so that a model never sees it. ``read_image`` returns that plus what a writer
needs to give the output the input's look: bit depth, ICC profile, EXIF.

Decoding is Pillow's, except for 16-bit colour PNG and TIFF (RGB, RGBA, gray+alpha), which
Pillow silently reduces to 8 bits: those are decoded by OpenCV. Encoding is Pillow's, except
where neither Pillow nor OpenCV writes the file with its metadata: 16-bit PNG with more
than one channel (Pillow has no 16-bit colour mode; OpenCV writes no gray+alpha) and TIFF
(Pillow cannot write EXIF sub-IFDs through libtiff, OpenCV no ICC or EXIF in TIFF). restore
encodes those itself with zlib: PNG with the Paeth filter, TIFF with Adobe deflate and the
horizontal predictor, its tags serialized by Pillow. Two formats change a layout: WEBP has
no gray (libwebp stores gray as RGB), and a 16-bit gray+alpha TIFF is written as RGBA, since
neither Pillow nor OpenCV reads 16-bit gray+alpha TIFF back.

Every write is atomic: the file is encoded into a hidden temporary file in the target folder
(``.NAME.XXXXXXXX.tmp``), flushed to disk and renamed over the target, so a crash never
leaves half an image and a failed write leaves neither a temporary file nor a changed target.

What is kept from an input, and what is dropped:
- kept: ICC profile (but not a CMYK one: the pixels become RGB), the EXIF that describes the
  photo (IFD0 camera/author/date tags, the Exif and GPS IFDs) with the orientation reset to
  1, and a JPEG's quantization tables (to estimate its quality);
- dropped: EXIF thumbnail, MakerNote, the Exif pixel dimensions (they would be wrong after
  super-resolution), structural TIFF tags, XMP, DPI, PNG text chunks, every frame or page
  after the first (with a warning).
"""

from __future__ import annotations

import os
import stat
import struct
import warnings
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from .atomic import atomic_path
from .errors import RestoreError, UsageError, os_error_words

__all__ = [
    "DEFAULT_MAX_PIXELS", "DEFAULT_QUALITY", "FORMATS", "IMAGE_SUFFIXES", "ImageData",
    "ImageReadError", "ImageWriteError", "WriteResult", "is_image_path", "read_image",
    "walk_images", "write_image",
]


class ImageReadError(RestoreError):
    """An image file cannot be read: the message is one line, ``"PATH: reason"``."""


class ImageWriteError(RestoreError):
    """An image file cannot be written: the message is one line, ``"PATH: reason"``."""


# Suffix -> Pillow format name, for the formats restore reads and writes by name.
FORMATS: Mapping[str, str] = MappingProxyType({
    ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP",
    ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP",
})
IMAGE_SUFFIXES = tuple(FORMATS)

ALPHA_FORMATS = frozenset({"PNG", "WEBP", "TIFF"})
DEEP_FORMATS = frozenset({"PNG", "TIFF"})  # the ones that hold 16 bits per sample
METADATA_FORMATS = frozenset({"PNG", "JPEG", "WEBP", "TIFF"})  # ICC and EXIF

# 2 x PIL.Image.MAX_IMAGE_PIXELS: the largest image Pillow opens with its default bomb
# limit (about 179 MP, e.g. 16384 x 10922). RESTORE_MAX_MEGAPIXELS=N raises (or lowers)
# restore's limit, and then Pillow's with it: the only time restore touches Pillow's
# global settings, because the user asked for it.
DEFAULT_MAX_PIXELS = 178_956_970
MAX_MEGAPIXELS_ENV = "RESTORE_MAX_MEGAPIXELS"


def max_pixels_limit() -> int:
    """The largest image read: $RESTORE_MAX_MEGAPIXELS megapixels, else DEFAULT_MAX_PIXELS."""
    raw = os.environ.get(MAX_MEGAPIXELS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        limit = int(float(raw) * 1e6)
    except ValueError:
        raise UsageError(f"{MAX_MEGAPIXELS_ENV}={raw!r}: give a number of megapixels") from None
    if limit > 2 * Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = limit // 2 + 1
    return limit


def _bomb_hint(limit: int) -> str:
    return (f"the limit is {limit / 1e6:.1f} megapixels, a guard against decompression "
            f"bombs; {MAX_MEGAPIXELS_ENV}=N raises it to N megapixels")
DEFAULT_QUALITY = 95
# At and above this JPEG quality the chroma is kept at full resolution (4:4:4): a restored
# image is saved to be looked at closely; below it, 4:2:0 as libjpeg does by default.
JPEG_FULL_CHROMA_QUALITY = 90
JPEG_MAX_EXIF = 65533  # one APP1 segment

ORIENTATION = 0x0112
EXIF_IFD, GPS_IFD = 0x8769, 0x8825
# IFD0 tags that describe the photo rather than the file's layout.
KEEP_IFD0_TAGS = frozenset({
    0x010E,  # ImageDescription
    0x010F,  # Make
    0x0110,  # Model
    0x0131,  # Software
    0x0132,  # DateTime
    0x013B,  # Artist
    0x8298,  # Copyright
})
DROP_EXIF_TAGS = frozenset({
    0x927C,  # MakerNote: vendor blobs with absolute offsets that break when moved
    0xA002, 0xA003,  # PixelXDimension, PixelYDimension: wrong once the image is resized
    0xA005,  # Interoperability IFD pointer: would dangle
})


@dataclass(frozen=True, eq=False)
class ImageData:
    """A decoded image and the metadata a writer needs to reproduce its look.

    ``pixels``: (H, W, C) float32 in [0, 1], C = 1 (gray) or 3 (RGB), EXIF orientation
    applied. ``alpha``: (H, W) float32 in [0, 1] or None. ``bit_depth``: 8 or 16, the
    precision the source holds (16 for 16-bit, 32-bit integer and float sources).
    ``format``: Pillow's format name ("PNG", "JPEG", ...; a multi-picture JPEG is "JPEG").
    ``icc_profile`` and ``exif``: bytes to pass to ``write_image`` (EXIF as Pillow writes it,
    ``b"Exif\\0\\0"`` + TIFF structure, orientation 1). ``jpeg_qtables``: JPEG inputs only,
    {table id: 64 entries in natural (row-major) order}, table 0 being luminance.
    ``mode``: the source's Pillow mode; for 16-bit colour, which Pillow has no mode for,
    "RGB;16", "RGBA;16" or "LA;16". ``warnings``: one-line notes on what was lost.
    """

    pixels: np.ndarray
    alpha: np.ndarray | None
    bit_depth: int
    format: str
    icc_profile: bytes | None
    exif: bytes | None
    jpeg_qtables: dict[int, tuple[int, ...]] | None
    mode: str
    path: Path
    warnings: tuple[str, ...] = ()

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def channels(self) -> int:
        return int(self.pixels.shape[2])

    @property
    def is_gray(self) -> bool:
        return self.channels == 1


@dataclass(frozen=True)
class WriteResult:
    """What ``write_image`` wrote: the path, and one-line notes on what the format could
    not hold (alpha, 16 bits, ICC, EXIF) and was therefore dropped."""

    path: Path
    warnings: tuple[str, ...] = ()


def is_image_path(path: str | os.PathLike) -> bool:
    """Whether ``path`` has one of ``IMAGE_SUFFIXES`` (case-insensitive); the file is not
    opened."""
    return Path(path).suffix.lower() in FORMATS


def walk_images(folder: str | os.PathLike,
                recursive: bool = True) -> tuple[list[Path], list[Path]]:
    """The files in ``folder`` (and its subfolders, if ``recursive``) as (images, others).

    Both lists are sorted as pathlib sorts paths (component by component, so ``a/z.png``
    comes before ``a-b.png``) and hold ``folder / relative path``. Images are the files that
    ``is_image_path`` accepts; others are the remaining regular files, for a caller to report.
    Skipped, in neither list: hidden entries (a name starting with "." anywhere below
    ``folder``: a hidden folder with all it holds), folders, and what is not a file (broken
    links, sockets). Links to files count; linked folders are not entered (``Path.rglob``).
    Nothing is opened. A ``folder`` that is not one is a UsageError.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"{folder}: not a folder")
    images: list[Path] = []
    others: list[Path] = []
    for f in sorted(folder.rglob("*") if recursive else folder.glob("*")):
        if any(part.startswith(".") for part in f.relative_to(folder).parts) or not f.is_file():
            continue
        (images if is_image_path(f) else others).append(f)
    return images, others


# -- reading ---------------------------------------------------------------------------------

def read_image(path: str | os.PathLike, *, max_pixels: int | None = None) -> ImageData:
    """Decode the first frame of an image file (see the module docstring for what is kept).

    Raises ImageReadError, one line ``"PATH: reason"``, for a missing, empty, unreadable,
    corrupt or truncated file, a file that is not an image, an unsupported mode, and an
    image of more than ``max_pixels`` pixels (checked from the header, before decoding;
    None: ``max_pixels_limit()``).
    """
    path = Path(path)
    if max_pixels is None:
        max_pixels = max_pixels_limit()
    _check_readable(path)
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        # Pillow's own warnings (bomb, corrupt EXIF...) become notes: only the CLI prints.
        warnings.simplefilter("always")
        try:
            with Image.open(path) as im:
                width, height = im.size
                if width * height > max_pixels:
                    raise ImageReadError(
                        f"{path}: too large: {width}x{height} = "
                        f"{width * height / 1e6:.1f} megapixels ({_bomb_hint(max_pixels)})")
                data = _decode(im, path, notes)
        except ImageReadError:
            raise
        except Image.DecompressionBombError as exc:
            raise ImageReadError(f"{path}: too large for Pillow's decompression-bomb limit "
                                 f"(PIL.Image.MAX_IMAGE_PIXELS; {MAX_MEGAPIXELS_ENV}=N "
                                 f"raises it): {_first_line(exc)}") from None
        except UnidentifiedImageError:
            raise ImageReadError(f"{path}: not an image (or a format Pillow cannot read)") \
                from None
        except PermissionError:
            raise ImageReadError(f"{path}: permission denied") from None
        except MemoryError:
            raise ImageReadError(f"{path}: not enough memory to decode it") from None
        except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError,
                struct.error, zlib.error) as exc:
            # Pillow reports damage with any of these, depending on the format and the spot.
            raise ImageReadError(f"{path}: corrupt or truncated image ({_first_line(exc)})") \
                from None
    notes += [_first_line(w.message) for w in caught
              if not issubclass(w.category, Image.DecompressionBombWarning)]
    return ImageData(**data, path=path, warnings=tuple(dict.fromkeys(notes)))


def _check_readable(path: Path) -> None:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ImageReadError(f"{path}: no such file") from None
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot access ({_first_line(exc)})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageReadError(f"{path}: is a folder, not an image file")
    if st.st_size == 0:
        raise ImageReadError(f"{path}: empty file (0 bytes)")


def _first_line(exc: object) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _decode(im: Image.Image, path: Path, notes: list[str]) -> dict[str, Any]:
    """The ImageData fields of an open Pillow image (all but path and warnings)."""
    fmt = "JPEG" if im.format == "MPO" else (im.format or "")
    n_frames = getattr(im, "n_frames", 1)
    if n_frames > 1 and im.format != "MPO":  # an MPO's extra pictures are previews
        kind = "multi-page" if fmt == "TIFF" else "animated"
        notes.append(f"{kind} ({n_frames} frames): only the first frame is restored")
    qtables = None
    if fmt == "JPEG" and getattr(im, "quantization", None):
        qtables = {int(k): tuple(int(v) for v in t) for k, t in im.quantization.items()}
    mode = im.mode
    layout = _deep_colour_layout(im, path)
    if layout:
        pixels, alpha = _decode_opencv(path, gray=layout == "LA")
        mode = layout + ";16"
        bit_depth = 16
    else:
        im.load()
        pixels, alpha, bit_depth = _pixels_from_pillow(im, path, notes)
    orientation, exif = _useful_exif(im, notes, decoded=layout is None)
    icc = im.info.get("icc_profile") or None
    if icc is not None and im.mode == "CMYK":
        notes.append("CMYK converted to RGB without colour management; its CMYK ICC profile "
                     "is dropped")
        icc = None
    return dict(pixels=_orient(pixels, orientation),
                alpha=None if alpha is None else _orient(alpha, orientation),
                bit_depth=bit_depth, format=fmt, icc_profile=icc, exif=exif,
                jpeg_qtables=qtables, mode=mode)


def _deep_colour_layout(im: Image.Image, path: Path) -> str | None:
    """"LA", "RGB" or "RGBA" for a 16-bit colour or gray+alpha PNG/TIFF, which Pillow would
    decode to 8 bits; None for anything Pillow decodes fully."""
    if im.mode not in ("RGB", "RGBA", "LA"):
        return None
    if im.format == "PNG":
        with open(path, "rb") as f:
            head = f.read(26)
        if head[12:16] != b"IHDR" or head[24] != 16:  # IHDR bit depth
            return None
        return {2: "RGB", 4: "LA", 6: "RGBA"}.get(head[25])  # IHDR colour type
    if im.format == "TIFF":
        bits = im.tag_v2.get(258, (8,))  # BitsPerSample
        return im.mode if max(bits if isinstance(bits, tuple) else (bits,)) > 8 else None
    return None


def _decode_opencv(path: Path, gray: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """(pixels, alpha) decoded by OpenCV; ``gray``: the source is gray (+alpha)."""
    import cv2

    # imdecode rather than imread: non-ASCII paths. UNCHANGED keeps 16 bits and alpha and
    # ignores the EXIF orientation, which _decode applies for every decoder alike.
    raw = np.fromfile(path, dtype=np.uint8)
    a = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED)
    if a is None:
        raise ImageReadError(f"{path}: corrupt or truncated image (OpenCV cannot decode it)")
    if a.ndim == 2:
        a = a[:, :, None]
    scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(a.dtype, 1.0)
    f = np.clip(a.astype(np.float32) / np.float32(scale), 0.0, 1.0)
    c = f.shape[2]
    if c == 1:
        return np.ascontiguousarray(f), None
    if c == 2:
        return np.ascontiguousarray(f[:, :, :1]), np.ascontiguousarray(f[:, :, 1])
    alpha = np.ascontiguousarray(f[:, :, 3]) if c == 4 else None
    if gray:  # OpenCV expands gray+alpha to BGRA
        return np.ascontiguousarray(f[:, :, :1]), alpha
    return np.ascontiguousarray(f[:, :, 2::-1]), alpha  # BGR(A) -> RGB


def _pixels_from_pillow(im: Image.Image, path: Path,
                        notes: list[str]) -> tuple[np.ndarray, np.ndarray | None, int]:
    """(pixels, alpha, bit depth) of a loaded Pillow image of any mode restore supports."""
    mode = im.mode
    if mode.startswith("I;16"):
        a = np.asarray(im)
        if a.dtype.kind == "i" and a.min() < 0:
            raise ImageReadError(f"{path}: unsupported mode {mode} (negative values)")
        return a.astype(np.float32)[:, :, None] / np.float32(65535), None, 16
    if mode == "I":
        a = np.asarray(im)
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi > 65535:
            raise ImageReadError(f"{path}: unsupported mode I: 32-bit values {lo}..{hi} are "
                                 "outside 0..65535")
        return a.astype(np.float32)[:, :, None] / np.float32(65535), None, 16
    if mode == "F":
        a = np.asarray(im, dtype=np.float32)
        if not np.isfinite(a).all():
            raise ImageReadError(f"{path}: unsupported float image (NaN or infinite values)")
        if a.min() < 0 or a.max() > 1:
            notes.append(f"float values {a.min():.4g}..{a.max():.4g} clipped to [0, 1]")
        return np.clip(a, 0, 1)[:, :, None], None, 16
    # Pillow's has_transparency_data, which Pillow 10.0 lacks.
    with_alpha = (mode in ("LA", "La", "PA", "RGBA", "RGBa") or "transparency" in im.info
                  or (mode == "P" and im.palette is not None and im.palette.mode.endswith("A")))
    if mode in ("1", "L", "LA", "La") or (mode == "P" and _is_gray_palette(im)):
        target = "LA" if with_alpha else "L"
    elif mode in ("P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr"):
        target = "RGBA" if with_alpha else "RGB"
    else:
        raise ImageReadError(f"{path}: unsupported mode {mode}")
    if mode == "CMYK" and not im.info.get("icc_profile"):
        notes.append("CMYK converted to RGB without colour management")
    a = np.asarray(im if im.mode == target else im.convert(target), dtype=np.float32) / 255
    if a.ndim == 2:
        a = a[:, :, None]
    if with_alpha:
        return np.ascontiguousarray(a[:, :, :-1]), np.ascontiguousarray(a[:, :, -1]), 8
    return a, None, 8


def _is_gray_palette(im: Image.Image) -> bool:
    pal = im.getpalette(rawmode="RGB")
    if not pal:
        return False
    rgb = np.asarray(pal, dtype=np.uint8).reshape(-1, 3)
    return bool((rgb[:, 0] == rgb[:, 1]).all() and (rgb[:, 1] == rgb[:, 2]).all())


def _useful_exif(im: Image.Image, notes: list[str],
                 decoded: bool) -> tuple[int, bytes | None]:
    """(orientation 1..8, the EXIF worth keeping as bytes with orientation 1, or None);
    ``decoded``: whether Pillow has decoded the pixels (not when OpenCV did)."""
    try:
        if im.format == "PNG" and not decoded:
            # Pillow's PNG getexif would decode the pixels to look for an eXIf chunk after
            # them: a second decode of a large 16-bit image. Cameras write it before them.
            src = Image.Exif()
            if im.info.get("exif"):
                src.load(im.info["exif"])
        else:
            src = im.getexif()
        orientation = int(src.get(ORIENTATION, 1))
        keep = Image.Exif()
        for tag in KEEP_IFD0_TAGS & set(src):
            keep[tag] = src[tag]
        for ifd in (EXIF_IFD, GPS_IFD):
            sub = {k: v for k, v in src.get_ifd(ifd).items() if k not in DROP_EXIF_TAGS}
            if sub:
                keep[ifd] = sub
        exif = None
        if len(keep):
            keep[ORIENTATION] = 1
            exif = keep.tobytes()
    except Exception as exc:  # noqa: BLE001 (Pillow's EXIF parser raises anything on junk)
        notes.append(f"EXIF unreadable, dropped ({_first_line(exc)})")
        return 1, None
    return (orientation if 1 <= orientation <= 8 else 1), exif


def _orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation to an (H, W, ...) array (as PIL.ImageOps.exif_transpose)."""
    ops: dict[int, Callable[[np.ndarray], np.ndarray]] = {
        2: lambda x: x[:, ::-1],                        # mirror left-right
        3: lambda x: x[::-1, ::-1],                     # rotate 180
        4: lambda x: x[::-1],                           # mirror top-bottom
        5: lambda x: x.swapaxes(0, 1),                  # transpose
        6: lambda x: np.rot90(x, -1),                   # rotate 90 clockwise
        7: lambda x: np.rot90(x, 2).swapaxes(0, 1),     # transverse
        8: lambda x: np.rot90(x, 1),                    # rotate 90 counter-clockwise
    }
    op = ops.get(orientation)
    return a if op is None else np.ascontiguousarray(op(a))


# -- writing ---------------------------------------------------------------------------------

def write_image(path: str | os.PathLike, pixels: np.ndarray, *, alpha: np.ndarray | None = None,
                bit_depth: int = 8, format: str | None = None, quality: int | None = None,
                icc_profile: bytes | None = None, exif: bytes | None = None) -> WriteResult:
    """Encode ``pixels`` atomically into ``path`` (see the module docstring).

    ``pixels``: (H, W, C) or (H, W) float in [0, 1] (clipped, rounded), C = 1 or 3.
    ``alpha``: (H, W) float in [0, 1], written for PNG, WEBP and TIFF (16-bit gray+alpha
    TIFF as RGBA), dropped (with a note) for JPEG and BMP. ``bit_depth``: 16 is written by PNG and TIFF, other formats write 8
    (with a note). ``format``: a Pillow format name (PNG, JPEG, WEBP, TIFF, BMP; JPG is
    JPEG), by default from the suffix. ``quality``: JPEG and WEBP only, 1..100, default 95;
    JPEG is 4:4:4 at quality >= 90 and 4:2:0 below, Huffman-optimized. ``icc_profile`` and
    ``exif`` (``ImageData``'s) are embedded in PNG, JPEG, WEBP and TIFF, dropped for BMP.

    Returns the path and the notes on what was dropped. Raises UsageError for bad arguments
    and ImageWriteError ("PATH: reason") when the file cannot be written; then the target is
    unchanged and no temporary file is left.
    """
    path = Path(path)
    fmt = _output_format(path, format)
    samples = _as_samples(pixels, alpha)
    if bit_depth not in (8, 16):
        raise UsageError(f"bit_depth must be 8 or 16, got {bit_depth!r}")
    if quality is None:
        quality = DEFAULT_QUALITY
    elif isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise UsageError(f"quality must be an integer in 1..100, got {quality!r}")
    notes: list[str] = []
    if exif:  # pixels are upright: a stale orientation would rotate them again
        exif = _upright_exif(exif, notes)
    if alpha is not None and fmt not in ALPHA_FORMATS:
        notes.append(f"{fmt} has no alpha channel: transparency dropped")
        samples = samples[:, :, :-1]
    if bit_depth == 16 and fmt not in DEEP_FORMATS:
        notes.append(f"{fmt} holds 8 bits per sample: written at 8 bits")
        bit_depth = 8
    if (icc_profile or exif) and fmt not in METADATA_FORMATS:
        what = " and ".join(n for n, v in (("ICC profile", icc_profile), ("EXIF", exif)) if v)
        notes.append(f"{fmt} cannot hold metadata: {what} dropped")
        icc_profile = exif = None
    if fmt == "TIFF" and bit_depth == 16 and samples.shape[2] == 2:
        # Neither Pillow nor OpenCV reads 16-bit gray+alpha TIFF back (see the module doc).
        samples = samples[:, :, [0, 0, 0, 1]]
    if icc_profile and _icc_colour_space(icc_profile) != ("GRAY" if samples.shape[2] < 3
                                                          else "RGB"):
        notes.append(f"the ICC profile is for {_icc_colour_space(icc_profile) or 'unknown'} "
                     f"data, not {'gray' if samples.shape[2] < 3 else 'RGB'}: dropped")
        icc_profile = None
    if exif and fmt == "JPEG" and len(exif) > JPEG_MAX_EXIF:
        notes.append(f"EXIF of {len(exif)} bytes is too long for JPEG: dropped")
        exif = None
    values = quantize(samples, bit_depth, in_place=True)  # samples is write_image's own copy
    del samples  # freed before encoding: it is the largest array here

    def encode(fp: IO[bytes]) -> None:
        if fmt == "TIFF":
            _encode_tiff(fp, values, icc_profile, exif)
        elif fmt == "PNG" and bit_depth == 16 and values.shape[2] > 1:
            _encode_png16(fp, values, icc_profile, exif)
        else:
            _encode_pillow(fp, values, fmt, quality, icc_profile, exif)

    try:
        _write_atomically(path, encode)
    except ImageWriteError:
        raise
    except OSError as exc:  # the disk filled up, say: in words, the same as before a run
        raise ImageWriteError(f"{path}: cannot write: {os_error_words(exc)}") from None
    except (ValueError, TypeError, KeyError, struct.error, zlib.error) as exc:
        raise ImageWriteError(f"{path}: cannot write ({_first_line(exc)})") from None
    return WriteResult(path, tuple(notes))


def _icc_colour_space(icc: bytes) -> str | None:
    """The data colour space of an ICC profile ("RGB", "GRAY", "CMYK"...), from its header."""
    if len(icc) < 20:
        return None
    return icc[16:20].decode("latin-1").strip() or None


def _upright_exif(exif: bytes, notes: list[str]) -> bytes | None:
    """``exif`` with orientation 1; None when it is empty, or not EXIF (with a note)."""
    info = Image.Exif()
    problem = None
    with warnings.catch_warnings(record=True) as caught:  # Pillow warns on junk: a note
        warnings.simplefilter("always")
        try:
            info.load(exif)
        except Exception as exc:  # noqa: BLE001 (Pillow's EXIF parser raises anything on junk)
            problem = _first_line(exc)
    problem = problem or (_first_line(caught[0].message) if caught else None)
    if problem:
        notes.append(f"exif is not valid EXIF data, dropped ({problem})")
        return None
    if not len(info):
        return None
    if info.get(ORIENTATION, 1) == 1:
        return exif
    info[ORIENTATION] = 1
    return info.tobytes()


def _output_format(path: Path, format: str | None) -> str:
    names = sorted(set(FORMATS.values()))
    if format is None:
        fmt = FORMATS.get(path.suffix.lower())
        if fmt is None:
            raise UsageError(f"{path}: cannot tell the image format from the suffix "
                             f"{path.suffix!r}; known: {', '.join(IMAGE_SUFFIXES)}")
        return fmt
    fmt = {"JPG": "JPEG", "TIF": "TIFF"}.get(format.upper(), format.upper())
    if fmt not in names:
        raise UsageError(f"unknown image format {format!r}; known: {', '.join(names)}")
    return fmt


def quantize(samples: np.ndarray, bit_depth: int = 8, in_place: bool = False) -> np.ndarray:
    """Float samples in [0, 1] -> uint8 (or uint16 for ``bit_depth`` 16), rounded to the
    nearest level (half to even), as every written image is: the one rule for files and
    for the Python API's arrays. ``in_place`` scales ``samples`` itself (a float copy the
    caller owns)."""
    top = 65535 if bit_depth == 16 else 255
    scaled = np.multiply(samples, top, out=samples if in_place else None)
    return np.rint(scaled, out=scaled).astype(np.uint16 if bit_depth == 16 else np.uint8)


def _as_samples(pixels: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """(H, W, C[+1]) float in [0, 1], alpha last, as one new float32 (float64 if given)
    array; checks shapes, dtypes and finiteness."""
    p = np.asarray(pixels)
    if p.ndim == 2:
        p = p[:, :, None]
    if p.ndim != 3 or p.shape[2] not in (1, 3) or p.shape[0] < 1 or p.shape[1] < 1:
        raise UsageError(f"pixels must be (H, W, 1) or (H, W, 3), got shape {p.shape}")
    if p.dtype.kind != "f":
        raise UsageError(f"pixels must be float in [0, 1], got {p.dtype}")
    planes = [p]
    if alpha is not None:
        a = np.asarray(alpha)
        if a.ndim == 3 and a.shape[2] == 1:
            a = a[:, :, 0]
        if a.shape != p.shape[:2] or a.dtype.kind != "f":
            raise UsageError(f"alpha must be float (H, W) = {p.shape[:2]}, got {a.dtype} "
                             f"{a.shape}")
        planes.append(a[:, :, None])
    # float32 represents k / 65535 closely enough to round back to k; an output of several
    # hundred megapixels is why nothing here is float64 unless it came so.
    dtype = np.float64 if any(x.dtype == np.float64 for x in planes) else np.float32
    out = np.concatenate(planes, axis=2, dtype=dtype)
    if not np.isfinite(out).all():
        raise UsageError("pixels or alpha contain NaN or infinite values")
    return np.clip(out, 0.0, 1.0, out=out)


def _write_atomically(path: Path, encode: Callable[[IO[bytes]], None]) -> None:
    """Run ``encode`` on a hidden temporary file beside ``path``, then rename it into place
    (restore.atomic)."""
    folder = path.parent
    if path.is_dir():
        raise ImageWriteError(f"{path}: is a folder")
    if not folder.is_dir():
        raise ImageWriteError(f"{path}: the folder {folder} does not exist")
    with atomic_path(path) as tmp, open(tmp, "wb") as fp:
        encode(fp)


def _encode_pillow(fp: IO[bytes], values: np.ndarray, fmt: str, quality: int,
                   icc: bytes | None, exif: bytes | None) -> None:
    """PNG (8-bit, or 16-bit gray), JPEG, WEBP and BMP, with Pillow."""
    img = Image.fromarray(values[:, :, 0] if values.shape[2] == 1 else values)
    options: dict[str, Any] = {}
    if icc:
        options["icc_profile"] = icc
    if exif:
        options["exif"] = exif
    if fmt == "JPEG":
        options.update(quality=quality, optimize=True,
                       subsampling=0 if quality >= JPEG_FULL_CHROMA_QUALITY else 2)
    elif fmt == "WEBP":
        options.update(quality=quality)
    img.save(fp, format=fmt, **options)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ROWS_PER_BLOCK = 256  # rows filtered and compressed at a time: bounded memory


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _paeth_rows(raw: np.ndarray, prev: np.ndarray, bpp: int) -> np.ndarray:
    """PNG filter type 4 (Paeth) of rows ``raw`` (n, L) uint8 below row ``prev`` (L,), with a
    leading filter-type byte per row: (n, L + 1) uint8."""
    x = raw.astype(np.int16)
    up = np.concatenate([prev[None].astype(np.int16), x[:-1]])
    left = np.zeros_like(x)
    left[:, bpp:] = x[:, :-bpp]
    upleft = np.zeros_like(up)
    upleft[:, bpp:] = up[:, :-bpp]
    pa, pb, pc = np.abs(up - upleft), np.abs(left - upleft), np.abs(left + up - 2 * upleft)
    pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upleft))
    out = np.empty((x.shape[0], x.shape[1] + 1), dtype=np.uint8)
    out[:, 0] = 4
    out[:, 1:] = (x - pred) & 0xFF
    return out


def _encode_png16(fp: IO[bytes], values: np.ndarray, icc: bytes | None,
                  exif: bytes | None) -> None:
    """A 16-bit PNG of (H, W, C) uint16, C = 1..4 (gray, gray+alpha, RGB, RGBA)."""
    h, w, c = values.shape
    colour_type = (0, 4, 2, 6)[c - 1]
    fp.write(PNG_SIGNATURE)
    fp.write(_png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)))
    if icc:
        fp.write(_png_chunk(b"iCCP", b"ICC profile\0\0" + zlib.compress(icc)))
    if exif:
        fp.write(_png_chunk(b"eXIf", exif.removeprefix(b"Exif\0\0")))
    rows = values.astype(">u2").reshape(h, w * c).view(np.uint8)  # big-endian samples
    z = zlib.compressobj(6)
    prev = np.zeros(rows.shape[1], dtype=np.uint8)
    for y in range(0, h, ROWS_PER_BLOCK):
        block = rows[y:y + ROWS_PER_BLOCK]
        data = z.compress(_paeth_rows(block, prev, bpp=2 * c).tobytes())
        if data:
            fp.write(_png_chunk(b"IDAT", data))
        prev = block[-1]
    fp.write(_png_chunk(b"IDAT", z.flush()))
    fp.write(_png_chunk(b"IEND", b""))


def _encode_tiff(fp: IO[bytes], values: np.ndarray, icc: bytes | None,
                 exif: bytes | None) -> None:
    """A little-endian TIFF of (H, W, C) uint8 or uint16, C = 1..4 (gray, gray+alpha, RGB,
    RGBA): Adobe deflate with the horizontal predictor, unassociated alpha, ICC and EXIF
    (with its Exif and GPS IFDs); the tags are serialized by Pillow. (Pillow's own TIFF
    writer cannot write EXIF sub-IFDs through libtiff, and compresses nothing without it.)"""
    from PIL import TiffImagePlugin, TiffTags

    h, w, c = values.shape
    bits = values.dtype.itemsize * 8
    strips = []
    for y in range(0, h, ROWS_PER_BLOCK):
        block = values[y:y + ROWS_PER_BLOCK]
        diff = block.copy()
        diff[:, 1:] -= block[:, :-1]  # predictor 2: per-sample differences, modulo 2**bits
        strips.append(zlib.compress(diff.astype(diff.dtype.newbyteorder("<")).tobytes(), 6))
    ifd = TiffImagePlugin.ImageFileDirectory_v2(prefix=b"II")
    if exif:
        info = Image.Exif()
        info.load(exif)
        for tag in info:
            ifd[tag] = info.get_ifd(tag) if tag in TiffTags.TAGS_V2_GROUPS else info[tag]
    ifd[256], ifd[257] = w, h                       # ImageWidth, ImageLength
    ifd[258] = (bits,) * c                          # BitsPerSample
    ifd[259] = 8                                    # Compression: Adobe deflate
    ifd[262] = 2 if c >= 3 else 1                   # Photometric: RGB or BlackIsZero
    ifd[277] = c                                    # SamplesPerPixel
    ifd[278] = ROWS_PER_BLOCK                       # RowsPerStrip
    ifd[284] = 1                                    # PlanarConfiguration: contiguous
    ifd[317] = 2                                    # Predictor: horizontal
    ifd[339] = (1,) * c                             # SampleFormat: unsigned
    if c in (2, 4):
        ifd[338] = (2,)                             # ExtraSamples: unassociated alpha
    if icc:
        ifd[34675] = icc                            # ICC profile
    ifd[279] = tuple(len(s) for s in strips)        # StripByteCounts
    # StripOffsets, relative to the end of the tags: Pillow's tobytes adds that offset.
    ifd[273] = tuple(int(o) for o in np.cumsum([0] + [len(s) for s in strips[:-1]]))
    fp.write(b"II*\0" + struct.pack("<I", 8))
    fp.write(ifd.tobytes(8))
    for s in strips:
        fp.write(s)
