"""Whole-image vs tiled inference: time, images/s and peak memory, in one run.

    python benchmarks/tiling.py [--model NAME|FILE] [--size 512 | --size 4000x3000]
        [--task sr|denoise] [--scale 4] [--photo] [--runs whole,independent:128,exact:128]
        [--exact-memory 1.5G] [--whole-limit 14G] [--device cpu] [--repeat 3] [--warmup 1]

``--photo`` makes the input a mosaic of the Kodak24 photos (../shared/data) instead of
uniform noise, with Gaussian noise of sigma 25 for ``--task denoise``. ``--exact-memory``
caps the host RAM of exact tiling's whole maps (restore.engine.maps; default its own).
A ``whole`` run that fails (out of memory) is reported and the tiled outputs are then
compared with the exact-tiled one (equal to the whole image up to float rounding wherever
the whole image fits: tests/test_exact*.py).

A run is ``whole``, ``independent:TILE`` (each tile its own forward, blended over the
overlap) or ``exact:TILE`` (layer by layer with whole-image statistics carried across
tiles, restore.engine.exact).

Each configuration runs in a fresh subprocess so that its peak memory is its own: on the
CPU the peak resident set size (ru_maxrss), on CUDA torch.cuda.max_memory_allocated. The
model runs through the same engine as `restore sr` (restore.engine.Restorer). With no
--model, the task's default model from weights.toml is used. Also prints the max abs
difference and PSNR of each tiled output against the whole-image output.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys


def child(args: argparse.Namespace) -> None:
    import resource
    import time

    import torch

    from restore.engine import Precision, Restorer, resolve_device
    from restore.engine.maps import parse_size

    if args.tile == 0 and args.whole_limit:  # fail cleanly (MemoryError) rather than OOM
        cap = parse_size(args.whole_limit)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    torch.manual_seed(0)
    device = resolve_device(args.device)
    model = load(args.model, args.task, args.scale)
    model.to(device)
    x = torch.load(args.input)
    r = Restorer(model, scale=model.scale, size_multiple=model.size_multiple, device=device,
                 precision=Precision(args.precision), tile=args.tile, overlap=args.overlap,
                 tile_mode=args.mode,
                 exact_memory=parse_size(args.exact_memory) if args.exact_memory else None)
    for _ in range(args.warmup):
        r(x)
    times = []
    for _ in range(args.repeat):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        y, st = r(x)
        if args.tile == 0 and st.oom_retries:  # the engine fell back to tiles: not whole
            sys.exit(f"out of memory for the whole image ({st.notes[0]})")
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    times.sort()
    peak = (torch.cuda.max_memory_allocated() if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    torch.save(y, args.out)
    print(json.dumps({"tile": args.tile, "mode": st.tile_mode or "whole", "tiles": st.tiles,
                      "median_s": times[len(times) // 2], "peak_bytes": peak}))


def load(model: str | None, task: str, scale: int):
    from pathlib import Path

    from restore.checkpoint import load_model

    if model and Path(model).exists():
        return load_model(model)
    from restore import registry

    reg = registry.load_registry()
    key = f"sr-x{scale}" if task == "sr" else task
    spec = reg.get(model) if model else reg.default_for(key)
    if spec is None:
        sys.exit(f"no default {key} model in weights.toml; pass --model")
    return registry.load_registry_model(spec)


def make_input(width: int, height: int, photo: bool, task: str):
    """(3, H, W) float32 in [0, 1]: a mosaic of the Kodak24 photos, or uniform noise."""
    import numpy as np
    import torch

    if not photo:
        return torch.rand(3, height, width, generator=torch.Generator().manual_seed(0))
    from pathlib import Path

    from restore.io import read_image

    root = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "benchmarks"
    tiles = [read_image(p).pixels for p in sorted((root / "Kodak24" / "HR").glob("*.png"))]
    out = np.zeros((height, width, 3), np.float32)
    y, i = 0, 0
    while y < height:
        x, row_h = 0, 0
        while x < width:
            t = tiles[i % len(tiles)]
            i += 1
            h, w = min(t.shape[0], height - y), min(t.shape[1], width - x)
            out[y:y + h, x:x + w] = t[:h, :w]
            x, row_h = x + w, max(row_h, h)
        y += row_h
    if task == "denoise":
        from restore.degrade import add_gaussian_noise

        out = np.clip(np.round(add_gaussian_noise(out, 25, 0) * 255), 0, 255) / 255
    return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32)).permute(2, 0, 1).contiguous()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model")
    p.add_argument("--size", default="512", help="N (square) or WxH")
    p.add_argument("--task", default="sr", choices=("sr", "denoise"))
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--photo", action="store_true", help="a Kodak24 mosaic, not noise")
    p.add_argument("--exact-memory", help="RAM cap for exact tiling's maps, e.g. 1.5G")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--whole-limit", help="address-space cap of the whole-image run, e.g. 14G "
                                        "(it then fails cleanly instead of meeting the OOM killer)")
    p.add_argument("--runs", default="whole,independent:128,exact:128")
    p.add_argument("--overlap", type=int, default=16)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--tile", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--mode", default="auto", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--input", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)

    import tempfile

    import torch

    width, _, height = args.size.lower().partition("x")
    width, height = int(width), int(height or width)
    scale = args.scale if args.task == "sr" else 1
    rows, skipped = [], []
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(make_input(width, height, args.photo, args.task), f"{tmp}/in.pt")
        for i, spec in enumerate(args.runs.split(",")):
            mode, _, tile = spec.partition(":")
            tile = 0 if mode == "whole" else int(tile)
            mode = "auto" if mode == "whole" else mode
            out = f"{tmp}/{i}.pt"
            cmd = [sys.executable, __file__, "--child", "--tile", str(tile), "--out", out,
                   "--mode", mode, "--input", f"{tmp}/in.pt", "--task", args.task,
                   "--scale", str(scale), "--overlap",
                   str(args.overlap), "--device", args.device, "--precision", args.precision,
                   "--repeat", str(args.repeat), "--warmup", str(args.warmup)]
            cmd += (["--model", args.model] if args.model else [])
            cmd += (["--exact-memory", args.exact_memory] if args.exact_memory else [])
            cmd += (["--whole-limit", args.whole_limit] if args.whole_limit else [])
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode and tile == 0:  # the whole image may not fit: say so, go on
                last = (res.stderr.strip().splitlines() or [f"exit code {res.returncode}"])[-1]
                skipped.append(f"whole image: failed ({last[:160]})")
                continue
            if res.returncode:
                sys.exit(res.stderr)
            row = json.loads(res.stdout.strip().splitlines()[-1])
            row["y"] = torch.load(out)
            rows.append(row)
            print(f"  done: {spec}: {row['median_s']:.1f} s, peak "
                  f"{row['peak_bytes'] / 2**20:.0f} MiB", file=sys.stderr, flush=True)
    # the reference: the whole image, else exact tiles (the whole image up to rounding)
    base = next((r for r in rows if r["tile"] == 0), None) or next(
        (r for r in rows if r["mode"] == "exact"), rows[0])
    ref = "whole" if base["tile"] == 0 else "exact"
    indep = next((r for r in rows if r["mode"] == "independent"), None)
    print(f"model {args.model or 'default ' + args.task}, {width}x{height} "
          f"{'photo mosaic' if args.photo else 'noise'} input, x{scale}, {args.device}, "
          f"{args.precision}, overlap {args.overlap}, median of {args.repeat}")
    for line in skipped:
        print(f"  {line}")
    print(f"{'mode':>16} {'tiles':>5} {'s/img':>8} {'peak MiB':>9} {'vs indep.':>9} "
          f"{'max|diff|':>10} {'PSNR vs ' + ref:>14}")
    for r in rows:
        mode = "whole" if r["tile"] == 0 else f"{r['mode']} {r['tile']}"
        diff = (r["y"] - base["y"]).abs()
        mse = float((r["y"].clamp(0, 1) - base["y"].clamp(0, 1)).pow(2).mean())
        psnr = "inf" if mse == 0 else f"{10 * math.log10(1 / mse):.2f} dB"
        vs = f"{r['median_s'] / indep['median_s']:>8.2f}x" if indep else f"{'-':>9}"
        print(f"{mode:>16} {r['tiles']:>5} {r['median_s']:>8.2f} "
              f"{r['peak_bytes'] / 2**20:>9.0f} {vs} {diff.max().item():>10.2e} {psnr:>14}")


if __name__ == "__main__":
    main()
