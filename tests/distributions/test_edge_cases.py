"""Edge cases of the distributions package that the generic suites do not reach (issue 15, mutation testing):
subclassing through ``expand(_instance=...)``, the noise-level messages, the constraint metadata, make_corruption."""

import math

import pytest
import torch
from pyro.distributions import constraints

from pyro_noisevae.distributions import (
    GaussianCorruption,
    NoisyBernoulli,
    NoisyLaplace,
    NoisyNormal,
    SaltAndPepper,
    make_corruption,
)
from pyro_noisevae.distributions._checks import check_noise_level, finite_positive

F64 = dict(dtype=torch.float64)

# ------------------------------------------------------------------------------------------------ subclassing


def _tagged(base):
    """A subclass with its own ``__init__`` that expands the torch way: ``super().expand(..., _instance=new)``."""

    class Tagged(base):
        def __init__(self, *args, tag, **kwargs):
            self.tag = tag
            super().__init__(*args, **kwargs)

        def expand(self, batch_shape, _instance=None):
            new = self._get_checked_instance(Tagged, _instance)
            new.tag = self.tag
            return super().expand(batch_shape, _instance=new)

    return Tagged


SUBCLASS_CASES = [
    (NoisyNormal, dict(loc=torch.tensor([0.0, 1.0], **F64), sigma=torch.tensor(0.5, **F64))),
    (NoisyLaplace, dict(loc=torch.tensor([0.0, 1.0], **F64), scale=torch.tensor(0.5, **F64))),
    (NoisyBernoulli, dict(probs=torch.tensor([0.2, 0.7], **F64), sigma=torch.tensor(0.5, **F64))),
    (NoisyBernoulli, dict(logits=torch.tensor([-1.0, 2.0], **F64), sigma=torch.tensor(0.5, **F64))),
    (GaussianCorruption, dict(clean=torch.tensor([0.0, 1.0], **F64), sigma=torch.tensor(0.5, **F64))),
    (SaltAndPepper, dict(clean=torch.tensor([0.0, 0.5], **F64), rate=torch.tensor(0.3, **F64))),
]


@pytest.mark.parametrize("base,params", SUBCLASS_CASES, ids=[f"{b.__name__}-{'-'.join(p)}" for b, p in SUBCLASS_CASES])
def test_expand_fills_the_instance_a_subclass_passes(base, params):
    d = _tagged(base)(**params, tag="mine")
    e = d.expand((3, 2))
    assert type(e) is type(d) and e.tag == "mine" and e.batch_shape == (3, 2)
    y = d.sample()
    torch.testing.assert_close(e.log_prob(y), d.log_prob(y).expand(3, 2), rtol=0, atol=0)
    torch.testing.assert_close(e.mean, d.mean.expand(3, 2), rtol=0, atol=0)


# ------------------------------------------------------------------------------------------------ noise-level checks


def test_noise_level_message_names_the_meaning_and_the_values():
    with pytest.raises(ValueError) as info:
        NoisyNormal(0.0, math.inf)
    assert str(info.value) == (
        "NoisyNormal: sigma must be finite and > 0 (the noise standard deviation), got inf; pass a finite sigma > 0"
    )
    with pytest.raises(ValueError) as info:
        NoisyLaplace(torch.zeros(3), torch.tensor([1.0, -0.5, 2.0]))
    assert str(info.value) == "NoisyLaplace: scale must be finite and > 0 (the noise scale b), got -0.5; pass a finite scale > 0"
    with pytest.raises(ValueError) as info:
        check_noise_level("Law", "s", 0.0, True)  # the default meaning
    assert str(info.value) == "Law: s must be finite and > 0 (the noise standard deviation), got 0; pass a finite s > 0"


def test_noise_level_message_shows_three_bad_values_and_counts_the_rest():
    three = torch.tensor([1.0, -1.0, math.nan, 0.0, 2.0])
    with pytest.raises(ValueError, match=r"got -1, nan, 0; pass") as info:
        check_noise_level("Law", "s", three, None)
    assert "more" not in str(info.value)
    five = torch.tensor([-1.0, math.nan, 0.0, -math.inf, math.inf, 0.25])
    with pytest.raises(ValueError, match=r"got -1, nan, 0 \(and 2 more\); pass a finite s > 0$"):
        check_noise_level("Law", "s", five, True)
    four = torch.tensor([[-1.0, -2.0], [-3.0, -4.0]])
    with pytest.raises(ValueError, match=r"got -1, -2, -3 \(and 1 more\); pass"):
        check_noise_level("Law", "s", four, True)


