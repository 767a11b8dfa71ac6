"""Weight-normalized inference (WNI): encoder layers whose weight-vector norms are bounded by a hyper-parameter."""

import math

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrize

from .mlp import activation_module

__all__ = ["BoundedWeightNorm", "BoundedWeightNormLinear", "WNIEncoder"]


def _check_bound(bound):
    b = float(bound)
    if not math.isfinite(b) or b <= 0:
        raise ValueError(f"the weight-norm bound must be a finite number > 0, got {bound!r}")
    return b


class BoundedWeightNorm(nn.Module):
    r"""
    A :mod:`torch.nn.utils.parametrize` parametrization of a weight matrix ``(out, in)`` by a magnitude per row,
    bounded by :math:`H`, and a direction (weight normalization of Salimans & Kingma 2016 with the norm capped,
    Shu et al. 2018, eqs. 17-18):

    .. math::

        w_i = g_i \frac{v_i}{\lVert v_i \rVert}, \qquad g_i = H \,\mathrm{sigmoid}(u_i) \in (0, H),

    so every row has :math:`\lVert w_i \rVert < H` whatever the raw tensors ``u`` ``(out,)`` and ``v``
    ``(out, in)`` (``original0`` and ``original1`` of the parametrization). Registering it (or assigning a weight
    afterwards) keeps the given matrix's row directions and its row norms clipped into :math:`[0.01 H, 0.99 H]`,
    where the sigmoid is not saturated.

    :param float bound: :math:`H > 0`, a fixed hyper-parameter (never trained).
    """

    def __init__(self, bound):
        super().__init__()
        self.bound = _check_bound(bound)  # a Python float, kept in full precision

    def forward(self, u, v):
        g = self.bound * torch.sigmoid(u)
        return g.unsqueeze(-1) * v / v.norm(dim=1, keepdim=True).clamp_min(torch.finfo(v.dtype).tiny)

    def right_inverse(self, weight):
        ratio = (weight.norm(dim=1) / self.bound).clamp(0.01, 0.99)
        return torch.logit(ratio), weight

    def extra_repr(self):
        return f"bound={self.bound:g}"


class BoundedWeightNormLinear(nn.Linear):
    r"""
    Linear layer :math:`y = W x + c` whose rows (one weight vector per output unit) have norms below a bound
    :math:`H`: ``weight`` is parametrized by :class:`BoundedWeightNorm` through
    :func:`torch.nn.utils.parametrize.register_parametrization`, so the layer is
    :math:`\sqrt{\text{out}}\,H`-Lipschitz in the Euclidean norm (:math:`\lVert W \rVert_2 \le
    \lVert W \rVert_F < \sqrt{\text{out}}\,H`). It starts from :class:`torch.nn.Linear`'s initialization, with
    row norms clipped into :math:`[0.01 H, 0.99 H]`.

    Trainable: ``u`` (out,), ``v`` (out, in) (stored as ``parametrizations.weight.original0`` and ``original1``)
    and ``bias`` (out,). The bound :math:`H` is a fixed hyper-parameter (a Python float, never trained).

    Input ``(*, in_features)``, output ``(*, out_features)``.

    :param int in_features: input size.
    :param int out_features: output size.
    :param float bound: :math:`H > 0`.
    :param bool bias: learn the bias :math:`c` (default ``True``).
    """

    def __init__(self, in_features, out_features, bound, bias=True):
        if int(in_features) < 1 or int(out_features) < 1:
            raise ValueError(f"layer sizes must be positive, got {in_features} -> {out_features}")
        norm = BoundedWeightNorm(bound)
        super().__init__(int(in_features), int(out_features), bias=bias)
        parametrize.register_parametrization(self, "weight", norm)

    @property
    def bound(self):
        """The bound :math:`H` on every row norm."""
        return self.parametrizations.weight[0].bound

    @property
    def u(self):
        r"""Raw magnitudes ``(out_features,)``: :math:`g_i = H\,\mathrm{sigmoid}(u_i)`."""
        return self.parametrizations.weight.original0

    @property
    def v(self):
        """Raw directions ``(out_features, in_features)``."""
        return self.parametrizations.weight.original1

    @property
    def g(self):
        r"""Row norms :math:`g_i = H\,\mathrm{sigmoid}(u_i)`, shape ``(out_features,)``."""
        return self.bound * torch.sigmoid(self.u)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints written before the parametrization held u and v as the layer's own parameters
        for old, new in (("u", "original0"), ("v", "original1")):
            new = f"{prefix}parametrizations.weight.{new}"
            if prefix + old in state_dict and new not in state_dict:
                state_dict[new] = state_dict.pop(prefix + old)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


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
            layers += [BoundedWeightNormLinear(a, b, bound), activation_module(activation)]
        layers.append(BoundedWeightNormLinear(dims[-1], 2 * self.z_dim, bound))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        loc, raw = self.net(x).split(self.z_dim, dim=-1)
        return loc, F.softplus(raw) + self.min_scale
