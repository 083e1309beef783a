"""Every GPU figure of restore, and a trained checkpoint, from one call on a lent GPU.

On the project's device machine (one H100; its ``python3`` already holds PyTorch with
CUDA, pytest, hypothesis and every dependency of restore, and nothing can be installed
there: no registry is reachable), from the repository root, after staging the data into
the checkout (below):

    PYTHONUNBUFFERED=1 python3 benchmarks/gpu_run.py --out $OUT

The package runs from the checkout (PYTHONPATH, ``python -m restore``): no install. On
another machine with an NVIDIA GPU and a registry:

    python3 -m venv .venv && . .venv/bin/activate && pip install torch && pip install -e '.[dev]' && python benchmarks/gpu_run.py

(``pip install torch==2.13.0`` from PyPI is a CUDA build on Linux x86-64; the wheels this
project's CPU machines install come from a local CPU-only wheel folder. On the device
machine the image's torch is used as it is: 2.11.0+cu130 when last seen there, inside the
project's ``torch>=2.1``; this script records the version it ran with.)

The data: ``../shared`` beside the checkout does not travel to the device machine, and the
working tree may carry 64 MiB in all. Stage a subset into ``shared/`` inside the checkout
(which travels; keep git from seeing it), once, here:

    echo /shared/ >> .git/info/exclude && python benchmarks/gpu_run.py --stage-data shared

(Set5, Set14, T91, then as much of BSD200 as fits in --stage-mib, 56 by default; B100 does
not fit, so its evaluation of the trained model runs here afterwards:
``restore eval --task sr --scale 4 --model RESULTS/swinir-iln-s.sr-x4.safetensors --data
../shared/data/benchmarks/B100/HR``.) The data folder is found as --data, else
$RESTORE_SHARED/data, else ../shared/data, else shared/data in the checkout.

Three parts, each with its own wall-clock budget (a part past its budget is stopped and
only its own results are lost; each writes its results as soon as it has them):

1. tests (--tests-minutes): ``pytest -m gpu tests/test_gpu.py`` (reduced precision of
   every shipped model against fp32, exact tiling on the device, the OOM retry under a
   memory cap, the folder CLI on cuda:0, bad --device strings, two-GPU DDP where there are
   two GPUs). Junit XML and the verbose log go to the results; each test's figures too.
2. throughput (--throughput-minutes): output megapixels per second and peak CUDA memory of
   each shipped model and of the pinned SwinIR-S-iLN and HAT-mini-iLN architectures
   (random weights; benchmarks/throughput.py's ``load``), at an output of about
   --out-side pixels square: the reference (the reference code's explicit attention, NCHW,
   eager, true fp32), eager and torch.compile'd forwards in NCHW and channels-last at
   fp32/bf16/fp16 on device-resident inputs, and the engine's own path (what ``restore
   sr`` runs, benchmarks/throughput.py's ``child_run``: channels-last, host transfers and
   the fp32-recompute check included; at fp32 and at the precision ``--precision auto``
   picks). A hub model whose weights are not on this machine runs with random weights of
   its config (timing does not depend on the weights); models with the same architecture
   are measured once. Eager rows come first (at most 60% of the budget; the Hub's x2/x3
   models last); compiled ones follow in priority order while the budget lasts.
3. train (the minutes left, or --train-minutes): ``restore train configs/sr-x4-iln-s.toml``
   in bf16 on a wall-clock budget, ``restore train-export`` of its EMA weights as a
   registry-ready safetensors file in the results, ``restore eval`` of that file on
   Set5/Set14/B100 (those present), and the export again with the measured PSNR in its
   weights.toml entry; then the next of --train-configs while time and the results'
   file limit allow.

Results (at most 8 files, the device machine's limit): summary.json (every part's status,
figures and the summary table), gpu_run.log, pytest.xml, pytest.txt, throughput.json,
train.json and one NAME.safetensors per trained model. Default folder: $OUT, else
gpu-results/. A summary table is printed last.

--dry-run runs the same code paths on the CPU at tiny sizes, in about 25 s on an idle
2-core CPU (CUDA hidden: the gpu tests are collected and skip; throughput at a 32-pixel
output on one model of each kind, compile with the "eager" backend on one model; three
steps of the same training config on 16-pixel patches, in fp32 as the CPU has no bf16
units; evaluation on one 48x48 crop per set): tests/test_gpu_run.py runs it in CI.

With the defaults (8 minutes: tests 1.5, throughput 2.25) training gets about 2.2 minutes;
--minutes raises the total, --train-minutes caps each training run.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections import deque
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROW = "GPURUN-ROW "  # worker -> parent: one JSON event per line, after this marker
MAX_FILES = 8  # what the device machine brings back from $OUT
PARTS = ("tests", "throughput", "train")
ARCHS = ("swinir-s-iln", "hat-mini-iln")  # benchmarks/throughput.py names, random weights
PRECISIONS = ("fp32", "bf16", "fp16")
TRAIN_CONFIGS = ("configs/sr-x4-iln-s.toml", "configs/denoise-iln-s.toml",
                 "configs/jpeg-iln-s.toml")
# (sets, protocol options) of `restore eval` for each task; registry PSNR keys as weights.toml
EVAL = {"sr": (("Set5", "Set14", "B100"), {}),
        "denoise": (("CBSD68", "Kodak24", "McMaster"), {"sigma": 25}),
        "jpeg": (("LIVE1",), {"quality": 10})}
STAGE_ORDER = ("benchmarks/Set5", "benchmarks/Set14", "train/T91", "train/BSD200",
               "benchmarks/B100")


# -- small helpers ----------------------------------------------------------------------------

def write_json(path: Path, data) -> None:
    """Atomically (a kill never leaves half a file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")
    os.replace(tmp, path)


def fmt_s(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.0f} s"


class Log:
    """Prints to stdout and keeps everything in RESULTS/gpu_run.log; child output goes to
    the log only (``quiet``), so the console ends with the table."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def __call__(self, msg: str, quiet: bool = False) -> None:
        with self._lock:
            if not quiet:
                print(msg, flush=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(msg + "\n")


def find_data(explicit: str | None) -> Path | None:
    """The shared data folder (benchmarks/, train/)."""
    cands = [Path(explicit)] if explicit else []
    if os.environ.get("RESTORE_SHARED"):
        cands.append(Path(os.environ["RESTORE_SHARED"]) / "data")
    cands += [REPO.parent / "shared" / "data", REPO / "shared" / "data"]
    for c in cands:
        if (c / "benchmarks").is_dir() or (c / "train").is_dir():
            return c.resolve()
    return None


def run_proc(cmd: list[str], *, env: dict, log: Log, tag: str, timeout: float,
             stop: int = signal.SIGTERM, grace: float = 30.0, cwd: Path = REPO,
             tee: Path | None = None, on_line=None, stall: float | None = None) -> dict:
    """Run ``cmd`` in its own process group; every output line goes to the log (and to
    ``tee``, and to ``on_line``). Past ``timeout`` seconds (or ``stall`` seconds without a
    line) the group gets ``stop``, then SIGKILL after ``grace``. Returns rc, seconds,
    timed_out/stalled and the last lines."""
    t0 = time.monotonic()
    log(f"[{tag}] $ {' '.join(map(str, cmd))}", quiet=True)
    proc = subprocess.Popen(list(map(str, cmd)), cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                            bufsize=1, errors="replace", start_new_session=True)
    lines: queue.Queue = queue.Queue()

    def pump() -> None:
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    tail: deque = deque(maxlen=40)
    every: list[str] = []
    out = open(tee, "a", encoding="utf-8") if tee else None
    last = time.monotonic()
    why = None
    stopped_at = None
    try:
        while True:
            now = time.monotonic()
            if why is None and (now - t0 > timeout or (stall and now - last > stall)):
                why = "timeout" if now - t0 > timeout else "stalled"
                log(f"[{tag}] {why} after {now - t0:.0f} s: stopping the process group", quiet=True)
                _signal_group(proc, stop)
                stopped_at = now
            if stopped_at is not None and now - stopped_at > grace:
                _signal_group(proc, signal.SIGKILL)
                stopped_at = float("inf")
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                # the process is gone but something it started still holds the pipe (a
                # compile worker pool, say): that is the end, and the leftovers go too
                if proc.poll() is not None and time.monotonic() - last > 5:
                    _signal_group(proc, signal.SIGKILL)
                    break
                continue
            if line is None:
                break
            last = time.monotonic()
            if on_line is not None and line.startswith(ROW):
                on_line(json.loads(line[len(ROW):]))
                continue
            tail.append(line)
            every.append(line)
            log(f"[{tag}] {line}", quiet=True)
            if out:
                out.write(line + "\n")
                out.flush()
    finally:
        if out:
            out.close()
    rc = proc.wait()
    return {"rc": rc, "seconds": round(time.monotonic() - t0, 1), "timed_out": why == "timeout",
            "stalled": why == "stalled", "tail": list(tail), "lines": every}


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # the group this script started (start_new_session)
    except (ProcessLookupError, PermissionError):
        pass


class Context:
    """What every part needs: options, paths, the log, the budget, the summary."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.dry = args.dry_run
        self.out = Path(args.out).resolve()
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = Path(args.work or tempfile.mkdtemp(prefix="gpu-run-")).resolve()
        self.work.mkdir(parents=True, exist_ok=True)
        (self.work / "config").mkdir(exist_ok=True)  # an empty user registry: shipped only
        self.log = Log(self.out / "gpu_run.log")
        self.t0 = time.monotonic()
        self.deadline = self.t0 + 60 * args.minutes
        self.data = find_data(args.data)
        self.py = sys.executable
        self.summary: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                              "dry_run": self.dry, "command": sys.argv,
                              "budget_minutes": {"total": args.minutes,
                                                 "tests": args.tests_minutes,
                                                 "throughput": args.throughput_minutes,
                                                 "train": args.train_minutes or "the rest"},
                              "data": str(self.data) if self.data else None,
                              "parts": {p: {"status": "not run"} for p in PARTS}}
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [
            p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        env.update(PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", MPLBACKEND="Agg",
                   RESTORE_CONFIG_DIR=str(self.work / "config"))
        if self.data is not None:
            env["RESTORE_SHARED"] = str(self.data.parent)
        if self.dry:
            env["CUDA_VISIBLE_DEVICES"] = ""  # the CPU paths, even on a GPU machine
        self.env = env

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def restore_cmd(self, *args) -> list[str]:
        return [self.py, "-m", "restore", *map(str, args)]

    def save(self) -> None:
        files = sorted(p.name for p in self.out.iterdir() if p.is_file()
                       and not p.name.startswith("."))
        self.summary["files"] = files + ([] if "summary.json" in files else ["summary.json"])
        self.summary["elapsed_s"] = round(time.monotonic() - self.t0, 1)
        write_json(self.out / "summary.json", self.summary)

    def room_for_files(self, n: int) -> bool:
        have = {p.name for p in self.out.iterdir() if p.is_file()} | {"summary.json"}
        return len(have) + n <= MAX_FILES


# -- part 0: the machine ------------------------------------------------------------------------

ENV_PROBE = r"""
import json, platform, torch
d = {"python": platform.python_version(), "torch": torch.__version__,
     "cuda_build": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
     "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
     "devices": []}
if torch.cuda.is_available():
    d["bf16_supported"] = torch.cuda.is_bf16_supported()
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        d["devices"].append({"name": p.name, "memory_gib": round(p.total_memory / 2**30, 1),
                             "capability": f"{p.major}.{p.minor}",
                             "multiprocessors": p.multi_processor_count})
print(json.dumps(d))
"""


def probe_machine(ctx: Context) -> dict:
    info: dict = {"cpus": os.cpu_count()}
    try:
        res = subprocess.run([ctx.py, "-c", ENV_PROBE], env=ctx.env, capture_output=True,
                             text=True, timeout=120)
        info.update(json.loads(res.stdout.strip().splitlines()[-1]))
    except Exception as exc:  # noqa: BLE001 (the summary says so; the parts say more)
        info["probe_error"] = f"{type(exc).__name__}: {exc}"[:300]
    if shutil.which("nvidia-smi") and not ctx.dry:
        try:
            res = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,"
                                  "clocks.max.sm,power.limit", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=30)
            info["nvidia_smi"] = res.stdout.strip().splitlines()
        except Exception:  # noqa: BLE001
            pass
    return info


