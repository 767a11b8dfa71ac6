"""Early stopping of run-folder training (`patience`): the best epoch's weights, the stop rule, resume, refusals."""

import json

import pytest
import torch

from pyro_noisevae.training import (
    BEST,
    CheckpointError,
    TrainConfig,
    epochs_without_improvement,
    eval_bound,
    load_run,
    train,
)
from pyro_noisevae.training.runs import _load_data


def _cfg(out, **kw):
    # 20 training images and a wide network overfit within a few dozen epochs, so the validation bound turns
    base = dict(
        dataset="binarized-mnist", train_split="train", eval_split="valid", train_size=20, eval_size=100,
        likelihood="bernoulli", hidden_dims=(100,), z_dim=5, objective="iwae", num_particles=3, epochs=200,
        batch_size=10, lr=1e-2, patience=3, out=str(out), seed=0,
    )
    base.update(kw)
    return TrainConfig(**base)


def _evals(history):
    return [h for h in history if h["kind"] == "eval"]


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("es") / "run"
    vae, history = train(_cfg(out), progress=False)
    return out, history, vae


def test_training_stops_patience_epochs_after_the_best_validation_bound(stopped_run):
    out, history, _ = stopped_run
    evals = _evals(history)
    bounds = [h["eval_bound"] for h in evals]
    best = max(range(len(bounds)), key=bounds.__getitem__)
    stop = history[-1]
    assert stop["kind"] == "stop"
    assert len(evals) < 200, "the cap was reached: this configuration no longer overfits, the test proves nothing"
    assert stop["epoch"] == evals[-1]["epoch"] == evals[best]["epoch"] + 3
    assert stop["best_epoch"] == evals[best]["epoch"]
    assert stop["best_eval_bound"] == bounds[best]
    # the rule: every epoch before the stop was within `patience` of the best so far
    for i in range(len(bounds) - 1):
        assert i - max(range(i + 1), key=bounds.__getitem__) < 3
    assert all(h["eval_bound_k"] == 3 for h in evals)
    assert json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["kind"] == "stop"


def test_the_run_delivers_the_best_epochs_weights(stopped_run):
    out, history, trained = stopped_run
    evals = _evals(history)
    best = max(evals, key=lambda h: h["eval_bound"])
    vae, cfg, loaded_history = load_run(out)  # weights="final": the best epoch, for a run with patience
    assert loaded_history == history
    _, valid, _ = _load_data(cfg)
    # the bound is computed from a seeded generator: recomputing it on the loaded weights gives the record exactly
    assert eval_bound(vae, valid, 3, seed=cfg.seed) == best["eval_bound"]
    last, _, _ = load_run(out, weights="last")
    assert eval_bound(last, valid, 3, seed=cfg.seed) == evals[-1]["eval_bound"] < best["eval_bound"]
    assert all(torch.equal(a, b) for a, b in zip(trained.state_dict().values(), vae.state_dict().values()))
    best_again, _, _ = load_run(out, weights="best")
    assert all(torch.equal(a, b) for a, b in zip(best_again.state_dict().values(), vae.state_dict().values()))


def test_resuming_a_stopped_run_trains_nothing(stopped_run, tmp_path):
    out, history, _ = stopped_run
    before = (out / "checkpoint.pt").read_bytes()
    _, resumed = train(_cfg(out), resume=True, progress=False)
    assert resumed == history
    assert (out / "checkpoint.pt").read_bytes() == before


def test_more_patience_continues_exactly_as_an_uninterrupted_run(tmp_path):
    first = tmp_path / "first"
    _, h3 = train(_cfg(first, patience=2, epochs=40), progress=False)
    assert h3[-1]["kind"] == "stop"
    _, continued = train(_cfg(first, patience=6, epochs=40), resume=True, progress=False)
    _, straight = train(_cfg(tmp_path / "straight", patience=6, epochs=40), progress=False)
    assert len(_evals(continued)) > len(_evals(h3))
    assert [h["eval_bound"] for h in _evals(continued)] == [h["eval_bound"] for h in _evals(straight)]
    assert continued[-1]["kind"] == straight[-1]["kind"]


