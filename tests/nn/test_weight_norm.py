"""Weight-normalized inference encoders: bounded row norms, shapes, gradients, use inside a Pyro VAE."""

import math

import pyro
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam

from pyro_noisevae.models import VAE
from pyro_noisevae.nn import BoundedWeightNormLinear, WNIEncoder


def test_rows_have_norm_g_below_the_bound_even_for_extreme_parameters():
    layer = BoundedWeightNormLinear(7, 5, bound=0.8).double()
    with torch.no_grad():
        layer.u.copy_(torch.tensor([-50.0, -1.0, 0.0, 3.0, 50.0]))
        layer.v.mul_(torch.tensor([1e-6, 1.0, 10.0, 1e3, 1e6]).unsqueeze(-1).double())
    norms = layer.weight.norm(dim=1)
    torch.testing.assert_close(norms, layer.g)
    torch.testing.assert_close(layer.g, 0.8 * torch.sigmoid(layer.u))
    assert (norms <= 0.8 * (1 + 1e-12)).all()  # sigmoid(50) rounds to 1: the bound is reached, not passed
    # w = g v / ||v||: the direction of each row is v's
    v = layer.v.detach()
    torch.testing.assert_close(layer.weight / layer.g.unsqueeze(-1), v / v.norm(dim=1, keepdim=True))


def _extreme(layer, scale=1e3):
    """Raw parameters far from the initialization: every magnitude saturated, directions scaled by ``scale``."""
    with torch.no_grad():
        layer.u.fill_(50.0)
        layer.v.mul_(scale)
    return layer


def test_layer_output_and_lipschitz_bound():
    torch.manual_seed(0)
    layer = _extreme(BoundedWeightNormLinear(10, 4, bound=0.5).double())
    x = torch.randn(3, 6, 10, dtype=torch.float64)
    torch.testing.assert_close(layer(x), x @ layer.weight.T + layer.bias)
    # the bound comes from H alone: ||W||_2 <= ||W||_F = ||g|| <= sqrt(out) * H, whatever u and v are
    lip = math.sqrt(4) * 0.5
    a, b = torch.randn(100, 10, dtype=torch.float64), torch.randn(100, 10, dtype=torch.float64)
    assert ((layer(a) - layer(b)).norm(dim=1) <= lip * (a - b).norm(dim=1) * (1 + 1e-12)).all()
    # the same raw weights unconstrained (W = v) break that bound by orders of magnitude
    raw = torch.nn.functional.linear(a, layer.v) - torch.nn.functional.linear(b, layer.v)
    assert (raw.norm(dim=1) / (a - b).norm(dim=1)).max() > 100 * lip


def test_initial_norms_follow_the_default_initialization_clipped_into_the_bound():
    torch.manual_seed(0)
    ref = torch.nn.Linear(20, 6)
    torch.manual_seed(0)
    layer = BoundedWeightNormLinear(20, 6, bound=2.0)
    # default row norms (about 0.6) lie inside (0.01 H, 0.99 H): the usual initialization is kept
    torch.testing.assert_close(layer.weight, ref.weight)
    small = BoundedWeightNormLinear(20, 6, bound=1e-3)
    torch.testing.assert_close(small.g, torch.full((6,), 0.99e-3))


def test_encoder_shapes_positive_scale_and_gradients():
    enc = WNIEncoder(12, 3, hidden_dims=(8, 8), bound=2.0)
    x = torch.rand(4, 5, 12)
    loc, scale = enc(x)
    assert loc.shape == scale.shape == (4, 5, 3) and (scale > 0).all()
    (loc.sum() + scale.sum()).backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert sum(isinstance(m, BoundedWeightNormLinear) for m in enc.modules()) == 3  # every layer is bounded


