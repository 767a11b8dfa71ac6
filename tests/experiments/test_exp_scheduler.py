"""The tables' training budget, their run names and the scheduler."""

from pathlib import Path

import pytest

from pyro_noisevae.experiments.common import run_digest
from pyro_noisevae.experiments.dvae_table import dvae_config
from pyro_noisevae.experiments.scheduler import TrainBudget, table_run_name, train_all
from pyro_noisevae.training import TrainConfig


def test_train_budget_maps_onto_train_config():
    tb = TrainBudget(epochs=3, train_size=500, batch_size=20, lr=2e-3, z_dim=4, hidden=7, seed=5, data_root="/d")
    cfg = tb.train_config(dataset="binarized-mnist", hidden_dims=(tb.hidden,), likelihood="bernoulli")
    assert (cfg.epochs, cfg.train_size, cfg.batch_size, cfg.lr, cfg.z_dim, cfg.seed, cfg.data_root) == (
        3, 500, 20, 2e-3, 4, 5, "/d")
    assert cfg.hidden_dims == (7,) and cfg.dataset == "binarized-mnist"
    for kw, name in ((dict(epochs=0), "epochs"), (dict(hidden=0), "hidden"), (dict(train_size=1), "train_size"),
                     (dict(lr=float("nan")), "lr")):
        with pytest.raises(ValueError, match=name):
            TrainBudget(**kw)


def test_table_run_names():
    cfg = TrainConfig()
    # the fields the tables hashed when first run enter the hash even at their defaults
    assert table_run_name(cfg, "t") != f"t-{run_digest(cfg)}"
    moved = TrainConfig(out="elsewhere", device="cuda", data_root="/x", eval_size=3, eval_split="valid", log_every=7)
    assert table_run_name(moved, "t") == table_run_name(cfg, "t")
    assert table_run_name(TrainConfig(sigma=0.3), "t") != table_run_name(cfg, "t")


def test_train_all_reports_zero_seconds_for_finished_models(dvae_table):
    root, _ = dvae_table
    tb = TrainBudget(epochs=1, train_size=100, batch_size=50, hidden=8, z_dim=2)
    cfg = dvae_config(tb, root / "runs", "dvae-k1", 1, 10)
    assert Path(cfg.out).is_dir()
    assert train_all([cfg], progress=False) == {cfg.out: 0.0}
