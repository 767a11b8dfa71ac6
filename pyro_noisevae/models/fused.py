r"""
Fused (closed-form tensor) versions of the objectives, importance weights and ELBO terms of the library's
:class:`~pyro_noisevae.models.VAE`: the fast path of training and evaluation.

A Pyro program pays a fixed cost per call for its effect handlers, traces, site checks and distribution
objects (about 2-5 ms per step on a CPU, whatever the tensor sizes). For the library's own VAE the program
is known in advance: prior :math:`N(0, I)`, Gaussian guide :math:`N(\mu(\tilde x), \mathrm{diag}\,s(\tilde
x)^2)`, one likelihood site. :class:`FusedVAEObjective` computes the **same estimators from the same random
draws** as the Pyro path (``Trace_ELBO``, ``TraceMeanField_ELBO``, :class:`~pyro_noisevae.infer.IWAE_ELBO`
with the standard or DReG gradient, a :class:`~pyro_noisevae.guides.DenoisingGuide` with ``M`` corruptions,
β-scaling of the latent site), with plain tensor code; the tests in ``tests/models/test_fused.py`` check
that losses and gradients agree with the Pyro programs under a shared seed (to floating-point rounding).
The importance-weighted bound goes through :func:`~pyro_noisevae.infer.iwae_objective`, the one
implementation under every IWAE objective; the analytic KL is torch's ``kl_divergence``.

:func:`elbo_terms` is the one implementation of the VAE's per-point ELBO terms (reconstruction, analytic
KL) behind the trainer's evaluation and the experiments' measurements.

Use the Pyro path (``fast_path=False`` / ``--no-fast-path``) for models that are not a library ``VAE``, or
to run model and guide under your own effect handlers.
"""

import math
import numbers

import torch
from torch import nn
from torch.distributions import Normal, kl_divergence

from ..infer.iwae_surrogate import iwae_objective
from .vae import VAE, check_data

__all__ = ["FusedVAEObjective", "elbo_terms", "is_plain_vae_pair", "vae_log_weights"]

_LOG_2PI = math.log(2 * math.pi)
OBJECTIVES = ("trace", "meanfield", "iwae")


def _standard_normal_like(loc, sample_shape):
    # the draw torch.distributions.Normal.rsample makes (``torch.empty(...).normal_()``), so that under a
    # shared seed the fused path and the Pyro path see identical noise
    return torch.empty(sample_shape + loc.shape, dtype=loc.dtype, device=loc.device).normal_()


def _log_prior(z):
    r""":math:`\log N(z; 0, I)` summed over the last dim."""
    return -0.5 * z.pow(2).sum(-1) - 0.5 * z.shape[-1] * _LOG_2PI


def _log_guide(eps, scale):
    r""":math:`\log N(z; \mu, s^2)` at :math:`z = \mu + s\,\epsilon`, summed over the last dim."""
    return -0.5 * eps.pow(2).sum(-1) - scale.log().sum(-1) - 0.5 * eps.shape[-1] * _LOG_2PI


def _kl_to_prior(loc, scale):
    r"""Per-dim :math:`\mathrm{KL}(N(\mu, s^2)\,\|\,N(0, 1))`, shape ``loc.shape`` (torch's closed form)."""
    prior = Normal(loc.new_zeros(()), loc.new_ones(()))
    return kl_divergence(Normal(loc, scale), prior)


def is_plain_vae_pair(model, guide):
    """
    True when ``model`` and ``guide`` are the unmodified bound methods ``vae.model`` and ``vae.guide`` of one
    :class:`~pyro_noisevae.models.VAE` instance (a subclass that overrides either is not plain), i.e. when
    :func:`vae_log_weights` computes exactly what the Pyro programs define.
    """
    vae = getattr(model, "__self__", None)
    if not isinstance(vae, VAE) or getattr(guide, "__self__", None) is not vae:
        return False
    cls = type(vae)
    return (
        getattr(model, "__func__", None) is VAE.model and cls.model is VAE.model
        and getattr(guide, "__func__", None) is VAE.guide and cls.guide is VAE.guide
    )


