"""Synthetic outlier data: low-rank plus sparse matrices and images with corrupted pixels."""

import math

import pytest
import torch

from pyro_noisevae.data import corrupt_pixels, low_rank_plus_sparse
from pyro_noisevae.models.linear import ppca_mle, subspace_distance


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
    with pytest.raises(ValueError, match="rate"):
        corrupt_pixels(torch.rand(3, 4), -0.1)
    with pytest.raises(ValueError, match="mode"):
        corrupt_pixels(torch.rand(3, 4), 0.1, mode="gaussian")
