"""The registry: weights.toml parses into typed entries, every entry and preset builds its
architecture, bad entries name entry and key, the user registry merges over the shipped one,
embedded weights are verified, and official checkpoints are imported safely."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import restore.archs
import restore.checkpoint
from restore import errors, registry
from restore.archs import build
from restore.checkpoint import drop_recomputed, save_model
from restore.errors import (
    CheckpointError, ChecksumError, ConfigError, NoDefaultModelError, UnknownModelError, UsageError,
)
from restore.registry import (
    EmbeddedSource, FileSource, HubSource, ModelSpec, entry_toml, load_registry,
    load_registry_model, make_spec, merge_layers, parse_registry, read_registry,
    resolve_weights, sources, toml_loads,
)
from restore.tasks import Task

from shared_paths import FIXTURES, SHARED, require

TINY = dict(upscale=2, img_size=32, window_size=8, depths=[2], embed_dim=16, num_heads=[2],
            mlp_ratio=2.0, upsampler="pixelshuffledirect")
SHIPPED = read_registry()
# every test gets its own (empty) user config, data and download cache dirs (conftest.py)
pytestmark = pytest.mark.usefixtures("isolated_user_dirs")


@pytest.fixture
def fast_init(monkeypatch):
    """Skip trunc_normal_ init (seconds per full-size model on 2 cores): counts and shapes
    do not depend on it."""
    monkeypatch.setattr(torch.nn.init, "trunc_normal_", lambda t, *a, **k: t)


def _tiny(norm="layernorm", seed=0):
    torch.manual_seed(seed)
    return build("swinir", norm=norm, **TINY).eval()


def _shapes(model):
    return {k: list(v.shape) for k, v in drop_recomputed(model.state_dict()).items()}


# -- the shipped registry -----------------------------------------------------------------

def test_shipped_registry_is_typed_and_pinned():
    reg = load_registry()
    assert SHIPPED["schema"] == 1
    assert set(reg.models) == set(SHIPPED["models"]) and len(reg.models) >= 7
    for spec in reg.models.values():
        assert isinstance(spec, ModelSpec) and isinstance(spec.task, Task)
        assert spec.psnr and spec.psnr_source and spec.params and spec.description
        with pytest.raises(TypeError):
            spec.config["upscale"] = 8  # read-only
        if isinstance(spec.source, HubSource):
            assert len(spec.source.revision) == 40
        if spec.norm == "layernorm":  # the published baselines: fp16 overflows
            assert not spec.fp16_safe and "LayerNorm" in spec.description
    assert reg.get("swinir-m.sr-x4").source.repo_id == "uwg/upscaler"
    assert reg.get("hat.sr-x3").scale == 3 and reg.get("hat.sr-x3").task_key == "sr-x3"
    assert registry.FAMILIES == restore.archs.FAMILIES
    assert registry.RESTORE_FORMAT == restore.checkpoint.META_FORMAT


@pytest.mark.parametrize("name", sorted(SHIPPED["models"]))
def test_every_entry_builds_and_fits_the_published_checkpoint(name, fast_init):
    spec = load_registry().get(name)
    model = build(spec.family, **spec.config)
    assert sum(p.numel() for p in model.parameters()) == spec.params
    assert model.config.upscale == spec.scale and model.config.in_chans == spec.in_chans
    assert model.config.norm.value == spec.norm
    cached = registry.cached_path(spec)
    if spec.source.kind == "embedded":  # our own models: the shipped file loads strictly
        assert cached is not None
        assert load_registry_model(spec).config == model.config
        return
    # the key names and shapes of the official file (x4 releases are in the fixtures; x2/x3
    # differ from them only in the upsampler); DRCT's in their own folder, by name
    # ("drct-l.sr-x4" -> drct_l_x4)
    if spec.family == "drct":
        published = json.loads(require(SHARED / "fixtures" / "reference_drct" /
                                        "published_state_dicts.json").read_text())
        ref_name = spec.name.split(".")[0].replace("-", "_") + "_x4"
    else:
        published = json.loads(require(FIXTURES / "published_state_dicts.json").read_text())
        ref_name = {"swinir": "swinir_m_classical_x4", "hat": "hat_x4"}[spec.family]
    ref = published[ref_name]
    ref_kwargs = {**ref["kwargs"], "upscale": spec.scale}
    assert spec.config_dict() == ref_kwargs
    if spec.scale == 4:
        expected = {k: v for k, v in ref["state_dict"].items()
                    if k in drop_recomputed(dict.fromkeys(ref["state_dict"]))}
        assert _shapes(model) == expected
    cached = registry.cached_path(spec)
    if cached is not None:  # the real file is on this machine: it must load strictly
        assert load_registry_model(spec).config == model.config


@pytest.mark.parametrize("name", sorted(SHIPPED["presets"]))
def test_every_preset_builds_with_its_parameter_count(name, fast_init):
    preset = load_registry().preset(name)
    model = build(preset.family, **preset.config)
    assert sum(p.numel() for p in model.parameters()) == preset.params
    assert model.config.norm.value == preset.norm


def test_presets_match_the_published_configs():
    published = json.loads(require(FIXTURES / "published_state_dicts.json").read_text())
    reg = load_registry()
    pairs = {"swinir-m-x4": "swinir_m_classical_x4", "swinir-s-x4": "swinir_s_lightweight_x4",
             "swinir-m-dn": "swinir_m_color_dn", "swinir-m-car": "swinir_m_color_car",
             "hat-x4": "hat_x4", "hat-s-x4": "hat_s_x4", "hat-mini-iln-x4": "hat_mini_iln_x4",
             "hat-dagger-iln-x2": "hat_dagger_iln_x2"}
    for preset, ref in pairs.items():
        assert reg.preset(preset).config_dict() == published[ref]["kwargs"], preset
        assert reg.preset(preset).family == published[ref]["family"], preset
    drct = json.loads(require(SHARED / "fixtures" / "reference_drct" /
                              "published_state_dicts.json").read_text())
    for preset, ref in {"drct-x4": "drct_x4", "drct-l-x4": "drct_l_x4"}.items():
        assert reg.preset(preset).config_dict() == drct[ref]["kwargs"], preset
        assert reg.preset(preset).family == drct[ref]["family"], preset
    for name in ("swinir-m-x2", "swinir-m-x3", "swinir-s-x2", "swinir-s-x3", "swinir-m-car-gray",
                 "hat-x2", "hat-x3", "hat-s-x2", "hat-mini-iln-x2", "hat-mini-x2",
                 "hat-mini-x4", "hat-dagger-iln-x4"):
        assert name in reg.presets


def test_unknown_names_list_close_matches():
    reg = load_registry()
    with pytest.raises(UnknownModelError, match=r"did you mean 'swinir-m.sr-x4'") as info:
        reg.get("swinir-m-sr-x4")
    assert "restore models list" in str(info.value)
    assert isinstance(info.value, UsageError)
    with pytest.raises(UnknownModelError, match="did you mean 'hat-mini-iln-x4'"):
        reg.preset("hat-mini-iln-4")


def test_no_default_yet_says_how_to_pass_a_model(tmp_path, monkeypatch):
    reg = load_registry()
    assert reg.default_for("sr-x4").name == "swinir-iln-t.sr-x4"  # the embedded default
    for key in ("sr-x2", "sr-x3", "sr-x4", "denoise", "jpeg"):  # every default works offline
        spec = reg.default_for(key)
        assert spec is None or spec.source.kind == "embedded", key
    alt = tmp_path / "alt.toml"  # a registry with no sr-x2 model yet
    alt.write_text('schema = 1\n[defaults]\n"sr-x2" = ""\n')
    monkeypatch.setenv("RESTORE_REGISTRY", str(alt))
    reg = load_registry()
    assert reg.default_for("sr-x2") is None
    with pytest.raises(NoDefaultModelError) as info:
        reg.require_default("sr-x2")
    msg = str(info.value)
    assert "no default model is available for sr-x2" in msg and "--model NAME" in msg
    assert "restore models list --task sr" in msg
    with pytest.raises(UsageError, match="valid: sr-x2, sr-x3, sr-x4, denoise, jpeg"):
        reg.default_for("sr-x5")


# -- bad entries ------------------------------------------------------------------------

def _doc(**changes):
    """A one-entry registry document, with ``changes`` applied to the entry (None deletes)."""
    entry = copy.deepcopy(SHIPPED["models"]["swinir-m.sr-x4"])
    for key, value in changes.items():
        if value is None:
            entry.pop(key)
        else:
            entry[key] = value
    return {"schema": 1, "defaults": {}, "models": {"m.sr-x4": entry}}


@pytest.mark.parametrize("changes, needle", [
    (dict(sha256=None), "missing key 'sha256'"),
    (dict(sha256="ABC"), "sha256: 'ABC' is malformed"),
    (dict(sha265="0" * 64), "unknown key(s) 'sha265'"),
    (dict(family="swinri"), "family: 'swinri' is not one of 'swinir', 'hat', 'hat_iln'"),
    (dict(norm="iln"), "norm: 'iln' contradicts the config"),
    (dict(scale=2), "config.upscale: 4 must equal scale = 2"),
    (dict(task="denoise", scale=None), "config.upscale: 4 must be 1 for task 'denoise'"),
    (dict(task="segment"), "task: 'segment' is not one of"),
    (dict(psnr=None, psnr_source=None), "missing key 'psnr'"),
    (dict(psnr={"Set5": "high"}), "psnr.Set5: 'high' must be a PSNR in dB"),
    (dict(fp16_safe="no"), "fp16_safe: 'no' must be true or false"),
    (dict(size=0), "size: 0 must be >= 1"),
    (dict(sigma_range=[0, 50]), "sigma_range: is for task 'denoise' only"),
    (dict(source={"kind": "hub", "repo_id": "uwg/upscaler", "filename": "x.pth",
                  "revision": "main"}), "revision: 'main' is malformed (expected a full 40-hex"),
    (dict(source={"kind": "embedded", "path": "../x.safetensors"}), "must be a relative path"),
    (dict(source={"kind": "ftp", "path": "x"}), "kind: 'ftp' is not one of"),
    (dict(config={}), "config: must be a non-empty table"),
])
def test_bad_entry_is_an_error_naming_entry_and_key(changes, needle):
    with pytest.raises(ConfigError) as info:
        parse_registry(_doc(**changes), "test.toml")
    msg = str(info.value)
    assert 'test.toml: [models."m.sr-x4"]' in msg and needle in msg, msg


@pytest.mark.parametrize("doc, needle", [
    ({"schema": 2}, "schema: 2 is not supported"),
    ({"schema": 1, "defaults": {"sr-x5": ""}}, "unknown key(s) 'sr-x5'"),
    ({"schema": 1, "models": {"bad name": {}}}, "the name is malformed"),
    ({"schema": 1, "extra": 1}, "unknown key(s) 'extra'"),
])
def test_bad_registry_documents(doc, needle):
    with pytest.raises(ConfigError, match=None) as info:
        parse_registry(doc, "test.toml")
    assert needle in str(info.value)


def test_defaults_must_name_an_entry_of_that_task():
    layer = parse_registry({**_doc(), "defaults": {"sr-x4": "m.sr-x4"}}, "a.toml")
    reg = merge_layers([("a.toml", layer)])
    assert reg.default_for("sr-x4").name == "m.sr-x4"
    assert reg.defaults_of("m.sr-x4") == ["sr-x4"]
    for defaults, needle in (({"sr-x2": "m.sr-x4"}, "'m.sr-x4' is a sr-x4 model"),
                             ({"jpeg": "m.sr-x44"}, "did you mean 'm.sr-x4'")):
        layer = parse_registry({**_doc(), "defaults": defaults}, "a.toml")
        with pytest.raises(ConfigError, match="a.toml: \\[defaults\\]") as info:
            merge_layers([("a.toml", layer)])
        assert needle in str(info.value)


def _jpeg_doc(defaults, **ranges):
    """Jpeg entries named by ``ranges`` (name -> quality_range or None) and [defaults]."""
    base = copy.deepcopy(SHIPPED["models"]["swinir-iln-t.jpeg"])
    base["source"] = copy.deepcopy(SHIPPED["models"]["swinir-m.sr-x4"]["source"])
    models = {}
    for name, span in ranges.items():
        entry = copy.deepcopy(base)
        entry.pop("quality_range")
        if span is not None:
            entry["quality_range"] = span
        models[name] = entry
    return {"schema": 1, "defaults": defaults, "models": models}


def test_several_defaults_each_for_a_range_pick_by_level():
    doc = _jpeg_doc({"jpeg": ["m.jpeg", "m.jpeg-hq"]}, **{"m.jpeg": [10, 70],
                                                          "m.jpeg-hq": [60, 95]})
    reg = merge_layers([("a.toml", parse_registry(doc, "a.toml"))])
    both = reg.defaults_for("jpeg")
    assert [s.name for s in both] == ["m.jpeg", "m.jpeg-hq"]
    assert reg.default_for("jpeg").name == "m.jpeg"  # the first is the default's name
    assert reg.defaults_of("m.jpeg-hq") == ["jpeg"] and reg.defaults_for("sr-x4") == []
    pick = {q: registry.pick_by_level(both, q).name for q in (5, 10, 65, 70, 71, 95, 100, None)}
    assert pick == {5: "m.jpeg", 10: "m.jpeg", 65: "m.jpeg", 70: "m.jpeg", 71: "m.jpeg-hq",
                    95: "m.jpeg-hq", 100: "m.jpeg-hq", None: "m.jpeg"}


def test_pick_by_level_sends_an_image_to_a_model_of_its_channels():
    from types import SimpleNamespace as M

    colour = M(name="c", in_chans=3, quality_range=(10, 90), task=Task.JPEG)
    colour_hi = M(name="c-hi", in_chans=3, quality_range=(91, 99), task=Task.JPEG)
    gray = M(name="g", in_chans=1, quality_range=(10, 90), task=Task.JPEG)
    items = [colour, colour_hi, gray]
    pick = registry.pick_by_level
    assert pick(items, 30, channels=3).name == "c" and pick(items, 95, channels=3).name == "c-hi"
    assert pick(items, 30, channels=1).name == "g"
    assert pick(items, 95, channels=1).name == "c-hi"  # no gray model for 95: the colour one
    assert pick([colour, gray], 95, channels=1).name == "g"  # none for 95: the nearest gray
    assert pick([gray, colour_hi], 30, channels=3).name == "c-hi"  # never gray for colour
    assert pick(items, None, channels=1).name == "g"  # the first gray one
    assert pick(items, 30).name == "c"  # channels not given: as before
    assert pick([colour, colour_hi], 95, channels=1).name == "c-hi"  # no gray model: colour


def test_a_list_of_defaults_in_the_user_registry_survives_an_import(tmp_path):
    """restore models import rewrites the user registry: a list in its [defaults] stays."""
    entries = {}
    for name, span in (("u.jpeg", [10, 50]), ("u.jpeg-hi", [51, 90]), ("u.jpeg-x", None)):
        path = save_model(build("swinir", **dict(TINY, upscale=1, upsampler="")),
                          tmp_path / f"{name}.safetensors")
        entries[name] = make_spec(
            name, family="swinir", config=dict(TINY, upscale=1, upsampler=""), task="jpeg",
            source=FileSource(path), sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
            size=path.stat().st_size, license="MIT", description="d", quality_range=span)
    user = registry.user_registry_path()
    user.parent.mkdir(parents=True)
    user.write_text(registry.dump_registry({
        "schema": 1, "defaults": {"jpeg": ["u.jpeg", "u.jpeg-hi"]},
        "models": {n: entries[n].to_data() for n in ("u.jpeg", "u.jpeg-hi")}}))
    assert [s.name for s in load_registry().defaults_for("jpeg")] == ["u.jpeg", "u.jpeg-hi"]
    registry.add_user_entry(entries["u.jpeg-x"])
    reg = load_registry()
    assert [s.name for s in reg.defaults_for("jpeg")] == ["u.jpeg", "u.jpeg-hi"]
    assert "u.jpeg-x" in reg.models and reg.defaults_of("u.jpeg-x") == []
    # replacing one of the defaults with an entry that declares no range is refused
    before = user.read_bytes()
    bad = dataclasses.replace(entries["u.jpeg-x"], name="u.jpeg-hi")
    with pytest.raises(ConfigError, match="'u.jpeg-hi' declares no quality_range"):
        registry.add_user_entry(bad, replace=True)
    assert user.read_bytes() == before


@pytest.mark.parametrize("defaults, needle", [
    ({"jpeg": []}, "must be a non-empty list of model names"),
    ({"jpeg": ["m.jpeg", "m.jpeg"]}, "names a model twice"),
    ({"sr-x4": ["m.jpeg"]}, "must be a model name or \"\""),
    ({"jpeg": 3}, "must be a model name or a list of names"),
])
def test_bad_lists_of_defaults(defaults, needle):
    with pytest.raises(ConfigError) as info:
        parse_registry(_jpeg_doc(defaults, **{"m.jpeg": [10, 70]}), "a.toml")
    assert "a.toml: [defaults]" in str(info.value) and needle in str(info.value)


def test_each_of_several_defaults_must_declare_its_range():
    doc = _jpeg_doc({"jpeg": ["m.jpeg", "m.jpeg-hq"]}, **{"m.jpeg": [10, 70], "m.jpeg-hq": None})
    with pytest.raises(ConfigError, match="'m.jpeg-hq' declares no quality_range"):
        merge_layers([("a.toml", parse_registry(doc, "a.toml"))])
    one = _jpeg_doc({"jpeg": "m.jpeg-hq"}, **{"m.jpeg-hq": None})  # alone it needs none
    assert merge_layers([("a.toml", parse_registry(one, "a.toml"))]).defaults_for("jpeg")


def test_entry_toml_round_trips():
    for spec in load_registry().models.values():
        again = parse_registry({"schema": 1, "models": toml_loads(entry_toml(spec))["models"]},
                               spec.origin).models[spec.name]
        assert again == spec


# -- user registry, embedded files, verification ----------------------------------------

def _register_file(path: Path, name: str, model, user_file: Path, **extra) -> ModelSpec:
    spec = make_spec(name, family="swinir", config=model.config.to_kwargs(), task="sr",
                     license="Apache-2.0", description="test", source=FileSource(path),
                     sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                     size=path.stat().st_size, **extra)
    user_file.parent.mkdir(parents=True, exist_ok=True)
    old = user_file.read_text() if user_file.exists() else "schema = 1\n"
    user_file.write_text(old + "\n" + entry_toml(spec))
    return spec


def test_user_registry_merges_over_the_shipped_one(tmp_path):
    model = _tiny()
    path = save_model(model, tmp_path / "data" / "models" / "mine.safetensors")
    user = tmp_path / "config" / "registry.toml"
    _register_file(path, "mine.sr-x2", model, user)
    reg = load_registry()
    assert set(reg.models) == set(SHIPPED["models"]) | {"mine.sr-x2"}
    assert reg.get("mine.sr-x2").origin == str(user)
    assert reg.files[-1] == user
    # defaults in the user registry win; an edited file is read again
    user.write_text(user.read_text().replace("schema = 1\n", 'schema = 1\n[defaults]\n'
                                             '"sr-x2" = "mine.sr-x2"\n', 1))
    reg = load_registry()
    assert reg.default_for("sr-x2").name == "mine.sr-x2"
    assert reg.default_for("sr-x4").name == "swinir-iln-t.sr-x4"  # the shipped default stays
    loaded = load_registry_model("mine.sr-x2")
    x = torch.rand(1, 3, 9, 11)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert not loaded.training
    # a bad user registry is an error that names the file
    user.write_text("schema = 1\n[models.\"x\"]\nfamily = 1\n")
    with pytest.raises(ConfigError, match="registry.toml"):
        load_registry()


def test_restore_registry_replaces_the_shipped_file(tmp_path, monkeypatch):
    alt = tmp_path / "alt.toml"
    alt.write_text('schema = 1\n[defaults]\n"sr-x2" = ""\n')
    monkeypatch.setenv("RESTORE_REGISTRY", str(alt))
    assert load_registry().models == {}


def test_embedded_source_is_verified_and_loaded(tmp_path):
    model = _tiny(norm="iln", seed=3)
    root = tmp_path / "pkg"
    path = save_model(model, root / "models" / "tiny.safetensors")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    spec = make_spec("tiny-iln.sr-x2", family="swinir", config=model.config.to_kwargs(),
                     task="sr", license="Apache-2.0", description="embedded test",
                     source=EmbeddedSource("models/tiny.safetensors", path), sha256=digest,
                     size=path.stat().st_size, fp16_safe=True, psnr={"Set5": 20.0})
    # the entry as weights.toml text, parsed with the package root pointed at tmp
    doc = {"schema": 1, "defaults": {"sr-x2": "tiny-iln.sr-x2"},
           **toml_loads(entry_toml(spec))}
    layer = parse_registry(doc, "embedded.toml", embedded_root=root, strict=False)
    reg = merge_layers([("embedded.toml", layer)])
    spec = reg.require_default("sr-x2")
    assert spec.source.path == path and spec.norm == "iln"
    assert resolve_weights(spec) == path
    loaded = load_registry_model(spec)
    x = torch.rand(1, 3, 10, 10)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)

    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))  # changed on disk: hashed again, refused, left in place
    with pytest.raises(ChecksumError) as info:
        load_registry_model(spec)
    msg = str(info.value)
    assert digest in msg and hashlib.sha256(bytes(data)).hexdigest() in msg
    assert "installation is damaged" in msg and path.exists()
    path.unlink()
    with pytest.raises(errors.WeightsError, match="missing from the installation"):
        resolve_weights(spec)


def test_each_file_is_hashed_once_per_process(tmp_path, monkeypatch):
    path = save_model(_tiny(), tmp_path / "m.safetensors")
    spec = make_spec("m.sr-x2", family="swinir", config=TINY, task="sr", license="MIT",
                     description="d", source=FileSource(path), size=path.stat().st_size,
                     sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    calls = []
    real = sources.sha256_file
    monkeypatch.setattr(sources, "sha256_file", lambda p: calls.append(p) or real(p))
    sources._sha256_once.cache_clear()
    for _ in range(3):
        resolve_weights(spec)
    assert len(calls) == 1
    registry.verify_cached(spec)  # 'restore models verify' always hashes again
    assert len(calls) == 2


# -- importing official checkpoints -----------------------------------------------------

def _state(model, scale=0.0):
    return {k: v + scale * torch.randn_like(v) if v.is_floating_point() else v
            for k, v in model.state_dict().items()}


def test_import_basicsr_checkpoint_prefers_ema(tmp_path):
    src = _tiny(seed=5)
    ema = _state(src, 0.01)
    ckpt = tmp_path / "net_g_300000.pth"
    torch.save({"params": {f"module.{k}": v for k, v in src.state_dict().items()},
                "params_ema": ema}, ckpt)
    spec = registry.import_checkpoint(ckpt, "tiny.sr-x2", family="swinir", config=TINY,
                                     psnr={"Set5": 30.1}, psnr_source="measured")
    assert isinstance(spec.source, FileSource)
    assert spec.source.path == (tmp_path / "data" / "models" / "tiny.sr-x2.safetensors").resolve()
    assert spec.params == sum(p.numel() for p in src.parameters())
    assert spec.license == "unknown" and not spec.fp16_safe and spec.psnr["Set5"] == 30.1
    meta = restore.checkpoint.read_metadata(spec.source.path)
    assert meta["imported_from"] == ckpt.name
    assert meta["imported_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    reg = load_registry()
    assert reg.get("tiny.sr-x2") == spec
    loaded = load_registry_model("tiny.sr-x2")
    for k, v in loaded.state_dict().items():
        if k in ema:
            torch.testing.assert_close(v, ema[k])
    with pytest.raises(UsageError, match="already has a model 'tiny.sr-x2'; pass --force"):
        registry.import_checkpoint(ckpt, "tiny.sr-x2", family="swinir", config=TINY)
    again = registry.import_checkpoint(ckpt, "tiny.sr-x2", family="swinir", config=TINY,
                                      replace=True, license="Apache-2.0")
    assert load_registry().get("tiny.sr-x2").license == again.license == "Apache-2.0"


def test_import_bare_state_dict_with_a_preset_and_overrides(tmp_path, fast_init):
    # HAT-mini i-LN preset, shrunk with --config overrides so the test stays small
    small = dict(depths=[1], num_heads=[2], embed_dim=24, compress_ratio=3, squeeze_factor=6,
                 window_size=8, img_size=32)
    torch.manual_seed(0)
    preset = load_registry().preset("hat-mini-iln-x2")
    ref = build(preset.family, **{**preset.config, **small}).eval()
    ckpt = tmp_path / "HAT-mini_iLN_x2.pth"
    torch.save(ref.state_dict(), ckpt)
    spec = registry.import_checkpoint(ckpt, "hat-iln-tiny.sr-x2", family="hat-mini-iln-x2",
                                     config=small)
    assert spec.family == "hat_iln" and spec.norm == "iln" and spec.scale == 2
    assert spec.license == "Apache-2.0" and "HAT-mini x2 with i-LN" in spec.description
    loaded = load_registry_model(spec.name)
    x = torch.rand(1, 3, 12, 12)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x), ref(x), rtol=0, atol=0)


def test_import_checks_the_architecture_strictly(tmp_path):
    ckpt = tmp_path / "x4.pth"
    torch.save(_tiny().state_dict(), ckpt)
    with pytest.raises(CheckpointError, match="unexpected keys|shape mismatch|missing keys"):
        registry.import_checkpoint(ckpt, "wrong.sr-x2", family="swinir",
                                  config={**TINY, "embed_dim": 32, "num_heads": [4]})
    with pytest.raises(UsageError, match="say which architecture"):
        registry.import_checkpoint(ckpt, "wrong.sr-x2")
    with pytest.raises(UsageError, match="needs --config"):
        registry.import_checkpoint(ckpt, "wrong.sr-x2", family="swinir")
    with pytest.raises(UnknownModelError, match="did you mean 'swinir-m-x4'"):
        registry.import_checkpoint(ckpt, "wrong.sr-x2", family="swinir-m-4x")
    assert not (tmp_path / "config" / "registry.toml").exists()
    assert not (tmp_path / "data" / "models" / "wrong.sr-x2.safetensors").exists()


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.makedirs, (self.target,))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_import_refuses_pickles_that_need_code(tmp_path):
    target = tmp_path / "pwned"
    ckpt = tmp_path / "evil.pth"
    with open(ckpt, "wb") as f:
        pickle.dump({"params_ema": _tiny().state_dict(), "x": _Evil(str(target))}, f)
    with pytest.raises(CheckpointError, match="evil.pth: refused: .*weights_only"):
        registry.import_checkpoint(ckpt, "evil.sr-x2", family="swinir", config=TINY)
    assert not target.exists()
    assert not (tmp_path / "config" / "registry.toml").exists()


def test_import_through_the_cli(tmp_path):
    ckpt = tmp_path / "bare.pth"
    src = _tiny(seed=7)
    torch.save(src.state_dict(), ckpt)
    env = {**os.environ, "RESTORE_CONFIG_DIR": str(tmp_path / "config"),
           "RESTORE_DATA_DIR": str(tmp_path / "data")}
    exe = Path(sys.executable).parent / "restore"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "restore"]
    out = subprocess.run(cmd + ["models", "import", str(ckpt), "--name", "cli.sr-x2",
                                "--family", "swinir", "--config", "upscale=2",
                                "--config", json.dumps({k: v for k, v in TINY.items()
                                                        if k != "upscale"}),
                                "--psnr", "Set5=31.5", "--license", "MIT"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "registered cli.sr-x2" in out.stderr and "--model cli.sr-x2" in out.stderr
    entry = toml_loads(out.stdout)["models"]["cli.sr-x2"]
    assert entry["license"] == "MIT" and entry["psnr"] == {"Set5": 31.5}
    assert entry["source"]["kind"] == "file"
    loaded = load_registry_model("cli.sr-x2")
    x = torch.rand(1, 3, 8, 8)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x), src(x), rtol=0, atol=0)


def test_model_card_has_hub_metadata():
    import yaml

    spec = load_registry().get("hat.sr-x4")
    card = registry.model_card(spec, "hat.sr-x4.safetensors")
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["license"] == "apache-2.0" and meta["pipeline_tag"] == "image-to-image"
    assert {"image-to-image", "super-resolution", "layernorm"} <= set(meta["tags"])
    assert "| Set5 | 33.04 |" in card and "not safe" in card
    odd = make_spec("x.sr-x2", family="swinir", config=TINY, task="sr", license="Custom-1",
                    description="d", source=FileSource(Path("/x")), sha256="0" * 64, size=1)
    meta = yaml.safe_load(registry.model_card(odd, "x").split("---")[1])
    assert meta["license"] == "other" and meta["license_name"] == "Custom-1"
