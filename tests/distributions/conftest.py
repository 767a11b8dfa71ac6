"""Registry of the noisy-observation laws and Gaussian corruption: scalar, batched and broadcast examples, scipy references."""

import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch

from pyro_noisevae.distributions import GaussianCorruption, NoisyBernoulli, NoisyLaplace, NoisyNormal


class NoisyBernoulliReference:
    r"""
    Independent float64 reference for :class:`NoisyBernoulli`: the explicit two-component mixture
    :math:`(1 - p) N(y; 0, \sigma^2) + p N(y; 1, \sigma^2)` from ``scipy.stats.norm``. The weights come
    from ``scipy.special.expit(±logits)`` when logits are given, so that :math:`1 - p` keeps its
    relative precision at logits of ±30.
    """

    def __init__(self, probs=None, logits=None, sigma=None):
        if logits is not None:
            self.w1, self.w0 = scipy.special.expit(logits), scipy.special.expit(-logits)
        else:
            self.w1, self.w0 = probs, 1.0 - probs
        self.sigma = sigma

    def pdf(self, y):
        n0 = scipy.stats.norm(0.0, self.sigma)
        n1 = scipy.stats.norm(1.0, self.sigma)
        return self.w0 * n0.pdf(y) + self.w1 * n1.pdf(y)

    def logpdf(self, y):
        with np.errstate(divide="raise"):
            return np.log(self.pdf(y))

    def cdf(self, y):
        return self.w0 * scipy.stats.norm(0.0, self.sigma).cdf(y) + self.w1 * scipy.stats.norm(1.0, self.sigma).cdf(y)

    def mean(self):
        return self.w1 + 0.0 * self.sigma

    def var(self):
        return self.w0 * self.w1 + self.sigma**2


class Fixture:
    """
    One distribution class, its examples and an independent float64 reference.

    :param pyro_dist: the class under test.
    :param reference: ``reference(**params) -> object`` with ``logpdf``, ``cdf``, ``mean``, ``var`` and, when
        ``has_entropy``, ``entropy`` (numpy float64 arrays in, out).
    :param limits: ``limits(**params) -> (low, high)``, integration limits (numpy) holding all but a
        negligible tail (40 scales either side).
    :param list examples: dicts of parameters (nested lists) plus ``"test_data"`` and ``"tag"``.
    """

    def __init__(self, pyro_dist, reference, limits, examples, has_entropy, has_icdf):
        self.pyro_dist = pyro_dist
        self.reference = reference
        self.limits = limits
        self.examples = examples
        self.has_entropy = has_entropy
        self.has_icdf = has_icdf


class Example:
    """One parameter setting of a :class:`Fixture`; builds the distribution in any dtype."""

    def __init__(self, fixture, spec):
        self.fixture = fixture
        self.tag = spec["tag"]
        self.params = {k: v for k, v in spec.items() if k not in ("tag", "test_data")}
        self.test_data = spec["test_data"]
        self.id = f"{fixture.pyro_dist.__name__}-{self.tag}"

    @property
    def cls(self):
        return self.fixture.pyro_dist

    def tensor_params(self, dtype=torch.float64, requires_grad=False):
        return {k: torch.tensor(v, dtype=dtype, requires_grad=requires_grad) for k, v in self.params.items()}

    def get_dist(self, dtype=torch.float64, **kwargs):
        return self.cls(**self.tensor_params(dtype), **kwargs)

    def get_test_data(self, dtype=torch.float64):
        return torch.tensor(self.test_data, dtype=dtype)

    def numpy_params(self):
        return {k: np.asarray(v, dtype=np.float64) for k, v in self.params.items()}

    def reference(self):
        return self.fixture.reference(**self.numpy_params())

    def limits(self):
        return self.fixture.limits(**self.numpy_params())

    def batch_shape(self):
        return torch.Size(np.broadcast_shapes(*(np.shape(v) for v in self.params.values())))

    def __repr__(self):
        return self.id


def _loc_scale_limits(loc, scale):
    return loc - 40 * scale, loc + 40 * scale


def _bernoulli_limits(sigma, **_):
    return -40 * sigma, 1 + 40 * sigma


