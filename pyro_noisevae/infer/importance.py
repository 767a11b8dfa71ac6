r"""
The one importance-weight core: traces of a (model, guide) pair of Pyro programs with ``K`` particles, the
plate structure that tells data points, replicate (corruption) copies and global latents apart, and the log
importance weights

.. math::

    \log w_k = \log p(x, z_k) - \log q(z_k \mid x), \qquad z_k \sim q(z \mid x),

reduced to one value per particle and data point. :class:`~pyro_noisevae.infer.IWAE_ELBO`, the evaluation
tools (:func:`~pyro_noisevae.evaluation.importance_estimate`, ``iwae_bound``, ``iw_svi``, ``inference_gaps``),
:class:`~pyro_noisevae.empirical_bayes.ELBOEnergy` and the library VAE's closed-form loss all stand on the
functions here; :func:`iwae_objective` is the single implementation of the IWAE value/gradient surrogate
(standard and doubly-reparameterized).

Vocabulary:

* the **data plate** indexes data points: named by the caller, or found as the plate common to every sample
  site (or, when global latents exist, the plate common to every observed site);
* **local** sites lie inside the data plate, **global** sites outside it (e.g. regression weights). Global
  latents are drawn **once** per evaluation and shared by all ``K`` particles, so that the local importance
  weights of different particles condition on the same globals;
* a **replicate plate** is a plate whose elements are independent copies of the same proposal, e.g. the
  ``M`` corruptions of a :class:`~pyro_noisevae.guides.DenoisingGuide` (its sites carry
  ``infer["replicate_plate"]``). Training objectives average over its elements; log-likelihood estimates
  pool them with the particles (``M x K`` importance samples of the same :math:`p(x)`).
"""

import contextlib

import pyro
import torch
from pyro import poutine
from torch.distributions import kl_divergence
from pyro.distributions.util import scale_and_mask
from pyro.infer.util import is_validation_enabled
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import prune_subsample_sites, site_is_subsample
from pyro.util import check_model_guide_match, check_site_shape, get_rng_state, set_rng_state

__all__ = [
    "PARTICLE_PLATE",
    "SetSubsample",
    "SiteStructure",
    "check_local",
    "importance_traces",
    "infer_max_plate_nesting",
    "probe_traces",
    "per_point_log_weights",
    "site_structure",
]

#: name of the outer plate that vectorizes particles (the one :class:`pyro.infer.ELBO` uses)
PARTICLE_PLATE = "num_particles_vectorized"
#: key of ``msg["infer"]`` naming the replicate plate a site runs in (set by denoising guides)
REPLICATE_KEY = "replicate_plate"


# ----------------------------------------------------------------------------------------------------------
# traces
# ----------------------------------------------------------------------------------------------------------


def _sample_sites(trace):
    return [(name, site) for name, site in trace.nodes.items() if site["type"] == "sample"]


def _plates(site):
    return frozenset(f for f in site["cond_indep_stack"] if f.vectorized and f.name != PARTICLE_PLATE)


def probe_traces(model, guide, args, kwargs):
    """
    One run of ``guide`` and of ``model`` replayed against it (no particles, no gradient, subsample sites pruned),
    to read the programs' structure. The global RNG state is restored, so the probe does not shift the draws of
    the evaluation that follows.

    :returns: ``(model_trace, guide_trace)``.
    """
    state = get_rng_state()
    try:
        with torch.no_grad(), poutine.block():
            guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
            model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
    finally:
        set_rng_state(state)
    return prune_subsample_sites(model_trace), prune_subsample_sites(guide_trace)


def infer_max_plate_nesting(model, guide, args, kwargs):
    """The number of nested plate dims ``model`` and ``guide`` use (0 without plates), from :func:`probe_traces`."""
    dims = [-f.dim for tr in probe_traces(model, guide, args, kwargs) for _, s in _sample_sites(tr)
            for f in s["cond_indep_stack"] if f.vectorized and f.dim is not None]
    return max(dims, default=0)


def _global_draw(guide, args, kwargs, global_names):
    """One draw of the guide's global sites: ``{name: value}``."""
    guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    return {name: guide_trace.nodes[name]["value"] for name in global_names if name in guide_trace.nodes}


