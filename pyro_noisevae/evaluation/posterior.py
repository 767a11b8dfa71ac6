"""Exact versus NUTS versus amortized posteriors for one observation, with arviz diagnostics.

The figures of a comparison are in :mod:`pyro_noisevae.evaluation.posterior_plots`.
"""

import contextlib
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyro
import pyro.poutine as poutine
import torch
from pyro.infer import MCMC, NUTS
from pyro.poutine.util import site_is_subsample

with warnings.catch_warnings():
    # arviz announces its 1.0 refactor with a FutureWarning on the first import of each day; it concerns
    # arviz's own future API, not this use, and would otherwise fail test suites run with -W error
    warnings.filterwarnings("ignore", message=r"\s*ArviZ is undergoing a major refactor", category=FutureWarning)
    import arviz as az

__all__ = ["PosteriorComparison", "compare_posteriors", "gaussian_kl"]

#: the order in which sources appear in tables, coordinates and plots
SOURCES = ("exact", "nuts", "guide")


def gaussian_kl(mean_p, cov_p, mean_q, cov_q):
    r"""
    KL divergence between two multivariate Gaussians, in nats:

    .. math::

        \mathrm{KL}(N(m_p, S_p) \,\Vert\, N(m_q, S_q)) = \tfrac12 \Big[\mathrm{tr}(S_q^{-1} S_p)
        + (m_q - m_p)^\top S_q^{-1} (m_q - m_p) - d + \log\det S_q - \log\det S_p\Big].

    Computed in float64 by torch's ``kl_divergence`` of two ``MultivariateNormal`` (Cholesky factors).

    :param mean_p: ``(d,)`` mean of the first argument; ``cov_p``: ``(d, d)`` covariance (positive definite).
    :param mean_q: ``(d,)``; ``cov_q``: ``(d, d)``. Tensors or arrays.
    :returns: a Python float ``>= 0`` (exactly 0 for identical arguments).
    :raises ValueError: for mismatched shapes, NaN/inf or covariances that are not positive definite.
    """
    mp, Sp, mq, Sq = (
        (a if isinstance(a, torch.Tensor) else torch.as_tensor(np.asarray(a))).detach().cpu().to(torch.float64)
        for a in (mean_p, cov_p, mean_q, cov_q)
    )
    d = mp.numel()
    if mp.shape != (d,) or mq.shape != (d,) or Sp.shape != (d, d) or Sq.shape != (d, d):
        raise ValueError(
            f"gaussian_kl needs means of shape (d,) and covariances (d, d) with one d; got {tuple(mp.shape)}, "
            f"{tuple(Sp.shape)}, {tuple(mq.shape)}, {tuple(Sq.shape)}"
        )
    for name, a in (("mean_p", mp), ("cov_p", Sp), ("mean_q", mq), ("cov_q", Sq)):
        if not torch.isfinite(a).all():
            raise ValueError(f"gaussian_kl: {name} contains NaN or infinite values")
    Lp, info_p = torch.linalg.cholesky_ex(0.5 * (Sp + Sp.T))
    Lq, info_q = torch.linalg.cholesky_ex(0.5 * (Sq + Sq.T))
    if info_p or info_q:
        raise ValueError("gaussian_kl: covariances must be symmetric positive definite")
    if torch.equal(mp, mq) and torch.equal(Lp, Lq):
        return 0.0
    kl = torch.distributions.kl_divergence(
        torch.distributions.MultivariateNormal(mp, scale_tril=Lp),
        torch.distributions.MultivariateNormal(mq, scale_tril=Lq),
    )
    return max(float(kl), 0.0)


