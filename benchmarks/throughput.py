"""Inference throughput of x4 SR models on the CPU or a GPU: time, FLOP/s and utilization.

    python benchmarks/throughput.py [--device cpu|cuda] [--sizes 256,1024]
        [--models swinir-s-iln,swinir-s-ln,hat-mini-iln,hat-mini-ln,drct-iln,...]
        [--model FILE ...]
        [--precision fp32,bf16,fp16] [--modes whole,independent:256,exact:256]
        [--overlap 16] [--repeat 5] [--warmup 2] [--timeout 0] [--peak-tflops X]
        [--json FILE]

Every (model, size, precision, mode) configuration runs in a fresh subprocess through the
same engine as `restore sr` (restore.engine.Restorer), so that its peak memory is its own:
on CUDA torch.cuda.max_memory_allocated (reset after the model is on the device, so weights
plus activations), on the CPU the process's peak resident set size (ru_maxrss; it includes
torch itself, a few hundred MiB). Times are the median of --repeat calls after --warmup
calls, synchronized on CUDA; one call is the engine's whole job on a (3, S, S) image in
[0, 1] held on the CPU (transfer to and from the device, the fp32-recompute check under
bf16/fp16, the tile blending). A configuration that fails (CUDA out of memory, a precision
the device cannot run, --timeout) is a row with its error; the run goes on. The markdown
table goes to stdout, progress to stderr, all rows (and the assumptions) to --json.

Models (--models, NAME-ln for LayerNorm, NAME-iln for i-LN; random weights, seed 0):
    swinir-s   weights.toml preset swinir-s-x4: SwinIR lightweight, embed 60, depths 4x6,
               6 heads, window 8, mlp 2, pixelshuffledirect (0.93M params)
    hat-mini   weights.toml preset hat-mini-x4 (the i-LN paper's HAT-mini): embed 96,
               depths 6x6, 6 heads, window 16, compress 24, squeeze 24, overlap 0.5, mlp 2,
               pixelshuffle (4.62M params)
    swinir-m, hat-s, hat   presets swinir-m-x4, hat-s-x4, hat-x4 (the large ones)
    drct       weights.toml preset drct-x4: DRCT, embed 180, 6 groups of 5 Swin blocks
               with dense connections (gc 32), 6 heads, window 16, mlp 2, pixelshuffle
               (14.1M params)
    drct-l     preset drct-l-x4: DRCT-L, as drct with 12 groups (27.6M params)
    swinir-t   the [model.arch] of configs/sr-x4-iln-t.toml: the shipped tiny SwinIR
               (embed 32, depths 2x4, 4 heads, window 8, pixelshuffledirect; 0.137M)
    drct-t     the [model.arch] of configs/sr-x4-drct-iln-t.toml: DRCT at that size
               (embed 26, gc 6, 2 groups of 5 blocks, 2 heads, window 8,
               pixelshuffledirect; 0.135M)
  The config is used with norm set, stdnorm/eps at that norm's defaults (LN:
  no stdnorm, eps 1e-5; i-LN: stdnorm, eps 1e-4) and drop_path_rate 0, in eval mode.
  --model FILE (repeatable) times a trained model instead: a restore .safetensors
  checkpoint (restore.checkpoint.load_model) or a weights.toml model name.

Modes: ``whole`` (one forward of the whole image), ``independent:TILE`` (each tile its
own forward, blended over --overlap) or ``exact:TILE`` (layer by layer with whole-image
statistics carried across tiles, restore.engine.exact). A tile not smaller than the image
runs the whole image (the engine's rule); the row says so. If the engine runs out of device
memory it halves the tile and restarts; the row says that too.

FLOPs: counted once per model and size with torch.utils.flop_counter.FlopCounterMode on a
whole-image forward on the meta device (shapes only, so any size is free to count), fp32.
FLOPs are 2 x multiply-adds of convolutions and matmuls (linear, attention); norms,
softmax, GELU and other element-wise ops are not counted. SDPA: on real CPU tensors the
counter counts 0 (seen with torch 2.13) for F.scaled_dot_product_attention, whose CPU kernel
(aten._scaled_dot_product_flash_attention_for_cpu) has no FLOP formula; so the count runs
with restore.archs.common.set_fused_attention(model, False), the reference's explicit
attention, whose two batched matmuls are the SDPA FLOPs (4 * Nq * Nk * head_dim per head
and window), the same formula the counter uses for the SDPA kernels it knows. Tiled rows
use the whole-image count (useful work): overlap and halo recomputation show up as lower
TFLOP/s, not as more FLOPs.

Peaks for utilization (dense, no sparsity; TFLOP/s by precision, first name match wins):
    H100 SXM (e.g. "NVIDIA H100 80GB HBM3") and H200: fp32 67 (non-tensor-core), bf16/fp16
    989; H100 PCIe 51 / 756; H100 NVL and H200 NVL 60 / 835; A100 19.5 / 312;
    L40S 91.6 / 362; L4 30.3 / 121. Another GPU: no utilization unless --peak-tflops.
  fp32 rows are measured against the CUDA-core peak although cuDNN may run convolutions
  in TF32 (torch's default allow_tf32 for cuDNN), so fp32 utilization can be flattering.
  CPU: the practical peak is measured in the same run, the best of 5 fp32 2048x2048 @
  2048x2048 matmuls (after one warm-up) with torch's default threads, and used for every
  precision (CPUs without bf16/fp16 matmul units run those far below the fp32 figure, so no
  separate low-precision peak is assumed). --peak-tflops X (or fp32=X,bf16=Y,...) overrides.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

SCALE = 4
# benchmark name -> a weights.toml preset, or a training config (its [model.arch])
ARCHS = {"swinir-s": "swinir-s-x4", "hat-mini": "hat-mini-x4", "swinir-m": "swinir-m-x4",
         "hat-s": "hat-s-x4", "hat": "hat-x4", "drct": "drct-x4", "drct-l": "drct-l-x4",
         "swinir-t": "configs/sr-x4-iln-t.toml", "drct-t": "configs/sr-x4-drct-iln-t.toml"}
NORMS = {"ln": "layernorm", "iln": "iln"}
PRECISIONS = ("fp32", "bf16", "fp16")
MODES = ("whole", "independent", "exact")
CUDA_PEAKS = (  # (substring of torch.cuda.get_device_name, dense TFLOP/s by precision)
    ("H100 PCIe", {"fp32": 51.0, "bf16": 756.0, "fp16": 756.0}),
    ("H100 NVL", {"fp32": 60.0, "bf16": 835.0, "fp16": 835.0}),
    ("H100", {"fp32": 67.0, "bf16": 989.0, "fp16": 989.0}),
    ("H200 NVL", {"fp32": 60.0, "bf16": 835.0, "fp16": 835.0}),
    ("H200", {"fp32": 67.0, "bf16": 989.0, "fp16": 989.0}),
    ("A100", {"fp32": 19.5, "bf16": 312.0, "fp16": 312.0}),
    ("L40S", {"fp32": 91.6, "bf16": 362.0, "fp16": 362.0}),
    ("L4", {"fp32": 30.3, "bf16": 121.0, "fp16": 121.0}),
)


# -- children: each runs in its own process and prints one JSON line ---------------------
def _import_path() -> None:
    """Time the checkout's package (the one next to this script), installed or not."""
    root = Path(__file__).resolve().parents[1]
    if (root / "restore" / "__init__.py").is_file():
        sys.path.insert(0, str(root))


