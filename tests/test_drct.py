"""DRCT and DRCT-iLN: the official code's outputs and checkpoints, any input size, exact tiling.

The cases of fixtures/reference_drct were produced by the official DRCT code (seeded,
perturbed weights, in the official state-dict layout with its buffers); see its README for
what decides a match.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from restore.archs import build
from restore.checkpoint import RECOMPUTED_SUFFIXES, load_model, load_state_dict, save_model
from restore.engine import Restorer
from restore.errors import ConfigError
from restore.norms import ILN, Affine, LayerNorm

from shared_paths import SHARED, in_ci, require

DRCT_FIXTURES = SHARED / "fixtures" / "reference_drct"
CPU = torch.device("cpu")
PUBLISHED_PARAMS = {"drct_x4": 14_139_579, "drct_l_x4": 27_580_719}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These models are tiny: one thread is several times faster than two on a machine
    whose cores are busy (thread hand-offs dominate), and the results do not change."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _cases() -> list:
    cases = sorted(p for p in DRCT_FIXTURES.glob("*/") if (p / "config.json").is_file())
    return cases or [pytest.param(DRCT_FIXTURES / "missing", marks=pytest.mark.skipif(
        not in_ci(), reason=f"{DRCT_FIXTURES} is not available"))]


def _fixture(case):
    """(model with the fixture weights loaded strictly, io tensors, config.json)."""
    from safetensors.torch import load_file

    cfg = json.loads((require(case) / "config.json").read_text())
    model = build(cfg["family"], **cfg["kwargs"]).eval()
    load_state_dict(model, load_file(str(case / "weights.safetensors")))
    return model, load_file(str(case / "io.safetensors")), cfg


# -- the official code ----------------------------------------------------------------------
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "explicit"])
@pytest.mark.parametrize("case", _cases(), ids=lambda p: p.name)
def test_matches_reference_output(case, fused):
    from restore.archs.common import set_fused_attention

    model, io, _ = _fixture(case)
    set_fused_attention(model, fused)
    with torch.inference_mode():
        out = model(io["input"])
    assert out.shape == io["output"].shape
    diff = (out - io["output"]).abs().max().item()
    assert diff <= 1e-4, f"{case.name}: max abs diff {diff:.3g}"


@pytest.mark.parametrize("case", _cases(), ids=lambda p: p.name)
def test_the_engine_path_matches_reference_output(case):
    model, io, _ = _fixture(case)
    restorer = Restorer(model, scale=model.config.upscale, size_multiple=model.size_multiple,
                        device=CPU)
    out = torch.stack([restorer(x)[0] for x in io["input"]])
    diff = (out - io["output"]).abs().max().item()
    assert diff <= 1e-4, f"{case.name}: max abs diff {diff:.3g}"


def test_the_reference_head_rule_and_group_layout():
    """drct_x4: embed 24, gc 8, 3 heads: the blocks see 24..56 channels and get 3, 1, 2, 3, 1
    heads; blocks 2 and 4 shift; blocks 4 and 5 have mlp_ratio 1; five blocks whatever
    ``depths`` says."""
    kw = json.loads((require(DRCT_FIXTURES / "drct_x4") / "config.json").read_text())["kwargs"]
    m = build("drct", **kw)
    group = m.layers[0]
    blocks = [b for b, _ in group.stages()]
    assert [b.attn.dim for b in blocks] == [24, 32, 40, 48, 56]
    assert [b.attn.num_heads for b in blocks] == [3, 1, 2, 3, 1]
    assert [b.shift_size for b in blocks] == [0, 4, 0, 4, 0]
    assert [b.mlp.fc1.out_features for b in blocks] == [48, 64, 80, 48, 56]
    assert [a.out_channels for _, a in group.stages()] == [8, 8, 8, 8, 24]
    deeper = build("drct", **{**kw, "depths": [6, 1]})
    assert {k: v.shape for k, v in deeper.state_dict().items()} == \
        {k: v.shape for k, v in m.state_dict().items()}


def _published():
    path = DRCT_FIXTURES / "published_state_dicts.json"
    if not path.is_file():
        return [pytest.param(None, None, marks=pytest.mark.skipif(
            not in_ci(), reason=f"{path} is not available"))]
    return list(json.loads(path.read_text()).items())


@pytest.mark.parametrize("name,entry", _published(), ids=lambda v: v if isinstance(v, str) else "")
def test_published_checkpoints_load_strictly(name, entry):
    """DRCT x4 and DRCT-L x4: every key and shape of the published checkpoints, built on the
    meta device (no memory, no init), and loaded strictly through the BasicSR wrapper
    (``params_ema``, DataParallel's ``module.``, the reference's buffers dropped)."""
    with torch.device("meta"):
        model = build(entry["family"], **entry["kwargs"])
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: v for k, v in entry["state_dict"].items() if not k.endswith(RECOMPUTED_SUFFIXES)}
    assert sorted(set(theirs) - set(ours)) == [], "keys the official checkpoint has and we lack"
    assert sorted(set(ours) - set(theirs)) == [], "persistent keys we have and it lacks"
    assert ours == theirs
    assert sum(p.numel() for p in model.parameters()) == PUBLISHED_PARAMS[name]
    official = {f"module.{k}": torch.empty(shape, device="meta")
                for k, shape in entry["state_dict"].items()}
    load_state_dict(model, {"params": {}, "params_ema": official})


@pytest.mark.parametrize("family,kwargs,words", [
    ("drct", dict(upscale=2, upsampler="pixelshuffle", embed_dim=24, gc=7, depths=[1],
                  num_heads=[3], window_size=8), ["gc=7", "block 2", "31 channels"]),
    ("drct", dict(upscale=2, upsampler="nearest+conv"), ["nearest+conv", "drct"]),
    ("drct", dict(upscale=2, upsampler="pixelshuffle", resi_connection="3conv"), ["3conv"]),
    ("drct", dict(upscale=2, upsampler="pixelshuffle", growth=32), ["growth", "gc"]),
    ("drct", dict(upscale=2, upsampler="pixelshuffle", gc=0), ["gc=0"]),
])
def test_bad_arguments_are_named(family, kwargs, words):
    with pytest.raises(ConfigError) as info:
        build(family, **kwargs)
    for w in words:
        assert w in str(info.value), str(info.value)


# -- DRCT-iLN --------------------------------------------------------------------------------
TINY = dict(img_size=16, window_size=4, depths=[1, 1], embed_dim=12, num_heads=[2, 3], gc=4,
            mlp_ratio=2.0)  # group 2 gets 3, 2, 1, 3, 2 heads: the head rule at work


def _perturbed(model: torch.nn.Module, seed: int, sharp: float = 0.0) -> torch.nn.Module:
    """As in test_exact_property: every parameter moved off its initial value; with
    ``sharp``, the q and k rows of each qkv projection scaled up so that attention logits
    reach the thousands (this model is small: 40 there, 200 here, for a leak of ~1e-3)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
        if sharp:
            for name, p in model.named_parameters():
                if name.endswith("qkv.weight"):
                    p[: 2 * p.shape[1]].mul_(sharp ** 0.5 * 3.0)
    return model.eval()


