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
