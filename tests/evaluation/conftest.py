"""An exactly solvable model for the evaluation tests: linear-Gaussian with a diagonal exact posterior."""

import pyro
import pyro.distributions as dist
import pytest
import torch


class LinearGaussian:
    r"""
    :math:`z \sim N(0, I_K)`, :math:`x \mid z \sim N(Wz + b, s^2 I_D)`, in ``pyro.plate("data")``.

    ``W`` has orthogonal columns, so :math:`W^\top W` is diagonal and the exact posterior
    :math:`p(z \mid x) = N(A(x - b), \Sigma)`, :math:`\Sigma = (I + W^\top W / s^2)^{-1}`,
    :math:`A = \Sigma W^\top / s^2`, is a diagonal Gaussian: the mean-field guide family contains it.
    :math:`\log p(x) = \log N(x; b, W W^\top + s^2 I)`. Everything in float64.
    """

    def __init__(self, x_dim=6, z_dim=2, column_norms=(2.0, 0.8), noise=0.5, seed=0):
        gen = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(x_dim, z_dim, generator=gen, dtype=torch.float64))
        self.W = q * torch.tensor(column_norms, dtype=torch.float64)
        self.b = 0.3 * torch.randn(x_dim, generator=gen, dtype=torch.float64)
        self.s = float(noise)
        self.x_dim, self.z_dim = x_dim, z_dim
        prec = torch.eye(z_dim, dtype=torch.float64) + self.W.T @ self.W / self.s**2
        self.post_cov = torch.linalg.inv(prec)
        assert torch.allclose(self.post_cov, torch.diag(self.post_cov.diagonal()), atol=1e-12)
        self.post_scale = self.post_cov.diagonal().sqrt()
        self.A = self.post_cov @ self.W.T / self.s**2
        self.marginal = dist.MultivariateNormal(self.b, self.W @ self.W.T + self.s**2 * torch.eye(x_dim, dtype=torch.float64))

    def sample(self, n, seed=1):
        torch.manual_seed(seed)
        return self.marginal.sample((n,))

    def log_px(self, x):
        """Exact :math:`\\log p(x)`, shape ``(N,)``."""
        return self.marginal.log_prob(x)

    def posterior(self, x):
        """Exact posterior ``(loc, scale)``, each ``(N, K)``."""
        return (x - self.b) @ self.A.T, self.post_scale.expand(x.shape[0], self.z_dim)

    def kl_to_posterior(self, x, loc, scale):
        """Closed-form :math:`\\mathrm{KL}(N(loc, scale^2) \\| p(z \\mid x))` per data point, ``(N,)``."""
        mu, sd = self.posterior(x)
        return torch.distributions.kl_divergence(
            dist.Normal(loc, scale).to_event(1), dist.Normal(mu, sd).to_event(1)
        )

    def model(self, x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], self.z_dim), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ self.W.T + self.b, self.s).to_event(1), obs=x)

    def encoder(self, shift=0.0, scale_factor=1.0):
        """An encoder ``x -> (loc, scale)``: the exact posterior map, shifted and with scales multiplied."""

        def encode(x):
            loc, scale = self.posterior(x)
            return loc + shift, scale * scale_factor

        return encode

    def guide(self, shift=0.0, scale_factor=1.0):
        """A Gaussian guide with the (possibly deliberately wrong) encoder of :meth:`encoder`."""
        encode = self.encoder(shift, scale_factor)

        def guide(x):
            loc, scale = encode(x)
            with pyro.plate("data", x.shape[0]):
                pyro.sample("z", dist.Normal(loc, scale).to_event(1))

        return guide


@pytest.fixture
def linear_gaussian():
    return LinearGaussian()
