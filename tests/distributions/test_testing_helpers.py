"""The checkers of pyro_noisevae.distributions.testing must fail, with a message that says what is wrong, on a law that
breaks the contract they check (issue 15: the suites above only feed them correct laws)."""

import math

import pytest
import torch

from pyro_noisevae.distributions import NoisyLaplace, NoisyNormal
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
from pyro_noisevae.distributions.testing import _assert_close

F64 = dict(dtype=torch.float64)


def _normal(*batch):
    return NoisyNormal(torch.zeros(batch, **F64), torch.tensor(1.0, **F64))


class ExtraSampleDim(NoisyNormal):
    def sample(self, sample_shape=torch.Size()):
        return super().sample(sample_shape).unsqueeze(-1)


class SampleWithGrad(NoisyNormal):
    def sample(self, sample_shape=torch.Size()):
        return super().sample(sample_shape).requires_grad_()


class ShortRsample(NoisyNormal):
    def rsample(self, sample_shape=torch.Size()):
        return super().rsample(sample_shape)[..., :1]


class SummedLogProb(NoisyNormal):
    def log_prob(self, value):
        return super().log_prob(value).sum(-1)


class FlatMean(NoisyNormal):
    @property
    def mean(self):
        return super().mean.unsqueeze(-1)


class FlatVariance(NoisyNormal):
    @property
    def variance(self):
        return super().variance.unsqueeze(-1)


@pytest.mark.parametrize("cls,message", [
    (ExtraSampleDim, r"^sample shape \(2, 3, 4, 1\) != \(2, 3, 4\)$"),
    (SampleWithGrad, r"^sample\(\) must not carry gradients \(use rsample\(\)\)$"),
    (ShortRsample, r"^rsample shape \(2, 3, 1\) != \(2, 3, 4\)$"),
    (SummedLogProb, r"^log_prob shape \(2, 3\) != \(2, 3, 4\)$"),
    (FlatMean, r"^mean shape \(4, 1\) is wrong$"),
    (FlatVariance, r"^variance shape \(4, 1\) is wrong$"),
], ids=lambda v: v.__name__ if isinstance(v, type) else "")
def test_check_shapes_names_the_broken_shape(cls, message):
    d = cls(torch.zeros(4, **F64), 1.0)
    with pytest.raises(AssertionError, match=message):
        check_shapes(d)


def test_check_shapes_returns_its_sample_and_defaults_to_two_by_three():
    d = _normal(4)
    x = check_shapes(d)
    assert x.shape == (2, 3, 4) and x.dtype == torch.float64
    assert check_shapes(_normal(), (5,)).shape == (5,)  # empty batch: no to_event(1) step
    assert check_shapes(_normal(2, 4), ()).shape == (2, 4)


def test_check_shapes_skips_moments_a_law_does_not_have():
    class NoMoments(NoisyNormal):
        @property
        def mean(self):
            raise NotImplementedError

        @property
        def variance(self):
            raise NotImplementedError

    assert check_shapes(NoMoments(torch.zeros(3, **F64), 1.0)).shape == (2, 3, 3)
    e = check_expand(NoMoments(torch.zeros(3, **F64), 1.0), (2, 3))
    assert type(e) is NoMoments


def test_check_expand_names_what_expand_broke():
    class BaseExpand(NoisyNormal):
        def expand(self, batch_shape, _instance=None):
            return NoisyNormal(self.loc, self.sigma).expand(batch_shape)

    with pytest.raises(AssertionError, match=r"^expand returned NoisyNormal, not BaseExpand$"):
        check_expand(BaseExpand(torch.zeros(3, **F64), 1.0), (2, 3))

    class ForgetsValidation(NoisyNormal):
        def expand(self, batch_shape, _instance=None):
            new = super().expand(batch_shape, _instance)
            new._validate_args = not self._validate_args
            return new

    with pytest.raises(AssertionError, match=r"^expand must carry _validate_args over$"):
        check_expand(ForgetsValidation(torch.zeros(3, **F64), 1.0), (2, 3))

    class ShiftedExpand(NoisyNormal):
        def expand(self, batch_shape, _instance=None):
            new = self._get_checked_instance(ShiftedExpand, _instance)
            new = super().expand(batch_shape, _instance=new)
            new.loc = new.loc + 1e-3
            return new

    with pytest.raises(AssertionError, match=r"^expanded log_prob: values differ by up to"):
        check_expand(ShiftedExpand(torch.zeros(3, **F64), 1.0), (2, 3))


