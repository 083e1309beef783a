"""``restore eval``: score a model or a baseline on benchmark sets, per the protocol.

Thin: options become a Protocol and a Method here, restore.evaluate does the work. Results
(the table, or JSON lines with --json) go to stdout; the progress bar, the table under
--json, and the elapsed time go to stderr.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import typer

from ..tasks import Task
from .app import app
from .process import ExactMemory, Tile, TileModeOpt, _exact_memory, _parse_tile, _tile_mode


def _fmt(v: float | None, digits: int) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _table(results, verbose: bool) -> list[str]:
    """Plain fixed-width rows: per-image rows (verbose) then one row per set."""
    with_y = any(r.psnr_y is not None for r in results)
    width = max([len("dataset")] + [len(r.dataset) for r in results]
                + ([len(s.name) for r in results for s in r.images] if verbose else []))
    head = f"{'dataset':<{width}}  {'n':>4}  {'PSNR':>8}  {'SSIM':>7}"
    head += f"  {'PSNR-Y':>8}  {'SSIM-Y':>7}" if with_y else ""
    lines = [head + "  on"]

    def row(label: str, n: str, p, s, py, sy, channel: str) -> str:
        line = f"{label:<{width}}  {n:>4}  {_fmt(p, 4):>8}  {_fmt(s, 5):>7}"
        line += f"  {_fmt(py, 4):>8}  {_fmt(sy, 5):>7}" if with_y else ""
        return line + f"  {channel}"

    for r in results:
        if verbose:
            lines += [row(s.name, "", s.psnr, s.ssim, s.psnr_y, s.ssim_y, s.channel.value)
                      for s in r.images]
        lines.append(row(r.dataset, str(r.n), r.psnr, r.ssim, r.psnr_y, r.ssim_y, r.channels))
    return lines


@app.command("eval")
def eval_cmd(
    task: Task = typer.Option(..., "--task", help="What to evaluate."),
    model: str = typer.Option(..., "--model", "-m",
                              help="A registry name (restore models list), a restore "
                                   "checkpoint file, or a baseline (bicubic for sr; identity "
                                   "for denoise/jpeg)."),
    data: list[Path] = typer.Option(..., "--data", "-d",
                                    help="Ground-truth folder (e.g. .../Set5/HR); repeat for "
                                         "several sets, one result per set."),
    scale: int | None = typer.Option(None, "--scale", "-s", help="sr: the factor (2, 3, 4)."),
    sigma: float | None = typer.Option(None, "--sigma", help="denoise: noise std on 0..255."),
    quality: int | None = typer.Option(None, "--quality", help="jpeg: quality 1..100."),
    lq: Path | None = typer.Option(None, "--lq",
                                   help="Use the degraded inputs in this folder (matched by "
                                        "name, e.g. LR_bicubic/X4) instead of making them."),
    seed: int = typer.Option(0, "--seed", help="denoise: seed of the noise generator."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also list every image."),
    json_out: bool = typer.Option(False, "--json",
                                  help="One JSON object per set on stdout (table to stderr)."),
    save: Path | None = typer.Option(None, "--save",
                                     help="Write the restored images as PNG under "
                                          "SAVE/<dataset>/."),
    device: str = typer.Option("cpu", "--device", metavar="cpu|cuda|cuda:N",
                               help="Where a model runs (fp32; TF32 off on CUDA)."),
    tile: Tile = "0",
    tile_mode: TileModeOpt = "auto",
    exact_memory: ExactMemory = None,
    precision: str = typer.Option("fp32", "--precision", metavar="fp32|bf16|fp16",
                                  help="Through the engine in bf16/fp16, as restore sr runs "
                                       "on a GPU (default: fp32, the protocol)."),
) -> None:
    """Score a model or a baseline on benchmark sets with the literature's protocol.

    sr: MATLAB bicubic LR, Y-PSNR/SSIM with the scale cropped; denoise: AWGN from a seeded
    generator, RGB; jpeg: libjpeg at the quality, gray sets on gray.
    """
    import json

    from .. import progress
    from ..errors import UsageError
    from ..evaluate import (
        Protocol, dataset_name, evaluate_folder, list_images, load_method,
    )

    start = time.perf_counter()
    protocol = Protocol.make(task.value, scale=scale, sigma=sigma, quality=quality, seed=seed)
    if lq is not None and len(data) != 1:
        raise UsageError("--lq goes with exactly one --data folder")
    counts = [len(list_images(folder)) for folder in data]  # fail early on a bad folder
    if precision.lower() not in ("fp32", "bf16", "fp16"):
        raise UsageError(f"--precision {precision!r}: one of fp32, bf16, fp16")
    method = load_method(model, task, device, tile=_parse_tile(tile),
                         tile_mode=_tile_mode(tile_mode).value, precision=precision.lower(),
                         exact_memory=_exact_memory(exact_memory))

    out = sys.stderr if json_out else sys.stdout
    print(f"restore eval: {protocol.describe()}, model {method.name}", file=sys.stderr)
    results = []
    for folder, count in zip(data, counts, strict=True):
        t0 = time.perf_counter()
        with progress.bar(count, desc=dataset_name(folder), unit="img", leave=False) as bar:
            result = evaluate_folder(protocol, folder, method, lq_folder=lq, save_dir=save,
                                     on_image=lambda _score: bar.update(1))
        results.append(result)
        if json_out:
            record = result.to_dict(per_image=verbose)
            record["seconds"] = round(time.perf_counter() - t0, 3)
            print(json.dumps(record), flush=True)
    print("\n".join(_table(results, verbose)), file=out)
    print(f"elapsed {time.perf_counter() - start:.1f} s", file=sys.stderr)
