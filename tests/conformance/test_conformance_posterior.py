"""Conformance of compare_posteriors: NUTS versus the exact posterior versus the guide, for one observation."""

import math

import torch
from programs import make

from pyro_noisevae.evaluation import compare_posteriors


def test_compare_posteriors_on_a_user_program_with_a_named_plate():
    """linear_vae: plain functions, plate "obs". The guide's KL to the exact posterior is the closed form; the
    NUTS means lie within 4 Monte Carlo standard errors (posterior sd / sqrt(ESS)) of the exact ones."""
    prog = make("linear_vae")
    x0 = prog.data[:1]
    mean, cov = prog.posterior(x0)
    res = compare_posteriors(
        prog.model, prog.guide, x0, exact=(mean, cov), num_samples=100, num_warmup=100, num_chains=1, seed=0
    )
    q = torch.distributions.MultivariateNormal(*prog.guide_moments(x0))
    p = torch.distributions.MultivariateNormal(mean, cov)
    assert res.moments_from["guide"] == "analytic"
    assert math.isclose(res.kl["guide||exact"], torch.distributions.kl_divergence(q, p).item(), rel_tol=1e-6)
    ess = res.table.loc["nuts", "ess_bulk"]
    assert ess > 10
    sd = cov.diagonal().sqrt()
    nuts_mean = torch.as_tensor(res.means["nuts"], dtype=torch.float64)
    assert ((nuts_mean - mean).abs() <= 4 * sd / math.sqrt(ess)).all(), (nuts_mean, mean, ess)

