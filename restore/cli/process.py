"""``restore sr``, ``restore denoise``, ``restore jpeg``: restore files and folders.

The three commands share their options (defined once below). Written output paths go to
stdout (or one JSON line per output with --json); everything else goes to stderr.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..levels import Level, LevelPicker, quality_level, sigma_level, span_text
from ..loader import Loaded, load_for_task
from .app import app

# -- shared option definitions ----------------------------------------------------------
Inputs = Annotated[list[Path], typer.Argument(help="Image files and/or folders.", show_default=False)]
Output = Annotated[Optional[Path], typer.Option(
    "-o", "--output", help="Output folder (default: beside each input), or a file for one input.")]
Suffix = Annotated[Optional[str], typer.Option(
    help="Appended to output file names (default: _x2/_x3/_x4, _denoise, _jpeg). '' for none.")]
Format = Annotated[str, typer.Option(
    "--format", help="Output format: same, png, jpg, webp or tiff (same: the input's, or png "
                     "for inputs in other formats, such as GIF).")]
OutQuality = Annotated[int, typer.Option(
    "--output-quality", min=1, max=100, help="Quality of lossy output (jpg, webp).")]
Recursive = Annotated[bool, typer.Option("--recursive/--no-recursive",
                                         help="Descend into sub-folders of folder inputs.")]
SkipExisting = Annotated[bool, typer.Option("--skip-existing", help="Leave existing outputs alone.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs (never inputs).")]
FailFast = Annotated[bool, typer.Option(
    "--fail-fast/--keep-going",
    help="Stop at the first bad file, or (default) go on, report, and exit 1 at the end.")]
Model = Annotated[Optional[str], typer.Option(
    "--model", "-m", help="Registry name (see 'restore models list') or a .safetensors file.")]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")]
PrecisionOpt = Annotated[str, typer.Option(
    "--precision", help="auto (fp16/bf16 on GPU where safe, fp32 on CPU), fp32, bf16 or fp16.")]
Tile = Annotated[str, typer.Option(
    help="Tile side in input pixels, 0 for the whole image, or auto (from free memory).")]
TileOverlap = Annotated[Optional[int], typer.Option(
    "--tile-overlap", min=0,
    help="Independent tiles: context per side in pixels (default: 2 windows, at least 16).")]
TileModeOpt = Annotated[str, typer.Option(
    "--tile-mode", help="auto (exact for i-LN and HAT, independent otherwise), exact "
                        "(whole-image result, statistics carried across tiles) or independent "
                        "(faster, approximate for models with whole-image statistics).")]
ExactMemory = Annotated[Optional[str], typer.Option(
    "--exact-memory",
    help="Host RAM that exact tiling may keep its whole-image feature maps in, e.g. 4G or "
         "800M (default: a quarter of the free memory, at most 1G); beyond it they go to "
         "a scratch file in $TMPDIR, removed as they are freed.")]
Batch = Annotated[int, typer.Option(min=1, help="Independent tiles per forward pass.")]
Outscale = Annotated[Optional[float], typer.Option(
    min=0.01, help="Final size relative to the input (model, then high-quality resize).")]
TTA = Annotated[bool, typer.Option("--tta", help="x8 self-ensemble (flips, rotations): slower, a bit better.")]
Offline = Annotated[bool, typer.Option("--offline", help="Use only downloaded/embedded models.")]
Quiet = Annotated[bool, typer.Option("-q", "--quiet", help="No progress bars or notes.")]
JsonOut = Annotated[bool, typer.Option("--json", help="One JSON line per output on stdout.")]


@dataclass(frozen=True)
class Common:
    """The options the three commands share, declared once: each field's annotation is its
    command-line option (above) and its default the option's default. ``restore_command``
    puts them in each command's signature, after the command's own parameters."""

    inputs: Inputs
    output: Output = None
    suffix: Suffix = None
    fmt: Format = "same"
    output_quality: OutQuality = 95
    recursive: Recursive = True
    skip_existing: SkipExisting = False
    overwrite: Overwrite = False
    fail_fast: FailFast = False
    model: Model = None
    device: Device = "auto"
    precision: PrecisionOpt = "auto"
    tile: Tile = "auto"
    tile_overlap: TileOverlap = None
    tile_mode: TileModeOpt = "auto"
    exact_memory: ExactMemory = None
    batch: Batch = 1
    outscale: Outscale = None
    tta: TTA = False
    offline: Offline = False
    quiet: Quiet = False
    json: JsonOut = False


def restore_command(name: str):
    """Register ``func(own..., common: Common)`` as the command ``name``: Typer sees the
    function's own parameters, then every field of Common as an option (``inputs`` as an
    argument, placed where the function declares ``inputs`` if it does), and the function
    gets the shared ones as one Common."""
    import functools
    import inspect
    import typing
    from dataclasses import MISSING, fields

    types = typing.get_type_hints(Common, include_extras=True)

    def register(func):
        own = [p for p in inspect.signature(func, eval_str=True).parameters.values()
               if p.name != "common"]
        own_names = {p.name for p in own}
        shared = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY,
                                    annotation=types[f.name],
                                    default=inspect.Parameter.empty if f.default is MISSING
                                    else f.default)
                  for f in fields(Common) if f.name not in own_names]
        params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + shared

        @functools.wraps(func)
        def command(**kwargs):
            common = Common(**{f.name: kwargs[f.name] for f in fields(Common)})
            return func(**{k: v for k, v in kwargs.items() if k in own_names}, common=common)

        command.__signature__ = inspect.Signature(params)
        command.__annotations__ = {p.name: p.annotation for p in params}
        return app.command(name, no_args_is_help=True)(command)

    return register


def _say(common: Common, msg: str) -> None:
    if not common.quiet:
        print(msg, file=sys.stderr)


class _Terminated(KeyboardInterrupt):
    """SIGTERM raised where Ctrl-C raises KeyboardInterrupt, so the same clean-up runs: the
    write under way finishes or removes its temporary file (restore.atomic), and the command
    says what it finished instead of dying with a hidden temporary file beside an output."""

    def __init__(self, signum: int) -> None:
        super().__init__()
        self.signum = signum


def _emit(line: str) -> None:
    """One result line on stdout in one write: under torchrun several processes share the
    pipe unbuffered (PYTHONUNBUFFERED), and print's separate write of the newline let two
    ranks' paths run together on one line."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """For the block, SIGTERM (a batch scheduler's stop, ``kill``) raises _Terminated in the
    main thread. Nothing changes outside the main thread (no signal handlers there) or where
    SIGTERM is ignored (whoever started the process asked for that)."""
    import threading

    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is signal.SIG_IGN:
        yield
        return

    def handler(signum, frame):
        raise _Terminated(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        # None: a handler set outside Python, which cannot be put back; the default then
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _parse_tile(value: str) -> int:
    from ..engine import TILE_AUTO
    from ..errors import UsageError

    v = value.strip().lower()
    if v == "auto":
        return TILE_AUTO
    try:
        n = int(v)
    except ValueError:
        raise UsageError(f"--tile {value!r}: give a number of pixels, 0 or auto") from None
    if n < 0:
        raise UsageError(f"--tile {value}: must be >= 0")
    return n


def _exact_memory(value: str | None) -> int | None:
    from ..engine.maps import parse_size
    from ..errors import UsageError

    if value is None:
        return None
    try:
        return parse_size(value)
    except ValueError as exc:
        raise UsageError(f"--exact-memory {exc}") from None


def _tile_mode(value: str):
    from ..engine import TileMode
    from ..errors import UsageError

    try:
        return TileMode(value.lower())
    except ValueError:
        raise UsageError(f"--tile-mode {value!r}: one of auto, exact, independent") from None


def _cpu_bytes_per_pixel(lm: Loaded) -> float:
    """Rough peak memory per input pixel of a whole-image fp32 forward (for --tile auto
    off CUDA, where it cannot be measured cheaply): about 32 feature maps of the body's
    width alive at once, plus the reconstruction head's maps at the output resolution."""
    cfg = lm.module.config
    return 4.0 * (32 * cfg.embed_dim + 2 * 64 * lm.scale * lm.scale)


