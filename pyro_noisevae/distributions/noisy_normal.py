"""Imaginary-noise Gaussian decoder law: Y = X + N(0, σ²)."""

import math
from numbers import Number

import torch
from pyro.distributions import TorchDistribution, constraints
from torch.distributions.utils import broadcast_all

__all__ = ["NoisyNormal"]


class NoisyNormal(TorchDistribution):
    r"""
    The σ-VAE decoder: the law of :math:`Y = \mu + \sigma \varepsilon`, :math:`\varepsilon \sim N(0, 1)`,
    with a *fixed* ("imaginary") noise level :math:`\sigma` that is a hyper-parameter, not a learned scale.

    .. math::

        \log p_\sigma(y \mid \mu) = -\frac{(y - \mu)^2}{2\sigma^2} - \tfrac12 \log(2\pi\sigma^2)

    Summed over :math:`d` pixels this gives the σ-VAE reconstruction term
    :math:`-\lVert y - \mu(z) \rVert^2 / 2\sigma^2 - (d/2)\log 2\pi\sigma^2` (Saremi 2020, eq. for
    :math:`\mathcal{L}(\sigma)`).

    Shapes: ``loc`` and ``sigma`` broadcast to ``batch_shape``; ``event_shape == ()`` (use
    ``.to_event(1)`` for images flattened to ``(*, D)``).

    :param torch.Tensor loc: mean :math:`\mu` (any real).
    :param sigma: noise standard deviation, strictly positive (float or tensor).

    Example::

        >>> d = NoisyNormal(torch.zeros(3), 0.5)
        >>> d.log_prob(torch.zeros(3)).shape
        torch.Size([3])
    """

    arg_constraints = {"loc": constraints.real, "sigma": constraints.positive}
    support = constraints.real
    has_rsample = True

    def __init__(self, loc, sigma, *, validate_args=None):
        self.loc, self.sigma = broadcast_all(loc, sigma)
        batch_shape = torch.Size() if isinstance(loc, Number) and isinstance(sigma, Number) else self.loc.shape
        super().__init__(batch_shape, validate_args=validate_args)

    @property
    def scale(self):
        """Alias of :attr:`sigma` (torch's name for a location-scale family's scale)."""
        return self.sigma

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(NoisyNormal, _instance)
        batch_shape = torch.Size(batch_shape)
        new.loc = self.loc.expand(batch_shape)
        new.sigma = self.sigma.expand(batch_shape)
        super(NoisyNormal, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def mean(self):
        return self.loc

    @property
    def mode(self):
        return self.loc

    @property
    def variance(self):
        return self.sigma.pow(2)

    @property
    def stddev(self):
        return self.sigma

    def rsample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        eps = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)
        return self.loc + self.sigma * eps

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        z = (value - self.loc) / self.sigma
        return -0.5 * z.pow(2) - self.sigma.log() - 0.5 * math.log(2 * math.pi)

    def cdf(self, value):
        if self._validate_args:
            self._validate_sample(value)
        return 0.5 * (1 + torch.erf((value - self.loc) / (self.sigma * math.sqrt(2))))

    def icdf(self, value):
        return self.loc + self.sigma * math.sqrt(2) * torch.erfinv(2 * value - 1)

    def entropy(self):
        return 0.5 + 0.5 * math.log(2 * math.pi) + self.sigma.log()
