"""Imaginary-noise Laplace decoder law: Y = X + Laplace(0, b)."""

import pyro.distributions as dist
from pyro.distributions import TorchDistribution, constraints

from ._checks import check_noise_level, finite_positive

__all__ = ["NoisyLaplace"]


class NoisyLaplace(dist.Laplace, TorchDistribution):
    r"""
    Laplace analogue of :class:`NoisyNormal` with a fixed scale :math:`b`:

    .. math::

        \log p_b(y \mid \mu) = -\frac{|y - \mu|}{b} - \log(2b)

    For this family the σ↔β equivalence reads :math:`\beta = b_2 / b_1` (Saremi 2020).

    It is Pyro's :class:`~pyro.distributions.Laplace` with a finite noise level: sampling, ``log_prob``,
    ``cdf``, ``icdf``, moments and entropy are the base family's. Under validation :math:`b` must be finite
    and :math:`> 0` (``inf``, ``nan``, 0 and negative values raise ``ValueError``).

    Shapes: ``loc`` and ``scale`` broadcast to ``batch_shape``; ``event_shape == ()``.

    :param torch.Tensor loc: location :math:`\mu`.
    :param scale: scale :math:`b`, finite and > 0 (float or tensor).
    """

    arg_constraints = {"loc": constraints.real, "scale": finite_positive}

    def __init__(self, loc, scale, *, validate_args=None):
        check_noise_level(type(self).__name__, "scale", scale, validate_args, meaning="the noise scale b")
        super().__init__(loc, scale, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        # the base's expand broadcasts loc and scale and carries _validate_args over
        new = self._get_checked_instance(NoisyLaplace, _instance)
        return super().expand(batch_shape, _instance=new)
