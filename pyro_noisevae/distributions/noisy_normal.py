"""Imaginary-noise Gaussian decoder law: Y = X + N(0, σ²)."""

import pyro.distributions as dist
from pyro.distributions import TorchDistribution, constraints

from ._checks import check_noise_level, finite_positive

__all__ = ["NoisyNormal"]


class NoisyNormal(dist.Normal, TorchDistribution):
    r"""
    The σ-VAE decoder: the law of :math:`Y = \mu + \sigma \varepsilon`, :math:`\varepsilon \sim N(0, 1)`,
    with a *fixed* ("imaginary") noise level :math:`\sigma` that is a hyper-parameter, not a learned scale.

    .. math::

        \log p_\sigma(y \mid \mu) = -\frac{(y - \mu)^2}{2\sigma^2} - \tfrac12 \log(2\pi\sigma^2)

    Summed over :math:`d` pixels this gives the σ-VAE reconstruction term
    :math:`-\lVert y - \mu(z) \rVert^2 / 2\sigma^2 - (d/2)\log 2\pi\sigma^2` (Saremi 2020, eq. for
    :math:`\mathcal{L}(\sigma)`).

    It is Pyro's :class:`~pyro.distributions.Normal` with the scale named ``sigma`` (``scale`` stays as an
    alias) and a finite noise level: sampling, ``log_prob``, ``cdf``, ``icdf``, moments, entropy and the
    registered KL divergences are the base family's. Under validation :math:`\sigma` must be finite and
    :math:`> 0` (``inf``, ``nan``, 0 and negative values raise ``ValueError``).

    Shapes: ``loc`` and ``sigma`` broadcast to ``batch_shape``; ``event_shape == ()`` (use
    ``.to_event(1)`` for images flattened to ``(*, D)``).

    :param torch.Tensor loc: mean :math:`\mu` (any real).
    :param sigma: noise standard deviation, finite and strictly positive (float or tensor).

    Example::

        >>> import torch
        >>> d = NoisyNormal(torch.zeros(3), 0.5)
        >>> d.log_prob(torch.zeros(3)).shape
        torch.Size([3])
    """

    arg_constraints = {"loc": constraints.real, "sigma": finite_positive}

    def __init__(self, loc, sigma, *, validate_args=None):
        check_noise_level(type(self).__name__, "sigma", sigma, validate_args)
        super().__init__(loc, sigma, validate_args=validate_args)

    @property
    def sigma(self):
        """The noise standard deviation :math:`\\sigma` (the base family's ``scale``)."""
        return self.scale

    def expand(self, batch_shape, _instance=None):
        # the base's expand broadcasts loc and scale and carries _validate_args over
        new = self._get_checked_instance(NoisyNormal, _instance)
        return super().expand(batch_shape, _instance=new)