# -- part 1: the gpu tests ------------------------------------------------------------------------

def part_tests(ctx: Context, budget: float) -> dict:
    xml, txt = ctx.out / "pytest.xml", ctx.out / "pytest.txt"
    figures = ctx.work / "figures.jsonl"
    for p in (xml, txt, figures):
        p.unlink(missing_ok=True)
    env = dict(ctx.env, RESTORE_GPU_FIGURES=str(figures))
    cmd = [ctx.py, "-m", "pytest", "-m", "gpu", "tests/test_gpu.py", "-v", "-rfEs",
           "-p", "no:cacheprovider", "-o", "junit_family=xunit1", f"--junitxml={xml}"]
    # SIGINT: pytest stops at the test in flight and still writes its junit XML and summary
    res = run_proc(cmd, env=env, log=ctx.log, tag="tests", timeout=budget, stop=signal.SIGINT,
                   grace=20, tee=txt)
    out: dict = {"command": " ".join(cmd[1:]), "rc": res["rc"], "seconds": res["seconds"]}
    cases = parse_junit(xml) if xml.is_file() else parse_verbose(txt)
    out["source"] = "junit" if xml.is_file() else "verbose log (no junit XML)"
    counts = {k: sum(1 for c in cases if c["outcome"] == k)
              for k in ("passed", "failed", "error", "skipped")}
    out.update(counts=counts, failed=[c["name"] for c in cases
                                      if c["outcome"] in ("failed", "error")], cases=cases)
    if figures.is_file():
        out["figures"] = [json.loads(ln) for ln in figures.read_text().splitlines() if ln.strip()]
    if res["timed_out"]:
        out["status"] = "timeout"
    elif res["rc"] == 0:
        out["status"] = "ok"
    elif res["rc"] == 1:
        out["status"] = "failed"
    else:
        out["status"] = "error"
        out["tail"] = res["tail"][-10:]
    return out


