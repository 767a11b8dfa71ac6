"""Measurement helpers: analytic KL, power-law fits and their bootstrap intervals, active units, probes, PSNR."""

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch.distributions import Normal, kl_divergence

from pyro_noisevae.analysis import (
    active_units,
    fit_broken_power_law,
    fit_linear_probe,
    fit_power_law,
    gaussian_kl_standard_normal,
    knn_accuracy,
    local_exponents,
    mse,
    psnr,
)

# ----------------------------------------------------------------------------------------------------------
# KL
# ----------------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------------
# power laws
# ----------------------------------------------------------------------------------------------------------


def test_exact_power_law_is_recovered_exactly():
    x = np.geomspace(0.05, 2.0, 10)
    y = 3.0 * x**-1.7
    fit = fit_power_law(x, y, num_bootstrap=200)
    assert fit.nu == pytest.approx(1.7, abs=1e-12)
    assert fit.log_amplitude == pytest.approx(math.log(3.0), abs=1e-12)
    assert fit.r2 == pytest.approx(1.0, abs=1e-12)
    # every bootstrap replicate of noiseless data has the same slope
    assert fit.ci == pytest.approx((1.7, 1.7), abs=1e-9)
    np.testing.assert_allclose(fit.predict(x), y, rtol=1e-12)
    mid, nu = local_exponents(x, y)
    np.testing.assert_allclose(nu, 1.7, atol=1e-12)
    np.testing.assert_allclose(mid, np.sqrt(x[1:] * x[:-1]), rtol=1e-12)


def test_noisy_power_law_recovered_within_its_interval():
    rng = np.random.default_rng(1)
    x = np.geomspace(0.05, 2.0, 30)
    tau, nu = 0.1, 1.3
    y = 2.0 * x**-nu * np.exp(tau * rng.standard_normal(x.size))
    fit = fit_power_law(x, y, num_bootstrap=2000)
    assert fit.ci[0] < nu < fit.ci[1]
    se = tau / math.sqrt(((np.log(x) - np.log(x).mean()) ** 2).sum())  # exact sd of the OLS slope
    assert abs(fit.nu - nu) < 4 * se
    # the bootstrap interval estimates the same spread as the t-interval: its half width is ≈ 1.96 se
    half = 0.5 * (fit.ci[1] - fit.ci[0])
    assert 0.5 * 1.96 * se < half < 2.0 * 1.96 * se
    assert 0.9 < fit.r2 < 1.0


@pytest.mark.parametrize("method", ["pairs", "residuals"])
def test_bootstrap_interval_coverage(method):
    # Repeated experiments with a known ν. For Gaussian log-residuals the percentile bootstrap behaves like a
    # z-interval with the variance estimate scaled by (n-2)/n, so its coverage is
    # P(|T_{n-2}| < 1.96 sqrt((n-2)/n)) (≈ 0.931 for n = 30), not exactly 0.95; we allow 4 Monte Carlo SEs.
    rng = np.random.default_rng(0)
    n, reps, nu = 30, 300, 0.8
    x = np.geomspace(0.05, 2.0, n)
    hits_boot = hits_t = 0
    for i in range(reps):
        y = x**-nu * np.exp(0.2 * rng.standard_normal(n))
        fit = fit_power_law(x, y, num_bootstrap=400, seed=i, method=method)
        hits_boot += fit.ci[0] < nu < fit.ci[1]
        hits_t += fit.ci_t[0] < nu < fit.ci_t[1]
    expected = 2 * stats.t.cdf(1.96 * math.sqrt((n - 2) / n), df=n - 2) - 1
    tol = 4 * math.sqrt(expected * (1 - expected) / reps)
    assert abs(hits_boot / reps - expected) < tol + 0.01  # + the bootstrap's own quantile noise (400 replicates)
    assert abs(hits_t / reps - 0.95) < 4 * math.sqrt(0.95 * 0.05 / reps)


