"""The importance-weighted bound (IWAE) as a Pyro ELBO, with standard and doubly-reparameterized gradients."""

import numbers

import torch
from pyro.distributions.util import detach, is_identically_zero, scale_and_mask
from pyro.infer.elbo import ELBO, ELBOModule
from pyro.infer.util import torch_item
from pyro.util import get_rng_state, set_rng_state, warn_if_nan
from torch import nn

from .importance import importance_traces, infer_max_plate_nesting, site_structure
from .iwae_surrogate import iwae_objective
from .particle_terms import (
    as_scale,
    is_delta,
    left_pad,
    per_particle,
    reduce_to_kept,
    same_scale,
    stack_particles,
    tensors_of,
    varies_only_along,
    warn_vectorize_fallback,
)

__all__ = ["IWAE_ELBO"]

GRADIENT_ESTIMATORS = ("standard", "dreg")
VALIDATE = ("first", "always")


















class _Setup:
    """What the first call of a (model, guide) pair found: plate nesting, site structure, vectorization."""

    def __init__(self, nesting, structure, vectorize):
        self.nesting, self.structure, self.vectorize = nesting, structure, vectorize
        self.checked = False
        self.dependence_checked = False  # DReG's hierarchy check needs autograd: done on the first call with grad


class _Terms:
    """Per-particle terms of one trace pair."""

    def __init__(self, log_w, log_w_dreg, score, common_scale, hooks, global_elbo, global_score):
        self.log_w = log_w  # (K?, *keep) local log p(x, z_k) - log q(z_k | x)
        self.log_w_dreg = log_w_dreg  # same values, log q evaluated with stopped guide parameters
        self.score = score  # log q of non-reparameterized local guide sites, or 0
        self.common_scale = common_scale  # float or tensor broadcastable to keep
        self.hooks = hooks  # list of (particle index or None, value, event_dim)
        self.global_elbo = global_elbo  # (K,) or 0-dim: log p - log q of the global sites, with their scales
        self.global_score = global_score  # log q of non-reparameterized global guide sites, or 0


class _ProgramsModule(ELBOModule):
    """:class:`~pyro.infer.elbo.ELBOModule` that also registers the modules owning bound-method programs."""

    def __init__(self, model, guide, elbo):
        super().__init__(model, guide, elbo)
        owners = []
        for fn in (model, guide):
            owner = getattr(fn, "__self__", None)
            if isinstance(owner, nn.Module) and not isinstance(fn, nn.Module) and all(owner is not o for o in owners):
                owners.append(owner)
        self.owners = nn.ModuleList(owners)


