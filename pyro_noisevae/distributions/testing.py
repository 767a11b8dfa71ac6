"""Reusable checks of the distribution contract, normalization, moments and cdf for univariate laws."""

import scipy.stats
import torch
from pyro.distributions.testing.gof import auto_goodness_of_fit

__all__ = [
    "check_cdf",
    "check_expand",
    "check_goodness_of_fit",
    "check_ks",
    "check_moments",
    "check_normalization",
    "check_shapes",
    "integrate_density",
]


def _as_tensor(x, like):
    return torch.as_tensor(x, dtype=like.dtype, device=like.device)


def _assert_close(actual, expected, what):
    # torch.testing.assert_close's default tolerances, without its multi-second first-call import cost
    rtol, atol = (1e-7, 1e-7) if actual.dtype == torch.float64 else (1.3e-6, 1e-5)
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    if not torch.allclose(actual, expected, rtol=rtol, atol=atol):
        worst = (actual - expected).abs().max().item()
        raise AssertionError(f"{what}: values differ by up to {worst:.3e} (rtol={rtol}, atol={atol})")


def _reference_tensor(d):
    # a tensor carrying d's dtype and device, for building grids
    try:
        return d.mean
    except NotImplementedError:
        return d.sample()


def check_shapes(d, sample_shape=(2, 3)):
    r"""
    Check the shape contract of a :class:`~pyro.distributions.TorchDistribution`:

    - ``d.sample(s).shape == s + batch_shape + event_shape`` (and the same for ``rsample`` when
      ``has_rsample``);
    - ``d.log_prob(d.sample(s)).shape == s + batch_shape``;
    - ``mean`` and ``variance`` (where implemented) have shape ``batch_shape + event_shape``;
    - ``d.to_event(1)`` moves the rightmost batch dim into the event (when ``batch_shape`` is not empty).

    :param d: the distribution.
    :param tuple sample_shape: the sample shape ``s`` to draw.
    :returns: the sample of shape ``s + batch_shape + event_shape`` (so callers can reuse it).
    :raises AssertionError: on any violated shape.
    """
    s = torch.Size(sample_shape)
    expected = s + d.batch_shape + d.event_shape
    x = d.sample(s)
    assert x.shape == expected, f"sample shape {tuple(x.shape)} != {tuple(expected)}"
    assert not x.requires_grad, "sample() must not carry gradients (use rsample())"
    if d.has_rsample:
        xr = d.rsample(s)
        assert xr.shape == expected, f"rsample shape {tuple(xr.shape)} != {tuple(expected)}"
    lp = d.log_prob(x)
    assert lp.shape == s + d.batch_shape, f"log_prob shape {tuple(lp.shape)} != {tuple(s + d.batch_shape)}"
    for name in ("mean", "variance"):
        try:
            value = getattr(d, name)
        except NotImplementedError:
            continue
        assert value.shape == d.batch_shape + d.event_shape, f"{name} shape {tuple(value.shape)} is wrong"
    if d.batch_shape:
        e = d.to_event(1)
        assert e.batch_shape == d.batch_shape[:-1], f"to_event(1) batch_shape {tuple(e.batch_shape)} is wrong"
        assert e.event_shape == d.batch_shape[-1:] + d.event_shape, "to_event(1) event_shape is wrong"
        elp = e.log_prob(x)
        assert elp.shape == s + d.batch_shape[:-1], f"to_event(1) log_prob shape {tuple(elp.shape)} is wrong"
        _assert_close(elp, lp.sum(-1), "to_event(1).log_prob must sum log_prob over the moved dim")
    return x


def check_expand(d, batch_shape):
    r"""
    Check ``d.expand(batch_shape)``: shapes, ``_validate_args`` carried over, ``log_prob`` equal to the
    unexpanded ``log_prob`` broadcast to the new shape, and the same moments.

    :param d: the distribution.
    :param tuple batch_shape: the new batch shape, e.g. ``(4,) + d.batch_shape``.
    :returns: the expanded distribution.
    :raises AssertionError: on any violation.
    """
    batch_shape = torch.Size(batch_shape)
    e = d.expand(batch_shape)
    assert type(e) is type(d), f"expand returned {type(e).__name__}, not {type(d).__name__}"
    assert e.batch_shape == batch_shape and e.event_shape == d.event_shape
    assert e._validate_args == d._validate_args, "expand must carry _validate_args over"
    x = e.sample()
    assert x.shape == batch_shape + d.event_shape
    expected = d.log_prob(x)  # broadcasts d's parameters against the expanded value
    _assert_close(e.log_prob(x), expected.expand(batch_shape), "expanded log_prob")
    for name in ("mean", "variance"):
        try:
            value = getattr(d, name)
        except NotImplementedError:
            continue
        _assert_close(getattr(e, name), value.expand(batch_shape + d.event_shape), f"expanded {name}")
    return e