def test_eval_bound_leaves_the_global_random_state_alone(stopped_run):
    out, _, _ = stopped_run
    vae, cfg, _ = load_run(out)
    _, valid, _ = _load_data(cfg)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = eval_bound(vae, valid[:30], 4, seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    assert eval_bound(vae, valid[:30], 4, seed=7) == a != eval_bound(vae, valid[:30], 4, seed=8)
    # K = 1 is the ELBO, and the IWAE bound is larger (Burda et al.: L_1 <= L_K) beyond Monte Carlo noise
    elbos = torch.tensor([eval_bound(vae, valid[:30], 1, seed=s) for s in range(20)])
    iwae = torch.tensor([eval_bound(vae, valid[:30], 20, seed=s) for s in range(20)])
    se = (elbos.var() / 20 + iwae.var() / 20).sqrt()
    assert iwae.mean() - elbos.mean() > 4 * se


def test_epochs_without_improvement():
    rec = lambda e, b: {"kind": "eval", "epoch": e, "eval_bound": b}  # noqa: E731
    assert epochs_without_improvement([]) is None
    assert epochs_without_improvement([{"kind": "eval", "epoch": 1, "test_elbo": -3.0}]) is None
    assert epochs_without_improvement([rec(1, -5.0), {"kind": "train", "epoch": 1}, rec(2, -4.0)]) == 0
    assert epochs_without_improvement([rec(1, -5.0), rec(2, -4.0), rec(3, -4.5), rec(4, -4.1)]) == 2
    assert epochs_without_improvement([rec(1, -4.0), rec(2, -4.0), rec(3, -4.0)]) == 2  # a tie is no improvement
    drop = {"kind": "lr_drop", "epoch": 3, "lr": 1e-4}
    assert epochs_without_improvement([rec(1, -4.0), rec(2, -4.5), rec(3, -4.4), drop, rec(4, -4.2)]) == 1


def test_patience_selects_on_the_validation_split_only():
    with pytest.raises(ValueError, match="eval_split='valid'"):
        TrainConfig(patience=3, eval_split="test")
    with pytest.raises(ValueError, match="patience must be"):
        TrainConfig(patience=0, eval_split="valid")
    with pytest.raises(ValueError, match="not implemented for distributed"):
        TrainConfig(patience=3, eval_split="valid", distributed=True)


def test_best_weights_of_a_run_without_early_stopping_are_refused(tmp_path):
    out = tmp_path / "plain"
    train(_cfg(out, patience=None, epochs=1), progress=False)
    assert not (out / BEST).exists()
    load_run(out)  # "final" is the last epoch here
    with pytest.raises(CheckpointError, match="load weights='last'"):
        load_run(out, weights="best")
    with pytest.raises(ValueError, match="weights must be one of"):
        load_run(out, weights="newest")


def test_lr_drops_divide_the_learning_rate_on_a_plateau_then_stop(tmp_path):
    out = tmp_path / "drops"
    _, history = train(_cfg(out, patience=2, lr_drops=1, epochs=80), progress=False)
    drops = [h for h in history if h["kind"] == "lr_drop"]
    evals = _evals(history)
    assert len(drops) == 1 and drops[0]["lr"] == pytest.approx(1e-3, rel=1e-12)
    drop = drops[0]["epoch"]
    # the drop came on the first plateau: 2 stale epochs after the best epoch up to then
    before = [h for h in evals if h["epoch"] <= drop]
    assert drop - max(before, key=lambda h: h["eval_bound"])["epoch"] == 2
    # training went on at the lower rate, and stopped 2 epochs after the later of the best epoch and the drop
    assert history[-1]["kind"] == "stop" and evals[-1]["epoch"] > drop
    best = max(evals, key=lambda h: h["eval_bound"])["epoch"]
    assert history[-1]["epoch"] == max(best, drop) + 2
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert all(g["lr"] == pytest.approx(1e-3, rel=1e-12) for g in ckpt["trainer"]["optim"]["param_groups"])


def test_resuming_a_stopped_run_with_lr_drops_continues_as_an_uninterrupted_one(tmp_path):
    _, first = train(_cfg(tmp_path / "a", patience=2, epochs=60), progress=False)
    assert first[-1]["kind"] == "stop"
    _, resumed = train(_cfg(tmp_path / "a", patience=2, lr_drops=1, epochs=60), resume=True, progress=False)
    _, straight = train(_cfg(tmp_path / "b", patience=2, lr_drops=1, epochs=60), progress=False)
    assert [h["eval_bound"] for h in _evals(resumed)] == [h["eval_bound"] for h in _evals(straight)]
    assert [h["epoch"] for h in resumed if h["kind"] == "lr_drop"] == [
        h["epoch"] for h in straight if h["kind"] == "lr_drop"]


def test_lr_drops_need_patience():
    with pytest.raises(ValueError, match="needs patience"):
        TrainConfig(lr_drops=2, eval_split="valid")
    with pytest.raises(ValueError, match="lr_drops must be an integer >= 0"):
        TrainConfig(lr_drops=-1, patience=2, eval_split="valid")
