"""The engine: tiling that is exact for local models, blending weights, OOM and NaN handling."""

import json

import pytest
import torch

from restore.archs import build
from restore.checkpoint import load_state_dict
from restore.engine import Precision, Restorer, resolve_device, resolve_precision, tile_grid, tile_weights
from restore.errors import UsageError

from shared_paths import FIXTURES, require

CPU = torch.device("cpu")


def _fixture_model(name):
    from safetensors.torch import load_file

    case = require(FIXTURES / name)
    cfg = json.loads((case / "config.json").read_text())
    model = build(cfg["family"], **cfg["kwargs"]).eval()
    return load_state_dict(model, load_file(str(case / "weights.safetensors")))


@pytest.mark.parametrize("tile,overlap", [(32, 48), (16, 40), (24, 40), (40, 32)])
def test_tiled_equals_whole_for_layernorm_swinir(tile, overlap):
    """Window-aligned tiles with enough context reproduce the whole-image output."""
    model = _fixture_model("swinir_classical_x2")
    torch.manual_seed(0)
    x = torch.rand(3, 125, 93)  # not a tile multiple, not a window multiple; crops < image
    assert all(t.crop_shape != (125, 93) for t in tile_grid(125, 93, tile, overlap, 8))
    whole, st0 = Restorer(model, scale=2, size_multiple=8, device=CPU)(x)
    tiled, st = Restorer(model, scale=2, size_multiple=8, device=CPU, tile=tile,
                         overlap=overlap, batch=3)(x)
    assert st0.tile is None and st.tiles > 1
    assert (tiled - whole).abs().max().item() <= 1e-4
    # and too little context is visibly not exact: the test can fail
    short, _ = Restorer(model, scale=2, size_multiple=8, device=CPU, tile=tile, overlap=8)(x)
    assert (short - whole).abs().max().item() > 1e-3


def test_tiles_change_iln_output_measurably():
    """i-LN normalizes over the whole image: independent tiles are an approximation."""
    model = _fixture_model("hat_iln_x2")
    torch.manual_seed(0)
    x = torch.rand(3, 64, 48)
    whole, _ = Restorer(model, scale=2, size_multiple=8, device=CPU)(x)
    tiled, _ = Restorer(model, scale=2, size_multiple=8, device=CPU, tile=16, overlap=16,
                        tile_mode="independent")(x)
    assert (tiled - whole).abs().max().item() > 1e-4


@pytest.mark.parametrize("h,w,tile,overlap,mult,scale", [
    (61, 45, 16, 16, 8, 2), (100, 7, 32, 8, 8, 3), (33, 33, 16, 0, 16, 1), (17, 90, 8, 24, 8, 4)])
def test_blending_weights_sum_to_one_and_cover_every_pixel(h, w, tile, overlap, mult, scale):
    total = torch.zeros(h * scale, w * scale)
    for t in tile_grid(h, w, tile, overlap, mult):
        assert t.crop[0] % mult == 0 and t.crop[2] % mult == 0  # crops start on the window grid
        wt = tile_weights(t, h, w, scale)
        total[t.crop[0] * scale:t.crop[1] * scale, t.crop[2] * scale:t.crop[3] * scale] += wt
    torch.testing.assert_close(total, torch.ones_like(total))


class _FlakyModel(torch.nn.Module):
    """x2 nearest upscaling; 'runs out of memory' on inputs above max_pixels, and once on
    the third call, to check that a failed tile is never pasted."""

    def __init__(self, max_pixels):
        super().__init__()
        self.max_pixels, self.calls = max_pixels, 0

    def forward(self, x):
        self.calls += 1
        if x.shape[-1] * x.shape[-2] > self.max_pixels or self.calls == 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest") * 0.5


def test_out_of_memory_halves_the_tile_and_restarts():
    x = torch.rand(3, 64, 64)
    model = _FlakyModel(max_pixels=40 * 40)
    y, st = Restorer(model, scale=2, size_multiple=8, device=CPU, tile=0, overlap=8)(x)
    expected = torch.nn.functional.interpolate(x[None], scale_factor=2, mode="nearest")[0] * 0.5
    torch.testing.assert_close(y, expected)
    assert st.oom_retries >= 2 and st.tile is not None and st.tile <= 32


