"""``pyro-noisevae train`` as a user runs it: subprocesses, signals, run folders shared by mistake, bad flags."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pyro_noisevae.cli import main
from pyro_noisevae.training import load_checkpoint, load_run

CLI = [sys.executable, "-m", "pyro_noisevae", "train"]
#: seconds-long runs
TINY = ["--train-split", "train", "--train-size", "200", "--eval-size", "50", "--z-dim", "2", "--hidden-dims", "8",
        "-b", "50", "--no-progress"]
#: a run of 600 steps per epoch, long enough to be signalled mid-epoch
LONG = ["--train-split", "train", "--train-size", "6000", "--eval-size", "100", "--z-dim", "4", "--hidden-dims", "16",
        "-b", "10", "-n", "1", "--sigma", "0.3", "--seed", "1", "--log-every", "1", "--no-progress"]
ENV = dict(os.environ, PYTHONUNBUFFERED="1")


def _run(*args, timeout=300):
    return subprocess.run([*CLI, *map(str, args)], env=ENV, capture_output=True, text=True, timeout=timeout)


def _assert_user_error(r, *needles):
    """Exit status 2, one line on stderr naming what is wrong, no traceback."""
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def _catches(pid, signum):
    """True once process ``pid`` has a handler for ``signum`` (Linux: the SigCgt mask of /proc/PID/status)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = next((int(line.split()[1], 16) for line in status.splitlines() if line.startswith("SigCgt:")), 0)
    return bool(mask >> (signum - 1) & 1)


def _start_training(*args):
    """Start a run and wait until it trains (it catches SIGTERM once its loop runs), then a few steps more."""
    proc = subprocess.Popen([*CLI, *map(str, args)], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not _catches(proc.pid, signal.SIGTERM):
        time.sleep(0.01)
    time.sleep(0.1)
    assert proc.poll() is None, proc.communicate()[1]
    return proc


def _params(vae):
    return {k: v.detach().clone() for k, v in vae.state_dict().items()}


def _evals(out):
    lines = Path(out, "metrics.jsonl").read_text().splitlines()
    return [r["epoch"] for r in map(json.loads, lines) if r["kind"] == "eval"]


def test_sigterm_from_outside_then_resume(tmp_path, data_root):
    """A real SIGTERM to the CLI process: checkpoint, exit status 143, and --resume finishes the same run."""
    out = tmp_path / "run"
    # the trainer catches SIGTERM (its bit in SigCgt of /proc/PID/status) once it trains; a few of the 600 steps
    # later the signal lands mid-epoch, on a fast or a slow machine
    proc = _start_training(*LONG, "--out", out)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "SIGTERM received: checkpoint saved" in err
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert 0 < ckpt["trainer"]["global_step"] < 600 and ckpt["trainer"]["step_in_epoch"] > 0
    done = _run(*LONG, "--out", out, "--resume")  # the same flags again are accepted
    assert done.returncode == 0, done.stderr
    reference = _run(*LONG, "--out", tmp_path / "ref")
    assert reference.returncode == 0, reference.stderr
    a, b = _params(load_run(out)[0]), _params(load_run(tmp_path / "ref")[0])
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_second_run_in_a_folder_in_use_is_refused(tmp_path, data_root):
    out = tmp_path / "run"
    first = _start_training(*LONG, "--epochs", "100", "--out", out)  # it runs until signalled
    try:
        second = _run(*TINY, "--sigma", "0.5", "--out", out)
        _assert_user_error(second, str(out), "in use by", f"pid {first.pid}", f"host {socket.gethostname()}")
        _assert_user_error(_run("--out", out, "--resume", "--no-progress"), f"pid {first.pid}")
        _assert_user_error(_run(*TINY, "--out", out, "--overwrite"), f"pid {first.pid}")
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)
    assert first.returncode == 128 + signal.SIGTERM
    # the folder holds the first run only: its config and its checkpoint
    config = json.loads((out / "config.json").read_text())
    assert config == load_checkpoint(out / "checkpoint.pt")["config"]
    assert (config["sigma"], config["hidden_dims"], config["epochs"]) == (0.3, [16], 100)


