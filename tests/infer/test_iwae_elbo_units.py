"""IWAE_ELBO's options and edge paths: constructor checks, the particle plate's dim, validate="first"/"always",
the vectorize fallback, global latents with score-function and DReG gradients, DReG's refusals, ELBOModule."""

import math
import re
import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.distributions import constraints
from pyro.distributions.testing.rejection_gamma import RejectionGamma
from pyro.infer import Trace_ELBO
from pyro.nn import PyroModule, PyroParam

from pyro_noisevae.infer import IWAE_ELBO

F64 = dict(dtype=torch.float64)
S2 = 0.5  # noise variance of the conjugate pair below


def _full(message):
    return f"^{re.escape(message)}$"


def conjugate_model(x):
    r""":math:`z_n \sim N(0, 1)`, :math:`x_n \mid z_n \sim N(z_n, s^2)`: :math:`\log p(x_n) = \log N(x_n; 0, 1 + s^2)`."""
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(x.new_zeros(()), 1.0))
        pyro.sample("x", dist.Normal(z, S2**0.5), obs=x)


def exact_guide(x):
    """The exact posterior :math:`N(x / (1 + s^2), s^2 / (1 + s^2))`, its location offset a parameter."""
    c = pyro.param("c", x.new_tensor(0.0))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(x / (1 + S2) + c, (S2 / (1 + S2)) ** 0.5))


def prior_guide(x):
    """The prior as proposal, its location a parameter: :math:`q(z_n) = N(m, 1)`."""
    m = pyro.param("m", x.new_tensor(0.3))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(m, 1.0))


def _x(n=5, seed=0):
    return torch.randn(n, generator=torch.Generator().manual_seed(seed), **F64)


def _log_px(x):
    return dist.Normal(x.new_tensor(0.0), (1 + S2) ** 0.5).log_prob(x).sum().item()


# ------------------------------------------------------------------------------------ constructor


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(num_particles=0), ValueError, "num_particles must be an integer >= 1, got 0"),
    (dict(num_particles=True), ValueError, "num_particles must be an integer >= 1, got True"),
    (dict(num_particles=2.0), ValueError, "num_particles must be an integer >= 1, got 2.0"),
    (dict(max_plate_nesting=-1), ValueError, "max_plate_nesting must be None or an integer >= 0, got -1"),
    (dict(max_plate_nesting=True), ValueError, "max_plate_nesting must be None or an integer >= 0, got True"),
    (dict(max_plate_nesting=1.5), ValueError, "max_plate_nesting must be None or an integer >= 0, got 1.5"),
    (dict(gradient_estimator="vimco"), ValueError,
     "gradient_estimator must be one of ('standard', 'dreg'), got 'vimco'"),
    (dict(validate="never"), ValueError, "validate must be one of ('first', 'always'), got 'never'"),
    (dict(data_plate=0), TypeError, "data_plate must be a plate name (str) or None, got int"),
])
def test_constructor_refuses_bad_options_with_full_messages(kwargs, error, message):
    with pytest.raises(error, match=_full(message)):
        IWAE_ELBO(**kwargs)


def test_constructor_defaults_and_accepted_values():
    elbo = IWAE_ELBO()
    assert (elbo.num_particles, elbo.vectorize_particles, elbo.gradient_estimator, elbo.retain_graph,
            elbo.data_plate, elbo.validate, elbo.max_plate_nesting) == (2, True, "standard", None, None, "first",
                                                                        float("inf"))
    elbo = IWAE_ELBO(num_particles=np.int64(3), max_plate_nesting=np.int64(1), vectorize_particles=0,
                     gradient_estimator="dreg", retain_graph=True, data_plate="data", validate="always")
    assert type(elbo.num_particles) is int and type(elbo.vectorize_particles) is bool
    assert (elbo.num_particles, elbo.vectorize_particles, elbo.gradient_estimator, elbo.retain_graph,
            elbo.data_plate, elbo.validate, elbo.max_plate_nesting) == (3, False, "dreg", True, "data", "always", 1)
    assert IWAE_ELBO(max_plate_nesting=float("inf")).max_plate_nesting == float("inf")
    assert IWAE_ELBO(num_particles=1, max_plate_nesting=0).max_plate_nesting == 0


# ------------------------------------------------------------------------------------ the particle plate's dim


def _two_plate_pair(shapes):
    """Data plate at dim -2, a pixel plate at dim -1; the model records the shape of the latent it sees."""

    def model(x):
        with pyro.plate("data", x.shape[0], dim=-2):
            z = pyro.sample("z", dist.Normal(x.new_zeros(1), 1.0))
            shapes.append(tuple(z.shape))
            with pyro.plate("pixels", 2, dim=-1):
                pyro.sample("x", dist.Normal(z, S2**0.5), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0], dim=-2):
            pyro.sample("z", dist.Normal(0.4 * x.sum(-1, keepdim=True), 0.8))

    return model, guide


@pytest.mark.parametrize("K, nesting, attribute, particle_shape", [
    (3, None, float("inf"), (3, 6, 1)),  # inferred: 2 plates, particles at dim -3
    (3, 2, 3, (3, 6, 1)),  # given: the attribute counts the particle plate (Pyro's ELBO), the particles sit at dim -3
    (2, 2, 3, (2, 6, 1)),
    (3, 3, 4, (3, 1, 6, 1)),  # one spare dim: particles at dim -4
])
def test_particle_plate_sits_left_of_max_plate_nesting(K, nesting, attribute, particle_shape):
    """The particle plate sits at dim -(max_plate_nesting + 1), as in Pyro's Trace_ELBO; the attribute follows Pyro's
    convention of counting the particle plate (the first release put it one dim further left, at -(n + 2), when
    max_plate_nesting was given)."""
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(0), **F64)
    shapes = []
    model, guide = _two_plate_pair(shapes)
    elbo = IWAE_ELBO(num_particles=K, max_plate_nesting=nesting)
    assert elbo.max_plate_nesting == attribute
    pyro.set_rng_seed(1)
    value = elbo.loss(model, guide, x)
    assert shapes[-1] == particle_shape
    if nesting is not None:
        trace_shapes = []
        Trace_ELBO(num_particles=K, max_plate_nesting=nesting, vectorize_particles=True).loss(
            *_two_plate_pair(trace_shapes), x)
        assert trace_shapes[-1] == particle_shape
    # the same draws (same seed) give the same loss wherever the particle plate sits
    pyro.set_rng_seed(1)
    assert IWAE_ELBO(num_particles=K).loss(model, guide, x) == pytest.approx(value, rel=1e-12)


