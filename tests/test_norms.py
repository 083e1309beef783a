"""i-LN, LayerNorm and Affine: the properties the paper's layer must have."""

import pytest
import torch

from restore.norms import ILN, Affine, LayerNorm, iln_stats


def _perturbed_iln(dim: int, eps: float = 1e-4, seed: int = 0) -> ILN:
    g = torch.Generator().manual_seed(seed)
    norm = ILN(dim, eps=eps)
    with torch.no_grad():
        norm.gamma.copy_(1 + 0.3 * torch.randn(dim, generator=g))
        norm.beta.copy_(0.3 * torch.randn(dim, generator=g))
    return norm


def test_iln_is_invariant_to_per_image_affine_transforms():
    torch.manual_seed(0)
    norm = _perturbed_iln(16)
    x = torch.randn(3, 50, 16, dtype=torch.float64).float()
    a = torch.tensor([0.5, 3.0, 40.0]).view(3, 1, 1)  # a different scale per image
    b = torch.tensor([-2.0, 0.0, 7.0]).view(3, 1, 1)
    y = norm(x)
    y2 = norm(a * x + b)
    # eps breaks exact invariance by a relative eps/var; var is ~1, 0.25a², ... so tiny
    torch.testing.assert_close(y2, y, atol=2e-4, rtol=1e-4)


def test_iln_statistics_are_per_image_over_all_tokens_and_channels():
    x = torch.randn(2, 30, 8)
    x[1] = x[1] * 10 + 5
    st = iln_stats(x, eps=0.0)
    for i in range(2):
        assert st.mean[i].item() == pytest.approx(x[i].mean().item(), abs=1e-5)
        # biased variance over all N*C values
        assert st.std[i].item() ** 2 == pytest.approx(x[i].var(unbiased=False).item(), rel=1e-5)


def test_denorm_of_norm_with_identity_affine_is_x_minus_mean():
    norm = ILN(12, eps=1e-4)  # gamma 1, beta 0
    x = torch.randn(2, 40, 12) * 3 + 1.5
    y, st = norm.normalize(x)
    back = norm.denorm(y, st)
    mean = x.mean(dim=(1, 2), keepdim=True)
    torch.testing.assert_close(back, x - mean, atol=1e-5, rtol=1e-5)


def test_eps_lives_on_the_instance():
    x = torch.randn(1, 20, 4) * 0.01  # small variance: eps matters
    a, b = ILN(4, eps=1e-4), ILN(4, eps=1e-2)
    ya, yb = a(x), b(x)
    assert a.eps == 1e-4 and b.eps == 1e-2
    assert not torch.allclose(ya, yb, atol=1e-3)
    # and the first layer is unaffected by the second's existence
    torch.testing.assert_close(a(x), ya)


def test_iln_keeps_no_state_between_calls():
    norm = _perturbed_iln(8)
    x1, x2 = torch.randn(1, 10, 8), torch.randn(1, 10, 8) * 100
    y1, st1 = norm.normalize(x1)
    norm.normalize(x2)  # a second call must not change what denorm does with st1
    torch.testing.assert_close(norm.denorm(y1, st1), y1 * st1.std)
    assert not any(isinstance(v, torch.Tensor) for k, v in vars(norm).items()
                   if not k.startswith("_"))


def test_iln_accepts_external_statistics():
    norm = _perturbed_iln(8)
    x = torch.randn(2, 64, 8)
    whole, st = norm.normalize(x)
    part, _ = norm.normalize(x[:, :16], st)  # a tile normalized with whole-image statistics
    torch.testing.assert_close(part, whole[:, :16])


def test_fp16_statistics_with_large_features_do_not_overflow():
    torch.manual_seed(0)
    x32 = torch.randn(1, 4096, 16) * 300 + 1e4  # features around 1e4: x² ~ 1e8 > 65504
    x16 = x32.half()
    st = iln_stats(x16, eps=1e-4)
    assert st.mean.dtype == torch.float32 and st.std.dtype == torch.float32
    ref = iln_stats(x16.double(), eps=1e-4)
    assert torch.isfinite(st.std).all()
    assert st.mean.item() == pytest.approx(ref.mean.item(), rel=1e-6)
    assert st.std.item() == pytest.approx(ref.std.item(), rel=1e-4)
    # a naive fp16 variance overflows: the reason statistics are taken in fp32
    assert not torch.isfinite((x16 * x16).mean())
    norm = ILN(16)
    y = norm(x16)
    assert y.dtype == torch.float16 and torch.isfinite(y).all()
    torch.testing.assert_close(y.float(), norm(x16.float()), atol=2e-3, rtol=2e-3)


def test_layernorm_is_per_token_and_fp32_inside():
    ln = LayerNorm(8, eps=1e-5)
    x = torch.randn(2, 5, 8)
    ref = torch.nn.functional.layer_norm(x, (8,), eps=1e-5)
    torch.testing.assert_close(ln(x), ref)
    big = (torch.randn(1, 4, 8) * 300 + 1e4).half()
    out = ln(big)
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    y, stats = ln.normalize(x)
    assert stats is None and ln.denorm(y, stats) is y


def test_affine_has_no_statistics():
    aff = Affine(4)
    with torch.no_grad():
        aff.gamma.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]))
        aff.beta.copy_(torch.tensor([0.0, 1.0, 0.0, -1.0]))
    x = torch.ones(1, 3, 4) * 5
    assert aff(x)[0, 0].tolist() == [5.0, 11.0, 15.0, 19.0]
    assert set(aff.state_dict()) == {"gamma", "beta"}
