"""Walk-jump sampler: the underdamped Langevin walk leaves a known Gaussian invariant; jumps are x̂(y)."""

import math

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