@pytest.mark.parametrize("K, vectorize", [(1, True), (3, False)])
def test_given_nesting_is_the_programs_own_without_a_particle_plate(K, vectorize):
    """K = 1 or looped particles: no particle plate, the attribute is the value given, and Pyro's site-shape check
    (validation on) accepts the two plates; the values are the exact log p(x) with the exact posterior."""
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(0), **F64)
    shapes = []
    model, _ = _two_plate_pair(shapes)
    prec = 1 + 2 / S2

    def guide(x):
        with pyro.plate("data", x.shape[0], dim=-2):
            pyro.sample("z", dist.Normal(x.sum(-1, keepdim=True) / S2 / prec, prec**-0.5))

    elbo = IWAE_ELBO(num_particles=K, max_plate_nesting=2, vectorize_particles=vectorize)
    assert elbo.max_plate_nesting == 2
    log_px = dist.MultivariateNormal(x.new_zeros(2), torch.ones(2, 2, **F64) + S2 * torch.eye(2, **F64)).log_prob(x)
    assert -elbo.loss(model, guide, x) == pytest.approx(log_px.sum().item(), rel=1e-10)
    assert shapes[-1] == (6, 1)


# ------------------------------------------------------------------------------------ validate="first" / "always"


def _bernoulli_obs_pair():
    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(()), 1.0))
            pyro.sample("x", dist.Bernoulli(logits=z), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x.new_zeros(()), 1.0))

    return model, guide


@pytest.mark.parametrize("vectorize", [True, False])
def test_validate_first_checks_the_first_call_and_always_every_call(vectorize):
    """An observation outside the Bernoulli's support: refused by Pyro's validation on the first call of a pair, and
    on every call with validate="always"; with validate="first" later calls skip the check."""
    model, guide = _bernoulli_obs_pair()
    good, bad = torch.tensor([0.0, 1.0, 1.0, 0.0]), torch.tensor([0.0, 0.5, 1.0, 0.0])
    support = re.escape("to be within the support (Boolean()) of the distribution Bernoulli(logits: ")
    with pytest.raises(ValueError, match=support):
        IWAE_ELBO(num_particles=3, vectorize_particles=vectorize).loss(model, guide, bad)
    first = IWAE_ELBO(num_particles=3, vectorize_particles=vectorize)
    first.loss(model, guide, good)
    # unchecked: the value is the bound of the (improper) Bernoulli log density x z - softplus(z), guide = prior
    pyro.set_rng_seed(2)
    value = first.loss(model, guide, bad)
    pyro.set_rng_seed(2)
    if vectorize:
        with pyro.plate("num_particles_vectorized", 3, dim=-2):
            z = poutine.trace(guide).get_trace(bad).nodes["z"]["value"]
    else:
        z = torch.stack([poutine.trace(guide).get_trace(bad).nodes["z"]["value"] for _ in range(3)])
    log_w = bad * z - torch.nn.functional.softplus(z)
    assert value == pytest.approx(-(log_w.logsumexp(0) - math.log(3)).sum().item(), rel=1e-6)
    always = IWAE_ELBO(num_particles=3, vectorize_particles=vectorize, validate="always")
    always.loss(model, guide, good)
    with pytest.raises(ValueError, match=support):
        always.loss(model, guide, bad)


@pytest.mark.disable_validation
@pytest.mark.parametrize("validate", ["first", "always"])
def test_a_nan_loss_warns_on_checked_calls(validate):
    """Pyro's NaN check of the loss runs on the checked calls: the first call of a pair, or every call."""
    x = torch.tensor([0.3, float("nan"), -1.0], **F64)
    elbo = IWAE_ELBO(num_particles=2, validate=validate)
    with pytest.warns(UserWarning, match=_full("Encountered NaN: loss")):
        assert math.isnan(elbo.loss(conjugate_model, prior_guide, x))
    if validate == "always":
        with pytest.warns(UserWarning, match=_full("Encountered NaN: loss")):
            elbo.loss(conjugate_model, prior_guide, x)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert math.isnan(elbo.loss(conjugate_model, prior_guide, x))


# ------------------------------------------------------------------------------------ setup cache, fallback


class _Unhashable:
    """A callable program that cannot be a dict key (defines __eq__ without __hash__)."""

    def __init__(self, fn):
        self.fn = fn

    def __eq__(self, other):
        return isinstance(other, _Unhashable) and other.fn is self.fn

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)


@pytest.mark.parametrize("vectorize", [True, False])
def test_unhashable_programs_are_evaluated_without_the_cache(vectorize):
    x = _x()
    elbo = IWAE_ELBO(num_particles=3, vectorize_particles=vectorize)
    for _ in range(2):
        assert -elbo.loss(_Unhashable(conjugate_model), _Unhashable(exact_guide), x) == pytest.approx(
            _log_px(x), rel=1e-10)