def _simpson(fx, h):
    # composite Simpson rule along dim 0 (an odd number of nodes)
    w = torch.ones(fx.shape[0], dtype=fx.dtype, device=fx.device)
    w[1:-1:2] = 4
    w[2:-1:2] = 2
    return (h / 3) * torch.tensordot(w, fx, dims=1)


def integrate_density(d, low, high, num_points=20001):
    r"""
    :math:`\int_{\text{low}}^{\text{high}} p(y)\,dy` per batch element by composite Simpson quadrature,
    with an a-posteriori error estimate from the same rule on every second node.

    :param d: a distribution with ``event_shape == ()``.
    :param low: lower limits, float or tensor broadcastable to ``d.batch_shape``.
    :param high: upper limits, same.
    :param int num_points: number of nodes (made odd).
    :returns: ``(integral, error)``, tensors of shape ``d.batch_shape``; ``error`` is
        :math:`|S_h - S_{2h}|`, an upper bound on the quadrature error of :math:`S_h` when the rule
        converges monotonically (it is of order :math:`h^4` for smooth densities and :math:`h^2` at a
        kink such as the Laplace mode).
    """
    if d.event_shape:
        raise ValueError(f"integrate_density needs event_shape == (), got {tuple(d.event_shape)}")
    num_points += 1 - num_points % 2
    if num_points < 5:
        raise ValueError("integrate_density needs num_points >= 5")
    ref = _reference_tensor(d)
    low = _as_tensor(low, ref).expand(d.batch_shape)
    high = _as_tensor(high, ref).expand(d.batch_shape)
    if not (high > low).all():
        raise ValueError("integrate_density needs high > low")
    t = torch.linspace(0, 1, num_points, dtype=ref.dtype, device=ref.device)
    t = t.reshape((-1,) + (1,) * len(d.batch_shape))
    y = low + (high - low) * t
    fx = d.log_prob(y).exp()
    h = (high - low) / (num_points - 1)
    fine = _simpson(fx, h)
    coarse = _simpson(fx[::2], 2 * h)
    return fine, (fine - coarse).abs()


def check_normalization(d, low, high, num_points=20001, atol=1e-4):
    r"""
    Assert :math:`|\int_{\text{low}}^{\text{high}} p(y)\,dy - 1| \le \text{atol}` per batch element.

    The caller chooses ``[low, high]`` so that the mass outside it is far below ``atol`` (e.g. 40
    scales either side of the mode). The check refuses to conclude when the estimated quadrature
    error is itself above ``atol / 10`` (the grid is too coarse to resolve the density).

    :param d: a distribution with ``event_shape == ()``.
    :param low: lower limits, float or tensor broadcastable to ``d.batch_shape``.
    :param high: upper limits, same.
    :param int num_points: number of quadrature nodes.
    :param float atol: allowed deviation from 1.
    :returns: the integrals, shape ``d.batch_shape``.
    :raises ValueError: when the grid is too coarse for the requested ``atol``.
    :raises AssertionError: when some integral is off by more than ``atol``.
    """
    integral, error = integrate_density(d, low, high, num_points)
    if (error > atol / 10).any():
        raise ValueError(
            f"quadrature error estimate {error.max().item():.2e} exceeds atol/10 = {atol / 10:.1e}: "
            "increase num_points or narrow [low, high]"
        )
    worst = (integral - 1).abs().max().item()
    assert worst <= atol, f"density integrates to {integral.tolist()} (max |error| {worst:.2e} > {atol:.1e})"
    return integral