def test_float32_and_float64_tolerances_of_the_closeness_check():
    # torch.testing's defaults: a relative error of 1e-6 passes in float32 (rtol 1.3e-6) and fails in float64 (1e-7)
    a = torch.full((3,), 100.0, **F64)
    b = a * (1 + 1e-6)
    _assert_close(b.float(), a.float(), "x")
    with pytest.raises(AssertionError, match=r"^x: values differ by up to 1\.000e-04 \(rtol=1e-07, atol=1e-07\)$"):
        _assert_close(b, a, "x")
    # absolute tolerances near 0: 5e-6 passes in float32 (atol 1e-5), 2e-7 fails in float64 (atol 1e-7)
    _assert_close(torch.tensor([5e-6]), torch.tensor([0.0]), "y")
    with pytest.raises(AssertionError, match=r"^y: values differ"):
        _assert_close(torch.tensor([2e-7], **F64), torch.tensor([0.0], **F64), "y")
    with pytest.raises(AssertionError, match=r"^z: shape \(3,\) != \(1, 3\)$"):
        _assert_close(a, a.unsqueeze(0), "z")
    # and in float32 a relative error of 1e-4 (far above 1.3e-6 + 1e-5) or an absolute one of 1e-4 near 0 fails
    with pytest.raises(AssertionError, match=r"^w: values differ"):
        _assert_close(torch.tensor([1.0 + 1e-4]), torch.tensor([1.0]), "w")
    with pytest.raises(AssertionError, match=r"^w: values differ"):
        _assert_close(torch.tensor([1e-4]), torch.tensor([0.0]), "w")


def test_integrate_density_argument_checks():
    d = _normal(2)
    with pytest.raises(ValueError, match=r"^integrate_density needs event_shape == \(\), got \(2,\)$"):
        integrate_density(d.to_event(1), -1.0, 1.0)
    with pytest.raises(ValueError, match=r"^integrate_density needs num_points >= 5$"):
        integrate_density(d, -1.0, 1.0, num_points=3)
    integrate_density(d, -1.0, 1.0, num_points=5)  # the smallest grid
    integrate_density(d, -1.0, 1.0, num_points=4)  # made odd: 5 nodes
    with pytest.raises(ValueError, match=r"^integrate_density needs high > low$"):
        integrate_density(d, torch.tensor([-1.0, 1.0]), 1.0)


def test_integrate_density_values_and_even_node_counts():
    # int_{-1}^{1} N(y; 0, 1) dy = erf(1 / sqrt 2); an even count is raised to the next odd one
    d = NoisyNormal(torch.zeros(2, **F64), torch.tensor([1.0, 2.0], **F64))
    exact = torch.erf(torch.tensor([1.0, 0.5], **F64) / math.sqrt(2))
    fine, error = integrate_density(d, -1.0, 1.0, num_points=2000)
    same, _ = integrate_density(d, -1.0, 1.0, num_points=2001)
    assert torch.equal(fine, same)
    torch.testing.assert_close(fine, exact, rtol=1e-13, atol=1e-13)
    coarse, coarse_error = integrate_density(d, -1.0, 1.0, num_points=5)
    # Simpson's error on 5 nodes is of order 1e-4; the estimate |S_h - S_2h| is of the same order and bounds it
    assert ((coarse - exact).abs() <= coarse_error).all() and (coarse_error > 1e-6).all()
    assert (error < 1e-12).all()
    # a Laplace law (kink at the mode) integrates to 1 over 40 scales
    lap = NoisyLaplace(torch.tensor([0.0, 1.0], **F64), torch.tensor([0.5, 2.0], **F64))
    integral = check_normalization(lap, lap.loc - 40 * lap.scale, lap.loc + 40 * lap.scale, atol=1e-6)
    assert integral.shape == (2,)


def test_check_normalization_messages():
    class Half(NoisyNormal):
        def log_prob(self, value):
            return super().log_prob(value) - math.log(2)

    with pytest.raises(AssertionError, match=r"^density integrates to \[0\.5\d*\] \(max \|error\| 5\.00e-01 > 1\.0e-04\)$"):
        check_normalization(Half(torch.zeros(1, **F64), 1.0), -40.0, 40.0)
    with pytest.raises(ValueError, match=r"^quadrature error estimate .* exceeds atol/10 = 1\.0e-05: increase num_points"):
        check_normalization(_normal(1), -40.0, 40.0, num_points=11)
    # an error just under the tolerance passes: atol is an upper bound, not a strict one
    check_normalization(Half(torch.zeros(1, **F64), 1.0), -40.0, 40.0, atol=0.5 + 1e-9)