class _ReplayGlobals(Messenger):
    """
    Replay one draw of the global sites into every particle, unexpanded: the user's code sees a global of its
    declared shape (e.g. a weight matrix for ``nn.Linear``), and its log density broadcasts over the particles.
    """

    def __init__(self, values):
        super().__init__()
        self.values = values

    def _pyro_sample(self, msg):
        value = self.values.get(msg["name"])
        if value is None or msg["is_observed"]:
            return
        msg["value"] = value
        msg["done"] = True


class SetSubsample(Messenger):
    """Set the subsample indices of named plates (``{plate name: index tensor}``), leaving the draws unobserved:
    shares one mini-batch between looped particles, or walks an evaluation through the data plate in chunks."""

    def __init__(self, indices):
        super().__init__()
        self.indices = dict(indices)

    def _pyro_sample(self, msg):
        if site_is_subsample(msg) and msg["name"] in self.indices:
            msg["value"] = self.indices[msg["name"]]
            msg["done"] = True


def _subsample_indices(*traces):
    return {n: s["value"] for tr in traces for n, s in tr.nodes.items() if s["type"] == "sample" and site_is_subsample(s)}


def _trace_pair(model, guide, args, kwargs, max_plate_nesting, check, match=True, indices=None):
    """:func:`pyro.infer.enum.get_importance_trace` with this library's errors first: every model latent needs
    a proposal, every non-auxiliary guide site a model site. Returns the pair and the plates' subsample indices."""
    if indices:
        model, guide = SetSubsample(indices)(model), SetSubsample(indices)(guide)
    guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
    drawn = _subsample_indices(guide_trace, model_trace)
    if check:
        enumerated = [n for n, s in _sample_sites(guide_trace) if s["infer"].get("enumerate")]
        if enumerated:
            raise NotImplementedError(
                f"guide sites {enumerated} are marked for enumeration; importance weighting samples every latent. "
                "Remove infer={'enumerate': ...} (they are then sampled) or use TraceEnum_ELBO.")
        missing = [n for n, s in _sample_sites(model_trace)
                   if not s["is_observed"] and not site_is_subsample(s) and n not in guide_trace.nodes]
        if missing:
            raise ValueError(
                f"model latent sites {missing} are not sampled by the guide; importance weights need a proposal for "
                "every latent (sample them in the guide, or observe them in the model)")
        extra = [n for n, s in _sample_sites(guide_trace)
                 if not s["is_observed"] and not site_is_subsample(s) and not s["infer"].get("is_auxiliary")
                 and n not in model_trace.nodes]
        if extra:
            raise ValueError(
                f"guide sites {extra} do not appear in the model; the guide must propose model latents only (mark "
                "helper draws infer={'is_auxiliary': True})")
        if match and is_validation_enabled():
            check_model_guide_match(model_trace, guide_trace, max_plate_nesting)
    guide_trace = prune_subsample_sites(guide_trace)
    model_trace = prune_subsample_sites(model_trace)
    model_trace.compute_log_prob()
    guide_trace.compute_score_parts()
    if check and is_validation_enabled():
        for trace in (model_trace, guide_trace):
            for _, site in _sample_sites(trace):
                check_site_shape(site, max_plate_nesting)
    return (model_trace, guide_trace), drawn


