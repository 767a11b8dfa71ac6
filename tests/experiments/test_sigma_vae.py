"""σ-VAE experiments: noise injection, run naming, resumable training, measurements, both runners and their CLI."""

import json
import math

import pytest
import torch

from pyro_noisevae.analysis import gaussian_kl_standard_normal
from pyro_noisevae.cli import main as cli_main
from pyro_noisevae.experiments.sigma_vae import (
    Budget,
    measure_model,
    noisy_inference,
    noisy_test_set,
    run_name,
    sweep_sigma,
    train_or_load,
)
from pyro_noisevae.models import VAE

TINY = dict(train_size=200, epochs=1, batch_size=50, z_dim=3, hidden_dims=(16,), eval_size=100, seed=1)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Run folders shared by the tests of this module (the experiments reuse each other's models)."""
    return tmp_path_factory.mktemp("runs")


def _budget(data_root, **kw):
    return Budget(data_root=str(data_root), **{**TINY, **kw})


# ----------------------------------------------------------------------------------------------------------
# noise injection
# ----------------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------------
# run folders
# ----------------------------------------------------------------------------------------------------------


def test_run_name_tracks_what_changes_the_weights(tmp_path):
    b = Budget(**TINY)
    a = b.config(tmp_path, likelihood="normal", sigma=0.5)
    assert run_name(a) == run_name(Budget(**{**TINY, "device": "cuda", "data_root": "/elsewhere"}).config(
        tmp_path / "other", likelihood="normal", sigma=0.5))
    names = {
        run_name(a),
        run_name(b.config(tmp_path, likelihood="normal", sigma=0.25)),
        run_name(b.config(tmp_path, likelihood="normal", sigma=0.5, beta=2.0)),
        run_name(b.config(tmp_path, likelihood="laplace", sigma=0.5)),
        run_name(Budget(**{**TINY, "epochs": 2}).config(tmp_path, likelihood="normal", sigma=0.5)),
        run_name(b.config(tmp_path, likelihood="bernoulli", binarize="dynamic")),
    }
    assert len(names) == 6
    assert run_name(a).startswith("normal-s0.5-") and a.out.startswith(str(tmp_path))


def test_train_or_load_skips_finished_and_resumes(runs, data_root):
    budget = _budget(data_root)
    cfg = budget.config(runs, likelihood="normal", sigma=0.7)  # a σ no other test uses
    vae, history, status = train_or_load(cfg, progress=False)
    assert status == "trained"
    again, history2, status2 = train_or_load(cfg, progress=False)
    assert status2 == "loaded" and history2 == history
    for (k, p), (_, q) in zip(vae.state_dict().items(), again.state_dict().items()):
        assert torch.equal(p, q), k
    longer = _budget(data_root, epochs=2).config(runs, likelihood="normal", sigma=0.7)
    longer.out = cfg.out  # same folder, one more epoch: the run is continued, not restarted
    _, history3, status3 = train_or_load(longer, progress=False)
    assert status3 == "resumed"
    assert history3[: len(history)] == history and sum(r["kind"] == "eval" for r in history3) == 2
    other = budget.config(runs, likelihood="normal", sigma=0.6)
    other.out = cfg.out  # a folder holding a model trained with another σ is never reused silently
    with pytest.raises(ValueError, match="sigma: 0.7 there, 0.6 here"):
        train_or_load(other, progress=False)


# ----------------------------------------------------------------------------------------------------------
# measurements
# ----------------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------------
# the runners
# ----------------------------------------------------------------------------------------------------------


def test_sweep_sigma_end_to_end(runs, tmp_path, data_root):
    out = tmp_path / "power_law"
    sigmas = (0.1, 0.3, 0.5)
    res = sweep_sigma(sigmas=sigmas, families=("normal", "beta"), beta_sigma1=0.5, budget=_budget(data_root),
                      out=out, runs_dir=runs, num_bootstrap=200, progress=False, command="test")
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


def test_noisy_inference_end_to_end(runs, tmp_path, data_root):
    out = tmp_path / "noisy"
    levels = (0.0, 0.5, 1.5)
    res = noisy_inference(sigmas=(0.5,), vanilla_sigma=0.1, noise_levels=levels, budget=_budget(data_root), out=out,
                          runs_dir=runs, probe_train_size=300, knn_k=3, figure_levels=(1.5,), num_figure_images=4,
                          progress=False)
    assert {p.name for p in out.iterdir()} == {"results.json", "table.md", "metrics_vs_noise.png", "grid_s1.5.png"}
    assert [m["name"] for m in res["models"]] == ["σ-VAE σ=0.5", "vanilla Bernoulli", "vanilla Normal σ=0.1"]
    base = res["baselines"]
    assert base["noisy_input"][0]["mse"] == 0.0 and base["noisy_input"][0]["psnr"] is None
    # the unclipped noisy input has MSE s² in expectation; 100 images × 784 pixels: 5 SE of a χ² mean
    for row in base["noisy_input"][1:]:
        assert row["mse"] == pytest.approx(row["s"] ** 2, rel=5 * math.sqrt(2 / (100 * 784)))
        # per-image PSNRs scatter by ≈ 4.34·sqrt(2/784) ≈ 0.22 dB, so their mean over 100 images by ≈ 0.022 dB
        assert row["psnr"] == pytest.approx(-10 * math.log10(row["s"] ** 2), abs=0.1)
    assert all(c["mse"] <= u["mse"] for c, u in zip(base["noisy_input_clipped"], base["noisy_input"]))
    assert 0 < base["mean_image"]["mse"] < 1 and math.isfinite(base["mean_image"]["psnr"])
    for m in res["models"]:
        assert [r["s"] for r in m["per_noise"]] == list(levels)
        for r in m["per_noise"]:
            assert 0 <= r["probe_acc"] <= 1 and 0 <= r["knn_acc"] <= 1 and r["mse"] > 0
            assert math.isfinite(r["psnr"])
    table = (out / "table.md").read_text()
    assert "vanilla Bernoulli" in table and "| 1.5 |" in table


def test_cli_subcommands(runs, tmp_path, data_root):
    common = ["--epochs", "1", "--train-size", "200", "--batch-size", "50", "--z-dim", "3", "--hidden-dims", "16",
              "--eval-size", "100", "--seed", "1", "--data-root", str(data_root), "--runs", str(runs), "--no-progress"]
    out = tmp_path / "cli_power"
    rc = cli_main(["sweep-sigma", "--sigmas", "0.1", "0.3", "0.5", "--families", "normal", "--num-bootstrap", "200",
                   "--out", str(out), *common])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert res["command"].startswith("pyro-noisevae sweep-sigma --sigmas 0.1 0.3 0.5 ")
    assert cli_main(["sweep-sigma", "--sigmas", "0.1", "-0.3", "0.5", "--out", str(out), *common]) == 2
    assert cli_main(["noisy-inference", "--noise-levels", "0", "1", "--figure-levels", "0.5", "--out", str(out),
                     *common]) == 2


def test_runner_argument_errors(tmp_path):
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
    with pytest.raises(ValueError, match="noise_levels"):
        noisy_inference(noise_levels=(0.0, -1.0), out=tmp_path)
    with pytest.raises(ValueError, match="epochs"):
        Budget(epochs=0)
