"""Bayes denoiser and the denoising (UVB/DEEN) objective on a Gaussian data law where E[x|y] is closed form."""

import pyro
import pytest
import torch
from torch.func import functional_call

from pyro_noisevae.empirical_bayes import (
    DEEN,
    ELBOEnergy,
    Energy,
    GaussianEnergy,
    bayes_estimator,
    denoising_loss,
    fit_denoiser,
)
from pyro_noisevae.models import VAE

DT = torch.float64
LOC = torch.tensor([0.5, -0.3], dtype=DT)
COV = torch.tensor([[1.0, 0.5], [0.5, 0.6]], dtype=DT)
SIGMA = 0.7


def _posterior_mean(y, loc, cov, sigma):
    # E[x|y] for x ~ N(m, S), y = x + sigma eps: m + S (S + sigma^2 I)^{-1} (y - m), written independently
    # of the library (solve on the transposed system)
    c = cov + sigma**2 * torch.eye(cov.shape[0], dtype=cov.dtype)
    return loc + torch.linalg.solve(c, (y - loc).T).T @ cov


def _bayes_risk(cov, sigma):
    # E||x - E[x|y]||^2 = tr(S - S (S + sigma^2 I)^{-1} S) = tr(sigma^2 I - sigma^4 (S + sigma^2 I)^{-1})
    eye = torch.eye(cov.shape[0], dtype=cov.dtype)
    return (sigma**2 * eye - sigma**4 * torch.linalg.inv(cov + sigma**2 * eye)).trace().item()


@pytest.mark.parametrize("sigma", [0.1, 0.7, 3.0])
def test_denoiser_of_exact_energy_is_posterior_mean(sigma):
    d = 5
    a = torch.randn(d, d, dtype=DT)
    loc, cov = torch.randn(d, dtype=DT), a @ a.T / d + 0.1 * torch.eye(d, dtype=DT)
    x = torch.distributions.MultivariateNormal(loc, cov).sample((64,))
    y = x + sigma * torch.randn_like(x)
    energy = GaussianEnergy.smoothed(loc, cov, sigma)
    x_hat = bayes_estimator(energy, y, sigma)
    assert torch.allclose(x_hat, _posterior_mean(y, loc, cov, sigma), rtol=0, atol=1e-10)
    # and the exact denoiser attains the Bayes risk: the MC mean squared error is within 5 standard errors
    x_many = torch.distributions.MultivariateNormal(loc, cov).sample((20000,))
    y_many = x_many + sigma * torch.randn_like(x_many)
    err = (bayes_estimator(energy, y_many, sigma) - x_many).pow(2).sum(-1)
    assert abs(err.mean().item() - _bayes_risk(cov, sigma)) < 5 * err.std().item() / len(err) ** 0.5


def test_uvb_with_linear_gaussian_vae_learns_posterior_mean(linear_gaussian_vae):
    """
    UVB training of a linear-Gaussian VAE, whose ELBO family contains the exact energy, approaches E[x|y].

    Tolerance: since E[x|y] minimizes the risk, the learned estimator's excess risk is exactly
    E||x̂(y) - E[x|y]||^2. With n = 4096 training points and an affine estimator (p = 6 coefficients) the
    statistical part of the excess risk is about R* p / n ≈ 0.15% of the Bayes risk R*; we allow 5% of R*
    for the remaining optimization error of this short Adam run (128 steps). A wrong estimator fails by far:
    the identity x̂ = y has excess ≈ 85% of R*, checked below as a sanity contrast.
    """
    pyro.set_rng_seed(0)
    x = torch.distributions.MultivariateNormal(LOC, COV).sample((4096,))
    vae = linear_gaussian_vae(2, 2, SIGMA)
    energy = ELBOEnergy(vae.model, vae.guide)
    losses = fit_denoiser(energy, x, SIGMA, epochs=4, batch_size=128, lr=0.03, progress=False, seed=0)
    assert losses[-1] < losses[0]

    x_test = torch.distributions.MultivariateNormal(LOC, COV).sample((2000,))
    y_test = x_test + SIGMA * torch.randn_like(x_test)
    x_star = _posterior_mean(y_test, LOC, COV, SIGMA)
    # average the single-sample energy over 500 particles: the denoiser of the ELBO itself, not of one draw
    x_hat = bayes_estimator(ELBOEnergy(vae.model, vae.guide, num_particles=500), y_test, SIGMA)
    risk_star = _bayes_risk(COV, SIGMA)
    excess = (x_hat - x_star).pow(2).sum(-1).mean().item()
    identity_excess = (y_test - x_star).pow(2).sum(-1).mean().item()
    assert identity_excess > 0.5 * risk_star
    assert excess < 0.05 * risk_star, (excess, risk_star)


