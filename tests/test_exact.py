"""Exact tiled inference: the whole-image answer at tile-sized memory, for every family."""

import json

import pytest
import torch

from restore.archs import build
from restore.checkpoint import load_state_dict
from restore.engine import ExactRunner, Precision, Restorer, TileMode

from shared_paths import FIXTURES, require

CPU = torch.device("cpu")


def _fixture(name):
    from safetensors.torch import load_file

    case = require(FIXTURES / name)
    cfg = json.loads((case / "config.json").read_text())
    model = build(cfg["family"], **cfg["kwargs"]).eval()
    return load_state_dict(model, load_file(str(case / "weights.safetensors")))


def _swinir_iln(upscale=3, upsampler="pixelshuffledirect", resi="1conv"):
    torch.manual_seed(1)
    m = build("swinir", norm="iln", upscale=upscale, upsampler=upsampler, img_size=32,
              window_size=8, depths=[2, 2], embed_dim=24, num_heads=[2, 3], mlp_ratio=2.0,
              resi_connection=resi).eval()
    with torch.no_grad():  # move every norm and bias off its initial value
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m


MODELS = {
    "swinir_iln_x3": lambda: _swinir_iln(),
    "swinir_iln_dn_3conv": lambda: _swinir_iln(1, "", "3conv"),
    "hat_iln_x2": lambda: _fixture("hat_iln_x2"),
    "hat_ln_x4": lambda: _fixture("hat_x4"),  # LayerNorm, but channel attention is global
}


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("tile", [8, 16, 24])
def test_exact_tiles_equal_the_whole_image(name, tile):
    model = MODELS[name]()
    torch.manual_seed(0)
    x = torch.rand(3, 37, 29)  # neither a window nor a tile multiple
    s, m = model.scale, model.size_multiple
    whole, _ = Restorer(model, scale=s, size_multiple=m, device=CPU)(x)
    exact, st = Restorer(model, scale=s, size_multiple=m, device=CPU, tile=tile)(x)
    assert st.tile_mode == "exact" and st.tiles > 4  # auto picked exact for these models
    assert (exact - whole).abs().max().item() <= 1e-4


def test_independent_tiles_are_what_exact_mode_fixes():
    model = _fixture("hat_iln_x2")
    x = torch.rand(3, 48, 40)
    whole, _ = Restorer(model, scale=2, size_multiple=8, device=CPU)(x)
    indep, st = Restorer(model, scale=2, size_multiple=8, device=CPU, tile=16, overlap=16,
                         tile_mode="independent")(x)
    assert st.tile_mode == "independent"
    assert (indep - whole).abs().max().item() > 1e-3


def test_local_models_default_to_independent_tiles():
    r = Restorer(_fixture("swinir_classical_x2"), scale=2, size_multiple=8, device=CPU, tile=16)
    assert r.tile_mode is TileMode.INDEPENDENT
    r = Restorer(_swinir_iln(), scale=3, size_multiple=8, device=CPU, tile=16)
    assert r.tile_mode is TileMode.EXACT


def test_moments_do_not_depend_on_the_tiling():
    torch.manual_seed(0)
    m = torch.randn(1, 6, 50, 70) * 3 + 1e4  # a large mean: naive sums lose the variance
    ref = m.double()
    for tile in (7, 16, 64):
        mean, var = ExactRunner(CPU, Precision.FP32, tile).moments(m)
        assert abs(mean.item() - ref.mean().item()) < 1e-6
        assert abs(var.item() - ref.var(unbiased=False).item()) / ref.var().item() < 1e-9
        cm = ExactRunner(CPU, Precision.FP32, tile).channel_mean(m)
        torch.testing.assert_close(cm, ref.mean(dim=(2, 3)).float())


