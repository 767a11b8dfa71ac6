"""Effect handlers for noise-model VAEs: β-scaling of latent sites and the σ↔β equivalence of σ-VAEs."""

import difflib
import math
import numbers

import torch
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample

__all__ = ["BetaScaleMessenger", "beta_scale", "bound_constant", "equivalent_beta"]

_FAMILIES = ("normal", "laplace")


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
