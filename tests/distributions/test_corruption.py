"""Corruption laws p(x~ | x): the distribution contract, exact log-probabilities, sampling against them."""

import functools
import math

import pytest
import torch

from pyro_noisevae.distributions import Corruption, GaussianCorruption, SaltAndPepper, make_corruption
from pyro_noisevae.distributions.testing import check_expand, check_moments, check_shapes

F64 = dict(dtype=torch.float64)

GAUSSIAN_CASES = {
    "scalar": (0.3, 0.5),
    "batched": ([[0.0, 0.5, 1.0], [0.2, 0.9, 0.4]], [[0.1, 1.0, 2.0], [0.5, 0.05, 3.0]]),
    "broadcast": ([[0.0], [1.0]], [0.1, 1.0, 3.0]),
}
SALT_CASES = {
    "scalar": (0.3, 0.2),
    "batched": ([[0.0, 0.5, 1.0], [0.2, 0.9, 1.0]], [[0.1, 0.0, 0.3], [1.0, 0.05, 0.5]]),
    "broadcast": ([[0.0], [1.0], [0.25]], [0.1, 0.6]),
}


def _gaussian(case):
    clean, sigma = GAUSSIAN_CASES[case]
    return GaussianCorruption(torch.tensor(clean, **F64), torch.tensor(sigma, **F64))


def _salt(case):
    clean, rate = SALT_CASES[case]
    return SaltAndPepper(torch.tensor(clean, **F64), torch.tensor(rate, **F64))


def _atoms(d):
    """The three atoms (0, clean, 1) stacked on a leading dim, with batch_shape."""
    clean = d.clean.expand(d.batch_shape)
    return torch.stack([torch.zeros_like(clean), clean, torch.ones_like(clean)])


# ------------------------------------------------------------------------------------------ contract


@pytest.mark.parametrize("case", list(GAUSSIAN_CASES))
def test_gaussian_shapes_expand_and_base_class(case):
    d = _gaussian(case)
    assert isinstance(d, Corruption)
    check_shapes(d)
    check_expand(d, (4,) + d.batch_shape)
    assert GaussianCorruption(0.3, 0.5).batch_shape == torch.Size()


@pytest.mark.parametrize("case", list(SALT_CASES))
def test_salt_and_pepper_shapes_expand_and_base_class(case):
    d = _salt(case)
    assert isinstance(d, Corruption) and not d.has_rsample
    check_shapes(d)
    check_expand(d, (4,) + d.batch_shape)


# GaussianCorruption's values (log_prob, cdf, icdf, entropy against scipy), normalization, moments and goodness of
# fit run in the generic suite of test_noisy_distributions.py, where conftest.py registers it


def test_gaussian_rsample_carries_gradients():
    clean = torch.tensor([0.2, 0.8], requires_grad=True, **F64)
    sigma = torch.tensor(0.3, requires_grad=True, **F64)
    x = GaussianCorruption(clean, sigma).rsample((5,))
    x.sum().backward()
    torch.testing.assert_close(clean.grad, torch.full((2,), 5.0, **F64))  # d x~ / d x = 1
    assert sigma.grad is not None and torch.isfinite(sigma.grad)


@pytest.mark.parametrize("case", list(SALT_CASES))
def test_salt_and_pepper_mass_sums_to_one_over_distinct_atoms(case):
    d = _salt(case)
    atoms = _atoms(d)
    mass = d.log_prob(atoms).exp()  # (3, *batch)
    # when clean is 0 or 1 an atom is listed twice: count each distinct value once
    duplicate = torch.stack([atoms[0] == atoms[1], torch.zeros_like(atoms[0], dtype=torch.bool), atoms[2] == atoms[1]])
    total = torch.where(duplicate, torch.zeros_like(mass), mass).sum(0)
    torch.testing.assert_close(total, torch.ones_like(total))


