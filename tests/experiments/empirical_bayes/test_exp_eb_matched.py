"""``uvb-denoise --capacity matched``: the VAE widened to DEEN's parameter count, several seeds, one table."""

import json

import pytest

from pyro_noisevae.experiments.empirical_bayes import models, uvb_vs_deen_matched

# the micro models make matplotlib give up on tight layouts of a few figures
pytestmark = pytest.mark.filterwarnings("ignore:.*tight_layout.*")

#: a micro budget whose DEEN (17 units: 13,363 parameters) a VAE of 8 hidden units (13,396) matches
MICRO = dict(epochs=1, batch_size=50, z_dim=2, hidden_dims=(8,), deen_hidden_dims=(17,), train_size=100, progress=False)


def test_matched_hidden_dims_of_the_defaults_are_within_tolerance():
    cfg = dict(models.DEFAULTS)
    hidden = models.matched_hidden_dims(cfg)
    assert hidden == (616, 616)  # 2 H^2 + 1668 H + 848 parameters: 1,787,248 at H = 616
    n_uvb = models.parameter_count("uvb", dict(cfg, hidden_dims=hidden))
    n_deen = models.parameter_count("deen", cfg)
    assert n_deen == 1_787_001 and abs(n_uvb - n_deen) <= models.MATCH_TOLERANCE * n_deen
    # the closest width: one unit narrower or wider is further from DEEN's count
    for h in (615, 617):
        assert abs(models.parameter_count("uvb", dict(cfg, hidden_dims=(h, h))) - n_deen) > abs(n_uvb - n_deen)


@pytest.mark.parametrize("deen_hidden, depth", [((1000, 1000), 1), ((784,), 2), ((17,), 1)])
def test_matched_hidden_dims_keep_the_depth_and_match_the_count(deen_hidden, depth):
    cfg = dict(models.DEFAULTS, z_dim=2 if deen_hidden == (17,) else 32, deen_hidden_dims=deen_hidden,
               hidden_dims=(8,) * depth)
    hidden = models.matched_hidden_dims(cfg)
    assert len(hidden) == depth and len(set(hidden)) == 1
    n_uvb, n_deen = models.parameter_count("uvb", dict(cfg, hidden_dims=hidden)), models.parameter_count("deen", cfg)
    assert abs(n_uvb - n_deen) <= models.MATCH_TOLERANCE * n_deen


def test_matched_hidden_dims_refuse_a_count_out_of_reach():
    # DEEN (8,): 6,289 parameters; the VAE with z_dim 2 has 1,576 H + 788: 5,516 or 7,092, both > 5% off
    with pytest.raises(ValueError, match="within 5%"):
        models.matched_hidden_dims(dict(models.DEFAULTS, z_dim=2, hidden_dims=(8,), deen_hidden_dims=(8,)))


def test_checkpoint_names_keep_the_default_and_tell_seeds_and_capacities_apart():
    cfg = dict(models.DEFAULTS)
    assert models.checkpoint_name("uvb", 1.0, cfg) == "uvb_sigma1.pt"
    assert models.checkpoint_name("deen", 0.5, dict(cfg, seed=2)) == "deen_sigma0p5_seed2.pt"
    assert models.checkpoint_name("uvb", 1.0, dict(cfg, hidden_dims=(616, 616))) == "uvb_sigma1_h616x616.pt"
    # DEEN's name depends on DEEN's layers only: the default-capacity and matched runs share it
    assert models.checkpoint_name("deen", 1.0, dict(cfg, hidden_dims=(616, 616))) == "deen_sigma1.pt"


def test_uvb_vs_deen_matched_micro(tmp_path, data_root):
    res = uvb_vs_deen_matched(tmp_path, sigmas=(1.0,), seeds=(0, 3), test_size=20, eval_particles=2,
                              data_root=data_root, **MICRO)
    for name in ("uvb_vs_deen_matched.json", "uvb_vs_deen_matched.md", "uvb_vs_deen_matched.png",
                 "checkpoints/uvb_sigma1_h8.pt", "checkpoints/deen_sigma1_seed3_h17.pt",
                 "stages/matched_sigma1_seed3.json"):
        assert (tmp_path / name).is_file(), name
    assert res["config"]["hidden_dims"] == [8] and res["parameters"]["uvb"] == 13_396
    assert abs(res["parameters"]["relative_difference"]) <= models.MATCH_TOLERANCE
    table = res["denoising"]["1"]
    assert set(table) == {"0", "3"} and set(table["0"]) == {"identity", "mean", "wiener", "deen", "uvb"}
    # one test noise draw for every seed: the noisy input's error is the same
    assert table["0"]["identity"]["mse"] == table["3"]["identity"]["mse"]
    # the seeds train different models, and the summary is over both
    assert table["0"]["uvb"]["mse"] != table["3"]["uvb"]["mse"]
    spread = res["summary"]["1"]["uvb"]["mse"]
    assert spread["n"] == 2 and spread["min"] <= spread["mean"] <= spread["max"]
    assert spread["mean"] == pytest.approx((table["0"]["uvb"]["mse"] + table["3"]["uvb"]["mse"]) / 2)
    paired = res["paired"]["1"]["0"]["uvb_minus_deen"]
    assert paired["mean"] == pytest.approx(table["0"]["uvb"]["mse"] - table["0"]["deen"]["mse"], abs=1e-6)
    assert json.loads((tmp_path / "uvb_vs_deen_matched.json").read_text())["summary"] == res["summary"]
    md = (tmp_path / "uvb_vs_deen_matched.md").read_text()
    assert "| seed 0 | seed 3 |" in md and "13,396 parameters" in md
    # rerunning reuses the checkpoints and the stage results
    again = uvb_vs_deen_matched(tmp_path, sigmas=(1.0,), seeds=(0, 3), test_size=20, eval_particles=2,
                                data_root=data_root, **MICRO)
    assert again["denoising"] == res["denoising"]


def test_uvb_vs_deen_matched_refuses_repeated_seeds(tmp_path):
    with pytest.raises(ValueError, match="distinct"):
        uvb_vs_deen_matched(tmp_path, seeds=(1, 1), **MICRO)
