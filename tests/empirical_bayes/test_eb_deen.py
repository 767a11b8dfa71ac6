"""DEEN at MNIST's dimension: the default MLP energy must learn to denoise a 784-D Gaussian with MNIST's moments."""

import re

import pytest
import torch
from torch import nn

from pyro_noisevae.data import load_dataset
from pyro_noisevae.empirical_bayes import DEEN, GaussianEnergy, bayes_estimator, fit_denoiser

DT = torch.float64


@pytest.fixture(scope="module")
def mnist_moments(data_root):
    """Mean and covariance of 5,000 MNIST training images: the law N(m, S) of the test below."""
    x = load_dataset("mnist", split="train", root=data_root).data[:5000].to(DT)
    return x.mean(0), torch.cov(x.T)


def _sampler(loc, cov, generator):
    # S is singular (MNIST's border pixels never vary): sample with its symmetric square root, not Cholesky
    evals, evecs = torch.linalg.eigh(cov)
    root = evecs * evals.clamp_min(0).sqrt()
    return lambda n: loc + torch.randn(n, loc.shape[0], dtype=DT, generator=generator) @ root.T


def test_default_deen_learns_to_denoise_a_784d_gaussian_with_mnist_moments(mnist_moments):
    """
    ``DEEN(784)`` trained by ``fit_denoiser`` with its defaults (batch 100, Adam lr 1e-3) for 200 steps
    (a few seconds on one thread) denoises X ~ N(m, S) at σ = 0.5, where the Bayes estimator is the Wiener
    filter (``GaussianEnergy.smoothed``), so the MSE has an exact floor.

    Tolerance: the learned MSE must close at least 60% of the gap between the mean image (MSE tr(S)/D ≈
    0.067 per pixel) and the Wiener filter (≈ 0.020), i.e. be below Wiener + 0.4 (mean - Wiener) ≈ 0.039.
    The defaults reach ≈ 0.033 in these 200 steps (≈ 0.024 after 500); Wiener itself would need far
    longer training. The old defaults (softplus, first layer of 500 < 784 units) fail by far (0.15 here):
    their gradient lies in a 500-dim subspace, so the other 284 directions keep all their noise, an MSE of
    at least σ² 284/784 ≈ 0.091 per pixel, worse than the mean image, whatever the training; softplus with
    the new widths and initialization fails too (0.051).
    Noise: 4,000 test points; the standard error of the paired difference from the Wiener MSE is < 1e-4
    per pixel (checked below), about 1% of the 0.006 between the expected MSE and the bound.
    """
    sigma, dim = 0.5, 784
    loc, cov = mnist_moments
    sample = _sampler(loc, cov, torch.Generator().manual_seed(0))
    x_train = sample(200 * 100).float()
    x_test = sample(4000)
    y_test = x_test + sigma * torch.randn(x_test.shape, dtype=DT, generator=torch.Generator().manual_seed(1))

    torch.manual_seed(0)
    energy = DEEN(dim)
    fit_denoiser(energy, x_train, sigma, max_steps=200, progress=False, seed=0)

    def per_point(x_hat):
        return (x_hat.to(DT) - x_test).pow(2).mean(-1)

    err = per_point(bayes_estimator(energy, y_test.float(), sigma))
    err_wiener = per_point(bayes_estimator(GaussianEnergy.smoothed(loc, cov, sigma), y_test, sigma))
    mse, wiener = err.mean().item(), err_wiener.mean().item()
    mean_image = per_point(loc.expand_as(x_test)).mean().item()
    bound = wiener + 0.4 * (mean_image - wiener)
    se = (err - err_wiener).std().item() / len(err) ** 0.5
    assert se < 1e-4, se
    assert mse < bound, f"DEEN MSE {mse:.4f}, Wiener {wiener:.4f}, mean image {mean_image:.4f}, bound {bound:.4f}"


def test_default_architecture():
    energy = DEEN(784)
    linears = [m for m in energy.net if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linears] == [1000, 1000, 1]
    assert all(isinstance(m, nn.SiLU) for m in energy.net if not isinstance(m, nn.Linear))
    # the effective first layer (input_scale * W1) is perfectly conditioned, with PyTorch's default mean norm
    w1 = energy.input_scale * linears[0].weight.detach()
    s = torch.linalg.svdvals(w1)
    assert s.max() / s.min() < 1.001
    assert abs(w1.pow(2).sum().item() / (1000 / 3) - 1) < 1e-3
    # the default width grows with the data dimension
    assert DEEN(1200).net[0].out_features >= 1200


@pytest.mark.parametrize("activation", ["silu", "softplus", "tanh", "elu"])
def test_smooth_activations_accepted_relu_refused(activation):
    energy = DEEN(3, hidden_dims=(4,), activation=activation)
    _, grad = energy.energy_and_grad(torch.randn(2, 3))
    assert grad.shape == (2, 3)
    with pytest.raises(ValueError, match="smooth activation"):
        DEEN(3, hidden_dims=(4,), activation="relu")


def test_first_layer_narrower_than_the_data_confines_the_denoiser_to_a_subspace():
    # grad f = W1^T grad g lies in the row space of W1: with 3 first-layer units in D = 5, the corrections
    # x̂ - y = -σ² grad f of any number of points span at most 3 dimensions (why DEEN(784, (500, 500)) failed)
    energy = DEEN(5, hidden_dims=(3, 8)).double()
    _, grad = energy.energy_and_grad(torch.randn(50, 5, dtype=DT))
    assert torch.linalg.matrix_rank(grad).item() == 3
    _, grad = DEEN(5, hidden_dims=(8, 8)).double().energy_and_grad(torch.randn(50, 5, dtype=DT))
    assert torch.linalg.matrix_rank(grad).item() == 5


# ---- issue 15: mutation-testing blind spots (quality/notes_eb_deen.md) ----


def test_default_dimension_is_mnists():
    assert DEEN(hidden_dims=(4,)).dim == 784


def test_relu_refusal_message():
    message = "DEEN needs a smooth activation (silu, softplus, tanh or elu): relu has a zero Hessian"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        DEEN(3, hidden_dims=(4,), activation="relu")


def test_forward_checks_the_feature_size():
    # called directly (not through energy_and_grad), the energy names the mismatch instead of a matmul error
    with pytest.raises(ValueError, match=f"^{re.escape('y has 4 features but the energy expects 3')}$"):
        DEEN(3, hidden_dims=(4,))(torch.zeros(2, 4))


@pytest.mark.parametrize("dim", [16, 400])
def test_first_adam_step_moves_the_effective_first_layer_by_lr_over_sqrt_d(dim):
    """
    The input is scaled by 1/√D: Adam's first step moves every raw weight by lr (times |g| / (|g| + 1e-8), = 1 to
    float32 precision for the gradients here), so the effective first layer input_scale · W1 moves by lr / √D
    at most, and by exactly that for all but (possibly) entries with a vanishing gradient.
    """
    torch.manual_seed(0)
    energy = DEEN(dim, hidden_dims=(dim + 8, 8))
    lr = 1e-3
    opt = torch.optim.Adam(energy.parameters(), lr=lr)
    before = energy.input_scale * energy.net[0].weight.detach().clone()
    energy(torch.randn(32, dim)).sum().backward()
    opt.step()
    moved = (energy.input_scale * energy.net[0].weight.detach() - before).abs()
    assert abs(moved.max().item() * dim**0.5 / lr - 1) < 1e-3
    assert abs(moved.median().item() * dim**0.5 / lr - 1) < 1e-3
