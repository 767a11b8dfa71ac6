"""The one fit loop: interruption, bit-for-bit resumption, learning-rate decay, stop hook, progress, batching modes."""

import io
import math
import signal

import pytest
import torch

from pyro_noisevae.training import FitLoop, epoch_order

N, D = 23, 3


def _problem(seed=0):
    """A linear model, a noisy loss (it draws from torch's RNG, so resuming must restore it) and data."""
    torch.manual_seed(seed)
    model = torch.nn.Linear(D, 1)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(N, D, generator=gen)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.1 * torch.randn(N, generator=gen)

    def loss(xb, yb):
        noise = 0.01 * torch.randn(xb.shape[0])  # the torch RNG enters the path
        return ((model(xb).squeeze(-1) - yb + noise) ** 2).mean()

    return model, loss, (x, y)


def _loop(model, loss, data, **kw):
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    return FitLoop(loss, opt, data, batch_size=5, epochs=4, seed=7, lr_decay=0.1, **kw)


def _interrupt_at(step):
    calls = {"n": 0}

    def on_log(record):
        calls["n"] += 1
        if record["step"] == step:
            signal.raise_signal(signal.SIGINT)

    return on_log


def test_interrupt_stops_after_the_current_step_and_keeps_the_position():
    model, loss, data = _problem()
    loop = _loop(model, loss, data, log_every=1, on_log=_interrupt_at(7))
    result = loop.run()
    assert result.interrupted and result.signum == signal.SIGINT and result.stopped == "interrupted"
    # 5 steps per epoch: interrupted after step 7, i.e. 2 steps into the second epoch
    assert (loop.epoch, loop.step_in_epoch, loop.global_step) == (1, 2, 7) and len(result.losses) == 1
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is restored


@pytest.mark.parametrize("stop_at", [3, 5, 13])  # mid-epoch, at an epoch boundary, in the last epoch
def test_resume_equals_uninterrupted_bit_for_bit(stop_at):
    model, loss, data = _problem()
    full = _loop(model, loss, data)
    full_losses = full.run().losses
    reference = [p.detach().clone() for p in model.parameters()]

    model, loss, data = _problem()
    first = _loop(model, loss, data, log_every=1, on_log=_interrupt_at(stop_at))
    before = first.run()
    assert before.interrupted
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "loop": first.state_dict()}, buf)

    model, loss, data = _problem(seed=99)  # other initial weights and RNG state: all must come from the state
    torch.randn(5)
    state = torch.load(io.BytesIO(buf.getvalue()), weights_only=True)
    model.load_state_dict(state["model"])
    second = _loop(model, loss, data)
    second.load_state_dict(state["loop"])
    after = second.run()
    assert after.stopped is None and second.global_step == full.global_step == 20
    for p, q in zip(model.parameters(), reference):
        assert torch.equal(p, q)
    assert second.optimizer.param_groups[0]["lr"] == full.optimizer.param_groups[0]["lr"]
    done = before.losses + after.losses
    assert done[: len(before.losses)] == full_losses[: len(before.losses)]
    assert len(done) == 4 and all(math.isclose(a, b, rel_tol=1e-12) for a, b in zip(done, full_losses))


def test_lr_decay_is_exponential_from_lr_to_lr_times_decay():
    w = torch.zeros(2, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.5)
    lrs = []
    loop = FitLoop(lambda: (w**2).sum(), opt, epochs=10, lr_decay=0.01,
                   on_epoch_end=lambda loop, loss: lrs.append(opt.param_groups[0]["lr"]))
    loop.run()
    gamma = 0.01 ** (1 / 10)
    # the chain lr <- lr * gamma of IW-SVI's local refit and of torch's ExponentialLR
    expected, lr = [], 0.5
    for _ in range(10):
        lr *= gamma
        expected.append(lr)
    assert lrs == expected
    assert math.isclose(lrs[-1], 0.5 * 0.01, rel_tol=1e-12)


def test_lr_decay_plans_over_max_steps_and_a_torch_scheduler_works_too():
    w = torch.zeros(2, requires_grad=True)
    opt = torch.optim.SGD([w], lr=1.0)
    FitLoop(lambda x: (w - x).pow(2).sum(), opt, torch.ones(8, 2), batch_size=2, epochs=100, max_steps=6,
            lr_decay=0.5).run()
    assert math.isclose(opt.param_groups[0]["lr"], 0.5, rel_tol=1e-12)
    opt = torch.optim.SGD([w], lr=1.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.1)
    FitLoop(lambda: w.sum(), opt, epochs=4, lr_scheduler=sched).run()
    assert math.isclose(opt.param_groups[0]["lr"], 0.01)
    with pytest.raises(ValueError, match="not both"):
        FitLoop(lambda: w.sum(), opt, lr_decay=0.5, lr_scheduler=sched)


