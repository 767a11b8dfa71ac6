"""Walk-jump sampling: underdamped Langevin MCMC in Y on a learned energy, with jumps to the Bayes estimate of X."""

import math
from dataclasses import dataclass

import torch
from tqdm import tqdm

from .energy import Energy, check_points, check_sigma

__all__ = ["WalkJumpResult", "langevin_step", "walk_jump"]


@dataclass
class WalkJumpResult:
    """
    Output of :func:`walk_jump` for ``C`` chains in ``D`` dimensions.

    :ivar torch.Tensor jumps: :math:`\\hat x(y_t)` at every ``jump_every``-th step, shape ``(J, C, D)``.
    :ivar torch.Tensor jump_steps: the step index ``t`` of each jump, shape ``(J,)``.
    :ivar torch.Tensor chain: the walk :math:`y_t` saved every ``save_every`` steps, shape ``(S, C, D)``
        (``S = 0`` when ``save_every=0``).
    :ivar torch.Tensor chain_steps: the step index of each saved state, shape ``(S,)``.
    :ivar torch.Tensor y: final position, shape ``(C, D)``.
    :ivar torch.Tensor v: final velocity, shape ``(C, D)``.
    """

    jumps: torch.Tensor
    jump_steps: torch.Tensor
    chain: torch.Tensor
    chain_steps: torch.Tensor
    y: torch.Tensor
    v: torch.Tensor


def _positive(name, value):
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


def langevin_step(energy, y, v, grad, step_size, friction, inverse_mass, generator=None):
    r"""
    One BAOAB step of underdamped Langevin dynamics

    .. math::

        dy = v\,dt, \qquad dv = -u \nabla f(y)\,dt - \gamma v\,dt + \sqrt{2\gamma u}\; dW,

    whose invariant law is :math:`\pi(y, v) \propto \exp(-f(y) - \lVert v\rVert^2 / 2u)` (so the
    :math:`y`-marginal is :math:`\propto e^{-f}`), with step :math:`\delta`, friction :math:`\gamma` and
    inverse mass :math:`u`: a half kick ``B`` :math:`v \leftarrow v - \tfrac{\delta}{2} u \nabla f(y)`, a half
    drift ``A`` :math:`y \leftarrow y + \tfrac{\delta}{2} v`, the exact Ornstein-Uhlenbeck update ``O``
    :math:`v \leftarrow e^{-\gamma\delta} v + \sqrt{u(1 - e^{-2\gamma\delta})}\,\xi`, a half drift, a half kick.
    One energy gradient per step (the gradient at the new position is returned for the next step).

    :param Energy energy: the energy :math:`f`.
    :param torch.Tensor y: positions ``(C, D)``.
    :param torch.Tensor v: velocities ``(C, D)``.
    :param torch.Tensor grad: :math:`\nabla f(y)` at the current positions, ``(C, D)``.
    :returns: ``(y, v, grad)`` after the step, each ``(C, D)``.
    :raises RuntimeError: if the position becomes non-finite (step too large for the energy's curvature).
    """
    c = math.exp(-friction * step_size)
    noise_scale = math.sqrt(inverse_mass * (1.0 - c * c))
    half = 0.5 * step_size
    v = v - half * inverse_mass * grad
    y = y + half * v
    xi = torch.randn(v.shape, dtype=v.dtype, device=v.device, generator=generator)
    v = c * v + noise_scale * xi
    y = y + half * v
    if not torch.isfinite(y).all():
        raise RuntimeError(
            f"the Langevin chain diverged (non-finite position); lower step_size (now {step_size:g}) so that "
            "step_size * sqrt(inverse_mass * curvature) < 2, or raise friction"
        )
    _, grad = energy.energy_and_grad(y)
    v = v - half * inverse_mass * grad
    return y, v, grad