def test_each_model_guide_pair_has_its_own_structure():
    """A pair with a global latent after a pair without: the structures (global sites) are not shared."""
    x = _x(6, seed=2) + 1.0
    model, guide, log_px = _global_pair(x)
    elbo = IWAE_ELBO(num_particles=3)
    assert -elbo.loss(conjugate_model, exact_guide, x) == pytest.approx(_log_px(x), rel=1e-10)
    assert -elbo.loss(model, guide, x) == pytest.approx(log_px, rel=1e-10)
    assert -elbo.loss(conjugate_model, exact_guide, x) == pytest.approx(_log_px(x), rel=1e-10)


def _fallback_message(error):
    """The whole warning; Pyro may append the trace shapes to the error's message."""
    return (r"(?s)^" + re.escape(f"the programs failed under a vectorized particle plate ({error}") + r"(\nTrace Shapes:.*)?"
            + re.escape("); falling back to looped particles (pass vectorize_particles=False to choose this explicitly)")
            + "$")


def _error(message):
    """The whole error message, and the trace shapes Pyro appends to it."""
    return r"(?s)^" + re.escape(message) + r"\nTrace Shapes:.*$"


def _unpacking_model(x):
    """``n, = z.shape`` holds for one particle and raises ValueError under a particle plate."""
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(x.new_zeros(()), 1.0))
        (n,) = z.shape
        pyro.sample("x", dist.Normal(z.reshape(n), S2**0.5), obs=x)


def _indexing_model(x):
    """``z[arange(n)]`` holds for one particle and raises IndexError under a particle plate of K < n."""
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(x.new_zeros(()), 1.0))
        pyro.sample("x", dist.Normal(z[torch.arange(x.shape[0])], S2**0.5), obs=x)


@pytest.mark.parametrize("model, error", [
    (_unpacking_model, "ValueError: too many values to unpack (expected 1)"),
    (_indexing_model, "IndexError: index 2 is out of bounds for dimension 0 with size 2"),
])
def test_value_and_index_errors_fall_back_to_looped_particles_with_K2(model, error):
    x = _x()
    with pytest.warns(RuntimeWarning, match=_fallback_message(error)):
        value = IWAE_ELBO(num_particles=2).loss(model, exact_guide, x)
    assert -value == pytest.approx(_log_px(x), rel=1e-10)


def test_when_looped_particles_fail_too_the_vectorized_error_is_raised():
    calls = []

    def model(x):
        calls.append(None)
        if len(calls) > 3:  # calls 1, 2: probe and setup; 3: the vectorized pass; then the looped particles
            raise RuntimeError("the looped pass fails too")
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(()), 1.0))
            pyro.sample("x", dist.Normal(z.reshape(x.shape[0]), S2**0.5), obs=x)  # breaks under a particle plate

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning either
        with pytest.raises(RuntimeError, match=_error("shape '[5]' is invalid for input of size 15")):
            IWAE_ELBO(num_particles=3).loss(model, exact_guide, _x())
    assert len(calls) == 4


def test_a_program_failing_vectorized_after_its_first_call_raises():
    """The fallback is decided on the first call: a later failure under the particle plate is the program's error."""
    calls = []

    def model(x):
        calls.append(None)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(()), 1.0))
            loc = z.reshape(x.shape[0]) if len(calls) > 3 else z
            pyro.sample("x", dist.Normal(loc, S2**0.5), obs=x)

    x = _x()
    elbo = IWAE_ELBO(num_particles=3)
    assert -elbo.loss(model, exact_guide, x) == pytest.approx(_log_px(x), rel=1e-10)  # calls 1-3: probe, setup, pass
    with pytest.raises(RuntimeError, match=_error("shape '[5]' is invalid for input of size 15")):
        elbo.loss(model, exact_guide, x)


def test_the_fallback_keeps_a_global_latent_drawn_once():
    """A model with a global mean that breaks under the particle plate: the looped particles still share one draw of
    the global, so the exact posterior as guide gives log p(x) exactly."""
    x = _x(6, seed=2) + 1.0
    _, guide, log_px = _global_pair(x)

    def model(x):
        mu = pyro.sample("mu", dist.Normal(x.new_zeros(()), 1.0))
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(mu, 1.0))
            (n,) = z.shape  # breaks under a particle plate
            pyro.sample("x", dist.Normal(z.reshape(n), 0.5), obs=x)

    elbo = IWAE_ELBO(num_particles=3)
    with pytest.warns(RuntimeWarning, match=_fallback_message("ValueError: too many values to unpack (expected 1)")):
        assert -elbo.loss(model, guide, x) == pytest.approx(log_px, rel=1e-10)
    assert -elbo.loss(model, guide, x) == pytest.approx(log_px, rel=1e-10)


# ------------------------------------------------------------------------------------ data plate, no observations


