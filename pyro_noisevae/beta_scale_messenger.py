"""Messenger that multiplies the log-density of latent sample sites by β."""

import math
import numbers

import torch
from pyro.poutine.messenger import Messenger

__all__ = ["BetaScaleMessenger"]


def _check_beta(beta):
    if isinstance(beta, torch.Tensor):
        if beta.numel() != 1:
            raise ValueError(f"beta must be a scalar, got a tensor of shape {tuple(beta.shape)}")
        value = float(beta.detach())
    elif isinstance(beta, numbers.Real):
        value = float(beta)
    else:
        raise TypeError(f"beta must be a positive number, a scalar tensor or a callable, got {type(beta).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"beta must be finite and >= 0, got {value}")
    return beta


class BetaScaleMessenger(Messenger):
    r"""
    Scales the log-density of every *latent* (non-observed) sample site by :math:`\beta`, turning
    :math:`E_q[\log p(x|z)] - \mathrm{KL}(q\|p)` into the β-VAE bound
    :math:`E_q[\log p(x|z)] - \beta\,\mathrm{KL}(q\|p)`.

    It must wrap **both** the model and the guide: in Pyro the KL term is
    :math:`\log p(z) - \log q(z)`, and scaling only the model's site would give
    :math:`\log p(x|z) + \beta\log p(z) - \log q(z)`; ``TraceMeanField_ELBO`` takes the analytic KL's
    scale from the guide site.

    The update is multiplicative (``msg["scale"] = beta * msg["scale"]``), so it composes with
    plate subsampling scales and with other scale handlers. Observed sites are never touched, nor
    sites marked ``infer={"is_auxiliary": True}``.

    :param beta: a number :math:`\ge 0`, a scalar tensor, or a zero-argument callable returning
        one; a callable is read at every site, so warm-up schedules can change β between steps.
    :param sites: optional collection of site names to scale (default: all latent sites).
    """

    def __init__(self, beta, sites=None):
        super().__init__()
        if not callable(beta):
            _check_beta(beta)
        if sites is not None:
            if isinstance(sites, str):
                sites = [sites]
            sites = frozenset(sites)
        self.beta = beta
        self.sites = sites

    def current_beta(self):
        """The β in force now (evaluates a schedule callable)."""
        return _check_beta(self.beta() if callable(self.beta) else self.beta)

    def _pyro_sample(self, msg):
        if msg["is_observed"] or msg["infer"].get("is_auxiliary", False):
            return
        if self.sites is not None and msg["name"] not in self.sites:
            return
        msg["scale"] = self.current_beta() * msg["scale"]
