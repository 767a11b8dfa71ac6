"""Inference / approximation / amortization gaps against closed-form KL divergences (linear-Gaussian model)."""

import math

import pytest
import torch

from pyro_noisevae.evaluation import inference_gaps


def _se_of_mean(per_point_se):
    return (per_point_se.pow(2).sum().sqrt() / per_point_se.numel()).item()


@pytest.mark.parametrize("batch_size", [100, 3], ids=["one-batch", "batches-of-3"])
def test_gaps_equal_closed_form_kl(linear_gaussian, batch_size):
    # log p(x) - ELBO(q) = KL(q || p(z|x)) exactly; the diagonal Gaussian family contains the posterior
    lg = linear_gaussian
    x = lg.sample(8)
    shift, factor = 0.5, 1.8
    opts = dict(elbo_samples=4000, num_steps=150, num_particles=10, progress=False, batch_size=batch_size)
    gaps = inference_gaps(lg.model, lg.guide(shift, factor), x, log_px=lg.log_px(x), **opts)
    kl_amortized = lg.kl_to_posterior(x, *lg.encoder(shift, factor)(x))
    # one optimal guide per chunk, each fitted on its own points
    assert len(gaps.optimal_guides) == math.ceil(8 / batch_size)
    loc = torch.cat([q.loc("z") for q in gaps.optimal_guides])
    scale = torch.cat([q.scale("z") for q in gaps.optimal_guides])
    kl_star = lg.kl_to_posterior(x, loc, scale)

    # inference gap = KL(q_amortized || posterior), within Monte Carlo error of the ELBO estimate
    se = _se_of_mean(gaps.stderr("inference_gap"))
    assert abs((gaps.inference_gap - kl_amortized).mean().item()) < 4 * se
    # approximation gap = KL(q* || posterior), which per-sample optimisation drives to ~0
    se = _se_of_mean(gaps.stderr("approximation_gap"))
    assert abs((gaps.approximation_gap - kl_star).mean().item()) < 4 * se
    assert (kl_star < 0.01 * kl_amortized).all()
    # so the amortization gap carries (almost) all of the inference gap
    assert torch.allclose(gaps.inference_gap, gaps.approximation_gap + gaps.amortization_gap, atol=1e-10)
    assert gaps.amortization_gap.mean() > 0.99 * gaps.inference_gap.mean() - 4 * _se_of_mean(gaps.stderr("amortization_gap"))
    s = gaps.summary()
    assert s["log_px_method"] == "given" and s["inference_gap"]["num_points"] == 8


def test_amortization_gap_vanishes_for_the_exact_posterior_map(linear_gaussian):
    lg = linear_gaussian
    x = lg.sample(8)
    lr = 0.05
    gaps = inference_gaps(lg.model, lg.guide(), x, log_px=lg.log_px(x), elbo_samples=2000, num_steps=150, num_particles=10,
                          lr=lr, progress=False)
    # the amortized guide is the posterior: its ELBO is log p(x) exactly (all weights equal)
    assert gaps.inference_gap.abs().max() < 1e-8
    # q* starts at the optimum and can only jitter away from it: the amortization gap is -KL(q* || posterior) ~ 0
    (q_star,) = gaps.optimal_guides
    kl_star = lg.kl_to_posterior(x, q_star.loc("z"), q_star.scale("z"))
    se = _se_of_mean(gaps.stderr("amortization_gap"))
    assert abs((gaps.amortization_gap + kl_star).mean().item()) < 4 * se
    # Adam moves each coordinate by at most ~lr per step, so the optimiser's jitter around the optimum stays
    # within a KL of order z_dim * (lr / smallest posterior sd)^2 / 2 (the resolution of the gap estimate)
    resolution = lg.z_dim * (lr / lg.post_scale.min().item()) ** 2 / 2
    assert kl_star.max() < resolution


