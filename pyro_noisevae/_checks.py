"""Argument checks shared across the package's modules (data generators, linear models, analysis helpers).

Each check raises a ``TypeError`` or ``ValueError`` that names the argument and says what to pass instead.
"""

import torch

__all__ = ["check_latent_dim", "check_matrix", "check_positive_int", "check_tensor"]


def check_tensor(x, name, min_dim=1):
    """A finite floating-point tensor with at least ``min_dim`` dimensions."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.dim() < min_dim:
        raise ValueError(f"{name} must have at least {min_dim} dimension(s), got shape {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values")


def check_matrix(x, name, min_rows=1):
    """A finite floating-point ``(N, D)`` tensor with ``N >= min_rows`` and ``D >= 1``; returns ``x``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, D), got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor (e.g. {name}.double()), got dtype {x.dtype}")
    if x.dim() != 2:
        raise ValueError(f"{name} must have shape (N, D) (one row per data point), got {tuple(x.shape)}")
    if x.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} rows, got {x.shape[0]}")
    if x.shape[1] < 1:
        raise ValueError(f"{name} has no columns (shape {tuple(x.shape)})")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values; remove or impute them first")
    return x


def check_positive_int(value, name):
    """An integer ``>= 1`` (``bool`` refused); returns ``int(value)``."""
    if isinstance(value, bool) or int(value) != value or int(value) < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def check_latent_dim(latent_dim, x_dim, strict=False):
    """
    Validate a latent dimension K against the observed dimension D: an integer with ``1 <= K <= D``
    (``K < D`` when ``strict``, as the pPCA noise variance is an average over the ``D - K`` discarded
    eigenvalues).

    :returns: ``int(latent_dim)``.
    :raises TypeError, ValueError: saying which bound is violated.
    """
    if isinstance(latent_dim, bool) or not isinstance(latent_dim, int):
        if isinstance(latent_dim, torch.Tensor) or not float(latent_dim).is_integer():
            raise TypeError(f"latent_dim must be an int, got {latent_dim!r}")
    k = int(latent_dim)
    if k < 1:
        raise ValueError(f"latent_dim must be >= 1, got {k}")
    if k > x_dim:
        raise ValueError(f"latent_dim={k} exceeds the data dimension D={x_dim}; use latent_dim <= {x_dim}")
    if strict and k == x_dim:
        raise ValueError(
            f"latent_dim={k} must be smaller than the data dimension D={x_dim}: the pPCA noise variance is the "
            f"mean of the D - K smallest covariance eigenvalues, which is undefined for K = D"
        )
    return k
