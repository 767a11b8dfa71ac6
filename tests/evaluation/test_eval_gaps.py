"""Inference / approximation / amortization gaps against closed-form KL divergences (linear-Gaussian model)."""

import math

import pytest
import torch

from pyro_noisevae.evaluation import inference_gaps


def _se_of_mean(per_point_se):
    return (per_point_se.pow(2).sum().sqrt() / per_point_se.numel()).item()


@pytest.mark.parametrize("batch_size", [100, 3], ids=["one-batch", "batches-of-3"])
def test_gaps_equal_closed_form_kl(linear_gaussian, batch_size):
    # log p(x) - ELBO(q) = KL(q || p(z|x)) exactly; the diagonal Gaussian family contains the posterior
    lg = linear_gaussian
    x = lg.sample(8)
    shift, factor = 0.5, 1.8
    opts = dict(elbo_samples=4000, num_steps=150, num_particles=10, progress=False, batch_size=batch_size)
    gaps = inference_gaps(lg.model, lg.guide(shift, factor), x, log_px=lg.log_px(x), **opts)
    kl_amortized = lg.kl_to_posterior(x, *lg.encoder(shift, factor)(x))
    # one optimal guide per chunk, each fitted on its own points
    assert len(gaps.optimal_guides) == math.ceil(8 / batch_size)
    loc = torch.cat([q.loc("z") for q in gaps.optimal_guides])
    scale = torch.cat([q.scale("z") for q in gaps.optimal_guides])
    kl_star = lg.kl_to_posterior(x, loc, scale)

    # inference gap = KL(q_amortized || posterior), within Monte Carlo error of the ELBO estimate
    se = _se_of_mean(gaps.stderr("inference_gap"))
    assert abs((gaps.inference_gap - kl_amortized).mean().item()) < 4 * se
    # approximation gap = KL(q* || posterior), which per-sample optimisation drives to ~0
    se = _se_of_mean(gaps.stderr("approximation_gap"))
    assert abs((gaps.approximation_gap - kl_star).mean().item()) < 4 * se
    assert (kl_star < 0.01 * kl_amortized).all()
    # so the amortization gap carries (almost) all of the inference gap
    assert torch.allclose(gaps.inference_gap, gaps.approximation_gap + gaps.amortization_gap, atol=1e-10)
    assert gaps.amortization_gap.mean() > 0.99 * gaps.inference_gap.mean() - 4 * _se_of_mean(gaps.stderr("amortization_gap"))
    s = gaps.summary()
    assert s["log_px_method"] == "given" and s["inference_gap"]["num_points"] == 8


def test_amortization_gap_vanishes_for_the_exact_posterior_map(linear_gaussian):
    lg = linear_gaussian
    x = lg.sample(8)
    lr = 0.05
    gaps = inference_gaps(lg.model, lg.guide(), x, log_px=lg.log_px(x), elbo_samples=2000, num_steps=150, num_particles=10,
                          lr=lr, progress=False)
    # the amortized guide is the posterior: its ELBO is log p(x) exactly (all weights equal)
    assert gaps.inference_gap.abs().max() < 1e-8
    # q* starts at the optimum and can only jitter away from it: the amortization gap is -KL(q* || posterior) ~ 0
    (q_star,) = gaps.optimal_guides
    kl_star = lg.kl_to_posterior(x, q_star.loc("z"), q_star.scale("z"))
    se = _se_of_mean(gaps.stderr("amortization_gap"))
    assert abs((gaps.amortization_gap + kl_star).mean().item()) < 4 * se
    # Adam moves each coordinate by at most ~lr per step, so the optimiser's jitter around the optimum stays
    # within a KL of order z_dim * (lr / smallest posterior sd)^2 / 2 (the resolution of the gap estimate)
    resolution = lg.z_dim * (lr / lg.post_scale.min().item()) ** 2 / 2
    assert kl_star.max() < resolution


@pytest.mark.parametrize("method", ["iw-svi", "iwae"])
def test_estimated_log_px_gives_nonnegative_gaps(linear_gaussian, method):
    lg = linear_gaussian
    x = lg.sample(6)
    exact = lg.log_px(x)
    gaps = inference_gaps(lg.model, lg.guide(0.3, 1.5), x, log_px=method, num_samples=2000, elbo_samples=2000,
                          num_steps=100, num_particles=10, progress=False)
    assert gaps.log_px_method == method
    # log p(x) is estimated to within its error (up to the -se^2/2 bias of log-mean-exp)
    bias = -(gaps.log_px_stderr.pow(2) / 2).mean().item()
    assert abs((gaps.log_px - exact).mean().item() - bias) < 4 * _se_of_mean(gaps.log_px_stderr)
    for name in ("inference_gap", "approximation_gap", "amortization_gap"):
        assert getattr(gaps, name).mean() > -4 * _se_of_mean(gaps.stderr(name))
    assert gaps.inference_gap.mean() > 4 * _se_of_mean(gaps.stderr("inference_gap"))


def test_errors(linear_gaussian):
    lg = linear_gaussian
    x = lg.sample(4)
    g = lg.guide()
    with pytest.raises(ValueError, match="shape \\(4,\\)"):
        inference_gaps(lg.model, g, x, log_px=torch.zeros(3), progress=False)
    with pytest.raises(ValueError, match="NaN"):
        inference_gaps(lg.model, g, x, log_px=torch.full((4,), math.nan), progress=False)
    with pytest.raises(ValueError, match="log_px must be one of"):
        inference_gaps(lg.model, g, x, log_px="ais", progress=False)
    with pytest.raises(ValueError, match="elbo_samples"):
        inference_gaps(lg.model, g, x, elbo_samples=0, progress=False)
    gaps = inference_gaps(lg.model, g, x, log_px=lg.log_px(x), elbo_samples=2, num_steps=1, num_particles=1, progress=False)
    with pytest.raises(ValueError, match="name must be one of"):
        gaps.stderr("total_gap")
