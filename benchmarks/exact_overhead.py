"""Exact tiling's cost over independent tiles, in wall and CPU time, in one process.

    python benchmarks/exact_overhead.py --size 800x600 --tile 256 --repeat 2

Runs the shipped model (default swinir-iln-t.sr-x4) on one random image with independent
tiles, exact tiles with every whole map in a scratch file (--exact-memory 0), and exact
tiles with all maps in RAM, interleaved ``--repeat`` times, on ``--threads`` threads. CPU
time (``time.process_time``) is the figure to compare on a shared machine: wall time
counts the other processes too. The last line gives exact / independent per placement.
"""

from __future__ import annotations

import argparse
import time

import torch

from restore.engine.runner import Restorer
from restore.registry import load_registry, resolve


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="swinir-iln-t.sr-x4")
    ap.add_argument("--size", default="800x600", help="WxH of the input")
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    spec = load_registry().models[args.model]
    model = resolve(args.model)
    w, h = (int(v) for v in args.size.lower().split("x"))
    x = torch.rand(spec.in_chans, h, w,
                   generator=torch.Generator().manual_seed(0))
    runs = [("independent", None), ("exact, maps in a scratch file", 0),
            ("exact, maps in RAM", 64 << 30)]
    cpu: dict[str, list[float]] = {name: [] for name, _ in runs}
    for _ in range(args.repeat):
        for name, mem in runs:
            mode = "independent" if mem is None else "exact"
            r = Restorer(model, scale=spec.scale, size_multiple=8, device=torch.device("cpu"),
                         tile=args.tile, tile_mode=mode, exact_memory=mem)
            t, c = time.perf_counter(), time.process_time()
            r(x)
            wall, used = time.perf_counter() - t, time.process_time() - c
            cpu[name].append(used)
            print(f"{name:32s} wall {wall:7.2f} s   cpu {used:7.2f} s", flush=True)
    base = min(cpu["independent"])
    print("exact / independent (best CPU time): " + ", ".join(
        f"{name.removeprefix('exact, ')} {min(v) / base:.2f}x"
        for name, v in cpu.items() if name != "independent"))


if __name__ == "__main__":
    main()