@dataclass
class PosteriorComparison:
    r"""
    Result of :func:`compare_posteriors`.

    :ivar arviz.InferenceData idata: group ``posterior`` holds one variable per latent site with dims
        ``(chain, draw, source, <site>_dim)``, where coordinate ``source`` names ``"exact"`` (if given),
        ``"nuts"`` and ``"guide"`` (exact and guide draws are i.i.d., arranged as ``chain × draw`` like NUTS);
        group ``sample_stats`` holds NUTS's ``diverging`` flags ``(chain, draw)``.
    :ivar pandas.DataFrame table: one row per source: means ``mean[i]``, covariances ``cov[i,j]`` (``i <= j``),
        ``KL(.||exact)`` and ``KL(.||nuts)`` between Gaussian fits, and ``r_hat`` (max over coordinates),
        ``ess_bulk`` / ``ess_tail`` (min over coordinates) from arviz.
    :ivar dict kl: ``{"guide||exact", "guide||nuts", "nuts||exact"}`` -> KL in nats (pairs needing the exact
        posterior are absent without it).
    :ivar dict means: source -> ``(d,)`` numpy array; ``covariances``: source -> ``(d, d)``.
    :ivar dict samples: source -> ``(num_chains * num_samples, d)`` numpy array of flattened latents.
    :ivar list labels: the ``d`` coordinate names, e.g. ``["z[0]", "z[1]"]``.
    :ivar pandas.DataFrame diagnostics: ``arviz.summary`` of the NUTS draws (one row per coordinate).
    :ivar dict moments_from: source -> ``"analytic"`` or ``"samples"`` (how the Gaussian fit was obtained).
    :ivar int num_divergences: divergent NUTS transitions after warm-up (all chains).
    """

    idata: az.InferenceData
    table: pd.DataFrame
    kl: dict
    means: dict
    covariances: dict
    samples: dict
    labels: list
    diagnostics: pd.DataFrame
    moments_from: dict = field(default_factory=dict)
    num_divergences: int = 0

    @property
    def sources(self):
        return [s for s in SOURCES if s in self.samples]

    def inference_data(self, source):
        """An :class:`arviz.InferenceData` with only ``source``'s draws (``source`` dim dropped), for arviz plots."""
        if source not in self.sources:
            raise ValueError(f"source must be one of {self.sources}, got {source!r}")
        post = self.idata.posterior.sel(source=source, drop=True)
        groups = {"posterior": post}
        if source == "nuts" and "sample_stats" in self.idata.groups():
            groups["sample_stats"] = self.idata.sample_stats
        return az.InferenceData(**groups)

    def __repr__(self):
        with pd.option_context("display.width", 160, "display.max_columns", 30, "display.precision", 4):
            kl = ", ".join(f"KL({k}) = {v:.4g}" for k, v in self.kl.items())
            return f"PosteriorComparison(d={len(self.labels)}, {kl}, divergences={self.num_divergences})\n{self.table}"


# ------------------------------------------------------------------------------------------ helpers
def _latent_sites(trace):
    return [
        name
        for name, site in trace.nodes.items()
        if site["type"] == "sample"
        and not site["is_observed"]
        and not site_is_subsample(site)
        and not site["infer"].get("is_auxiliary", False)
    ]


def _max_plate_nesting(trace):
    dims = [
        f.dim
        for site in trace.nodes.values()
        if site["type"] == "sample"
        for f in site["cond_indep_stack"]
        if f.vectorized
    ]
    return -min(dims) if dims else 0


def _flatten(values, sites, shapes, n):
    return torch.cat([values[s].detach().reshape(n, -1).to(torch.float64).cpu() for s in sites], dim=-1)


def _labels(sites, shapes):
    labels = []
    for s in sites:
        shape = tuple(d for d in shapes[s] if d != 1) or (1,)
        if math.prod(shapes[s]) == 1:
            labels.append(s)
            continue
        for idx in np.ndindex(*shape):
            labels.append(f"{s}[{','.join(map(str, idx))}]")
    return labels


def _gaussian_moments(d):
    """(mean, cov) of a Normal/MultivariateNormal (possibly Independent-wrapped), flattened; else None."""
    base, reinterpreted = d, 0
    while isinstance(base, torch.distributions.Independent):
        reinterpreted += base.reinterpreted_batch_ndims
        base = base.base_dist
    if isinstance(base, torch.distributions.MultivariateNormal):
        if base.batch_shape.numel() != 1:
            return None
        k = base.event_shape[0]
        return base.loc.reshape(k), base.covariance_matrix.reshape(k, k)
    if isinstance(base, torch.distributions.Normal):
        return base.loc.reshape(-1), torch.diag_embed(base.scale.pow(2).reshape(-1))
    return None


def _draw_guide(guide, args, kwargs, sites, shapes, n, max_plate_nesting):
    """``n`` guide draws of the flattened latents: vectorized with an outer plate, or a loop if that fails."""
    try:
        with torch.no_grad(), pyro.plate("_compare_posteriors_draws", n, dim=-(max_plate_nesting + 1)):
            tr = poutine.trace(guide).get_trace(*args, **kwargs)
        if all(tuple(tr.nodes[s]["value"].shape) == (n,) + shapes[s] for s in sites):
            return _flatten({s: tr.nodes[s]["value"] for s in sites}, sites, shapes, n)
    except (RuntimeError, ValueError, IndexError):
        pass
    rows = []
    with torch.no_grad():
        for _ in range(n):
            tr = poutine.trace(guide).get_trace(*args, **kwargs)
            rows.append(_flatten({s: tr.nodes[s]["value"].unsqueeze(0) for s in sites}, sites, shapes, 1))
    return torch.cat(rows)


