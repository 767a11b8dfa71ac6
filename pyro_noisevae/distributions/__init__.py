"""Noisy-observation and corruption distributions for noise-model VAEs."""

from .corruption import Corruption, GaussianCorruption, SaltAndPepper, make_corruption
from .noisy_bernoulli import NoisyBernoulli
from .noisy_laplace import NoisyLaplace
from .noisy_normal import NoisyNormal

__all__ = ["NoisyBernoulli", "NoisyLaplace", "NoisyNormal"]
__all__ += ["Corruption", "GaussianCorruption", "SaltAndPepper", "make_corruption"]
__all__[:] = sorted(set(__all__))
