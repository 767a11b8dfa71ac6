"""Checks shared by the distributions of this package: a noise level must be finite and > 0."""

import torch
from pyro.distributions import constraints
from torch.distributions import Distribution

__all__ = ["check_noise_level", "finite_positive"]


class _FinitePositive(constraints.Constraint):
    """Finite and strictly positive. ``constraints.positive`` admits ``+inf``, which is no noise level."""

    is_discrete = False
    event_dim = 0

    def check(self, value):
        return torch.isfinite(value) & (value > 0)


#: the constraint of every noise level (σ, the Laplace b) in ``arg_constraints``
finite_positive = _FinitePositive()


def check_noise_level(owner, name, value, validate_args, meaning="the noise standard deviation"):
    r"""
    Raise a ``ValueError`` that says what to fix when a noise level is not finite and > 0, under the same rule as
    torch's argument validation: only when ``validate_args`` is ``True``, or ``None`` with validation on by
    default (``pyro.enable_validation``, on unless turned off).

    Torch's own check of :data:`finite_positive` in ``arg_constraints`` would refuse the same values; this one
    runs first to name the parameter's meaning and the fix, e.g.
    ``NoisyNormal: sigma must be finite and > 0 (the noise standard deviation), got inf``.

    :param str owner: the distribution's name.
    :param str name: the argument's name.
    :param value: float or tensor.
    :param validate_args: the constructor's ``validate_args``.
    :param str meaning: what the parameter is, for the message.
    """
    # torch has no public getter for the default, so read the class attribute its own __init__ reads
    if not (Distribution._validate_args if validate_args is None else validate_args):
        return
    v = torch.as_tensor(value).detach()
    bad = ~finite_positive.check(v)
    if bool(bad.any()):
        shown = ", ".join(f"{x:g}" for x in v[bad].flatten()[:3].tolist())
        more = f" (and {int(bad.sum()) - 3} more)" if int(bad.sum()) > 3 else ""
        raise ValueError(
            f"{owner}: {name} must be finite and > 0 ({meaning}), got {shown}{more}; pass a finite {name} > 0"
        )