def walk_jump(
    energy,
    sigma,
    num_steps,
    *,
    y0=None,
    num_chains=1,
    jump_every=10,
    step_size=None,
    eps_scale=0.5,
    friction=0.5,
    inverse_mass=1.0,
    save_every=None,
    generator=None,
    progress=True,
):
    r"""
    Walk-jump sampling (Saremi & Hyvärinen 2019): *walk* in :math:`Y` with underdamped Langevin MCMC on
    the energy :math:`f \approx -\log p(y)` (see :func:`langevin_step`), and every ``jump_every`` steps
    *jump* to the Bayes estimate :math:`\hat x(y_t) = y_t - \sigma^2 \nabla f(y_t)`. The walk takes
    place in the smoothed density of :math:`Y = X + N(0, \sigma^2 I)`, which mixes much faster than the
    density of :math:`X`; the jumps are the samples (of :math:`\mathbb{E}[X \mid y]`, not of :math:`X`).

    Defaults follow the settings used at :math:`\sigma = 1` on MNIST in the UVB/MDAE code: step
    :math:`\delta = \mathrm{eps\_scale}\cdot\sigma` with ``eps_scale = 0.5``, friction :math:`\gamma = 0.5`,
    inverse mass :math:`u = 1`. Since the energy's curvature is at most about :math:`1/\sigma^2`, the
    leapfrog-type step is stable for :math:`\delta\sqrt{u}/\sigma < 2`.

    :param Energy energy: learned energy of :math:`Y`.
    :param float sigma: the noise level the energy was learned at (used for the jumps and default step).
    :param int num_steps: number of Langevin steps.
    :param torch.Tensor y0: initial positions ``(C, D)``; default :math:`U(0,1)^D + N(0, \sigma^2 I)` per chain.
    :param int num_chains: number of chains C when ``y0`` is not given.
    :param int jump_every: jump period (in steps), >= 1.
    :param float step_size: :math:`\delta` (default ``eps_scale * sigma``).
    :param float eps_scale: :math:`\delta / \sigma` when ``step_size`` is not given.
    :param float friction: :math:`\gamma > 0`.
    :param float inverse_mass: :math:`u > 0`.
    :param int save_every: save :math:`y_t` every this many steps (default ``jump_every``; 0 saves nothing).
    :param torch.Generator generator: generator for the Langevin noise and the default ``y0``
        (on the energy's device).
    :param bool progress: show a tqdm progress bar.
    :returns: :class:`WalkJumpResult`; the initial state (step 0) is included in ``chain`` and ``jumps``.
    """
    if not isinstance(energy, Energy):
        raise TypeError(f"energy must be an Energy, got {type(energy).__name__}")
    sigma = check_sigma(sigma)
    for name, value in (("num_steps", num_steps), ("jump_every", jump_every), ("num_chains", num_chains)):
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "num_steps" else 1):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    step_size = _positive("step_size", eps_scale * sigma if step_size is None else step_size)
    friction = _positive("friction", friction)
    inverse_mass = _positive("inverse_mass", inverse_mass)
    save_every = jump_every if save_every is None else int(save_every)
    if save_every < 0:
        raise ValueError(f"save_every must be >= 0, got {save_every}")
    if y0 is None:
        if energy.dim is None:
            raise ValueError("this energy has no fixed dimension: pass y0 of shape (num_chains, D)")
        p = next(iter(list(energy.parameters()) + list(energy.buffers())), None)
        dtype = p.dtype if p is not None else torch.get_default_dtype()
        device = p.device if p is not None else None
        shape = (num_chains, energy.dim)
        y0 = torch.rand(shape, dtype=dtype, device=device, generator=generator)
        y0 = y0 + sigma * torch.randn(shape, dtype=dtype, device=device, generator=generator)
    check_points(y0, energy.dim, name="y0")

    y = y0.detach().clone()
    v = torch.zeros_like(y)
    _, grad = energy.energy_and_grad(y)
    jumps, jump_steps, chain, chain_steps = [], [], [], []

    def record(t):
        if t % jump_every == 0:
            jumps.append((y - sigma**2 * grad).cpu())
            jump_steps.append(t)
        if save_every and t % save_every == 0:
            chain.append(y.cpu())
            chain_steps.append(t)

    record(0)
    for t in tqdm(range(1, num_steps + 1), desc="walk-jump", disable=not progress):
        try:
            y, v, grad = langevin_step(energy, y, v, grad, step_size, friction, inverse_mass, generator)
        except RuntimeError as e:
            raise RuntimeError(f"step {t}: {e}") from e
        record(t)

    def stack(xs):
        return torch.stack(xs) if xs else y.new_zeros((0,) + tuple(y.shape)).cpu()

    return WalkJumpResult(
        jumps=stack(jumps),
        jump_steps=torch.tensor(jump_steps, dtype=torch.long),
        chain=stack(chain),
        chain_steps=torch.tensor(chain_steps, dtype=torch.long),
        y=y,
        v=v,
    )
