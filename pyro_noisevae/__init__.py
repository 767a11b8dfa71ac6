"""pyro_noisevae: noise models of variational autoencoders as first-class Pyro objects."""

__version__ = "0.1.0"

from . import data, distributions, empirical_bayes, evaluation, guides, handlers, infer, models, nn, training  # noqa: E402
from .handlers import beta_scale, bound_constant, equivalent_beta  # noqa: E402
from .models import VAE  # noqa: E402

__all__ = ["VAE", "beta_scale", "bound_constant", "data", "distributions", "empirical_bayes", "equivalent_beta", "evaluation", "guides", "handlers", "infer", "models", "nn", "training"]
