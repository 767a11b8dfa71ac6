"""Bayes denoiser and the denoising (UVB/DEEN) objective on a Gaussian data law where E[x|y] is closed form."""

import re

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


def test_fit_denoiser_refuses_an_energy_that_never_gets_parameters():  # message in full: see below
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


# ---- issue 15: mutation-testing blind spots (quality/notes_eb_denoiser.md) ----


def _raises(exc, message):
    return pytest.raises(exc, match=f"^{re.escape(message)}$")


def test_bayes_estimator_is_detached_unless_create_graph():
    energy = DEEN(x_dim=2, hidden_dims=(4,)).double()
    y = torch.randn(3, 2, dtype=DT, requires_grad=True)
    x_hat = bayes_estimator(energy, y, 0.5)
    assert not x_hat.requires_grad and x_hat.grad_fn is None
    kept = bayes_estimator(energy, y, 0.5, create_graph=True)
    assert kept.requires_grad and torch.allclose(kept.detach(), x_hat, rtol=0, atol=1e-14)
    # the kept graph reaches y and the energy's weights (double backprop); not the output bias, an additive constant
    # of f that its gradient does not see
    kept.sum().backward()
    assert y.grad is not None and energy.net[0].weight.grad.abs().sum() > 0
    assert energy.net[-1].bias.grad is None or not energy.net[-1].bias.grad.any()


def test_bayes_estimator_accepts_a_tensor_sigma():
    energy = GaussianEnergy.smoothed(LOC, COV, SIGMA)
    y = torch.randn(4, 2, dtype=DT)
    expected = _posterior_mean(y, LOC, COV, SIGMA)
    assert torch.allclose(bayes_estimator(energy, y, torch.tensor(SIGMA, dtype=DT)), expected, rtol=0, atol=1e-12)
    x = torch.randn(4, 2, dtype=DT)
    gen = torch.Generator()
    assert torch.allclose(denoising_loss(energy, x, torch.tensor(SIGMA, dtype=DT), generator=gen.manual_seed(0)),
                          denoising_loss(energy, x, SIGMA, generator=gen.manual_seed(0)), rtol=0, atol=0)


def test_denoiser_error_messages():
    energy = GaussianEnergy.smoothed(LOC, COV, SIGMA)
    x = torch.zeros(3, 2, dtype=DT)
    not_an_energy = ("energy must be a pyro_noisevae.empirical_bayes.Energy (ELBOEnergy, DEEN, GaussianEnergy, ...), "
                     "got function")
    for fn in (bayes_estimator, denoising_loss, fit_denoiser):
        with _raises(TypeError, not_an_energy):
            fn(lambda y: y.sum(-1), x, SIGMA)
        with _raises(ValueError, "sigma must be a finite number > 0, got 0.0"):
            fn(energy, x, 0.0)
    with _raises(ValueError, "y has 3 features but the energy expects 2"):
        bayes_estimator(energy, torch.zeros(2, 3, dtype=DT), SIGMA)
    with _raises(ValueError, "x has 3 features but the energy expects 2"):
        denoising_loss(energy, torch.zeros(2, 3, dtype=DT), SIGMA)
    with _raises(ValueError, "data has 3 features but the energy expects 2"):
        fit_denoiser(_CountingEnergy(), torch.zeros(2, 3, dtype=DT), SIGMA, progress=False)
    for bad in (0, True, 2.0):
        with _raises(ValueError, f"num_noise must be an integer >= 1, got {bad!r}"):
            denoising_loss(energy, x, SIGMA, num_noise=bad)
    with _raises(ValueError, "noise must be a tensor of shape (6, 2), got (3, 2)"):
        denoising_loss(energy, x, SIGMA, num_noise=2, noise=torch.zeros(3, 2))
    with _raises(ValueError, "noise must be a tensor of shape (3, 2), got list"):
        denoising_loss(energy, x, SIGMA, noise=[[0.0, 0.0]] * 3)


