"""IWAE-k log-likelihood: exact answers on a linear-Gaussian model, chunking, shapes, any model/guide, errors."""

import importlib
import math
import re

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


# ------------------------------------------------------------------ estimates and bounds against hand computations
# The fused VAE path draws exactly as torch's Normal.rsample does (one (P, B, z_dim) draw per pass), so under a
# shared seed a hand-written loop over the same data chunks and particle chunks reproduces every log weight.


def _hand_log_weights(vae, x, num_particles):
    """(P, B) log weights of vae.guide as proposal, written out with torch distributions."""
    loc, scale = vae.encode(x)
    q = dist.Normal(loc, scale).to_event(1)
    z = q.rsample((num_particles,))
    log_w = dist.Normal(0.0, 1.0).log_prob(z).sum(-1) - q.log_prob(z)
    return log_w + dist.Bernoulli(logits=vae.decoder(z)).log_prob(x).sum(-1)


def _hand_draws(vae, x, batch, pieces):
    """Log weights of each data chunk of ``batch`` rows, drawn in particle ``pieces``: a list of (P, B_chunk)."""
    with torch.no_grad():
        return [torch.cat([_hand_log_weights(vae, x[s:s + batch], p) for p in pieces])
                for s in range(0, x.shape[0], batch)]


def _binary(n, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.full((n, 8), 0.4, dtype=torch.float64), generator=gen)


def test_importance_estimate_diagnostics_equal_a_hand_computation():
    # k = 7 drawn 3 + 3 + 1 at a time, data 5 + 3: every field from the definitions on the same draws
    vae, x = _small_vae(), _binary(8)
    pyro.set_rng_seed(11)
    est = importance_estimate(vae.model, vae.guide, x, num_samples=7, chunk_size=3, batch_size=5, progress=False)
    pyro.set_rng_seed(11)
    log_w = torch.cat(_hand_draws(vae, x, 5, (3, 3, 1)), dim=1)  # (7, 8)
    w = (log_w - log_w.max(0).values).exp()  # weights up to a per-point factor, which every ratio cancels
    assert est.num_samples == 7
    torch.testing.assert_close(est.log_px, log_w.logsumexp(0) - math.log(7), rtol=0, atol=1e-10)
    rel_var = w.pow(2).mean(0) / w.mean(0).pow(2) - 1  # E[w^2] / E[w]^2 - 1
    torch.testing.assert_close(est.stderr, (rel_var / 7).sqrt(), rtol=1e-9, atol=0)
    torch.testing.assert_close(est.ess, w.sum(0).pow(2) / w.pow(2).sum(0), rtol=1e-9, atol=0)
    torch.testing.assert_close(est.elbo, log_w.mean(0), rtol=0, atol=1e-10)
    torch.testing.assert_close(est.elbo_stderr, log_w.std(0) / math.sqrt(7), rtol=1e-9, atol=0)
    # the summary: mean and test-set standard error of each, their Monte Carlo errors, and k
    s = est.summary()
    assert set(s) == {"log_px_mean", "log_px_stderr", "log_px_num_points", "log_px_mc_stderr", "elbo_mean",
                      "elbo_stderr", "elbo_num_points", "elbo_mc_stderr", "num_samples"}
    lp, el = log_w.logsumexp(0) - math.log(7), log_w.mean(0)
    assert s["log_px_mean"] == pytest.approx(lp.mean().item(), rel=1e-12)
    assert s["log_px_stderr"] == pytest.approx(lp.std().item() / math.sqrt(8), rel=1e-9)
    assert s["log_px_mc_stderr"] == pytest.approx(math.sqrt((rel_var / 7).sum().item()) / 8, rel=1e-9)
    assert s["elbo_mean"] == pytest.approx(el.mean().item(), rel=1e-12)
    assert s["elbo_stderr"] == pytest.approx(el.std().item() / math.sqrt(8), rel=1e-9)
    assert s["elbo_mc_stderr"] == pytest.approx((log_w.var(0) / 7).sum().sqrt().item() / 8, rel=1e-9)
    assert s["log_px_num_points"] == s["elbo_num_points"] == 8 and s["num_samples"] == 7


def test_log_likelihood_passes_every_option_on():
    # log_likelihood is importance_estimate(...).log_px with the same options (same chunking, so the same draws)
    vae, x = _small_vae(), _binary(8)
    pyro.set_rng_seed(5)
    ll = log_likelihood(vae.model, vae.guide, x, num_samples=7, chunk_size=3, batch_size=5, progress=False,
                        data_arg=0)
    pyro.set_rng_seed(5)
    log_w = torch.cat(_hand_draws(vae, x, 5, (3, 3, 1)), dim=1)
    torch.testing.assert_close(ll, log_w.logsumexp(0) - math.log(7), rtol=0, atol=1e-10)
    # a keyword option reaches importance_estimate: fast_path=True refuses programs that are not a plain VAE
    lg_model = lambda x: vae.model(x)  # noqa: E731
    with pytest.raises(ValueError, match="^fast_path=True but"):
        log_likelihood(lg_model, vae.guide, x, progress=False, fast_path=True)


def test_log_likelihood_defaults_draw_5000_samples_100_at_a_time(monkeypatch):
    # the documented defaults: k = 5000 in passes of 100 particles, data 100 rows at a time
    ll_mod = importlib.import_module("pyro_noisevae.evaluation.log_likelihood")

    seen = []
    monkeypatch.setattr(ll_mod, "vae_log_weights",
                        lambda vae, x, p: seen.append((x.shape[0], p)) or _fake_terms(x, p))
    vae = _small_vae()
    est = log_likelihood(vae.model, vae.guide, _binary(150), progress=False)
    assert est.shape == (150,)
    assert seen == [(100, 100)] * 50 + [(50, 100)] * 50


def _fake_terms(x, p):
    zero = x.new_zeros(p, x.shape[0])
    return {"log_px_z": zero, "log_pz": zero, "log_qz": zero}


def test_iwae_bound_equals_a_hand_computation():
    # K = 3, R = 5 groups, chunk_size 7: passes of 2 + 2 + 1 groups (6, 6, 3 draws), data 4 + 3 rows (N = 7 differs
    # from the guide's layer widths 6 and 3, which make_chunks would take for per-point parameters)
    from pyro_noisevae.evaluation import iwae_bound

    vae, x = _small_vae(), _binary(7)
    pyro.set_rng_seed(2)
    bound, se = iwae_bound(vae.model, vae.guide, x, num_particles=3, num_repeats=5, chunk_size=7, batch_size=4,
                           progress=False)
    pyro.set_rng_seed(2)
    log_w = torch.cat(_hand_draws(vae, x, 4, (6, 6, 3)), dim=1)  # (15, 7): 5 groups of 3 consecutive draws
    groups = torch.stack([log_w[3 * r:3 * r + 3].logsumexp(0) - math.log(3) for r in range(5)])
    torch.testing.assert_close(bound, groups.mean(0), rtol=0, atol=1e-10)
    torch.testing.assert_close(se, groups.std(0) / math.sqrt(5), rtol=1e-6, atol=1e-9)
    # a chunk smaller than K still draws one whole group per pass; R = 1 has no standard error
    pyro.set_rng_seed(2)
    bound1, se1 = iwae_bound(vae.model, vae.guide, x, num_particles=3, num_repeats=1, chunk_size=2, batch_size=None,
                             progress=False)
    pyro.set_rng_seed(2)
    (log_w1,) = _hand_draws(vae, x, 100, (3,))
    torch.testing.assert_close(bound1, log_w1.logsumexp(0) - math.log(3), rtol=0, atol=1e-10)
    assert torch.isnan(se1).all()
    pyro.set_rng_seed(2)
    bound2, se2 = iwae_bound(vae.model, vae.guide, x, num_particles=3, num_repeats=2, chunk_size=2, batch_size=None,
                             progress=False)
    pyro.set_rng_seed(2)
    (log_w2,) = _hand_draws(vae, x, 100, (3, 3))
    groups2 = log_w2.reshape(2, 3, 7).logsumexp(1) - math.log(3)
    torch.testing.assert_close(bound2, groups2.mean(0), rtol=0, atol=1e-10)
    # sd / sqrt(2) for R = 2; the streaming sum of squares minus n mean^2 cancels ~|b|^2 * eps ~ 1e-13 absolutely
    torch.testing.assert_close(se2, (groups2[0] - groups2[1]).abs() / 2, rtol=1e-6, atol=1e-9)


def test_iwae_bound_defaults(monkeypatch):
    # K = 5, R = 100 groups, 500 draws (100 groups) per pass, data 100 rows at a time
    ll_mod = importlib.import_module("pyro_noisevae.evaluation.log_likelihood")
    from pyro_noisevae.evaluation import iwae_bound

    seen = []
    monkeypatch.setattr(ll_mod, "vae_log_weights",
                        lambda vae, x, p: seen.append((x.shape[0], p)) or _fake_terms(x, p))
    vae = _small_vae()
    bound, se = iwae_bound(vae.model, vae.guide, _binary(150), progress=False)
    assert seen == [(100, 500), (50, 500)]
    torch.testing.assert_close(bound, torch.zeros(150, dtype=torch.float64), rtol=0, atol=0)
    torch.testing.assert_close(se, torch.zeros(150, dtype=torch.float64), rtol=0, atol=0)


