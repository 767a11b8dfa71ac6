"""The experiments' shared plumbing: run identity, locking, training or loading, writers, subsets, CLI wrapping."""

import json
import subprocess
import sys

import pytest
import torch

from pyro_noisevae.experiments.common import (
    NOT_IN_HASH,
    ModelBudget,
    cli_errors,
    command_main,
    figure,
    load_split,
    load_torch,
    locked,
    run_digest,
    save_figure,
    save_torch,
    subset,
    train_or_load,
    write_json,
)
from pyro_noisevae.training import TrainConfig


def test_run_digest_covers_exactly_the_weight_settings():
    base = TrainConfig()
    assert len(run_digest(base)) == 8
    moved = TrainConfig(out="elsewhere", device="cuda", data_root="/x", log_every=7, eval_size=3, eval_split="valid",
                        noisy_eval_std=0.1, patience=4, lr_drops=2)
    assert {"out", "device", "data_root", "log_every", "eval_size", "eval_split", "noisy_eval_std",
            "patience", "lr_drops"} == NOT_IN_HASH
    assert run_digest(moved) == run_digest(base)
    for changed in (dict(sigma=0.3), dict(epochs=2), dict(seed=1), dict(hidden_dims=(10,)), dict(extra={"a": 1})):
        assert run_digest(TrainConfig(**changed)) != run_digest(base), changed
    # a field hashed at its default value too (the tables' legacy names) changes the digest
    assert run_digest(base, always={"sigma"}) != run_digest(base)


def test_model_budget_maps_onto_train_config():
    b = ModelBudget(epochs=2, train_size=300, batch_size=30, lr=3e-3, z_dim=5, seed=4, device="cpu", data_root="/d")
    cfg = b.train_config(dataset="mnist", sigma=0.4)
    assert (cfg.epochs, cfg.train_size, cfg.batch_size, cfg.lr, cfg.z_dim, cfg.seed, cfg.data_root, cfg.sigma) == (
        2, 300, 30, 3e-3, 5, 4, "/d", 0.4)
    for kw, name in ((dict(epochs=0), "epochs"), (dict(batch_size=0), "batch_size"), (dict(z_dim=0), "z_dim"),
                     (dict(train_size=1), "train_size"), (dict(lr=0.0), "lr"), (dict(lr=float("inf")), "lr")):
        with pytest.raises(ValueError, match=name):
            ModelBudget(**kw)


def test_train_or_load_skips_finished_resumes_and_refuses_other_settings(tmp_path, data_root):
    budget = ModelBudget(epochs=1, train_size=200, batch_size=50, z_dim=3, seed=1, data_root=str(data_root))
    settings = dict(dataset="mnist", train_split="train", eval_size=100, hidden_dims=(16,), likelihood="normal")
    cfg = budget.train_config(sigma=0.7, **settings)
    cfg.out = str(tmp_path / "run")
    vae, history, status = train_or_load(cfg, progress=False)
    assert status == "trained"
    again, history2, status2 = train_or_load(cfg, progress=False)
    assert status2 == "loaded" and history2 == history
    for (k, p), (_, q) in zip(vae.state_dict().items(), again.state_dict().items()):
        assert torch.equal(p, q), k
    assert train_or_load(cfg, progress=False, load=False) == (None, None, "loaded")
    longer = ModelBudget(**{**vars(budget), "epochs": 2}).train_config(sigma=0.7, **settings)
    longer.out = cfg.out  # same folder, one more epoch: the run is continued, not restarted
    _, history3, status3 = train_or_load(longer, progress=False)
    assert status3 == "resumed"
    assert history3[: len(history)] == history and sum(r["kind"] == "eval" for r in history3) == 2
    other = budget.train_config(sigma=0.6, **settings)
    other.out = cfg.out  # a folder holding a model trained with another σ is never reused silently
    with pytest.raises(ValueError, match="sigma: 0.7 there, 0.6 here"):
        train_or_load(other, progress=False)


def test_locked_excludes_other_processes(tmp_path):
    probe = ("import fcntl, sys\nf = open(sys.argv[1], 'w')\ntry:\n    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
             "except BlockingIOError:\n    sys.exit(3)\n")
    lock_file = tmp_path / "run" / ".lock"
    with locked(tmp_path / "run"):
        assert subprocess.run([sys.executable, "-c", probe, str(lock_file)]).returncode == 3
    assert subprocess.run([sys.executable, "-c", probe, str(lock_file)]).returncode == 0


def test_writers(tmp_path):
    path = tmp_path / "sub" / "r.json"
    write_json(path, {"b": 1, "a": float("nan")})
    assert path.read_text() == '{\n  "a": NaN,\n  "b": 1\n}\n'
    write_json(path, {"b": 1, "a": 2}, sort_keys=False)
    assert list(json.loads(path.read_text())) == ["b", "a"]
    with pytest.raises(ValueError):
        write_json(path, {"a": float("nan")}, allow_nan=False)
    assert json.loads(path.read_text()) == {"b": 1, "a": 2}  # a failed write leaves the old file whole
    save_torch(tmp_path / "sub" / "t.pt", {"x": torch.arange(3)})
    assert torch.equal(load_torch(tmp_path / "sub" / "t.pt")["x"], torch.arange(3))
    fig = figure(figsize=(1, 1))
    fig.subplots().plot([0, 1])
    save_figure(fig, tmp_path / "sub" / "f.png", dpi=20)
    assert (tmp_path / "sub" / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["f.png", "r.json", "t.pt"]  # no temporaries left


def test_subsets(data_root):
    x = torch.arange(10.0)
    assert subset(x, None, 0) is x and subset(x, 10, 0) is x and subset(None, 3, 0) is None
    assert torch.equal(subset(x, 4, 7), subset(x, 4, 7)) and subset(x, 4, 7).shape == (4,)
    ds = load_split("mnist", "test", 50, 3, root=data_root)
    full = load_split("mnist", "test", root=data_root)
    assert ds.data.shape == (50, 784) and ds.targets.shape == (50,)
    idx = torch.randperm(full.data.shape[0], generator=torch.Generator().manual_seed(3))[:50]
    assert torch.equal(ds.data, full.data[idx]) and torch.equal(ds.targets, full.targets[idx])


def test_cli_wrapping(capsys):
    @cli_errors
    def run(args):
        if args.value < 0:
            raise ValueError("value must be >= 0")

    def register(subparsers):
        p = subparsers.add_parser("check")
        p.add_argument("value", type=int)
        p.set_defaults(func=run)

    assert command_main(register, ["check", "1"]) == 0
    assert command_main(register, ["check", "-1"], prog="x") == 2
    assert capsys.readouterr().err == "pyro-noisevae check: error: value must be >= 0\n"
    with pytest.raises(SystemExit):
        command_main(register, [], prog="x")