def _tiny_loss_of_params(energy, x, sigma, seed):
    names = [n for n, _ in energy.named_parameters()]

    class Loss(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.energy = energy

        def forward(self, x):
            pyro.set_rng_seed(seed)  # fixes both the noise eps and the guide's reparameterization noise
            return denoising_loss(self.energy, x, sigma, num_noise=2)

    wrapper = Loss()

    def loss(*params):
        return functional_call(wrapper, {"energy." + n: p for n, p in zip(names, params)}, (x,))

    params = tuple(p.detach().clone().requires_grad_(True) for p in energy.parameters())
    return loss, params


@pytest.mark.parametrize("kind", ["deen", "uvb"])
def test_double_backprop_gradient_matches_finite_differences(kind):
    # the parameter gradient of ||x - y + sigma^2 grad_y f(y)||^2 needs second derivatives of f
    if kind == "deen":
        energy = DEEN(x_dim=3, hidden_dims=(4,)).double()
    else:
        vae = VAE(x_dim=3, z_dim=2, hidden_dims=(4,), likelihood="normal", sigma=0.5).double()
        energy = ELBOEnergy(vae.model, vae.guide)
    x = torch.rand(4, 3, dtype=DT)
    loss, params = _tiny_loss_of_params(energy, x, 0.5, seed=3)
    assert torch.autograd.gradcheck(loss, params)


def test_denoising_loss_value():
    # for the exact energy, the loss is ||x - x*(y)||^2 with the same noise draw
    energy = GaussianEnergy.smoothed(LOC, COV, SIGMA)
    x = torch.randn(10, 2, dtype=DT)
    gen = torch.Generator().manual_seed(5)
    loss = denoising_loss(energy, x, SIGMA, generator=gen)
    eps = torch.randn(x.shape, dtype=DT, generator=torch.Generator().manual_seed(5))
    y = x + SIGMA * eps
    expected = (x - _posterior_mean(y, LOC, COV, SIGMA)).pow(2).sum(-1).mean()
    assert torch.allclose(loss, expected, rtol=0, atol=1e-12)


def test_denoiser_validation():
    energy = DEEN(x_dim=3, hidden_dims=(4,))
    y = torch.zeros(2, 3)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="sigma"):
            bayes_estimator(energy, y, bad)
        with pytest.raises(ValueError, match="sigma"):
            denoising_loss(energy, y, bad)
    with pytest.raises(ValueError, match="features"):
        bayes_estimator(energy, torch.zeros(2, 4), 1.0)
    with pytest.raises(ValueError, match="NaN"):
        bayes_estimator(energy, torch.tensor([[0.0, float("nan"), 0.0]]), 1.0)
    with pytest.raises(ValueError, match="batch, features"):
        denoising_loss(energy, torch.zeros(3), 1.0)
    with pytest.raises(ValueError, match="num_noise"):
        denoising_loss(energy, y, 1.0, num_noise=0)
    with pytest.raises(TypeError, match="Energy"):
        bayes_estimator(lambda y: y.sum(-1), y, 1.0)
    with pytest.raises(ValueError, match="smooth activation"):
        DEEN(x_dim=3, activation="relu")
    with pytest.raises(ValueError, match="NaN"):
        fit_denoiser(energy, torch.full((4, 3), float("nan")), 1.0, progress=False)


