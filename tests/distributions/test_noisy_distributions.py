"""Generic contract, normalization, moment and reference tests of NoisyNormal, NoisyLaplace, NoisyBernoulli."""

import inspect
import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import scipy.stats
import torch
from pyro import poutine
from pyro.distributions import constraints
from torch.distributions import kl_divergence

from pyro_noisevae.distributions import NoisyBernoulli, NoisyLaplace, NoisyNormal
from pyro_noisevae.distributions.testing import (
    check_cdf,
    check_expand,
    check_goodness_of_fit,
    check_ks,
    check_moments,
    check_normalization,
    check_shapes,
    integrate_density,
)

NAN = math.nan

# float64 agreement with scipy: both sides evaluate the same closed forms, so only rounding separates them
F64 = {"rtol": 1e-10, "atol": 1e-10}


def assert_close(actual, expected, rtol=None, atol=None):
    """``|actual - expected| <= atol + rtol |expected|`` elementwise, ``expected`` broadcast to ``actual``'s shape.

    Defaults are torch.testing's per-dtype tolerances; this avoids torch.testing.assert_close, whose first call
    imports torch.distributed (seconds).
    """
    if rtol is None:
        rtol, atol = (1e-7, 1e-7) if actual.dtype == torch.float64 else (1.3e-6, 1e-5)
    expected = torch.as_tensor(np.asarray(expected), dtype=actual.dtype)
    assert torch.Size(np.broadcast_shapes(actual.shape, expected.shape)) == actual.shape, (actual.shape, expected.shape)
    expected = expected.expand(actual.shape)
    assert not torch.isnan(actual).any(), f"nan in {actual}"
    diff = (actual - expected).abs()
    bad = ~(diff <= atol + rtol * expected.abs())
    worst = diff[bad].max().item() if bad.any() else 0.0
    assert not bad.any(), f"{bad.sum().item()} values differ, worst by {worst:.3e}:\n{actual}\n{expected}"


# ---------------------------------------------------------------------------------------------------------------
# the TorchDistribution contract


def test_class_attributes():
    assert set(NoisyNormal.arg_constraints) == {"loc", "sigma"}
    assert set(NoisyLaplace.arg_constraints) == {"loc", "scale"}
    assert set(NoisyBernoulli.arg_constraints) == {"probs", "logits", "sigma"}
    assert NoisyBernoulli.arg_constraints["probs"] is constraints.unit_interval
    for cls in (NoisyNormal, NoisyLaplace, NoisyBernoulli):
        assert cls.support is constraints.real
        assert isinstance(cls.__new__(cls), dist.TorchDistribution)
        param = inspect.signature(cls.__init__).parameters["validate_args"]
        assert param.kind is inspect.Parameter.KEYWORD_ONLY
    assert NoisyNormal.has_rsample and NoisyLaplace.has_rsample and not NoisyBernoulli.has_rsample


def test_built_on_pyros_families():
    # the Gaussian laws are Pyro's Normal under other argument names, so torch's registered KLs apply
    a, b = NoisyNormal(torch.tensor([0.0, 1.0]), 0.5), NoisyNormal(torch.tensor(0.3), torch.tensor([1.0, 2.0]))
    assert isinstance(a, dist.Normal) and isinstance(NoisyLaplace(0.0, 1.0), dist.Laplace)
    assert a.scale is a.sigma
    expected = kl_divergence(dist.Normal(a.loc, a.scale), dist.Normal(b.loc, b.scale))
    assert_close(kl_divergence(a, b), expected, rtol=0, atol=0)


def test_arg_constraints_hold(example):
    d = example.get_dist()
    for name in example.params:
        value = getattr(d, name)
        assert value.shape == d.batch_shape
        assert d.arg_constraints[name].check(value).all()
    assert d.support.check(example.get_test_data()).all()


def test_batch_and_event_shape(example):
    d = example.get_dist()
    assert d.batch_shape == example.batch_shape()
    assert d.event_shape == torch.Size()
    shapes = {k: np.shape(v) for k, v in example.params.items()}
    assert example.cls.infer_shapes(**shapes) == (example.batch_shape(), torch.Size())


