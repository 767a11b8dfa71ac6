"""Walk-jump sampler: the underdamped Langevin walk leaves a known Gaussian invariant; jumps are x̂(y)."""

import math
import re

import numpy as np
import pytest
import scipy.linalg
import torch

from pyro_noisevae.empirical_bayes import DEEN, GaussianEnergy, bayes_estimator, walk_jump

DT = torch.float64
LOC = torch.tensor([1.0, -2.0], dtype=DT)
COV = torch.tensor([[1.5, 0.6], [0.6, 0.8]], dtype=DT)


def _baoab_linear_map(cov, step, friction, inverse_mass):
    """
    For f(y) = (y - m)^T C^{-1} (y - m) / 2 one BAOAB step is linear in (y - m, v):
    (y', v') = T (y, v) + N xi. Returns (T, N) as numpy arrays, written independently of the library.
    """
    d = cov.shape[0]
    prec = np.linalg.inv(cov)
    i, o = np.eye(d), np.zeros((d, d))
    kick = np.block([[i, o], [-0.5 * step * inverse_mass * prec, i]])
    drift = np.block([[i, 0.5 * step * i], [o, i]])
    c = math.exp(-friction * step)
    ou = np.block([[i, o], [o, c * i]])
    noise = np.vstack([o, math.sqrt(inverse_mass * (1 - c * c)) * i])
    return kick @ drift @ ou @ drift @ kick, kick @ drift @ noise


def test_langevin_leaves_gaussian_invariant():
    """
    Many independent chains from a far-away start; after T steps the final states are compared with N(m, C).

    * Discretization bias: for a Gaussian target BAOAB's stationary law in y is exactly N(m, C) (Leimkuhler &
      Matthews 2013). We check this for our step size by solving the discrete Lyapunov equation of the
      linear chain: the bias is at float precision, so the tolerance below is Monte Carlo error only.
    * Burn-in: the mean's distance to stationarity decays like rho(T)^t; T is chosen with rho^T * |y0 - m| < 1e-8.
    * Autocorrelation does not enter: the chains are independent, so the final states are i.i.d. from the
      chain's law at time T, and standard errors are those of n i.i.d. draws: sqrt(C_ii / n) for the mean,
      sqrt((C_ii C_jj + C_ij^2) / n) for a covariance entry. 5 checks at 4.5 SE: family-wise false alarm < 1e-4.
    """
    step, friction, inverse_mass = 0.8, 0.5, 1.0
    t_map, n_map = _baoab_linear_map(COV.numpy(), step, friction, inverse_mass)
    stationary = scipy.linalg.solve_discrete_lyapunov(t_map, n_map @ n_map.T)
    bias = np.abs(stationary[:2, :2] - COV.numpy()).max()
    assert bias < 1e-10
    rho = max(abs(np.linalg.eigvals(t_map)))
    y0_offset = 4.0
    num_steps = math.ceil(math.log(1e-8 / (y0_offset * 10)) / math.log(rho))
    assert num_steps < 400  # keeps the test fast

    n = 4000
    energy = GaussianEnergy(LOC, COV)
    y0 = (LOC + y0_offset).expand(n, 2).clone()
    res = walk_jump(energy, 1.0, num_steps, y0=y0, step_size=step, friction=friction,
                    inverse_mass=inverse_mass, jump_every=num_steps, save_every=0, progress=False)
    y = res.y
    mean, cov = y.mean(0), torch.cov(y.T)
    se_mean = (COV.diagonal() / n).sqrt()
    assert ((mean - LOC).abs() < 4.5 * se_mean).all(), (mean, LOC)
    var = COV.diagonal()
    se_cov = ((var[:, None] * var[None, :] + COV**2) / n).sqrt()
    assert ((cov - COV).abs() < 4.5 * se_cov).all(), (cov, COV)
    assert res.chain.shape == (0, n, 2) and res.jumps.shape == (2, n, 2)


