"""``train_model`` and ``train_classifier`` on the fit loop: resumed and interrupted runs replay the same run."""

import os
import signal

import pytest
import torch

from pyro_noisevae.experiments.empirical_bayes import models

CFG = dict(models.DEFAULTS, z_dim=2, hidden_dims=(8,), deen_hidden_dims=(8,), batch_size=50, train_size=150)


def _data():
    return torch.rand(150, 784, generator=torch.Generator().manual_seed(0))


def _state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("kind", ["vae", "uvb"])
def test_train_model_resumed_from_an_epoch_checkpoint_equals_one_run(kind, tmp_path):
    x = _data()
    whole, whole_state = models.train_model(kind, 1.0, dict(CFG, epochs=2), x, tmp_path / "a", "cpu", False)
    models.train_model(kind, 1.0, dict(CFG, epochs=1), x, tmp_path / "b", "cpu", False)
    resumed, resumed_state = models.train_model(kind, 1.0, dict(CFG, epochs=2), x, tmp_path / "b", "cpu", False)
    assert resumed_state["epoch"] == 2 and resumed_state["losses"] == whole_state["losses"]
    assert all(torch.equal(a, b) for a, b in zip(_state(whole).values(), _state(resumed).values()))
    assert (tmp_path / "b" / "checkpoints" / f"{kind}_sigma1_h8.pt").is_file()  # non-default layers in the name


def test_train_model_interrupted_stops_after_the_step_and_resumes(tmp_path, monkeypatch):
    x = _data()
    whole, whole_state = models.train_model("deen", 1.0, dict(CFG, epochs=2), x, tmp_path / "a", "cpu", False)
    calls, loss = [], models.denoising_loss

    def interrupting_loss(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:  # the second step of epoch 2: Ctrl-C
            os.kill(os.getpid(), signal.SIGINT)
        return loss(*args, **kwargs)

    monkeypatch.setattr(models, "denoising_loss", interrupting_loss)
    with pytest.raises(KeyboardInterrupt, match="rerun to resume from epoch 1"):
        models.train_model("deen", 1.0, dict(CFG, epochs=2), x, tmp_path / "b", "cpu", False)
    assert len(calls) == 5  # the step in progress finished, no further one started
    monkeypatch.setattr(models, "denoising_loss", loss)
    resumed, resumed_state = models.train_model("deen", 1.0, dict(CFG, epochs=2), x, tmp_path / "b", "cpu", False)
    assert resumed_state["losses"] == whole_state["losses"]
    assert all(torch.equal(a, b) for a, b in zip(_state(whole).values(), _state(resumed).values()))


def test_train_classifier_trains_once_then_loads(tmp_path):
    x, t = _data(), torch.arange(150) % 10
    clf, acc = models.train_classifier(tmp_path, x, t, x[:30], t[:30], 2, 0, "cpu", False)
    again, acc_again = models.train_classifier(tmp_path, x, t, x[:30], t[:30], 2, 0, "cpu", False)
    assert acc_again == acc and 0.0 <= acc <= 1.0
    assert all(torch.equal(a, b) for a, b in zip(_state(clf).values(), _state(again).values()))
    # a different budget retrains
    other, _ = models.train_classifier(tmp_path, x, t, x[:30], t[:30], 1, 0, "cpu", False)
    assert not all(torch.equal(a, b) for a, b in zip(_state(clf).values(), _state(other).values()))
