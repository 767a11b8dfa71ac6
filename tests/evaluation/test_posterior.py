"""compare_posteriors: NUTS against the exact Gaussian posterior, KL between Gaussian fits, arviz output."""

import warnings

import matplotlib
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from scipy.stats import chi2

from pyro_noisevae.evaluation import PosteriorComparison, compare_posteriors, gaussian_kl, plot_pair
from pyro_noisevae.models import VAE
from pyro_noisevae.models.linear import LinearVAE

matplotlib.use("Agg")

with warnings.catch_warnings():
    # arviz's once-a-day announcement of its 1.0 refactor (a FutureWarning at import) is not about this code
    warnings.filterwarnings("ignore", message=r"\s*ArviZ is undergoing a major refactor", category=FutureWarning)
    import arviz as az



def _linear_vae_with_exact_guide(D=4, K=2, seed=0):
    """A float64 linear VAE with fixed decoder and its guide set to the exact posterior (full covariance)."""
    g = torch.Generator().manual_seed(seed)
    vae = LinearVAE(D, K, guide_covariance="full").double()
    W = torch.randn(D, K, generator=g, dtype=torch.float64)
    b = torch.randn(D, generator=g, dtype=torch.float64)
    s2 = torch.tensor(0.5, dtype=torch.float64)
    M = W.T @ W + s2 * torch.eye(K, dtype=torch.float64)
    A = torch.linalg.solve(M, W.T)
    with torch.no_grad():
        vae.W.copy_(W)
        vae.b.copy_(b)
        vae.sigma = s2.sqrt()
        vae.enc_weight.copy_(A)
        vae.enc_bias.copy_(-A @ b)
        vae.enc_scale_tril = torch.linalg.cholesky(s2 * torch.linalg.inv(M))
    x = (W @ torch.tensor([1.0, -0.5], dtype=torch.float64) + b + 0.3).unsqueeze(0)
    return vae, x


@pytest.fixture(scope="module")
def linear_result():
    """One NUTS run (2 chains x 250 draws after 100 warm-up steps) shared by the tests below."""
    pyro.enable_validation(True)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    vae, x = _linear_vae_with_exact_guide()
    exact = vae.exact_posterior(x)
    res = compare_posteriors(
        vae.model, vae.guide, x, exact=exact, num_samples=250, num_warmup=100, num_chains=2, seed=0
    )
    torch.set_num_threads(n)
    pyro.clear_param_store()
    return res, exact


def test_nuts_agrees_with_exact_posterior(linear_result):
    res, exact = linear_result
    mu = exact.mean[0].numpy()
    cov = exact.covariance_matrix[0].numpy()
    post = res.idata.posterior["z"].sel(source="nuts")  # (chain, draw, z_dim)
    assert post.shape == (2, 250, 2)
    assert res.num_divergences == 0
    # convergence: rank-normalized split r-hat of every coordinate
    assert float(az.rhat(post.to_dataset(name="z"))["z"].max()) < 1.01
    # means within 4 Monte Carlo standard errors (arviz's MCSE = sd / sqrt(ESS))
    z = post.values
    mcse = az.mcse(post.to_dataset(name="z"), method="mean")["z"].values
    assert np.all(np.abs(z.mean((0, 1)) - mu) < 4 * mcse)
    # covariances: Cov_ij = E[(z_i - mu_i)(z_j - mu_j)] with the exact mu, so each entry is the mean of a
    # derived chain whose MCSE arviz computes from its own ESS
    for i in range(2):
        for j in range(i, 2):
            u = (z[..., i] - mu[i]) * (z[..., j] - mu[j])
            se = float(az.mcse(u, method="mean"))
            assert abs(u.mean() - cov[i, j]) < 4 * se, (i, j, u.mean(), cov[i, j], se)
    # the NUTS row of the table reports the same numbers
    assert res.table.loc["nuts", "r_hat"] < 1.01
    assert res.table.loc["nuts", "ess_bulk"] > 100
    np.testing.assert_allclose(res.means["nuts"], z.reshape(-1, 2).mean(0))


def test_kl_is_zero_for_identical_gaussians_and_positive_otherwise(linear_result):
    res, exact = linear_result
    # the guide was set to the exact posterior and both moments are analytic: identical Gaussians
    assert res.moments_from == {"exact": "analytic", "guide": "analytic", "nuts": "samples"}
    assert res.kl["guide||exact"] == 0.0
    np.testing.assert_allclose(res.means["guide"], res.means["exact"], atol=1e-12)
    # NUTS's Gaussian fit differs by Monte Carlo error only: positive and small. For a Gaussian fitted to n
    # effective draws, 2n KL is asymptotically chi-squared with d(d+3)/2 degrees of freedom (d means, d(d+1)/2
    # covariances); we bound it by the 99.9% quantile with n = the smallest bulk ESS
    d = 2
    bound = chi2.ppf(0.999, d * (d + 3) / 2) / (2 * res.table.loc["nuts", "ess_bulk"])
    assert 0 < res.kl["nuts||exact"] < bound
    assert 0 < res.kl["guide||nuts"] < bound
    # table layout
    assert list(res.table.index) == ["exact", "nuts", "guide"]
    assert res.table.loc["exact", "KL(.||exact)"] == 0.0
    assert res.table.loc["guide", "KL(.||exact)"] == 0.0
    assert res.table.loc["nuts", "KL(.||exact)"] == res.kl["nuts||exact"]
    for col in ("mean[z[0]]", "cov[z[0],z[1]]", "r_hat", "ess_bulk", "ess_tail"):
        assert col in res.table.columns
    assert list(res.idata.posterior.coords["source"].values) == ["exact", "nuts", "guide"]
    assert "diverging" in res.idata.sample_stats
    assert res.labels == ["z[0]", "z[1]"]
    assert isinstance(res, PosteriorComparison) and "KL(guide||exact)" in repr(res)
    # one source as its own InferenceData for arviz plots; NUTS keeps its sample stats
    nuts = res.inference_data("nuts")
    assert "source" not in nuts.posterior.dims and "sample_stats" in nuts.groups()
    np.testing.assert_array_equal(nuts.posterior["z"].values.reshape(-1, 2), res.samples["nuts"])
    with pytest.raises(ValueError, match="source"):
        res.inference_data("hmc")


def test_kl_of_a_perturbed_guide_is_positive_and_exact():
    vae, x = _linear_vae_with_exact_guide()
    with torch.no_grad():
        vae.enc_bias.add_(torch.tensor([0.3, -0.2], dtype=torch.float64))
        vae.enc_scale_tril = 1.5 * vae.enc_scale_tril
    exact = vae.exact_posterior(x)
    res = compare_posteriors(vae.model, vae.guide, x, exact=exact, num_samples=30, num_warmup=30, num_chains=1)
    q = vae.guide_distribution(x)
    expected = torch.distributions.kl_divergence(
        torch.distributions.MultivariateNormal(q.loc[0], scale_tril=q.scale_tril[0]),
        torch.distributions.MultivariateNormal(exact.loc[0], exact.covariance_matrix[0]),
    ).item()
    assert expected > 0.1
    assert res.kl["guide||exact"] == pytest.approx(expected, rel=1e-10)
    # exact posterior given as a (mean, covariance) pair: same answer
    pair = (exact.mean[0], exact.covariance_matrix[0])
    res2 = compare_posteriors(vae.model, vae.guide, x, exact=pair, num_samples=10, num_warmup=10, num_chains=1)
    assert res2.kl["guide||exact"] == pytest.approx(expected, rel=1e-10)
    fig = plot_pair(res)
    assert len(fig.axes) == 4
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_gaussian_kl_against_torch():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(3, 3, generator=g, dtype=torch.float64)
    B = torch.randn(3, 3, generator=g, dtype=torch.float64)
    Sp, Sq = A @ A.T + 0.1 * torch.eye(3, dtype=torch.float64), B @ B.T + 0.1 * torch.eye(3, dtype=torch.float64)
    mp, mq = torch.randn(3, generator=g, dtype=torch.float64), torch.randn(3, generator=g, dtype=torch.float64)
    ref = torch.distributions.kl_divergence(
        torch.distributions.MultivariateNormal(mp, Sp), torch.distributions.MultivariateNormal(mq, Sq)
    )
    assert gaussian_kl(mp, Sp, mq, Sq) == pytest.approx(ref.item(), rel=1e-10)
    assert gaussian_kl(mp.numpy(), Sp.numpy(), mq.numpy(), Sq.numpy()) == pytest.approx(ref.item(), rel=1e-10)
    assert gaussian_kl(mp, Sp, mp, Sp) == 0.0
    assert gaussian_kl(mp, Sp, mp + 1e-3, Sp) > 0
    with pytest.raises(ValueError, match="positive definite"):
        gaussian_kl(mp, -Sp, mq, Sq)
    with pytest.raises(ValueError, match="shape"):
        gaussian_kl(mp[:2], Sp, mq, Sq)
    with pytest.raises(ValueError, match="NaN"):
        gaussian_kl(mp * float("nan"), Sp, mq, Sq)


