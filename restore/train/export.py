"""Export a finished run as a model users can run by name.

Writes the EMA weights (or the trained ones) as a restore safetensors file, with the
architecture config, the task and the training config in its metadata, and returns the
``weights.toml`` entry text to add to the registry (built and validated by
restore.registry.make_spec): name, family, config, norm, task, scale, params, sha256, size,
training, and the embedded source (``{ kind = "embedded", path = "models/NAME.safetensors" }``,
relative to the restore package, i.e. ``restore/models/`` in the source tree).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from ..atomic import atomic_path
from ..checkpoint import load_model, read_metadata, save_model
from ..errors import UsageError
from . import state as ckpt

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
MAX_EMBEDDED_BYTES = 8 * 1024 * 1024  # a model shipped inside the wheel


def models_dir() -> Path:
    """restore/models/ of the source tree (where embedded models live)."""
    return Path(__file__).resolve().parent.parent / "models"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def export_run(run_dir: str | Path, name: str, out: str | Path | None = None,
               use_ema: bool = True, psnr: dict[str, float] | None = None,
               description: str = "", license: str = "Apache-2.0",
               psnr_source: str = "", fp16_safe: bool = False, force: bool = False) -> str:
    """Write RUN_DIR's EMA (or trained) weights to ``out`` (default restore/models/NAME
    .safetensors) and return its weights.toml entry (validated by restore.registry).

    An existing ``out`` is replaced only with ``force``: the default path of a shipped name
    is the shipped model itself, whose checksum weights.toml pins."""
    from ..registry import EmbeddedSource, entry_toml, make_spec

    run_dir = Path(run_dir)
    if not NAME.match(name):
        raise UsageError(f"--name {name!r}: use lowercase letters, digits, '.', '_' and '-'")
    meta = ckpt.read_meta(run_dir)
    src = run_dir / (ckpt.EMA if use_ema and (run_dir / ckpt.EMA).is_file() else ckpt.MODEL)
    model = load_model(src)
    cfg = meta["config"]
    data = cfg["data"]
    task, scale = data["task"], int(data["scale"])
    out = Path(out) if out else models_dir() / f"{name}.safetensors"
    if out.exists() and not force:
        raise UsageError(f"{out}: exists; choose another --out, or --force to replace it "
                         "(then update its sha256 and size in weights.toml)")
    step = int(read_metadata(src).get("step") or meta["step"])
    weights = "EMA" if src.name == ckpt.EMA else "trained"
    # written beside ``out`` and moved over it only once it is known to fit: a refused or
    # failed export leaves ``out`` as it was (an existing shipped model included)
    with atomic_path(out) as tmp:
        save_model(model, tmp, {
            "name": name, "task": task, "scale": str(scale), "step": str(step),
            "weights": weights.lower(), "training_config": json.dumps(cfg, sort_keys=True),
        })
        size = tmp.stat().st_size
        if size > MAX_EMBEDDED_BYTES:
            raise UsageError(f"{out}: not written: {size} bytes is over the "
                             f"{MAX_EMBEDDED_BYTES} byte limit for a model shipped inside "
                             "the wheel; publish it on the Hub instead")
    what = {"sr": f"bicubic x{scale}", "denoise": f"AWGN sigma {_span(data['sigma'])}",
            "jpeg": f"JPEG quality {_span(data['quality'])}"}[task]
    training = (f"{' + '.join(Path(p).name for p in data['train'])}, {what}, {step} steps, "
                f"batch {data['batch_size']}, LQ patch {data['patch_size']} "
                f"({weights} weights; restore train)")
    n_params = sum(p.numel() for p in model.parameters())
    rel = f"models/{out.name}"
    spec = make_spec(
        name, family=model.config.family, config=model.config.to_kwargs(), task=task,
        source=EmbeddedSource(relpath=rel, path=models_dir().parent / rel),
        sha256=sha256_file(out), size=out.stat().st_size, license=license,
        description=description or f"{model.config.family} {model.config.norm.value} "
                                   f"{n_params / 1e6:.2f}M, {task}"
                                   f"{f' x{scale}' if task == 'sr' else ''}, trained by restore",
        params=n_params, psnr=psnr or None,
        psnr_source=(psnr_source or "measured (restore eval)") if psnr else "",
        fp16_safe=fp16_safe,
        training=training,
        sigma_range=_range(data["sigma"]) if task == "denoise" else None,
        quality_range=_range(data["quality"]) if task == "jpeg" else None)
    return entry_toml(spec)


def _span(v: list) -> str:
    return f"{v[0]:g}" if v[0] == v[-1] else f"{v[0]:g}-{v[-1]:g}"


def _range(v: list) -> list:
    return [v[0], v[-1]]
