"""Linear-Gaussian special case: the linear VAE, closed-form probabilistic PCA, exact posteriors."""

import math
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import scipy.linalg
import torch
from torch.distributions import MultivariateNormal, kl_divergence
from pyro.distributions import constraints
from pyro.infer.util import is_validation_enabled
from pyro.nn import PyroModule, PyroParam, pyro_method
from torch import nn

from .._checks import check_latent_dim, check_matrix
from .vae import data_plate

__all__ = [
    "LinearVAE",
    "PPCA",
    "check_latent_dim",
    "exact_log_likelihood",
    "exact_posterior",
    "ppca_mle",
    "principal_angles",
    "subspace_distance",
]


# ------------------------------------------------------------------------------------------------ validation
def _check_params(W, b, sigma2):
    if not isinstance(W, torch.Tensor) or W.dim() != 2:
        raise ValueError(f"W must be a (D, K) tensor, got {getattr(W, 'shape', type(W).__name__)}")
    b = torch.as_tensor(b, dtype=W.dtype, device=W.device)
    if b.shape != W.shape[:1]:
        raise ValueError(
            f"b must have shape ({W.shape[0]},) to match W of shape {tuple(W.shape)}, got {tuple(b.shape)}"
        )
    sigma2 = torch.as_tensor(sigma2, dtype=W.dtype, device=W.device)
    if sigma2.dim() != 0 or not bool(torch.isfinite(sigma2)) or sigma2.item() <= 0:
        raise ValueError(f"sigma2 must be a finite scalar > 0, got {sigma2}")
    if not (torch.isfinite(W).all() and torch.isfinite(b).all()):
        raise ValueError("W and b must be finite")
    return W, b, sigma2


# ------------------------------------------------------------------------------------------ exact formulas
def exact_posterior(W, b, sigma2, x):
    r"""
    Exact posterior of the linear-Gaussian model :math:`z \sim N(0, I_K)`,
    :math:`x \mid z \sim N(Wz + b, \sigma^2 I_D)`:

    .. math::

        p(z \mid x) = N\big(M^{-1} W^\top (x - b),\; \sigma^2 M^{-1}\big), \qquad
        M = W^\top W + \sigma^2 I_K .

    :param torch.Tensor W: loading matrix ``(D, K)``.
    :param torch.Tensor b: offset ``(D,)``.
    :param sigma2: noise variance :math:`\sigma^2 > 0` (scalar).
    :param torch.Tensor x: observations ``(B, D)``.
    :returns: :class:`~pyro.distributions.MultivariateNormal` with ``batch_shape == (B,)`` and
        ``event_shape == (K,)`` (the covariance does not depend on ``x``).
    """
    W, b, sigma2 = _check_params(W, b, sigma2)
    x = check_matrix(x, "x")
    if x.shape[1] != W.shape[0]:
        raise ValueError(f"x has {x.shape[1]} features but W has {W.shape[0]} rows")
    K = W.shape[1]
    M = W.T @ W + sigma2 * torch.eye(K, dtype=W.dtype, device=W.device)
    L = torch.linalg.cholesky(M)
    loc = torch.cholesky_solve(((x - b) @ W).T, L).T
    cov = sigma2 * torch.cholesky_inverse(L)
    cov = 0.5 * (cov + cov.T)
    return dist.MultivariateNormal(loc, covariance_matrix=cov.expand(x.shape[0], K, K))


def exact_log_likelihood(W, b, sigma2, x):
    r"""
    Exact marginal log-likelihood of the linear-Gaussian model, per data point:

    .. math:: \log p(x) = \log N(x;\, b,\; W W^\top + \sigma^2 I_D).

    :param torch.Tensor W: ``(D, K)``; ``b``: ``(D,)``; ``sigma2``: scalar > 0; ``x``: ``(B, D)``.
    :returns: ``(B,)`` tensor of log-densities (nats).
    """
    W, b, sigma2 = _check_params(W, b, sigma2)
    x = check_matrix(x, "x")
    if x.shape[1] != W.shape[0]:
        raise ValueError(f"x has {x.shape[1]} features but W has {W.shape[0]} rows")
    D = W.shape[0]
    C = W @ W.T + sigma2 * torch.eye(D, dtype=W.dtype, device=W.device)
    return dist.MultivariateNormal(b, covariance_matrix=0.5 * (C + C.T)).log_prob(x)