def test_named_data_plate_with_a_global_latent_and_a_nested_plate():
    r"""A global mean, local latents and observations in a pixel plate nested in the data plate: two plates hold every
    observation, so the data plate must be named; then the loss is the one of the same model written with
    ``.to_event(1)`` (same draws), and with the exact posterior as guide it is log p(x)."""
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(4), **F64) + 0.5
    n = x.shape[0]
    # z_n | mu ~ N(mu, 1), x_nj | z_n ~ N(z_n, s^2): marginally x_n ~ N(mu, 1 1' + s^2 I); mu ~ N(0, 1)
    cov = torch.ones(2 * n, 2 * n, **F64) + torch.block_diag(*[torch.ones(2, 2, **F64)] * n) + S2 * torch.eye(2 * n, **F64)
    log_px = dist.MultivariateNormal(x.new_zeros(2 * n), cov).log_prob(x.reshape(-1)).item()
    # exact posterior: mu | x, then z_n | x_n, mu with precision 1 + 2 / s^2
    prec_z = 1 + 2 / S2
    marg = torch.linalg.inv(torch.ones(2, 2, **F64) + S2 * torch.eye(2, **F64))  # per point precision of x_n given mu
    prec_mu = 1 + n * marg.sum().item()
    mean_mu = (marg @ x.T).sum().item() / prec_mu

    def nested_model(x):
        mu = pyro.sample("mu", dist.Normal(x.new_zeros(()), 1.0))
        with pyro.plate("data", x.shape[0], dim=-2):
            z = pyro.sample("z", dist.Normal(mu.expand(1), 1.0))
            with pyro.plate("pixels", 2, dim=-1):
                pyro.sample("x", dist.Normal(z, S2**0.5), obs=x)

    def nested_guide(x):
        mu = pyro.sample("mu", dist.Normal(x.new_tensor(mean_mu), prec_mu**-0.5))
        with pyro.plate("data", x.shape[0], dim=-2):
            pyro.sample("z", dist.Normal((mu + x.sum(-1, keepdim=True) / S2) / prec_z, prec_z**-0.5))

    def flat_model(x):
        mu = pyro.sample("mu", dist.Normal(x.new_zeros(()), 1.0))
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(mu, 1.0))
            pyro.sample("x", dist.Normal(z.unsqueeze(-1), S2**0.5).to_event(1), obs=x)

    def flat_guide(x):
        mu = pyro.sample("mu", dist.Normal(x.new_tensor(mean_mu), prec_mu**-0.5))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal((mu + x.sum(-1) / S2) / prec_z, prec_z**-0.5))

    with pytest.raises(ValueError, match=_full("several plates ['data', 'pixels'] hold every observed site; say which "
                                               "one indexes data points with data_plate=")):
        IWAE_ELBO(num_particles=3).loss(nested_model, nested_guide, x)
    pyro.set_rng_seed(3)
    nested = IWAE_ELBO(num_particles=3, data_plate="data").loss(nested_model, nested_guide, x)
    pyro.set_rng_seed(3)
    flat = IWAE_ELBO(num_particles=3).loss(flat_model, flat_guide, x)
    assert nested == pytest.approx(flat, rel=1e-12)
    assert -nested == pytest.approx(log_px, rel=1e-10)


@pytest.mark.parametrize("vectorize", [True, False])
def test_a_scale_on_a_model_without_observations_acts_after_the_logsumexp(vectorize):
    """No observed site: the scale shared by the latent sites is the replication weight, applied after the
    log-sum-exp (the loss is exactly half the unscaled one, same draws)."""

    def model(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x, 1.0))

    elbo = IWAE_ELBO(num_particles=3, vectorize_particles=vectorize)
    x = _x()
    pyro.set_rng_seed(5)
    plain = elbo.loss(model, prior_guide, x)
    pyro.set_rng_seed(5)
    half = elbo.loss(poutine.scale(model, scale=0.5), poutine.scale(prior_guide, scale=0.5), x)
    assert half == pytest.approx(0.5 * plain, rel=1e-12)
    assert abs(plain) > 1.0  # the scale has something to act on


def _replayed(guide, x, K, vectorize):
    """The guide's z of an IWAE_ELBO call made right after the same seed: (K, N)."""
    if vectorize:
        with pyro.plate("num_particles_vectorized", K, dim=-2):
            return poutine.trace(guide).get_trace(x).nodes["z"]["value"]
    return torch.stack([poutine.trace(guide).get_trace(x).nodes["z"]["value"] for _ in range(K)])


def _two_observations_model(s1, s2, num_data=None):
    """The conjugate pair observed twice (x1, x2 with the same noise), under scales s1 and s2."""

    def model(x):
        plate = pyro.plate("data", x.shape[0]) if num_data is None else pyro.plate(
            "data", num_data, subsample=torch.arange(x.shape[0]))
        with plate:
            z = pyro.sample("z", dist.Normal(x.new_zeros(()), 1.0))
            with poutine.scale(scale=s1):
                pyro.sample("x1", dist.Normal(z, S2**0.5), obs=x)
            with poutine.scale(scale=s2):
                pyro.sample("x2", dist.Normal(z, S2**0.5), obs=-x)

    return model


def _subsampled_prior_guide(num_data=None):
    def guide(x):
        m = pyro.param("m", x.new_tensor(0.3))
        plate = pyro.plate("data", x.shape[0]) if num_data is None else pyro.plate(
            "data", num_data, subsample=torch.arange(x.shape[0]))
        with plate:
            pyro.sample("z", dist.Normal(m, 1.0))

    return guide


@pytest.mark.parametrize("vectorize", [True, False])
def test_subsampling_with_differently_scaled_observations(vectorize):
    """Observed sites with different scales (0.5 and 1) keep them inside the log-sum-exp; the mini-batch factor N/B
    still acts after it: with the same draws the subsampled loss is exactly N/B times the unsubsampled one, which is
    the hand-made log-sum-exp."""
    x, K, N = _x(), 3, 35
    elbo = IWAE_ELBO(num_particles=K, vectorize_particles=vectorize)
    pyro.set_rng_seed(2)
    plain = elbo.loss(_two_observations_model(0.5, 1.0), _subsampled_prior_guide(), x)
    pyro.set_rng_seed(2)
    scaled = elbo.loss(_two_observations_model(0.5, 1.0, N), _subsampled_prior_guide(N), x)
    assert scaled == pytest.approx(N / 5 * plain, rel=1e-12)
    pyro.set_rng_seed(2)
    z = _replayed(prior_guide, x, K, vectorize)
    noise = dist.Normal(z, S2**0.5)
    log_w = (0.5 * noise.log_prob(x) + noise.log_prob(-x) + dist.Normal(z.new_tensor(0.0), 1.0).log_prob(z)
             - dist.Normal(z.new_tensor(0.3), 1.0).log_prob(z))
    assert plain == pytest.approx(-(log_w.logsumexp(0) - math.log(K)).sum().item(), rel=1e-12)


