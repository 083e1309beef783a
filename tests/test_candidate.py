"""benchmarks/candidate.py, run as the campaign runs it (a subprocess), on one image a set.

What matters: the candidate is scored as `restore eval` scores it, beside the registered
model, and the verdict follows the rule: ship only when better on the validation set and
worse on no figure.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
import torch

from restore.checkpoint import load_model, save_model
from shared_paths import BENCHMARKS, REPO, require

SCRIPT = REPO / "benchmarks" / "candidate.py"
SHIPPED = REPO / "restore" / "models" / "swinir-iln-t.sr-x2.safetensors"
_spec = importlib.util.spec_from_file_location("candidate", SCRIPT)
cand = importlib.util.module_from_spec(_spec)
sys.modules["candidate"] = cand  # (its dataclass looks itself up there)
_spec.loader.exec_module(cand)


def candidate(tmp_path, name: str, model: str, file, *args: str) -> tuple[dict, str]:
    out = tmp_path / f"{name}.json"
    res = subprocess.run([sys.executable, str(SCRIPT), model, str(file), "--max-images", "1",
                          "--measure-registered", "--jobs", "2", *args, "--json", str(out)],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    return json.loads(out.read_text()), res.stdout


@pytest.fixture(scope="module")
def worse(tmp_path_factory):
    """The shipped x2 model with every weight nudged: a real, worse checkpoint."""
    model = load_model(SHIPPED)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.002 * torch.randn(p.shape, generator=g))
    return save_model(model, tmp_path_factory.mktemp("worse") / "worse.safetensors")


@pytest.mark.slow
def test_the_same_model_is_a_tie_and_is_kept(tmp_path, isolated_user_dirs):
    require(BENCHMARKS / "Set5" / "HR")
    doc, stdout = candidate(tmp_path, "same", "swinir-iln-t.sr-x2", SHIPPED, "--keys", "Set5")
    (row,) = doc["rows"]
    assert row["n"] == 1 and row["diff"] == 0.0
    assert doc["verdict"] == ("keep: not better on the validation set Set5 (first 1 image(s) "
                              "of each set)")
    assert stdout.splitlines()[-1] == f"verdict: {doc['verdict']}"


@pytest.mark.slow
def test_a_worse_candidate_is_kept_out_and_a_better_one_shipped(tmp_path, worse,
                                                               isolated_user_dirs):
    from restore.evaluate import Protocol, evaluate_folder, load_method
    from restore.tasks import Task

    require(BENCHMARKS / "Set14" / "HR")
    doc, _ = candidate(tmp_path, "worse", "swinir-iln-t.sr-x2", worse, "--keys", "Set5,Set14")
    assert doc["verdict"].startswith("keep: worse on Set5 (")
    # the candidate's figure is restore eval's on the same image
    expected = evaluate_folder(Protocol.make("sr", scale=2), BENCHMARKS / "Set5" / "HR",
                               load_method(str(worse), Task.SR), max_images=1)
    # (1e-5: the worker runs one thread, this process several: float sums in another order)
    assert doc["rows"][0]["candidate"] == pytest.approx(expected.psnr, abs=1e-5)
    assert doc["rows"][0]["candidate_ssim"] == pytest.approx(expected.ssim, abs=1e-6)

    # the worse model registered (the user registry), the shipped one as its candidate
    imp = subprocess.run([sys.executable, "-m", "restore", "models", "import", str(worse),
                          "--name", "worse.sr-x2"], capture_output=True, text=True, cwd=REPO)
    assert imp.returncode == 0, imp.stderr
    doc, stdout = candidate(tmp_path, "better", "worse.sr-x2", SHIPPED, "--keys", "Set5,Set14")
    assert doc["verdict"].startswith("ship: better on Set5 (+")
    assert "psnr = { Set5 = " in stdout
    ssim = f"{doc['rows'][0]['candidate_ssim']:.4f}"
    assert f"ssim (the candidate's, for the README) = {{ Set5 = {ssim}, Set14 = " in stdout


def test_figures_of_the_whole_sets_are_not_compared_with_a_subset(tmp_path):
    res = subprocess.run([sys.executable, str(SCRIPT), "swinir-iln-t.sr-x2", str(SHIPPED),
                          "--max-images", "2"], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 2 and "--measure-registered" in res.stderr


def test_every_figure_of_the_shipped_entries_parses(isolated_user_dirs):
    from restore import registry

    seen = {}
    for spec in registry.load_registry().models.values():
        if not spec.name.startswith("swinir-iln-t."):  # the ones we train and ship
            continue
        for text in spec.psnr:
            k = cand.parse_key(text, spec.task.value, spec.scale)
            seen[text] = (k.set, k.level, k.y)
            assert cand.set_folder(k.set).name in ("HR", k.set)
    assert seen["Set5"][1] in (2, 3, 4)
    assert seen["CBSD68-s25"] == ("CBSD68", 25, False)
    assert seen["LIVE1-Y-q10"] == ("LIVE1", 10, True)
    assert seen["LIVE1_gray-q45"] == ("LIVE1_gray", 45, False)
    for text, task in (("Set5-Y", "sr"), ("CBSD68-q10", "denoise"), ("LIVE1", "jpeg"),
                       ("Set5-s15", "sr")):
        with pytest.raises(SystemExit, match="is not a"):
            cand.parse_key(text, task, 2)


def test_registered_figures_tie_within_their_rounding():
    def rows(*diffs):
        return [{"key": f"K{i}", "set": "V" if i == 0 else "O", "diff": d,
                 "tie": cand.ROUNDING} for i, d in enumerate(diffs)]

    assert cand.verdict(rows(0.004, 0.0), "V").startswith("keep: not better")
    assert cand.verdict(rows(0.006, -0.004), "V").startswith("ship: better on K0 (+0.006)")
    assert cand.verdict(rows(0.02, -0.006), "V") == "keep: worse on K1 (-0.006)"
    assert cand.verdict(rows(0.0, 0.05), "V").startswith("keep: not better")  # not on V


def test_a_candidate_that_does_not_fit_the_entry_is_one_line(tmp_path):
    x4 = REPO / "restore" / "models" / "swinir-iln-t.sr-x4.safetensors"
    res = subprocess.run([sys.executable, str(SCRIPT), "swinir-iln-t.sr-x2", str(x4)],
                         capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert res.stderr.strip().startswith("candidate.py: ") and "not x2" in res.stderr
    gray = REPO / "restore" / "models" / "swinir-iln-t.jpeg-gray.safetensors"
    res = subprocess.run([sys.executable, str(SCRIPT), "swinir-iln-t.jpeg", str(gray)],
                         capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 1 and "channel(s)" in res.stderr


def test_a_validation_set_left_out_of_the_keys_is_named_with_the_way_out():
    res = subprocess.run([sys.executable, str(SCRIPT), "swinir-iln-t.sr-x2", str(SHIPPED),
                          "--keys", "Set14", "--measure-registered"],
                         capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert res.stderr.strip() == ("candidate.py: the validation set Set5 (the entry's first "
                                  "figure's) is not among the sets measured: add it to --keys "
                                  "or give --val")