@pytest.mark.parametrize("method", ["iw-svi", "iwae"])
def test_estimated_log_px_gives_nonnegative_gaps(linear_gaussian, method):
    lg = linear_gaussian
    x = lg.sample(6)
    exact = lg.log_px(x)
    gaps = inference_gaps(lg.model, lg.guide(0.3, 1.5), x, log_px=method, num_samples=2000, elbo_samples=2000,
                          num_steps=100, num_particles=10, progress=False)
    assert gaps.log_px_method == method
    # log p(x) is estimated to within its error (up to the -se^2/2 bias of log-mean-exp)
    bias = -(gaps.log_px_stderr.pow(2) / 2).mean().item()
    assert abs((gaps.log_px - exact).mean().item() - bias) < 4 * _se_of_mean(gaps.log_px_stderr)
    for name in ("inference_gap", "approximation_gap", "amortization_gap"):
        assert getattr(gaps, name).mean() > -4 * _se_of_mean(gaps.stderr(name))
    assert gaps.inference_gap.mean() > 4 * _se_of_mean(gaps.stderr("inference_gap"))


def test_errors(linear_gaussian):
    lg = linear_gaussian
    x = lg.sample(4)
    g = lg.guide()
    with pytest.raises(ValueError, match="shape \\(4,\\)"):
        inference_gaps(lg.model, g, x, log_px=torch.zeros(3), progress=False)
    with pytest.raises(ValueError, match="NaN"):
        inference_gaps(lg.model, g, x, log_px=torch.full((4,), math.nan), progress=False)
    with pytest.raises(ValueError, match="log_px must be one of"):
        inference_gaps(lg.model, g, x, log_px="ais", progress=False)
    with pytest.raises(ValueError, match="elbo_samples"):
        inference_gaps(lg.model, g, x, elbo_samples=0, progress=False)
    gaps = inference_gaps(lg.model, g, x, log_px=lg.log_px(x), elbo_samples=2, num_steps=1, num_particles=1, progress=False)
    with pytest.raises(ValueError, match="name must be one of"):
        gaps.stderr("total_gap")


# ----------------------------------------------------------------------------------------------------------
# issue 15: the summary, the options given by the caller, the guards and the messages

import importlib  # noqa: E402
import re  # noqa: E402

import tqdm  # noqa: E402

import pyro  # noqa: E402
import pyro.distributions as dist  # noqa: E402
from pyro.infer.autoguide import AutoNormal  # noqa: E402

from pyro_noisevae.evaluation import InferenceGaps  # noqa: E402

GAPS = importlib.import_module("pyro_noisevae.evaluation.gaps")


def _full(message):
    return "^" + re.escape(message) + "$"


def _t(*values):
    return torch.tensor(values, dtype=torch.float64)


def test_summary_entries():
    gaps = InferenceGaps(
        log_px=_t(1.0, 2.0, 4.0), log_px_stderr=_t(0.3, 0.4, 0.0),
        elbo_amortized=_t(0.5, 1.0, 3.0), elbo_amortized_stderr=_t(0.1, 0.2, 0.2),
        elbo_optimal=_t(0.9, 1.5, 3.5), elbo_optimal_stderr=_t(0.0, 0.3, 0.4),
        log_px_method="given",
    )
    # by hand: mean, sd / sqrt(3) of the three values, and sqrt(sum of squared per-point MC errors) / 3, where a
    # gap's per-point error combines its two terms' errors in quadrature
    expected = {
        "log_px": dict(mean=7 / 3, stderr=math.sqrt(7) / 3, mc_stderr=math.sqrt(0.09 + 0.16) / 3),
        "elbo_amortized": dict(mean=1.5, stderr=math.sqrt(5.25) / 3, mc_stderr=math.sqrt(0.09) / 3),
        "elbo_optimal": dict(mean=5.9 / 3, stderr=math.sqrt(5.56) / 3, mc_stderr=math.sqrt(0.25) / 3),
        # values 0.5, 1, 1 / 0.1, 0.5, 0.5 / 0.4, 0.5, 0.5
        "inference_gap": dict(mean=2.5 / 3, stderr=1 / 6, mc_stderr=math.sqrt(0.10 + 0.20 + 0.04) / 3),
        "approximation_gap": dict(mean=1.1 / 3, stderr=2 / 15, mc_stderr=math.sqrt(0.09 + 0.25 + 0.16) / 3),
        "amortization_gap": dict(mean=1.4 / 3, stderr=1 / 30, mc_stderr=math.sqrt(0.01 + 0.13 + 0.20) / 3),
    }
    s = gaps.summary()
    assert set(s) == set(expected) | {"log_px_method"} and s["log_px_method"] == "given"
    for name, entry in expected.items():
        assert set(s[name]) == {"mean", "stderr", "mc_stderr", "num_points"}, name
        assert s[name]["num_points"] == 3, name
        for key, value in entry.items():
            assert s[name][key] == pytest.approx(value, rel=1e-12, abs=1e-15), (name, key)