def importance_traces(
    model, guide, args, kwargs, num_particles, max_plate_nesting, vectorize=True, global_names=(), check=True
):
    r"""
    Traces of ``guide`` and of ``model`` replayed against it, with ``K = num_particles`` particles: one
    pair under an outer ``pyro.plate(PARTICLE_PLATE, K, dim=-(max_plate_nesting + 1))`` (``vectorize``), or
    ``K`` looped pairs. Sites named in ``global_names`` are drawn **once** from the guide and replayed into
    every particle. Log densities and score parts are computed (as in
    :func:`pyro.infer.enum.get_importance_trace`), subsample sites pruned. With ``check`` the model/guide
    match is checked and Pyro's validation (distribution arguments, supports, site shapes) runs if enabled;
    without it, the programs run with Pyro's validation off (the per-step cost of training loops).

    :returns: ``(pairs, particle_dim)``: a list of ``(model_trace, guide_trace)`` and the particle dim
        (``None`` for looped particles, or ``K = 1`` without a particle plate).
    """
    validate = check and is_validation_enabled()
    # toggling Pyro's global flag costs ~0.1 ms: only when it changes
    with pyro.validation_enabled(validate) if validate != is_validation_enabled() else contextlib.nullcontext():
        values = _global_draw(guide, args, kwargs, global_names) if global_names else {}
        if vectorize and num_particles > 1:
            dim = -(max_plate_nesting + 1)
            plate = pyro.plate(PARTICLE_PLATE, num_particles, dim=dim)
            run_guide = plate(guide) if not values else _ReplayGlobals(values)(plate(guide))
            # an unexpanded global draw differs in shape from its particle-broadcast site by design: Pyro's
            # model/guide shape match is then left to the unvectorized pass that found the globals
            pair, _ = _trace_pair(plate(model), run_guide, args, kwargs, max_plate_nesting + 1, check, match=not values)
            return [pair], dim
        run_guide = guide if not values else _ReplayGlobals(values)(guide)
        # looped particles share the first particle's mini-batch (a vectorized plate draws its indices once)
        pairs, indices = [], None
        for _ in range(num_particles):
            pair, drawn = _trace_pair(model, run_guide, args, kwargs, max_plate_nesting, check, indices=indices)
            pairs.append(pair)
            indices = drawn if indices is None else indices
    return pairs, None


# ----------------------------------------------------------------------------------------------------------
# structure: data plate, local and global sites, replicate plates
# ----------------------------------------------------------------------------------------------------------


class SiteStructure:
    """
    The plate structure of a traced (model, guide) pair.

    :ivar data_frame: the data plate's frame (``None`` when no plate holds the data).
    :ivar frozenset keep_names: names of the plates common to every local site (sizes change between calls:
        use :meth:`frames` to read a trace's frames)
    :ivar frozenset keep: plates common to every local site (the data plate and, e.g., a corruption plate):
        the dims an IWAE log-sum-exp keeps.
    :ivar frozenset replicate: names of replicate plates among ``keep``.
    :ivar tuple global_names: latent sites outside the data plate (model order), drawn once per evaluation.
    :ivar tuple local_names: sample sites inside it.
    :ivar frozenset guide_only: guide sites without a model site (auxiliary draws, e.g. an autoguide's).
    """

    def __init__(self, data_frame, keep, replicate, global_names, local_names, guide_only=()):
        self.data_frame = data_frame
        self.keep = frozenset(keep)
        self.keep_names = frozenset(f.name for f in keep)
        self.replicate = frozenset(replicate)
        self.global_names = tuple(global_names)
        self.local_names = tuple(local_names)
        self.guide_only = frozenset(guide_only)  # guide sites without a model site (auxiliary draws)

    def frames(self, traces):
        """The kept plates' frames as they occur in ``traces`` (their sizes may differ from the probe's)."""
        found = {}
        for trace in traces:
            for _, site in _sample_sites(trace):
                for f in _plates(site):
                    if f.name in self.keep_names:
                        found[f.name] = f
        return frozenset(found.values())

    def __repr__(self):
        name = None if self.data_frame is None else self.data_frame.name
        return (f"SiteStructure(data_plate={name!r}, keep={sorted(f.name for f in self.keep)}, "
                f"replicate={sorted(self.replicate)}, global={list(self.global_names)})")


