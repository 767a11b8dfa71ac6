"""Inference objectives: the importance-weighted bound with standard and doubly-reparameterized gradients (the library
VAE's fused fast path lives in :mod:`pyro_noisevae.models.fused`)."""

from .iwae_elbo import IWAE_ELBO

__all__ = ["IWAE_ELBO"]
__all__[:] = sorted(set(__all__))
