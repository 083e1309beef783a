"""``restore train``: train a model from a TOML config; ``restore train-export``: ship a run.

Heavy imports (torch, the training package) happen inside the command bodies.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import List, Optional

import typer

from .app import app


@app.command("train")
def train_command(
    config: Optional[Path] = typer.Argument(
        None, help="TOML config (see configs/). With --resume it defaults to RUN_DIR/config.toml."),
    set_: List[str] = typer.Option([], "--set", metavar="KEY=VALUE",
                                   help="Override a config value, e.g. --set train.lr=1e-4 "
                                        "(repeatable; the value is read as TOML)."),
    resume: Optional[Path] = typer.Option(None, "--resume", metavar="RUN_DIR",
                                          help="Continue the run in RUN_DIR where it stopped."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
) -> None:
    """Train (or fine-tune) a restoration model; checkpoints and logs go to run.dir.

    Multi-GPU / multi-node: launch with torchrun, e.g.
    torchrun --nproc-per-node 4 -m restore train config.toml
    """
    from ..errors import UsageError
    from ..train.config import load_config

    overrides = list(set_)
    if resume is not None:
        if not (resume / "config.toml").is_file():
            raise UsageError(f"--resume {resume}: no config.toml there (not a run directory)")
        source = config or resume / "config.toml"
        overrides.append(f"run.dir={json.dumps(str(resume))}")  # a TOML basic string
    elif config is None:
        raise UsageError("give a config file (or --resume RUN_DIR)")
    else:
        source = config
    cfg = load_config(source, overrides)
    from ..train.loop import train  # torch: only once the config is known to be valid

    result = train(cfg, resume=resume is not None, progress=not no_progress,
                   echo=lambda m: typer.echo(m, err=True))
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 alone reports
        return
    summary = f"step {result.get('step')}"
    if "loss" in result:
        summary += f", loss {result['loss']:.5f}"
    if "val_psnr" in result:
        summary += f", validation PSNR {result['val_psnr']:.3f} dB"
    typer.echo(f"{cfg.run.dir}: {summary}")


@app.command("train-export")
def export_command(
    run_dir: Path = typer.Argument(..., help="A run directory written by 'restore train'."),
    name: str = typer.Option(..., "--name", help="Registry name, e.g. swinir-iln-t.sr-x4."),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Output file (default: restore/models/NAME.safetensors in the "
                                  "source tree)."),
    raw: bool = typer.Option(False, "--raw", help="Export the trained weights, not the EMA."),
    psnr: List[str] = typer.Option([], "--psnr", metavar="SET=DB",
                                   help="A measured PSNR for the entry, e.g. --psnr Set5=30.1 "
                                        "(repeatable)."),
    description: str = typer.Option("", "--description", help="One line for the entry."),
    psnr_source: str = typer.Option("", "--psnr-source",
                                    help="Where the --psnr values come from (one line)."),
    fp16_safe: bool = typer.Option(False, "--fp16-safe",
                                   help="Mark the model fp16-safe (measure it first)."),
    force: bool = typer.Option(False, "--force",
                               help="Replace the output file if it exists (a shipped model "
                                    "at the default path: update weights.toml after)."),
) -> None:
    """Turn a finished run into a shippable model: EMA weights as safetensors (config in the
    metadata); prints the weights.toml entry to add."""
    from ..errors import UsageError
    from ..train.export import export_run

    scores = {}
    for item in psnr:
        key, _, value = item.partition("=")
        try:
            scores[key.strip()] = float(value)
        except ValueError:
            raise UsageError(f"--psnr {item!r}: expected SET=DB, e.g. Set5=30.12") from None
    entry = export_run(run_dir, name, out, use_ema=not raw, psnr=scores,
                       description=description, psnr_source=psnr_source, fp16_safe=fp16_safe,
                       force=force)
    typer.echo(entry)


@app.command("train-stats")
def stats_command(
    run_dir: Path = typer.Argument(..., help="A run directory written by 'restore train'."),
    step: Optional[int] = typer.Option(None, "--step", help="Which validation (default: last)."),
) -> None:
    """Print the per-block feature statistics of a run (mean |x| and channel entropy of each
    block's output on the first validation image: the numbers of the paper's Figure 1)."""
    from ..errors import UsageError
    from ..train.stats import format_stats, read_stats

    records = read_stats(run_dir)
    if not records:
        raise UsageError(f"{run_dir}: stats.jsonl is empty")
    pick = records[-1] if step is None else next((r for r in records if r["step"] == step), None)
    if pick is None:
        raise UsageError(f"--step {step}: no statistics at that step (have: "
                         f"{', '.join(str(r['step']) for r in records)})")
    typer.echo(f"step {pick['step']}, image {pick['image']}")
    typer.echo("\n".join(format_stats(pick)))