def _dist_rank() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment (0, 1, 0 without it)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    return rank, world, local


def run_command(task_name: str, scale: int, common: Common, default_suffix: str,
                level: Level | None = None) -> None:
    """Everything the three commands share: plan, load, restore, report, exit code."""
    import torch
    from .. import progress

    from ..engine import Precision, Restorer, resolve_device, resolve_precision
    from ..errors import Interrupted, RestoreError, UsageError
    from ..pipeline import (
        Existing, ImageOptions, OutputFormat, Result, Task, check_destinations, collect_inputs,
        drop_earlier_outputs, plan_jobs, restore_files, shard,
    )

    task = Task(task_name)
    if common.skip_existing and common.overwrite:
        raise UsageError("--skip-existing and --overwrite contradict each other")
    try:
        fmt = OutputFormat(common.fmt.lower())
    except ValueError:
        raise UsageError(f"--format {common.fmt!r}: one of same, png, jpg, webp, tiff") from None
    existing = (Existing.SKIP if common.skip_existing else
                Existing.OVERWRITE if common.overwrite else Existing.REFUSE)
    # every option is checked before any model is loaded (which may mean a download)
    tile = _parse_tile(common.tile)
    tile_mode = _tile_mode(common.tile_mode)
    exact_memory = _exact_memory(common.exact_memory)
    try:
        requested_precision = Precision(common.precision.lower())
    except ValueError:
        raise UsageError(f"--precision {common.precision!r}: one of auto, fp32, bf16, fp16") from None
    files, skipped = collect_inputs(common.inputs, common.recursive)
    suffix = default_suffix if common.suffix is None else common.suffix
    files, earlier = drop_earlier_outputs(files, common.output, suffix, fmt)
    skipped += earlier
    jobs = plan_jobs(files, common.output, suffix, fmt)
    rank, world, local = _dist_rank()
    if world > 1:
        jobs = shard(jobs, rank, world)
    for path, reason in skipped if rank == 0 else []:
        _say(common, f"{path}: skipped: {reason}")
    if not files:
        raise UsageError("no image files among the inputs")
    if existing is Existing.SKIP:  # decided before any model is loaded: a re-run does no work
        for job in [j for j in jobs if j.target.exists()]:
            _say(common, f"{job.source}: skipped: {job.target} exists")
        jobs = [j for j in jobs if not j.target.exists()]
    if not jobs:
        return
    check_destinations(jobs)  # a folder that cannot take the outputs fails before any load

    device = resolve_device(common.device)
    if world > 1 and device.type == "cuda" and ":" not in common.device:
        device = torch.device("cuda", local % torch.cuda.device_count())  # one GPU per rank
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if device.type == "cpu" and world > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    models = load_for_task(task, scale, common.model, common.offline,
                           level.given if level is not None else None)
    precision, warning = resolve_precision(requested_precision, device,
                                           all(m.fp16_safe for m in models))
    if warning:
        _say(common, f"restore: warning: {warning}")
    for m in models:
        m.module.to(device)

    def tile_bar(total: int):  # exact tiling: passes x tiles, counted before it starts
        return progress.bar(total or None, desc="tiles", unit="tile", leave=False,
                            quiet=common.quiet)

    smallest = max(m.size_multiple for m in models)
    if 0 < tile < smallest:
        _say(common, f"restore: note: --tile {tile} is below the smallest tile the model takes "
                     f"(one {smallest}-pixel window): using {smallest}")
    restorers = {
        m.name: Restorer(m.module, scale=m.scale, size_multiple=m.size_multiple,
                         device=device, precision=precision, tile=tile,
                         overlap=common.tile_overlap, batch=common.batch, tta=common.tta,
                         tile_mode=tile_mode, progress=tile_bar, exact_memory=exact_memory,
                         bytes_per_pixel=_cpu_bytes_per_pixel(m) if device.type != "cuda" else None)
        for m in models}
    opts = ImageOptions(task=task, output_quality=common.output_quality, outscale=common.outscale)
    lm = models[0]
    choose = before = None
    if level is not None:
        picker = LevelPicker(level, models, say=lambda msg: _say(common, msg))
        before = picker.before
        if len(models) > 1:
            def pick(img):
                m = picker.pick(img)
                return restorers[m.name], m.in_chans
            choose = pick
    names = ", ".join(m.name + (f" ({level.name} {span_text(m.span)})"
                                if len(models) > 1 and m.span else "") for m in models)
    _say(common, f"restore {task.value}: {len(jobs)} image(s), model{'s' * (len(models) > 1)} "
                 f"{names}, {device}, {precision.value}")

    def on_error(job, exc: Exception) -> Result:
        if isinstance(exc, RestoreError):
            return Result(job, "failed", str(exc))
        if os.environ.get("RESTORE_DEBUG"):
            raise exc
        # a bug must not stop the other files
        return Result(job, "failed", f"internal error: {type(exc).__name__}: {exc} "
                                     "(rerun with RESTORE_DEBUG=1 for a traceback)")

    failed = 0
    # no bars when stderr is not a terminal (logs stay readable): restore.progress
    bar = progress.bar(len(jobs), desc=task.value, unit="img",
                       quiet=common.quiet or len(jobs) < 2)
    # on a GPU the next images are read and the last one written while the model runs
    # (on a CPU they would take cores from the model: measured no gain, benchmarks/folder.py);
    # results and messages come in the order of the inputs either way
    results = restore_files(jobs, restorers[lm.name], lm.in_chans, lm.scale, opts, existing,
                            before=before, choose=choose, on_error=on_error,
                            fail_fast=common.fail_fast, overlap=device.type != "cpu")
    done = 0
    try:
        with _sigterm_as_interrupt(), contextlib.closing(results):
            for res in results:
                done += 1
                job = res.job
                bar.update()
                for w in res.warnings:
                    progress.write(f"{job.source}: warning: {w}")
                if res.status in ("failed", "skipped") and common.json:
                    _emit(json.dumps({"input": str(job.source), "output": None,
                                      "status": res.status, "reason": res.reason}))
                if res.status == "failed":
                    failed += 1
                    reason = res.reason.removeprefix(f"{job.source}: ")
                    progress.write(f"{job.source}: error: {reason}")
                    continue  # restore_files stops after it with fail_fast
                if res.status == "skipped":
                    if not common.quiet:
                        progress.write(f"{job.source}: skipped: {res.reason}")
                    continue
                if common.json:
                    _emit(json.dumps({"input": str(job.source), "output": str(job.target),
                                      "status": "ok", "task": task.value, "model": lm.name,  # info's wins (several)
                                      "device": str(device), "precision": precision.value,
                                      "seconds": round(res.seconds, 3), **res.info}))
                else:
                    _emit(str(job.target))
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (_sigterm_as_interrupt)
        bar.close()
        signum = getattr(exc, "signum", signal.SIGINT)
        # with --overwrite, the outputs not reached are still the earlier ones: skipping
        # existing outputs would keep them
        again = ("the outputs not reached yet are the earlier ones: the same command redoes "
                 "them all" if common.overwrite else
                 "the same command with --skip-existing does the rest")
        failures = f" ({failed} failed)" if failed else ""
        raise Interrupted(f"{signal.Signals(signum).name}: stopped after {done} of {len(jobs)} "
                          f"image(s){failures}, every output written whole; {again}",
                          signum) from None
    bar.close()
    if failed:
        _say(common, f"restore: {failed} of {len(jobs)} file(s) failed")
        raise typer.Exit(1)


