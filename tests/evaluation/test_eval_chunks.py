"""Evaluation in data chunks: a guide with per-point parameters, walked through its data plate, gives exact answers."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_noisevae.evaluation import importance_estimate


def _per_point_pair(lg, x, subsample_size):
    """Model and exact-posterior guide with one (loc, scale) row per data point, indexed by the plate."""
    loc, scale = lg.posterior(x)

    def model(x):
        with pyro.plate("data", x.shape[0], subsample_size=subsample_size) as idx:
            z = pyro.sample("z", dist.Normal(x.new_zeros(len(idx), lg.z_dim), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ lg.W.T + lg.b, lg.s).to_event(1), obs=x[idx])

    def guide(x):
        loc_p = pyro.param("loc", loc.clone())
        with pyro.plate("data", x.shape[0], subsample_size=subsample_size) as idx:
            pyro.sample("z", dist.Normal(loc_p[idx], scale[idx]).to_event(1))

    return model, guide


@pytest.mark.parametrize("data_arg", [None, "auto"])
@pytest.mark.parametrize("subsample_size", [3, 7, None])
def test_chunked_evaluation_equals_single_batch(linear_gaussian, data_arg, subsample_size):
    """N = 7 points walked through the data plate 3 at a time (the last chunk padded by wrapping around), or whole:
    every point gets its own exact log p(x), in order (the exact posterior makes every weight equal p(x))."""
    lg = linear_gaussian
    x = lg.sample(7)
    model, guide = _per_point_pair(lg, x, subsample_size)
    est = importance_estimate(model, guide, x, num_samples=4, chunk_size=2, batch_size=3, data_arg=data_arg,
                              progress=False)
    assert est.log_px.shape == (7,)
    torch.testing.assert_close(est.log_px, lg.log_px(x), rtol=0, atol=1e-10)
    torch.testing.assert_close(est.elbo, lg.log_px(x), rtol=0, atol=1e-10)
