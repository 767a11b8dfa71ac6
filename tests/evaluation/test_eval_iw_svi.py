"""IW-SVI: per-point refinement of the proposal, checked against the exact log p(x) of a linear-Gaussian model."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_noisevae.evaluation import LocalGaussianGuide, fit_local_guide, importance_estimate, iw_svi, iw_svi_estimate, log_likelihood
from pyro_noisevae.evaluation.log_likelihood import traced_log_weights


@pytest.mark.parametrize("batch_size", [100, 7], ids=["one-batch", "batches-of-7"])
def test_iw_svi_improves_a_bad_encoder_to_the_exact_value(linear_gaussian, batch_size):
    # with 20 points in batches of 7, every chunk (the last one short) must be refined on its own points
    lg = linear_gaussian
    x = lg.sample(20)
    exact = lg.log_px(x)
    bad = lg.guide(shift=0.8, scale_factor=0.5)  # far off and too narrow: heavy-tailed weights
    amortized = importance_estimate(lg.model, bad, x, num_samples=1000, chunk_size=1000, progress=False)
    refined = iw_svi_estimate(lg.model, bad, x, num_steps=150, num_particles=20, num_samples=1000, chunk_size=1000,
                              batch_size=batch_size, progress=False)
    err_amortized = (amortized.log_px - exact).mean().item()
    err = (refined.log_px - exact).mean().item()
    se = (refined.stderr.pow(2).sum().sqrt() / 20).item()
    bias = -(refined.stderr.pow(2) / 2).mean().item()  # delta-method bias of log-mean-exp
    assert refined.log_px.shape == (20,)
    # per point, not only on average: each estimate within 5 of its own standard errors of log p(x_n)
    assert ((refined.log_px - exact).abs() < 5 * refined.stderr + 1e-3).all()
    # the encoder's IWAE-1000 is far below log p(x); after IW-SVI the estimate is exact within its error
    assert err_amortized < err - 10 * se
    assert abs(err - bias) < 4 * se
    # the refined proposal is close to the posterior: effective sample size close to k
    assert refined.ess.min() > 0.5 * 1000 > amortized.ess.max()


def test_no_steps_is_the_amortized_estimate(linear_gaussian):
    lg = linear_gaussian
    x = lg.sample(6)
    guide = lg.guide(shift=0.3, scale_factor=1.2)
    pyro.set_rng_seed(4)
    amortized = log_likelihood(lg.model, guide, x, num_samples=64, chunk_size=16, progress=False)
    pyro.set_rng_seed(4)
    refined = iw_svi(lg.model, guide, x, num_steps=0, num_samples=64, chunk_size=16, progress=False)
    assert torch.allclose(amortized, refined, rtol=0, atol=1e-10)


def test_elbo_objective_finds_the_exact_posterior(linear_gaussian):
    lg = linear_gaussian
    x = lg.sample(10)
    bad = lg.guide(shift=-0.5, scale_factor=2.0)
    start = LocalGaussianGuide.from_guide(bad, x)
    kl_before = lg.kl_to_posterior(x, start.loc("z"), start.scale("z"))
    q_star = fit_local_guide(lg.model, bad, x, objective="elbo", num_particles=20, num_steps=300)
    kl_after = lg.kl_to_posterior(x, q_star.loc("z"), q_star.scale("z"))
    # per-sample optimisation removes (almost) all of the KL to the posterior, for every data point
    assert (kl_after < 0.01 * kl_before).all()
    # the amortized guide is not modified
    again = LocalGaussianGuide.from_guide(bad, x)
    assert torch.equal(again.loc("z"), start.loc("z"))


def _iwae_bound(model, guide, x, K, repeats):
    """Monte Carlo estimate of the IWAE-K bound E[log mean_k w_k] per point, and its standard error."""
    with torch.no_grad():
        log_w = traced_log_weights(model, guide, (x,), {}, K * repeats, 1, None).reshape(repeats, K, -1)
    bounds = log_w.logsumexp(1) - math.log(K)
    return bounds.mean(0), bounds.std(0) / math.sqrt(repeats)


def test_iw_svi_on_a_vae_raises_the_bound_it_optimises_and_leaves_the_model_alone():
    from pyro_noisevae.models import VAE

    with pyro.settings.context(module_local_params=True):
        vae = VAE(x_dim=8, z_dim=2, hidden_dims=(6,), likelihood="bernoulli").double()
    x = torch.bernoulli(torch.full((5, 8), 0.3, dtype=torch.float64))
    before = [p.detach().clone() for p in vae.parameters()]
    local = fit_local_guide(vae.model, vae.guide, x, objective="iwae", num_particles=10, num_steps=100)
    assert all(torch.equal(a, b) for a, b in zip(before, vae.parameters()))
    assert all(p.grad is None for p in vae.parameters())
    # the IWAE-10 bound (the objective) of the refined proposals is higher on average over the points
    # (per point it need not be: stochastic optimisation can settle in a worse local optimum)
    amortized, amortized_se = _iwae_bound(vae.model, vae.guide, x, 10, 400)
    refined, refined_se = _iwae_bound(vae.model, local, x, 10, 400)
    gain_se = (amortized_se.pow(2) + refined_se.pow(2)).sum().sqrt() / x.shape[0]  # independent draws
    assert (refined - amortized).mean() > 4 * gain_se, ((refined - amortized).mean(), gain_se)
    est = iw_svi_estimate(vae.model, vae.guide, x, num_steps=5, num_particles=10, num_samples=100, progress=False)
    assert est.log_px.shape == (5,) and torch.isfinite(est.log_px).all()


def test_non_gaussian_guide_is_rejected(linear_gaussian):
    lg = linear_gaussian
    x = lg.sample(3)

    def laplace_guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Laplace(x.new_zeros(x.shape[0], 2), 1.0).to_event(1))

    with pytest.raises(ValueError, match="Gaussian .* guide site 'z' is Independent"):
        iw_svi(lg.model, laplace_guide, x, num_steps=1, num_samples=2, progress=False)


def test_local_guide_only_applies_to_its_batch(linear_gaussian):
    lg = linear_gaussian
    x = lg.sample(4)
    local = LocalGaussianGuide.from_guide(lg.guide(), x)
    with pytest.raises(ValueError, match="only applies to the data it was fitted on"):
        log_likelihood(lg.model, local, x[:3], num_samples=2, progress=False)


def test_argument_errors(linear_gaussian):
    lg = linear_gaussian
    x = lg.sample(3)
    g = lg.guide()
    with pytest.raises(ValueError, match="objective"):
        fit_local_guide(lg.model, g, x, objective="kl")
    with pytest.raises(ValueError, match="num_steps"):
        fit_local_guide(lg.model, g, x, num_steps=-1)
    with pytest.raises(ValueError, match="num_particles"):
        fit_local_guide(lg.model, g, x, num_particles=0)
    with pytest.raises(ValueError, match="lr"):
        fit_local_guide(lg.model, g, x, lr=0.0)
    with pytest.raises(ValueError, match="lr_decay"):
        fit_local_guide(lg.model, g, x, lr_decay=1.5)
    with pytest.raises(ValueError, match="lr"):
        fit_local_guide(lg.model, g, x, lr=math.nan)
    with pytest.raises(TypeError, match="init"):
        fit_local_guide(lg.model, g, x, init="encoder")
    with pytest.raises(ValueError, match="batch_size"):
        iw_svi(lg.model, g, x, batch_size=0, progress=False)
    with pytest.raises(TypeError, match="callable"):
        iw_svi(lg.model, None, x, progress=False)


# ----------------------------------------------------------------------------------------------------------
# issue 15: the options, guards and messages that the value tests above never reach

import importlib  # noqa: E402
import re  # noqa: E402

import tqdm  # noqa: E402
import signal  # noqa: E402

from pyro.infer.autoguide import AutoNormal  # noqa: E402

from pyro_noisevae.distributions import make_corruption  # noqa: E402
from pyro_noisevae.guides import DenoisingGuide  # noqa: E402

IW_SVI = importlib.import_module("pyro_noisevae.evaluation.iw_svi")  # the module (the package rebinds the name)


def _full(message):
    return "^" + re.escape(message) + "$"


def _fit_spy(monkeypatch):
    """Record the calls of iw_svi_estimate to fit_local_guide (batch rows and keyword options), calling through."""
    calls = []
    real = IW_SVI.fit_local_guide

    def spy(model, guide, *args, **kwargs):
        calls.append((args[0].shape[0], kwargs))
        return real(model, guide, *args, **kwargs)

    monkeypatch.setattr(IW_SVI, "fit_local_guide", spy)
    return calls


def test_options_reach_fit_local_guide(linear_gaussian, monkeypatch):
    lg = linear_gaussian
    x = lg.sample(5)
    calls = _fit_spy(monkeypatch)
    iw_svi(lg.model, lg.guide(), x, num_steps=2, num_particles=3, lr=0.02, lr_decay=0.5, num_samples=4, progress=False)
    iw_svi_estimate(lg.model, lg.guide(), x, num_steps=1, num_particles=2, num_samples=4, progress=False)
    (rows, kw), (rows2, kw2) = calls
    assert rows == rows2 == 5
    assert {k: kw[k] for k in ("objective", "num_steps", "num_particles", "lr", "lr_decay")} == dict(
        objective="iwae", num_steps=2, num_particles=3, lr=0.02, lr_decay=0.5)
    # the documented defaults of iw_svi_estimate
    assert (kw2["num_steps"], kw2["num_particles"], kw2["lr"], kw2["lr_decay"]) == (1, 2, 0.05, 0.1)


@pytest.mark.parametrize("batch_size, rows", [(7, [7, 7, 6]), (None, [20])])
def test_batch_size_splits_the_fit(linear_gaussian, monkeypatch, batch_size, rows):
    # 20 points in batches of 7: three separate fits (the last one short); None: one fit of all points
    lg = linear_gaussian
    x = lg.sample(20)
    calls = _fit_spy(monkeypatch)
    # the exact posterior as proposal: every weight is p(x_n), so the estimate is exact whatever the chunking
    est = iw_svi_estimate(lg.model, lg.guide(), x, num_steps=0, num_samples=3, batch_size=batch_size, progress=False)
    assert [r for r, _ in calls] == rows
    torch.testing.assert_close(est.log_px, lg.log_px(x), rtol=0, atol=1e-10)


def _two_plate_pair(lg, reps):
    """Repeated measurements: x[n, r] ~ the linear-Gaussian model, each with its own latent, in plates
    "data" (subjects, dim -2) and "reps" (dim -1); the guide is the exact posterior of every z[n, r]."""

    def model(x):
        with pyro.plate("data", x.shape[0], dim=-2), pyro.plate("reps", reps, dim=-1):
            z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[:2] + (lg.z_dim,)), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ lg.W.T + lg.b, lg.s).to_event(1), obs=x)

    def guide(x):
        loc = (x - lg.b) @ lg.A.T
        with pyro.plate("data", x.shape[0], dim=-2), pyro.plate("reps", reps, dim=-1):
            pyro.sample("z", dist.Normal(loc, lg.post_scale.expand(loc.shape)).to_event(1))

    return model, guide


def _plate_spy(monkeypatch):
    """Record the data_plate of every site_structure call (the choice of the data plate is made there)."""
    seen = []
    for name in ("pyro_noisevae.evaluation.chunks", "pyro_noisevae.evaluation.log_likelihood"):
        module = importlib.import_module(name)
        real = module.site_structure

        def spy(model_trace, guide_trace, data_plate=None, _real=real):
            seen.append(data_plate)
            return _real(model_trace, guide_trace, data_plate)

        monkeypatch.setattr(module, "site_structure", spy)
    return seen


def test_named_data_plate(linear_gaussian, monkeypatch):
    # every site lies in both plates, so only the name says which one indexes the data points
    lg = linear_gaussian
    x = lg.sample(12).reshape(4, 3, lg.x_dim)
    model, guide = _two_plate_pair(lg, 3)
    seen = _plate_spy(monkeypatch)
    # no steps: the proposal is the exact posterior, so every weight is p(x_n), the sum over the subject's repeats
    est = iw_svi_estimate(model, guide, x, num_steps=0, num_samples=3, batch_size=3, data_plate="data",
                          progress=False)
    torch.testing.assert_close(est.log_px, lg.log_px(x).sum(-1), rtol=0, atol=1e-10)
    local = fit_local_guide(model, guide, x, num_steps=1, num_particles=2, data_plate="data")
    assert local.loc("z").shape == (4, 3, lg.z_dim)
    # the name reached the structure probes, the chunking, the fit's steps and the evaluation passes
    assert len(seen) >= 4 and set(seen) == {"data"}


def test_max_plate_nesting_is_checked(linear_gaussian):
    lg = linear_gaussian
    x = lg.sample(3)
    msg = _full("max_plate_nesting must be None (inferred) or an integer >= 1 (the data plate counts as one), got 0")
    with pytest.raises(ValueError, match=msg):
        iw_svi_estimate(lg.model, lg.guide(), x, max_plate_nesting=0, progress=False)
    with pytest.raises(ValueError, match=msg):
        fit_local_guide(lg.model, lg.guide(), x, max_plate_nesting=0)
    # a larger value than needed is valid and changes nothing (exact posterior: every weight is p(x_n))
    est = iw_svi(lg.model, lg.guide(), x, num_steps=0, num_samples=3, max_plate_nesting=3, progress=False)
    torch.testing.assert_close(est, lg.log_px(x), rtol=0, atol=1e-10)


def test_a_given_max_plate_nesting_is_used(linear_gaussian):
    # the caller's value is used in the evaluation pass, not replaced by the inferred one: too small for two
    # plates, the particle plate collides with the data plate (Pyro's error)
    lg = linear_gaussian
    x = lg.sample(12).reshape(4, 3, lg.x_dim)
    model, guide = _two_plate_pair(lg, 3)
    collision = re.escape('at plates "data" and "num_particles_vectorized", collide at dim=-2')
    with pytest.raises(ValueError, match=collision):
        iw_svi(model, guide, x, num_steps=0, num_samples=3, data_plate="data", max_plate_nesting=1, progress=False)


def _noise_pair(lg):
    """The linear-Gaussian model with the noise sd a required keyword ``noise``; the guide is its exact posterior."""

    def posterior(noise):
        cov = torch.linalg.inv(torch.eye(lg.z_dim, dtype=torch.float64) + lg.W.T @ lg.W / noise**2)
        return cov @ lg.W.T / noise**2, cov.diagonal().sqrt()

    def model(x, *, noise):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], lg.z_dim), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ lg.W.T + lg.b, noise).to_event(1), obs=x)

    def guide(x, *, noise):
        gain, sd = posterior(noise)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal((x - lg.b) @ gain.T, sd.expand(x.shape[0], lg.z_dim)).to_event(1))

    def log_px(x, noise):
        cov = lg.W @ lg.W.T + noise**2 * torch.eye(lg.x_dim, dtype=torch.float64)
        return dist.MultivariateNormal(lg.b, cov).log_prob(x)

    return model, guide, log_px


def test_keyword_arguments_reach_model_and_guide(linear_gaussian):
    lg = linear_gaussian
    x = lg.sample(5)
    model, guide, log_px = _noise_pair(lg)
    exact = log_px(x, 0.9)
    assert (exact - lg.log_px(x)).abs().min() > 0.01  # the keyword matters
    # num_steps=0: the proposal is the exact posterior for noise=0.9, so every weight is p(x_n) exactly
    est = iw_svi(model, guide, x, noise=0.9, num_steps=0, num_samples=3, progress=False)
    torch.testing.assert_close(est, exact, rtol=0, atol=1e-10)
    local = fit_local_guide(model, guide, x, noise=0.9, num_steps=0)
    gain = torch.linalg.solve(torch.eye(lg.z_dim, dtype=torch.float64) + lg.W.T @ lg.W / 0.81, lg.W.T / 0.81)
    torch.testing.assert_close(local.loc("z"), (x - lg.b) @ gain.T, rtol=0, atol=1e-12)
    torch.testing.assert_close(log_likelihood(model, local, x, noise=0.9, num_samples=2, progress=False), exact,
                               rtol=0, atol=1e-10)
    fitted = iw_svi(model, guide, x, noise=0.9, num_steps=3, num_particles=2, num_samples=200, progress=False)
    assert torch.isfinite(fitted).all()


def _per_point_pair(lg, x, subsample_size):
    """Model and exact-posterior guide with one (loc, scale) row per data point, indexed by the plate."""
    loc, scale = lg.posterior(x)

    def model(x):
        with pyro.plate("data", x.shape[0], subsample_size=subsample_size) as idx:
            z = pyro.sample("z", dist.Normal(x.new_zeros(len(idx), lg.z_dim), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ lg.W.T + lg.b, lg.s).to_event(1), obs=x[idx])

    def guide(x):
        loc_p = pyro.param("loc", loc.clone())
        with pyro.plate("data", x.shape[0], subsample_size=subsample_size) as idx:
            pyro.sample("z", dist.Normal(loc_p[idx], scale[idx]).to_event(1))

    return model, guide


def test_guide_with_a_parameter_row_per_point(linear_gaussian, monkeypatch):
    # 7 points walked through the data plate 3 at a time: each fit and each estimate sees its own rows
    lg = linear_gaussian
    x = lg.sample(7)
    model, guide = _per_point_pair(lg, x, 3)
    calls = _fit_spy(monkeypatch)
    est = iw_svi_estimate(model, guide, x, num_steps=0, num_samples=3, batch_size=3, progress=False)
    assert [r for r, _ in calls] == [7, 7, 7]  # the data stay whole; the plate is subsampled
    torch.testing.assert_close(est.log_px, lg.log_px(x), rtol=0, atol=1e-10)


def test_init_is_the_starting_point(linear_gaussian):
    lg = linear_gaussian
    x = lg.sample(4)
    g = lg.guide()
    loc, scale = lg.posterior(x)
    init = LocalGaussianGuide(g, {"z": (loc + 1.0, (2.0 * scale).log(), 1)})
    local = fit_local_guide(lg.model, g, x, init=init, num_steps=0)
    torch.testing.assert_close(local.loc("z"), loc + 1.0, rtol=0, atol=0)
    torch.testing.assert_close(local.scale("z"), 2.0 * scale, rtol=0, atol=1e-15)
    moved = fit_local_guide(lg.model, g, x, init=init, num_steps=1, num_particles=2, lr=0.1)
    assert torch.equal(init.loc("z"), loc + 1.0)  # the starting guide is not modified
    # one Adam step from loc + 1 moves each coordinate by lr (first step: lr * g / |g|), towards the posterior
    torch.testing.assert_close((moved.loc("z") - (loc + 1.0)).abs(), torch.full_like(loc, 0.1), rtol=1e-5, atol=0)


def test_one_step_moves_the_parameters(linear_gaussian):
    lg = linear_gaussian
    x = lg.sample(4)
    bad = lg.guide(shift=0.8, scale_factor=0.5)
    start = LocalGaussianGuide.from_guide(bad, x)
    lr = 0.03
    one = fit_local_guide(lg.model, bad, x, num_steps=1, num_particles=4, lr=lr, lr_decay=0.5)
    # Adam's first step is lr * g / (|g| + eps): every coordinate of loc and log-scale moves by lr
    torch.testing.assert_close((one.loc("z") - start.loc("z")).abs(), torch.full_like(start.loc("z"), lr),
                               rtol=1e-5, atol=0)
    torch.testing.assert_close((one.scale("z").log() - start.scale("z").log()).abs(),
                               torch.full_like(start.loc("z"), lr), rtol=1e-5, atol=0)


def test_autoguide_is_refused(linear_gaussian):
    lg = linear_gaussian
    x = lg.sample(3)
    auto = AutoNormal(lg.model)
    msg = _full("the guide is a AutoNormal, whose parameters are already per data point: IW-SVI refines an AMORTIZED "
                "guide q(z | x) point by point. Fit the autoguide (its optimum is the per-point refit) and evaluate it "
                "with log_likelihood / importance_estimate instead.")
    with pytest.raises(ValueError, match=msg):
        iw_svi(lg.model, auto, x, num_steps=1, num_particles=2, num_samples=2, progress=False)
    with pytest.raises(ValueError, match=msg):
        fit_local_guide(lg.model, auto, x, num_steps=1)
    with pytest.raises(ValueError, match=msg):
        LocalGaussianGuide.from_guide(auto, x)


def test_denoising_guide_is_refined_through_its_base_guide(linear_gaussian):
    # the encoder is the exact posterior map: on clean data (the base guide) every weight is p(x_n) exactly,
    # while a corrupted input would move the proposal off the posterior
    lg = linear_gaussian
    x = lg.sample(5)
    denoising = DenoisingGuide.from_encoder(lg.encoder(), make_corruption("gaussian", 0.5), num_corruptions=3)
    model = denoising.wrap_model(lg.model)
    est = iw_svi(model, denoising, x, num_steps=0, num_samples=3, progress=False)
    torch.testing.assert_close(est, lg.log_px(x), rtol=0, atol=1e-10)
    local = fit_local_guide(model, denoising, x, num_steps=0)
    torch.testing.assert_close(local.loc("z"), lg.posterior(x)[0], rtol=0, atol=0)


def test_fit_local_guide_refuses_global_latents(linear_gaussian):
    lg = linear_gaussian
    x = lg.sample(4)

    def model(x):
        shift = pyro.sample("shift", dist.Normal(x.new_zeros(lg.x_dim), 1.0).to_event(1))
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], lg.z_dim), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ lg.W.T + lg.b + shift, lg.s).to_event(1), obs=x)

    def guide(x):
        pyro.sample("shift", dist.Normal(x.new_zeros(lg.x_dim), 0.1).to_event(1))
        lg.guide()(x)

    msg = _full(
        "latent sites ['shift'] are global (outside the data plate 'data'): they couple the data points, so log p(x) "
        "does not split into per-point terms. Condition on the global latents (pyro.condition / poutine.condition) to "
        "evaluate the conditional model per point, or train and compare with IWAE_ELBO, which bounds the joint "
        "evidence with an ELBO term for the globals.")
    with pytest.raises(ValueError, match=msg):
        fit_local_guide(model, guide, x, num_steps=2, num_particles=2)
    with pytest.raises(ValueError, match=msg):  # refused before any step, so also without steps
        fit_local_guide(model, guide, x, num_steps=0)
    with pytest.raises(ValueError, match=msg):
        iw_svi(model, guide, x, num_steps=2, num_particles=2, num_samples=2, progress=False)


def test_non_finite_bound_raises(linear_gaussian):
    # x ~ Uniform(z - 1, z + 1), but the guide puts z 10 away from x: every weight is 0, the bound -inf
    x = torch.tensor([0.3, -0.2, 1.0], dtype=torch.float64)

    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros_like(x), 10.0))
            pyro.sample("x", dist.Uniform(z - 1.0, z + 1.0, validate_args=False), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x + 10.0, 0.1))

    # the value reported is the bound's (-inf), not the loss's (+inf); the IWAE surrogate's value is NaN when all
    # the weights of a point are 0 (its normalized weights are 0 / 0)
    for objective, value in (("elbo", "-inf"), ("iwae", "(-inf|nan)")):
        msg = (f"^the {objective} bound became {value} at step 0; "
               + re.escape("lower lr or check the model's support for these data") + "$")
        with pytest.raises(FloatingPointError, match=msg):
            fit_local_guide(model, guide, x, objective=objective, num_steps=3, num_particles=2)


def test_fit_local_guide_lets_keyboard_interrupt_propagate(linear_gaussian):
    # a SIGINT during the fit must interrupt it (KeyboardInterrupt), not return a half-fitted guide as if fitted
    lg = linear_gaussian
    x = lg.sample(3)
    calls = [0]

    def model(x):
        calls[0] += 1
        if calls[0] == 6:  # during the optimisation steps (the probes before them call the model fewer times)
            signal.raise_signal(signal.SIGINT)
        lg.model(x)

    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # whatever pytest was started with
    try:
        with pytest.raises(KeyboardInterrupt):
            fit_local_guide(model, lg.guide(), x, num_steps=20, num_particles=2)
    finally:
        signal.signal(signal.SIGINT, before)
    assert calls[0] == 6


def test_local_guide_needs_a_callable():
    with pytest.raises(TypeError, match=_full("guide must be callable, got int")):
        LocalGaussianGuide(3, {})
    with pytest.raises(TypeError, match=_full("guide must be callable, got NoneType")):
        LocalGaussianGuide(None, {})


def _correlated_pair():
    r"""A scalar observation of two latents, :math:`x \sim N(z_1 + z_2, 0.5^2)`: the posterior is a correlated
    Gaussian (precision :math:`\Lambda = I + w w^\top / s^2 = [[5, 4], [4, 5]]`, correlation -0.8), outside the
    diagonal family. The guide starts at the ELBO optimum of that family: the posterior mean with the sd
    :math:`\Lambda_{ii}^{-1/2} = 5^{-1/2}` (mean-field theory), narrower than the marginal sd :math:`(5/9)^{1/2}`."""
    w, s = torch.tensor([1.0, 1.0], dtype=torch.float64), 0.5
    prec = torch.eye(2, dtype=torch.float64) + torch.outer(w, w) / s**2
    cov = torch.linalg.inv(prec)

    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], 2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ w, s), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            loc = (x[:, None] * w / s**2) @ cov.T
            pyro.sample("z", dist.Normal(loc, prec.diagonal().rsqrt().expand(x.shape[0], 2)).to_event(1))

    return model, guide, prec.diagonal().rsqrt().log()


def test_iwae_and_elbo_objectives_differ():
    # the ELBO's optimal diagonal Gaussian (mode-seeking) stays at sd 5^-1/2; the IWAE-20 bound is tighter for a
    # wider proposal (mass-covering, towards the marginal sd), so its fit widens from the same start
    model, guide, elbo_log_sd = _correlated_pair()
    x = torch.tensor([-1.0, 0.0, 0.5, 2.0], dtype=torch.float64)
    opts = dict(num_particles=20, num_steps=50)
    elbo_fit = fit_local_guide(model, guide, x, objective="elbo", **opts)
    iwae_fit = fit_local_guide(model, guide, x, objective="iwae", **opts)
    # mean log-sd over the 4 x 2 coordinates; its spread over 20 seeds was 0.015 (ELBO) and 0.046 (IWAE), the
    # mean gain of the IWAE fit 0.35: the bounds below are 5 and 4 of those spreads from the means
    elbo_mean = elbo_fit.params["z"][1].mean().item()
    iwae_mean = iwae_fit.params["z"][1].mean().item()
    assert abs(elbo_mean - elbo_log_sd[0].item()) < 0.075
    assert iwae_mean > elbo_log_sd[0].item() + 0.15


def test_progress_bar(linear_gaussian, capsys, monkeypatch):
    # no tqdm monitor thread: a thread left running would hang the processes forked from this one (mutmut)
    monkeypatch.setattr(tqdm.std.tqdm, "monitor_interval", 0)
    lg = linear_gaussian
    x = lg.sample(3)
    iw_svi(lg.model, lg.guide(), x, num_steps=1, num_particles=2, num_samples=2)
    err = capsys.readouterr().err
    # a labelled bar, removed at the end (leave=False: no final newline)
    assert re.match(r"^\s*IW-SVI \(T=1, K=2\): ", err) and not err.endswith("\n")
    iw_svi(lg.model, lg.guide(), x, num_steps=1, num_particles=2, num_samples=2, progress=False)
    iw_svi_estimate(lg.model, lg.guide(), x, num_steps=1, num_particles=2, num_samples=2, progress=False)
    assert capsys.readouterr().err == ""
    iw_svi_estimate(lg.model, lg.guide(), x, num_steps=1, num_particles=2, num_samples=2)
    assert re.match(r"^\s*IW-SVI \(T=1, K=2\): ", capsys.readouterr().err)


def test_argument_errors_give_the_whole_message(linear_gaussian):
    lg = linear_gaussian
    x = lg.sample(3)
    g = lg.guide()
    cases = [
        (dict(objective="kl"), "objective must be one of ('iwae', 'elbo'), got 'kl'"),
        (dict(num_steps=-1), "num_steps must be an integer >= 0, got -1"),
        (dict(num_steps=2.5), "num_steps must be an integer >= 0, got 2.5"),
        (dict(num_steps=True), "num_steps must be an integer >= 0, got True"),
        (dict(num_particles=0), "num_particles must be an integer >= 1, got 0"),
        (dict(lr=0.0), "lr must be in (0.0, inf], got 0.0"),
        (dict(lr=math.nan), "lr must be a finite number, got nan"),
        # with num_steps=0 no FitLoop checks lr_decay after this function
        (dict(lr_decay=1.5, num_steps=0), "lr_decay must be in (0.0, 1.0], got 1.5"),
    ]
    for kwargs, msg in cases:
        with pytest.raises(ValueError, match=_full(msg)):
            fit_local_guide(lg.model, g, x, **kwargs)
    with pytest.raises(TypeError, match=_full("init must be a LocalGaussianGuide or None, got str")):
        fit_local_guide(lg.model, g, x, init="encoder")
    with pytest.raises(ValueError, match=_full("batch_size must be an integer >= 1 or None, got 0")):
        iw_svi(lg.model, g, x, batch_size=0, progress=False)


def test_documented_defaults(linear_gaussian, monkeypatch):
    # the signatures' counts reach the fit and the estimate (spies record them, then run a cheap version); 101
    # points: iw_svi_estimate's default batch of 100 makes two fits
    lg = linear_gaussian
    x = lg.sample(101)
    ks, fits, loops, particles = [], [], [], []
    real_estimate, real_fit = IW_SVI.estimate_chunks, IW_SVI.fit_local_guide
    real_loop, real_weights = IW_SVI.FitLoop, IW_SVI.traced_log_weights

    def estimate(log_weights, chunks, num_samples, chunk_size):
        ks.append((num_samples, chunk_size))
        return real_estimate(log_weights, chunks, 2)

    def fit(model, guide, *args, **kwargs):
        fits.append({k: kwargs[k] for k in ("num_steps", "num_particles", "lr", "lr_decay")})
        return real_fit(model, guide, *args, **{**kwargs, "num_steps": 1, "num_particles": 2})

    monkeypatch.setattr(IW_SVI, "estimate_chunks", estimate)
    monkeypatch.setattr(IW_SVI, "fit_local_guide", fit)
    iw_svi(lg.model, lg.guide(), x[:3], progress=False)
    iw_svi_estimate(lg.model, lg.guide(), x, progress=False)
    assert ks == [(5000, 100)] * 3
    assert fits == [dict(num_steps=100, num_particles=50, lr=0.05, lr_decay=0.1)] * 3
    monkeypatch.setattr(IW_SVI, "fit_local_guide", real_fit)

    def loop(loss_fn, optimizer, **kwargs):
        loops.append((kwargs["epochs"], kwargs["lr_decay"], optimizer.param_groups[0]["lr"]))
        return real_loop(loss_fn, optimizer, **{**kwargs, "epochs": 1})

    def weights(model, guide, args, kwargs, num_particles, *rest, **kw):
        particles.append(num_particles)
        return real_weights(model, guide, args, kwargs, 2, *rest, **kw)

    monkeypatch.setattr(IW_SVI, "FitLoop", loop)
    monkeypatch.setattr(IW_SVI, "traced_log_weights", weights)
    fit_local_guide(lg.model, lg.guide(), x[:3])
    assert loops == [(100, 0.1, 0.05)] and particles == [50]
