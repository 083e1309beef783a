"""benchmarks/peers.py, run as a user runs it (a subprocess) on a few small crops.

What matters: a row for every peer, the runnable peers scored exactly as restore's own
functions score them (the JPEG itself, CBM3D on the very noisy image our model gets), ours
above bicubic, and a missing bm3d costing only the CBM3D rows, in one line.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

from shared_paths import REPO, require

SCRIPT = REPO / "benchmarks" / "peers.py"
HAVE_BM3D = importlib.util.find_spec("bm3d") is not None
# Runs the script with `import bm3d` failing (None in sys.modules), as without the package.
HIDE_BM3D = ("import runpy, sys; sys.modules['bm3d'] = None; "
             f"sys.argv = [{str(SCRIPT)!r}] + sys.argv[1:]; "
             f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')")


def run_peers(tmp_path, *args: str, hide_bm3d: bool = False) -> tuple[dict, str]:
    """(the --json document, stdout) of one run; fails the test on a non-zero exit."""
    out = tmp_path / "peers.json"
    head = ["-c", HIDE_BM3D] if hide_bm3d else [str(SCRIPT)]
    res = subprocess.run([sys.executable, *head, *args, "--json", str(out)], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return json.loads(out.read_text()), res.stdout


def rows_of(doc: dict, **match) -> list[dict]:
    return [r for r in doc["rows"] if all(r.get(k) == v for k, v in match.items())]


def crop(img: np.ndarray, side: int) -> np.ndarray:
    """The script's --max-side: a centre crop to at most side x side."""
    h, w = img.shape[:2]
    top, left = (h - min(h, side)) // 2, (w - min(w, side)) // 2
    return img[top:top + side, left:left + side]


@pytest.fixture(scope="module")
def sr_doc(benchmarks, tmp_path_factory):
    require(benchmarks / "Set5" / "HR")
    return run_peers(tmp_path_factory.mktemp("sr"), "--task", "sr", "--sets", "Set5",
                     "--levels", "2,4", "--max-images", "2", "--max-side", "96")[0]


@pytest.fixture(scope="module")
def jpeg_doc(benchmarks, tmp_path_factory):
    for name in ("Classic5", "LIVE1_gray", "LIVE1"):
        require(benchmarks / name / "HR")
    return run_peers(tmp_path_factory.mktemp("jpeg"), "--task", "jpeg", "--levels", "10",
                     "--max-images", "2", "--max-side", "48")[0]


@pytest.mark.slow
def test_sr_rows_and_ours_beats_bicubic(sr_doc):
    for scale in (2, 4):
        bicubic, = rows_of(sr_doc, set="Set5", scale=scale, peer="bicubic")
        fsrcnn, = rows_of(sr_doc, set="Set5", scale=scale, peer="FSRCNN (published)")
        assert bicubic["n"] == 2 and bicubic["channel"] == "y"
        assert bicubic["ours"] == f"swinir-iln-t.sr-x{scale}"
        assert bicubic["ours_psnr"] > bicubic["peer_psnr"] + 1.0, bicubic
        assert bicubic["diff_psnr"] == pytest.approx(
            bicubic["ours_psnr"] - bicubic["peer_psnr"], abs=2e-4)
        # a figure for the whole set at full size against 2 crops: marked as such
        assert fsrcnn["peer_psnr"] == {2: 37.05, 4: 30.71}[scale]
        assert fsrcnn["comparable"] is False and fsrcnn["peer_ssim"] is None


@pytest.mark.slow
def test_jpeg_rows_for_each_peer(jpeg_doc):
    peers = {(r["set"], r["peer"]) for r in jpeg_doc["rows"]}
    assert peers == {("Classic5", "JPEG itself"), ("Classic5", "ARCNN (published)"),
                     ("LIVE1_gray", "JPEG itself"), ("LIVE1_gray", "ARCNN (published)"),
                     ("LIVE1_gray", "DnCNN-3 (published)"), ("LIVE1", "JPEG itself")}
    assert {r["channel"] for r in rows_of(jpeg_doc, set="LIVE1")} == {"rgb"}
    assert {r["channel"] for r in rows_of(jpeg_doc, set="Classic5")} == {"gray"}
    dncnn, = rows_of(jpeg_doc, peer="DnCNN-3 (published)")
    assert dncnn["peer_psnr"] == 29.19 and "TIP 2017" in dncnn["source"]


@pytest.mark.slow
@pytest.mark.parametrize("set_name", ["Classic5", "LIVE1"])
def test_jpeg_itself_is_restores_own_score(jpeg_doc, benchmarks, set_name):
    from restore.degrade import jpeg_compress
    from restore.evaluate import list_images, read_image
    from restore.metrics import psnr, ssim

    row, = rows_of(jpeg_doc, set=set_name, peer="JPEG itself")
    hrs = [crop(read_image(p), 48) for p in list_images(benchmarks / set_name / "HR")[:2]]
    decoded = [jpeg_compress(hr, 10) for hr in hrs]
    assert row["peer_psnr"] == pytest.approx(
        np.mean([psnr(d, hr) for d, hr in zip(decoded, hrs, strict=True)]), abs=1e-4)
    assert row["peer_ssim"] == pytest.approx(
        np.mean([ssim(d, hr) for d, hr in zip(decoded, hrs, strict=True)]), abs=1e-5)