def site_structure(model_trace, guide_trace, data_plate=None):
    """
    Classify the sample sites of a traced pair (see :class:`SiteStructure`). The data plate is ``data_plate``
    when named; otherwise the plates common to every sample site (no global latents), or the one plate common
    to every observed site (global latents present; when several plates qualify and exactly one subsamples,
    that one). When several plates hold every site (nested plates with no global latent) all are kept, and the
    data plate, which indexes the data's rows, is the one that subsamples if exactly one does, else the outermost.

    :raises ValueError: when no data plate can be found, or several qualify (name it with ``data_plate=``).
    """
    sites = [(n, s) for tr in (model_trace, guide_trace) for n, s in _sample_sites(tr)
             if s["type"] == "sample" and not site_is_subsample(s)]
    if not sites:
        raise ValueError("model and guide have no sample sites: there is nothing to evaluate")
    all_plates = {f for _, s in sites for f in _plates(s)}
    if data_plate is not None:
        frames = [f for f in all_plates if f.name == data_plate]
        if not frames:
            raise ValueError(f"no plate named {data_plate!r} in model or guide (plates found: "
                             f"{sorted({f.name for f in all_plates})})")
        data_frames = {frames[0]}
    else:
        common = frozenset.intersection(*(_plates(s) for _, s in sites))
        if common:
            data_frames = set(common)
        else:
            observed = [s for _, s in _sample_sites(model_trace) if s["is_observed"] and not site_is_subsample(s)]
            obs_common = frozenset.intersection(*(_plates(s) for s in observed)) if observed else frozenset()
            if not obs_common:
                # no plate over data points: the whole program is one datum (every site local, nothing kept)
                names = list(dict.fromkeys(n for n, _ in sites))
                return SiteStructure(None, frozenset(), frozenset(), (), names)
            if len(obs_common) > 1:
                subsampled = [f for f in obs_common if f.full_size is not None and f.full_size != f.size]
                if len(subsampled) != 1:
                    raise ValueError(f"several plates {sorted(f.name for f in obs_common)} hold every observed site; "
                                     "say which one indexes data points with data_plate=")
                obs_common = frozenset(subsampled)
            data_frames = set(obs_common)
    # local: in (one of) the data plate(s); global: the rest
    local, global_names, seen = [], [], set()
    for name, site in sites:
        if name in seen:
            continue
        seen.add(name)
        if data_frames & _plates(site):
            local.append(name)
        elif not site["is_observed"]:
            global_names.append(name)
        else:
            raise ValueError(f"observed site {name!r} lies outside the data plate "
                             f"{sorted(f.name for f in data_frames)}")
    guide_only = {n for n, _ in _sample_sites(guide_trace) if n not in model_trace.nodes}
    local_plates = [_plates(s) for n, s in sites if n in set(local)]
    keep = frozenset.intersection(*local_plates) if local_plates else frozenset(data_frames)
    replicate = {s["infer"].get(REPLICATE_KEY) for n, s in sites if s["infer"].get(REPLICATE_KEY)}
    replicate = {r for r in replicate if any(f.name == r for f in keep)}
    data_frame = _outermost([f for f in keep if f.name not in replicate and f in data_frames]) or _outermost(data_frames)
    return SiteStructure(data_frame, keep, replicate, global_names, local, guide_only)


def _outermost(frames):
    """The data plate among several candidate plates, independent of set order (hash seed): the one plate that
    subsamples if exactly one does, else the outermost (most negative ``dim``; ties broken by name), which indexes
    the leading dim of the data as in ``plate("data", N): plate("pixels", D)``."""
    frames = list(frames)
    if not frames:
        return None
    subsampled = [f for f in frames if f.full_size is not None and f.full_size != f.size]
    if len(subsampled) == 1:
        return subsampled[0]
    return min(frames, key=lambda f: (f.dim if f.dim is not None else 0, f.name))


# ----------------------------------------------------------------------------------------------------------
# per-data-point log weights (unscaled: evaluation, local refits, energies)
# ----------------------------------------------------------------------------------------------------------


def _reduce_to(lp, ndim, keep_dims):
    """Sum ``lp`` (batch dims right-aligned in ``ndim`` dims) over every dim not in ``keep_dims``; left-pad."""
    lp = lp.reshape((1,) * (ndim - lp.dim()) + lp.shape)
    other = [d for d in range(-ndim, 0) if d not in keep_dims and lp.shape[d] != 1]
    return lp.sum(other, keepdim=True) if other else lp


def check_local(structure):
    """
    Refuse a structure with global latents for per-data-point tools (log-likelihood, IW-SVI, gaps, energies).

    :raises ValueError: naming the global sites and the fix.
    """
    joint = [n for n in structure.global_names if n in structure.guide_only]
    if joint and len(joint) == len(structure.global_names):  # only the guide couples the points
        raise ValueError(
            f"guide sites {joint} lie outside the data plate {structure.data_frame.name!r} and are not model latents: "
            "the guide draws the latents of all data points jointly (as AutoDiagonalNormal / AutoMultivariateNormal "
            "do), so its log-density does not split per point. Use a guide that factorizes over the data plate, e.g. "
            "AutoNormal or an amortized guide, for per-point evaluation (log_likelihood).")
    if structure.global_names:
        model_globals = [n for n in structure.global_names if n not in structure.guide_only]
        raise ValueError(
            f"latent sites {model_globals} are global (outside the data plate "
            f"{structure.data_frame.name!r}): they couple the data points, so log p(x) does not split into "
            "per-point terms. Condition on the global latents (pyro.condition / poutine.condition) to evaluate "
            "the conditional model per point, or train and compare with IWAE_ELBO, which bounds the joint "
            "evidence with an ELBO term for the globals.")


