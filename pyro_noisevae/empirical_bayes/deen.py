"""DEEN: deep energy estimator network, an MLP energy of the noisy variable (neural empirical Bayes)."""

from ..nn import MLP
from .energy import Energy, check_points

__all__ = ["DEEN"]


class DEEN(Energy):
    r"""
    Neural empirical Bayes energy: an MLP :math:`f_\theta : \mathbb{R}^D \to \mathbb{R}`, learned with the
    same denoising objective as UVB (:func:`~pyro_noisevae.empirical_bayes.denoising_loss`), with the
    estimator :math:`\hat x(y) = y - \sigma^2 \nabla_y f_\theta(y)`.

    The activation must be smooth (default softplus) so that :math:`\nabla_y f_\theta` is differentiable
    in :math:`\theta` and :math:`y` (double backpropagation; with ReLU the Hessian is zero almost everywhere).

    ``forward(y)``: ``y`` of shape ``(B, x_dim)`` -> ``f(y)`` of shape ``(B,)``.

    :param int x_dim: data dimension D.
    :param hidden_dims: hidden layer sizes.
    :param str activation: ``"softplus"`` (default), ``"tanh"`` or ``"elu"``.

    **References**

    1. S. Saremi, A. Mehrjou, B. Schölkopf, A. Hyvärinen, *Deep Energy Estimator Networks* (2018).
    2. S. Saremi, A. Hyvärinen, *Neural Empirical Bayes*, JMLR (2019).
    """

    def __init__(self, x_dim=784, hidden_dims=(500, 500), activation="softplus"):
        super().__init__()
        if activation == "relu":
            raise ValueError("DEEN needs a smooth activation (softplus, tanh or elu): relu has a zero Hessian")
        self.dim = int(x_dim)
        self.net = MLP(self.dim, hidden_dims, 1, activation)

    def forward(self, y):
        check_points(y, self.dim)
        return self.net(y).squeeze(-1)
