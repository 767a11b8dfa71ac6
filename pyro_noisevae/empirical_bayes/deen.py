"""DEEN: deep energy estimator network, an MLP energy of the noisy variable (neural empirical Bayes)."""

import math

import torch
from torch import nn

from ..nn import MLP
from .energy import Energy, check_points

__all__ = ["DEEN"]


def _default_width(x_dim):
    # at least the data dimension, with a margin, and never below the 1000 units known to work on MNIST
    return max(1000, math.ceil(1.25 * x_dim))


class DEEN(Energy):
    r"""
    Neural empirical Bayes energy: an MLP :math:`f_\theta : \mathbb{R}^D \to \mathbb{R}`, learned with the
    same denoising objective as UVB (:func:`~pyro_noisevae.empirical_bayes.denoising_loss`), with the
    estimator :math:`\hat x(y) = y - \sigma^2 \nabla_y f_\theta(y)`.

    The activation must be smooth (default SiLU) so that :math:`\nabla_y f_\theta` is differentiable
    in :math:`\theta` and :math:`y` (double backpropagation; with ReLU the Hessian is zero almost everywhere).

    The defaults are chosen for high dimension, where the denoiser must remove the noise from the many
    directions in which the data hardly varies, i.e. give :math:`f_\theta` a curvature close to
    :math:`1/\sigma^2` in all of them:

    * **The first hidden layer must be at least as wide as the data.** The gradient of
      :math:`f_\theta(y) = g(W_1 y + b_1)` is :math:`W_1^\top \nabla g`, which lies in the row space of
      :math:`W_1`: with :math:`H < D` first-layer units the denoiser cannot touch the other :math:`D - H`
      directions, which keep all their noise (an MSE of at least :math:`\sigma^2 (D - H)/D` per coordinate,
      whatever the training). This is why ``DEEN(784, (500, 500))`` is worse than the mean image on MNIST.
    * With :math:`H` only a little above :math:`D`, a random :math:`W_1` is badly conditioned (its smallest
      singular values are close to 0), which makes some directions slow to learn: the first layer starts
      with orthogonal columns (all singular values equal to the root-mean-square one of PyTorch's default
      initialization).
    * The input is scaled by :math:`1/\sqrt{D}` (and the first layer's initial weights by
      :math:`\sqrt{D}`, so the function at initialization is unchanged). This divides the first layer's
      effective Adam step by :math:`\sqrt{D}`: Adam moves each of the :math:`D` input weights by about the
      learning rate, so without it a step shifts the first-layer pre-activations by up to
      ``lr * sum(|y|)``, which grows with :math:`D` and :math:`\sigma` and kept the denoiser near the mean
      image at :math:`\sigma = 1`.
    * SiLU rather than softplus: its curvature at 0 is twice softplus's, and it learned several times
      faster in these experiments.

    ``forward(y)``: ``y`` of shape ``(B, x_dim)`` -> ``f(y)`` of shape ``(B,)``.

    :param int x_dim: data dimension D.
    :param hidden_dims: hidden layer sizes; the first should be ``>= x_dim`` (see above). Default: two
        layers of ``max(1000, ceil(1.25 * x_dim))`` units, i.e. ``(1000, 1000)`` for MNIST.
    :param str activation: ``"silu"`` (default), ``"softplus"``, ``"tanh"`` or ``"elu"``.

    **References**

    1. S. Saremi, A. Mehrjou, B. Schölkopf, A. Hyvärinen, *Deep Energy Estimator Networks* (2018).
    2. S. Saremi, A. Hyvärinen, *Neural Empirical Bayes*, JMLR (2019).
    """

    def __init__(self, x_dim=784, hidden_dims=None, activation="silu"):
        super().__init__()
        if activation == "relu":
            raise ValueError("DEEN needs a smooth activation (silu, softplus, tanh or elu): relu has a zero Hessian")
        self.dim = int(x_dim)
        if hidden_dims is None:
            hidden_dims = (_default_width(self.dim),) * 2
        self.net = MLP(self.dim, hidden_dims, 1, activation)
        self.input_scale = 1.0 / math.sqrt(self.dim)
        first = self.net[0]
        with torch.no_grad():
            # orthogonal, scaled to the mean Frobenius norm of PyTorch's default init (entries
            # U(-1/sqrt(D), 1/sqrt(D)): E||W||_F^2 = H / 3), so that only the conditioning changes; divided by
            # input_scale, so that the effective first layer input_scale * W1 has that norm
            out_dim, in_dim = first.weight.shape
            gain = math.sqrt(out_dim / (3 * min(out_dim, in_dim))) / self.input_scale
            nn.init.orthogonal_(first.weight, gain=gain)

    def forward(self, y):
        check_points(y, self.dim)
        return self.net(self.input_scale * y).squeeze(-1)
