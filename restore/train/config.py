"""The training config: TOML -> frozen, typed sections, with ``--set a.b=value`` overrides.

Format (every key optional except ``data.train`` and either ``model.arch`` or
``model.name``; see ``configs/*.toml``):

    [run]    dir, seed, device ("auto" | "cpu" | "cuda"), threads
    [model]  family, name (registry), init (checkpoint path), init_from_layernorm,
             init_from_colour, init_partial, [model.arch]
    [data]   task ("sr" | "denoise" | "jpeg"), scale, train (folders), train_lq (paired LQ
             folders), patch_size (LQ pixels), batch_size, workers, gray, sigma, quality,
             val (folder of clean images), val_max_images, val_max_side
    [train]  max_steps, max_minutes, stop_at, lr, optimizer, betas, weight_decay, loss,
             charbonnier_eps, schedule, warmup_steps, schedule_by, min_lr, milestones,
             gamma, ema_decay, grad_clip, amp, log_every, val_every, ckpt_every,
             ckpt_minutes

Unknown keys, wrong types and bad values raise ConfigError naming the key ("train.lr").
Strings become enums here, once.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, get_type_hints

from .. import checks
from ..errors import ConfigError
from ..tasks import Task

__all__ = ["Amp", "DataConfig", "Loss", "ModelConfig", "Optimizer", "RunConfig", "Schedule",
           "Task", "TrainConfig", "TrainingConfig", "apply_overrides", "load_config",
           "parse_config", "parse_override"]


class Loss(str, Enum):
    L1 = "l1"
    CHARBONNIER = "charbonnier"


class Optimizer(str, Enum):
    ADAM = "adam"
    ADAMW = "adamw"


class Schedule(str, Enum):
    COSINE = "cosine"
    MULTISTEP = "multistep"
    CONSTANT = "constant"


class Amp(str, Enum):
    AUTO = "auto"  # bf16 on a GPU that has it, else fp16 on GPU; fp32 on CPU
    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"


@dataclass(frozen=True)
class RunConfig:
    dir: str = "runs/train"
    seed: int = 0
    device: str = "auto"
    threads: int = 0  # torch intra-op threads; 0 = leave torch's default


@dataclass(frozen=True)
class ModelConfig:
    family: str = "swinir"
    name: str = ""  # a registry name (needs restore.registry.load_registry_model)
    init: str = ""  # a checkpoint to start from (fine-tuning); "" = from scratch
    init_from_layernorm: bool = False  # init is a LayerNorm checkpoint: convert to i-LN
    # init is a colour (3-channel) checkpoint of a gray (in_chans = 1) scale-1 model: its
    # first and last convolutions are folded to one channel (restore.train.loop.colour_to_gray)
    init_from_colour: bool = False
    # Take only the tensors of init whose name and shape fit (e.g. the body of a model of
    # another scale or task); the rest keep their fresh initialization.
    init_partial: bool = False
    arch: dict = field(default_factory=dict)  # reference constructor kwargs for archs.build


@dataclass(frozen=True)
class DataConfig:
    task: Task = Task.SR
    scale: int = 4
    train: tuple[str, ...] = ()
    train_lq: tuple[str, ...] = ()  # paired LQ folders (same relative names as train)
    patch_size: int = 48  # LQ patch side
    batch_size: int = 16
    workers: int = 1
    gray: bool = False
    sigma: tuple[float, ...] = (25.0,)  # one value or [low, high] (0..255 scale)
    quality: tuple[int, ...] = (10,)  # one value or [low, high]
    val: str = ""
    val_max_images: int = 0  # 0 = all
    val_max_side: int = 0  # centre-crop validation images to this HR side; 0 = whole


@dataclass(frozen=True)
class TrainConfig:
    max_steps: int = 1000
    max_minutes: float = 0.0  # 0 = no wall-clock limit (counts the time of resumed runs)
    stop_at: int = 0  # stop at this step (schedule still spans max_steps); 0 = max_steps
    lr: float = 2e-4
    optimizer: Optimizer = Optimizer.ADAM
    betas: tuple[float, ...] = (0.9, 0.99)
    weight_decay: float = 0.0
    loss: Loss = Loss.L1
    charbonnier_eps: float = 1e-3
    schedule: Schedule = Schedule.COSINE
    warmup_steps: int = 0
    # "steps": the schedule spans max_steps (bit-for-bit resumable). "time": it spans
    # whichever of max_steps and max_minutes comes first (for a fixed wall-clock budget on a
    # shared machine; the learning rate then depends on the clock, so resume is not exact).
    schedule_by: str = "steps"
    min_lr: float = 1e-6
    milestones: tuple[int, ...] = ()
    gamma: float = 0.5
    ema_decay: float = 0.999  # 0 = no EMA
    grad_clip: float = 0.0  # max global grad norm; 0 = off
    amp: Amp = Amp.AUTO
    log_every: int = 10
    val_every: int = 500  # 0 = only at the end
    ckpt_every: int = 0  # steps; 0 = off (ckpt_minutes / end only)
    ckpt_minutes: float = 10.0


@dataclass(frozen=True)
class TrainingConfig:
    run: RunConfig = field(default_factory=RunConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/TOML-ready data (enums as strings, tuples as lists)."""
        return _plain(dataclasses.asdict(self))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


