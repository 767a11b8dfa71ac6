"""σ-VAE experiments: noise injection, run naming, the budget and the measurements."""

import json
import math
from pathlib import Path

import pytest
import torch

from pyro_noisevae.analysis import gaussian_kl_standard_normal
from pyro_noisevae.experiments.sigma_vae import Budget, measure_model, noisy_test_set, run_name
from pyro_noisevae.models import VAE

REPO = Path(__file__).resolve().parents[3]


def test_noisy_test_set_statistics_and_determinism():
    x = torch.rand(200, 784)
    s = 0.75
    y = noisy_test_set(x, s, seed=3)
    eps = (y - x).double()
    n = eps.numel()
    assert y.shape == x.shape and y.dtype == x.dtype
    assert abs(eps.mean().item()) < 5 * s / math.sqrt(n)
    assert abs(eps.std().item() - s) < 5 * s / math.sqrt(2 * n)  # sd of the sample sd ≈ s / sqrt(2n)
    assert y.min() < 0 and y.max() > 1  # y = x + N(0, s²) is not clipped
    assert torch.equal(noisy_test_set(x, s, seed=3), y)  # every model sees the same noisy images
    assert not torch.equal(noisy_test_set(x, s, seed=4), y)
    y0 = noisy_test_set(x, 0.0)
    assert torch.equal(y0, x) and y0 is not x
    with pytest.raises(ValueError, match="std"):
        noisy_test_set(x, -0.1)
    with pytest.raises(ValueError, match="std"):
        noisy_test_set(x, float("nan"))


def test_run_name_tracks_what_changes_the_weights(tmp_path, tiny_budget):
    b = tiny_budget()
    a = b.config(tmp_path, likelihood="normal", sigma=0.5)
    assert run_name(a) == run_name(tiny_budget(device="cuda", data_root="/elsewhere").config(
        tmp_path / "other", likelihood="normal", sigma=0.5))
    names = {
        run_name(a),
        run_name(b.config(tmp_path, likelihood="normal", sigma=0.25)),
        run_name(b.config(tmp_path, likelihood="normal", sigma=0.5, beta=2.0)),
        run_name(b.config(tmp_path, likelihood="laplace", sigma=0.5)),
        run_name(tiny_budget(epochs=2).config(tmp_path, likelihood="normal", sigma=0.5)),
        run_name(b.config(tmp_path, likelihood="bernoulli", binarize="dynamic")),
    }
    assert len(names) == 6
    assert run_name(a).startswith("normal-s0.5-") and a.out.startswith(str(tmp_path))


def test_committed_run_names_unchanged():
    """The committed results' budgets still map to the very run folders they were computed from."""
    for name in ("power_law", "noisy_inference"):
        record = json.loads((REPO / "results" / "sigma_vae" / name / "results.json").read_text())
        budget = Budget(**record["budget"])
        assert budget.to_dict() == record["budget"] and list(budget.to_dict()) == list(record["budget"])
        if name == "power_law":
            runs = [(p["run"], dict(likelihood="laplace" if fam == "laplace" else "normal", sigma=p["sigma"],
                                    beta=p["beta"])) for fam, d in record["families"].items() for p in d["points"]]
        else:
            runs = [(m["run"], dict(likelihood="bernoulli", binarize="dynamic") if m["likelihood"] == "bernoulli"
                     else dict(likelihood=m["likelihood"], sigma=m["sigma"])) for m in record["models"]]
        for run, kw in runs:
            assert budget.config("runs/sigma_vae", **kw).out == run


def test_budget_errors():
    for kw, name in ((dict(epochs=0), "epochs"), (dict(eval_size=1), "eval_size"), (dict(train_size=1), "train_size")):
        with pytest.raises(ValueError, match=name):
            Budget(**kw)


def test_measure_model_matches_its_definitions():
    torch.manual_seed(0)
    vae = VAE(x_dim=12, z_dim=3, hidden_dims=(8,), likelihood="normal", sigma=0.3)
    x = torch.rand(50, 12)
    m = measure_model(vae, x, batch_size=16)
    with torch.no_grad():
        loc, scale = vae.encode(x)
        kl = gaussian_kl_standard_normal(loc, scale).double()
        err = (vae.decode(loc) - x).pow(2).mean(-1).double()
    assert m["kl"] == pytest.approx(kl.mean().item(), rel=1e-6)
    assert m["kl_se"] == pytest.approx(kl.std().item() / math.sqrt(50), rel=1e-5)
    assert sum(m["kl_per_dim"]) == pytest.approx(m["kl"], rel=1e-6)
    assert m["mse"] == pytest.approx(err.mean().item(), rel=1e-6)
    assert m["active_units"] == int((loc.var(0, correction=0) > 0.01).sum())
    # Normal log-density: −‖x−μ‖²/(2σ²) − (d/2) log 2πσ², with ‖x−μ‖² ≥ 0, bounds the reconstruction term
    assert m["recon_ll"] <= -6 * math.log(2 * math.pi * 0.09) + 1e-6

    bern = VAE(x_dim=12, z_dim=3, hidden_dims=(8,), likelihood="bernoulli")
    assert measure_model(bern, x)["recon_ll"] is None  # grey-scale data cannot be scored by a Bernoulli
