"""Should a trained model replace the registered one? Every figure of the registry entry,
the candidate's beside it, and the campaign's rule applied.

    python benchmarks/candidate.py NAME CANDIDATE.safetensors [--val SET] [--keys K,K]
        [--measure-registered] [--max-images N] [--jobs N] [--json PATH]

NAME is a registry entry (weights.toml, or the user registry); its ``psnr`` keys say what
to measure: ``Set5`` (SR at the entry's scale), ``CBSD68-s25`` (denoise, sigma 25),
``LIVE1-q10`` / ``LIVE1-Y-q10`` (JPEG quality 10, RGB / Y), ``Classic5-q10`` (a gray set,
on gray). Each (set, level) is one `restore eval` run (restore.evaluate.evaluate_folder:
the same degradation, seeds and scores), several at once with --jobs (one thread each).

The registered model's figures are the entry's (rounded to 0.01 dB, so a difference within
0.005 dB is a tie), or measured in the same run with --measure-registered (needed with
--max-images, which keeps the first N images of each set, or with --keys the entry does
not list).

The rule (the quality campaign's): ship when the candidate is better on the validation
set (--val; default: the set of the entry's first key, the set each training config
validates on) at some level and worse on no figure. The verdict is the last line of the
table; the candidate's figures also come as a ``psnr = { ... }`` line for weights.toml,
and its SSIM (same channel) on the line after, for the README's model table.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # (imported, spawned: peers beside it)
from peers import LEVEL_KEY, set_folder  # noqa: E402  (the benchmark sets: one home)

KEY_RE = re.compile(r"^(?P<set>.+?)(?P<y>-Y)?(?:-(?P<kind>[sq])(?P<level>\d+))?$")
ROUNDING = 0.005  # registered figures are rounded to 0.01 dB
MEASURED = 1e-4   # both measured here: only float noise is a tie


@dataclass(frozen=True)
class Key:
    """One figure of a registry entry: a set at a level, RGB (or gray) or Y."""

    text: str
    set: str
    level: int
    y: bool


def parse_key(text: str, task: str, scale: int) -> Key:
    m = KEY_RE.match(text)
    kind = m.group("kind") if m else None
    want = {"sr": None, "denoise": "s", "jpeg": "q"}[task]
    if m is None or kind != want or (m.group("y") and task != "jpeg"):
        form = {"sr": "SET", "denoise": "SET-sSIGMA", "jpeg": "SET-qQUALITY or SET-Y-qQUALITY"}
        raise SystemExit(f"candidate.py: {text!r} is not a {task} figure ({form[task]})")
    level = scale if task == "sr" else int(m.group("level"))
    return Key(text, m.group("set"), level, bool(m.group("y")))


def _evaluate(job: tuple[str, str, str, int, int | None]) -> dict:
    """One `restore eval` run in a worker: (model, task, set, level, max_images) -> the
    set's mean PSNR and SSIM (and Y-PSNR and Y-SSIM where there are)."""
    import torch

    torch.set_num_threads(1)
    from restore.evaluate import Protocol, evaluate_folder, load_method
    from restore.tasks import Task

    model, task, set_name, level, max_images = job
    protocol = Protocol.make(task, **{LEVEL_KEY[task]: level})
    t = time.perf_counter()
    res = evaluate_folder(protocol, set_folder(set_name), load_method(model, Task(task)),
                          max_images=max_images)
    return {"model": model, "set": set_name, "level": level, "n": len(res.images),
            "psnr": res.psnr, "psnr_y": res.psnr_y, "ssim": res.ssim, "ssim_y": res.ssim_y,
            "seconds": time.perf_counter() - t}


def check_fits(candidate: Path, spec) -> None:
    """SystemExit unless the candidate file could stand in for the entry: the same task (where
    the file declares one), scale and input channels."""
    from restore.errors import RestoreError
    from restore.loader import fit_for, load

    try:
        loaded = load(str(candidate))
        declared, lm = loaded.task, fit_for(loaded, spec.task, spec.scale)
    except RestoreError as exc:
        raise SystemExit(f"candidate.py: {candidate}: {exc}") from None
    if declared is not None and declared is not spec.task:
        raise SystemExit(f"candidate.py: {candidate} is a {declared.value} model, "
                         f"{spec.name} a {spec.task.value} one")
    if lm.in_chans != spec.config.get("in_chans", 3):
        raise SystemExit(f"candidate.py: {candidate} takes {lm.in_chans} channel(s), "
                         f"{spec.name} {spec.config.get('in_chans', 3)}")