# ------------------------------------------------------------------------------------------ pPCA closed form
@dataclass
class PPCA:
    r"""
    Maximum-likelihood probabilistic PCA (Tipping & Bishop, 1999), returned by :func:`ppca_mle`.

    :ivar torch.Tensor W: loadings ``(D, K)``, :math:`W = U_K (\Lambda_K - \sigma^2 I)^{1/2}`.
    :ivar torch.Tensor sigma2: noise variance (0-dim), the mean of the ``D - K`` smallest eigenvalues.
    :ivar torch.Tensor mean: sample mean ``(D,)`` (the MLE of ``b``).
    :ivar torch.Tensor eigenvalues: all ``D`` eigenvalues of the sample covariance, descending.
    :ivar torch.Tensor components: the ``K`` leading eigenvectors ``(D, K)`` (orthonormal columns).
    """

    W: torch.Tensor
    sigma2: torch.Tensor
    mean: torch.Tensor
    eigenvalues: torch.Tensor
    components: torch.Tensor

    @property
    def latent_dim(self):
        return self.W.shape[1]

    @property
    def covariance(self):
        """Model covariance :math:`W W^\\top + \\sigma^2 I`, shape ``(D, D)``."""
        D = self.W.shape[0]
        return self.W @ self.W.T + self.sigma2 * torch.eye(D, dtype=self.W.dtype, device=self.W.device)

    def log_likelihood(self, x):
        """Exact :math:`\\log p(x)` under the fitted model, shape ``(B,)`` (see :func:`exact_log_likelihood`)."""
        return exact_log_likelihood(self.W, self.mean, self.sigma2, x)

    def posterior(self, x):
        """Exact :math:`p(z \\mid x)` (see :func:`exact_posterior`): batch ``(B,)``, event ``(K,)``."""
        return exact_posterior(self.W, self.mean, self.sigma2, x)


def ppca_mle(data, latent_dim):
    r"""
    Closed-form maximum-likelihood probabilistic PCA (Tipping & Bishop, 1999).

    With the sample mean :math:`\bar x` and the (biased, 1/N) sample covariance
    :math:`S = U \Lambda U^\top` (eigenvalues :math:`\lambda_1 \ge \dots \ge \lambda_D`), the maximizer of
    :math:`\sum_n \log N(x_n; b, W W^\top + \sigma^2 I)` is

    .. math::

        b = \bar x, \qquad
        \sigma^2 = \frac{1}{D - K} \sum_{j > K} \lambda_j, \qquad
        W = U_K (\Lambda_K - \sigma^2 I)^{1/2}

    (unique up to a right rotation of :math:`W`; we return the one with orthogonal columns). The
    computation runs in float64 and the result has the dtype of ``data``.

    :param torch.Tensor data: ``(N, D)`` observations, ``N >= 2``, finite.
    :param int latent_dim: ``K`` with ``1 <= K < D``.
    :rtype: PPCA
    :raises ValueError: for bad shapes, NaN/inf, ``K >= D``, or data that lie exactly in a
        ``K``-dimensional affine subspace (then :math:`\sigma^2 = 0` and the likelihood is unbounded).
    """
    data = check_matrix(data, "data", min_rows=2)
    N, D = data.shape
    K = check_latent_dim(latent_dim, D, strict=True)
    x = data.to(torch.float64)
    mean = x.mean(0)
    xc = x - mean
    S = xc.T @ xc / N
    evals, evecs = torch.linalg.eigh(0.5 * (S + S.T))
    evals, evecs = evals.flip(0).clamp(min=0.0), evecs.flip(1)
    sigma2 = evals[K:].mean()
    if sigma2 <= 1e-12 * evals[0].clamp(min=1e-300):
        raise ValueError(
            f"the data lie in a {K}-dimensional affine subspace (discarded eigenvalues are all zero), so the pPCA "
            "noise variance is 0 and the likelihood is unbounded; lower latent_dim or add noise"
        )
    U = evecs[:, :K]
    # a deterministic sign convention makes results comparable across runs
    U = U * U.gather(0, U.abs().argmax(0, keepdim=True)).sign()
    W = U * (evals[:K] - sigma2).clamp(min=0.0).sqrt()
    cast = dict(dtype=data.dtype, device=data.device)
    return PPCA(*(t.to(**cast).contiguous() for t in (W, sigma2, mean, evals, U)))


# ------------------------------------------------------------------------------------------ subspaces
def _orthonormal_basis(A, name):
    if not isinstance(A, torch.Tensor) or A.dim() != 2:
        raise ValueError(
            f"{name} must be a (D, K) matrix whose columns span the subspace, got {getattr(A, 'shape', A)}"
        )
    if not torch.isfinite(A).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    Q, R = torch.linalg.qr(A.to(torch.float64))
    diag = R.diagonal().abs()
    if diag.numel() == 0 or diag.min() <= 1e-10 * diag.max().clamp(min=1e-300):
        raise ValueError(f"the columns of {name} are linearly dependent (rank < {A.shape[1]}); pass a full-rank basis")
    return Q


