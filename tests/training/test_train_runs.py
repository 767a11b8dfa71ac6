"""Run-folder training (`train`, `load_run`) and the in-memory `fit`: bit-for-bit resume, interruption, clear errors."""

import json
import os
import signal

import pyro
import pytest
import torch

from pyro_noisevae.models import VAE
from pyro_noisevae.training import (
    CheckpointError,
    FitLoop,
    RunFolder,
    RunFolderError,
    StepSchedule,
    atomic_write,
    TrainConfig,
    build_fused_objective,
    build_model,
    build_trainer,
    fit,
    kl_warmup,
    load_checkpoint,
    load_run,
    train,
)


def _cfg(out, **kw):
    base = dict(
        dataset="mnist", train_split="train", train_size=300, eval_size=100, z_dim=4, hidden_dims=(32,),
        batch_size=50, epochs=2, likelihood="normal", sigma=0.3, out=str(out), log_every=2, seed=3,
    )
    base.update(kw)
    return TrainConfig(**base)


def _params(vae):
    return {k: v.detach().clone() for k, v in vae.state_dict().items()}


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_run_folder_contents(tmp_path, data_root):
    vae, history = train(_cfg(tmp_path / "run", epochs=1), progress=False)
    names = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"config.json", "metrics.jsonl", "checkpoint.pt", "reconstructions.png", "samples.png", "loss_curves.png"} <= names
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert records == history
    evals = [r for r in records if r["kind"] == "eval"]
    assert len(evals) == 1 and evals[0]["step"] == 6  # 300 points / batch 50
    assert json.loads((tmp_path / "run" / "config.json").read_text())["sigma"] == 0.3
    loaded, cfg, hist = load_run(tmp_path / "run")
    # the recorded test ELBO (one reparameterized draw per point, analytic KL) against Pyro's TraceMeanField_ELBO,
    # the same estimator: 60 independent draws of it on the same 100 points give a 4-SE prediction interval
    from pyro.infer import TraceMeanField_ELBO

    from pyro_noisevae.training.runs import _load_data

    test_data = _load_data(cfg)[1]
    with torch.no_grad():
        draws = torch.tensor([-TraceMeanField_ELBO().loss(loaded.model, loaded.guide, test_data) / len(test_data)
                              for _ in range(60)], dtype=torch.float64)
    assert abs(evals[0]["test_elbo"] - draws.mean().item()) < 4 * draws.std().item() * (1 + 1 / 60) ** 0.5
    _assert_same(_params(loaded), _params(vae))
    assert cfg.likelihood == "normal" and hist == history


def test_resume_after_epoch_is_bit_for_bit(tmp_path, data_root):
    full, full_hist = train(_cfg(tmp_path / "a"), progress=False)
    train(_cfg(tmp_path / "b", epochs=1), progress=False)
    resumed, resumed_hist = train(_cfg(tmp_path / "b", epochs=2), resume=True, progress=False)
    _assert_same(_params(full), _params(resumed))
    strip = lambda h: [{k: v for k, v in r.items() if k != "steps_per_sec"} for r in h]  # noqa: E731
    assert strip(full_hist) == strip(resumed_hist)


def test_sigint_mid_epoch_saves_checkpoint_and_resume_matches(tmp_path, data_root, monkeypatch):
    full, _ = train(_cfg(tmp_path / "a"), progress=False)

    original_step = FitLoop.step
    calls = {"n": 0}

    def step_then_interrupt(self, *batch):
        out = original_step(self, *batch)
        calls["n"] += 1
        if calls["n"] == 8:  # in the middle of epoch 2 (6 steps per epoch)
            signal.raise_signal(signal.SIGINT)
        return out

    monkeypatch.setattr(FitLoop, "step", step_then_interrupt)
    with pytest.raises(SystemExit) as exc:
        train(_cfg(tmp_path / "b"), progress=False)
    assert exc.value.code == 128 + signal.SIGINT
    monkeypatch.setattr(FitLoop, "step", original_step)
    state = load_checkpoint(tmp_path / "b" / "checkpoint.pt")["trainer"]
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (1, 2, 8)
    resumed, _ = train(_cfg(tmp_path / "b"), resume=True, progress=False)
    _assert_same(_params(full), _params(resumed))


def test_missing_and_corrupt_checkpoints(tmp_path, data_root):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        train(_cfg(tmp_path / "none"), resume=True, progress=False)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "checkpoint.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="corrupt"):
        train(_cfg(bad), resume=True, progress=False)
    torch.save({"something": torch.zeros(2)}, bad / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="not a pyro_noisevae"):
        load_checkpoint(bad / "checkpoint.pt")
    with pytest.raises(FileExistsError, match="--resume"):
        train(_cfg(bad), progress=False)


