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


# ---- issue 15: mutation-testing blind spots (quality/notes_eb_energy.md) ----

import re  # noqa: E402

from torch import nn  # noqa: E402

from pyro_noisevae.empirical_bayes import Energy, check_points, check_sigma  # noqa: E402


def _raises(exc, message):
    return pytest.raises(exc, match=f"^{re.escape(message)}$")


def test_check_sigma_returns_a_float_and_names_the_argument():
    for value in (0.5, 2, torch.tensor(0.25, dtype=torch.float64), torch.tensor([3.0])):
        out = check_sigma(value)
        assert type(out) is float and out == float(value)
    with _raises(ValueError, "sigma must be a single number, got a tensor of shape (2,)"):
        check_sigma(torch.tensor([1.0, 2.0]))
    with _raises(ValueError, "noise must be a single number, got a tensor of shape (0,)"):
        check_sigma(torch.tensor([]), name="noise")
    with _raises(TypeError, "sigma must be a real number > 0, got bool"):
        check_sigma(True)
    with _raises(TypeError, "noise must be a real number > 0, got str"):
        check_sigma("0.5", name="noise")
    for bad, shown in ((0, "0.0"), (-1.5, "-1.5"), (float("inf"), "inf"), (float("nan"), "nan")):
        with _raises(ValueError, f"noise must be a finite number > 0, got {shown}"):
            check_sigma(bad, name="noise")


def test_check_points_messages():
    y = torch.zeros(2, 3)
    assert check_points(y) is y and check_points(y, 3) is y
    assert check_points(torch.zeros(1, 5, dtype=torch.float64), None) is not None  # no feature check without dim
    with _raises(TypeError, "y must be a torch.Tensor of shape (batch, features), got list"):
        check_points([[0.0, 0.0]])
    with _raises(TypeError, "x must be a floating tensor, got dtype torch.int64"):
        check_points(torch.zeros(2, 3, dtype=torch.long), name="x")
    shape_hint = ("; flatten images with y.flatten(1) and add a batch dimension with y[None] for a single point")
    for bad in (torch.zeros(3), torch.zeros(0, 3), torch.zeros(2, 3, 1)):
        with _raises(ValueError, f"y must have shape (batch, features) with batch >= 1, got {tuple(bad.shape)}"
                                 + shape_hint):
            check_points(bad)
    with _raises(ValueError, "data has 3 features but the energy expects 4"):
        check_points(y, 4, name="data")
    for bad in (float("nan"), float("inf"), -float("inf")):
        with _raises(ValueError, "y contains NaN or infinite values"):
            check_points(torch.tensor([[0.0, bad]]))


class _ShapedEnergy(Energy):
    dim = 2

    def forward(self, y):
        return 0.5 * y.pow(2).sum(-1, keepdim=True)  # (B, 1): one dimension too many


def test_energy_base_class_contract():
    with pytest.raises(NotImplementedError):
        Energy()(torch.zeros(1, 2))
    assert Energy.dim is None
    with _raises(ValueError, "_ShapedEnergy returned shape (3, 1), expected (3,)"):
        _ShapedEnergy().energy_and_grad(torch.zeros(3, 2))
    with _raises(ValueError, "y has 3 features but the energy expects 2"):
        _ShapedEnergy().energy_and_grad(torch.zeros(3, 3))


def test_energy_and_grad_keeps_the_graph_of_y_only_with_create_graph():
    """
    For the Gaussian energy grad f(y) = C⁻¹(y - m). With y = 2 t and create_graph, the gradient is differentiable
    in t: d/dt_j Σ_i (C⁻¹(2t - m))_i = 2 Σ_i (C⁻¹)_ij. Without it, f and grad are detached.
    """
    loc, cov = torch.randn(3, dtype=torch.float64), _random_spd(3)
    energy = GaussianEnergy(loc, cov)
    t = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    f, grad = energy.energy_and_grad(2 * t, create_graph=True)
    assert f.requires_grad and grad.requires_grad
    (dt,) = torch.autograd.grad(grad.sum(), t)
    expected = 2 * torch.linalg.inv(cov).sum(0)
    assert torch.allclose(dt, expected.expand(4, 3), rtol=0, atol=1e-12)
    f, grad = energy.energy_and_grad(2 * t)
    assert not f.requires_grad and not grad.requires_grad
    assert torch.allclose(grad, torch.linalg.solve(cov, (2 * t - loc).T).T.detach(), rtol=0, atol=1e-12)
    score = energy.score(2 * t, create_graph=True)
    assert score.requires_grad and torch.allclose(score, -grad, rtol=0, atol=1e-14)
    assert not energy.score(2 * t).requires_grad