def test_a_replication_weight_on_all_sites_and_beta_on_the_latent():
    """poutine.scale(0.5) on every site (the observed sites' common scale: a replication weight, after the
    log-sum-exp) and beta = 2 on the latent only (relative to the observations: inside): with the same draws the
    loss is exactly half the loss with beta alone, which is the hand-made log-sum-exp of log p(x|z) + 2 (log p(z) -
    log q(z))."""
    from pyro_noisevae.handlers import beta_scale

    x, K = _x(), 4
    model, guide = beta_scale(conjugate_model, beta=2.0), beta_scale(prior_guide, beta=2.0)
    elbo = IWAE_ELBO(num_particles=K)
    pyro.set_rng_seed(3)
    beta_only = elbo.loss(model, guide, x)
    pyro.set_rng_seed(3)
    both = elbo.loss(poutine.scale(model, scale=0.5), poutine.scale(guide, scale=0.5), x)
    assert both == pytest.approx(0.5 * beta_only, rel=1e-12)
    pyro.set_rng_seed(3)
    z = _replayed(prior_guide, x, K, True)
    log_w = (dist.Normal(z, S2**0.5).log_prob(x)
             + 2.0 * (dist.Normal(z.new_tensor(0.0), 1.0).log_prob(z) - dist.Normal(z.new_tensor(0.3), 1.0).log_prob(z)))
    assert beta_only == pytest.approx(-(log_w.logsumexp(0) - math.log(K)).sum().item(), rel=1e-12)


@pytest.mark.parametrize("vectorize", [True, False])
@pytest.mark.parametrize("where", ["observation", "all sites"])
def test_masked_sites_drop_out_of_the_log_weights(where, vectorize):
    """poutine.mask on the observation (missing data: the masked points keep their prior term) or on every site of
    the masked points (they contribute nothing), against the hand-made log-sum-exp with the same draws."""
    x, K = _x(), 3
    keep = torch.tensor([True, False, True, True, False])

    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(()), 1.0))
            with poutine.mask(mask=keep):
                pyro.sample("x", dist.Normal(z, S2**0.5), obs=x)

    if where == "all sites":
        model, guide = poutine.mask(conjugate_model, mask=keep), poutine.mask(prior_guide, mask=keep)
    else:
        guide = prior_guide
    pyro.set_rng_seed(4)
    value = IWAE_ELBO(num_particles=K, vectorize_particles=vectorize).loss(model, guide, x)
    pyro.set_rng_seed(4)
    z = _replayed(prior_guide, x, K, vectorize)
    log_lik = dist.Normal(z, S2**0.5).log_prob(x) * keep
    log_prior_ratio = dist.Normal(z.new_tensor(0.0), 1.0).log_prob(z) - dist.Normal(z.new_tensor(0.3), 1.0).log_prob(z)
    if where == "all sites":
        log_prior_ratio = log_prior_ratio * keep
    log_w = log_lik + log_prior_ratio
    assert value == pytest.approx(-(log_w.logsumexp(0) - math.log(K)).sum().item(), rel=1e-12)


# ------------------------------------------------------------------------------------ global latents


def _global_pair(x):
    r""":math:`\mu \sim N(0, 1)`, :math:`z_n \mid \mu \sim N(\mu, 1)`, :math:`x_n \mid z_n \sim N(z_n, 1/4)` with the
    exact posterior as guide (its mean a parameter): every weight is :math:`p(x)`."""
    n = x.shape[0]
    prec = 1.0 + n / 1.25

    def model(x):
        mu = pyro.sample("mu", dist.Normal(x.new_zeros(()), 1.0))
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(mu, 1.0))
            pyro.sample("x", dist.Normal(z, 0.5), obs=x)

    def guide(x):
        m = pyro.param("m_mu", x.sum() / 1.25 / prec)
        mu = pyro.sample("mu", dist.Normal(m, prec**-0.5))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal((mu + 4 * x) / 5, 0.2**0.5))

    log_px = dist.MultivariateNormal(x.new_zeros(n), torch.ones(n, n, **F64) + 1.25 * torch.eye(n, **F64)).log_prob(x)
    return model, guide, log_px.item()


def test_dreg_refuses_a_local_site_that_depends_on_a_global_latent():
    x = _x(6, seed=2) + 1.0
    model, guide, log_px = _global_pair(x)
    message = ("gradient_estimator='dreg': guide site 'z' depends on an earlier guide latent; the stopped-parameter log "
               "q would also stop that dependence and bias the gradient. Use gradient_estimator='standard' for "
               "hierarchical guides.")
    for vectorize in (True, False):
        elbo = IWAE_ELBO(num_particles=3, gradient_estimator="dreg", vectorize_particles=vectorize)
        with pytest.raises(NotImplementedError, match=_full(message)):
            elbo.differentiable_loss(model, guide, x)
        # a first call without gradients (loss: the values do not depend on the estimator) cannot check the guide
        # with autograd; the first call with them does (the first release skipped the check after such a call)
        elbo = IWAE_ELBO(num_particles=3, gradient_estimator="dreg", vectorize_particles=vectorize)
        assert -elbo.loss(model, guide, x) == pytest.approx(log_px, rel=1e-10)
        with pytest.raises(NotImplementedError, match=_full(message)):
            elbo.loss_and_grads(model, guide, x)