def check_moments(d, num_samples=100_000, num_se=5.0):
    r"""
    Compare the sample mean and variance of ``num_samples`` draws with ``d.mean`` and ``d.variance``,
    per element of ``batch_shape + event_shape``, with a tolerance of ``num_se`` standard errors.

    Standard errors (estimated from the same draws, so they do not trust the values under test):

    - sample mean: :math:`\sqrt{s^2 / n}`;
    - sample variance: :math:`\sqrt{(m_4 - s^4) / n}`, the large-:math:`n` standard deviation of
      :math:`s^2` (:math:`\mathrm{Var}\,s^2 = \mu_4/n - \sigma^4 (n - 3)/(n(n - 1))`), with :math:`m_4`
      the sample fourth central moment.

    With ``num_se = 5`` a correct distribution fails a given element with probability about
    :math:`6 \times 10^{-7}` (two-sided normal tail), so dozens of elements stay far below one in
    ten thousand. Draws are in ``d``'s dtype; use float64 parameters when ``num_samples`` is large.

    :param d: the distribution.
    :param int num_samples: number of draws :math:`n`.
    :param float num_se: tolerance in standard errors.
    :returns: dict with ``sample_mean``, ``mean_se``, ``sample_variance``, ``variance_se``,
        each of shape ``batch_shape + event_shape``.
    :raises AssertionError: when some moment is off by more than ``num_se`` standard errors.
    """
    x = d.sample((num_samples,))
    assert torch.isfinite(x).all(), "samples contain nan or inf"
    n = num_samples
    mean = x.mean(0)
    centered = x - mean
    var = centered.pow(2).sum(0) / (n - 1)
    m4 = centered.pow(4).mean(0)
    mean_se = (var / n).sqrt()
    var_se = ((m4 - var.pow(2)).clamp(min=0) / n).sqrt()
    out = {"sample_mean": mean, "mean_se": mean_se, "sample_variance": var, "variance_se": var_se}
    for name, est, se in (("mean", mean, mean_se), ("variance", var, var_se)):
        claimed = getattr(d, name).expand_as(est)
        z = (est - claimed).abs() / se
        assert (z <= num_se).all(), (
            f"sample {name} {est.tolist()} vs {name} {claimed.tolist()}: {z.max().item():.1f} standard errors "
            f"(allowed {num_se})"
        )
    return out


def check_cdf(d, num_points=101, rtol=1e-5, atol=1e-10, roundtrip_atol=1e-10, step=None):
    r"""
    Check ``cdf`` against the density and, where implemented, ``icdf`` against ``cdf``.

    - :math:`|F(\mathrm{icdf}(u)) - u| \le` ``roundtrip_atol`` on ``num_points`` interior quantiles
      (when ``icdf`` exists);
    - the central difference :math:`(F(y + \delta) - F(y - \delta)) / 2\delta` matches :math:`p(y)` within
      ``rtol * p(y) + atol`` at points spread over ``mean ± 4 sd``. Its truncation error is
      :math:`\delta^2 |p''| / 6` where the density is smooth and :math:`\delta\,|\Delta p'| / 2` at a kink
      (relative :math:`\delta / (2b)` at a Laplace mode); its rounding error is about
      :math:`\epsilon / \delta`. The default :math:`\delta = 10^{-5}\,\mathrm{sd}` keeps both well below
      ``rtol = 1e-5`` in float64 for Gaussian and Laplace shapes.

    :param d: a distribution with ``event_shape == ()``, ``mean``, ``variance`` and ``cdf``; use float64.
    :param int num_points: number of test points.
    :param float rtol: relative tolerance of the density comparison.
    :param float atol: absolute tolerance of the density comparison.
    :param float roundtrip_atol: absolute tolerance of :math:`F(\mathrm{icdf}(u)) = u`.
    :param step: the difference step :math:`\delta` (float or tensor broadcastable to ``batch_shape``).
    :returns: dict with ``max_roundtrip_error`` (``None`` without ``icdf``) and ``max_density_excess``,
        the largest :math:`|\text{difference quotient} - p(y)| / (\text{rtol}\, p(y) + \text{atol})` (at most 1).
    :raises AssertionError: on a violation.
    """
    if d.event_shape:
        raise ValueError(f"check_cdf needs event_shape == (), got {tuple(d.event_shape)}")
    mean, sd = d.mean, d.variance.sqrt()
    shape = (-1,) + (1,) * len(d.batch_shape)
    out = {"max_roundtrip_error": None}
    u = torch.linspace(0, 1, num_points + 2, dtype=mean.dtype, device=mean.device)[1:-1].reshape(shape)
    try:
        y = d.icdf(u.expand((num_points,) + d.batch_shape))
    except NotImplementedError:
        y = None
    if y is not None:
        err = (d.cdf(y) - u).abs().max().item()
        out["max_roundtrip_error"] = err
        assert err <= roundtrip_atol, f"cdf(icdf(u)) differs from u by {err:.2e} > {roundtrip_atol:.1e}"
    t = torch.linspace(-4, 4, num_points, dtype=mean.dtype, device=mean.device).reshape(shape)
    y = mean + sd * t
    delta = 1e-5 * sd if step is None else _as_tensor(step, mean)
    slope = (d.cdf(y + delta) - d.cdf(y - delta)) / (2 * delta)
    density = d.log_prob(y).exp()
    excess = ((slope - density).abs() / (rtol * density + atol)).max().item()
    out["max_density_excess"] = excess
    assert excess <= 1, f"d/dy cdf differs from exp(log_prob) by {excess:.2f} times rtol * p(y) + atol"
    return out


