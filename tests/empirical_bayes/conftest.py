"""Shared fixtures: a linear-Gaussian latent variable model whose marginal and posterior are closed form."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn


class LinearGaussianVAE(nn.Module):
    r"""
    :math:`z \sim N(0, I_K)`, :math:`y \mid z \sim N(Wz + b, \sigma^2 I_D)`, so that
    :math:`y \sim N(b, WW^\top + \sigma^2 I)`; guide :math:`q(z \mid y) = N(Ay + c, LL^\top)` with a full
    lower-triangular :math:`L`, a family that contains the exact posterior
    :math:`N(M^{-1} W^\top (y - b) / \sigma^2, M^{-1})`, :math:`M = I + W^\top W / \sigma^2`.
    A plain ``nn.Module`` (not a ``PyroModule``) to show that any Pyro model/guide pair works.
    """

    def __init__(self, d, k, sigma, dtype=torch.float64, init_scale=0.5):
        super().__init__()
        self.sigma = sigma
        self.W = nn.Parameter(init_scale * torch.randn(d, k, dtype=dtype))
        self.b = nn.Parameter(torch.zeros(d, dtype=dtype))
        self.A = nn.Parameter(init_scale * torch.randn(k, d, dtype=dtype))
        self.c = nn.Parameter(torch.zeros(k, dtype=dtype))
        self.L_raw = nn.Parameter(torch.zeros(k, k, dtype=dtype))  # L = tril(L_raw, -1) + diag(exp(diag))

    @property
    def L(self):
        return self.L_raw.tril(-1) + torch.diag_embed(self.L_raw.diagonal().exp())

    def model(self, y):
        k = self.W.shape[1]
        with pyro.plate("data", y.shape[0]):
            loc = y.new_zeros(y.shape[0], k)
            z = pyro.sample("z", dist.MultivariateNormal(loc, scale_tril=torch.eye(k, dtype=y.dtype)))
            pyro.sample("y", dist.Normal(z @ self.W.T + self.b, self.sigma).to_event(1), obs=y)

    def guide(self, y):
        with pyro.plate("data", y.shape[0]):
            pyro.sample("z", dist.MultivariateNormal(y @ self.A.T + self.c, scale_tril=self.L))

    def marginal(self):
        """``(loc, cov)`` of the exact marginal of y."""
        d = self.W.shape[0]
        return self.b.detach(), (self.W @ self.W.T).detach() + self.sigma**2 * torch.eye(d, dtype=self.W.dtype)

    @torch.no_grad()
    def set_exact_posterior(self):
        k = self.W.shape[1]
        m = torch.eye(k, dtype=self.W.dtype) + self.W.T @ self.W / self.sigma**2
        m_inv = torch.linalg.inv(m)
        self.A.copy_(m_inv @ self.W.T / self.sigma**2)
        self.c.copy_(-self.A @ self.b)
        chol = torch.linalg.cholesky(m_inv)
        self.L_raw.copy_(chol.tril(-1) + torch.diag_embed(chol.diagonal().log()))


@pytest.fixture
def linear_gaussian_vae():
    return LinearGaussianVAE

