"""``sweep_sigma``: the KL power law end to end at a tiny budget, and its argument checks."""

import json

import pytest

from pyro_noisevae.experiments.sigma_vae import sweep_sigma


def test_sweep_sigma_end_to_end(sigma_runs, tmp_path, tiny_budget):
    out = tmp_path / "power_law"
    sigmas = (0.1, 0.3, 0.5)
    res = sweep_sigma(sigmas=sigmas, families=("normal", "beta"), beta_sigma1=0.5, budget=tiny_budget(), out=out,
                      runs_dir=sigma_runs, num_bootstrap=200, progress=False, command="test")
    assert {p.name for p in out.iterdir()} == {"results.json", "table.md", "power_law.png"}
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(res))
    normal = res["families"]["normal"]
    assert [p["scale"] for p in normal["points"]] == list(sigmas)
    assert all(p["kl"] > 0 for p in normal["points"])
    assert normal["fit"]["ci"][0] <= normal["fit"]["nu"] <= normal["fit"]["ci"][1]
    # the β model with β = 1 (σ = σ₁) is the σ model itself: same run folder, identical numbers
    beta = {p["scale"]: p for p in res["families"]["beta"]["points"]}
    assert beta[0.5]["run"] == normal["points"][2]["run"] and beta[0.5]["beta"] == 1.0
    for row in res["beta_vs_sigma"]:
        assert row["beta"] == pytest.approx(row["sigma"] ** 2 / 0.25)
        # L(σ) = L(σ₁, β)/β + c: Adam sees gradients scaled by 1/β, which it normalizes away up to its ε and
        # float32 rounding, so after 4 steps of size ≈ lr = 1e-3 the weights agree far below one step
        assert row["param_rel_distance"] < 1e-3
        assert abs(row["kl_rel_diff"]) < 1e-2
    assert "σ-sweep vs β-sweep" in (out / "table.md").read_text()


def test_sweep_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="families"):
        sweep_sigma(families=("normal", "gamma"), out=tmp_path)
    with pytest.raises(ValueError, match="include 'normal'"):
        sweep_sigma(families=("beta",), out=tmp_path)
    with pytest.raises(ValueError, match="at least 3"):
        sweep_sigma(sigmas=(0.1, 0.2), out=tmp_path)
    with pytest.raises(ValueError, match="repeat"):
        sweep_sigma(sigmas=(0.1, 0.2, 0.1), out=tmp_path)
    with pytest.raises(ValueError, match="beta_sigma1"):
        sweep_sigma(beta_sigma1=0.0, out=tmp_path)
