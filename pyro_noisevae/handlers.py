"""Effect handlers for noise-model VAEs: β-scaling and the σ↔β equivalence of σ-VAEs."""

import math
import numbers

import torch

from .beta_scale_messenger import BetaScaleMessenger

__all__ = ["BetaScaleMessenger", "beta_scale", "bound_constant", "equivalent_beta"]

_FAMILIES = ("normal", "laplace")


def beta_scale(fn=None, beta=1.0, sites=None):
    """
    Scale latent sample sites by β (see :class:`BetaScaleMessenger`). Usable three ways::

        with beta_scale(beta=4.0):            # context manager
            loss = elbo.loss(model, guide, x)
        scaled_model = beta_scale(model, beta=4.0)   # higher-order function
        @beta_scale(beta=4.0)                 # decorator
        def guide(x): ...

    Apply it to the model **and** the guide.

    :param callable fn: a stochastic function to wrap, or ``None``.
    :param beta: number >= 0, scalar tensor, or zero-argument callable (a schedule).
    :param sites: optional site names to scale (default: every latent site). Each named site must run
        as a latent sample site in every call of a wrapped function (or in the ``with`` block).
    :raises ValueError: on leaving the context, if a named site did not run as a latent site (the
        message lists the latent sites that did, to catch typos); at once if a named site is observed
        or auxiliary.
    """
    msngr = BetaScaleMessenger(beta=beta, sites=sites)
    if fn is None:
        return msngr
    if not callable(fn):
        raise TypeError(f"beta_scale expects a callable or None as `fn`, got {type(fn).__name__}")
    return msngr(fn)


def _positive(name, value):
    v = float(value.detach()) if isinstance(value, torch.Tensor) and value.numel() == 1 else value
    if not isinstance(v, numbers.Real) or not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(v)


def _family(family):
    if family not in _FAMILIES:
        raise ValueError(f"family must be one of {_FAMILIES}, got {family!r}")
    return family


def equivalent_beta(sigma_from, sigma_to, family="normal"):
    r"""
    The β at which a σ-VAE with noise level ``sigma_from`` (σ₁) reproduces the bound of one with
    ``sigma_to`` (σ₂): :math:`\mathcal{L}(\sigma_2) = \mathcal{L}(\sigma_1, \beta)/\beta + c`.

    * ``family="normal"``: :math:`\beta = \sigma_2^2 / \sigma_1^2`.
    * ``family="laplace"``: :math:`\beta = b_2 / b_1` (scales of the Laplace decoders).

    :returns: ``float`` β > 0.
    """
    s1, s2 = _positive("sigma_from", sigma_from), _positive("sigma_to", sigma_to)
    return (s2 / s1) ** 2 if _family(family) == "normal" else s2 / s1


def bound_constant(sigma_from, sigma_to, num_dims=None, family="normal", **kwargs):
    r"""
    The additive constant :math:`c` per data point in
    :math:`\mathcal{L}(\sigma_2) = \mathcal{L}(\sigma_1, \beta)/\beta + c`, for d = ``num_dims`` observed
    dimensions:

    * normal: :math:`c = -\tfrac d2 \log(2\pi\sigma_2^2) + \tfrac1\beta \tfrac d2 \log(2\pi\sigma_1^2)`
    * laplace: :math:`c = -d\log(2 b_2) + \tfrac1\beta d \log(2 b_1)`

    Multiply by the number of data points (the data plate's full size) for a dataset-level bound.

    :param sigma_from: σ₁ (b₁ for laplace), > 0.
    :param sigma_to: σ₂ (b₂ for laplace), > 0.
    :param int num_dims: required; d, the **number** of observed dimensions per data point (784 for
        MNIST), not a Pyro ``event_dim``.
    :param str family: ``"normal"`` or ``"laplace"``.
    :returns: ``float``.
    :raises TypeError: if ``num_dims`` is missing or an unknown keyword (such as ``event_dim``) is passed.
    """
    if kwargs:
        hint = " (it is not a Pyro event_dim)" if "event_dim" in kwargs else ""
        raise TypeError(
            f"bound_constant() got unexpected keyword argument(s) {sorted(kwargs)}; pass num_dims, "
            f"the number of observed dimensions d (e.g. 784 for MNIST){hint}"
        )
    if num_dims is None:
        raise TypeError("bound_constant() missing required argument num_dims (the number of observed dimensions d)")
    s1, s2 = _positive("sigma_from", sigma_from), _positive("sigma_to", sigma_to)
    if not isinstance(num_dims, numbers.Integral) or num_dims < 1:
        raise ValueError(f"num_dims must be a positive integer (observed dimensions d), got {num_dims!r}")
    beta = equivalent_beta(s1, s2, family)
    d = num_dims
    if family == "normal":
        return -0.5 * d * math.log(2 * math.pi * s2**2) + 0.5 * d * math.log(2 * math.pi * s1**2) / beta
    return -d * math.log(2 * s2) + d * math.log(2 * s1) / beta
