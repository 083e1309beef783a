"""Folder throughput of `restore sr|denoise|jpeg`: how long the device waits on files.

    python benchmarks/folder.py [--n 50] [--size 512] [--task sr] [--scale 4]
        [--model NAME|FILE] [--device auto] [--tile auto] [--precision auto]
        [--compare] [--repeat 1] [--photos DIR] [other `restore` options...]

Makes --n inputs of --size x --size pixels in a temporary folder: crops of the Kodak24
photos (--photos, default ../shared/data/benchmarks/Kodak24/HR beside the checkout), or
deterministic synthetic images where the photos are missing or smaller than --size. For
sr they are PNG, for denoise PNG with Gaussian noise (sigma 15), for jpeg JPEG at quality
30. Then it runs the real command line in a subprocess, as a user would:

    restore TASK [xSCALE] IN -o OUT --json [--model M] --device D --tile T --precision P ...

(with no --model, the task's default model: for sr x4 the one embedded in the wheel), and
reads the per-image timings of the --json records ("timing": read_s, restore_s, write_s).
It prints, per run:
- wall: the whole subprocess (start-up and model loading included);
- loop: from the CLI's "restore TASK: N image(s)" line (printed just before the first
  image) to the last --json record: the folder time;
- model: the sum of restore_s, the time in the model (the device busy, or the CPU);
- read, write: the sums of read_s and write_s (decode; resize, encode, write, fsync);
- loop/model: 1.00 means the device never waited on files; idle = 1 - model/loop;
- images/s over the loop.

--compare runs the folder twice, with restore.pipeline.restore_files(overlap=False) (one
image after the other: read, restore, write) and with overlap=True (reading the next
images and writing the last one in background threads while the model runs), checks that
both wrote the same files byte for byte, and prints before/after; --repeat R alternates the
two R times. The variant is chosen inside the subprocess: a two-line bootstrap binds
`overlap` on restore_files and then runs the CLI's own main(), so the command line, its
options and its output are the real ones. If the CLI does not go through restore_files,
the run says so (both variants are then the same code).

--fake-device SECONDS replaces the model (inside the subprocess only) by a stand-in that
sleeps SECONDS per image and upscales by nearest neighbour: a device that, like a GPU,
leaves the CPU cores to the reader and writer. On a CPU the model and the file threads
share the cores, so this is how the overlap itself can be seen without a GPU.

Timings on a shared machine are noisy: compare runs of one invocation, not across them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PHOTOS = REPO.parent / "shared" / "data" / "benchmarks" / "Kodak24" / "HR"

# Runs in the subprocess: argv[1] is "0", "1" (force overlap off/on) or "cli" (as the CLI
# chooses); every call of restore_files is announced on stderr. argv[2]: --fake-device.
BOOTSTRAP = """
import sys, time
import restore.pipeline as p
force, fake, real = sys.argv[1], float(sys.argv[2]), p.restore_files
def restore_files(*args, **kwargs):
    if force != "cli":
        kwargs["overlap"] = force == "1"
    print("folder.py: restore_files(overlap=%s)" % kwargs.get("overlap", True),
          file=sys.stderr, flush=True)
    return real(*args, **kwargs)
p.restore_files = restore_files
if fake:
    import torch.nn.functional as F
    from restore.engine import runner
    def call(self, image):
        time.sleep(fake)
        y = F.interpolate(image[None], scale_factor=self.scale, mode="nearest")[0]
        return y, runner.RunStats()
    runner.Restorer.__call__ = call
