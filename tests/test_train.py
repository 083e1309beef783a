"""restore train: config validation, the loop (loss falls, checkpoints, bit-for-bit resume),
DDP with gloo on 2 CPU processes, LayerNorm -> i-LN conversion, the NaN guard, feature
statistics and export. A tiny SwinIR-iLN on T91 crops keeps the file well under a minute
and a half on 2 cores."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from shared_paths import DATA, REPO, require

from restore.errors import ConfigError, UsageError
from restore.train.config import load_config, parse_config, parse_override

TINY_ARCH = {
    "upscale": 2, "in_chans": 3, "img_size": 16, "window_size": 4, "img_range": 1.0,
    "depths": [1, 1], "embed_dim": 12, "num_heads": [2, 2], "mlp_ratio": 2,
    "upsampler": "pixelshuffledirect", "resi_connection": "1conv", "norm": "iln",
    "drop_path_rate": 0.1,  # exercises the drop-path RNG in the resume test
}


def _toml(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return repr(v)


def write_config(path: Path, run_dir: Path, **sections) -> Path:
    """A tiny SR x2 config at ``path``; ``sections`` = {"train": {...}} overrides."""
    t91 = require(DATA / "train" / "T91")
    set5 = require(DATA / "benchmarks" / "Set5" / "HR")
    raw = {
        "run": {"dir": str(run_dir), "seed": 3, "threads": 1},
        "model": {"family": "swinir"},
        "data": {"task": "sr", "scale": 2, "train": [str(t91)], "patch_size": 16,
                 "batch_size": 4, "workers": 0, "val": str(set5), "val_max_images": 1,
                 "val_max_side": 48},
        "train": {"max_steps": 20, "lr": 2e-3, "warmup_steps": 2, "log_every": 1,
                  "val_every": 10, "ckpt_every": 10, "ckpt_minutes": 0, "ema_decay": 0.9,
                  "grad_clip": 1.0},
    }
    for sec, values in sections.items():
        raw.setdefault(sec, {}).update(values)
    lines = []
    for sec, values in raw.items():
        lines.append(f"[{sec}]")
        lines += [f"{k} = {_toml(v)}" for k, v in values.items()]
        if sec == "model":
            lines.append("[model.arch]")
            lines += [f"{k} = {_toml(v)}" for k, v in TINY_ARCH.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def losses(run_dir: Path) -> dict[int, float]:
    rows = [json.loads(x) for x in (run_dir / "log.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows}


# -- config ---------------------------------------------------------------------------------

def test_config_errors_name_the_key(tmp_path):
    cfg = write_config(tmp_path / "c.toml", tmp_path / "run")
    load_config(cfg)  # valid
    with pytest.raises(ConfigError, match=r"train\.lrr"):
        load_config(cfg, ["train.lrr=1e-4"])
    with pytest.raises(ConfigError, match=r"train\.lr"):
        load_config(cfg, ["train.lr=fast"])
    with pytest.raises(ConfigError, match=r"train\.loss.*'l1', 'charbonnier'"):
        load_config(cfg, ["train.loss=l2"])
    with pytest.raises(ConfigError, match=r"data\.batch_size"):
        load_config(cfg, ["data.batch_size=0"])
    with pytest.raises(ConfigError, match=r"unknown section"):
        parse_config({"trian": {}})
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_override("train.lr")
    c = load_config(cfg, ["train.lr=1e-4", "data.sigma=[0, 50]", "train.loss=charbonnier"])
    assert c.train.lr == 1e-4 and c.data.sigma == (0.0, 50.0)
    assert c.train.loss.value == "charbonnier"


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.toml")), ids=lambda p: p.stem)
def test_the_run_folder_config_reads_back_as_the_same_config(path):
    # config.toml in a run folder is what --resume and train-export read back
    import tomllib

    from restore.train.config import dump_toml

    cfg = load_config(path, ["train.lr=3e-4", 'data.quality=[10, 50]'])
    assert parse_config(tomllib.loads(dump_toml(cfg))) == cfg


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.toml")), ids=lambda p: p.stem)
def test_shipped_configs_build_their_model_from_a_fresh_checkout(path, monkeypatch):
    # As configs/README.md says to run them: from the repository root, ../shared beside it.
    # Only tracked files may be needed (runs/ is not in a checkout).
    from restore.train.loop import build_model

    require(DATA)
    monkeypatch.chdir(REPO)
    cfg = load_config(path)
    for folder in [*cfg.data.train, *([cfg.data.val] if cfg.data.val else [])]:
        assert Path(folder).is_dir(), f"{path.name}: {folder} is not a folder"
    if cfg.model.init:
        assert not Path(cfg.model.init).is_relative_to("runs"), cfg.model.init
    model = build_model(cfg)
    assert sum(p.numel() for p in model.parameters()) > 0


# -- the loop -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """One uninterrupted 20-step run (the reference for the resume test)."""
    from restore.train.loop import train

    tmp = tmp_path_factory.mktemp("full")
    cfg = load_config(write_config(tmp / "c.toml", tmp / "run"))
    result = train(cfg, progress=False, echo=lambda m: None)
    return tmp / "run", result


def test_loop_trains_validates_and_checkpoints(full_run):
    run_dir, result = full_run
    assert result["step"] == 20
    ls = losses(run_dir)
    assert sorted(ls) == list(range(1, 21))
    first, last = sum(ls[s] for s in range(1, 6)) / 5, sum(ls[s] for s in range(16, 21)) / 5
    assert last < first, ls
    for name in ("model.safetensors", "ema.safetensors", "state.pt", "meta.json", "config.toml"):
        assert (run_dir / name).is_file(), name
    assert json.loads((run_dir / "meta.json").read_text())["step"] == 20
    val = [json.loads(x) for x in (run_dir / "val.jsonl").read_text().splitlines()]
    assert [v["step"] for v in val] == [10, 20] and all(math.isfinite(v["psnr"]) for v in val)
    stats = [json.loads(x) for x in (run_dir / "stats.jsonl").read_text().splitlines()]
    blocks = stats[-1]["blocks"]
    assert [b["layer"] for b in blocks] == ["layers.0.residual_group.blocks.0",
                                           "layers.1.residual_group.blocks.0"]
    assert all(0 <= b["entropy"] <= math.log(12) + 1e-9 and b["mean_abs"] > 0 for b in blocks)
    from restore.cli.main import main

    assert main(["train-stats", str(run_dir)]) == 0
    # the training state reloads with weights_only=True (no pickled code)
    state = torch.load(run_dir / "state.pt", weights_only=True)
    assert state["step"] == 20


def test_resume_is_bit_for_bit(full_run, tmp_path):
    from restore.train.loop import train

    ref = losses(full_run[0])
    cfg_path = write_config(tmp_path / "c.toml", tmp_path / "run")
    train(load_config(cfg_path, ["train.stop_at=10"]), progress=False, echo=lambda m: None)
    assert max(losses(tmp_path / "run")) == 10
    with pytest.raises(ConfigError, match="--resume"):
        train(load_config(cfg_path), progress=False, echo=lambda m: None)
    # the CLI path: config from the run dir, stop_at cleared by an override
    from restore.cli.main import main

    assert main(["train", "--resume", str(tmp_path / "run"), "--set", "train.stop_at=0",
                 "--no-progress"]) == 0
    got = losses(tmp_path / "run")
    assert [got[s] for s in range(1, 21)] == [ref[s] for s in range(1, 21)]


def test_nan_loss_stops_with_a_clear_message(tmp_path, monkeypatch):
    from restore.train import loop

    monkeypatch.setattr(loop, "loss_fn", lambda cfg: lambda x, y: (x - y).abs().mean() * math.nan)
    cfg = load_config(write_config(tmp_path / "c.toml", tmp_path / "run"))
    with pytest.raises(loop.TrainingDiverged, match=r"step 1: the loss is nan.*train\.lr"):
        loop.train(cfg, progress=False, echo=lambda m: None)


def test_layernorm_checkpoint_converts_to_iln(tmp_path):
    from restore.archs import build
    from restore.train.config import parse_config
    from restore.train.loop import build_model

    ln = build("swinir", **{**TINY_ARCH, "norm": "layernorm"})
    torch.save(ln.state_dict(), tmp_path / "ln.pth")
    cfg = parse_config({"model": {"arch": TINY_ARCH, "init": str(tmp_path / "ln.pth"),
                                  "init_from_layernorm": True},
                        "data": {"train": ["unused"]}})
    iln = build_model(cfg)
    sd = iln.state_dict()
    assert torch.equal(sd["layers.0.residual_group.blocks.0.norm1.gamma"],
                       ln.state_dict()["layers.0.residual_group.blocks.0.norm1.weight"])
    assert torch.equal(sd["patch_embed.norm.beta"], ln.state_dict()["patch_embed.norm.bias"])
    assert torch.equal(sd["conv_first.weight"], ln.state_dict()["conv_first.weight"])


def test_channel_entropy_definition():
    from restore.train.stats import channel_entropy

    even = torch.ones(1, 10, 8)
    assert channel_entropy(even) == pytest.approx(math.log(8))
    one = torch.zeros(1, 10, 8)
    one[..., 3] = 5.0
    assert channel_entropy(one) == pytest.approx(0.0, abs=1e-9)


def test_export_writes_a_runnable_model(full_run, tmp_path):
    from restore.checkpoint import load_model, read_metadata
    from restore.train.export import export_run, sha256_file

    out = tmp_path / "tiny.sr-x2.safetensors"
    entry = export_run(full_run[0], "tiny.sr-x2", out, psnr={"Set5": 20.5})
    assert '[models."tiny.sr-x2"]' in entry and sha256_file(out) in entry
    assert 'task = "sr"' in entry and "scale = 2" in entry and 'norm = "iln"' in entry
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    from restore.registry import parse_entry  # the entry is valid registry data

    data = tomllib.loads(entry)["models"]["tiny.sr-x2"]
    assert data["source"] == {"kind": "embedded", "path": "models/tiny.sr-x2.safetensors"}
    spec = parse_entry("tiny.sr-x2", data, "test", embedded_root=tmp_path.parent, strict=True)
    assert spec.size == out.stat().st_size and spec.psnr["Set5"] == 20.5
    meta = read_metadata(out)
    assert meta["weights"] == "ema" and meta["task"] == "sr"
    y = load_model(out)(torch.rand(1, 3, 20, 20))
    assert y.shape == (1, 3, 40, 40)
    # An existing file (the default path of a shipped name is the shipped model) is kept.
    before = out.read_bytes()
    with pytest.raises(UsageError, match="exists.*--force"):
        export_run(full_run[0], "tiny.sr-x2", out, use_ema=False)
    assert out.read_bytes() == before
    export_run(full_run[0], "tiny.sr-x2", out, use_ema=False, force=True)
    assert read_metadata(out)["weights"] == "trained"


def test_an_export_over_the_size_limit_writes_nothing(full_run, tmp_path, monkeypatch):
    """Refused before anything lands at --out: a new path stays absent, an existing model
    (with --force) keeps its bytes, and no partial file is left beside it."""
    import restore.train.export as export

    out = tmp_path / "tiny.sr-x2.safetensors"
    export.export_run(full_run[0], "tiny.sr-x2", out)
    before = out.read_bytes()
    monkeypatch.setattr(export, "MAX_EMBEDDED_BYTES", len(before) - 1)
    with pytest.raises(UsageError, match=f"not written: {len(before)} bytes is over the {len(before) - 1} byte limit"):
        export.export_run(full_run[0], "tiny.sr-x2", out, force=True)
    with pytest.raises(UsageError, match="not written"):
        export.export_run(full_run[0], "tiny.sr-x2", tmp_path / "new.safetensors")
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]


# -- scale out ------------------------------------------------------------------------------

def test_ddp_two_processes_gloo(tmp_path):
    cfg = write_config(tmp_path / "c.toml", tmp_path / "run",
                       train={"max_steps": 6, "val_every": 0, "ckpt_every": 0})
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "restore", "train", str(cfg), "--no-progress"],
        capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    assert "x2 processes" in out.stderr
    assert out.stdout.count("step 6") == 1  # rank 0 alone reports
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["step"] == 6
    assert sorted(losses(tmp_path / "run")) == list(range(1, 7))  # rank 0 alone logs
    # The same run dir again without --resume: every rank stops (none is left waiting).
    again = subprocess.run(out.args, capture_output=True, text=True, timeout=120, env=env,
                           cwd=tmp_path)
    assert again.returncode != 0
    assert again.stderr.count("already holds a run") == 1  # rank 0 says why
    assert "rank 1: rank 0 refused the run" in again.stderr  # rank 1 did not wait


def test_ctrl_c_finishes_the_step_writes_a_checkpoint_and_resumes(tmp_path):
    run = tmp_path / "run"
    cfg = write_config(tmp_path / "c.toml", run, data={"workers": 1},
                       train={"max_steps": 100000, "val_every": 0, "ckpt_every": 0,
                              "ckpt_minutes": 0})
    exe = [sys.executable, "-m", "restore", "train"]
    # Its own process group, signalled as a terminal's Ctrl-C is: the loader worker too.
    proc = subprocess.Popen(exe + [str(cfg), "--no-progress"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (run / "log.jsonl").is_file() or len(losses(run)) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.1)
        assert not (run / "meta.json").exists()  # no periodic checkpoint so far
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGINT, err  # by the signal, once saved (shell: 130)
    assert "Traceback" not in err
    step = json.loads((run / "meta.json").read_text())["step"]
    assert max(losses(run)) == step  # the step in flight was finished and saved
    assert f"SIGINT: stopped after step {step}; checkpoint written to {run}" in err
    assert "SIGINT: stopping after the step in flight" in err  # said at once, too
    out = subprocess.run(exe + ["--resume", str(run), "--no-progress",
                                "--set", f"train.stop_at={step + 2}"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads((run / "meta.json").read_text())["step"] == step + 2


def test_cli_config_error_exit_code(tmp_path):
    cfg = write_config(tmp_path / "c.toml", tmp_path / "run")
    exe = [sys.executable, "-m", "restore"]
    out = subprocess.run(exe + ["train", str(cfg), "--set", "train.optimizer=sgd"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "train.optimizer" in out.stderr
    assert "Traceback" not in out.stderr


def test_schedules_and_losses():
    from restore.train.loop import loss_fn, lr_at

    base = {"data": {"train": ["unused"]}, "model": {"arch": TINY_ARCH}}
    cos = parse_config({**base, "train": {"max_steps": 100, "lr": 1e-3, "warmup_steps": 10,
                                          "min_lr": 0.0}})
    assert lr_at(0, cos) == pytest.approx(1e-4) and lr_at(9, cos) == pytest.approx(1e-3)
    assert lr_at(55, cos) == pytest.approx(5e-4) and lr_at(100, cos) == pytest.approx(0.0)
    ms = parse_config({**base, "train": {"schedule": "multistep", "lr": 1.0,
                                         "milestones": [5, 8], "gamma": 0.5}})
    assert [lr_at(s, ms) for s in (4, 5, 8)] == [1.0, 0.5, 0.25]
    tm = parse_config({**base, "train": {"max_steps": 10 ** 6, "max_minutes": 10, "lr": 1.0,
                                         "min_lr": 0.0, "schedule_by": "time"}})
    assert lr_at(1, tm, minutes=5.0) == pytest.approx(0.5) and lr_at(1, tm, minutes=10) == 0
    ch = parse_config({**base, "train": {"loss": "charbonnier", "charbonnier_eps": 1e-3}})
    x, y = torch.zeros(1, 1, 2, 2), torch.full((1, 1, 2, 2), 0.5)
    assert float(loss_fn(ch)(x, y)) == pytest.approx(math.sqrt(0.25 + 1e-6))
    assert float(loss_fn(cos)(x, y)) == pytest.approx(0.5)


def test_paired_folders_and_resumable_samples(tmp_path):
    import numpy as np
    from PIL import Image

    from restore.degrade import imresize
    from restore.train.data import load_pairs, make_sample

    rng = np.random.default_rng(0)
    (tmp_path / "gt" / "sub").mkdir(parents=True)
    (tmp_path / "lq" / "sub").mkdir(parents=True)
    for i in range(2):
        gt = rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)
        Image.fromarray(gt).save(tmp_path / "gt" / "sub" / f"{i}.png")
        Image.fromarray(imresize(gt, 0.5)).save(tmp_path / "lq" / "sub" / f"{i}.png")
    cfg = parse_config({"model": {"arch": TINY_ARCH},
                        "data": {"train": [str(tmp_path / "gt")],
                                 "train_lq": [str(tmp_path / "lq")], "scale": 2, "patch_size": 8}})
    pairs = load_pairs(cfg.data)
    assert len(pairs) == 2
    lq, gt = make_sample(pairs, cfg.data, seed=1, k=7)
    assert lq.shape == (3, 8, 8) and gt.shape == (3, 16, 16)
    lq2, gt2 = make_sample(pairs, cfg.data, seed=1, k=7)  # a pure function of (seed, k)
    assert torch.equal(lq, lq2) and torch.equal(gt, gt2)
    assert not torch.equal(make_sample(pairs, cfg.data, seed=1, k=8)[1], gt)


def test_training_images_are_listed_recursively_without_hidden_ones(tmp_path):
    from restore.train.data import list_images

    for rel in ("b.png", "sub/a.JPG", "sub/notes.txt", ".hidden.png", ".thumbs/x.png",
                "sub/.y.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"not opened")
    assert list_images(tmp_path) == [tmp_path / "b.png", tmp_path / "sub" / "a.JPG"]
    with pytest.raises(ConfigError, match="no such folder of images"):
        list_images(tmp_path / "missing")


def test_partial_init_takes_the_body_of_another_scale(tmp_path):
    from restore.archs import build
    from restore.train.config import parse_config
    from restore.train.loop import build_model

    x4 = build("swinir", **{**TINY_ARCH, "upscale": 4, "upsampler": "pixelshuffledirect"})
    torch.save(x4.state_dict(), tmp_path / "x4.pth")
    arch = {**TINY_ARCH, "upscale": 2, "upsampler": "pixelshuffledirect"}
    said = []
    cfg = parse_config({"model": {"arch": arch, "init": str(tmp_path / "x4.pth"),
                                  "init_partial": True}, "data": {"train": ["unused"]}})
    x2 = build_model(cfg, said.append).state_dict()
    ref = x4.state_dict()
    assert torch.equal(x2["conv_first.weight"], ref["conv_first.weight"])
    assert torch.equal(x2["conv_after_body.weight"], ref["conv_after_body.weight"])
    head = [k for k in x2 if k.startswith("upsample.")]
    assert head and all(x2[k].shape != ref[k].shape for k in head if k.endswith("weight"))
    assert said and all(k in said[0] for k in head)
    # Strict init of the same file still refuses the other scale, naming the keys.
    strict = parse_config({"model": {"arch": arch, "init": str(tmp_path / "x4.pth")},
                           "data": {"train": ["unused"]}})
    with pytest.raises(Exception, match="upsample"):
        build_model(strict)


def test_colour_init_folds_to_a_gray_model_that_gives_the_colour_models_luma():
    """model.init_from_colour: on a gray image y the folded gray model starts from what the
    shipped colour JPEG model gives as the luma of its output on (y, y, y): the first conv
    is exact wherever its 3x3 window is inside the image, and the output stays close (the
    zero-padded border shifts the whole-image i-LN statistics a little)."""
    from restore.checkpoint import load_model
    from restore.train.config import parse_config
    from restore.train.loop import build_model

    shipped = REPO / "restore" / "models" / "swinir-iln-t.jpeg.safetensors"
    colour = load_model(shipped).eval()
    arch = {**colour.config.to_kwargs(), "in_chans": 1}
    cfg = parse_config({"model": {"arch": arch, "init": str(shipped), "init_from_colour": True},
                        "data": {"task": "jpeg", "scale": 1, "train": ["unused"]}})
    gray = build_model(cfg).eval()
    y = torch.rand(1, 1, 64, 56, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        f_c = colour.conv_first(colour.input_norm(y.expand(1, 3, 64, 56)))
        f_g = gray.conv_first(gray.input_norm(y))
        luma = (torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
                * colour(y.expand(1, 3, 64, 56))).sum(1, keepdim=True)
        out = gray(y)
    assert (f_c - f_g)[..., 1:-1, 1:-1].abs().max() < 1e-5
    # What the colour model changes (about 0.065 on noise), the gray one changes the same
    # way, to within 5% away from the border.
    inner = (slice(None), slice(None), slice(4, -4), slice(4, -4))
    assert (out - luma)[inner].abs().mean() < 0.05 * (luma - y)[inner].abs().mean()
    # Without the fold, the colour weights do not even fit the gray model.
    with pytest.raises(Exception, match="conv_first"):
        build_model(parse_config({"model": {"arch": arch, "init": str(shipped)},
                                  "data": {"task": "jpeg", "scale": 1, "train": ["unused"]}}))
    data = {"task": "jpeg", "scale": 1, "train": ["unused"]}
    with pytest.raises(ConfigError, match=r"model\.init_from_colour: needs \[model\.arch\] with in_chans = 1"):
        parse_config({"model": {"arch": {**arch, "in_chans": 3}, "init": str(shipped),
                                "init_from_colour": True}, "data": data})
    with pytest.raises(ConfigError, match=r"model\.init_from_colour: needs model\.init"):
        parse_config({"model": {"arch": arch, "init_from_colour": True}, "data": data})