def test_default_log_px_is_iw_svi(linear_gaussian):
    lg = linear_gaussian
    x = lg.sample(3)
    gaps = inference_gaps(lg.model, lg.guide(), x, num_samples=3, elbo_samples=3, num_steps=1, num_particles=2,
                          progress=False)
    assert gaps.log_px_method == "iw-svi"
    assert gaps.log_px_stderr.shape == (3,) and (gaps.log_px_stderr >= 0).all()  # estimated, not given


def _spies(monkeypatch):
    """Record k and chunk_size of every estimate_chunks call and the options of every fit_local_guide call."""
    ks, fits = [], []
    real_estimate, real_fit = GAPS.estimate_chunks, GAPS.fit_local_guide

    def estimate(log_weights, chunks, num_samples, chunk_size=100, *rest, **kw):
        ks.append((num_samples, chunk_size))
        return real_estimate(log_weights, chunks, num_samples, chunk_size, *rest, **kw)

    def fit(model, guide, *args, **kwargs):
        fits.append(kwargs)
        return real_fit(model, guide, *args, **kwargs)

    monkeypatch.setattr(GAPS, "estimate_chunks", estimate)
    monkeypatch.setattr(GAPS, "fit_local_guide", fit)
    return ks, fits


@pytest.mark.parametrize("method, ks, objectives", [
    ("iwae", [6, 5], ["elbo"]),  # amortized pass with num_samples (it gives log p(x) too), q* with elbo_samples
    ("iw-svi", [5, 5, 6], ["elbo", "iwae"]),  # amortized and q* ELBOs, then IWAE-num_samples under the IW-SVI fit
    ("given", [5, 5], ["elbo"]),
])
def test_counts_reach_the_estimators(linear_gaussian, monkeypatch, method, ks, objectives):
    lg = linear_gaussian
    x = lg.sample(4)
    seen_ks, fits = _spies(monkeypatch)
    log_px = lg.log_px(x) if method == "given" else method
    inference_gaps(lg.model, lg.guide(0.3, 1.2), x, log_px=log_px, num_samples=6, elbo_samples=5, num_steps=2,
                   num_particles=3, lr=0.02, lr_decay=0.5, chunk_size=2, progress=False)
    assert seen_ks == [(k, 2) for k in ks]
    assert [f["objective"] for f in fits] == objectives
    for f in fits:
        assert {k: f[k] for k in ("num_steps", "num_particles", "lr", "lr_decay")} == dict(
            num_steps=2, num_particles=3, lr=0.02, lr_decay=0.5)


