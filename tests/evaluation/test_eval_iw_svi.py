"""IW-SVI: per-point refinement of the proposal, checked against the exact log p(x) of a linear-Gaussian model."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_noisevae.evaluation import LocalGaussianGuide, fit_local_guide, importance_estimate, iw_svi, iw_svi_estimate, log_likelihood
from pyro_noisevae.evaluation.log_likelihood import traced_log_weights


@pytest.mark.parametrize("batch_size", [100, 7], ids=["one-batch", "batches-of-7"])
def test_iw_svi_improves_a_bad_encoder_to_the_exact_value(linear_gaussian, batch_size):
    # with 20 points in batches of 7, every chunk (the last one short) must be refined on its own points
    lg = linear_gaussian
    x = lg.sample(20)
    exact = lg.log_px(x)
    bad = lg.guide(shift=0.8, scale_factor=0.5)  # far off and too narrow: heavy-tailed weights
    amortized = importance_estimate(lg.model, bad, x, num_samples=1000, chunk_size=1000, progress=False)
    refined = iw_svi_estimate(lg.model, bad, x, num_steps=150, num_particles=20, num_samples=1000, chunk_size=1000,
                              batch_size=batch_size, progress=False)
    err_amortized = (amortized.log_px - exact).mean().item()
    err = (refined.log_px - exact).mean().item()
    se = (refined.stderr.pow(2).sum().sqrt() / 20).item()
    bias = -(refined.stderr.pow(2) / 2).mean().item()  # delta-method bias of log-mean-exp
    assert refined.log_px.shape == (20,)
    # per point, not only on average: each estimate within 5 of its own standard errors of log p(x_n)
    assert ((refined.log_px - exact).abs() < 5 * refined.stderr + 1e-3).all()
    # the encoder's IWAE-1000 is far below log p(x); after IW-SVI the estimate is exact within its error
    assert err_amortized < err - 10 * se
    assert abs(err - bias) < 4 * se
    # the refined proposal is close to the posterior: effective sample size close to k
    assert refined.ess.min() > 0.5 * 1000 > amortized.ess.max()


def test_no_steps_is_the_amortized_estimate(linear_gaussian):
    lg = linear_gaussian
    x = lg.sample(6)
    guide = lg.guide(shift=0.3, scale_factor=1.2)
    pyro.set_rng_seed(4)
    amortized = log_likelihood(lg.model, guide, x, num_samples=64, chunk_size=16, progress=False)
    pyro.set_rng_seed(4)
    refined = iw_svi(lg.model, guide, x, num_steps=0, num_samples=64, chunk_size=16, progress=False)
    assert torch.allclose(amortized, refined, rtol=0, atol=1e-10)


def test_elbo_objective_finds_the_exact_posterior(linear_gaussian):
    lg = linear_gaussian
    x = lg.sample(10)
    bad = lg.guide(shift=-0.5, scale_factor=2.0)
    start = LocalGaussianGuide.from_guide(bad, x)
    kl_before = lg.kl_to_posterior(x, start.loc("z"), start.scale("z"))
    q_star = fit_local_guide(lg.model, bad, x, objective="elbo", num_particles=20, num_steps=300)
    kl_after = lg.kl_to_posterior(x, q_star.loc("z"), q_star.scale("z"))
    # per-sample optimisation removes (almost) all of the KL to the posterior, for every data point
    assert (kl_after < 0.01 * kl_before).all()
    # the amortized guide is not modified
    again = LocalGaussianGuide.from_guide(bad, x)
    assert torch.equal(again.loc("z"), start.loc("z"))


def _iwae_bound(model, guide, x, K, repeats):
    """Monte Carlo estimate of the IWAE-K bound E[log mean_k w_k] per point, and its standard error."""
    with torch.no_grad():
        log_w = traced_log_weights(model, guide, (x,), {}, K * repeats, 1, None).reshape(repeats, K, -1)
    bounds = log_w.logsumexp(1) - math.log(K)
    return bounds.mean(0), bounds.std(0) / math.sqrt(repeats)


def test_iw_svi_on_a_vae_raises_the_bound_it_optimises_and_leaves_the_model_alone():
    from pyro_noisevae.models import VAE

    with pyro.settings.context(module_local_params=True):
        vae = VAE(x_dim=8, z_dim=2, hidden_dims=(6,), likelihood="bernoulli").double()
    x = torch.bernoulli(torch.full((5, 8), 0.3, dtype=torch.float64))
    before = [p.detach().clone() for p in vae.parameters()]
    local = fit_local_guide(vae.model, vae.guide, x, objective="iwae", num_particles=10, num_steps=100)
    assert all(torch.equal(a, b) for a, b in zip(before, vae.parameters()))
    assert all(p.grad is None for p in vae.parameters())
    # the IWAE-10 bound (the objective) of the refined proposals is higher on average over the points
    # (per point it need not be: stochastic optimisation can settle in a worse local optimum)
    amortized, amortized_se = _iwae_bound(vae.model, vae.guide, x, 10, 400)
    refined, refined_se = _iwae_bound(vae.model, local, x, 10, 400)
    gain_se = (amortized_se.pow(2) + refined_se.pow(2)).sum().sqrt() / x.shape[0]  # independent draws
    assert (refined - amortized).mean() > 4 * gain_se, ((refined - amortized).mean(), gain_se)
    est = iw_svi_estimate(vae.model, vae.guide, x, num_steps=5, num_particles=10, num_samples=100, progress=False)
    assert est.log_px.shape == (5,) and torch.isfinite(est.log_px).all()


def test_non_gaussian_guide_is_rejected(linear_gaussian):
    lg = linear_gaussian
    x = lg.sample(3)

    def laplace_guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Laplace(x.new_zeros(x.shape[0], 2), 1.0).to_event(1))

    with pytest.raises(ValueError, match="Gaussian .* guide site 'z' is Independent"):
        iw_svi(lg.model, laplace_guide, x, num_steps=1, num_samples=2, progress=False)


def test_local_guide_only_applies_to_its_batch(linear_gaussian):
    lg = linear_gaussian
    x = lg.sample(4)
    local = LocalGaussianGuide.from_guide(lg.guide(), x)
    with pytest.raises(ValueError, match="only applies to the data it was fitted on"):
        log_likelihood(lg.model, local, x[:3], num_samples=2, progress=False)


def test_argument_errors(linear_gaussian):
    lg = linear_gaussian
    x = lg.sample(3)
    g = lg.guide()
    with pytest.raises(ValueError, match="objective"):
        fit_local_guide(lg.model, g, x, objective="kl")
    with pytest.raises(ValueError, match="num_steps"):
        fit_local_guide(lg.model, g, x, num_steps=-1)
    with pytest.raises(ValueError, match="num_particles"):
        fit_local_guide(lg.model, g, x, num_particles=0)
    with pytest.raises(ValueError, match="lr"):
        fit_local_guide(lg.model, g, x, lr=0.0)
    with pytest.raises(ValueError, match="lr_decay"):
        fit_local_guide(lg.model, g, x, lr_decay=1.5)
    with pytest.raises(ValueError, match="lr"):
        fit_local_guide(lg.model, g, x, lr=math.nan)
    with pytest.raises(TypeError, match="init"):
        fit_local_guide(lg.model, g, x, init="encoder")
    with pytest.raises(ValueError, match="batch_size"):
        iw_svi(lg.model, g, x, batch_size=0, progress=False)
    with pytest.raises(TypeError, match="callable"):
        iw_svi(lg.model, None, x, progress=False)
