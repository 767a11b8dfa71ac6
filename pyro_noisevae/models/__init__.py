"""VAE models with pluggable noise models; the linear VAE with its exact answers (pPCA); the robust linear VAE."""

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
from .linear import (
    PPCA,
    LinearVAE,
    check_latent_dim,
    exact_log_likelihood,
    exact_posterior,
    ppca_mle,
    principal_angles,
    subspace_distance,
)
from .robust import NOISE_MODELS, RobustLinearVAE, fit_robust
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
__all__ += ["LinearVAE", "PPCA", "check_latent_dim", "exact_log_likelihood", "exact_posterior", "ppca_mle"]
__all__ += ["principal_angles", "subspace_distance"]
__all__ += ["NOISE_MODELS", "RobustLinearVAE", "fit_robust"]
__all__[:] = sorted(set(__all__))
