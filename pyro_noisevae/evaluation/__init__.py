"""Honest evaluation of VAEs and other Pyro model/guide pairs: IWAE-k log-likelihood, IW-SVI, inference gaps."""

from .gaps import InferenceGaps, inference_gaps
from .iw_svi import LocalGaussianGuide, fit_local_guide, iw_svi, iw_svi_estimate
from .log_likelihood import ImportanceEstimate, importance_estimate, iwae_bound, log_likelihood, summarize

__all__ = ["ImportanceEstimate", "importance_estimate", "iwae_bound", "log_likelihood", "summarize"]
__all__ += ["LocalGaussianGuide", "fit_local_guide", "iw_svi", "iw_svi_estimate"]
__all__ += ["InferenceGaps", "inference_gaps"]
__all__[:] = sorted(set(__all__))
