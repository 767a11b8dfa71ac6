"""Corruption laws p(x~ | x) for denoising guides: Gaussian, salt-and-pepper, and a base class for your own."""

import functools
import math
from numbers import Number

import pyro.distributions as dist
import torch
from pyro.distributions import TorchDistribution, constraints
from torch.distributions.utils import broadcast_all

from ._checks import check_noise_level, finite_positive

__all__ = ["Corruption", "GaussianCorruption", "SaltAndPepper", "make_corruption"]


class Corruption(TorchDistribution):
    r"""
    Base class of corruption laws :math:`p(\tilde x \mid x)`: a distribution over the corrupted input
    :math:`\tilde x`, parameterized by the clean input :math:`x` (attribute ``clean``).

    A :class:`~pyro_noisevae.guides.DenoisingGuide` only calls ``sample(sample_shape)``, under
    :func:`torch.no_grad`, and requires ``sample(s).shape == s + clean.shape``: corruption is a noise
    source of the inference network, never a site of the probabilistic program, so ``log_prob`` is
    not needed for training (implement it when it exists, for tests and diagnostics).

    **Plugging in your own corruption.** Subclass :class:`Corruption`, declare ``arg_constraints``
    (including ``"clean"``) and ``support``, broadcast your parameters in ``__init__``, implement
    ``sample`` (and ``expand``, ``log_prob`` where you can), then pass a factory
    ``clean -> distribution`` to the guide::

        class Masking(Corruption):  # each pixel set to 0 with probability `rate`
            arg_constraints = {"clean": constraints.real, "rate": constraints.unit_interval}
            support = constraints.real

            def __init__(self, clean, rate, *, validate_args=None):
                self.clean, self.rate = broadcast_all(clean, rate)
                super().__init__(self.clean.shape, validate_args=validate_args)

            def sample(self, sample_shape=torch.Size()):
                shape = self._extended_shape(sample_shape)
                with torch.no_grad():
                    keep = torch.rand(shape, dtype=self.clean.dtype, device=self.clean.device) >= self.rate
                    return torch.where(keep, self.clean.expand(shape), torch.zeros_like(self.clean).expand(shape))

        guide = DenoisingGuide(vae.guide, functools.partial(Masking, rate=0.2))

    Any callable ``clean -> torch.distributions.Distribution`` whose ``sample(s)`` has shape
    ``s + clean.shape`` works as well; subclassing only adds argument validation and shapes.
    """

    arg_constraints = {"clean": constraints.real}
    support = constraints.real

    def __init__(self, batch_shape=torch.Size(), event_shape=torch.Size(), *, validate_args=None):
        super().__init__(batch_shape, event_shape, validate_args=validate_args)


class GaussianCorruption(dist.Normal, Corruption):
    r"""
    Additive Gaussian corruption :math:`\tilde x = x + \sigma \varepsilon`, :math:`\varepsilon \sim N(0, I)`:

    .. math::

        \log p(\tilde x \mid x) = -\frac{(\tilde x - x)^2}{2\sigma^2} - \tfrac12 \log(2\pi\sigma^2)

    per pixel (the Frey Face corruption of Im et al. 2017 and the AIR denoising regularizer of
    Shu et al. 2018). No clipping: :math:`\tilde x` may leave :math:`[0, 1]`.

    It is Pyro's :class:`~pyro.distributions.Normal` centred on the clean input (``clean`` is its ``loc``,
    ``sigma`` its ``scale``), so sampling, ``log_prob``, ``cdf``, ``icdf``, moments and entropy are the base
    family's. Under validation :math:`\sigma` must be finite and :math:`> 0`.

    Shapes: ``clean`` and ``sigma`` broadcast to ``batch_shape``; ``event_shape == ()`` (so images of
    shape ``(B, D)`` give ``batch_shape == (B, D)``; use ``.to_event(1)`` to score rows).

    :param torch.Tensor clean: the clean input :math:`x`.
    :param sigma: noise standard deviation :math:`\sigma`, finite and > 0 (float or tensor).

    Example::

        >>> import torch
        >>> x = torch.zeros(2, 3)
        >>> GaussianCorruption(x, 0.1).sample((4,)).shape
        torch.Size([4, 2, 3])
    """

    arg_constraints = {"clean": constraints.real, "sigma": finite_positive}

    def __init__(self, clean, sigma, *, validate_args=None):
        check_noise_level(type(self).__name__, "sigma", sigma, validate_args)
        super().__init__(clean, sigma, validate_args=validate_args)

    @property
    def clean(self):
        """The clean input :math:`x` (the base family's ``loc``)."""
        return self.loc

    @property
    def sigma(self):
        """The noise standard deviation :math:`\\sigma` (the base family's ``scale``)."""
        return self.scale

    def expand(self, batch_shape, _instance=None):
        # the base's expand broadcasts loc and scale and carries _validate_args over
        new = self._get_checked_instance(GaussianCorruption, _instance)
        return super().expand(batch_shape, _instance=new)


class _SaltAndPepperSupport(constraints.Constraint):
    """The three atoms {0, clean, 1} of a salt-and-pepper pixel."""

    is_discrete = True
    event_dim = 0

    def __init__(self, clean):
        self.clean = clean
        super().__init__()

    def check(self, value):
        return (value == 0) | (value == 1) | (value == self.clean)