class _LazyEnergy(Energy):
    """
    Stand-in for an ELBOEnergy of plain Pyro functions that register their networks with ``pyro.module``:
    it has no parameters until its first call. Energy ½‖Ay + b‖², exact for a Gaussian when AᵀA = C⁻¹.
    """

    dim = 2

    def __init__(self):
        super().__init__()
        self.linear, self.grad_modes = None, []

    def forward(self, y):
        self.grad_modes.append(torch.is_grad_enabled())
        if self.linear is None:
            self.linear = torch.nn.Linear(2, 2, dtype=y.dtype, device=y.device)
        return 0.5 * self.linear(y).pow(2).sum(-1)


def test_fit_denoiser_calls_an_energy_without_parameters_once_before_training():
    x = torch.distributions.MultivariateNormal(LOC, COV).sample((512,))
    energy = _LazyEnergy()
    assert not list(energy.parameters())
    fit_denoiser(energy, x, SIGMA, epochs=3, batch_size=64, lr=0.05, progress=False, seed=0)
    # one call without gradients to create the parameters, then the training calls with them
    assert energy.grad_modes[0] is False and all(energy.grad_modes[1:])
    assert len(list(energy.parameters())) == 2
    # and they were trained: the learned (affine) denoiser is within 10% of the Bayes risk (the untrained
    # one is at about 1.6 times it), on 4,000 test points (MC standard error ~2% of it)
    x_test = torch.distributions.MultivariateNormal(LOC, COV).sample((4000,))
    y_test = x_test + SIGMA * torch.randn_like(x_test)
    risk = (bayes_estimator(energy, y_test, SIGMA) - x_test).pow(2).sum(-1).mean().item()
    assert risk < 1.1 * _bayes_risk(COV, SIGMA), (risk, _bayes_risk(COV, SIGMA))


def test_fit_denoiser_refuses_an_energy_that_never_gets_parameters():
    energy = GaussianEnergy.smoothed(LOC, COV, SIGMA)  # buffers only
    with pytest.raises(ValueError, match="no trainable parameters.*pyro.module"):
        fit_denoiser(energy, torch.zeros(4, 2, dtype=DT), SIGMA, progress=False)


class _CountingEnergy(Energy):
    """Energy ½‖Ay + b‖² (trainable ``A``, ``b``) that records the rows of every call."""

    dim = 2

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 2, dtype=DT)
        self.rows = []

    def forward(self, y):
        self.rows.append(y.shape[0])
        return 0.5 * self.linear(y).pow(2).sum(-1)


def _gaussian_data(n, seed=0):
    """``n`` draws of N(LOC, COV), seeded."""
    eps = torch.randn(n, 2, dtype=DT, generator=torch.Generator().manual_seed(seed))
    return LOC + eps @ torch.linalg.cholesky(COV).T


def test_fit_denoiser_num_noise_draws_that_many_noisy_copies_of_each_batch():
    energy = _CountingEnergy()
    fit_denoiser(energy, _gaussian_data(100), SIGMA, epochs=2, batch_size=40, num_noise=3, lr=0.01, progress=False,
                 seed=0)
    # every step's energy call sees num_noise * (batch rows): 40, 40 and the short last batch of 20, per epoch
    assert energy.rows == [120, 120, 60] * 2


def test_fit_denoiser_max_steps_stops_mid_epoch():
    energy, seen = _CountingEnergy(), []
    losses = fit_denoiser(energy, _gaussian_data(100), SIGMA, epochs=5, batch_size=10, max_steps=13, lr=0.01,
                          progress=False, seed=0, callback=lambda epoch, loss: seen.append(epoch))
    # 13 steps = one full epoch of 10 steps and 3 steps of the second, which is closed there
    assert len(energy.rows) == 13
    assert len(losses) == 2 and seen == [0, 1]
    with pytest.raises(ValueError, match="max_steps"):
        fit_denoiser(energy, _gaussian_data(10), SIGMA, max_steps=0, progress=False)


