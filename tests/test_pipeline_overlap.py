"""restore.pipeline.restore_files: reading and writing overlap the model, and nothing a
caller can see changes (files, their bytes, the order of results and messages, failures)."""

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from restore import io as rio
from restore.archs import build
from restore.engine import Precision, Restorer
from restore.errors import UsageError
from restore.pipeline import (
    Existing, ImageOptions, Job, OutputFormat, Result, Task, collect_inputs, plan_jobs,
    restore_files,
)

TINY = dict(img_size=32, window_size=8, depths=[2], embed_dim=16, num_heads=[2], mlp_ratio=2.0,
            norm="iln")
OPTS = ImageOptions(task=Task.SR)


@pytest.fixture(scope="module")
def restorer():
    torch.manual_seed(0)
    model = build("swinir", upscale=2, upsampler="pixelshuffledirect", **TINY).eval()
    return Restorer(model, scale=2, size_multiple=model.size_multiple,
                    device=torch.device("cpu"), precision=Precision.FP32, tile=0)


def _rgb(h, w, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / (h + w)], -1)
    return np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)


@pytest.fixture
def folder(tmp_path):
    """Eight inputs of the kinds the pipeline handles differently, sorted by name."""
    import cv2

    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(_rgb(24 + 8 * i, 32, i)).save(src / f"a{i}.png")
    Image.fromarray(_rgb(24, 24, 3)[..., 0]).save(src / "b_gray.png")
    rgba = np.dstack([_rgb(16, 24, 4), np.linspace(0, 255, 16 * 24).reshape(16, 24)])
    Image.fromarray(rgba.astype(np.uint8), "RGBA").save(src / "c_alpha.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(_rgb(16, 32, 5)).save(src / "d_exif.jpg", exif=exif.tobytes(), quality=90)
    deep = (np.random.default_rng(6).random((20, 20, 3)) * 65535).astype(np.uint16)
    cv2.imwrite(str(src / "e_deep.png"), deep)
    Image.fromarray(_rgb(32, 16, 7)).save(src / "sub" / "f.webp", quality=80)
    return src


def _jobs(src: Path, out: Path) -> list[Job]:
    files, _ = collect_inputs([src])
    return plan_jobs(files, out, "_x2", OutputFormat.SAME)


def _run(jobs, restorer, overlap, events=None, **kw):
    def before(img):
        if events is not None:
            events.append(("before", img.path.name))
        return {"seen": img.path.name}

    results = []
    for res in restore_files(jobs, restorer, 3, 2, OPTS, Existing.REFUSE, before=before,
                             overlap=overlap, **kw):
        if events is not None:
            events.append((res.status, res.job.source.name))
        results.append(res)
    return results


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _no_worker_threads():
    return not [t for t in threading.enumerate() if t.name.startswith("restore-")]


def test_overlap_gives_the_same_files_results_and_order(folder, tmp_path, restorer):
    runs = {}
    for overlap in (False, True):
        out = tmp_path / f"out-{overlap}"
        jobs = _jobs(folder, out)
        events: list = []
        results = _run(jobs, restorer, overlap, events)
        runs[overlap] = (out, jobs, results, events)
    (out_a, jobs_a, res_a, ev_a), (out_b, jobs_b, res_b, ev_b) = runs[False], runs[True]
    assert len(jobs_a) == 8
    assert [r.job for r in res_b] == jobs_b  # input order
    assert [r.status for r in res_b] == ["ok"] * 8
    assert _files(out_a) == _files(out_b)  # byte for byte, no stray temporary file
    assert ev_a == ev_b  # `before` of an image comes after the result of the one before
    for a, b in zip(res_a, res_b):
        ia, ib = dict(a.info), dict(b.info)
        ta, tb = ia.pop("timing"), ib.pop("timing")
        assert ia == ib and a.warnings == b.warnings
        assert set(tb) == {"read_s", "restore_s", "write_s"} and set(ta) == set(tb)
        assert b.seconds >= tb["restore_s"] > 0
    assert _no_worker_threads()


def test_a_corrupt_file_fails_alone_and_fail_fast_stops_there(folder, tmp_path, restorer):
    (folder / "a1.png").write_bytes((folder / "a1.png").read_bytes()[:100])  # truncated
    for overlap in (False, True):
        out = tmp_path / f"out-{overlap}"
        jobs = _jobs(folder, out)
        results = _run(jobs, restorer, overlap)
        assert [r.job for r in results] == jobs
        assert [r.status for r in results] == ["ok", "failed"] + ["ok"] * 6
        assert results[1].reason.startswith(str(folder / "a1.png") + ": ")
        assert not (out / "a1_x2.png").exists() and len(_files(out)) == 7

        fast = tmp_path / f"fast-{overlap}"
        results = _run(_jobs(folder, fast), restorer, overlap, fail_fast=True)
        assert [r.status for r in results] == ["ok", "failed"]
        assert sorted(_files(fast)) == ["a0_x2.png"]  # nothing restored after the failure
    assert _no_worker_threads()


def test_a_write_failure_is_that_image_s_failure(folder, tmp_path, restorer, monkeypatch):
    out = tmp_path / "out"
    jobs = _jobs(folder, out)
    out.mkdir()
    (out / "sub").write_text("a file where the output folder should be")  # f.webp's folder
    (out / "a2_x2.png").mkdir()  # a folder where a2's output should be
    real_write = rio.write_image
    threads = set()

    def write_image(path, *args, **kwargs):  # a bug in the writer for one file
        threads.add(threading.current_thread().name)
        if Path(path).name == "c_alpha_x2.png":
            raise RuntimeError("boom")
        return real_write(path, *args, **kwargs)

    monkeypatch.setattr(rio, "write_image", write_image)
    seen = []

    def on_error(job, exc):
        seen.append((job.source.name, type(exc).__name__, threading.current_thread().name))
        return Result(job, "failed", f"internal error: {exc}")

    results = list(restore_files(jobs, restorer, 3, 2, OPTS, Existing.OVERWRITE,
                                 on_error=on_error))
    assert [r.job for r in results] == jobs
    status = {r.job.source.name: r.status for r in results}
    assert [n for n, s in status.items() if s == "failed"] == ["a2.png", "c_alpha.png", "f.webp"]
    reasons = {r.job.source.name: r.reason for r in results}
    assert "is a folder" in reasons["a2.png"]
    assert reasons["c_alpha.png"] == "internal error: boom"
    assert seen == [("c_alpha.png", "RuntimeError", threading.main_thread().name)]
    assert threads == {"restore-write_0"}  # written in the background, reported in order
    assert sorted(p.name for p in out.glob("*.*")) == [
        "a0_x2.png", "a1_x2.png", "a2_x2.png", "b_gray_x2.png", "d_exif_x2.jpg",
        "e_deep_x2.png"]  # a2_x2.png: the folder that was there
    assert _no_worker_threads()


def test_reads_are_bounded_and_an_interruption_stops_cleanly(folder, tmp_path, restorer,
                                                             monkeypatch):
    real_read = rio.read_image
    reads = []
    monkeypatch.setattr(rio, "read_image", lambda p, **kw: reads.append(p) or real_read(p, **kw))
    calls = []

    def restore_fn(x):
        assert len(reads) <= len(calls) + 1 + 2  # this image and at most 2 ahead
        calls.append(x.shape)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return restorer(x)

    out = tmp_path / "out"
    reported = []
    with pytest.raises(KeyboardInterrupt):
        for res in restore_files(_jobs(folder, out), restore_fn, 3, 2, OPTS, Existing.REFUSE,
                                 prefetch=2):
            reported.append(res.job.target.name)
    # the write under way when the model was interrupted (a2's) was finished and reported
    assert reported == ["a0_x2.png", "a1_x2.png", "a2_x2.png"]
    written = sorted(_files(out))
    assert written == reported
    for name in written:  # whole, not cut
        Image.open(out / name).load()
    assert _no_worker_threads()

    gen = restore_files(_jobs(folder, tmp_path / "early"), restorer, 3, 2, OPTS,
                        Existing.REFUSE)
    first = next(gen)
    gen.close()  # a caller that stops between results: nothing is left under way
    assert _no_worker_threads()
    assert sorted(_files(tmp_path / "early")) == [first.job.target.name]


def test_errors_of_before_and_of_the_model_are_the_same_as_one_by_one(folder, tmp_path,
                                                                       restorer):
    from restore.errors import UsageError

    def before(img):
        if img.path.name == "a2.png":
            raise UsageError("no estimate for this one")
        return {}

    def restore_fn(x):
        if x.shape[1:] == (24, 24):  # b_gray.png
            raise RuntimeError("a bug in the model")
        return restorer(x)

    def on_error(job, exc):
        return Result(job, "failed", f"{type(exc).__name__}: {exc}")

    seen = {}
    for overlap in (False, True):
        out = tmp_path / f"out-{overlap}"
        results = list(restore_files(_jobs(folder, out), restore_fn, 3, 2, OPTS,
                                     Existing.REFUSE, before=before, on_error=on_error,
                                     overlap=overlap))
        seen[overlap] = [(r.job.source.name, r.status, r.reason) for r in results]
        assert not (out / "a2_x2.png").exists() and not (out / "b_gray_x2.png").exists()
        assert len(_files(out)) == 6
        with pytest.raises(RuntimeError, match="a bug"):  # default on_error: a bug is raised
            list(restore_files(_jobs(folder, tmp_path / f"raise-{overlap}"), restore_fn, 3, 2,
                               OPTS, Existing.REFUSE, overlap=overlap))
        assert _no_worker_threads()
    assert seen[False] == seen[True]
    assert ("a2.png", "failed", "UsageError: no estimate for this one") in seen[True]
    assert ("b_gray.png", "failed", "RuntimeError: a bug in the model") in seen[True]


def test_choose_sends_each_image_through_its_model_with_and_without_overlap(folder, tmp_path,
                                                                             restorer):
    """``choose`` (several models, one per image) gives the same files either way, each the
    bytes its model gives alone; it runs once per image; its error fails that image only."""
    from restore.errors import UsageError

    torch.manual_seed(1)
    other_model = build("swinir", upscale=2, upsampler="pixelshuffledirect", **TINY).eval()
    other = Restorer(other_model, scale=2, size_multiple=other_model.size_multiple,
                     device=torch.device("cpu"), precision=Precision.FP32, tile=0)
    seen = {}
    for overlap in (False, True):
        calls: list = []

        def choose(img):
            calls.append(img.path.name)
            if img.path.name == "c_alpha.png":
                raise UsageError("cannot pick a model for this one")
            return (other, 3) if img.path.name.startswith("a") else (restorer, 3)

        out = tmp_path / f"out-{overlap}"
        results = list(restore_files(_jobs(folder, out), restorer, 3, 2, OPTS, Existing.REFUSE,
                                     choose=choose, overlap=overlap))
        seen[overlap] = (_files(out), [(r.job.source.name, r.status, r.reason) for r in results])
        assert sorted(calls) == sorted(r.job.source.name for r in results)  # once each
        assert _no_worker_threads()
    assert seen[False] == seen[True]
    files, statuses = seen[True]
    assert ("c_alpha.png", "failed", "cannot pick a model for this one") in statuses
    assert sum(s == "ok" for _, s, _ in statuses) == 7 and "c_alpha_x2.png" not in files
    alone = {}
    for tag, model in (("other", other), ("first", restorer)):  # as if each ran alone
        job = [j for j in _jobs(folder, tmp_path / tag) if j.source.stem in ("a0", "b_gray")]
        assert [r.status for r in restore_files(job, model, 3, 2, OPTS, Existing.REFUSE,
                                                overlap=False)] == ["ok", "ok"]
        alone[tag] = _files(tmp_path / tag)
    assert files["a0_x2.png"] == alone["other"]["a0_x2.png"] != alone["first"]["a0_x2.png"]
    assert files["b_gray_x2.png"] == alone["first"]["b_gray_x2.png"]


def test_collect_inputs_walks_folders_and_reports_the_other_files(tmp_path):
    for rel in ("b.png", "sub/a.jpg", "notes.txt", "Makefile", ".hidden.png",
                ".git/x.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"not opened")
    files, skipped = collect_inputs([tmp_path, tmp_path / "b.png"])
    assert files == [(tmp_path / "b.png", tmp_path), (tmp_path / "sub" / "a.jpg", tmp_path),
                     (tmp_path / "b.png", None)]
    assert skipped == [(tmp_path / "Makefile", "not an image file (no suffix)"),
                       (tmp_path / "notes.txt", "not an image file (.txt)")]
    assert collect_inputs([tmp_path], recursive=False)[0] == [(tmp_path / "b.png", tmp_path)]
    with pytest.raises(UsageError, match="no such file or folder"):
        collect_inputs([tmp_path / "missing"])

