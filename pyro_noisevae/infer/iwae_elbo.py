"""The importance-weighted bound (IWAE) as a Pyro ELBO, with standard and doubly-reparameterized gradients."""

import math
import numbers

import torch
from pyro.distributions.util import detach, is_identically_zero, scale_and_mask
from pyro.infer.elbo import ELBO
from pyro.infer.enum import get_importance_trace
from pyro.infer.util import torch_item
from pyro.util import get_rng_state, set_rng_state, warn_if_nan

__all__ = ["IWAE_ELBO"]

_PARTICLE_PLATE = "num_particles_vectorized"  # the outer plate of pyro.infer.ELBO._vectorized_num_particles
GRADIENT_ESTIMATORS = ("standard", "dreg")


def _as_scale(scale):
    return scale if isinstance(scale, (numbers.Number, torch.Tensor)) else float(scale)


def _same_scale(a, b):
    if isinstance(a, numbers.Number) and isinstance(b, numbers.Number):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    try:
        a, b = torch.broadcast_tensors(a.to(b.dtype), b)
    except RuntimeError:
        return False
    return bool(torch.allclose(a, b, rtol=1e-9, atol=0.0))


def _varies_only_along(scale, keep_dims):
    """True if the tensor ``scale`` (right-aligned to batch dims) is constant along every dim not in ``keep_dims``."""
    if isinstance(scale, numbers.Number):
        return True
    return all(size == 1 or d in keep_dims for d, size in zip(range(-scale.dim(), 0), scale.shape))


def _reduce(tensor, keep_dims):
    """Sum ``tensor`` (right-aligned batch dims) over every dim not in ``keep_dims``, keeping them as size 1."""
    if not isinstance(tensor, torch.Tensor):
        return tensor
    dims = [d for d in range(-tensor.dim(), 0) if d not in keep_dims and tensor.shape[d] != 1]
    return tensor.sum(dims, keepdim=True) if dims else tensor


def _left_pad(tensor, ndim):
    return tensor.reshape((1,) * (ndim - tensor.dim()) + tensor.shape)


