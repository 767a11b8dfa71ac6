"""Shared test configuration: validation on, fixed seeds, caches in temporary folders, offline data."""

import os
import tempfile
from pathlib import Path

# caches must point somewhere writable and throw-away before matplotlib/torch read them
_CACHE = Path(tempfile.mkdtemp(prefix="pyro_noisevae_test_cache_"))
os.environ.setdefault("MPLCONFIGDIR", str(_CACHE / "mpl"))
os.environ.setdefault("XDG_CACHE_HOME", str(_CACHE / "xdg"))
os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parents[1]
# the README's test command runs from a clone with ../shared beside it
os.environ.setdefault("PYRO_NOISEVAE_DATA", str(REPO.parent / "shared" / "data"))

import pyro  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402


# the suite is made of small models: one intra-op thread avoids oversubscribing a 2-core CI machine
torch.set_num_threads(1)


def pytest_configure(config):
    config.addinivalue_line("markers", "init(rng_seed): seed for pyro.set_rng_seed before the test")
    config.addinivalue_line("markers", "disable_validation: run the test with Pyro validation off")


@pytest.fixture(autouse=True)
def _pyro_state(request):
    """Every test starts with a clean param store, validation on and a fixed seed."""
    marker = request.node.get_closest_marker("init")
    seed = marker.kwargs.get("rng_seed", 0) if marker else 0
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    validate = request.node.get_closest_marker("disable_validation") is None
    pyro.enable_validation(validate)
    torch.set_default_dtype(torch.float32)
    yield
    pyro.clear_param_store()
    pyro.enable_validation(True)


@pytest.fixture(scope="session")
def data_root():
    """The offline data root (``PYRO_NOISEVAE_DATA``, default ``../shared/data``)."""
    root = Path(os.environ["PYRO_NOISEVAE_DATA"])
    if not (root / "MNIST" / "raw").exists():
        raise RuntimeError(
            f"test data not found under {root}; set PYRO_NOISEVAE_DATA to the folder holding MNIST/raw "
            "(in a clone, ../shared/data)"
        )
    return root
