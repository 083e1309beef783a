"""The GPU paths on a real CUDA device: reduced precision, exact tiling, the OOM retry, the
CLI, bad device strings, two-GPU DDP.

Every test is marked ``gpu`` and skips without CUDA (CI has none). On the device machine
they run through ``python benchmarks/gpu_run.py`` (which keeps their figures in its
results folder) or directly: ``pytest -m gpu tests/test_gpu.py -v``.

Figures (max error, PSNR, tiles, memory) go to the junit XML as properties
(``record_property``) and, when ``$RESTORE_GPU_FIGURES`` names a file, one JSON line per
test there, so that a run cut short still keeps those of the tests that finished.

``RESTORE_GPU_TESTS_DEVICE=cpu`` runs the tests that need no CUDA-only feature on the CPU
(memory caps, device counts and DDP still skip): a check of the tests themselves on a
machine without a GPU, not a GPU result.

Models: every entry of the shipped weights.toml, with its trained weights where they are on
this machine (embedded, or in the Hugging Face cache) and otherwise random weights of its
config (seed 0: the device machine cannot download; the figures say which), and
random-weight models of pinned architectures (weights.toml presets, as
benchmarks/throughput.py builds them).
"""

from __future__ import annotations

import functools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from restore import registry
from restore.archs import build
from restore.checkpoint import load_model, load_state_dict
from restore.engine import Precision, Restorer, resolve_precision
from restore.metrics import psnr

from shared_paths import DATA, FIXTURES, REPO

ON_CPU = os.environ.get("RESTORE_GPU_TESTS_DEVICE", "").strip().lower() == "cpu"
HAVE_CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda", 0) if HAVE_CUDA else torch.device("cpu")
CPU = torch.device("cpu")
SAMPLE = REPO / "restore" / "data" / "sample.png"
FP16_PSNR_MIN = 40.0  # dB vs fp32, an fp16-safe model (benchmarks/precision.py's bar)
BF16_PSNR_MIN = 30.0  # dB vs fp32, any model: a loose sanity bound (bf16 keeps 8 bits)

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not (HAVE_CUDA or ON_CPU), reason="needs a CUDA device")]
cuda_only = pytest.mark.skipif(not HAVE_CUDA, reason="needs a CUDA device (not on the CPU)")


@pytest.fixture
def figure(request, record_property):
    """figure(key=value, ...): keep measured values with the test's result."""
    path = os.environ.get("RESTORE_GPU_FIGURES")

    def put(**values):
        for k, v in values.items():
            record_property(k, v)
        if path:
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"test": request.node.nodeid, **values}, default=str) + "\n")
    return put


# -- models --------------------------------------------------------------------------------

def _shipped() -> list[registry.ModelSpec]:
    """The entries of the shipped registry (not a user's imports)."""
    base = str(registry.base_registry_path())
    return [s for s in registry.load_registry().models.values() if s.origin == base]


SHIPPED = {s.name: s for s in _shipped()}
# Pinned architectures with random weights: (preset, norm), built as benchmarks/throughput.py
# builds its swinir-s-iln and hat-mini-iln (the i-LN paper's HAT-mini).
PINNED = {"random:swinir-s-iln": ("swinir-s-x4", "iln"),
          "random:hat-mini-iln": ("hat-mini-x4", "iln")}


