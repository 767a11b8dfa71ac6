"""Robust outlier dismissal: a per-entry learned decoder variance recovers the clean subspace where PCA fails."""

import math

import pytest
import torch

from pyro_noisevae.data import low_rank_plus_sparse
from pyro_noisevae.models.linear import ppca_mle, subspace_distance
from pyro_noisevae.models.robust import RobustLinearVAE, fit_robust



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


def test_validation():
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
    # mini-batches through index: the plate scales the batch to the full data set
    x = torch.randn(10, 5)
    m.model(x[:4], index=torch.arange(4))
    m.guide(x[:4], index=torch.arange(4))


def test_per_dimension_variance_recovers_known_noise_variances():
    """
    Factor-analysis data with known noise variances psi_d (one factor, so the diagonal guide is the exact
    posterior family and the ELBO optimum is the FA maximum likelihood): the learned per-dimension variances
    recover psi_d within 4 standard errors, psi_d sqrt(2 / N) each (the residual-variance estimator's; the
    one-factor fit's loss of a degree of freedom per point is shared by D = 5 dimensions), and they are not
    their common mean (the shared-noise answer).
    """
    N = 2000
    gen = torch.Generator().manual_seed(5)
    psi = torch.tensor([0.05, 0.1, 0.2, 0.4, 0.8])
    w = torch.tensor([1.0, 0.8, 1.2, 0.6, 1.0])
    x = torch.randn(N, 1, generator=gen) * w + 0.5 + torch.randn(N, 5, generator=gen) * psi.sqrt()
    model = RobustLinearVAE(5, 1, N, noise="per-dimension", init=ppca_mle(x, 1), init_data=x)
    fit_robust(model, x, steps=600, lr=0.05, seed=0)
    got = model.variance.detach()
    assert got.shape == (5,)
    se = psi * math.sqrt(2 / N)
    assert ((got - psi).abs() < 4 * se).all(), (got, psi, (got - psi) / se)
    assert ((got - psi.mean()).abs() > 8 * se).sum() >= 4  # per dimension, not one shared value
