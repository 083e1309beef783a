"""Training speed of `restore train` on this machine, for the choices that matter on a CPU.

    python benchmarks/train_speed.py [--config configs/sr-x4-iln-t.toml] [--steps 120]
        [--rounds 2] [--variant NAME:KEY=VALUE,KEY=VALUE ...] [--only NAME,NAME]
        [--json OUT.json]

Each variant is the config with some ``--set`` overrides, run as a real ``restore train``
subprocess (the loop, the data loader and its workers, the EMA, the optimizer: everything a
training run does) for --steps steps in a temporary run folder, with validation and
checkpoints off. Its speed is the median of the loop's own ``it_s`` figures in log.jsonl
(every 20 steps), the first interval (warm-up: allocations, the loader's first batches)
left out. Variants run in rounds, the order reversed each round, so that a load that drifts
on a shared CPU hurts each alike; the table gives every round and their median, and each
variant beside the first (the baseline, the config as it is) in the same run:

    steps/s            optimizer steps per second
    HR Mpx/s           ground-truth pixels seen per second (batch x (patch x scale)^2):
                       what a different patch or batch size trades steps for
    vs base            HR Mpx/s over the baseline's

Speed is half of the question: a larger patch or batch sees more pixels per second only if
the model learns as much from them, which a training run at equal CPU time answers (the
learning log, restore/models/HISTORY.md). Numbers depend on the load: run it on an idle
machine (no training beside it) for figures to publish.

Default variants (for the CPU-sized SR configs; threads and workers are per run):
    base               the config (patch 32, batch 8, 1 thread as the campaign runs it)
    patch48-batch4     about the same pixels per step in fewer, larger patches
    patch64-batch2     the same pixels per step in two 64-pixel patches
    batch16            twice the pixels per step
    threads2           two threads for the one run (both cores)
    workers0           data made in the training process (no loader worker)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

DEFAULT_VARIANTS = [
    "base:",
    "patch48-batch4:data.patch_size=48,data.batch_size=4",
    "patch64-batch2:data.patch_size=64,data.batch_size=2",
    "batch16:data.batch_size=16",
    "threads2:run.threads=2",
    "workers0:data.workers=0",
]


def parse_variant(text: str) -> tuple[str, list[str]]:
    """``NAME:KEY=VALUE,KEY=VALUE`` -> (NAME, ["KEY=VALUE", ...])."""
    name, _, sets = text.partition(":")
    if not name:
        raise argparse.ArgumentTypeError(f"variant {text!r}: give it a NAME before the ':'")
    return name, [s for s in sets.split(",") if s]


def _restore_exe() -> list[str]:
    exe = Path(sys.executable).parent / "restore"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "restore"]


def _read_config(path: Path) -> dict:
    import tomllib

    with open(path, "rb") as f:
        return tomllib.load(f)


def hr_pixels_per_step(config: dict, sets: list[str]) -> int:
    """batch x (patch x scale)^2 for this variant (patch_size is the LQ patch)."""
    data = dict(config.get("data", {}))
    for s in sets:
        key, _, value = s.partition("=")
        if key in ("data.patch_size", "data.batch_size", "data.scale"):
            data[key.split(".", 1)[1]] = int(value)
    scale = int(data.get("scale", 1))
    return int(data["batch_size"]) * (int(data["patch_size"]) * scale) ** 2


def run_variant(config: Path, sets: list[str], steps: int, workdir: Path) -> dict:
    """One `restore train` of ``steps`` steps; its median it_s after the first interval."""
    run_dir = workdir / f"run-{time.monotonic_ns()}"
    cmd = _restore_exe() + [
        "train", str(config), "--set", f'run.dir="{run_dir}"',
        "--set", f"train.max_steps={steps}", "--set", "train.max_minutes=0",
        "--set", 'train.schedule_by="steps"', "--set", "train.stop_at=0",
        "--set", "train.val_every=0", "--set", "train.ckpt_minutes=0",
        "--set", "train.ckpt_every=0", "--set", "train.log_every=20"]
    for s in sets:
        cmd += ["--set", s]
    env = dict(os.environ)
    threads = next((s.split("=", 1)[1] for s in sets if s.startswith("run.threads=")), None)
    env["OMP_NUM_THREADS"] = threads or str(_read_config(config).get("run", {}).get(
        "threads", 1))
    t0 = time.monotonic()
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if res.returncode != 0:
        tail = (res.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": tail, "wall_s": wall}
    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()
            if line.strip()]
    its = [r["it_s"] for r in rows[1:] if r.get("it_s")]
    if not its:
        return {"error": f"too few steps ({steps}) for a timing after the warm-up",
                "wall_s": wall}
    return {"it_s": statistics.median(its), "wall_s": wall}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=REPO / "configs" / "sr-x4-iln-t.toml")
    p.add_argument("--steps", type=int, default=120, help="steps per run (default 120)")
    p.add_argument("--rounds", type=int, default=2, help="rounds, order reversed each time")
    p.add_argument("--variant", action="append", type=parse_variant,
                   help="NAME:KEY=VALUE,... (repeatable; the first is the baseline; "
                        "default: the variants listed in this file's docstring)")
    p.add_argument("--only", help="comma-separated variant names to run (the first kept)")
    p.add_argument("--json", type=Path, help="write the rows as JSON here")
    args = p.parse_args(argv)
    if args.steps < 60:
        p.error("--steps must be at least 60 (three log intervals of 20)")
    variants = args.variant or [parse_variant(v) for v in DEFAULT_VARIANTS]
    if args.only:
        keep = set(args.only.split(","))
        variants = [v for i, v in enumerate(variants) if i == 0 or v[0] in keep]
    config = _read_config(args.config)
    results: dict[str, list[dict]] = {name: [] for name, _ in variants}
    with tempfile.TemporaryDirectory(prefix="restore-train-speed-") as tmp:
        for k in range(args.rounds):
            order = variants if k % 2 == 0 else variants[::-1]
            for name, sets in order:
                print(f"round {k + 1}/{args.rounds}: {name} ...", file=sys.stderr, flush=True)
                results[name].append(run_variant(args.config, sets, args.steps, Path(tmp)))
    rows = []
    base_mpx = None
    for name, sets in variants:
        runs = results[name]
        ok = [r["it_s"] for r in runs if "it_s" in r]
        px = hr_pixels_per_step(config, sets)
        row = {"variant": name, "sets": sets, "hr_pixels_per_step": px,
               "rounds_it_s": [r.get("it_s") for r in runs],
               "errors": [r["error"] for r in runs if "error" in r]}
        if ok:
            row["it_s"] = statistics.median(ok)
            row["hr_mpx_s"] = row["it_s"] * px / 1e6
            if base_mpx is None and name == variants[0][0]:
                base_mpx = row["hr_mpx_s"]
            row["vs_base"] = row["hr_mpx_s"] / base_mpx if base_mpx else None
        rows.append(row)
    print(f"restore train speed: {args.config.name}, {args.steps} steps a run, "
          f"{args.rounds} rounds, {os.cpu_count()} CPUs")
    print("| variant | overrides | steps/s (rounds) | steps/s | HR Mpx/s | vs base |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        rounds = " / ".join("-" if v is None else f"{v:.2f}" for v in r["rounds_it_s"])
        if "it_s" in r:
            vs = f"{r['vs_base']:.2f}x" if r.get("vs_base") else "-"
            print(f"| {r['variant']} | {' '.join(r['sets']) or '(the config)'} | {rounds} | "
                  f"{r['it_s']:.2f} | {r['hr_mpx_s']:.3f} | {vs} |")
        else:
            print(f"| {r['variant']} | {' '.join(r['sets'])} | failed: {r['errors'][0]} "
                  "| - | - | - |")
    if args.json:
        args.json.write_text(json.dumps({"config": str(args.config), "steps": args.steps,
                                         "rounds": args.rounds, "rows": rows}, indent=1))
    return 1 if any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