@pytest.mark.parametrize("vectorize", [True, False])
def test_dreg_with_an_independent_global_latent_gives_it_the_standard_gradient(vectorize):
    r"""A reparameterized global :math:`\mu` and local latents that do not depend on it: DReG runs, and :math:`\mu`'s
    parameter (not hooked: its term is the ELBO's, plus the pathwise term through the local weights) gets the same
    gradient as with the standard estimator, for the same draws; the local guide parameter's gradients differ."""

    def model(x):
        mu = pyro.sample("mu", dist.Normal(x.new_zeros(()), 1.0))
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(()), 1.0))
            pyro.sample("x", dist.Normal(mu + z, 0.5), obs=x)

    def guide(x):
        m = pyro.param("m_g", x.new_tensor(0.2))
        loc = pyro.param("loc_g", x.new_tensor(0.1))
        pyro.sample("mu", dist.Normal(m, 0.3))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, 0.7))

    x = _x(8, seed=3)
    out = {}
    for est in ("standard", "dreg"):
        pyro.set_rng_seed(4)
        loss = IWAE_ELBO(num_particles=3, gradient_estimator=est, vectorize_particles=vectorize).differentiable_loss(
            model, guide, x)
        grads = torch.autograd.grad(loss, [pyro.param("m_g").unconstrained(), pyro.param("loc_g").unconstrained()])
        out[est] = loss.item(), grads
    assert out["dreg"][0] == pytest.approx(out["standard"][0], rel=1e-12)
    torch.testing.assert_close(out["dreg"][1][0], out["standard"][1][0], rtol=1e-10, atol=1e-12)
    assert (out["dreg"][1][1] - out["standard"][1][1]).abs() > 1e-3


@pytest.mark.parametrize("vectorize", [True, False])
def test_score_function_gradient_of_a_global_discrete_latent_is_exact_in_expectation(vectorize):
    r"""
    A global :math:`c \sim \mathrm{Bernoulli}(0.3)`, :math:`x_n \mid c \sim N(2c, 1)`, guide
    :math:`c \sim \mathrm{Bernoulli}(\sigma(\theta))`, K = 3. With no local latent the estimator is a function of the
    one draw of :math:`c`, so its expectation :math:`\sum_c q(c)\, g(c)` is exact; it equals the gradient of the
    enumerated bound :math:`\sum_c q(c) [\log p(c) - \log q(c) + \sum_n \log p(x_n \mid c)]` (K copies of the global
    term counted once), and each value is that bracket for the drawn :math:`c`.
    """
    x = torch.tensor([1.2, 2.5, 0.4, 1.9], **F64)
    drawn = []

    def model(x):
        c = pyro.sample("c", dist.Bernoulli(x.new_tensor(0.3)))
        drawn.append(c.reshape(-1)[0].item())
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(2.0 * c, 1.0), obs=x)

    def guide(x):
        theta = pyro.param("theta_g", x.new_tensor(-0.4))
        pyro.sample("c", dist.Bernoulli(logits=theta))

    elbo = IWAE_ELBO(num_particles=3, vectorize_particles=vectorize)
    grads, values = {}, {}
    for seed in range(40):
        pyro.set_rng_seed(seed)
        loss = elbo.differentiable_loss(model, guide, x)
        (g,) = torch.autograd.grad(loss, [pyro.param("theta_g").unconstrained()])
        grads[drawn[-1]], values[drawn[-1]] = g, loss.item()
        if len(grads) == 2:
            break
    theta = torch.tensor(-0.4, requires_grad=True, **F64)
    q = dist.Bernoulli(logits=theta)
    bracket = {c: (dist.Bernoulli(torch.tensor(0.3, **F64)).log_prob(torch.tensor(c, **F64))
                   - q.log_prob(torch.tensor(c, **F64))
                   + dist.Normal(2.0 * c, 1.0).log_prob(x).sum()) for c in (0.0, 1.0)}
    bound = sum(q.log_prob(torch.tensor(c, **F64)).exp() * bracket[c] for c in (0.0, 1.0))
    (exact,) = torch.autograd.grad(-bound, [theta])
    p1 = torch.sigmoid(theta).item()
    torch.testing.assert_close((1 - p1) * grads[0.0] + p1 * grads[1.0], exact, rtol=1e-10, atol=1e-12)
    for c in (0.0, 1.0):
        assert values[c] == pytest.approx(-bracket[c].item(), rel=1e-12)


# ------------------------------------------------------------------------------------ DReG: refusals, several latents


def test_a_partially_reparameterized_guide_site_is_refused():
    def model(x):
        with pyro.plate("data", x.shape[0]):
            a = pyro.sample("a", dist.Gamma(x.new_tensor(2.0), 1.0))
            pyro.sample("x", dist.Normal(a, 1.0), obs=x)

    def guide(x):
        alpha = pyro.param("alpha", x.new_tensor(2.0), constraint=constraints.positive)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("a", RejectionGamma(alpha.expand(x.shape[0]), x.new_ones(x.shape[0])))

    message = ("IWAE_ELBO: guide site 'a' (RejectionGamma) is partially reparameterized (both score-function and "
               "pathwise terms); this estimator handles fully reparameterized or fully non-reparameterized sites only.")
    for est in ("standard", "dreg"):
        with pytest.raises(NotImplementedError, match=_full(message)):
            IWAE_ELBO(num_particles=2, gradient_estimator=est).loss(model, guide, _x().abs() + 1)


