"""Energies: exact Gaussian energy, ELBO/IWAE energy of a Pyro model/guide pair and its y-gradient."""

import math

import pyro
import pytest
import torch
from torch.distributions import MultivariateNormal

from pyro_noisevae.empirical_bayes import ELBOEnergy, GaussianEnergy
from pyro_noisevae.models import VAE


def _random_spd(d, dtype=torch.float64):
    a = torch.randn(d, d, dtype=dtype)
    return a @ a.T / d + 0.5 * torch.eye(d, dtype=dtype)


def test_gaussian_energy_is_negative_log_density():
    d = 4
    loc, cov = torch.randn(d, dtype=torch.float64), _random_spd(d)
    y = torch.randn(7, d, dtype=torch.float64)
    energy = GaussianEnergy(loc, cov)
    expected = -MultivariateNormal(loc, cov).log_prob(y)
    assert torch.allclose(energy(y), expected, rtol=0, atol=1e-12)
    f, grad = energy.energy_and_grad(y)
    # grad of 1/2 (y-m)^T C^{-1} (y-m) is C^{-1}(y-m)
    assert torch.allclose(grad, torch.linalg.solve(cov, (y - loc).T).T, rtol=0, atol=1e-12)
    assert torch.allclose(energy.score(y), -grad)


@pytest.mark.parametrize("bound", ["elbo", "iwae"])
@pytest.mark.parametrize("num_particles", [1, 3])
def test_elbo_energy_with_exact_posterior_is_exact(linear_gaussian_vae, bound, num_particles):
    # with q(z|y) = p(z|y), log p(y, z) - log q(z|y) = log p(y) for EVERY z: the MC bound is exact, so this
    # checks the trace bookkeeping (site sums, plate reduction, particle replication) to float precision
    vae = linear_gaussian_vae(3, 2, sigma=0.6)
    with torch.no_grad():
        vae.b.copy_(torch.randn(3, dtype=torch.float64))
    vae.set_exact_posterior()
    energy = ELBOEnergy(vae.model, vae.guide, num_particles=num_particles, bound=bound, analytic_kl=False)
    exact = GaussianEnergy(*vae.marginal())
    y = 2 * torch.randn(5, 3, dtype=torch.float64)
    f, grad = energy.energy_and_grad(y)
    f0, grad0 = exact.energy_and_grad(y)
    assert f.shape == (5,) and grad.shape == (5, 3)
    assert torch.allclose(f, f0, rtol=0, atol=1e-10)
    assert torch.allclose(grad, grad0, rtol=0, atol=1e-10)
    # the energy owns the model's parameters
    assert {id(p) for p in energy.parameters()} == {id(p) for p in vae.parameters()}


def test_elbo_energy_analytic_kl_matches_hand_computation():
    vae = VAE(x_dim=5, z_dim=3, hidden_dims=(6,), likelihood="normal", sigma=0.4).double()
    y = torch.randn(4, 5, dtype=torch.float64)
    energy = ELBOEnergy(vae.model, vae.guide, analytic_kl=True)
    pyro.set_rng_seed(3)
    f = energy(y)
    # same seed -> same reparameterized draw z = loc + scale * eps
    pyro.set_rng_seed(3)
    loc, scale = vae.encode(y)
    z = loc + scale * torch.randn(loc.shape, dtype=loc.dtype)
    mu = vae.decode(z)
    log_lik = -0.5 * ((y - mu) / 0.4).pow(2).sum(-1) - 5 * math.log(0.4) - 2.5 * math.log(2 * math.pi)
    kl = 0.5 * (loc.pow(2) + scale.pow(2) - 1 - 2 * scale.log()).sum(-1)
    assert torch.allclose(f, -(log_lik - kl), rtol=0, atol=1e-10)
    # averaging over many particles, the MC-KL and analytic-KL energies agree within Monte Carlo error
    k = 1500
    f_mc = ELBOEnergy(vae.model, vae.guide, num_particles=k, analytic_kl=False)
    f_an = ELBOEnergy(vae.model, vae.guide, num_particles=k, analytic_kl=True)
    lw_mc, lw_an = f_mc.log_weights(y), f_an.log_weights(y)
    se = (lw_mc.var(0) / k + lw_an.var(0) / k).sqrt()
    assert ((lw_mc.mean(0) - lw_an.mean(0)).abs() < 5 * se).all()