def test_noise_level_check_on_a_tensor_that_requires_grad():
    sigma = torch.tensor([0.5, -1.0], requires_grad=True)
    with pytest.raises(ValueError, match="got -1;"):
        check_noise_level("Law", "s", sigma, True)
    check_noise_level("Law", "s", torch.tensor([0.5, 1.0], requires_grad=True), True)  # fine: no error
    check_noise_level("Law", "s", -1.0, False)  # not validated: no error


def test_finite_positive_constraint_metadata():
    # a real-valued, elementwise constraint (like constraints.positive), so Pyro's constraint tooling treats it alike
    assert finite_positive.is_discrete is False and finite_positive.event_dim == 0
    assert finite_positive.is_discrete == constraints.positive.is_discrete
    assert finite_positive.event_dim == constraints.positive.event_dim
    x = torch.tensor([[1.0, 0.0], [math.inf, 3.0]])
    assert finite_positive.check(x).tolist() == [[True, False], [False, True]]


# ------------------------------------------------------------------------------------------------ corruption


def test_make_corruption_accepts_every_listed_name_and_none():
    from pyro_noisevae.distributions.corruption import CORRUPTIONS

    assert CORRUPTIONS[0] == "none" and set(CORRUPTIONS[1:]) == {"gaussian", "salt-and-pepper"}
    assert make_corruption(None) is None and make_corruption("none", 0.3) is None
    clean = torch.tensor([0.0, 0.5, 1.0], **F64)
    for name in CORRUPTIONS[1:]:
        d = make_corruption(name, "0.5")(clean)  # a level read from a config file as text
        assert d.sample((2,)).shape == (2, 3)


def test_make_corruption_levels_at_and_beyond_the_bounds():
    clean = torch.tensor([0.0, 0.5, 1.0], **F64)
    for rate in (0.0, 1.0):  # both ends of [0, 1] are valid rates
        d = make_corruption("salt-and-pepper", rate)(clean)
        assert torch.all(d.rate == rate)
    assert torch.all(make_corruption("gaussian", 1e-6)(clean).sigma == 1e-6)
    cases = [
        ("gaussian", 0.0, "corruption 'gaussian': sigma must be > 0, got 0.0"),
        ("gaussian", -0.5, "corruption 'gaussian': sigma must be > 0, got -0.5"),
        ("gaussian", math.inf, "corruption 'gaussian': sigma must be > 0, got inf"),
        ("gaussian", math.nan, "corruption 'gaussian': sigma must be > 0, got nan"),
        ("salt-and-pepper", -0.1, "corruption 'salt-and-pepper': rate must be in [0, 1], got -0.1"),
        ("salt-and-pepper", 1.5, "corruption 'salt-and-pepper': rate must be in [0, 1], got 1.5"),
        ("salt-and-pepper", math.nan, "corruption 'salt-and-pepper': rate must be in [0, 1], got nan"),
    ]
    for name, level, message in cases:
        with pytest.raises(ValueError) as info:
            make_corruption(name, level)
        assert str(info.value) == message
    with pytest.raises(ValueError) as info:
        make_corruption("dropout", 0.1)
    assert str(info.value) == "corruption must be one of ('none', 'gaussian', 'salt-and-pepper'), got 'dropout'"
    with pytest.raises(ValueError) as info:
        make_corruption("salt-and-pepper")
    assert str(info.value) == "corruption 'salt-and-pepper' needs a level (rate)"


def test_salt_and_pepper_shapes_with_python_numbers():
    assert SaltAndPepper(0.3, 0.2).batch_shape == torch.Size()
    assert SaltAndPepper(0.3, 0.2).sample().shape == torch.Size()
    # one tensor argument decides the batch shape, whichever it is
    assert SaltAndPepper(torch.tensor([0.0, 0.5, 1.0]), 0.2).batch_shape == (3,)
    assert SaltAndPepper(0.5, torch.tensor([0.1, 0.2])).batch_shape == (2,)
    assert SaltAndPepper(0.5, torch.tensor([0.1, 0.2])).sample((4,)).shape == (4, 2)


def test_salt_and_pepper_support_is_discrete_and_follows_the_clean_value():
    d = SaltAndPepper(torch.tensor([0.25, 0.5]), 0.1)
    assert d.support.is_discrete and d.support.event_dim == 0
    assert SaltAndPepper.support.is_discrete and SaltAndPepper.support.event_dim == 0
    check = d.support.check(torch.tensor([[0.25, 0.0], [1.0, 0.25], [0.5, 0.5]]))
    assert check.tolist() == [[True, True], [True, False], [False, True]]


