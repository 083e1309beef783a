"""`restore sr|denoise|jpeg` end to end: the real executable on real image files."""

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from restore.archs import build
from restore.checkpoint import save_model

EXE = Path(sys.executable).parent / "restore"
TINY = dict(img_size=32, window_size=8, depths=[2], embed_dim=16, num_heads=[2], mlp_ratio=2.0,
            norm="iln")


def run(*args, cwd=None, env=None, timeout=300):
    cmd = [str(EXE)] if EXE.exists() else [sys.executable, "-m", "restore"]
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True,
                          cwd=cwd, env=full_env, timeout=timeout)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    sr = save_model(build("swinir", upscale=2, upsampler="pixelshuffledirect", **TINY),
                    d / "tiny_x2.safetensors")
    dn = save_model(build("swinir", upscale=1, upsampler="", **TINY), d / "tiny_dn.safetensors")
    return {"sr": sr, "dn": dn}


def _rgb(h, w, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / (h + w)], -1)
    return np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)


def test_sr_single_file_to_named_output(models, tmp_path):
    src = tmp_path / "photo.png"
    Image.fromarray(_rgb(20, 28)).save(src)
    out = tmp_path / "big.png"
    res = run("sr", "x2", src, "-o", out, "--model", models["sr"])
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(out)  # written paths on stdout, the rest on stderr
    assert Image.open(out).size == (56, 40)
    assert not list(tmp_path.glob(".*.tmp"))


def test_denoise_folder_tree_keeps_structure_and_reports_json(models, tmp_path):
    src = tmp_path / "scans"
    (src / "a" / "b").mkdir(parents=True)
    Image.fromarray(_rgb(16, 16, 1)).save(src / "one.png")
    Image.fromarray(_rgb(24, 16, 2)).save(src / "a" / "two.jpg", quality=90)
    Image.fromarray(_rgb(16, 24, 3)[..., 0]).save(src / "a" / "b" / "gray.png")
    out = tmp_path / "clean"
    res = run("denoise", "--sigma", 25, src, "-o", out, "--model", models["dn"], "--json")
    assert res.returncode == 0, res.stderr
    lines = [json.loads(ln) for ln in res.stdout.splitlines()]
    assert sorted(Path(r["output"]).relative_to(out).as_posix() for r in lines) == [
        "a/b/gray_denoise.png", "a/two_denoise.jpg", "one_denoise.png"]
    assert all(r["sigma"] == 25.0 and r["task"] == "denoise" for r in lines)
    assert Image.open(out / "a" / "b" / "gray_denoise.png").mode == "L"  # gray stays gray


def test_denoise_without_sigma_estimates_it(models, tmp_path):
    rng = np.random.default_rng(0)
    clean = np.full((64, 64, 3), 128.0)
    noisy = np.clip(clean + rng.normal(0, 20, clean.shape), 0, 255).astype(np.uint8)
    Image.fromarray(noisy).save(tmp_path / "n.png")
    res = run("denoise", tmp_path / "n.png", "--model", models["dn"], "--json")
    assert res.returncode == 0, res.stderr
    assert "estimated noise sigma" in res.stderr
    assert 12 < json.loads(res.stdout)["sigma"] < 28


def test_jpeg_reads_the_quality_from_the_file(models, tmp_path):
    Image.fromarray(_rgb(32, 32)).save(tmp_path / "web.jpg", quality=30)
    res = run("jpeg", tmp_path / "web.jpg", "--model", models["dn"], "--format", "png")
    assert res.returncode == 0, res.stderr
    assert "estimated JPEG quality 30" in res.stderr
    assert (tmp_path / "web_jpeg.png").is_file()
    assert "outside the range" not in res.stderr  # a file checkpoint declares no range


def test_jpeg_warns_when_the_quality_is_outside_the_models_range(tmp_path):
    from restore import registry

    colour = [s for s in registry.load_registry().defaults_for("jpeg") if s.in_chans == 3]
    lo, hi = max(s.quality_range for s in colour)  # the colour default for the top qualities
    assert hi < 95  # none is meant for near-lossless files
    Image.fromarray(_rgb(32, 32)).save(tmp_path / "fine.jpg", quality=95)
    Image.fromarray(_rgb(32, 32)).save(tmp_path / "coarse.jpg", quality=lo)
    res = run("jpeg", tmp_path / "fine.jpg", tmp_path / "coarse.jpg", "--format", "png")
    assert res.returncode == 0, res.stderr
    warnings = [ln for ln in res.stderr.splitlines() if "warning" in ln]
    assert warnings == [f"{tmp_path / 'fine.jpg'}: warning: JPEG quality 95 is outside the "
                        f"range the model is for ({lo}-{hi}): the result may be worse than "
                        "the input"], res.stderr
    assert (tmp_path / "fine_jpeg.png").is_file() and (tmp_path / "coarse_jpeg.png").is_file()


