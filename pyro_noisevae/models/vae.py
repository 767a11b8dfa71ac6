"""The VAE as a PyroModule with a pluggable noise model (decoder likelihood)."""

import pyro
import pyro.distributions as dist
import torch
from pyro.infer.util import is_validation_enabled
from pyro.nn import PyroModule, pyro_method
from pyro.nn.module import to_pyro_module_

from ..nn import MLPDecoder, MLPEncoder
from .likelihoods import make_likelihood

__all__ = ["VAE", "check_data", "data_plate"]


def check_data(x, x_dim=None, name="x"):
    """
    Validate a data batch: a floating tensor of shape ``(B, x_dim)`` with finite values.

    :raises TypeError, ValueError: with a message that says what to fix.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (batch, features), got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor (e.g. x.float() / 255), got dtype {x.dtype}")
    if x.dim() != 2:
        raise ValueError(
            f"{name} must have shape (batch, features), got {tuple(x.shape)}; flatten images with x.flatten(1)"
        )
    if x_dim is not None and x.shape[-1] != x_dim:
        raise ValueError(f"{name} has {x.shape[-1]} features but the model expects {x_dim}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values; clean or impute the data first")
    return x


def data_plate(x, num_data=None):
    """
    The ``"data"`` plate of a batch ``x`` ``(B, D)``: of size ``B``, or, when the batch is a mini-batch of a
    data set of ``num_data`` points, of size ``num_data`` subsampled to the batch (log-likelihoods scaled by
    ``num_data / B``).
    """
    batch = x.shape[0]
    if num_data is None or num_data == batch:
        return pyro.plate("data", batch)
    if num_data < batch:
        raise ValueError(f"num_data={num_data} is smaller than the batch size {batch}")
    return pyro.plate("data", num_data, subsample=torch.arange(batch, device=x.device))


class VAE(PyroModule):
    r"""
    Variational autoencoder with prior :math:`p(z) = N(0, I)`, decoder likelihood :math:`p(x|z)` chosen
    among the noise models of :mod:`pyro_noisevae.models.likelihoods`, and an amortized Gaussian guide
    :math:`q(z|x) = N(\mu(x), \mathrm{diag}\, s(x)^2)`.

    * ``model(x, num_data=None)``: site ``"z"`` (latent, shape ``(B, z_dim)``, event dim 1) and site
      ``"x"`` (observed, ``(B, x_dim)``), inside ``pyro.plate("data")``. With ``num_data = N`` the plate
      subsamples: the mini-batch log-likelihood is scaled by ``N / B`` (an unbiased estimate of the
      full-data bound).
    * ``model(None, num_data=None)``: the generative route. Both sites are sampled, ``"x"`` from the
      likelihood, in a ``pyro.plate("data", num_data)`` of ``num_data`` draws (default 1; no subsampling).
      Prior predictive: ``Predictive(vae.model, num_samples=S)(None)`` returns ``"z"`` of shape
      ``(S, 1, z_dim)`` and ``"x"`` of shape ``(S, 1, x_dim)``. Posterior predictive:
      ``Predictive(vae.model, guide=vae.guide, num_samples=S)(x)`` draws ``"z"`` from the guide, and returns
      the observed ``"x"`` unchanged (Pyro keeps observations); to resample ``"x"`` given those ``"z"``,
      predict with ``poutine.uncondition(vae.model)``.
    * ``guide(x, num_data=None)``: site ``"z"`` from the encoder.

    Likelihoods (``likelihood=``): ``"bernoulli"``, ``"normal"`` (fixed imaginary σ), ``"laplace"``
    (fixed b), ``"noisy-bernoulli"`` (fixed σ), ``"learned-normal"`` (one learned σ).

    :param int x_dim: observed dimension D (784 for MNIST).
    :param int z_dim: latent dimension (default 50).
    :param hidden_dims: hidden layer sizes of encoder and decoder (default ``(500, 500)``).
    :param likelihood: likelihood name or a :class:`~pyro_noisevae.models.likelihoods.Likelihood`.
    :param float sigma: σ (or b) of the likelihood, see :func:`make_likelihood`.
    :param encoder: optional module ``x -> (loc, scale)`` replacing the MLP encoder.
    :param decoder: optional module ``z -> out`` replacing the MLP decoder.
    """

    def __init__(
        self,
        x_dim=784,
        z_dim=50,
        hidden_dims=(500, 500),
        likelihood="bernoulli",
        sigma=None,
        activation="softplus",
        encoder=None,
        decoder=None,
    ):
        # Build every module context able to hold module-local params, so this VAE works both with Pyro's
        # global param store (SVI + pyro.optim) and under pyro.settings.context(module_local_params=True)
        # (ELBOModule + torch.optim, what our trainer uses). Pyro decides this once, at construction.
        with pyro.settings.context(module_local_params=True):
            super().__init__()
            self.x_dim, self.z_dim = int(x_dim), int(z_dim)
            self.hidden_dims = tuple(int(h) for h in hidden_dims)
            self.encoder = encoder if encoder is not None else MLPEncoder(x_dim, z_dim, hidden_dims, activation)
            self.decoder = decoder if decoder is not None else MLPDecoder(z_dim, x_dim, hidden_dims, activation)
            # plain nn.Modules would keep their weights out of Pyro's param store; convert in place so
            # that SVI with pyro.optim and ELBOModule + torch.optim both see them
            to_pyro_module_(self.encoder)
            to_pyro_module_(self.decoder)
            self.likelihood = make_likelihood(likelihood, sigma)

    def _check(self, x):
        if is_validation_enabled():
            check_data(x, self.x_dim)
            self.likelihood.check_data(x)
        return x

    @pyro_method
    def model(self, x=None, num_data=None):
        """
        The generative program: ``z ~ N(0, I)`` (site ``"z"``, shape ``(B, z_dim)``) and the likelihood of ``x``
        given ``decoder(z)``, in the :func:`data_plate` of ``x`` (``num_data``: the data set's size when ``x`` is a
        mini-batch). With ``x=None`` it samples ``num_data`` (default 1) points from the prior predictive, e.g.
        under :class:`pyro.infer.Predictive`.
        """
        if x is None:  # generative route: prior and likelihood, for pyro.infer.Predictive
            p = next(self.parameters())
            num = 1 if num_data is None else int(num_data)
            with pyro.plate("data", num):
                zeros = torch.zeros(num, self.z_dim, dtype=p.dtype, device=p.device)
                z = pyro.sample("z", dist.Normal(zeros, 1.0).to_event(1))
                return self.likelihood(self.decoder(z), None)
        x = self._check(x)
        with data_plate(x, num_data):
            zeros = x.new_zeros(x.shape[:-1] + (self.z_dim,))
            z = pyro.sample("z", dist.Normal(zeros, 1.0).to_event(1))
            return self.likelihood(self.decoder(z), x)

    @pyro_method
    def guide(self, x, num_data=None):
        r"""The amortized guide :math:`q(z \mid x) = \mathcal N(\mathrm{loc}, \mathrm{scale}^2)`, ``(loc, scale)`` from
        ``encoder(x)``, in the same :func:`data_plate` as :meth:`model`.

        :raises ValueError: on ``x`` with more than two dimensions, e.g. the ``(M, B, D)`` corrupted copies a
            :class:`~pyro_noisevae.guides.DenoisingGuide` with ``num_corruptions=M > 1`` passes (its message
            names the guide to build instead)."""
        if x is not None and x.dim() > 2:
            raise ValueError(f"VAE.guide takes x of shape (batch, features), got {tuple(x.shape)}: flatten images "
                             "with x.flatten(1); a DenoisingGuide with num_corruptions > 1 passes (M, batch, "
                             "features), so build it with "
                             "DenoisingGuide.from_encoder(vae.encoder, corruption, num_corruptions=M) instead of "
                             "DenoisingGuide(vae.guide, ...)")
        x = self._check(x)
        with data_plate(x, num_data):
            loc, scale = self.encoder(x)
            return pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    def encode(self, x):
        """``x (B, x_dim) -> (loc, scale)`` of :math:`q(z|x)`, each ``(B, z_dim)``."""
        return self.encoder(x)

    def decode(self, z):
        """:math:`E[x|z]`: ``z (*, z_dim) -> (*, x_dim)``."""
        return self.likelihood.mean(self.decoder(z))

    def reconstruct(self, x):
        """Decode the posterior mean: ``decode(E_q[z|x])``, shape ``(B, x_dim)``."""
        return self.decode(self.encoder(x)[0])

    def sample(self, num_samples, generator=None):
        """Decoder means of ``num_samples`` prior draws: ``(num_samples, x_dim)``."""
        p = next(self.parameters())
        z = torch.randn(num_samples, self.z_dim, generator=generator, device=p.device, dtype=p.dtype)
        return self.decode(z)