def check_goodness_of_fit(d, num_samples=20_000, min_p_value=1e-3):
    r"""
    Goodness of fit of ``d.sample`` against ``d.log_prob``, one test per batch element, using Pyro's
    density test :func:`pyro.distributions.testing.gof.auto_goodness_of_fit` (spacings of sorted
    draws times their density are exponential under the null).

    The smallest p-value is compared with ``min_p_value / m`` for ``m`` batch elements (Bonferroni),
    so a correct distribution fails with probability at most ``min_p_value``.

    :param d: a distribution with ``event_shape == ()``.
    :param int num_samples: draws per batch element.
    :param float min_p_value: family-wise false-failure rate.
    :returns: tensor of p-values, shape ``batch_shape``.
    :raises AssertionError: when the smallest p-value is below ``min_p_value / m``.
    """
    if d.event_shape:
        raise ValueError(f"check_goodness_of_fit needs event_shape == (), got {tuple(d.event_shape)}")
    x = d.sample((num_samples,))
    probs = d.log_prob(x).exp()
    m = max(1, d.batch_shape.numel())
    xs, ps = x.reshape(num_samples, m), probs.reshape(num_samples, m)
    p_values = torch.tensor([auto_goodness_of_fit(xs[:, i], ps[:, i]) for i in range(m)], dtype=torch.float64)
    threshold = min_p_value / m
    assert (p_values >= threshold).all(), (
        f"goodness-of-fit p-values {p_values.tolist()} include one below {threshold:.1e}"
    )
    return p_values.reshape(d.batch_shape)


def check_ks(d, num_samples=20_000, min_p_value=1e-3):
    r"""
    One-sample Kolmogorov-Smirnov test of ``d.sample`` against ``d.cdf``, one test per batch element.

    Under the null, :math:`U = F(Y)` is uniform, and :math:`D_n = \sup_u |\hat F_U(u) - u|` has the exact
    distribution ``scipy.stats.kstwo(n)``. More powerful than :func:`check_goodness_of_fit` against
    changes of location or scale: a Gaussian drawn 5% too wide has
    :math:`\sup_y |F(y/1.05) - F(y)| = 0.0118`, so :math:`\sqrt{n} D_n \approx 2.4` at
    :math:`n = 4 \times 10^4` (p-value about :math:`3 \times 10^{-5}`). Bonferroni over the ``m`` batch
    elements: a correct distribution fails with probability at most ``min_p_value``.

    :param d: a distribution with ``event_shape == ()`` and a ``cdf``.
    :param int num_samples: draws per batch element :math:`n`.
    :param float min_p_value: family-wise false-failure rate.
    :returns: tensor of p-values, shape ``batch_shape``.
    :raises AssertionError: when the smallest p-value is below ``min_p_value / m``.
    """
    if d.event_shape:
        raise ValueError(f"check_ks needs event_shape == (), got {tuple(d.event_shape)}")
    n = num_samples
    u = d.cdf(d.sample((n,))).reshape(n, -1).sort(0).values
    i = torch.arange(1, n + 1, dtype=u.dtype, device=u.device).unsqueeze(-1)
    stat = torch.maximum((i / n - u).max(0).values, (u - (i - 1) / n).max(0).values)
    p_values = torch.as_tensor(scipy.stats.kstwo.sf(stat.cpu().double().numpy(), n), dtype=torch.float64)
    threshold = min_p_value / p_values.numel()
    assert (p_values >= threshold).all(), (
        f"Kolmogorov-Smirnov p-values {p_values.tolist()} include one below {threshold:.1e} "
        f"(statistics {stat.tolist()})"
    )
    return p_values.reshape(d.batch_shape)