def test_resume_refuses_other_settings_and_accepts_run_control(tmp_path, data_root):
    out = tmp_path / "run"
    train(_cfg(out, epochs=1), progress=False)
    with pytest.raises(ValueError, match=r"sigma: 0.3 in the run, 0.5 asked; hidden_dims: \[32\] in the run, \[16\] asked"):
        train(_cfg(out, hidden_dims=(16,), sigma=0.5), resume=True, progress=False)
    # epochs, data root and log_every may change; the saved config records them
    _, history = train(_cfg(out, epochs=2, data_root=str(data_root), log_every=3), resume=True, progress=False)
    saved = json.loads((out / "config.json").read_text())
    assert (saved["epochs"], saved["data_root"], saved["log_every"]) == (2, str(data_root), 3)
    assert load_checkpoint(out / "checkpoint.pt")["config"] == saved
    assert [r["epoch"] for r in history if r["kind"] == "eval"] == [1, 2]


def test_resume_to_fewer_epochs_than_done_is_refused(tmp_path, data_root):
    out = tmp_path / "run"
    train(_cfg(out, epochs=2, max_steps=1), progress=False)
    with pytest.raises(ValueError, match="already trained 2 epochs; ask for 2 or more"):
        train(_cfg(out, epochs=1, max_steps=1), resume=True, progress=False)


def test_overwrite_removes_the_previous_run_first(tmp_path, data_root):
    out = tmp_path / "run"
    train(_cfg(out, epochs=1, max_steps=1), progress=False)
    (out / "metrics.jsonl").write_text("stale\n")
    _, history = train(_cfg(out, epochs=1, max_steps=2, sigma=0.5), overwrite=True, progress=False)
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["config"]["sigma"] == 0.5 == json.loads((out / "config.json").read_text())["sigma"]
    assert ckpt["trainer"]["global_step"] == 2 and "stale" not in (out / "metrics.jsonl").read_text()


def test_checkpoint_whose_config_does_not_fit_its_weights(tmp_path, data_root):
    out = tmp_path / "run"
    train(_cfg(out, epochs=1, max_steps=1), progress=False)
    ckpt = load_checkpoint(out / "checkpoint.pt")
    ckpt["config"]["hidden_dims"] = [16]
    torch.save(ckpt, out / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="do not fit the model of its own config"):
        load_run(out)
    with pytest.raises(CheckpointError, match="do not fit the model of its own config"):
        train(_cfg(out, hidden_dims=(16,), max_steps=1), resume=True, progress=False)


def test_run_folder_has_one_owner_and_writes_atomically(tmp_path):
    folder = tmp_path / "run"
    with RunFolder(folder):
        with pytest.raises(RunFolderError, match=f"in use by pid {os.getpid()} on host"):
            with RunFolder(folder):
                pass
        with pytest.raises(RunFolderError, match="in use by"):
            RunFolder(folder).check_free()
        (folder / "a.txt").write_text("old")

        def fail(f):
            f.write(b"half")
            raise OSError("disk full")

        with pytest.raises(OSError, match="disk full"):
            atomic_write(folder / "a.txt", fail)
        assert (folder / "a.txt").read_text() == "old" and sorted(p.name for p in folder.iterdir()) == [".owner.lock", "a.txt"]
    RunFolder(folder).check_free()  # released on exit
    with RunFolder(folder):
        pass