def verdict(rows: list[dict], val: str) -> str:
    worse = [r for r in rows if r["diff"] < -r["tie"]]
    better_val = [r for r in rows if r["set"] == val and r["diff"] > r["tie"]]
    if worse:
        return "keep: worse on " + ", ".join(f"{r['key']} ({r['diff']:+.3f})" for r in worse)
    if not better_val:
        return f"keep: not better on the validation set {val}"
    return ("ship: better on " + ", ".join(f"{r['key']} ({r['diff']:+.3f})" for r in better_val)
            + ", worse on none")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("name", help="the registry entry the candidate would replace")
    p.add_argument("candidate", type=Path, help="the trained model (restore train-export)")
    p.add_argument("--val", help="the validation set (default: the set of the first key)")
    p.add_argument("--keys", help="comma-separated figures to measure (default: the "
                                  "entry's psnr keys)")
    p.add_argument("--measure-registered", action="store_true",
                   help="measure the registered model here too instead of using its figures")
    p.add_argument("--max-images", type=int, default=0,
                   help="the first N images of each set (needs --measure-registered)")
    p.add_argument("--jobs", type=int, default=1, help="evaluations at once, one thread each")
    p.add_argument("--json", metavar="PATH", help="write the rows and the verdict here")
    args = p.parse_args(argv)
    if args.max_images < 0 or args.jobs < 1:
        p.error("--max-images must be >= 0 and --jobs >= 1")
    if args.max_images and not args.measure_registered:
        p.error("--max-images compares with figures of the whole sets: add --measure-registered")
    if not args.candidate.is_file():
        p.error(f"{args.candidate}: no such file")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from restore import registry
    from restore.errors import RestoreError

    try:
        spec = registry.load_registry().get(args.name)
    except RestoreError as exc:
        raise SystemExit(f"candidate.py: {exc}") from None
    task = spec.task.value
    texts = ([k.strip() for k in args.keys.split(",") if k.strip()] if args.keys
             else list(spec.psnr))
    if not texts:
        raise SystemExit(f"candidate.py: {args.name} registers no figures: give --keys")
    keys = [parse_key(t, task, spec.scale) for t in texts]
    missing = [k.text for k in keys if k.text not in spec.psnr]
    if missing and not args.measure_registered:
        raise SystemExit(f"candidate.py: {args.name} registers no {', '.join(missing)}: "
                         "add --measure-registered")
    entry_first = next(iter(spec.psnr), None)
    val = args.val or (parse_key(entry_first, task, spec.scale) if entry_first else keys[0]).set
    if val not in {k.set for k in keys}:
        given = (f"--val {val}" if args.val
                 else f"the validation set {val} (the entry's first figure's)")
        raise SystemExit(f"candidate.py: {given} is not among the sets measured: "
                         "add it to --keys" + ("" if args.val else " or give --val"))
    for k in keys:
        if not set_folder(k.set).is_dir():
            raise SystemExit(f"candidate.py: {k.set}: no folder {set_folder(k.set)}")
    check_fits(args.candidate, spec)

    runs = list(dict.fromkeys((k.set, k.level) for k in keys))  # in the keys' order
    models = [str(args.candidate)] + ([args.name] if args.measure_registered else [])
    jobs = [(m, task, s, lv, args.max_images or None) for m in models for s, lv in runs]
    start = time.perf_counter()
    results = {}
    with ProcessPoolExecutor(max_workers=min(args.jobs, len(jobs)),
                             mp_context=get_context("spawn")) as pool:
        try:
            for res in pool.map(_evaluate, jobs):
                results[(res["model"], res["set"], res["level"])] = res
                print(f"{res['model']} {res['set']} level {res['level']}: {res['n']} images, "
                      f"{res['seconds']:.0f} s", file=sys.stderr, flush=True)
        except RestoreError as exc:
            raise SystemExit(f"candidate.py: {exc}") from None

    rows = []
    for k in keys:
        field = "psnr_y" if k.y else "psnr"
        mine = results[(str(args.candidate), k.set, k.level)]
        cand = mine[field]
        if args.measure_registered:
            reg, tie = results[(args.name, k.set, k.level)][field], MEASURED
        else:
            reg, tie = spec.psnr[k.text], ROUNDING
        rows.append({"key": k.text, "set": k.set, "level": k.level, "registered": reg,
                     "candidate": cand, "diff": cand - reg, "tie": tie, "n": mine["n"],
                     "candidate_ssim": mine["ssim_y" if k.y else "ssim"]})
    say = verdict(rows, val) + (f" (first {args.max_images} image(s) of each set)"
                                if args.max_images else "")
    print(f"| figure | n | {args.name} | candidate | difference | candidate SSIM |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['key']}{' (validation)' if r['set'] == val else ''} | {r['n']} | "
              f"{r['registered']:.4f} | {r['candidate']:.4f} | {r['diff']:+.4f} | "
              f"{r['candidate_ssim']:.4f} |")
    print("psnr = { " + ", ".join(f"{r['key']} = {r['candidate']:.2f}" for r in rows) + " }")
    print("ssim (the candidate's, for the README) = { "
          + ", ".join(f"{r['key']} = {r['candidate_ssim']:.4f}" for r in rows) + " }")
    print(f"verdict: {say}")
    print(f"elapsed {time.perf_counter() - start:.1f} s", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"name": args.name, "candidate": str(args.candidate), "val": val,
             "measured_registered": args.measure_registered,
             "max_images": args.max_images or None, "rows": rows, "verdict": say},
            indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
