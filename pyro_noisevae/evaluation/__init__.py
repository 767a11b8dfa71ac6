"""Honest evaluation of VAEs and other Pyro model/guide pairs: IWAE-k log-likelihood, IW-SVI, inference gaps,
exact versus NUTS versus amortized posteriors."""

import importlib

from .gaps import InferenceGaps, inference_gaps
from .iw_svi import LocalGaussianGuide, fit_local_guide, iw_svi, iw_svi_estimate
from .log_likelihood import ImportanceEstimate, importance_estimate, iwae_bound, log_likelihood, summarize

# The posterior comparison stands on arviz and pandas (about a second to import): its names load on first use,
# so that `import pyro_noisevae` (and every CLI command) does not pay for them.
_LAZY = {
    "PosteriorComparison": ".posterior",
    "compare_posteriors": ".posterior",
    "gaussian_kl": ".posterior",
    "plot_pair": ".posterior_plots",
    "plot_subspace_error": ".posterior_plots",
}

__all__ = ["ImportanceEstimate", "importance_estimate", "iwae_bound", "log_likelihood", "summarize"]
__all__ += ["LocalGaussianGuide", "fit_local_guide", "iw_svi", "iw_svi_estimate"]
__all__ += ["InferenceGaps", "inference_gaps"]
__all__ += list(_LAZY)
__all__[:] = sorted(set(__all__))


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
