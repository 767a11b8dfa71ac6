"""Multilayer perceptrons used as VAE encoders and decoders."""

from torch import nn

__all__ = ["MLP", "MLPDecoder", "MLPEncoder", "activation_module"]

_ACTIVATIONS = {"softplus": nn.Softplus, "relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "silu": nn.SiLU}


def activation_module(name):
    """A fresh activation layer by name (one of the keys of the registry: softplus, relu, tanh, elu, silu)."""
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {name!r}") from None


class MLP(nn.Sequential):
    """
    ``in_dim -> hidden_dims... -> out_dim`` with an activation after every hidden layer.

    Input ``(*, in_dim)``, output ``(*, out_dim)``.
    """

    def __init__(self, in_dim, hidden_dims, out_dim, activation="softplus"):
        dims = [int(in_dim), *map(int, hidden_dims)]
        if any(d < 1 for d in dims) or int(out_dim) < 1:
            raise ValueError(f"layer sizes must be positive, got {dims + [out_dim]}")
        layers = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), activation_module(activation)]
        layers.append(nn.Linear(dims[-1], int(out_dim)))
        super().__init__(*layers)


class MLPEncoder(nn.Module):
    r"""
    Amortized Gaussian encoder :math:`q(z \mid x) = N(\mu(x), \mathrm{diag}\,s(x)^2)`.

    ``forward(x)``: ``x`` of shape ``(*, x_dim)`` -> ``(loc, scale)`` each ``(*, z_dim)``, with
    ``scale = softplus(.) + min_scale`` so that it is strictly positive.
    """

    def __init__(self, x_dim, z_dim, hidden_dims=(500, 500), activation="softplus", min_scale=1e-4):
        super().__init__()
        self.x_dim, self.z_dim, self.min_scale = int(x_dim), int(z_dim), float(min_scale)
        self.net = MLP(x_dim, hidden_dims, 2 * self.z_dim, activation)

    def forward(self, x):
        loc, raw = self.net(x).split(self.z_dim, dim=-1)
        return loc, nn.functional.softplus(raw) + self.min_scale


class MLPDecoder(nn.Module):
    """
    Decoder network ``z (*, z_dim) -> (*, x_dim)``. Its raw output is read by the likelihood
    (as logits for Bernoulli-type likelihoods, through a sigmoid for the mean of Normal/Laplace).
    """

    def __init__(self, z_dim, x_dim, hidden_dims=(500, 500), activation="softplus"):
        super().__init__()
        self.z_dim, self.x_dim = int(z_dim), int(x_dim)
        self.net = MLP(z_dim, hidden_dims, x_dim, activation)

    def forward(self, z):
        return self.net(z)
