"""Decoder likelihoods p(x | z): the noise models of a VAE, each ending in one ``pyro.sample``."""

import math

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.distributions import constraints
from pyro.nn import PyroModule, PyroParam

from ..distributions import NoisyBernoulli, NoisyLaplace, NoisyNormal

__all__ = [
    "BernoulliLikelihood",
    "LaplaceLikelihood",
    "LearnedNormalLikelihood",
    "Likelihood",
    "NoisyBernoulliLikelihood",
    "NormalLikelihood",
    "make_likelihood",
]


def _normal_log_prob(out, x, sigma):
    # sum_i log N(x_i; sigmoid(out_i), sigma^2), sigma a scalar tensor (no host sync)
    sigma = sigma.to(out.dtype)
    sq = (x - torch.sigmoid(out)).pow(2).sum(-1)
    return -0.5 * sq / sigma.pow(2) - out.shape[-1] * (sigma.log() + 0.5 * math.log(2 * math.pi))


def _check_sigma(name, value):
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v


class Likelihood(PyroModule):
    """
    Base class. A likelihood reads the decoder's raw output ``out`` of shape ``(*, D)`` and scores
    the observation ``x`` of shape ``(B, D)`` at the site ``"x"`` with ``.to_event(1)``.
    """

    #: short name used on the command line
    name = "base"

    def dist(self, out):
        """Per-pixel distribution with ``batch_shape == out.shape``."""
        raise NotImplementedError

    def mean(self, out):
        """:math:`E[x \\mid z]` of shape ``out.shape`` (used for reconstructions and samples)."""
        return self.dist(out).mean

    def check_data(self, x):
        """Raise ``ValueError`` if ``x`` lies outside this likelihood's support."""

    def log_prob(self, out, x):
        r"""
        :math:`\\log p(x \\mid z) = \\sum_i \\log p(x_i \\mid \\mathrm{out}_i)`, the log-density of site ``"x"``
        summed over the event dim, without distribution objects or support checks (the fused fast path;
        validate ``x`` with :meth:`check_data`). ``out`` ``(*, B, D)`` broadcasts against ``x`` ``(B, D)``;
        returns shape ``out.shape[:-1]``. Subclasses override it with a closed form.
        """
        return self.dist(out).to_event(1).log_prob(x)

    def forward(self, out, x):
        return pyro.sample("x", self.dist(out).to_event(1), obs=x)


class _SigmoidMeanLikelihood(Likelihood):
    """Base of the noise models around :math:`\\mathrm{sigmoid}(\\mathrm{out})`, their mean :math:`E[x \\mid z]`."""

    def mean(self, out):
        return torch.sigmoid(out)


class BernoulliLikelihood(_SigmoidMeanLikelihood):
    """:math:`p(x|z) = \\prod_i \\mathrm{Bernoulli}(x_i; \\mathrm{sigmoid}(\\mathrm{out}_i))`; binary data only."""

    name = "bernoulli"

    def dist(self, out):
        return dist.Bernoulli(logits=out)

    def log_prob(self, out, x):
        # log Bernoulli(x; sigmoid(out)) = -BCE-with-logits, as torch's Bernoulli(logits=).log_prob computes it
        return -F.binary_cross_entropy_with_logits(out, x.expand_as(out), reduction="none").sum(-1)

    def check_data(self, x):
        if not ((x == 0) | (x == 1)).all():
            raise ValueError(
                "likelihood 'bernoulli' needs binary data (every value 0 or 1), but the data has values in "
                "between. Binarize it (--binarize dynamic|threshold, or the static binarized MNIST dataset), "
                "or use a continuous noise model: 'normal', 'laplace', 'noisy-bernoulli' or 'learned-normal'."
            )


