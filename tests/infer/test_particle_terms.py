"""The per-particle bookkeeping of the training objectives: scales, kept plate dims, stacking, draws' tensors."""

import pyro.distributions as dist
import pytest
import torch

from pyro_noisevae.infer.particle_terms import (
    as_scale,
    is_delta,
    left_pad,
    per_particle,
    reduce_to_kept,
    same_scale,
    stack_particles,
    tensors_of,
    varies_only_along,
    warn_vectorize_fallback,
)

F64 = dict(dtype=torch.float64)


class _Half:
    def __float__(self):
        return 0.5


def test_as_scale_keeps_numbers_and_tensors_and_converts_the_rest():
    w = torch.tensor([0.5, 2.0])
    assert as_scale(w) is w and as_scale(3) == 3
    out = as_scale(_Half())
    assert type(out) is float and out == 0.5


def test_same_scale_of_numbers():
    assert same_scale(0.5, 0.5) and same_scale(2, 2.0)
    assert not same_scale(0.5, 0.5 * (1 + 1e-7))  # rel. tolerance 1e-9
    assert not same_scale(1e-12, 3e-12)  # no absolute tolerance


def test_same_scale_of_tensors():
    w = torch.linspace(0.1, 0.4, 5, **F64)
    assert same_scale(w, w.clone()) and same_scale(w.float(), w.float().double())
    assert same_scale(2.0, torch.full((3,), 2.0)) and same_scale(torch.full((3,), 2.0), 2.0)
    assert same_scale(torch.full((3, 1), 2.0), torch.full((1, 4), 2.0))  # broadcastable and equal
    assert not same_scale(2.0, torch.tensor([2.0, 3.0]))
    assert not same_scale(w, 2 * w)
    assert not same_scale(torch.ones(3), torch.ones(2))  # not broadcastable: no shared scale
    assert not same_scale(torch.tensor(1.0, **F64), torch.tensor(1.0 + 1e-6, **F64))  # rel. tolerance 1e-9
    assert not same_scale(torch.tensor(1e-9, **F64), torch.tensor(2e-9, **F64))  # no absolute tolerance


def test_varies_only_along():
    assert varies_only_along(0.5, set()) and varies_only_along(torch.tensor(2.0), set())
    assert varies_only_along(torch.ones(4), {-1}) and not varies_only_along(torch.ones(4), {-2})
    assert varies_only_along(torch.ones(3, 1), {-2}) and not varies_only_along(torch.ones(1, 3), {-2})
    assert not varies_only_along(torch.ones(2, 1), {-1})
    assert varies_only_along(torch.ones(2, 1, 3), {-3, -1}) and not varies_only_along(torch.ones(2, 1, 3), {-1})


def test_reduce_to_kept_sums_the_other_dims_keeping_them():
    assert reduce_to_kept(0.0, {-1}) == 0.0
    t = torch.arange(12, **F64).reshape(2, 3, 2)
    torch.testing.assert_close(reduce_to_kept(t, {-3, -2}), t.sum(-1, keepdim=True))
    torch.testing.assert_close(reduce_to_kept(t, {-3}), t.sum((-2, -1), keepdim=True))
    u = torch.arange(8, **F64).reshape(2, 1, 4)
    torch.testing.assert_close(reduce_to_kept(u, {-3}), u.sum(-1, keepdim=True))
    assert reduce_to_kept(t, {-3, -2, -1}) is t and reduce_to_kept(u, {-3, -1}) is u


def test_left_pad():
    t = torch.arange(3.0)
    assert left_pad(t, 3).shape == (1, 1, 3) and left_pad(t, 1).shape == (3,)


def test_tensors_of_walks_base_distributions_containers_and_transforms():
    loc = torch.tensor([0.5, 1.0], requires_grad=True)
    a, b = torch.tensor(2.0), torch.tensor(3.0)
    d = dist.Normal(loc, 1.0)
    found = tensors_of(dist.Independent(d, 1))
    assert any(t is loc for t in found)
    d.extra = (a, [b])  # tensors in tuple/list attributes
    found = tensors_of(d)
    assert any(t is a for t in found) and any(t is b for t in found)
    shift = torch.tensor(0.3, requires_grad=True)
    transformed = dist.TransformedDistribution(dist.Normal(0.0, 1.0), [dist.transforms.AffineTransform(shift, 2.0)])
    assert any(t is shift for t in tensors_of(transformed))
    assert tensors_of(1.5) == [] and tensors_of(None) == []


def test_tensors_of_lists_each_tensor_once_and_survives_cycles():
    loc = torch.tensor([0.5, 1.0])
    d = dist.Normal(loc, 1.0)
    d.same, d.again, d.me = d.loc, [d.loc, (d.loc,)], d  # repeats and a reference cycle
    found = tensors_of(d)
    assert sum(t is d.loc for t in found) == 1
    assert sum(t is d.loc for t in tensors_of([d.loc, d.loc, (d.loc,)])) == 1
    assert len(found) == len({id(t) for t in found})


def test_per_particle_sums_all_but_the_particle_dim():
    torch.testing.assert_close(per_particle(0.0, -2), torch.tensor(0.0))
    t = torch.arange(6, **F64).reshape(2, 3)
    torch.testing.assert_close(per_particle(t, None), t.sum())
    torch.testing.assert_close(per_particle(t[0], -2), t[0].sum())  # no particle dim: one value
    torch.testing.assert_close(per_particle(t, -2), t.sum(-1))  # (K, 3) at particle dim -2
    u = torch.arange(6, **F64).reshape(2, 3, 1)
    torch.testing.assert_close(per_particle(u, -3), u.sum((-2, -1)))
    v = torch.arange(24, **F64).reshape(2, 3, 4)
    torch.testing.assert_close(per_particle(v, -2), v.sum((0, 2)))  # particles at dim -2 of size 3


def test_stack_particles():
    out = stack_particles([0.0, 0.0])
    assert out == 0.0 and not isinstance(out, torch.Tensor)
    torch.testing.assert_close(stack_particles([1.0, 2.0]), torch.tensor([1.0, 2.0]))
    t = torch.tensor([1.0, 2.0], **F64)
    torch.testing.assert_close(stack_particles([t, 0.0]), torch.tensor([[1.0, 2.0], [0.0, 0.0]], **F64))
    torch.testing.assert_close(stack_particles([0.0, t]), torch.tensor([[0.0, 0.0], [1.0, 2.0]], **F64))
    a, b = torch.arange(3.0), torch.arange(6.0).reshape(2, 3)
    torch.testing.assert_close(stack_particles([a, b]), torch.stack([a.expand(2, 3), b]))


def test_is_delta_unwraps_to_event():
    v = torch.zeros(2, 3)
    assert is_delta(dist.Delta(v)) and is_delta(dist.Delta(v).to_event(1)) and is_delta(dist.Delta(v).to_event(2))
    assert not is_delta(dist.Normal(v, 1.0)) and not is_delta(dist.Normal(v, 1.0).to_event(1))


def test_warn_vectorize_fallback_names_the_error():
    with pytest.warns(RuntimeWarning) as record:
        warn_vectorize_fallback(IndexError("dim 3 out of range"))
    (w,) = record
    assert str(w.message) == ("the programs failed under a vectorized particle plate (IndexError: dim 3 out of range); "
                              "falling back to looped particles (pass vectorize_particles=False to choose this "
                              "explicitly)")