@pytest.mark.parametrize("method", ["pairs", "residuals"])
@pytest.mark.parametrize("n", [3, 5])
def test_bootstrap_interval_matches_the_enumerated_bootstrap_distribution(method, n):
    # With n points there are n^n equally likely resamples; enumerate them to get the exact bootstrap
    # distribution of nu (pairs: without the n resamples at a single x, which have no slope; 3 in 27 for
    # n = 3), and check that the Monte Carlo percentile interval sits at its quantiles: with 20,000
    # replicates the empirical cdf at the 2.5% quantile has SE 0.0011, so +-0.006 is over 5 SEs.
    rng = np.random.default_rng(7)
    x = np.geomspace(0.05, 2.0, n)
    y = 2.0 * x**-1.3 * np.exp(0.3 * rng.standard_normal(n))
    u, v = np.log(x), np.log(y)
    line = stats.linregress(u, v)
    fitted = line.intercept + line.slope * u
    centred = (v - fitted) - (v - fitted).mean()
    exact = []
    for idx in itertools.product(range(n), repeat=n):
        idx = list(idx)
        if method == "pairs":
            if np.ptp(u[idx]) > 0:
                exact.append(-stats.linregress(u[idx], v[idx]).slope)
        else:
            exact.append(-stats.linregress(u, fitted + centred[idx]).slope)
    assert len(exact) == (n**n - n if method == "pairs" else n**n)
    fit = fit_power_law(x, y, num_bootstrap=20_000, method=method, seed=1)
    for bound, p in zip(fit.ci, (0.025, 0.975)):
        # (+-1e-12: resamples with the same points give slopes equal up to rounding)
        assert np.quantile(exact, p - 0.006) - 1e-12 <= bound <= np.quantile(exact, p + 0.006) + 1e-12


def test_t_interval_is_the_textbook_one():
    rng = np.random.default_rng(2)
    x = np.geomspace(0.05, 2.0, 12)
    y = x**-0.7 * np.exp(0.1 * rng.standard_normal(12))
    fit = fit_power_law(x, y, num_bootstrap=100, level=0.9)
    u, v = np.log(x), np.log(y)
    resid = v - (fit.log_amplitude - fit.nu * u)
    se = math.sqrt((resid**2).sum() / (12 - 2) / ((u - u.mean()) ** 2).sum())
    half = stats.t.ppf(0.95, df=10) * se
    assert fit.ci_t == pytest.approx((fit.nu - half, fit.nu + half), rel=1e-12)
    assert fit.r2 == pytest.approx(1 - (resid**2).sum() / ((v - v.mean()) ** 2).sum(), rel=1e-12)


def test_flat_power_law():
    # y constant: nu = 0 exactly, a perfect (flat) fit with zero-width intervals
    fit = fit_power_law([0.1, 0.5, 1.0, 2.0], [3.0] * 4, num_bootstrap=100)
    assert fit.nu == 0 and fit.r2 == 1.0 and fit.ci == (0.0, 0.0) and fit.ci_t == (0.0, 0.0)


def test_broken_power_law_finds_the_bend():
    x = np.geomspace(0.05, 2.0, 12)
    # ν = 2 below x = 0.5, ν = 0.5 above, continuous at the bend
    y = np.where(x < 0.5, (x / 0.5) ** -2.0, (x / 0.5) ** -0.5)
    br = fit_broken_power_law(x, y, num_bootstrap=200)
    k = int((x < 0.5).sum())
    assert br.x_break == pytest.approx(math.sqrt(x[k - 1] * x[k]))
    assert br.left.nu == pytest.approx(2.0, abs=1e-9) and br.right.nu == pytest.approx(0.5, abs=1e-9)
    assert br.sse == pytest.approx(0.0, abs=1e-18) and br.sse_single > 0.1
    single = fit_power_law(x, y, num_bootstrap=200)
    assert 0.5 < single.nu < 2.0 and single.r2 < 1.0


@pytest.mark.parametrize(
    "x, y, match",
    [
        ([1.0, 2.0], [1.0, 2.0], "at least 3 points"),
        ([1.0, 2.0, 3.0], [1.0, 0.0, 2.0], "> 0"),
        ([1.0, 2.0, -3.0], [1.0, 1.0, 2.0], "> 0"),
        ([1.0, 2.0, 3.0], [1.0, float("nan"), 2.0], "finite"),
        ([1.0, 1.0, 1.0], [1.0, 2.0, 3.0], "two distinct"),
        ([1.0, 2.0, 3.0], [1.0, 2.0], "same number"),
    ],
)
def test_power_law_errors(x, y, match):
    with pytest.raises(ValueError, match=match):
        fit_power_law(x, y)


def test_power_law_argument_errors():
    x, y = [1.0, 2.0, 3.0], [3.0, 2.0, 1.0]
    with pytest.raises(ValueError, match="num_bootstrap"):
        fit_power_law(x, y, num_bootstrap=10)
    with pytest.raises(ValueError, match="level"):
        fit_power_law(x, y, level=1.5)
    with pytest.raises(ValueError, match="method"):
        fit_power_law(x, y, method="jackknife")
    with pytest.raises(ValueError, match="at least 6 points"):
        fit_broken_power_law(x, y)