def test_fused_and_traced_paths_agree_draw_for_draw():
    # fast_path=None uses the closed form for a plain vae.model / vae.guide; it computes what tracing computes
    vae, x = _small_vae(), _binary(8)
    runs = {}
    for fast in (None, True, False):
        pyro.set_rng_seed(4)
        runs[fast] = importance_estimate(vae.model, vae.guide, x, num_samples=5, chunk_size=2, batch_size=3,
                                         fast_path=fast, progress=False)
    for f in ("log_px", "stderr", "ess", "elbo", "elbo_stderr"):
        torch.testing.assert_close(getattr(runs[True], f), getattr(runs[False], f), rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(getattr(runs[None], f), getattr(runs[True], f), rtol=0, atol=0)


def _count_fused(monkeypatch):
    ll_mod = importlib.import_module("pyro_noisevae.evaluation.log_likelihood")
    from pyro_noisevae.models.fused import vae_log_weights

    calls = []
    monkeypatch.setattr(ll_mod, "vae_log_weights", lambda *a: calls.append(1) or vae_log_weights(*a))
    return calls


@pytest.mark.parametrize("data_arg", [0, (0,), [0], "auto"])
def test_the_fused_path_applies_to_plain_calls(monkeypatch, data_arg):
    from pyro_noisevae.evaluation import iwae_bound

    calls = _count_fused(monkeypatch)
    vae, x = _small_vae(), _binary(4)
    est = importance_estimate(vae.model, vae.guide, x, num_samples=3, data_arg=data_arg, progress=False)
    assert calls == [1] and est.log_px.shape == (4,)
    calls.clear()
    importance_estimate(vae.model, vae.guide, x, num_data=4, num_samples=3, data_arg=data_arg, progress=False)
    assert calls == [1]
    calls.clear()
    iwae_bound(vae.model, vae.guide, x, num_particles=2, num_repeats=2, data_arg=data_arg, progress=False)
    assert calls == [1]


def test_the_fused_path_is_not_used_where_it_does_not_apply(monkeypatch):
    calls = _count_fused(monkeypatch)
    vae, x = _small_vae(), _binary(4)
    kw = dict(num_samples=3, progress=False)
    importance_estimate(vae.model, vae.guide, x, fast_path=False, **kw)  # refused
    importance_estimate(vae.model, vae.guide, x, data_arg=None, **kw)  # the plate is subsampled instead
    importance_estimate(lambda x: vae.model(x), vae.guide, x, **kw)  # not the bound method
    with pyro.poutine.scale(scale=2.0):  # a handler around the call
        importance_estimate(vae.model, vae.guide, x, **kw)
    from pyro_noisevae.evaluation import iwae_bound

    iwae_bound(vae.model, vae.guide, x, num_particles=2, num_repeats=2, fast_path=False, progress=False)
    assert calls == []


def test_fast_path_true_names_every_reason_it_does_not_apply(linear_gaussian):
    lg = linear_gaussian
    x = lg.sample(3)
    with pyro.poutine.scale(scale=1.0), pytest.raises(ValueError) as info:
        importance_estimate(lg.model, lg.guide(), x, x, fast_path=True, progress=False)
    assert str(info.value) == (
        "fast_path=True but the fused VAE path does not apply: model and guide are not the plain vae.model / "
        "vae.guide of one pyro_noisevae VAE; the programs must be called with the data only: (x) or "
        "(x, num_data=...); effect handlers are active around the call")
    vae = _small_vae()
    for args, kwargs in (((), dict(data_arg=1)), ((), dict(data_arg="x")), ((), dict(extra=1)), ((3,), {})):
        with pytest.raises(ValueError) as info:
            importance_estimate(vae.model, vae.guide, _binary(3), *args, fast_path=True, progress=False, **kwargs)
        assert str(info.value) == ("fast_path=True but the fused VAE path does not apply: the programs must be "
                                   "called with the data only: (x) or (x, num_data=...)")


def test_the_fused_path_validates_the_data():
    vae = _small_vae()
    with pytest.raises(ValueError, match=re.escape("x has 5 features but the model expects 8")):
        importance_estimate(vae.model, vae.guide, torch.zeros(3, 5, dtype=torch.float64), progress=False)
    halves = torch.full((3, 8), 0.5, dtype=torch.float64)
    with pytest.raises(ValueError, match=re.escape("likelihood 'bernoulli' needs binary data (every value 0 or 1)")):
        importance_estimate(vae.model, vae.guide, halves, fast_path=True, progress=False)
    with pyro.validation_enabled(False):  # the support check is part of Pyro's validation only
        est = importance_estimate(vae.model, vae.guide, halves, num_samples=3, fast_path=True, progress=False)
    assert torch.isfinite(est.log_px).all()


_NAN_MESSAGE = ("the importance log-weights contain NaN; check that the data lie in the likelihood's support and "
                "that the guide's parameters are finite")


@pytest.mark.parametrize("fast_path", [True, False])
def test_nan_log_weights_are_refused(fast_path):
    vae, x = _small_vae(), _binary(3)
    with torch.no_grad():
        next(vae.decoder.parameters()).fill_(math.nan)
    with pyro.validation_enabled(False), pytest.raises(ValueError, match=f"^{re.escape(_NAN_MESSAGE)}$"):
        importance_estimate(vae.model, vae.guide, x, num_samples=3, fast_path=fast_path, progress=False)


def test_float32_programs_get_float32_estimates():
    with pyro.settings.context(module_local_params=True):
        vae = VAE(x_dim=8, z_dim=3, hidden_dims=(6,), likelihood="bernoulli")
    x = _binary(5).float()
    from pyro_noisevae.evaluation import iwae_bound

    for fast in (True, False):
        est = importance_estimate(vae.model, vae.guide, x, num_samples=4, chunk_size=3, fast_path=fast,
                                  progress=False)
        for f in ("log_px", "stderr", "ess", "elbo", "elbo_stderr"):
            assert getattr(est, f).dtype == torch.float32, f
        bound, se = iwae_bound(vae.model, vae.guide, x, num_particles=2, num_repeats=3, fast_path=fast,
                               progress=False)
        assert bound.dtype == se.dtype == torch.float32


def test_accumulation_is_in_float64_except_on_mps():
    from pyro_noisevae.evaluation.log_likelihood import _accumulator_dtype

    assert _accumulator_dtype("cpu") is torch.float64
    assert _accumulator_dtype(torch.device("cpu")) is torch.float64
    assert _accumulator_dtype("mps") is torch.float32  # Apple GPUs have no float64
    # float32 log weights far from 0: their float32 sum would lose the small spread
    lw = (1e4 + torch.tensor([[0.0], [1e-3], [2e-3], [3e-3]], dtype=torch.float64)).float()
    acc = _WeightAccumulator(1, "cpu")
    acc.update(lw[:2])
    acc.update(lw[2:])
    exact = lw.double()
    res = acc.result(torch.float64)
    torch.testing.assert_close(res.elbo_stderr, exact.std(0) / 2, rtol=1e-9, atol=0)
    torch.testing.assert_close(res.log_px, exact.logsumexp(0) - math.log(4), rtol=0, atol=1e-9)


def test_equal_weights_have_zero_error_not_nan():
    # rounding can make E[w^2]/E[w]^2 - 1 and the sum of squares minus n mean^2 slightly negative: clamped to 0
    vals = torch.linspace(-50, 50, 2001, dtype=torch.float64)
    for k in (2, 3, 7):
        acc = _WeightAccumulator(vals.numel(), "cpu")
        acc.update(vals.expand(k, -1))
        res = acc.result(torch.float64)
        # float rounding of lse2 - 2 lse (|lse| <= 100, ulp ~ 1e-14) and of sumsq - sum^2/k leaves at most ~1e-6
        assert ((res.stderr >= 0) & (res.stderr < 1e-6)).all(), k
        assert ((res.elbo_stderr >= 0) & (res.elbo_stderr < 1e-5)).all(), k
        torch.testing.assert_close(res.ess, torch.full_like(vals, float(k)), rtol=1e-12, atol=0)
        torch.testing.assert_close(res.log_px, vals, rtol=0, atol=1e-12)


def test_two_samples_have_their_sample_standard_error():
    # k = 2: sd with the n - 1 divisor, |a - b| / sqrt(2), over sqrt(2) -> |a - b| / 2
    lw = torch.tensor([[0.0, -3.0], [1.0, 2.0]], dtype=torch.float64)
    acc = _WeightAccumulator(2, "cpu")
    acc.update(lw)
    res = acc.result(torch.float64)
    torch.testing.assert_close(res.elbo_stderr, torch.tensor([0.5, 2.5], dtype=torch.float64), rtol=1e-12, atol=0)
    torch.testing.assert_close(res.elbo, torch.tensor([0.5, -0.5], dtype=torch.float64), rtol=0, atol=1e-15)
    # weights 1 and e: E[w^2]/E[w]^2 - 1 = 2 (1 + e^2) / (1 + e)^2 - 1, over k = 2
    e = math.e
    assert res.stderr[0].item() == pytest.approx(math.sqrt((2 * (1 + e * e) / (1 + e) ** 2 - 1) / 2), rel=1e-12)
    assert res.ess[0].item() == pytest.approx((1 + e) ** 2 / (1 + e * e), rel=1e-12)
    assert res.num_samples == 2


def test_concatenated_estimates_keep_their_order_and_k():
    from pyro_noisevae.evaluation import ImportanceEstimate

    parts = [ImportanceEstimate(*(torch.arange(3.0) + 10 * i + j for j in range(5)), num_samples=9) for i in range(2)]
    both = ImportanceEstimate.cat(iter(parts))
    assert both.num_samples == 9
    for j, f in enumerate(("log_px", "stderr", "ess", "elbo", "elbo_stderr")):
        assert torch.equal(getattr(both, f), torch.tensor([0.0, 1, 2, 10, 11, 12]) + j), f


def test_progress_bars_are_shown_by_default_and_removed(capsys, linear_gaussian):
    from pyro_noisevae.evaluation import iwae_bound

    lg = linear_gaussian
    x = lg.sample(5)
    log_likelihood(lg.model, lg.guide(), x, num_samples=7, chunk_size=3, batch_size=2)
    err = capsys.readouterr().err
    assert "IWAE-7:" in err and "0/9" in err  # 3 data chunks x 3 particle chunks
    assert not err.endswith("\n")  # leave=False: the finished bar is erased (a kept one ends its line)
    importance_estimate(lg.model, lg.guide(), x, num_samples=4, chunk_size=4)
    err = capsys.readouterr().err
    assert "IWAE-4:" in err and "0/1" in err and not err.endswith("\n")
    iwae_bound(lg.model, lg.guide(), x, num_particles=2, num_repeats=3, chunk_size=4, batch_size=3)
    err = capsys.readouterr().err
    assert "IWAE-2 bound:" in err and "0/4" in err and not err.endswith("\n")  # 2 data chunks x 2 passes
    importance_estimate(lg.model, lg.guide(), x, num_samples=4, progress=False)
    iwae_bound(lg.model, lg.guide(), x, num_particles=2, num_repeats=3, progress=False)
    log_likelihood(lg.model, lg.guide(), x, num_samples=4, progress=False)
    assert capsys.readouterr().err == ""


def test_estimate_chunks_names_its_bar(capsys):
    from pyro_noisevae.evaluation.chunks import Chunk
    from pyro_noisevae.evaluation.log_likelihood import estimate_chunks

    chunks = [Chunk(slice(0, 2), (), {}, 2), Chunk(slice(2, 4), (), {}, 3, valid=2)]
    calls = []

    def log_weights(chunk, num_particles, first):
        calls.append((chunk.num_rows, num_particles, first))
        return torch.zeros(num_particles, chunk.num_rows)

    est = estimate_chunks(log_weights, chunks, 5, chunk_size=2, progress=True, desc="my bar")
    err = capsys.readouterr().err
    assert "my bar:" in err and "0/6" in err and "IWAE" not in err
    assert calls == [(2, 2, True), (2, 2, False), (2, 1, False), (3, 2, True), (3, 2, False), (3, 1, False)]
    assert est.log_px.shape == (4,) and est.num_samples == 5  # the padding row of the second chunk is dropped
    estimate_chunks(log_weights, chunks, 150)  # defaults: no bar, 100 draws per pass
    assert capsys.readouterr().err == ""
    assert calls[-4:] == [(2, 100, True), (2, 50, False), (3, 100, True), (3, 50, False)]


def test_a_denoising_guide_with_several_corruptions_is_scored_in_its_plate(linear_gaussian):
    # M = 2 copies of the exact posterior (no corruption): its model is put in the corruption plate, every one of the
    # M x k weights equals p(x), and the copies count as samples
    from pyro_noisevae.evaluation import iwae_bound
    from pyro_noisevae.guides import DenoisingGuide

    lg = linear_gaussian
    x = lg.sample(5)

    def encoder(x_tilde):  # (M, B, D) -> (M, B, K)
        loc = (x_tilde - lg.b) @ lg.A.T
        return loc, lg.post_scale.expand(loc.shape)

    guide = DenoisingGuide.from_encoder(encoder, None, num_corruptions=2)
    est = importance_estimate(lg.model, guide, x, num_samples=3, chunk_size=2, batch_size=3, progress=False)
    assert est.num_samples == 6
    torch.testing.assert_close(est.log_px, lg.log_px(x), rtol=0, atol=1e-10)
    torch.testing.assert_close(est.ess, torch.full((5,), 6.0, dtype=torch.float64), rtol=1e-10, atol=0)
    bound, _ = iwae_bound(lg.model, guide, x, num_particles=3, num_repeats=2, progress=False)
    torch.testing.assert_close(bound, lg.log_px(x), rtol=0, atol=1e-10)


def test_global_latents_are_refused_with_the_fix():
    with pytest.raises(ValueError) as info:
        log_likelihood(_global_latent_model, _global_latent_guide, torch.randn(3), progress=False)
    assert str(info.value) == (
        "latent sites ['mu'] are global (outside the data plate 'data'): they couple the data points, so log p(x) does "
        "not split into per-point terms. Condition on the global latents (pyro.condition / poutine.condition) to "
        "evaluate the conditional model per point, or train and compare with IWAE_ELBO, which bounds the joint "
        "evidence with an ELBO term for the globals.")


def test_the_traced_path_validates_each_data_chunk():
    # Pyro's checks (here VAE.model's own data check, which runs under validation) run on the first pass of a chunk
    vae = _small_vae()
    halves = torch.full((3, 8), 0.5, dtype=torch.float64)
    message = "likelihood 'bernoulli' needs binary data (every value 0 or 1)"
    with pytest.raises(ValueError, match=re.escape(message)):
        importance_estimate(vae.model, vae.guide, halves, num_samples=2, fast_path=False, progress=False)
    x = torch.cat([_binary(4), halves])  # the second data chunk (rows 4 to 6) is the invalid one
    with pytest.raises(ValueError, match=re.escape(message)):
        importance_estimate(vae.model, vae.guide, x, num_samples=2, batch_size=4, fast_path=False, progress=False)


class _RecordingBar:
    """Stands in for tqdm: records its options and the total of its updates."""

    made = []

    def __init__(self, **kwargs):
        self.kwargs, self.n = kwargs, 0
        _RecordingBar.made.append(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n=1):
        self.n += n


def test_progress_bar_options(monkeypatch, linear_gaussian):
    from pyro_noisevae.evaluation import iwae_bound

    ll_mod = importlib.import_module("pyro_noisevae.evaluation.log_likelihood")
    monkeypatch.setattr(ll_mod, "tqdm", _RecordingBar)
    _RecordingBar.made.clear()
    lg = linear_gaussian
    x = lg.sample(5)
    importance_estimate(lg.model, lg.guide(), x, num_samples=7, chunk_size=3, batch_size=2, progress=True)
    iwae_bound(lg.model, lg.guide(), x, num_particles=2, num_repeats=3, chunk_size=4, batch_size=3, progress=False)
    est, bound = _RecordingBar.made
    assert est.kwargs == dict(total=9, desc="IWAE-7", disable=False, leave=False) and est.n == 9
    assert bound.kwargs == dict(total=4, desc="IWAE-2 bound", disable=True, leave=False) and bound.n == 4


def test_importance_estimate_defaults(monkeypatch):
    # k = 5000 in passes of 100 particles, data 100 rows at a time
    ll_mod = importlib.import_module("pyro_noisevae.evaluation.log_likelihood")
    seen = []
    monkeypatch.setattr(ll_mod, "vae_log_weights",
                        lambda vae, x, p: seen.append((x.shape[0], p)) or _fake_terms(x, p))
    vae = _small_vae()
    est = importance_estimate(vae.model, vae.guide, _binary(150), progress=False)
    assert est.num_samples == 5000 and est.log_px.shape == (150,)
    assert seen == [(100, 100)] * 50 + [(50, 100)] * 50


def test_float32_log_weights_are_accumulated_in_float64(monkeypatch):
    # log weights ~ -1e4 with a spread of 1e-2: float32 sums of squares (~1e8, ulp 8) would lose the spread entirely
    from pyro_noisevae.evaluation import iwae_bound

    ll_mod = importlib.import_module("pyro_noisevae.evaluation.log_likelihood")
    # 8 draws of one point, rounded once to float32; everything after that must be exact to float64 precision
    log_w32 = (-1e4 + 0.01 * torch.arange(8, dtype=torch.float64)).float()
    drawn = [0]

    def fake(vae, x, p):  # the next p of the 8 draws, one point
        piece, drawn[0] = log_w32[drawn[0]:drawn[0] + p], (drawn[0] + p) % 8
        zero = torch.zeros(p, x.shape[0])
        return {"log_px_z": piece[:, None].expand(p, x.shape[0]).clone(), "log_pz": zero, "log_qz": zero}

    monkeypatch.setattr(ll_mod, "vae_log_weights", fake)
    with pyro.settings.context(module_local_params=True):
        vae = VAE(x_dim=8, z_dim=3, hidden_dims=(6,), likelihood="bernoulli")
    x = _binary(1).float()
    lw = log_w32.double()
    est = importance_estimate(vae.model, vae.guide, x, num_samples=8, chunk_size=4, progress=False)
    torch.testing.assert_close(est.elbo_stderr.double(), lw.std().reshape(1) / math.sqrt(8), rtol=1e-5, atol=0)
    bound, se = iwae_bound(vae.model, vae.guide, x, num_particles=2, num_repeats=4, chunk_size=4, progress=False)
    groups = lw.reshape(4, 2).logsumexp(1) - math.log(2)
    torch.testing.assert_close(bound.double(), groups.mean().reshape(1), rtol=1e-7, atol=0)
    torch.testing.assert_close(se.double(), groups.std().reshape(1) / 2, rtol=1e-5, atol=0)


def test_the_accumulator_stays_on_the_device_of_the_weights():
    # the running sums live where the log weights are (checked with PyTorch's shape-only "meta" device)
    acc = _WeightAccumulator(3, torch.device("meta"))
    acc.update(torch.zeros(4, 3, device="meta"))
    res = acc.result(torch.float32)
    for f in ("log_px", "stderr", "ess", "elbo", "elbo_stderr"):
        assert getattr(res, f).device.type == "meta" and getattr(res, f).shape == (3,), f


def test_summarize_checks_its_arguments():
    for bad, shown in ((torch.zeros(2, 2), "torch.Size([2, 2])"), (torch.zeros(0), "torch.Size([0])"),
                       ([1.0, 2.0], "[1.0, 2.0]")):
        with pytest.raises(ValueError) as info:
            summarize(bad)
        assert str(info.value) == f"values must be a 1-D tensor with at least one entry, got {shown}"
    for bad in (torch.zeros(2), [0.1, 0.1, 0.1], torch.zeros(3, 1)):
        with pytest.raises(ValueError) as info:
            summarize(torch.ones(3), mc_stderr=bad)
        assert str(info.value) == "mc_stderr must be a tensor of shape (3,)"
    two = summarize(torch.tensor([1.0, 4.0]))  # N = 2 already has a standard error: sd / sqrt(2) = 1.5
    assert two["stderr"] == pytest.approx(1.5, rel=1e-12) and "mc_stderr" not in two


def test_summarize_computes_in_float64():
    # float32 values near 1e4: the float32 mean and sd would carry relative errors ~1e-7
    values = (1e4 + torch.tensor([0.1, 0.2, 0.35, 0.4], dtype=torch.float64)).float()
    v = [float(t) for t in values]  # the float32 values, exactly, as Python floats
    import statistics

    s = summarize(values, mc_stderr=torch.full((4,), 0.1, dtype=torch.float32))
    assert s["mean"] == pytest.approx(statistics.fmean(v), rel=1e-14)
    assert s["stderr"] == pytest.approx(statistics.stdev(v) / 2, rel=1e-10)
    assert s["mc_stderr"] == pytest.approx(math.sqrt(4 * float(torch.tensor(0.1)) ** 2) / 4, rel=1e-12)


def test_invalid_counts_are_named_in_full(linear_gaussian):
    from pyro_noisevae.evaluation import iwae_bound

    lg = linear_gaussian
    x, g = lg.sample(3), lg.guide()
    cases = [(importance_estimate, "num_samples", 0), (importance_estimate, "chunk_size", 0),
             (importance_estimate, "batch_size", 0), (iwae_bound, "num_particles", 0),
             (iwae_bound, "num_repeats", -1), (iwae_bound, "chunk_size", 1.5), (iwae_bound, "batch_size", 0)]
    for fn, name, bad in cases:
        extra = " or None" if name == "batch_size" else ""
        with pytest.raises(ValueError) as info:
            fn(lg.model, g, x, progress=False, **{name: bad})
        assert str(info.value) == f"{name} must be an integer >= 1{extra}, got {bad!r}", (fn, name)
    for fn in (importance_estimate, iwae_bound):
        with pytest.raises(ValueError, match=re.escape("max_plate_nesting must be None (inferred) or an integer >= 1")):
            fn(lg.model, g, x, max_plate_nesting=0, progress=False)


def test_the_data_plate_size_error_in_full():
    def model(x):  # the plate runs over columns, not over the rows that are chunked
        with pyro.plate("data", x.shape[1]):
            pyro.sample("x", dist.Normal(0.0, 1.0), obs=x[0])

    with pytest.raises(ValueError) as info:
        log_likelihood(model, lambda x: None, torch.randn(3, 5), progress=False)
    assert str(info.value) == (
        "the data plate 'data' has size 5 but the data chunk has 3 rows; the data argument(s) named by data_arg are "
        "sliced along their first dim, which must index the data plate (for a guide with per-point parameters, pass "
        "data_arg=None to subsample the plate instead)")


def test_traced_log_weights_checks_by_default():
    vae = _small_vae()
    halves = torch.full((3, 8), 0.5, dtype=torch.float64)
    with pytest.raises(ValueError, match=re.escape("likelihood 'bernoulli' needs binary data")):
        traced_log_weights(vae.model, vae.guide, (halves,), {}, 2, 1, None)
    log_w = traced_log_weights(vae.model, vae.guide, (halves,), {}, 2, 1, None, check=False)
    assert log_w.shape == (2, 3) and torch.isfinite(log_w).all()


def test_iwae_bound_checks_the_first_pass_of_each_chunk():
    from pyro_noisevae.evaluation import iwae_bound

    vae = _small_vae()
    x = torch.cat([_binary(4), torch.full((3, 8), 0.5, dtype=torch.float64)])  # rows 4 to 6 invalid
    with pytest.raises(ValueError, match=re.escape("likelihood 'bernoulli' needs binary data")):
        iwae_bound(vae.model, vae.guide, x, num_particles=2, num_repeats=2, batch_size=4, fast_path=False,
                   progress=False)


def _two_plate_programs(global_latent):
    def model(x):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0)) if global_latent else x.new_zeros(())
        with pyro.plate("data", x.shape[0], dim=-2), pyro.plate("cols", x.shape[1], dim=-1):
            z = pyro.sample("z", dist.Normal(mu, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(x):
        if global_latent:
            pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("data", x.shape[0], dim=-2), pyro.plate("cols", x.shape[1], dim=-1):
            pyro.sample("z", dist.Normal(x / 2, math.sqrt(0.5)))  # the exact posterior when mu = 0

    return model, guide


@pytest.mark.parametrize("data_arg", [0, None])
def test_a_named_data_plate_is_used_throughout(data_arg):
    # two plates hold every site: data_plate="data" says which one indexes the points (rows)
    from pyro_noisevae.evaluation import iwae_bound

    model, guide = _two_plate_programs(global_latent=False)
    x = torch.randn(4, 3, dtype=torch.float64)
    exact = dist.Normal(x.new_zeros(()), math.sqrt(2.0)).log_prob(x).sum(-1)
    est = importance_estimate(model, guide, x, num_samples=2, data_plate="data", data_arg=data_arg, progress=False)
    torch.testing.assert_close(est.log_px, exact, rtol=0, atol=1e-10)
    bound, _ = iwae_bound(model, guide, x, num_particles=2, num_repeats=2, data_plate="data", data_arg=data_arg,
                          progress=False)
    torch.testing.assert_close(bound, exact, rtol=0, atol=1e-10)
    # with a global latent, the named plate is the one the refusal names (unnamed, two plates would be ambiguous)
    model, guide = _two_plate_programs(global_latent=True)
    # (max_plate_nesting given: no probe first, the vectorized pass itself must use the named plate)
    for fn in (importance_estimate, iwae_bound):
        for nesting in (None, 2):
            with pytest.raises(ValueError) as info:
                fn(model, guide, x, data_plate="data", data_arg=data_arg, max_plate_nesting=nesting, progress=False)
            assert str(info.value).startswith("latent sites ['mu'] are global (outside the data plate 'data')")


def test_a_given_max_plate_nesting_is_used_not_inferred():
    # a data plate at dim -2 needs max_plate_nesting >= 2; the value given is obeyed (and Pyro reports the clash)
    from pyro_noisevae.evaluation import iwae_bound

    model, guide = _two_plate_programs(global_latent=False)
    x = torch.randn(4, 3, dtype=torch.float64)
    for fn in (importance_estimate, iwae_bound):
        with pytest.raises(ValueError, match=re.escape('at plates "data" and "num_particles_vectorized", collide at '
                                                       'dim=-2')):
            fn(model, guide, x, max_plate_nesting=1, data_plate="data", progress=False)


def test_a_program_without_plates_is_refused():
    # no plate over data points: there is no per-point log-likelihood to estimate
    def model(x):
        z = pyro.sample("z", dist.Normal(torch.zeros((), dtype=x.dtype), 1.0))
        pyro.sample("x", dist.Normal(z[..., None, None], 1.0).expand(z.shape + x.shape).to_event(2), obs=x)

    def guide(x):
        pyro.sample("z", dist.Normal(x.sum() / 4, 0.5))

    with pytest.raises(ValueError) as info:
        importance_estimate(model, guide, torch.randn(1, 3, dtype=torch.float64), num_samples=3, progress=False)
    assert str(info.value) == (
        "no plate over data points holds the observed sites; a per-data-point log weight needs the data in a "
        "pyro.plate that contains every local sample site (name it with data_plate= if there are several)")


def test_iwae_bound_of_a_guide_with_per_point_parameters(linear_gaussian):
    # data_arg=None (and "auto", which detects the parameter rows): the plate is subsampled, the answer exact
    from pyro_noisevae.evaluation import iwae_bound

    lg = linear_gaussian
    x = lg.sample(7)
    loc, scale = lg.posterior(x)

    def guide(x):
        loc_p = pyro.param("loc", loc.clone())
        with pyro.plate("data", x.shape[0]) as idx:
            pyro.sample("z", dist.Normal(loc_p[idx], scale[idx]).to_event(1))

    for data_arg in (None, "auto"):
        bound, _ = iwae_bound(lg.model, guide, x, num_particles=2, num_repeats=2, batch_size=3, data_arg=data_arg,
                              progress=False)
        torch.testing.assert_close(bound, lg.log_px(x), rtol=0, atol=1e-10)
