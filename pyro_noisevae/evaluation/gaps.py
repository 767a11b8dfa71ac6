"""Inference, approximation and amortization gaps (Cremer, Li & Duvenaud 2018) of an amortized guide."""

from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from ..infer.importance import check_local
from .chunks import (check_float, check_nesting, check_positive_int, check_programs, data_plate_nesting, make_chunks,
                     probe_structure)
from .iw_svi import amortized_pair, fit_local_guide, refuse_autoguide
from .log_likelihood import estimate_chunks, summarize, traced_pass

__all__ = ["InferenceGaps", "inference_gaps"]

LOG_PX_METHODS = ("iw-svi", "iwae")


@dataclass
class InferenceGaps:
    r"""
    Per-data-point terms of the gap decomposition (each a tensor of shape ``(N,)``):

    .. math::

        \underbrace{\log p(x) - \mathcal L[q_\phi]}_{\text{inference gap}}
        = \underbrace{\log p(x) - \mathcal L[q^*]}_{\text{approximation gap}}
        + \underbrace{\mathcal L[q^*] - \mathcal L[q_\phi]}_{\text{amortization gap}},

    with :math:`q_\phi = q(z \mid x)` the amortized guide, :math:`q^*` the best member of its family for
    this :math:`x` (per-sample optimisation of the ELBO) and :math:`\mathcal L[q]` the ELBO.

    :ivar log_px: estimate of :math:`\log p(x)` (or the values that were given).
    :ivar log_px_stderr: its Monte Carlo standard error (zero when given exactly).
    :ivar elbo_amortized: :math:`\mathcal L[q_\phi]`, Monte Carlo estimate.
    :ivar elbo_amortized_stderr: its standard error.
    :ivar elbo_optimal: :math:`\mathcal L[q^*]`, Monte Carlo estimate.
    :ivar elbo_optimal_stderr: its standard error.
    :ivar str log_px_method: ``"iw-svi"``, ``"iwae"`` or ``"given"``.
    :ivar list optimal_guides: the per-point optimal Gaussians :math:`q^*`, one
        :class:`~pyro_noisevae.evaluation.LocalGaussianGuide` per data chunk (in order).
    """

    log_px: torch.Tensor
    log_px_stderr: torch.Tensor
    elbo_amortized: torch.Tensor
    elbo_amortized_stderr: torch.Tensor
    elbo_optimal: torch.Tensor
    elbo_optimal_stderr: torch.Tensor
    log_px_method: str
    optimal_guides: list = field(default_factory=list, repr=False)

    @property
    def inference_gap(self):
        r""":math:`\log p(x) - \mathcal L[q_\phi]`, shape ``(N,)``."""
        return self.log_px - self.elbo_amortized

    @property
    def approximation_gap(self):
        r""":math:`\log p(x) - \mathcal L[q^*]`, shape ``(N,)``."""
        return self.log_px - self.elbo_optimal

    @property
    def amortization_gap(self):
        r""":math:`\mathcal L[q^*] - \mathcal L[q_\phi]`, shape ``(N,)``."""
        return self.elbo_optimal - self.elbo_amortized

    def stderr(self, name):
        """Per-point Monte Carlo standard error of ``name`` (one of the gaps), combining its two terms."""
        terms = {
            "inference_gap": (self.log_px_stderr, self.elbo_amortized_stderr),
            "approximation_gap": (self.log_px_stderr, self.elbo_optimal_stderr),
            "amortization_gap": (self.elbo_optimal_stderr, self.elbo_amortized_stderr),
        }
        if name not in terms:
            raise ValueError(f"name must be one of {sorted(terms)}, got {name!r}")
        a, b = terms[name]
        return (a.pow(2) + b.pow(2)).sqrt()

    def summary(self):
        """``{quantity: summarize(...)}`` for the three estimates and the three gaps (means over data points)."""
        out = {
            "log_px": summarize(self.log_px, self.log_px_stderr),
            "elbo_amortized": summarize(self.elbo_amortized, self.elbo_amortized_stderr),
            "elbo_optimal": summarize(self.elbo_optimal, self.elbo_optimal_stderr),
        }
        for name in ("inference_gap", "approximation_gap", "amortization_gap"):
            out[name] = summarize(getattr(self, name), self.stderr(name))
        out["log_px_method"] = self.log_px_method
        return out