class _FixedScaleLikelihood(_SigmoidMeanLikelihood):
    """
    Base of the noise models with one fixed scale, a float64 buffer named :attr:`scale_name` (so that it keeps
    its exact value; it moves with ``.to(device)``, is never trained, and is cast to the data dtype per call).
    """

    #: the buffer's name (also its name in checkpoints) and the scale's name in error messages
    scale_name, scale_label = "sigma", "sigma"

    def __init__(self, scale):
        super().__init__()
        self.register_buffer(self.scale_name, torch.tensor(_check_sigma(self.scale_label, scale), dtype=torch.float64))

    def _scale(self, out):
        return getattr(self, self.scale_name).to(out.dtype)


class NormalLikelihood(_FixedScaleLikelihood):
    """
    σ-VAE decoder with a **fixed imaginary** σ: :math:`x \\sim N(\\mathrm{sigmoid}(\\mathrm{out}), \\sigma^2 I)`.
    σ is a buffer (moves with ``.to(device)``, never trained).
    """

    name = "normal"

    def dist(self, out):
        return NoisyNormal(torch.sigmoid(out), self._scale(out))

    def log_prob(self, out, x):
        return _normal_log_prob(out, x, self.sigma)


class LaplaceLikelihood(_FixedScaleLikelihood):
    """Laplace σ-VAE decoder with a fixed scale b: :math:`x_i \\sim \\mathrm{Laplace}(\\mathrm{sigmoid}(\\mathrm{out}_i), b)`."""

    name = "laplace"
    scale_name, scale_label = "scale", "laplace scale b"

    def dist(self, out):
        return NoisyLaplace(torch.sigmoid(out), self._scale(out))

    def log_prob(self, out, x):
        b = self._scale(out)
        return -(x - torch.sigmoid(out)).abs().sum(-1) / b - out.shape[-1] * torch.log(2 * b)


class NoisyBernoulliLikelihood(_FixedScaleLikelihood):
    """Bernoulli pixels seen through imaginary N(0, σ²) noise (:class:`NoisyBernoulli`), σ fixed."""

    name = "noisy-bernoulli"

    def dist(self, out):
        return NoisyBernoulli(logits=out, sigma=self._scale(out))


class LearnedNormalLikelihood(_SigmoidMeanLikelihood):
    """
    Calibrated-decoder Gaussian: :math:`x \\sim N(\\mathrm{sigmoid}(\\mathrm{out}), \\sigma^2 I)` with **one shared
    learned** σ (a positive ``PyroParam``), as opposed to the σ-VAE's fixed imaginary σ.
    """

    name = "learned-normal"

    def __init__(self, init_sigma=1.0):
        super().__init__()
        self.sigma = PyroParam(torch.tensor(_check_sigma("init_sigma", init_sigma)), constraints.positive)

    def dist(self, out):
        return NoisyNormal(torch.sigmoid(out), self.sigma.to(out.dtype))

    def log_prob(self, out, x):
        return _normal_log_prob(out, x, self.sigma)


_REGISTRY = {
    cls.name: cls
    for cls in (BernoulliLikelihood, NormalLikelihood, LaplaceLikelihood, NoisyBernoulliLikelihood, LearnedNormalLikelihood)
}
LIKELIHOODS = tuple(_REGISTRY)


def make_likelihood(name, sigma=None):
    """
    Build a likelihood by name: ``bernoulli | normal | laplace | noisy-bernoulli | learned-normal``.
    ``sigma`` is the fixed σ (normal, noisy-bernoulli), the fixed scale b (laplace), or the initial
    value of the learned σ (learned-normal, default 1.0); it is rejected for bernoulli.
    """
    if isinstance(name, Likelihood):
        return name
    if name not in _REGISTRY:
        raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {name!r}")
    if name == "bernoulli":
        if sigma is not None:
            raise ValueError("likelihood 'bernoulli' takes no sigma; for an imaginary-noise decoder use 'noisy-bernoulli'")
        return BernoulliLikelihood()
    if name == "learned-normal":
        return LearnedNormalLikelihood(1.0 if sigma is None else sigma)
    if sigma is None:
        raise ValueError(f"likelihood {name!r} needs a fixed sigma > 0 (the imaginary noise level)")
    return _REGISTRY[name](sigma)