def parse_junit(path: Path) -> list[dict]:
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        return [{"name": "junit", "outcome": "error", "message": str(exc)}]
    cases = []
    for tc in root.iter("testcase"):
        outcome, message = "passed", None
        for tag in ("failure", "error", "skipped"):
            el = tc.find(tag)
            if el is not None:
                outcome = {"failure": "failed"}.get(tag, tag)
                message = (el.get("message") or "")[:500]
                break
        case = {"name": f"{tc.get('classname', '')}::{tc.get('name')}", "outcome": outcome,
                "seconds": float(tc.get("time") or 0)}
        if message:
            case["message"] = message
        props = {p.get("name"): p.get("value") for p in tc.iter("property")}
        if props:
            case["properties"] = props
        cases.append(case)
    return cases


def parse_verbose(path: Path) -> list[dict]:
    """``tests/x.py::name PASSED [ 10%]`` lines of pytest -v (a run cut short)."""
    cases = []
    if not path.is_file():
        return cases
    for line in path.read_text(errors="replace").splitlines():
        head, sep, rest = line.partition(" ")
        if "::" in head and sep:
            word = rest.split(" ")[0]
            if word in ("PASSED", "FAILED", "ERROR", "SKIPPED"):
                cases.append({"name": head, "outcome": {"ERROR": "error"}.get(word, word.lower())})
    return cases


# -- part 2: throughput --------------------------------------------------------------------------

def throughput_plan(ctx: Context) -> tuple[list[dict], list[dict], list[dict]]:
    """(eager jobs, compile jobs, rows for models not measured again)."""
    from restore import registry  # no torch: registry parsing only

    reg = registry.load_registry()
    base = str(registry.base_registry_path())
    specs = [s for s in reg.models.values() if s.origin == base]
    defaults = [n for names in reg.defaults.values() for n in names]
    embedded = registry.EmbeddedSource
    # defaults first, then the other embedded models, then the Hub's (x4 before x2/x3)
    specs.sort(key=lambda s: (s.name not in defaults, not isinstance(s.source, embedded),
                              s.scale != 4))
    same, seen, unique = [], {}, []
    for s in specs:
        key = json.dumps([s.family, s.config_dict()], sort_keys=True)
        if key in seen:
            same.append({"model": s.name, "same_as": seen[key],
                         "note": f"the same architecture as {seen[key]}: same timings "
                                 "(not measured again)"})
            continue
        seen[key] = s.name
        unique.append(s)
    specs = unique
    if ctx.args.models:
        wanted = [m.strip() for m in ctx.args.models.split(",") if m.strip()]
        specs = [s for s in specs if s.name in wanted]
        archs = [a for a in ARCHS if a in wanted]
    elif ctx.dry:  # one model of each path: an arch, embedded, deduplicated, hub (random)
        archs = list(ARCHS[:1])
        hub = [s for s in specs if isinstance(s.source, registry.HubSource)][:1]
        specs = [s for s in specs if s.name in ("swinir-iln-t.sr-x4", "swinir-iln-t.denoise")] + hub
    else:
        archs = list(ARCHS)
    models = [{"id": a, "label": a, "kind": "arch", "load": a, "weights": "random",
               "fp16_safe": False} for a in archs]
    for s in specs:
        kind = "file" if isinstance(s.source, registry.EmbeddedSource) else "registry"
        models.append({"id": s.name, "label": s.name, "kind": kind, "weights": "trained",
                       "load": str(s.source.path) if kind == "file" else s.name,
                       "family": s.family, "config": s.config_dict(), "fp16_safe": s.fp16_safe})
    variants = [{"name": "reference", "path": "direct", "precision": "fp32", "layout": "nchw",
                 "attention": "explicit", "compile": False}]
    for layout in ("cl", "nchw"):
        variants += [{"name": f"eager-{layout}-{p}", "path": "direct", "precision": p,
                      "layout": layout, "attention": "fused", "compile": False}
                     for p in PRECISIONS]
    eager = []
    for m in models:  # the engine at fp32 and at the precision `restore sr` picks for it
        auto = "fp16" if m["fp16_safe"] else "bf16"
        eager.append(dict(m, variants=variants + [
            {"name": f"engine-{p}", "path": "engine", "precision": p} for p in ("fp32", auto)]))

    def comp(m: dict, p: str, layout: str = "cl") -> dict:
        return dict(m, id=f"{m['id']} compile-{layout}-{p}", variants=[
            {"name": f"compile-{layout}-{p}", "path": "direct", "precision": p, "layout": layout,
             "attention": "fused", "compile": True}])

    by_id = {m["id"]: m for m in models}
    first = [m for m in models if m["kind"] == "arch" or m["id"] == "swinir-iln-t.sr-x4"]
    if ctx.dry:
        pick = by_id.get("swinir-iln-t.sr-x4") or models[0]
        return eager, [comp(pick, "fp32")], same
    compiled = [comp(m, "fp16" if m["fp16_safe"] else "bf16") for m in first]
    compiled += [comp(m, p) for m in first for p in PRECISIONS
                 if p != ("fp16" if m["fp16_safe"] else "bf16")]
    compiled += [comp(m, "bf16", "nchw") for m in first if m["kind"] == "arch"]
    compiled += [comp(m, "fp16" if m["fp16_safe"] else "bf16") for m in models if m not in first]
    return eager, compiled, same


