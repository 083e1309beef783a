"""A run directory's checkpoint: weights, EMA, training state and meta, written atomically.

Layout of RUN_DIR:

    config.toml         the resolved config (what --resume reads)
    meta.json           resolved config, step, wall time, file list (written last)
    model.safetensors   the trained weights (restore.checkpoint.save_model: config inside)
    ema.safetensors     the EMA weights (what validation and export use)
    state.pt            step, optimizer, AMP scaler, torch RNG states: plain tensors and
                        containers only, read back with torch.load(weights_only=True)
    log.jsonl           one line per log interval: step, loss, lr, it/s
    val.jsonl           one line per validation: step, PSNR per image and mean
    stats.jsonl         one line per validation: per-block feature statistics (stats.py)

Every file is written to a temporary name in RUN_DIR and renamed (os.replace), meta.json
last; each file records the step, and ``load_state`` refuses a set whose steps disagree
(an interrupted write) instead of resuming from a mix.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..atomic import atomic_path, write_bytes
from ..checkpoint import load_state_dict, read_checkpoint, read_metadata, save_model
from ..errors import CheckpointError

META = "meta.json"
MODEL = "model.safetensors"
EMA = "ema.safetensors"
STATE = "state.pt"
CONFIG = "config.toml"


def atomic_torch_save(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def has_checkpoint(run_dir: Path) -> bool:
    return (run_dir / META).is_file()


def save_state(run_dir: Path, *, step: int, model: nn.Module, ema: nn.Module | None,
               optimizer: torch.optim.Optimizer, scaler: Any, elapsed: float,
               config: dict, extra: dict | None = None) -> None:
    """Write the checkpoint of ``step`` into ``run_dir`` (see the module docstring)."""
    tag = {"step": str(step), "source": "restore train"}
    save_model(model, run_dir / MODEL, tag)
    if ema is not None:
        save_model(ema, run_dir / EMA, {**tag, "ema": "true"})
    state = {
        "step": step,
        "elapsed": float(elapsed),
        "optimizer": optimizer.state_dict(),
        "rng_torch": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else {},
    }
    atomic_torch_save(state, run_dir / STATE)
    meta = {"step": step, "elapsed_s": round(elapsed, 3), "time": time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "files": [MODEL, STATE] + ([EMA] if ema else []),
        "config": config, **(extra or {})}
    write_bytes(run_dir / META, json.dumps(meta, indent=2).encode())


def read_meta(run_dir: Path) -> dict:
    path = run_dir / META
    if not path.is_file():
        raise CheckpointError(f"{run_dir}: no checkpoint ({META} is missing)")
    return json.loads(path.read_text(encoding="utf-8"))


def load_state(run_dir: Path, model: nn.Module, ema: nn.Module | None,
               optimizer: torch.optim.Optimizer, scaler: Any) -> dict:
    """Load the checkpoint of ``run_dir`` into the given objects; returns the state dict
    (step, elapsed, RNG states: the caller restores the RNG last, just before training)."""
    meta = read_meta(run_dir)
    step = int(meta["step"])
    try:
        state = torch.load(run_dir / STATE, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{run_dir / STATE}: missing") from None
    files = [(MODEL, model)] + ([(EMA, ema)] if ema is not None else [])
    steps = {STATE: int(state["step"])}
    for name, _ in files:
        steps[name] = int(read_metadata(run_dir / name).get("step", -1))
    if any(s != step for s in steps.values()):
        raise CheckpointError(f"{run_dir}: checkpoint files disagree on the step ({META}: {step}, "
                              + ", ".join(f"{k}: {v}" for k, v in steps.items())
                              + "); a write was interrupted")
    for name, mod in files:
        load_state_dict(mod, read_checkpoint(run_dir / name))
    optimizer.load_state_dict(state["optimizer"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    return state
