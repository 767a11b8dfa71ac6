"""``walk_jump_experiment`` on a micro budget, reusing (and extending) the models of ``uvb_denoise``."""

import pytest
import torch

from pyro_noisevae.experiments.common import load_torch
from pyro_noisevae.experiments.empirical_bayes import walk_jump_experiment
from pyro_noisevae.experiments.empirical_bayes.walk_jump import class_stats

# the micro models make matplotlib give up on tight layouts of a few figures
pytestmark = pytest.mark.filterwarnings("ignore:.*tight_layout.*")


def test_walk_jump_reuses_and_resumes_models(denoised, tiny, data_root):
    out, res = denoised
    # walk-jump reuses the sigma = 1 models; asking for one more epoch resumes their checkpoints
    wj = walk_jump_experiment(out, 1.0, num_steps=20, jump_every=5, classifier_epochs=1, energy_particles=2,
                              data_root=data_root, **dict(tiny, epochs=2))
    ckpt = load_torch(out / "checkpoints" / "uvb_sigma1.pt")
    assert ckpt["epoch"] == 2 and ckpt["losses"][0] == res["training"]["uvb_sigma1"]["losses"][0]
    assert set(wj["chains"]) == {"uvb", "deen"}
    for stats in wj["chains"].values():
        assert stats["num_jumps"] == 4 and 1 <= stats["classes_visited"] <= 10
        assert 0 <= stats["transitions"] <= 3 and sum(stats["class_counts"]) == 4
    assert 0 <= wj["classifier_test_accuracy"] <= 1
    for name in ("walk_jump.json", "walk_jump.md", "walk_jump_uvb.png", "walk_jump_classes.png"):
        assert (out / name).is_file(), name


def test_class_statistics():
    stats = class_stats(torch.tensor([1, 1, 2, 2, 7, 1]), torch.tensor([0.95, 0.5, 0.99, 0.92, 0.2, 0.91]), 0.9)
    assert stats["classes_visited"] == 3 and stats["transitions"] == 3
    assert stats["confident_jumps"] == 4 and stats["classes_visited_confident"] == 2
    assert stats["transitions_confident"] == 2  # confident sequence 1, 2, 2, 1
    assert stats["class_counts"][1] == 3 and stats["first_visit_jump"] == {"1": 0, "2": 2, "7": 4}