def _two_defaults(tmp_path, task, spans, chans=(3, 3)):
    """A user registry whose [defaults] lists two tiny models of ``task`` (t.TASK for
    spans[0], t.TASK-hi for spans[1], taking chans[i] input channels); (env for run,
    name -> weights file)."""
    import hashlib

    from restore.registry import FileSource, dump_registry, make_spec

    config_dir, entries, paths = tmp_path / "config", {}, {}
    for seed, (name, span) in enumerate(((f"t.{task}", spans[0]), (f"t.{task}-hi", spans[1]))):
        torch.manual_seed(seed)
        config = dict(TINY, upscale=1, upsampler="", in_chans=chans[seed])
        path = save_model(build("swinir", **config), tmp_path / "m" / f"{name}.safetensors")
        level = {"quality_range" if task == "jpeg" else "sigma_range": span}
        spec = make_spec(name, family="swinir", config=config,
                         task=task, source=FileSource(path), size=path.stat().st_size,
                         sha256=hashlib.sha256(path.read_bytes()).hexdigest(), license="MIT",
                         description="test", **level)
        entries[name], paths[name] = spec.to_data(), path
    config_dir.mkdir()
    (config_dir / "registry.toml").write_text(dump_registry(
        {"schema": 1, "defaults": {task: list(entries)}, "models": entries}))
    return {"RESTORE_CONFIG_DIR": str(config_dir),
            "RESTORE_DATA_DIR": str(tmp_path / "data")}, paths


def test_jpeg_picks_each_files_model_from_several_defaults(tmp_path):
    """Where [defaults] lists several JPEG models, each file goes through the one whose
    quality range holds its quality (read from the file): the same bytes as naming that
    model; a file with no quality goes through the first; beyond every range, the nearest
    and a warning."""
    env, paths = _two_defaults(tmp_path, "jpeg", [(10, 50), (51, 90)])
    src = tmp_path / "in"
    src.mkdir()
    for q in (20, 80, 97):
        Image.fromarray(_rgb(32, 40, q)).save(src / f"q{q}.jpg", quality=q)
    Image.fromarray(_rgb(32, 40, 5)).save(src / "plain.png")
    res = run("jpeg", src, "-o", tmp_path / "out", "--format", "png", "--json", env=env)
    assert res.returncode == 0, res.stderr
    got = {Path(r["input"]).name: r["model"] for r in map(json.loads, res.stdout.splitlines())}
    assert got == {"q20.jpg": "t.jpeg", "q80.jpg": "t.jpeg-hi", "q97.jpg": "t.jpeg-hi",
                   "plain.png": "t.jpeg"}, res.stderr
    assert "models t.jpeg (JPEG quality 10-50), t.jpeg-hi (JPEG quality 51-90)" in res.stderr
    assert f"{src / 'q80.jpg'}: estimated JPEG quality 80: model t.jpeg-hi" in res.stderr
    assert (f"{src / 'plain.png'}: not a JPEG file, quality unknown: model t.jpeg (the first; "
            "--quality picks another)") in res.stderr
    warnings = [ln for ln in res.stderr.splitlines() if "warning" in ln]
    assert warnings == [f"{src / 'q97.jpg'}: warning: JPEG quality 97 is outside the range "
                        "the model is for (51-90): the result may be worse than the input"]
    for name, model in got.items():  # what naming the model gives, byte for byte
        stem = Path(name).stem
        one = run("jpeg", src / name, "-o", tmp_path / "one" / f"{stem}.png",
                  "--model", paths[model], "-q", env=env)
        assert one.returncode == 0, one.stderr
        assert (tmp_path / "one" / f"{stem}.png").read_bytes() == \
            (tmp_path / "out" / f"{stem}_jpeg.png").read_bytes(), name
    # a quality given on the command line picks for every file
    res = run("jpeg", src / "q20.jpg", "--quality", 85, "-o", tmp_path / "given.png", "--json",
              env=env)
    assert res.returncode == 0 and json.loads(res.stdout)["model"] == "t.jpeg-hi", res.stderr


