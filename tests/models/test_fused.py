"""The fused fast path computes the Pyro programs' losses, gradients and importance weights (same draws)."""

import math

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO

from pyro_noisevae.evaluation import importance_estimate, iwae_bound
from pyro_noisevae.models import FusedVAEObjective, VAE, elbo_terms, is_plain_vae_pair, vae_log_weights
from pyro_noisevae.training import TrainConfig, Trainer, build_fused_objective, build_programs

LIKELIHOODS = [("bernoulli", None), ("normal", 0.3), ("laplace", 0.2), ("noisy-bernoulli", 0.3), ("learned-normal", 0.5)]
OBJECTIVES = [("trace", 1, "standard"), ("trace", 3, "standard"), ("meanfield", 1, "standard"), ("meanfield", 2, "standard"),
              ("iwae", 4, "standard"), ("iwae", 4, "dreg")]
DENOISING = [("none", 0.0, 1, 1.0), ("salt-and-pepper", 0.1, 1, 1.0), ("gaussian", 0.2, 3, 0.5)]


def _data(lik, n=6, d=10, dtype=torch.float64):
    x = torch.rand(n, d, generator=torch.Generator().manual_seed(11), dtype=dtype)
    return x.round() if lik == "bernoulli" else x


def _loss_and_grads(vae, fn, seed=5):
    pyro.set_rng_seed(seed)
    vae.zero_grad()
    loss = fn()
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in vae.parameters()]


def _vae(lik, sigma, dtype=torch.float64):
    pyro.set_rng_seed(1)
    return VAE(10, 3, (7,), likelihood=lik, sigma=sigma).to(dtype)


def _assert_same(pyro_result, fused_result, rtol):
    (l1, g1), (l2, g2) = pyro_result, fused_result
    torch.testing.assert_close(l2, l1, rtol=rtol, atol=0)
    assert len(g1) == len(g2)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(b, a, rtol=rtol, atol=rtol * a.abs().max().item())


@pytest.mark.parametrize("lik,sigma", LIKELIHOODS)
@pytest.mark.parametrize("objective,K,estimator", OBJECTIVES)
@pytest.mark.parametrize("beta", [1.0, 2.5])
def test_loss_and_gradients_equal_the_pyro_programs(lik, sigma, objective, K, estimator, beta):
    # float64 so that the only differences are the order of floating-point sums
    cfg = TrainConfig(likelihood=lik, sigma=sigma, objective=objective, num_particles=K, gradient_estimator=estimator,
                      beta=beta, z_dim=3, hidden_dims=(7,))
    vae, x = _vae(lik, sigma), _data(lik)
    model, guide, elbo = build_programs(vae, cfg)
    fused = build_fused_objective(vae, cfg, validate=True)
    ref = _loss_and_grads(vae, lambda: elbo.differentiable_loss(model, guide, x, num_data=20))
    got = _loss_and_grads(vae, lambda: fused(x, num_data=20))
    _assert_same(ref, got, rtol=1e-10)


@pytest.mark.parametrize("corruption,level,M,alpha", DENOISING[1:])
@pytest.mark.parametrize("objective,K,estimator", OBJECTIVES)
def test_denoising_guides_equal_the_pyro_programs(corruption, level, M, alpha, objective, K, estimator):
    cfg = TrainConfig(likelihood="normal", sigma=0.3, objective=objective, num_particles=K, gradient_estimator=estimator,
                      corruption=corruption, corruption_level=level, num_corruptions=M, partial_alpha=alpha, beta=1.5,
                      z_dim=3, hidden_dims=(7,))
    vae, x = _vae("normal", 0.3), _data("normal")
    model, guide, elbo = build_programs(vae, cfg)
    fused = build_fused_objective(vae, cfg)
    ref = _loss_and_grads(vae, lambda: elbo.differentiable_loss(model, guide, x, num_data=30))
    got = _loss_and_grads(vae, lambda: fused(x, num_data=30))
    _assert_same(ref, got, rtol=1e-10)


def test_float32_agrees_to_single_precision():
    cfg = TrainConfig(likelihood="bernoulli", objective="iwae", num_particles=5, z_dim=3, hidden_dims=(7,))
    vae, x = _vae("bernoulli", None, torch.float32), _data("bernoulli", dtype=torch.float32)
    model, guide, elbo = build_programs(vae, cfg)
    ref = _loss_and_grads(vae, lambda: elbo.differentiable_loss(model, guide, x))
    got = _loss_and_grads(vae, lambda: build_fused_objective(vae, cfg)(x))
    _assert_same(ref, got, rtol=1e-5)


def test_warmup_schedule_is_read_once_per_call():
    calls = []

    def beta():
        calls.append(1)
        return 0.5

    vae, x = _vae("normal", 0.3), _data("normal")
    cfg = TrainConfig(likelihood="normal", sigma=0.3, z_dim=3, hidden_dims=(7,))
    model, guide, elbo = build_programs(vae, cfg, beta=lambda: 0.5)
    ref = _loss_and_grads(vae, lambda: elbo.differentiable_loss(model, guide, x))
    got = _loss_and_grads(vae, lambda: build_fused_objective(vae, cfg, beta=beta)(x))
    _assert_same(ref, got, rtol=1e-10)
    assert len(calls) == 1