def principal_angles(A, B):
    r"""
    Principal angles between the column spaces of ``A (D, K1)`` and ``B (D, K2)``, in radians,
    ascending, ``min(K1, K2)`` of them (:func:`scipy.linalg.subspace_angles`, accurate at small angles:
    it takes the sines from the singular values of :math:`(I - Q_A Q_A^\top) Q_B` where they are small).

    :returns: float64 tensor ``(min(K1, K2),)``.
    """
    if A.shape[0] != B.shape[0]:
        raise ValueError(f"A and B must have the same number of rows, got {tuple(A.shape)} and {tuple(B.shape)}")
    Qa, Qb = _orthonormal_basis(A, "A"), _orthonormal_basis(B, "B")
    angles = scipy.linalg.subspace_angles(Qa.cpu().numpy(), Qb.cpu().numpy())  # descending
    return torch.as_tensor(angles[::-1].copy(), dtype=torch.float64)


def subspace_distance(A, B, reduction="max"):
    r"""
    Distance between ``span(A)`` and ``span(B)`` from their principal angles :math:`\theta_i`:

    * ``"max"``: :math:`\sin\theta_{\max} = \lVert P_A - P_B \rVert_2` (for equal dimensions), 0 for the
      same subspace, 1 when some direction of one is orthogonal to the other;
    * ``"rms"``: :math:`\sqrt{\mathrm{mean}_i \sin^2\theta_i} = \lVert P_A - P_B \rVert_F / \sqrt{2K}`, less
      sensitive to one poorly determined direction (e.g. near-equal trailing eigenvalues).

    :returns: a Python float in ``[0, 1]``.
    """
    sines = torch.sin(principal_angles(A, B))
    if reduction == "max":
        return float(sines.max())
    if reduction == "rms":
        return float(sines.pow(2).mean().sqrt())
    raise ValueError(f"reduction must be 'max' or 'rms', got {reduction!r}")