def _guide_analytic_moments(guide, args, kwargs, sites):
    """Analytic Gaussian moments of the guide when it is one deterministic Gaussian per site, else None."""
    with torch.no_grad():
        traces = [poutine.trace(guide).get_trace(*args, **kwargs) for _ in range(2)]
    if len(sites) != 1 or any(set(_latent_sites(t)) != set(sites) for t in traces):
        return None
    moments = [_gaussian_moments(t.nodes[sites[0]]["fn"]) for t in traces]
    if moments[0] is None or moments[1] is None:
        return None
    # a guide with hidden randomness (e.g. input corruption) gives different parameters on each call
    if not all(torch.equal(a, b) for a, b in zip(moments[0], moments[1])):
        return None
    return tuple(m.detach().cpu().to(torch.float64) for m in moments[0])


def _exact_moments_and_draws(exact, d, n, seed):
    if isinstance(exact, (tuple, list)):
        if len(exact) != 2:
            raise ValueError("exact must be a distribution over the flattened latents or a (mean, covariance) pair")
        loc = torch.as_tensor(exact[0]).detach().to(torch.float64).cpu().reshape(-1)
        cov = torch.as_tensor(exact[1]).detach().to(torch.float64).cpu()
        if loc.numel() != d or cov.shape != (d, d):
            raise ValueError(
                f"exact (mean, cov) must have shapes ({d},) and ({d}, {d}); got {tuple(loc.shape)}, {tuple(cov.shape)}"
            )
        exact = torch.distributions.MultivariateNormal(loc, covariance_matrix=0.5 * (cov + cov.T))
    if not isinstance(exact, torch.distributions.Distribution):
        raise TypeError(f"exact must be a torch Distribution or a (mean, covariance) pair, got {type(exact).__name__}")
    size = (exact.batch_shape + exact.event_shape).numel()
    if size != d:
        raise ValueError(
            f"exact describes {size} numbers per draw but the model has {d} latent coordinates; pass the posterior "
            "of the single observation being compared, over the flattened latent sites (in model order)"
        )
    with _seeded(seed, 7919):
        draws = exact.sample((n,)).reshape(n, d).detach().to(torch.float64).cpu()
    moments = _gaussian_moments(exact)
    if moments is not None:
        mean, cov = (m.detach().cpu().to(torch.float64) for m in moments)
        how = "analytic"
    else:
        mean, cov, how = draws.mean(0), torch.cov(draws.T).reshape(d, d), "samples"
    if not (torch.isfinite(mean).all() and torch.isfinite(cov).all()):
        raise ValueError("exact posterior has NaN or infinite moments")
    return draws, mean, cov, how


@contextlib.contextmanager
def _seeded(seed, offset):
    """Fork torch's RNGs and seed them with ``seed + offset`` (no seeding when ``seed`` is None)."""
    cuda = [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=cuda):
        if seed is not None:
            torch.manual_seed(int(seed) + offset)
        yield


def _check_count(name, value, minimum):
    if isinstance(value, bool) or int(value) != value or int(value) < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


