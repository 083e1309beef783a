"""The Python API: a model by registry name or file, and images restored with it.

    import restore

    model = restore.load("swinir-iln-t.sr-x4")   # a registry name, a .safetensors file,
    big = model.restore(pil_image)               # or restore.load(task="sr", scale=4)
    array_out = model.restore(array)             # numpy in, numpy out (same dtype)
    model.restore_file("photo.png", "photo_x4.png", tile=256)

``load`` returns a ``Model``: the loaded network and its facts (task, scale, channels,
size multiple, fp16 safety, the noise sigmas or JPEG qualities it is for), on a device
and at a precision resolved as the command line resolves them (``auto``: CUDA, then MPS,
then the CPU; fp16 on a GPU only for a model registered fp16-safe). ``restore`` and
``restore_file`` take the command line's tiling options (``tile``: pixels, 0 for the whole
image, ``"auto"``; ``tile_mode``: auto, exact, independent; ``exact_memory``: bytes) and
run the same engine (restore.engine.Restorer); ``restore_file`` runs the same file
pipeline as `restore sr/denoise/jpeg` (bit depth, alpha, ICC and EXIF kept, atomic
write), so its output is the command's, byte for byte.

The command line and this API load models through restore.loader (one descriptor,
``Loaded``); ``Model`` adds the device, the precision and the engine.
"""

from __future__ import annotations

import numbers
from pathlib import Path

from .errors import RestoreError, UsageError
from .loader import Loaded, fit_for, load_for_task
from .loader import load as load_model
from .tasks import Task


