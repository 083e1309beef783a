"""The training loop: config -> model -> data -> steps (EMA, clip, AMP) -> validation ->
checkpoints.

Readable on one screen or two on purpose (nanoGPT style). Single process, or one process
per GPU/CPU under torchrun (DistributedDataParallel; rank 0 logs, validates and writes
checkpoints; every rank draws its own disjoint samples, see data.SampleIndices).

Bit-for-bit resume (CPU, same seed and thread count): the learning rate is a pure function
of the step, the data of (seed, step, rank), and the checkpoint holds the optimizer, the
AMP scaler and the torch RNG (drop-path) state of the step it was written at.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..atomic import write_bytes
from ..archs import build
from ..checkpoint import (drop_recomputed, load_model, load_state_dict, read_checkpoint,
                          unwrap_state_dict)
from ..errors import CheckpointError, ConfigError, Interrupted, RestoreError
from .. import progress as bars
from ..metrics import psnr
from . import state as ckpt
from .config import Amp, Loss, Optimizer, Schedule, Task, TrainingConfig, dump_toml
from .data import load_pairs, load_validation, make_loader, to_tensor
from .stats import feature_stats


class TrainingDiverged(RestoreError):
    """The loss became NaN or Inf."""


class TrainingInterrupted(Interrupted):
    """Ctrl-C or SIGTERM: the step in flight was finished and a checkpoint written."""


class StopRequest:
    """SIGINT/SIGTERM handlers for the duration of a run (main thread only): the first signal
    asks the loop to stop after the step in flight (it then writes a checkpoint); a second
    Ctrl-C interrupts at once, except while a checkpoint is being written (then right after
    it), so the checkpoint on disk is always a whole one.
    """

    def __init__(self, say: Callable[[str], None] | None = None) -> None:
        self.signum: int | None = None
        self._say = say
        self._old: dict = {}
        self._saving = False
        self._abort = False

    @property
    def signal(self) -> str | None:
        return None if self.signum is None else signal.Signals(self.signum).name

    def install(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            if self._saving:
                self._abort = True
                return
            raise KeyboardInterrupt
        if self.signum is None and self._say:
            self._say(f"{signal.Signals(signum).name}: stopping after the step in flight and "
                      "writing a checkpoint (Ctrl-C again: stop at once)")
        self.signum = signum

    @contextlib.contextmanager
    def saving(self):
        """A second Ctrl-C while inside waits until the block is done."""
        self._saving = True
        try:
            yield
        finally:
            self._saving = False
        if self._abort:
            raise KeyboardInterrupt

    def uninstall(self) -> None:
        for sig, old in self._old.items():
            if old is not None:  # None: a handler not installed from Python
                signal.signal(sig, old)
        self._old = {}


def _any_rank(flags: list[bool], dist_info: "Dist", device: torch.device) -> list[bool]:
    """Each flag true on any rank (all ranks must take the same branch)."""
    if dist_info.world == 1:
        return flags
    import torch.distributed as dist

    t = torch.tensor([1.0 if f else 0.0 for f in flags], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


# -- model ---------------------------------------------------------------------------------

def layernorm_to_iln(state: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """Rename a LayerNorm checkpoint for the i-LN twin of its model: same weights, norms
    swapped. Every i-LN / Affine ``X.gamma`` / ``X.beta`` of ``model`` takes the LayerNorm
    ``X.weight`` / ``X.bias`` (block norms become i-LN, the patch-embedding and final
    LayerNorm become Affine); every other tensor is kept as is."""
    out = dict(state)
    for key in model.state_dict():
        for new, old in ((".gamma", ".weight"), (".beta", ".bias")):
            if key.endswith(new):
                src = key[: -len(new)] + old
                if src in out and key not in out:
                    out[key] = out.pop(src)
    return out


def colour_to_gray(state: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """Fold a colour scale-1 checkpoint into the gray twin of its model (``model``,
    in_chans = 1), so that on a gray image ``y`` the gray model gives what the colour one
    gives as the luma of its output on (y, y, y).

    With the colour input norm z_c = (y - m_c) / s_c and the gray one z = y / s:
    ``conv_first`` takes W = s * sum_c W_c / s_c and b = b_c - sum_c m_c / s_c * sum(W_c)
    (exact away from the zero-padded border), and, as both outputs add the head to the
    input (y + s_c * head_c per channel), ``conv_last`` takes the luma weights
    (0.299, 0.587, 0.114) times s_c / s of each output channel. Every other tensor is
    shared as it is."""
    out = dict(state)
    norm = model.input_norm
    g_std = float(norm.std.flatten()[0]) / norm.img_range
    ref = type(norm)(3, norm.img_range, model.config.stdnorm)
    m_c = ref.mean.flatten().double()
    s_c = ref.std.flatten().double() / ref.img_range
    try:
        w_in, b_in = state["conv_first.weight"].double(), state["conv_first.bias"].double()
        w_out, b_out = state["conv_last.weight"].double(), state["conv_last.bias"].double()
    except KeyError as exc:
        raise ConfigError(f"model.init_from_colour: the checkpoint has no {exc.args[0]} "
                          "(a SwinIR/HAT scale-1 model is needed)") from None
    if w_in.shape[1] != 3 or w_out.shape[0] != 3:
        raise ConfigError("model.init_from_colour: the checkpoint is not a 3-channel "
                          f"scale-1 model (conv_first {tuple(w_in.shape)}, conv_last "
                          f"{tuple(w_out.shape)})")
    per_c = w_in / s_c.view(1, 3, 1, 1)
    out["conv_first.weight"] = (g_std * per_c.sum(1, keepdim=True)).float()
    out["conv_first.bias"] = (b_in - (per_c * m_c.view(1, 3, 1, 1)).sum((1, 2, 3))).float()
    mix = torch.tensor((0.299, 0.587, 0.114), dtype=torch.float64) * s_c / g_std
    out["conv_last.weight"] = (mix.view(3, 1, 1, 1) * w_out).sum(0, keepdim=True).float()
    out["conv_last.bias"] = (mix * b_out).sum().view(1).float()
    return out


def partial_state(state: dict[str, Tensor], model: nn.Module) -> tuple[dict, list[str]]:
    """The tensors of ``state`` that ``model`` has under the same name and shape, and the
    names of the model's tensors left out (they keep their fresh initialization)."""
    own = model.state_dict()
    kept = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    return kept, sorted(k for k in own if k not in kept)


