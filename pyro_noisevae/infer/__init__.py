"""Inference: the one fit loop (:class:`FitLoop`, the optimisation loop under every training in the package), the one importance-weight core of (model, guide) pairs (:mod:`~pyro_noisevae.infer.importance`) and the
importance-weighted bound built on it, with standard and doubly-reparameterized gradients (the library VAE's fused
fast path, on the same core, lives in :mod:`pyro_noisevae.models.fused`)."""

from .fit_loop import FitLoop, FitResult, epoch_order
from .importance import (
    SetSubsample,
    SiteStructure,
    check_local,
    importance_traces,
    infer_max_plate_nesting,
    per_point_log_weights,
    site_structure,
)
from .iwae_elbo import IWAE_ELBO
from .iwae_surrogate import iwae_objective, register_dreg_hook

__all__ = [
    "FitLoop",
    "FitResult",
    "IWAE_ELBO",
    "epoch_order",
    "SetSubsample",
    "SiteStructure",
    "check_local",
    "importance_traces",
    "infer_max_plate_nesting",
    "iwae_objective",
    "per_point_log_weights",
    "register_dreg_hook",
    "site_structure",
]
__all__[:] = sorted(set(__all__))