def test_stop_hook_and_max_steps():
    model, loss, data = _problem()
    seen = []
    loop = _loop(model, loss, data, on_epoch_end=lambda loop, mean: seen.append((loop.epoch, mean)),
                 stop=lambda loop: loop.epoch == 2 and "no improvement")
    result = loop.run()
    assert result.stopped == "no improvement" and loop.epoch == 2 and [e for e, _ in seen] == [1, 2]
    assert [m for _, m in seen] == result.losses
    result = loop.run()  # run() again continues: the hook no longer says stop
    assert result.stopped is None and loop.epoch == 4 and len(result.losses) == 2

    model, loss, data = _problem()
    loop = _loop(model, loss, data, max_steps=7)
    result = loop.run()
    # the cap closes the second epoch after 2 of its 5 steps
    assert result.stopped == "max_steps" and loop.global_step == 7 and loop.epoch == 2 and len(result.losses) == 2


def test_progress_off_writes_nothing_and_on_shows_a_bar(capfd):
    model, loss, data = _problem()
    _loop(model, loss, data, progress=False).run()
    assert capfd.readouterr().err == ""
    _loop(model, loss, data, progress=True, desc="fitting").run()
    assert "fitting 1/4" in capfd.readouterr().err


def test_full_batch_leaf_gradients_labelled_data_and_order():
    # full batch on two leaves only: the "model" parameter, part of the graph, gets no gradient
    frozen = torch.ones(3, requires_grad=True)
    loc = torch.zeros(3, requires_grad=True)
    calls = []
    loop = FitLoop(lambda: calls.append(1) or ((loc - frozen) ** 2).sum(), torch.optim.Adam([loc], lr=0.1), epochs=5,
                   grad_inputs_only=True)
    result = loop.run()
    assert len(calls) == 5 == len(result.losses) and result.losses[-1] < result.losses[0]
    assert frozen.grad is None and loc.grad is not None

    # a tuple of tensors: the loss gets each tensor's rows; rows are visited in epoch_order(seed, epoch)
    x, t = torch.arange(10.0), torch.arange(10) * 2
    seen = []
    w = torch.zeros((), requires_grad=True)
    FitLoop(lambda xb, tb: seen.append((xb, tb)) or (w * xb).sum(), torch.optim.SGD([w], lr=0.0), (x, t),
            batch_size=4, epochs=2, seed=3).run()
    assert [len(xb) for xb, _ in seen] == [4, 4, 2, 4, 4, 2]
    assert all(torch.equal(tb, 2 * xb.long()) for xb, tb in seen)
    assert torch.equal(torch.cat([xb for xb, _ in seen[:3]]), x[epoch_order(3, 0, 10)])
    assert torch.equal(torch.cat([xb for xb, _ in seen[3:]]), x[epoch_order(3, 1, 10)])


def test_a_nonfinite_loss_is_a_clear_error():
    w = torch.zeros(1, requires_grad=True)
    with pytest.raises(FloatingPointError, match="the loss became nan by step 1"):
        FitLoop(lambda: w.sum() * math.nan, torch.optim.SGD([w], lr=0.1), epochs=3).run()


def test_a_signal_during_an_inner_loop_stops_the_outer_loop_too():
    w = torch.zeros(1, requires_grad=True)
    inner_results = []

    def inner(loop, mean):
        inner_loop = FitLoop(lambda: (w - 1).pow(2).sum(), torch.optim.SGD([w], lr=0.1), epochs=3,
                             on_epoch_end=lambda lp, m: signal.raise_signal(signal.SIGTERM))
        inner_results.append(inner_loop.run())

    outer = FitLoop(lambda: w.pow(2).sum(), torch.optim.SGD([w], lr=0.1), epochs=5, on_epoch_end=inner)
    result = outer.run()
    assert inner_results[0].signum == signal.SIGTERM and inner_results[0].losses and len(inner_results) == 1
    assert result.interrupted and result.signum == signal.SIGTERM and outer.epoch == 1


def test_agree_hook_decides_when_to_stop():
    w = torch.zeros(1, requires_grad=True)
    asked = []

    def agree(loop, flag):  # e.g. another rank received SIGTERM at step 4
        asked.append(flag)
        return loop.global_step == 4

    result = FitLoop(lambda: w.sum(), torch.optim.SGD([w], lr=0.1), epochs=9, agree=agree).run()
    assert result.interrupted and result.signum is None and len(result.losses) == 4 and asked == [False] * 5


def test_bad_arguments():
    w = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.1)
    with pytest.raises(ValueError, match="same first dimension"):
        FitLoop(lambda x, y: w.sum(), opt, (torch.zeros(3), torch.zeros(4)), batch_size=2)
    with pytest.raises(ValueError, match="batch_size needs data"):
        FitLoop(lambda: w.sum(), opt, batch_size=2)
    with pytest.raises(ValueError, match="lr_decay"):
        FitLoop(lambda: w.sum(), opt, lr_decay=0.0)
