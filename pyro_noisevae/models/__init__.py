"""VAE models with pluggable noise models."""

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
    "LIKELIHOODS",
    "BernoulliLikelihood",
    "LaplaceLikelihood",
    "LearnedNormalLikelihood",
    "Likelihood",
    "NoisyBernoulliLikelihood",
    "NormalLikelihood",
    "VAE",
    "check_data",
    "make_likelihood",
]
__all__[:] = sorted(set(__all__))
