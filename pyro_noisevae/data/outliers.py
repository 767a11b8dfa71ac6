"""Synthetic data with gross outliers: low-rank plus sparse matrices, images with corrupted pixels."""

import math
from dataclasses import dataclass

import torch

from .._checks import check_latent_dim, check_matrix, check_positive_int

__all__ = ["LowRankSparseData", "corrupt_pixels", "low_rank_plus_sparse"]


def _check_rate(rate, name="outlier_rate"):
    rate = float(rate)
    if not (0.0 <= rate < 1.0):
        raise ValueError(f"{name} must be in [0, 1), got {rate}")
    return rate


@dataclass
class LowRankSparseData:
    r"""
    Data ``X = L + E + S`` from :func:`low_rank_plus_sparse`.

    :ivar torch.Tensor data: observed ``(N, D)`` = clean + sparse outliers.
    :ivar torch.Tensor clean: ``(N, D)`` low-rank signal plus small dense noise (no outliers).
    :ivar torch.Tensor outliers: boolean mask ``(N, D)`` of the corrupted entries.
    :ivar torch.Tensor basis: orthonormal basis ``(D, r)`` of the true principal subspace.
    :ivar torch.Tensor mean: ``(D,)`` offset.
    """

    data: torch.Tensor
    clean: torch.Tensor
    outliers: torch.Tensor
    basis: torch.Tensor
    mean: torch.Tensor


def low_rank_plus_sparse(num_data=500, x_dim=20, rank=2, outlier_rate=0.1, signal_scale=1.0, noise_std=0.05,
                         outlier_scale=5.0, seed=0, dtype=torch.float64):
    r"""
    Synthetic robust-PCA data: a rank-``r`` signal, small dense noise and sparse gross outliers,

    .. math::

        x_n = \mu + U v_n + \varepsilon_n + s_n, \quad v_n \sim N(0, \mathrm{signal\_scale}^2 I_r),\
        \varepsilon_n \sim N(0, \mathrm{noise\_std}^2 I_D),

    with :math:`U` a random orthonormal ``(D, r)`` basis, :math:`\mu \sim N(0, I)`, and each entry of
    :math:`s_n` nonzero independently with probability ``outlier_rate``, then of random sign and magnitude
    uniform in ``[outlier_scale / 2, outlier_scale]`` (much larger than the signal's per-entry scale
    :math:`\mathrm{signal\_scale}\sqrt{r/D}`).

    :returns: :class:`LowRankSparseData` with tensors of ``dtype``.
    """
    N = check_positive_int(num_data, "num_data")
    D = check_positive_int(x_dim, "x_dim")
    r = check_latent_dim(check_positive_int(rank, "rank"), D, strict=True)
    rate = _check_rate(outlier_rate)
    for name, v in (("signal_scale", signal_scale), ("outlier_scale", outlier_scale)):
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {v}")
    if not (math.isfinite(noise_std) and noise_std >= 0):
        raise ValueError(f"noise_std must be a finite number >= 0, got {noise_std}")
    g = torch.Generator().manual_seed(int(seed))
    U = torch.linalg.qr(torch.randn(D, r, generator=g, dtype=torch.float64))[0]
    mean = torch.randn(D, generator=g, dtype=torch.float64)
    v = signal_scale * torch.randn(N, r, generator=g, dtype=torch.float64)
    clean = mean + v @ U.T + noise_std * torch.randn(N, D, generator=g, dtype=torch.float64)
    mask = torch.rand(N, D, generator=g, dtype=torch.float64) < rate
    magnitude = outlier_scale * (0.5 + 0.5 * torch.rand(N, D, generator=g, dtype=torch.float64))
    sign = torch.where(torch.rand(N, D, generator=g, dtype=torch.float64) < 0.5, -1.0, 1.0).to(torch.float64)
    data = clean + mask * sign * magnitude
    return LowRankSparseData(data.to(dtype), clean.to(dtype), mask, U.to(dtype), mean.to(dtype))


def corrupt_pixels(images, rate, mode="salt-and-pepper", seed=0):
    r"""
    Replace a random fraction ``rate`` of the pixels of each image by gross errors: ``"salt-and-pepper"``
    (0 or 1 with equal probability) or ``"uniform"`` (uniform on [0, 1]).

    :param torch.Tensor images: ``(N, D)`` in [0, 1].
    :returns: ``(corrupted (N, D), mask (N, D) bool)``.
    """
    images = check_matrix(images, "images")
    rate = _check_rate(rate, "rate")
    if mode not in ("salt-and-pepper", "uniform"):
        raise ValueError(f"mode must be 'salt-and-pepper' or 'uniform', got {mode!r}")
    g = torch.Generator().manual_seed(int(seed))
    mask = torch.rand(images.shape, generator=g) < rate
    if mode == "salt-and-pepper":
        values = (torch.rand(images.shape, generator=g) < 0.5).to(images.dtype)
    else:
        values = torch.rand(images.shape, generator=g).to(images.dtype)
    mask = mask.to(images.device)
    return torch.where(mask, values.to(images.device), images), mask
