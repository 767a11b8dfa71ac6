"""
The denoisers of the experiment learn at a budget where it means something: DEEN beats the mean image on
MNIST, and UVB beats the mean image on MNIST and the optimal linear (Wiener) filter where the Bayes
estimator is far from linear.

UVB beating Wiener *on MNIST* is not asserted here: at the experiment's settings the σ = 1 UVB model needs
about 1,000 Adam steps (two epochs of ``uvb-denoise``, 40-60 s on one thread, more than this file's whole
budget) before it passes Wiener (it is at 0.0350 against Wiener's 0.0343 after 400 steps on 5,000 images).
The cheaper check: the same VAE-energy pipeline (``ELBOEnergy`` + ``fit_denoiser``) beats Wiener by far on
a two-cluster law in 8 dimensions, where the Wiener filter is poor, in 150 steps.
"""

import pyro
import pytest
import torch

from pyro_noisevae.empirical_bayes import ELBOEnergy, GaussianEnergy, bayes_estimator, fit_denoiser
from pyro_noisevae.experiments.empirical_bayes import models
from pyro_noisevae.models import VAE


def _paired(err_a, err_b):
    """Mean and s.e. of the per-image difference of two per-image MSEs."""
    d = err_a - err_b
    return d.mean().item(), d.std().item() / len(d) ** 0.5


@pytest.fixture(scope="module")
def mnist(data_root):
    x_train, _ = models.load_mnist("train", 5000, 0, data_root)
    x_test, _ = models.load_mnist("test", 500, 1, data_root)
    return x_train, x_test


@pytest.mark.parametrize("kind, sigma", [("deen", 0.5), ("uvb", 1.0)])
def test_experiment_models_beat_the_mean_image_on_mnist(kind, sigma, mnist, tmp_path):
    """
    The experiment's ``train_model`` with its default architectures (DEEN (1000, 1000), σ-VAE (256, 256) for
    UVB), Adam lr 1e-3, batch 100, for 150 steps (3 epochs of 5,000 images; about 15 s for DEEN, 6 s for
    UVB on one thread) must beat the mean training image on 500 test images.

    Measured at 150 steps: DEEN 0.037 at σ = 0.5, UVB 0.041 at σ = 1, against 0.066 for the mean image;
    the bound is 0.8 × the mean image's MSE, and the paired difference must also be more than 5 standard
    errors. This is the guard against the first DEEN of this experiment, whose 512-wide first layer left
    the noise in 272 of the 784 directions: an MSE of at least σ²·272/784 = 0.087 at σ = 0.5, worse than
    the mean image whatever the training.
    """
    x_train, x_test = mnist
    cfg = dict(models.DEFAULTS, train_size=5000, epochs=3)
    with pyro.settings.context(module_local_params=True):
        module, state = models.train_model(kind, sigma, cfg, x_train, tmp_path, "cpu", False)
        energy = models.model_energy(kind, module, num_particles=4)
        y_test = x_test + sigma * torch.randn(x_test.shape, generator=torch.Generator().manual_seed(1))
        torch.manual_seed(0)
        err = (bayes_estimator(energy, y_test, sigma) - x_test).pow(2).mean(-1)
    assert state["epoch"] == 3
    err_mean = (x_train.mean(0) - x_test).pow(2).mean(-1)
    diff, se = _paired(err, err_mean)
    assert err.mean() < 0.8 * err_mean.mean(), (err.mean().item(), err_mean.mean().item())
    assert diff < -5 * se, (diff, se)


def _two_clusters(n, dim, seed):
    """X = ±(1, ..., 1) (each with probability 1/2) + N(0, 0.1² I): the Bayes denoiser snaps to a cluster."""
    g = torch.Generator().manual_seed(seed)
    sign = torch.randint(0, 2, (n, 1), generator=g) * 2 - 1
    return sign * torch.ones(dim) + 0.1 * torch.randn(n, dim, generator=g)


def test_uvb_beats_the_wiener_filter_where_the_bayes_estimator_is_nonlinear():
    """
    UVB (a σ-VAE, z_dim 2, one hidden layer of 32, its ELBO as the energy) trained by ``fit_denoiser`` for
    150 steps (Adam lr 1e-2, batch 100; a few seconds) on 5,000 points of the two-cluster law in D = 8 at
    σ = 0.5. The Wiener filter, the best linear denoiser, has MSE ≈ 0.038 per coordinate there (it cannot
    snap to a cluster); the Bayes estimator ≈ 0.0096 (σ² 0.1² / (σ² + 0.1²), the cluster being
    all but certain). Measured: 0.019 after 150 steps. Bound: 0.75 × Wiener's MSE, and more than 5
    standard errors of the paired difference below it, on 2,000 test points.
    """
    dim, sigma = 8, 0.5
    x, x_test = _two_clusters(5000, dim, 0), _two_clusters(2000, dim, 1)
    y_test = x_test + sigma * torch.randn(x_test.shape, generator=torch.Generator().manual_seed(2))
    wiener = GaussianEnergy.smoothed(x.double().mean(0), torch.cov(x.double().T), sigma)
    err_wiener = (bayes_estimator(wiener, y_test.double(), sigma).float() - x_test).pow(2).mean(-1)
    with pyro.settings.context(module_local_params=True):
        torch.manual_seed(0)
        vae = VAE(dim, 2, (32,), likelihood="normal", sigma=sigma)
        fit_denoiser(ELBOEnergy(vae.model, vae.guide), x, sigma, epochs=3, batch_size=100, lr=1e-2, progress=False,
                     seed=0)
        torch.manual_seed(0)
        x_hat = bayes_estimator(ELBOEnergy(vae.model, vae.guide, num_particles=10), y_test, sigma)
    err = (x_hat - x_test).pow(2).mean(-1)
    diff, se = _paired(err, err_wiener)
    assert err.mean() < 0.75 * err_wiener.mean(), (err.mean().item(), err_wiener.mean().item())
    assert diff < -5 * se, (diff, se)