def test_check_moments_messages_and_outputs():
    class WrongMean(NoisyNormal):
        @property
        def mean(self):
            return super().mean + 0.1

    torch.manual_seed(0)
    with pytest.raises(AssertionError, match=r"^sample mean .* vs mean .*: \d+\.\d standard errors \(allowed 5\.0\)$"):
        check_moments(WrongMean(torch.zeros(2, **F64), 1.0), num_samples=20_000)

    class NanSample(NoisyNormal):
        def sample(self, sample_shape=torch.Size()):
            x = super().sample(sample_shape)
            x[0] = math.nan
            return x

    with pytest.raises(AssertionError, match=r"^samples contain nan or inf$"):
        check_moments(NanSample(torch.zeros(2, **F64), 1.0), num_samples=100)
    torch.manual_seed(0)
    d = NoisyNormal(torch.zeros(2, **F64), torch.tensor([1.0, 3.0], **F64))
    n = 20_000
    out = check_moments(d, num_samples=n)
    torch.manual_seed(0)
    x = d.sample((n,))  # the same draws: the outputs are their sample moments and standard errors
    torch.testing.assert_close(out["sample_mean"], x.mean(0))
    torch.testing.assert_close(out["sample_variance"], x.var(0))
    torch.testing.assert_close(out["mean_se"], (x.var(0) / n).sqrt())
    m4 = (x - x.mean(0)).pow(4).mean(0)
    torch.testing.assert_close(out["variance_se"], ((m4 - x.var(0).pow(2)) / n).sqrt())
    # the default draw count: 1e5 draws, so the mean's standard error is sd / sqrt(1e5) within sampling error
    out = check_moments(d)
    torch.testing.assert_close(out["mean_se"], d.stddev / math.sqrt(100_000), rtol=0.02, atol=0)


def test_a_tighter_moment_tolerance_fails_where_the_default_passes():
    # num_se is the tolerance in standard errors: a fixed draw whose worst z lies between 0 and 5
    torch.manual_seed(1)
    d = _normal(8)
    out = check_moments(d, num_samples=2_000)
    z = (out["sample_mean"] / out["mean_se"]).abs().max().item()
    torch.manual_seed(1)
    with pytest.raises(AssertionError, match="standard errors"):
        check_moments(d, num_samples=2_000, num_se=z * 0.99)


class ShiftedCdf(NoisyNormal):
    def cdf(self, value):
        return super().cdf(value - 1e-3)


class SteepCdf(NoisyNormal):
    def cdf(self, value):
        return super().cdf(1.01 * value)


def test_check_cdf_detects_a_wrong_cdf():
    d = ShiftedCdf(torch.zeros(2, **F64), 1.0)
    with pytest.raises(AssertionError, match=r"^cdf\(icdf\(u\)\) differs from u by .* > 1\.0e-10$"):
        check_cdf(d)
    # without icdf, the difference quotient catches a cdf that is not the integral of the density
    class NoIcdf(SteepCdf):
        def icdf(self, value):
            raise NotImplementedError

    with pytest.raises(AssertionError, match=r"^d/dy cdf differs from exp\(log_prob\) by .* times rtol \* p\(y\) \+ atol$"):
        check_cdf(NoIcdf(torch.zeros(2, **F64), 1.0))
    out = check_cdf(NoisyNormal(torch.zeros(2, **F64), 1.0), num_points=11, step=1e-4)
    assert out["max_roundtrip_error"] <= 1e-10 and 0 <= out["max_density_excess"] <= 1
    assert NoIcdf.__mro__[1] is SteepCdf
    with pytest.raises(ValueError, match=r"^check_cdf needs event_shape == \(\), got \(2,\)$"):
        check_cdf(_normal(2).to_event(1))


def test_check_cdf_quantiles_are_interior_and_spread():
    # the roundtrip runs on num_points quantiles strictly inside (0, 1): icdf(0) = -inf would fail it
    seen = {}

    class Spy(NoisyNormal):
        def icdf(self, value):
            seen["u"] = value.clone()
            return super().icdf(value)

    check_cdf(Spy(torch.zeros(2, **F64), 1.0), num_points=9)
    u = seen["u"][:, 0]
    assert u.shape == (9,) and torch.allclose(u, torch.arange(1, 10, **F64) / 10)