def test_walk_jump_records_chain_and_jumps():
    sigma = 0.5
    energy = GaussianEnergy.smoothed(LOC, COV, sigma)
    gen = torch.Generator().manual_seed(0)
    res = walk_jump(energy, sigma, 30, num_chains=3, jump_every=10, save_every=5, generator=gen, progress=False)
    assert res.jumps.shape == (4, 3, 2) and res.jump_steps.tolist() == [0, 10, 20, 30]
    assert res.chain.shape == (7, 3, 2) and res.chain_steps.tolist() == [0, 5, 10, 15, 20, 25, 30]
    # each jump is the Bayes estimate at the chain's state at that step
    for j, t in enumerate(res.jump_steps.tolist()):
        y_t = res.chain[res.chain_steps.tolist().index(t)]
        assert torch.allclose(res.jumps[j], bayes_estimator(energy, y_t, sigma), atol=1e-12)
    assert torch.equal(res.chain[-1], res.y)
    # default step size is eps_scale * sigma: a different eps_scale gives a different chain
    res2 = walk_jump(energy, sigma, 30, num_chains=3, jump_every=10, eps_scale=1.0,
                     generator=torch.Generator().manual_seed(0), progress=False)
    assert torch.equal(res2.chain[0], res.chain[0]) and not torch.allclose(res2.y, res.y)


def test_walk_jump_divergence_is_reported():
    energy = GaussianEnergy(torch.zeros(2), 1e-4 * torch.eye(2))
    with pytest.raises(RuntimeError, match="diverged"):
        walk_jump(energy, 1.0, 200, y0=torch.ones(1, 2), step_size=10.0, progress=False)


def test_walk_jump_validation():
    energy = DEEN(x_dim=3, hidden_dims=(4,))
    ok = dict(num_chains=1, progress=False)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="sigma"):
            walk_jump(energy, bad, 5, **ok)
    with pytest.raises(ValueError, match="step_size"):
        walk_jump(energy, 1.0, 5, step_size=0.0, **ok)
    with pytest.raises(ValueError, match="friction"):
        walk_jump(energy, 1.0, 5, friction=-1.0, **ok)
    with pytest.raises(ValueError, match="inverse_mass"):
        walk_jump(energy, 1.0, 5, inverse_mass=0.0, **ok)
    with pytest.raises(ValueError, match="jump_every"):
        walk_jump(energy, 1.0, 5, jump_every=0, **ok)
    with pytest.raises(ValueError, match="num_steps"):
        walk_jump(energy, 1.0, -1, **ok)
    with pytest.raises(ValueError, match="features"):
        walk_jump(energy, 1.0, 5, y0=torch.zeros(2, 4), progress=False)
    with pytest.raises(ValueError, match="NaN"):
        walk_jump(energy, 1.0, 5, y0=torch.full((2, 3), float("nan")), progress=False)
    with pytest.raises(TypeError, match="Energy"):
        walk_jump(lambda y: y, 1.0, 5, **ok)


# ---- issue 15: mutation-testing blind spots (quality/notes_eb_walk_jump.md) ----


def _reference_walk(cov, loc, y0, num_steps, step, friction, inverse_mass, generator):
    """
    The BAOAB chain on f(y) = (y - m)^T C^{-1} (y - m) / 2 written as the linear recursion of
    _baoab_linear_map (numpy, independent of the library): (y_t - m, v_t) = T (y_{t-1} - m, v_{t-1}) + N xi_t, with
    xi_t the t-th standard normal draw of shape (C, D) from ``generator``. Returns the states y_0..y_T, v_T.
    """
    t_map, n_map = _baoab_linear_map(cov.numpy(), step, friction, inverse_mass)
    d = loc.shape[0]
    state = np.concatenate([(y0 - loc).numpy(), np.zeros(y0.shape)], axis=1)  # rows (y - m, v)
    ys = [y0.numpy()]
    for _ in range(num_steps):
        xi = torch.randn(y0.shape, dtype=DT, generator=generator).numpy()
        state = state @ t_map.T + xi @ n_map.T
        ys.append(state[:, :d] + loc.numpy())
    return torch.from_numpy(np.stack(ys)), torch.from_numpy(state[:, d:])


