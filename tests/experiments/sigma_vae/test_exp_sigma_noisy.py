"""``noisy_inference``: inference on extreme noise end to end at a tiny budget, and its argument checks."""

import math

import pytest

from pyro_noisevae.experiments.sigma_vae import noisy_inference


def test_noisy_inference_end_to_end(sigma_runs, tmp_path, tiny_budget):
    out = tmp_path / "noisy"
    levels = (0.0, 0.5, 1.5)
    res = noisy_inference(sigmas=(0.5,), vanilla_sigma=0.1, noise_levels=levels, budget=tiny_budget(), out=out,
                          runs_dir=sigma_runs, probe_train_size=300, knn_k=3, figure_levels=(1.5,), num_figure_images=4,
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


def test_noisy_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="noise_levels"):
        noisy_inference(noise_levels=(0.0, -1.0), out=tmp_path)
    with pytest.raises(ValueError, match="figure_levels"):
        noisy_inference(noise_levels=(0.0, 1.0), figure_levels=(0.5,), out=tmp_path)
