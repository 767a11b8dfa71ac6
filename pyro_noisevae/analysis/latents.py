"""The latent code of a trained VAE: analytic KL of a diagonal Gaussian posterior to N(0, I), active units."""

import numbers

import torch
from torch.distributions import Normal, kl_divergence

from .._checks import check_tensor

__all__ = ["active_units", "gaussian_kl_standard_normal"]


def gaussian_kl_standard_normal(loc, scale, reduce=True):
    r"""
    Analytic KL divergence of a diagonal Gaussian from the standard normal prior:

    .. math:: \mathrm{KL}\big(N(\mu, \mathrm{diag}\, s^2)\,\|\,N(0, I)\big)
              = \tfrac12 \sum_j \big(\mu_j^2 + s_j^2 - 1 - \log s_j^2\big).

    :param torch.Tensor loc: :math:`\mu`, shape ``(*, z_dim)``.
    :param torch.Tensor scale: :math:`s > 0`, shape broadcastable with ``loc``.
    :param bool reduce: sum over the last (latent) dimension (default); otherwise return the per-dimension
        terms, shape ``(*, z_dim)``.
    :returns: ``(*,)`` (or ``(*, z_dim)`` when ``reduce=False``), in nats.
    :raises ValueError: if ``scale`` has a non-positive entry or either input is not finite.
    """
    check_tensor(loc, "loc")
    check_tensor(scale, "scale", min_dim=0)
    if bool((scale <= 0).any()):
        raise ValueError("scale must be > 0 everywhere (it is a standard deviation, not a log-scale)")
    loc, scale = torch.broadcast_tensors(loc, scale)
    per_dim = kl_divergence(Normal(loc, scale), Normal(torch.zeros_like(loc), torch.ones_like(scale)))
    return per_dim.sum(-1) if reduce else per_dim


def active_units(locs, threshold=0.01):
    r"""
    Number of active latent units (Burda et al., 2015): dimension :math:`j` is active when the posterior mean
    varies across data, :math:`A_j = \mathrm{Var}_x\big(E_{q(z|x)}[z_j]\big) > \delta`.

    :param torch.Tensor locs: posterior means :math:`E_q[z|x_n]`, shape ``(N, z_dim)`` with ``N >= 2``.
    :param float threshold: :math:`\delta` (default 0.01).
    :returns: ``(count, variances)``: the number of active units (int) and :math:`A` of shape ``(z_dim,)``.
    """
    check_tensor(locs, "locs", min_dim=2)
    if locs.dim() != 2 or locs.shape[0] < 2:
        raise ValueError(f"locs must have shape (N, z_dim) with N >= 2, got {tuple(locs.shape)}")
    if not (isinstance(threshold, numbers.Real) and threshold >= 0):
        raise ValueError(f"threshold must be a real number >= 0, got {threshold!r}")
    var = locs.var(0, correction=0)
    return int((var > threshold).sum()), var