def test_salt_and_pepper_log_prob_when_the_clean_value_is_an_atom():
    # clean 0: the value 0 has mass (1 - r) + r/2; clean 1: the value 1 likewise; the value 1 at clean 0 has r/2
    r = 0.3
    d = SaltAndPepper(torch.tensor([0.0, 1.0, 0.0, 1.0], **F64), torch.tensor(r, **F64))
    mass = d.log_prob(torch.tensor([0.0, 1.0, 1.0, 0.0], **F64)).exp()
    torch.testing.assert_close(mass, torch.tensor([1 - r / 2, 1 - r / 2, r / 2, r / 2], **F64))
    assert d.log_prob(torch.tensor([0.0, 1.0, 1.0, 0.0], **F64)).dtype == torch.float64
    assert SaltAndPepper(torch.tensor([0.5]), 0.3).log_prob(torch.tensor([0.5])).dtype == torch.float32


def test_salt_and_pepper_variance_is_never_negative():
    # (1 - r) x^2 + r/2 - mean^2 can round below 0 at a point mass (r = 0): the clamp keeps it at 0
    x = torch.rand(10_000, **F64)
    for r in (0.0, 1e-17, 1e-12):
        v = SaltAndPepper(x, r).variance
        assert (v >= 0).all()
    torch.testing.assert_close(SaltAndPepper(x, 0.5).variance,
                               0.5 * x.pow(2) + 0.25 - (0.5 * x + 0.25).pow(2), rtol=1e-12, atol=1e-12)


def test_salt_and_pepper_samples_in_the_clean_dtype():
    for dtype in (torch.float32, torch.float64):
        x = SaltAndPepper(torch.full((1000,), 0.5, dtype=dtype), 0.5).sample()
        assert x.dtype == dtype and set(x.unique().tolist()) <= {0.0, 0.5, 1.0}


def test_corruption_base_class_defaults():
    from pyro_noisevae.distributions import Corruption

    c = Corruption(validate_args=False)  # the base class has no `clean` to validate
    assert c.batch_shape == torch.Size() and c.event_shape == torch.Size()
    c = Corruption(torch.Size([2, 3]), validate_args=False)
    assert c.batch_shape == (2, 3) and c.event_shape == torch.Size()
    c = Corruption(torch.Size([2]), torch.Size([3]), validate_args=False)  # e.g. a law over whole rows
    assert c.batch_shape == (2,) and c.event_shape == (3,)
    assert Corruption.support is constraints.real and set(Corruption.arg_constraints) == {"clean"}


UNVALIDATED_CASES = [
    (NoisyNormal, dict(loc=torch.zeros(2), sigma=torch.tensor(math.inf))),
    (NoisyLaplace, dict(loc=torch.zeros(2), scale=torch.tensor(-1.0))),
    (NoisyBernoulli, dict(probs=torch.tensor([0.5, 1.5]), sigma=torch.tensor(0.5))),
    (NoisyBernoulli, dict(logits=torch.zeros(2), sigma=torch.tensor(0.0))),
    (GaussianCorruption, dict(clean=torch.zeros(2), sigma=torch.tensor(math.inf))),
    (SaltAndPepper, dict(clean=torch.tensor([0.5, 2.0]), rate=torch.tensor(0.1))),
]


@pytest.mark.parametrize("cls,params", UNVALIDATED_CASES, ids=[f"{c.__name__}-{i}" for i, (c, _) in enumerate(UNVALIDATED_CASES)])
def test_expand_does_not_validate_again(cls, params):
    # built without validation, the law expands without validation too (torch's rule: expand passes validate_args=False)
    d = cls(**params, validate_args=False)
    e = d.expand((3, 2))
    assert e.batch_shape == (3, 2) and e._validate_args is False


def test_noisy_bernoulli_argument_messages_name_the_law():
    with pytest.raises(ValueError) as info:
        NoisyBernoulli(sigma=1.0)
    assert str(info.value) == "NoisyBernoulli: pass exactly one of `probs` or `logits`."
    with pytest.raises(ValueError) as info:
        NoisyBernoulli(logits=torch.zeros(2))
    assert str(info.value) == "NoisyBernoulli: `sigma` (the imaginary noise level, > 0) is required."


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_salt_and_pepper_samples_on_the_device_of_the_clean_input():
    clean = torch.full((1000,), 0.5, device="cuda")
    x = SaltAndPepper(clean, 0.5).sample((2,))
    assert x.device == clean.device and set(x.unique().tolist()) <= {0.0, 0.5, 1.0}
