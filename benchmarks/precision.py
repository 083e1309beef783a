"""Reduced precision (fp16, bf16) through the engine against fp32, and an fp16 verdict.

    python benchmarks/precision.py MODEL [MODEL ...] [--images DIR_OR_FILE ...]
        [--task sr|denoise|jpeg] [--device auto|cpu|cuda] [--precisions fp16,bf16]
        [--max-side 512] [--json OUT.json]

What ``restore inspect model`` does comes from restore.analysis (see the docstrings of
restore.analysis.report and .stats): loading MODEL (checkpoint file or registry name), the
task (--task for an undeclared scale-1 model), the inputs (centre crop to --max-side, then
bicubic 1/scale, AWGN sigma 25 seed 0 or JPEG q10), the fp32 per-block statistics and
any-layer max. Images: Set5 HR of the shared data, else inspect's bundled sample.

Added here: each image runs whole (tile 0) through restore.engine.Restorer in fp32, the
reference (TF32 off on CUDA), then in each reduced precision under the engine's autocast.
The engine recomputes a non-finite output in fp32, hiding overflow, so the model runs in a
probe that counts NaN/Inf in the raw output first (``non-finite``); ``fp32 redo`` and the
notes are the engine's RunStats. forward_stats re-runs a non-finite case to name the
module where it began. PSNR: vs the fp32 output, both clamped to [0, 1] and rounded to
uint8 (restore.metrics.psnr, peak 255, no crop); max|diff| on the float outputs.

Verdict: fp16-safe when BOTH the rule of ``restore inspect`` holds on these images
(any-layer max x FP16_MARGIN (16) < 65504: restore.analysis.stats.fp16_safe) AND on every
image fp16 ran, its raw output was finite (no fp32 redo) and its PSNR vs fp32 is >= 40 dB.
No fp16 run: "unknown", or "NOT fp16-safe" when the rule fails.

Tables to stdout, progress to stderr; --json: per model ``report`` (the object of
``restore inspect model --json``), ``rows`` and ``verdict``, non-finite numbers as null (a
null PSNR: identical outputs). Exit 0; 1 if a model or an image failed (the others still
run); 2 for a usage error.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable from a checkout without installing the package
    sys.path.insert(0, str(REPO))

PSNR_MIN = 40.0  # dB, fp16 output vs fp32 output
REDUCED = ("fp16", "bf16")
SET5 = [REPO.parent / "shared/data/benchmarks/Set5/HR", REPO / "shared/data/benchmarks/Set5/HR"]


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


def image_files(specs: list[str] | None) -> list[Path]:
    from restore.analysis.report import sample_image
    from restore.io import is_image_path

    files: list[Path] = []
    for p in map(Path, specs or [next((d for d in SET5 if d.is_dir()), sample_image())]):
        files += sorted(f for f in p.iterdir() if is_image_path(f)) if p.is_dir() else [p]
    missing = [f for f in files if not f.is_file()]
    if missing or not files:
        raise ValueError(f"{missing[0]}: no such file" if missing else "no image files")
    return files


def engine_run(model, x, device, precision: str):
    """x (C, H, W) whole through restore.engine.Restorer: (output (C, sH, sW) float32 CPU,
    RunStats, NaN/Inf count of the raw reduced-precision output)."""
    import torch

    from restore.engine import Precision, Restorer

    raw: list[int] = []

    def probe(t):
        y = model(t)
        if torch.is_autocast_enabled(device.type):  # not the engine's fp32 redo
            raw.append(int((~torch.isfinite(y)).sum()))
        return y

    y, st = Restorer(probe, scale=int(model.scale), size_multiple=int(model.size_multiple),
                     device=device, precision=Precision(precision), tile=0)(x)
    return y, st, sum(raw)


def first_nonfinite(model, x, device, precision: str) -> str | None:
    """The first module (by first completion) with a non-finite output from finite inputs.
    layer_max keeps a max over calls, so a module called twice (DropPath) sits at its
    first call: a non-finite input rules it out."""
    from restore.analysis.stats import forward_stats
    from restore.engine import Precision, autocast

    with autocast(device, Precision(precision)):
        seen = forward_stats(model, x.to(device)).layer_max
    for key, v in seen.items():
        name = key.removesuffix(" (output)")
        if name != key and not math.isfinite(v) and math.isfinite(seen.get(f"{name} (input)", 0)):
            return name
    return None


def bench_model(name: str, files: list[Path], args, device) -> dict:
    from restore.analysis.report import (
        inspect_model,
        load_for_inspection,
        model_task,
        prepare_input,
    )
    from restore.metrics import psnr
    from restore.tasks import Task

    loaded = load_for_inspection(name)
    model = loaded.module
    scale, chans = int(model.scale), int(model.config.in_chans)
    task = model_task(scale, loaded.task, Task(args.task) if args.task else None)
    probes, errors = [], []
    for f in files:
        try:
            probes.append(prepare_input(f, task, scale, chans, max_side=args.max_side))
        except Exception as exc:  # noqa: BLE001 (report the image, go on with the others)
            say(f"  {f}: skipped: {first_line(exc)}")
            errors.append({"image": str(f), "error": first_line(exc)})
    say(f"  fp32 activations of {len(probes)} image(s)")
    report = inspect_model(model, probes, name=loaded.name, task=task, device=device)
    rows = []
    for p in report.images:
        x, image = p.tensor[0], Path(p.path).stem
        size = f"{x.shape[2]}x{x.shape[1]}"
        say(f"  {image} ({size} input): fp32, {', '.join(args.precisions)}")
        y32, st32, _ = engine_run(model, x, device, "fp32")  # inspect_model just ran it
        ref8 = (y32.clamp(0, 1) * 255).round().byte()
        for prec in args.precisions:
            row = {"image": image, "input": size, "precision": prec}
            rows.append(row)
            try:
                y, st, bad = engine_run(model, x, device, prec)
            except Exception as exc:  # noqa: BLE001 (no kernel for this dtype here, say)
                row["error"] = first_line(exc)
                continue
            row.update(psnr=psnr((y.clamp(0, 1) * 255).round().byte(), ref8, data_range=255),
                       max_abs_diff=float((y - y32).abs().max()), nonfinite=bad,
                       fp32_recomputed=st.fp32_recomputed,
                       first_nonfinite_module=first_nonfinite(model, p.tensor, device, prec)
                       if bad else None,
                       engine_notes=st.notes + [f"fp32 run: {n}" for n in st32.notes])
    return {"model": name, "report": report, "rows": rows, "image_errors": errors,
            "verdict": verdict(report, rows)}


def verdict(report, rows: list[dict]) -> dict:
    """{"fp16_safe": True/False/None (unknown), "reasons": [...], "text"}."""
    amax, where = report.any_layer_max
    reasons = [] if report.fp16_safe else [
        f"any-layer max {amax:.4g} ({where}) x {report.margin:g} >= 65504"]
    fp16 = [r for r in rows if r["precision"] == "fp16"]
    ok = [r for r in fp16 if "error" not in r]
    bad = [r for r in ok if r["nonfinite"] or r["fp32_recomputed"]]
    low = [r["psnr"] for r in ok if not r["psnr"] >= PSNR_MIN]
    if len(ok) < len(fp16):
        reasons.append(f"fp16 failed on {len(fp16) - len(ok)}/{len(fp16)} images")
    if bad:
        reasons.append(f"non-finite fp16 output on {len(bad)}/{len(ok)} images (first at "
                       f"{bad[0]['first_nonfinite_module'] or '?'}; "
                       f"{sum(r['fp32_recomputed'] for r in bad)} recomputed in fp32)")
    if low:
        reasons.append(f"fp16 PSNR vs fp32 down to {min(low):.2f} dB < {PSNR_MIN:g} dB")
    safe = (not reasons) if (fp16 or reasons) else None  # None: unknown
    word = {True: "fp16-safe", False: "NOT fp16-safe", None: "unknown"}[safe]
    why = "; ".join(reasons) or (f"any-layer max {amax:.4g} x {report.margin:g} < 65504; " + (
        "fp16 not run" if safe is None else
        f"fp16 finite, PSNR vs fp32 >= {min(r['psnr'] for r in ok):.2f} dB"))
    return {"fp16_safe": safe, "reasons": reasons, "text": f"{word} ({why})"}


def fmt_psnr(v: float) -> str:
    return "inf" if v == math.inf else f"{v:.2f} dB"


def print_model(res: dict) -> None:
    from restore.analysis.report import format_model_report

    print("\n" + "\n".join(format_model_report(res["report"])))
    w = max([5] + [len(r["image"]) for r in res["rows"]])
    print(f"{'image':<{w}} {'input':>9} {'prec':>5} {'PSNR vs fp32':>13} {'max|diff|':>10} "
          f"{'non-finite':>10} {'fp32 redo':>9}  first bad module / engine notes")
    for r in res["rows"]:
        head = f"{r['image']:<{w}} {r['input']:>9} {r['precision']:>5}"
        if "error" in r:
            print(f"{head}  failed: {r['error']}")
            continue
        tail = " ".join(s for s in (r["first_nonfinite_module"], *r["engine_notes"]) if s)
        print(f"{head} {fmt_psnr(r['psnr']):>13} {r['max_abs_diff']:>10.2e} "
              f"{r['nonfinite']:>10} {r['fp32_recomputed']:>9}  {tail}")
    for e in res["image_errors"]:
        print(f"{Path(e['image']).stem:<{w}} failed: {e['error']}")
    print(f"verdict: {res['verdict']['text']}")


def jsonable(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return obj


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", metavar="MODEL",
                   help="restore checkpoint files or registry names")
    p.add_argument("--images", nargs="+", metavar="DIR_OR_FILE", help="image folders or "
                   "files (default: Set5 HR of the shared data, else the bundled sample)")
    p.add_argument("--task", choices=("sr", "denoise", "jpeg"),
                   help="for a scale-1 model that does not record its task")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--precisions", default="fp16,bf16",
                   help=f"comma-separated, of {', '.join(REDUCED)} (fp32 is the reference)")
    p.add_argument("--max-side", type=int, default=512,
                   help="centre-crop images to at most this side before degradation (0: off)")
    p.add_argument("--json", metavar="OUT.json", help="write all results here")
    args = p.parse_args()
    args.precisions = [s.strip().lower() for s in args.precisions.split(",") if s.strip()]
    if not args.precisions or not set(args.precisions) <= set(REDUCED):
        p.error(f"--precisions {','.join(args.precisions)}: give some of {', '.join(REDUCED)}")
    if args.max_side < 0:
        p.error("--max-side must be >= 0")

    import torch

    from restore.engine import resolve_device
    from restore.errors import UsageError

    try:
        device = resolve_device(args.device)
        files = image_files(args.images)
    except (UsageError, ValueError) as exc:
        p.error(str(exc))
    if device.type == "cuda":
        torch.cuda.set_device(device)
        # the reference must be true fp32 (cuDNN convolutions default to TF32 on Ampere+)
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False

    results = []
    for i, name in enumerate(args.models, 1):
        say(f"[{i}/{len(args.models)}] {name} on {device}")
        try:
            res = bench_model(name, files, args, device)
        except Exception as exc:  # noqa: BLE001 (report the model, go on with the others)
            say(f"{name}: failed: {first_line(exc)}")
            res = {"model": name, "error": first_line(exc), "image_errors": []}
        else:
            print_model(res)
        results.append(res)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print("\nsummary")
    for r in results:
        print(f"{r['model']}: {r['verdict']['text'] if 'verdict' in r else 'failed: ' + r['error']}")
    if args.json:
        out = {"device": str(device), "torch": torch.__version__, "device_name":
               torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
               "settings": {"images": [str(f) for f in files], "max_side": args.max_side,
                            "precisions": args.precisions, "task": args.task},
               "psnr_min_db": PSNR_MIN, "models": [
                   {k: v.to_dict() if k == "report" else v for k, v in r.items()}
                   for r in results]}
        Path(args.json).write_text(json.dumps(jsonable(out), indent=2, allow_nan=False) + "\n",
                                   encoding="utf-8")
        say(f"wrote {args.json}")
    return 1 if any("error" in r or r["image_errors"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
