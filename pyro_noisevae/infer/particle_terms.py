"""Per-particle bookkeeping of the training objectives: site scales, kept plate dims, stacking looped particles."""

import math
import numbers
import warnings

import torch
from pyro.distributions import Delta

__all__ = [
    "as_scale",
    "is_delta",
    "left_pad",
    "per_particle",
    "reduce_to_kept",
    "same_scale",
    "stack_particles",
    "tensors_of",
    "varies_only_along",
    "warn_vectorize_fallback",
]


def as_scale(scale):
    return scale if isinstance(scale, (numbers.Number, torch.Tensor)) else float(scale)


def same_scale(a, b):
    if isinstance(a, numbers.Number) and isinstance(b, numbers.Number):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    try:
        a, b = torch.broadcast_tensors(a.to(b.dtype), b)
    except RuntimeError:
        return False
    return bool(torch.allclose(a, b, rtol=1e-9, atol=0.0))


def varies_only_along(scale, keep_dims):
    """True if the tensor ``scale`` (right-aligned to batch dims) is constant along every dim not in ``keep_dims``."""
    if isinstance(scale, numbers.Number):
        return True
    return all(size == 1 or d in keep_dims for d, size in zip(range(-scale.dim(), 0), scale.shape))


def reduce_to_kept(tensor, keep_dims):
    """Sum ``tensor`` (right-aligned batch dims) over every dim not in ``keep_dims``, keeping them as size 1."""
    if not isinstance(tensor, torch.Tensor):
        return tensor
    dims = [d for d in range(-tensor.dim(), 0) if d not in keep_dims and tensor.shape[d] != 1]
    return tensor.sum(dims, keepdim=True) if dims else tensor


def left_pad(tensor, ndim):
    return tensor.reshape((1,) * (ndim - tensor.dim()) + tensor.shape)


def tensors_of(obj, seen=None):
    """The tensors held (possibly through base distributions or transforms) by a distribution object."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return []
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for item in obj for t in tensors_of(item, seen)]
    if isinstance(obj, (torch.distributions.Distribution, torch.distributions.transforms.Transform)):
        # a TransformedDistribution's transforms hold parameters too (e.g. AffineTransform(loc=z1, ...))
        return [t for value in vars(obj).values() for t in tensors_of(value, seen)]
    return []


def per_particle(log_prob, particle_dim):
    """A global site's log density summed over every dim but the particle dim: ``(K,)``, or a 0-dim tensor."""
    if not isinstance(log_prob, torch.Tensor):
        return torch.as_tensor(log_prob)
    if particle_dim is None or log_prob.dim() < -particle_dim:
        return log_prob.sum()
    return log_prob.movedim(particle_dim, 0).reshape(log_prob.shape[particle_dim], -1).sum(-1)


def stack_particles(parts):
    """Stack per-particle terms (tensors of possibly different broadcastable shapes, or 0.0) along dim 0."""
    if all(not isinstance(p, torch.Tensor) for p in parts):
        return parts[0] if all(p == 0 for p in parts) else torch.tensor(parts)
    like = next(p for p in parts if isinstance(p, torch.Tensor))
    parts = [p if isinstance(p, torch.Tensor) else like.new_tensor(p) for p in parts]
    ndim = max(p.dim() for p in parts)
    return torch.stack(torch.broadcast_tensors(*[left_pad(p, ndim) for p in parts]))


def is_delta(fn):
    """True for a (possibly ``.to_event``-wrapped) :class:`~pyro.distributions.Delta` guide site."""
    while hasattr(fn, "base_dist"):
        fn = fn.base_dist
    return isinstance(fn, Delta)


def warn_vectorize_fallback(error):
    warnings.warn(
        f"the programs failed under a vectorized particle plate ({type(error).__name__}: {error}); falling back to "
        "looped particles (pass vectorize_particles=False to choose this explicitly)", RuntimeWarning, stacklevel=3)