def _tiny(upscale=2, upsampler="pixelshuffle", in_chans=3, norm="iln", sharp=0.0):
    torch.manual_seed(0)
    m = build("drct", norm=norm, upscale=upscale, upsampler=upsampler, in_chans=in_chans, **TINY)
    return _perturbed(m, 1, sharp)


def test_drct_iln_is_built_as_the_recipe_says():
    m = _tiny()
    assert isinstance(m.patch_embed.norm, Affine) and isinstance(m.norm, Affine)
    for layer in m.layers:
        for blk, _ in layer.stages():
            assert isinstance(blk.norm1, ILN) and isinstance(blk.norm2, ILN)
            assert blk.norm1.eps == blk.norm2.eps == 1e-4
    assert m.config.stdnorm is True and m.has_global_statistics
    assert m.input_norm.std.flatten().tolist() == pytest.approx([0.2842, 0.2701, 0.2920])
    vanilla = _tiny(norm="layernorm")
    assert isinstance(vanilla.norm, LayerNorm) and vanilla.norm.eps == 1e-5
    assert not vanilla.has_global_statistics
    assert vanilla.input_norm.std.flatten().tolist() == [1.0, 1.0, 1.0]
    count = lambda mod: sum(p.numel() for p in mod.parameters())  # noqa: E731
    assert count(m) == count(vanilla)


