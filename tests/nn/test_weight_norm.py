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


def test_layer_output_and_lipschitz_bound():
    torch.manual_seed(0)
    layer = BoundedWeightNormLinear(10, 4, bound=0.5).double()
    x = torch.randn(3, 6, 10, dtype=torch.float64)
    torch.testing.assert_close(layer(x), x @ layer.weight.T + layer.bias)
    # ||W||_2 <= ||W||_F = ||g|| < sqrt(out) * bound
    spectral = torch.linalg.matrix_norm(layer.weight, ord=2)
    assert spectral <= layer.g.norm() + 1e-12 and layer.g.norm() < math.sqrt(4) * 0.5
    a, b = torch.randn(100, 10, dtype=torch.float64), torch.randn(100, 10, dtype=torch.float64)
    assert ((layer(a) - layer(b)).norm(dim=1) <= spectral * (a - b).norm(dim=1) + 1e-12).all()


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


def test_smaller_bound_gives_a_smoother_encoder():
    """The encoder's Lipschitz bound is the product of the layers' (softplus is 1-Lipschitz)."""
    torch.manual_seed(1)
    a, b = torch.rand(200, 12), torch.rand(200, 12)
    for bound in (0.1, 1.0):
        enc = WNIEncoder(12, 3, hidden_dims=(8,), bound=bound)
        lip = math.prod(torch.linalg.matrix_norm(m.weight, ord=2).item() for m in enc.modules() if isinstance(m, BoundedWeightNormLinear))
        assert lip < (math.sqrt(8) * bound) * (math.sqrt(6) * bound)
        ratio = (enc(a)[0] - enc(b)[0]).norm(dim=1) / (a - b).norm(dim=1)
        assert (ratio <= lip + 1e-6).all()


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
    assert {"encoder.net.0.v", "encoder.net.0.u", "encoder.net.0.bias"} <= set(pyro.get_param_store().keys())
    u0 = pyro.param("encoder.net.0.u").detach().clone()
    svi.step(x)
    assert not torch.equal(u0, pyro.param("encoder.net.0.u").detach())
    # the bound is a buffer, not a trained parameter
    assert not any(k.endswith("bound") for k in pyro.get_param_store().keys())