def test_plain_resume_finishes_the_run_as_configured(tmp_path, data_root):
    out = tmp_path / "run"
    proc = _start_training(*LONG, "--epochs", "2", "--out", out)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM
    done = _run("--out", out, "--resume", "--no-progress")  # no --epochs: the run's 2, not the CLI's default
    assert done.returncode == 0, done.stderr
    assert _evals(out) == [1, 2] and load_checkpoint(out / "checkpoint.pt")["trainer"]["global_step"] == 1200
    longer = _run("--out", out, "--resume", "--epochs", "3", "--no-progress")  # --epochs sets a new target
    assert longer.returncode == 0, longer.stderr
    assert _evals(out) == [1, 2, 3] and json.loads((out / "config.json").read_text())["epochs"] == 3
    _assert_user_error(_run("--out", out, "--resume", "--epochs", "2", "--no-progress"), "already trained 3 epochs")


def test_resume_refuses_changed_model_and_data_flags_and_takes_a_new_data_root(tmp_path, data_root):
    out = tmp_path / "run"
    assert _run(*TINY, "--epochs", "1", "--out", out).returncode == 0
    before = (out / "checkpoint.pt").stat().st_mtime_ns
    changed = _run("--out", out, "--resume", "--hidden-dims", "16", "--likelihood", "laplace", "--laplace-scale", "0.1",
                   "--dataset", "frey-face", "--no-progress")
    _assert_user_error(changed, "--hidden-dims 16 (the run has 8)", "--likelihood laplace (the run has normal)",
                       "--laplace-scale 0.1 (the run has 0.2)", "--dataset frey-face (the run has mnist)")
    _assert_user_error(_run("--out", out, "--resume", "--sigma", "0.3", "-b", "20", "--no-progress"),
                       "--sigma 0.3 (the run has 0.2)", "--batch-size 20 (the run has 50)")
    assert (out / "checkpoint.pt").stat().st_mtime_ns == before
    moved = tmp_path / "moved-data"
    moved.symlink_to(data_root)
    done = _run("--out", out, "--resume", "--data-root", moved, "--epochs", "2", "--no-progress")
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "config.json").read_text())["data_root"] == str(moved) and _evals(out) == [1, 2]
    # a data root without the data: the error names the root it was given
    _assert_user_error(_run("--out", out, "--resume", "--data-root", tmp_path / "nothing", "--epochs", "3",
                            "--no-progress"), str(tmp_path / "nothing"))


BAD_FLAGS = [
    (["--train-size", "0"], "--train-size"),
    (["--train-size", "-5"], "--train-size"),
    (["--eval-size", "0"], "--eval-size"),
    (["--max-steps", "0"], "--max-steps"),
    (["--epochs", "0"], "--epochs"),
    (["--batch-size", "0"], "--batch-size"),
    (["--batch-size", "1.5"], "--batch-size"),
    (["--sigma", "-1"], "--sigma"),
    (["--sigma", "inf"], "--sigma"),
    (["--sigma", "nan"], "--sigma"),
    (["--likelihood", "laplace", "--laplace-scale", "0"], "--laplace-scale"),
    (["--likelihood", "laplace", "--sigma", "0.1"], "--laplace-scale"),
    (["--laplace-scale", "0.1"], "--likelihood laplace"),
    (["--likelihood", "bernoulli", "--sigma", "0.1"], "has no sigma"),
    (["--partial-alpha", "2"], "--partial-alpha"),
    (["--device", "gpu"], "--device"),
    (["--encoder", "wni"], "wni_bound"),
    (["--corruption", "salt-and-pepper", "--corruption-level", "1.5"], "rate must be"),
    (["--resume", "--overwrite"], "exclude each other"),
    (["--device", "cuda" if not torch.cuda.is_available() else "cuda:9999"], "--device"),
]