def test_gof_and_ks_argument_checks_and_shapes():
    e = _normal(2).to_event(1)
    with pytest.raises(ValueError, match=r"^check_goodness_of_fit needs event_shape == \(\), got \(2,\)$"):
        check_goodness_of_fit(e)
    with pytest.raises(ValueError, match=r"^check_ks needs event_shape == \(\), got \(2,\)$"):
        check_ks(e)
    torch.manual_seed(0)
    d = _normal(2, 3)
    assert check_ks(d, num_samples=2_000).shape == (2, 3)
    assert check_goodness_of_fit(d, num_samples=2_000).shape == (2, 3)
    assert check_goodness_of_fit(_normal(), num_samples=2_000).shape == ()


def test_ks_p_values_are_uniform_like_under_the_null_and_tiny_for_a_shift():
    # a correct sampler: p-values spread over (0, 1); a location shift of 0.2 sd at n = 4000: sqrt(n) D ~ 5
    torch.manual_seed(0)
    p = check_ks(_normal(20), num_samples=4_000)
    assert 0.2 < p.mean().item() < 0.8  # mean of 20 uniforms: sd 0.065

    class Shifted(NoisyNormal):
        def sample(self, sample_shape=torch.Size()):
            return super().sample(sample_shape) + 0.2

    torch.manual_seed(0)
    with pytest.raises(AssertionError, match=r"^Kolmogorov-Smirnov p-values .* include one below 5\.0e-04 \(statistics"):
        check_ks(Shifted(torch.zeros(2, **F64), 1.0), num_samples=4_000)

    class Wide(NoisyNormal):
        def sample(self, sample_shape=torch.Size()):
            return 1.5 * super().sample(sample_shape)

    torch.manual_seed(0)
    with pytest.raises(AssertionError, match=r"^goodness-of-fit p-values .* include one below 5\.0e-04$"):
        check_goodness_of_fit(Wide(torch.zeros(2, **F64), 1.0), num_samples=2_000)


def test_check_expand_refuses_a_wrong_event_shape_at_the_shape_check():
    class EventExpand(NoisyNormal):
        def expand(self, batch_shape, _instance=None):
            new = self._get_checked_instance(EventExpand, _instance)
            new = super().expand(batch_shape, _instance=new)
            new._event_shape = torch.Size([1])
            return new

    with pytest.raises(AssertionError) as info:
        check_expand(EventExpand(torch.zeros(3, **F64), 1.0), (2, 3))
    # the batch/event shape assertion fires, not a later one on the sample
    assert "e.event_shape == d.event_shape" in str(info.traceback[-1].statement)


class BumpCdf(NoisyNormal):
    """N(loc, 1) with a smooth bump of height 1e-4 added to the cdf on |y - loc| < 0.2 only (icdf left out)."""

    def cdf(self, value):
        z = ((value - self.loc) / 0.2).clamp(-1, 1)
        return super().cdf(value) + 1e-4 * (1 - z**2) ** 3

    def icdf(self, value):
        raise NotImplementedError


def test_check_cdf_sees_an_error_near_the_mode_and_reports_no_roundtrip_without_icdf():
    # the test points span mean +- 4 sd, including the neighbourhood of the mode
    with pytest.raises(AssertionError, match="d/dy cdf differs"):
        check_cdf(BumpCdf(torch.zeros(2, **F64), 1.0))
    from pyro_noisevae.distributions import NoisyBernoulli

    out = check_cdf(NoisyBernoulli(probs=torch.tensor([0.3, 0.6], **F64), sigma=0.5))  # no icdf: density check only
    assert out["max_roundtrip_error"] is None and out["max_density_excess"] <= 1


def test_check_cdf_uses_the_given_step_and_tolerances():
    d = NoisyNormal(torch.zeros(2, **F64), 1.0)
    # a step of half a standard deviation: truncation error delta^2 |p''| / 6 ~ 2e-2 p, far above rtol = 1e-5
    with pytest.raises(AssertionError, match="d/dy cdf differs"):
        check_cdf(d, step=0.5)
    # an absolute tolerance alone: the bump's slope error (up to ~1e-3) is above atol = 1e-4, and below 1e-2
    bump = BumpCdf(torch.zeros(2, **F64), 1.0)
    with pytest.raises(AssertionError, match="d/dy cdf differs"):
        check_cdf(bump, rtol=0.0, atol=1e-4)
    check_cdf(bump, rtol=0.0, atol=1e-2)
    # the reported excess is the worst ratio to the tolerance: tightening by 1.5 x the excess must fail
    excess = check_cdf(bump, rtol=0.0, atol=1e-2)["max_density_excess"]
    assert 0 < excess <= 1
    with pytest.raises(AssertionError, match="d/dy cdf differs"):
        check_cdf(bump, rtol=0.0, atol=1e-2 * excess / 1.5)