def part_throughput(ctx: Context, budget: float) -> dict:
    t0 = time.monotonic()
    eager, compiled, same = throughput_plan(ctx)
    rows: list[dict] = [dict(r, variant="all", status="same architecture") for r in same]
    path = ctx.out / "throughput.json"
    meta = {"device": ctx.args.device, "out_side": ctx.args.out_side,
            "definitions": {
                "out_mpix_per_s": "output pixels / 1e6 / median seconds of one forward "
                                  "(batch 1, input (1, C, S, S) of random values)",
                "reference": "the same model with the reference code's explicit attention "
                             "(restore.archs.common.set_fused_attention(model, False)), NCHW, "
                             "eager, fp32 with TF32 off",
                "direct": "model(x) on a device-resident input under the engine's autocast "
                          "(restore.engine.autocast), torch.inference_mode, synchronized",
                "engine": "benchmarks/throughput.py child_run: restore.engine.Restorer on a "
                          "(C, S, S) CPU image, channels-last, transfers and the fp32-recompute "
                          "check included, as `restore sr` runs it",
                "peak_mib": "torch.cuda.max_memory_allocated after a reset with the model on "
                            "the device: weights + activations (CPU: process peak RSS)",
                "speedup_vs_reference": "reference median / this row's median",
                "max_abs_err_vs_reference": "max |y - y_reference| over the output",
                "compile_s": "seconds of the first call of torch.compile(model) (compilation)",
                "flops": "benchmarks/throughput.py child_flops (meta device, explicit attention)",
            }}

    def flush() -> None:
        add_derived(rows)
        write_json(path, {"meta": meta, "rows": rows})

    def on_row(ev: dict) -> None:
        if ev.get("event") == "meta":
            meta.update(ev["meta"])
        elif ev.get("event") == "row":
            rows.append(ev["row"])
            flush()
    flush()
    out: dict = {"status": "ok"}
    # eager rows first (60% of the budget at most); compilation gets the rest
    phases = [("eager", eager, t0 + budget * (0.6 if compiled else 1.0)),
              ("compile", compiled, t0 + budget)]
    for phase, jobs, until in phases:
        if not jobs:
            continue
        res = run_jobs(ctx, jobs, until, on_row, phase)
        out[phase] = res
        if res.get("not_run"):
            rows.extend({"model": j["label"], "variant": v["name"], "status": "skipped",
                         "note": "time budget spent"}
                        for j in res["not_run"] for v in j["variants"])
            flush()
    measured = [r for r in rows if r.get("median_s")]
    errors = [r for r in rows if r.get("error")]
    out.update(rows=len(rows), measured=len(measured), errors=len(errors),
               skipped=sum(1 for r in rows if r.get("status") == "skipped"),
               seconds=round(time.monotonic() - t0, 1), best=best_rows(rows))
    if not measured:
        out["status"] = "failed"
    elif out.get("eager", {}).get("not_run") or any(
            out.get(ph, {}).get("lost") for ph in ("eager", "compile")) or any(
            r.get("status") == "skipped" and not r.get("compiled") and
            not str(r.get("variant", "")).startswith("compile") for r in rows):
        out["status"] = "partial"  # compiled rows left to the budget are expected
    ctx.log("\n".join(throughput_table(rows)), quiet=True)
    for phase in ("eager", "compile"):
        if isinstance(out.get(phase), dict):
            out[phase]["not_run"] = [j["id"] for j in out[phase].get("not_run", [])]
    return out


def add_derived(rows: list[dict]) -> None:
    """Speed-ups against the same model's reference row (and, compiled, its eager row)."""
    times = {(r.get("model"), r.get("variant")): r["median_s"] for r in rows if r.get("median_s")}
    for row in rows:
        t = row.get("median_s")
        if not t:
            continue
        ref = times.get((row["model"], "reference"))
        if ref:
            row["speedup_vs_reference"] = round(ref / t, 3)
        if row.get("compiled"):
            eager = times.get((row["model"], row["variant"].replace("compile", "eager")))
            if eager:
                row["speedup_vs_eager"] = round(eager / t, 3)


def best_rows(rows: list[dict]) -> dict:
    best: dict = {}
    for r in rows:
        if r.get("median_s") and (r["model"] not in best
                                  or r["out_mpix_per_s"] > best[r["model"]]["out_mpix_per_s"]):
            best[r["model"]] = {"variant": r["variant"], "out_mpix_per_s": r["out_mpix_per_s"],
                                "speedup_vs_reference": r.get("speedup_vs_reference"),
                                "peak_mib": r.get("peak_mib")}
    return best


def throughput_table(rows: list[dict]) -> list[str]:
    lines = ["| model | weights | variant | in -> out | ms | out MP/s | vs ref | peak MiB | "
             "compile s | max err vs ref | note |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|---|"]

    def num(r: dict, k: str, f: str) -> str:
        v = r.get(k)
        return "" if v is None else format(v, f)

    for r in rows:
        size = f"{r['in_size']} -> {r['out_size']}" if r.get("in_size") else ""
        ms = "" if not r.get("median_s") else f"{1000 * r['median_s']:.2f}"
        note = r.get("error") or r.get("note") or r.get("status") or ""
        lines.append(f"| {r.get('model', '')} | {r.get('weights', '')} | {r.get('variant', '')} | "
                     f"{size} | {ms} | {num(r, 'out_mpix_per_s', '.2f')} | "
                     f"{num(r, 'speedup_vs_reference', '.2f')} | {num(r, 'peak_mib', '.0f')} | "
                     f"{num(r, 'compile_s', '.1f')} | "
                     f"{num(r, 'max_abs_err_vs_reference', '.2g')} | {note} |")
    return lines


def run_jobs(ctx: Context, jobs: list[dict], until: float, on_row, phase: str) -> dict:
    """Run jobs in a worker process; a worker that dies or stalls costs its job only, and a
    new worker takes the rest while there is time."""
    pending = list(jobs)
    state = {"current": None, "done": set()}
    info: dict = {"workers": 0, "lost": []}

    def on_event(ev: dict) -> None:
        if ev.get("event") == "start":
            state["current"] = ev["job"]
        elif ev.get("event") == "done":
            state["done"].add(ev["job"])
            state["current"] = None
        on_row(ev)

    stall = (240 if phase == "compile" else 120) * (3 if ctx.dry else 1)
    while pending and until - time.monotonic() > 5:
        spec = {"jobs": pending, "device": "cpu" if ctx.dry else ctx.args.device,
                "deadline": time.time() + (until - time.monotonic()), "out_side": ctx.args.out_side,
                "scratch": str(ctx.work / "models"), "dry": ctx.dry,
                "compile_backend": "eager" if ctx.dry else "inductor"}
        spec_path = ctx.work / f"jobs-{phase}-{info['workers']}.json"
        spec_path.write_text(json.dumps(spec))
        info["workers"] += 1
        res = run_proc([ctx.py, str(Path(__file__).resolve()), "--worker", str(spec_path)],
                       env=ctx.env, log=ctx.log, tag=f"throughput/{phase}",
                       timeout=max(5.0, until - time.monotonic() + 20), grace=10,
                       on_line=on_event, stall=stall)
        pending = [j for j in pending if j["id"] not in state["done"]]
        lost = state["current"]
        if lost is not None:
            why = ("timed out" if res["timed_out"] else "stalled" if res["stalled"]
                   else f"worker exited with {res['rc']}")
            info["lost"].append({"job": lost, "why": why, "tail": res["tail"][-5:]})
            job = next(j for j in pending if j["id"] == lost)
            on_row({"event": "row", "row": {"model": job["label"], "variant": "(rest of job)",
                                            "error": f"{why}: {(res['tail'] or [''])[-1][:200]}"}})
            pending = [j for j in pending if j["id"] != lost]
            state["current"] = None
        elif res["rc"] != 0 and pending:
            info["lost"].append({"job": None, "why": f"worker exited with {res['rc']}",
                                 "tail": res["tail"][-5:]})
            break
    info["not_run"] = pending
    info["timed_out"] = bool(pending)
    return info


# -- the throughput worker (imports torch) --------------------------------------------------------

def emit(ev: dict) -> None:
    print(ROW + json.dumps(ev, default=str), flush=True)