def load(name: str):
    """A benchmark name (random weights, seed 0), a checkpoint file or a registry name;
    eval mode, CPU, fp32."""
    import torch

    if name.rpartition("-")[0] in ARCHS and name.rpartition("-")[2] in NORMS:
        from restore import registry
        from restore.archs import build

        arch, _, norm = name.rpartition("-")
        source = ARCHS[arch]
        if source.endswith(".toml"):
            from restore.train.config import load_config

            m = load_config(Path(__file__).resolve().parents[1] / source).model
            family, cfg = m.family, dict(m.arch)
        else:
            preset = registry.load_registry().preset(source)
            family, cfg = preset.family, preset.config_dict()
        cfg.pop("stdnorm", None)
        cfg.pop("eps", None)
        cfg.update(norm=NORMS[norm], drop_path_rate=0.0)
        torch.manual_seed(0)
        return build(family, **cfg).eval()
    if Path(name).exists():
        from restore.checkpoint import load_model

        return load_model(name)
    if Path(name).suffix in (".safetensors", ".pth", ".pt", ".ckpt"):
        raise FileNotFoundError(f"no such file: {name}")
    from restore import registry

    return registry.load_registry_model(name)


def child_flops(args: argparse.Namespace) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from restore.archs.common import set_fused_attention

    try:
        model = load(args.model)
    except Exception as exc:  # noqa: BLE001 (every row of this model shows it)
        return {"load_error": _error(exc)}
    cfg = model.config
    out = {"params": sum(p.numel() for p in model.parameters()), "norm": cfg.norm.value,
           "family": cfg.family, "flops": {}}
    model = set_fused_attention(model.to("meta"), False)
    for size in args.sizes:
        x = torch.empty(1, cfg.in_chans, size, size, device="meta")
        with torch.inference_mode(), FlopCounterMode(display=False) as fc:
            model(x)
        out["flops"][str(size)] = fc.get_total_flops()
    return out