def test_gaussian_energy_smoothed_and_messages():
    loc, s = torch.randn(3, dtype=torch.float64), _random_spd(3)
    y = torch.randn(5, 3, dtype=torch.float64)
    energy = GaussianEnergy.smoothed(loc, s, 0.7)
    expected = -MultivariateNormal(loc, s + 0.49 * torch.eye(3, dtype=torch.float64)).log_prob(y)
    assert energy.dim == 3 and torch.allclose(energy(y), expected, rtol=0, atol=1e-12)
    # loc and the Cholesky factor are buffers: they follow .to() and are saved in the state dict
    assert set(energy.state_dict()) == {"loc", "scale_tril"} and not list(energy.parameters())
    assert energy.to(torch.float32)(y.float()).dtype == torch.float32
    with _raises(ValueError, "y has 2 features but the energy expects 3"):
        energy(torch.zeros(1, 2, dtype=torch.float64))
    with _raises(ValueError, "loc must be a tensor of shape (D,)"):
        GaussianEnergy(torch.zeros(1, 2), torch.eye(2))
    with _raises(ValueError, "loc must be a tensor of shape (D,)"):
        GaussianEnergy([0.0, 0.0], torch.eye(2))
    with _raises(ValueError, "covariance_matrix must be a tensor of shape (2, 2) matching loc"):
        GaussianEnergy(torch.zeros(2), torch.eye(3))
    with _raises(ValueError, "covariance_matrix must be a tensor of shape (2, 2) matching loc"):
        GaussianEnergy(torch.zeros(2), [[1.0, 0.0], [0.0, 1.0]])
    with _raises(ValueError, "loc and covariance_matrix must be finite"):
        GaussianEnergy(torch.tensor([0.0, float("nan")]), torch.eye(2))
    with _raises(ValueError, "loc and covariance_matrix must be finite"):
        GaussianEnergy(torch.zeros(2), torch.tensor([[1.0, float("inf")], [0.0, 1.0]]))
    with _raises(ValueError, "covariance_matrix must be symmetric positive definite (its Cholesky failed)"):
        GaussianEnergy(torch.zeros(2), torch.tensor([[1.0, 2.0], [2.0, 1.0]]))
    with _raises(ValueError, "sigma must be a finite number > 0, got -1.0"):
        GaussianEnergy.smoothed(loc, s, -1.0)


def test_elbo_energy_constructor_messages_and_attributes():
    vae = VAE(x_dim=4, z_dim=2, hidden_dims=(5,), likelihood="normal", sigma=0.5)
    with _raises(TypeError, "model and guide must be callables (e.g. vae.model and vae.guide)"):
        ELBOEnergy(vae.model, None)
    for bad in (0, True, 1.5):
        with _raises(ValueError, f"num_particles must be an integer >= 1, got {bad!r}"):
            ELBOEnergy(vae.model, vae.guide, num_particles=bad)
    with _raises(ValueError, "bound must be 'elbo' or 'iwae', got 'renyi'"):
        ELBOEnergy(vae.model, vae.guide, bound="renyi")
    with _raises(TypeError, "plate_name must be a plate name (str) or None, got int"):
        ELBOEnergy(vae.model, vae.guide, plate_name=1)
    energy = ELBOEnergy(vae.model, vae.guide, num_particles=3, bound="iwae", plate_name="data")
    assert (energy.num_particles, energy.bound, energy.plate_name) == (3, "iwae", "data")
    assert energy.analytic_kl is False  # closed-form KL terms belong to the ELBO only
    assert ELBOEnergy(vae.model, vae.guide).analytic_kl is True
    assert ELBOEnergy(vae.model, vae.guide, analytic_kl=False).analytic_kl is False
    # model and guide of one module: one owner; an explicit dim wins over the module's x_dim
    assert len(energy.owners) == 1 and energy.owners[0] is vae and energy.dim == 4
    assert ELBOEnergy(vae.model, vae.guide, dim=7).dim == 7


