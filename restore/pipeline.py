"""Restoring files and folders: inputs -> planned outputs -> restored images on disk.

No printing here: the CLI reports what ``restore_files`` yields. Rules a user can rely on:
- an input is never overwritten, and an output path equal to an input is refused;
- an existing output is skipped (``skip_existing``), replaced (``overwrite``) or refused;
- every output is written to a temporary file in its folder and renamed (restore.io), so a
  crash never leaves a half image;
- a bad file fails alone: the others are processed, and each failure names its file;
- results come in the order of the inputs, also when reading and writing overlap the model
  (``restore_files``: one thread decodes the next inputs, another writes the last output).

Images: grayscale goes through a 3-channel model as RGB and back (mean of the channels);
through a 1-channel model colour images go channel by channel. Alpha is not restored by
the model: for SR it is resized with bicubic interpolation to the output size, for denoise
and JPEG it is kept as is; then it is recombined with the restored colour.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from .errors import DestinationError, RestoreError, UsageError, os_error_words
from .tasks import Task


class OutputFormat(str, Enum):
    SAME = "same"
    PNG = "png"
    JPG = "jpg"
    WEBP = "webp"
    TIFF = "tiff"


class Existing(str, Enum):
    """What to do when an output file already exists."""

    REFUSE = "refuse"
    SKIP = "skip"
    OVERWRITE = "overwrite"


FORMAT_SUFFIX = {OutputFormat.PNG: ".png", OutputFormat.JPG: ".jpg", OutputFormat.WEBP: ".webp",
                 OutputFormat.TIFF: ".tif"}


@dataclass(frozen=True)
class Job:
    """One input file and where its output goes."""

    source: Path
    target: Path


@dataclass
class Result:
    """What happened to one job.

    info (status "ok"): what ``restore --json`` records besides the CLI's own keys (input,
    output, status, task, model, device, precision, seconds): ``tile`` (side in input
    pixels, null for the whole image), ``tile_mode`` ("exact", "independent" or null),
    ``tiles``, ``fp32_recomputed``, ``width`` and ``height`` of the output, ``timing``:
    {"read_s", "restore_s", "write_s"}, seconds spent decoding the input, in the model
    (all its calls, with the tensor conversions) and resizing/encoding/writing the output,
    and the keys that ``before`` returns. seconds: the sum of those stages and ``before``;
    when reading and writing overlap the model (``restore_files``), the seconds of a folder
    add up to more than its wall time.
    """

    job: Job
    status: str  # "ok", "skipped", "failed"
    reason: str = ""
    seconds: float = 0.0
    info: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def collect_inputs(inputs: Sequence[Path], recursive: bool = True,
                   ) -> tuple[list[tuple[Path, Path | None]], list[tuple[Path, str]]]:
    """Expand files and folders into (file, root folder or None) pairs, sorted within each
    folder (restore.io.walk_images: hidden files and folders are left out).

    Returns (files, skipped) where skipped lists non-image files found in folders (with the
    reason): they are reported, not restored. A missing input is a UsageError.
    """
    from .io import walk_images

    files: list[tuple[Path, Path | None]] = []
    skipped: list[tuple[Path, str]] = []
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            images, others = walk_images(p, recursive)
            files += [(f, p) for f in images]
            skipped += [(f, f"not an image file ({f.suffix or 'no suffix'})") for f in others]
        elif p.is_file():
            files.append((p, None))
        elif p.exists():
            raise UsageError(f"{p}: not a regular file or folder")
        else:
            raise UsageError(f"{p}: no such file or folder")
    return files, skipped


def _abs(p: Path) -> Path:
    return Path(os.path.abspath(p))


def drop_earlier_outputs(files: Sequence[tuple[Path, Path | None]], output: Path | None,
                         suffix: str, fmt: OutputFormat,
                         ) -> tuple[list[tuple[Path, Path | None]], list[tuple[Path, str]]]:
    """Remove inputs that are outputs of this very plan (a re-run over a folder that holds
    earlier results) or that lie inside the output folder. Duplicates are removed too."""
    out_dir = _abs(output) if output is not None and not _looks_like_file(output, files) else None
    unique: dict[Path, tuple[Path, Path | None]] = {}
    for f, root in files:
        unique.setdefault(_abs(f), (f, root))
    kept = list(unique.values())
    dropped: list[tuple[Path, str]] = []
    if out_dir is not None:
        inside = [(f, r) for f, r in kept if r is not None and out_dir in _abs(f).parents]
        dropped += [(f, "inside the output folder (an earlier output)") for f, _ in inside]
        kept = [x for x in kept if x not in inside]
    targets = {_abs(j.target) for j in plan_jobs(kept, output, suffix, fmt, check=False)}
    earlier = [(f, r) for f, r in kept if r is not None and _abs(f) in targets]
    dropped += [(f, "an output of this command (an earlier result)") for f, _ in earlier]
    return [x for x in kept if x not in earlier], dropped


def _looks_like_file(output: Path, files: Sequence[tuple[Path, Path | None]]) -> bool:
    from .io import is_image_path

    return not output.is_dir() and is_image_path(output)


def check_destinations(jobs: Sequence[Job]) -> None:
    """Create every output folder of ``jobs`` and make sure a file can be written in it,
    before any model loads: DestinationError naming the folder and the reason in words (a
    file in the way, no permission, a read-only file system, no space)."""
    import tempfile

    for folder in sorted({j.target.parent for j in jobs}):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".restore-probe-"):
                pass
            room = os.statvfs(folder)
            if room.f_bavail == 0 and room.f_blocks > 0:
                raise OSError(errno.ENOSPC, "no space")
        except OSError as exc:
            raise DestinationError(f"{folder}: cannot write outputs there: "
                                   f"{os_error_words(exc)}") from None


def plan_jobs(files: Sequence[tuple[Path, Path | None]], output: Path | None, suffix: str,
              fmt: OutputFormat, check: bool = True) -> list[Job]:
    """Output path of every input.

    output None: beside each input, ``name{suffix}.ext`` (with ``fmt`` same, ext is the
    input's, or .png for an input in a format restore does not write, such as GIF). output
    a file path (an image suffix, not an existing folder): exactly that file, for exactly
    one input file.
    Otherwise a folder: inputs from a folder keep their sub-folder tree under it, single
    files go to its top. check: refuse collisions and outputs that are inputs.
    """
    from .io import FORMATS

    single_file = output is not None and _looks_like_file(output, files)
    if single_file and check and (len(files) != 1 or files[0][1] is not None):
        raise UsageError(f"-o {output}: a file name takes exactly one input file; give a "
                         "folder for several inputs")
    jobs: list[Job] = []
    seen: dict[Path, Path] = {}
    for src, root in files:
        ext = src.suffix if fmt is OutputFormat.SAME else FORMAT_SUFFIX[fmt]
        if ext.lower() not in FORMATS:  # none, or one restore reads but cannot write (.gif)
            ext = ".png"
        name = f"{src.stem}{suffix}{ext}"
        if single_file:
            target = output
        elif output is None:
            target = src.with_name(name)
        elif root is not None:
            target = output / src.relative_to(root).with_name(name)
        else:
            target = output / name
        key = _abs(target)
        if key in seen and check:
            raise UsageError(f"{src} and {seen[key]} would both be written to {target}; "
                             "use --suffix or separate runs")
        seen[key] = src
        jobs.append(Job(source=src, target=target))
    if not check:
        return jobs
    inputs = {_abs(s) for s, _ in files}
    for job in jobs:
        if Path(os.path.abspath(job.target)) in inputs or (
                job.target.exists() and any(_same(job.target, s) for s, _ in files)):
            raise UsageError(f"{job.source}: output {job.target} is an input; refusing to "
                             "overwrite inputs (choose -o or a --suffix)")
    return jobs


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def shard(jobs: Sequence[Job], rank: int, world: int) -> list[Job]:
    """The jobs of one process out of ``world`` (torchrun): every job in exactly one shard."""
    return [j for i, j in enumerate(jobs) if i % world == rank]


@dataclass(frozen=True)
class ImageOptions:
    task: Task
    output_quality: int = 95
    outscale: float | None = None


@dataclass(frozen=True)
class _Loaded:
    """An input read and converted for the model (possibly in the reader thread)."""

    img: Any  # restore.io.ImageData
    x: Any  # (C, H, W) float32 CPU tensor in [0, 1]: img.pixels, channels first
    seconds: float


@dataclass(frozen=True)
class _Restored:
    """The model's output for one input, not yet written."""

    y: Any  # (C, sH, sW) float32 CPU tensor, C = the input's channels, not clamped
    stats: list  # restore.engine.RunStats, one per model call
    seconds: float


def _existing_output(job: Job, existing: Existing) -> Result | None:
    """The result of a job whose output exists and is not to be replaced, else None."""
    if job.target.exists():
        if existing is Existing.SKIP:
            return Result(job, "skipped", "output exists")
        if existing is Existing.REFUSE:
            return Result(job, "failed", f"output {job.target} exists "
                          "(use --overwrite or --skip-existing)")
    return None


def _load(job: Job, io_lock=None) -> _Loaded:
    """Decode the input; raises ImageReadError (a failure of this file). io_lock: see
    _restore_overlapped."""
    import numpy as np
    import torch

    from .io import read_image

    with io_lock or contextlib.nullcontext():
        t0 = time.perf_counter()  # the wait for the lock is not reading
        img = read_image(job.source)
    pix = img.pixels  # (H, W, C) float32 [0, 1]
    x = torch.from_numpy(np.ascontiguousarray(pix.transpose(2, 0, 1)))
    return _Loaded(img, x, time.perf_counter() - t0)


def _read_ahead(job: Job, existing: Existing, io_lock) -> Result | _Loaded:
    """The reader thread's work: an early Result (existing output, unreadable file) or the
    loaded input. Any other exception reaches the main thread through the future."""
    from .io import ImageReadError

    early = _existing_output(job, existing)
    if early is not None:
        return early
    try:
        return _load(job, io_lock)
    except ImageReadError as exc:
        return Result(job, "failed", str(exc))


def run_channels(x, restore_fn: Callable, model_channels: int) -> tuple[Any, list]:
    """(C, H, W) float32 tensor through ``restore_fn`` -> ((C, sH, sW) tensor, its RunStats
    per call): gray through a 3-channel model as RGB and back (the three outputs averaged),
    colour through a 1-channel model channel by channel. The one rule for files, folders
    and the Python API."""
    import torch

    c = x.shape[0]
    stats = []
    if model_channels == 3 and c == 1:
        y, st = restore_fn(x.expand(3, -1, -1).contiguous())
        y = y.mean(dim=0, keepdim=True)
        stats.append(st)
    elif model_channels == 1 and c == 3:
        outs = []
        for ch in range(3):
            yc, st = restore_fn(x[ch:ch + 1].contiguous())
            outs.append(yc)
            stats.append(st)
        y = torch.cat(outs)
    else:
        y, st = restore_fn(x)
        stats.append(st)
    return y, stats


def _run_model(loaded: _Loaded, restore_fn: Callable, model_channels: int) -> _Restored:
    t0 = time.perf_counter()
    y, stats = run_channels(loaded.x, restore_fn, model_channels)
    return _Restored(y, stats, time.perf_counter() - t0)


def _save(job: Job, img, restored: _Restored, opts: ImageOptions,
          io_lock=None) -> tuple[object, tuple, float]:
    """Resize (--outscale, alpha), encode and write atomically (possibly in the writer
    thread). Returns (WriteResult, (height, width) written, seconds). Raises RestoreError or
    OSError (a failure of this file). io_lock: see _restore_overlapped."""
    import numpy as np

    from .io import ImageWriteError, write_image

    t0 = time.perf_counter()
    # numpy, not torch: clip gives the same values as clamp, and the writer thread must not
    # start a second pool of torch threads next to the model's
    out = np.clip(restored.y.numpy(), 0, 1).transpose(1, 2, 0)
    alpha = img.alpha
    if opts.outscale is not None:
        out = resize(out, round(img.height * opts.outscale), round(img.width * opts.outscale))
    if alpha is not None and (alpha.shape[0], alpha.shape[1]) != out.shape[:2]:
        alpha = resize(alpha[..., None], out.shape[0], out.shape[1])[..., 0]
    try:
        job.target.parent.mkdir(parents=True, exist_ok=True)
        prepare = time.perf_counter() - t0
        with io_lock or contextlib.nullcontext():
            t1 = time.perf_counter()  # the wait for the lock is not writing
            written = write_image(job.target, out, alpha=alpha, bit_depth=img.bit_depth,
                                  quality=opts.output_quality, icc_profile=img.icc_profile,
                                  exif=img.exif)
            seconds = prepare + time.perf_counter() - t1
    except OSError as exc:  # the disk filled up mid-run, say: nothing partial is left
        raise ImageWriteError(f"{job.target}: cannot write: {os_error_words(exc)}") from None
    return written, out.shape[:2], seconds


def _ok(job: Job, info: dict, loaded: _Loaded, restored: _Restored, saved: tuple,
        before_s: float) -> Result:
    written, (height, width), write_s = saved
    stats = restored.stats
    info = dict(info)
    info.update(tile=stats[0].tile, tile_mode=stats[0].tile_mode,
                tiles=sum(s.tiles for s in stats),
                fp32_recomputed=sum(s.fp32_recomputed for s in stats),
                width=width, height=height,
                timing={"read_s": round(loaded.seconds, 4),
                        "restore_s": round(restored.seconds, 4),
                        "write_s": round(write_s, 4)})
    notes = [n for s in stats for n in s.notes]
    return Result(job, "ok", seconds=loaded.seconds + before_s + restored.seconds + write_s,
                  info=info,
                  warnings=list(loaded.img.warnings) + list(written.warnings) + notes)


def restore_file(job: Job, restore_fn: Callable, model_channels: int, scale: int,
                 opts: ImageOptions, existing: Existing,
                 before: Callable[[object], dict] | None = None,
                 choose: Callable[[object], tuple[Callable, int]] | None = None) -> Result:
    """Read, restore, write one image, one step after the other. Errors of this file
    become a failed Result.

    restore_fn: (C, H, W) float32 tensor -> ((C, sH, sW) tensor, stats). before: called
    with the ImageData before restoring (for estimates); returns extra info to record.
    choose: where the model depends on the image (one of several, by its noise level or
    JPEG quality), the ImageData -> (restore_fn, model_channels) to use instead; called
    before the model, in the caller's thread; it must not print (``before`` reports).
    """
    from .io import ImageReadError

    early = _existing_output(job, existing)
    if early is not None:
        return early
    try:
        loaded = _load(job)
    except ImageReadError as exc:
        return Result(job, "failed", str(exc))
    t0 = time.perf_counter()
    info = dict(before(loaded.img) or {}) if before else {}
    if choose is not None:
        restore_fn, model_channels = choose(loaded.img)
    before_s = time.perf_counter() - t0  # choose's estimates count with before's
    restored = _run_model(loaded, restore_fn, model_channels)
    try:
        saved = _save(job, loaded.img, restored, opts)
    except (RestoreError, OSError) as exc:
        return Result(job, "failed", str(exc))
    return _ok(job, info, loaded, restored, saved, before_s)


def resize(a, h: int, w: int):
    """High-quality resize of (H, W, C) float32: area when shrinking, Lanczos when enlarging."""
    import cv2
    import numpy as np

    if h < 1 or w < 1:
        raise UsageError(f"--outscale gives an empty image ({w}x{h})")
    interp = cv2.INTER_AREA if h < a.shape[0] and w < a.shape[1] else cv2.INTER_LANCZOS4
    r = cv2.resize(np.ascontiguousarray(a), (w, h), interpolation=interp)
    if r.ndim == 2:
        r = r[..., None]
    return np.clip(r, 0, 1)


def fail_on_restore_error(job: Job, exc: Exception) -> Result:
    """The default ``on_error`` of ``restore_files``: a RestoreError is a failure of its
    file; anything else is a bug and is raised."""
    if isinstance(exc, RestoreError):
        return Result(job, "failed", str(exc))
    raise exc


def restore_files(jobs: Sequence[Job], restore_fn: Callable, model_channels: int, scale: int,
                  opts: ImageOptions, existing: Existing,
                  before: Callable[[object], dict] | None = None, *,
                  choose: Callable[[object], tuple[Callable, int]] | None = None,
                  on_error: Callable[[Job, Exception], Result] = fail_on_restore_error,
                  fail_fast: bool = False, overlap: bool = True,
                  prefetch: int = 2) -> Iterator[Result]:
    """Restore every job, yielding one Result per job in the order of ``jobs``.

    Arguments as for ``restore_file``. on_error: maps an exception raised for one file
    (other than the read and write errors that ``restore_file`` reports itself) to its
    Result, or re-raises it to stop the run; it is called in the caller's thread.
    fail_fast: stop after the first failed Result.

    overlap (default): the model runs in the caller's thread while one thread decodes the
    next ``prefetch`` inputs and another encodes and writes the previous output, so the
    device does not wait on files. What the caller sees is what ``overlap=False`` (one
    ``restore_file`` after the other) gives: the same files, byte for byte, the same
    Results in the same order, and nothing of an image (``before``, a Result) before the
    Result of the image ahead of it, because:
    - at most one write is under way, and it has been collected (its Result yielded)
      before ``before`` is called for the next image and before anything else is yielded;
      so no write is under way while the caller holds a Result, and a caller that stops
      (fail-fast, an exception, Ctrl-C between results) leaves no unreported output;
    - ``before`` runs after the model instead of before it (its info does not feed the
      model): if it raises, the image fails with that error and nothing is written;
    - a failure in the writer thread (a full disk, a read-only folder) is the failure of
      that image, reported in its place; the run goes on (or stops with fail_fast).
    Memory: at most ``prefetch`` decoded inputs ahead, one image in the model, one being
    written. An interruption in the middle of the model (Ctrl-C) waits for the write under
    way, which completes (atomically, as every write), yields its Result, and then raises
    the KeyboardInterrupt: the caller counts every output that was written.
    It pays where the model runs on a GPU and leaves the CPU cores to the two threads; on
    a CPU the model and the threads share the cores, and benchmarks/folder.py measured no
    gain on 2 cores (there, overlap=False).
    """
    if not overlap:
        for job in jobs:
            try:
                res = restore_file(job, restore_fn, model_channels, scale, opts, existing,
                                   before=before, choose=choose)
            except Exception as exc:  # noqa: BLE001 (on_error decides)
                res = on_error(job, exc)
            yield res
            if fail_fast and res.status == "failed":
                return
        return
    yield from _restore_overlapped(jobs, restore_fn, model_channels, opts, existing, before,
                                   choose, on_error, fail_fast, max(1, prefetch))


def _restore_overlapped(jobs, restore_fn, model_channels, opts, existing, before, choose,
                        on_error, fail_fast, prefetch) -> Iterator[Result]:
    """restore_files with a reader thread and a writer thread (see its docstring)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    # read_image and write_image catch Pillow's warnings with warnings.catch_warnings,
    # which swaps process-wide state: two at once in two threads can leave the process's
    # warnings going to a dead list. So the two threads take turns at restore.io (both
    # still overlap the model, which is what pays).
    io_lock = threading.Lock()
    reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="restore-read")
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="restore-write")
    todo = iter(jobs)
    ahead: deque = deque()  # (job, future of _read_ahead), in order, at most prefetch
    writing = None  # (job, future of _save, what its Result needs) of the image before

    def collect() -> Result:
        job, future, loaded, restored, info, before_s = writing
        try:
            saved = future.result()
        except (RestoreError, OSError) as exc:
            return Result(job, "failed", str(exc))
        except Exception as exc:  # noqa: BLE001 (on_error decides)
            return on_error(job, exc)
        return _ok(job, info, loaded, restored, saved, before_s)

    try:
        for job in itertools.islice(todo, prefetch):
            ahead.append((job, reader.submit(_read_ahead, job, existing, io_lock)))
        while ahead:
            job, reading = ahead.popleft()
            nxt = next(todo, None)
            if nxt is not None:
                ahead.append((nxt, reader.submit(_read_ahead, nxt, existing, io_lock)))
            early = err = loaded = restored = None
            choose_s = 0.0
            try:
                got = reading.result()
            except Exception as exc:  # noqa: BLE001
                err = exc
            else:
                early, loaded = (got, None) if isinstance(got, Result) else (None, got)
            if loaded is not None:
                try:
                    fn, channels = restore_fn, model_channels
                    if choose is not None:
                        t0 = time.perf_counter()
                        fn, channels = choose(loaded.img)
                        choose_s = time.perf_counter() - t0  # counted with before's time
                    restored = _run_model(loaded, fn, channels)
                except Exception as exc:  # noqa: BLE001
                    err = exc
            if writing is not None:  # the image before comes first
                res, writing = collect(), None
                yield res
                if fail_fast and res.status == "failed":
                    return
            info, before_s = {}, choose_s
            if loaded is not None and before is not None:
                t0 = time.perf_counter()
                try:
                    info = dict(before(loaded.img) or {})
                except Exception as exc:  # noqa: BLE001 (as when it runs first: its error wins)
                    err = exc
                before_s += time.perf_counter() - t0
            if early is None and err is None:
                saving = writer.submit(_save, job, loaded.img, restored, opts, io_lock)
                writing = (job, saving, loaded, restored, info, before_s)
                continue
            res = early if early is not None else on_error(job, err)
            yield res
            if fail_fast and res.status == "failed":
                return
        if writing is not None:
            res, writing = collect(), None
            yield res
    except KeyboardInterrupt:
        if writing is not None:  # the image before is being written: report it, then stop
            res, writing = collect(), None
            yield res
        raise
    finally:
        # on an early stop: drop the reads not started, finish the ones under way (and a
        # write, which is atomic); the threads are gone when this returns
        reader.shutdown(wait=True, cancel_futures=True)
        writer.shutdown(wait=True, cancel_futures=True)

