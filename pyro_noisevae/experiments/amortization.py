"""Amortization gap of a tiny 2-D-latent VAE on real images, with NUTS as the reference posterior.

For each setting (σ-VAE decoder noise σ, plain or denoising guide) a small VAE with a 2-D latent is trained,
then for a handful of test images the posterior p(z | x) is sampled with NUTS and every gap of Cremer et al.
(2018) is measured per data point:

* ``log_px``: :math:`\\log p(x)` by importance sampling with a Student-t proposal fitted to the NUTS draws,
* ``elbo_amortized``: the ELBO of the encoder's :math:`q_\\phi(z \\mid x)`,
* ``elbo_optimal``: the ELBO of the best diagonal Gaussian for this ``x`` alone (optimized from the NUTS fit),
* ``amortization_gap = elbo_optimal - elbo_amortized`` (what amortization costs),
* ``approximation_gap = log_px - elbo_optimal`` (what the Gaussian family costs),
* ``kl_guide_nuts``: KL between the encoder's Gaussian and the Gaussian fit of the NUTS draws.

References:

1. C. Cremer, X. Li, D. Duvenaud, *Inference Suboptimality in Variational Autoencoders*, ICML 2018.
2. R. Shu, H. Bui, S. Zhao, M. Kochenderfer, S. Ermon, *Amortized Inference Regularization*, NeurIPS 2018.
3. S. Saremi, *Learning and Inference in Imaginary Noise Models*, arXiv:2005.09047 (2020).
"""

import functools
import math
import time

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.infer import MCMC, NUTS

from ..data import load_dataset
from ..distributions import GaussianCorruption
from ..guides import DenoisingGuide
from ..models import VAE, elbo_terms
from ..evaluation import LocalGaussianGuide, fit_local_guide
from ..evaluation.posterior import gaussian_kl
from ..training import fit

__all__ = [
    "AmortizationSetting",
    "amortization_gap_experiment",
    "plot_amortization_gaps",
    "plot_posteriors",
    "summarize",
]


class AmortizationSetting(dict):
    """One setting's results: ``name``, ``sigma``, ``denoise_std`` and per-point numpy arrays (see module doc)."""


def _log_joint(vae, x, z):
    """:math:`\\log p(x, z)` for ``z (S, P, K)`` and ``x (P, D)``: ``(S, P)``, as in :meth:`VAE.model`."""
    prior = dist.Normal(torch.zeros_like(z), 1.0).log_prob(z).sum(-1)
    return prior + vae.likelihood.log_prob(vae.decoder(z), x)


def _elbo(vae, x, loc, scale, num_samples, generator):
    """Per-point ELBO of the Gaussian ``N(loc, diag scale^2)`` (:func:`~pyro_noisevae.models.elbo_terms`)."""
    return elbo_terms(vae, x, num_samples, loc=loc, scale=scale, generator=generator)["elbo"]


def _nuts(vae, x, num_samples, num_warmup, num_chains, seed):
    draws = []
    for c in range(num_chains):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + c)
            mcmc = MCMC(NUTS(vae.model), num_samples=num_samples, warmup_steps=num_warmup, disable_progbar=True)
            mcmc.run(x)
        draws.append(mcmc.get_samples()["z"].detach())  # (S, P, K)
    return torch.stack(draws)  # (C, S, P, K)


def _optimal_gaussian(vae, x, loc, scale, steps, num_particles, seed):
    """
    Per-point diagonal Gaussian maximizing the ELBO, started at ``N(loc, diag scale^2)``: IW-SVI's
    :func:`~pyro_noisevae.evaluation.fit_local_guide` with ``objective="elbo"`` on the VAE's programs (Adam,
    constant learning rate 0.02), its draws from torch's RNG seeded with ``seed`` (the caller's stream is kept).
    """
    init = LocalGaussianGuide(vae.guide, {"z": (loc, scale.log(), 1)})
    with torch.random.fork_rng(devices=[]), pyro.settings.context(module_local_params=True):
        torch.manual_seed(seed)
        q = fit_local_guide(vae.model, vae.guide, x, objective="elbo", num_particles=num_particles, num_steps=steps,
                            lr=0.02, lr_decay=1.0, init=init, max_plate_nesting=1)
    return q.loc("z"), q.scale("z")