def _tensors_of(obj, seen=None):
    """The tensors held (possibly through base distributions) by a distribution object."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return []
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for item in obj for t in _tensors_of(item, seen)]
    if isinstance(obj, torch.distributions.Distribution):
        return [t for value in vars(obj).values() for t in _tensors_of(value, seen)]
    return []


class _Particles:
    """Per-particle terms of the importance weights, stacked along dim 0 (``K`` particles)."""

    def __init__(self, log_w, log_w_dreg, score, common_scale, hooks):
        self.log_w = log_w  # (K, *common) log p(x, z_k) - log q(z_k | x)
        self.log_w_dreg = log_w_dreg  # same values, log q evaluated with stopped guide parameters
        self.score = score  # (K, *common) log q(z_k) of non-reparameterized guide sites, or 0
        self.common_scale = common_scale  # float or tensor broadcastable to common
        self.hooks = hooks  # list of (particle index or None, value, event_dim)


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
      be reparameterized and guide sites not to depend on other guide latents.

    Particles are vectorized by default (an outer ``plate("num_particles_vectorized")``, as in
    :class:`~pyro.infer.elbo.ELBO`); with ``vectorize_particles=False`` the traces are looped and
    stacked, which requires every particle to have the same shapes.

    :param int num_particles: :math:`K \ge 1` importance samples per data point.
    :param int max_plate_nesting: bound on nested plates in model and guide (without the particle
        plate); inferred by running model and guide once when ``None``.
    :param bool vectorize_particles: draw the ``K`` particles in one vectorized pass (default ``True``).
    :param str gradient_estimator: ``"standard"`` or ``"dreg"``.
    :param bool retain_graph: passed to ``backward`` in :meth:`loss_and_grads`.

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
        self.gradient_estimator = gradient_estimator
        super().__init__(
            num_particles=int(num_particles),
            max_plate_nesting=max_plate_nesting,
            vectorize_particles=bool(vectorize_particles),
            retain_graph=retain_graph,
        )

    def _guess_max_plate_nesting(self, model, guide, args, kwargs):
        # the guess runs model and guide once; restore the RNG so that it does not shift the draws of
        # the first real evaluation (same seed => same particles as Trace_ELBO / loss vs loss_and_grads)
        state = get_rng_state()
        try:
            super()._guess_max_plate_nesting(model, guide, args, kwargs)
        finally:
            set_rng_state(state)

    def _get_traces(self, model, guide, args, kwargs):
        if self.vectorize_particles and self.num_particles == 1:
            # no particle plate is needed for one particle, hence no need to guess the plate nesting
            yield self._get_trace(model, guide, args, kwargs)
            return
        yield from super()._get_traces(model, guide, args, kwargs)

    def _get_trace(self, model, guide, args, kwargs):
        model_trace, guide_trace = get_importance_trace("flat", self.max_plate_nesting, model, guide, args, kwargs)
        enumerated = [n for n, s in guide_trace.nodes.items() if s["type"] == "sample" and s["infer"].get("enumerate")]
        if enumerated:
            raise NotImplementedError(
                f"IWAE_ELBO does not enumerate discrete sites; guide sites {enumerated} are marked for enumeration. "
                "Remove infer={'enumerate': ...} (they are then sampled) or use TraceEnum_ELBO."
            )
        missing = [
            n
            for n, s in model_trace.nodes.items()
            if s["type"] == "sample" and not s["is_observed"] and n not in guide_trace.nodes
        ]
        if missing:
            raise ValueError(
                f"IWAE_ELBO: model latent sites {missing} are not sampled by the guide; the importance weights "
                "need a proposal for every latent site (sample them in the guide, or observe them in the model)."
            )
        return model_trace, guide_trace

    # ----------------------------------------------------------------------------------------------
    # the one helper

    def _particle_terms(self, model_trace, guide_trace, particle_index):
        """Log weights of one (possibly vectorized) trace pair, reduced to the common plate dims."""
        sites = [s for tr in (model_trace, guide_trace) for s in tr.nodes.values() if s["type"] == "sample"]
        frame_sets = [{f for f in s["cond_indep_stack"] if f.vectorized} for s in sites]
        common = set.intersection(*frame_sets) if frame_sets else set()
        keep_dims = {f.dim for f in common}
        # the data-plate subsampling factor N / B, shared by every site
        subsample = 1.0
        for f in common:
            if f.full_size is not None and f.full_size != f.size:
                subsample = subsample * f.full_size / f.size
        relative = {id(s): _as_scale(s["scale"]) / subsample for s in sites}
        # any further scale shared by the observed sites (e.g. the 1/M of a corruption plate) is a
        # replication weight of each plate element: it must also act after the log-sum-exp
        reference = [relative[id(s)] for s in model_trace.nodes.values() if s["type"] == "sample" and s["is_observed"]]
        reference = reference or list(relative.values())
        shared = reference[0] if reference else 1.0
        if not all(_same_scale(shared, r) for r in reference) or not _varies_only_along(shared, keep_dims):
            shared = 1.0

        log_w = log_w_dreg = score = 0.0
        hooks = []
        for name, site in model_trace.nodes.items():
            if site["type"] != "sample":
                continue
            rel = relative[id(site)] / shared
            lp = _reduce(scale_and_mask(site["unscaled_log_prob"], rel, site["mask"]), keep_dims)
            log_w = log_w + lp
            log_w_dreg = log_w_dreg + lp
        dreg = self.gradient_estimator == "dreg"
        reparam_values = []
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
            rel = relative[id(site)] / shared
            lq = _reduce(scale_and_mask(site["unscaled_log_prob"], rel, site["mask"]), keep_dims)
            log_w = log_w - lq
            if has_score:
                score = score + lq
                log_w_dreg = log_w_dreg - lq
            elif dreg:
                stopped = detach(site["fn"]).log_prob(site["value"], *site["args"], **site["kwargs"])
                log_w_dreg = log_w_dreg - _reduce(scale_and_mask(stopped, rel, site["mask"]), keep_dims)
                value = site["value"]
                if value.requires_grad:
                    self._check_no_latent_dependence(name, site, reparam_values)
                    reparam_values.append(value)
                    hooks.append((particle_index, value, site["fn"].event_dim))
            else:
                log_w_dreg = log_w_dreg - lq
        particle_dims = [f.dim for f in common if f.name == _PARTICLE_PLATE]
        return log_w, log_w_dreg, score, subsample * shared, hooks, (particle_dims[0] if particle_dims else None)

    @staticmethod
    def _check_no_latent_dependence(name, site, earlier_values):
        if not earlier_values:
            return
        params = [t for t in _tensors_of(site["fn"]) if t.requires_grad]
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
        terms = []
        for i, (model_trace, guide_trace) in enumerate(self._get_traces(model, guide, args, kwargs)):
            terms.append(self._particle_terms(model_trace, guide_trace, i))
        K = self.num_particles
        if len(terms) == 1 and terms[0][5] is not None:  # one vectorized trace, particles at terms[0][5]
            log_w, log_w_dreg, score, common_scale, hooks, pdim = terms[0]
            ndim = -pdim
            stack = [_left_pad(t, ndim) if isinstance(t, torch.Tensor) else t for t in (log_w, log_w_dreg, score)]
            log_w, log_w_dreg, score = stack
            hooks = [(None, v, e) for _, v, e in hooks]
        else:  # K looped traces (or K == 1): stack along a new dim 0
            common_scale = terms[0][3]

            def stack(j):
                parts = [t[j] for t in terms]
                if all(not isinstance(p, torch.Tensor) for p in parts):
                    return parts[0] if all(p == 0 for p in parts) else torch.tensor(parts)
                like = next(p for p in parts if isinstance(p, torch.Tensor))
                parts = [p if isinstance(p, torch.Tensor) else like.new_tensor(p) for p in parts]
                ndim = max(p.dim() for p in parts)
                parts = torch.broadcast_tensors(*[_left_pad(p, ndim) for p in parts])
                return torch.stack(parts)

            log_w, log_w_dreg, score = stack(0), stack(1), stack(2)
            hooks = [h for t in terms for h in t[4]]
        if not isinstance(log_w, torch.Tensor) or log_w.shape[0] != K:
            raise RuntimeError(
                f"IWAE_ELBO expected {K} particles along the outer dim of the log weights, got shape "
                f"{tuple(getattr(log_w, 'shape', ()))}; check max_plate_nesting and that every site is inside "
                "the particle plate"
            )
        return _Particles(log_w, log_w_dreg, score, common_scale, hooks)

    def _differentiable_loss(self, model, guide, args, kwargs):
        """Single surrogate: value = -bound (summed over common plates), gradient = the chosen estimator."""
        p = self._collect(model, guide, args, kwargs)
        K = self.num_particles
        log_total = torch.logsumexp(p.log_w, 0)
        bound = log_total - math.log(K)  # (*common): per data point (and corruption)
        # normalized weights, summing to one over particles (torch.softmax along dim 0 is much slower on CPU)
        weights = (p.log_w - log_total).detach().exp()
        if self.gradient_estimator == "dreg":
            surrogate = (weights * p.log_w_dreg).sum(0)
            for k, value, event_dim in p.hooks:
                self._register_dreg_hook(value, weights if k is None else weights[k], event_dim)
        else:
            surrogate = (weights * p.log_w).sum(0)
            if isinstance(p.score, torch.Tensor):
                surrogate = surrogate + bound.detach() * p.score.sum(0)
        objective = (bound - surrogate).detach() + surrogate
        loss = -(p.common_scale * objective).sum()
        warn_if_nan(loss, "loss")
        return loss

    @staticmethod
    def _register_dreg_hook(value, weights, event_dim):
        batch_ndim = value.dim() - event_dim
        if weights.dim() > batch_ndim:
            lead = weights.shape[: weights.dim() - batch_ndim]
            if any(s != 1 for s in lead):
                raise RuntimeError(
                    f"gradient_estimator='dreg': a guide value of shape {tuple(value.shape)} lacks the particle "
                    "and plate dims of the importance weights; sample every latent inside the plates"
                )
            weights = weights.reshape(weights.shape[weights.dim() - batch_ndim :])
        weights = _left_pad(weights, batch_ndim)
        weights = weights.reshape(weights.shape + (1,) * event_dim)
        if torch.broadcast_shapes(weights.shape, value.shape) != value.shape:
            raise RuntimeError(
                f"gradient_estimator='dreg': guide value of shape {tuple(value.shape)} is broadcast along a plate "
                f"of the importance weights {tuple(weights.shape)}; expand the guide distribution to the plate"
            )
        weights = weights.to(value.dtype)
        value.register_hook(lambda grad: grad * weights)

    # ----------------------------------------------------------------------------------------------
    # public interface, all from the helper above

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