def test_iwae_energy_is_tighter_than_elbo():
    vae = VAE(x_dim=5, z_dim=2, hidden_dims=(6,), likelihood="normal", sigma=0.3).double()
    y = torch.rand(6, 5, dtype=torch.float64)
    pyro.set_rng_seed(1)
    log_w = ELBOEnergy(vae.model, vae.guide, num_particles=50, analytic_kl=False).log_weights(y)
    iwae = log_w.logsumexp(0) - math.log(50)
    # Jensen on the same particles: logmeanexp >= mean, with equality only for constant weights
    assert (iwae >= log_w.mean(0)).all()
    pyro.set_rng_seed(1)
    f_iwae = ELBOEnergy(vae.model, vae.guide, num_particles=50, bound="iwae")(y)
    assert torch.allclose(f_iwae, -iwae, atol=1e-12)


def test_elbo_energy_gradient_matches_finite_differences():
    vae = VAE(x_dim=4, z_dim=2, hidden_dims=(5,), likelihood="normal", sigma=0.5).double()
    energy = ELBOEnergy(vae.model, vae.guide, num_particles=2)

    def f(y):
        pyro.set_rng_seed(7)  # freeze the reparameterization noise: f becomes a deterministic function of y
        return energy(y)

    y = torch.rand(3, 4, dtype=torch.float64, requires_grad=True)
    # checks the full (3, 3x4) Jacobian, i.e. also that points do not interact
    assert torch.autograd.gradcheck(f, (y,))
    pyro.set_rng_seed(7)
    _, grad = energy.energy_and_grad(y.detach())
    pyro.set_rng_seed(7)
    (expected,) = torch.autograd.grad(energy(y).sum(), y)
    assert torch.allclose(grad, expected)


def test_elbo_energy_validation():
    vae = VAE(x_dim=4, z_dim=2, hidden_dims=(5,), likelihood="normal", sigma=0.5)
    energy = ELBOEnergy(vae.model, vae.guide)
    assert energy.dim == 4
    with pytest.raises(ValueError, match="features"):
        energy(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="batch, features"):
        energy(torch.zeros(4))
    with pytest.raises(ValueError, match="NaN"):
        energy(torch.full((2, 4), float("nan")))
    with pytest.raises(TypeError, match="floating"):
        energy(torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="num_particles"):
        ELBOEnergy(vae.model, vae.guide, num_particles=0)
    with pytest.raises(ValueError, match="bound"):
        ELBOEnergy(vae.model, vae.guide, bound="renyi")
    with pytest.raises(TypeError, match="callables"):
        ELBOEnergy(vae, None)


def test_elbo_energy_rejects_global_latents():
    def model(y):
        scale = pyro.sample("scale", pyro.distributions.LogNormal(0.0, 1.0))
        with pyro.plate("data", y.shape[0]):
            pyro.sample("y", pyro.distributions.Normal(0.0, scale).expand([y.shape[0], y.shape[1]]).to_event(1), obs=y)

    def guide(y):
        pyro.sample("scale", pyro.distributions.LogNormal(0.0, 1.0))

    with pytest.raises(ValueError, match="global"):
        ELBOEnergy(model, guide)(torch.zeros(2, 3))


def test_gaussian_energy_validation():
    with pytest.raises(ValueError, match="positive definite"):
        GaussianEnergy(torch.zeros(2), torch.tensor([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(ValueError, match="shape"):
        GaussianEnergy(torch.zeros(2), torch.eye(3))
    with pytest.raises(ValueError, match="sigma"):
        GaussianEnergy.smoothed(torch.zeros(2), torch.eye(2), 0.0)