def test_batch_size_none_is_one_batch_and_no_steps_keep_the_encoder(linear_gaussian):
    lg = linear_gaussian
    x = lg.sample(5)
    gaps = inference_gaps(lg.model, lg.guide(0.5, 1.8), x, log_px=lg.log_px(x), elbo_samples=3, num_steps=0,
                          batch_size=None, progress=False)
    (q_star,) = gaps.optimal_guides  # one chunk
    loc, scale = lg.encoder(0.5, 1.8)(x)
    torch.testing.assert_close(q_star.loc("z"), loc, rtol=0, atol=0)  # num_steps=0: q* is the encoder's output
    torch.testing.assert_close(q_star.scale("z"), scale, rtol=1e-15, atol=0)


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


def test_named_data_plate(linear_gaussian, monkeypatch):
    # every site lies in both plates, so only the name says which one indexes the data points
    lg = linear_gaussian
    x = lg.sample(12).reshape(4, 3, lg.x_dim)
    model, guide = _two_plate_pair(lg, 3)
    seen = []
    for name in ("pyro_noisevae.evaluation.chunks", "pyro_noisevae.evaluation.log_likelihood"):
        module = importlib.import_module(name)

        def spy(model_trace, guide_trace, data_plate=None, _real=module.site_structure):
            seen.append(data_plate)
            return _real(model_trace, guide_trace, data_plate)

        monkeypatch.setattr(module, "site_structure", spy)
    exact = lg.log_px(x).sum(-1)  # a subject's log p is the sum over its repeats
    gaps = inference_gaps(model, guide, x, log_px="iw-svi", num_samples=3, elbo_samples=3, num_steps=1,
                          num_particles=2, batch_size=3, data_plate="data", progress=False)
    # the name reached the structure probe, the chunking, both fits and every evaluation pass
    assert len(seen) >= 6 and set(seen) == {"data"}
    # the guide is the exact posterior: its ELBO is log p(x_n) exactly, one value per subject
    torch.testing.assert_close(gaps.elbo_amortized, exact, rtol=0, atol=1e-10)


def test_max_plate_nesting_is_checked(linear_gaussian):
    lg = linear_gaussian
    x = lg.sample(3)
    msg = _full("max_plate_nesting must be None (inferred) or an integer >= 1 (the data plate counts as one), got 0")
    with pytest.raises(ValueError, match=msg):
        inference_gaps(lg.model, lg.guide(), x, log_px=lg.log_px(x), max_plate_nesting=0, progress=False)
    # a larger value than needed is valid and changes nothing (exact posterior: every weight is p(x_n))
    gaps = inference_gaps(lg.model, lg.guide(), x, log_px=lg.log_px(x), elbo_samples=3, num_steps=1, num_particles=2,
                          max_plate_nesting=3, progress=False)
    torch.testing.assert_close(gaps.elbo_amortized, lg.log_px(x), rtol=0, atol=1e-10)


def test_a_given_max_plate_nesting_is_used(linear_gaussian):
    # the caller's value is used in every pass, not replaced by the inferred one: too small for two plates, the
    # particle plate collides with the data plate (Pyro's error), although no step is taken
    lg = linear_gaussian
    x = lg.sample(12).reshape(4, 3, lg.x_dim)
    model, guide = _two_plate_pair(lg, 3)
    collision = re.escape('at plates "data" and "num_particles_vectorized", collide at dim=-2')
    with pytest.raises(ValueError, match=collision):
        inference_gaps(model, guide, x, log_px=lg.log_px(x).sum(-1), elbo_samples=3, num_steps=0, data_plate="data",
                       max_plate_nesting=1, progress=False)