@pytest.mark.parametrize("sample_shape", [(), (5,), (2, 3)], ids=str)
def test_sample_log_prob_mean_shapes_and_to_event(example, sample_shape):
    d = example.get_dist()
    x = check_shapes(d, sample_shape)
    assert x.dtype == torch.float64
    lp = d.log_prob(x)
    assert torch.isfinite(lp).all()


def test_log_prob_shape_broadcasts_test_data(example):
    d = example.get_dist()
    data = example.get_test_data()
    assert d.log_prob(data).shape == torch.Size(np.broadcast_shapes(data.shape, d.batch_shape))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_dtype_follows_parameters(example, dtype):
    d = example.get_dist(dtype)
    assert d.sample().dtype == dtype
    assert d.log_prob(example.get_test_data(dtype)).dtype == dtype
    assert d.mean.dtype == dtype and d.variance.dtype == dtype


def test_python_number_parameters():
    for d in (NoisyNormal(0.0, 1.0), NoisyLaplace(0.0, 1.0), NoisyBernoulli(probs=0.5, sigma=1.0)):
        assert d.batch_shape == torch.Size()
        assert d.sample().shape == torch.Size()
        assert d.sample().dtype == torch.get_default_dtype()
    assert NoisyBernoulli(logits=0.0, sigma=torch.ones(3)).batch_shape == (3,)


@pytest.mark.parametrize("new_dims", [(4,), (2, 1)], ids=str)
def test_expand_new_dims(example, new_dims):
    d = example.get_dist()
    e = check_expand(d, torch.Size(new_dims) + d.batch_shape)
    check_shapes(e, (3,))
    # a second expand from the expanded instance
    check_expand(e, (5,) + e.batch_shape)


def test_expand_existing_singleton_dim():
    d = NoisyNormal(torch.zeros(3, 1, dtype=torch.float64), torch.ones(1, 2, dtype=torch.float64))
    d1 = NoisyNormal(torch.zeros(1, 3, 1, dtype=torch.float64), 0.5)
    e = check_expand(d1, (4, 3, 2))
    assert e.batch_shape == (4, 3, 2)
    with pytest.raises(RuntimeError):
        d.expand((3, 3))  # 2 cannot be expanded to 3


@pytest.mark.parametrize("validate", [True, False], ids=["validate", "novalidate"])
def test_expand_copies_validate_args(example, validate):
    # an explicit validate_args=False in a test documents that expand copies the flag, whatever it is
    d = example.get_dist(validate_args=validate)
    assert d.expand((2,) + d.batch_shape)._validate_args is validate


@pytest.mark.parametrize("param", ["probs", "logits"])
@pytest.mark.parametrize("touch", [False, True], ids=["lazy", "materialized"])
def test_noisy_bernoulli_expand_both_parametrizations(param, touch):
    value = [0.0, 0.3, 1.0] if param == "probs" else [-30.0, 0.5, 30.0]
    d = NoisyBernoulli(**{param: torch.tensor(value, dtype=torch.float64)}, sigma=0.2)
    if touch:  # the other parameter has been computed lazily before expanding
        d.logits if param == "probs" else d.probs
    e = check_expand(d, (4, 3))
    assert param in e.__dict__
    assert_close(e.probs, d.probs.expand(4, 3))
    assert_close(e.logits, d.logits.expand(4, 3))
    y = torch.tensor([0.0, 0.3, 1.0], dtype=torch.float64)
    assert_close(e.log_prob(y), d.log_prob(y).expand(4, 3), rtol=0, atol=0)


def test_to_event_in_a_pyro_model(example):
    d = example.get_dist()
    if not d.batch_shape:
        d = d.expand((3,))
    data = d.sample()

    def model():
        with pyro.plate_stack("batch", d.batch_shape[:-1]):
            pyro.sample("y", d.to_event(1), obs=data)

    trace = poutine.trace(model).get_trace()
    trace.compute_log_prob()
    site = trace.nodes["y"]
    assert site["fn"].event_shape == d.batch_shape[-1:]
    assert_close(site["log_prob"], d.log_prob(data).sum(-1))