def test_dreg_refuses_a_non_reparameterized_site_with_the_full_message():
    def model(x):
        with pyro.plate("data", x.shape[0]):
            c = pyro.sample("c", dist.Bernoulli(x.new_tensor(0.3)))
            pyro.sample("x", dist.Normal(c, 1.0), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("c", dist.Bernoulli(x.new_tensor(0.5)))

    message = ("gradient_estimator='dreg' needs a reparameterized guide, but guide site 'c' (Bernoulli) has no rsample. "
               "Use gradient_estimator='standard' (score-function gradient) or a reparameterizable distribution.")
    with pytest.raises(ValueError, match=_full(message)):
        IWAE_ELBO(num_particles=2, gradient_estimator="dreg").loss(model, guide, _x())


def _three_latent_model(x):
    with pyro.plate("data", x.shape[0]):
        a = pyro.sample("a", dist.Normal(x.new_zeros(()), 1.0))
        b = pyro.sample("b", dist.Normal(x.new_zeros(()), 1.0))
        e = pyro.sample("e", dist.Normal(x.new_zeros(()), 1.0))
        pyro.sample("x", dist.Normal(a + b + e, 0.5), obs=x)


def test_dreg_refuses_a_site_depending_on_one_of_several_earlier_latents():
    """Guide a, b independent, e ~ N(b, .): the dependence on b is found although a is unrelated."""

    def guide(x):
        s = pyro.param("s", x.new_tensor(0.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("a", dist.Normal(s, 1.0))
            b = pyro.sample("b", dist.Normal(s, 1.0))
            pyro.sample("e", dist.Normal(b, 1.0))

    with pytest.raises(NotImplementedError, match="^" + re.escape("gradient_estimator='dreg': guide site 'e' depends")):
        IWAE_ELBO(num_particles=2, gradient_estimator="dreg").differentiable_loss(_three_latent_model, guide, _x())


@pytest.mark.parametrize("vectorize", [True, False])
def test_dreg_with_independent_latents_and_a_parameter_free_one(vectorize):
    """A mean-field guide (a, b with their own parameters, e ~ N(0, 1) with none): DReG accepts it on every call,
    backpropagates, and gives the model parameter the standard estimator's gradient (same draws); the guide's
    gradients differ from the standard ones."""

    def model(x):
        w = pyro.param("w", x.new_tensor(0.8))
        with pyro.plate("data", x.shape[0]):
            a = pyro.sample("a", dist.Normal(x.new_zeros(()), 1.0))
            b = pyro.sample("b", dist.Normal(x.new_zeros(()), 1.0))
            e = pyro.sample("e", dist.Normal(x.new_zeros(()), 1.0))
            pyro.sample("x", dist.Normal(w * a + b + e, 0.5), obs=x)

    def guide(x):
        la = pyro.param("la", x.new_tensor(0.1))
        sb = pyro.param("sb", x.new_tensor(0.9), constraint=constraints.positive)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("a", dist.Normal(la, 1.0))
            pyro.sample("b", dist.Normal(0.0, sb))
            pyro.sample("e", dist.Normal(x.new_zeros(()), 1.0))

    x = _x()
    names = ["w", "la", "sb"]
    out = {}
    for est in ("standard", "dreg"):
        elbo = IWAE_ELBO(num_particles=3, gradient_estimator=est, vectorize_particles=vectorize)
        for seed in (6, 7):  # the second call runs without the first call's checks
            pyro.set_rng_seed(seed)
            loss = elbo.differentiable_loss(model, guide, x)
            grads = torch.autograd.grad(loss, [pyro.param(n).unconstrained() for n in names])
        out[est] = loss.item(), grads
    assert out["dreg"][0] == pytest.approx(out["standard"][0], rel=1e-12)
    torch.testing.assert_close(out["dreg"][1][0], out["standard"][1][0], rtol=1e-10, atol=1e-12)
    for i in (1, 2):
        assert (out["dreg"][1][i] - out["standard"][1][i]).abs() > 1e-4


# ------------------------------------------------------------------------------------ public interface


class _VAE(PyroModule):
    def __init__(self):
        super().__init__()
        self.shift = PyroParam(torch.tensor(0.0, **F64))
        self.offset = PyroParam(torch.tensor(0.0, **F64))

    def model(self, x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(()), 1.0))
            pyro.sample("x", dist.Normal(z + self.shift, S2**0.5), obs=x)

    def guide(self, x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x / (1 + S2) + self.offset, (S2 / (1 + S2)) ** 0.5))


def test_elbo_module_of_bound_methods_holds_the_modules_parameters():
    """The ELBOModule of (vae.model, vae.guide) registers the VAE once: its parameters are the VAE's, and a DReG
    loss at the exact posterior gives the guide's offset no gradient and the model's shift one."""
    vae = _VAE()
    module = IWAE_ELBO(num_particles=3, gradient_estimator="dreg")(vae.model, vae.guide)
    assert list(module.owners) == [vae]
    params = dict(vae.named_parameters())
    assert len(params) == 2 and {id(p) for p in module.parameters()} == {id(p) for p in params.values()}
    x = _x()
    loss = module(x)
    assert -loss.item() == pytest.approx(_log_px(x), rel=1e-10)
    loss.backward()
    grads = {n.split("_")[0]: p.grad for n, p in params.items()}
    assert grads["offset"].abs() < 1e-9 < grads["shift"].abs()
    # two owners, and plain functions register nothing
    other = _VAE()
    assert list(IWAE_ELBO()(vae.model, other.guide).owners) == [vae, other]
    assert len(IWAE_ELBO()(conjugate_model, exact_guide).owners) == 0


def test_loss_and_grads_of_parameter_free_programs_returns_the_loss():
    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x / (1 + S2), (S2 / (1 + S2)) ** 0.5))

    x = _x()
    assert -IWAE_ELBO(num_particles=3).loss_and_grads(conjugate_model, guide, x) == pytest.approx(_log_px(x), rel=1e-10)


@pytest.mark.parametrize("retain_graph", [None, True])
def test_retain_graph_keeps_the_graph_after_loss_and_grads(retain_graph):
    """loss_and_grads passes retain_graph to backward: with True a second backward pass can go through the graph of
    the programs (here the guide's location exp(2 m)), with the default it is freed."""
    kept = []

    def guide(x):
        loc = (2.0 * pyro.param("m", x.new_tensor(0.3))).exp()
        kept.append(loc)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, 1.0))

    elbo = IWAE_ELBO(num_particles=3, retain_graph=retain_graph)
    elbo.loss_and_grads(conjugate_model, guide, _x())
    assert pyro.param("m").unconstrained().grad.abs() > 1e-3
    if retain_graph:
        kept[-1].backward()
    else:
        with pytest.raises(RuntimeError, match="^Trying to backward through the graph a second time"):
            kept[-1].backward()


