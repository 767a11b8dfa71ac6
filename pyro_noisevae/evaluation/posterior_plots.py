"""Figures of exact versus amortized posteriors: the pair plot of a posterior comparison and the subspace
error of robust linear VAEs against PCA."""

import math

import numpy as np

from .posterior import PosteriorComparison

__all__ = ["plot_pair", "plot_subspace_error"]

_COLORS = {"exact": "black", "nuts": "tab:blue", "guide": "tab:red"}


def _ellipse(ax, mean, cov, color, nsd=2.0):
    t = np.linspace(0, 2 * np.pi, 100)
    vals, vecs = np.linalg.eigh(cov)
    circle = np.stack([np.cos(t), np.sin(t)])
    pts = mean[:, None] + nsd * vecs @ (np.sqrt(np.clip(vals, 0, None))[:, None] * circle)
    ax.plot(pts[0], pts[1], color=color, lw=1.5)


def plot_pair(result, coords=None, sources=None, max_points=400, figsize=None, seed=0, title=None):
    r"""
    Pair plot overlaying the sources of a :class:`PosteriorComparison`: scatter of (up to ``max_points``)
    draws and the 2-σ ellipse of each Gaussian fit below the diagonal, histograms with the fitted
    Gaussian densities on the diagonal.

    :param PosteriorComparison result: output of :func:`compare_posteriors`.
    :param coords: coordinate labels or indices to show (default: all ``d``).
    :param sources: subset of ``("exact", "nuts", "guide")`` (default: all present).
    :param str title: optional first line of the figure title (the second lists the KL divergences).
    :returns: :class:`matplotlib.figure.Figure`.
    """
    import matplotlib.pyplot as plt

    if not isinstance(result, PosteriorComparison):
        raise TypeError(f"result must be a PosteriorComparison, got {type(result).__name__}")
    sources = result.sources if sources is None else list(sources)
    bad = [s for s in sources if s not in result.sources]
    if bad:
        raise ValueError(f"unknown sources {bad}; this result has {result.sources}")
    idx = list(range(len(result.labels))) if coords is None else [
        result.labels.index(c) if isinstance(c, str) else int(c) for c in coords
    ]
    k = len(idx)
    fig, axes = plt.subplots(k, k, figsize=figsize or (2.6 * k + 0.6, 2.6 * k + 0.4), squeeze=False)
    rng = np.random.default_rng(seed)
    for src in sources:
        x = result.samples[src]
        sel = x[rng.choice(len(x), size=min(max_points, len(x)), replace=False)]
        m, S = result.means[src], result.covariances[src]
        for r, i in enumerate(idx):
            for c, j in enumerate(idx):
                ax = axes[r, c]
                if c > r:
                    ax.axis("off")
                elif r == c:
                    ax.hist(x[:, i], bins=40, density=True, histtype="step", color=_COLORS[src], alpha=0.7)
                    grid = np.linspace(*np.percentile(x[:, i], [0.1, 99.9]), 200)
                    sd = math.sqrt(S[i, i])
                    ax.plot(grid, np.exp(-0.5 * ((grid - m[i]) / sd) ** 2) / (sd * math.sqrt(2 * math.pi)),
                            color=_COLORS[src], lw=1.2, ls="--")
                else:
                    ax.scatter(sel[:, j], sel[:, i], s=4, alpha=0.3, color=_COLORS[src], label=src)
                    _ellipse(ax, m[[j, i]], S[np.ix_([j, i], [j, i])], _COLORS[src])
    for r, i in enumerate(idx):
        axes[-1, r].set_xlabel(result.labels[i])
        if r > 0:
            axes[r, 0].set_ylabel(result.labels[i])
    handles = [plt.Line2D([], [], color=_COLORS[s], lw=2, label=s) for s in sources]
    if k > 1:  # the empty top-right panel
        axes[0, -1].legend(handles=handles, loc="center", frameon=False)
    else:
        axes[0, 0].legend(handles=handles, fontsize=8, frameon=False)
    kl = ", ".join(f"KL({p}) = {v:.3g}" for p, v in result.kl.items())
    fig.suptitle(kl if title is None else f"{title}\n{kl}", fontsize=9)
    fig.tight_layout()
    return fig


def plot_subspace_error(records, ax=None, xlabel="outlier rate", title=None):
    """
    Line plot of ``subspace_error`` against ``outlier_rate``, one line per method; returns the figure.

    :param list records: dicts with ``"method"``, ``"outlier_rate"`` and ``"subspace_error"``, as returned by
        :func:`~pyro_noisevae.experiments.robust_pca.subspace_error_vs_outlier_rate`.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 3.5))
    else:
        fig = ax.figure
    methods = list(dict.fromkeys(r["method"] for r in records))
    styles = {"pca": ("k", "o", "PCA"), "shared": ("tab:gray", "s", "linear VAE, shared σ² (pPCA)"),
              "per-dimension": ("tab:blue", "^", "per-dimension variance"),
              "per-entry": ("tab:red", "D", "per-entry variance (robust)")}
    for m in methods:
        rs = sorted((r for r in records if r["method"] == m), key=lambda r: r["outlier_rate"])
        c, mk, label = styles.get(m, (None, "x", m))
        ax.plot([r["outlier_rate"] for r in rs], [r["subspace_error"] for r in rs], marker=mk, color=c, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(r"subspace error $\sin\theta_{\max}$")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig
