"""IWAE-k log-likelihood: exact answers on a linear-Gaussian model, chunking, shapes, any model/guide, errors."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer.importance import vectorized_importance_weights

from pyro_noisevae.evaluation import importance_estimate, log_likelihood, summarize
from pyro_noisevae.evaluation.log_likelihood import traced_log_weights, _WeightAccumulator
from pyro_noisevae.handlers import beta_scale
from pyro_noisevae.models import VAE


def _mean_and_se(values, per_point_se):
    """Mean over points and the Monte Carlo standard error of that mean."""
    return values.mean().item(), (per_point_se.pow(2).sum().sqrt() / values.numel()).item()


def test_exact_posterior_proposal_gives_exact_log_px(linear_gaussian):
    # with q = p(z|x), every weight equals p(x): one sample is exact and the error estimate is zero
    lg = linear_gaussian
    x = lg.sample(9)
    est = importance_estimate(lg.model, lg.guide(), x, num_samples=7, chunk_size=3, batch_size=4, progress=False)
    assert torch.allclose(est.log_px, lg.log_px(x), rtol=0, atol=1e-10)
    assert torch.allclose(est.elbo, lg.log_px(x), rtol=0, atol=1e-10)
    assert est.stderr.abs().max() < 1e-6
    assert torch.allclose(est.ess, torch.full_like(est.ess, 7.0), rtol=1e-8)


def test_iwae_k_converges_to_exact_log_px(linear_gaussian):
    lg = linear_gaussian
    x = lg.sample(40)
    exact = lg.log_px(x)
    guide = lg.guide(shift=0.3, scale_factor=1.5)  # wrong mean, too wide: finite weight variance
    errors, ses = [], []
    for k in (1, 10, 100, 10000):
        est = importance_estimate(lg.model, guide, x, num_samples=k, chunk_size=2500, batch_size=None, progress=False)
        err, se = _mean_and_se(est.log_px - exact, est.stderr)
        errors.append(err)
        ses.append(se)
        if k == 1:
            # IWAE-1 is the ELBO: below log p(x) by KL(q || p(z|x)) on average
            kl = lg.kl_to_posterior(x, *lg.encoder(0.3, 1.5)(x))
            assert errors[0] < 0
            assert torch.isnan(est.stderr).all()  # one sample carries no information on its own spread
            assert abs(err + kl.mean().item()) < 4 * (est.log_px - exact + kl).std().item() / math.sqrt(40)
    # the bound tightens monotonically (each step by more than the noise) ...
    for a, b, se in zip(errors, errors[1:], ses[1:]):
        assert b > a
    # ... and at k = 10^4 it agrees with the exact value up to the delta-method bias -se^2/2 and 4 standard errors
    est_bias = -(est.stderr.pow(2) / 2).mean().item()
    assert abs(errors[-1] - est_bias) < 4 * ses[-1]
    assert ses[-1] < 0.05


def test_stderr_is_calibrated(linear_gaussian):
    # across repeated runs the spread of the IWAE-k estimate matches the reported delta-method standard error
    lg = linear_gaussian
    x = lg.sample(1)
    guide = lg.guide(shift=0.2, scale_factor=1.3)
    runs = [importance_estimate(lg.model, guide, x, num_samples=400, chunk_size=400, progress=False) for _ in range(60)]
    values = torch.cat([r.log_px for r in runs])
    reported = torch.cat([r.stderr for r in runs]).mean()
    # the sample sd of 60 draws has relative sd ~ 1/sqrt(2 * 59) ~ 0.09: allow 4 of those
    assert abs(values.std() / reported - 1) < 4 / math.sqrt(2 * 59)


def test_chunked_equals_unchunked(linear_gaussian):
    lg = linear_gaussian
    x = lg.sample(23)
    guide = lg.guide(shift=0.2, scale_factor=1.3)
    whole = importance_estimate(lg.model, guide, x, num_samples=3000, chunk_size=3000, batch_size=None, progress=False)
    chunked = importance_estimate(lg.model, guide, x, num_samples=3000, chunk_size=128, batch_size=5, progress=False)
    assert chunked.log_px.shape == whole.log_px.shape == (23,)
    assert chunked.num_samples == whole.num_samples == 3000
    # different random draws, same estimator: per-point differences are within the combined standard errors
    z = (chunked.log_px - whole.log_px) / (chunked.stderr.pow(2) + whole.stderr.pow(2)).sqrt()
    assert z.abs().max() < 4.5  # 23 points: max of 23 |N(0,1)| exceeds 4.5 with probability < 2e-4
    assert abs(z.mean().item()) < 4 / math.sqrt(23)


def test_running_logsumexp_is_exact():
    # the streaming combination of chunks equals the one-shot computation
    torch.manual_seed(0)
    log_w = 30 * torch.randn(1000, 6, dtype=torch.float64) - 200
    acc = _WeightAccumulator(6, "cpu")
    for piece in log_w.split([1, 10, 333, 256, 400]):
        acc.update(piece)
    res = acc.result(torch.float64)
    assert torch.allclose(res.log_px, log_w.logsumexp(0) - math.log(1000), rtol=0, atol=1e-10)
    assert torch.allclose(res.elbo, log_w.mean(0), rtol=0, atol=1e-10)
    assert torch.allclose(res.elbo_stderr, log_w.std(0) / math.sqrt(1000), rtol=1e-10)
    w = (log_w - log_w.max(0).values).exp()
    assert torch.allclose(res.ess, w.sum(0) ** 2 / w.pow(2).sum(0), rtol=1e-10)


def test_per_point_weights_sum_to_pyros_vectorized_importance_weights(linear_gaussian):
    # Pyro's vectorized_importance_weights sums log weights over the data plate; ours keep one per data point
    lg = linear_gaussian
    x = lg.sample(5)
    guide = lg.guide(shift=0.5)
    pyro.set_rng_seed(3)
    ours = traced_log_weights(lg.model, guide, (x,), {}, 11, 1, None)
    pyro.set_rng_seed(3)
    theirs, _, _ = vectorized_importance_weights(lg.model, guide, x, num_samples=11, max_plate_nesting=1)
    assert ours.shape == (11, 5)
    assert torch.allclose(ours.sum(1), theirs, rtol=1e-12, atol=1e-10)


def _small_vae():
    with pyro.settings.context(module_local_params=True):
        return VAE(x_dim=8, z_dim=3, hidden_dims=(6,), likelihood="bernoulli").double()


def test_vae_matches_hand_written_iwae():
    vae = _small_vae()
    x = torch.bernoulli(torch.full((13, 8), 0.4, dtype=torch.float64))
    pyro.set_rng_seed(7)
    ours = log_likelihood(vae.model, vae.guide, x, num_samples=50, chunk_size=50, batch_size=None, max_plate_nesting=1, progress=False)
    pyro.set_rng_seed(7)
    with torch.no_grad():
        loc, scale = vae.encode(x)
        q = dist.Normal(loc, scale).to_event(1)
        z = q.rsample((50,))
        log_w = dist.Normal(0.0, 1.0).log_prob(z).sum(-1) - q.log_prob(z)
        log_w = log_w + dist.Bernoulli(logits=vae.decoder(z)).log_prob(x).sum(-1)
        expected = log_w.logsumexp(0) - math.log(50)
    assert ours.shape == (13,)
    assert torch.allclose(ours, expected, rtol=0, atol=1e-10)


def test_scales_are_ignored():
    # beta_scale (or any poutine.scale / subsampling factor) changes a training objective, not log p(x)
    vae = _small_vae()
    x = torch.bernoulli(torch.full((4, 8), 0.5, dtype=torch.float64))
    pyro.set_rng_seed(1)
    plain = log_likelihood(vae.model, vae.guide, x, num_samples=20, progress=False)
    pyro.set_rng_seed(1)
    scaled = log_likelihood(beta_scale(vae.model, beta=4.0), beta_scale(vae.guide, beta=4.0), x, num_samples=20, progress=False)
    assert torch.equal(plain, scaled)


def test_keyword_data_and_several_data_args():
    # a conditional model with per-point labels: both tensors are chunked together
    def model(x, y):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(y.unsqueeze(-1).expand(-1, 2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z.sum(-1, keepdim=True), 1.0).to_event(1), obs=x)

    def guide(x, y):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(y.unsqueeze(-1).expand(-1, 2), 1.0).to_event(1))

    x, y = torch.randn(7, 1), torch.randn(7)
    ll = log_likelihood(model, guide, x, y=y, data_arg=(0, "y"), num_samples=2000, batch_size=3, progress=False)
    # exact: x | y ~ N(2y, 1 + 2)
    exact = dist.Normal(2 * y, math.sqrt(3.0)).log_prob(x.squeeze(-1))
    assert ll.shape == (7,)
    assert (ll - exact).abs().max() < 0.1


def test_summarize():
    values = torch.tensor([1.0, 2.0, 3.0, 6.0])
    s = summarize(values, mc_stderr=torch.tensor([0.3, 0.4, 0.0, 0.0]))
    assert s["mean"] == pytest.approx(3.0)
    assert s["stderr"] == pytest.approx(values.std().item() / 2)
    assert s["mc_stderr"] == pytest.approx(0.5 / 4)
    assert s["num_points"] == 4
    assert math.isnan(summarize(torch.tensor([1.0]))["stderr"])


# ---------------------------------------------------------------------------------------------- errors


def _global_latent_model(x):
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", dist.Normal(mu, 1.0), obs=x)


def _global_latent_guide(x):
    pyro.sample("mu", dist.Normal(0.0, 1.0))


def test_errors(linear_gaussian):
    lg = linear_gaussian
    x = lg.sample(4)
    g = lg.guide()
    kw = dict(progress=False)
    with pytest.raises(TypeError, match="torch.Tensor"):
        log_likelihood(lg.model, g, x.tolist(), **kw)
    with pytest.raises(ValueError, match="NaN"):
        log_likelihood(lg.model, g, torch.full_like(x, math.nan), **kw)
    with pytest.raises(ValueError, match="num_samples"):
        log_likelihood(lg.model, g, x, num_samples=0, **kw)
    with pytest.raises(ValueError, match="chunk_size"):
        log_likelihood(lg.model, g, x, chunk_size=-1, **kw)
    with pytest.raises(ValueError, match="batch_size"):
        log_likelihood(lg.model, g, x, batch_size=0, **kw)
    with pytest.raises(ValueError, match="max_plate_nesting"):
        log_likelihood(lg.model, g, x, max_plate_nesting=0, **kw)
    with pytest.raises(TypeError, match="callable"):
        log_likelihood("model", g, x, **kw)
    with pytest.raises(TypeError, match="positional"):
        log_likelihood(lg.model, g, x, data_arg=2, **kw)
    with pytest.raises(ValueError, match="no plate named"):
        log_likelihood(lg.model, g, x, data_plate="rows", **kw)
    with pytest.raises(ValueError, match="outside the data plate|no plate is common"):
        log_likelihood(_global_latent_model, _global_latent_guide, torch.randn(3), **kw)

    def guide_without_z(x):
        pass

    with pytest.raises(ValueError, match="not sampled by the guide"):
        log_likelihood(lg.model, guide_without_z, x, max_plate_nesting=1, **kw)
    with pytest.raises(ValueError, match="1-D tensor"):
        summarize(torch.zeros(2, 2))


def test_data_must_index_the_data_plate():
    def model(x):  # the plate runs over columns, not over the rows that are chunked
        with pyro.plate("data", x.shape[1]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([x.shape[1]]))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x[0])

    def guide(x):
        with pyro.plate("data", x.shape[1]):
            pyro.sample("z", dist.Normal(0.0, 1.0).expand([x.shape[1]]))

    with pytest.raises(ValueError, match="has size 5 but the data chunk has 3 rows"):
        log_likelihood(model, guide, torch.randn(3, 5), progress=False)


def test_iwae_bound_matches_closed_form_elbo_and_lies_between(linear_gaussian):
    from pyro_noisevae.evaluation import iwae_bound

    lg = linear_gaussian
    x = lg.sample(6)
    exact = lg.log_px(x)
    shift, factor = 0.4, 1.5
    guide = lg.guide(shift, factor)
    # K = 1: the ELBO, log p(x) - KL(q || p(z|x)) in closed form
    elbo, se1 = iwae_bound(lg.model, guide, x, num_particles=1, num_repeats=4000, chunk_size=1000, progress=False)
    expected = exact - lg.kl_to_posterior(x, *lg.encoder(shift, factor)(x))
    assert elbo.shape == se1.shape == (6,)
    assert ((elbo - expected).abs() < 4 * se1).all()
    # K = 5: strictly between the ELBO and log p(x) (by more than the Monte Carlo error)
    b5, se5 = iwae_bound(lg.model, guide, x, num_particles=5, num_repeats=800, chunk_size=64, batch_size=4, progress=False)
    assert ((b5 - elbo) > 4 * (se1.pow(2) + se5.pow(2)).sqrt()).all()
    assert ((exact - b5) > 4 * se5).all()
    with pytest.raises(ValueError, match="num_repeats"):
        iwae_bound(lg.model, guide, x, num_repeats=0, progress=False)
