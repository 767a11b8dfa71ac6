"""``uvb_denoise`` on a micro budget: its outputs, the denoising table, and refusal of mixed-up checkpoints."""

import json
import math

import pytest

from pyro_noisevae.experiments.empirical_bayes import uvb_denoise

# the micro models make matplotlib give up on tight layouts of a few figures
pytestmark = pytest.mark.filterwarnings("ignore:.*tight_layout.*")


def test_uvb_denoise_outputs(denoised):
    out, res = denoised
    for name in ("uvb_denoise.json", "uvb_denoise.md", "denoise_sigma1.png", "uvb_vs_vae_sigma1.png",
                 "samples_sigma1.png", "training_curves.png", "checkpoints/uvb_sigma1_h8.pt",
                 "stages/denoise_sigma1.json"):
        assert (out / name).is_file(), name
    table = res["denoising"]["1"]
    assert set(table) == {"identity", "mean", "wiener", "vae_recon", "vae_energy", "deen", "uvb"}
    # identity error is the noise variance: MSE of y vs x is sigma^2 = 1 within a few standard errors
    assert abs(table["identity"]["mse"] - 1.0) < 5 * table["identity"]["mse_se"]
    for row in table.values():
        assert row["psnr"] == pytest.approx(-10 * math.log10(row["mse"]), rel=1e-5)
    assert json.loads((out / "uvb_denoise.json").read_text())["denoising"]["1"]["uvb"]["mse"] == table["uvb"]["mse"]
    assert set(res["uvb_vs_vae"]["1"]) == {"vae", "uvb"}
    assert "| UVB (ELBO energy, denoising-trained) |" in (out / "uvb_denoise.md").read_text()


def test_different_settings_in_the_same_folder_are_refused(denoised, tiny, data_root):
    # another architecture or seed gets its own checkpoint name (models.checkpoint_name); another optimiser
    # setting under the same name is refused
    out, _ = denoised
    with pytest.raises(ValueError, match="different settings"):
        uvb_denoise(out, sigmas=(1.0,), test_size=20, data_root=data_root, **dict(tiny, lr=2e-3))