def test_salt_and_pepper_exact_masses():
    x = torch.tensor([0.0, 1.0, 0.5, 0.5, 0.5], **F64)
    value = torch.tensor([0.0, 0.0, 0.5, 0.0, 1.0], **F64)
    r = 0.2
    expected = torch.tensor([1 - r / 2, r / 2, 1 - r, r / 2, r / 2], **F64)
    torch.testing.assert_close(SaltAndPepper(x, r).log_prob(value).exp(), expected)
    # rate 0 is the identity: a point mass at the clean value
    lp = SaltAndPepper(x, 0.0).log_prob(torch.tensor([0.0, 1.0, 0.5, 0.0, 0.5], **F64))
    assert lp[[0, 1, 2, 4]].eq(0).all() and lp[3] == -math.inf


@pytest.mark.parametrize("case", ["batched", "broadcast"])
def test_salt_and_pepper_atom_frequencies_match_masses(case):
    """Each atom's empirical frequency is within 5 binomial standard errors of its mass."""
    d = _salt(case)
    n = 40_000
    x = d.sample((n,))
    atoms = _atoms(d)
    for a in range(3):
        hit = (x == atoms[a]).double().mean(0)
        # probability of landing on this value (atoms may coincide with the clean value)
        p = d.log_prob(atoms[a]).exp()
        se = (p * (1 - p) / n).sqrt().clamp_min(1e-12)
        assert ((hit - p).abs() <= 5 * se + 1e-12).all(), (a, hit, p)
    assert d.support.check(x).all()


def test_salt_and_pepper_moments():
    # non-degenerate pixels (rate > 0) so that every sample variance has a positive standard error
    clean = torch.tensor([[0.0, 0.3, 1.0], [0.7, 0.5, 1.0]], **F64)
    rate = torch.tensor([[0.1, 0.4, 0.9], [1.0, 0.05, 0.5]], **F64)
    d = SaltAndPepper(clean, rate)
    check_moments(d, num_samples=50_000)
    assert SaltAndPepper(clean, 0.0).variance.eq(0).all()


def test_salt_and_pepper_extreme_rates():
    x = torch.rand(1000, **F64)
    torch.testing.assert_close(SaltAndPepper(x, 0.0).sample(), x)
    y = SaltAndPepper(x, 1.0).sample((4,))
    assert ((y == 0) | (y == 1)).all()
    ones = y.mean().item()  # fair coin: 4000 draws, SE 0.5 / sqrt(4000)
    assert abs(ones - 0.5) < 5 * 0.5 / math.sqrt(4000)


# ------------------------------------------------------------------------------------------ validation


def test_invalid_parameters_raise():
    for bad in (0.0, -0.1, math.inf, math.nan):
        with pytest.raises(ValueError, match="GaussianCorruption: sigma must be finite and > 0"):
            GaussianCorruption(torch.zeros(3), bad)
    with pytest.raises(ValueError, match="sigma must be finite"):
        GaussianCorruption(torch.zeros(3), torch.tensor([0.1, math.inf, 0.2]))
    with pytest.raises(ValueError):
        GaussianCorruption(torch.tensor([0.0, math.nan]), 0.1)
    with pytest.raises(ValueError):
        SaltAndPepper(torch.zeros(3), 1.5)
    with pytest.raises(ValueError):
        SaltAndPepper(torch.tensor([0.0, 2.0]), 0.1)  # clean pixels must lie in [0, 1]


def test_salt_and_pepper_rejects_values_off_the_atoms():
    d = SaltAndPepper(torch.tensor([0.5, 0.5]), 0.1)
    with pytest.raises(ValueError):
        d.log_prob(torch.tensor([0.5, 0.3]))


def test_make_corruption_factories_and_errors():
    assert make_corruption("none") is None
    f = make_corruption("gaussian", 0.3)
    d = f(torch.zeros(2, 3))
    assert isinstance(d, GaussianCorruption) and torch.all(d.sigma == 0.3)
    g = make_corruption("salt-and-pepper", 0.1)
    assert isinstance(g(torch.zeros(2)), SaltAndPepper)
    assert isinstance(g, functools.partial)
    with pytest.raises(ValueError, match="must be one of"):
        make_corruption("dropout", 0.1)
    with pytest.raises(ValueError, match="needs a level"):
        make_corruption("gaussian")
    with pytest.raises(ValueError, match="sigma must be > 0"):
        make_corruption("gaussian", 0.0)
    with pytest.raises(ValueError, match=r"rate must be in \[0, 1\]"):
        make_corruption("salt-and-pepper", 1.2)