def test_get_trace_returns_one_unvectorized_pair():
    """The ELBO base class's hook: one (model, guide) trace pair without particles, log densities computed."""
    x = _x()
    elbo = IWAE_ELBO(num_particles=4)
    pyro.set_rng_seed(0)
    model_trace, guide_trace = elbo._get_trace(conjugate_model, exact_guide, (x,), {})
    z = guide_trace.nodes["z"]["value"]
    assert z.shape == (5,) and torch.equal(model_trace.nodes["z"]["value"], z)
    expected = dist.Normal(z, S2**0.5).log_prob(x) + dist.Normal(z.new_tensor(0.0), 1.0).log_prob(z)
    torch.testing.assert_close(model_trace.nodes["x"]["log_prob"] + model_trace.nodes["z"]["log_prob"], expected)


@pytest.mark.parametrize("vectorize", [True, False])
def test_dreg_gives_masked_points_no_guide_gradient(vectorize):
    """poutine.mask on every site of some points: they drop out of the bound, so DReG gives their own guide
    parameters exactly zero gradient (and the others a non-zero one)."""
    x, keep = _x(), torch.tensor([True, False, True, True, False])

    def local_guide(x):
        loc = pyro.param("loc_n", torch.full((x.shape[0],), 0.3, **F64))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, 0.9))

    model, guide = poutine.mask(conjugate_model, mask=keep), poutine.mask(local_guide, mask=keep)
    loss = IWAE_ELBO(num_particles=3, gradient_estimator="dreg", vectorize_particles=vectorize).differentiable_loss(
        model, guide, x)
    (grad,) = torch.autograd.grad(loss, [pyro.param("loc_n").unconstrained()])
    assert (grad[~keep] == 0).all() and (grad[keep].abs() > 1e-4).all()


def test_dreg_with_a_delta_site_carrying_a_log_density_equals_the_direct_guide():
    r"""An autoguide-style guide with a nonlinear transform: an auxiliary draw :math:`a \sim N(m, s)` and the latent
    ``Delta(exp(a), log_density=-a)`` (the change of variables), against the direct ``LogNormal(m, s)`` guide: the
    same draws, the same DReG loss and gradients (the Delta's log density keeps its path through :math:`a`)."""

    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.LogNormal(x.new_zeros(()), 1.0))
            pyro.sample("x", dist.Normal(z, 0.5), obs=x)

    def params(x):
        return (pyro.param("m_d", torch.full((x.shape[0],), 0.2, **F64)),
                pyro.param("s_d", torch.full((x.shape[0],), 0.6, **F64), constraint=constraints.positive))

    def direct(x):
        m, s = params(x)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.LogNormal(m, s))

    def via_delta(x):
        m, s = params(x)
        with pyro.plate("data", x.shape[0]):
            a = pyro.sample("a", dist.Normal(m, s), infer={"is_auxiliary": True})
            pyro.sample("z", dist.Delta(a.exp(), log_density=-a))

    x, out = _x().abs() + 0.5, []
    for guide in (direct, via_delta):
        pyro.set_rng_seed(3)
        loss = IWAE_ELBO(num_particles=4, gradient_estimator="dreg").differentiable_loss(model, guide, x)
        out.append((loss.item(), torch.autograd.grad(loss, [pyro.param(n).unconstrained() for n in ("m_d", "s_d")])))
    assert out[1][0] == pytest.approx(out[0][0], rel=1e-12)
    for g_delta, g_direct in zip(out[1][1], out[0][1]):
        torch.testing.assert_close(g_delta, g_direct, rtol=1e-10, atol=1e-12)
        assert g_direct.abs().max() > 1e-3


def test_dreg_dependence_check_runs_once_on_the_first_call_with_gradients(monkeypatch):
    """DReG's hierarchy check (an extra autograd pass per guide site) runs for a (model, guide) pair on its first call
    that records gradients only: not under loss's no_grad, and not again on later calls."""
    calls = []
    check = IWAE_ELBO._check_no_latent_dependence

    def spy(name, site, earlier_values):
        calls.append(name)
        return check(name, site, earlier_values)

    monkeypatch.setattr(IWAE_ELBO, "_check_no_latent_dependence", staticmethod(spy))

    def guide(x):
        s = pyro.param("s", x.new_tensor(0.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("a", dist.Normal(s, 1.0))
            pyro.sample("b", dist.Normal(s, 1.0))
            pyro.sample("e", dist.Normal(s, 1.0))

    elbo = IWAE_ELBO(num_particles=3, gradient_estimator="dreg")
    elbo.loss(_three_latent_model, guide, _x())
    assert calls == []
    elbo.differentiable_loss(_three_latent_model, guide, _x())
    assert calls == ["a", "b", "e"]
    elbo.loss_and_grads(_three_latent_model, guide, _x())
    assert calls == ["a", "b", "e"]


@pytest.mark.disable_validation  # with validation on, Pyro's site-shape check refuses the undeclared dims first
def test_a_batch_dim_left_of_the_particle_plate_is_refused():
    """A latent with undeclared batch dims left of max_plate_nesting (here (4, 1) before the data plate, with
    max_plate_nesting=1): the particle plate is no longer the outer dim of the log weights, and IWAE_ELBO says so."""

    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(4, 1, x.shape[0]), 1.0))
            pyro.sample("x", dist.Normal(z, S2**0.5), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x.new_zeros(4, 1, x.shape[0]), 1.0))

    message = ("IWAE_ELBO expected 3 particles along the outer dim of the log weights, got shape (1, 3, 5); check "
               "max_plate_nesting and that every site is inside the particle plate")
    with pytest.raises(RuntimeError, match=_full(message)):
        IWAE_ELBO(num_particles=3, max_plate_nesting=1).loss(model, guide, _x())
