"""benchmarks/gpu_run.py --dry-run: the device machine's one script, on the CPU at tiny sizes.

The GPU run itself happens only on a lent device machine; this keeps every code path of it
working between those runs: the results files a GPU run brings back exist and hold what
they should, and the trained checkpoint is one that ``restore --model PATH`` runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from shared_paths import DATA, REPO, require

SCRIPT = REPO / "benchmarks" / "gpu_run.py"
pytestmark = pytest.mark.slow


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    require(DATA / "train" / "T91")
    out = tmp_path_factory.mktemp("gpu-results")
    res = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--out", str(out),
                          "--data", str(DATA)], cwd=REPO, env=_env(), capture_output=True,
                         text=True, timeout=600)
    return out, res


def test_the_dry_run_succeeds_and_ends_with_the_summary_table(dry_run):
    out, res = dry_run
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dry_run"] is True and summary["machine"]["torch"]
    tail = res.stdout.strip().splitlines()[-len(summary["table"]):]
    assert tail == summary["table"] and tail[0].split()[:2] == ["part", "status"]
    files = sorted(p.name for p in out.iterdir() if p.is_file())
    assert files == sorted(summary["files"]) and len(files) <= 8  # the device machine's limit
    assert {"summary.json", "gpu_run.log", "pytest.xml", "pytest.txt", "throughput.json",
            "train.json", "swinir-iln-s.sr-x4.safetensors"} <= set(files)
    parts = summary["parts"]
    assert parts["tests"]["status"] == "ok" and parts["train"]["status"] == "ok"
    assert parts["throughput"]["status"] in ("ok", "partial")  # partial: budget on a slow CPU
    assert all(parts[p]["seconds"] >= 0 for p in ("tests", "throughput", "train"))


def test_the_gpu_tests_are_collected_and_skip_without_cuda(dry_run):
    out, _ = dry_run
    cases = list(ET.parse(out / "pytest.xml").getroot().iter("testcase"))
    assert len(cases) > 50
    assert all(c.find("skipped") is not None for c in cases)
    counts = json.loads((out / "summary.json").read_text())["parts"]["tests"]["counts"]
    assert counts == {"passed": 0, "failed": 0, "error": 0, "skipped": len(cases)}
    assert "skipped" in (out / "pytest.txt").read_text()


def test_throughput_rows_measure_every_kind_of_variant(dry_run):
    out, _ = dry_run
    doc = json.loads((out / "throughput.json").read_text())
    assert doc["meta"]["definitions"]["reference"] and doc["meta"]["device_name"]
    rows = doc["rows"]
    measured = [r for r in rows if r.get("median_s")]
    assert not [r for r in rows if r.get("error")]
    tiny = {r["variant"]: r for r in measured if r["model"] == "swinir-iln-t.sr-x4"}
    # the first models are always measured whole: the reference, both layouts, the engine
    for v in ("reference", "eager-cl-fp32", "eager-cl-bf16", "eager-nchw-fp32", "engine-fp32"):
        assert v in tiny, sorted(tiny)
    for r in tiny.values():
        assert r["out_size"] == 4 * r["in_size"] and r["out_mpix_per_s"] > 0
        assert r["peak_mib"] > 0 and r["speedup_vs_reference"] > 0
        assert r["weights"] == "trained"
    assert tiny["reference"]["max_abs_err_vs_reference"] == 0
    assert tiny["eager-cl-fp32"]["max_abs_err_vs_reference"] < 1e-4  # fused == explicit
    assert any(r["model"] == "swinir-s-iln" and r["weights"] == "random" for r in measured)
    assert {r["model"] for r in rows if r.get("same_as") == "swinir-iln-t.denoise"} == {
        "swinir-iln-t.jpeg", "swinir-iln-t.jpeg-hq"}
    comp = [r for r in rows if str(r.get("variant")).startswith("compile")]
    assert comp and all(r.get("compile_s") or r.get("status") == "skipped" for r in comp)


def test_training_exports_a_registry_ready_checkpoint_that_restore_runs(dry_run, tmp_path):
    from PIL import Image

    out, _ = dry_run
    run = json.loads((out / "train.json").read_text())["runs"][0]
    assert run["status"] == "ok" and run["step"] == 3 and run["name"] == "swinir-iln-s.sr-x4"
    ckpt = out / run["file"]
    sha = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert f'sha256 = "{sha}"' in run["entry"] and '[models."swinir-iln-s.sr-x4"]' in run["entry"]
    assert {e["dataset"] for e in run["eval"]} == {"Set5", "Set14", "B100"}
    assert all(e["psnr"] > 10 for e in run["eval"])
    img = tmp_path / "img.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 24, 3), np.uint8)).save(img)
    res = subprocess.run([sys.executable, "-m", "restore", "sr", "x4", str(img), "-o",
                          str(tmp_path / "big.png"), "--model", str(ckpt), "-q"], cwd=tmp_path,
                         env=_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert Image.open(tmp_path / "big.png").size == (96, 80)


def test_stage_data_copies_what_fits(tmp_path):
    require(DATA / "benchmarks" / "Set5" / "HR")
    res = subprocess.run([sys.executable, str(SCRIPT), "--stage-data", str(tmp_path),
                          "--stage-mib", "3", "--data", str(DATA)], cwd=REPO, env=_env(),
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    staged = tmp_path / "data"
    got = sum(p.stat().st_size for p in staged.rglob("*") if p.is_file())
    assert 0 < got <= 3 * 2**20
    assert len(list((staged / "benchmarks" / "Set5" / "HR").iterdir())) == 5  # a set: whole
    assert not (staged / "benchmarks" / "Set14").exists()  # 4.8 MiB: not at all
    assert "Set14" in res.stdout and "does not fit" in res.stdout
