"""Messenger that multiplies the log-density of latent sample sites by β."""

import difflib
import math
import numbers

import torch
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample

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

    With ``sites``, every entry of the context (one call of a wrapped model or guide, or one ``with``
    block) must meet each named site as a latent sample site; otherwise leaving it raises
    ``ValueError`` naming the missing sites and the latent sites that did run. A named site that is
    observed or auxiliary raises ``ValueError`` when it is met: β scales latent sites only.
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
        self._latent_seen = set()  # latent sample sites met during the current entry

    def current_beta(self):
        """The β in force now (evaluates a schedule callable)."""
        return _check_beta(self.beta() if callable(self.beta) else self.beta)

    def __enter__(self):
        result = super().__enter__()
        self._latent_seen = set()
        return result

    def __exit__(self, exc_type, exc_value, traceback):
        result = super().__exit__(exc_type, exc_value, traceback)
        if exc_type is None and self.sites is not None:  # never mask an exception already propagating
            self._check_sites_seen()
        return result

    def _check_sites_seen(self):
        missing = sorted(self.sites - self._latent_seen)
        if not missing:
            return
        seen = sorted(self._latent_seen)
        guesses = []
        for name in missing:
            guesses += [f"{match!r} for {name!r}" for match in difflib.get_close_matches(name, seen, n=1)]
        raise ValueError(
            f"beta_scale(sites=...): the named site(s) {missing} did not run as latent sample sites inside the "
            f"handler (each call of a wrapped model or guide, and each `with` block, must contain every named "
            f"site); latent sites that ran: {seen}" + (f". Did you mean {', '.join(guesses)}?" if guesses else "")
        )

    def _pyro_sample(self, msg):
        if site_is_subsample(msg):  # a plate's index site, not a latent variable
            return
        named = self.sites is not None and msg["name"] in self.sites
        if msg["is_observed"] or msg["infer"].get("is_auxiliary", False):
            if named:
                kind = "observed" if msg["is_observed"] else "auxiliary"
                raise ValueError(
                    f"beta_scale scales latent sites only, but the named site {msg['name']!r} is {kind}"
                )
            return
        self._latent_seen.add(msg["name"])
        if self.sites is not None and not named:
            return
        msg["scale"] = self.current_beta() * msg["scale"]
