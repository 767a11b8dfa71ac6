"""The trainer: run folders, bit-for-bit resume, interruption, clear errors on bad input."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pyro_noisevae.models import VAE
from pyro_noisevae.training import CheckpointError, TrainConfig, Trainer, fit, load_checkpoint, load_run, train


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
    assert evals[0]["test_elbo"] == pytest.approx(evals[0]["test_recon"] - evals[0]["test_kl"])
    assert json.loads((tmp_path / "run" / "config.json").read_text())["sigma"] == 0.3
    loaded, cfg, hist = load_run(tmp_path / "run")
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

    original_step = Trainer.step
    calls = {"n": 0}

    def step_then_interrupt(self, x):
        out = original_step(self, x)
        calls["n"] += 1
        if calls["n"] == 8:  # in the middle of epoch 2 (6 steps per epoch)
            signal.raise_signal(signal.SIGINT)
        return out

    monkeypatch.setattr(Trainer, "step", step_then_interrupt)
    with pytest.raises(SystemExit) as exc:
        train(_cfg(tmp_path / "b"), progress=False)
    assert exc.value.code == 128 + signal.SIGINT
    monkeypatch.setattr(Trainer, "step", original_step)
    state = load_checkpoint(tmp_path / "b" / "checkpoint.pt")["trainer"]
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (1, 2, 8)
    resumed, _ = train(_cfg(tmp_path / "b"), resume=True, progress=False)
    _assert_same(_params(full), _params(resumed))


def _catches(pid, signum):
    """True once process ``pid`` has a handler for ``signum`` (Linux: the SigCgt mask of /proc/PID/status)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = next((int(line.split()[1], 16) for line in status.splitlines() if line.startswith("SigCgt:")), 0)
    return bool(mask >> (signum - 1) & 1)


def test_sigterm_from_outside_then_resume(tmp_path, data_root):
    """A real SIGTERM to the CLI process: checkpoint, exit status 143, and --resume finishes the same run."""
    out = tmp_path / "run"
    args = [
        sys.executable, "-m", "pyro_noisevae", "train", "--dataset", "mnist", "--train-split", "train",
        "--train-size", "6000", "--eval-size", "100", "--z-dim", "4", "--hidden-dims", "16", "-b", "10",
        "-n", "1", "--sigma", "0.3", "--seed", "1", "--log-every", "1", "--out", str(out), "--no-progress",
    ]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    # wait until the trainer catches SIGTERM (its bit in SigCgt of /proc/PID/status), then let a few of the 600
    # steps run: the signal lands mid-epoch on a fast or a slow machine
    while time.time() < deadline and proc.poll() is None and not _catches(proc.pid, signal.SIGTERM):
        time.sleep(0.01)
    time.sleep(0.1)
    assert proc.poll() is None, proc.communicate()[1]
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "SIGTERM received: checkpoint saved" in err
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert 0 < ckpt["trainer"]["global_step"] < 600 and ckpt["trainer"]["step_in_epoch"] > 0
    done = subprocess.run(args + ["--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    reference = subprocess.run(
        [a if a != str(out) else str(tmp_path / "ref") for a in args], env=env, capture_output=True, text=True, timeout=300
    )
    assert reference.returncode == 0, reference.stderr
    _assert_same(_params(load_run(out)[0]), _params(load_run(tmp_path / "ref")[0]))


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


def test_cli_reports_errors_cleanly(tmp_path, data_root):
    r = subprocess.run(
        [sys.executable, "-m", "pyro_noisevae", "train", "--out", str(tmp_path / "x"), "--resume", "--no-progress"],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 2 and "no checkpoint" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "pyro_noisevae", "train", "--data-root", str(tmp_path), "--out", str(tmp_path / "y"), "--no-progress"],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 2 and str(tmp_path) in r.stderr and "Traceback" not in r.stderr


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