def _perturbed(model: torch.nn.Module, seed: int, sharp: float = 0.0) -> torch.nn.Module:
    """Parameters moved off their initial values; ``sharp`` scales q/k so that attention
    logits reach about that (as trained models' do; tests/test_exact_property.py)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
        if sharp:
            for name, p in model.named_parameters():
                if name.endswith("qkv.weight"):
                    p[: 2 * p.shape[1]].mul_(sharp ** 0.5 * 3.0)
    return model.eval()


@functools.lru_cache(maxsize=4)
def load_named(name: str) -> tuple[torch.nn.Module, str, bool]:
    """(model on the CPU in eval mode, "trained" or "random", fp16_safe) for a shipped
    registry name or a PINNED name."""
    if name in PINNED:
        preset, norm = PINNED[name]
        p = registry.load_registry().preset(preset)
        cfg = p.config_dict()
        cfg.pop("stdnorm", None)
        cfg.pop("eps", None)
        cfg.update(norm=norm, drop_path_rate=0.0)
        torch.manual_seed(0)
        return build(p.family, **cfg).eval(), "random", False
    spec = SHIPPED[name]
    try:
        path = registry.cached_path(spec)
    except Exception:  # noqa: BLE001 (no huggingface_hub, a broken cache: random weights)
        path = None
    if path is not None:
        return registry.load_registry_model(spec, offline=True), "trained", spec.fp16_safe
    torch.manual_seed(0)
    return build(spec.family, **spec.config).eval(), "random", spec.fp16_safe


def _task_of(name: str) -> tuple[str, int, dict]:
    """(task, scale, protocol setting) for a model: SR at its scale, denoise at sigma 25,
    JPEG at the middle of its quality range (10-60 -> 35)."""
    if name in PINNED:
        return "sr", 4, {"scale": 4}
    spec = SHIPPED[name]
    if spec.task.value == "sr":
        return "sr", spec.scale, {"scale": spec.scale}
    if spec.task.value == "denoise":
        return "denoise", 1, {"sigma": 25.0}
    lo, hi = spec.quality_range or (10, 40)
    return "jpeg", 1, {"quality": int(round((lo + hi) / 2))}


def _sample_case(name: str, in_chans: int):
    """(target uint8 (H, W[, 3]), input (C, h, w) float32 CPU, protocol) from the bundled
    sample, degraded for the model's task by restore.evaluate's own functions."""
    from restore.evaluate import Protocol, degrade_image, read_image

    task, _, setting = _task_of(name)
    protocol = Protocol.make(task, **setting)
    hr = read_image(SAMPLE)
    if in_chans == 1 and hr.ndim == 3:
        hr = np.round(hr.astype(np.float64) @ [0.299, 0.587, 0.114]).astype(np.uint8)
    target, lq = degrade_image(protocol, hr, np.random.default_rng(0))
    a = lq.astype(np.float32) / 255.0 if lq.dtype == np.uint8 else lq.astype(np.float32)
    a = a[:, :, None] if a.ndim == 2 else a
    return target, torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))), protocol


def _to_uint8(y: torch.Tensor) -> np.ndarray:
    """(C, H, W) float -> (H, W[, C]) uint8 as restore writes it (clamp, round)."""
    a = (y.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return a[:, :, 0] if a.shape[2] == 1 else a


# -- reduced precision against fp32 ----------------------------------------------------------

@pytest.mark.parametrize("name", [*SHIPPED, *PINNED])
def test_fp16_and_bf16_against_fp32(name, figure):
    from restore.evaluate import score_image

    model, kind, fp16_safe = load_named(name)
    model = model.to(DEVICE)
    s, m = model.scale, model.size_multiple
    target, x, protocol = _sample_case(name, model.config.in_chans)
    raw_nonfinite = []

    def count(_module, _inputs, out):  # the raw reduced-precision output, before any redo
        if torch.is_autocast_enabled(DEVICE.type):
            raw_nonfinite.append(int((~torch.isfinite(out)).sum()))

    hook = model.register_forward_hook(count)
    try:
        results = {}
        for prec in ("fp32", "fp16", "bf16"):
            raw_nonfinite.clear()
            y, st = Restorer(model, scale=s, size_multiple=m, device=DEVICE,
                             precision=Precision(prec), tile=0)(x)
            results[prec] = (y, st, sum(raw_nonfinite))
    finally:
        hook.remove()
        model.to(CPU)
    y32 = results["fp32"][0]
    ref8 = _to_uint8(y32)
    gt32 = score_image(protocol, name, ref8, target).psnr
    auto, _ = resolve_precision(Precision.AUTO, DEVICE, fp16_safe)
    values = {"weights": kind, "fp16_safe": fp16_safe, "auto_precision": auto.value,
              "input": f"{x.shape[2]}x{x.shape[1]}", "psnr_fp32_vs_gt": round(gt32, 3)}
    for prec in ("fp16", "bf16"):
        y, st, bad = results[prec]
        assert torch.isfinite(y).all(), f"{prec}: non-finite output written"
        vs32 = psnr(_to_uint8(y), ref8, data_range=255)
        gt = score_image(protocol, name, _to_uint8(y), target).psnr
        values.update({f"{prec}_max_abs_err": float((y - y32).abs().max()),
                       f"{prec}_psnr_vs_fp32": None if math.isinf(vs32) else round(vs32, 2),
                       f"{prec}_psnr_drop": round(gt32 - gt, 4),
                       f"{prec}_raw_nonfinite": bad, f"{prec}_fp32_recomputed": st.fp32_recomputed})
    figure(**values)
    if DEVICE.type == "cuda":  # the registry's flag decides auto: fp16 only where it is safe
        want = (Precision.FP16 if fp16_safe else
                Precision.BF16 if torch.cuda.is_bf16_supported() else Precision.FP32)
        assert auto is want
    if not fp16_safe:
        assert resolve_precision(Precision.FP16, DEVICE, False)[1], "no warning for fp16"
    if fp16_safe and kind == "trained":
        assert results["fp16"][2] == 0 and results["fp16"][1].fp32_recomputed == 0
        assert values["fp16_psnr_vs_fp32"] is None or values["fp16_psnr_vs_fp32"] >= FP16_PSNR_MIN
    assert values["bf16_psnr_vs_fp32"] is None or values["bf16_psnr_vs_fp32"] >= BF16_PSNR_MIN


# -- exact tiling on the device ------------------------------------------------------------

def _small_swinir_iln(sharp: float = 0.0) -> torch.nn.Module:
    torch.manual_seed(1)
    m = build("swinir", norm="iln", upscale=3, upsampler="pixelshuffledirect", img_size=32,
              window_size=8, depths=[2, 2], embed_dim=24, num_heads=[2, 3], mlp_ratio=2.0)
    return _perturbed(m, 2, sharp)


def _small_hat(norm: str) -> torch.nn.Module:
    torch.manual_seed(3)
    m = build("hat", norm=norm, upscale=2, img_size=32, window_size=8, depths=[2],
              embed_dim=24, num_heads=[2], compress_ratio=3, squeeze_factor=8,
              overlap_ratio=0.5, mlp_ratio=2.0, upsampler="pixelshuffle")
    return _perturbed(m, 4)


def _fixture(name: str) -> torch.nn.Module:
    from safetensors.torch import load_file

    case = FIXTURES / name
    if not case.is_dir():
        pytest.skip(f"{case} is not available")
    cfg = json.loads((case / "config.json").read_text())
    return load_state_dict(build(cfg["family"], **cfg["kwargs"]).eval(),
                           load_file(str(case / "weights.safetensors")))


EXACT_MODELS = {
    "swinir-iln x3 (random)": _small_swinir_iln,
    "swinir-iln x3 sharp (random)": lambda: _small_swinir_iln(sharp=40.0),
    "hat-iln x2 (random)": lambda: _small_hat("iln"),
    "hat-ln x2 (random; channel pooling)": lambda: _small_hat("layernorm"),
    "fixture hat_iln_x2": lambda: _fixture("hat_iln_x2"),
    "fixture hat_x4": lambda: _fixture("hat_x4"),
    **{f"shipped {n}": (lambda s=s: load_model(s.source.path)) for n, s in SHIPPED.items()
       if isinstance(s.source, registry.EmbeddedSource)},
}


@functools.lru_cache(maxsize=2)
def _exact_model(name: str) -> torch.nn.Module:
    return EXACT_MODELS[name]().eval()


@functools.lru_cache(maxsize=4)
def _whole(name: str, h: int, w: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(input, whole-image fp32 output on ``device``)."""
    model = _exact_model(name)
    x = torch.rand(model.config.in_chans, h, w, generator=torch.Generator().manual_seed(h * w))
    y, _ = Restorer(model, scale=model.scale, size_multiple=model.size_multiple,
                    device=torch.device(device))(x)
    model.to(CPU)
    return x, y