def test_moments_gathered_in_the_tile_pass_match_a_separate_pass():
    from restore.engine.exact import combine_moments

    torch.manual_seed(0)
    m = torch.randn(1, 6, 50, 70) * 3 + 1e4
    ref = m.double()
    for tile in (7, 16, 64):
        run = ExactRunner(CPU, Precision.FP32, tile)
        out, (mean, var) = run.local(lambda a: a * 1.0, [m], moments=True)
        assert torch.equal(out, m)
        # fp32 per tile around its own mean (as the whole-image i-LN), fp64 across tiles
        assert abs(mean.item() - ref.mean().item()) < 1e-6
        assert abs(var.item() - ref.var(unbiased=False).item()) / ref.var().item() < 1e-6
    # Chan's combination of unequal parts is the moments of the union.
    a, b = torch.randn(100).double() + 5, torch.randn(7).double() * 10
    mean, var = combine_moments([(100, a.mean(), a.var(unbiased=False)),
                                 (7, b.mean(), b.var(unbiased=False))])
    both = torch.cat([a, b])
    assert abs(mean.item() - both.mean().item()) < 1e-12
    assert abs(var.item() - both.var(unbiased=False).item()) < 1e-12


@pytest.mark.parametrize("budget", [0, 200_000])  # every map spilled; some in RAM, some not
def test_maps_spilled_to_a_scratch_file_give_the_same_result(budget, tmp_path):
    from restore.engine import MapStore

    model = MODELS["hat_iln_x2"]()
    torch.manual_seed(0)
    x = torch.rand(3, 41, 35)
    whole, _ = Restorer(model, scale=2, size_multiple=8, device=CPU)(x)
    store = MapStore(CPU, ram_budget=budget, scratch_dir=tmp_path)
    with torch.inference_mode():
        exact = model.forward_exact(x[None], ExactRunner(CPU, Precision.FP32, 16, store=store))[0]
    assert (exact - whole).abs().max().item() <= 1e-4
    assert store.maps["disk"] > 0 and store.peak["ram"] <= budget
    assert (store.maps["ram"] > 0) == (budget > 0)
    assert list(tmp_path.iterdir()) == []  # the scratch files are unlinked from the start
    # through the Restorer: the same bytes as with every map in RAM, and a note that says so
    spilled, st = Restorer(model, scale=2, size_multiple=8, device=CPU, tile=16,
                           exact_memory=budget)(x)
    in_ram, st_ram = Restorer(model, scale=2, size_multiple=8, device=CPU, tile=16,
                              exact_memory=1 << 30)(x)
    assert torch.equal(spilled, in_ram)
    assert any("scratch file" in n for n in st.notes)
    assert not any("scratch file" in n for n in st_ram.notes)


def test_map_store_frees_its_count_with_the_map_and_names_a_bad_scratch_folder(tmp_path):
    from restore.engine import MapStore
    from restore.engine.maps import parse_size

    store = MapStore(CPU, ram_budget=1000, scratch_dir=tmp_path)
    a = store.empty(2, 10, 10)  # 800 bytes: RAM
    b = store.empty(2, 10, 10)  # over the budget: a file
    assert store.used == {"device": 0, "ram": 800, "disk": 800}
    assert a.shape == (1, 2, 10, 10) and a.is_contiguous(memory_format=torch.channels_last)
    b.fill_(3.0)
    store.release()  # pages dropped from the process, not the data
    assert torch.equal(b, torch.full_like(b, 3.0))
    del a, b
    assert store.used == {"device": 0, "ram": 0, "disk": 0}
    bad = MapStore(CPU, ram_budget=0, scratch_dir=tmp_path / "missing")
    with pytest.raises(OSError, match="missing.*--exact-memory"):
        bad.empty(1, 4, 4)
    assert parse_size("1.5G") == 3 << 29 and parse_size("800M") == 800 << 20
    assert parse_size("2GiB") == 2 << 30 and parse_size("0") == 0
    with pytest.raises(ValueError, match="not a size"):
        parse_size("lots")


@pytest.mark.parametrize("name", ["swinir_iln_x3", "hat_iln_x2"])
def test_the_tile_bar_knows_its_total_before_exact_tiling_starts(name):
    """passes x tiles per pass, counted from a one-window probe: the bar ends at 100%."""
    model = MODELS[name]()
    bars = []

    class Bar:
        def __init__(self, total):
            self.total, self.done = total, 0
            bars.append(self)

        def update(self, n):
            self.done += n

        def close(self):
            pass

    for h, w in ((37, 29), (16, 40)):
        r = Restorer(model, scale=model.scale, size_multiple=8, device=CPU, tile=16,
                     tile_mode="exact", progress=Bar)
        _, st = r(torch.rand(3, h, w))
        assert bars[-1].total == bars[-1].done == st.tiles > 0