def worker(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]
    import torch

    import throughput as tp
    from restore.engine import resolve_device

    device = resolve_device(spec["device"])
    cuda = device.type == "cuda"
    name = torch.cuda.get_device_name(device) if cuda else tp._cpu_name()
    emit({"event": "meta", "meta": {
        "device_name": name, "torch": torch.__version__, "cuda": torch.version.cuda,
        "peak_tflops": tp.cuda_peaks(name) if cuda else None,
        "compile_backend": spec["compile_backend"]}})
    for job in spec["jobs"]:
        if time.time() > spec["deadline"]:
            break
        emit({"event": "start", "job": job["id"]})
        try:
            run_job(job, spec, device, name, tp)
        except Exception as exc:  # noqa: BLE001 (a row, and on to the next model)
            emit({"event": "row", "row": {"model": job["label"], "variant": "(load)",
                                          "error": tp._error(exc)}})
        emit({"event": "done", "job": job["id"]})
        if cuda:
            torch.cuda.empty_cache()


def _model_source(job: dict, spec: dict, tp) -> tuple[str, str]:
    """(what benchmarks/throughput.py's load() takes, weights kind) for a job: the arch
    name, the embedded file, a cached hub file, or random weights of the entry's config
    saved to a scratch file."""
    if job["kind"] in ("arch", "file"):
        return job["load"], job["weights"]
    from restore import registry

    spec_ = registry.load_registry().get(job["load"])
    try:
        if registry.cached_path(spec_) is not None:
            return job["load"], "trained"
    except Exception:  # noqa: BLE001 (no hub client or a broken cache: random weights)
        pass
    import torch

    from restore.archs import build
    from restore.checkpoint import save_model

    path = Path(spec["scratch"]) / f"{job['id']}.random.safetensors"
    if not path.is_file():
        torch.manual_seed(0)
        save_model(build(job["family"], **job["config"]).eval(), path)
    return str(path), "random (not cached here)"


def run_job(job: dict, spec: dict, device, device_name: str, tp) -> None:
    import torch

    from restore.archs.common import set_fused_attention
    from restore.engine import Precision, autocast

    cuda = device.type == "cuda"
    source, kind = _model_source(job, spec, tp)
    model = tp.load(source)
    scale, mult, chans = int(model.scale), int(model.size_multiple), int(model.config.in_chans)
    in_side = max(mult, round(spec["out_side"] / scale / mult) * mult)
    out_side = in_side * scale
    fl = tp.child_flops(argparse.Namespace(model=source, sizes=[in_side]))
    flops = (fl.get("flops") or {}).get(str(in_side))
    params = sum(p.numel() for p in model.parameters())
    peaks = tp.cuda_peaks(device_name) if cuda else None
    dry = spec["dry"]
    base = {"model": job["label"], "weights": kind, "params": params,
            "family": model.config.family, "norm": model.config.norm.value, "scale": scale,
            "in_size": in_side, "out_size": out_side, "device_name": device_name, "flops": flops}
    engine = [v for v in job["variants"] if v["path"] == "engine"]
    direct = [v for v in job["variants"] if v["path"] == "direct"]
    del model
    for v in engine:  # first: each loads its own copy and must find the device empty
        row = dict(base, variant=v["name"], path="engine", precision=v["precision"],
                   layout="cl", compiled=False, attention="fused")
        if time.time() > spec["deadline"]:
            emit({"event": "row", "row": dict(row, status="skipped", note="time budget spent")})
            continue
        try:
            r = tp.child_run(argparse.Namespace(
                device=spec["device"], model=source, size=in_side, precision=v["precision"],
                tile=0, overlap=16, mode="auto", warmup=0 if dry else 1, repeat=1 if dry else 5))
            row.update(median_s=r["median_s"], times_s=r["times_s"], peak_bytes=r["peak_bytes"],
                       fp32_recomputed=r["fp32_recomputed"], notes=r["notes"])
        except Exception as exc:  # noqa: BLE001
            row["error"] = tp._error(exc)
        finish_row(row, peaks)
        emit({"event": "row", "row": row})
        if cuda:
            torch.cuda.empty_cache()
    if not direct:
        return
    model = tp.load(source).to(device).eval()
    torch.manual_seed(0)
    x_cpu = torch.rand(1, chans, in_side, in_side)
    y_ref = None
    for v in direct:
        row = dict(base, variant=v["name"], path="direct", precision=v["precision"],
                   layout=v["layout"], compiled=v["compile"], attention=v["attention"])
        if time.time() > spec["deadline"]:
            emit({"event": "row", "row": dict(row, status="skipped", note="time budget spent")})
            continue
        try:
            if y_ref is None and v["name"] != "reference":  # the error column needs it
                y_ref = _reference_output(model, x_cpu, device)
            set_fused_attention(model, v["attention"] == "fused")
            fmt = torch.channels_last if v["layout"] == "cl" else torch.contiguous_format
            model.to(memory_format=fmt)
            x = x_cpu.to(device).contiguous(memory_format=fmt)
            fn = model
            if v["compile"]:
                torch._dynamo.reset()
                fn = torch.compile(model, backend=spec["compile_backend"], dynamic=False)
            r = _time(fn, x, device, Precision(v["precision"]), autocast, dry)
            row.update({k: r[k] for k in ("median_s", "times_s", "peak_bytes", "first_call_s")})
            if v["compile"]:
                row["compile_s"] = r["first_call_s"]
            y = r["y"].float().cpu()  # compared on the CPU: no device memory held
            if v["name"] == "reference":
                y_ref = y
            row["max_abs_err_vs_reference"] = float((y - y_ref).abs().max())
            row["finite"] = bool(torch.isfinite(y).all())
            del y, r
        except Exception as exc:  # noqa: BLE001
            row["error"] = tp._error(exc)
        finally:
            set_fused_attention(model, True)
        finish_row(row, peaks)
        emit({"event": "row", "row": row})
        if cuda:
            torch.cuda.empty_cache()
    del model, y_ref


def _reference_output(model, x_cpu, device):
    """The reference variant's output (explicit attention, NCHW, fp32), on the CPU."""
    import torch

    from restore.archs.common import set_fused_attention
    from restore.engine import Precision, autocast

    set_fused_attention(model, False)
    model.to(memory_format=torch.contiguous_format)
    try:
        with torch.inference_mode(), autocast(device, Precision.FP32):
            return model(x_cpu.to(device)).float().cpu()
    finally:
        set_fused_attention(model, True)