def test_elbo_energy_owners_of_modules_and_bound_methods(linear_gaussian_vae):
    # a module passed itself (callable) and a bound method of another module: both owned, in order, no x_dim
    vae = linear_gaussian_vae(3, 2, sigma=0.6)

    class Guide(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = vae

        def forward(self, y):
            return vae.guide(y)

    guide = Guide()
    energy = ELBOEnergy(vae.model, guide)
    assert list(energy.owners) == [vae, guide] and energy.dim is None
    assert {id(p) for p in energy.parameters()} == {id(p) for p in vae.parameters()}
    # plain functions own nothing
    assert len(ELBOEnergy(lambda y: vae.model(y), lambda y: vae.guide(y)).owners) == 0


def test_elbo_energy_registers_param_store_tensors_of_plain_functions():
    """
    ``pyro.param`` / ``pyro.module`` tensors of plain-function programs are registered (once, on the first call) as
    the store's own leaves, under names with the store's "." and "$$$" replaced, so that the state dict is loadable.
    """
    import pyro.distributions as dist

    pyro.clear_param_store()
    try:
        net = nn.Linear(2, 2).double()

        def model(y):
            pyro.module("dec", net)
            shift = pyro.param("shift.value", torch.zeros(2, dtype=torch.float64))
            with pyro.plate("data", y.shape[0]):
                z = pyro.sample("z", dist.Normal(y.new_zeros(y.shape), 1.0).to_event(1))
                pyro.sample("y", dist.Normal(net(z) + shift, 0.5).to_event(1), obs=y)

        def guide(y):
            with pyro.plate("data", y.shape[0]):
                pyro.sample("z", dist.Normal(0.5 * y, 0.8).to_event(1))

        energy = ELBOEnergy(model, guide)
        assert not list(energy.parameters())
        energy(torch.zeros(3, 2, dtype=torch.float64))
        names = dict(energy.named_parameters())
        assert set(names) == {"program_params.dec__weight", "program_params.dec__bias", "program_params.shift_value"}
        store = pyro.get_param_store()
        assert names["program_params.shift_value"] is store["shift.value"]
        assert names["program_params.dec__weight"] is net.weight
        energy(torch.zeros(3, 2, dtype=torch.float64))  # a second call adds nothing
        assert len(list(energy.parameters())) == 3
        energy.load_state_dict({k: v.detach().clone() for k, v in energy.state_dict().items()})
    finally:
        pyro.clear_param_store()


def test_elbo_energy_refuses_a_non_reparameterized_guide_and_a_subsampled_plate():
    import pyro.distributions as dist

    def model(y):
        with pyro.plate("data", y.shape[0]):
            z = pyro.sample("z", dist.Gamma(y.new_ones(y.shape), 1.0).to_event(1))
            pyro.sample("y", dist.Normal(z, 1.0).to_event(1), obs=y)

    class NoRsample(dist.Gamma):
        has_rsample = False

    def guide(y):
        with pyro.plate("data", y.shape[0]):
            pyro.sample("z", NoRsample(y.new_ones(y.shape), 1.0).to_event(1))

    with _raises(ValueError, "guide site 'z' (Independent) is not reparameterizable; the energy's gradient in y needs "
                             "rsample: use a reparameterized guide distribution (or a relaxed one)"):
        ELBOEnergy(model, guide)(torch.ones(2, 3))

    def sub_model(y):
        with pyro.plate("data", 10, subsample_size=y.shape[0]):
            pyro.sample("y", dist.Normal(0.0, 1.0).expand([y.shape[1]]).to_event(1), obs=y)

    def sub_guide(y):
        with pyro.plate("data", 10, subsample_size=y.shape[0]):
            pass

    # (the message said "got size 2" here before issue 15, not naming the subsampling)
    with _raises(ValueError, "the data plate 'data' must have size 2 (one entry per point, no subsampling), got size 2 "
                             "subsampled from 10"):
        ELBOEnergy(sub_model, sub_guide)(torch.ones(2, 3))

    def wide_model(y):
        with pyro.plate("data", 5):
            pyro.sample("y", dist.Normal(0.0, 1.0).expand([5, y.shape[1]]).to_event(1), obs=y.new_zeros(5, y.shape[1]))

    def wide_guide(y):
        with pyro.plate("data", 5):
            pass

    with _raises(ValueError, "the data plate 'data' must have size 2 (one entry per point, no subsampling), got size 5"):
        ELBOEnergy(wide_model, wide_guide)(torch.ones(2, 3))


def test_iwae_energy_of_one_particle_equals_the_elbo_energy():
    vae = VAE(x_dim=4, z_dim=2, hidden_dims=(5,), likelihood="normal", sigma=0.5).double()
    y = torch.rand(3, 4, dtype=torch.float64)
    pyro.set_rng_seed(4)
    f_iwae = ELBOEnergy(vae.model, vae.guide, bound="iwae")(y)
    pyro.set_rng_seed(4)
    f_elbo = ELBOEnergy(vae.model, vae.guide, analytic_kl=False)(y)
    assert torch.allclose(f_iwae, f_elbo, rtol=0, atol=1e-12)


def test_a_pyro_module_owned_energy_registers_no_store_copies():
    # the VAE (a PyroModule) puts its parameters in the param store and its traces have param sites for them: they are
    # the owner's own tensors, so the first call must not register them a second time (the state dict would hold two
    # copies of each, under "owners.0...." and "program_params....")
    vae = VAE(x_dim=4, z_dim=2, hidden_dims=(5,), likelihood="normal", sigma=0.5)
    energy = ELBOEnergy(vae.model, vae.guide)
    energy(torch.rand(3, 4))
    assert set(energy.state_dict()) == {"owners.0." + k for k in vae.state_dict()}


def _exact_linear_gaussian(linear_gaussian_vae):
    vae = linear_gaussian_vae(3, 2, sigma=0.6)
    with torch.no_grad():
        vae.b.copy_(torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64))
    vae.set_exact_posterior()
    return vae


