"""Robust outlier dismissal (Dai et al., "hidden talents"): a linear VAE with a learned decoder variance."""

import math

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import TraceMeanField_ELBO
from pyro.infer.util import is_validation_enabled
from pyro.nn import PyroModule, pyro_method
from torch import nn

from .._checks import check_latent_dim, check_matrix, check_positive_int
from ..infer.fit_loop import FitLoop

__all__ = ["NOISE_MODELS", "RobustLinearVAE", "fit_robust"]

#: decoder-variance structures of :class:`RobustLinearVAE`
NOISE_MODELS = ("shared", "per-dimension", "per-entry")


class RobustLinearVAE(PyroModule):
    r"""
    Linear VAE with a **learned diagonal decoder variance** and a per-data-point Gaussian guide:

    .. math::

        z_n \sim N(0, I_K), \qquad x_{nd} \mid z_n \sim N\big((W z_n + b)_d,\ \gamma_{nd}\big), \qquad
        q(z_n) = N(m_n, \mathrm{diag}\, s_n^2).

    The structure of :math:`\gamma` is ``noise``:

    * ``"shared"``: :math:`\gamma_{nd} = \sigma^2` (probabilistic PCA; the ELBO optimum is the pPCA MLE),
    * ``"per-dimension"``: :math:`\gamma_{nd} = \gamma_d` (a learned variance for each pixel/feature,
      shared by all data points; factor analysis),
    * ``"per-entry"``: :math:`\gamma_{nd}` free for each data point and dimension.

    ``"per-entry"`` is the setting of Dai et al. (2018): their decoder covariance
    :math:`\mathrm{diag}\,\gamma(z)` is a flexible function of the latent code, and with a concentrated
    encoder each data point effectively gets its own per-dimension variances. We learn those values
    directly. Maximizing the ELBO over :math:`\gamma_{nd}` gives
    :math:`\gamma_{nd} = E_q[(x_{nd} - w_d^\top z_n - b_d)^2]`, so the bound contains
    :math:`-\tfrac12 \sum_{nd} \log E_q[r_{nd}^2]`: a log penalty on residuals that lets a few entries
    take huge residuals (outliers are "explained" by their variance) while the rest are fit tightly,
    which is the robust-PCA behaviour. A shared or per-dimension variance cannot single out entries at
    random positions and behaves like PCA. Variances are bounded below by ``min_variance`` (the bound
    is otherwise unbounded when an entry is fit exactly).

    The guide is local (``m``, ``s`` are parameters of shape ``(N, K)``), so all three noise models are
    compared with exact-family inference; pass ``index`` (the rows' positions in the data set) to
    mini-batch.

    :param int x_dim: D. :param int z_dim: K ``<= D``. :param int num_data: N (rows of the data set).
    :param str noise: one of :data:`NOISE_MODELS`.
    :param float min_variance: lower bound of every :math:`\gamma` (> 0).
    :param init: optional :class:`~pyro_noisevae.models.linear.PPCA` fit to start from (W, b, posterior means and
        noise variance); otherwise random ``W`` and unit variances.
    :param torch.Tensor init_data: the ``(N, D)`` data, needed with ``init`` to start the guide at the
        pPCA posterior means.
    """

    def __init__(self, x_dim, z_dim, num_data, noise="per-entry", min_variance=1e-4, init=None, init_data=None):
        super().__init__()
        D = check_positive_int(x_dim, "x_dim")
        K = check_latent_dim(z_dim, D)
        N = check_positive_int(num_data, "num_data")
        if noise not in NOISE_MODELS:
            raise ValueError(f"noise must be one of {NOISE_MODELS}, got {noise!r}")
        min_variance = float(min_variance)
        if not (math.isfinite(min_variance) and min_variance > 0):
            raise ValueError(f"min_variance must be a finite number > 0, got {min_variance}")
        self.x_dim, self.z_dim, self.num_data, self.noise, self.min_variance = D, K, N, noise, min_variance
        if init is not None:
            if init.W.shape != (D, K):
                raise ValueError(f"init.W has shape {tuple(init.W.shape)}, expected ({D}, {K})")
            # contiguous copies: Pyro's param store keeps contiguous tensors, and a strided parameter would be
            # silently replaced by a copy there (the module would then never see the updates)
            W0, b0 = init.W.detach().float().contiguous().clone(), init.mean.detach().float().contiguous().clone()
            var0 = float(init.sigma2)
            if init_data is not None:
                init_data = check_matrix(init_data, "init_data")
                if init_data.shape != (N, D):
                    raise ValueError(f"init_data must have shape ({N}, {D}), got {tuple(init_data.shape)}")
                m0 = init.posterior(init_data.to(init.W.dtype)).mean.detach().float().contiguous()
            else:
                m0 = torch.zeros(N, K, device=W0.device)
        else:
            W0, b0, var0, m0 = 0.1 * torch.randn(D, K), torch.zeros(D), 1.0, torch.zeros(N, K)
        var0 = max(var0, 2 * min_variance)
        device = W0.device  # every parameter on the device of the initial fit (CUDA when init is on CUDA)
        b0, m0 = b0.to(device), m0.to(device)
        # plain nn.Parameters with explicit transforms (not PyroParams): a model is used as it is, whatever
        # another model of the same class left in Pyro's global param store (see fit_robust)
        self.W = nn.Parameter(W0)
        self.b = nn.Parameter(b0)
        shape = {"shared": (), "per-dimension": (D,), "per-entry": (N, D)}[noise]
        self.log_excess_variance = nn.Parameter(torch.full(shape, math.log(var0 - min_variance), device=device))
        self.z_loc = nn.Parameter(m0)
        self.log_z_scale = nn.Parameter(torch.full((N, K), math.log(0.1), device=device))

    @property
    def variance(self):
        """Decoder variances :math:`\\gamma` (shape ``()``, ``(D,)`` or ``(N, D)`` by ``noise``), ``> min_variance``."""
        return self.min_variance + self.log_excess_variance.exp()

    @property
    def z_scale(self):
        """Guide standard deviations :math:`s_n`, ``(N, K)``."""
        return self.log_z_scale.exp()

    def _index(self, x, index):
        if is_validation_enabled():
            check_matrix(x, "x")
            if x.shape[1] != self.x_dim:
                raise ValueError(f"x has {x.shape[1]} features but the model expects x_dim={self.x_dim}")
        if index is None:
            if x.shape[0] != self.num_data:
                raise ValueError(
                    f"x has {x.shape[0]} rows but the model was built for num_data={self.num_data}; pass index= "
                    "(the rows' positions in the data set) to use mini-batches"
                )
            return torch.arange(self.num_data, device=x.device)
        index = torch.as_tensor(index, device=x.device)
        if index.shape != (x.shape[0],) or index.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"index must be an integer tensor of shape ({x.shape[0]},), got {tuple(index.shape)}")
        if index.min() < 0 or index.max() >= self.num_data:
            raise ValueError(f"index values must be in [0, {self.num_data})")
        return index.long()

    def decoder_variance(self, index):
        """:math:`\\gamma` of the rows ``index``: shape ``(B, D)``."""
        v = self.variance
        if self.noise == "per-entry":
            return v[index]
        return v.expand(index.shape[0], self.x_dim)

    @pyro_method
    def model(self, x, index=None):
        index = self._index(x, index)
        with pyro.plate("data", self.num_data, subsample=index):
            z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], self.z_dim), 1.0).to_event(1))
            loc = z @ self.W.to(x.dtype).T + self.b.to(x.dtype)
            scale = self.decoder_variance(index).to(x.dtype).sqrt()
            return pyro.sample("x", dist.Normal(loc, scale).to_event(1), obs=x)

    @pyro_method
    def guide(self, x, index=None):
        index = self._index(x, index)
        with pyro.plate("data", self.num_data, subsample=index):
            loc, scale = self.z_loc[index].to(x.dtype), self.log_z_scale[index].exp().to(x.dtype)
            return pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    def reconstruct(self, index=None):
        """Denoised data :math:`W m_n + b` (posterior-mean projection), shape ``(B, D)``."""
        with torch.no_grad():
            m = self.z_loc if index is None else self.z_loc[index]
            return m @ self.W.T + self.b