def build_model(cfg: TrainingConfig, echo: Callable[[str], None] = lambda msg: None
                ) -> nn.Module:
    """The model to train: from scratch, a checkpoint (whole or, with model.init_partial,
    the tensors that fit), a registry name, or a converted LN one."""
    m = cfg.model
    if m.name:
        if m.arch:
            raise ConfigError("model.arch: give model.name or model.arch, not both")
        from ..registry import load_registry_model

        return load_registry_model(m.name).train()
    if not m.arch:  # a restore .safetensors file carries its own architecture
        return load_model(m.init).train()
    model = build(m.family, **dict(m.arch))
    if m.init:
        state = read_checkpoint(m.init)
        if m.init_from_layernorm:
            if getattr(model.config, "norm", None) is None or model.config.norm.value != "iln":
                raise ConfigError("model.init_from_layernorm: model.arch must have norm = 'iln'")
            state = layernorm_to_iln(state, model)
        if m.init_from_colour:
            state = colour_to_gray(drop_recomputed(unwrap_state_dict(state)), model)
        if m.init_partial:
            state, fresh = partial_state(drop_recomputed(unwrap_state_dict(state)), model)
            if not state:
                raise ConfigError(f"model.init {m.init}: no tensor fits model.arch "
                                  "(model.init_partial takes those with the same name and shape)")
            model.load_state_dict(state, strict=False)
            echo(f"model.init_partial: {len(state)} tensors from {m.init}; fresh: "
                 f"{', '.join(fresh) or 'none'}")
            return model.train()
        try:
            load_state_dict(model, state)
        except CheckpointError as exc:
            raise CheckpointError(f"model.init {m.init}: {exc}") from None
    return model.train()


