"""Whole-image vs tiled inference: time, images/s and peak memory, in one run.

    python benchmarks/tiling.py [--model NAME|FILE] [--size 512] [--scale 4]
        [--runs whole,independent:128,exact:128] [--device cpu] [--repeat 3]

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

    torch.manual_seed(0)
    device = resolve_device(args.device)
    model = load(args.model, args.scale)
    model.to(device)
    x = torch.rand(3, args.size, args.size)
    r = Restorer(model, scale=model.scale, size_multiple=model.size_multiple, device=device,
                 precision=Precision(args.precision), tile=args.tile, overlap=args.overlap,
                 tile_mode=args.mode)
    y, _ = r(x)  # warm-up
    times = []
    for _ in range(args.repeat):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        y, st = r(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    times.sort()
    peak = (torch.cuda.max_memory_allocated() if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    torch.save(y, args.out)
    print(json.dumps({"tile": args.tile, "mode": st.tile_mode or "whole", "tiles": st.tiles,
                      "median_s": times[len(times) // 2], "peak_bytes": peak}))


def load(model: str | None, scale: int):
    from pathlib import Path

    from restore.checkpoint import load_model

    if model and Path(model).exists():
        return load_model(model)
    from restore import weights

    reg = weights.load_registry()
    spec = reg.get(model) if model else reg.default_for(f"sr-x{scale}")
    if spec is None:
        sys.exit(f"no default sr-x{scale} model in weights.toml; pass --model")
    return weights.load_registry_model(spec)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--runs", default="whole,independent:128,exact:128")
    p.add_argument("--overlap", type=int, default=16)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--tile", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--mode", default="auto", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)

    import tempfile

    import torch

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, spec in enumerate(args.runs.split(",")):
            mode, _, tile = spec.partition(":")
            tile = 0 if mode == "whole" else int(tile)
            mode = "auto" if mode == "whole" else mode
            out = f"{tmp}/{i}.pt"
            cmd = [sys.executable, __file__, "--child", "--tile", str(tile), "--out", out,
                   "--mode", mode,
                   "--size", str(args.size), "--scale", str(args.scale), "--overlap",
                   str(args.overlap), "--device", args.device, "--precision", args.precision,
                   "--repeat", str(args.repeat)] + (["--model", args.model] if args.model else [])
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode:
                sys.exit(res.stderr)
            row = json.loads(res.stdout.strip().splitlines()[-1])
            row["y"] = torch.load(out)
            rows.append(row)
    base = rows[0]
    print(f"model {args.model or 'default'}, {args.size}x{args.size} input, x{args.scale}, "
          f"{args.device}, {args.precision}, overlap {args.overlap}, median of {args.repeat}")
    print(f"{'mode':>16} {'tiles':>5} {'s/img':>8} {'img/s':>7} {'peak MiB':>9} "
          f"{'vs whole':>9} {'max|diff|':>10} {'PSNR vs whole':>14}")
    for r in rows:
        mode = "whole" if r["tile"] == 0 else f"{r['mode']} {r['tile']}"
        diff = (r["y"] - base["y"]).abs()
        mse = float((r["y"].clamp(0, 1) - base["y"].clamp(0, 1)).pow(2).mean())
        psnr = "inf" if mse == 0 else f"{10 * math.log10(1 / mse):.2f} dB"
        print(f"{mode:>16} {r['tiles']:>5} {r['median_s']:>8.3f} {1 / r['median_s']:>7.3f} "
              f"{r['peak_bytes'] / 2**20:>9.0f} {r['median_s'] / base['median_s']:>8.2f}x "
              f"{diff.max().item():>10.2e} {psnr:>14}")


if __name__ == "__main__":
    main()