def child_peak(args: argparse.Namespace) -> dict:
    import time

    import torch

    n = 2048
    a, b = torch.rand(n, n), torch.rand(n, n)
    a @ b
    times = []
    for _ in range(5):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return {"gflops": 2 * n**3 / min(times) / 1e9, "threads": torch.get_num_threads(),
            "cpu": _cpu_name()}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def child_run(args: argparse.Namespace) -> dict:
    import resource
    import time

    import torch

    from restore.engine import Precision, Restorer, resolve_device

    device = resolve_device(args.device)
    model = load(args.model).to(device)
    cuda = device.type == "cuda"
    name = torch.cuda.get_device_name(device) if cuda else _cpu_name()
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    torch.manual_seed(0)
    x = torch.rand(model.config.in_chans, args.size, args.size)
    r = Restorer(model, scale=model.scale, size_multiple=model.size_multiple, device=device,
                 precision=Precision(args.precision), tile=args.tile, overlap=args.overlap,
                 tile_mode=args.mode)
    for _ in range(args.warmup):
        r(x)
    times = []
    for _ in range(args.repeat):
        if cuda:
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        _, st = r(x)
        if cuda:
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t)
    peak = (torch.cuda.max_memory_allocated(device) if cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"device_name": name, "threads": torch.get_num_threads(), "times_s": times,
            "median_s": sorted(times)[len(times) // 2], "peak_bytes": peak,
            "base_rss_bytes": None if cuda else base, "tile_used": st.tile,
            "tile_mode_used": st.tile_mode, "tiles": st.tiles, "oom_retries": st.oom_retries,
            "fp32_recomputed": st.fp32_recomputed, "notes": st.notes}


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:300]


def child(args: argparse.Namespace) -> None:
    _import_path()
    run = {"flops": child_flops, "peak": child_peak, "run": child_run}[args.child]
    try:
        out = run(args)
    except Exception as exc:  # noqa: BLE001 (any failure is a row, not the end of the run)
        print(json.dumps({"error": _error(exc)}))
        sys.exit(1)
    print(json.dumps(out))


# -- parent: no torch here, every measurement is a child ----------------------------------
def spawn(kind: str, extra: list[str], timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--child", kind] + extra
    try:
        res = subprocess.run(cmd, check=False, capture_output=True, text=True,
                             timeout=timeout or None)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:g} s"}
    lines = res.stdout.strip().splitlines()
    if lines:
        try:
            return json.loads(lines[-1])
        except json.JSONDecodeError:
            pass
    err = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    return {"error": (err[-1] if err else f"exit status {res.returncode}")[:300]}


def parse_peaks(text: str | None) -> dict[str, float] | None:
    if not text:
        return None
    if "=" not in text:
        return dict.fromkeys(PRECISIONS, float(text))
    return {k.strip(): float(v) for k, v in (kv.split("=") for kv in text.split(","))}


def cuda_peaks(name: str) -> dict[str, float] | None:
    for key, peaks in CUDA_PEAKS:
        if key.lower() in name.lower():
            return peaks
    return None