def test_check_normalization_refuses_a_grid_whose_error_is_above_a_tenth_of_atol():
    d = _normal(1)
    _, error = integrate_density(d, -40.0, 40.0, num_points=41)
    atol = 5 * error.item()  # the error estimate is twice atol / 10 (and a fifth of atol): refused
    with pytest.raises(ValueError, match="quadrature error estimate"):
        check_normalization(d, -40.0, 40.0, num_points=41, atol=atol)


def test_check_shapes_checks_the_variance_of_a_law_without_a_mean():
    class NoMeanFlatVariance(FlatVariance):
        @property
        def mean(self):
            raise NotImplementedError

    with pytest.raises(AssertionError, match=r"^variance shape \(4, 1\) is wrong$"):
        check_shapes(NoMeanFlatVariance(torch.zeros(4, **F64), 1.0))


def test_check_ks_p_values_equal_scipys_exact_kstest_on_the_same_draws():
    import scipy.stats

    d = NoisyNormal(torch.tensor([0.0, 1.0], **F64), torch.tensor([1.0, 2.0], **F64))
    n = 500
    torch.manual_seed(3)
    p = check_ks(d, num_samples=n, min_p_value=0.0)
    torch.manual_seed(3)
    x = d.sample((n,))
    for j, (loc, scale) in enumerate([(0.0, 1.0), (1.0, 2.0)]):
        ref = scipy.stats.kstest(x[:, j].numpy(), scipy.stats.norm(loc, scale).cdf, method="exact").pvalue
        assert p[j].item() == pytest.approx(ref, rel=1e-9)


class CachedMoment(NoisyNormal):
    """Keeps one moment in an attribute that its ``expand`` copies without expanding (a stale cache); with
    ``no_mean`` it has no mean, so check_expand must go on to the variance."""

    moment, no_mean = "mean", False

    def __init__(self, loc, sigma, *, validate_args=None):
        super().__init__(loc, sigma, validate_args=validate_args)
        self._cached = getattr(NoisyNormal(loc, sigma), self.moment)

    @property
    def mean(self):
        if self.no_mean:
            raise NotImplementedError
        return self._cached if self.moment == "mean" else super().mean

    @property
    def variance(self):
        return self._cached if self.moment == "variance" else super().variance

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(type(self), _instance)
        new = super().expand(batch_shape, _instance=new)
        new._cached = self._cached  # the bug: not expanded
        return new


class StaleMean(CachedMoment):
    moment = "mean"


class StaleVarianceNoMean(CachedMoment):
    moment, no_mean = "variance", True


@pytest.mark.parametrize("cls,name", [(StaleMean, "mean"), (StaleVarianceNoMean, "variance")])
def test_check_expand_names_a_moment_that_expand_left_unexpanded(cls, name):
    d = cls(torch.zeros(3, **F64), 1.0)
    check_shapes(d)  # the unexpanded law is fine
    with pytest.raises(AssertionError, match=rf"^expanded {name}: shape \(3,\) != \(2, 3\)$"):
        check_expand(d, (2, 3))


def test_check_moments_sees_a_wrong_variance_far_below_one():
    # sd 0.01: the sample variance's standard error is sigma^2 sqrt(2 / n) = 1e-6 for n = 20_000, so a variance
    # claimed twice too large (off by 1e-4, about 70 standard errors) must fail, although 1e-4 is far below 1 / sqrt(n)
    class DoubleVariance(NoisyNormal):
        @property
        def variance(self):
            return 2 * super().variance

    d = DoubleVariance(torch.zeros(2, **F64), 0.01)
    torch.manual_seed(0)
    with pytest.raises(AssertionError, match=r"^sample variance .* vs variance .*: \d+\.\d standard errors "
                                             r"\(allowed 5\.0\)$"):
        check_moments(d, num_samples=20_000)
    torch.manual_seed(0)
    out = check_moments(NoisyNormal(torch.zeros(2, **F64), 0.01), num_samples=20_000)
    # the reported standard error is sigma^2 sqrt(2 / n) up to its own sampling error: m4 - s^4 ~ 2 sigma^4 with an
    # sd of at most (sqrt(96) + 2 sqrt(2)) sigma^4 / sqrt(n) ~ 0.09 sigma^4, i.e. <= 2.2 % on its square root;
    # 15 % is more than 6 such standard errors
    expected = 1e-4 * math.sqrt(2 / 20_000)
    assert ((out["variance_se"] / expected - 1).abs() < 0.15).all()
