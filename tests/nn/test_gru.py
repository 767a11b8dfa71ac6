"""GRU encoder reading image rows: agreement with torch's fused GRU, shapes, use inside a Pyro VAE."""

import pyro
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam

from pyro_noisevae.models import VAE
from pyro_noisevae.nn import GRUEncoder


@pytest.mark.parametrize("num_layers", [1, 2])
def test_matches_torch_gru_over_rows(num_layers):
    torch.manual_seed(0)
    enc = GRUEncoder((5, 4), z_dim=3, hidden_size=6, num_layers=num_layers).double()
    ref = torch.nn.GRU(4, 6, num_layers=num_layers, batch_first=True).double()
    with torch.no_grad():
        for i, cell in enumerate(enc.cells):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(ref, f"{name}_l{i}").copy_(getattr(cell, name))
    x = torch.rand(2, 7, 20, dtype=torch.float64)
    _, h = ref(x.reshape(14, 5, 4))
    out = enc.head(h[-1])
    loc, scale = enc(x)
    torch.testing.assert_close(loc, out[:, :3].reshape(2, 7, 3))
    torch.testing.assert_close(scale, torch.nn.functional.softplus(out[:, 3:]).reshape(2, 7, 3) + 1e-4)


def test_rows_are_read_in_order():
    torch.manual_seed(0)
    enc = GRUEncoder((4, 3), z_dim=2, hidden_size=5)
    x = torch.rand(1, 12)
    flipped = x.reshape(1, 4, 3).flip(1).reshape(1, 12)
    assert not torch.allclose(enc(x)[0], enc(flipped)[0])


def test_invalid_arguments():
    with pytest.raises(ValueError, match="image_shape"):
        GRUEncoder((28,), 2)
    with pytest.raises(ValueError, match="positive"):
        GRUEncoder((4, 4), 0)
    with pytest.raises(ValueError, match=r"\(\*, 16\)"):
        GRUEncoder((4, 4), 2)(torch.rand(3, 15))


def test_gru_vae_trains_with_pyro_params():
    vae = VAE(x_dim=16, z_dim=2, hidden_dims=(8,), encoder=GRUEncoder((4, 4), 2, hidden_size=6))
    x = (torch.rand(8, 16) > 0.5).float()
    svi = SVI(vae.model, vae.guide, Adam({"lr": 0.05}), Trace_ELBO())
    svi.step(x)
    w0 = pyro.param("encoder.cells.0.weight_hh").detach().clone()
    svi.step(x)
    assert not torch.equal(w0, pyro.param("encoder.cells.0.weight_hh").detach())