def test_kl_warmup_is_a_function_of_the_step_passed_in(data_root):
    """The trainer's loss at step t is the fused objective with beta = kl_warmup(beta, warm)(t), at any t."""
    cfg = TrainConfig(likelihood="normal", sigma=0.3, z_dim=2, hidden_dims=(8,), batch_size=10, beta=2.0,
                      kl_warmup_epochs=1.5)
    x = torch.rand(40, 12)
    vae = build_model(cfg, 12)
    trainer = build_trainer(vae, cfg, x)
    schedule = kl_warmup(2.0, 1.5 * 4)
    assert [schedule(t) for t in (0, 2, 5, 9)] == [2.0 / 6, 1.0, 2.0, 2.0]
    assert isinstance(trainer.objective.beta, StepSchedule)
    for t in (0, 3, 7):
        pyro.set_rng_seed(1)
        got = trainer.objective(x[:10], t)
        pyro.set_rng_seed(1)
        want = build_fused_objective(vae, cfg, beta=schedule(t))(x[:10], num_data=40) / 40
        assert torch.equal(got, want)
    trainer.loop.epochs = 1
    trainer.loop.run()
    assert trainer.objective.beta.step == 3  # the last step taken: 0, 1, 2, 3


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(sigma=0.0), "sigma"),
        (dict(sigma=-1.0), "sigma"),
        (dict(sigma=float("nan")), "sigma"),
        (dict(likelihood="gaussian"), "likelihood"),
        (dict(beta=0.0), "beta"),
        (dict(epochs=0), "epochs"),
        (dict(binarize="sometimes"), "binarize"),
        (dict(sigma=float("inf")), "sigma"),
        (dict(train_size=0), "train_size"),
        (dict(eval_size=-5), "eval_size"),
        (dict(max_steps=0), "max_steps"),
        (dict(batch_size=0), "batch_size"),
        (dict(dataset="cifar"), "dataset"),
        (dict(device="gpu"), "device"),
        (dict(likelihood="laplace", sigma=None), "needs sigma"),
    ],
)
def test_bad_config(tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        _cfg(tmp_path, **kw)


def test_bernoulli_on_grey_data_is_a_clear_error(tmp_path, data_root):
    with pytest.raises(ValueError, match="binary"):
        train(_cfg(tmp_path / "r", likelihood="bernoulli"), progress=False)
    # dynamic binarization makes the same data valid for a Bernoulli decoder
    train(_cfg(tmp_path / "ok", likelihood="bernoulli", binarize="dynamic", epochs=1), progress=False)


@pytest.mark.parametrize(
    "x,exc,match",
    [
        (torch.full((10, 6), float("nan")), ValueError, "NaN"),
        (torch.ones(10, 6).index_fill_(0, torch.tensor([3]), float("inf")), ValueError, "infinite"),
        (torch.rand(10, 2, 3), ValueError, "flatten"),
        (torch.rand(10, 5), ValueError, "features"),
        (torch.ones(10, 6, dtype=torch.long), TypeError, "floating"),
    ],
    ids=["nan", "inf", "3d", "wrong-dim", "int"],
)
def test_bad_data_errors(x, exc, match):
    vae = VAE(x_dim=6, z_dim=2, hidden_dims=(8,), likelihood="normal", sigma=0.5)
    with pytest.raises(exc, match=match):
        vae.model(x) if x.shape[-1] == 6 and x.dim() == 2 and x.is_floating_point() else vae.guide(x)


def test_fit_decreases_the_loss():
    torch.manual_seed(0)
    data = torch.rand(200, 1) * torch.rand(1, 10)  # rank-one structure to learn
    vae = VAE(x_dim=10, z_dim=2, hidden_dims=(32,), likelihood="normal", sigma=0.1)
    losses = fit(vae.model, vae.guide, data, epochs=8, batch_size=20, lr=1e-2, progress=False, seed=0)
    assert len(losses) == 8 and losses[-1] < losses[0] - 5.0


@pytest.mark.parametrize("fast_path", [True, False], ids=["fused", "pyro"])
def test_train_feeds_each_step_its_warmup_beta_on_the_path_it_claims(tmp_path, data_root, monkeypatch, fast_path):
    """
    Spies on what ``train`` runs: the β the objective reads at each of its 8 steps is the warm-up schedule (β = 2
    over 1.5 epochs of 4 steps: 2·(t+1)/6, then 2), read by the fused objective on the fast path and by the
    β-scaled Pyro programs otherwise; and the other path is never called.
    """
    from pyro.infer import Trace_ELBO

    from pyro_noisevae.handlers import BetaScaleMessenger
    from pyro_noisevae.models import FusedVAEObjective
    from pyro_noisevae.training import runs

    trainers, seen, calls = [], [], {"fused": 0, "pyro": 0}

    def build_trainer_spy(*args, **kwargs):
        trainers.append(runs.build_trainer.__wrapped__(*args, **kwargs))
        return trainers[-1]

    def beta_spy(path, read):
        def current_beta(self):
            beta = read(self)
            seen.append((path, trainers[0].global_step, beta))
            return beta

        return current_beta

    def call_spy(path, fn):
        def counted(*args, **kwargs):
            calls[path] += 1
            return fn(*args, **kwargs)

        return counted

    build_trainer_spy.__wrapped__ = runs.build_trainer
    monkeypatch.setattr(runs, "build_trainer", build_trainer_spy)
    monkeypatch.setattr(FusedVAEObjective, "current_beta", beta_spy("fused", FusedVAEObjective.current_beta))
    monkeypatch.setattr(BetaScaleMessenger, "current_beta", beta_spy("pyro", BetaScaleMessenger.current_beta))
    monkeypatch.setattr(FusedVAEObjective, "forward", call_spy("fused", FusedVAEObjective.forward))
    monkeypatch.setattr(Trace_ELBO, "differentiable_loss", call_spy("pyro", Trace_ELBO.differentiable_loss))

    cfg = _cfg(tmp_path / "run", train_size=40, eval_size=20, batch_size=10, epochs=2, beta=2.0, kl_warmup_epochs=1.5,
               fast_path=fast_path)
    train(cfg, progress=False)
    path, other = ("fused", "pyro") if fast_path else ("pyro", "fused")
    assert calls == {path: 8, other: 0}
    expected = [2 / 6, 4 / 6, 1.0, 8 / 6, 10 / 6, 2.0, 2.0, 2.0]
    assert {p for p, _, _ in seen} == {path}
    assert sorted({t for _, t, _ in seen}) == list(range(8))
    for _, t, beta in seen:  # the fused objective reads β once a step, the programs at every latent site
        assert beta == pytest.approx(expected[t], rel=1e-15), (t, beta)
    if fast_path:
        assert len(seen) == 8