class _HalfBreaks(torch.nn.Module):
    """Returns inf under autocast (as an overflowing LN model does in fp16), fine in fp32."""

    def forward(self, x):
        y = x * 2
        if torch.is_autocast_enabled("cpu"):
            return torch.full_like(y, float("inf"))
        return y


def test_non_finite_tiles_are_recomputed_in_fp32():
    x = torch.rand(3, 40, 40)
    y, st = Restorer(_HalfBreaks(), scale=1, size_multiple=8, device=CPU,
                     precision=Precision.BF16, tile=16, overlap=8)(x)
    torch.testing.assert_close(y, x * 2)
    assert st.fp32_recomputed == st.tiles == 9
    assert len(st.notes) == 1 and "recomputed in fp32" in st.notes[0]


def test_tta_undoes_each_of_its_eight_transforms():
    """For a model that commutes with flips and rotations, x8 TTA must return the model's
    output exactly; a wrong inverse transform would scramble it."""
    x = torch.rand(3, 24, 40)  # not square: a transposed result would not even fit
    up = lambda t: torch.nn.functional.interpolate(t, scale_factor=2, mode="nearest") ** 2  # noqa: E731
    plain, _ = Restorer(up, scale=2, size_multiple=8, device=CPU)(x)
    tta, st = Restorer(up, scale=2, size_multiple=8, device=CPU, tta=True)(x)
    torch.testing.assert_close(tta, plain)
    assert st.tiles == 8
    seen = []
    Restorer(lambda t: seen.append(t[0, 0, 0, :2].tolist()) or t, scale=1, size_multiple=8,
             device=CPU, tta=True)(x)
    assert len({tuple(s) for s in seen}) == 8  # eight different views really were run


def test_device_and_precision_resolution():
    assert resolve_device("cpu") == CPU
    mps = getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    want = "cuda" if torch.cuda.is_available() else "mps" if mps else "cpu"
    assert resolve_device("auto").type == want  # the first of CUDA, MPS, CPU there is
    with pytest.raises(UsageError, match="not a device"):
        resolve_device("tpu:banana")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="CUDA is not available"):
            resolve_device("cuda:0")
    assert resolve_precision("auto", CPU, fp16_safe=True) == (Precision.FP32, None)
    p, warn = resolve_precision("fp16", torch.device("cuda"), fp16_safe=False)
    assert p is Precision.FP16 and "fp16-safe" in warn


def test_a_model_in_training_mode_is_run_in_eval_mode():
    torch.manual_seed(0)
    model = build("swinir", upscale=1, in_chans=3, img_size=16, window_size=4, depths=[2],
                  embed_dim=8, num_heads=[2], mlp_ratio=2, upsampler="",
                  drop_path_rate=0.5).train()  # drop-path would make each run different
    x = torch.rand(3, 16, 16)
    a, _ = Restorer(model, scale=1, size_multiple=4, device=CPU)(x)
    b, _ = Restorer(model, scale=1, size_multiple=4, device=CPU)(x)
    with torch.no_grad():
        ref = model.eval()(x[None])[0]
    assert torch.equal(a, b) and torch.allclose(a, ref, atol=1e-6)


def test_fp32_on_cuda_switches_tf32_off_inside_and_restores_it():
    from restore.engine.devices import autocast

    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    if not hasattr(matmul, "fp32_precision"):  # an older torch: the legacy flags
        pytest.skip("this torch has no fp32_precision settings")
    before = (matmul.fp32_precision, conv.fp32_precision)
    conv.fp32_precision = "tf32"  # as a user's script might set it
    try:
        with autocast(torch.device("cuda"), Precision.FP32):  # flags only: no GPU needed
            assert matmul.fp32_precision == "ieee" and conv.fp32_precision == "ieee"
        assert conv.fp32_precision == "tf32"
    finally:
        matmul.fp32_precision, conv.fp32_precision = before
