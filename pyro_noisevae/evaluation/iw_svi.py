"""Importance-weighted stochastic variational inference (IW-SVI): per-point refined proposals for evaluation."""

import numbers

import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer.autoguide import AutoGuide
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample
from pyro.util import get_rng_state, set_rng_state
from torch.distributions import Independent, Normal
from tqdm.auto import tqdm

from ..guides import DenoisingGuide
from ..infer.iwae_surrogate import iwae_objective
from ..infer.importance import check_local
from ..infer.fit_loop import FitLoop
from .chunks import (
    check_float,
    check_nesting,
    check_positive_int,
    check_programs,
    data_plate_nesting,
    make_chunks,
    probe_structure,
)
from .log_likelihood import ImportanceEstimate, estimate_chunks, traced_log_weights, traced_pass

__all__ = ["LocalGaussianGuide", "amortized_pair", "fit_local_guide", "iw_svi", "iw_svi_estimate", "refuse_autoguide"]

OBJECTIVES = ("iwae", "elbo")


def _unwrap_normal(fn):
    """``(normal, reinterpreted_ndims)`` for ``Normal`` possibly wrapped in ``Independent``; else ``(None, 0)``."""
    ndims = 0
    while isinstance(fn, Independent):
        ndims += fn.reinterpreted_batch_ndims
        fn = fn.base_dist
    return (fn, ndims) if isinstance(fn, Normal) else (None, 0)


class _LocalGaussianMessenger(Messenger):
    """Replace the distribution of each named guide site by ``Normal(loc, exp(log_scale)).to_event(n)``."""

    def __init__(self, params):
        super().__init__()
        self.params = params

    def _pyro_sample(self, msg):
        if msg["is_observed"] or msg["name"] not in self.params:
            return
        loc, log_scale, event_dim = self.params[msg["name"]]
        fn = msg["fn"]
        shape = tuple(fn.batch_shape + fn.event_shape)
        # leading dims beyond the fitted shape are particle dims (a site conditioned on an earlier draw, e.g.
        # q(z1 | z2, x), carries them): the per-point Gaussian replaces it for every particle
        if len(shape) < loc.dim() or shape[len(shape) - loc.dim():] != tuple(loc.shape):
            raise ValueError(
                f"LocalGaussianGuide: site {msg['name']!r} was fitted with per-point parameters of shape "
                f"{tuple(loc.shape)} but is now called with batch_shape + event_shape "
                f"{shape}; a local guide only applies to the data it was fitted on"
            )
        msg["fn"] = dist.Normal(loc, log_scale.exp()).to_event(event_dim)