def test_walk_steps_follow_the_baoab_recursion_exactly():
    """
    Three steps with a non-default step, friction and inverse mass: every saved state, the final velocity and every
    jump (x̂ = y - σ² C⁻¹ (y - m), by a linear solve) agree with the independent linear recursion to float64
    precision, the Langevin noise being the generator's draws in step order.
    """
    sigma, step, friction, inverse_mass = 0.6, 0.3, 0.7, 2.0
    y0 = torch.tensor([[0.3, 1.1], [-2.0, 0.5], [4.0, -3.0]], dtype=DT)
    res = walk_jump(GaussianEnergy(LOC, COV), sigma, 3, y0=y0, jump_every=1, step_size=step, friction=friction,
                    inverse_mass=inverse_mass, generator=torch.Generator().manual_seed(11), progress=False)
    ys, v = _reference_walk(COV, LOC, y0, 3, step, friction, inverse_mass, torch.Generator().manual_seed(11))
    assert res.chain_steps.tolist() == [0, 1, 2, 3] and res.jump_steps.tolist() == [0, 1, 2, 3]
    assert torch.allclose(res.chain, ys, rtol=0, atol=1e-12)
    assert torch.allclose(res.y, ys[-1], rtol=0, atol=1e-12) and torch.allclose(res.v, v, rtol=0, atol=1e-12)
    jumps = ys - sigma**2 * torch.linalg.solve(COV, (ys - LOC).transpose(1, 2)).transpose(1, 2)
    assert torch.allclose(res.jumps, jumps, rtol=0, atol=1e-12)


def test_walk_jump_defaults(capsys):
    """
    The documented defaults: step 0.5 σ, friction 0.5, inverse mass 1, a jump and a saved state every 10 steps, one
    chain started at U(0,1)^D + N(0, σ²I), and a progress bar labelled "walk-jump" on stderr.
    """
    sigma = 0.4
    energy = GaussianEnergy(LOC, COV)
    y0 = torch.tensor([[2.0, -1.0]], dtype=DT)
    res = walk_jump(energy, sigma, 20, y0=y0, generator=torch.Generator().manual_seed(3))
    assert re.search(r"(^|\r)walk-jump: ", capsys.readouterr().err)  # the bar's label, "walk-jump: 100%|..."
    ys, v = _reference_walk(COV, LOC, y0, 20, 0.5 * sigma, 0.5, 1.0, torch.Generator().manual_seed(3))
    assert res.jump_steps.tolist() == [0, 10, 20] and res.chain_steps.tolist() == [0, 10, 20]
    assert torch.allclose(res.chain, ys[[0, 10, 20]], rtol=0, atol=1e-12)
    assert torch.allclose(res.v, v, rtol=0, atol=1e-12)
    res = walk_jump(energy, sigma, 2, progress=False)
    assert res.y.shape == (1, 2) and capsys.readouterr().err == ""


def test_zero_steps_records_the_start_only():
    res = walk_jump(GaussianEnergy(LOC, COV), 1.0, 0, y0=LOC[None], progress=False)
    assert res.jump_steps.tolist() == [0] and res.chain_steps.tolist() == [0]
    assert torch.equal(res.y, LOC[None]) and torch.equal(res.v, torch.zeros(1, 2, dtype=DT))


def test_save_every_zero_saves_an_empty_long_index():
    res = walk_jump(GaussianEnergy(LOC, COV), 1.0, 4, y0=LOC[None], jump_every=2, save_every=0, progress=False)
    assert res.chain.shape == (0, 1, 2) and res.chain.dtype == DT
    assert res.chain_steps.shape == (0,) and res.chain_steps.dtype == torch.long
    assert res.jump_steps.dtype == torch.long and res.jump_steps.tolist() == [0, 2, 4]


def _energy_without_parameters(dim):
    from pyro_noisevae.empirical_bayes import Energy

    class Quadratic(Energy):
        """f(y) = |y|^2 / 2, no parameters or buffers."""

        def forward(self, y):
            return 0.5 * y.pow(2).sum(-1)

    energy = Quadratic()
    energy.dim = dim
    return energy


