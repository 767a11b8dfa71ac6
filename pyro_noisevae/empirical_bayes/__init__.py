"""
Unnormalized variational Bayes and neural empirical Bayes: energies of the noisy variable
Y = X + N(0, σ²I), the Bayes denoiser x̂(y) = y + σ²∇log p(y), the denoising objective learned through
it, and walk-jump sampling.
"""

from .deen import DEEN
from .denoiser import bayes_estimator, denoising_loss, fit_denoiser
from .energy import ELBOEnergy, Energy, GaussianEnergy, check_points, check_sigma
from .walk_jump import WalkJumpResult, langevin_step, walk_jump

__all__ = [
    "DEEN",
    "ELBOEnergy",
    "Energy",
    "GaussianEnergy",
    "WalkJumpResult",
    "bayes_estimator",
    "check_points",
    "check_sigma",
    "denoising_loss",
    "fit_denoiser",
    "langevin_step",
    "walk_jump",
]
__all__[:] = sorted(set(__all__))
