"""Pixel-level corruptions of data sets: dynamic binarization and additive Gaussian noise."""

import math
import numbers

import torch

__all__ = ["add_gaussian_noise", "dynamic_binarize"]


def _check_float_tensor(x, fn_name):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{fn_name}: x must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{fn_name}: x must be a floating-point tensor, got dtype {x.dtype}; convert it with x.float()")


def _check_generator(generator, x, fn_name):
    if generator is None:
        return
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"{fn_name}: generator must be a torch.Generator or None, got {type(generator).__name__}")
    if generator.device.type != x.device.type:
        raise ValueError(
            f"{fn_name}: the generator lives on {generator.device} but x lives on {x.device}; "
            f"create it with torch.Generator(device=x.device)"
        )


def dynamic_binarize(x, generator=None):
    r"""
    Draw one binary image per input image by treating each intensity as a Bernoulli probability:

    .. math:: \tilde x_{nd} \sim \mathrm{Bernoulli}(x_{nd}), \qquad
              \mathbb{E}[\tilde x_{nd}] = x_{nd}.

    Resampling at every mini-batch ("dynamic binarization") is the standard way of training Bernoulli
    decoders on grey-scale MNIST without overfitting one fixed binarization.

    :param torch.Tensor x: floating-point intensities in :math:`[0, 1]`, any shape ``(*)``.
    :param torch.Generator generator: optional generator on ``x``'s device, for reproducible draws.
    :returns: a tensor of zeros and ones with the shape, dtype and device of ``x``.
    :rtype: torch.Tensor
    :raises TypeError: if ``x`` is not a floating-point tensor.
    :raises ValueError: if some entry of ``x`` lies outside :math:`[0, 1]` or is NaN.
    """
    _check_float_tensor(x, "dynamic_binarize")
    _check_generator(generator, x, "dynamic_binarize")
    if x.numel() and not bool(((x >= 0) & (x <= 1)).all()):
        raise ValueError(
            "dynamic_binarize: x must hold probabilities in [0, 1] (no NaN); "
            f"got min {x.min().item()} and max {x.max().item()}. Rescale the data (e.g. divide uint8 pixels by 255)"
        )
    return torch.bernoulli(x, generator=generator)


def add_gaussian_noise(x, std, generator=None):
    r"""
    Add independent zero-mean Gaussian noise to every entry:

    .. math:: y = x + \epsilon, \qquad \epsilon \sim \mathcal{N}(0, s^2 I).

    The result is not clipped, so it may leave :math:`[0, 1]`: that is the observation model
    :math:`Y = X + \mathcal{N}(0, s^2)` of noisy test sets and of the empirical-Bayes experiments.

    :param torch.Tensor x: floating-point tensor, any shape ``(*)``; must be finite.
    :param std: noise standard deviation :math:`s \ge 0`: a real number, or a tensor broadcastable to
        ``x.shape`` (without enlarging it) whose entries are all finite and non-negative.
    :param torch.Generator generator: optional generator on ``x``'s device, for reproducible draws.
    :returns: ``y`` with the shape, dtype and device of ``x`` (a new tensor, also when ``std == 0``).
    :rtype: torch.Tensor
    :raises TypeError: if ``x`` is not a floating-point tensor or ``std`` is not a number or tensor.
    :raises ValueError: if ``std`` is negative, NaN or infinite, or ``x`` is not finite.
    """
    _check_float_tensor(x, "add_gaussian_noise")
    _check_generator(generator, x, "add_gaussian_noise")
    if isinstance(std, torch.Tensor):
        if not bool(torch.isfinite(std).all()) or bool((std < 0).any()):
            raise ValueError(f"add_gaussian_noise: std must be finite and >= 0 everywhere, got {std}")
        if torch.broadcast_shapes(std.shape, x.shape) != x.shape:
            raise ValueError(
                f"add_gaussian_noise: std of shape {tuple(std.shape)} would change the shape {tuple(x.shape)} of x; "
                "pass a scalar or a tensor broadcastable to x.shape"
            )
        std = std.to(dtype=x.dtype, device=x.device)
    elif isinstance(std, numbers.Real) and not isinstance(std, bool):
        if not math.isfinite(std) or std < 0:
            raise ValueError(f"add_gaussian_noise: std must be a finite number >= 0, got {std}")
        if std == 0:
            return x.clone()
    else:
        raise TypeError(f"add_gaussian_noise: std must be a real number or a tensor, got {type(std).__name__}")
    if x.numel() and not bool(torch.isfinite(x).all()):
        raise ValueError("add_gaussian_noise: x contains NaN or infinite values")
    eps = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return x + std * eps
