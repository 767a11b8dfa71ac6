"""Tests of the standalone corruptions: dynamic binarization and additive Gaussian noise."""

import math

import pytest
import torch

from pyro_noisevae.data import add_gaussian_noise, dynamic_binarize


def test_dynamic_binarize_shape_dtype_values():
    x = torch.rand(3, 4, 5, dtype=torch.float64)
    b = dynamic_binarize(x)
    assert b.shape == x.shape and b.dtype == x.dtype and b.device == x.device
    assert ((b == 0) | (b == 1)).all()
    edges = torch.tensor([0.0, 1.0, 0.0, 1.0])
    assert torch.equal(dynamic_binarize(edges), edges)  # p = 0 and p = 1 are deterministic


def test_dynamic_binarize_mean():
    p, n = 0.3, 200_000
    b = dynamic_binarize(torch.full((n,), p, dtype=torch.float64))
    assert abs(b.mean().item() - p) <= 4 * math.sqrt(p * (1 - p) / n)  # 4 standard errors of a Bernoulli mean


def test_dynamic_binarize_generator_reproducible():
    x = torch.rand(1000)
    first = dynamic_binarize(x, generator=torch.Generator().manual_seed(5))
    assert torch.equal(first, dynamic_binarize(x, generator=torch.Generator().manual_seed(5)))
    assert not torch.equal(first, dynamic_binarize(x, generator=torch.Generator().manual_seed(6)))


@pytest.mark.parametrize(
    "x,error,match",
    [
        (torch.tensor([0.5, 1.5]), ValueError, r"\[0, 1\]"),
        (torch.tensor([-0.1, 0.5]), ValueError, r"\[0, 1\]"),
        (torch.tensor([math.nan, 0.5]), ValueError, "NaN"),
        (torch.tensor([0, 1]), TypeError, "floating-point"),
        ([0.5, 0.5], TypeError, "torch.Tensor"),
    ],
)
def test_dynamic_binarize_errors(x, error, match):
    with pytest.raises(error, match=match):
        dynamic_binarize(x)


def test_dynamic_binarize_bad_generator():
    with pytest.raises(TypeError, match="generator"):
        dynamic_binarize(torch.rand(3), generator=0)


def test_add_gaussian_noise_moments():
    s, n = 0.25, 200_000
    x = torch.rand(n, dtype=torch.float64)
    y = add_gaussian_noise(x, s)
    assert y.shape == x.shape and y.dtype == x.dtype
    eps = y - x
    assert abs(eps.mean().item()) <= 4 * s / math.sqrt(n)  # se of the mean
    assert abs(eps.std().item() - s) <= 4 * s / math.sqrt(2 * n)  # asymptotic se of the sample sd


def test_add_gaussian_noise_tensor_std_per_column():
    n = 100_000
    std = torch.tensor([0.5, 2.0], dtype=torch.float64)
    eps = add_gaussian_noise(torch.zeros(n, 2, dtype=torch.float64), std)
    assert eps.shape == (n, 2)
    assert ((eps.std(0) - std).abs() <= 4 * std / math.sqrt(2 * n)).all()


def test_add_gaussian_noise_zero_std_and_generator():
    x = torch.rand(10)
    y = add_gaussian_noise(x, 0.0)
    assert torch.equal(y, x) and y.data_ptr() != x.data_ptr()
    a = add_gaussian_noise(x, 0.1, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, add_gaussian_noise(x, 0.1, generator=torch.Generator().manual_seed(1)))
    assert not torch.equal(a, x)


@pytest.mark.parametrize(
    "std,error,match",
    [
        (-0.1, ValueError, ">= 0"),
        (math.nan, ValueError, "finite"),
        (math.inf, ValueError, "finite"),
        (True, TypeError, "real number"),
        ("0.1", TypeError, "real number"),
        (torch.tensor([0.1, -0.1]), ValueError, ">= 0"),
        (torch.tensor([0.1, math.inf]), ValueError, "finite"),
        (torch.ones(3, 2), ValueError, "change the shape"),
    ],
)
def test_add_gaussian_noise_bad_std(std, error, match):
    with pytest.raises(error, match=match):
        add_gaussian_noise(torch.zeros(2), std)


@pytest.mark.parametrize(
    "x,error",
    [(torch.tensor([0.0, math.inf]), ValueError), (torch.tensor([1, 2]), TypeError), (1.0, TypeError)],
)
def test_add_gaussian_noise_bad_x(x, error):
    with pytest.raises(error):
        add_gaussian_noise(x, 0.1)
