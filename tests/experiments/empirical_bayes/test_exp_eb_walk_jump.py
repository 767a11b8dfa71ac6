"""``walk_jump_experiment`` on a micro budget, reusing (and extending) the models of ``uvb_denoise``."""

import pytest
import torch

from pyro_noisevae.experiments.common import load_torch
from pyro_noisevae.experiments.empirical_bayes import walk_jump_chains, walk_jump_experiment
from pyro_noisevae.experiments.empirical_bayes.walk_jump import chain_summary, class_stats

# the micro models make matplotlib give up on tight layouts of a few figures
pytestmark = pytest.mark.filterwarnings("ignore:.*tight_layout.*")


def test_walk_jump_reuses_and_resumes_models(denoised, tiny, data_root):
    out, res = denoised
    # walk-jump reuses the sigma = 1 models; asking for one more epoch resumes their checkpoints
    wj = walk_jump_experiment(out, 1.0, num_steps=20, jump_every=5, classifier_epochs=1, energy_particles=2,
                              data_root=data_root, **dict(tiny, epochs=2))
    ckpt = load_torch(out / "checkpoints" / "uvb_sigma1_h8.pt")
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
    assert stats["confident_fraction"] == pytest.approx(4 / 6)
    assert stats["transitions_confident"] == 2  # confident sequence 1, 2, 2, 1
    assert stats["class_counts"][1] == 3 and stats["first_visit_jump"] == {"1": 0, "2": 2, "7": 4}


def test_chain_summary_on_constructed_chains():
    # 3 chains (columns) of 5 jumps; confident where the probability is >= 0.9
    labels = torch.tensor([[0, 3, 5],
                           [1, 3, 5],
                           [0, 3, 6],
                           [2, 3, 6],
                           [2, 3, 5]])
    conf = torch.tensor([[0.95, 0.99, 0.5],
                         [0.95, 0.99, 0.5],
                         [0.50, 0.99, 0.5],
                         [0.95, 0.99, 0.93],
                         [0.95, 0.80, 0.5]])
    per_chain, summary = chain_summary(labels, conf, 0.9)
    assert [s["classes_visited"] for s in per_chain] == [3, 1, 2]
    assert [s["transitions"] for s in per_chain] == [3, 0, 2]  # 0-1-0-2-2, 3-3-3-3-3, 5-5-6-6-5
    assert [s["confident_jumps"] for s in per_chain] == [4, 4, 1]
    assert [s["confident_fraction"] for s in per_chain] == [0.8, 0.8, 0.2]
    assert [s["classes_visited_confident"] for s in per_chain] == [3, 1, 1]
    assert [s["transitions_confident"] for s in per_chain] == [2, 0, 0]  # confident 0-1-2-2: two changes
    assert summary["classes_visited"] == {"mean": 2.0, "min": 1, "max": 3}
    assert summary["transitions"] == {"mean": pytest.approx(5 / 3), "min": 0, "max": 3}
    assert summary["confident_fraction"]["mean"] == pytest.approx(0.6)
    assert summary["classes_over_all_chains"] == 6 and summary["chains_visiting_all_classes"] == 0
    assert summary["class_counts_all_chains"] == [2, 1, 2, 5, 0, 3, 2, 0, 0, 0]
    assert summary["jumps_to_all_classes"] is None
    assert summary["num_chains"] == 3 and summary["jumps_per_chain"] == 5 and summary["confident_threshold"] == 0.9
    # a chain through all ten classes counts as visiting all of them
    _, summary = chain_summary(torch.arange(10)[:, None], torch.ones(10, 1), 0.9)
    assert summary["chains_visiting_all_classes"] == 1 and summary["transitions"]["mean"] == 9
    assert summary["jumps_to_all_classes"] == {"median": 9, "max": 9}


def test_walk_jump_chains_micro(denoised, tiny, data_root):
    out, _ = denoised
    res = walk_jump_chains(out, 1.0, num_chains=3, eps_scales=(0.5, 1.0), num_steps=10, jump_every=5,
                           classifier_epochs=1, energy_particles=2, data_root=data_root, **tiny)
    assert set(res["runs"]) == {"uvb_eps0p5", "uvb_eps1", "deen_eps0p5", "deen_eps1"}
    for run in res["runs"].values():
        assert len(run["chains"]) == 3 and run["summary"]["jumps_per_chain"] == 2
        assert len(run["labels"]) == 3 and all(len(chain) == 3 for chain in run["labels"])  # step 0 kept here
        assert all(sum(s["class_counts"]) == 2 for s in run["chains"])
    # the chains start from different points and are not copies of each other
    jumps = load_torch(out / "checkpoints" / "walk_jump_chains_uvb_eps0p5_sigma1.pt")["jumps"]
    assert jumps.shape == (3, 3, 784) and not torch.equal(jumps[:, 0], jumps[:, 1])
    for name in ("walk_jump_chains.json", "walk_jump_chains.md", "walk_jump_chains_uvb_eps1.png",
                 "walk_jump_chains_deen_eps0p5.png"):
        assert (out / name).is_file(), name
    assert "| UVB | 0.5 | 2 |" in (out / "walk_jump_chains.md").read_text()