from restore.cli.main import main
sys.exit(main(sys.argv[3:]))
"""


def make_inputs(folder: Path, n: int, size: int, task: str, photos: Path) -> str:
    """Write the inputs; returns what they are made of (for the report)."""
    import numpy as np
    from PIL import Image

    sources = sorted(photos.glob("*.png")) if photos.is_dir() else []
    arrays = [np.asarray(Image.open(p).convert("RGB")) for p in sources]
    arrays = [a for a in arrays if min(a.shape[:2]) >= size]
    for i in range(n):
        rng = np.random.default_rng(i)
        if arrays:
            a = arrays[i % len(arrays)]
            k = i // len(arrays)  # the k-th crop of this photo: spread over it
            oy = (k * 71) % (a.shape[0] - size + 1)
            ox = (k * 131) % (a.shape[1] - size + 1)
            img = a[oy:oy + size, ox:ox + size].astype(np.float64)
        else:
            y, x = np.mgrid[0:size, 0:size] / size
            f = 3 + i % 5
            img = 127.5 + 100 * np.stack([np.sin(f * x + y), np.cos(f * y - x),
                                          np.sin(f * (x + y))], -1)
            img += rng.normal(0, 6, img.shape)
        if task == "denoise":
            img = img + rng.normal(0, 15, img.shape)
        img = Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8))
        if task == "jpeg":
            img.save(folder / f"img{i:04d}.jpg", quality=30)
        else:
            img.save(folder / f"img{i:04d}.png")
    return f"crops of {len(arrays)} photos in {photos}" if arrays else "synthetic"


def _pump(stream, lines: list, stamps: list) -> None:
    for line in stream:
        stamps.append(time.perf_counter())
        lines.append(line.rstrip("\n"))


def run_cli(cli_args: list[str], force: str, fake: float = 0.0) -> dict:
    """Run the CLI once; the --json records and the time stamps of its output lines."""
    cmd = [sys.executable, "-c", BOOTSTRAP, force, str(fake)] + cli_args
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=REPO)
    out, out_t, err, err_t = [], [], [], []
    pumps = [threading.Thread(target=_pump, args=(proc.stdout, out, out_t)),
             threading.Thread(target=_pump, args=(proc.stderr, err, err_t))]
    for t in pumps:
        t.start()
    rc = proc.wait()
    for t in pumps:
        t.join()
    wall = time.perf_counter() - t0
    if rc not in (0, 1):
        sys.exit(f"restore exited with {rc}:\n" + "\n".join(err[-30:]))
    task = cli_args[0]
    start = next((t for t, ln in zip(err_t, err) if ln.startswith(f"restore {task}:")), None)
    records = [json.loads(ln) for ln in out]
    failed = [r for r in records if r["status"] != "ok"]
    if failed or rc:
        sys.exit(f"{len(failed)} image(s) failed:\n" + "\n".join(err[-30:]))
    ok = [r for r in records if r["status"] == "ok"]
    if not ok or "timing" not in ok[0]:
        sys.exit("the --json records have no 'timing' (an older restore.pipeline?)")
    used = sorted({ln.split("=")[1].rstrip(")") for ln in err if ln.startswith("folder.py:")})
    loop = (out_t[-1] - start) if start is not None else wall
    head = next((ln for ln in err if ln.startswith(f"restore {task}:")), "")
    return {"wall": wall, "loop": loop, "n": len(ok), "head": head,
            "model": sum(r["timing"]["restore_s"] for r in ok),
            "read": sum(r["timing"]["read_s"] for r in ok),
            "write": sum(r["timing"]["write_s"] for r in ok),
            "overlap": ",".join(used) or "not used (the CLI does not call restore_files)"}


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                epilog="Other options are passed to `restore` as they are.")
    p.add_argument("--n", type=int, default=50, help="number of images")
    p.add_argument("--size", type=int, default=512, help="side of each image in pixels")
    p.add_argument("--task", default="sr", choices=["sr", "denoise", "jpeg"])
    p.add_argument("--scale", type=int, default=4, help="sr only: 2, 3 or 4")
    p.add_argument("--model")
    p.add_argument("--device", default="auto")
    p.add_argument("--tile", default="auto")
    p.add_argument("--precision", default="auto")
    p.add_argument("--compare", action="store_true",
                   help="sequential vs overlapped pipeline, before/after")
    p.add_argument("--repeat", type=int, default=1, help="with --compare: alternate R times")
    p.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    p.add_argument("--fake-device", type=float, default=0.0, metavar="SECONDS",
                   help="replace the model by a device that takes SECONDS per image and "
                        "leaves the CPU free (sleep, then nearest-neighbour upscaling), to "
                        "see the pipeline alone where no GPU is at hand")
    args, extra = p.parse_known_args()

    variants = [("sequential", "0"), ("overlapped", "1")] if args.compare else [("cli", "cli")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="restore-folder-") as tmp:
        src = Path(tmp) / "in"
        src.mkdir()
        made_of = make_inputs(src, args.n, args.size, args.task, args.photos)
        trees = {}
        for rep in range(args.repeat if args.compare else 1):
            for name, force in variants:
                out = Path(tmp) / f"out-{name}-{rep}"
                cli = [args.task] + ([f"x{args.scale}"] if args.task == "sr" else []) + [
                    str(src), "-o", str(out), "--json", "--device", args.device,
                    "--tile", args.tile, "--precision", args.precision] + (
                    ["--model", args.model] if args.model else []) + extra
                print(f"run {rep + 1}: {name}: restore {' '.join(cli)}", file=sys.stderr)
                r = run_cli(cli, force, args.fake_device)
                r["name"] = name
                rows.append(r)
                trees.setdefault(name, _tree(out))
    fake = f"; FAKE DEVICE: {args.fake_device} s/image" if args.fake_device else ""
    print(f"{args.n} images {args.size}x{args.size} ({made_of}), `restore {args.task}`"
          f"{f' x{args.scale}' if args.task == 'sr' else ''}; {rows[0]['head']}{fake}")
    print(f"{'variant':>11} {'pipeline':>22} {'wall s':>7} {'loop s':>7} {'model s':>8} "
          f"{'read s':>7} {'write s':>8} {'loop/model':>10} {'idle':>6} {'img/s':>7}")
    for r in rows:
        pipe = "not restore_files" if "not used" in r["overlap"] else f"overlap={r['overlap']}"
        print(f"{r['name']:>11} {pipe:>22} {r['wall']:>7.2f} {r['loop']:>7.2f} "
              f"{r['model']:>8.2f} {r['read']:>7.2f} {r['write']:>8.2f} "
              f"{r['loop'] / r['model']:>10.3f} {1 - r['model'] / r['loop']:>6.1%} "
              f"{r['n'] / r['loop']:>7.3f}")
    if any("not used" in r["overlap"] for r in rows):
        print("note: the CLI does not call restore.pipeline.restore_files: every variant is "
              "its own sequential loop")
    if args.compare:
        by = {n: [r for r in rows if r["name"] == n] for n, _ in variants}
        mean = {n: {k: sum(r[k] for r in rs) / len(rs) for k in ("loop", "model")}
                for n, rs in by.items()}
        b, a = mean["sequential"], mean["overlapped"]
        same = trees["sequential"] == trees["overlapped"]
        print(f"before/after (mean of {args.repeat}): loop {b['loop']:.2f} s -> "
              f"{a['loop']:.2f} s ({b['loop'] / a['loop']:.3f}x), loop/model "
              f"{b['loop'] / b['model']:.3f} -> {a['loop'] / a['model']:.3f}; "
              f"outputs identical: {'yes' if same else 'NO'}")
        if not same:
            sys.exit(1)


if __name__ == "__main__":
    main()