def test_default_start_is_uniform_plus_noise_in_the_energys_dtype():
    """
    y0 = U(0,1)^D + N(0, σ²I): per coordinate mean 1/2 and variance 1/12 + σ², checked on 20,000 chains within 4.5
    standard errors (the variance's SE from the fourth central moment 1/80 + σ²/2 + 3σ⁴ of the sum); and its dtype is
    the energy's (float64 buffers, float32 DEEN) or, for an energy without tensors, torch's default.
    """
    sigma, n = 0.5, 20000
    gen = torch.Generator().manual_seed(0)
    res = walk_jump(GaussianEnergy(LOC, COV), sigma, 0, num_chains=n, generator=gen, progress=False)
    y0 = res.chain[0]
    assert y0.dtype == DT and y0.shape == (n, 2)
    var = 1 / 12 + sigma**2
    mu4 = 1 / 80 + 6 * (1 / 12) * sigma**2 + 3 * sigma**4
    assert ((y0.mean(0) - 0.5).abs() < 4.5 * math.sqrt(var / n)).all(), y0.mean(0)
    assert ((y0.var(0) - var).abs() < 4.5 * math.sqrt((mu4 - var**2) / n)).all(), y0.var(0)
    assert walk_jump(DEEN(3, hidden_dims=(4,)), sigma, 1, progress=False).y.dtype == torch.float32
    assert walk_jump(DEEN(3, hidden_dims=(4,)).double(), sigma, 1, progress=False).y.dtype == DT
    res = walk_jump(_energy_without_parameters(3), sigma, 1, num_chains=2, progress=False)
    assert res.y.shape == (2, 3) and res.y.dtype == torch.get_default_dtype()


def test_walk_jump_error_messages():
    energy = DEEN(x_dim=3, hidden_dims=(4,))
    ok = dict(progress=False)

    def raises(exc, message, *args, **kwargs):
        with pytest.raises(exc, match=f"^{re.escape(message)}$"):
            walk_jump(*args, **kwargs, **ok)

    raises(TypeError, "energy must be an Energy, got function", lambda y: y, 1.0, 5)
    raises(ValueError, "num_steps must be a positive integer, got -1", energy, 1.0, -1)
    raises(ValueError, "num_steps must be a positive integer, got True", energy, 1.0, True)
    raises(ValueError, "num_steps must be a positive integer, got 2.0", energy, 1.0, 2.0)
    raises(ValueError, "jump_every must be a positive integer, got 0", energy, 1.0, 5, jump_every=0)
    raises(ValueError, "num_chains must be a positive integer, got 0", energy, 1.0, 5, num_chains=0)
    raises(ValueError, "step_size must be a finite number > 0, got 0.0", energy, 1.0, 5, step_size=0)
    raises(ValueError, "step_size must be a finite number > 0, got inf", energy, 1.0, 5, step_size=float("inf"))
    raises(ValueError, "friction must be a finite number > 0, got -1.0", energy, 1.0, 5, friction=-1)
    raises(ValueError, "inverse_mass must be a finite number > 0, got 0.0", energy, 1.0, 5, inverse_mass=0)
    raises(ValueError, "save_every must be >= 0, got -1", energy, 1.0, 5, save_every=-1)
    raises(ValueError, "y0 has 4 features but the energy expects 3", energy, 1.0, 5, y0=torch.zeros(2, 4))
    raises(TypeError, "y0 must be a floating tensor, got dtype torch.int64", energy, 1.0, 5,
           y0=torch.zeros(2, 3, dtype=torch.long))
    raises(ValueError, "this energy has no fixed dimension: pass y0 of shape (num_chains, D)",
           _energy_without_parameters(None), 1.0, 5)
    # with y0 given, an energy without a fixed dimension walks in y0's dimension
    assert walk_jump(_energy_without_parameters(None), 1.0, 2, y0=torch.zeros(2, 5), **ok).y.shape == (2, 5)


def test_divergence_message_names_the_step_and_the_remedy():
    # curvature 1e4 with step 10: each step multiplies the position by about (step² curvature)² = 1e10, so the float32
    # chain from y0 = 1 overflows at step 7 whatever the O(1) noise
    energy = GaussianEnergy(torch.zeros(2), 1e-4 * torch.eye(2))
    message = ("step 7: the Langevin chain diverged (non-finite position); lower step_size (now 10) so that "
               "step_size * sqrt(inverse_mass * curvature) < 2, or raise friction")
    with pytest.raises(RuntimeError, match=f"^{re.escape(message)}$") as info:
        walk_jump(energy, 1.0, 200, y0=torch.ones(1, 2), step_size=10.0, progress=False,
                  generator=torch.Generator().manual_seed(0))
    assert isinstance(info.value.__cause__, RuntimeError)