def test_fit_denoiser_callback_gets_every_epoch_and_its_mean_loss():
    seen = []
    losses = fit_denoiser(_CountingEnergy(), _gaussian_data(64), SIGMA, epochs=3, batch_size=16, lr=0.01,
                          progress=False, seed=0, callback=lambda epoch, loss: seen.append((epoch, loss)))
    assert seen == list(enumerate(losses)) and len(seen) == 3


def test_fit_denoiser_uses_the_optimizer_it_is_given():
    energy = _CountingEnergy()
    before = [p.detach().clone() for p in energy.parameters()]
    # a zero learning rate keeps the parameters (the default Adam at lr would move them)...
    frozen = torch.optim.SGD(energy.parameters(), lr=0.0)
    fit_denoiser(energy, _gaussian_data(64), SIGMA, epochs=2, batch_size=16, lr=0.1, progress=False, seed=0,
                 optimizer=frozen)
    assert all(torch.equal(a, b) for a, b in zip(before, energy.parameters()))
    # ...and an optimizer's state carries over between calls: Adam's step count sums the two fits' steps
    adam = torch.optim.Adam(energy.parameters(), lr=0.01)
    fit_denoiser(energy, _gaussian_data(64), SIGMA, epochs=1, batch_size=16, progress=False, seed=0, optimizer=adam)
    fit_denoiser(energy, _gaussian_data(64), SIGMA, epochs=1, batch_size=16, progress=False, seed=1, optimizer=adam)
    assert int(adam.state[energy.linear.weight]["step"]) == 8


def _plain_programs(prefix, decoder, encoder):
    """A Gaussian latent-variable model and guide as plain Pyro functions over a plate named "obs"."""
    import pyro.distributions as dist

    def model(y):
        pyro.module(prefix + "decoder", decoder)
        with pyro.plate("obs", y.shape[0]):
            z = pyro.sample("z", dist.Normal(y.new_zeros(y.shape[0], 1), 1.0).to_event(1))
            pyro.sample("y", dist.Normal(decoder(z), SIGMA).to_event(1), obs=y)

    def guide(y):
        pyro.module(prefix + "encoder", encoder)
        with pyro.plate("obs", y.shape[0]):
            loc, log_scale = encoder(y).split(1, -1)
            pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))

    return model, guide


def test_fit_denoiser_trains_an_elbo_energy_of_plain_pyro_functions_with_an_mlp():
    """``pyro.module`` networks and a data plate not named "data": registered on the first call, then trained."""
    import copy

    pyro.clear_param_store()
    try:
        torch.manual_seed(0)
        decoder = torch.nn.Linear(1, 2).to(DT)
        encoder = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)).to(DT)
        untrained = ELBOEnergy(*_plain_programs("untrained_", copy.deepcopy(decoder), copy.deepcopy(encoder)),
                               plate_name="obs")
        energy = ELBOEnergy(*_plain_programs("", decoder, encoder), plate_name="obs")
        assert not list(energy.parameters())
        before = {n: p.detach().clone() for n, p in [*decoder.named_parameters(), *encoder.named_parameters()]}
        x = _gaussian_data(2048)
        losses = fit_denoiser(energy, x, SIGMA, epochs=4, batch_size=128, lr=0.02, progress=False, seed=0)
        # the networks' 6 tensors (decoder weight and bias, two encoder layers) were found and all trained
        assert len(list(energy.parameters())) == 6
        after = dict([*decoder.named_parameters(), *encoder.named_parameters()])
        assert all(not torch.allclose(before[n], after[n]) for n in before)
        assert losses[-1] < losses[0]
        # held-out denoising loss, same noise for both: training lowered it well beyond its MC error
        x_test = _gaussian_data(4000, seed=1)
        gen = torch.Generator()
        trained = denoising_loss(energy, x_test, SIGMA, generator=gen.manual_seed(2)).item()
        initial = denoising_loss(untrained, x_test, SIGMA, generator=gen.manual_seed(2)).item()
        assert trained < 0.5 * initial, (trained, initial)
    finally:
        pyro.clear_param_store()
