"""Robust outlier dismissal: a per-entry learned decoder variance recovers the clean subspace where PCA fails."""

import math

import pytest
import torch

from pyro_noisevae.linear import ppca_mle, subspace_distance
from pyro_noisevae.robust import (
    RobustLinearVAE,
    corrupt_pixels,
    fit_robust,
    low_rank_plus_sparse,
    plot_subspace_error,
    subspace_error_vs_outlier_rate,
)


@pytest.fixture(autouse=True)
def _one_thread():
    # small models on a shared CPU: intra-op threading only adds overhead
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_low_rank_plus_sparse_generator():
    N, D, r, rate = 400, 12, 2, 0.1
    d = low_rank_plus_sparse(N, D, r, rate, seed=3)
    assert d.data.shape == d.clean.shape == d.outliers.shape == (N, D)
    assert d.basis.shape == (D, r) and d.mean.shape == (D,)
    assert torch.allclose(d.basis.T @ d.basis, torch.eye(r, dtype=d.basis.dtype), atol=1e-12)
    # the outlier fraction is Binomial(ND, rate)/ND: within 4 standard errors
    assert abs(d.outliers.double().mean().item() - rate) < 4 * math.sqrt(rate * (1 - rate) / (N * D))
    # entries differ from the clean data exactly where the mask says, by at least outlier_scale / 2
    diff = (d.data - d.clean).abs()
    assert torch.equal(diff > 0, d.outliers)
    assert diff[d.outliers].min() >= 2.5
    # the clean data are low rank plus small noise: PCA of the clean data finds the basis
    assert subspace_distance(ppca_mle(d.clean, r).W, d.basis) < 0.05
    # reproducible
    assert torch.equal(low_rank_plus_sparse(N, D, r, rate, seed=3).data, d.data)


def test_learned_per_entry_variance_recovers_subspace_where_pca_fails():
    N, D, r = 200, 15, 2
    d = low_rank_plus_sparse(N, D, r, outlier_rate=0.1, seed=0)
    x = d.data.float()
    fit = ppca_mle(x, r)
    pca_error = subspace_distance(fit.W, d.basis)
    clean_error = subspace_distance(ppca_mle(d.clean, r).W, d.basis)
    model = RobustLinearVAE(D, r, N, noise="per-entry", init=fit, init_data=x)
    losses = fit_robust(model, x, steps=120, lr=0.05, seed=0)
    robust_error = subspace_distance(model.W.detach(), d.basis)
    assert losses[-1] < losses[0]
    # 10% gross outliers (|s| >= 2.5 against a per-entry signal scale of sqrt(r/D) ~ 0.37) swamp PCA's
    # covariance: its subspace is nearly orthogonal to the truth. The robust model must come within a few
    # times the error PCA makes on the *clean* data (dense noise only), i.e. essentially undo the outliers.
    assert pca_error > 0.5
    assert robust_error < max(5 * clean_error, 0.1)
    assert robust_error < pca_error / 5
    # the outliers are the entries with large learned variances (ranked: AUC-like check on the top entries)
    v = model.variance.detach()
    k = int(d.outliers.sum())
    top = v.flatten().topk(k).indices
    assert d.outliers.flatten()[top].double().mean() > 0.9


def test_shared_variance_is_ppca():
    """With one shared variance the model is pPCA: started at the MLE it stays there."""
    N, D, r = 100, 6, 2
    d = low_rank_plus_sparse(N, D, r, outlier_rate=0.0, noise_std=0.2, seed=1)
    x = d.data.float()
    fit = ppca_mle(x, r)
    model = RobustLinearVAE(D, r, N, noise="shared", init=fit, init_data=x)
    fit_robust(model, x, steps=300, lr=0.05, seed=0)
    # optimisation error below sampling error: sigma2's relative standard error is sqrt(2 / (N (D - r))),
    # and the subspace's is far below 0.05 here (clean data, eigenvalue gap ~ 1 / 0.04)
    assert subspace_distance(model.W.detach(), fit.W) < 0.05
    assert abs(model.variance.item() / fit.sigma2.item() - 1) < math.sqrt(2 / (N * (D - r)))


def test_sweep_and_plot_smoke():
    import matplotlib.pyplot as plt

    recs = subspace_error_vs_outlier_rate(
        rates=(0.0, 0.2), methods=("pca", "per-dimension"), num_data=60, x_dim=8, steps=5
    )
    assert len(recs) == 4 and {r["method"] for r in recs} == {"pca", "per-dimension"}
    assert all(0 <= r["subspace_error"] <= 1 for r in recs)
    fig = plot_subspace_error(recs)
    assert len(fig.axes[0].lines) == 2
    plt.close(fig)


def test_corrupt_pixels():
    x = torch.full((50, 40), 0.5)
    y, mask = corrupt_pixels(x, 0.2, seed=1)
    assert torch.equal(y[~mask], x[~mask])
    assert set(y[mask].unique().tolist()) <= {0.0, 1.0}
    assert abs(mask.double().mean().item() - 0.2) < 4 * math.sqrt(0.2 * 0.8 / 2000)
    y2, mask2 = corrupt_pixels(x, 0.2, mode="uniform", seed=1)
    assert torch.equal(mask2, mask) and ((y2[mask] >= 0) & (y2[mask] <= 1)).all()


def test_validation():
    with pytest.raises(ValueError, match="outlier_rate"):
        low_rank_plus_sparse(10, 5, 2, outlier_rate=1.5)
    with pytest.raises(ValueError, match="smaller than the data dimension"):
        low_rank_plus_sparse(10, 5, 5)
    with pytest.raises(ValueError, match="noise"):
        RobustLinearVAE(5, 2, 10, noise="student")
    with pytest.raises(ValueError, match="exceeds"):
        RobustLinearVAE(5, 6, 10)
    with pytest.raises(ValueError, match="min_variance"):
        RobustLinearVAE(5, 2, 10, min_variance=0.0)
    m = RobustLinearVAE(5, 2, 10)
    with pytest.raises(ValueError, match="num_data=10"):
        m.model(torch.randn(4, 5))
    with pytest.raises(ValueError, match="index values"):
        m.model(torch.randn(2, 5), index=torch.tensor([0, 10]))
    with pytest.raises(ValueError, match="NaN"):
        m.model(torch.full((10, 5), float("nan")))
    with pytest.raises(ValueError, match="rate"):
        corrupt_pixels(torch.rand(3, 4), -0.1)
    with pytest.raises(ValueError, match="mode"):
        corrupt_pixels(torch.rand(3, 4), 0.1, mode="gaussian")
    with pytest.raises(ValueError, match="unknown method"):
        subspace_error_vs_outlier_rate(methods=("ica",))
    # mini-batches through index: the plate scales the batch to the full data set
    x = torch.randn(10, 5)
    m.model(x[:4], index=torch.arange(4))
    m.guide(x[:4], index=torch.arange(4))
