"""VAE models with pluggable noise models."""

from .fused import FusedVAEObjective, elbo_terms, is_plain_vae_pair, vae_log_weights
from .likelihoods import (
    LIKELIHOODS,
    BernoulliLikelihood,
    LaplaceLikelihood,
    LearnedNormalLikelihood,
    Likelihood,
    NoisyBernoulliLikelihood,
    NormalLikelihood,
    make_likelihood,
)
from .vae import VAE, check_data

__all__ = [
    "FusedVAEObjective",
    "LIKELIHOODS",
    "BernoulliLikelihood",
    "LaplaceLikelihood",
    "LearnedNormalLikelihood",
    "Likelihood",
    "NoisyBernoulliLikelihood",
    "NormalLikelihood",
    "VAE",
    "check_data",
    "elbo_terms",
    "is_plain_vae_pair",
    "make_likelihood",
    "vae_log_weights",
]
__all__[:] = sorted(set(__all__))
