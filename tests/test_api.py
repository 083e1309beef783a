"""restore.load and Model.restore / restore_file: the README's example runs as written, the
API gives the command line's outputs (pixels, and files byte for byte), and bad arguments
are one clear error."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import restore
from restore.errors import RestoreError, UsageError

from shared_paths import REPO

SAMPLE = REPO / "restore" / "data" / "sample.png"


def _cli(*args, cwd) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    return subprocess.run([sys.executable, "-m", "restore", *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300)


def test_the_readme_example_runs(tmp_path):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Python API"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    shutil.copy(SAMPLE, tmp_path / "photo.png")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = res.stdout.splitlines()
    printed = re.search(r"print\(model\)  # (.*)", code).group(1)
    if "cuda" not in lines[0]:  # on a GPU machine auto picks cuda / fp16
        assert lines[0] == printed
    assert lines[1] == "640 640 exact"
    assert Image.open(tmp_path / "photo_x4.png").size == (640, 640)


@pytest.fixture(scope="module")
def sr4():
    return restore.load("swinir-iln-t.sr-x4", device="cpu")


def test_load_carries_the_model_s_facts(sr4):
    assert (sr4.task.value, sr4.scale, sr4.in_chans, sr4.size_multiple) == ("sr", 4, 3, 8)
    assert sr4.fp16_safe is True and sr4.precision.value == "fp32"
    d = restore.load(task="jpeg", level=80, device="cpu")
    assert d.name == "swinir-iln-t.jpeg-hq" and d.span == (61.0, 90.0)
    assert restore.load(task="jpeg", level=20, device="cpu").name == "swinir-iln-t.jpeg"
    f = restore.load(REPO / "restore" / "models" / "swinir-iln-t.denoise.safetensors",
                     device="cpu")
    assert f.task.value == "denoise" and f.scale == 1 and f.fp16_safe is False  # a file


def test_restore_gives_the_command_line_s_pixels(sr4, tmp_path):
    res = _cli("sr", "x4", SAMPLE, "-o", tmp_path / "cli.png", "--device", "cpu", "-q",
               cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    cli = np.asarray(Image.open(tmp_path / "cli.png"))
    photo = Image.open(SAMPLE)
    assert np.array_equal(np.asarray(sr4.restore(photo)), cli)  # PIL in, PIL out
    as_array = sr4.restore(np.asarray(photo))
    assert as_array.dtype == np.uint8 and np.array_equal(as_array, cli)
    as_float = sr4.restore(np.asarray(photo, dtype=np.float32) / 255)
    assert as_float.dtype == np.float32 and as_float.shape == (640, 640, 3)
    assert np.abs(as_float * 255 - cli).max() <= 0.5 + 1e-3  # before rounding
    exact = sr4.restore(photo, tile=48)  # i-LN: exact tiles by default
    assert np.abs(np.asarray(exact).astype(int) - cli).max() <= 1
    gray = sr4.restore(np.asarray(photo.convert("L")))  # through the colour model, back gray
    assert gray.shape == (640, 640)
    rgba = photo.convert("RGBA")
    rgba.putalpha(128)
    out = sr4.restore(rgba)
    assert out.mode == "RGBA" and out.size == (640, 640)
    assert np.asarray(out)[..., 3].min() == np.asarray(out)[..., 3].max() == 128


def test_restore_file_writes_what_the_command_writes(sr4, tmp_path):
    res = _cli("sr", "x4", SAMPLE, "-o", tmp_path / "cli.png", "--device", "cpu", "--json",
               "-q", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    record = json.loads(res.stdout.splitlines()[0])
    info = sr4.restore_file(SAMPLE, tmp_path / "api.png")
    assert (tmp_path / "api.png").read_bytes() == (tmp_path / "cli.png").read_bytes()
    assert (info["width"], info["height"]) == (record["width"], record["height"])
    before = (tmp_path / "api.png").read_bytes()
    with pytest.raises(RestoreError, match="exists"):
        sr4.restore_file(SAMPLE, tmp_path / "api.png")  # never replaced without overwrite
    assert (tmp_path / "api.png").read_bytes() == before
    copy = tmp_path / "in.png"
    shutil.copy(SAMPLE, copy)
    with pytest.raises(UsageError, match="is the input"):
        sr4.restore_file(copy, copy, overwrite=True)
    assert copy.read_bytes() == SAMPLE.read_bytes()
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(RestoreError, match="bad.png"):
        sr4.restore_file(bad, tmp_path / "bad_x4.png")
    assert not (tmp_path / "bad_x4.png").exists()


def test_bad_arguments_are_one_clear_error(sr4):
    with pytest.raises(UsageError, match="give a model"):
        restore.load()
    with pytest.raises(UsageError, match="scale=2, 3 or 4"):
        restore.load(task="sr")
    with pytest.raises(UsageError, match="one of sr, denoise, jpeg"):
        restore.load(task="deblur")
    with pytest.raises(UsageError, match="x4, not x2"):
        restore.load("swinir-iln-t.sr-x4", scale=2)
    with pytest.raises(RestoreError, match="no-such-model"):
        restore.load("no-such-model")
    with pytest.raises(UsageError, match="uint8, uint16 or float"):
        sr4.restore(np.zeros((8, 8, 3), dtype=np.int32))
    with pytest.raises(UsageError, match=r"\(H, W, 3\)"):
        sr4.restore(np.zeros((8, 8, 4), dtype=np.uint8))
    with pytest.raises(UsageError, match="tile="):
        sr4.restore(np.zeros((8, 8, 3), dtype=np.uint8), tile=-1)
    with pytest.raises(UsageError, match="tile=True"):
        sr4.restore(np.zeros((8, 8, 3), dtype=np.uint8), tile=True)
    # a numpy integer (a size computed with numpy) is a number of pixels like any other
    img = np.random.default_rng(1).random((20, 28, 3), dtype=np.float32)
    assert np.array_equal(sr4.restore(img, tile=np.int64(16)), sr4.restore(img, tile=16))