def _time(fn, x, device, precision, autocast, dry: bool) -> dict:
    """First call (compilation, if any), warm-up, then repeats for about 0.5 s (3 to 20;
    one in a dry run); median. Peak memory from a reset before the first call."""
    import resource

    import torch

    cuda = device.type == "cuda"

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    if cuda:
        sync()
        torch.cuda.reset_peak_memory_stats(device)
    with torch.inference_mode(), autocast(device, precision):
        t = time.perf_counter()
        y = fn(x)
        sync()
        first = time.perf_counter() - t
        warm = None
        if not dry:
            t = time.perf_counter()
            y = fn(x)
            sync()
            warm = time.perf_counter() - t
        n = 1 if dry else max(3, min(20, int(0.5 / max(warm, 1e-4))))
        times = []
        for _ in range(n):
            t = time.perf_counter()
            y = fn(x)
            sync()
            times.append(time.perf_counter() - t)
    peak = (torch.cuda.max_memory_allocated(device) if cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"y": y, "first_call_s": first, "times_s": times,
            "median_s": sorted(times)[len(times) // 2], "peak_bytes": peak}


def finish_row(row: dict, peaks: dict | None) -> None:
    t = row.get("median_s")
    if t:
        row["out_mpix_per_s"] = row["out_size"] ** 2 / 1e6 / t
        row["peak_mib"] = round(row["peak_bytes"] / 2**20, 1)
        if row.get("flops"):
            row["tflops_per_s"] = row["flops"] / t / 1e12
            peak = (peaks or {}).get(row["precision"])
            if peak:
                row["utilization"] = row["tflops_per_s"] / peak


# -- part 3: training, evaluation, export ---------------------------------------------------------

def export_name(cfg, cfg_file: str) -> str:
    """family-norm-size.task, e.g. swinir-iln-s.sr-x4 for configs/sr-x4-iln-s.toml (the
    size is the last word of the config's name)."""
    d = cfg.data
    task = f"sr-x{d.scale}" if d.task.value == "sr" else d.task.value
    norm = str(cfg.model.arch.get("norm", "layernorm")).replace("layernorm", "ln")
    return f"{cfg.model.family}-{norm}-{Path(cfg_file).stem.rsplit('-', 1)[-1]}.{task}"


def map_path(p: str, data: Path) -> Path:
    """A config's ../shared/data/... path under the data folder found here."""
    parts = Path(p).parts
    if "data" in parts:
        return data.joinpath(*parts[parts.index("data") + 1:])
    return Path(p)


def tiny_eval_sets(ctx: Context, folders: list[Path]) -> list[Path]:
    """Dry run: one 48x48 centre crop of each set's first image, as SET/HR/."""
    from PIL import Image

    out = []
    for f in folders:
        files = sorted(p for p in f.iterdir() if p.suffix.lower() in (".png", ".bmp", ".jpg"))
        if not files:
            continue
        dst = ctx.work / "evalsets" / f.parent.name / "HR"
        dst.mkdir(parents=True, exist_ok=True)
        im = Image.open(files[0])
        w, h = im.size
        im.crop(((w - 48) // 2, (h - 48) // 2, (w - 48) // 2 + 48, (h - 48) // 2 + 48)).save(
            dst / files[0].with_suffix(".png").name)
        out.append(dst)
    return out


def part_train(ctx: Context, budget_end: float) -> dict:
    from restore.train.config import load_config  # no torch

    if ctx.data is None:
        return {"status": "skipped", "note": "no data folder found (--data, $RESTORE_SHARED, "
                "../shared/data, shared/data): stage one with --stage-data shared"}
    runs: list[dict] = []
    out = {"status": "ok", "runs": runs}
    path = ctx.out / "train.json"
    configs = [c.strip() for c in ctx.args.train_configs.split(",") if c.strip()]
    for i, cfg_file in enumerate(configs):
        left = budget_end - time.monotonic()
        reserve = 30 if ctx.dry else 100  # start-up, final validation, export, evaluation
        minutes = (left - reserve) / 60
        if ctx.args.train_minutes:
            minutes = min(minutes, ctx.args.train_minutes)
        if i > 0 and (minutes < (0.1 if ctx.dry else 2.0) or not ctx.room_for_files(1)):
            runs.append({"config": cfg_file, "status": "skipped",
                         "note": "no time left" if minutes < 2 else "results file limit"})
            break
        if i > 0 and ctx.dry:
            break  # one config shows the path
        run = train_one(ctx, cfg_file, max(minutes, 0.2), load_config, budget_end)
        runs.append(run)
        write_json(path, {"runs": runs})
        ctx.save()
    statuses = {r["status"] for r in runs if r["status"] != "skipped"}
    out["status"] = ("skipped" if not statuses else "ok" if statuses == {"ok"} else
                     "failed" if "ok" not in statuses else "partial")
    if not statuses:
        out["note"] = "; ".join(f"{r['config']}: {r.get('note', '')}" for r in runs)
    write_json(path, {"runs": runs})
    return out


def train_one(ctx: Context, cfg_file: str, minutes: float, load_config,
              budget_end: float) -> dict:
    """Train, export, evaluate and export again with the PSNR: one config's results.
    Export and evaluation may run up to 30 s past ``budget_end``, no more."""

    def until_end(most: float) -> float:
        return max(20.0, min(most, budget_end + 30 - time.monotonic()))

    cfg = load_config(REPO / cfg_file)
    name = export_name(cfg, cfg_file)
    run_dir = ctx.work / "runs" / Path(cfg.run.dir).name
    shutil.rmtree(run_dir, ignore_errors=True)
    train = [map_path(p, ctx.data) for p in cfg.data.train]
    have = [p for p in train if p.is_dir()]
    if ctx.dry:
        have = have[:1]
    val = map_path(cfg.data.val, ctx.data) if cfg.data.val else None
    res: dict = {"config": cfg_file, "name": name, "train_folders": [str(p) for p in have],
                 "missing_train_folders": [str(p) for p in train if not p.is_dir()]}
    if not have:
        return dict(res, status="skipped", note="none of its training folders is here")
    sets = [s for s in (f"{ctx.data}/benchmarks/{n}/HR" for n in EVAL[cfg.data.task.value][0])]
    sets = [Path(s) for s in sets if Path(s).is_dir()]
    if ctx.dry:
        sets = tiny_eval_sets(ctx, sets)
    sets_missing = [n for n in EVAL[cfg.data.task.value][0]
                    if not (ctx.data / "benchmarks" / n / "HR").is_dir()]
    overrides = {"run.dir": json.dumps(str(run_dir)), "train.amp": '"bf16"',
                 "data.train": "[" + ", ".join(json.dumps(str(p)) for p in have) + "]",
                 "data.workers": str(min(6, max(0, (os.cpu_count() or 2) - 2)))}
    if val is not None and val.is_dir():
        overrides["data.val"] = json.dumps(str(val))
    else:
        overrides["data.val"] = '""'
    if ctx.dry:  # a few steps of the same config on tiny patches
        overrides.update({"train.max_steps": "3", "train.schedule_by": '"steps"',
                          "train.max_minutes": "0", "train.warmup_steps": "1",
                          "train.val_every": "0", "train.log_every": "1",
                          "data.patch_size": "16", "data.batch_size": "2", "data.workers": "0",
                          "data.val_max_images": "1", "data.val_max_side": "32",
                          "run.threads": "2",
                          "train.amp": '"fp32"'})  # bf16 on a CPU without bf16 units: 5x slower
    else:
        overrides["train.max_minutes"] = f"{minutes:.2f}"
    cmd = ctx.restore_cmd("train", REPO / cfg_file, "--no-progress",
                          *[a for k, v in overrides.items() for a in ("--set", f"{k}={v}")])
    ctx.log(f"train: {cfg_file} -> {name}, "
            + ("3 steps (dry run)" if ctx.dry else f"{minutes:.2f} min bf16"))
    # max_minutes stops the loop itself; past the allowance SIGTERM makes it finish the step
    # in flight and write a checkpoint (exit 143), which is then exported all the same
    allowance = 120 if ctx.dry else 60 * minutes + 90
    r = run_proc(cmd, env=ctx.env, log=ctx.log, tag="train", timeout=allowance, grace=90)
    res.update(train_rc=r["rc"], train_seconds=r["seconds"], train_timed_out=r["timed_out"],
               overrides=overrides)
    meta_path = run_dir / "meta.json"
    if not meta_path.is_file():
        return dict(res, status="failed", note="no checkpoint written", tail=r["tail"][-15:])
    meta = json.loads(meta_path.read_text())
    res.update(step=meta.get("step"), elapsed_s=meta.get("elapsed_s"))
    logs = _jsonl(run_dir / "log.jsonl")
    if logs:
        res["last_log"] = logs[-1]
        its = [row["it_s"] for row in logs[1:] if row.get("it_s")]
        if its:
            res["median_it_s"] = sorted(its)[len(its) // 2]
    vals = _jsonl(run_dir / "val.jsonl")
    res["validation"] = [{"step": v["step"], "psnr": round(v["psnr"], 3)} for v in vals]
    # export (the deliverable first), then evaluate the exported EMA weights
    target = ctx.out / f"{name}.safetensors"
    where = ("the CPU (dry run)" if ctx.dry else
             f"{ctx.summary.get('machine', {}).get('devices', [{}])[0].get('name', 'a GPU')}")
    desc = (f"{name.split('.')[0]} {name.split('.')[1]} ({cfg_file}), trained by "
            f"benchmarks/gpu_run.py on {where}: {res['step']} steps, "
            f"{overrides['train.amp'].strip(chr(34))}, {(res['elapsed_s'] or 0) / 60:.1f} min, "
            f"on {' + '.join(p.name for p in have)}")
    export = ctx.restore_cmd("train-export", run_dir, "--name", name, "-o", target, "--force",
                             "--description", desc)
    e = run_proc(export, env=ctx.env, log=ctx.log, tag="export", timeout=until_end(180))
    if e["rc"] != 0 or not target.is_file():
        return dict(res, status="failed", note="export failed", tail=e["tail"][-10:])
    res.update(file=target.name, bytes=target.stat().st_size)
    res["entry"] = "\n".join(e["lines"])
    setting = dict(EVAL[cfg.data.task.value][1])
    if cfg.data.task.value == "sr":
        setting["scale"] = cfg.data.scale
    if sets:
        ev = ctx.restore_cmd("eval", "--task", cfg.data.task.value,
                             *[a for k, v in setting.items() for a in (f"--{k}", v)],
                             "--model", target, *[a for s in sets for a in ("--data", s)],
                             "--json", "--device", "cpu" if ctx.dry else "cuda")
        scores = []
        g = run_proc(ev, env=ctx.env, log=ctx.log, tag="eval", timeout=until_end(300))
        for line in g["lines"]:
            if line.startswith("{"):
                try:
                    scores.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
        res["eval"] = scores
        res["eval_rc"] = g["rc"]
        psnr = psnr_keys(cfg.data.task.value, setting, scores)
        if psnr and not ctx.dry:  # the entry with what was measured (same bytes, same sha256)
            src = (f"measured: restore eval --task {cfg.data.task.value} "
                   + " ".join(f"--{k} {v}" for k, v in setting.items())
                   + f" --model {name} on {where} (benchmarks/gpu_run.py)")
            again = export + [a for k, v in psnr.items() for a in ("--psnr", f"{k}={v}")] + [
                "--psnr-source", src]
            e2 = run_proc(again, env=ctx.env, log=ctx.log, tag="export", timeout=until_end(180))
            if e2["rc"] == 0:
                res["entry"] = "\n".join(e2["lines"])
        res["psnr"] = psnr
    res["eval_sets_missing"] = sets_missing
    if sets_missing:
        res["note"] = (f"not evaluated here (not staged): {', '.join(sets_missing)}; run "
                       f"restore eval on them with the returned {target.name}")
    res["status"] = "ok" if r["rc"] in (0, 143) else "partial"
    return res


def psnr_keys(task: str, setting: dict, scores: list[dict]) -> dict:
    """weights.toml psnr keys: SR: SET (Y-PSNR); denoise: SET-sS; JPEG: SET-qQ and SET-Y-qQ."""
    out = {}
    for s in scores:
        if task == "sr":
            out[s["dataset"]] = s["psnr"]
        elif task == "denoise":
            out[f"{s['dataset']}-s{setting['sigma']:g}"] = s["psnr"]
        else:
            out[f"{s['dataset']}-q{setting['quality']}"] = s["psnr"]
            if s.get("psnr_y") is not None:
                out[f"{s['dataset']}-Y-q{setting['quality']}"] = s["psnr_y"]
    return {k: round(v, 2) for k, v in out.items() if v is not None}


def _jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


# -- the summary ------------------------------------------------------------------------------

def summary_rows(s: dict) -> list[list[str]]:
    rows = []
    p = s["parts"]["tests"]
    if "counts" in p:
        c = p["counts"]
        what = f"{c['passed']} passed, {c['failed'] + c['error']} failed, {c['skipped']} skipped"
        if p.get("failed"):
            what += ": " + ", ".join(n.split("::")[-1] for n in p["failed"][:3])
            what += " ..." if len(p["failed"]) > 3 else ""
    else:
        what = p.get("note", "")
    rows.append(["tests", p["status"], fmt_s(p.get("seconds")), what])
    p = s["parts"]["throughput"]
    what = p.get("note", "")
    if "rows" in p:
        what = f"{p['measured']} rows measured, {p['errors']} errors, {p['skipped']} skipped"
    rows.append(["throughput", p["status"], fmt_s(p.get("seconds")), what])
    for name, b in (p.get("best") or {}).items():
        if name in ARCHS or name == "swinir-iln-t.sr-x4":
            ref = b.get("speedup_vs_reference")
            rows.append(["", "", "", f"{name}: {b['out_mpix_per_s']:.2f} MP/s ({b['variant']}"
                                     f"{f', {ref:.2f}x the reference' if ref else ''})"])
    p = s["parts"]["train"]
    rows.append(["train", p["status"], fmt_s(p.get("seconds")), p.get("note", "")])
    for r in p.get("runs", []):
        if r.get("status") == "skipped":
            rows.append(["", "", "", f"{r['config']}: skipped ({r.get('note', '')})"])
            continue
        psnr = " / ".join(f"{k} {v:.2f}" for k, v in (r.get("psnr") or {}).items())
        rows.append(["", "", "", f"{r.get('name')}: {r.get('step')} steps, {r['status']}"
                                 f"{', ' + psnr + ' dB' if psnr else ''}"
                                 f"{', ' + r['file'] if r.get('file') else ''}"])
    return rows


def print_table(ctx: Context) -> None:
    rows = [["part", "status", "time", "result"]] + summary_rows(ctx.summary)
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]}".rstrip()
             for r in rows]
    ctx.summary["table"] = lines
    ctx.save()
    ctx.log("")
    ctx.log(f"results in {ctx.out} ({', '.join(ctx.summary['files'])}); "
            f"{ctx.summary['elapsed_s']:.0f} s in all")
    ctx.log("\n".join(lines))


# -- staging data into the checkout ----------------------------------------------------------------

def stage_data(dest: Path, source: Path | None, mib: float) -> int:
    """Copy the sets the GPU run needs into DEST/data, in STAGE_ORDER, within ``mib``:
    benchmark sets whole or not at all, training folders as far as they fit."""
    if source is None:
        print("gpu_run: no data folder found to stage from (--data)", file=sys.stderr)
        return 2
    budget = int(mib * 2**20)
    used = 0
    root = dest.resolve() / "data"
    for rel in STAGE_ORDER:
        src = source / rel / ("HR" if rel.startswith("benchmarks") else "")
        if not src.is_dir():
            print(f"{rel}: not in {source}")
            continue
        files = sorted(p for p in src.rglob("*") if p.is_file())
        size = sum(p.stat().st_size for p in files)
        if rel.startswith("benchmarks") and used + size > budget:
            print(f"{rel}: {size / 2**20:.1f} MiB does not fit "
                  f"(left {(budget - used) / 2**20:.1f})")
            continue
        n = 0
        for p in files:
            if used + p.stat().st_size > budget:
                break
            out = root / rel / ("HR" if rel.startswith("benchmarks") else "") / p.relative_to(src)
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, out)
            used += p.stat().st_size
            n += 1
        print(f"{rel}: {n} of {len(files)} files")
    print(f"staged {used / 2**20:.1f} MiB under {root}")
    return 0