def test_keyword_arguments_reach_model_and_guide(linear_gaussian):
    lg = linear_gaussian
    x = lg.sample(4)
    eye = torch.eye(lg.z_dim, dtype=torch.float64)

    def model(x, *, noise):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], lg.z_dim), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ lg.W.T + lg.b, noise).to_event(1), obs=x)

    def guide(x, *, noise):  # the exact posterior for this noise sd
        cov = torch.linalg.inv(eye + lg.W.T @ lg.W / noise**2)
        with pyro.plate("data", x.shape[0]):
            loc = (x - lg.b) @ (cov @ lg.W.T / noise**2).T
            pyro.sample("z", dist.Normal(loc, cov.diagonal().sqrt().expand(x.shape[0], lg.z_dim)).to_event(1))

    exact = dist.MultivariateNormal(lg.b, lg.W @ lg.W.T + 0.81 * torch.eye(lg.x_dim, dtype=torch.float64)).log_prob(x)
    gaps = inference_gaps(model, guide, x, noise=0.9, log_px="iw-svi", num_samples=50, elbo_samples=3, num_steps=1,
                          num_particles=2, progress=False)
    torch.testing.assert_close(gaps.elbo_amortized, exact, rtol=0, atol=1e-10)
    # the IW-SVI proposal is one step (lr 0.05 per coordinate) off the posterior: log p(x) within its errors
    assert ((gaps.log_px - exact).abs() < 6 * gaps.log_px_stderr + 1e-6).all()


def test_given_log_px_takes_the_estimates_dtype(linear_gaussian):
    lg = linear_gaussian
    x = lg.sample(3)
    given = lg.log_px(x).float()
    gaps = inference_gaps(lg.model, lg.guide(), x, log_px=given, elbo_samples=3, num_steps=0, progress=False)
    assert gaps.log_px.dtype == gaps.elbo_amortized.dtype == torch.float64
    assert torch.equal(gaps.log_px, given.double())
    assert torch.equal(gaps.log_px_stderr, torch.zeros(3, dtype=torch.float64))
    assert gaps.inference_gap.dtype == torch.float64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_given_log_px_moves_to_the_estimates_device(linear_gaussian):
    lg = linear_gaussian
    x = lg.sample(3)
    W, b = lg.W.cuda(), lg.b.cuda()
    A, sd = lg.A.cuda(), lg.post_scale.cuda()

    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], lg.z_dim), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ W.T + b, lg.s).to_event(1), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal((x - b) @ A.T, sd.expand(x.shape[0], lg.z_dim)).to_event(1))

    gaps = inference_gaps(model, guide, x.cuda(), log_px=lg.log_px(x), elbo_samples=3, num_steps=0, progress=False)
    assert gaps.log_px.device.type == "cuda"
    torch.testing.assert_close(gaps.inference_gap.cpu(), torch.zeros(3, dtype=torch.float64), rtol=0, atol=1e-10)


def test_guide_with_a_parameter_row_per_point(linear_gaussian):
    # 7 points walked through the data plate 3 at a time (the last chunk padded by wrapping around)
    lg = linear_gaussian
    x = lg.sample(7)
    loc, scale = lg.posterior(x)

    def model(x):
        with pyro.plate("data", x.shape[0], subsample_size=3) as idx:
            z = pyro.sample("z", dist.Normal(x.new_zeros(len(idx), lg.z_dim), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ lg.W.T + lg.b, lg.s).to_event(1), obs=x[idx])

    def guide(x):
        loc_p = pyro.param("loc", loc.clone())
        with pyro.plate("data", x.shape[0], subsample_size=3) as idx:
            pyro.sample("z", dist.Normal(loc_p[idx], scale[idx]).to_event(1))

    gaps = inference_gaps(model, guide, x, log_px=lg.log_px(x), elbo_samples=3, num_steps=0, batch_size=3,
                          progress=False)
    torch.testing.assert_close(gaps.elbo_amortized, lg.log_px(x), rtol=0, atol=1e-10)
    assert len(gaps.optimal_guides) == 3
    torch.testing.assert_close(torch.cat([q.loc("z") for q in gaps.optimal_guides])[:7], loc, rtol=0, atol=0)


