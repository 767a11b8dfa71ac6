"""The UVB/walk-jump experiments run end to end on a micro budget, write their outputs and resume."""

import argparse
import json

import pytest

from pyro_noisevae.experiments import empirical_bayes as exp

TINY = dict(epochs=1, batch_size=50, z_dim=2, hidden_dims=(8,), deen_hidden_dims=(8,), train_size=100, progress=False)


@pytest.mark.filterwarnings("ignore:.*tight_layout.*")
def test_experiments_run_write_outputs_and_resume(tmp_path, data_root):
    res = exp.uvb_denoise(tmp_path, sigmas=(1.0,), test_size=20, eval_particles=2, data_root=data_root, **TINY)
    for name in ("uvb_denoise.json", "uvb_denoise.md", "denoise_sigma1.png", "uvb_vs_vae_sigma1.png",
                 "samples_sigma1.png", "training_curves.png", "checkpoints/uvb_sigma1.pt"):
        assert (tmp_path / name).is_file(), name
    table = res["denoising"]["1"]
    assert set(table) == {"identity", "mean", "wiener", "vae_recon", "vae_energy", "deen", "uvb"}
    # identity error is the noise variance: MSE of y vs x is sigma^2 = 1 within a few standard errors
    assert abs(table["identity"]["mse"] - 1.0) < 5 * table["identity"]["mse_se"]
    assert json.loads((tmp_path / "uvb_denoise.json").read_text())["denoising"]["1"]["uvb"]["mse"] == table["uvb"]["mse"]

    # a different architecture in the same folder is refused rather than mixed up
    with pytest.raises(ValueError, match="different settings"):
        exp.uvb_denoise(tmp_path, sigmas=(1.0,), test_size=20, data_root=data_root, **dict(TINY, hidden_dims=(9,)))

    # walk-jump reuses the sigma = 1 models; asking for one more epoch resumes their checkpoints
    wj = exp.walk_jump_experiment(tmp_path, 1.0, num_steps=20, jump_every=5, classifier_epochs=1,
                                  energy_particles=2, data_root=data_root, **dict(TINY, epochs=2))
    ckpt = exp._load_torch(tmp_path / "checkpoints" / "uvb_sigma1.pt")
    assert ckpt["epoch"] == 2 and ckpt["losses"][0] == res["training"]["uvb_sigma1"]["losses"][0]
    assert set(wj["chains"]) == {"uvb", "deen"}
    for stats in wj["chains"].values():
        assert stats["num_jumps"] == 4 and 1 <= stats["classes_visited"] <= 10
        assert 0 <= stats["transitions"] <= 3 and sum(stats["class_counts"]) == 4
    assert 0 <= wj["classifier_test_accuracy"] <= 1
    for name in ("walk_jump.json", "walk_jump.md", "walk_jump_uvb.png", "walk_jump_classes.png"):
        assert (tmp_path / name).is_file(), name


def test_register_adds_subcommands():
    parser = argparse.ArgumentParser()
    exp.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["uvb-denoise", "--sigmas", "0.5", "--epochs", "2", "--out", "x"])
    assert args.func is exp._uvb_denoise_main and args.sigmas == [0.5] and args.epochs == 2
    args = parser.parse_args(["walk-jump", "--num-steps", "100", "--eps-scale", "1.0"])
    assert args.func is exp._walk_jump_main and args.num_steps == 100 and args.eps_scale == 1.0


def test_class_statistics():
    import torch

    stats = exp._class_stats(torch.tensor([1, 1, 2, 2, 7, 1]), torch.tensor([0.95, 0.5, 0.99, 0.92, 0.2, 0.91]), 0.9)
    assert stats["classes_visited"] == 3 and stats["transitions"] == 3
    assert stats["confident_jumps"] == 4 and stats["classes_visited_confident"] == 2
    assert stats["transitions_confident"] == 2  # confident sequence 1, 2, 2, 1
    assert stats["class_counts"][1] == 3 and stats["first_visit_jump"] == {"1": 0, "2": 2, "7": 4}
