"""``restore inspect``: the paper's analysis as a tool.

``inspect model`` runs a model on images and reports per-block feature magnitude, channel
entropy and fp16 headroom, with an fp16-safe verdict; ``inspect run`` compares the
statistics that ``restore train`` logged (the paper's Figure 1). Thin: restore.analysis does
the work (definitions in the docstring of restore.analysis.stats). Results go to stdout,
notes to stderr; matplotlib is needed for --plot only.
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from ..tasks import Task
from .app import app

inspect_app = typer.Typer(
    help="Feature magnitude, channel entropy and fp16 headroom of models and training runs "
         "(the i-LN paper's analysis).",
    no_args_is_help=True,
)
app.add_typer(inspect_app, name="inspect")

# Typer renders help with rich: paragraphs are kept line by line, so each definition is
# one short line and each prose paragraph one long line (rich wraps it).
ENTROPY = """  H         channel entropy in nats: E_c = mean over tokens of x_c^2,
            p_c = E_c / sum_c E_c, H = -sum_c p_c ln p_c
            (ln C when the energy is even over the C channels,
            0 when one channel holds all of it)
"""
DEFINITIONS = """
Per block (a module named ...blocks.N or ...swinN: the Swin blocks, the HABs, the Swin blocks of DRCT's groups), on the block's output tokens x (N tokens by C channels), in float64 from an fp32 forward:

  mean|x|   mean of |x| over tokens and channels (averaged over images)
  max|x|    max of |x| (max over images)
""" + ENTROPY
RUN_DEFINITIONS = """
Per block (a module named ...blocks.N or ...swinN), logged at each validation: on the block's output tokens x (N tokens by C channels) for the first validation image, from the trained weights (not the EMA), in float64 from an fp32 forward:

  mean|x|   mean of |x| over tokens and channels
  max|x|    max of |x|
""" + ENTROPY
VERDICT = """  headroom  65504 / max|x| (65504: the fp16 maximum), factor and log2

The any-layer max is the max |x| of every tensor going into or coming out of any module (each Linear, Conv2d, norm, attention, MLP, block). Verdict: fp16-safe when any-layer max x 16 < 65504; the margin of 16 is an assumption (larger images, tensors no hook sees, fp16 rounding), --margin changes it.
"""


class StatOption(str, Enum):
    max_abs = "max_abs"
    mean_abs = "mean_abs"
    entropy = "entropy"


JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON object on stdout instead of "
                                                      "the table.")]
PlotOpt = Annotated[Path | None, typer.Option(
    "--plot", metavar="OUT.png", help="Also draw a figure (.png, .pdf or .svg; needs "
                                      "matplotlib, the 'plot' extra of restore).")]


@inspect_app.command("model", help="Run a model on images and report, per block, mean |x|, "
                                   "max |x|, channel entropy and fp16 headroom, with an "
                                   "fp16-safe verdict.\n" + DEFINITIONS + VERDICT + """
Inputs get the model's degradation so that the activations are those of real use: SR the MATLAB bicubic 1/scale downscale (the image is the high-resolution one), denoising AWGN sigma 25 (seeded), JPEG a libjpeg round trip at quality 10; --as-is feeds them unchanged. The task comes from the registry entry or the file's metadata; a model with scale > 1 is SR; a scale-1 model that records no task needs --task.

--json schema: {"model", "family", "norm", "params", "task", "scale", "device",
  "images": [{"path", "size", "input_size", "degradation"}],
  "blocks": [{"layer", "mean_abs", "max_abs", "entropy", "max_entropy", "channels",
              "fp16_headroom"}],
  "overall": {"block_max", "block_max_layer", "any_layer_max", "any_layer_max_layer",
              "fp16_headroom", "fp16_headroom_log2"},
  "largest": [{"layer", "max_abs"}],
  "verdict": {"fp16_safe", "margin", "fp16_max", "rule"}}
""")
def model_command(
    model: Annotated[str, typer.Argument(
        metavar="NAME|CHECKPOINT", help="Registry name (see 'restore models list') or a "
                                        "restore .safetensors file.")],
    images: Annotated[list[Path] | None, typer.Argument(
        metavar="[IMAGE]...", help="Images to run (default: the bundled sample, a 160x160 "
                                   "crop of Kodak's kodim23).", show_default=False)] = None,
    task: Annotated[Task | None, typer.Option(
        "--task", help="For a scale-1 model that does not record its task.")] = None,
    as_is: Annotated[bool, typer.Option(
        "--as-is", help="Feed the images unchanged (no downscale, noise or JPEG).")] = False,
    sigma: Annotated[float, typer.Option(min=0, help="Denoising: AWGN sigma (0..255).")] = 25.0,
    quality: Annotated[int, typer.Option(min=1, max=100, help="JPEG: quality.")] = 10,
    seed: Annotated[int, typer.Option(min=0, help="Denoising: noise seed.")] = 0,
    max_side: Annotated[int, typer.Option(
        "--max-side", min=0, help="Centre-crop each image to at most this many pixels per "
                                  "side before degrading it (0: whole image).")] = 256,
    margin: Annotated[float, typer.Option(
        min=1.0, help="Safety factor of the verdict: fp16-safe when any-layer max x margin "
                      "< 65504.")] = 16.0,
    device: Annotated[str, typer.Option(help="cpu, auto, cuda, cuda:N or mps (the forward "
                                             "is fp32).")] = "cpu",
    offline: Annotated[bool, typer.Option("--offline",
                                          help="Use only downloaded/embedded models.")] = False,
    json_out: JsonOpt = False,
    plot: PlotOpt = None,
) -> None:
    from ..analysis.plots import require_matplotlib

    if plot is not None:  # before any work (even importing torch): a missing extra
        require_matplotlib()
    from ..analysis.plots import plot_model
    from ..analysis.report import (
        format_model_report,
        inspect_model,
        load_for_inspection,
        model_task,
        prepare_input,
        sample_image,
    )
    from ..engine.devices import resolve_device
    from ..io import ImageReadError

    dev = resolve_device(device)
    loaded = load_for_inspection(model, offline=offline)
    module = loaded.module
    kind = model_task(int(module.scale), loaded.task, task)
    probes, failed = [], 0
    for path in images or [sample_image()]:
        try:
            probes.append(prepare_input(path, kind, int(module.scale), module.config.in_chans,
                                        as_is=as_is, max_side=max_side, sigma=sigma,
                                        quality=quality, seed=seed))
        except ImageReadError as exc:  # a bad file fails alone (exit 1 at the end)
            print(f"restore: error: {exc}", file=sys.stderr)
            failed += 1
    if not probes:
        raise typer.Exit(1)
    report = inspect_model(module, probes, name=loaded.name, task=kind, device=dev,
                           margin=margin)
    _emit(report.to_dict() if json_out else format_model_report(report), plot,
          lambda path: plot_model(report, path))
    if failed:
        raise typer.Exit(1)


def _emit(out: dict | list[str], plot: Path | None, draw) -> None:
    """The report on stdout (a dict as one JSON line, else the table's lines); with --plot,
    the figure drawn by ``draw(path)`` and its path on stderr."""
    typer.echo(json.dumps(out) if isinstance(out, dict) else "\n".join(out))
    if plot is not None:
        print(f"plot: {draw(plot)}", file=sys.stderr)


@inspect_app.command("run", help="Compare the feature statistics that 'restore train' "
                                 "logged (RUN_DIR/stats.jsonl, one record per validation): "
                                 "per run, max |x| and channel entropy of each block at the "
                                 "first and last logged step.\n" + RUN_DEFINITIONS + """
--plot draws the paper's Figure 1 view: for each run (side by side) a heatmap of log10 of --stat (or the entropy itself) over (training step, block), and one of the channel entropy; each row of heatmaps shares one colour scale across the runs.

--json: {"stat", "transform": "log10"|"none", "scale": {"vmin", "vmax"},
  "entropy_scale": {"vmin", "vmax"},
  "runs": [{"run", "image", "steps", "blocks", "records"}]}, records being the lines of stats.jsonl
""")
def run_command(
    run_dirs: Annotated[list[Path], typer.Argument(
        metavar="RUN_DIR...", help="Run directories written by 'restore train' (or their "
                                   "stats.jsonl files).", show_default=False)],
    stat: Annotated[StatOption, typer.Option(
        "--stat", help="What the first row of heatmaps shows.")] = StatOption.max_abs,
    json_out: JsonOpt = False,
    plot: PlotOpt = None,
) -> None:
    from ..analysis.plots import plot_runs, require_matplotlib
    from ..analysis.runs import format_runs, load_runs

    if plot is not None:
        require_matplotlib()
    view = load_runs(run_dirs, stat.value)
    _emit(view.to_dict() if json_out else format_runs(view), plot,
          lambda path: plot_runs(view, path))