def test_autoguide_is_refused(linear_gaussian):
    lg = linear_gaussian
    x = lg.sample(3)
    msg = _full("the guide is a AutoNormal, whose parameters are already per data point: IW-SVI refines an AMORTIZED "
                "guide q(z | x) point by point. Fit the autoguide (its optimum is the per-point refit) and evaluate it "
                "with log_likelihood / importance_estimate instead.")
    with pytest.raises(ValueError, match=msg):
        inference_gaps(lg.model, AutoNormal(lg.model), x, log_px=lg.log_px(x), elbo_samples=2, num_steps=1,
                       num_particles=2, progress=False)


def test_argument_errors_name_the_argument(linear_gaussian):
    lg = linear_gaussian
    x = lg.sample(4)
    g = lg.guide()
    cases = [
        (dict(num_samples=0), "num_samples must be an integer >= 1, got 0"),
        (dict(elbo_samples=0), "elbo_samples must be an integer >= 1, got 0"),
        (dict(batch_size=0), "batch_size must be an integer >= 1 or None, got 0"),
        (dict(lr=0.0), "lr must be in (0.0, inf], got 0.0"),
        (dict(lr=math.inf), "lr must be a finite number, got inf"),
        (dict(lr_decay=1.5), "lr_decay must be in (0.0, 1.0], got 1.5"),
        (dict(log_px=torch.zeros(3)), "log_px given as a tensor must have shape (4,), got (3,)"),
        (dict(log_px=torch.tensor([0.0, math.inf, 0.0, 0.0])), "log_px contains NaN or infinite values"),
        (dict(log_px="ais"), "log_px must be one of ('iw-svi', 'iwae') or a tensor of shape (4,), got 'ais'"),
    ]
    for kwargs, msg in cases:
        with pytest.raises(ValueError, match=_full(msg)):
            inference_gaps(lg.model, g, x, progress=False, **{"num_steps": 1, "num_particles": 2, **kwargs})


def test_progress_bar(linear_gaussian, capsys, monkeypatch):
    # no tqdm monitor thread: a thread left running would hang the processes forked from this one (mutmut)
    monkeypatch.setattr(tqdm.std.tqdm, "monitor_interval", 0)
    lg = linear_gaussian
    x = lg.sample(3)
    opts = dict(log_px=lg.log_px(x), elbo_samples=2, num_steps=1, num_particles=2)
    inference_gaps(lg.model, lg.guide(), x, **opts)
    err = capsys.readouterr().err
    # a labelled bar, removed at the end (leave=False: no final newline)
    assert re.match(r"^\s*inference gaps: ", err) and not err.endswith("\n")
    inference_gaps(lg.model, lg.guide(), x, progress=False, **opts)
    assert capsys.readouterr().err == ""


def test_documented_defaults(linear_gaussian, monkeypatch):
    # the signature's counts reach the estimators and the fits (spies record them, then run a cheap version);
    # 101 points: the default batch of 100 makes two chunks
    lg = linear_gaussian
    x = lg.sample(101)
    ks, fits = [], []
    real_estimate, real_fit = GAPS.estimate_chunks, GAPS.fit_local_guide

    def estimate(log_weights, chunks, num_samples, chunk_size):
        ks.append((num_samples, chunk_size))
        return real_estimate(log_weights, chunks, 2)

    def fit(model, guide, *args, **kwargs):
        fits.append({k: kwargs[k] for k in ("num_steps", "num_particles", "lr", "lr_decay")})
        return real_fit(model, guide, *args, **{**kwargs, "num_steps": 1, "num_particles": 2})

    monkeypatch.setattr(GAPS, "estimate_chunks", estimate)
    monkeypatch.setattr(GAPS, "fit_local_guide", fit)
    gaps = inference_gaps(lg.model, lg.guide(), x, progress=False)
    assert gaps.log_px_method == "iw-svi" and len(gaps.optimal_guides) == 2
    assert ks == [(1000, 100), (1000, 100), (5000, 100)] * 2
    assert fits == [dict(num_steps=100, num_particles=50, lr=0.05, lr_decay=0.1)] * 4