def vae_log_weights(vae, x, num_particles, x_encoder=None):
    r"""
    Log importance weights of the VAE's guide as proposal, from reparameterized draws
    :math:`z_{p} = \mu(\tilde x) + s(\tilde x)\,\epsilon_p`, :math:`\epsilon_p \sim N(0, I)`:

    .. math::

        \log w_p = \underbrace{\log p(x \mid z_p)}_{\texttt{log\_px\_z}}
            + \underbrace{\log p(z_p)}_{\texttt{log\_pz}} - \underbrace{\log q(z_p \mid \tilde x)}_{\texttt{log\_qz}}.

    :param VAE vae: the model.
    :param torch.Tensor x: clean data ``(B, D)`` (what the likelihood scores).
    :param int num_particles: ``P`` draws per data point (a leading dim of size ``P`` is always added).
    :param torch.Tensor x_encoder: the encoder's input, ``(*, B, D)`` (default ``x``; a corrupted copy for
        denoising guides).
    :returns: dict with ``log_px_z``, ``log_pz``, ``log_qz`` (each ``(P, *, B)``) and the draws ``z``
        ``(P, *, B, z_dim)``, ``eps``, and the guide's ``loc``, ``scale`` (``(*, B, z_dim)``).
    """
    return _log_weight_terms(vae, x, torch.Size((num_particles,)), x_encoder)


def _log_weight_terms(vae, x, sample_shape, x_encoder=None):
    # vae_log_weights with any sample shape: () is the single non-vectorized particle of Trace_ELBO
    loc, scale = vae.encoder(x if x_encoder is None else x_encoder)
    eps = _standard_normal_like(loc, sample_shape)
    z = loc + eps * scale
    log_px_z = vae.likelihood.log_prob(vae.decoder(z), x)
    return {
        "log_px_z": log_px_z,
        "log_pz": _log_prior(z),
        "log_qz": _log_guide(eps, scale),
        "z": z,
        "eps": eps,
        "loc": loc,
        "scale": scale,
    }


def elbo_terms(vae, x, num_particles=1, *, loc=None, scale=None, generator=None):
    r"""
    Per-data-point terms of the VAE's evidence lower bound with a diagonal Gaussian
    :math:`q(z \mid x) = N(\mu, \mathrm{diag}\, s^2)`:

    .. math::

        \mathcal{L}(x) = \underbrace{\frac1P \sum_{p=1}^P \log p(x \mid z_p)}_{\texttt{recon}}
            - \underbrace{\mathrm{KL}\big(q(z \mid x)\,\|\,N(0, I)\big)}_{\texttt{kl}}, \qquad
        z_p = \mu + s\,\epsilon_p,\ \epsilon_p \sim N(0, I),

    the reconstruction term by Monte Carlo, the KL analytic (torch's ``kl_divergence``). Differentiable in
    ``loc``/``scale`` and the VAE's parameters (wrap in ``torch.no_grad()`` to measure).

    :param VAE vae: the model (its ``encoder``, ``decoder`` and ``likelihood``).
    :param torch.Tensor x: data ``(B, D)`` (the likelihood's log-density, without support checks: validate
        with ``vae.likelihood.check_data`` where the data may lie outside the support).
    :param int num_particles: ``P`` draws per data point.
    :param torch.Tensor loc: :math:`\mu` ``(B, z_dim)`` of another Gaussian (e.g. a per-point optimum),
        together with ``scale``; default: the encoder's ``q(z|x)``.
    :param torch.Generator generator: source of :math:`\epsilon` (``torch.randn((P, B, z_dim))`` on the
        generator's device, moved to ``loc``'s); default the global RNG.
    :returns: dict of ``elbo``, ``recon``, ``kl`` (each ``(B,)``), ``kl_per_dim`` ``(B, z_dim)``, ``loc``,
        ``scale`` ``(B, z_dim)`` and the draws ``z`` ``(P, B, z_dim)``.
    """
    if (loc is None) != (scale is None):
        raise ValueError("pass loc and scale together (a Gaussian q(z|x)), or neither (the encoder's)")
    if isinstance(num_particles, bool) or not isinstance(num_particles, numbers.Integral) or num_particles < 1:
        raise ValueError(f"num_particles must be an integer >= 1, got {num_particles!r}")
    if loc is None:
        loc, scale = vae.encoder(x)
    device = loc.device if generator is None else generator.device
    eps = torch.randn((int(num_particles),) + loc.shape, generator=generator, dtype=loc.dtype, device=device)
    z = loc + scale * eps.to(loc.device)
    recon = vae.likelihood.log_prob(vae.decoder(z), x).mean(0)
    kl_per_dim = _kl_to_prior(loc, scale)
    kl = kl_per_dim.sum(-1)
    return {"elbo": recon - kl, "recon": recon, "kl": kl, "kl_per_dim": kl_per_dim, "loc": loc, "scale": scale,
            "z": z}