@pytest.mark.parametrize("bound", ["elbo", "iwae"])
def test_a_replicate_plate_is_averaged_per_particle(linear_gaussian_vae, bound):
    """
    Sites in a replicate plate (``infer["replicate_plate"]``, e.g. a denoising guide's M corruptions) are further
    copies averaged into each particle's term: log_weights has shape (K, B), not (K·M, B). With the exact posterior
    every log weight is log p(y), so both bounds equal -log p(y) exactly (the IWAE bound of the K·M pooled weights
    would be off by log M). B = K = 2 and M = 3.
    """
    import pyro.distributions as dist

    vae = _exact_linear_gaussian(linear_gaussian_vae)
    rep = {"replicate_plate": "rep"}

    def model(y):
        with pyro.plate("rep", 3, dim=-2), pyro.plate("data", y.shape[0], dim=-1):
            z = pyro.sample("z", dist.MultivariateNormal(y.new_zeros(2), scale_tril=torch.eye(2, dtype=y.dtype)),
                            infer=rep)
            pyro.sample("y", dist.Normal(z @ vae.W.T + vae.b, vae.sigma).to_event(1), obs=y, infer=rep)

    def guide(y):
        with pyro.plate("rep", 3, dim=-2), pyro.plate("data", y.shape[0], dim=-1):
            pyro.sample("z", dist.MultivariateNormal(y @ vae.A.T + vae.c, scale_tril=vae.L), infer=rep)

    energy = ELBOEnergy(model, guide, num_particles=2, bound=bound, analytic_kl=False)
    y = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.2, -0.7]], dtype=torch.float64)
    assert energy.log_weights(y).shape == (2, 2)
    f, grad = energy.energy_and_grad(y)
    f0, grad0 = GaussianEnergy(*vae.marginal()).energy_and_grad(y)
    assert torch.allclose(f, f0, rtol=0, atol=1e-10) and torch.allclose(grad, grad0, rtol=0, atol=1e-10)


def test_site_scales_are_kept(linear_gaussian_vae):
    # poutine.scale(s) on model and guide scales every site: with the exact posterior f = -s log p(y) exactly
    vae = _exact_linear_gaussian(linear_gaussian_vae)
    y = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.2, -0.7]], dtype=torch.float64)
    for bound in ("elbo", "iwae"):
        energy = ELBOEnergy(pyro.poutine.scale(vae.model, scale=0.5), pyro.poutine.scale(vae.guide, scale=0.5),
                            num_particles=2, bound=bound, analytic_kl=False)
        assert torch.allclose(energy(y), 0.5 * GaussianEnergy(*vae.marginal())(y), rtol=0, atol=1e-10)