def test_trainer_steps_match_with_and_without_fast_path():
    # five Adam steps of the trainer: the parameters follow the same path to rounding
    cfg = TrainConfig(likelihood="normal", sigma=0.3, objective="iwae", num_particles=3, corruption="gaussian",
                      corruption_level=0.1, z_dim=3, hidden_dims=(7,))
    data = _data("normal", n=40)
    finals, losses = [], []
    for fast in (False, True):
        with pyro.settings.context(module_local_params=True):
            vae = _vae("normal", 0.3)
            model, guide, elbo = build_programs(vae, cfg)
            trainer = Trainer(vae, model, guide, elbo, data, batch_size=8, lr=1e-2, seed=0,
                              objective=build_fused_objective(vae, cfg) if fast else None)
            pyro.set_rng_seed(3)
            losses.append(trainer.run_epoch(progress=False))
        finals.append(torch.cat([p.detach().flatten() for p in vae.parameters()]))
    assert (finals[0] - torch.cat([p.detach().flatten() for p in _vae("normal", 0.3).parameters()])).abs().max() > 1e-3
    torch.testing.assert_close(finals[1], finals[0], rtol=1e-8, atol=1e-10)
    assert math.isclose(losses[0], losses[1], rel_tol=1e-10)


# ------------------------------------------------------------------------------------------------------------
# evaluation


@pytest.mark.parametrize("lik,sigma", LIKELIHOODS)
def test_importance_estimate_fast_path_equals_traced_path(lik, sigma):
    vae, x = _vae(lik, sigma), _data(lik, n=13)
    out = []
    for fast in (False, True):
        pyro.set_rng_seed(3)
        est = importance_estimate(vae.model, vae.guide, x, num_samples=50, chunk_size=20, batch_size=5, progress=False,
                                  fast_path=fast)
        pyro.set_rng_seed(3)
        bound, se = iwae_bound(vae.model, vae.guide, x, num_particles=5, num_repeats=7, chunk_size=15, batch_size=6,
                               progress=False, fast_path=fast)
        out.append([est.log_px, est.stderr, est.ess, est.elbo, bound, se])
    for a, b in zip(*out):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)


def test_fast_path_is_used_by_default_and_gives_the_traced_values():
    vae, x = _vae("bernoulli", None), _data("bernoulli", n=4)
    pyro.set_rng_seed(0)
    traced = importance_estimate(vae.model, vae.guide, x, num_samples=30, progress=False, fast_path=False).log_px
    pyro.set_rng_seed(0)
    default = importance_estimate(vae.model, vae.guide, x, num_samples=30, progress=False).log_px
    torch.testing.assert_close(default, traced, rtol=1e-12, atol=1e-12)


def test_fast_path_refuses_what_it_cannot_compute():
    vae, x = _vae("normal", 0.3), _data("normal", n=4)

    class Tempered(VAE):
        def model(self, x, num_data=None):
            with poutine.scale(scale=0.5):
                return super().model(x, num_data)

    other = Tempered(10, 3, (7,), likelihood="normal", sigma=0.3).double()
    assert is_plain_vae_pair(vae.model, vae.guide)
    assert not is_plain_vae_pair(other.model, other.guide)
    assert not is_plain_vae_pair(vae.model, other.guide)
    with pytest.raises(ValueError, match="plain vae.model"):
        importance_estimate(other.model, other.guide, x, num_samples=4, progress=False, fast_path=True)
    with pytest.raises(ValueError, match="effect handlers"):
        with poutine.scale(scale=2.0):
            importance_estimate(vae.model, vae.guide, x, num_samples=4, progress=False, fast_path=True)
    # automatic choice under a handler: the traced path runs (and, being unscaled, ignores poutine.scale)
    pyro.set_rng_seed(0)
    with poutine.scale(scale=2.0):
        a = importance_estimate(vae.model, vae.guide, x, num_samples=8, progress=False).log_px
    pyro.set_rng_seed(0)
    b = importance_estimate(vae.model, vae.guide, x, num_samples=8, progress=False, fast_path=True).log_px
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_fast_path_validates_the_data():
    vae = _vae("bernoulli", None)
    with pytest.raises(ValueError, match="binary"):
        importance_estimate(vae.model, vae.guide, torch.full((3, 10), 0.5, dtype=torch.float64), num_samples=4,
                            progress=False)
    with pytest.raises(ValueError, match="features"):
        importance_estimate(vae.model, vae.guide, torch.zeros(3, 9, dtype=torch.float64), num_samples=4, progress=False)


