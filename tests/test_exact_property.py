"""Exact tiling == the whole image, for any image size, tile size and model (hypothesis).

The profile is chosen in conftest.py: "ci" (derandomized, a fixed number of examples) under
CI=true, "dev" otherwise, "deep" with HYPOTHESIS_PROFILE=deep for a long local search.

The "sharp" models scale their query/key projections so that attention logits reach the
hundreds, as trained models' do: then the reference's finite shift mask (-100) lets masked
tokens leak into a window, and a tile at the image border must see the same leaked tokens
as the whole image (restore.engine.exact._wrap_parts). Random models at their initial scale never
reach that, which is how the kodim05 defect slipped past the older tests.
"""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

from restore.archs import build
from restore.checkpoint import load_model, load_state_dict
from restore.engine import Precision, Restorer
from restore.engine.exact import _wrap_parts
from restore.io import read_image

from shared_paths import BENCHMARKS, FIXTURES, REPO, require

CPU = torch.device("cpu")
SHIPPED = REPO / "restore" / "models"


def _perturbed(model: torch.nn.Module, seed: int, sharp: float = 0.0) -> torch.nn.Module:
    """Every parameter moved off its initial value; with ``sharp``, the q and k rows of each
    qkv projection scaled so the largest attention logit on a random image is about that."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
        if sharp:
            for name, p in model.named_parameters():
                if name.endswith("qkv.weight"):
                    dim = p.shape[1]
                    p[: 2 * dim].mul_(sharp ** 0.5 * 3.0)
    return model.eval()


def _swinir(upscale: int, sharp: float = 0.0, in_chans: int = 3) -> torch.nn.Module:
    torch.manual_seed(3)
    m = build("swinir", norm="iln", upscale=upscale, in_chans=in_chans,
              upsampler="pixelshuffledirect" if upscale > 1 else "", img_size=32,
              window_size=8, depths=[2, 2], embed_dim=24, num_heads=[2, 3], mlp_ratio=2.0)
    return _perturbed(m, 4, sharp)


def _drct(upscale: int, sharp: float = 0.0, in_chans: int = 3) -> torch.nn.Module:
    torch.manual_seed(3)
    m = build("drct", norm="iln", upscale=upscale, in_chans=in_chans,
              upsampler="pixelshuffle" if upscale > 1 else "", img_size=16, window_size=4,
              depths=[1, 1], embed_dim=12, num_heads=[2, 3], gc=4, mlp_ratio=2.0)
    return _perturbed(m, 4, sharp)


def _hat_fixture(name: str, sharp: float = 0.0) -> torch.nn.Module:
    from safetensors.torch import load_file

    case = require(FIXTURES / name)
    cfg = json.loads((case / "config.json").read_text())
    m = load_state_dict(build(cfg["family"], **cfg["kwargs"]).eval(),
                        load_file(str(case / "weights.safetensors")))
    return _perturbed(m, 5, sharp) if sharp else m


MODELS = {
    "swinir-iln x3": lambda: _swinir(3),
    "swinir-iln x2 sharp": lambda: _swinir(2, sharp=40.0),
    "swinir-iln gray denoise sharp": lambda: _swinir(1, sharp=40.0, in_chans=1),
    "hat-iln x2": lambda: _hat_fixture("hat_iln_x2"),
    "hat-iln x2 sharp": lambda: _hat_fixture("hat_iln_x2", sharp=40.0),
    "hat-ln x4 (channel pooling)": lambda: _hat_fixture("hat_x4"),
    # (small, so sharper than the SwinIR's for the same leak: see tests/test_drct.py)
    "drct-iln x3": lambda: _drct(3),
    "drct-iln x2 sharp": lambda: _drct(2, sharp=200.0),
    "drct-iln gray denoise sharp": lambda: _drct(1, sharp=200.0, in_chans=1),
    **{f"shipped {p.stem}": (lambda p=p: load_model(p).eval())
       for p in sorted(SHIPPED.glob("*.safetensors"))},
}


@functools.lru_cache(maxsize=None)
def _model(name: str) -> torch.nn.Module:
    return MODELS[name]()


def _assert_exact(model, x: torch.Tensor, tile: int) -> None:
    s, m = model.scale, model.size_multiple
    whole, _ = Restorer(model, scale=s, size_multiple=m, device=CPU)(x)
    exact, stats = Restorer(model, scale=s, size_multiple=m, device=CPU, tile=tile,
                            tile_mode="exact")(x)
    err = (exact - whole).abs().max().item()
    assert err <= 1e-4, (f"{tuple(x.shape)} tile {tile}: exact-tiled differs from the whole "
                         f"image by {err:.3g} ({stats.tiles} tiles)")


@st.composite
def _case(draw):
    name = draw(st.sampled_from(sorted(MODELS)))
    tile = draw(st.sampled_from([8, 16, 24, 32, 40]))  # 8: the smallest the engine takes

    def side():  # around tile multiples (a few pixels over one tile, say) or anything
        near = draw(st.integers(1, 3)) * tile + draw(st.integers(-3, 5))
        return max(1, draw(st.one_of(st.just(near), st.integers(1, 90))))

    h, w = side(), side()
    seed = draw(st.integers(0, 2 ** 16))
    return name, tile, h, w, seed


@given(_case())
def test_exact_tiling_equals_the_whole_image(case):
    name, tile, h, w, seed = case
    model = _model(name)
    x = torch.rand(model.config.in_chans, h, w, generator=torch.Generator().manual_seed(seed))
    _assert_exact(model, x, tile)


@pytest.mark.parametrize("name", ["swinir-iln x2 sharp", "hat-iln x2 sharp",
                                  "drct-iln x2 sharp"])
def test_the_sharp_models_do_leak_across_the_shift_mask(name):
    """The property test's sharp models must exercise the defect it guards: with the
    border crops reading their own halo (wrap off) exact tiling would not be exact."""
    import restore.engine.exact as exact

    model = _model(name)
    x = torch.rand(3, 56, 40, generator=torch.Generator().manual_seed(0))
    real = exact._wrap_parts
    exact._wrap_parts = lambda lo, hi, n, wrap: real(lo, hi, n, 0)
    try:
        with pytest.raises(AssertionError, match="exact-tiled differs"):
            _assert_exact(model, x, 16)
    finally:
        exact._wrap_parts = real
    _assert_exact(model, x, 16)


def test_crops_read_the_opposite_border_into_the_halo():
    assert _wrap_parts(8, 40, 64, 4) == [(8, 40)]  # interior: as it is
    assert _wrap_parts(0, 64, 64, 4) == [(0, 64)]  # the whole axis: as it is
    assert _wrap_parts(0, 24, 64, 0) == [(0, 24)]  # no shift: as it is
    assert _wrap_parts(0, 24, 64, 4) == [(0, 20), (60, 64)]  # positions 0..19, 60..63
    assert _wrap_parts(40, 64, 64, 4) == [(0, 4), (44, 64)]  # positions 0..3, 44..63


# The defect as it was reported: the shipped x4 model, fp32 CPU, kodim05 crops at tile 64
# (up to 7.7e-3 off, first at output row 11, column 907, before the fix).
@pytest.mark.parametrize("h, w", [(200, 300), (200, 296), (296, 192), (200, 120)])
def test_kodim05_crops_at_tile_64(h, w):
    path = require(BENCHMARKS / "Kodak24" / "HR" / "kodim05.png")
    img = read_image(path).pixels[:h, :w]
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)
    model = _model("shipped swinir-iln-t.sr-x4")
    s, m = model.scale, model.size_multiple
    whole, _ = Restorer(model, scale=s, size_multiple=m, device=CPU)(x)
    exact, _ = Restorer(model, scale=s, size_multiple=m, device=CPU, tile=64,
                        tile_mode="exact")(x)
    assert (exact - whole).abs().max().item() <= 1e-4


# Under bf16 (or fp16) every step runs in the low precision, so no two ways of running the
# network agree to 1e-4, the whole image included. Exact tiling keeps its whole maps in fp32
# between steps, so its answer is at least as close to the fp32 one as the untiled bf16
# forward's; independent tiles are further off than either (1.4-9x the mean error).
@pytest.mark.parametrize("name", ["shipped swinir-iln-t.sr-x4", "shipped swinir-iln-t.denoise",
                                  "shipped swinir-iln-t.jpeg-gray", "hat-iln x2"])
def test_exact_tiles_under_bf16_stay_within_bf16s_own_error(name):
    img = read_image(require(BENCHMARKS / "Kodak24" / "HR" / "kodim05.png")).pixels[:72, :88]
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)
    model = _model(name)
    if model.conv_first.in_channels == 1:
        x = x.mean(0, keepdim=True)
    s, m = model.scale, model.size_multiple

    def run(**kw):
        return Restorer(model, scale=s, size_multiple=m, device=CPU, **kw)(x)[0]

    ref = run()
    whole = (run(precision=Precision.BF16) - ref).abs()
    exact = (run(precision=Precision.BF16, tile=24, tile_mode="exact") - ref).abs()
    assert exact.mean() <= 1.1 * whole.mean() and exact.max() <= 1.25 * whole.max(), (
        f"bf16 against fp32: exact tiles mean {exact.mean():.2e} max {exact.max():.2e}, "
        f"whole image mean {whole.mean():.2e} max {whole.max():.2e}")
