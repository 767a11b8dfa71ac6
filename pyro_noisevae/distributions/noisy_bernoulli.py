"""Exact law of a Bernoulli pixel observed through imaginary Gaussian noise."""

import math
from numbers import Number

import torch
import torch.nn.functional as F
from pyro.distributions import TorchDistribution, constraints
from pyro.distributions.util import broadcast_shape
from torch.distributions.utils import broadcast_all, lazy_property, logits_to_probs, probs_to_logits

from ._checks import check_noise_level, finite_positive

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
    The mixture weights are taken in log space from the parameter that was given: from ``logits`` as
    :math:`\log p = -\mathrm{softplus}(-\ell)`, :math:`\log(1-p) = -\mathrm{softplus}(\ell)` (exact for
    any finite logit, e.g. :math:`\ell = \pm 30` in float32); from ``probs`` as :math:`\log p` and
    :math:`\log(1-p)` directly, so ``probs`` of exactly 0 or 1 give a single Gaussian component
    (torch's ``probs -> logits`` conversion would clamp them to ``eps``/``1 - eps``). At exactly
    :math:`p \in \{0, 1\}` the derivative with respect to ``probs`` keeps only the surviving component's
    weight term (e.g. :math:`-1` at :math:`p = 0` instead of :math:`N_1/N_0 - 1`); train through ``logits``.
    Shapes: parameters broadcast to ``batch_shape``; ``event_shape == ()``.

    :param torch.Tensor probs: :math:`p \in [0, 1]`.
    :param torch.Tensor logits: :math:`\log p - \log(1 - p)`.
    :param sigma: noise standard deviation :math:`\sigma`, finite and > 0.
    """

    arg_constraints = {
        "probs": constraints.unit_interval,
        "logits": constraints.real,
        "sigma": finite_positive,
    }
    support = constraints.real
    has_rsample = False

    def __init__(self, probs=None, logits=None, sigma=None, *, validate_args=None):
        if (probs is None) == (logits is None):
            raise ValueError("NoisyBernoulli: pass exactly one of `probs` or `logits`.")
        if sigma is None:
            raise ValueError("NoisyBernoulli: `sigma` (the imaginary noise level, > 0) is required.")
        check_noise_level(type(self).__name__, "sigma", sigma, validate_args)
        # which parametrization was given decides how the log mixture weights are computed
        self._use_probs = probs is not None
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
        new._use_probs = self._use_probs
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

    def _log_weights(self):
        """``(log(1 - p), log p)``, each of shape ``batch_shape``."""
        if not self._use_probs:
            return -F.softplus(self.logits), -F.softplus(-self.logits)
        p = self.probs
        neg_inf = torch.full_like(p, -math.inf)
        # substitute a harmless value where the weight is exactly 0, so that the branch torch.where
        # discards never produces an infinite derivative (0 * inf = nan in backward)
        p_safe = torch.where(p > 0, p, torch.ones_like(p))
        q_safe = torch.where(p < 1, p, torch.zeros_like(p))
        log_p = torch.where(p > 0, p_safe.log(), neg_inf)
        log_q = torch.where(p < 1, torch.log1p(-q_safe), neg_inf)
        return log_q, log_p

    def log_prob(self, value):
        r"""
        :math:`\log\big((1 - p) N(y; 0, \sigma^2) + p N(y; 1, \sigma^2)\big)`.

        :param torch.Tensor value: observations :math:`y`, broadcastable with ``batch_shape``.
        :returns: tensor of shape ``broadcast(value.shape, batch_shape)``.
        """
        if self._validate_args:
            self._validate_sample(value)
        log_q, log_p = self._log_weights()
        sigma = self.sigma
        shape = broadcast_shape(value.shape, sigma.shape)
        log_norm = -sigma.log() - 0.5 * math.log(2 * math.pi)
        a = (log_q - 0.5 * (value / sigma).pow(2)).expand(shape)
        b = (log_p - 0.5 * ((value - 1) / sigma).pow(2)).expand(shape)
        return torch.logaddexp(a, b) + log_norm

    def cdf(self, value):
        r"""
        :math:`F(y) = (1 - p)\,\Phi(y / \sigma) + p\,\Phi((y - 1) / \sigma)`.

        :param torch.Tensor value: points :math:`y`, broadcastable with ``batch_shape``.
        :returns: tensor of shape ``broadcast(value.shape, batch_shape)``.
        """
        if self._validate_args:
            self._validate_sample(value)
        p, sigma = self.probs, self.sigma
        # ndtr keeps its relative accuracy in the lower tail, where 0.5 * (1 + erf) rounds to 0
        phi0 = torch.special.ndtr(value / sigma)
        phi1 = torch.special.ndtr((value - 1) / sigma)
        return phi0 + p * (phi1 - phi0)