@pytest.mark.parametrize("tile", [8, 16, 24, 40])
@pytest.mark.parametrize("name", sorted(EXACT_MODELS))
def test_exact_tiles_on_the_device_equal_the_whole_image(name, tile, figure):
    if name.startswith("shipped") and tile in (8, 24):
        pytest.skip("shipped models: tiles 16 and 40 (the smallest cases run on random ones)")
    model = _exact_model(name)
    h, w = (37, 29) if tile < 40 else (90, 70)  # neither a window nor a tile multiple
    x, whole = _whole(name, h, w, str(DEVICE))
    _, whole_cpu = _whole(name, h, w, "cpu")
    exact, st = Restorer(model, scale=model.scale, size_multiple=model.size_multiple,
                         device=DEVICE, tile=tile, tile_mode="exact")(x)
    model.to(CPU)
    err = (exact - whole).abs().max().item()
    dev_err = (whole - whole_cpu).abs().max().item()
    figure(tiles=st.tiles, exact_vs_whole_max_err=err, device_vs_cpu_max_err=dev_err)
    assert st.tile_mode == "exact" and st.tiles > 1
    assert err <= 1e-4, f"exact tiles differ from the whole image by {err:.3g}"
    assert dev_err <= 1e-3, f"the device's fp32 differs from the CPU's by {dev_err:.3g}"