class EMA:
    """Exponential moving average of the parameters: ``ema = d * ema + (1 - d) * w``.

    ``d`` ramps as min(decay, (1 + t) / (10 + t)) so that a short run's EMA is not
    dominated by the random initialization. Buffers are copied as they are.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        ema_p = list(self.model.parameters())
        torch._foreach_lerp_(ema_p, [p.detach() for p in model.parameters()], 1.0 - d)
        for b_ema, b in zip(self.model.buffers(), model.buffers()):
            b_ema.copy_(b)


# -- schedule and loss ----------------------------------------------------------------------

def lr_at(step: int, cfg: TrainingConfig, minutes: float = 0.0) -> float:
    """Learning rate of (0-based) step ``step``: linear warmup, then the schedule.

    With ``train.schedule_by = "time"`` the cosine's progress is the larger of the step
    fraction and the fraction of ``max_minutes`` already spent (``minutes``).
    """
    t = cfg.train
    if step < t.warmup_steps:
        return t.lr * (step + 1) / t.warmup_steps
    if t.schedule is Schedule.CONSTANT:
        return t.lr
    if t.schedule is Schedule.MULTISTEP:
        return t.lr * t.gamma ** sum(step >= m for m in t.milestones)
    span = max(1, t.max_steps - t.warmup_steps)
    frac = min(1.0, (step - t.warmup_steps) / span)
    if t.schedule_by == "time":
        frac = min(1.0, max(frac, minutes / t.max_minutes))
    return t.min_lr + (t.lr - t.min_lr) * 0.5 * (1.0 + math.cos(math.pi * frac))


def loss_fn(cfg: TrainingConfig) -> Callable[[Tensor, Tensor], Tensor]:
    t = cfg.train
    if t.loss is Loss.CHARBONNIER:
        eps2 = t.charbonnier_eps ** 2
        return lambda x, y: torch.sqrt((x.float() - y) ** 2 + eps2).mean()
    return lambda x, y: (x.float() - y).abs().mean()


def amp_dtype(amp: Amp, device: torch.device) -> torch.dtype | None:
    """The autocast dtype (None = fp32): auto is bf16/fp16 on a GPU, fp32 on the CPU."""
    if amp is Amp.FP32 or (amp is Amp.AUTO and device.type != "cuda"):
        return None
    if amp is Amp.AUTO:
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if amp is Amp.BF16 else torch.float16


# -- validation -----------------------------------------------------------------------------

@torch.no_grad()
def validate(model: nn.Module, val: list, cfg: TrainingConfig, device: torch.device) -> dict:
    """Mean PSNR of ``model`` (fp32, whole images) on the validation set, as evaluation
    scores it: output rounded to uint8; SR: Y channel, crop = scale; denoise: RGB; JPEG: Y
    (gray images on their gray values)."""
    was_training = model.training
    model.eval()
    scores = {}
    d = cfg.data
    for name, lq, gt in val:
        x = to_tensor(lq).unsqueeze(0).to(device)
        y = model(x).clamp_(0, 1).mul_(255).round_().squeeze(0).to("cpu", torch.uint8)
        out = y.permute(1, 2, 0).numpy()
        out = out[:, :, 0] if gt.ndim == 2 else out
        crop = d.scale if d.task is Task.SR else 0
        scores[name] = psnr(out, gt, crop=crop, y_channel=d.task is not Task.DENOISE)
    model.train(was_training)
    return {"psnr": float(np.mean(list(scores.values()))), "images": scores}


# -- the loop -------------------------------------------------------------------------------

@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_pref: str) -> tuple[Dist, torch.device]:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK: one process per GPU (nccl) or CPU (gloo)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available() and device_pref != "cpu"
    if world > 1:
        import torch.distributed as dist

        local = int(os.environ.get("LOCAL_RANK", "0"))
        if cuda:
            torch.cuda.set_device(local)
        dist.init_process_group(backend="nccl" if cuda else "gloo")
        d = Dist(dist.get_rank(), dist.get_world_size(), local)
        return d, torch.device(f"cuda:{local}" if cuda else "cpu")
    if device_pref.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"run.device={device_pref!r} but no CUDA device is available")
    return Dist(), torch.device(device_pref if device_pref not in ("auto",)
                                else ("cuda" if cuda else "cpu"))


def _end_distributed(dist_info: Dist) -> None:
    if dist_info.world > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def _append_jsonl(path: Path, row: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


@dataclass
class _Run:
    """One training run: what ``_setup`` builds once, then the counters the loop moves."""

    cfg: TrainingConfig
    dist: Dist
    device: torch.device
    run_dir: Path
    val: list
    model: nn.Module
    net: nn.Module  # the model, or its DistributedDataParallel wrapper
    ema: EMA | None
    params: list[nn.Parameter]
    optimizer: torch.optim.Optimizer
    dtype: torch.dtype | None  # the autocast dtype, None = fp32
    scaler: torch.amp.GradScaler
    criterion: Callable[[Tensor, Tensor], Tensor]
    n_params: int
    stop: int
    start: int = 0
    elapsed_before: float = 0.0  # seconds spent by the runs this one resumes
    say: Callable[[str], None] = print  # bar.write while a bar shows, else echo
    bar: Any = None
    t0: float = 0.0
    last_ckpt: float = 0.0
    step: int = 0
    window: list[float] = field(default_factory=list)  # the losses since the last log line
    tick: float = 0.0
    tick_step: int = 0
    result: dict = field(default_factory=dict)


def train(cfg: TrainingConfig, resume: bool = False, progress: bool = True,
          echo: Callable[[str], None] = print) -> dict:
    """Train as ``cfg`` says; with ``resume`` continue from the checkpoint in cfg.run.dir.

    Returns a summary (last step, last loss, last validation). Raises TrainingDiverged on a
    NaN/Inf loss (after which the last checkpoint is still intact).
    """
    dist_info, device = setup_distributed(cfg.run.device)
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    run_dir = Path(cfg.run.dir)
    val = _prepare_run_dir(cfg, run_dir, resume, dist_info, device)
    r = _setup(cfg, dist_info, device, run_dir, val, echo)
    rng_state = _resume(r) if resume else None
    if r.start >= r.stop:
        if dist_info.main:
            echo(f"run {run_dir} is already at step {r.start} (stop at {r.stop}): nothing to do")
        return {"step": r.start}
    if dist_info.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        r.net = DDP(r.model, device_ids=[device.index] if device.type == "cuda" else None)
    pairs = load_pairs(cfg.data)
    loader = make_loader(pairs, cfg.data, cfg.run.seed, r.start, r.stop, dist_info.rank,
                         dist_info.world)
    if dist_info.main:
        echo(_banner(r, len(pairs)))
    _seed_drop_path(r, rng_state)
    _start_clocks(r, progress, echo)

    t = cfg.train
    stop_request = StopRequest(r.say if dist_info.main else None).install()
    interrupted = False
    try:
        for lq, gt in loader:
            lr = _set_lr(r)
            loss = _forward(r, lq, gt)
            loss_value = float(loss.detach())
            # Every rank takes the same branch (one collective per step): a NaN/Inf loss on
            # any rank, the wall clock (stop after this step), a signal on any rank.
            over = _over_time(r)
            diverged, over, interrupted = _any_rank(
                [not math.isfinite(loss_value), over, stop_request.signum is not None],
                dist_info, device)
            if diverged:
                raise _diverged(r, loss_value, lr)
            _optimizer_step(r, loss)
            r.step += 1
            if r.ema:
                r.ema.update(r.model, r.step)
            r.window.append(loss_value)
            r.result.update(step=r.step, loss=loss_value)

            interrupted = interrupted and r.step < r.stop  # the last step: a normal finish
            final = r.step >= r.stop or over or interrupted
            if not dist_info.main:
                if final:
                    break
                continue
            if r.bar:
                r.bar.update(1)
            if r.step % t.log_every == 0 or final:
                _log(r, lr)
            if (final and not interrupted) or (t.val_every and r.step % t.val_every == 0):
                _validate_and_log(r)
            if final or _checkpoint_due(r):
                with stop_request.saving():
                    _save(r)
                r.last_ckpt = time.monotonic()
            if final:
                break
    finally:
        stop_request.uninstall()
        if r.bar:
            r.bar.close()
        _end_distributed(dist_info)
    if interrupted:
        raise _interrupted(r, stop_request)
    return r.result


# -- the loop's parts, in the order train() calls them -------------------------------------

def _prepare_run_dir(cfg: TrainingConfig, run_dir: Path, resume: bool, dist_info: Dist,
                     device: torch.device) -> list:
    """Rank 0 claims run.dir (a used one only with ``resume``), writes config.toml there and
    loads the validation set (returned; [] on the other ranks)."""
    val: list = []
    failure: Exception | None = None
    if dist_info.main:  # what rank 0 alone does; a failure there must stop every rank
        try:
            if not resume and ckpt.has_checkpoint(run_dir):
                raise ConfigError(f"run.dir {run_dir} already holds a run; resume it with "
                                  f"--resume {run_dir} or choose another run.dir")
            run_dir.mkdir(parents=True, exist_ok=True)
            write_bytes(run_dir / ckpt.CONFIG, dump_toml(cfg).encode())
            val = load_validation(cfg.data)
        except (RestoreError, OSError) as exc:
            failure = exc
    if _any_rank([failure is not None], dist_info, device)[0]:  # none waits on rank 0
        _end_distributed(dist_info)
        raise failure or ConfigError(f"rank {dist_info.rank}: rank 0 refused the run (its "
                                     "message says why)")
    return val


def _setup(cfg: TrainingConfig, dist_info: Dist, device: torch.device, run_dir: Path,
           val: list, echo: Callable[[str], None]) -> _Run:
    """The model, its EMA, the optimizer, AMP and the loss, for steps 0..stop."""
    torch.manual_seed(cfg.run.seed)  # the same initial weights on every rank
    model = build_model(cfg, echo if dist_info.main else lambda msg: None).to(device)
    ema = EMA(model, cfg.train.ema_decay) if cfg.train.ema_decay > 0 else None
    t = cfg.train
    params = [p for p in model.parameters() if p.requires_grad]
    opt_cls = torch.optim.AdamW if t.optimizer is Optimizer.ADAMW else torch.optim.Adam
    optimizer = opt_cls(params, lr=t.lr, betas=tuple(t.betas), weight_decay=t.weight_decay)
    dtype = amp_dtype(t.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)
    criterion = loss_fn(cfg)
    stop = t.max_steps if not t.stop_at else min(t.max_steps, t.stop_at)
    return _Run(cfg=cfg, dist=dist_info, device=device, run_dir=run_dir, val=val, model=model,
                net=model, ema=ema, params=params, optimizer=optimizer, dtype=dtype,
                scaler=scaler, criterion=criterion,
                n_params=sum(p.numel() for p in model.parameters()), stop=stop)


def _resume(r: _Run) -> tuple:
    """Load the checkpoint of run.dir into the run; returns the RNG states it was written
    with (torch, CUDA), which ``_seed_drop_path`` restores once the data is ready."""
    st = ckpt.load_state(r.run_dir, r.model, r.ema.model if r.ema else None, r.optimizer,
                         r.scaler)
    r.start, r.elapsed_before = int(st["step"]), float(st["elapsed"])
    return (st["rng_torch"], st.get("rng_cuda") or [])


def _banner(r: _Run, n_pairs: int) -> str:
    return (f"training {r.cfg.model.family} ({r.n_params:,} parameters) on {r.device}"
            f"{f' x{r.dist.world} processes' if r.dist.world > 1 else ''}: "
            f"{n_pairs} training images, {len(r.val)} validation images, "
            f"steps {r.start}..{r.stop}, run dir {r.run_dir}")


def _seed_drop_path(r: _Run, rng_state: tuple | None) -> None:
    """The drop-path RNG: per rank, restored on resume (after the model and data are ready)."""
    if rng_state is not None:
        torch.set_rng_state(rng_state[0])
        if rng_state[1] and r.device.type == "cuda":
            torch.cuda.set_rng_state_all(rng_state[1])
    else:
        torch.manual_seed(r.cfg.run.seed * 1000 + r.dist.rank + 1)


def _start_clocks(r: _Run, progress: bool, echo: Callable[[str], None]) -> None:
    """The progress bar (rank 0), the wall clock and the counters, at step ``r.start``."""
    if r.dist.main and progress and bars.enabled():  # the log has every step anyway
        r.bar = bars.bar(r.stop, initial=r.start, unit="it", mininterval=1.0)
    r.say = r.bar.write if r.bar else echo
    r.t0 = time.monotonic()
    r.last_ckpt = r.t0
    r.step = r.start
    r.window = []
    r.tick, r.tick_step = time.monotonic(), r.start
    r.result = {"step": r.start}


def _set_lr(r: _Run) -> float:
    lr = lr_at(r.step, r.cfg, (r.elapsed_before + time.monotonic() - r.t0) / 60.0)
    for g in r.optimizer.param_groups:
        g["lr"] = lr
    return lr


def _forward(r: _Run, lq: Tensor, gt: Tensor) -> Tensor:
    """The loss of one batch (autocast as train.amp says; the loss itself in fp32)."""
    lq, gt = lq.to(r.device, non_blocking=True), gt.to(r.device, non_blocking=True)
    with torch.autocast(r.device.type, dtype=r.dtype or torch.float32,
                        enabled=r.dtype is not None):
        out = r.net(lq)
    return r.criterion(out, gt)


def _over_time(r: _Run) -> bool:
    """Whether train.max_minutes is spent (resumed runs' time included)."""
    t = r.cfg.train
    return bool(t.max_minutes) and (
        r.elapsed_before + time.monotonic() - r.t0) > 60 * t.max_minutes


def _diverged(r: _Run, loss_value: float, lr: float) -> TrainingDiverged:
    what = (f"the loss is {loss_value} (NaN/Inf)" if not math.isfinite(loss_value)
            else "the loss of another rank is NaN/Inf")
    return TrainingDiverged(
        f"step {r.step + 1}: {what}; training stopped. The last checkpoint in "
        f"{r.run_dir} is intact. Try a lower train.lr (now {lr:.3g}), "
        "train.grad_clip, or train.amp = 'fp32'.")


def _optimizer_step(r: _Run, loss: Tensor) -> None:
    """Backward (scaled for fp16), gradient clipping, the optimizer and scaler steps."""
    r.optimizer.zero_grad(set_to_none=True)
    r.scaler.scale(loss).backward()
    if r.cfg.train.grad_clip > 0:
        r.scaler.unscale_(r.optimizer)
        torch.nn.utils.clip_grad_norm_(r.params, r.cfg.train.grad_clip)
    r.scaler.step(r.optimizer)
    r.scaler.update()


def _log(r: _Run, lr: float) -> None:
    """A log.jsonl line (mean loss since the last one, it/s) and the bar's postfix."""
    t = r.cfg.train
    now = time.monotonic()
    its = (r.step - r.tick_step) / max(now - r.tick, 1e-9)
    r.tick, r.tick_step = now, r.step
    row = {"step": r.step, "loss": float(np.mean(r.window)), "lr": lr, "it_s": its,
           "elapsed_s": round(r.elapsed_before + now - r.t0, 2)}
    r.window = []
    _append_jsonl(r.run_dir / "log.jsonl", row)
    if r.bar:
        nxt = {"next_val": r.step - r.step % t.val_every + t.val_every} if t.val_every else {}
        r.bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{lr:.2e}", **nxt)


def _validate_and_log(r: _Run) -> None:
    """Validation PSNR (of the EMA) to val.jsonl, feature statistics (of the trained model,
    on the first image) to stats.jsonl."""
    if not r.val:
        return
    res = validate(r.ema.model if r.ema else r.model, r.val, r.cfg, r.device)
    _append_jsonl(r.run_dir / "val.jsonl", {"step": r.step, **res})
    name0, lq0, _ = r.val[0]
    rows = feature_stats(r.model.eval(), to_tensor(lq0).unsqueeze(0).to(r.device))
    r.model.train()
    _append_jsonl(r.run_dir / "stats.jsonl", {"step": r.step, "image": name0, "blocks": rows})
    r.result["val_psnr"] = res["psnr"]
    r.say(f"step {r.step}: validation PSNR {res['psnr']:.3f} dB")


def _checkpoint_due(r: _Run) -> bool:
    t = r.cfg.train
    return bool((t.ckpt_every and r.step % t.ckpt_every == 0) or (
        t.ckpt_minutes and time.monotonic() - r.last_ckpt > 60 * t.ckpt_minutes))


def _save(r: _Run) -> None:
    ckpt.save_state(r.run_dir, step=r.step, model=r.model, ema=r.ema.model if r.ema else None,
                    optimizer=r.optimizer, scaler=r.scaler,
                    elapsed=r.elapsed_before + time.monotonic() - r.t0,
                    config=r.cfg.to_dict(), extra={"parameters": r.n_params})


def _interrupted(r: _Run, stop_request: StopRequest) -> TrainingInterrupted:
    why = stop_request.signal or "a signal on another rank"
    return TrainingInterrupted(
        f"{why}: stopped after step {r.step}; checkpoint written to {r.run_dir}. Continue "
        f"with: restore train --resume {r.run_dir}",
        stop_request.signum or signal.SIGTERM)