@pytest.mark.slow
def test_without_bm3d_cbm3d_is_one_line_and_the_rest_runs(benchmarks, tmp_path):
    require(benchmarks / "CBSD68" / "HR")
    doc, stdout = run_peers(tmp_path, "--task", "denoise", "--levels", "25", "--max-images",
                            "1", "--max-side", "32", hide_bm3d=True)
    assert not rows_of(doc, peer="CBM3D")
    noisy, = rows_of(doc, peer="noisy input")
    assert noisy["ours_psnr"] > noisy["peer_psnr"] + 3
    lines = [ln for ln in stdout.splitlines() if "CBM3D" in ln]
    assert len(lines) == 1 and "bm3d" in lines[0] and "not installed" in lines[0]
    assert doc["skipped"] == [lines[0]]


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_BM3D, reason="bm3d is not installed (pip install bm3d)")
def test_cbm3d_denoises_the_image_ours_gets(benchmarks, tmp_path):
    import bm3d

    from restore.degrade import add_gaussian_noise
    from restore.evaluate import list_images, read_image
    from restore.metrics import psnr

    require(benchmarks / "CBSD68" / "HR")
    doc, stdout = run_peers(tmp_path, "--task", "denoise", "--levels", "25", "--max-images",
                            "2", "--max-side", "48")
    assert "skipped" not in stdout and doc["skipped"] == []
    row, = rows_of(doc, set="CBSD68", sigma=25, peer="CBM3D")
    noisy, = rows_of(doc, set="CBSD68", sigma=25, peer="noisy input")
    assert row["n"] == 2 and row["peer_psnr"] > noisy["peer_psnr"] + 5
    # the same noise (one seed-0 generator for the set, in file order), as float32, sigma 25
    rng = np.random.default_rng(0)
    expected = []
    for path in list_images(benchmarks / "CBSD68" / "HR")[:2]:
        hr = crop(read_image(path), 48)
        z = add_gaussian_noise(hr / 255.0, 25, rng).astype(np.float32).astype(np.float64)
        out = np.round(np.clip(bm3d.bm3d_rgb(z, 25 / 255.0), 0, 1) * 255).astype(np.uint8)
        expected.append(psnr(out, hr))
    assert row["peer_psnr"] == pytest.approx(np.mean(expected), abs=1e-3)


@pytest.mark.slow
def test_noisy_8bit_gives_every_method_the_rounded_noisy_file(benchmarks, tmp_path):
    """--noisy-8bit: the noisy image rounded and clipped to 8 bits, as a saved noisy file,
    is what the identity row scores and (with bm3d) what CBM3D denoises."""
    from restore.degrade import add_gaussian_noise
    from restore.evaluate import list_images, read_image
    from restore.metrics import psnr

    require(benchmarks / "CBSD68" / "HR")
    doc, stdout = run_peers(tmp_path, "--task", "denoise", "--levels", "50", "--max-images",
                            "2", "--max-side", "48", "--noisy-8bit")
    assert doc["meta"]["noisy_8bit"] is True
    noisy, = rows_of(doc, set="CBSD68", sigma=50, peer="noisy input")
    assert noisy["noisy"] == "8-bit" and noisy["protocol_psnr"] is None
    assert "sigma 50, 8-bit noisy file" in stdout
    rng = np.random.default_rng(0)
    files, clean = [], []
    for path in list_images(benchmarks / "CBSD68" / "HR")[:2]:
        hr = crop(read_image(path), 48)
        z = add_gaussian_noise(hr / 255.0, 50, rng)
        files.append(np.clip(np.rint(z * 255.0), 0, 255).astype(np.uint8))
        clean.append(hr)
    assert noisy["peer_psnr"] == pytest.approx(
        np.mean([psnr(f, c) for f, c in zip(files, clean)]), abs=1e-3)
    assert noisy["ours_psnr"] > noisy["peer_psnr"] + 5
    if HAVE_BM3D:
        import bm3d

        row, = rows_of(doc, set="CBSD68", sigma=50, peer="CBM3D")
        outs = [np.round(np.clip(bm3d.bm3d_rgb(f / 255.0, 50 / 255.0), 0, 1) * 255
                         ).astype(np.uint8) for f in files]
        assert row["peer_psnr"] == pytest.approx(
            np.mean([psnr(o, c) for o, c in zip(outs, clean)]), abs=1e-3)


def test_levels_need_one_task():
    res = subprocess.run([sys.executable, str(SCRIPT), "--levels", "2"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "one --task" in res.stderr