# -- out of memory: the tile is halved and the image restarted -----------------------------

@cuda_only
@pytest.mark.parametrize("mode", ["independent", "exact"])
def test_oom_halves_the_tile_under_a_memory_cap(mode, figure):
    """Under torch.cuda.set_per_process_memory_fraction, a whole image that does not fit is
    restarted in tiles (halved until they fit) and gives the uncapped result for the same
    tiling (exact: the whole image's)."""
    model = load_model(SHIPPED["swinir-iln-t.sr-x4"].source.path)
    s, m = model.scale, model.size_multiple
    x = torch.rand(3, 640, 640, generator=torch.Generator().manual_seed(0))
    total = torch.cuda.get_device_properties(DEVICE).total_memory

    def restorer(tile: int) -> Restorer:
        return Restorer(model, scale=s, size_multiple=m, device=DEVICE, tile=tile,
                        tile_mode=mode)

    model.to(DEVICE)
    torch.cuda.synchronize(DEVICE)
    torch.cuda.empty_cache()
    base = torch.cuda.memory_reserved(DEVICE)
    torch.cuda.reset_peak_memory_stats(DEVICE)
    whole, st0 = restorer(0)(x)
    peak = torch.cuda.max_memory_allocated(DEVICE) - torch.cuda.memory_allocated(DEVICE)
    torch.cuda.empty_cache()
    cap = base + peak // 3
    try:
        torch.cuda.set_per_process_memory_fraction(min(1.0, cap / total), DEVICE)
        capped, st = restorer(0)(x)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, DEVICE)
        torch.cuda.empty_cache()
    figure(whole_peak_mib=round(peak / 2**20, 1), cap_mib=round(cap / 2**20, 1),
           oom_retries=st.oom_retries, tile_used=st.tile, tiles=st.tiles, notes=st.notes)
    assert st0.oom_retries == 0 and st0.tile is None
    assert st.oom_retries >= 1 and st.tile is not None and st.tile < 640
    assert any("out of memory" in n for n in st.notes)
    same, _ = (restorer(st.tile)(x) if mode == "independent" else (whole, None))
    model.to(CPU)
    err = (capped - same).abs().max().item()
    figure(max_err_vs_uncapped=err)
    assert err <= 1e-4


