"""Conformance of ELBOEnergy: the ELBO of a user's Pyro model/guide pair as a per-point energy of the data."""

import math

import pyro
import pytest
import torch
from programs import make, names, within

from pyro_noisevae.empirical_bayes import ELBOEnergy


def _energy(prog, **kwargs):
    return ELBOEnergy(prog.model, prog.guide, plate_name=prog.data_plate, **kwargs)


@pytest.mark.parametrize("bound", ["elbo", "iwae"])
@pytest.mark.parametrize("exact_program", ["linear_vae", "hierarchical_vae"], indirect=True)
def test_energy_at_the_exact_posterior_is_minus_log_px(exact_program, bound):
    """Constant importance weights: the energy is -log p(x) to float precision (plate "obs" / a PyroModule)."""
    energy = _energy(exact_program, num_particles=3, bound=bound, analytic_kl=False)
    torch.testing.assert_close(energy(exact_program.data), -exact_program.exact_log_px, rtol=0, atol=1e-8)


@pytest.mark.parametrize("analytic_kl", [True, False], ids=["analytic_kl", "sampled_kl"])
def test_energy_is_minus_the_closed_form_elbo_per_point(analytic_kl):
    """Plain functions with pyro.module and a plate named "obs"."""
    prog = make("linear_vae")
    K = 2000
    energy = _energy(prog, num_particles=K, analytic_kl=analytic_kl)
    f = energy(prog.data)
    se = energy.log_weights(prog.data).std(0) / math.sqrt(K)  # fresh draws, for the spread of the terms
    assert f.shape == (prog.num_data,)
    assert within(-f, prog.exact_elbo(), se).all(), (-f - prog.exact_elbo(), se)


@pytest.mark.parametrize("program", ["linear_vae", "mlp_vae", "hierarchical_vae"], indirect=True)
def test_energy_exposes_the_parameters_of_its_programs(program):
    """After the first call, ``energy.parameters()`` holds every Pyro param the programs use, and they train."""
    energy = _energy(program)
    f = energy(program.data)
    params = list(energy.parameters())
    assert params
    used = {id(p) for _, p in pyro.get_param_store().named_parameters()}
    assert used <= {id(p) for p in params}
    f.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params)


@pytest.mark.parametrize("program", names("global"), indirect=True)
def test_energy_refuses_global_latents(program):
    with pytest.raises(ValueError, match="global"):
        _energy(program)(*program.args)


@pytest.mark.parametrize("program", names("discrete"), indirect=True)
def test_energy_refuses_discrete_latents(program):
    with pytest.raises(ValueError, match="reparameteri[sz]"):
        _energy(program)(program.data)