class Model:
    """A loaded model on a device: its facts (``name``, ``task``, ``scale``, ``in_chans``,
    ``size_multiple``, ``fp16_safe``, ``span``, ``device``, ``precision``) and
    ``restore`` / ``restore_file``. Made by ``restore.load``."""

    def __init__(self, loaded: Loaded, device, precision) -> None:
        self._loaded = loaded
        self.module = loaded.module
        self.name, self.task, self.scale = loaded.name, loaded.task, loaded.scale
        self.in_chans, self.size_multiple = loaded.in_chans, loaded.size_multiple
        self.fp16_safe, self.span = loaded.fp16_safe, loaded.span
        self.device, self.precision = device, precision
        self.module.to(device)

    def __repr__(self) -> str:
        return (f"Model({self.name!r}, task={self.task.value}, scale={self.scale}, "
                f"in_chans={self.in_chans}, device={self.device}, "
                f"precision={self.precision.value})")

    def _restorer(self, tile: int | str, tile_mode: str, exact_memory: int | None,
                  overlap: int | None, tta: bool):
        from .engine import TILE_AUTO, Restorer

        if tile == "auto":
            tile = TILE_AUTO
        elif isinstance(tile, bool) or not isinstance(tile, numbers.Integral) or tile < 0:
            raise UsageError(f"tile={tile!r}: a number of pixels >= 0, or 'auto'")
        return Restorer(self.module, scale=self.scale, size_multiple=self.size_multiple,
                        device=self.device, precision=self.precision, tile=int(tile),
                        overlap=overlap, tta=tta, tile_mode=tile_mode,
                        exact_memory=exact_memory)

    def restore(self, image, *, tile: int | str = 0, tile_mode: str = "auto",
                exact_memory: int | None = None, overlap: int | None = None,
                tta: bool = False):
        """Restore a PIL image (gray, RGB, RGBA: alpha resized alongside) or a numpy array
        ((H, W) or (H, W, 1 | 3); uint8, uint16, or float in [0, 1]); returns the same kind
        and dtype, ``scale`` times larger. A gray image through a colour model goes as RGB
        and comes back gray, colour through a gray model channel by channel, as on the
        command line."""
        import numpy as np
        import torch
        from PIL import Image

        from .io import quantize
        from .pipeline import resize, run_channels

        pil = isinstance(image, Image.Image)
        alpha = None
        if pil:
            if image.mode in ("RGBA", "LA"):
                alpha = np.asarray(image.getchannel("A"), dtype=np.float32) / 255.0
            mode = "L" if image.mode in ("L", "LA", "1", "I;16") else "RGB"
            if image.mode == "I;16":  # 16-bit gray: back as 16-bit gray
                a, dtype = np.asarray(image, dtype=np.float32) / 65535.0, np.uint16
            else:
                a, dtype = np.asarray(image.convert(mode), dtype=np.float32) / 255.0, np.uint8
        else:
            a = np.asarray(image)
            dtype = a.dtype
            if dtype == np.uint8:
                a = a.astype(np.float32) / 255.0
            elif dtype == np.uint16:
                a = a.astype(np.float32) / 65535.0
            elif np.issubdtype(dtype, np.floating):
                a = a.astype(np.float32)
            else:
                raise UsageError(f"an array of {dtype}: give uint8, uint16 or float in [0, 1]")
        squeeze = a.ndim == 2
        if squeeze:
            a = a[:, :, None]
        if a.ndim != 3 or a.shape[2] not in (1, 3):
            raise UsageError(f"an image of shape {tuple(np.shape(image))}: give (H, W), "
                             "(H, W, 1) or (H, W, 3)")
        x = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))
        engine = self._restorer(tile, tile_mode, exact_memory, overlap, tta)
        y, _stats = run_channels(x, engine, self.in_chans)
        out = np.clip(y.numpy(), 0, 1).transpose(1, 2, 0)
        if pil:
            u8 = quantize(out, 16 if dtype == np.uint16 else 8)
            result = Image.fromarray(u8[:, :, 0] if u8.shape[2] == 1 else u8)
            if alpha is not None:
                a_big = resize(alpha[:, :, None], out.shape[0], out.shape[1])[:, :, 0]
                result.putalpha(Image.fromarray(quantize(a_big)))
            return result
        if dtype in (np.uint8, np.uint16):
            out = quantize(out, 16 if dtype == np.uint16 else 8)
        else:
            out = out.astype(dtype)
        return out[:, :, 0] if squeeze else out

    def restore_file(self, source, target, *, tile: int | str = 0, tile_mode: str = "auto",
                     exact_memory: int | None = None, overlap: int | None = None,
                     tta: bool = False, overwrite: bool = False, output_quality: int = 95,
                     outscale: float | None = None) -> dict:
        """Read ``source``, restore it, write ``target`` (format from its suffix) as
        `restore` does; returns what `restore --json` records for it. An existing target
        is replaced only with ``overwrite``, the source never."""
        from .pipeline import Existing, ImageOptions, Job, check_destinations, restore_file

        source, target = Path(source), Path(target)
        if target.resolve() == source.resolve():
            raise UsageError(f"{target}: is the input; choose another output")
        job = Job(source, target)
        check_destinations([job])
        engine = self._restorer(tile, tile_mode, exact_memory, overlap, tta)
        res = restore_file(job, engine, self.in_chans, self.scale,
                           ImageOptions(task=self.task, output_quality=output_quality,
                                        outscale=outscale),
                           Existing.OVERWRITE if overwrite else Existing.REFUSE)
        if res.status != "ok":
            raise RestoreError(res.reason if res.reason.startswith(str(source))
                               or res.reason.startswith(str(target))
                               else f"{source}: {res.reason}")
        return dict(res.info, input=str(source), output=str(target), model=self.name,
                    warnings=res.warnings)


def load(model: str | Path | None = None, *, task: str | Task | None = None,
         scale: int | None = None, level: float | None = None, device: str = "auto",
         precision: str = "auto", offline: bool = False) -> Model:
    """A model ready to run: ``model`` is a registry name (``restore models list``) or a
    checkpoint file; without it, the registry's default for ``task`` (and ``scale`` for
    sr; ``level``, a noise sigma or JPEG quality, picks among several defaults).
    ``device``: auto, cpu, cuda, cuda:N, mps. ``precision``: auto, fp32, bf16, fp16."""
    from .engine import resolve_device, resolve_precision

    if task is not None:
        try:
            task = Task(task)
        except ValueError:
            raise UsageError(f"task={task!r}: one of sr, denoise, jpeg") from None
    if model is None:
        if task is None:
            raise UsageError("load(): give a model (registry name or file) or a task")
        if task is Task.SR and scale is None:
            raise UsageError("load(task='sr'): give scale=2, 3 or 4")
        loaded = load_for_task(task, scale or 1, None, offline, level)[0]
    else:
        loaded = load_model(model, offline)
        if loaded.task is None and task is None:
            raise UsageError(f"{model}: the file does not say its task: give task='denoise' "
                             "or task='jpeg'")
        task = task or loaded.task
        loaded = fit_for(loaded, task, scale or loaded.scale)
    dev = resolve_device(device)
    prec, _warning = resolve_precision(precision, dev, loaded.fp16_safe)
    return Model(loaded, dev, prec)
