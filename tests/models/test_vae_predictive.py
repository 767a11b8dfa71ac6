"""Prior- and posterior-predictive sampling of the library VAE through ``pyro.infer.Predictive``."""

import math

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import Predictive

from pyro_noisevae.models import VAE

D, Z, B = 6, 3, 4  # observed dim, latent dim, batch
LIKELIHOODS = [
    ("bernoulli", None), ("normal", 0.3), ("laplace", 0.2), ("noisy-bernoulli", 0.1), ("learned-normal", None)
]


def _vae(likelihood="bernoulli", sigma=None):
    return VAE(x_dim=D, z_dim=Z, hidden_dims=(8,), likelihood=likelihood, sigma=sigma).double()


def _binary_data(seed=1):
    return torch.rand(B, D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).round()


@pytest.mark.parametrize("parallel", [False, True], ids=["sequential", "parallel"])
@pytest.mark.parametrize("likelihood,sigma", LIKELIHOODS, ids=[name for name, _ in LIKELIHOODS])
def test_prior_predictive_samples_both_sites_in_the_support(likelihood, sigma, parallel):
    vae = _vae(likelihood, sigma)
    samples = Predictive(vae.model, num_samples=16, parallel=parallel)(None)
    assert samples["z"].shape == (16, 1, Z) and samples["x"].shape == (16, 1, D)
    support = poutine.trace(vae.model).get_trace(None).nodes["x"]["fn"].support
    assert support.check(samples["x"]).all()
    assert torch.isfinite(samples["x"]).all()
    assert samples["x"].flatten(1).unique(dim=0).shape[0] > 1  # fresh draws, not one repeated value


def test_prior_predictive_z_is_standard_normal():
    S, n = 1000, 5
    vae = _vae()
    samples = Predictive(vae.model, num_samples=S, parallel=True)(None, num_data=n)
    z = samples["z"]
    assert z.shape == (S, n, Z)
    m = z.numel()
    # 5 standard errors: sample mean ~ N(0, 1/m), sample variance ~ N(1, 2/m) for m = 15000 draws
    assert abs(z.mean().item()) < 5 / math.sqrt(m)
    assert abs(z.var().item() - 1.0) < 5 * math.sqrt(2 / m)
    per_dim = z.reshape(-1, Z)
    assert (per_dim.mean(0).abs() < 5 / math.sqrt(m / Z)).all()
    # the plate holds num_data draws and does not subsample: no scale on the sites
    trace = poutine.trace(vae.model).get_trace(None, num_data=n)
    assert trace.nodes["z"]["value"].shape == (n, Z) and trace.nodes["x"]["scale"] == 1.0


def test_bernoulli_prior_predictive_x_is_binary_with_the_decoder_mean():
    vae = _vae("bernoulli")
    S = 4000
    samples = Predictive(vae.model, num_samples=S, parallel=True)(None)
    x = samples["x"]
    assert ((x == 0) | (x == 1)).all()
    # E[x] = E_z[sigmoid(decoder(z))], per pixel; the Bernoulli sd is at most 1/2
    with torch.no_grad():
        expected = vae.decode(samples["z"]).mean(0)
    assert ((x.mean(0) - expected).abs() < 5 * 0.5 / math.sqrt(S)).all()


@pytest.mark.parametrize("likelihood,sigma,noise_var", [("normal", 0.3, 0.3**2), ("laplace", 0.2, 2 * 0.2**2)])
def test_prior_predictive_x_has_the_likelihood_noise(likelihood, sigma, noise_var):
    """x - E[x|z] has the decoder noise variance: σ² (normal), 2b² (laplace)."""
    vae = _vae(likelihood, sigma)
    S = 2000
    samples = Predictive(vae.model, num_samples=S, parallel=True)(None)
    with torch.no_grad():
        residual = samples["x"] - vae.decode(samples["z"])
    m = residual.numel()
    kurtosis = 3.0 if likelihood == "normal" else 6.0
    assert abs(residual.mean().item()) < 5 * math.sqrt(noise_var / m)
    assert abs(residual.pow(2).mean().item() - noise_var) < 5 * noise_var * math.sqrt((kurtosis - 1) / m)


def test_posterior_predictive_through_the_guide():
    vae = _vae("bernoulli")
    x = _binary_data()
    S = 2000
    samples = Predictive(vae.model, guide=vae.guide, num_samples=S, parallel=True)(x)
    assert samples["z"].shape == (S, B, Z) and samples["x"].shape == (S, B, D)
    torch.testing.assert_close(samples["x"], x.expand(S, B, D))  # Pyro returns observed sites as observed
    with torch.no_grad():
        loc, scale = vae.encode(x)
    assert ((samples["z"].mean(0) - loc).abs() < 5 * scale / math.sqrt(S)).all()  # z ~ q(z|x)
    # replicated data: uncondition the model to resample "x" given the guide's z
    replicated = Predictive(poutine.uncondition(vae.model), guide=vae.guide, num_samples=8)(x)["x"]
    assert replicated.shape == (8, B, D) and ((replicated == 0) | (replicated == 1)).all()
    assert (replicated != x).any()


def test_observed_model_is_unchanged():
    """model(x, num_data=N) still observes x and scales the mini-batch by N / B."""
    vae = _vae("normal", 0.3)
    x = torch.rand(B, D, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    pyro.set_rng_seed(0)
    trace = poutine.trace(vae.model).get_trace(x, num_data=40)
    site = trace.nodes["x"]
    assert site["is_observed"] and site["value"] is x and site["scale"] == 10.0
    z = trace.nodes["z"]["value"]
    with torch.no_grad():
        expected = vae.likelihood.log_prob(vae.decoder(z), x).sum()
    torch.testing.assert_close(site["fn"].log_prob(x).sum(), expected)