def test_the_iln_blocks_rescale_their_branches_by_the_input_std():
    """x + std1 * attn(norm1 x), then x + std2 * mlp(norm2 x), std of each norm's input."""
    blk = _tiny().layers[0].swin2  # a shifted block with gc extra channels
    hw = (8, 8)
    x = torch.randn(1, 64, blk.attn.dim) * 7 + 3
    from restore.archs.common import relative_position_index, shift_attention_mask

    rpi, mask = relative_position_index(4), shift_attention_mask(8, 8, 4, 2)
    with torch.inference_mode():
        s1 = torch.sqrt(x.var(unbiased=False) + 1e-4)
        y = x + s1 * blk.attention(blk.norm1(x), hw, rpi, mask)
        s2 = torch.sqrt(y.var(unbiased=False) + 1e-4)
        y = y + s2 * blk.mlp(blk.norm2(y))
        torch.testing.assert_close(blk(x, hw, rpi, mask), y, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("norm", ["iln", "layernorm"])
@pytest.mark.parametrize("hw", [(1, 1), (5, 3), (8, 8), (17, 30), (13, 9)],
                         ids=lambda s: f"{s[0]}x{s[1]}")
def test_any_input_size(norm, hw):
    m = _tiny(norm=norm)
    x = torch.rand(2, 3, *hw)
    with torch.inference_mode():
        y = m(x)
    assert y.shape == (2, 3, hw[0] * 2, hw[1] * 2)
    assert torch.isfinite(y).all()


def test_padding_is_the_test_code_rule():
    """Padding inside forward is what DRCT's pre_process does outside (reflect,
    bottom/right, then crop)."""
    m = _tiny()
    x = torch.rand(1, 3, 13, 10)
    padded = torch.nn.functional.pad(x, (0, 2, 0, 3), mode="reflect")
    with torch.inference_mode():
        torch.testing.assert_close(m(x), m(padded)[:, :, :26, :20])


def test_scale1_head_is_a_global_residual():
    m = _tiny(upscale=1, upsampler="", in_chans=1)
    with torch.no_grad():
        m.conv_last.weight.zero_()
        m.conv_last.bias.zero_()
    x = torch.rand(1, 1, 11, 9)
    with torch.inference_mode():
        torch.testing.assert_close(m(x), x, atol=1e-6, rtol=1e-6)


def test_gradient_checkpointing_gives_the_same_gradients():
    kw = dict(norm="iln", upscale=2, upsampler="pixelshuffle", drop_path_rate=0.0, **TINY)
    a = build("drct", **kw)
    b = build("drct", use_checkpoint=True, **kw)
    b.load_state_dict(a.state_dict())
    x = torch.rand(1, 3, 8, 8)
    a(x).square().mean().backward()
    b(x).square().mean().backward()
    for (n, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, msg=n)


# -- exact tiling ------------------------------------------------------------------------------
EXACT_MODELS = {
    "drct-iln x2": lambda: _tiny(),
    "drct-iln x2 sharp": lambda: _tiny(sharp=200.0),
    "drct-iln gray denoise sharp": lambda: _tiny(1, "", 1, sharp=200.0),
    "drct-iln x3": lambda: _tiny(3),
    "drct-iln x4 pixelshuffledirect": lambda: _tiny(4, "pixelshuffledirect"),
}


def _assert_exact(model, x: torch.Tensor, tile: int) -> None:
    s, m = model.scale, model.size_multiple
    whole, _ = Restorer(model, scale=s, size_multiple=m, device=CPU)(x)
    exact, st = Restorer(model, scale=s, size_multiple=m, device=CPU, tile=tile)(x)
    assert st.tile_mode == "exact" and st.tiles > 1  # auto picks exact for i-LN
    err = (exact - whole).abs().max().item()
    assert err <= 1e-4, (f"{tuple(x.shape)} tile {tile}: exact-tiled differs from the whole "
                         f"image by {err:.3g} ({st.tiles} tiles)")


@pytest.mark.parametrize("name", sorted(EXACT_MODELS))
@pytest.mark.parametrize("h,w,tile", [(19, 13, 8), (37, 29, 16), (9, 26, 8), (24, 17, 12)],
                         ids=lambda v: str(v))
def test_exact_tiles_equal_the_whole_image(name, h, w, tile):
    model = EXACT_MODELS[name]()
    x = torch.rand(model.config.in_chans, h, w, generator=torch.Generator().manual_seed(h * w))
    _assert_exact(model, x, tile)


def test_the_sharp_model_does_leak_across_the_shift_mask():
    """The sharp model must exercise the border wrap: with border crops reading their own
    halo (wrap off), exact tiling would not be exact."""
    import restore.engine.exact as exact

    model = EXACT_MODELS["drct-iln x2 sharp"]()
    x = torch.rand(3, 28, 20, generator=torch.Generator().manual_seed(0))
    real = exact._wrap_parts
    exact._wrap_parts = lambda lo, hi, n, wrap: real(lo, hi, n, 0)
    try:
        with pytest.raises(AssertionError, match="exact-tiled differs"):
            _assert_exact(model, x, 8)
    finally:
        exact._wrap_parts = real
    _assert_exact(model, x, 8)


def test_layernorm_drct_forced_exact_equals_the_whole_image():
    """The official model pools nothing (auto tiles it independently), but forward_exact is
    the same computation for it too."""
    model, io, _ = _fixture(DRCT_FIXTURES / "drct_x4")
    r = Restorer(model, scale=4, size_multiple=8, device=CPU, tile=8)
    assert r.tile_mode.value == "independent"
    x = io["input"][0]
    whole, _ = Restorer(model, scale=4, size_multiple=8, device=CPU)(x)
    exact, st = Restorer(model, scale=4, size_multiple=8, device=CPU, tile=8, tile_mode="exact")(x)
    assert st.tiles > 1 and (exact - whole).abs().max().item() <= 1e-4
    assert (whole - io["output"][0]).abs().max().item() <= 1e-4


# -- checkpoints -------------------------------------------------------------------------------
def test_save_and_load_round_trip(tmp_path):
    m = _tiny(3)
    path = save_model(m, tmp_path / "drct-iln.safetensors")
    back = load_model(path)
    assert type(back) is type(m) and back.config == m.config
    assert back.config.family == "drct" and back.config.to_kwargs()["norm"] == "iln"
    x = torch.rand(1, 3, 11, 14)
    with torch.inference_mode():
        assert torch.equal(back(x), m(x))


def test_import_an_official_basicsr_checkpoint(tmp_path, monkeypatch):
    """What ``restore models import drct_x4.pth --family drct --config ...`` does: the
    fixture weights in the official layout (buffers included), wrapped as BasicSR saves
    them (``params`` and ``params_ema``: EMA preferred), registered and loaded back."""
    from restore import registry

    monkeypatch.setenv("RESTORE_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("RESTORE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("RESTORE_REGISTRY", raising=False)
    from safetensors.torch import load_file

    case = require(DRCT_FIXTURES / "drct_x4")
    cfg = json.loads((case / "config.json").read_text())
    official = load_file(str(case / "weights.safetensors"))
    ckpt = tmp_path / "drct_x4.pth"
    torch.save({"params": {k: torch.zeros_like(v) for k, v in official.items()},
                "params_ema": official}, ckpt)
    spec = registry.import_checkpoint(ckpt, "my-drct", family="drct", config=cfg["kwargs"])
    assert spec.family == "drct" and spec.scale == 4 and spec.norm == "layernorm"
    model = registry.load_registry_model("my-drct").eval()
    io = load_file(str(case / "io.safetensors"))
    with torch.inference_mode():
        assert (model(io["input"]) - io["output"]).abs().max().item() <= 1e-4


@pytest.mark.parametrize("case", _cases(), ids=lambda p: p.name)
def test_the_architecture_is_read_from_the_keys(case):
    """Each fixture's config from its official state dict alone, but for what the weights
    do not show (depths: drop-path rates only; img_range of the gray case)."""
    from safetensors.torch import load_file

    from restore.archs import make_config
    from restore.checkpoint import infer_architecture

    cfg = json.loads((require(case) / "config.json").read_text())
    family, kwargs = infer_architecture(load_file(str(case / "weights.safetensors")))
    shown = {**cfg["kwargs"], "depths": [6] * len(cfg["kwargs"]["depths"]),
             "img_range": kwargs["img_range"]}
    assert family == "drct" and make_config(family, **kwargs) == make_config("drct", **shown)
    assert kwargs["img_range"] == 1.0  # the published models'; drct_x3_gray has 255


@pytest.mark.parametrize("name,entry", _published(), ids=lambda v: v if isinstance(v, str) else "")
def test_the_published_architectures_are_read_from_their_keys(name, entry):
    from restore.archs import make_config
    from restore.checkpoint import infer_architecture

    state = {k: torch.empty(s, device="meta") for k, s in entry["state_dict"].items()}
    family, kwargs = infer_architecture(state)
    assert make_config(family, **kwargs) == make_config(entry["family"], **entry["kwargs"])
    ilned = {k.replace("norm1.weight", "norm1.gamma"): v for k, v in state.items()}
    assert infer_architecture(ilned)[1]["norm"] == "iln"


def test_other_layouts_are_not_guessed():
    from restore.checkpoint import infer_architecture

    torch.manual_seed(0)
    swinir = build("swinir", upscale=2, upsampler="pixelshuffledirect", img_size=16,
                   window_size=4, depths=[1], embed_dim=8, num_heads=[2])
    assert infer_architecture(swinir.state_dict()) is None
    for upscale, upsampler in [(1, ""), (2, "pixelshuffle"), (3, "pixelshuffle"),
                               (4, "pixelshuffledirect"), (3, "pixelshuffledirect")]:
        model = _tiny(upscale, upsampler, norm="layernorm")
        family, kwargs = infer_architecture(model.state_dict())
        # ours keep no attn_mask buffer to read the training size from: 64
        assert build(family, **kwargs).config == model.config.replace(
            depths=(6, 6), drop_path_rate=0.0, img_size=64)


def _cli(*args, env):
    exe = Path(sys.executable).parent / "restore"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "restore"]
    return subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True,
                          env={**{k: v for k, v in os.environ.items() if k != "RESTORE_REGISTRY"},
                               **env}, timeout=300, check=False)


