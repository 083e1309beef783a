"""Restoring files and folders: inputs -> planned outputs -> restored images on disk.

No printing here: the CLI reports what ``run_jobs`` yields. Rules a user can rely on:
- an input is never overwritten, and an output path equal to an input is refused;
- an existing output is skipped (``skip_existing``), replaced (``overwrite``) or refused;
- every output is written to a temporary file in its folder and renamed (restore.io), so a
  crash never leaves a half image;
- a bad file fails alone: the others are processed, and each failure names its file.

Images: grayscale goes through a 3-channel model as RGB and back (mean of the channels);
through a 1-channel model colour images go channel by channel. Alpha is not restored by
the model: for SR it is resized with bicubic interpolation to the output size, for denoise
and JPEG it is kept as is; then it is recombined with the restored colour.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from .errors import RestoreError, UsageError
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
    job: Job
    status: str  # "ok", "skipped", "failed"
    reason: str = ""
    seconds: float = 0.0
    info: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _is_hidden(p: Path) -> bool:
    return p.name.startswith(".")


def collect_inputs(inputs: Sequence[Path], recursive: bool = True,
                   ) -> tuple[list[tuple[Path, Path | None]], list[tuple[Path, str]]]:
    """Expand files and folders into (file, root folder or None) pairs, sorted.

    Returns (files, skipped) where skipped lists non-image files found in folders (with the
    reason): they are reported, not restored. A missing input is a UsageError.
    """
    from .io import is_image_path

    files: list[tuple[Path, Path | None]] = []
    skipped: list[tuple[Path, str]] = []
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            walker = p.rglob("*") if recursive else p.glob("*")
            for f in sorted(walker):
                rel = f.relative_to(p)
                if any(part.startswith(".") for part in rel.parts) or not f.is_file():
                    continue
                if is_image_path(f):
                    files.append((f, p))
                else:
                    skipped.append((f, f"not an image file ({f.suffix or 'no suffix'})"))
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


def plan_jobs(files: Sequence[tuple[Path, Path | None]], output: Path | None, suffix: str,
              fmt: OutputFormat, check: bool = True) -> list[Job]:
    """Output path of every input.

    output None: beside each input, ``name{suffix}.ext``. output a file path (an image
    suffix, not an existing folder): exactly that file, for exactly one input file.
    Otherwise a folder: inputs from a folder keep their sub-folder tree under it, single
    files go to its top. check: refuse collisions and outputs that are inputs.
    """
    single_file = output is not None and _looks_like_file(output, files)
    if single_file and check and (len(files) != 1 or files[0][1] is not None):
        raise UsageError(f"-o {output}: a file name takes exactly one input file; give a "
                         "folder for several inputs")
    jobs: list[Job] = []
    seen: dict[Path, Path] = {}
    for src, root in files:
        ext = src.suffix if fmt is OutputFormat.SAME else FORMAT_SUFFIX[fmt]
        if not ext:
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


def restore_file(job: Job, restore_fn: Callable, model_channels: int, scale: int,
                 opts: ImageOptions, existing: Existing,
                 before: Callable[[object], dict] | None = None) -> Result:
    """Read, restore, write one image. Errors of this file become a failed Result.

    restore_fn: (C, H, W) float32 tensor -> ((C, sH, sW) tensor, stats). before: called
    with the ImageData before restoring (for estimates); returns extra info to record.
    """
    import numpy as np
    import torch

    from .io import ImageReadError, read_image, write_image

    t0 = time.perf_counter()
    if job.target.exists():
        if existing is Existing.SKIP:
            return Result(job, "skipped", "output exists")
        if existing is Existing.REFUSE:
            return Result(job, "failed", f"output {job.target} exists "
                          "(use --overwrite or --skip-existing)")
    try:
        img = read_image(job.source)
    except ImageReadError as exc:
        return Result(job, "failed", str(exc))
    info = dict(before(img) or {}) if before else {}
    pix = img.pixels  # (H, W, C) float32 [0, 1]
    c = pix.shape[2]
    x = torch.from_numpy(np.ascontiguousarray(pix.transpose(2, 0, 1)))
    stats_list = []
    if model_channels == 3 and c == 1:
        y, st = restore_fn(x.expand(3, -1, -1).contiguous())
        y = y.mean(dim=0, keepdim=True)
        stats_list.append(st)
    elif model_channels == 1 and c == 3:
        outs = []
        for ch in range(3):
            yc, st = restore_fn(x[ch:ch + 1].contiguous())
            outs.append(yc)
            stats_list.append(st)
        y = torch.cat(outs)
    else:
        y, st = restore_fn(x)
        stats_list.append(st)
    out = y.clamp(0, 1).numpy().transpose(1, 2, 0)
    alpha = img.alpha
    if opts.outscale is not None:
        h, w = img.height, img.width
        out = _resize(out, round(h * opts.outscale), round(w * opts.outscale))
    if alpha is not None and (alpha.shape[0], alpha.shape[1]) != out.shape[:2]:
        alpha = _resize(alpha[..., None], out.shape[0], out.shape[1])[..., 0]
    try:
        job.target.parent.mkdir(parents=True, exist_ok=True)
        written = write_image(job.target, out, alpha=alpha, bit_depth=img.bit_depth,
                              quality=opts.output_quality, icc_profile=img.icc_profile,
                              exif=img.exif)
    except (RestoreError, OSError) as exc:
        return Result(job, "failed", str(exc))
    st = stats_list[0]
    info.update(tile=st.tile, tile_mode=st.tile_mode, tiles=sum(s.tiles for s in stats_list),
                fp32_recomputed=sum(s.fp32_recomputed for s in stats_list),
                width=out.shape[1], height=out.shape[0])
    notes = [n for s in stats_list for n in s.notes]
    return Result(job, "ok", seconds=time.perf_counter() - t0, info=info,
                  warnings=list(img.warnings) + list(written.warnings) + notes)


def _resize(a, h: int, w: int):
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


def run_jobs(jobs: Sequence[Job], restore_one: Callable[[Job], Result],
             fail_fast: bool = False) -> Iterator[Result]:
    """Restore each job in order, yielding results; stop after a failure with fail_fast."""
    for job in jobs:
        res = restore_one(job)
        yield res
        if fail_fast and res.status == "failed":
            return