@cuda_only
def test_exact_maps_go_to_ram_when_the_device_refuses_them(figure):
    """A device budget the allocator cannot honour (here a per-process cap, which
    mem_get_info does not see): the map that fails and the next ones land in pinned RAM,
    and the default budget sees the cap."""
    from restore.engine import MapStore

    torch.cuda.synchronize(DEVICE)
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(DEVICE).total_memory
    cap = torch.cuda.memory_reserved(DEVICE) + (300 << 20)
    maps: list = []
    try:
        torch.cuda.set_per_process_memory_fraction(min(1.0, cap / total), DEVICE)
        store = MapStore(DEVICE, device_budget=8 << 30)  # more than the cap allows
        maps = [store.empty(32, 1024, 1024) for _ in range(5)]  # 128 MiB each
        on_device = sum(m.device.type == "cuda" for m in maps)
        figure(maps_on_device=on_device, maps_in_ram=store.maps["ram"],
               device_budget_after=store.budget["device"])
        assert 1 <= on_device <= 2 and store.maps["ram"] == 5 - on_device
        assert store.budget["device"] == store.used["device"] == on_device * (128 << 20)
        assert all(m.is_pinned() for m in maps if m.device.type == "cpu")
        default = MapStore(DEVICE).budget["device"]
        assert default <= max(0, cap - torch.cuda.memory_reserved(DEVICE)) // 2 + 1
    finally:
        del maps
        torch.cuda.set_per_process_memory_fraction(1.0, DEVICE)
        torch.cuda.empty_cache()


@cuda_only
def test_eval_on_cuda_n_scores_as_the_cpu(tmp_path, figure):
    """restore eval --device cuda:0 runs true fp32 (TF32 off): the CPU's PSNR to 1e-3 dB."""
    set5 = DATA / "benchmarks" / "Set5" / "HR"
    if not set5.is_dir():
        pytest.skip(f"{set5} is not available")
    scores = {}
    for dev in ("cpu", "cuda:0"):
        res = restore_cli("eval", "--task", "sr", "--scale", "4", "--model",
                          "swinir-iln-t.sr-x4", "--data", set5, "--device", dev, "--json",
                          cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        scores[dev] = json.loads(res.stdout.splitlines()[0])["psnr"]
    figure(psnr_cpu=scores["cpu"], psnr_cuda=scores["cuda:0"])
    assert abs(scores["cpu"] - scores["cuda:0"]) <= 1e-3


# -- the command line ------------------------------------------------------------------------

def restore_cli(*args, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m restore ARGS`` from the checkout (installed or not)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]),
        HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "restore", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _photo(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / (h + w)], -1)
    return np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)