# ------------------------------------------------------------------------------------------ main entry
def compare_posteriors(model, guide, *args, exact=None, num_samples=500, num_warmup=300, num_chains=2, seed=0,
                       target_accept_prob=0.8, max_tree_depth=10, init_strategy=None, **kwargs):
    r"""
    Compare the posterior :math:`p(z \mid x)` of one observation three ways: the exact posterior (when
    known), NUTS (:class:`pyro.infer.MCMC`, the reference when nothing is known in closed form) and
    the (amortized) guide :math:`q(z \mid x)`.

    ``model(*args, **kwargs)`` must condition on a **single** observation (e.g. ``x`` of shape
    ``(1, D)``); every unobserved sample site of the model is a latent (they are flattened and
    concatenated in model order into ``d`` coordinates; keep ``d`` small, MCMC runs are meant to be
    short) and must be continuous and produced by the guide as well.

    Each source is summarized by a Gaussian fit: the analytic moments for the exact posterior (if it is
    Gaussian) and for a guide that is a single deterministic Gaussian site, the sample mean and
    covariance otherwise (NUTS always). Divergences are KL between these fits
    (:func:`gaussian_kl`). NUTS runs ``num_chains`` chains one after the other in this process (no
    multiprocessing), started from Pyro's default random initialization; r̂ and ESS come from arviz.

    :param callable model: Pyro model.
    :param callable guide: Pyro guide over the same latent sites.
    :param args: passed to both, with ``kwargs`` (the observation).
    :param exact: optional exact posterior: a torch ``Distribution`` whose draws hold ``d`` numbers (e.g.
        :meth:`pyro_noisevae.models.linear.LinearVAE.exact_posterior` of the observation) or a pair
        ``(mean (d,), covariance (d, d))``.
    :param int num_samples: NUTS draws per chain kept after warm-up (also the number of exact and guide
        draws per "chain").
    :param int num_warmup: NUTS warm-up (adaptation) steps per chain.
    :param int num_chains: number of chains (``>= 2`` gives a meaningful r̂). ``num_chains * num_samples`` must
        exceed the number of latent coordinates (the Gaussian fits estimate a full covariance).
    :param int seed: seeds the draws (inside :func:`torch.random.fork_rng`, so the global RNG is left as
        it was); ``None`` uses the current RNG state.
    :param float target_accept_prob: NUTS setting.
    :param int max_tree_depth: NUTS setting.
    :param init_strategy: optional Pyro init strategy for NUTS (default: uniform in ``(-2, 2)``).
    :rtype: PosteriorComparison

    Example (a trained :class:`~pyro_noisevae.models.linear.LinearVAE` ``vae`` and data ``x``)::

        x0 = x[:1]                                       # one observation
        res = compare_posteriors(vae.model, vae.guide, x0, exact=vae.exact_posterior(x0))
        res.table                                        # per source: means, covariances, KL, r_hat, ESS
        res.kl["guide||exact"], res.kl["nuts||exact"]    # nats
        plot_pair(res)                                   # exact vs NUTS vs guide
        az.plot_trace(res.inference_data("nuts"))        # any arviz plot
    """
    num_samples = _check_count("num_samples", num_samples, 4)
    num_warmup = _check_count("num_warmup", num_warmup, 0)
    num_chains = _check_count("num_chains", num_chains, 1)
    if not callable(model) or not callable(guide):
        raise TypeError("model and guide must be callables (Pyro programs)")
    if seed is not None and (isinstance(seed, bool) or int(seed) != seed):
        raise ValueError(f"seed must be an int or None, got {seed!r}")
    n = num_chains * num_samples

    # ---- latent sites and their shapes, checked against the guide
    with _seeded(seed, 0), torch.no_grad():
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
    sites = _latent_sites(model_trace)
    if not sites:
        raise ValueError("the model has no latent (unobserved) sample sites to compare")
    missing = [s for s in sites if s not in guide_trace.nodes]
    if missing:
        raise ValueError(f"the guide does not sample the model's latent sites {missing}")
    for s in sites:
        fn = model_trace.nodes[s]["fn"]
        if fn.support.is_discrete:
            raise ValueError(f"latent site {s!r} is discrete; NUTS needs continuous latents (enumerate it out)")
        if not torch.isfinite(model_trace.nodes[s]["value"]).all():
            raise ValueError(f"latent site {s!r} produced NaN/inf values from the guide")
    for name, site in model_trace.nodes.items():
        observed = site["type"] == "sample" and site["is_observed"]
        if observed and not torch.isfinite(torch.as_tensor(site["value"])).all():
            raise ValueError(f"observed site {name!r} contains NaN or infinite values")
    shapes = {s: tuple(model_trace.nodes[s]["value"].shape) for s in sites}
    labels = _labels(sites, shapes)
    d = len(labels)
    if n <= d:
        raise ValueError(f"num_chains * num_samples = {n} draws cannot estimate the {d} x {d} covariance of the "
                         f"{d} latent coordinates (the Gaussian fits need more draws than coordinates); raise "
                         f"num_samples above {d // num_chains} (ideally well above)")

    # ---- NUTS, one chain at a time
    chains, divergences, diverging = [], 0, np.zeros((num_chains, num_samples), dtype=bool)
    for c in range(num_chains):
        kernel_kwargs = dict(target_accept_prob=target_accept_prob, max_tree_depth=max_tree_depth)
        if init_strategy is not None:
            kernel_kwargs["init_strategy"] = init_strategy
        with _seeded(seed, 1 + c):
            kernel = NUTS(model, **kernel_kwargs)
            mcmc = MCMC(kernel, num_samples=num_samples, warmup_steps=num_warmup, disable_progbar=True)
            mcmc.run(*args, **kwargs)
        draws = mcmc.get_samples()
        chains.append(_flatten(draws, sites, shapes, num_samples))
        # Pyro numbers transitions from the end of warm-up: negative indices are warm-up divergences
        div = mcmc.diagnostics().get("divergences", {}).get("chain 0", [])
        div = [int(i) for i in div if 0 <= int(i) < num_samples]
        divergences += len(div)
        diverging[c, div] = True
    samples = {"nuts": torch.cat(chains)}

    # ---- guide draws and the exact posterior
    mpn = _max_plate_nesting(guide_trace)
    with _seeded(seed, 1000):
        samples["guide"] = _draw_guide(guide, args, kwargs, sites, shapes, n, mpn)
        guide_moments = _guide_analytic_moments(guide, args, kwargs, sites)
    moments, moments_from = {}, {}
    if exact is not None:
        samples["exact"], m, S, moments_from["exact"] = _exact_moments_and_draws(exact, d, n, seed)
        moments["exact"] = (m, S)
    if guide_moments is not None and guide_moments[0].numel() == d:
        moments["guide"], moments_from["guide"] = guide_moments, "analytic"
    else:
        g = samples["guide"]
        moments["guide"], moments_from["guide"] = (g.mean(0), torch.cov(g.T).reshape(d, d)), "samples"
    nuts = samples["nuts"]
    moments["nuts"], moments_from["nuts"] = (nuts.mean(0), torch.cov(nuts.T).reshape(d, d)), "samples"
    if torch.linalg.cholesky_ex(moments["nuts"][1].double())[1] != 0:
        raise ValueError(f"the covariance of the {n} NUTS draws is singular: some chains did not move (a stuck "
                         "chain, often from Pyro's default start uniform in (-2, 2) on a sharp posterior) or too "
                         "few draws for the latent coordinates; raise num_warmup/num_samples, or start the chains "
                         "at guide draws (init_strategy=pyro.infer.autoguide.init_to_generated(...) or "
                         "init_to_value(values=guide draws))")
    if not all(torch.isfinite(v).all() for v in samples.values()):
        raise ValueError("some draws are NaN/inf; check the model and guide at this observation")

    # ---- KL between Gaussian fits
    kl = {}
    for p, q in (("guide", "exact"), ("guide", "nuts"), ("nuts", "exact")):
        if p in moments and q in moments:
            kl[f"{p}||{q}"] = gaussian_kl(*moments[p], *moments[q])

    # ---- arviz InferenceData with a "source" coordinate
    sources = [s for s in SOURCES if s in samples]
    stacked = np.stack([samples[s].numpy().reshape(num_chains, num_samples, d) for s in sources], axis=2)
    posterior, dims, coords, start = {}, {}, {"source": sources}, 0
    for s in sites:
        k = math.prod(shapes[s])
        posterior[s] = stacked[..., start : start + k]
        dims[s] = ["source", f"{s}_dim"]
        coords[f"{s}_dim"] = np.arange(k)
        start += k
    idata = az.from_dict(posterior=posterior, sample_stats={"diverging": diverging}, coords=coords, dims=dims)
    idata.posterior.attrs["sources"] = "exact: closed form; nuts: pyro.infer.MCMC(NUTS); guide: q(z|x)"

    # ---- diagnostics per source and the summary table
    rhat = az.rhat(idata.posterior)
    ess_bulk = az.ess(idata.posterior, method="bulk")
    ess_tail = az.ess(idata.posterior, method="tail")
    rows = {}
    for src in sources:
        m, S = (t.numpy() for t in moments[src])
        row = {f"mean[{lab}]": m[i] for i, lab in enumerate(labels)}
        row.update({f"cov[{labels[i]},{labels[j]}]": S[i, j] for i in range(d) for j in range(i, d)})
        if "exact" in sources:
            row["KL(.||exact)"] = kl.get(f"{src}||exact", 0.0 if src == "exact" else np.nan)
        else:
            row["KL(.||exact)"] = np.nan
        row["KL(.||nuts)"] = kl.get(f"{src}||nuts", 0.0 if src == "nuts" else np.nan)
        row["r_hat"] = max(float(rhat[s].sel(source=src).max()) for s in sites)
        row["ess_bulk"] = min(float(ess_bulk[s].sel(source=src).min()) for s in sites)
        row["ess_tail"] = min(float(ess_tail[s].sel(source=src).min()) for s in sites)
        rows[src] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "source"
    diag = az.summary(idata.posterior.sel(source="nuts", drop=True), kind="all")
    return PosteriorComparison(
        idata=idata,
        table=table,
        kl=kl,
        means={s: moments[s][0].numpy() for s in sources},
        covariances={s: moments[s][1].numpy() for s in sources},
        samples={s: samples[s].numpy() for s in sources},
        labels=labels,
        diagnostics=diag,
        moments_from=moments_from,
        num_divergences=divergences,
    )