# ----------------------------------------------------------------------------------------------------------
# active units
# ----------------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------------
# probes
# ----------------------------------------------------------------------------------------------------------


def _blobs(n_per_class, centres, spread, seed):
    gen = torch.Generator().manual_seed(seed)
    c = torch.as_tensor(centres, dtype=torch.float64)
    labels = torch.arange(c.shape[0]).repeat_interleave(n_per_class)
    feats = c[labels] + spread * torch.randn(labels.numel(), c.shape[1], generator=gen, dtype=torch.float64)
    return feats, labels


def test_linear_probe_separates_separable_data():
    centres = [[6.0, 0.0, 0.0], [0.0, 6.0, 0.0], [0.0, 0.0, 6.0], [-6.0, -6.0, -6.0]]
    train_f, train_y = _blobs(100, centres, 0.5, seed=0)
    test_f, test_y = _blobs(50, centres, 0.5, seed=1)
    probe = fit_linear_probe(train_f, train_y)
    # the closest pair of centres is 6√2 apart, i.e. > 8 standard deviations: errors have probability < 1e-15
    assert probe.accuracy(train_f, train_y) == 1.0
    assert probe.accuracy(test_f, test_y) == 1.0
    assert probe.predict(test_f).dtype == torch.long and probe(test_f).shape == (200, 4)


def test_linear_probe_is_the_regularized_optimum():
    f, y = _blobs(60, [[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]], 1.0, seed=2)
    l2 = 1e-2
    probe = fit_linear_probe(f, y, l2=l2, standardize=True)
    w = probe.weight.clone().requires_grad_(True)
    b = probe.bias.clone().requires_grad_(True)
    ft = (f - probe.shift) / probe.scale
    loss = torch.nn.functional.cross_entropy(ft @ w.T + b, y) + 0.5 * l2 * w.pow(2).sum()
    gw, gb = torch.autograd.grad(loss, (w, b))
    assert gw.abs().max() < 1e-6 and gb.abs().max() < 1e-6  # stationary point of a strictly convex objective
    torch.testing.assert_close(probe.shift, f.mean(0))


def test_linear_probe_errors():
    f, y = _blobs(5, [[0.0], [1.0]], 0.1, seed=0)
    with pytest.raises(TypeError, match="long"):
        fit_linear_probe(f, y.float())
    with pytest.raises(ValueError, match="labels must have shape"):
        fit_linear_probe(f, y[:-1])
    with pytest.raises(ValueError, match="l2"):
        fit_linear_probe(f, y, l2=0.0)
    with pytest.raises(ValueError, match="num_classes"):
        fit_linear_probe(f, y, num_classes=1)
    probe = fit_linear_probe(f, y)
    with pytest.raises(ValueError, match="columns"):
        probe(torch.zeros(3, 2, dtype=torch.float64))


def test_knn_accuracy():
    train_f = torch.tensor([[0.0], [0.1], [0.2], [1.0], [1.1], [1.2]])
    train_y = torch.tensor([0, 0, 0, 1, 1, 1])
    test_f = torch.tensor([[0.05], [1.05], [0.45], [0.7]])
    test_y = torch.tensor([0, 1, 1, 1])  # 0.45 is closer to class 0, 0.7 closer to class 1
    assert knn_accuracy(train_f, train_y, test_f, test_y, k=1) == 0.75
    assert knn_accuracy(train_f, train_y, test_f, test_y, k=3, chunk_size=1) == 0.75
    assert knn_accuracy(train_f, train_y, train_f, train_y, k=1) == 1.0
    with pytest.raises(ValueError, match="k must be"):
        knn_accuracy(train_f, train_y, test_f, test_y, k=7)
    with pytest.raises(ValueError, match="same number of columns"):
        knn_accuracy(train_f, train_y, torch.zeros(4, 2), test_y)


# ----------------------------------------------------------------------------------------------------------
# image quality
# ----------------------------------------------------------------------------------------------------------


def test_mse_and_psnr_known_values():
    target = torch.rand(4, 784, dtype=torch.float64)
    est = target + 0.1
    torch.testing.assert_close(mse(est, target), torch.full((4,), 0.01, dtype=torch.float64))
    torch.testing.assert_close(psnr(est, target), torch.full((4,), 20.0, dtype=torch.float64))
    torch.testing.assert_close(psnr(est, target, data_range=10.0), torch.full((4,), 40.0, dtype=torch.float64))
    assert torch.isinf(psnr(target, target)).all()
    with pytest.raises(ValueError, match="same shape"):
        mse(est[:, :10], target)
    with pytest.raises(ValueError, match="data_range"):
        psnr(est, target, data_range=0)
