"""The classic methods beside the shipped models, on the same degraded inputs.

    python benchmarks/peers.py [--task sr|denoise|jpeg|all] [--sets Set5,Set14]
        [--levels 2,4] [--max-images N] [--max-side N] [--noisy-8bit] [--json PATH]

Each image is degraded once, by restore.evaluate's own functions (degrade_image, with one
seeded noise generator per set in sorted file order, as `restore eval`), and that one
input goes to every method; each output is scored by restore.evaluate.score_image (the
protocol's channel and border crop) and averaged per set by SetResult. So a row here is
what `restore eval` prints for the same model or baseline on the same images.

Ours: the shipped default model for the task and level (weights.toml ``[defaults]``,
picked per image by restore.registry.pick_by_level as `restore jpeg` / `restore denoise`
pick it), loaded by restore.evaluate.load_method: whole image, CPU, fp32.

Peers, per task (sets and levels by default):

- sr (Set5, Set14, B100; x2, x3, x4; Y-PSNR/SSIM, ``scale`` pixels cropped):
  ``bicubic``, the MATLAB bicubic upsampling of restore.degrade (evaluate's baseline), and
  ``FSRCNN (published)``.
- denoise (CBSD68; sigma 15, 25, 50; RGB, seed 0): ``CBM3D``, ``bm3d.bm3d_rgb`` of the
  ``bm3d`` package (optional: ``pip install bm3d``; without it these rows are skipped in one
  line) at the true sigma, given the float32 noisy tensor our model gets and its output
  clamped and rounded as ours is; and the ``noisy input`` itself. With --noisy-8bit the
  noisy image is first rounded and clipped to 8 bits, as a user's noisy PNG is (and as
  `restore denoise` reads it), and that uint8 image goes to every method; CBM3D is still
  told the true sigma (the clipping at 0 and 255 makes the noise there smaller).
- jpeg (Classic5 and LIVE1_gray, scored on gray, and colour LIVE1 on RGB; q10, 20, 30, 40):
  ``JPEG itself`` (the decoded input), and on the gray sets ``ARCNN (published)`` and, on
  LIVE1_gray, ``DnCNN-3 (published)``. The published gray LIVE1 figures belong to
  LIVE1_gray, not to colour LIVE1.

A published row compares a figure reported on the whole set at full size with ours on the
images run here: the JSON marks it ``comparable: false`` (and the table's note says so)
when --max-images or --max-side left part of the set out. A runnable peer whose value the
evaluation protocol (docs/protocol.md of the shared data) also lists has it in the note:
a check that this run reproduces the literature's degradation and metric.

--max-images keeps the first N files of each set in sorted order (so the noise of those N
is the full set's); --max-side centre-crops each ground-truth image to at most N x N
before it is degraded (as benchmarks/precision.py does), which changes the noise drawn.
The markdown table goes to stdout, progress to stderr, the rows to --json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TASKS = ("sr", "denoise", "jpeg")
DEFAULT_SETS = {"sr": ("Set5", "Set14", "B100"), "denoise": ("CBSD68",),
                "jpeg": ("Classic5", "LIVE1_gray", "LIVE1")}
DEFAULT_LEVELS = {"sr": (2, 3, 4), "denoise": (15, 25, 50), "jpeg": (10, 20, 30, 40)}
DEFAULT_MAX_IMAGES = {"denoise": 12}  # CBM3D: ~20 s a CBSD68 image on the shared 2-core CPU
LEVEL_KEY = {"sr": "scale", "denoise": "sigma", "jpeg": "quality"}
BM3D_MISSING = ("CBM3D: skipped: the bm3d package is not installed "
                "(pip install bm3d, or the peers extra: pip install '.[peers]')")


@dataclass(frozen=True)
class Published:
    """A peer known only by its reported PSNR (dB) on (set, level); no SSIM."""

    name: str
    task: str
    cite: str      # short, for the table
    source: str    # in full, for the JSON
    psnr: dict[tuple[str, int], float]


def _table(sets: tuple[str, ...], levels: tuple[int, ...],
           values: tuple[tuple[float, ...], ...]) -> dict[tuple[str, int], float]:
    """{(set, level): value} from one row of values per level, one column per set."""
    return {(s, lv): v for lv, row in zip(levels, values, strict=True)
            for s, v in zip(sets, row, strict=True)}


# docs/protocol.md lists none of these three (it has bicubic, the JPEG itself, CDnCNN,
# SwinIR and HAT), so the figures are the ones given in issue 19, with its sources.
PUBLISHED = (
    Published("FSRCNN (published)", "sr", "Dong et al., ECCV 2016",
              "Dong, Loy, Tang, Accelerating the Super-Resolution CNN, ECCV 2016, table "
              "(as reported)",
              _table(("Set5", "Set14", "B100"), (2, 3, 4),
                     ((37.05, 32.66, 31.53), (33.18, 29.37, 28.53), (30.71, 27.59, 26.98)))),
    Published("ARCNN (published)", "jpeg", "Dong et al., ICCV 2015",
              "Dong et al., ICCV 2015 (AR-CNN), gray, as commonly reported",
              _table(("Classic5", "LIVE1_gray"), (10, 20, 30, 40),
                     ((29.03, 28.98), (31.15, 31.29), (32.51, 32.69), (33.34, 33.63)))),
    Published("DnCNN-3 (published)", "jpeg", "Zhang et al., TIP 2017",
              "Zhang et al., TIP 2017 (DnCNN-3), gray",
              _table(("LIVE1_gray",), (10, 20, 30, 40),
                     ((29.19,), (31.59,), (32.98,), (33.96,)))),
)

# The protocol's own values for the runnable peers (docs/protocol.md, "Published values";
# its JPEG itself is MATLAB's encoder: libjpeg lands within a few hundredths).
REFERENCE = {
    "bicubic": _table(("Set5", "Set14", "B100"), (2, 3, 4),
                      ((33.66, 30.24, 29.56), (30.39, 27.55, 27.21), (28.42, 26.00, 25.96))),
    "JPEG itself": _table(("Classic5", "LIVE1_gray"), (10, 20, 30, 40),
                          ((27.82, 27.77), (30.12, 30.07), (31.48, 31.41), (32.43, 32.35))),
    # the protocol's sanity value 20 log10(255 / sigma), the same on every set
    "noisy input": {(None, s): round(20 * math.log10(255 / s), 2) for s in (15, 25, 50)},
}


def benchmarks_root() -> Path:
    """The shared benchmark sets: $RESTORE_SHARED/data/benchmarks, else ../shared beside
    the checkout (as the tests find them)."""
    return Path(os.environ.get("RESTORE_SHARED", REPO.parent / "shared")) / "data" / "benchmarks"


def set_folder(name: str) -> Path:
    """A set name under benchmarks_root() (its HR folder), or a ground-truth folder path."""
    path = Path(name)
    if not path.is_dir():
        path = benchmarks_root() / name
    return path / "HR" if (path / "HR").is_dir() else path


def centre_crop(img, max_side: int | None):
    """(H, W[, C]) array cropped to at most max_side x max_side around its centre."""
    if not max_side:
        return img
    h, w = img.shape[:2]
    ch, cw = min(h, max_side), min(w, max_side)
    top, left = (h - ch) // 2, (w - cw) // 2
    return img[top:top + ch, left:left + cw]


def cbm3d_method(sigma: float):
    """CBM3D at ``sigma`` (0..255) as a restore.evaluate.Method: it gets the (1, 3, H, W)
    float32 noisy tensor any model gets (unclipped) and returns its float estimate, which
    restore_image clamps and rounds like a model's. bm3d_rgb's defaults: the 'np' profile
    in the opponent colour space."""
    import bm3d
    import numpy as np
    import torch

    from restore.evaluate import Method

    def run(x):
        z = x[0].permute(1, 2, 0).double().numpy()
        y = bm3d.bm3d_rgb(z, sigma / 255.0)
        return torch.from_numpy(np.ascontiguousarray(y.transpose(2, 0, 1)))[None]

    return Method(name="CBM3D", restorer=run, in_chans=3, scale=1)


def runnable_peers(task: str, level: int, have_bm3d: bool) -> list:
    """The peers that run here, as restore.evaluate Methods (evaluate's baselines, renamed)."""
    from restore.evaluate import Baseline, Method

    if task == "sr":
        return [Method(name="bicubic", baseline=Baseline.BICUBIC)]
    if task == "jpeg":
        return [Method(name="JPEG itself", baseline=Baseline.IDENTITY)]
    return ([cbm3d_method(level)] if have_bm3d else []) + [
        Method(name="noisy input", baseline=Baseline.IDENTITY)]


def ours_for(task: str, level: int, channels: int, loaded: dict):
    """The shipped default Method for this task, level and image channels (1 or 3);
    ``loaded`` caches the Methods by registry name across calls."""
    from restore import registry
    from restore.evaluate import load_method
    from restore.tasks import Task

    reg = registry.load_registry()
    key = f"sr-x{level}" if task == "sr" else task
    reg.require_default(key)  # none shipped: an error that says what to pass instead
    spec = registry.pick_by_level(reg.defaults_for(key), None if task == "sr" else level,
                                 channels=channels)
    if spec.name not in loaded:
        loaded[spec.name] = load_method(spec.name, Task(task), "cpu")
    return loaded[spec.name]


def _r(v: float | None, digits: int) -> float | None:
    return None if v is None or not math.isfinite(v) else round(v, digits)


def run_set(task: str, folder: Path, level: int, peers: list, max_images: int | None,
            max_side: int | None, loaded: dict, noisy_8bit: bool = False) -> list[dict]:
    """The rows of one set at one level: each runnable peer, then each published one.
    noisy_8bit (denoise): the noisy input as an 8-bit file has it (see the module text)."""
    import numpy as np

    from restore.evaluate import (
        Protocol, SetResult, dataset_name, degrade_image, list_images, read_image,
        restore_image, score_image,
    )

    protocol = Protocol.make(task, **{LEVEL_KEY[task]: level})
    all_files = list_images(folder)
    files = all_files[:max_images] if max_images else all_files
    name = dataset_name(folder)
    rng = np.random.default_rng(protocol.seed) if task == "denoise" else None
    scores = {m.name: [] for m in peers}
    seconds = dict.fromkeys(scores, 0.0)
    ours_scores, ours_seconds, ours_names = [], 0.0, []
    cropped = False
    for path in files:
        hr = read_image(path)
        small = centre_crop(hr, max_side)
        cropped |= small.shape != hr.shape
        target, lq = degrade_image(protocol, small, rng)
        if noisy_8bit and task == "denoise":
            lq = np.clip(np.rint(lq * 255.0), 0, 255).astype(np.uint8)
        ours = ours_for(task, level, 1 if small.ndim == 2 else 3, loaded)
        if ours.name not in ours_names:
            ours_names.append(ours.name)
        t = time.perf_counter()
        out = restore_image(ours, protocol, lq)
        ours_seconds += time.perf_counter() - t
        ours_scores.append(score_image(protocol, path.name, out, target))
        for m in peers:
            t = time.perf_counter()
            out = restore_image(m, protocol, lq)
            seconds[m.name] += time.perf_counter() - t
            scores[m.name].append(score_image(protocol, path.name, out, target))
    n = len(files)
    ours_res = SetResult(protocol, "+".join(ours_names), name, tuple(ours_scores))
    common = {"task": task, "set": name, LEVEL_KEY[task]: level, "n": n,
              "n_set": len(all_files), "max_side": max_side, "cropped": cropped,
              "comparable": n == len(all_files) and not cropped,
              "noisy": ("8-bit" if noisy_8bit else "float") if task == "denoise" else None,
              "channel": ours_res.channels, "ours": ours_res.model,
              "ours_psnr": _r(ours_res.psnr, 4), "ours_ssim": _r(ours_res.ssim, 5),
              "ours_s_per_image": round(ours_seconds / n, 3)}
    if ours_res.psnr_y is not None:
        common["ours_psnr_y"] = _r(ours_res.psnr_y, 4)
    rows = []
    for m in peers:
        res = SetResult(protocol, m.name, name, tuple(scores[m.name]))
        ref = REFERENCE.get(m.name, {})
        row = {**common, "peer": m.name, "kind": "run", "peer_psnr": _r(res.psnr, 4),
               "peer_ssim": _r(res.ssim, 5), "peer_s_per_image": round(seconds[m.name] / n, 3),
               "diff_psnr": _r(ours_res.psnr - res.psnr, 4),
               # the protocol's figures are for its float noisy input
               "protocol_psnr": None if noisy_8bit and task == "denoise" else
               ref.get((name, level), ref.get((None, level)))}
        if res.psnr_y is not None:
            row["peer_psnr_y"] = _r(res.psnr_y, 4)
        rows.append(row)
    for pub in PUBLISHED:
        value = pub.psnr.get((name, level)) if pub.task == task else None
        if value is not None:
            rows.append({**common, "peer": pub.name, "kind": "published", "cite": pub.cite,
                         "source": pub.source, "peer_psnr": value, "peer_ssim": None,
                         "diff_psnr": _r(ours_res.psnr - value, 4)})
    return rows


def level_label(row: dict) -> str:
    noisy = ", 8-bit noisy file" if row.get("noisy") == "8-bit" else ""
    return {"sr": f"x{row.get('scale')}", "denoise": f"sigma {row.get('sigma')}{noisy}",
            "jpeg": f"q{row.get('quality')}"}[row["task"]]


def note(row: dict) -> str:
    """The table's note: a published row's citation (and why it does not compare), a
    runnable peer's protocol.md value where this run should reproduce it."""
    if row["kind"] == "published":
        if row["comparable"]:
            return row["cite"]
        return (f"{row['cite']}; not comparable: ours on {row['n']}/{row['n_set']} images"
                + (f", cropped to {row['max_side']}" if row["cropped"] else ""))
    # the noisy input's value is the noise level's, whatever the images
    if row["protocol_psnr"] is not None and (row["comparable"] or row["peer"] == "noisy input"):
        return f"protocol.md: {row['protocol_psnr']:.2f}"
    return ""


def print_table(rows: list[dict], skipped: list[str]) -> None:
    def num(v, fmt):
        return "-" if v is None else format(v, fmt)

    cols = ["set", "level", "peer", "n", "peer PSNR", "ours PSNR", "ours - peer",
            "peer SSIM", "ours SSIM", "on", "ours", "note"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "|".join("---:" if c in ("n", "peer PSNR", "ours PSNR", "ours - peer",
                                         "peer SSIM", "ours SSIM") else "---"
                         for c in cols) + "|")
    for r in rows:
        cells = [r["set"], level_label(r), r["peer"], str(r["n"]), num(r["peer_psnr"], ".2f"),
                 num(r["ours_psnr"], ".2f"), num(r["diff_psnr"], "+.2f"),
                 num(r["peer_ssim"], ".4f"), num(r["ours_ssim"], ".4f"), r["channel"],
                 r["ours"], note(r)]
        print("| " + " | ".join(cells) + " |")
    for line in skipped:
        print(line)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="all", choices=TASKS + ("all",))
    defaults = {t: (",".join(DEFAULT_SETS[t]), ",".join(map(str, DEFAULT_LEVELS[t])))
                for t in TASKS}
    p.add_argument("--sets", help="comma-separated set names under the shared benchmarks "
                                  "folder, or ground-truth folders (one --task only; default "
                                  + "; ".join(f"{t}: {s}" for t, (s, _) in defaults.items())
                                  + ")")
    p.add_argument("--levels", help="comma-separated scales / sigmas / qualities (one --task "
                                    "only; default "
                                    + "; ".join(f"{t}: {v}" for t, (_, v) in defaults.items())
                                    + ")")
    p.add_argument("--max-images", type=int, help="the first N images of each set (default: "
                                                  "12 for denoise, all for sr and jpeg; 0: all)")
    p.add_argument("--max-side", type=int, default=0,
                   help="centre-crop each image to at most N x N before degrading (0: off)")
    p.add_argument("--noisy-8bit", action="store_true",
                   help="denoise: round and clip the noisy input to 8 bits (as a saved noisy "
                        "file) before it goes to every method")
    p.add_argument("--json", metavar="PATH", help="write the rows here")
    args = p.parse_args(argv)
    if args.task == "all" and (args.sets or args.levels):
        p.error("--sets and --levels go with one --task (sr, denoise or jpeg)")
    if (args.max_images or 0) < 0 or args.max_side < 0:
        p.error("--max-images and --max-side must be >= 0")
    args.tasks = TASKS if args.task == "all" else (args.task,)
    try:
        args.levels = (tuple(int(v) for v in args.levels.split(",") if v.strip())
                       if args.levels else None)
    except ValueError:
        p.error(f"--levels {args.levels}: give comma-separated integers")
    args.sets = tuple(s.strip() for s in args.sets.split(",") if s.strip()) if args.sets else None
    from restore.errors import UsageError
    from restore.evaluate import Protocol, list_images

    try:
        for task in args.tasks:
            for level in args.levels or DEFAULT_LEVELS[task]:
                Protocol.make(task, **{LEVEL_KEY[task]: level})
            for name in args.sets or DEFAULT_SETS[task]:
                list_images(set_folder(name))
    except UsageError as exc:
        p.error(str(exc))
    return args


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def main(argv=None) -> None:
    args = parse_args(argv)
    start = time.perf_counter()
    have_bm3d, skipped = True, []
    if "denoise" in args.tasks:
        try:
            import bm3d  # noqa: F401
        except ImportError:
            have_bm3d = False
            skipped.append(BM3D_MISSING)
    rows, loaded = [], {}
    max_images = {t: DEFAULT_MAX_IMAGES.get(t) if args.max_images is None else args.max_images
                  for t in args.tasks}
    for task in args.tasks:
        for name in args.sets or DEFAULT_SETS[task]:
            folder = set_folder(name)
            for level in args.levels or DEFAULT_LEVELS[task]:
                t = time.perf_counter()
                got = run_set(task, folder, level, runnable_peers(task, level, have_bm3d),
                              max_images[task], args.max_side or None, loaded,
                              noisy_8bit=args.noisy_8bit)
                rows += got
                times = ", ".join([f"ours {got[0]['ours_s_per_image']:.2f}"] + [
                    f"{r['peer']} {r['peer_s_per_image']:.2f}" for r in got
                    if r["kind"] == "run"])
                print(f"{task} {level_label(got[0])} {got[0]['set']}: {got[0]['n']} images, "
                      f"{time.perf_counter() - t:.1f} s (s/image: {times})",
                      file=sys.stderr, flush=True)
    print_table(rows, skipped)
    elapsed = time.perf_counter() - start
    print(f"elapsed {elapsed:.1f} s", file=sys.stderr)
    if args.json:
        import numpy as np
        import torch

        meta = {"tasks": list(args.tasks), "max_images": max_images,
                "max_side": args.max_side or None, "noisy_8bit": args.noisy_8bit,
                "seed": 0, "device": "cpu",
                "precision": "fp32", "torch": torch.__version__, "numpy": np.__version__,
                "bm3d": _version("bm3d") if have_bm3d and "denoise" in args.tasks else None,
                "seconds": round(elapsed, 1)}
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows,
                                               "skipped": skipped}, indent=1) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