# ---------------------------------------------------------------------------------------------------------------
# reparameterization and gradients


def test_rsample_pathwise_gradients(rsample_example):
    # location-scale families: y = loc + scale * eps, so dy/dloc = 1 and dy/dscale = (y - loc) / scale
    e = rsample_example
    batch = e.batch_shape()
    loc_name, scale_name = list(e.params)
    loc = torch.tensor(e.params[loc_name], dtype=torch.float64).expand(batch).clone().requires_grad_()
    scale = torch.tensor(e.params[scale_name], dtype=torch.float64).expand(batch).clone().requires_grad_()
    d = e.cls(loc, scale)
    y = d.rsample((7,))
    assert y.requires_grad
    g_loc, g_scale = torch.autograd.grad(y.sum(), [loc, scale])
    assert_close(g_loc, torch.full_like(loc, 7.0))
    assert_close(g_scale, ((y - loc) / scale).sum(0).detach())
    assert not d.sample().requires_grad


def test_noisy_bernoulli_is_not_reparameterized():
    probs = torch.tensor([0.2, 0.7], requires_grad=True)
    d = NoisyBernoulli(probs=probs, sigma=0.3)
    with pytest.raises(NotImplementedError):
        d.rsample()
    assert not d.sample((4,)).requires_grad


def test_log_prob_gradients(example):
    """Autograd matches finite differences (gradcheck) in the interior of the parameter space."""
    params = example.tensor_params(requires_grad=True)
    data = example.get_test_data()
    boundary = "probs" in params and bool(((params["probs"] == 0) | (params["probs"] == 1)).any())
    if boundary:
        # finite differences would step outside [0, 1]; the gradient must still be finite
        lp = example.cls(**params).log_prob(data).sum()
        grads = torch.autograd.grad(lp, list(params.values()))
        assert all(torch.isfinite(g).all() for g in grads)
        interior = {k: v.detach().clamp(0.05, 0.95).requires_grad_() if k == "probs" else v for k, v in params.items()}
        params = interior
    names = list(params)
    assert torch.autograd.gradcheck(
        lambda *args: example.cls(**dict(zip(names, args))).log_prob(data), tuple(params.values())
    )


# ---------------------------------------------------------------------------------------------------------------
# values against independent references


def _grid(example, num=201, width=6.0):
    """Points spread over the bulk of each batch element's law, shape (num,) + batch_shape."""
    ref = example.reference()
    mean, sd = np.asarray(ref.mean()), np.sqrt(np.asarray(ref.var()))
    t = np.linspace(-width, width, num).reshape((-1,) + (1,) * mean.ndim)
    return mean + sd * t


def test_log_prob_matches_reference(example):
    d, ref = example.get_dist(), example.reference()
    data = example.get_test_data()
    assert_close(d.log_prob(data), ref.logpdf(data.numpy()), **F64)
    y = _grid(example)
    assert_close(d.log_prob(torch.from_numpy(y)), ref.logpdf(y), **F64)


def test_log_prob_float32_matches_float64_reference(example):
    d, ref = example.get_dist(torch.float32), example.reference()
    y = _grid(example, num=51, width=4.0)
    # float32 carries ~6e-8 relative error per operation; log densities here are at most a few hundred
    assert_close(d.log_prob(torch.from_numpy(y).float()), ref.logpdf(y), rtol=1e-5, atol=1e-5)


def test_mean_variance_match_reference(example):
    d, ref = example.get_dist(), example.reference()
    assert_close(d.mean, ref.mean(), **F64)
    assert_close(d.variance, ref.var(), **F64)


def test_cdf_matches_reference(example):
    d, ref = example.get_dist(), example.reference()
    y = _grid(example, width=12.0)  # far enough to see the tails approach 0 and 1
    assert_close(d.cdf(torch.from_numpy(y)), ref.cdf(y), **F64)


def test_cdf_is_the_integral_of_the_density(example):
    out = check_cdf(example.get_dist(), rtol=1e-5, atol=1e-10)
    assert 0 <= out["max_density_excess"] <= 1