class LocalGaussianGuide:
    r"""
    A non-amortized guide for one fixed batch of data: the sites of ``guide`` keep their plates (so the
    importance weights stay per data point) but their distributions are replaced by free Gaussians
    :math:`q(z_n) = N(\mu_n, \mathrm{diag}\, e^{2 \rho_n})`, one ``loc`` :math:`\mu_n` and ``log_scale``
    :math:`\rho_n` per data point and latent coordinate.

    Build it with :meth:`from_guide` (initialised at the amortized :math:`q(z \mid x_n)`) and refine it with
    :func:`fit_local_guide`. Call it with the same arguments as ``guide`` on the **same data** it was built
    for; it runs ``guide`` (for its plates) and swaps the distributions at sample time.

    :param guide: the amortized guide whose structure is reused.
    :param dict params: ``{site: (loc, log_scale, event_dim)}``, ``loc`` and ``log_scale`` of shape
        ``batch_shape + event_shape`` of the site (e.g. ``(B, z_dim)``).
    """

    def __init__(self, guide, params):
        if not callable(guide):
            raise TypeError(f"guide must be callable, got {type(guide).__name__}")
        self.guide = guide
        self.params = dict(params)

    @classmethod
    @torch.no_grad()
    def from_guide(cls, guide, *args, **kwargs):
        r"""
        Initialise from the amortized guide's output on ``args``: for each latent site the guide's
        ``Normal`` (or ``Normal(...).to_event(n)``) gives :math:`\mu_n` = its ``loc`` and
        :math:`\rho_n = \log` its ``scale``.

        **What the guide must provide.** Every sample site of ``guide`` must be a
        :class:`~torch.distributions.Normal` (Pyro's ``dist.Normal`` included), optionally wrapped in
        ``.to_event(n)`` / :class:`~torch.distributions.Independent`, inside the data plate; other families
        (mixtures, flows, full-covariance normals, masked or discrete sites) raise ``ValueError``.

        :raises ValueError: for a non-Gaussian guide site.
        """
        refuse_autoguide(guide)
        state = get_rng_state()  # the draws of this trace are discarded: keep the caller's random stream intact
        try:
            trace = poutine.trace(guide).get_trace(*args, **kwargs)
        finally:
            set_rng_state(state)
        params = {}
        for name, site in trace.nodes.items():
            if site["type"] != "sample" or site["is_observed"] or site_is_subsample(site):
                continue
            normal, _ = _unwrap_normal(site["fn"])
            if normal is None:
                raise ValueError(
                    f"IW-SVI optimises a per-point Gaussian (loc, log-scale) for each guide site, but guide site {name!r} "
                    f"is {type(site['fn']).__name__}. Write the guide with dist.Normal(loc, scale).to_event(n) for every "
                    "latent, or build a LocalGaussianGuide with your own initial parameters."
                )
            fn = site["fn"]
            shape = fn.batch_shape + fn.event_shape
            loc = normal.loc.detach().expand(shape).clone()
            log_scale = normal.scale.detach().log().expand(shape).clone()
            params[name] = (loc, log_scale, fn.event_dim)
        if not params:
            raise ValueError("the guide has no latent sample sites: there is nothing to optimise")
        return cls(guide, params)

    def parameters(self):
        """The free tensors ``[loc, log_scale, ...]`` in site order."""
        return [t for loc, log_scale, _ in self.params.values() for t in (loc, log_scale)]

    def loc(self, site):
        """Per-point means :math:`\\mu_n` of ``site``."""
        return self.params[site][0]

    def scale(self, site):
        """Per-point standard deviations :math:`e^{\\rho_n}` of ``site``."""
        return self.params[site][1].exp()

    def __call__(self, *args, **kwargs):
        with _LocalGaussianMessenger(self.params):
            return self.guide(*args, **kwargs)


def refuse_autoguide(guide):
    """IW-SVI and the gap decomposition refine an amortized guide: an autoguide is refused with the fix."""
    if isinstance(guide, AutoGuide):
        raise ValueError(
            f"the guide is a {type(guide).__name__}, whose parameters are already per data point: IW-SVI refines "
            "an AMORTIZED guide q(z | x) point by point. Fit the autoguide (its optimum is the per-point refit) "
            "and evaluate it with log_likelihood / importance_estimate instead.")


def amortized_pair(model, guide):
    """
    The (model, guide) whose amortized guide IW-SVI and the gap decomposition refine: a
    :class:`~pyro_noisevae.guides.DenoisingGuide` is replaced by the guide it wraps (the encoder on clean data, as
    amortized inference regularization evaluates it) and its model unwrapped from the corruption plate.
    """
    if isinstance(guide, DenoisingGuide):
        return guide.unwrap_model(model), guide.base_guide
    return model, guide