def test_jpeg_sends_gray_files_to_a_gray_default(tmp_path):
    """With a gray and a colour JPEG model among the defaults (same range), a gray file
    goes through the gray model and a colour one through the colour model, read or given
    quality alike, byte for byte what naming the model gives."""
    env, paths = _two_defaults(tmp_path, "jpeg", [(10, 90), (10, 90)], chans=(3, 1))
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(_rgb(32, 40, 1)).save(src / "colour.jpg", quality=30)
    Image.fromarray(_rgb(32, 40, 2)[..., 0]).save(src / "gray.jpg", quality=30)
    Image.fromarray(_rgb(32, 40, 3)[..., 0]).save(src / "plain.png")
    want = {"colour.jpg": "t.jpeg", "gray.jpg": "t.jpeg-hi", "plain.png": "t.jpeg-hi"}
    for given in ((), ("--quality", 30)):
        out = tmp_path / f"out{len(given)}"
        res = run("jpeg", src, "-o", out, "--format", "png", "--json", *given, env=env)
        assert res.returncode == 0, res.stderr
        got = {Path(r["input"]).name: r["model"]
               for r in map(json.loads, res.stdout.splitlines())}
        assert got == want, res.stderr
    for name, model in want.items():
        stem = Path(name).stem
        one = run("jpeg", src / name, "-o", tmp_path / "one" / f"{stem}.png", "--quality", 30,
                  "--model", paths[model], "-q", env=env)
        assert one.returncode == 0, one.stderr
        assert (tmp_path / "one" / f"{stem}.png").read_bytes() == \
            (tmp_path / "out2" / f"{stem}_jpeg.png").read_bytes(), name


def test_denoise_with_a_given_sigma_loads_only_its_model(tmp_path):
    """With several denoise defaults, --sigma picks one model for every file before any is
    loaded (the other's file may as well be missing)."""
    env, paths = _two_defaults(tmp_path, "denoise", [(0, 20), (20.5, 50)])
    Image.fromarray(_rgb(32, 32)).save(tmp_path / "a.png")
    paths["t.denoise"].unlink()  # only t.denoise-hi may be loaded for sigma 30
    res = run("denoise", "--sigma", 30, tmp_path / "a.png", "-o", tmp_path / "b.png", "--json",
              env=env)
    assert res.returncode == 0, res.stderr
    assert "model t.denoise-hi, cpu" in res.stderr and "t.denoise," not in res.stderr
    assert json.loads(res.stdout)["model"] == "t.denoise-hi"
    res = run("denoise", "--sigma", 10, tmp_path / "a.png", "-o", tmp_path / "c.png", env=env)
    assert res.returncode == 1 and "t.denoise" in res.stderr  # its file is gone: it was needed
    assert "Traceback" not in res.stderr


