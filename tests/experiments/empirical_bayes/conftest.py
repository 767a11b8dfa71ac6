"""One ``uvb_denoise`` run at a micro budget, shared by the empirical-Bayes experiment tests (walk-jump reuses it)."""

import pytest

from pyro_noisevae.experiments.empirical_bayes import uvb_denoise

TINY = dict(epochs=1, batch_size=50, z_dim=2, hidden_dims=(8,), deen_hidden_dims=(8,), train_size=100, progress=False)


@pytest.fixture(scope="session")
def denoised(tmp_path_factory, data_root):
    """``(out, results)`` of ``uvb_denoise`` at σ = 1 on 20 test images."""
    out = tmp_path_factory.mktemp("uvb")
    return out, uvb_denoise(out, sigmas=(1.0,), test_size=20, eval_particles=2, data_root=data_root, **TINY)


@pytest.fixture
def tiny():
    return dict(TINY)
