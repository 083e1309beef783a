"""Reference-style checkpoints: wrappers, prefixes, recomputed buffers, strictness, safety."""

import json
import os
import pickle

import pytest
import torch

from restore.archs import build
from restore.checkpoint import (
    load_model, load_state_dict, read_checkpoint, read_metadata, save_model, unwrap_state_dict,
)
from restore.errors import CheckpointError

from shared_paths import FIXTURES, require

TINY = dict(upscale=2, img_size=32, window_size=8, depths=[2], embed_dim=16, num_heads=[2],
            mlp_ratio=2.0, upsampler="pixelshuffledirect")


def _model(norm="layernorm", seed=0):
    torch.manual_seed(seed)
    return build("swinir", norm=norm, **TINY).eval()


def _perturbed_state(model):
    return {k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v
            for k, v in model.state_dict().items()}


def test_basicsr_wrapper_prefers_ema_and_strips_module_prefix(tmp_path):
    src = _model()
    ema = _perturbed_state(src)
    plain = src.state_dict()
    ckpt = {"params": {f"module.{k}": v for k, v in plain.items()},
            "params_ema": {f"module.{k}": v for k, v in ema.items()}}
    path = tmp_path / "net_g.pth"
    torch.save(ckpt, path)
    dst = load_state_dict(_model(seed=1), read_checkpoint(path))
    for k, v in dst.state_dict().items():
        torch.testing.assert_close(v, ema[k])


def test_bare_state_dict_pth(tmp_path):
    src = _model()
    path = tmp_path / "bare.pth"
    torch.save(src.state_dict(), path)
    dst = load_state_dict(_model(seed=1), read_checkpoint(path))
    x = torch.rand(1, 3, 12, 12)
    with torch.inference_mode():
        torch.testing.assert_close(dst(x), src(x), rtol=0, atol=0)


def test_reference_buffers_are_dropped_and_recomputed():
    from safetensors.torch import load_file

    case = require(FIXTURES / "swinir_classical_x2")
    sd = load_file(str(case / "weights.safetensors"))
    assert any(k.endswith("relative_position_index") for k in sd)
    assert any(k.endswith("attn_mask") for k in sd)
    cfg = json.loads((case / "config.json").read_text())
    load_state_dict(build(cfg["family"], **cfg["kwargs"]), sd)  # strict, no complaint


def test_missing_and_unexpected_keys_are_named():
    sd = dict(_model().state_dict())
    sd.pop("conv_first.bias")
    sd["layers.0.extra.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointError) as info:
        load_state_dict(_model(), sd)
    msg = str(info.value)
    assert "missing keys: conv_first.bias" in msg
    assert "unexpected keys: layers.0.extra.weight" in msg


def test_shape_mismatch_is_named():
    sd = dict(_model().state_dict())
    sd["conv_first.bias"] = torch.zeros(99)
    with pytest.raises(CheckpointError, match=r"conv_first.bias \(99,\) vs model \(16,\)"):
        load_state_dict(_model(), sd)


def test_layernorm_checkpoint_into_iln_model_says_so():
    with pytest.raises(CheckpointError, match="LayerNorm checkpoint for an i-LN model"):
        load_state_dict(_model(norm="iln"), _model().state_dict())
    with pytest.raises(CheckpointError, match="i-LN checkpoint for a LayerNorm model"):
        load_state_dict(_model(), _model(norm="iln").state_dict())


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.makedirs, (self.target,))


def test_pickle_with_code_is_refused_and_not_executed(tmp_path):
    target = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"params": {"w": torch.zeros(1)}, "x": _Evil(str(target))}, f)
    with pytest.raises(CheckpointError, match="evil.pth: refused"):
        read_checkpoint(path)
    assert not target.exists()


def test_non_tensor_entries_and_garbage_files(tmp_path):
    with pytest.raises(CheckpointError, match="'a' is a str"):
        unwrap_state_dict({"a": "text"})
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file at all")
    with pytest.raises(CheckpointError, match="bad.safetensors: not a readable safetensors"):
        read_checkpoint(bad)
    with pytest.raises(CheckpointError, match="no such file"):
        read_checkpoint(tmp_path / "absent.pth")


def test_save_and_load_model_round_trip_is_exact(tmp_path):
    src = _model(norm="iln")
    with torch.no_grad():
        for p in src.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = save_model(src, tmp_path / "sub" / "m.safetensors", {"note": "test"})
    assert sorted(os.listdir(path.parent)) == ["m.safetensors"]  # no temp file left
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # a normal file, not mkstemp's 0600
    meta = read_metadata(path)
    assert meta["format"] == "restore" and meta["family"] == "swinir" and meta["note"] == "test"
    assert json.loads(meta["config"])["norm"] == "iln"
    dst = load_model(path)
    assert dst.config == src.config and not dst.training
    x = torch.rand(1, 3, 13, 9)
    with torch.inference_mode():
        torch.testing.assert_close(dst(x), src(x), rtol=0, atol=0)


def test_foreign_file_without_config_needs_one(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "foreign.safetensors"
    save_file(_model().state_dict(), str(path))
    with pytest.raises(CheckpointError, match="does not say which architecture"):
        load_model(path)
    m = load_model(path, family="swinir", config=TINY)
    assert m.config.embed_dim == 16