def test_vae_log_weights_shapes_and_prior_term():
    vae, x = _vae("normal", 0.3), _data("normal", n=4)
    t = vae_log_weights(vae, x, 6)
    assert t["log_px_z"].shape == t["log_pz"].shape == t["log_qz"].shape == (6, 4)
    assert t["z"].shape == (6, 4, 3)
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(t["z"]).sum(-1)
    torch.testing.assert_close(t["log_pz"], expected, rtol=1e-12, atol=1e-12)
    loc, scale = t["loc"], t["scale"]
    expected_q = torch.distributions.Normal(loc, scale).log_prob(t["z"]).sum(-1)
    torch.testing.assert_close(t["log_qz"], expected_q, rtol=1e-10, atol=1e-10)


# ------------------------------------------------------------------------------------------------------------
# input validation


def test_fused_objective_rejects_bad_inputs():
    vae = _vae("bernoulli", None)
    with pytest.raises(TypeError, match="pyro_noisevae.models.VAE"):
        FusedVAEObjective(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="objective"):
        FusedVAEObjective(vae, objective="renyi")
    with pytest.raises(ValueError, match="num_particles"):
        FusedVAEObjective(vae, num_particles=0)
    with pytest.raises(ValueError, match="dreg"):
        FusedVAEObjective(vae, objective="trace", gradient_estimator="dreg")
    with pytest.raises(ValueError, match="beta"):
        FusedVAEObjective(vae, beta=-1.0)
    fused = FusedVAEObjective(vae)
    with pytest.raises(ValueError, match=r"shape \(batch, 10\)"):
        fused(torch.zeros(3, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="binary"):
        fused(torch.full((3, 10), 0.5, dtype=torch.float64))
    with pytest.raises(ValueError, match="NaN"):
        fused(torch.full((3, 10), math.nan, dtype=torch.float64))
    with pytest.raises(ValueError, match="num_data"):
        fused(torch.zeros(3, 10, dtype=torch.float64), num_data=2)


def test_fused_objective_in_the_trainer_is_what_train_uses(tmp_path, data_root):
    from pyro_noisevae.training import train

    cfg = TrainConfig(dataset="mnist", data_root=str(data_root), train_split="train", train_size=200, eval_size=50,
                      z_dim=3, hidden_dims=(16,), epochs=1, max_steps=2, out=str(tmp_path / "run"))
    _, history = train(cfg, progress=False)
    cfg_slow = TrainConfig(**{**cfg.to_dict(), "fast_path": False, "out": str(tmp_path / "run_slow")})
    _, history_slow = train(cfg_slow, progress=False)
    a = [r for r in history if r["kind"] == "eval"][-1]["test_elbo"]
    b = [r for r in history_slow if r["kind"] == "eval"][-1]["test_elbo"]
    assert math.isclose(a, b, rel_tol=1e-4)


def test_trace_elbo_one_particle_draws_loc_shape():
    # a non-vectorized single particle must draw eps of shape loc.shape, as Trace_ELBO does
    vae, x = _vae("normal", 0.3), _data("normal")
    ref = _loss_and_grads(vae, lambda: Trace_ELBO(max_plate_nesting=1).differentiable_loss(vae.model, vae.guide, x))
    got = _loss_and_grads(vae, lambda: FusedVAEObjective(vae)(x))
    _assert_same(ref, got, rtol=1e-10)


# ------------------------------------------------------------------------------------------------------------
# ELBO terms


def test_elbo_terms_match_their_definitions():
    vae, x = _vae("normal", 0.3), _data("normal", n=5)
    gen = torch.Generator().manual_seed(4)
    t = elbo_terms(vae, x, num_particles=3, generator=gen)
    loc, scale = vae.encode(x)
    torch.testing.assert_close(t["loc"], loc)
    eps = torch.randn((3,) + loc.shape, generator=torch.Generator().manual_seed(4), dtype=loc.dtype)
    z = loc + scale * eps
    torch.testing.assert_close(t["z"], z)
    recon = vae.likelihood.dist(vae.decoder(z)).to_event(1).log_prob(x).mean(0)
    kl = 0.5 * (loc.pow(2) + scale.pow(2) - 1 - scale.pow(2).log()).sum(-1)
    torch.testing.assert_close(t["recon"], recon, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(t["kl"], kl, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(t["kl_per_dim"].sum(-1), t["kl"])
    torch.testing.assert_close(t["elbo"], recon - kl, rtol=1e-12, atol=1e-12)
    # another Gaussian in place of the encoder's; gradients reach its parameters
    m = torch.zeros(5, 3, dtype=torch.float64, requires_grad=True)
    s = torch.ones(5, 3, dtype=torch.float64)
    other = elbo_terms(vae, x, loc=m, scale=s)
    assert torch.equal(other["kl"], torch.zeros(5, dtype=torch.float64))
    other["elbo"].sum().backward()
    assert m.grad is not None and m.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="together"):
        elbo_terms(vae, x, loc=m)
    with pytest.raises(ValueError, match="num_particles"):
        elbo_terms(vae, x, num_particles=0)
