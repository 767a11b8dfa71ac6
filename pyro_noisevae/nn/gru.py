"""Recurrent encoder reading an image row by row (the GRU inference network of the DVAE paper)."""

from torch import nn
from torch.nn import functional as F

__all__ = ["GRUEncoder"]


class GRUEncoder(nn.Module):
    r"""
    Gaussian encoder :math:`q(z \mid x) = N(\mu, \mathrm{diag}\, s^2)` whose inference network is a GRU
    reading the ``H`` rows of an ``H x W`` image as a sequence of ``W``-dimensional inputs
    (Im et al. 2017, recurrent inference network table):

    .. math::

        h_t = \mathrm{GRU}(x_{t,:}, h_{t-1}),\ t = 1..H, \qquad (\mu, \log(e^{s - s_0} - 1)) = A h_H + c,

    with :math:`h_0 = 0` and :math:`s_0` = ``min_scale`` (so ``scale = softplus(.) + min_scale``).
    Built from :class:`torch.nn.GRUCell` layers, whose weights are read as attributes at every
    call, so the module works as a :class:`~pyro.nn.PyroModule` (parameters in Pyro's param store).

    ``forward(x)``: ``x`` of shape ``(*, H*W)`` -> ``(loc, scale)``, each ``(*, z_dim)``.

    :param image_shape: ``(H, W)``, e.g. ``(28, 28)`` for MNIST.
    :param int z_dim: latent size.
    :param int hidden_size: GRU state size.
    :param int num_layers: stacked GRU layers (default 1).
    :param float min_scale: floor added to the scale.
    """

    def __init__(self, image_shape, z_dim, hidden_size=200, num_layers=1, min_scale=1e-4):
        super().__init__()
        if len(image_shape) != 2 or any(int(s) < 1 for s in image_shape):
            raise ValueError(f"image_shape must be (H, W) with positive sizes, got {image_shape!r}")
        if int(z_dim) < 1 or int(hidden_size) < 1 or int(num_layers) < 1:
            raise ValueError(
                f"z_dim, hidden_size and num_layers must be positive, got {z_dim}, {hidden_size}, {num_layers}"
            )
        self.image_shape = (int(image_shape[0]), int(image_shape[1]))
        self.x_dim = self.image_shape[0] * self.image_shape[1]
        self.z_dim, self.hidden_size, self.min_scale = int(z_dim), int(hidden_size), float(min_scale)
        sizes = [self.image_shape[1]] + [self.hidden_size] * int(num_layers)
        self.cells = nn.ModuleList(nn.GRUCell(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.head = nn.Linear(self.hidden_size, 2 * self.z_dim)

    def forward(self, x):
        if x.shape[-1] != self.x_dim:
            raise ValueError(
                f"GRUEncoder expects inputs of shape (*, {self.x_dim}) (flattened {self.image_shape} images), "
                f"got {tuple(x.shape)}"
            )
        lead = x.shape[:-1]
        rows = x.reshape(-1, *self.image_shape)  # (N, H, W)
        states = [rows.new_zeros(rows.shape[0], self.hidden_size) for _ in self.cells]
        for t in range(self.image_shape[0]):
            inp = rows[:, t]
            for i, cell in enumerate(self.cells):
                states[i] = cell(inp, states[i])
                inp = states[i]
        loc, raw = self.head(states[-1]).split(self.z_dim, dim=-1)
        scale = F.softplus(raw) + self.min_scale
        return loc.reshape(lead + (self.z_dim,)), scale.reshape(lead + (self.z_dim,))