class SaltAndPepper(Corruption):
    r"""
    Salt-and-pepper corruption (Im et al. 2017, MNIST tables): each pixel is, independently, kept
    with probability :math:`1 - r` or replaced, with probability :math:`r`, by 0 or 1 chosen by a
    fair coin. For a clean value :math:`x \in [0, 1]` the law of :math:`\tilde x` is discrete with
    atoms :math:`\{0, x, 1\}`:

    .. math::

        p(\tilde x \mid x) = (1 - r)\,[\tilde x = x] + \tfrac r2\,[\tilde x = 0] + \tfrac r2\,[\tilde x = 1],

    so for binary :math:`x` the pixel flips with probability :math:`r/2`.

    **Atoms.** ``log_prob`` is the log *probability mass* (density with respect to counting measure
    on the atoms), exact, and :math:`-\infty` off the atoms; the ``support`` is the dependent set
    :math:`\{0, x, 1\}` (``is_discrete``), so with validation on, values off the atoms are rejected.
    It is not a Lebesgue density; never add it to continuous log-densities. Sampling has no
    reparameterization (``has_rsample = False``); samples carry no gradient.

    Mean :math:`(1 - r) x + r/2`; variance :math:`(1 - r) x^2 + r/2 - \text{mean}^2`.

    Shapes: ``clean`` and ``rate`` broadcast to ``batch_shape``; ``event_shape == ()``.

    :param torch.Tensor clean: the clean input :math:`x \in [0, 1]`.
    :param rate: corruption rate :math:`r \in [0, 1]` (float or tensor).

    Example::

        >>> x = torch.tensor([0.0, 1.0, 0.5])
        >>> SaltAndPepper(x, 0.2).log_prob(torch.tensor([0.0, 0.0, 0.5])).exp()
        tensor([0.9000, 0.1000, 0.8000])
    """

    arg_constraints = {"clean": constraints.unit_interval, "rate": constraints.unit_interval}
    has_rsample = False

    def __init__(self, clean, rate, *, validate_args=None):
        self.clean, self.rate = broadcast_all(clean, rate)
        batch_shape = torch.Size() if isinstance(clean, Number) and isinstance(rate, Number) else self.clean.shape
        super().__init__(batch_shape, validate_args=validate_args)

    @constraints.dependent_property(is_discrete=True, event_dim=0)
    def support(self):
        return _SaltAndPepperSupport(self.clean)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(SaltAndPepper, _instance)
        batch_shape = torch.Size(batch_shape)
        new.clean = self.clean.expand(batch_shape)
        new.rate = self.rate.expand(batch_shape)
        super(SaltAndPepper, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def mean(self):
        return (1 - self.rate) * self.clean + 0.5 * self.rate

    @property
    def variance(self):
        second = (1 - self.rate) * self.clean.pow(2) + 0.5 * self.rate
        return (second - self.mean.pow(2)).clamp(min=0)

    def sample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        with torch.no_grad():
            u = torch.rand(shape, dtype=self.clean.dtype, device=self.clean.device)
            coin = torch.rand(shape, dtype=self.clean.dtype, device=self.clean.device) < 0.5
            replaced = u < self.rate.expand(shape)
            noise = coin.to(self.clean.dtype)
            return torch.where(replaced, noise, self.clean.expand(shape))

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        clean, rate = self.clean, self.rate
        # masses of the atoms the value sits on; an atom can coincide with x when x is 0 or 1
        mass = (1 - rate) * (value == clean) + 0.5 * rate * ((value == 0).to(rate.dtype) + (value == 1).to(rate.dtype))
        return mass.log()


_FACTORIES = {"gaussian": (GaussianCorruption, "sigma"), "salt-and-pepper": (SaltAndPepper, "rate")}
#: names accepted by :func:`make_corruption` (and the ``--corruption`` flag)
CORRUPTIONS = ("none",) + tuple(_FACTORIES)


def make_corruption(name, level=None):
    r"""
    Build a corruption factory ``clean -> Corruption`` by name, for command lines and configs.

    :param str name: ``"none"`` (returns ``None``: no corruption), ``"gaussian"`` (``level`` is
        :math:`\sigma > 0`) or ``"salt-and-pepper"`` (``level`` is the rate :math:`r \in [0, 1]`).
    :param float level: the corruption level.
    :returns: ``None`` or a :func:`functools.partial` of the class with its level bound.
    :raises ValueError: on an unknown name or an invalid level.
    """
    if name == "none" or name is None:
        return None
    if name not in _FACTORIES:
        raise ValueError(f"corruption must be one of {CORRUPTIONS}, got {name!r}")
    cls, param = _FACTORIES[name]
    if level is None:
        raise ValueError(f"corruption {name!r} needs a level ({param})")
    level = float(level)
    if not math.isfinite(level) or level < 0 or (param == "sigma" and level == 0) or (param == "rate" and level > 1):
        bound = "> 0" if param == "sigma" else "in [0, 1]"
        raise ValueError(f"corruption {name!r}: {param} must be {bound}, got {level!r}")
    return functools.partial(cls, **{param: level})
