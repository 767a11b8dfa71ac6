"""Power-law fits, their bootstrap and t intervals, local exponents, the broken power law."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from pyro_noisevae.analysis import fit_broken_power_law, fit_power_law, local_exponents


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