def test_icdf_round_trip(icdf_example):
    d, ref = icdf_example.get_dist(), icdf_example.reference()
    out = check_cdf(d, roundtrip_atol=1e-12)
    assert out["max_roundtrip_error"] <= 1e-12
    u = np.array([1e-6, 0.01, 0.3, 0.5, 0.9, 1 - 1e-6]).reshape((-1,) + (1,) * len(d.batch_shape))
    assert_close(d.icdf(torch.from_numpy(u)), ref.ppf(u), rtol=1e-9, atol=1e-9)


def test_noisy_bernoulli_has_no_icdf():
    with pytest.raises(NotImplementedError):
        NoisyBernoulli(probs=torch.tensor(0.5), sigma=0.1).icdf(torch.tensor(0.5))


def test_entropy_matches_reference(entropy_example):
    d, ref = entropy_example.get_dist(), entropy_example.reference()
    assert d.entropy().shape == d.batch_shape
    assert_close(d.entropy(), ref.entropy(), **F64)


def test_noisy_bernoulli_extreme_logits_float32(bernoulli_reference):
    logits = torch.tensor([-30.0, 30.0])
    sigma = 0.1
    d = NoisyBernoulli(logits=logits, sigma=sigma)
    y = torch.tensor([[0.0], [1.0], [0.5], [-0.2], [1.3]])
    ref = bernoulli_reference(logits=logits.double().numpy(), sigma=sigma)
    expected = ref.logpdf(y.double().numpy())
    assert_close(d.log_prob(y), expected, rtol=1e-6, atol=1e-5)
    # the test can fail: mixing with float32 probs (sigmoid(30) == 1 exactly) loses the tiny component,
    # e.g. at y = 0 with logits = 30 the true log density is -30 + log N(0; 0, 0.01), not log N(0; 1, 0.01)
    p = torch.sigmoid(logits)
    n0, n1 = NoisyNormal(0.0, sigma).log_prob(y).exp(), NoisyNormal(1.0, sigma).log_prob(y).exp()
    naive = torch.log((1 - p) * n0 + p * n1)
    assert (naive.double() - torch.from_numpy(expected)).abs().max() > 10


