"""Build what a :class:`~pyro_noisevae.training.TrainConfig` describes: the VAE, its Pyro programs, the fused objective, β."""

from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

from ..distributions import make_corruption
from ..guides import DenoisingGuide
from ..handlers import beta_scale
from ..infer import IWAE_ELBO
from ..models import VAE, FusedVAEObjective
from ..nn import GRUEncoder, WNIEncoder

__all__ = ["StepSchedule", "build_fused_objective", "build_model", "build_programs", "kl_warmup"]


def build_model(cfg, x_dim, image_shape=None):
    """
    The :class:`~pyro_noisevae.models.VAE` described by ``cfg`` for data of dimension ``x_dim``.

    Encoders (``cfg.encoder``): ``mlp`` (:class:`~pyro_noisevae.nn.MLPEncoder`), ``wni``
    (:class:`~pyro_noisevae.nn.WNIEncoder`, the same MLP with every weight vector's norm bounded by
    ``cfg.wni_bound``), ``gru`` (:class:`~pyro_noisevae.nn.GRUEncoder` reading the ``image_shape`` rows, with
    ``hidden_dims[0]`` units).
    """
    encoder = None
    if cfg.encoder == "wni":
        encoder = WNIEncoder(x_dim, cfg.z_dim, cfg.hidden_dims, bound=cfg.wni_bound, activation=cfg.activation)
    elif cfg.encoder == "gru":
        if image_shape is None or len(image_shape) != 2 or image_shape[0] * image_shape[1] != x_dim:
            raise ValueError(f"encoder 'gru' reads image rows and needs image_shape (H, W) with H*W = {x_dim}, "
                             f"got {image_shape!r}")
        encoder = GRUEncoder(tuple(image_shape), cfg.z_dim, hidden_size=cfg.hidden_dims[0])
    return VAE(x_dim=x_dim, z_dim=cfg.z_dim, hidden_dims=cfg.hidden_dims, likelihood=cfg.likelihood, sigma=cfg.sigma,
               activation=cfg.activation, encoder=encoder)


def _denoising_guide(vae, cfg):
    """The :class:`~pyro_noisevae.guides.DenoisingGuide` over the VAE's encoder that ``cfg`` asks for, or ``None``."""
    if cfg.corruption == "none":
        return None
    return DenoisingGuide.from_encoder(vae.encoder, make_corruption(cfg.corruption, cfg.corruption_level),
                                       num_corruptions=cfg.num_corruptions, alpha=cfg.partial_alpha)


#: the Pyro ELBO of every name in the registry :data:`~pyro_noisevae.training.OBJECTIVES` (the names the fused
#: objective implements)
_ELBOS = {"trace": Trace_ELBO, "meanfield": TraceMeanField_ELBO, "iwae": IWAE_ELBO}


# EXTENSION POINT: objectives and guides
def build_programs(vae, cfg, beta=None):
    """
    The ``(model, guide, elbo)`` triple SVI optimises for ``cfg``.

    * Objective (``cfg.objective``): ``trace`` (:class:`~pyro.infer.Trace_ELBO`), ``meanfield``
      (:class:`~pyro.infer.TraceMeanField_ELBO`) or ``iwae`` (:class:`~pyro_noisevae.infer.IWAE_ELBO` with
      ``cfg.gradient_estimator`` ``standard`` | ``dreg``), each with ``cfg.num_particles`` vectorized particles.
    * Denoising guide (``cfg.corruption`` ``gaussian`` | ``salt-and-pepper`` at ``cfg.corruption_level``):
      :meth:`~pyro_noisevae.guides.DenoisingGuide.from_encoder` on the VAE's encoder, with
      ``cfg.num_corruptions`` corruptions per data point and partial-denoising weight ``cfg.partial_alpha``;
      the model is wrapped into the matching corruption plate. DVAE = ``trace`` + corruption, DIWAE =
      ``iwae`` + corruption.
    * β-scaling (a constant ``cfg.beta``, or ``beta``: a number or a zero-argument callable such as a
      :class:`StepSchedule`) wraps model **and** guide with :func:`~pyro_noisevae.handlers.beta_scale`, as the
      σ↔β equivalence requires.
    """
    beta = cfg.beta if beta is None else beta
    model, guide = vae.model, vae.guide
    nesting = 1
    denoiser = _denoising_guide(vae, cfg)
    if denoiser is not None:
        guide = denoiser
        model = guide.wrap_model(vae.model)
        nesting = guide.elbo_max_plate_nesting
    kwargs = dict(num_particles=cfg.num_particles, max_plate_nesting=nesting, vectorize_particles=cfg.num_particles > 1)
    if cfg.objective == "iwae":
        kwargs.update(vectorize_particles=True, gradient_estimator=cfg.gradient_estimator)
    elbo = _ELBOS[cfg.objective](**kwargs)
    if callable(beta) or beta != 1.0:
        model, guide = beta_scale(model, beta=beta), beta_scale(guide, beta=beta)
    return model, guide, elbo


def build_fused_objective(vae, cfg, beta=None, validate=False):
    """
    The fast path of :func:`build_programs`: a :class:`~pyro_noisevae.models.FusedVAEObjective` whose
    ``objective(x, num_data=N)`` equals ``elbo.differentiable_loss(model, guide, x, num_data=N)`` for
    ``(model, guide, elbo) = build_programs(vae, cfg, beta)`` (same objective, particles, gradient estimator,
    denoising guide and β), in value and gradient, under the same random draws.

    :param bool validate: check every batch's values (the trainer validates its data set once instead).
    """
    beta = cfg.beta if beta is None else beta
    return FusedVAEObjective(vae, objective=cfg.objective, num_particles=cfg.num_particles,
                             gradient_estimator=cfg.gradient_estimator, denoiser=_denoising_guide(vae, cfg), beta=beta,
                             validate=validate)


def kl_warmup(beta, warmup_steps):
    """
    The KL warm-up schedule as a function of the step: ``schedule(t) = beta * min(1, (t + 1) / warmup_steps)``
    for the step ``t = 0, 1, ...`` about to be taken (``warmup_steps = 0``: the constant ``beta``).

    >>> schedule = kl_warmup(2.0, 4)
    >>> [schedule(t) for t in range(5)]
    [0.5, 1.0, 1.5, 2.0, 2.0]
    """
    beta, warmup_steps = float(beta), float(warmup_steps)
    if warmup_steps <= 0:
        return lambda step: beta
    return lambda step: beta * min(1.0, (step + 1) / warmup_steps)


class StepSchedule:
    """
    A schedule ``fn(step)`` seen as the zero-argument callable that
    :func:`~pyro_noisevae.handlers.beta_scale` and :class:`~pyro_noisevae.models.FusedVAEObjective` read,
    evaluated at the step its owner passes in with :meth:`at` (the trainer's objective does, before every step).

    >>> beta = StepSchedule(kl_warmup(1.0, 10))
    >>> beta.at(4)()
    0.5
    """

    def __init__(self, fn, step=0):
        self.fn, self.step = fn, int(step)

    def at(self, step):
        """Evaluate at ``step`` from now on; returns ``self``."""
        self.step = int(step)
        return self

    def __call__(self):
        return self.fn(self.step)

    def __repr__(self):
        return f"StepSchedule(step={self.step}, value={self()})"