# ------------------------------------------------------------------------------------------ the linear VAE
class LinearVAE(PyroModule):
    r"""
    Linear VAE: the Pyro model of probabilistic PCA with an amortized linear Gaussian guide.

    * ``model(x, num_data=None)``: :math:`z \sim N(0, I_K)` (site ``"z"``, ``(B, K)``, event dim 1),
      :math:`x \mid z \sim N(Wz + b, \sigma^2 I_D)` (site ``"x"``, ``(B, D)``), inside ``pyro.plate("data")``
      (subsampled with scale ``N / B`` when ``num_data = N`` is given).
    * ``guide(x, num_data=None)``: :math:`q(z \mid x) = N(A x + c, \Sigma_q)` with a global covariance,
      diagonal (``guide_covariance="diag"``, :math:`\Sigma_q = \mathrm{diag}(s^2)`) or full
      (``"full"``, :math:`\Sigma_q = L L^\top`). The exact posterior is of this form (see
      :func:`exact_posterior`), so at the optimum of the ELBO the guide is exact; with a diagonal guide
      the optimum picks :math:`W` with orthogonal columns (Dai et al., 2018; Lucas et al., 2019).

    :param int x_dim: D.
    :param int z_dim: K, ``1 <= K <= D``.
    :param str guide_covariance: ``"diag"`` or ``"full"``.
    :param float sigma: initial (or fixed, if ``learn_sigma=False``) noise standard deviation σ > 0.
    :param bool learn_sigma: learn σ by maximizing the ELBO (default) or keep it fixed (a buffer).
    :param float init_scale: standard deviation of the random initial entries of ``W``.
    """

    def __init__(self, x_dim, z_dim, guide_covariance="diag", sigma=1.0, learn_sigma=True, init_scale=0.1):
        super().__init__()
        if isinstance(x_dim, bool) or int(x_dim) != x_dim or int(x_dim) < 1:
            raise ValueError(f"x_dim must be a positive int, got {x_dim!r}")
        self.x_dim = int(x_dim)
        self.z_dim = check_latent_dim(z_dim, self.x_dim)
        if guide_covariance not in ("diag", "full"):
            raise ValueError(f"guide_covariance must be 'diag' or 'full', got {guide_covariance!r}")
        sigma = float(sigma)
        if not (math.isfinite(sigma) and sigma > 0):
            raise ValueError(f"sigma must be a finite number > 0, got {sigma}")
        self.guide_covariance = guide_covariance
        D, K = self.x_dim, self.z_dim
        self.W = nn.Parameter(init_scale * torch.randn(D, K))
        self.b = nn.Parameter(torch.zeros(D))
        if learn_sigma:
            self.sigma = PyroParam(torch.tensor(sigma), constraints.positive)
        else:
            self.register_buffer("sigma", torch.tensor(sigma))
        self.enc_weight = nn.Parameter(torch.zeros(K, D))
        self.enc_bias = nn.Parameter(torch.zeros(K))
        if guide_covariance == "diag":
            self.enc_scale = PyroParam(torch.ones(K), constraints.positive)
        else:
            self.enc_scale_tril = PyroParam(torch.eye(K), constraints.lower_cholesky)

    # -------------------------------------------------------------------------------------------- helpers
    def _check(self, x):
        if is_validation_enabled():
            check_matrix(x, "x")
            if x.shape[1] != self.x_dim:
                raise ValueError(f"x has {x.shape[1]} features but the model expects x_dim={self.x_dim}")
        return x

    @property
    def sigma2(self):
        """Noise variance :math:`\\sigma^2` (0-dim tensor)."""
        return self.sigma.pow(2)

    def guide_distribution(self, x):
        """The guide :math:`q(z \\mid x)` as a distribution with batch ``(B,)`` and event ``(K,)``."""
        x = self._check(x)
        loc = x @ self.enc_weight.T + self.enc_bias
        if self.guide_covariance == "diag":
            return dist.Normal(loc, self.enc_scale.expand_as(loc)).to_event(1)
        tril = self.enc_scale_tril.expand(loc.shape[:-1] + self.enc_scale_tril.shape)
        return dist.MultivariateNormal(loc, scale_tril=tril)

    # ---------------------------------------------------------------------------------------- Pyro programs
    @pyro_method
    def model(self, x, num_data=None):
        x = self._check(x)
        with data_plate(x, num_data):
            z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], self.z_dim), 1.0).to_event(1))
            loc = z @ self.W.T + self.b
            return pyro.sample("x", dist.Normal(loc, self.sigma.to(loc.dtype).expand_as(loc)).to_event(1), obs=x)

    @pyro_method
    def guide(self, x, num_data=None):
        x = self._check(x)
        with data_plate(x, num_data):
            return pyro.sample("z", self.guide_distribution(x))

    # ---------------------------------------------------------------------------------------- exact answers
    def exact_posterior(self, x):
        """Exact :math:`p_\\theta(z \\mid x)` at the current parameters (batch ``(B,)``, event ``(K,)``)."""
        with torch.no_grad():
            return exact_posterior(self.W, self.b, self.sigma2, self._check(x))

    def log_likelihood(self, x):
        """Exact :math:`\\log p_\\theta(x)` at the current parameters, shape ``(B,)``."""
        with torch.no_grad():
            return exact_log_likelihood(self.W, self.b, self.sigma2, self._check(x))

    def elbo(self, x):
        r"""
        Analytic ELBO per data point, shape ``(B,)``:

        .. math::

            \mathcal L(x) = -\tfrac D2 \log 2\pi\sigma^2
            - \frac{\lVert x - W m - b \rVert^2 + \mathrm{tr}(W \Sigma_q W^\top)}{2\sigma^2}
            - \mathrm{KL}\big(N(m, \Sigma_q) \,\Vert\, N(0, I)\big),

        with :math:`m = A x + c`. Equals :meth:`log_likelihood` exactly when the guide is the exact posterior.
        """
        with torch.no_grad():
            q = self.guide_distribution(x)
            m = q.mean
            cov = torch.diag_embed(q.variance[0]) if self.guide_covariance == "diag" else q.covariance_matrix[0]
            s2 = self.sigma2.to(x.dtype)
            resid = x - m @ self.W.T - self.b
            rec = -0.5 * self.x_dim * torch.log(2 * math.pi * s2) - (
                resid.pow(2).sum(-1) + torch.trace(self.W @ cov @ self.W.T)
            ) / (2 * s2)
            prior = MultivariateNormal(torch.zeros_like(m[0]), torch.eye(self.z_dim, dtype=m.dtype, device=m.device))
            kl = kl_divergence(MultivariateNormal(m, cov), prior)
            return rec - kl

    def to_ppca(self):
        """The current decoder as a :class:`PPCA` (``W``, ``sigma2``, ``mean = b``; eigen fields of ``W W^T``)."""
        with torch.no_grad():
            W, b, s2 = self.W.detach().clone(), self.b.detach().clone(), self.sigma2.detach().clone()
            U, S, _ = torch.linalg.svd(W, full_matrices=False)
            evals = torch.cat([S.pow(2) + s2, s2.expand(self.x_dim - self.z_dim)])
            return PPCA(W, s2, b, evals, U)