def fit_local_guide(model, guide, *args, objective="iwae", num_particles=50, num_steps=100, lr=0.05, lr_decay=0.1,
                    init=None, data_plate=None, max_plate_nesting=None, **kwargs):
    r"""
    Per-sample variational inference on one batch: starting from the amortized guide (or ``init``),
    maximise, separately for every data point :math:`x_n` of the batch (vectorized; Adam is coordinate-wise,
    so the points do not interact), the importance-weighted bound over the free Gaussian
    :math:`q_n = N(\mu_n, \mathrm{diag}\, e^{2\rho_n})`:

    .. math::

        \mathcal L_K(x_n; q_n) = \mathbb E_{z_{1:K} \sim q_n} \Big[\log \frac1K \sum_{k=1}^K
        \frac{p(x_n, z_k)}{q_n(z_k)}\Big] \quad (\texttt{objective="iwae"}, \text{IW-SVI, Shu et al. 2018, App. C}),

    or the ELBO :math:`\mathbb E_{q_n}[\log p(x_n, z) - \log q_n(z)]` averaged over ``num_particles`` samples
    (``objective="elbo"``: the optimal Gaussian :math:`q^*` of the approximation gap, Cremer et al. 2018).
    ``num_steps`` reparameterized Adam steps, learning rate decayed exponentially from ``lr`` to
    ``lr * lr_decay``. The model's parameters are not changed (only the local parameters get gradients).

    :param model: as in :func:`~pyro_noisevae.evaluation.importance_estimate`.
    :param guide: as in :func:`~pyro_noisevae.evaluation.importance_estimate`; its sites must
        be Gaussian (see :meth:`LocalGaussianGuide.from_guide`).
    :param args: the batch (data first), passed unchanged to model and guide.
    :param str objective: ``"iwae"`` or ``"elbo"``.
    :param int num_particles: ``K`` samples per step and data point.
    :param int num_steps: ``T >= 0`` optimisation steps.
    :param float lr: initial Adam learning rate.
    :param float lr_decay: final / initial learning rate, in ``(0, 1]``.
    :param LocalGaussianGuide init: start here instead of the amortized guide (it is not modified).
    :returns: the optimised guide for this batch.
    :rtype: LocalGaussianGuide
    """
    check_programs(model, guide)
    model, guide = amortized_pair(model, guide)
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    num_particles = check_positive_int(num_particles, "num_particles")
    if isinstance(num_steps, bool) or not isinstance(num_steps, numbers.Integral) or num_steps < 0:
        raise ValueError(f"num_steps must be an integer >= 0, got {num_steps!r}")
    lr = check_float(lr, "lr")
    lr_decay = check_float(lr_decay, "lr_decay", high=1.0)
    max_plate_nesting = check_nesting(max_plate_nesting)
    if init is not None and not isinstance(init, LocalGaussianGuide):
        raise TypeError(f"init must be a LocalGaussianGuide or None, got {type(init).__name__}")
    if init is None:
        check_local(probe_structure(model, guide, args, kwargs, data_plate))
        refuse_autoguide(guide)
    if max_plate_nesting is None:
        max_plate_nesting = data_plate_nesting(model, guide, args, kwargs)
    start = init if init is not None else LocalGaussianGuide.from_guide(guide, *args, **kwargs)
    params = {n: (loc.detach().clone().requires_grad_(), ls.detach().clone().requires_grad_(), e) for n, (loc, ls, e) in start.params.items()}
    local = LocalGaussianGuide(guide, params)
    if num_steps == 0:
        return _frozen(local)
    loop = None

    def negative_bound():
        log_w = traced_log_weights(model, local, args, kwargs, num_particles, max_plate_nesting, data_plate,
                                   check=loop.global_step == 0)
        bound = iwae_objective(log_w) if objective == "iwae" else log_w.mean(0)
        loss = -bound.sum()
        if not torch.isfinite(loss):  # before the step, so that the parameters stay finite
            raise FloatingPointError(
                f"the {objective} bound became {-loss.item()} at step {loop.global_step}; lower lr or check the "
                "model's support for these data"
            )
        return loss

    # full-batch steps; gradients for the local leaves only (the model's parameters get no .grad); a
    # KeyboardInterrupt propagates (a half-fitted guide is not returned as if it were fitted)
    loop = FitLoop(negative_bound, torch.optim.Adam(local.parameters(), lr=lr), epochs=num_steps, lr_decay=lr_decay,
                   grad_inputs_only=True, handle_signals=False)
    loop.run()
    return _frozen(local)