# examples of the location-scale laws, written with torch's argument names and renamed for each law
LOC_SCALE_EXAMPLES = [
    {"tag": "scalar", "loc": 0.3, "scale": 0.5, "test_data": -0.2},
    {
        "tag": "batched",
        "loc": [[-1.0, 0.0, 2.5], [0.3, 0.7, -4.0]],
        "scale": [[0.1, 1.0, 2.0], [0.5, 0.05, 3.0]],
        "test_data": [[-1.1, 0.5, 0.0], [0.3, 0.75, 1.0]],
    },
    {
        "tag": "broadcast-params",
        "loc": [[0.0], [1.0]],
        "scale": [0.1, 1.0, 3.0],
        "test_data": [[0.05, -1.0, 4.0], [1.2, 2.0, -3.0]],
    },
    {
        "tag": "broadcast-data",
        "loc": [0.0, 1.0],
        "scale": 0.2,
        "test_data": [[0.1, 0.9], [-0.3, 1.5], [0.0, 1.0]],
    },
]


def _loc_scale_fixture(cls, loc, scale, reference):
    """A location-scale law whose arguments are named ``loc`` and ``scale`` (e.g. ``clean`` and ``sigma``)."""
    names = {"loc": loc, "scale": scale}
    return Fixture(
        cls,
        reference=lambda **p: reference(p[loc], p[scale]),
        limits=lambda **p: _loc_scale_limits(p[loc], p[scale]),
        has_entropy=True,
        has_icdf=True,
        examples=[{names.get(k, k): v for k, v in e.items()} for e in LOC_SCALE_EXAMPLES],
    )


FIXTURES = [
    _loc_scale_fixture(NoisyNormal, "loc", "sigma", scipy.stats.norm),
    _loc_scale_fixture(NoisyLaplace, "loc", "scale", scipy.stats.laplace),
    _loc_scale_fixture(GaussianCorruption, "clean", "sigma", scipy.stats.norm),
    Fixture(
        NoisyBernoulli,
        reference=NoisyBernoulliReference,
        limits=_bernoulli_limits,
        has_entropy=False,
        has_icdf=False,
        examples=[
            {"tag": "scalar-probs", "probs": 0.3, "sigma": 0.4, "test_data": 0.8},
            {
                # includes the boundary probabilities 0 and 1, where the law is a single Gaussian
                "tag": "batched-probs",
                "probs": [[0.0, 0.2, 0.5], [0.9, 1.0, 0.01]],
                "sigma": [[0.1, 0.3, 1.0], [0.05, 0.2, 2.0]],
                "test_data": [[0.2, 1.0, 0.5], [0.95, 0.1, -2.0]],
            },
            {
                # logits of ±30: probs would round to exactly 0 or 1 in float32
                "tag": "broadcast-logits",
                "logits": [[-30.0], [-2.0], [30.0]],
                "sigma": [0.1, 0.5],
                "test_data": [[0.0, 1.0], [0.3, 0.6], [1.0, 0.0]],
            },
            {
                "tag": "broadcast-data-logits",
                "logits": [0.0, 3.0, -5.0],
                "sigma": 0.25,
                "test_data": [[0.0, 1.0, 0.5], [-0.4, 1.3, 0.9]],
            },
        ],
    ),
]

EXAMPLES = [Example(f, spec) for f in FIXTURES for spec in f.examples]


def _params(examples):
    return [pytest.param(e, id=e.id) for e in examples]


@pytest.fixture(params=_params(EXAMPLES))
def example(request):
    """Every example of every registered distribution."""
    return request.param


@pytest.fixture(params=_params([e for e in EXAMPLES if e.cls.has_rsample]))
def rsample_example(request):
    """Examples of reparameterizable distributions."""
    return request.param


@pytest.fixture(params=_params([e for e in EXAMPLES if e.fixture.has_entropy]))
def entropy_example(request):
    """Examples of distributions with a closed-form entropy."""
    return request.param


@pytest.fixture(params=_params([e for e in EXAMPLES if e.fixture.has_icdf]))
def icdf_example(request):
    """Examples of distributions with a closed-form inverse cdf."""
    return request.param


@pytest.fixture
def bernoulli_reference():
    """The float64 scipy mixture reference class for :class:`NoisyBernoulli`."""
    return NoisyBernoulliReference


@pytest.fixture(autouse=True)
def _single_thread():
    """Run these small-tensor tests on one intra-op thread: on a shared, loaded machine torch's default
    thread pool makes each elementwise op over ~1e5 elements 10-20x slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