def _list(p: argparse.ArgumentParser, text: str, what: str, valid=None) -> list[str]:
    items = [s.strip() for s in text.split(",") if s.strip()]
    if not items:
        p.error(f"{what} is empty")
    if valid is not None:
        for s in items:
            if s not in valid:
                p.error(f"{what}: {s!r} is not one of {', '.join(valid)}")
    return items


def _num(v: float | None, spec: str) -> str:
    return "" if v is None else format(v, spec)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda (cuda:N)")
    p.add_argument("--sizes", default="256,1024", help="input sides in LR pixels")
    p.add_argument("--models", default="swinir-s-iln,swinir-s-ln,hat-mini-iln,hat-mini-ln")
    p.add_argument("--model", action="append", default=None,
                   help="a .safetensors checkpoint or registry name (repeatable); "
                        "replaces --models")
    p.add_argument("--precision", help="list of fp32,bf16,fp16 (default: fp32 on the CPU, "
                                       "all three on CUDA)")
    p.add_argument("--modes", default="whole,independent:256,exact:256")
    p.add_argument("--overlap", type=int, default=16, help="tile overlap, LR pixels per side")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--timeout", type=float, default=0,
                   help="seconds per configuration before it is a failed row (0: none)")
    p.add_argument("--peak-tflops", help="peak TFLOP/s for utilization: X, or fp32=X,bf16=Y")
    p.add_argument("--json", help="write all rows and the assumptions here")
    p.add_argument("--child", choices=("flops", "peak", "run"), help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--tile", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--mode", default="auto", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        args.sizes = [int(s) for s in args.sizes.split(",")]
        args.model = args.model[0] if args.model else None
        args.precision = args.precision or "fp32"
        return child(args)

    names = args.model or _list(p, args.models, "--models",
                                [f"{a}-{n}" for a in ARCHS for n in NORMS])
    cuda = args.device.strip().lower().startswith("cuda")
    precisions = _list(p, args.precision or ("fp32,bf16,fp16" if cuda else "fp32"),
                       "--precision", PRECISIONS)
    try:
        sizes = [int(s) for s in _list(p, args.sizes, "--sizes")]
        modes = []
        for spec in _list(p, args.modes, "--modes"):
            mode, _, tile = spec.partition(":")
            if mode not in MODES or (mode == "whole") != (tile == ""):
                raise ValueError(spec)
            modes.append((spec, mode, int(tile or 0)))
        override = parse_peaks(args.peak_tflops)
    except ValueError as exc:
        p.error(f"bad --sizes, --modes (whole, independent:TILE, exact:TILE) or "
                f"--peak-tflops: {exc}")
    if args.repeat < 1 or args.warmup < 0:
        p.error("--repeat must be >= 1 and --warmup >= 0")

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    cpu_peak = None
    if not cuda and override is None:
        log("measuring the CPU fp32 matmul peak (2048^3, best of 5)")
        cpu_peak = spawn("peak", [], 0)
        log(f"  {cpu_peak}")
    flops = {}
    for name in names:
        log(f"counting FLOPs of {name} at {sizes}")
        flops[name] = spawn("flops", ["--model", name, "--sizes", ",".join(map(str, sizes))], 0)
        for key in ("error", "load_error"):
            if key in flops[name]:
                log(f"  {flops[name][key]}")

    jobs = [(n, s, pr, m) for n in names for s in sizes for pr in precisions for m in modes]
    rows = []
    for i, (name, size, prec, (spec, mode, tile)) in enumerate(jobs, 1):
        log(f"[{i}/{len(jobs)}] {name} {size}px {prec} {spec}")
        fl = flops[name]
        cmd = ["--model", name, "--size", str(size), "--precision", prec,
               "--mode", "auto" if mode == "whole" else mode, "--tile", str(tile),
               "--overlap", str(args.overlap), "--device", args.device,
               "--repeat", str(args.repeat), "--warmup", str(args.warmup)]
        res = ({"error": fl["load_error"]} if "load_error" in fl
               else spawn("run", cmd, args.timeout))
        row = {"model": Path(name).stem if Path(name).is_file() else name,
               "params": fl.get("params"), "norm": fl.get("norm"), "device": args.device,
               "device_name": res.get("device_name"), "precision": prec, "size": size,
               "out_size": size * SCALE, "mode": spec, "flops": fl.get("flops", {}).get(str(size)),
               **{k: v for k, v in res.items() if k != "device_name"}}
        t, f = row.get("median_s"), row["flops"]
        if t:
            row["images_per_s"] = 1 / t
            row["out_mpix_per_s"] = (size * SCALE) ** 2 / 1e6 / t
            row["peak_mib"] = row["peak_bytes"] / 2**20
            if f:
                row["tflops_per_s"] = f / t / 1e12
        peaks = override or (cuda_peaks(row["device_name"] or "") if cuda else
                             dict.fromkeys(PRECISIONS, cpu_peak["gflops"] / 1e3)
                             if cpu_peak and "gflops" in cpu_peak else None)
        row["peak_tflops"] = peaks.get(prec) if peaks else None
        if row.get("tflops_per_s") and row["peak_tflops"]:
            row["utilization"] = row["tflops_per_s"] / row["peak_tflops"]
        notes = []
        if "error" in res:
            notes.append(res["error"])
        elif mode != "whole" and res.get("tile_used") is None:
            notes.append("ran whole (tile >= image)")
        if res.get("oom_retries"):
            notes.append(f"OOM: ran as {res['tile_used']}px tiles")
        if res.get("fp32_recomputed"):
            notes.append(f"{res['fp32_recomputed']} fp32 recomputes")
        row["note"] = "; ".join(notes)
        log(f"  {row['note'] or format(t, '.4f') + ' s'}")
        rows.append(row)

    devname = next((r["device_name"] for r in rows if r.get("device_name")), args.device)
    header = (f"x{SCALE} SR on {args.device} ({devname}), median of {args.repeat} after "
              f"{args.warmup} warm-up, overlap {args.overlap}")
    if override:
        header += f"; assumed peak TFLOP/s {override} (--peak-tflops)"
    elif cpu_peak and "error" in cpu_peak:
        header += f"; CPU peak not measured: {cpu_peak['error']}"
    elif cpu_peak:
        header += (f"; CPU peak {cpu_peak['gflops']:.1f} GFLOP/s measured "
                   f"(fp32 matmul, {cpu_peak['threads']} threads)")
    print(header + "\n")
    cols = ["model", "params", "norm", "device", "prec", "size", "mode", "tiles", "s/img",
            "img/s", "out MP/s", "peak MiB", "GFLOP/img", "TFLOP/s", "util", "note"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "|".join("---" if c in ("model", "norm", "device", "prec", "mode", "note")
                         else "---:" for c in cols) + "|")
    for r in rows:
        params = f"{r['params'] / 1e6:.2f}M" if r["params"] else ""
        util = f"{100 * r['utilization']:.1f}%" if r.get("utilization") else ""
        cells = [r["model"], params, r["norm"] or "", r["device"], r["precision"],
                 str(r["size"]), r["mode"], str(r.get("tiles", "")), _num(r.get("median_s"), ".4f"),
                 _num(r.get("images_per_s"), ".3f"), _num(r.get("out_mpix_per_s"), ".3f"),
                 _num(r.get("peak_mib"), ".0f"), _num(r["flops"] and r["flops"] / 1e9, ".1f"),
                 _num(r.get("tflops_per_s"), ".4f"), util, r["note"]]
        print("| " + " | ".join(cells) + " |")
    if args.json:
        meta = {"device": args.device, "device_name": devname, "scale": SCALE,
                "repeat": args.repeat, "warmup": args.warmup, "overlap": args.overlap,
                "cpu_peak": cpu_peak, "peak_override_tflops": override,
                "cuda_peaks_tflops": {k: v for k, v in CUDA_PEAKS} if cuda else None,
                "flops": "FlopCounterMode on meta, explicit attention (= SDPA FLOPs), "
                         "2 x multiply-adds of conv/matmul, whole-image forward"}
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
        log(f"wrote {args.json}")


if __name__ == "__main__":
    main()