def test_fit_denoiser_count_messages():
    data = _gaussian_data(8)
    for kwargs, message in [
        (dict(batch_size=0), "batch_size must be an integer >= 1, got 0"),
        (dict(batch_size=True), "batch_size must be an integer >= 1, got True"),
        (dict(batch_size=4.0), "batch_size must be an integer >= 1, got 4.0"),
        (dict(epochs=-1), "epochs must be an integer >= 0, got -1"),
        (dict(max_steps=0), "max_steps must be an integer >= 1, got 0"),
    ]:
        with _raises(ValueError, message):
            fit_denoiser(_CountingEnergy(), data, SIGMA, progress=False, **kwargs)
    # the smallest allowed counts: a batch of one point, zero epochs (nothing trained), a single step
    energy = _CountingEnergy()
    assert fit_denoiser(energy, data, SIGMA, epochs=0, progress=False) == [] and energy.rows == []
    fit_denoiser(energy, data, SIGMA, batch_size=1, max_steps=1, progress=False, seed=0)
    assert energy.rows == [1]


def test_denoising_loss_with_given_noise_and_several_draws():
    """
    ``noise`` of shape (num_noise * B, D) replaces the draws: row j of the noise perturbs point j mod B (the batch
    repeated num_noise times), and the loss is the mean over all num_noise * B noisy points; float32 noise is cast to
    the data's dtype. Checked against the exact posterior mean of the Gaussian energy.
    """
    energy = GaussianEnergy.smoothed(LOC, COV, SIGMA)
    x = torch.randn(4, 2, dtype=DT, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(12, 2, generator=torch.Generator().manual_seed(1))  # float32
    loss = denoising_loss(energy, x, SIGMA, num_noise=3, noise=noise)
    errors = []
    for j in range(12):
        xj = x[j % 4]
        yj = xj + SIGMA * noise[j].to(DT)
        errors.append((xj - _posterior_mean(yj[None], LOC, COV, SIGMA)[0]).pow(2).sum())
    assert loss.dtype == DT and torch.allclose(loss, torch.stack(errors).mean(), rtol=0, atol=1e-12)


def test_fit_denoiser_defaults(capsys):
    """
    Documented defaults: one epoch, batches of 100, one noise draw, Adam at lr 1e-3 (its first step moves every
    parameter by lr: |Δθ| = lr |g| / (|g| + 1e-8), = lr to 1e-6 for these gradients), a progress bar on stderr.
    """
    energy = _CountingEnergy()
    before = [p.detach().clone() for p in energy.parameters()]
    losses = fit_denoiser(energy, _gaussian_data(250), SIGMA, seed=0, max_steps=1)
    assert re.search(r"(^|\r)denoise epoch 1/1: ", capsys.readouterr().err)  # the bar of epoch 1 of 1, 3 steps
    assert energy.rows == [100] and len(losses) == 1
    moved = torch.cat([(p.detach() - b).abs().flatten() for p, b in zip(energy.parameters(), before)])
    assert torch.allclose(moved, torch.full_like(moved, 1e-3), rtol=1e-5, atol=0), moved
    energy = _CountingEnergy()
    losses = fit_denoiser(energy, _gaussian_data(250), SIGMA, seed=0, progress=False)
    assert energy.rows == [100, 100, 50] and len(losses) == 1 and capsys.readouterr().err == ""


def test_fit_denoiser_seed_reproduces_the_run(linear_gaussian_vae):
    """
    The same seed gives the same run (shuffling, noise, and the guide's latents drawn from torch's global RNG,
    which the seed also sets), whatever the global RNG's state before; another seed gives another run.
    """
    def run(seed, disturb):
        torch.manual_seed(disturb)
        torch.manual_seed(0)
        vae = linear_gaussian_vae(2, 2, SIGMA)
        energy = ELBOEnergy(vae.model, vae.guide)
        torch.randn(disturb + 1)
        return fit_denoiser(energy, _gaussian_data(96), SIGMA, epochs=2, batch_size=32, lr=0.01, progress=False,
                            seed=seed)

    first = run(0, 1)
    assert run(0, 2) == first
    assert run(1, 1) != first


class _RecordingLazyEnergy(_LazyEnergy):
    def forward(self, y):
        self.__dict__.setdefault("inputs", []).append(y.detach().clone())
        return super().forward(y)


def test_the_first_call_of_a_lazy_energy_sees_the_first_batch_plus_noise():
    """
    The call that creates the parameters gets the first ``batch_size`` points plus N(0, σ²) noise: the residual's
    standard deviation over 256 x 2 values is σ within 4.5 standard errors (σ / sqrt(2 · 512)).
    """
    data = _gaussian_data(600)
    energy = _RecordingLazyEnergy()
    fit_denoiser(energy, data, SIGMA, batch_size=256, max_steps=1, progress=False, seed=0)
    first = energy.inputs[0]
    assert first.shape == (256, 2) and energy.grad_modes[0] is False
    residual = first - data[:256]
    assert abs(residual.mean().item()) < 4.5 * SIGMA / 512**0.5
    assert abs(residual.std().item() - SIGMA) < 4.5 * SIGMA / (2 * 512) ** 0.5


def test_fit_denoiser_refusal_message_in_full():
    message = ("GaussianEnergy has no trainable parameters, even after a first call on a batch: register the networks "
               "it uses (with pyro.module inside the model/guide, or by passing methods of an nn.Module) so that "
               "energy.parameters() finds them")
    with _raises(ValueError, message):
        fit_denoiser(GaussianEnergy.smoothed(LOC, COV, SIGMA), torch.zeros(4, 2, dtype=DT), SIGMA, progress=False)


def test_a_seeded_fit_draws_its_order_and_noise_from_one_generator():
    """
    With one batch per epoch, the first epoch's loss is the loss before any step, at the order and noise drawn, in
    that order, from a CPU generator seeded with ``seed``: reproduced here with denoising_loss directly (no loop).
    """
    data = _gaussian_data(40)
    energy = _CountingEnergy()
    gen = torch.Generator().manual_seed(3)
    order = torch.randperm(40, generator=gen)
    expected = denoising_loss(energy, data[order], SIGMA, generator=gen).item()
    torch.manual_seed(123)  # the global RNG is not the source of the noise
    losses = fit_denoiser(energy, data, SIGMA, batch_size=40, epochs=1, seed=3, progress=False)
    assert losses[0] == pytest.approx(expected, rel=1e-12, abs=0)


class _IsotropicEnergy(Energy):
    """f(y) = a ‖y‖² / 2 with a single trainable parameter, the precision a = exp(log_a)."""

    dim = 2

    def __init__(self):
        super().__init__()
        self.log_a = torch.nn.Parameter(torch.zeros((), dtype=DT))

    def forward(self, y):
        return 0.5 * self.log_a.exp() * y.pow(2).sum(-1)


def test_fit_denoiser_trains_an_energy_with_a_single_parameter():
    """
    For X ~ N(0, s² I) the estimator of f = a‖y‖²/2 is (1 - σ² a) y, whose risk D[(σ²a)² s² + (1 - σ²a)² σ²] is
    least at a* = 1/(s² + σ²). Starting from a = 1 (13 % away), 200 Adam steps (lr 0.005, batches of 256 with fresh
    noise) bring a to a* = 1/(0.64 + 0.49) ≈ 0.885 within 5 %: over seeds 0-9 the relative error has a standard
    deviation of 0.9 % (at most 1.4 %), so 5 % is more than 5 standard deviations.
    """
    s = 0.8
    x = s * torch.randn(4096, 2, dtype=DT, generator=torch.Generator().manual_seed(0))
    energy = _IsotropicEnergy()
    fit_denoiser(energy, x, SIGMA, batch_size=256, max_steps=200, epochs=100, lr=0.005, progress=False, seed=0)
    a_star = 1 / (s**2 + SIGMA**2)
    assert abs(energy.log_a.exp().item() / a_star - 1) < 0.05, (energy.log_a.exp().item(), a_star)


def test_ctrl_c_interrupts_fit_denoiser():
    """fit_denoiser leaves SIGINT alone: a Ctrl-C (here sent by the callback) raises KeyboardInterrupt in the caller."""
    import os
    import signal

    def interrupt(epoch, loss):
        os.kill(os.getpid(), signal.SIGINT)

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own handler (a runner may differ)
    try:
        with pytest.raises(KeyboardInterrupt):
            fit_denoiser(_CountingEnergy(), _gaussian_data(16), SIGMA, epochs=3, batch_size=8, progress=False, seed=0,
                         callback=interrupt)
    finally:
        signal.signal(signal.SIGINT, previous)