@pytest.mark.parametrize("args,needle", BAD_FLAGS, ids=[" ".join(a) for a, _ in BAD_FLAGS])
def test_bad_flags_are_one_line_errors(args, needle, tmp_path, capsys):
    """Every case fails before any data is read: exit status 2 and one line naming the flag (in process)."""
    argv = ["train", *TINY, "--epochs", "1", "--max-steps", "1", *args, "--out", str(tmp_path / "run")]
    try:
        status = main(argv)
    except SystemExit as e:  # argparse's own errors
        status = e.code
    _assert_user_error(subprocess.CompletedProcess(argv, status, "", capsys.readouterr().err), needle)
    assert not (tmp_path / "run").exists()


def test_bad_flags_from_the_shell(tmp_path):
    """The same errors from real processes (run concurrently), a few representative cases."""
    cases = [(["--train-size", "0"], "--train-size"), (["--sigma", "inf"], "--sigma"),
             (["--likelihood", "laplace", "--sigma", "0.1"], "--laplace-scale")]
    if not torch.cuda.is_available():
        cases.append((["--device", "cuda"], "no CUDA device"))
    procs = [subprocess.Popen([*CLI, *args, "--out", str(tmp_path / f"r{i}"), "--no-progress"], env=ENV,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i, (args, _) in enumerate(cases)]
    for (args, needle), proc in zip(cases, procs):
        _, err = proc.communicate(timeout=300)
        _assert_user_error(subprocess.CompletedProcess(args, proc.returncode, "", err), needle)
    assert not any((tmp_path / f"r{i}").exists() for i in range(len(cases)))


def test_unwritable_out_and_checkpoints_that_do_not_fit(tmp_path, data_root):
    (tmp_path / "a-file").write_text("")
    _assert_user_error(_run(*TINY, "--out", tmp_path / "a-file" / "run"), "cannot use", "a-file")
    _assert_user_error(_run("--out", tmp_path / "x", "--resume", "--no-progress"), "no checkpoint")
    out = tmp_path / "run"
    assert _run(*TINY, "--epochs", "1", "--max-steps", "1", "--out", out).returncode == 0
    ckpt = load_checkpoint(out / "checkpoint.pt")
    ckpt["config"]["hidden_dims"] = [16]  # the config no longer describes the weights
    torch.save(ckpt, out / "checkpoint.pt")
    _assert_user_error(_run("--out", out, "--resume", "--epochs", "2", "--no-progress"), "do not fit")
    (out / "checkpoint.pt").write_bytes(b"garbage")
    _assert_user_error(_run("--out", out, "--resume", "--no-progress"), "corrupt")


def test_a_killed_run_leaves_nothing_that_blocks_the_next(tmp_path, data_root):
    out = tmp_path / "run"
    killed = _start_training(*LONG, "--out", out)
    killed.kill()
    killed.communicate(timeout=60)
    # a SIGKILL during a checkpoint write leaves the temporary behind; another process's temporary is kept
    (out / f".checkpoint.pt.tmp{killed.pid}").write_bytes(b"half a checkpoint")
    (out / f".metrics.jsonl.tmp{killed.pid}").write_text("half\n")
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        (out / f".checkpoint.pt.tmp{alive.pid}").write_bytes(b"not ours")
        r = _run(*TINY, "--epochs", "1", "--out", out, "--overwrite")  # the dead owner's lock does not block
        assert r.returncode == 0, r.stderr
        left = sorted(p.name for p in out.iterdir() if ".tmp" in p.name)
        assert left == [f".checkpoint.pt.tmp{alive.pid}"]
    finally:
        alive.kill()
        alive.wait()


def test_laplace_scale_is_the_laplace_flag(tmp_path, data_root):
    out = tmp_path / "run"
    r = _run(*TINY, "--likelihood", "laplace", "--laplace-scale", "0.15", "--epochs", "1", "--max-steps", "1", "--out", out)
    assert r.returncode == 0, r.stderr
    vae, cfg, _ = load_run(out)
    assert cfg.likelihood == "laplace" and cfg.sigma == 0.15 and float(vae.likelihood.scale) == pytest.approx(0.15)