@pytest.mark.parametrize("bound", [0.1, 1.0])
def test_encoder_lipschitz_constant_is_bounded_by_the_bound(bound):
    """The encoder's Lipschitz constant is at most the product of the layers' sqrt(out) H (softplus is 1-Lipschitz):
    a bound set by H alone, so it holds for any trained weights and fails for unconstrained ones."""
    torch.manual_seed(1)
    enc = WNIEncoder(12, 3, hidden_dims=(8,), bound=bound).double()
    for m in enc.modules():
        if isinstance(m, BoundedWeightNormLinear):
            _extreme(m)
    lip = (math.sqrt(8) * bound) * (math.sqrt(6) * bound)
    a = torch.rand(200, 12, dtype=torch.float64)
    b = a + 1e-3 * torch.randn(200, 12, dtype=torch.float64)  # near pairs probe the local slope
    ratio = (enc(a)[0] - enc(b)[0]).norm(dim=1) / (a - b).norm(dim=1)
    assert (ratio <= lip * (1 + 1e-9)).all()
    # the same network with W = v (no bound) has slopes far above it
    first, last = (m for m in enc.modules() if isinstance(m, BoundedWeightNormLinear))
    plain = torch.nn.Sequential(torch.nn.Linear(12, 8), torch.nn.Softplus(), torch.nn.Linear(8, 6)).double()
    with torch.no_grad():
        for p, m in zip((plain[0], plain[2]), (first, last)):
            p.weight.copy_(m.v)
            p.bias.copy_(m.bias)
    plain_ratio = (plain(a)[:, :3] - plain(b)[:, :3]).norm(dim=1) / (a - b).norm(dim=1)
    assert plain_ratio.max() > 100 * lip


def test_weight_assignment_goes_through_the_parametrization():
    layer = BoundedWeightNormLinear(5, 3, bound=1.0).double()
    w = torch.randn(3, 5, dtype=torch.float64)
    w = 0.5 * w / w.norm(dim=1, keepdim=True)  # row norms 0.5, inside the bound
    layer.weight = w
    torch.testing.assert_close(layer.weight, w)
    layer.weight = 10 * w  # row norms 5: the directions are kept, the norms clipped below H
    torch.testing.assert_close(layer.g, torch.full((3,), 0.99, dtype=torch.float64))
    torch.testing.assert_close(layer.weight, 0.99 * w / 0.5)


def test_checkpoints_with_the_layers_own_u_and_v_still_load():
    # state_dicts written before the parametrization hold u and v as parameters of the layer itself
    torch.manual_seed(0)
    enc = WNIEncoder(6, 2, hidden_dims=(4,), bound=1.5)
    old = {}
    for k, t in enc.state_dict().items():
        k = k.replace("parametrizations.weight.original0", "u").replace("parametrizations.weight.original1", "v")
        old[k] = t.clone() + 0.01
    assert set(old) == {"net.0.u", "net.0.v", "net.0.bias", "net.2.u", "net.2.v", "net.2.bias"}
    fresh = WNIEncoder(6, 2, hidden_dims=(4,), bound=1.5)
    fresh.load_state_dict(old)
    assert torch.equal(fresh.net[0].u.detach(), old["net.0.u"]) and torch.equal(fresh.net[2].v.detach(), old["net.2.v"])


def test_invalid_arguments():
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="bound"):
            WNIEncoder(4, 2, (3,), bound=bad)
    with pytest.raises(ValueError, match="positive"):
        BoundedWeightNormLinear(0, 3, bound=1.0)
    with pytest.raises(ValueError, match="positive"):
        WNIEncoder(4, 0, (3,))


def test_wni_vae_trains_with_pyro_params():
    vae = VAE(x_dim=12, z_dim=2, hidden_dims=(8,), encoder=WNIEncoder(12, 2, (8,), bound=1.0))
    x = (torch.rand(16, 12) > 0.5).float()
    svi = SVI(vae.model, vae.guide, Adam({"lr": 0.05}), Trace_ELBO())
    svi.step(x)
    u, v = "encoder.net.0.parametrizations.weight.original0", "encoder.net.0.parametrizations.weight.original1"
    assert {u, v, "encoder.net.0.bias"} <= set(pyro.get_param_store().keys())
    u0 = pyro.param(u).detach().clone()
    svi.step(x)
    assert not torch.equal(u0, pyro.param(u).detach())
    assert vae.encoder.net[0].u is pyro.param(u).unconstrained()  # the layer reads the trained parameter
    # the bound is a buffer, not a trained parameter
    assert not any(k.endswith("bound") for k in pyro.get_param_store().keys())