@pytest.mark.parametrize("p", [0.0, 1.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_noisy_bernoulli_boundary_probs_are_a_single_gaussian(p, dtype):
    sigma = 0.1
    d = NoisyBernoulli(probs=torch.tensor(p, dtype=dtype), sigma=sigma)
    y = torch.linspace(-0.5, 1.5, 21, dtype=dtype)
    assert_close(d.log_prob(y), NoisyNormal(torch.tensor(p, dtype=dtype), sigma).log_prob(y))
    assert_close(d.cdf(y), NoisyNormal(torch.tensor(p, dtype=dtype), sigma).cdf(y))


def test_noisy_bernoulli_probs_and_logits_agree():
    probs = torch.tensor([1e-6, 0.2, 0.5, 0.8, 1 - 1e-6], dtype=torch.float64)
    logits = torch.log(probs) - torch.log1p(-probs)
    y = torch.linspace(-1.0, 2.0, 31, dtype=torch.float64).unsqueeze(-1)
    a = NoisyBernoulli(probs=probs, sigma=0.3)
    b = NoisyBernoulli(logits=logits, sigma=0.3)
    assert_close(a.log_prob(y), b.log_prob(y), rtol=1e-12, atol=1e-12)
    assert_close(a.probs, b.probs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("sigma", [1e-1, 1e-2, 1e-3])
def test_noisy_bernoulli_small_sigma_limit(sigma):
    """As sigma -> 0, sigma * sqrt(2 pi) * p(y) -> P(X = y) on {0, 1} and the law concentrates on {0, 1}."""
    probs = torch.tensor([0.0, 0.25, 0.9, 1.0], dtype=torch.float64)
    d = NoisyBernoulli(probs=probs, sigma=sigma)
    scaled = lambda y: d.log_prob(torch.tensor(y, dtype=torch.float64)) + math.log(sigma * math.sqrt(2 * math.pi))
    # exactly, sigma sqrt(2 pi) p(1) = p + (1 - p) exp(-1 / (2 sigma^2)): the limit is off by at most that term
    other = math.exp(-1 / (2 * sigma**2))
    assert_close(scaled(1.0).exp(), probs, rtol=1e-14, atol=other)
    assert_close(scaled(0.0).exp(), 1 - probs, rtol=1e-14, atol=other)
    # halfway both components are equally far: log p(1/2) = -1/(8 sigma^2) - log(sigma sqrt(2 pi)) exactly
    assert_close(scaled(0.5), torch.full_like(probs, -1 / (8 * sigma**2)), rtol=1e-14, atol=0)
    # F(1/2) = (1 - p) Phi(1 / (2 sigma)) + p Phi(-1 / (2 sigma)) differs from 1 - p by at most Phi(-1 / (2 sigma))
    tail = scipy.stats.norm.sf(1 / (2 * sigma))
    assert_close(d.cdf(torch.tensor(0.5, dtype=torch.float64)), 1 - probs, rtol=1e-14, atol=tail)
    x = d.sample((2000,))
    assert ((x.abs() < 8 * sigma) | ((x - 1).abs() < 8 * sigma)).all()


# ---------------------------------------------------------------------------------------------------------------
# normalization, moments and goodness of fit


def test_normalization(example):
    d = example.get_dist()
    low, high = example.limits()
    # mass outside 40 scales is below exp(-40) (Laplace) or Phi(-40) (Gaussian components): negligible;
    # check_normalization also refuses a grid whose estimated quadrature error exceeds atol / 10
    integral = check_normalization(d, low, high, num_points=20001, atol=1e-8)
    assert integral.shape == d.batch_shape


def test_normalization_check_can_fail():
    # a density that integrates to 2 (log_prob shifted by log 2) must be rejected
    class Doubled(NoisyNormal):
        def log_prob(self, value):
            return super().log_prob(value) + math.log(2)

    d = Doubled(torch.tensor(0.0, dtype=torch.float64), 1.0)
    with pytest.raises(AssertionError):
        check_normalization(d, -40.0, 40.0)
    with pytest.raises(ValueError, match="quadrature error"):
        check_normalization(NoisyNormal(torch.tensor(0.0, dtype=torch.float64), 1.0), -40.0, 40.0, num_points=11)
    integral, error = integrate_density(NoisyNormal(torch.tensor(0.0, dtype=torch.float64), 1.0), -40.0, 40.0)
    assert abs(integral.item() - 1) < 1e-12 and error.item() < 1e-12


def test_moments(example):
    d = example.get_dist()
    out = check_moments(d, num_samples=100_000, num_se=5.0)
    # the mean's standard error is the Monte Carlo one, sqrt(Var / n) with the law's own variance, up to the
    # sampling error of the sample variance it is estimated from (delta method: SE(sqrt(s2)) = SE(s2) / (2 s))
    n = 100_000
    expected = (d.variance.expand_as(out["mean_se"]) / n).sqrt()
    tol = 5 * out["variance_se"] / (2 * out["sample_variance"].sqrt() * math.sqrt(n))
    assert ((out["mean_se"] - expected).abs() <= tol).all(), (out["mean_se"], expected, tol)


def test_moment_check_can_fail():
    # a variance claim 10% too large is ~20 standard errors away at n = 1e5 (SE of s^2 is sqrt(2/n) sigma^2)
    class Wrong(NoisyNormal):
        @property
        def variance(self):
            return 1.1 * self.sigma.pow(2)

    with pytest.raises(AssertionError, match="variance"):
        check_moments(Wrong(torch.tensor(0.0, dtype=torch.float64), 1.0), num_samples=100_000)


def test_goodness_of_fit(example):
    # Bonferroni over batch elements: a correct sampler fails with probability <= 1e-3
    p_values = check_goodness_of_fit(example.get_dist(), num_samples=20_000, min_p_value=1e-3)
    assert p_values.shape == example.batch_shape()


def test_goodness_of_fit_check_can_fail():
    class Wider(NoisyNormal):
        def sample(self, sample_shape=torch.Size()):
            return 1.2 * super().sample(sample_shape)

    with pytest.raises(AssertionError, match="goodness-of-fit"):
        check_goodness_of_fit(Wider(torch.zeros(2, dtype=torch.float64), 1.0), num_samples=20_000)


def test_kolmogorov_smirnov(example):
    # sample against cdf (itself checked against scipy and against the density above); Bonferroni, 1e-3 overall
    p_values = check_ks(example.get_dist(), num_samples=20_000, min_p_value=1e-3)
    assert p_values.shape == example.batch_shape()


def test_kolmogorov_smirnov_check_can_fail():
    # 10% too wide: sup |F(y / 1.1) - F(y)| = 0.023 for a Gaussian, so sqrt(n) D ~ 3.2 at n = 2e4 (p ~ 1e-9),
    # far below the 1e-3 threshold (the density test above needs a 20% error to notice)
    class Wider(NoisyNormal):
        def sample(self, sample_shape=torch.Size()):
            return 1.1 * super().sample(sample_shape)

    with pytest.raises(AssertionError, match="Kolmogorov-Smirnov"):
        check_ks(Wider(torch.tensor(0.0, dtype=torch.float64), 1.0), num_samples=20_000)


def test_noisy_bernoulli_component_frequencies():
    # with sigma = 0.05, |noise| < 0.5 with probability 1 - 2 Phi(-10); rounding recovers X ~ Bernoulli(p)
    probs = torch.tensor([0.0, 0.1, 0.5, 0.97, 1.0], dtype=torch.float64)
    n = 50_000
    x = NoisyBernoulli(probs=probs, sigma=0.05).sample((n,))
    freq = (x > 0.5).double().mean(0)
    se = (probs * (1 - probs) / n).sqrt()
    assert ((freq - probs).abs() <= 5 * se).all()


# ---------------------------------------------------------------------------------------------------------------
# bad input: each is a clear error under validation (on by default in these tests)

INF = math.inf
BAD_PARAMETERS = [
    (NoisyNormal, {"loc": 0.0, "sigma": 0.0}, "sigma"),
    (NoisyNormal, {"loc": 0.0, "sigma": -1.0}, "sigma"),
    (NoisyNormal, {"loc": 0.0, "sigma": NAN}, "sigma"),
    (NoisyNormal, {"loc": 0.0, "sigma": INF}, "sigma"),
    (NoisyNormal, {"loc": NAN, "sigma": 1.0}, "loc"),
    (NoisyNormal, {"loc": [0.0, 1.0], "sigma": [1.0, -1.0]}, "sigma"),
    (NoisyNormal, {"loc": [0.0, 1.0], "sigma": [1.0, INF]}, "sigma"),
    (NoisyLaplace, {"loc": 0.0, "scale": 0.0}, "scale"),
    (NoisyLaplace, {"loc": 0.0, "scale": -2.0}, "scale"),
    (NoisyLaplace, {"loc": 0.0, "scale": NAN}, "scale"),
    (NoisyLaplace, {"loc": 0.0, "scale": INF}, "scale"),
    (NoisyLaplace, {"loc": [NAN, 0.0], "scale": 1.0}, "loc"),
    (NoisyBernoulli, {"probs": 0.5, "sigma": 0.0}, "sigma"),
    (NoisyBernoulli, {"probs": 0.5, "sigma": -0.1}, "sigma"),
    (NoisyBernoulli, {"logits": 0.5, "sigma": NAN}, "sigma"),
    (NoisyBernoulli, {"logits": 0.5, "sigma": INF}, "sigma"),
    (NoisyBernoulli, {"probs": -0.1, "sigma": 1.0}, "probs"),
    (NoisyBernoulli, {"probs": [0.5, 1.1], "sigma": 1.0}, "probs"),
    (NoisyBernoulli, {"probs": NAN, "sigma": 1.0}, "probs"),
    (NoisyBernoulli, {"logits": NAN, "sigma": 1.0}, "logits"),
]
NOISE_LEVELS = ("sigma", "scale")


@pytest.mark.parametrize(
    "cls,params,name",
    BAD_PARAMETERS,
    ids=[f"{c.__name__}-{n}-{i}" for i, (c, _, n) in enumerate(BAD_PARAMETERS)],
)
def test_bad_parameters_raise(cls, params, name):
    # a noise level gets a message naming the rule and the fix; other parameters torch's constraint message
    match = f"{cls.__name__}: {name} must be finite and > 0 .* pass a finite {name} > 0" if name in NOISE_LEVELS else (
        f"parameter {name} .* constraint"
    )
    tensors = {k: torch.tensor(v) for k, v in params.items()}
    with pytest.raises(ValueError, match=match):
        cls(**tensors)
    # the same with plain Python numbers where the example is scalar
    if all(isinstance(v, float) for v in params.values()):
        with pytest.raises(ValueError, match=match):
            cls(**params)


@pytest.mark.parametrize("cls,name", [(NoisyNormal, "sigma"), (NoisyLaplace, "scale"), (NoisyBernoulli, "sigma")])
def test_noise_level_constraint_refuses_inf(cls, name):
    # constraints.positive admits +inf, so the declared constraint itself must refuse it
    c = cls.arg_constraints[name]
    assert c.check(torch.tensor([1e-30, 1.0, 1e30])).all()
    assert not c.check(torch.tensor([INF, NAN, 0.0, -1.0])).any()
    assert constraints.positive.check(torch.tensor(INF))  # the reason for the stricter constraint


def test_noise_level_check_follows_validation():
    # validation off: nothing is checked (like every torch argument check), the law is built as given
    assert NoisyNormal(0.0, INF, validate_args=False).sigma.item() == INF
    pyro.enable_validation(False)
    try:
        assert NoisyLaplace(0.0, INF).scale.item() == INF
        with pytest.raises(ValueError, match="scale must be finite"):
            NoisyLaplace(0.0, INF, validate_args=True)
    finally:
        pyro.enable_validation(True)


def test_noisy_bernoulli_needs_exactly_one_of_probs_logits_and_a_sigma():
    with pytest.raises(ValueError, match="exactly one of `probs` or `logits`"):
        NoisyBernoulli(probs=torch.tensor(0.5), logits=torch.tensor(0.0), sigma=1.0)
    with pytest.raises(ValueError, match="exactly one of `probs` or `logits`"):
        NoisyBernoulli(sigma=1.0)
    with pytest.raises(ValueError, match="`sigma`.* is required"):
        NoisyBernoulli(probs=torch.tensor(0.5))
    with pytest.raises(ValueError, match="`sigma`.* is required"):
        NoisyBernoulli(logits=torch.tensor(0.5))
    with pytest.raises(TypeError):
        NoisyBernoulli(torch.tensor(0.5), None, 1.0, True)  # validate_args is keyword-only


def test_log_prob_and_cdf_of_nan_raise(example):
    d = example.get_dist()
    data = example.get_test_data().clone()
    data.reshape(-1)[0] = NAN
    with pytest.raises(ValueError, match="support"):
        d.log_prob(data)
    with pytest.raises(ValueError, match="support"):
        d.cdf(data)


def test_explicit_validate_args_true_overrides_global_setting():
    pyro.enable_validation(False)
    try:
        with pytest.raises(ValueError, match="sigma"):
            NoisyNormal(torch.tensor(0.0), torch.tensor(-1.0), validate_args=True)
        with pytest.raises(ValueError, match="sigma"):
            NoisyBernoulli(probs=torch.tensor(0.5), sigma=torch.tensor(-1.0), validate_args=True)
    finally:
        pyro.enable_validation(True)


def test_reference_is_independent_of_the_code_under_test(bernoulli_reference):
    # guard against a reference that silently uses the library: spot values computed by hand
    ref = bernoulli_reference(probs=np.float64(0.25), sigma=np.float64(0.5))
    expected = 0.75 * scipy.stats.norm.pdf(0.3, 0, 0.5) + 0.25 * scipy.stats.norm.pdf(0.3, 1, 0.5)
    assert ref.logpdf(0.3) == pytest.approx(math.log(expected), rel=1e-15)
    by_hand = 0.75 * math.exp(-0.18) / (0.5 * math.sqrt(2 * math.pi)) + 0.25 * math.exp(-0.98) / (
        0.5 * math.sqrt(2 * math.pi)
    )
    assert expected == pytest.approx(by_hand, rel=1e-14)