def fit_robust(model, data, steps=1000, lr=0.05, num_particles=1, seed=0, final_lr_fraction=0.05):
    r"""
    Maximize the ELBO of a :class:`RobustLinearVAE` by full-batch stochastic gradient steps:
    :class:`torch.optim.Adam` on the module's parameters, on
    :meth:`TraceMeanField_ELBO.differentiable_loss <pyro.infer.TraceMeanField_ELBO.differentiable_loss>`
    (analytic KL), with a learning rate decaying geometrically from ``lr`` to ``lr * final_lr_fraction``
    (one :class:`~pyro_noisevae.training.FitLoop` epoch per step).
    Optimizing ``model.parameters()`` directly (rather than Pyro's global param store) keeps successive
    models independent.

    :param torch.Tensor data: ``(N, D)``, the rows the model was built for.
    :param int seed: passed to :func:`pyro.set_rng_seed` before fitting (``None`` leaves the RNGs alone).
    :param float final_lr_fraction: final / initial learning rate, in ``(0, 1]``.
    :returns: list of per-step losses (negative ELBO per data point).
    :raises FloatingPointError: if the loss becomes NaN or infinite.
    """
    steps = check_positive_int(steps, "steps")
    data = check_matrix(data, "data")
    if seed is not None:
        pyro.set_rng_seed(int(seed))
    elbo = TraceMeanField_ELBO(num_particles=num_particles, vectorize_particles=num_particles > 1, max_plate_nesting=1)
    n = data.shape[0]
    loop = FitLoop(lambda: elbo.differentiable_loss(model.model, model.guide, data) / n,
                   torch.optim.Adam(model.parameters(), lr=lr), epochs=steps, lr_decay=final_lr_fraction,
                   handle_signals=False)
    return loop.run().losses