def test_16_bit_alpha_and_exif_orientation(models, tmp_path):
    import cv2

    deep = (np.random.default_rng(0).random((12, 10, 3)) * 65535).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "deep.png"), deep[..., ::-1])
    rgba = np.dstack([_rgb(12, 10), np.linspace(0, 255, 120).reshape(12, 10).astype(np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "logo.png")
    im = Image.fromarray(_rgb(10, 16))  # stored landscape, EXIF says rotate 90 CW
    exif = Image.Exif()
    exif[0x0112] = 6
    im.save(tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    res = run("sr", "x2", tmp_path / "deep.png", tmp_path / "logo.png", tmp_path / "phone.jpg",
              "--model", models["sr"], "-o", tmp_path / "out")
    assert res.returncode == 0, res.stderr
    out = tmp_path / "out"
    d = cv2.imread(str(out / "deep_x2.png"), cv2.IMREAD_UNCHANGED)
    assert d.dtype == np.uint16 and d.shape == (24, 20, 3)
    logo = Image.open(out / "logo_x2.png")
    assert logo.mode == "RGBA" and logo.size == (20, 24)
    a = np.asarray(logo)[..., 3].astype(int)
    assert a[0].mean() < a[-1].mean()  # the alpha ramp survived, top to bottom
    phone = Image.open(out / "phone_x2.jpg")
    assert phone.size == (20, 32)  # upright: portrait
    assert phone.getexif().get(0x0112, 1) == 1


def test_bad_files_fail_alone_and_skip_existing_does_no_work(models, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(_rgb(16, 16)).save(src / "good.png")
    (src / "empty.png").write_bytes(b"")
    (src / "fake.png").write_text("this is not an image")
    data = (tmp_path / "tmp.png")
    Image.fromarray(_rgb(32, 32)).save(data)
    (src / "cut.png").write_bytes(data.read_bytes()[:200])
    (src / "notes.txt").write_text("not an image either")
    out = tmp_path / "out"
    res = run("sr", "x2", src, "-o", out, "--model", models["sr"])
    assert res.returncode == 1
    assert [p.name for p in out.rglob("*")] == ["good_x2.png"]  # nothing for the bad ones
    for name in ("empty.png", "fake.png", "cut.png"):
        line = next(ln for ln in res.stderr.splitlines() if ln.startswith(str(src / name)))
        assert "error:" in line
    assert "notes.txt: skipped: not an image file" in res.stderr
    assert "Traceback" not in res.stderr
    assert "3 of 4 file(s) failed" in res.stderr
    mtime = (out / "good_x2.png").stat().st_mtime_ns
    again = run("sr", "x2", src / "good.png", "-o", out, "--model", models["sr"], "--skip-existing")
    assert again.returncode == 0
    assert "skipped" in again.stderr and "restore sr:" not in again.stderr  # no model loaded
    assert (out / "good_x2.png").stat().st_mtime_ns == mtime


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_stops_a_folder_run_cleanly_and_skip_existing_goes_on(models, tmp_path, sig):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    (src / "00.png").write_text("not an image")  # fails first: the count says so
    for i in range(1, 61):
        Image.fromarray(_rgb(128, 128, i)).save(src / f"{i:02d}.png")
    cmd = [str(EXE)] if EXE.exists() else [sys.executable, "-m", "restore"]
    proc = subprocess.Popen(  # SIGINT as a terminal's Ctrl-C gives it (a background shell ignores it)
        cmd + ["denoise", "--sigma", "25", str(src), "-o", str(out), "--model", str(models["dn"])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    first = proc.stdout.readline()  # one image done: the signal lands in the middle of the run
    proc.send_signal(sig)
    rest, err = proc.communicate(timeout=120)
    printed = [first] + rest.splitlines()
    assert proc.returncode == -sig, err  # it ends by the signal (a shell's $? is 128 + sig)
    assert "Traceback" not in err
    name = signal.Signals(sig).name
    last = err.strip().splitlines()[-1]
    stopped = re.fullmatch(rf"restore: {name}: stopped after (\d+) of 61 image\(s\) \(1 "
                           r"failed\), every output written whole; the same command with "
                           r"--skip-existing does the rest", last)
    assert stopped, last
    written = sorted(out.iterdir())
    assert not [p for p in written if p.name.startswith(".")]  # no temporary file left behind
    assert 1 <= len(written) < 60
    assert len(written) - len(printed) in (0, 1)  # at most the one written as the signal came
    # the count is of the images done: the failed one, the outputs printed, and the one
    # written as the signal came
    assert 1 + len(printed) <= int(stopped.group(1)) <= 1 + len(written)
    for p in written:  # each one whole
        with Image.open(p) as im:
            im.load()
            assert im.size == (128, 128)
    again = run("denoise", "--sigma", 25, src, "-o", out, "--model", models["dn"],
                "--skip-existing")
    assert again.returncode == 1 and "00.png: error: " in again.stderr  # still not an image
    assert len(again.stdout.splitlines()) == 60 - len(written)
    assert len(list(out.iterdir())) == 60


def test_a_gif_given_by_name_comes_out_as_png_with_a_frames_warning(models, tmp_path):
    src = tmp_path / "anim.gif"
    frames = [Image.fromarray(_rgb(24, 32, i)).convert("P") for i in range(2)]
    frames[0].save(src, save_all=True, append_images=frames[1:])
    res = run("denoise", "--sigma", 10, src, "--model", models["dn"])
    assert res.returncode == 0, res.stderr
    out = tmp_path / "anim_denoise.png"  # restore writes no GIF: the format, not an error
    assert res.stdout.strip() == str(out)
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (32, 24) and im.mode == "RGB"
    assert "anim.gif: warning: animated (2 frames): only the first frame is restored" in res.stderr


def test_inputs_are_never_overwritten(models, tmp_path):
    src = tmp_path / "a.png"
    Image.fromarray(_rgb(16, 16)).save(src)
    before = src.read_bytes()
    res = run("denoise", src, "-o", src, "--model", models["dn"], "--overwrite")
    assert res.returncode == 2 and "refusing to overwrite inputs" in res.stderr
    res = run("denoise", src, "--suffix", "", "--model", models["dn"], "--overwrite")
    assert res.returncode == 2
    assert src.read_bytes() == before
    res = run("denoise", tmp_path / "missing.png", "--model", models["dn"])
    assert res.returncode == 2 and "no such file" in res.stderr


def test_existing_output_is_refused_without_a_flag(models, tmp_path):
    src = tmp_path / "a.png"
    Image.fromarray(_rgb(16, 16)).save(src)
    (tmp_path / "a_x2.png").write_bytes(b"keep me")
    res = run("sr", "x2", src, "--model", models["sr"])
    assert res.returncode == 1 and "--overwrite" in res.stderr
    assert (tmp_path / "a_x2.png").read_bytes() == b"keep me"
    res = run("sr", "x2", src, "--model", models["sr"], "--overwrite")
    assert res.returncode == 0 and Image.open(tmp_path / "a_x2.png").size == (32, 32)


def test_wrong_model_for_the_task_is_a_usage_error(models, tmp_path):
    src = tmp_path / "a.png"
    Image.fromarray(_rgb(16, 16)).save(src)
    res = run("sr", "x4", src, "--model", models["sr"])
    assert res.returncode == 2 and "is x2, not x4" in res.stderr
    res = run("denoise", src, "--model", models["sr"])
    assert res.returncode == 2 and "super-resolution model" in res.stderr


@pytest.mark.slow
def test_torchrun_shards_a_folder_across_processes(models, tmp_path):
    n = 40
    src = tmp_path / "many"
    src.mkdir()
    for i in range(n):
        Image.fromarray(_rgb(8, 8, i)).save(src / f"img{i}.png")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--master-port", "29517", "-m", "restore", "sr", "x2", str(src), "-o", str(out),
           "--model", str(models["sr"]), "-q"]
    # unbuffered, as CI runners and docker images often set it: each rank's result line must
    # still reach the shared pipe in one write, or two ranks' paths run together on a line
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    written = sorted(res.stdout.splitlines())
    assert written == sorted(str(out / f"img{i}_x2.png") for i in range(n))  # each exactly once
    assert sorted(p.name for p in out.iterdir()) == sorted(f"img{i}_x2.png" for i in range(n))


def test_rerun_over_a_folder_ignores_earlier_outputs(models, tmp_path):
    shoot = tmp_path / "shoot"
    shoot.mkdir()
    for i in range(2):
        Image.fromarray(_rgb(16, 16, i)).save(shoot / f"p{i}.png")
    first = run("sr", "x2", shoot, "--model", models["sr"])
    assert first.returncode == 0, first.stderr
    again = run("sr", "x2", shoot, "--model", models["sr"], "--skip-existing")
    assert again.returncode == 0, again.stderr
    assert "earlier result" in again.stderr and again.stdout == ""
    for p in shoot.glob("*_x2.png"):
        p.unlink()
    inside = run("sr", "x2", shoot, "-o", shoot / "big", "--model", models["sr"])
    assert inside.returncode == 0, inside.stderr
    re_inside = run("sr", "x2", shoot, "-o", shoot / "big", "--model", models["sr"],
                    "--skip-existing")
    assert re_inside.returncode == 0 and "inside the output folder" in re_inside.stderr
    assert sorted(p.name for p in (shoot / "big").iterdir()) == ["p0_x2.png", "p1_x2.png"]


def test_options_are_checked_before_any_model_is_loaded(tmp_path):
    src = tmp_path / "a.png"
    Image.fromarray(_rgb(16, 16)).save(src)
    for args, words in [(["--precision", "banana"], "--precision 'banana'"),
                        (["--tile", "big"], "--tile 'big'"),
                        (["--tile-mode", "magic"], "--tile-mode 'magic'")]:
        res = run("sr", "x2", src, "--model", "no-such-model", *args)
        assert res.returncode == 2 and words in res.stderr, res.stderr
        assert "Traceback" not in res.stderr
    two = run("sr", "x2", src, src.with_name("b.png"), "-o", tmp_path / "out.png",
              "--model", "no-such-model")
    assert two.returncode == 2


def test_shipped_default_restores_offline_and_beats_bicubic(tmp_path):
    """`restore sr x4 photo` with no --model and no network uses the embedded default, and
    it is a trained model: closer to the ground truth than bicubic."""
    from shared_paths import BENCHMARKS, require

    from restore.degrade import imresize
    from restore.metrics import psnr

    hr = np.asarray(Image.open(require(BENCHMARKS / "Kodak24" / "HR" / "kodim23.png")))
    hr = hr[200:296, 300:428]  # 96x128: a parrot's head, quick on a CPU
    lr = imresize(hr, 1 / 4)
    Image.fromarray(lr).save(tmp_path / "small.png")
    res = run("sr", "x4", tmp_path / "small.png", "--json",
              env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty-hf")})
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["model"] == "swinir-iln-t.sr-x4"
    out = np.asarray(Image.open(info["output"]))
    assert out.shape == hr.shape
    ours = psnr(out, hr, crop=4, y_channel=True)
    bicubic = psnr(imresize(lr, 4), hr, crop=4, y_channel=True)
    assert ours > bicubic + 0.5, (ours, bicubic)


@pytest.mark.parametrize("task", ["sr-x2", "sr-x3", "denoise", "jpeg", "jpeg-q90"])
def test_every_shipped_default_restores_offline_and_beats_its_input(tmp_path, task):
    """Each task's default (when the registry has one) is embedded, runs with no --model
    and no network, and brings a degraded crop closer to the ground truth: at JPEG
    quality 90 too (the default for the top qualities)."""
    from shared_paths import BENCHMARKS, require

    from restore.degrade import add_gaussian_noise, imresize, jpeg_compress
    from restore.metrics import psnr
    from restore.registry import load_registry

    from restore.registry import pick_by_level

    quality = 90 if task == "jpeg-q90" else 10
    specs = load_registry().defaults_for(task.split("-q")[0])
    if not specs:
        pytest.skip(f"no default model for {task} in weights.toml")
    spec = pick_by_level(specs, quality)
    hr = np.asarray(Image.open(require(BENCHMARKS / "Kodak24" / "HR" / "kodim23.png")))
    hr = hr[200:296, 300:432]  # 96x132: a parrot's head, quick on a CPU
    if task.startswith("sr"):
        s = int(task[-1])
        lq = imresize(hr, 1 / s)
        args, base, crop = ["sr", f"x{s}"], imresize(lq, s), s
    elif task == "denoise":
        noisy = add_gaussian_noise(hr.astype(np.float32) / 255, 25, 0)
        lq = np.clip(np.round(noisy * 255), 0, 255).astype(np.uint8)
        args, base, crop = ["denoise", "--sigma", 25], lq, 0
    else:
        lq = jpeg_compress(hr, quality)
        args, base, crop = ["jpeg", "--quality", quality], lq, 0
    Image.fromarray(lq).save(tmp_path / "in.png")
    res = run(*args, tmp_path / "in.png", "--json",
              env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty-hf")})
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["model"] == spec.name and spec.source.kind == "embedded"
    out = np.asarray(Image.open(info["output"]))
    assert out.shape == hr.shape
    ours = psnr(out, hr, crop=crop, y_channel=task.startswith("sr"))
    before = psnr(base, hr, crop=crop, y_channel=task.startswith("sr"))
    assert ours > before + (0.2 if task == "jpeg-q90" else 0.5), (ours, before)


def test_a_gray_jpeg_goes_to_the_shipped_gray_model_and_stays_gray(tmp_path):
    """With no --model, a gray JPEG goes to the shipped gray model (its quality read from the
    file), which restores it better than the colour model does, and the output stays gray;
    a colour JPEG at the same quality goes to the colour model, and a gray JPEG above the
    gray model's range to the colour model made for its quality."""
    from shared_paths import BENCHMARKS, require

    from restore.metrics import psnr
    from restore.registry import load_registry

    gray_specs = [s for s in load_registry().defaults_for("jpeg") if s.in_chans == 1]
    if not gray_specs:
        pytest.skip("no gray JPEG default in weights.toml")
    gray = gray_specs[0]
    assert gray.source.kind == "embedded"
    hr = np.asarray(Image.open(require(BENCHMARKS / "Classic5" / "HR" / "barbara.png")).convert("L"))
    hr = hr[:192, :256]
    colour = np.asarray(Image.open(require(BENCHMARKS / "Kodak24" / "HR" / "kodim23.png")))
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(hr).save(src / "gray.jpg", quality=10)
    Image.fromarray(hr).save(src / "gray_q75.jpg", quality=75)
    Image.fromarray(colour[200:296, 300:428]).save(src / "colour.jpg", quality=10)
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty-hf")}
    res = run("jpeg", src, "-o", tmp_path / "out", "--format", "png", "--json", env=env)
    assert res.returncode == 0, res.stderr
    got = {Path(r["input"]).name: r for r in map(json.loads, res.stdout.splitlines())}
    assert {k: r["model"] for k, r in got.items()} == {
        "gray.jpg": gray.name, "gray_q75.jpg": "swinir-iln-t.jpeg-hq",
        "colour.jpg": "swinir-iln-t.jpeg"}, res.stderr
    for name, mode in (("gray.jpg", "L"), ("gray_q75.jpg", "L"), ("colour.jpg", "RGB")):
        assert Image.open(got[name]["output"]).mode == mode, name
    res = run("jpeg", src / "gray.jpg", "--model", "swinir-iln-t.jpeg", "-o",
              tmp_path / "through_colour.png", env=env)
    assert res.returncode == 0, res.stderr
    ours = psnr(np.asarray(Image.open(got["gray.jpg"]["output"])), hr)
    through_colour = psnr(np.asarray(Image.open(tmp_path / "through_colour.png")), hr)
    jpeg = psnr(np.asarray(Image.open(src / "gray.jpg")), hr)
    assert ours > through_colour + 0.05 and through_colour > jpeg, (ours, through_colour, jpeg)


def test_exact_tiling_through_a_scratch_file_from_the_command_line(tmp_path):
    """--exact-memory 0 puts every whole-image map of exact tiling in a scratch file: the
    output is the whole image's (to the 8-bit level: float rounding may flip a level), the
    user is told, the scratch folder is left empty; a bad size is refused before loading."""
    Image.fromarray(_rgb(44, 52)).save(tmp_path / "a.png")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = {"TMPDIR": str(scratch)}
    res = run("sr", "x2", tmp_path / "a.png", "-o", tmp_path / "exact.png", "--tile", 16,
              "--tile-mode", "exact", "--exact-memory", 0, env=env)
    assert res.returncode == 0, res.stderr
    assert "went through a scratch file" in res.stderr
    assert list(scratch.iterdir()) == []
    res = run("sr", "x2", tmp_path / "a.png", "-o", tmp_path / "whole.png", "--tile", 0, env=env)
    assert res.returncode == 0, res.stderr
    assert "scratch file" not in res.stderr
    a = np.asarray(Image.open(tmp_path / "exact.png")).astype(int)
    b = np.asarray(Image.open(tmp_path / "whole.png")).astype(int)
    assert np.abs(a - b).max() <= 1 and (a != b).mean() < 1e-3
    res = run("sr", "x2", tmp_path / "a.png", "--exact-memory", "lots")
    assert res.returncode == 2 and res.stderr.strip().splitlines()[-1] == \
        "restore: error: --exact-memory 'lots' is not a size (e.g. 2G, 800M)"


def test_a_result_line_reaches_an_unbuffered_stdout_in_one_write(monkeypatch):
    # what python -u / PYTHONUNBUFFERED makes of stdout: every write goes straight to the
    # file; print would send the path and its newline as two writes, which another rank on
    # the same pipe can split
    import io

    from restore.cli.process import _emit

    class Recorder(io.RawIOBase):
        def __init__(self):
            self.writes = []

        def writable(self):
            return True

        def write(self, b):
            self.writes.append(bytes(b))
            return len(b)

    raw = Recorder()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(raw, encoding="utf-8", write_through=True))
    _emit("/out/img0_x2.png")
    _emit('{"status": "ok"}')
    assert raw.writes == [b"/out/img0_x2.png\n", b'{"status": "ok"}\n']