def _importance_log_px(vae, x, mean, cov, num_samples, seed, df=4.0):
    """:math:`\\log p(x)` with a multivariate Student-t proposal centred on the NUTS fit: ``(P,)`` and IS ESS."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        L = torch.linalg.cholesky(1.2**2 * cov + 1e-9 * torch.eye(cov.shape[-1], dtype=cov.dtype))
        proposal = dist.MultivariateStudentT(torch.tensor(df, dtype=mean.dtype), mean, L)
        z = proposal.sample((num_samples,))  # (S, P, K)
        with torch.no_grad():
            logw = _log_joint(vae, x, z) - proposal.log_prob(z)
    log_px = logw.logsumexp(0) - math.log(num_samples)
    w = (logw - logw.logsumexp(0)).exp()
    ess = 1.0 / w.pow(2).sum(0)
    return log_px, ess


def amortization_gap_experiment(dataset="mnist", root=None,
                                settings=(("σ=0.1", 0.1, None), ("σ=0.2", 0.2, None), ("σ=0.2, denoising", 0.2, 0.25)),
                                num_train=5000, num_points=12, z_dim=2, hidden_dims=(128,), epochs=10, batch_size=100,
                                lr=3e-3, num_samples=150, num_warmup=150, num_chains=2, opt_steps=300, is_samples=4000,
                                elbo_samples=2000, seed=0, progress=False):
    r"""
    Train one tiny VAE per setting and measure its amortization gap per test point, NUTS as the reference.

    :param str dataset: a :func:`~pyro_noisevae.data.load_dataset` name with grey levels in [0, 1]
        (``"mnist"`` or ``"frey-face"``).
    :param settings: tuples ``(name, sigma, denoise_std)``: the σ of the σ-VAE decoder
        (``likelihood="normal"``) and, for a denoising guide, the std of the Gaussian corruption of the
        encoder's input (:class:`~pyro_noisevae.guides.DenoisingGuide`); ``None`` for the plain guide.
        The encoder is evaluated on clean inputs.
    :param int num_train: training images (a seeded random subset of the train split).
    :param int num_points: test images compared with NUTS (a seeded random subset of the test split).
    :param int num_samples: NUTS draws per chain (with ``num_warmup`` and ``num_chains``, the NUTS budget);
        the ``num_points`` posteriors are sampled jointly in one run (they are independent given the decoder),
        ``2 * num_points`` dims.
    :param int opt_steps: Adam steps of the per-point optimal Gaussian.
    :param int is_samples: importance samples for :math:`\log p(x)`.
    :param int elbo_samples: Monte Carlo samples of each ELBO (common random numbers for both).
    :param int seed: data subsets, initialization (through :func:`pyro.set_rng_seed`, once per setting),
        training order, NUTS chains and Monte Carlo estimates are all derived from it.
    :returns: list of :class:`AmortizationSetting` dicts with keys ``name, sigma, denoise_std,
        train_loss`` (per epoch), ``log_px, elbo_amortized, elbo_optimal, amortization_gap,
        approximation_gap, kl_guide_nuts, is_ess`` (arrays ``(num_points,)``), ``r_hat_max``,
        ``nuts_mean, nuts_cov, guide_loc, guide_scale, nuts_draws`` (for plots), ``seconds``, and the
        evaluation ``images``.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"\s*ArviZ is undergoing a major refactor", category=FutureWarning)
        import arviz as az

    for name, sigma, denoise in settings:
        if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
            raise ValueError(f"setting {name!r}: sigma must be a number > 0, got {sigma!r}")
        if denoise is not None and not (math.isfinite(denoise) and denoise > 0):
            raise ValueError(f"setting {name!r}: denoise_std must be None or > 0, got {denoise!r}")
    train = load_dataset(dataset, "train", root=root)
    test = load_dataset(dataset, "test", root=root)
    g = torch.Generator().manual_seed(seed)
    xtr = train.data[torch.randperm(len(train.data), generator=g)[:num_train]]
    x = test.data[torch.randperm(len(test.data), generator=g)[:num_points]]
    D = xtr.shape[1]
    results = []
    for k, (name, sigma, denoise) in enumerate(settings):
        t0 = time.time()
        pyro.set_rng_seed(seed)
        vae = VAE(x_dim=D, z_dim=z_dim, hidden_dims=hidden_dims, likelihood="normal", sigma=sigma)
        guide = vae.guide
        if denoise is not None:
            guide = DenoisingGuide(vae.guide, functools.partial(GaussianCorruption, sigma=denoise))
        losses = fit(
            vae.model, guide, xtr, epochs=epochs, batch_size=batch_size, lr=lr, progress=False, seed=seed,
            params_from=vae,
        )
        vae.eval()
        with pyro.settings.context(module_local_params=True):
            draws = _nuts(vae, x, num_samples, num_warmup, num_chains, seed + 100 * k)  # (C, S, P, K)
        r_hat = float("nan")
        if num_chains > 1:
            r_hat = float(az.rhat(az.convert_to_dataset({"z": draws.numpy()}))["z"].max())
        flat = draws.reshape(-1, num_points, z_dim).to(torch.float64)
        nuts_mean = flat.mean(0)
        centred = flat - nuts_mean
        nuts_cov = torch.einsum("spi,spj->pij", centred, centred) / (flat.shape[0] - 1)
        with torch.no_grad():
            loc, scale = vae.encode(x)
        # per-point KL(q || NUTS fit)
        kl = np.array([
            gaussian_kl(loc[p].double(), torch.diag(scale[p].double() ** 2), nuts_mean[p], nuts_cov[p])
            for p in range(num_points)
        ])
        m_opt, s_opt = _optimal_gaussian(vae, x, nuts_mean.float(), nuts_cov.diagonal(dim1=-2, dim2=-1).sqrt().float(),
                                          opt_steps, 32, seed + k)
        with torch.no_grad():
            # the same draws eps for both Gaussians (common random numbers for the gap)
            elbo_am = _elbo(vae, x, loc, scale, elbo_samples, torch.Generator().manual_seed(seed + 7)).double()
            elbo_opt = _elbo(vae, x, m_opt, s_opt, elbo_samples, torch.Generator().manual_seed(seed + 7)).double()
            log_px, ess = _importance_log_px(vae, x, nuts_mean.float(), nuts_cov.float(), is_samples, seed + 11)
        res = AmortizationSetting(
            name=name,
            sigma=float(sigma),
            denoise_std=None if denoise is None else float(denoise),
            train_loss=[float(v) for v in losses],
            log_px=log_px.double().numpy(),
            elbo_amortized=elbo_am.numpy(),
            elbo_optimal=elbo_opt.numpy(),
            amortization_gap=(elbo_opt - elbo_am).numpy(),
            approximation_gap=(log_px.double() - elbo_opt).numpy(),
            kl_guide_nuts=kl,
            is_ess=ess.numpy(),
            r_hat_max=r_hat,
            nuts_mean=nuts_mean.numpy(),
            nuts_cov=nuts_cov.numpy(),
            guide_loc=loc.double().numpy(),
            guide_scale=scale.double().numpy(),
            nuts_draws=flat.numpy(),
            seconds=time.time() - t0,
        )
        results.append(res)
        if progress:
            print(
                f"{name:>20s}: amortization gap {res['amortization_gap'].mean():8.3f} ± "
                f"{res['amortization_gap'].std(ddof=1) / math.sqrt(num_points):.3f} nats, approximation gap "
                f"{res['approximation_gap'].mean():7.3f}, KL(q||nuts) {kl.mean():7.3f}, r_hat {r_hat:.3f} "
                f"({res['seconds']:.0f}s)",
                flush=True,
            )
    for r in results:
        r["images"] = x.numpy()
    return results