def test_extra_arguments_reach_model_and_guide(linear_gaussian_vae):
    """``energy(y, *args, **kwargs)`` passes the extra arguments to model and guide (here a bias shift of y)."""
    import pyro.distributions as dist

    vae = _exact_linear_gaussian(linear_gaussian_vae)

    def model(y, shift, scale=1.0):
        with pyro.plate("data", y.shape[0]):
            z = pyro.sample("z", dist.MultivariateNormal(y.new_zeros(2), scale_tril=torch.eye(2, dtype=y.dtype)))
            pyro.sample("y", dist.Normal(z @ vae.W.T + vae.b + shift, vae.sigma).to_event(1), obs=y)

    def guide(y, shift, scale=1.0):
        with pyro.plate("data", y.shape[0]):
            pyro.sample("z", dist.MultivariateNormal((y - shift) @ vae.A.T + vae.c, scale_tril=scale * vae.L))

    energy = ELBOEnergy(model, guide, analytic_kl=False)
    y = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.2, -0.7]], dtype=torch.float64)
    shift = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    loc, cov = vae.marginal()
    # the exact posterior of the shifted model, whatever z: -log N(y; b + shift, C)
    assert torch.allclose(energy(y, shift), GaussianEnergy(loc + shift, cov)(y), rtol=0, atol=1e-10)
    assert torch.allclose(energy(y, shift, scale=1.0), GaussianEnergy(loc + shift, cov)(y), rtol=0, atol=1e-10)
    # a keyword that changes the guide (a wider proposal) makes the single-sample bound loose: f > -log p(y)
    pyro.set_rng_seed(0)
    assert (energy(y, shift, scale=3.0) > GaussianEnergy(loc + shift, cov)(y) + 1e-3).all()


def test_a_named_data_plate_is_used_where_inference_would_fail():
    """
    Every site in two plates, "obs" over points and "feat" over features: both are common to every site, so the data
    plate must be named. With plate_name="obs" the energy is the exact sum over features of the 1-D Gaussian
    energies (z_j ~ N(0, 1), y_j | z_j ~ N(z_j, 0.5²), exact posterior guide N(y_j / 1.25, 0.2)).
    """
    import pyro.distributions as dist

    def model(y):
        with pyro.plate("obs", y.shape[0], dim=-2), pyro.plate("feat", y.shape[1], dim=-1):
            z = pyro.sample("z", dist.Normal(y.new_zeros(()), 1.0))
            pyro.sample("y", dist.Normal(z, 0.5), obs=y)

    def guide(y):
        with pyro.plate("obs", y.shape[0], dim=-2), pyro.plate("feat", y.shape[1], dim=-1):
            pyro.sample("z", dist.Normal(y / 1.25, 0.2**0.5))

    y = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.2, -0.7]], dtype=torch.float64)
    energy = ELBOEnergy(model, guide, plate_name="obs", analytic_kl=False)
    expected = -torch.distributions.Normal(0.0, torch.tensor(1.25, dtype=torch.float64).sqrt()).log_prob(y).sum(-1)
    assert torch.allclose(energy(y), expected, rtol=0, atol=1e-10)
    # (unnamed, the outermost common plate, here "obs" itself, is taken: see test_a_named_inner_data_plate)
    assert torch.allclose(ELBOEnergy(model, guide, analytic_kl=False)(y), expected, rtol=0, atol=1e-10)


def test_elbo_energy_checks_the_feature_size_itself():
    # called directly (not through energy_and_grad), the energy checks y before the programs run (the VAE's own
    # message would say "x has 3 features but the model expects 4")
    vae = VAE(x_dim=4, z_dim=2, hidden_dims=(5,), likelihood="normal", sigma=0.5)
    with _raises(ValueError, "y has 3 features but the energy expects 4"):
        ELBOEnergy(vae.model, vae.guide)(torch.zeros(2, 3))


def test_a_named_inner_data_plate():
    """
    The points' plate "obs" inside a features' plate "feat" (the model works on y.T): unnamed, the outermost common
    plate ("feat", size 3 for 2 points) is taken and refused by the size check; named, the energy is the exact sum of
    the 1-D Gaussian energies (as in the test above).
    """
    import pyro.distributions as dist

    def model(y):
        with pyro.plate("feat", y.shape[1], dim=-2), pyro.plate("obs", y.shape[0], dim=-1):
            z = pyro.sample("z", dist.Normal(y.new_zeros(()), 1.0))
            pyro.sample("y", dist.Normal(z, 0.5), obs=y.T)

    def guide(y):
        with pyro.plate("feat", y.shape[1], dim=-2), pyro.plate("obs", y.shape[0], dim=-1):
            pyro.sample("z", dist.Normal(y.T / 1.25, 0.2**0.5))

    y = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.2, -0.7]], dtype=torch.float64)
    expected = -torch.distributions.Normal(0.0, torch.tensor(1.25, dtype=torch.float64).sqrt()).log_prob(y).sum(-1)
    assert torch.allclose(ELBOEnergy(model, guide, plate_name="obs", analytic_kl=False)(y), expected, rtol=0, atol=1e-10)
    with _raises(ValueError, "the data plate 'feat' must have size 2 (one entry per point, no subsampling), got size 3"):
        ELBOEnergy(model, guide, analytic_kl=False)(y)
