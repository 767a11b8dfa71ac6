"""Exact law of a Bernoulli pixel observed through imaginary Gaussian noise."""

import math
from numbers import Number

import torch
import torch.nn.functional as F
from pyro.distributions import TorchDistribution, constraints
from pyro.distributions.util import broadcast_shape
from torch.distributions.utils import broadcast_all, lazy_property, logits_to_probs, probs_to_logits

__all__ = ["NoisyBernoulli"]


class NoisyBernoulli(TorchDistribution):
    r"""
    Law of :math:`Y = X + \sigma\varepsilon` with :math:`X \sim \mathrm{Bernoulli}(p)` and
    :math:`\varepsilon \sim N(0, 1)` independent: a two-component Gaussian mixture per pixel,

    .. math::

        p(y) = (1 - p)\, N(y; 0, \sigma^2) + p\, N(y; 1, \sigma^2),

    evaluated in log space as
    :math:`\mathrm{logsumexp}(\log(1-p) + \log N(y;0,\sigma^2),\ \log p + \log N(y;1,\sigma^2))`.
    It is the proper decoder for binary data seen through the σ-VAE's imaginary noise; as
    :math:`\sigma \to 0` it concentrates on {0, 1}. Mean :math:`p`, variance :math:`p(1-p) + \sigma^2`.

    Exactly one of ``probs`` / ``logits`` must be given (like :class:`~torch.distributions.Bernoulli`).
    Shapes: parameters broadcast to ``batch_shape``; ``event_shape == ()``.

    :param torch.Tensor probs: :math:`p \in [0, 1]`.
    :param torch.Tensor logits: :math:`\log p - \log(1 - p)`.
    :param sigma: noise standard deviation :math:`\sigma > 0`.
    """

    arg_constraints = {
        "probs": constraints.unit_interval,
        "logits": constraints.real,
        "sigma": constraints.positive,
    }
    support = constraints.real
    has_rsample = False

    def __init__(self, probs=None, logits=None, sigma=None, *, validate_args=None):
        if (probs is None) == (logits is None):
            raise ValueError("NoisyBernoulli: pass exactly one of `probs` or `logits`.")
        if sigma is None:
            raise ValueError("NoisyBernoulli: `sigma` (the imaginary noise level, > 0) is required.")
        if probs is not None:
            self.probs, self.sigma = broadcast_all(probs, sigma)
            param, is_scalar = self.probs, isinstance(probs, Number)
        else:
            self.logits, self.sigma = broadcast_all(logits, sigma)
            param, is_scalar = self.logits, isinstance(logits, Number)
        batch_shape = torch.Size() if is_scalar and isinstance(sigma, Number) else param.shape
        super().__init__(batch_shape, validate_args=validate_args)

    @lazy_property
    def logits(self):
        return probs_to_logits(self.probs, is_binary=True)

    @lazy_property
    def probs(self):
        return logits_to_probs(self.logits, is_binary=True)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(NoisyBernoulli, _instance)
        batch_shape = torch.Size(batch_shape)
        if "probs" in self.__dict__:
            new.probs = self.probs.expand(batch_shape)
        if "logits" in self.__dict__:
            new.logits = self.logits.expand(batch_shape)
        new.sigma = self.sigma.expand(batch_shape)
        super(NoisyBernoulli, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def mean(self):
        return self.probs

    @property
    def variance(self):
        return self.probs * (1 - self.probs) + self.sigma.pow(2)

    def sample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        with torch.no_grad():
            x = torch.bernoulli(self.probs.expand(shape))
            return x + self.sigma.expand(shape) * torch.randn_like(x)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        logits, sigma = self.logits, self.sigma
        shape = broadcast_shape(value.shape, logits.shape)
        # log p = -softplus(-l), log(1 - p) = -softplus(l): stable for any logit
        log_norm = -sigma.log() - 0.5 * math.log(2 * math.pi)
        log_n0 = -0.5 * (value / sigma).pow(2)
        log_n1 = -0.5 * ((value - 1) / sigma).pow(2)
        a = (log_n0 - F.softplus(logits)).expand(shape)
        b = (log_n1 - F.softplus(-logits)).expand(shape)
        return torch.logaddexp(a, b) + log_norm
