"""The IWAE surrogate and DReG's gradient hook, as functions of given log weights and draws."""

import math

import pytest
import torch

from pyro_noisevae.infer.iwae_surrogate import iwae_objective, register_dreg_hook

F64 = dict(dtype=torch.float64)


def _hooked_grad(value, weights, event_dim, upstream=None):
    """The gradient reaching ``value`` through a hook registered with ``weights``, for an upstream gradient."""
    value = value.clone().requires_grad_()
    register_dreg_hook(value, weights, event_dim)
    upstream = torch.ones_like(value) if upstream is None else upstream
    (grad,) = torch.autograd.grad((value * upstream).sum(), [value])
    return grad


def test_dreg_hook_multiplies_the_gradient_by_the_aligned_weights():
    w = torch.tensor([[0.1, 0.9, 0.5], [0.9, 0.1, 0.5]], **F64)  # (K, N)
    up = torch.arange(24, **F64).reshape(2, 3, 4)
    # event_dim = 1: the weights broadcast over the event dims
    torch.testing.assert_close(_hooked_grad(torch.zeros(2, 3, 4, **F64), w, 1, up), up * w.unsqueeze(-1))
    # a value with an extra (non-plate) batch dim on the left: the weights are left-padded
    up = torch.arange(12, **F64).reshape(2, 2, 3)
    torch.testing.assert_close(_hooked_grad(torch.zeros(2, 2, 3, **F64), w[0], 0, up), up * w[0])
    # leading size-1 dims of the weights beyond the value's batch dims are dropped
    torch.testing.assert_close(_hooked_grad(torch.zeros(3, **F64), w[:1], 0), w[0])
    torch.testing.assert_close(_hooked_grad(torch.zeros(3, **F64), w[:1, None], 0), w[0])


def test_dreg_hook_casts_the_weights_to_the_value_dtype():
    grad = _hooked_grad(torch.zeros(3), torch.tensor([0.25, 0.5, 2.0], **F64), 0)
    assert grad.dtype == torch.float32
    torch.testing.assert_close(grad, torch.tensor([0.25, 0.5, 2.0]))


def test_dreg_hook_rejects_a_value_without_the_particle_dims():
    weights = torch.full((2, 3), 0.5, **F64)
    with pytest.raises(RuntimeError, match=r"^gradient_estimator='dreg': a guide value of shape \(3, 4\) lacks the "
                                           r"particle and plate dims of the importance weights; sample every latent "
                                           r"inside the plates$"):
        register_dreg_hook(torch.zeros(3, 4, requires_grad=True), weights, 1)
    with pytest.raises(RuntimeError, match="lacks the particle"):
        register_dreg_hook(torch.zeros(3, requires_grad=True), weights.reshape(1, 2, 3), 0)


def test_dreg_hook_rejects_a_value_broadcast_along_a_plate():
    weights = torch.full((2, 3), 0.5, **F64)
    with pytest.raises(RuntimeError, match=r"^gradient_estimator='dreg': guide value of shape \(2, 1, 4\) is broadcast "
                                           r"along a plate of the importance weights \(2, 3, 1\); expand the guide "
                                           r"distribution to the plate$"):
        register_dreg_hook(torch.zeros(2, 1, 4, requires_grad=True), weights, 1)


def test_iwae_objective_value_and_standard_gradient():
    log_w = torch.tensor([[0.3, -1.0], [1.2, 0.4], [-0.5, 2.0]], **F64, requires_grad=True)
    out = iwae_objective(log_w)
    expected = log_w.detach().logsumexp(0) - math.log(3)
    torch.testing.assert_close(out, expected)
    (grad,) = torch.autograd.grad(out.sum(), [log_w])
    torch.testing.assert_close(grad, torch.softmax(log_w.detach(), 0))
    # the score-function term: the bound times the gradient of log q, value unchanged
    score = torch.tensor([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]], **F64, requires_grad=True)
    out = iwae_objective(log_w, score=score)
    torch.testing.assert_close(out, expected)
    (grad,) = torch.autograd.grad(out.sum(), [score])
    torch.testing.assert_close(grad, expected.expand(3, 2))


def test_iwae_objective_dreg_squares_the_weights_on_the_path():
    """DReG: log w evaluated with stopped parameters; the draws' gradients carry weight w~^2 (w~ from the surrogate,
    w~ again from the hook), looped (k given) or vectorized (k None)."""
    log_w = torch.tensor([[0.3, -1.0], [1.2, 0.4]], **F64)
    w = torch.softmax(log_w, 0)
    for looped in (False, True):
        z = torch.tensor([[1.0, 2.0], [3.0, 4.0]], **F64, requires_grad=True)
        zs = [z[k] for k in range(2)] if looped else [z * 1.0]
        dreg_terms = torch.stack(zs) if looped else zs[0]  # log w_dreg = log w + (z - z.detach())
        log_w_dreg = log_w + dreg_terms - dreg_terms.detach()
        hooks = [(k, zk, 0) for k, zk in enumerate(zs)] if looped else [(None, zs[0], 0)]
        out = iwae_objective(log_w, log_w_dreg=log_w_dreg, dreg_values=hooks)
        torch.testing.assert_close(out, log_w.logsumexp(0) - math.log(2))
        (grad,) = torch.autograd.grad(out.sum(), [z])
        torch.testing.assert_close(grad, w**2)


def test_a_particle_of_weight_zero_contributes_nothing():
    # point 0: one particle outside the support (log w = -inf); point 1: all finite
    log_w = torch.tensor([[0.0, -1.0], [-math.inf, -2.0], [math.log(3.0), -0.5]], dtype=torch.float64, requires_grad=True)
    value = iwae_objective(log_w)
    # L_3 = log((1 + 0 + 3) / 3) for point 0, an ordinary log-mean-exp for point 1
    expected = torch.stack([torch.tensor(math.log(4.0 / 3.0), dtype=torch.float64),
                            torch.logsumexp(log_w.detach()[:, 1], 0) - math.log(3)])
    assert torch.allclose(value.detach(), expected, rtol=0, atol=1e-12)
    value.sum().backward()
    # standard gradient: the normalized weights, exactly 0 for the dead particle
    assert torch.allclose(log_w.grad[:, 0], torch.tensor([0.25, 0.0, 0.75], dtype=torch.float64), rtol=0, atol=1e-12)
    assert torch.allclose(log_w.grad[:, 1], torch.softmax(log_w.detach()[:, 1], 0), rtol=0, atol=1e-12)


def test_a_point_whose_every_weight_is_zero_has_bound_minus_inf_and_no_gradient():
    log_w = torch.tensor([[-math.inf, 0.0], [-math.inf, 1.0]], requires_grad=True)
    score = torch.zeros(2, 2, requires_grad=True)
    value = iwae_objective(log_w, score=score)
    assert value[0].item() == -math.inf
    assert math.isfinite(value[1].item())
    value[1].backward()
    assert torch.equal(log_w.grad[:, 0], torch.zeros(2))
    assert torch.isfinite(score.grad).all()
    # DReG form: the dead point's surrogate and draw gradients stay finite (zero weights)
    z = torch.ones(2, 2, requires_grad=True)
    log_w_dreg = log_w.detach() + 0.0 * z.sum()  # depends on z, like log w at stopped guide parameters
    value = iwae_objective(log_w.detach(), log_w_dreg=log_w_dreg, dreg_values=[(None, z, 0)])
    assert value[0].item() == -math.inf
    value[1].backward()
    assert torch.isfinite(z.grad).all()