def _frozen(local):
    return LocalGaussianGuide(local.guide, {n: (loc.detach(), ls.detach(), e) for n, (loc, ls, e) in local.params.items()})


def iw_svi_estimate(model, guide, *args, num_steps=100, num_particles=50, lr=0.05, lr_decay=0.1, num_samples=5000,
                    chunk_size=100, batch_size=100, data_arg="auto", data_plate=None, max_plate_nesting=None,
                    progress=True, **kwargs):
    r"""
    IW-SVI (Shu et al. 2018, Appendix C) for every data point: initialise :math:`q_n` at the encoder's
    :math:`q(z \mid x_n)`, run :func:`fit_local_guide` (``objective="iwae"``, ``K = num_particles``,
    ``T = num_steps``) on a batch of ``batch_size`` points at a time, then evaluate the refined proposal
    with IWAE-k, :math:`k` = ``num_samples``:

    .. math::

        q_n^\star \approx \arg\max_{q_n} \mathcal L_K(x_n; q_n), \qquad
        \widehat{\log p}(x_n) = \log \frac1k \sum_{i=1}^k \frac{p(x_n, z_i)}{q_n^\star(z_i)},
        \quad z_i \sim q_n^\star.

    Unlike IWAE-k with the encoder, the estimate does not inherit the encoder's overfitting to the
    training set (the proposal is fitted to each test point). Memory: one optimisation pass holds
    ``num_particles x batch_size`` particles with their gradients; evaluation is chunked as in
    :func:`~pyro_noisevae.evaluation.importance_estimate`.

    :returns: per-point results, each of shape ``(N,)``.
    :rtype: ~pyro_noisevae.evaluation.ImportanceEstimate
    """
    check_programs(model, guide)
    model, guide = amortized_pair(model, guide)
    batch_size = check_positive_int(batch_size, "batch_size", allow_none=True)
    max_plate_nesting = check_nesting(max_plate_nesting)
    check_local(probe_structure(model, guide, args, kwargs, data_plate))  # global latents: refuse before any pass
    refuse_autoguide(guide)
    chunks, data_plate = make_chunks(model, guide, args, kwargs, data_arg, batch_size, data_plate)
    results = []
    for chunk in tqdm(chunks, desc=f"IW-SVI (T={num_steps}, K={num_particles})", disable=not progress, leave=False):
        m, g = chunk.wrap(model), chunk.wrap(guide)
        if max_plate_nesting is None:
            max_plate_nesting = data_plate_nesting(m, g, chunk.args, chunk.kwargs)
        local = fit_local_guide(m, g, *chunk.args, objective="iwae", num_particles=num_particles, num_steps=num_steps,
                                lr=lr, lr_decay=lr_decay, data_plate=data_plate, max_plate_nesting=max_plate_nesting,
                                **chunk.kwargs)
        results.append(estimate_chunks(traced_pass(m, local, data_plate, max_plate_nesting), [chunk.unwrapped()],
                                       num_samples, chunk_size))
    return ImportanceEstimate.cat(results)


def iw_svi(model, guide, *args, num_steps=100, num_particles=50, num_samples=5000, progress=True, **kwargs):
    r"""
    Per-data-point IW-SVI estimate of :math:`\log p(x_n)`, shape ``(N,)``: the IWAE-k estimate
    (``k = num_samples``) under a per-point Gaussian proposal initialised at the encoder and optimised for
    ``num_steps`` steps on the IWAE-K bound (``K = num_particles``). See :func:`iw_svi_estimate` for the
    options (``lr``, ``lr_decay``, ``chunk_size``, ``batch_size``, ``data_arg``, ...) and the diagnostics,
    and :meth:`LocalGaussianGuide.from_guide` for what the guide must provide (Gaussian sites).
    """
    return iw_svi_estimate(
        model, guide, *args, num_steps=num_steps, num_particles=num_particles, num_samples=num_samples, progress=progress, **kwargs
    ).log_px