def test_nonlinear_vae_and_randomized_guide():
    """A VAE with an MLP decoder works as is; a guide with hidden randomness gets sample-based moments."""
    vae = VAE(x_dim=5, z_dim=2, hidden_dims=(8,), likelihood="normal", sigma=0.5)
    x = torch.rand(1, 5)

    def noisy_guide(x):
        # the encoder sees a corrupted copy of x: q(z|x) is a Gaussian mixture, not one Gaussian
        return vae.guide(x + 0.1 * torch.randn_like(x))

    res = compare_posteriors(vae.model, noisy_guide, x, num_samples=20, num_warmup=20, num_chains=2)
    assert res.sources == ["nuts", "guide"]
    assert res.moments_from["guide"] == "samples"
    assert set(res.kl) == {"guide||nuts"} and res.kl["guide||nuts"] > 0
    assert res.samples["guide"].shape == (40, 2)
    assert np.isnan(res.table.loc["guide", "KL(.||exact)"])


def test_validation_errors():
    vae, x = _linear_vae_with_exact_guide()
    small = dict(num_samples=10, num_warmup=5, num_chains=1)
    with pytest.raises(ValueError, match="num_samples"):
        compare_posteriors(vae.model, vae.guide, x, num_samples=2)
    with pytest.raises(ValueError, match="num_chains"):
        compare_posteriors(vae.model, vae.guide, x, num_chains=0)
    with pytest.raises(ValueError, match="2 latent coordinates"):
        wrong = dist.MultivariateNormal(torch.zeros(3), torch.eye(3))
        compare_posteriors(vae.model, vae.guide, x, exact=wrong, **small)
    with pytest.raises(ValueError, match="NaN"):
        compare_posteriors(vae.model, vae.guide, x * float("nan"), **small)

    def guide_without_z(x):
        pyro.sample("w", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match="does not sample"):
        compare_posteriors(vae.model, guide_without_z, x, **small)
    with pytest.raises(TypeError, match="PosteriorComparison"):
        plot_pair({"not": "a result"})