# restore.checks by field type; floats must be finite
_CHECKS = {bool: checks.flag, int: checks.integer, float: checks.number, str: checks.string}

SECTIONS = {"run": RunConfig, "model": ModelConfig, "data": DataConfig, "train": TrainConfig}


def _plain(v: Any) -> Any:
    if isinstance(v, Enum):
        return v.value
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def _convert(key: str, typ: Any, value: Any) -> Any:
    """``value`` as ``typ`` (the field's annotation), or ConfigError naming ``key``."""
    check = (functools.partial(checks.one_of, choices=typ)
             if isinstance(typ, type) and issubclass(typ, Enum) else _CHECKS.get(typ))
    if check is not None:
        try:
            return check(value)
        except checks.Invalid as exc:
            raise ConfigError(f"{key}={value!r} {exc}") from None
    if typ is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a table")
        return dict(value)
    origin = getattr(typ, "__origin__", None)
    if origin is tuple:
        inner = typ.__args__[0]
        if not isinstance(value, (list, tuple)):
            value = [value]  # a scalar where a list is allowed ("sigma = 25")
        return tuple(_convert(f"{key}[{i}]", inner, v) for i, v in enumerate(value))
    raise ConfigError(f"{key}: unsupported type {typ}")  # pragma: no cover


def _section(name: str, cls: type, raw: Any):
    if not isinstance(raw, dict):
        raise ConfigError(f"[{name}] must be a table")
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(f'{name}.{k}' for k in unknown)} "
                          f"(valid in [{name}]: {', '.join(names)})")
    return cls(**{k: _convert(f"{name}.{k}", hints[k], v) for k, v in raw.items()})