# -- main -------------------------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.environ.get("OUT") or "gpu-results",
                   help="results folder (default: $OUT, else gpu-results/)")
    p.add_argument("--dry-run", action="store_true", help="the same paths on the CPU, tiny")
    p.add_argument("--minutes", type=float, default=None,
                   help="wall-clock budget of the whole run (default 8; dry run 4)")
    p.add_argument("--tests-minutes", type=float, default=None, help="default 1.5 (dry 1)")
    p.add_argument("--throughput-minutes", type=float, default=None, help="default 2.25 (dry 1.5)")
    p.add_argument("--train-minutes", type=float, default=0,
                   help="training minutes per config (default: what is left)")
    p.add_argument("--parts", default=",".join(PARTS), help="which of tests,throughput,train")
    p.add_argument("--device", default="cuda", help="throughput: cuda or cuda:N")
    p.add_argument("--models", default="", help="throughput: only these (registry names, "
                                                "swinir-s-iln, hat-mini-iln)")
    p.add_argument("--out-side", type=int, default=None,
                   help="throughput: output side in pixels (default 1024; dry 32)")
    p.add_argument("--train-configs", default=",".join(TRAIN_CONFIGS))
    p.add_argument("--data", help="the shared data folder (with benchmarks/ and train/)")
    p.add_argument("--work", help="scratch folder for runs and models (default: a temp dir)")
    p.add_argument("--stage-data", metavar="DIR",
                   help="copy a subset of the data into DIR/data (e.g. shared) and exit")
    p.add_argument("--stage-mib", type=float, default=56.0)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    dry = args.dry_run
    args.minutes = args.minutes or (4.0 if dry else 8.0)
    args.tests_minutes = args.tests_minutes or (1.0 if dry else 1.5)
    args.throughput_minutes = args.throughput_minutes or (1.5 if dry else 2.25)
    args.out_side = args.out_side or (32 if dry else 1024)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        worker(args.worker)
        return 0
    if args.stage_data:
        return stage_data(Path(args.stage_data), find_data(args.data), args.stage_mib)
    parts = [s.strip() for s in args.parts.split(",") if s.strip()]
    bad = [s for s in parts if s not in PARTS]
    if bad:
        print(f"gpu_run: --parts: {bad[0]!r} is not one of {', '.join(PARTS)}", file=sys.stderr)
        return 2
    ctx = Context(args)
    ctx.log(f"gpu_run: {'dry run on the CPU' if ctx.dry else 'GPU run'}, budget "
            f"{args.minutes:g} min, results in {ctx.out}, data {ctx.data or 'not found'}")
    ctx.summary["machine"] = probe_machine(ctx)
    m = ctx.summary["machine"]
    ctx.log(f"machine: torch {m.get('torch')}, CUDA {m.get('cuda_build')}, "
            f"{[d['name'] for d in m.get('devices', [])] or 'no GPU'}, {m.get('cpus')} CPUs")
    ctx.save()
    if not ctx.dry and not m.get("cuda_available"):
        ctx.log("gpu_run: error: no CUDA device here (use --dry-run for the CPU check)")
        for p in PARTS:
            ctx.summary["parts"][p] = {"status": "skipped", "note": "no CUDA device"}
        print_table(ctx)
        return 2
    plan = {"tests": (part_tests, args.tests_minutes), "throughput": (part_throughput,
                                                                      args.throughput_minutes)}
    for name in PARTS:
        if name not in parts:
            ctx.summary["parts"][name] = {"status": "skipped", "note": "not in --parts"}
            continue
        t0 = time.monotonic()
        ctx.log(f"{name}: starting, {ctx.left() / 60:.1f} min left")
        try:
            if name == "train":
                res = part_train(ctx, ctx.deadline - 10)
            else:
                fn, minutes = plan[name]
                budget = min(60 * minutes, ctx.left() - 30)
                res = (fn(ctx, budget) if budget > 20 else
                       {"status": "skipped", "note": "no time left"})
        except Exception as exc:  # noqa: BLE001 (a bug here must not cost the other parts)
            import traceback

            ctx.log(traceback.format_exc(), quiet=True)
            res = {"status": "error", "note": f"{type(exc).__name__}: {exc}"[:300]}
        res.setdefault("seconds", round(time.monotonic() - t0, 1))
        ctx.summary["parts"][name] = res
        ctx.save()
        ctx.log(f"{name}: {res['status']} in {res['seconds']:.0f} s")
    print_table(ctx)
    files = ctx.summary["files"]
    if len(files) > MAX_FILES:
        ctx.log(f"gpu_run: warning: {len(files)} files in {ctx.out}; the device machine brings "
                f"back {MAX_FILES}")
    if not ctx.args.work:
        shutil.rmtree(ctx.work, ignore_errors=True)
    # 1 when a part failed outright; "partial" (a budget cut a part short) is not a failure
    bad = [p for p in PARTS if ctx.summary["parts"][p]["status"] in ("failed", "error", "timeout")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
