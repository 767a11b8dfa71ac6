"""Run folders shared by the σ-VAE experiment tests (the experiments reuse each other's models), and a tiny budget."""

import pytest

from pyro_noisevae.experiments.sigma_vae import Budget

TINY = dict(train_size=200, epochs=1, batch_size=50, z_dim=3, hidden_dims=(16,), eval_size=100, seed=1)


@pytest.fixture(scope="session")
def sigma_runs(tmp_path_factory):
    return tmp_path_factory.mktemp("sigma_runs")


@pytest.fixture
def tiny_budget(data_root):
    """``tiny_budget(**changes)``: the tiny :class:`Budget` of these tests on the test data."""
    return lambda **kw: Budget(**{"data_root": str(data_root), **TINY, **kw})