def per_point_log_weights(model_trace, guide_trace, structure, max_plate_nesting, particle_dim, num_particles,
                          scaled=False, analytic_kl=False):
    r"""
    Log weights of one traced pair, one per importance sample and data point: shape ``(S, B)`` with
    :math:`S = K \times M` (``K`` particles times the size ``M`` of any replicate plate, whose copies are pooled
    as further importance samples) and ``B`` the size of the data plate:

    .. math::

        \log w_{sb} = \sum_{\text{model sites } i} \log p_i - \sum_{\text{guide sites } j} \log q_j ,

    each site's log density summed over every batch dim but the particle, replicate and data dims.
    Unscaled by default (``poutine.scale``, β and subsampling factors ignored, ``poutine.mask`` honoured);
    with ``scaled=True`` each site keeps its scale. With ``analytic_kl=True`` a latent's
    :math:`\log p(z) - \log q(z)` is replaced by :math:`-\mathrm{KL}(q \,\|\, p)` where torch registers a
    closed form (as :class:`~pyro.infer.TraceMeanField_ELBO` does; valid for mean-field guides). Global
    latents are refused: they couple the data points, so :math:`\log p(x)` has no per-point terms.

    :raises ValueError: for global latent sites, or NaN weights.
    """
    if structure.data_frame is None:
        raise ValueError(
            "no plate over data points holds the observed sites; a per-data-point log weight needs the data in a "
            "pyro.plate that contains every local sample site (name it with data_plate= if there are several)")
    check_local(structure)
    ndim = max_plate_nesting + 1
    frame = structure.data_frame
    rep_dims = sorted(f.dim for f in structure.keep if f.name in structure.replicate)
    keep = {frame.dim, *rep_dims} | ({particle_dim} if particle_dim is not None else set())
    log_w = 0.0
    kl_sites = set()
    if analytic_kl:
        for name, site in _sample_sites(guide_trace):
            prior = model_trace.nodes.get(name)
            if prior is None or site["is_observed"]:
                continue
            try:
                kl = kl_divergence(site["fn"], prior["fn"])
            except NotImplementedError:
                continue
            kl = scale_and_mask(kl, site["scale"] if scaled else 1.0, site["mask"])
            log_w = log_w - _reduce_to(kl, ndim, keep)
            kl_sites.add(name)
    for sign, trace in ((1.0, model_trace), (-1.0, guide_trace)):
        for name, site in _sample_sites(trace):
            if name in kl_sites:
                continue
            lp = site["log_prob"] if scaled else scale_and_mask(site["unscaled_log_prob"], 1.0, site["mask"])
            if not isinstance(lp, torch.Tensor):
                raise TypeError(f"site {name!r}: log_prob returned {type(lp).__name__}, expected a tensor")
            if lp.dim() > ndim:
                raise ValueError(
                    f"site {name!r} has batch shape {tuple(lp.shape)}, more dims than the plates declare "
                    f"({max_plate_nesting}); declare its batch dims with pyro.plate or .to_event()")
            log_w = log_w + sign * _reduce_to(lp, ndim, keep)
    if not isinstance(log_w, torch.Tensor):
        raise ValueError("model and guide have no sample sites with log densities to weigh")
    # (..., K?, ..., M?, ..., B) -> (K * M, B): expand the kept dims to their sizes, move them to the front
    sizes = {frame.dim: frame.size}
    sizes.update({f.dim: f.size for f in structure.keep if f.name in structure.replicate})
    if particle_dim is not None:
        sizes[particle_dim] = num_particles
    order = ([particle_dim] if particle_dim is not None else []) + rep_dims + [frame.dim]
    target = list(log_w.shape)
    for d, size in sizes.items():
        target[ndim + d] = size
    log_w = log_w.expand(target)
    perm = [ndim + d for d in order] + [ndim + d for d in range(-ndim, 0) if d not in order]
    log_w = log_w.permute(perm).reshape([sizes[d] for d in order])
    return log_w.reshape(-1, frame.size)
