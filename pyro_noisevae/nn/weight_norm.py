"""Weight-normalized inference (WNI): encoder layers whose weight-vector norms are bounded by a hyper-parameter."""

import math

import torch
from torch import nn
from torch.nn import functional as F

from .mlp import _activation

__all__ = ["BoundedWeightNormLinear", "WNIEncoder"]


def _check_bound(bound):
    b = float(bound)
    if not math.isfinite(b) or b <= 0:
        raise ValueError(f"the weight-norm bound must be a finite number > 0, got {bound!r}")
    return b


class BoundedWeightNormLinear(nn.Module):
    r"""
    Linear layer :math:`y = W x + c` whose rows (one weight vector per output unit) are
    reparameterized as in weight normalization (Salimans & Kingma 2016), with the norm capped
    (Shu et al. 2018, eqs. 17-18):

    .. math::

        w_i = g_i \frac{v_i}{\lVert v_i \rVert}, \qquad g_i = H \,\mathrm{sigmoid}(u_i) \in (0, H),

    so :math:`\lVert w_i \rVert < H` for every unit and the layer is :math:`\sqrt{\text{out}}\,H`-Lipschitz
    in the Euclidean norm. Trainable: ``v`` (out, in), ``u`` (out,), ``bias`` (out,). The bound
    :math:`H` is a fixed hyper-parameter (a Python float, never trained).

    Input ``(*, in_features)``, output ``(*, out_features)``.

    :param int in_features: input size.
    :param int out_features: output size.
    :param float bound: :math:`H > 0`.
    :param bool bias: learn the bias :math:`c` (default ``True``).
    """

    def __init__(self, in_features, out_features, bound, bias=True):
        super().__init__()
        if int(in_features) < 1 or int(out_features) < 1:
            raise ValueError(f"layer sizes must be positive, got {in_features} -> {out_features}")
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.bound = bound = _check_bound(bound)  # a fixed hyper-parameter, kept in full precision
        init = nn.Linear(self.in_features, self.out_features, bias=bias)
        self.v = nn.Parameter(init.weight.detach().clone())
        # start at the usual initialization's norms, clipped into the open interval (0, H)
        ratio = (self.v.detach().norm(dim=1) / bound).clamp(0.01, 0.99)
        self.u = nn.Parameter(torch.logit(ratio))
        self.bias = nn.Parameter(init.bias.detach().clone()) if bias else None

    @property
    def g(self):
        """Row norms :math:`g_i = H\\,\\mathrm{sigmoid}(u_i)`, shape ``(out_features,)``."""
        return self.bound * torch.sigmoid(self.u)

    @property
    def weight(self):
        """The effective weight matrix :math:`W`, shape ``(out_features, in_features)``."""
        v = self.v
        return self.g.unsqueeze(-1) * v / v.norm(dim=1, keepdim=True).clamp_min(torch.finfo(v.dtype).tiny)

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bound={self.bound:g}"


class WNIEncoder(nn.Module):
    r"""
    Weight-normalized inference encoder (WNI-VAE / WNI-IWAE of Shu et al. 2018): an MLP
    ``x_dim -> hidden_dims... -> 2 z_dim`` built from :class:`BoundedWeightNormLinear` layers with
    bound :math:`H`, returning the Gaussian parameters of :math:`q(z \mid x)` like
    :class:`~pyro_noisevae.nn.MLPEncoder`. Bounding every layer's weight norms bounds the encoder's
    Lipschitz constant, which smooths the amortized posterior map (smaller :math:`H` = stronger
    regularization).

    ``forward(x)``: ``x`` of shape ``(*, x_dim)`` -> ``(loc, scale)``, each ``(*, z_dim)``, with
    ``scale = softplus(.) + min_scale``.

    :param int x_dim: input size.
    :param int z_dim: latent size.
    :param hidden_dims: hidden layer sizes (default ``(500, 500)``).
    :param float bound: the weight-norm bound :math:`H > 0`.
    :param str activation: ``softplus | relu | tanh | elu``.
    :param float min_scale: floor added to the scale.
    """

    def __init__(self, x_dim, z_dim, hidden_dims=(500, 500), bound=1.0, activation="softplus", min_scale=1e-4):
        super().__init__()
        self.x_dim, self.z_dim, self.min_scale = int(x_dim), int(z_dim), float(min_scale)
        dims = [self.x_dim, *map(int, hidden_dims)]
        if any(d < 1 for d in dims) or self.z_dim < 1:
            raise ValueError(f"layer sizes must be positive, got {dims + [self.z_dim]}")
        bound = _check_bound(bound)
        layers = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [BoundedWeightNormLinear(a, b, bound), _activation(activation)]
        layers.append(BoundedWeightNormLinear(dims[-1], 2 * self.z_dim, bound))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        loc, raw = self.net(x).split(self.z_dim, dim=-1)
        return loc, F.softplus(raw) + self.min_scale
