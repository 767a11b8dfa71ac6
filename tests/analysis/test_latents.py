"""Latent-code measurements: analytic KL to N(0, I), active units."""

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from pyro_noisevae.analysis import active_units, gaussian_kl_standard_normal


@pytest.mark.parametrize("shape", [(7,), (5, 3), (2, 4, 6)])
def test_kl_matches_torch(shape):
    loc = torch.randn(shape, dtype=torch.float64)
    scale = torch.rand(shape, dtype=torch.float64) * 2 + 0.05
    expected = kl_divergence(Normal(loc, scale), Normal(torch.zeros_like(loc), torch.ones_like(scale)))
    per_dim = gaussian_kl_standard_normal(loc, scale, reduce=False)
    assert per_dim.shape == shape
    torch.testing.assert_close(per_dim, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gaussian_kl_standard_normal(loc, scale), expected.sum(-1), rtol=1e-12, atol=1e-12)


def test_kl_zero_at_prior_and_broadcasts():
    loc = torch.zeros(4, 3)
    assert torch.equal(gaussian_kl_standard_normal(loc, torch.ones(3)), torch.zeros(4))
    # μ = 1 in one dimension, s = 1: KL = 1/2 exactly
    assert gaussian_kl_standard_normal(torch.tensor([[1.0, 0.0]]), torch.tensor(1.0)).item() == 0.5


@pytest.mark.parametrize(
    "loc, scale, match",
    [
        (torch.zeros(3), torch.tensor([1.0, 0.0, 1.0]), "scale must be > 0"),
        (torch.zeros(3), -torch.ones(3), "scale must be > 0"),
        (torch.tensor([0.0, float("nan"), 0.0]), torch.ones(3), "NaN"),
        (torch.zeros(3, dtype=torch.long), torch.ones(3), "floating-point"),
    ],
)
def test_kl_errors(loc, scale, match):
    with pytest.raises((ValueError, TypeError), match=match):
        gaussian_kl_standard_normal(loc, scale)


def test_active_units_counts_dimensions_above_threshold():
    gen = torch.Generator().manual_seed(0)
    n = 4000
    stds = torch.tensor([1.0, 0.5, 0.03, 0.0, 0.2])  # variances 1, .25, .0009, 0, .04
    locs = torch.randn(n, 5, generator=gen, dtype=torch.float64) * stds
    count, var = active_units(locs)
    assert count == 3
    # sample variances within 5 standard errors sd(s²) = σ² sqrt(2/n)
    torch.testing.assert_close(var, stds.double() ** 2, atol=0.0, rtol=5 * math.sqrt(2 / n) + 1e-12,
                               check_dtype=False)
    assert active_units(locs, threshold=0.5)[0] == 1
    with pytest.raises(ValueError, match="N >= 2"):
        active_units(locs[:1])
    with pytest.raises(ValueError, match="threshold"):
        active_units(locs, threshold=-1.0)