class IWAE_ELBO(ELBO):
    r"""
    The importance-weighted bound of Burda et al. (2016), per data point:

    .. math::

        \mathcal{L}_K(x) = \mathbb{E}_{z_{1:K} \sim q(z|x)} \Big[ \log \frac1K \sum_{k=1}^K w_k \Big],
        \qquad w_k = \frac{p(x, z_k)}{q(z_k \mid x)},

    with :math:`\mathcal{L}_1 = \text{ELBO} \le \mathcal{L}_K \le \mathcal{L}_{K+1} \le \log p(x)`.
    The log-sum-exp over the ``K`` particles is taken separately for every element of the plates
    common to **all** sample sites of model and guide (the data plate, and a
    :class:`~pyro_noisevae.guides.DenoisingGuide`'s corruption plate), and the result is summed over
    them, so ``loss`` is the negative bound summed over the data plate, like
    :class:`~pyro.infer.Trace_ELBO`.

    **Mini-batches.** A subsampled common plate scales every site by :math:`N/B`. That scale (and any
    other scale shared by the observed sites, e.g. a corruption plate's :math:`1/M`) is removed before
    the log-sum-exp and re-applied after it, so the mini-batch loss is an unbiased estimate of the
    full-data loss. A site whose scale differs from the observed sites' scale (e.g. a latent site under
    :func:`~pyro_noisevae.handlers.beta_scale`) keeps its relative scale inside :math:`\log w_k`.

    **Gradients.** One private helper builds a single differentiable surrogate whose value is the
    bound and whose gradient is the chosen estimator; ``loss``, ``loss_and_grads`` and
    ``differentiable_loss`` (hence ``elbo(model, guide)`` → :class:`~pyro.infer.elbo.ELBOModule`) all
    use it. With normalized weights :math:`\tilde w_k = w_k / \sum_j w_j`:

    * ``"standard"``: :math:`\sum_k \tilde w_k \nabla \log w_k`, plus the score-function term
      :math:`\mathcal{L}_K \sum_k \nabla \log q(z_k)` for non-reparameterized guide sites.
    * ``"dreg"`` (doubly reparameterized, Tucker et al. 2019): model parameters get
      :math:`\sum_k \tilde w_k \nabla_\theta \log w_k`; guide parameters get
      :math:`\sum_k \tilde w_k^2 \, \frac{\partial \log w_k}{\partial z_k} \frac{\partial z_k}{\partial \phi}`,
      where :math:`\log q` is evaluated with the guide's parameters stopped (only the path through
      :math:`z_k` remains). Implemented with a stopped-parameter copy of each guide distribution and a
      gradient hook on :math:`z_k` that multiplies by :math:`\tilde w_k`. It needs every guide site to
      be reparameterized and guide sites not to depend on other guide latents (checked with autograd on
      the first call that records gradients: ``loss`` and ``SVI.evaluate_loss`` run without them).

    **Global latents** (sites outside the data plate, e.g. the weights of a Bayesian regression) are
    drawn **once** per step and shared by the ``K`` particles; the bound is then

    .. math::

        \mathcal{L}_K = \mathbb{E}_{q(\theta)}\Big[\log \frac{p(\theta)}{q(\theta)}
            + \sum_n \mathbb{E}\log \frac1K \sum_k \frac{p(x_n, z_{nk} \mid \theta)}{q(z_{nk} \mid x_n, \theta)}\Big]
        \le \log p(x),

    importance weighting over the local latents and the ELBO term for the globals: a sum of per-point terms
    plus a global term, hence unbiased under mini-batching (scaling the log-sum-exp of a whole subsampled
    likelihood, as :class:`~pyro.infer.RenyiELBO` does, is not). With no local latents it is the ELBO.
    The data plate is found as the plate common to every observed site, or named with ``data_plate``.

    Particles are vectorized by default (an outer ``plate("num_particles_vectorized")``, as in
    :class:`~pyro.infer.elbo.ELBO`); with ``vectorize_particles=False`` the traces are looped and
    stacked, which requires every particle to have the same shapes. A program that fails under the
    particle plate on its first call (e.g. a ``PyroSample`` weight fed to ``nn.Linear``) falls back to
    looped particles with a ``RuntimeWarning``.

    **Checks once.** The structure of a (model, guide) pair (plate nesting, data plate, global sites) is
    found on its first call; Pyro's validation (distribution arguments and supports, model/guide match,
    site shapes) and the NaN check run on that first call and are skipped afterwards
    (``validate="always"`` keeps them on every call). Later calls synchronise nothing with the host.

    :param int num_particles: :math:`K \ge 1` importance samples per data point.
    :param int max_plate_nesting: bound on nested plates in model and guide (without the particle
        plate, which sits at dim ``-(max_plate_nesting + 1)``); inferred by running model and guide once
        when ``None``. As in :class:`~pyro.infer.elbo.ELBO`, the attribute ``max_plate_nesting`` counts the
        particle plate when particles are vectorized (``K > 1``): 3 for ``max_plate_nesting=2``; it stays
        ``inf`` when the nesting is inferred.
    :param bool vectorize_particles: draw the ``K`` particles in one vectorized pass (default ``True``).
    :param str gradient_estimator: ``"standard"`` or ``"dreg"``.
    :param bool retain_graph: passed to ``backward`` in :meth:`loss_and_grads`.
    :param str data_plate: name of the data plate (default: found from the traces).
    :param str validate: ``"first"`` (default: Pyro's checks on the first call of each (model, guide) pair)
        or ``"always"``.

    **References**

    1. Y. Burda, R. Grosse, R. Salakhutdinov, *Importance Weighted Autoencoders*, ICLR 2016.
    2. G. Tucker, D. Lawson, S. Gu, C. J. Maddison, *Doubly Reparameterized Gradient Estimators for
       Monte Carlo Objectives*, ICLR 2019.
    3. D. J. Im, S. Ahn, R. Memisevic, Y. Bengio, *Denoising Criterion for Variational Auto-encoding
       Framework*, AAAI 2017 (DIWAE: this objective with a denoising guide).
    """

    def __init__(
        self,
        num_particles=2,
        max_plate_nesting=None,
        vectorize_particles=True,
        gradient_estimator="standard",
        retain_graph=None,
        data_plate=None,
        validate="first",
    ):
        if isinstance(num_particles, bool) or not isinstance(num_particles, numbers.Integral) or num_particles < 1:
            raise ValueError(f"num_particles must be an integer >= 1, got {num_particles!r}")
        if max_plate_nesting is None:
            max_plate_nesting = float("inf")
        elif max_plate_nesting != float("inf") and (
            isinstance(max_plate_nesting, bool)
            or not isinstance(max_plate_nesting, numbers.Integral)
            or max_plate_nesting < 0
        ):
            raise ValueError(f"max_plate_nesting must be None or an integer >= 0, got {max_plate_nesting!r}")
        if gradient_estimator not in GRADIENT_ESTIMATORS:
            raise ValueError(f"gradient_estimator must be one of {GRADIENT_ESTIMATORS}, got {gradient_estimator!r}")
        if validate not in VALIDATE:
            raise ValueError(f"validate must be one of {VALIDATE}, got {validate!r}")
        if data_plate is not None and not isinstance(data_plate, str):
            raise TypeError(f"data_plate must be a plate name (str) or None, got {type(data_plate).__name__}")
        self.gradient_estimator = gradient_estimator
        self.data_plate = data_plate
        self.validate = validate
        self._setups = {}
        super().__init__(
            num_particles=int(num_particles),
            max_plate_nesting=max_plate_nesting,
            vectorize_particles=bool(vectorize_particles),
            retain_graph=retain_graph,
        )

    # ----------------------------------------------------------------------------------------------
    # structure (once per (model, guide) pair) and the one helper

    def _setup(self, model, guide, args, kwargs):
        """Plate nesting, site structure and vectorization of a (model, guide) pair, found on its first call."""
        key = (model, guide)
        try:
            cached = self._setups.get(key)
        except TypeError:  # unhashable programs: no cache
            key, cached = None, None
        if cached is not None:
            return cached
        nesting = self.max_plate_nesting
        if nesting == float("inf"):
            nesting = infer_max_plate_nesting(model, guide, args, kwargs)
        elif self.vectorize_particles and self.num_particles > 1:
            nesting -= 1  # the attribute counts the particle plate (Pyro's ELBO convention); the programs' plates here
        # one pass without particles finds the data plate and the global latents; the RNG is restored so that
        # the first real evaluation draws what Trace_ELBO would (same seed => same particles)
        state = get_rng_state()
        try:
            with torch.no_grad():
                pairs, _ = importance_traces(model, guide, args, kwargs, 1, nesting, vectorize=False)
        finally:
            set_rng_state(state)
        model_trace, guide_trace = pairs[0]  # the core checked enumeration and the model/guide match
        setup = _Setup(nesting, site_structure(model_trace, guide_trace, self.data_plate), self.vectorize_particles)
        if key is not None:
            self._setups[key] = setup
        return setup

    def _get_trace(self, model, guide, args, kwargs):
        """One unvectorized (model, guide) trace pair (the abstract hook of :class:`~pyro.infer.ELBO`)."""
        setup = self._setup(model, guide, args, kwargs)
        pairs, _ = importance_traces(model, guide, args, kwargs, 1, setup.nesting, False,
                                     setup.structure.global_names)
        return pairs[0]

    def _traces(self, setup, model, guide, args, kwargs, check):
        """Particle traces, falling back once to looped particles if the programs cannot be vectorized."""
        K, globals_ = self.num_particles, setup.structure.global_names
        if not (setup.vectorize and K > 1) or setup.checked:
            return importance_traces(model, guide, args, kwargs, K, setup.nesting, setup.vectorize, globals_, check)
        try:
            return importance_traces(model, guide, args, kwargs, K, setup.nesting, True, globals_, check)
        except (RuntimeError, ValueError, IndexError) as error:
            try:
                result = importance_traces(model, guide, args, kwargs, K, setup.nesting, False, globals_, check)
            except Exception:
                raise error
            warn_vectorize_fallback(error)
            setup.vectorize = False
            return result

    def _particle_terms(self, model_trace, guide_trace, setup, particle_index, particle_dim, check_dependence):
        """Local log weights reduced to the kept plate dims, and the global ELBO terms, of one trace pair."""
        structure = setup.structure
        local = set(structure.local_names)
        keep = structure.frames((model_trace, guide_trace))
        keep_dims = {f.dim for f in keep} | ({particle_dim} if particle_dim is not None else set())
        sites = [s for tr in (model_trace, guide_trace) for s in tr.nodes.values() if s["type"] == "sample"]
        # the data-plate subsampling factor N / B, shared by every local site
        subsample = 1.0
        for f in keep:
            if f.full_size is not None and f.full_size != f.size:
                subsample = subsample * f.full_size / f.size
        relative = {id(s): as_scale(s["scale"]) / subsample for s in sites if s["name"] in local}
        # any further scale shared by the observed sites (e.g. the 1/M of a corruption plate) is a
        # replication weight of each plate element: it must also act after the log-sum-exp
        reference = [relative[id(s)] for s in model_trace.nodes.values()
                     if s["type"] == "sample" and s["is_observed"] and id(s) in relative]
        reference = reference or list(relative.values())
        shared = reference[0] if reference else 1.0
        if not all(same_scale(shared, r) for r in reference) or not varies_only_along(shared, keep_dims):
            shared = 1.0

        log_w = log_w_dreg = score = 0.0
        global_elbo = global_score = 0.0
        hooks = []
        for name, site in model_trace.nodes.items():
            if site["type"] != "sample":
                continue
            if name not in local:
                global_elbo = global_elbo + per_particle(site["log_prob"], particle_dim)
                continue
            rel = relative[id(site)] / shared
            lp = reduce_to_kept(scale_and_mask(site["unscaled_log_prob"], rel, site["mask"]), keep_dims)
            log_w = log_w + lp
            log_w_dreg = log_w_dreg + lp
        dreg = self.gradient_estimator == "dreg"
        upstream = []  # reparameterized guide draws so far (for the DReG dependence check)
        for name, site in guide_trace.nodes.items():
            if site["type"] != "sample":
                continue
            _, score_function, entropy_term = site["score_parts"]
            has_score = not is_identically_zero(score_function)
            if has_score and not is_identically_zero(entropy_term):
                # link to the issue: https://github.com/pyro-ppl/pyro/issues/1222
                raise NotImplementedError(
                    f"IWAE_ELBO: guide site {name!r} ({type(site['fn']).__name__}) is partially reparameterized "
                    "(both score-function and pathwise terms); this estimator handles fully reparameterized or "
                    "fully non-reparameterized sites only."
                )
            if has_score and dreg:
                raise ValueError(
                    f"gradient_estimator='dreg' needs a reparameterized guide, but guide site {name!r} "
                    f"({type(site['fn']).__name__}) has no rsample. Use gradient_estimator='standard' "
                    "(score-function gradient) or a reparameterizable distribution."
                )
            if name not in local:
                lq = per_particle(site["log_prob"], particle_dim)
                global_elbo = global_elbo - lq
                if has_score:
                    global_score = global_score + lq
                elif site["value"].requires_grad:
                    upstream.append(site["value"])
                continue
            rel = relative[id(site)] / shared
            lq = reduce_to_kept(scale_and_mask(site["unscaled_log_prob"], rel, site["mask"]), keep_dims)
            log_w = log_w - lq
            if has_score:
                score = score + lq
                log_w_dreg = log_w_dreg - lq
            elif dreg and not is_delta(site["fn"]):
                # Delta sites (e.g. an autoguide's transform of its auxiliary draw) carry no parameters of
                # their own: their log density depends on the upstream draw only and keeps its path
                stopped = detach(site["fn"]).log_prob(site["value"], *site["args"], **site["kwargs"])
                log_w_dreg = log_w_dreg - reduce_to_kept(scale_and_mask(stopped, rel, site["mask"]), keep_dims)
                value = site["value"]
                if value.requires_grad:
                    if check_dependence:
                        self._check_no_latent_dependence(name, site, upstream)
                    upstream.append(value)
                    hooks.append((particle_index, value, site["fn"].event_dim))
            else:
                log_w_dreg = log_w_dreg - lq
        return _Terms(log_w, log_w_dreg, score, subsample * shared, hooks, global_elbo, global_score)

    @staticmethod
    def _check_no_latent_dependence(name, site, earlier_values):
        if not earlier_values:
            return
        params = [t for t in tensors_of(site["fn"]) if t.requires_grad]
        if not params:
            return
        grads = torch.autograd.grad(
            sum(t.sum() for t in params), earlier_values, retain_graph=True, allow_unused=True
        )
        if any(g is not None for g in grads):
            raise NotImplementedError(
                f"gradient_estimator='dreg': guide site {name!r} depends on an earlier guide latent; the stopped-"
                "parameter log q would also stop that dependence and bias the gradient. Use "
                "gradient_estimator='standard' for hierarchical guides."
            )

    def _collect(self, model, guide, args, kwargs):
        setup = self._setup(model, guide, args, kwargs)
        first = not setup.checked
        check = self.validate == "always" or first
        pairs, pdim = self._traces(setup, model, guide, args, kwargs, check)
        terms = [self._particle_terms(mt, gt, setup, i if pdim is None else None, pdim, not setup.dependence_checked)
                 for i, (mt, gt) in enumerate(pairs)]
        setup.checked = True
        # under no_grad (loss, SVI.evaluate_loss) no draw has a graph: DReG's dependence check waits for a call with one
        setup.dependence_checked = setup.dependence_checked or torch.is_grad_enabled()
        K = self.num_particles
        if pdim is not None:  # one vectorized trace, particles at pdim
            t = terms[0]
            ndim = -pdim
            log_w, log_w_dreg, score = [left_pad(x, ndim) if isinstance(x, torch.Tensor) else x
                                        for x in (t.log_w, t.log_w_dreg, t.score)]
            global_elbo, global_score, hooks, common_scale = t.global_elbo, t.global_score, t.hooks, t.common_scale
        else:  # K looped traces (or K == 1): stack along a new dim 0
            common_scale = terms[0].common_scale
            log_w, log_w_dreg, score = (stack_particles([getattr(t, f) for t in terms]) for f in ("log_w", "log_w_dreg", "score"))
            global_elbo = stack_particles([t.global_elbo for t in terms])
            global_score = stack_particles([t.global_score for t in terms])
            hooks = [h for t in terms for h in t.hooks]
        if not isinstance(log_w, torch.Tensor) or log_w.shape[0] != K:
            raise RuntimeError(
                f"IWAE_ELBO expected {K} particles along the outer dim of the log weights, got shape "
                f"{tuple(getattr(log_w, 'shape', ()))}; check max_plate_nesting and that every site is inside "
                "the particle plate"
            )
        return log_w, log_w_dreg, score, common_scale, hooks, global_elbo, global_score, check

    def _differentiable_loss(self, model, guide, args, kwargs):
        """Single surrogate: value = -bound (summed over common plates), gradient = the chosen estimator."""
        log_w, log_w_dreg, score, common_scale, hooks, global_elbo, global_score, check = self._collect(
            model, guide, args, kwargs)
        if self.gradient_estimator == "dreg":
            objective = iwae_objective(log_w, log_w_dreg=log_w_dreg, dreg_values=hooks)
        else:
            objective = iwae_objective(log_w, score=score)
        total = (common_scale * objective).sum()
        if isinstance(global_elbo, torch.Tensor):
            # the global latents' ELBO term, one draw shared by the K particles (mean over identical copies)
            total = total + global_elbo.mean()
            if isinstance(global_score, torch.Tensor):
                # score-function term of non-reparameterized global sites (zero value, gradient f * grad log q)
                g = global_score.mean()
                total = total + (g - g.detach()) * total.detach()
        loss = -total
        if check:
            warn_if_nan(loss, "loss")
        return loss

    # ----------------------------------------------------------------------------------------------
    # public interface, all from the helper above

    def __call__(self, model, guide):
        """
        An :class:`~pyro.infer.elbo.ELBOModule` computing this loss; modules behind bound-method programs
        (``vae.model``, ``vae.guide``) are registered, so ``elbo(vae.model, vae.guide).parameters()`` are the
        VAE's parameters.
        """
        return _ProgramsModule(model, guide, self)

    def differentiable_loss(self, model, guide, *args, **kwargs):
        """
        :returns: the negative bound (a scalar tensor) whose gradient is the chosen estimator; use it with
            any PyTorch optimizer (this is what :class:`~pyro.infer.elbo.ELBOModule` calls).
        """
        return self._differentiable_loss(model, guide, args, kwargs)

    def loss(self, model, guide, *args, **kwargs):
        """
        :returns: an estimate of the negative bound, summed over the data plate (scaled to the full data
            set when the plate subsamples).
        :rtype: float
        """
        with torch.no_grad():
            return torch_item(self._differentiable_loss(model, guide, args, kwargs))

    def loss_and_grads(self, model, guide, *args, **kwargs):
        """
        Estimate the negative bound and accumulate its gradient (the chosen estimator) into the
        parameters' ``.grad``, as :class:`~pyro.infer.SVI` expects.

        :returns: the loss estimate.
        :rtype: float
        """
        loss = self._differentiable_loss(model, guide, args, kwargs)
        if loss.requires_grad:
            loss.backward(retain_graph=self.retain_graph)
        return torch_item(loss)