def inference_gaps(model, guide, *args, log_px="iw-svi", num_samples=5000, elbo_samples=1000, num_steps=100,
                   num_particles=50, lr=0.05, lr_decay=0.1, chunk_size=100, batch_size=100, data_arg="auto",
                   data_plate=None, max_plate_nesting=None, progress=True, **kwargs):
    r"""
    Inference, approximation and amortization gaps of the amortized guide on each data point:

    * :math:`\mathcal L[q_\phi]`: ELBO of ``guide``, the mean of ``elbo_samples`` log weights;
    * :math:`\mathcal L[q^*]`: ELBO of the per-point optimal Gaussian, from :func:`fit_local_guide` with
      ``objective="elbo"`` started at the encoder's output (``num_steps`` Adam steps, ``num_particles``
      samples per step), evaluated with ``elbo_samples`` fresh samples;
    * :math:`\log p(x)`: ``"iw-svi"`` (default: IWAE-``num_samples`` under the IW-SVI proposal),
      ``"iwae"`` (IWAE-``num_samples`` under the amortized guide) or a tensor of shape ``(N,)`` of known
      values (e.g. the closed form of a linear-Gaussian model).

    Each gap is non-negative in expectation when :math:`\log p(x)` is exact and :math:`q^*` optimal
    (:math:`\log p(x) - \mathcal L[q] = \mathrm{KL}(q \,\|\, p(z \mid x)) \ge 0`); with estimated
    :math:`\log p(x)` (a stochastic lower bound) and an approximately optimised :math:`q^*`, small negative
    values within the reported standard errors can occur.

    :param model: as in :func:`~pyro_noisevae.evaluation.importance_estimate`.
    :param guide: as in :func:`~pyro_noisevae.evaluation.importance_estimate`; its latent
        sites must be Gaussian (see :meth:`~pyro_noisevae.evaluation.LocalGaussianGuide.from_guide`).
    :param args: model/guide arguments, data first (shape ``(N, ...)``).
    :param log_px: ``"iw-svi"``, ``"iwae"`` or a tensor ``(N,)``.
    :param int num_samples: ``k`` of the log-likelihood estimate.
    :param int elbo_samples: samples of each ELBO estimate.
    :param int num_steps: optimisation steps of :math:`q^*` and of IW-SVI.
    :param int num_particles: samples per step of those optimisations.
    :param float lr: initial Adam learning rate of the per-point optimisations.
    :param float lr_decay: final / initial learning rate.
    :returns: per-point gaps and their ingredients.
    :rtype: InferenceGaps
    """
    check_programs(model, guide)
    model, guide = amortized_pair(model, guide)
    num_samples = check_positive_int(num_samples, "num_samples")
    elbo_samples = check_positive_int(elbo_samples, "elbo_samples")
    batch_size = check_positive_int(batch_size, "batch_size", allow_none=True)
    max_plate_nesting = check_nesting(max_plate_nesting)
    check_float(lr, "lr")
    check_float(lr_decay, "lr_decay", high=1.0)
    check_local(probe_structure(model, guide, args, kwargs, data_plate))  # global latents: refuse before any pass
    refuse_autoguide(guide)
    chunks, data_plate = make_chunks(model, guide, args, kwargs, data_arg, batch_size, data_plate)
    num_data = chunks[-1].rows.stop
    if isinstance(log_px, torch.Tensor):
        if log_px.shape != (num_data,):
            raise ValueError(f"log_px given as a tensor must have shape ({num_data},), got {tuple(log_px.shape)}")
        if not torch.isfinite(log_px).all():
            raise ValueError("log_px contains NaN or infinite values")
        method = "given"
    elif log_px in LOG_PX_METHODS:
        method = log_px
    else:
        raise ValueError(f"log_px must be one of {LOG_PX_METHODS} or a tensor of shape ({num_data},), got {log_px!r}")

    fit = dict(num_steps=num_steps, num_particles=num_particles, lr=lr, lr_decay=lr_decay, data_plate=data_plate)
    parts = {k: [] for k in ("lp", "lp_se", "ea", "ea_se", "eo", "eo_se")}
    optimal_guides = []
    for chunk in tqdm(chunks, desc="inference gaps", disable=not progress, leave=False):
        m, g = chunk.wrap(model), chunk.wrap(guide)
        a, kw, same = chunk.args, chunk.kwargs, [chunk.unwrapped()]
        if max_plate_nesting is None:
            max_plate_nesting = data_plate_nesting(m, g, a, kw)

        def estimate(proposal, k):
            return estimate_chunks(traced_pass(m, proposal, data_plate, max_plate_nesting), same, k, chunk_size)

        amortized = estimate(g, num_samples if method == "iwae" else elbo_samples)
        q_star = fit_local_guide(m, g, *a, objective="elbo", max_plate_nesting=max_plate_nesting, **fit, **kw)
        optimal = estimate(q_star, elbo_samples)
        optimal_guides.append(q_star)
        if method == "iwae":
            lp, lp_se = amortized.log_px, amortized.stderr
        elif method == "iw-svi":
            q_iw = fit_local_guide(m, g, *a, objective="iwae", max_plate_nesting=max_plate_nesting, **fit, **kw)
            est = estimate(q_iw, num_samples)
            lp, lp_se = est.log_px, est.stderr
        else:
            lp = log_px[chunk.rows].to(device=amortized.elbo.device, dtype=amortized.elbo.dtype)
            lp_se = torch.zeros_like(lp)
        for key, value in zip(
            parts, (lp, lp_se, amortized.elbo, amortized.elbo_stderr, optimal.elbo, optimal.elbo_stderr)
        ):
            parts[key].append(value)
    cat = {k: torch.cat(v) for k, v in parts.items()}
    return InferenceGaps(
        log_px=cat["lp"],
        log_px_stderr=cat["lp_se"],
        elbo_amortized=cat["ea"],
        elbo_amortized_stderr=cat["ea_se"],
        elbo_optimal=cat["eo"],
        elbo_optimal_stderr=cat["eo_se"],
        log_px_method=method,
        optimal_guides=optimal_guides,
    )