def test_compare_posteriors_refuses_fewer_draws_than_coordinates_before_running_nuts():
    def model(x):
        with pyro.plate("data", 1):
            z = pyro.sample("z", dist.Normal(torch.zeros(12), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)

    def guide(x):
        with pyro.plate("data", 1):
            pyro.sample("z", dist.Normal(x / 2, 0.7).to_event(1))

    # 2 chains x 5 draws = 10 draws for 12 coordinates: refused at once, naming the fix
    with pytest.raises(ValueError, match=r"10 draws cannot estimate the 12 x 12 covariance.*num_samples above 6"):
        compare_posteriors(model, guide, torch.zeros(1, 12), num_samples=5, num_warmup=5, num_chains=2)


# ------------------------------------------------------------------------------------------------------------------
# Fast unit tests (issue 15: close the blind spots found by mutation testing). NUTS is replaced by a stand-in where
# only the bookkeeping around it is checked; the NUTS runs themselves are checked against the exact posterior above.
import math  # noqa: E402
import re  # noqa: E402

import pyro_noisevae.evaluation.posterior as posterior_module  # noqa: E402


def _full(message):
    """pytest.raises(match=...) for the whole message (re.search would accept it inside a longer one)."""
    return "^" + re.escape(message) + "$"


def _scalar_model(x, scale=1.0):
    """z ~ N(0, 1), x | z ~ N(z, scale^2): p(z | x) = N(x / (1 + scale^2), scale^2 / (1 + scale^2))."""
    z = pyro.sample("z", dist.Normal(0.0, 1.0))
    pyro.sample("x", dist.Normal(z, scale), obs=x)


def _scalar_guide(x, scale=1.0):
    """The exact posterior of _scalar_model."""
    v = scale**2 / (1 + scale**2)
    pyro.sample("z", dist.Normal(x / (1 + scale**2), v**0.5))


def _two_site_model(x):
    a = pyro.sample("a", dist.Normal(0.0, 1.0))
    b = pyro.sample("b", dist.Normal(torch.zeros(2), 1.0).to_event(1))
    pyro.sample("x", dist.Normal(a + b.sum(-1), 1.0), obs=x)


def _two_site_guide(x):
    pyro.sample("a", dist.Normal(0.1, 0.5))
    pyro.sample("b", dist.Normal(torch.tensor([0.2, -0.3]), torch.tensor([0.4, 0.6])).to_event(1))


class _FakeNUTS:
    """Stands in for pyro.infer.NUTS: records its arguments."""

    def __init__(self, model, **kwargs):
        self.model, self.kwargs = model, kwargs


def _fake_mcmc(monkeypatch, chains, divergences):
    """Replace posterior's NUTS/MCMC by stand-ins: chain ``c`` returns ``chains[c]`` (site -> (num_samples, ...)) and
    the divergent transitions ``divergences[c]`` (Pyro's numbering: negative = warm-up). Returns the MCMC objects."""
    calls = []

    class FakeMCMC:
        def __init__(self, kernel, **kwargs):
            self.kernel, self.kwargs, self.chain = kernel, kwargs, len(calls) % len(chains)
            calls.append(self)

        def run(self, *args, **kwargs):
            self.run_args, self.run_kwargs = args, kwargs
            self.rng = torch.rand(3)  # what the chain's RNG would give

        def get_samples(self):
            return {k: v[: self.kwargs["num_samples"]] for k, v in chains[self.chain].items()}

        def diagnostics(self):
            return {"divergences": {"chain 0": list(divergences[self.chain])}, "acceptance rate": {"chain 0": 0.9}}

    monkeypatch.setattr(posterior_module, "NUTS", _FakeNUTS)
    monkeypatch.setattr(posterior_module, "MCMC", FakeMCMC)
    return calls


def _gauss_kl_np(mp, Sp, mq, Sq):
    """Closed-form KL(N(mp, Sp) || N(mq, Sq)) in numpy (a second implementation)."""
    mp, Sp, mq, Sq = (np.atleast_1d(np.asarray(a, dtype=np.float64)) for a in (mp, Sp, mq, Sq))
    Sp, Sq = Sp.reshape(len(mp), len(mp)), Sq.reshape(len(mp), len(mp))
    iq = np.linalg.inv(Sq)
    dm = mq - mp
    return 0.5 * (np.trace(iq @ Sp) + dm @ iq @ dm - len(mp) + np.linalg.slogdet(Sq)[1] - np.linalg.slogdet(Sp)[1])


def _two_site_chains(S=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [{"a": torch.randn(S, generator=g, dtype=torch.float64) + 0.1 * c,
             "b": torch.randn(S, 2, generator=g, dtype=torch.float64) * torch.tensor([1.0, 2.0], dtype=torch.float64)}
            for c in range(2)]


def test_gaussian_kl_symmetrizes_and_names_each_bad_argument():
    g = torch.Generator().manual_seed(1)
    A = torch.randn(2, 2, generator=g, dtype=torch.float64)
    Sp = A @ A.T + 0.5 * torch.eye(2, dtype=torch.float64)
    Sq = torch.tensor([[2.0, 0.3], [0.3, 1.0]], dtype=torch.float64)
    mp, mq = torch.tensor([0.1, -0.2], dtype=torch.float64), torch.tensor([0.3, 0.4], dtype=torch.float64)
    ref = _gauss_kl_np(mp, Sp, mq, Sq)
    assert gaussian_kl(mp, Sp, mq, Sq) == pytest.approx(ref, rel=1e-12)
    # a covariance given with a skew-symmetric error is read as its symmetric part (Cholesky reads one triangle)
    skew = torch.tensor([[0.0, 0.4], [-0.4, 0.0]], dtype=torch.float64)
    assert gaussian_kl(mp, Sp + skew, mq, Sq - skew) == pytest.approx(ref, rel=1e-12)
    # same means, different covariances; same covariance, a small shift (KL < 1): both the closed form
    same_mean = _gauss_kl_np(mp, Sp, mp, Sq)
    assert same_mean > 0.05 and gaussian_kl(mp, Sp, mp, Sq) == pytest.approx(same_mean, rel=1e-12)
    dm = torch.tensor([1e-2, -2e-2], dtype=torch.float64)
    small = 0.5 * float(dm @ torch.linalg.solve(Sq, dm))
    assert gaussian_kl(mq, Sq, mq + dm, Sq) == pytest.approx(small, rel=1e-9)
    # tensors that require grad (e.g. a guide's parameters) are read detached
    grad = gaussian_kl(mp.clone().requires_grad_(), Sp.clone().requires_grad_(), mq, Sq)
    assert grad == pytest.approx(ref, rel=1e-12)
    # float32 arrays and lists are converted to float64 first
    assert gaussian_kl(mp.float().tolist(), Sp.float().numpy(), mq.float(), Sq.float()) == pytest.approx(
        _gauss_kl_np(mp.float().double(), Sp.float().double(), mq.float().double(), Sq.float().double()), rel=1e-12)
    msg = "gaussian_kl needs means of shape (d,) and covariances (d, d) with one d; got {}, {}, {}, {}"
    with pytest.raises(ValueError, match=_full(msg.format("(1,)", "(2, 2)", "(2,)", "(2, 2)"))):
        gaussian_kl(mp[:1], Sp, mq, Sq)
    with pytest.raises(ValueError, match=_full(msg.format("(2,)", "(1, 2)", "(2,)", "(2, 2)"))):
        gaussian_kl(mp, Sp[:1], mq, Sq)
    with pytest.raises(ValueError, match=_full(msg.format("(2,)", "(2, 2)", "(1,)", "(2, 2)"))):
        gaussian_kl(mp, Sp, mq[:1], Sq)
    with pytest.raises(ValueError, match=_full(msg.format("(2,)", "(2, 2)", "(2,)", "(2, 1)"))):
        gaussian_kl(mp, Sp, mq, Sq[:, :1])
    nan = float("nan")
    for name, args in (("mean_p", (mp * nan, Sp, mq, Sq)), ("cov_p", (mp, Sp * float("inf"), mq, Sq)),
                       ("mean_q", (mp, Sp, mq * nan, Sq)), ("cov_q", (mp, Sp, mq, Sq * nan))):
        with pytest.raises(ValueError, match=_full(f"gaussian_kl: {name} contains NaN or infinite values")):
            gaussian_kl(*args)
    for args in ((mp, -Sp, mq, Sq), (mp, Sp, mq, -Sq)):  # either one not positive definite
        with pytest.raises(ValueError, match=_full("gaussian_kl: covariances must be symmetric positive definite")):
            gaussian_kl(*args)


def test_bookkeeping_around_the_nuts_chains(monkeypatch):
    """With NUTS replaced by given draws: labels, flattened samples in chain order, Gaussian fits, KL, the table,
    divergences after warm-up only, the arviz layout, and the options handed to NUTS and MCMC."""
    S = 8
    chains = _two_site_chains(S)
    calls = _fake_mcmc(monkeypatch, chains, divergences=[[-2, 0, 3], [7, S, 5]])
    x = torch.tensor(0.5)
    res = compare_posteriors(_two_site_model, _two_site_guide, x, num_samples=S, num_warmup=3, num_chains=2,
                             target_accept_prob=0.9, max_tree_depth=5)
    # NUTS and MCMC got the model, the settings and the observation
    assert [c.kernel.model for c in calls] == [_two_site_model] * 2
    assert [c.kernel.kwargs for c in calls] == [{"target_accept_prob": 0.9, "max_tree_depth": 5}] * 2
    assert [c.kwargs for c in calls] == [{"num_samples": S, "warmup_steps": 3, "disable_progbar": True}] * 2
    assert [(c.run_args, c.run_kwargs) for c in calls] == [((x,), {})] * 2
    assert not torch.equal(calls[0].rng, calls[1].rng)  # each chain its own random stream
    # samples: the chains one after the other, sites flattened in model order
    assert res.labels == ["a", "b[0]", "b[1]"]
    nuts = np.concatenate([np.column_stack([c["a"].numpy(), c["b"].numpy()]) for c in chains])
    np.testing.assert_array_equal(res.samples["nuts"], nuts)
    assert res.sources == ["nuts", "guide"] and list(res.samples) == ["nuts", "guide"]
    np.testing.assert_allclose(res.means["nuts"], nuts.mean(0), rtol=1e-14)
    np.testing.assert_allclose(res.covariances["nuts"], np.cov(nuts, rowvar=False), rtol=1e-13)
    # the guide has two sites: its fit comes from its 16 draws
    assert res.moments_from == {"nuts": "samples", "guide": "samples"}
    g = res.samples["guide"]
    assert g.shape == (2 * S, 3) and g.dtype == np.float64
    np.testing.assert_allclose(res.covariances["guide"], np.cov(g, rowvar=False), rtol=1e-13)
    kl = _gauss_kl_np(g.mean(0), np.cov(g, rowvar=False), nuts.mean(0), np.cov(nuts, rowvar=False))
    assert res.kl == {"guide||nuts": pytest.approx(kl, rel=1e-9)}
    # divergences: Pyro numbers transitions from the end of warm-up; -2 (warm-up) and 8 (past the end) are not kept
    assert res.num_divergences == 4
    expected = np.zeros((2, S), dtype=bool)
    expected[0, [0, 3]] = expected[1, [7, 5]] = True
    np.testing.assert_array_equal(res.idata.sample_stats["diverging"].values, expected)
    assert res.idata.sample_stats["diverging"].dtype == bool
    # arviz layout: (chain, draw, source, <site>_dim)
    post = res.idata.posterior
    assert post["a"].dims == ("chain", "draw", "source", "a_dim") and post["a"].shape == (2, S, 2, 1)
    assert post["b"].dims == ("chain", "draw", "source", "b_dim") and post["b"].shape == (2, S, 2, 2)
    assert list(post.coords["source"].values) == ["nuts", "guide"]
    np.testing.assert_array_equal(post["b_dim"].values, [0, 1])
    np.testing.assert_array_equal(post["b"].sel(source="nuts").values, np.stack([c["b"].numpy() for c in chains]))
    np.testing.assert_array_equal(post["a"].sel(source="guide").values.reshape(-1), g[:, 0])
    assert post.attrs["sources"] == "exact: closed form; nuts: pyro.infer.MCMC(NUTS); guide: q(z|x)"
    # the table: one row per source, the columns in this order, diagnostics per source from arviz
    t = res.table
    assert list(t.index) == ["nuts", "guide"] and t.index.name == "source"
    assert list(t.columns) == ["mean[a]", "mean[b[0]]", "mean[b[1]]", "cov[a,a]", "cov[a,b[0]]", "cov[a,b[1]]",
                               "cov[b[0],b[0]]", "cov[b[0],b[1]]", "cov[b[1],b[1]]", "KL(.||exact)",
                               "KL(.||nuts)", "r_hat", "ess_bulk", "ess_tail"]
    for src, draws in (("nuts", nuts), ("guide", g)):
        per_chain = draws.reshape(2, S, 3)
        np.testing.assert_allclose(t.loc[src, ["mean[a]", "mean[b[0]]", "mean[b[1]]"]].to_numpy(float),
                                   res.means[src], rtol=1e-14)
        assert t.loc[src, "cov[a,b[1]]"] == res.covariances[src][0, 2]
        assert t.loc[src, "cov[b[0],b[1]]"] == res.covariances[src][1, 2]
        coords = [per_chain[..., i] for i in range(3)]
        assert t.loc[src, "r_hat"] == pytest.approx(max(float(az.rhat(c)) for c in coords), rel=1e-12)
        assert t.loc[src, "ess_bulk"] == pytest.approx(min(float(az.ess(c, method="bulk")) for c in coords), rel=1e-12)
        assert t.loc[src, "ess_tail"] == pytest.approx(min(float(az.ess(c, method="tail")) for c in coords), rel=1e-12)
        assert np.isnan(t.loc[src, "KL(.||exact)"])
    assert t.loc["nuts", "KL(.||nuts)"] == 0.0 and t.loc["guide", "KL(.||nuts)"] == res.kl["guide||nuts"]
    # arviz's summary of the NUTS draws, one row per coordinate
    assert list(res.diagnostics.index) == ["a[0]", "b[0]", "b[1]"]
    assert list(res.diagnostics.columns) == ["mean", "sd", "hdi_3%", "hdi_97%", "mcse_mean", "mcse_sd", "ess_bulk",
                                             "ess_tail", "r_hat"]  # kind="all": statistics and diagnostics
    np.testing.assert_allclose(res.diagnostics["mean"].to_numpy(float), nuts.mean(0), atol=5e-3)
    # one source alone for arviz; only NUTS has sample stats
    one = res.inference_data("guide")
    assert "source" not in one.posterior.dims and "source" not in one.posterior.coords
    assert "sample_stats" not in one.groups()
    np.testing.assert_array_equal(one.posterior["b"].values.reshape(-1, 2), g[:, 1:])
    assert "sample_stats" in res.inference_data("nuts").groups()
    with pytest.raises(ValueError, match=_full("source must be one of ['nuts', 'guide'], got 'exact'")):
        res.inference_data("exact")
    first, *rest = repr(res).splitlines()
    assert first == f"PosteriorComparison(d=3, KL(guide||nuts) = {res.kl['guide||nuts']:.4g}, divergences=4)"
    # then the whole table, lines of up to 160 characters (not pandas' default 80), numbers with 4 decimals
    assert 80 < max(len(line) for line in rest) <= 160
    assert all(c in "\n".join(rest) for c in t.columns)
    assert f"{t.loc['nuts', 'r_hat']:.4f}" in repr(res).split()


def test_init_strategy_keywords_and_exact_table_rows(monkeypatch):
    """init_strategy reaches NUTS only when given; keyword arguments reach model, guide and MCMC; with an exact
    posterior every row has its KL to it (0 for the exact row itself), from the closed form."""
    S = 200
    g = torch.Generator().manual_seed(2)
    chains = [{"z": 0.3 + 0.8 * torch.randn(S, generator=g, dtype=torch.float64)} for _ in range(2)]
    calls = _fake_mcmc(monkeypatch, chains, divergences=[[], []])
    x = torch.tensor(1.2)
    init = pyro.infer.autoguide.init_to_median
    exact = dist.Normal(torch.tensor(0.96, dtype=torch.float64), 0.2**0.5)

    def model(x, *, scale):  # a keyword without default: every call must pass it
        _scalar_model(x, scale)

    def guide(x, *, scale):
        _scalar_guide(x, scale)

    res = compare_posteriors(model, guide, x, scale=0.5, exact=exact,
                             num_samples=S, num_warmup=0, num_chains=2, init_strategy=init)
    assert [c.kernel.kwargs for c in calls] == [{"target_accept_prob": 0.8, "max_tree_depth": 10,
                                                  "init_strategy": init}] * 2
    assert [c.kwargs["warmup_steps"] for c in calls] == [0, 0]
    assert [(c.run_args, c.run_kwargs) for c in calls] == [((x,), {"scale": 0.5})] * 2
    # the guide is the exact posterior N(x / 1.25, 0.2) at scale=0.5: its analytic moments say so
    assert res.moments_from == {"exact": "analytic", "guide": "analytic", "nuts": "samples"}
    assert res.means["guide"] == pytest.approx([0.96], rel=1e-6) and res.covariances["guide"] == pytest.approx(0.2)
    # and its draws come from it at scale=0.5 (at the default scale=1 their mean would be 0.6): within 4.5 SE
    assert abs(res.samples["guide"].mean() - 0.96) < 4.5 * math.sqrt(0.2 / (2 * S))
    assert res.labels == ["z"] and list(res.table.index) == ["exact", "nuts", "guide"]
    nuts = torch.cat([c["z"] for c in chains]).numpy()
    kl_ne = _gauss_kl_np(nuts.mean(), nuts.var(ddof=1), 0.96, 0.2)
    assert res.kl["nuts||exact"] == pytest.approx(kl_ne, rel=1e-9)
    assert res.kl["guide||nuts"] == pytest.approx(_gauss_kl_np(0.96, 0.2, nuts.mean(), nuts.var(ddof=1)), rel=1e-6)
    assert res.kl["guide||exact"] == pytest.approx(0.0, abs=1e-12)
    t = res.table
    assert t.loc["exact", "KL(.||exact)"] == 0.0 and np.isnan(t.loc["exact", "KL(.||nuts)"])
    assert t.loc["nuts", "KL(.||exact)"] == res.kl["nuts||exact"] and t.loc["nuts", "KL(.||nuts)"] == 0.0
    assert t.loc["guide", "KL(.||exact)"] == res.kl["guide||exact"]
    assert res.num_divergences == 0 and not res.idata.sample_stats["diverging"].values.any()
    # bulk and tail ESS of the 2 x 200 NUTS draws, as arviz computes them from the chains
    per_chain = nuts.reshape(2, S)
    bulk, tail = float(az.ess(per_chain, method="bulk")), float(az.ess(per_chain, method="tail"))
    assert abs(bulk - tail) > 1 and t.loc["nuts", "ess_bulk"] == pytest.approx(bulk, rel=1e-12)
    assert t.loc["nuts", "ess_tail"] == pytest.approx(tail, rel=1e-12)
    first = repr(res).splitlines()[0]
    assert first == ("PosteriorComparison(d=1, KL(guide||exact) = {:.4g}, KL(guide||nuts) = {:.4g}, KL(nuts||exact) = "
                     "{:.4g}, divergences=0)").format(res.kl["guide||exact"], res.kl["guide||nuts"], kl_ne)
    assert list(res.kl) == ["guide||exact", "guide||nuts", "nuts||exact"]
    assert res.inference_data("exact").posterior["z"].shape == (2, S, 1)


def test_seed_reproduces_every_source_and_leaves_the_global_rng_alone(monkeypatch):
    S = 10
    chains = [{"z": torch.linspace(-1, 1, S, dtype=torch.float64) * (c + 1)} for c in range(2)]
    exact = dist.Laplace(torch.tensor(0.5), torch.tensor(0.7))  # not Gaussian: its fit comes from its draws

    def run(seed):
        calls = _fake_mcmc(monkeypatch, chains, divergences=[[], []])
        res = compare_posteriors(_scalar_model, _scalar_guide, torch.tensor(1.0), exact=exact, num_samples=S,
                                 num_warmup=1, num_chains=2, seed=seed)
        return res, torch.stack([c.rng for c in calls])

    torch.manual_seed(123)
    state = torch.get_rng_state()
    a, rng_a = run(0)
    assert torch.equal(torch.get_rng_state(), state)  # forked: the caller's RNG is left as it was
    torch.manual_seed(999)
    b, rng_b = run(0)
    assert torch.equal(rng_a, rng_b)
    for src in ("exact", "guide"):
        np.testing.assert_array_equal(a.samples[src], b.samples[src])
    c, rng_c = run(1)
    assert not torch.equal(rng_a[0], rng_c[0]) and not torch.equal(rng_a[1], rng_c[1])
    assert not np.array_equal(a.samples["guide"], c.samples["guide"])
    assert not np.array_equal(a.samples["exact"], c.samples["exact"])
    # the sources do not share a random stream
    assert not np.array_equal(a.samples["guide"], a.samples["exact"])
    # seed=None: the draws follow the caller's RNG (and still leave it alone)
    torch.manual_seed(5)
    d, rng_d = run(None)
    torch.manual_seed(5)
    e, rng_e = run(None)
    assert torch.equal(rng_d, rng_e) and np.array_equal(d.samples["guide"], e.samples["guide"])
    assert not torch.equal(rng_d, rng_a)
    # non-Gaussian exact posterior: sample moments of its draws, which follow it (Laplace(0.5, 0.7): var 2 * 0.49)
    assert a.moments_from["exact"] == "samples"
    np.testing.assert_allclose(a.means["exact"], a.samples["exact"].mean(0), rtol=1e-14)
    np.testing.assert_allclose(a.covariances["exact"], np.cov(a.samples["exact"][:, 0]).reshape(1, 1), rtol=1e-13)
    assert a.samples["exact"].shape == (2 * S, 1)


def test_exact_posterior_forms_and_their_errors(monkeypatch):
    S = 200
    chains = [{"a": torch.randn(S, dtype=torch.float64), "b": torch.randn(S, 2, dtype=torch.float64)}
              for _ in range(2)]
    _fake_mcmc(monkeypatch, chains, divergences=[[], []])
    x = torch.tensor(0.5)
    small = dict(num_samples=S, num_warmup=0, num_chains=2, seed=3)
    mean = torch.tensor([0.1, 0.2, -0.3], dtype=torch.float64)
    cov = torch.tensor([[1.0, 0.2, 0.0], [0.2, 0.5, 0.1], [0.0, 0.1, 0.8]], dtype=torch.float64)
    skew = torch.tensor([[0.0, 0.3, 0.0], [-0.3, 0.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    # a (mean, covariance) pair (its covariance read as its symmetric part), as numpy arrays, in float32 too (read
    # in float64)
    for pair in ((mean, cov + skew), (mean.reshape(3, 1).numpy(), cov.numpy()), (mean.float(), cov.float())):
        dtype = torch.as_tensor(pair[1]).dtype
        want_mean, want_cov = (torch.as_tensor(a).double().numpy() for a in (pair[0], cov.to(dtype)))
        res = compare_posteriors(_two_site_model, _two_site_guide, x, exact=pair, **small)
        assert res.moments_from["exact"] == "analytic"
        np.testing.assert_array_equal(res.means["exact"], want_mean.reshape(-1))
        np.testing.assert_allclose(res.covariances["exact"], want_cov, rtol=1e-15)
        e = res.samples["exact"]
        assert e.shape == (2 * S, 3) and e.dtype == np.float64
        # the draws follow N(mean, cov): every mean within 4.5 standard errors
        assert np.all(np.abs(e.mean(0) - mean.numpy()) < 4.5 * np.sqrt(cov.diagonal().numpy() / (2 * S)))
    # independent Normals (batch (3,)), an Independent one, a nested Independent: analytic, a diagonal covariance
    sd = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    for ex in (dist.Normal(mean, sd), dist.Normal(mean, sd).to_event(1),
               torch.distributions.Independent(dist.Normal(mean.reshape(1, 3), sd).to_event(1), 1),
               dist.MultivariateNormal(mean.reshape(1, 3), cov)):
        res = compare_posteriors(_two_site_model, _two_site_guide, x, exact=ex, **small)
        assert res.moments_from["exact"] == "analytic", ex
        np.testing.assert_allclose(res.means["exact"], mean.numpy(), rtol=1e-15)
        want = cov if isinstance(ex, dist.MultivariateNormal) else torch.diag(sd**2)
        np.testing.assert_allclose(res.covariances["exact"], want.numpy(), rtol=1e-15)
        assert res.kl["guide||exact"] == pytest.approx(
            _gauss_kl_np(res.means["guide"], res.covariances["guide"], mean, want), rel=1e-9)
    # a float32 distribution: its moments are read in float64
    res = compare_posteriors(_two_site_model, _two_site_guide, x, exact=dist.Normal(mean.float(), sd.float()), **small)
    assert res.means["exact"].dtype == np.float64 and res.covariances["exact"].dtype == np.float64
    np.testing.assert_array_equal(res.means["exact"], mean.float().double().numpy())
    np.testing.assert_array_equal(res.covariances["exact"], torch.diag(sd.float().double() ** 2).numpy())
    # a batch of three 1-d Gaussians is not one Gaussian over the 3 coordinates' covariance: fit from draws
    mvn3 = dist.MultivariateNormal(mean.reshape(3, 1), torch.diag(sd**2).diagonal().reshape(3, 1, 1))
    res = compare_posteriors(_two_site_model, _two_site_guide, x, exact=mvn3, **small)
    assert res.moments_from["exact"] == "samples"
    np.testing.assert_allclose(res.means["exact"], res.samples["exact"].mean(0), rtol=1e-14)
    np.testing.assert_allclose(res.covariances["exact"], np.cov(res.samples["exact"], rowvar=False), rtol=1e-12)
    # errors, with their whole messages
    with pytest.raises(ValueError, match=_full(
            "exact must be a distribution over the flattened latents or a (mean, covariance) pair")):
        compare_posteriors(_two_site_model, _two_site_guide, x, exact=(mean, cov, cov), **small)
    with pytest.raises(ValueError, match=_full(
            "exact (mean, cov) must have shapes (3,) and (3, 3); got (2,), (3, 3)")):
        compare_posteriors(_two_site_model, _two_site_guide, x, exact=(mean[:2], cov), **small)
    with pytest.raises(ValueError, match=_full(
            "exact (mean, cov) must have shapes (3,) and (3, 3); got (3,), (3, 2)")):
        compare_posteriors(_two_site_model, _two_site_guide, x, exact=(mean, cov[:, :2]), **small)
    with pytest.raises(TypeError, match=_full(
            "exact must be a torch Distribution or a (mean, covariance) pair, got str")):
        compare_posteriors(_two_site_model, _two_site_guide, x, exact="normal", **small)
    with pytest.raises(ValueError, match=_full(
            "exact describes 2 numbers per draw but the model has 3 latent coordinates; pass the posterior of the "
            "single observation being compared, over the flattened latent sites (in model order)")):
        compare_posteriors(_two_site_model, _two_site_guide, x, exact=dist.Normal(mean[:2], 1.0), **small)
    with pytest.raises(ValueError, match=_full("exact posterior has NaN or infinite moments")):
        compare_posteriors(_two_site_model, _two_site_guide, x, exact=dist.Normal(mean, float("inf")), **small)


def _fixed_guide(x, scale=1.0):
    pyro.sample("z", dist.Normal(0.2, 0.7))


def test_argument_errors_name_the_argument(monkeypatch):
    S = 8
    chains = [{"z": torch.linspace(-1.0, 1.0, S, dtype=torch.float64) + c} for c in range(2)]
    calls = _fake_mcmc(monkeypatch, chains, divergences=[[], []])
    x = torch.tensor(1.0)

    def cp(*args, model=_scalar_model, guide=_fixed_guide, **kwargs):
        return compare_posteriors(model, guide, *(args or (x,)), **{"num_samples": S, "num_warmup": 2, **kwargs})

    for kwargs, msg in (({"num_samples": 3}, "num_samples must be an int >= 4, got 3"),
                        ({"num_samples": 4.5}, "num_samples must be an int >= 4, got 4.5"),
                        ({"num_samples": True}, "num_samples must be an int >= 4, got True"),
                        ({"num_warmup": -1}, "num_warmup must be an int >= 0, got -1"),
                        ({"num_chains": 0}, "num_chains must be an int >= 1, got 0"),
                        ({"num_chains": 1.5}, "num_chains must be an int >= 1, got 1.5"),
                        ({"seed": 0.5}, "seed must be an int or None, got 0.5"),
                        ({"seed": True}, "seed must be an int or None, got True")):
        with pytest.raises(ValueError, match=_full(msg)):
            cp(**kwargs)

    def raising_guide(kind):  # a guide that only works unvectorized, failing in one of three ways
        def guide(x, scale=1.0):
            z = pyro.sample("z", dist.Normal(0.5, 0.5**0.5))
            return {"item": z.item, "float": lambda: float(z), "index": lambda: (0.0,)[z.dim()]}[kind]()
        return guide

    for kind in ("item", "float", "index"):
        assert cp(guide=raising_guide(kind), num_samples=S, num_chains=2).samples["guide"].shape == (2 * S, 1)
    del calls[:]
    for kwargs in ({"model": None}, {"guide": "q"}):
        with pytest.raises(TypeError, match=_full("model and guide must be callables (Pyro programs)")):
            cp(**kwargs)
    assert calls == []  # all refused before NUTS
    # the smallest values allowed, given as other number types, are taken as ints
    res = cp(num_samples=4.0, num_warmup=np.int64(0), num_chains=1, seed=np.int64(3))
    assert [c.kwargs for c in calls] == [{"num_samples": 4, "warmup_steps": 0, "disable_progbar": True}]
    assert type(calls[0].kwargs["num_samples"]) is int and type(calls[0].kwargs["warmup_steps"]) is int
    assert res.samples["nuts"].shape == (4, 1) and res.idata.posterior["z"].shape == (1, 4, 2, 1)

    def observed_only(x, scale=1.0):
        pyro.sample("x", dist.Normal(0.0, 1.0), obs=x)

    with pytest.raises(ValueError, match=_full("the model has no latent (unobserved) sample sites to compare")):
        cp(model=observed_only)

    def guide_without_z(x, scale=1.0):
        pyro.sample("w", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match=_full("the guide does not sample the model's latent sites ['z']")):
        cp(guide=guide_without_z)

    def coin_model(x):
        c = pyro.sample("c", dist.Bernoulli(0.5))
        pyro.sample("x", dist.Normal(c, 1.0), obs=x)

    def coin_guide(x):
        pyro.sample("c", dist.Bernoulli(0.3))

    with pytest.raises(ValueError, match=_full(
            "latent site 'c' is discrete; NUTS needs continuous latents (enumerate it out)")):
        cp(model=coin_model, guide=coin_guide)
    for bad in (float("nan"), float("inf")):
        def bad_guide(x, scale=1.0, bad=bad):
            pyro.sample("z", dist.Delta(torch.tensor(bad)))

        # (with validation off: else Pyro refuses Normal(nan, 1) in the model first)
        with pyro.validation_enabled(False), pytest.raises(ValueError, match=_full(
                "latent site 'z' produced NaN/inf values from the guide")):
            cp(guide=bad_guide)
        with pytest.raises(ValueError, match=_full("observed site 'x' contains NaN or infinite values")):
            cp(torch.tensor(bad))
    assert calls[1:] == []

    # d = 4 coordinates need more than 4 draws
    def model4(x):
        z = pyro.sample("z", dist.Normal(torch.zeros(4), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z.sum(-1), 1.0), obs=x)

    def guide4(x):
        pyro.sample("z", dist.Normal(torch.zeros(4), 1.0).to_event(1))

    with pytest.raises(ValueError, match=_full(
            "num_chains * num_samples = 4 draws cannot estimate the 4 x 4 covariance of the 4 latent coordinates (the "
            "Gaussian fits need more draws than coordinates); raise num_samples above 4 (ideally well above)")):
        cp(model=model4, guide=guide4, num_samples=4, num_chains=1)
    assert calls[1:] == []
    chains[:] = [{"z": torch.randn(5, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)}]
    assert cp(model=model4, guide=guide4, num_samples=5, num_chains=1).labels == ["z[0]", "z[1]", "z[2]", "z[3]"]


def test_stuck_chains_and_non_finite_draws_are_refused(monkeypatch):
    S = 8
    x = torch.tensor(1.0)
    _fake_mcmc(monkeypatch, [{"z": torch.full((S,), 0.3, dtype=torch.float64)}] * 2, divergences=[[], []])
    with pytest.raises(ValueError, match=_full(
            "the covariance of the 16 NUTS draws is singular: some chains did not move (a stuck chain, often from "
            "Pyro's default start uniform in (-2, 2) on a sharp posterior) or too few draws for the latent "
            "coordinates; raise num_warmup/num_samples, or start the chains at guide draws "
            "(init_strategy=pyro.infer.autoguide.init_to_generated(...) or init_to_value(values=guide draws))")):
        compare_posteriors(_scalar_model, _fixed_guide, x, num_samples=S, num_warmup=0)
    # a guide too wide for float32: exp(30 N(0, 1)) overflows to inf for some of its 2000 draws
    _fake_mcmc(monkeypatch, [{"z": torch.rand(1000, dtype=torch.float64) + 0.1}] * 2, divergences=[[], []])

    def positive_model(x):
        z = pyro.sample("z", dist.LogNormal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def wide_guide(x):
        pyro.sample("z", dist.LogNormal(0.0, 30.0))

    with pytest.raises(ValueError, match=_full(
            "some draws are NaN/inf; check the model and guide at this observation")):
        compare_posteriors(positive_model, wide_guide, x, num_samples=1000, num_warmup=0, seed=0)


def test_guide_draws_are_vectorized_when_the_guide_allows_it(monkeypatch):
    """One guide call draws all num_chains * num_samples draws, under an outer plate left of the guide's own plates;
    a guide that cannot be vectorized is called once per draw; either way the draws follow the guide."""
    S = 150
    g = torch.Generator().manual_seed(4)
    x = torch.tensor(1.0)

    def counting(guide):
        calls = []

        def counted(*args, **kwargs):
            calls.append(1)
            return guide(*args, **kwargs)

        return counted, calls

    # a scalar site: 1 call to find the sites, 1 for all draws, 2 to read its analytic moments
    _fake_mcmc(monkeypatch, [{"z": torch.randn(S, generator=g, dtype=torch.float64)}] * 2, divergences=[[], []])
    guide, calls = counting(_scalar_guide)
    res = compare_posteriors(_scalar_model, guide, x, num_samples=S, num_warmup=0)
    assert len(calls) == 4
    draws = res.samples["guide"][:, 0]
    assert abs(draws.mean() - 0.5) < 4 * math.sqrt(0.5 / (2 * S))

    def item_guide(x, scale=1.0):  # python control flow on the draw: cannot run vectorized
        z = pyro.sample("z", dist.Normal(x / (1 + scale**2), scale / (1 + scale**2) ** 0.5))
        assert z.item() == z.item()

    guide, calls = counting(item_guide)
    res = compare_posteriors(_scalar_model, guide, x, scale=0.5, num_samples=S, num_warmup=0)
    assert len(calls) == 1 + 1 + 2 * S + 2
    draws = res.samples["guide"][:, 0]
    assert res.samples["guide"].shape == (2 * S, 1) and res.moments_from["guide"] == "analytic"
    # N(0.8, 0.2) at scale=0.5 (the keyword reaches every draw; at scale=1 the mean would be 0.5)
    assert abs(draws.mean() - 0.8) < 4.5 * math.sqrt(0.2 / (2 * S)) and len(np.unique(draws)) == 2 * S

    # nested plates at dims -1 and -2: the draws' plate goes to dim -3
    def plated_model(x):
        with pyro.plate("rows", 1, dim=-2), pyro.plate("cols", 2, dim=-1):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z.sum(), 1.0), obs=x)

    def plated_guide(x):
        with pyro.plate("rows", 1, dim=-2), pyro.plate("cols", 2, dim=-1):
            pyro.sample("z", dist.Normal(torch.tensor([-1.0, 1.0]), torch.tensor([0.5, 2.0])))

    _fake_mcmc(monkeypatch, [{"z": torch.randn(S, 1, 2, generator=g, dtype=torch.float64)}] * 2, divergences=[[], []])
    guide, calls = counting(plated_guide)
    res = compare_posteriors(plated_model, guide, x, num_samples=S, num_warmup=0)
    assert len(calls) == 4 and res.labels == ["z[0]", "z[1]"]
    assert res.moments_from["guide"] == "analytic"
    np.testing.assert_allclose(res.covariances["guide"], np.diag([0.25, 4.0]), rtol=1e-6)
    draws = res.samples["guide"]
    assert np.all(np.abs(draws.mean(0) - [-1.0, 1.0]) < 4 * np.sqrt(np.array([0.25, 4.0]) / (2 * S)))

    # a sequential plate (no dim) does not count: scalar sites z0, z1, z2, vectorized at dim -1
    def seq_model(x):
        for i in pyro.plate("seq", 3):
            pyro.sample(f"z{i}", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(0.0, 1.0), obs=x)

    def seq_guide(x):
        for i in pyro.plate("seq", 3):
            pyro.sample(f"z{i}", dist.Normal(float(i), 0.5))

    _fake_mcmc(monkeypatch, [{f"z{i}": torch.randn(S, generator=g, dtype=torch.float64) for i in range(3)}] * 2,
               divergences=[[], []])
    guide, calls = counting(seq_guide)
    res = compare_posteriors(seq_model, guide, x, num_samples=S, num_warmup=0)
    assert len(calls) == 4 and res.labels == ["z0", "z1", "z2"] and res.moments_from["guide"] == "samples"
    assert np.all(np.abs(res.samples["guide"].mean(0) - [0.0, 1.0, 2.0]) < 4 * 0.5 / math.sqrt(2 * S))
    for i in range(3):  # each site's variable in the InferenceData holds its own column
        for src in ("nuts", "guide"):
            np.testing.assert_array_equal(res.idata.posterior[f"z{i}"].sel(source=src).values.reshape(-1),
                                          res.samples[src][:, i])


def test_labels_of_matrix_sites_and_guides_that_are_one_gaussian():
    """Labels name each coordinate of a site (size-1 dims dropped); a multivariate normal guide over one site has
    analytic moments, a guide with an extra (guide-only) latent or a non-Gaussian site is fitted from its draws."""
    from pyro_noisevae.evaluation.posterior import _gaussian_moments, _guide_analytic_moments, _labels, _latent_sites

    assert _labels(["a", "m", "v", "s"], {"a": (), "m": (2, 3), "v": (1, 2, 1), "s": (1, 1)}) == [
        "a", "m[0,0]", "m[0,1]", "m[0,2]", "m[1,0]", "m[1,1]", "m[1,2]", "v[0]", "v[1]", "s"]
    loc = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    cov = torch.tensor([[[2.0, 0.5], [0.5, 1.0]]], dtype=torch.float64)

    def mvn_guide(x):
        with pyro.plate("data", 1):
            pyro.sample("z", dist.MultivariateNormal(loc, cov))

    m, S = _guide_analytic_moments(mvn_guide, (None,), {}, ["z"])
    assert m.dtype == torch.float64 and torch.equal(m, loc[0]) and torch.allclose(S, cov[0], rtol=1e-15)

    def extra_guide(x):
        mvn_guide(x)
        pyro.sample("u", dist.Normal(0.0, 1.0))

    assert _guide_analytic_moments(extra_guide, (None,), {}, ["z"]) is None
    # a float32 guide: moments in float64
    m, S = _guide_analytic_moments(lambda x: pyro.sample("z", dist.Normal(0.5, 2.0)), (None,), {}, ["z"])
    assert m.dtype == S.dtype == torch.float64 and m.tolist() == [0.5] and S.tolist() == [[4.0]]
    # a guide whose family changes from call to call (Laplace, then Normal) is not one Gaussian
    flips = []

    def flipping_guide(x):
        flips.append(1)
        pyro.sample("z", dist.Laplace(0.0, 1.0) if len(flips) % 2 else dist.Normal(0.0, 1.0))

    assert _guide_analytic_moments(flipping_guide, (None,), {}, ["z"]) is None and len(flips) == 2
    assert _guide_analytic_moments(lambda x: pyro.sample("z", dist.Laplace(0.0, 1.0)), (None,), {}, ["z"]) is None
    assert _gaussian_moments(dist.Laplace(0.0, 1.0)) is None
    assert _gaussian_moments(dist.MultivariateNormal(loc.expand(2, 2), cov.expand(2, 2, 2))) is None

    def model(x):
        u = pyro.sample("u", dist.Normal(0.0, 1.0), infer={"is_auxiliary": True})
        with pyro.plate("data", 3, subsample_size=2):
            pyro.sample("z", dist.Normal(u, 1.0))
            pyro.sample("x", dist.Normal(0.0, 1.0), obs=torch.zeros(2))

    tr = pyro.poutine.trace(model).get_trace(None)
    assert _latent_sites(tr) == ["z"]


# ------------------------------------------------------------------------------------------ posterior_plots
def _plot_result(monkeypatch, S=60):
    g = torch.Generator().manual_seed(7)
    chains = [{"a": 1.0 + torch.randn(S, generator=g, dtype=torch.float64),
               "b": torch.randn(S, 2, generator=g, dtype=torch.float64) * torch.tensor([0.5, 2.0], dtype=torch.float64)}
              for _ in range(2)]
    _fake_mcmc(monkeypatch, chains, divergences=[[], []])
    exact = (torch.tensor([0.0, 0.2, -0.3], dtype=torch.float64), torch.diag(torch.tensor([1.0, 0.25, 4.0],
                                                                                          dtype=torch.float64)))
    return compare_posteriors(_two_site_model, _two_site_guide, torch.tensor(0.5), exact=exact, num_samples=S,
                              num_warmup=0, seed=0)


def test_plot_pair_draws_each_source_and_its_gaussian_fit(monkeypatch):
    import matplotlib.pyplot as plt
    from scipy.stats import norm

    res = _plot_result(monkeypatch)
    fig = plot_pair(res, coords=["b[1]", 0], max_points=50, title="one point")
    try:
        assert len(fig.axes) == 4 and tuple(fig.get_size_inches()) == pytest.approx((2.6 * 2 + 0.6, 2.6 * 2 + 0.4))
        (a00, a01), (a10, a11) = np.array(fig.axes).reshape(2, 2)
        assert not a01.axison and a00.axison and a10.axison and a11.axison  # upper triangle empty
        assert a10.get_xlabel() == "b[1]" and a11.get_xlabel() == "a" and a10.get_ylabel() == "a"
        assert a00.get_ylabel() == "" and a00.get_xlabel() == ""
        colors = {"exact": "black", "nuts": "tab:blue", "guide": "tab:red"}
        # the legend in the empty panel names the sources in order, with their colours
        legend = a01.get_legend()
        assert [t.get_text() for t in legend.get_texts()] == ["exact", "nuts", "guide"]
        assert [matplotlib.colors.to_hex(h.get_color()) for h in legend.legend_handles] == [
            matplotlib.colors.to_hex(c) for c in colors.values()]
        assert [h.get_linewidth() for h in legend.legend_handles] == [2, 2, 2]
        assert legend._loc == 10 and not legend.get_frame_on()  # centred in the panel, no frame
        assert fig._suptitle.get_fontsize() == 9
        # diagonal: per source a histogram and the fitted normal density over the 0.1 - 99.9 % range
        for ax, i in ((a00, 2), (a11, 0)):
            assert len(ax.patches) == 3 and len(ax.lines) == 3
            for line, src in zip(ax.lines, ("exact", "nuts", "guide")):
                xs, ys = line.get_data()
                x = res.samples[src][:, i]
                assert len(xs) == 200 and xs[0] == pytest.approx(np.percentile(x, 0.1))
                assert xs[-1] == pytest.approx(np.percentile(x, 99.9)) and line.get_linestyle() == "--"
                sd = math.sqrt(res.covariances[src][i, i])
                np.testing.assert_allclose(ys, norm.pdf(xs, res.means[src][i], sd), rtol=1e-10)
                assert matplotlib.colors.to_hex(line.get_color()) == matplotlib.colors.to_hex(colors[src])
            for patch, src in zip(ax.patches, ("exact", "nuts", "guide")):  # a step histogram of 40 bins, density
                ref, edges = np.histogram(res.samples[src][:, i], bins=40, density=True)
                v = patch.get_path().vertices
                assert np.isin(np.round(ref, 9), np.round(v[:, 1], 9)).all()
                assert v[:, 1].max() == pytest.approx(ref.max())
                assert np.unique(np.round(v[:, 0], 9)).size == 41
                assert matplotlib.colors.to_hex(patch.get_edgecolor()) == matplotlib.colors.to_hex(colors[src])
                assert patch.get_alpha() == 0.7
            assert [line.get_linewidth() for line in ax.lines] == [1.2] * 3
        # below the diagonal: up to max_points draws of (b[1], a) and the 2-sigma ellipse of each fit
        for k, src in enumerate(("exact", "nuts", "guide")):
            pts = a10.collections[k].get_offsets()
            assert len(pts) == 50 and a10.collections[k].get_label() == src
            assert matplotlib.colors.to_hex(a10.collections[k].get_facecolor()[0]) == matplotlib.colors.to_hex(
                colors[src])
            assert a10.collections[k].get_alpha() == 0.3 and list(a10.collections[k].get_sizes()) == [4]
            x = res.samples[src][:, [2, 0]]
            assert all(any(np.array_equal(p, r) for r in x) for p in pts)  # actual draws, no repeats
            assert len({tuple(p) for p in np.asarray(pts)}) == 50
            ell = np.column_stack(a10.lines[k].get_data())
            m, S = res.means[src][[2, 0]], res.covariances[src][np.ix_([2, 0], [2, 0])]
            maha = np.einsum("ni,ij,nj->n", ell - m, np.linalg.inv(S), ell - m)
            np.testing.assert_allclose(maha, 4.0, rtol=1e-9)
            # a closed curve once around (100 points, 0 to 2 pi), in the source's colour
            assert len(ell) == 100 and np.allclose(ell[0], ell[-1])
            assert np.allclose(ell[25], m + 2 * (np.linalg.eigh(S)[1] * np.sqrt(np.linalg.eigh(S)[0])) @ [
                math.cos(2 * math.pi * 25 / 99), math.sin(2 * math.pi * 25 / 99)])
            assert matplotlib.colors.to_hex(a10.lines[k].get_color()) == matplotlib.colors.to_hex(colors[src])
            assert a10.lines[k].get_linewidth() == 1.5
        title = fig._suptitle.get_text()
        kl = ", ".join(f"KL({p}) = {v:.3g}" for p, v in res.kl.items())
        assert title == "one point\n" + kl and title.count("KL(") == 3
    finally:
        plt.close(fig)
    # all coordinates, a subset of sources, one coordinate, another seed; errors with their messages
    fig = plot_pair(res, sources=["guide"], max_points=1000, figsize=(4, 3))
    try:
        assert len(fig.axes) == 9 and tuple(fig.get_size_inches()) == (4, 3)
        assert fig.axes[2].get_legend() is not None and fig.axes[1].get_legend() is None  # the top-right panel
        assert [ax.get_xlabel() for ax in fig.axes[6:]] == ["a", "b[0]", "b[1]"]
        assert len(fig.axes[3].collections[0].get_offsets()) == 120  # all draws when fewer than max_points
        assert fig._suptitle.get_text() == ", ".join(f"KL({p}) = {v:.3g}" for p, v in res.kl.items())
    finally:
        plt.close(fig)
    # the defaults: at most 400 draws per source, seed 0
    many = _plot_result(monkeypatch, S=250)
    fig, fig0 = plot_pair(many, coords=[0, 1]), plot_pair(many, coords=[0, 1], seed=0)
    try:
        pts = np.asarray(fig.axes[2].collections[0].get_offsets())
        assert len(pts) == 400 and np.array_equal(pts, np.asarray(fig0.axes[2].collections[0].get_offsets()))
    finally:
        plt.close(fig)
        plt.close(fig0)
    picks = []
    for seed in (0, 0, 1):
        fig = plot_pair(res, coords=[0, 1], max_points=5, seed=seed)
        picks.append(np.asarray(fig.axes[2].collections[1].get_offsets()).copy())
        plt.close(fig)
    assert np.array_equal(picks[0], picks[1]) and not np.array_equal(picks[0], picks[2])
    fig = plot_pair(res, coords=["a"])
    try:
        legend = fig.axes[0].get_legend()
        assert len(fig.axes) == 1 and [t.get_text() for t in legend.get_texts()] == ["exact", "nuts", "guide"]
        assert {t.get_fontsize() for t in legend.get_texts()} == {8.0} and not legend.get_frame_on()
        assert legend._loc == 0  # matplotlib's "best", not the centre of the only panel
        assert fig.axes[0].get_xlabel() == "a" and tuple(fig.get_size_inches()) == pytest.approx((3.2, 3.0))
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match=_full("unknown sources ['hmc']; this result has ['exact', 'nuts', "
                                                   "'guide']")):
        plot_pair(res, sources=["nuts", "hmc"])
    with pytest.raises(TypeError, match=_full("result must be a PosteriorComparison, got dict")):
        plot_pair({})


def test_plot_subspace_error_one_line_per_method():
    import matplotlib.pyplot as plt

    from pyro_noisevae.evaluation import plot_subspace_error

    records = [{"method": "pca", "outlier_rate": 0.2, "subspace_error": 0.5},
               {"method": "per-entry", "outlier_rate": 0.1, "subspace_error": 0.05},
               {"method": "pca", "outlier_rate": 0.0, "subspace_error": 0.1},
               {"method": "mine", "outlier_rate": 0.1, "subspace_error": 0.3},
               {"method": "per-entry", "outlier_rate": 0.0, "subspace_error": 0.02},
               {"method": "pca", "outlier_rate": 0.1, "subspace_error": 0.3}]
    fig = plot_subspace_error(records, title="robust PCA")
    try:
        (ax,) = fig.axes
        lines = ax.get_lines()
        assert [ln.get_label() for ln in lines] == ["PCA", "per-entry variance (robust)", "mine"]
        np.testing.assert_array_equal(lines[0].get_xdata(), [0.0, 0.1, 0.2])  # sorted by outlier rate
        np.testing.assert_array_equal(lines[0].get_ydata(), [0.1, 0.3, 0.5])
        np.testing.assert_array_equal(lines[1].get_ydata(), [0.02, 0.05])
        assert [ln.get_marker() for ln in lines] == ["o", "D", "x"]
        assert matplotlib.colors.to_hex(lines[0].get_color()) == "#000000"
        assert matplotlib.colors.to_hex(lines[1].get_color()) == matplotlib.colors.to_hex("tab:red")
        assert ax.get_xlabel() == "outlier rate" and ax.get_ylabel() == r"subspace error $\sin\theta_{\max}$"
        assert ax.get_ylim() == pytest.approx((-0.02, 1.02)) and ax.get_title() == "robust PCA"
        assert [t.get_text() for t in ax.get_legend().get_texts()] == [ln.get_label() for ln in lines]
        assert ax.xaxis.get_gridlines()[0].get_visible() and ax.xaxis.get_gridlines()[0].get_alpha() == 0.3
        assert {t.get_fontsize() for t in ax.get_legend().get_texts()} == {8.0}
        assert tuple(fig.get_size_inches()) == (5, 3.5)
    finally:
        plt.close(fig)
    fig0, ax0 = plt.subplots()
    try:
        records2 = [{"method": "shared", "outlier_rate": 0.0, "subspace_error": 0.1},
                    {"method": "per-dimension", "outlier_rate": 0.0, "subspace_error": 0.2}]
        assert plot_subspace_error(records2, ax=ax0, xlabel="rate") is fig0
        labels = ["linear VAE, shared σ² (pPCA)", "per-dimension variance"]
        assert [ln.get_label() for ln in ax0.get_lines()] == labels
        assert [ln.get_marker() for ln in ax0.get_lines()] == ["s", "^"]
        assert ax0.get_xlabel() == "rate" and ax0.get_title() == ""
    finally:
        plt.close(fig0)


def test_repr_of_a_wide_table_is_cut_at_30_columns(monkeypatch):
    """d = 6 coordinates give 6 means + 21 covariances + 5 columns = 32 > 30: pandas shows 30 and "..."."""
    def model6(x):
        z = pyro.sample("z", dist.Normal(torch.zeros(6), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z.sum(-1), 1.0), obs=x)

    def guide6(x):
        pyro.sample("z", dist.Normal(torch.zeros(6), 1.0).to_event(1))

    g = torch.Generator().manual_seed(6)
    _fake_mcmc(monkeypatch, [{"z": torch.randn(10, 6, generator=g, dtype=torch.float64)}], divergences=[[]])
    res = compare_posteriors(model6, guide6, torch.tensor(0.0), num_samples=10, num_warmup=0, num_chains=1)
    assert res.table.shape == (2, 32)
    text = repr(res)
    # the first 15 and the last 15 columns: cov[z[1],z[4]] and cov[z[1],z[5]] are left out
    assert "..." in text and "cov[z[1],z[4]]" not in text and "cov[z[1],z[5]]" not in text
    assert "cov[z[1],z[3]]" in text and "cov[z[2],z[2]]" in text and text.endswith("[2 rows x 32 columns]")


def test_defaults_are_two_chains_of_500_draws_after_300_warmup_steps_seed_0(monkeypatch):
    g = torch.Generator().manual_seed(8)
    chains = [{"z": torch.randn(500, generator=g, dtype=torch.float64)} for _ in range(2)]
    calls = _fake_mcmc(monkeypatch, chains, divergences=[[], []])
    res = compare_posteriors(_scalar_model, _fixed_guide, torch.tensor(1.0))
    assert [c.kwargs for c in calls] == [{"num_samples": 500, "warmup_steps": 300, "disable_progbar": True}] * 2
    assert [c.kernel.kwargs for c in calls] == [{"target_accept_prob": 0.8, "max_tree_depth": 10}] * 2
    assert res.samples["guide"].shape == (1000, 1)
    seeded = compare_posteriors(_scalar_model, _fixed_guide, torch.tensor(1.0), seed=0)
    np.testing.assert_array_equal(res.samples["guide"], seeded.samples["guide"])
    assert torch.equal(calls[0].rng, calls[2].rng)