def _check(cfg: TrainingConfig) -> None:
    """Cross-field and range checks; each message names the key."""
    def need(cond: bool, key: str, msg: str) -> None:
        if not cond:
            raise ConfigError(f"{key}: {msg}")

    r, m, d, t = cfg.run, cfg.model, cfg.data, cfg.train
    need(r.seed >= 0, "run.seed", "must be >= 0")
    need(r.device in ("auto", "cpu", "cuda") or r.device.startswith("cuda:"), "run.device",
         f"{r.device!r} is not one of 'auto', 'cpu', 'cuda', 'cuda:N'")
    need(r.threads >= 0, "run.threads", "must be >= 0")
    need(bool(r.dir), "run.dir", "must not be empty")
    need(bool(m.arch) or bool(m.name) or m.init.endswith(".safetensors"), "model.arch",
         "give the architecture ([model.arch] kwargs), a registry name (model.name) or a "
         "restore .safetensors file (model.init)")
    need(not (m.init and m.name), "model.init", "give model.init or model.name, not both")
    need(not m.init_from_layernorm or bool(m.init), "model.init_from_layernorm",
         "needs model.init (the LayerNorm checkpoint)")
    need(not m.init_from_colour or bool(m.init), "model.init_from_colour",
         "needs model.init (the colour checkpoint)")
    need(not m.init_from_colour or m.arch.get("in_chans") == 1, "model.init_from_colour",
         "needs [model.arch] with in_chans = 1 (the gray model being trained)")
    need(not m.init_from_colour or d.scale == 1, "model.init_from_colour",
         "is for scale-1 tasks (denoise, jpeg), whose output adds to the input")
    need(not m.init_partial or bool(m.init), "model.init_partial",
         "needs model.init (the checkpoint to take tensors from)")
    need(not m.init_partial or bool(m.arch), "model.init_partial",
         "needs [model.arch] (the architecture being trained)")
    need(d.scale >= 1, "data.scale", "must be >= 1")
    need(d.task is Task.SR or d.scale == 1, "data.scale",
         f"must be 1 for task {d.task.value!r}")
    need(d.task is not Task.SR or d.scale in (2, 3, 4, 8), "data.scale",
         "must be 2, 3, 4 or 8 for sr")
    need(len(d.train) > 0, "data.train", "give at least one folder of training images")
    need(not d.train_lq or len(d.train_lq) == len(d.train), "data.train_lq",
         "needs one LQ folder per data.train folder")
    need(d.patch_size >= 8, "data.patch_size", "must be >= 8")
    need(d.batch_size >= 1, "data.batch_size", "must be >= 1")
    need(d.workers >= 0, "data.workers", "must be >= 0")
    need(len(d.sigma) in (1, 2) and all(0 <= s <= 255 for s in d.sigma)
         and d.sigma[0] <= d.sigma[-1], "data.sigma", "must be a value or [low, high] in 0..255")
    need(len(d.quality) in (1, 2) and all(1 <= q <= 100 for q in d.quality)
         and d.quality[0] <= d.quality[-1], "data.quality",
         "must be a value or [low, high] in 1..100")
    need(d.val_max_images >= 0, "data.val_max_images", "must be >= 0")
    need(d.val_max_side >= 0, "data.val_max_side", "must be >= 0")
    need(t.max_steps >= 1, "train.max_steps", "must be >= 1")
    need(t.max_minutes >= 0, "train.max_minutes", "must be >= 0")
    need(t.stop_at >= 0, "train.stop_at", "must be >= 0")
    need(t.lr > 0, "train.lr", "must be > 0")
    need(len(t.betas) == 2 and all(0 <= b < 1 for b in t.betas), "train.betas",
         "must be [beta1, beta2] in [0, 1)")
    need(t.weight_decay >= 0, "train.weight_decay", "must be >= 0")
    need(t.charbonnier_eps > 0, "train.charbonnier_eps", "must be > 0")
    need(t.warmup_steps >= 0, "train.warmup_steps", "must be >= 0")
    need(t.schedule_by in ("steps", "time"), "train.schedule_by",
         f"{t.schedule_by!r} is not one of 'steps', 'time'")
    need(t.schedule_by == "steps" or t.max_minutes > 0, "train.schedule_by",
         "'time' needs train.max_minutes")
    need(0 <= t.min_lr <= t.lr, "train.min_lr", "must be in [0, train.lr]")
    need(list(t.milestones) == sorted(t.milestones) and all(s > 0 for s in t.milestones),
         "train.milestones", "must be increasing positive steps")
    need(0 < t.gamma <= 1, "train.gamma", "must be in (0, 1]")
    need(0 <= t.ema_decay < 1, "train.ema_decay", "must be in [0, 1)")
    need(t.grad_clip >= 0, "train.grad_clip", "must be >= 0")
    for k in ("log_every", "val_every", "ckpt_every"):
        need(getattr(t, k) >= 0, f"train.{k}", "must be >= 0")
    need(t.log_every >= 1, "train.log_every", "must be >= 1")
    need(t.ckpt_minutes >= 0, "train.ckpt_minutes", "must be >= 0")


def parse_config(raw: dict[str, Any]) -> TrainingConfig:
    """Validate plain TOML data into a TrainingConfig (ConfigError names the bad key)."""
    if not isinstance(raw, dict):
        raise ConfigError("the config must be a TOML table")
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"unknown section(s) {', '.join(unknown)} "
                          f"(valid: {', '.join(SECTIONS)})")
    cfg = TrainingConfig(**{name: _section(name, cls, raw.get(name, {}))
                            for name, cls in SECTIONS.items()})
    _check(cfg)
    return cfg


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=1e-4"`` -> (["train", "lr"], 1e-4). The value is parsed as a TOML value
    (so ``[6,6]``, ``true``, ``"x"``); anything that is not valid TOML is taken as a string."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. train.lr=1e-4")
    parts = key.split(".")
    if len(parts) < 2 or not all(parts):
        raise ConfigError(f"--set {text!r}: the key must be SECTION.NAME, e.g. train.lr")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    return parts, parsed


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """A copy of ``raw`` with each ``a.b=value`` applied (validation happens in parse)."""
    out = json.loads(json.dumps(raw))
    for text in overrides:
        parts, value = parse_override(text)
        node = out
        for p in parts[:-1]:
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"--set {text!r}: {p} is not a table")
            node = nxt
        node[parts[-1]] = value
    return out


def read_toml(path: str | Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainingConfig:
    """Read a TOML config, apply ``--set`` overrides, validate."""
    raw = apply_overrides(read_toml(path), list(overrides or []))
    try:
        return parse_config(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def dump_toml(cfg: TrainingConfig) -> str:
    """The resolved config as TOML text (the run folder's config.toml), by tomli-w."""
    import tomli_w

    return tomli_w.dumps(cfg.to_dict())