def test_import_then_restore_through_the_executable(tmp_path):
    """``restore models import drct_x4.pth --name my-drct`` (no --family: read from the
    keys) then ``restore sr x4 photo.png --model my-drct``, as a user runs them, on the
    fixture weights in the official layout (BasicSR ``params`` / ``params_ema``, the
    reference's buffers, DataParallel's ``module.``), with the user registry and data in
    a fresh folder: the written image is the reference output, to 8-bit rounding."""
    import numpy as np
    from PIL import Image
    from safetensors.torch import load_file

    from restore.registry import toml_loads

    case = require(DRCT_FIXTURES / "drct_x4")
    official = load_file(str(case / "weights.safetensors"))
    ckpt = tmp_path / "drct_x4.pth"
    torch.save({"params": {f"module.{k}": torch.zeros_like(v) for k, v in official.items()},
                "params_ema": {f"module.{k}": v for k, v in official.items()}}, ckpt)
    env = {"RESTORE_CONFIG_DIR": str(tmp_path / "config"),
           "RESTORE_DATA_DIR": str(tmp_path / "data"), "HF_HUB_OFFLINE": "1"}
    res = _cli("models", "import", ckpt, "--name", "my-drct", env=env)
    assert res.returncode == 0, res.stderr
    assert "registered my-drct" in res.stderr and "--model my-drct" in res.stderr
    entry = toml_loads(res.stdout)["models"]["my-drct"]
    assert (entry["family"], entry["norm"], entry["task"], entry["scale"]) == (
        "drct", "layernorm", "sr", 4)
    assert entry["params"] == sum(v.numel() for k, v in official.items()
                                  if not k.endswith(RECOMPUTED_SUFFIXES))
    assert not entry["fp16_safe"] and "read from the keys of drct_x4.pth" in entry["description"]
    assert (tmp_path / "config" / "registry.toml").is_file()

    io = load_file(str(case / "io.safetensors"))
    pixels = (io["input"][0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    photo = tmp_path / "photo.png"
    Image.fromarray(pixels).save(photo)
    res = _cli("sr", "x4", photo, "--model", "my-drct", "--device", "cpu", env=env)
    assert res.returncode == 0, res.stderr
    out = tmp_path / "photo_x4.png"
    assert res.stdout.strip() == str(out)
    got = np.asarray(Image.open(out).convert("RGB"), dtype=np.float32) / 255
    model, _, _ = _fixture(case)
    with torch.inference_mode():
        want = model(torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255)[0]
    want = want.clamp(0, 1).permute(1, 2, 0).numpy()
    assert got.shape == (64, 96, 3)
    assert np.abs(got - want).max() <= 1 / 255 + 1e-6
