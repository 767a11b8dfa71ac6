"""Quality of a reconstruction or a denoised image against its target: per-image MSE and PSNR."""

import numbers

import torch

from .._checks import check_tensor

__all__ = ["mse", "psnr"]


def _check_pair(estimate, target):
    check_tensor(estimate, "estimate")
    check_tensor(target, "target")
    if estimate.shape != target.shape:
        raise ValueError(f"estimate and target must have the same shape, got {tuple(estimate.shape)} and {tuple(target.shape)}")


def mse(estimate, target):
    r"""Per-image mean squared error :math:`\frac1D \sum_d (\hat x_d - x_d)^2`: ``(N, D) -> (N,)``."""
    _check_pair(estimate, target)
    return (estimate - target).pow(2).flatten(1).mean(-1)


def psnr(estimate, target, data_range=1.0):
    r"""
    Per-image peak signal-to-noise ratio in dB, :math:`10 \log_{10}\big(R^2 / \mathrm{MSE}\big)` with
    :math:`R` the data range (1 for images in [0, 1]): ``(N, D) -> (N,)``. A perfect estimate gives ``inf``.
    """
    if not (isinstance(data_range, numbers.Real) and data_range > 0):
        raise ValueError(f"data_range must be > 0, got {data_range!r}")
    return 10.0 * torch.log10(data_range**2 / mse(estimate, target))