def summarize(results):
    """One row per setting: means and standard errors (over points) of the gaps, as a list of dicts."""
    rows = []
    for r in results:
        n = len(r["log_px"])
        row = {"setting": r["name"], "sigma": r["sigma"], "denoise_std": r["denoise_std"], "r_hat_max": r["r_hat_max"]}
        keys = ("log_px", "elbo_amortized", "elbo_optimal", "amortization_gap", "approximation_gap", "kl_guide_nuts")
        for key in keys:
            v = np.asarray(r[key], dtype=float)
            row[key] = float(v.mean())
            row[key + "_se"] = float(v.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
        row["min_is_ess"] = float(np.min(r["is_ess"]))
        rows.append(row)
    return rows


def plot_amortization_gaps(results, ax=None):
    """
    Per-point amortization gaps for each setting: bars at the means, one grey line per test image joining
    its gaps across settings (the images are shared, so differences between settings are paired).
    Returns the figure.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(1.8 * len(results) + 2, 3.5))
    else:
        fig = ax.figure
    gaps = np.stack([np.asarray(r["amortization_gap"], dtype=float) for r in results])  # (settings, points)
    xs = np.arange(len(results))
    ax.bar(xs, gaps.mean(1), color="tab:red", alpha=0.3, label="mean")
    ax.plot(xs, gaps, color="0.5", lw=0.7, alpha=0.8)
    ax.scatter(np.repeat(xs, gaps.shape[1]), gaps.ravel(), s=12, color="tab:red", zorder=3, label="test images")
    ax.set_xticks(xs)
    ax.set_xticklabels([r["name"] for r in results], fontsize=8)
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_ylim(0, 2 * max(gaps.max(), 1.0))
    ax.set_ylabel("amortization gap (nats)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _ellipse(mean, cov, color, nsd=2.0):
    """The ``nsd``-σ ellipse of a 2-D Gaussian as a matplotlib patch."""
    from matplotlib.patches import Ellipse

    vals, vecs = np.linalg.eigh(cov)  # ascending: the last eigenvector is the major axis
    width, height = 2 * nsd * np.sqrt(np.clip(vals[::-1], 0, None))
    angle = np.degrees(np.arctan2(vecs[1, -1], vecs[0, -1]))
    return Ellipse(mean, width, height, angle=angle, fill=False, color=color, lw=1.5)


def plot_posteriors(results, points=(0, 1, 2), max_draws=300):
    """For a few test points: NUTS draws with the 2-σ ellipses of the NUTS fit (blue) and the encoder (red)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(points), len(results), figsize=(2.6 * len(results), 2.4 * len(points)), squeeze=False)
    for c, r in enumerate(results):
        for row, p in enumerate(points):
            ax = axes[row, c]
            d = r["nuts_draws"][:, p]
            ax.scatter(d[:max_draws, 0], d[:max_draws, 1], s=3, alpha=0.3, color="tab:blue")
            ax.add_patch(_ellipse(r["nuts_mean"][p], r["nuts_cov"][p], "tab:blue"))
            ax.add_patch(_ellipse(r["guide_loc"][p], np.diag(r["guide_scale"][p] ** 2), "tab:red"))
            if row == 0:
                ax.set_title(r["name"], fontsize=9)
            ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig
