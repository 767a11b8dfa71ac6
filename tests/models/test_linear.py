"""Linear-Gaussian special case: closed-form pPCA, exact posterior / likelihood, SVI of the linear VAE."""

import math

import pyro
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO, TraceMeanField_ELBO
from pyro.optim import ClippedAdam

from pyro_noisevae.models.linear import (
    LinearVAE,
    exact_log_likelihood,
    exact_posterior,
    ppca_mle,
    principal_angles,
    subspace_distance,
)



def _low_rank_data(N=400, D=6, K=2, scales=(3.0, 2.0), noise=0.5, offset=1.0, seed=1):
    """x = U diag(scales) v + offset + noise·ε with orthonormal U (D, K), float64."""
    g = torch.Generator().manual_seed(seed)
    U = torch.linalg.qr(torch.randn(D, K, generator=g, dtype=torch.float64))[0]
    v = torch.randn(N, K, generator=g, dtype=torch.float64)
    eps = torch.randn(N, D, generator=g, dtype=torch.float64)
    x = v @ (U * torch.tensor(scales, dtype=torch.float64)).T + offset + noise * eps
    return x, U


def _num_params(D, K):
    # W (up to rotation), b, sigma2
    return D * K - K * (K - 1) // 2 + D + 1


# ------------------------------------------------------------------------------------------ closed form
def test_ppca_matches_direct_numerical_maximization():
    x, _ = _low_rank_data(N=300, D=5, K=2)
    N, D = x.shape
    K = 2
    fit = ppca_mle(x, K)
    # independent computation: maximize the exact log-likelihood over (W, b, log sigma2) with L-BFGS
    g = torch.Generator().manual_seed(5)
    W = torch.randn(D, K, generator=g, dtype=torch.float64).requires_grad_()
    b = torch.zeros(D, dtype=torch.float64, requires_grad=True)
    log_s2 = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([W, b, log_s2], max_iter=300, tolerance_grad=1e-12, tolerance_change=1e-14,
                            history_size=50, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = -exact_log_likelihood(W, b, log_s2.exp(), x).mean()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        ll_num = exact_log_likelihood(W, b, log_s2.exp(), x).mean()
        ll_closed = fit.log_likelihood(x).mean()
        # the closed form is the global maximum: never below a local numerical optimum, and equal to it here
        assert ll_closed >= ll_num - 1e-9
        assert abs(ll_closed - ll_num) < 1e-7
        assert torch.allclose(W @ W.T, fit.W @ fit.W.T, atol=1e-4)
        assert torch.allclose(log_s2.exp(), fit.sigma2, rtol=1e-4)
        assert torch.allclose(b, fit.mean, atol=1e-5)


def test_ppca_closed_form_identities_and_perturbations():
    x, U = _low_rank_data(N=500, D=6, K=2)
    fit = ppca_mle(x, 2)
    S = torch.cov(x.T, correction=0)
    C = fit.covariance
    # C reproduces S on the principal subspace and keeps the total variance (Tipping & Bishop's stationarity)
    assert torch.allclose(C @ fit.components, S @ fit.components, atol=1e-10)
    assert torch.allclose(torch.trace(C), torch.trace(S), rtol=1e-12)
    assert torch.allclose(fit.components.T @ fit.components, torch.eye(2, dtype=x.dtype), atol=1e-12)
    # W has orthogonal columns, sigma2 is the mean of the discarded eigenvalues
    WtW = fit.W.T @ fit.W
    assert torch.allclose(WtW, torch.diag(WtW.diagonal()), atol=1e-10)
    assert torch.allclose(fit.sigma2, fit.eigenvalues[2:].mean())
    # random perturbations of every parameter only lower the likelihood
    ll0 = fit.log_likelihood(x).mean()
    g = torch.Generator().manual_seed(3)
    for eps in (1e-3, 1e-2, 1e-1):
        for _ in range(5):
            W = fit.W + eps * torch.randn(fit.W.shape, generator=g, dtype=x.dtype)
            b = fit.mean + eps * torch.randn(fit.mean.shape, generator=g, dtype=x.dtype)
            s2 = fit.sigma2 * math.exp(eps * torch.randn((), generator=g, dtype=x.dtype).item())
            assert exact_log_likelihood(W, b, s2, x).mean() < ll0
    # the right rotation of W is not identified: the likelihood is unchanged
    R = torch.linalg.qr(torch.randn(2, 2, generator=g, dtype=x.dtype))[0]
    assert torch.allclose(exact_log_likelihood(fit.W @ R, fit.mean, fit.sigma2, x).mean(), ll0, atol=1e-12)
    # and it estimates the generating subspace (sanity: far better than a random 2-D subspace)
    assert subspace_distance(fit.W, U) < 0.1


def test_ppca_keeps_dtype():
    x, _ = _low_rank_data()
    fit = ppca_mle(x.float(), 2)
    assert fit.W.dtype == fit.sigma2.dtype == fit.mean.dtype == torch.float32
    assert fit.W.shape == (6, 2) and fit.mean.shape == (6,) and fit.sigma2.shape == ()


def test_exact_posterior_and_likelihood_match_joint_gaussian_conditioning():
    g = torch.Generator().manual_seed(0)
    D, K = 5, 3
    W = torch.randn(D, K, generator=g, dtype=torch.float64)
    b = torch.randn(D, generator=g, dtype=torch.float64)
    s2 = torch.tensor(0.3, dtype=torch.float64)
    x = torch.randn(4, D, generator=g, dtype=torch.float64)
    post = exact_posterior(W, b, s2, x)
    assert post.batch_shape == (4,) and post.event_shape == (K,)
    # conditioning the joint Gaussian of (z, x): E[z|x] = W^T C^{-1} (x - b), Cov = I - W^T C^{-1} W
    C = W @ W.T + s2 * torch.eye(D, dtype=W.dtype)
    mean = torch.linalg.solve(C, (x - b).T).T @ W
    cov = torch.eye(K, dtype=W.dtype) - W.T @ torch.linalg.solve(C, W)
    assert torch.allclose(post.mean, mean, atol=1e-10)
    assert torch.allclose(post.covariance_matrix[0], cov, atol=1e-10)
    # Bayes' rule at an arbitrary z: log p(x) = log p(x|z) + log p(z) - log p(z|x)
    z = torch.randn(4, K, generator=g, dtype=torch.float64)
    lpx_z = torch.distributions.Normal(z @ W.T + b, s2.sqrt()).log_prob(x).sum(-1)
    lpz = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    assert torch.allclose(exact_log_likelihood(W, b, s2, x), lpx_z + lpz - post.log_prob(z), atol=1e-10)


def _set_exact_guide(vae, fit):
    """Load the pPCA MLE into the decoder and the exact posterior map into the guide."""
    D, K = fit.W.shape
    M = fit.W.T @ fit.W + fit.sigma2 * torch.eye(K, dtype=fit.W.dtype)
    A = torch.linalg.solve(M, fit.W.T)
    cov = fit.sigma2 * torch.linalg.inv(M)
    with torch.no_grad():
        vae.W.copy_(fit.W)
        vae.b.copy_(fit.mean)
        vae.sigma = fit.sigma2.sqrt()
        vae.enc_weight.copy_(A)
        vae.enc_bias.copy_(-A @ fit.mean)
        if vae.guide_covariance == "diag":
            vae.enc_scale = cov.diagonal().sqrt()
        else:
            vae.enc_scale_tril = torch.linalg.cholesky(cov)


@pytest.mark.parametrize("guide_covariance", ["diag", "full"])
def test_exact_guide_makes_every_elbo_sample_equal_log_likelihood(guide_covariance):
    x, _ = _low_rank_data(N=50)
    fit = ppca_mle(x, 2)
    vae = LinearVAE(6, 2, guide_covariance=guide_covariance).double()
    _set_exact_guide(vae, fit)
    ll = fit.log_likelihood(x)
    assert torch.allclose(vae.log_likelihood(x), ll, atol=1e-10)
    assert torch.allclose(vae.elbo(x), ll, atol=1e-10)
    # with q = p(z|x), log p(x, z) - log q(z|x) = log p(x) for every z: even a one-sample Trace_ELBO is exact,
    # which checks that the Pyro model and guide programs implement the formulas above
    for _ in range(3):
        assert Trace_ELBO().loss(vae.model, vae.guide, x) == pytest.approx(-ll.sum().item(), rel=1e-10)
    # the guide is the exact posterior
    q, p = vae.guide_distribution(x), vae.exact_posterior(x)
    assert torch.allclose(q.mean, p.mean, atol=1e-10)
    assert torch.allclose(q.variance, p.variance, atol=1e-10)


def test_svi_reaches_ppca_and_amortized_posterior_is_exact():
    torch.set_default_dtype(torch.float64)  # the conftest fixture restores float32 afterwards
    x, _ = _low_rank_data(N=400, D=6, K=2)
    N, D = x.shape
    K = 2
    fit = ppca_mle(x, K)
    vae = LinearVAE(D, K, init_scale=1.0)
    steps = 500
    optim = ClippedAdam({"lr": 0.05, "lrd": 0.05 ** (1 / steps)})
    elbo = TraceMeanField_ELBO(num_particles=4, vectorize_particles=True, max_plate_nesting=1)
    svi = SVI(vae.model, vae.guide, optim, elbo)
    for _ in range(steps):
        svi.step(x)
    # Tolerances are the *statistical* resolution of the MLE, so we ask that optimisation error be below
    # sampling error: (i) the log-likelihood: Wilks, 2N(l_mle - l_true) ~ chi2_p, so differences below p/(2N)
    # nats per point are statistically invisible; (ii) sigma2 is a mean of N(D-K) squared residuals, relative
    # standard error sqrt(2/(N(D-K))); (iii) the principal subspace: Anderson's asymptotic variance of the
    # K-th eigenvector along eigenvector j is lam_K lam_j / (N (lam_K - lam_j)^2).
    p = _num_params(D, K)
    ll_gap = (fit.log_likelihood(x).mean() - vae.log_likelihood(x).mean()).item()
    assert -1e-9 <= ll_gap < p / (2 * N)
    assert abs(vae.sigma2.item() / fit.sigma2.item() - 1) < math.sqrt(2 / (N * (D - K)))
    lam = fit.eigenvalues
    angle_sd = math.sqrt(sum(lam[K - 1] * lam[j] / (N * (lam[K - 1] - lam[j]) ** 2) for j in range(K, D)))
    assert principal_angles(vae.W.detach(), fit.W).max().item() < angle_sd
    # at the optimum the ELBO gap KL(q(z|x) || p(z|x)) vanishes: below the same p/(2N) resolution
    q, post = vae.guide_distribution(x), vae.exact_posterior(x)
    q_mvn = torch.distributions.MultivariateNormal(q.mean.detach(), torch.diag_embed(q.variance.detach()))
    kl = torch.distributions.kl_divergence(q_mvn, post)
    assert kl.mean().item() < p / (2 * N)
    assert torch.allclose(vae.log_likelihood(x) - vae.elbo(x), kl, atol=1e-8)  # ELBO gap identity


# ------------------------------------------------------------------------------------------ subspaces
def test_principal_angles_known_values():
    D = 5
    e = torch.eye(D, dtype=torch.float64)
    for theta in (1e-6, 0.3, math.pi / 2):
        A = e[:, :2]
        B = torch.stack([e[:, 0], math.cos(theta) * e[:, 1] + math.sin(theta) * e[:, 2]], 1)
        angles = principal_angles(A, B)
        assert torch.allclose(angles, torch.tensor([0.0, theta], dtype=torch.float64), atol=1e-12)
        # any basis of the same subspace gives the same angles
        R = torch.tensor([[2.0, 1.0], [0.5, -3.0]], dtype=torch.float64)
        assert torch.allclose(principal_angles(A @ R, B), angles, atol=1e-12)
        assert subspace_distance(A, B) == pytest.approx(math.sin(theta), abs=1e-12)
        assert subspace_distance(A, B, reduction="rms") == pytest.approx(math.sin(theta) / math.sqrt(2), abs=1e-12)
    with pytest.raises(ValueError, match="reduction"):
        subspace_distance(A, B, reduction="mean")


# ------------------------------------------------------------------------------------------ validation
def test_input_validation():
    x, _ = _low_rank_data(N=20, D=4)
    with pytest.raises(ValueError, match="smaller than the data dimension"):
        ppca_mle(x, 4)
    with pytest.raises(ValueError, match="exceeds the data dimension"):
        ppca_mle(x, 5)
    with pytest.raises(ValueError, match=">= 1"):
        ppca_mle(x, 0)
    with pytest.raises(TypeError, match="must be an int"):
        ppca_mle(x, 1.5)
    bad = x.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        ppca_mle(bad, 2)
    with pytest.raises(ValueError, match=r"shape \(N, D\)"):
        ppca_mle(x[0], 2)
    with pytest.raises(TypeError, match="floating"):
        ppca_mle(x.long(), 2)
    with pytest.raises(ValueError, match="at least 2 rows"):
        ppca_mle(x[:1], 2)
    flat = torch.randn(10, 2, dtype=torch.float64) @ torch.randn(2, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="subspace"):
        ppca_mle(flat, 2)
    fit = ppca_mle(x, 2)
    with pytest.raises(ValueError, match="features"):
        fit.posterior(x[:, :3])
    with pytest.raises(ValueError, match="sigma2"):
        exact_log_likelihood(fit.W, fit.mean, -1.0, x)
    with pytest.raises(ValueError, match="exceeds"):
        LinearVAE(3, 4)
    with pytest.raises(ValueError, match="guide_covariance"):
        LinearVAE(3, 2, guide_covariance="lowrank")
    with pytest.raises(ValueError, match="sigma"):
        LinearVAE(3, 2, sigma=0.0)
    vae = LinearVAE(4, 2)
    with pytest.raises(ValueError, match="x_dim=4"):
        vae.model(x[:, :3].float())
    with pytest.raises(ValueError, match="rows"):
        principal_angles(torch.randn(4, 2), torch.randn(5, 2))
    with pytest.raises(ValueError, match="linearly dependent"):
        principal_angles(torch.ones(4, 2), torch.randn(4, 2))
    pyro.clear_param_store()