def _check_beta(beta):
    if callable(beta):
        return beta
    if isinstance(beta, torch.Tensor):
        beta = float(beta)
    if isinstance(beta, bool) or not isinstance(beta, numbers.Real) or not math.isfinite(beta) or beta < 0:
        raise ValueError(f"beta must be a finite number >= 0 or a zero-argument callable, got {beta!r}")
    return float(beta)


class FusedVAEObjective(nn.Module):
    r"""
    The negative bound of a library :class:`~pyro_noisevae.models.VAE`, computed with plain tensor code:
    ``objective(x, num_data=N)`` equals ``elbo.differentiable_loss(model, guide, x, num_data=N)`` for the
    ``(model, guide, elbo)`` that :func:`~pyro_noisevae.training.build_programs` builds from the same
    settings, value and gradient, under the same random draws.

    With :math:`\log w = \log p(x|z) + \beta\,(\log p(z) - \log q(z|\tilde x))`, ``K`` particles, ``M``
    corruptions :math:`\tilde x^{(m)}` (none: :math:`\tilde x = x`, ``M = 1``) and a mini-batch of ``B`` of
    ``N`` points, the loss is :math:`-\frac{N}{B}\frac1M \sum_{b,m} \ell_{bm}` with

    * ``"trace"``: :math:`\ell = \frac1K \sum_k \log w_k` (``Trace_ELBO``);
    * ``"meanfield"``: :math:`\ell = \frac1K \sum_k \log p(x|z_k) - \beta\,\mathrm{KL}(q(z|\tilde x)\,\|\,N(0, I))`
      in closed form (``TraceMeanField_ELBO``);
    * ``"iwae"``: :math:`\ell = \log \frac1K \sum_k w_k` (:class:`~pyro_noisevae.infer.IWAE_ELBO`), with the
      standard gradient or DReG (``gradient_estimator="dreg"``: :math:`\sum_k \tilde w_k^2\,\partial \log w_k /
      \partial z_k` for the guide, :math:`\tilde w_k = w_k / \sum_j w_j`), both through
      :func:`~pyro_noisevae.infer.iwae_objective`.

    :param VAE vae: the model (its encoder is the guide's network).
    :param str objective: ``"trace"`` | ``"meanfield"`` | ``"iwae"``.
    :param int num_particles: ``K``; with ``K > 1`` (and always for ``"iwae"``) particles are vectorized.
    :param str gradient_estimator: ``"standard"`` | ``"dreg"`` (``"iwae"`` only).
    :param denoiser: a :class:`~pyro_noisevae.guides.DenoisingGuide` whose :meth:`corrupt` draws the
        encoder's inputs (its ``M`` and partial-denoising ``alpha`` apply), or ``None``.
    :param beta: β >= 0 scaling the latent terms, or a zero-argument callable read once per call (warm-up).
    :param bool validate: check every batch's values (finite, in the likelihood's support). The trainer
        checks its whole data set once and passes ``False``.
    """

    def __init__(self, vae, objective="trace", num_particles=1, gradient_estimator="standard", denoiser=None, beta=1.0,
                 validate=True):
        super().__init__()
        if not isinstance(vae, VAE):
            raise TypeError(f"FusedVAEObjective needs a pyro_noisevae.models.VAE, got {type(vae).__name__}; "
                            "use a Pyro ELBO for other models")
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
        if isinstance(num_particles, bool) or not isinstance(num_particles, numbers.Integral) or num_particles < 1:
            raise ValueError(f"num_particles must be an integer >= 1, got {num_particles!r}")
        if gradient_estimator not in ("standard", "dreg"):
            raise ValueError(f"gradient_estimator must be 'standard' or 'dreg', got {gradient_estimator!r}")
        if gradient_estimator == "dreg" and objective != "iwae":
            raise ValueError("gradient_estimator='dreg' is implemented for objective='iwae' only")
        if denoiser is not None and not callable(getattr(denoiser, "corrupt", None)):
            raise TypeError(f"denoiser must be a DenoisingGuide (with a .corrupt method), got {type(denoiser).__name__}")
        if denoiser is not None and (denoiser.max_plate_nesting != 1 or denoiser.input_event_dim != 1):
            raise ValueError("the fused path supports denoising guides over (B, D) rows (max_plate_nesting=1, "
                             "input_event_dim=1)")
        self.vae = vae
        self.objective, self.num_particles, self.gradient_estimator = objective, int(num_particles), gradient_estimator
        self.denoiser = denoiser
        self.beta = _check_beta(beta)
        self.validate = bool(validate)

    def current_beta(self):
        """β for this call (a schedule is read once per call)."""
        return _check_beta(self.beta()) if callable(self.beta) else self.beta

    def _check(self, x, num_data):
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[-1] != self.vae.x_dim:
            raise ValueError(f"x must be a tensor of shape (batch, {self.vae.x_dim}), got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        if self.validate:
            check_data(x, self.vae.x_dim)
            self.vae.likelihood.check_data(x)
        if num_data is not None and num_data < x.shape[0]:
            raise ValueError(f"num_data={num_data} is smaller than the batch size {x.shape[0]}")

    def forward(self, x, num_data=None):
        """
        :param torch.Tensor x: mini-batch ``(B, D)``.
        :param int num_data: size ``N`` of the data set the batch is drawn from (default ``B``).
        :returns: scalar loss, the negative bound summed over the batch and scaled by ``N / B``.
        """
        self._check(x, num_data)
        batch = x.shape[0]
        scale = 1.0 if num_data is None else num_data / batch
        beta = self.current_beta()
        x_enc = x if self.denoiser is None else self.denoiser.corrupt(x)
        M = 1 if x_enc.dim() == 2 else x_enc.shape[0]
        K = self.num_particles
        vectorized = K > 1 or self.objective == "iwae"
        # Trace_ELBO with one non-vectorized particle draws exactly loc.shape
        t = _log_weight_terms(self.vae, x, torch.Size((K,) if vectorized else ()), x_encoder=x_enc)
        if self.objective == "meanfield":
            kl = _kl_to_prior(t["loc"], t["scale"]).sum(-1)
            log_px = t["log_px_z"].mean(0) if vectorized else t["log_px_z"]
            per_point = log_px - beta * kl
        else:
            log_w = t["log_px_z"] + beta * (t["log_pz"] - t["log_qz"])
            if self.objective == "trace":
                per_point = log_w.mean(0) if vectorized else log_w
            elif self.gradient_estimator == "standard":
                per_point = iwae_objective(log_w)
            else:
                per_point = self._dreg(t, log_w, beta)
        return -(scale / M) * per_point.sum()

    @staticmethod
    def _dreg(t, log_w, beta):
        # DReG: log q at stopped guide parameters, so the guide's gradient reaches it only through z, whose
        # hook (registered by iwae_objective) multiplies that path by the normalized weight once more
        z, loc, sd = t["z"], t["loc"].detach(), t["scale"].detach()
        log_q_stopped = -0.5 * ((z - loc) / sd).pow(2).sum(-1) - sd.log().sum(-1) - 0.5 * z.shape[-1] * _LOG_2PI
        log_w_dreg = t["log_px_z"] + beta * (t["log_pz"] - log_q_stopped)
        dreg_values = [(None, z, 1)] if z.requires_grad else []
        return iwae_objective(log_w, log_w_dreg=log_w_dreg, dreg_values=dreg_values)

    def extra_repr(self):
        return (f"objective={self.objective!r}, num_particles={self.num_particles}, "
                f"gradient_estimator={self.gradient_estimator!r}, denoising={self.denoiser is not None}")