def _read(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


def test_folder_through_the_cli_on_the_device(tmp_path, figure):
    from PIL import Image

    src = tmp_path / "folder"
    (src / "sub").mkdir(parents=True)
    shapes = {"a.png": (40, 48), "b.png": (33, 57), "sub/c.png": (64, 64)}
    for rel, (h, w) in shapes.items():
        Image.fromarray(_photo(h, w, len(rel))).save(src / rel)
    dev = "cuda:0" if HAVE_CUDA else "cpu"
    res = restore_cli("sr", "x4", src, "-o", tmp_path / "out", "--device", dev, "--json", "-q",
                      cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    records = [json.loads(line) for line in res.stdout.splitlines() if line.strip()]
    assert sorted(Path(r["input"]).relative_to(src).as_posix() for r in records) == sorted(shapes)
    assert all(r["status"] == "ok" and r["device"] == dev for r in records)
    if HAVE_CUDA:  # the shipped default is fp16-safe: auto runs it in fp16
        assert {r["precision"] for r in records} == {"fp16"}
    for rel, (h, w) in shapes.items():
        out = tmp_path / "out" / rel.replace(".png", "_x4.png")
        assert _read(out).shape == (4 * h, 4 * w, 3)
    # the same folder on the CPU in fp32, and through exact tiles on the device in fp32
    res = restore_cli("sr", "x4", src, "-o", tmp_path / "cpu", "--device", "cpu",
                      "--precision", "fp32", "-q", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    res = restore_cli("sr", "x4", src, "-o", tmp_path / "tiled", "--device", dev, "--precision",
                      "fp32", "--tile", "16", "--tile-mode", "exact", "-q", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    worst_auto, worst_tiled = math.inf, 0
    for rel in shapes:
        name = rel.replace(".png", "_x4.png")
        ref = _read(tmp_path / "cpu" / name)
        worst_auto = min(worst_auto, psnr(_read(tmp_path / "out" / name), ref, data_range=255))
        diff = np.abs(_read(tmp_path / "tiled" / name).astype(int) - ref.astype(int)).max()
        worst_tiled = max(worst_tiled, int(diff))
    figure(auto_vs_cpu_fp32_min_psnr=None if math.isinf(worst_auto) else round(worst_auto, 2),
           exact_tiled_vs_cpu_max_diff=worst_tiled)
    assert worst_auto >= FP16_PSNR_MIN
    assert worst_tiled <= 1  # rounding of the last bit of a few pixels at most


@pytest.mark.parametrize("bad", ["cuda:7", "cuda:x", "tpu"])
def test_a_bad_device_is_a_one_line_error(bad, tmp_path):
    from PIL import Image

    if bad == "cuda:7" and HAVE_CUDA and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    img = tmp_path / "img.png"
    Image.fromarray(_photo(16, 16, 0)).save(img)
    res = restore_cli("sr", "x4", img, "-o", tmp_path / "out.png", "--device", bad, cwd=tmp_path)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 2, res.stderr
    assert len(lines) == 1 and lines[0].startswith("restore: error: "), res.stderr
    assert bad in lines[0] and "Traceback" not in res.stderr
    assert not (tmp_path / "out.png").exists()


# -- two GPUs --------------------------------------------------------------------------------

two_gpus = pytest.mark.skipif(not HAVE_CUDA or torch.cuda.device_count() < 2,
                              reason="needs two CUDA devices")


def _torchrun(*args, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
           "2", "-m", "restore", *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


@two_gpus
def test_ddp_training_on_two_gpus(tmp_path, figure):
    t91, set5 = DATA / "train" / "T91", DATA / "benchmarks" / "Set5" / "HR"
    if not (t91.is_dir() and set5.is_dir()):
        pytest.skip(f"{t91} or {set5} is not available")
    run = tmp_path / "run"
    res = _torchrun("train", REPO / "configs" / "smoke-cpu.toml", "--no-progress",
                    "--set", f"run.dir={json.dumps(str(run))}", "--set", 'run.device="cuda"',
                    "--set", f"data.train=[{json.dumps(str(t91))}]",
                    "--set", f"data.val={json.dumps(str(set5))}", "--set", "train.max_steps=6",
                    cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    meta = json.loads((run / "meta.json").read_text())
    figure(step=meta["step"])
    assert meta["step"] == 6 and (run / "ema.safetensors").is_file()


@two_gpus
def test_ddp_folder_writes_each_output_once(tmp_path):
    from PIL import Image

    src = tmp_path / "in"
    src.mkdir()
    for i in range(5):
        Image.fromarray(_photo(24 + i, 32, i)).save(src / f"{i}.png")
    res = _torchrun("sr", "x4", src, "-o", tmp_path / "out", "--json", "-q", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    records = [json.loads(ln) for ln in res.stdout.splitlines() if ln.startswith("{")]
    outputs = [r["output"] for r in records]
    assert len(outputs) == 5 and len(set(outputs)) == 5
    assert {r["device"] for r in records} == {"cuda:0", "cuda:1"}