@restore_command("sr")
def sr_cmd(
    scale: Annotated[str, typer.Argument(help="x2, x3 or x4.", show_default=False)],
    *, common: Common,
) -> None:
    """Super-resolve images by x2, x3 or x4."""
    from ..errors import UsageError

    s = scale.lower().removeprefix("x")
    if s not in ("2", "3", "4"):
        raise UsageError(f"scale {scale!r}: one of x2, x3, x4")
    run_command("sr", int(s), common, f"_x{s}")


@restore_command("denoise")
def denoise_cmd(
    inputs: Inputs,
    sigma: Annotated[Optional[float], typer.Option(
        min=0, max=255,
        help="Noise level on the 0..255 scale (default: estimated per image). Recorded, "
             "checked against the model's range, and, where the default is several models "
             "(one per range), picks the model; the models are blind to it.")] = None,
    *, common: Common,
) -> None:
    """Remove Gaussian noise (sigma on the 0..255 scale, estimated when not given)."""
    run_command("denoise", 1, common, "_denoise", level=sigma_level(sigma))


@restore_command("jpeg")
def jpeg_cmd(
    inputs: Inputs,
    quality: Annotated[Optional[int], typer.Option(
        "--quality", min=1, max=100,
        help="JPEG quality the inputs were saved with (default: read from each JPEG's "
             "quantization tables). It picks the model of the default ones (one per range "
             "of quality) and is checked against its range (a warning outside it). The "
             "output's own quality is --output-quality.")] = None,
    *, common: Common,
) -> None:
    """Remove JPEG compression artifacts."""
    run_command("jpeg", 1, common, "_jpeg", level=quality_level(quality))
