"""The one fit loop: interruption, bit-for-bit resumption, learning-rate decay, stop hook, progress, batching modes."""

import io
import math
import re
import signal
import sys
import threading

import pytest
import torch
import tqdm

import pyro_noisevae.infer.fit_loop as fit_loop_module
from pyro_noisevae.training import FitLoop, FitResult, epoch_order



@pytest.fixture(autouse=True, scope="module")
def _process_private_tqdm_lock():
    """A process-private tqdm lock and no monitor thread while these tests run.

    tqdm's default write lock holds a ``multiprocessing.RLock``: a POSIX semaphore shared with every process forked
    after it was created. ``tqdm.refresh`` acquires it without ``try``/``finally`` (tqdm 4.70), so a bar whose
    display raises (e.g. ``initial=None``) leaves it held; under a tester that forks each run of these tests from one
    parent (mutmut's ``process_isolation = fork``), every later process then blocks forever in ``sem_wait``. A
    ``threading.RLock`` is copied, not shared, by ``fork``; and without the monitor thread no thread of the parent can
    hold it at a fork."""
    cls = tqdm.tqdm
    old_lock, old_interval = cls.get_lock(), cls.monitor_interval
    cls.set_lock(threading.RLock())
    cls.monitor_interval = 0
    yield
    cls.set_lock(old_lock)
    cls.monitor_interval = old_interval

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


def _send(sig):
    """Raise ``sig`` as a user would; fail (rather than kill or abort the test session) when FitLoop has no handler
    installed for it or its handler raises at the first signal."""
    handler = signal.getsignal(sig)
    assert callable(handler) and handler is not signal.default_int_handler, f"no FitLoop handler for {sig!r}"
    try:
        signal.raise_signal(sig)
    except KeyboardInterrupt:
        raise AssertionError("the first signal raised KeyboardInterrupt instead of stopping after the step") from None


def _interrupt_at(step):
    calls = {"n": 0}

    def on_log(record):
        calls["n"] += 1
        if record["step"] == step:
            _send(signal.SIGINT)

    return on_log


def test_interrupt_stops_after_the_current_step_and_keeps_the_position():
    model, loss, data = _problem()
    previous = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN under nohup
    loop = _loop(model, loss, data, log_every=1, on_log=_interrupt_at(7))
    result = loop.run()
    assert result.interrupted and result.signum == signal.SIGINT and result.stopped == "interrupted"
    # 5 steps per epoch: interrupted after step 7, i.e. 2 steps into the second epoch
    assert (loop.epoch, loop.step_in_epoch, loop.global_step) == (1, 2, 7) and len(result.losses) == 1
    assert signal.getsignal(signal.SIGINT) is previous  # the handler is restored


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
    message = "the loss became nan by step 1; lower the learning rate or check the data"
    with pytest.raises(FloatingPointError, match=f"^{re.escape(message)}$"):
        FitLoop(lambda: w.sum() * math.nan, torch.optim.SGD([w], lr=0.1), epochs=3).run()


def test_a_signal_during_an_inner_loop_stops_the_outer_loop_too():
    w = torch.zeros(1, requires_grad=True)
    inner_results = []

    def inner(loop, mean):
        inner_loop = FitLoop(lambda: (w - 1).pow(2).sum(), torch.optim.SGD([w], lr=0.1), epochs=3,
                             on_epoch_end=lambda lp, m: _send(signal.SIGTERM))
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


# ------------------------------------------------------------------------------------------------------------------
# issue 15 (mutation testing): the paths the tests above leave unexercised


def test_epoch_order_is_a_permutation_that_depends_on_seed_and_epoch():
    orders = {(s, e): epoch_order(s, e, 50) for s in (0, 1, 2) for e in (0, 1, 2)}
    for order in orders.values():
        assert torch.equal(order.sort().values, torch.arange(50))
    # nine (seed, epoch) pairs, nine different orders (50! orders: a collision is practically impossible)
    assert len({tuple(o.tolist()) for o in orders.values()}) == 9
    assert torch.equal(epoch_order(1, 2, 50), orders[(1, 2)])  # a function of (seed, epoch) only
    assert torch.equal(epoch_order(torch.tensor(1), 2.0, 50), orders[(1, 2)])  # as integers


def _recording_loss(w, losses):
    def loss(xb):
        value = ((xb - w) ** 2).mean()
        losses.append(value.item())
        return value

    return loss


def test_losses_are_epoch_means_and_on_log_gets_the_mean_of_its_steps():
    w = torch.zeros(2, requires_grad=True)
    x = torch.arange(20.0).reshape(10, 2)
    step_losses, records = [], []
    loop = FitLoop(_recording_loss(w, step_losses), torch.optim.SGD([w], lr=0.01), x, batch_size=2, epochs=2,
                   log_every=2, on_log=records.append)
    assert loop.num_data == 10 and loop.steps_per_epoch == 5
    result = loop.run()
    assert len(step_losses) == 10 and loop.global_step == 10
    for e in range(2):
        assert math.isclose(result.losses[e], sum(step_losses[5 * e: 5 * e + 5]) / 5, rel_tol=1e-12)
    # every log_every = 2 steps and at the end of each epoch (5 steps: after steps 2, 4 and 5)
    assert [(r["epoch"], r["step"]) for r in records] == [(1, 2), (1, 4), (1, 5), (2, 7), (2, 9), (2, 10)]
    spans = [(0, 2), (2, 4), (4, 5), (5, 7), (7, 9), (9, 10)]
    for r, (a, b) in zip(records, spans):
        assert math.isclose(r["loss"], sum(step_losses[a:b]) / (b - a), rel_tol=1e-12)


def test_an_interrupted_epoch_keeps_its_unlogged_steps_in_its_mean():
    w = torch.zeros(2, requires_grad=True)
    x = torch.arange(20.0).reshape(10, 2)
    step_losses = []
    loop = FitLoop(_recording_loss(w, step_losses), torch.optim.SGD([w], lr=0.01), x, batch_size=2, epochs=1,
                   log_every=50, agree=lambda lp, flag: lp.global_step == 3)
    result = loop.run()
    assert result.interrupted and result.losses == [] and (loop.epoch, loop.step_in_epoch) == (0, 3)
    state = loop.state_dict()
    assert state["epoch_count"] == 3 and math.isclose(state["epoch_loss"], sum(step_losses), rel_tol=1e-12)
    loop.agree = None
    result = loop.run()
    assert result.stopped is None and len(step_losses) == 5
    assert math.isclose(result.losses[0], sum(step_losses) / 5, rel_tol=1e-12)


def test_max_steps_per_epoch_shuffle_off_and_a_custom_order():
    w = torch.zeros((), requires_grad=True)
    x = torch.arange(10.0)
    seen = []
    loss = lambda xb: seen.append(xb) or (w * xb).sum()
    loop = FitLoop(loss, torch.optim.SGD([w], lr=0.0), x, batch_size=3, epochs=2, max_steps_per_epoch=2,
                   shuffle=False)
    assert loop.steps_per_epoch == 2
    result = loop.run()
    assert loop.global_step == 4 and len(result.losses) == 2
    assert [xb.tolist() for xb in seen] == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]] * 2
    seen.clear()
    epochs_asked = []
    order = lambda epoch: epochs_asked.append(epoch) or torch.arange(9, -1, -1)
    FitLoop(loss, torch.optim.SGD([w], lr=0.0), x, batch_size=4, epochs=2, shuffle=order).run()
    assert epochs_asked == [0, 1]
    assert [xb.tolist() for xb in seen[:3]] == [[9.0, 8.0, 7.0, 6.0], [5.0, 4.0, 3.0, 2.0], [1.0, 0.0]]


def test_a_second_signal_gives_up_at_once():
    w = torch.zeros(1, requires_grad=True)
    previous = signal.getsignal(signal.SIGINT)

    def twice(record):
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)

    loop = FitLoop(lambda: w.sum(), torch.optim.SGD([w], lr=0.1), epochs=3, log_every=1, on_log=twice)
    with pytest.raises(KeyboardInterrupt):
        loop.run()
    assert signal.getsignal(signal.SIGINT) is previous and loop.global_step == 1


def test_handle_signals_false_leaves_the_handlers_alone():
    w = torch.zeros(1, requires_grad=True)
    caught = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: caught.append(signum))
    try:
        loop = FitLoop(lambda: w.sum(), torch.optim.SGD([w], lr=0.1), epochs=3, handle_signals=False,
                       on_epoch_end=lambda lp, m: signal.raise_signal(signal.SIGTERM))
        result = loop.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert result.stopped is None and not result.interrupted and loop.epoch == 3 and caught == [signal.SIGTERM] * 3


def test_run_in_a_worker_thread_installs_no_handlers():
    w = torch.zeros(1, requires_grad=True)
    out = {}

    def work():
        try:
            out["result"] = FitLoop(lambda: (w - 1).pow(2).sum(), torch.optim.SGD([w], lr=0.1), epochs=2).run()
        except Exception as exc:  # signal.signal from a worker thread raises ValueError
            out["error"] = exc

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert "error" not in out and len(out["result"].losses) == 2


def test_result_and_loop_defaults():
    assert FitResult().stopped is None and not FitResult().interrupted and FitResult().losses == []
    assert FitResult(stopped="max_steps").interrupted is False
    w = torch.zeros(1, requires_grad=True)
    loop = FitLoop(lambda: w.sum(), torch.optim.SGD([w], lr=0.1))
    assert loop.num_data is None and loop.steps_per_epoch == 1 and loop.epochs == 1 and loop.lr_scheduler is None
    assert (loop.epoch, loop.step_in_epoch, loop.global_step) == (0, 0, 0)
    result = loop.run()
    assert len(result.losses) == 1 and loop.epoch == 1 and w.grad is not None
    # the stop hook's true non-string value is reported as "stop"
    result = FitLoop(lambda: w.sum(), torch.optim.SGD([w], lr=0.1), epochs=5, stop=lambda lp: True).run()
    assert result.stopped == "stop" and len(result.losses) == 1


def test_more_bad_arguments():
    w = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.1)
    with pytest.raises(ValueError, match="^data must be a tensor or a tuple of tensors with the same first dimension$"):
        FitLoop(lambda: w.sum(), opt, ())
    with pytest.raises(ValueError, match="^data has no rows$"):
        FitLoop(lambda x: w.sum(), opt, torch.zeros(0, 2))
    with pytest.raises(ValueError, match="^batch_size needs data and must be >= 1$"):
        FitLoop(lambda x: w.sum(), opt, torch.zeros(3), batch_size=0)
    FitLoop(lambda x: w.sum(), opt, torch.zeros(3), batch_size=1)  # the smallest batch is fine
    with pytest.raises(ValueError, match=r"^lr_decay \(final / initial learning rate\) must be in \(0, 1\], got 1.5$"):
        FitLoop(lambda: w.sum(), opt, lr_decay=1.5)
    with pytest.raises(ValueError, match="^pass lr_decay or lr_scheduler, not both$"):
        FitLoop(lambda: w.sum(), opt, lr_decay=0.5, lr_scheduler=torch.optim.lr_scheduler.StepLR(opt, 1))


def test_lr_decay_of_one_keeps_the_rate_and_an_empty_plan_decays_in_one_step():
    w = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.3)
    FitLoop(lambda: w.sum(), opt, epochs=4, lr_decay=1.0).run()
    assert opt.param_groups[0]["lr"] == 0.3
    opt = torch.optim.SGD([w], lr=0.3)
    loop = FitLoop(lambda: w.sum(), opt, epochs=0, lr_decay=0.5)  # nothing planned: gamma = decay ** (1 / 1)
    assert loop.lr_scheduler.gamma == 0.5 and loop.run().losses == []


def test_progress_bar_spans_the_run_when_each_epoch_is_one_step(capfd):
    w = torch.zeros(1, requires_grad=True)
    FitLoop(lambda: w.sum(), torch.optim.SGD([w], lr=0.1), epochs=3, progress=True, desc="refit").run()
    err = capfd.readouterr().err
    assert "refit: " in err and "0/3" in err and "refit 1/3" not in err
    loop = FitLoop(lambda: w.sum(), torch.optim.SGD([w], lr=0.1), epochs=2, progress=True, desc="refit")
    loop.run()
    capfd.readouterr()
    loop.epochs = 5  # continued: the bar starts at the epochs already done
    loop.run()
    assert "2/5" in capfd.readouterr().err


def test_each_step_sets_the_gradients_to_none_first():
    # a parameter the loss does not reach keeps no gradient (set_to_none): SGD with momentum or Adam then skip it
    w, v = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    v.grad = torch.ones(1)
    FitLoop(lambda: (w - 1).pow(2).sum(), torch.optim.SGD([w, v], lr=0.1), epochs=2).run()
    assert v.grad is None and w.grad is not None


def test_state_dict_without_a_schedule_and_the_rng():
    w = torch.zeros(1, requires_grad=True)
    loop = FitLoop(lambda: w.sum(), torch.optim.SGD([w], lr=0.1), epochs=2)
    loop.run()
    state = loop.state_dict()
    assert "lr_scheduler" not in state and (state["epoch"], state["global_step"]) == (2, 2)
    other = FitLoop(lambda: w.sum(), torch.optim.SGD([w], lr=0.1), epochs=2)
    expected = torch.rand(3)  # the draws that follow the saved RNG state
    other.load_state_dict(state)
    assert torch.equal(torch.rand(3), expected)
    assert (other.epoch, other.step_in_epoch, other.global_step) == (2, 0, 2) and other.run().losses == []


def test_resume_restores_a_step_schedule_and_a_state_without_one_loads_anywhere():
    def make(scheduled=True):
        w = torch.zeros(1, requires_grad=True)
        opt = torch.optim.SGD([w], lr=1.0)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5) if scheduled else None
        lrs = []
        loop = FitLoop(lambda: w.sum(), opt, epochs=8, lr_scheduler=sched,
                       on_epoch_end=lambda lp, m: lrs.append(opt.param_groups[0]["lr"]))
        return loop, lrs

    full, full_lrs = make()
    full.run()
    first, lrs = make()
    first.agree = lambda lp, flag: lp.global_step == 4
    assert first.run().interrupted
    state = first.state_dict()
    assert state["lr_scheduler"]["last_epoch"] == 4
    second, more = make()
    second.load_state_dict(state)
    second.run()
    # StepLR counts its own steps: a schedule restarted at 0 would halve the rate at other steps
    assert lrs + more == full_lrs and full_lrs[-1] == 0.25
    plain, _ = make(scheduled=False)
    plain.load_state_dict(state)  # a saved schedule is ignored by a loop without one
    assert plain.global_step == 4 and plain.lr_scheduler is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_state_dict_restores_the_cuda_rng():
    w = torch.zeros(1, requires_grad=True)
    loop = FitLoop(lambda: w.sum(), torch.optim.SGD([w], lr=0.1))
    state = loop.state_dict()
    assert state["cuda_rng"]  # one state per visible device
    expected = torch.rand(3, device="cuda")
    loop.load_state_dict(state)
    assert torch.equal(torch.rand(3, device="cuda"), expected)


# ------------------------------------------------------------------------------------------------------------------
# issue 15, second pass: what the progress bar shows (written to a fake stderr, a terminal or a log file)


class _Stderr(io.StringIO):
    """A stand-in for ``sys.stderr``: a terminal (``tty``) or a log file."""

    def __init__(self, tty=False):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


_SHOWN = re.compile(r"([^\r:]+): +\d+%\|[^|]*\| (\d+/\d+) ")


def _shown(text):
    """(label, "n/total") of every non-blank refresh of the bars written to ``text``."""
    return [m.groups() for m in map(_SHOWN.match, text.split("\r")) if m]


def test_progress_bar_shows_the_logged_loss_and_is_cleared_at_the_end(monkeypatch):
    err = _Stderr()
    monkeypatch.setattr(sys, "stderr", err)
    w = torch.zeros(1, requires_grad=True)
    # every step's loss is 2.5; 4 steps logged 2 at a time: the postfix is the mean per step of each pair
    FitLoop(lambda xb: (w * 0).sum() + 2.5, torch.optim.SGD([w], lr=0.1), torch.zeros(8), batch_size=2,
            log_every=2, progress=True, desc="fit").run()
    out = err.getvalue()
    assert re.findall(r"loss=([^\]]*)\]", out) == ["2.5", "2.5"]
    # leave=False: the last write blanks the line (carriage return, spaces, carriage return) and no line is left
    assert "\n" not in out and out.endswith("\r") and out.split("\r")[-2].strip() == ""


def test_per_epoch_bars_count_their_steps_from_where_the_epoch_resumes(monkeypatch):
    err = _Stderr()
    monkeypatch.setattr(sys, "stderr", err)
    w = torch.zeros((), requires_grad=True)
    loop = FitLoop(lambda xb: (w * xb).sum(), torch.optim.SGD([w], lr=0.0), torch.arange(10.0), batch_size=2,
                   epochs=2, progress=True, desc="fit", agree=lambda lp, flag: lp.global_step == 2)
    assert loop.run().interrupted  # after 2 of the first epoch's 5 steps, nothing logged yet
    assert _shown(err.getvalue()) == [("fit 1/2", "0/5")]
    err.seek(0), err.truncate()
    loop.agree = None
    loop.run()
    # the first epoch's bar starts at its 2 steps done; each bar is labelled with its epoch and counts to 5
    assert _shown(err.getvalue()) == [("fit 1/2", "2/5"), ("fit 1/2", "5/5"), ("fit 2/2", "0/5"), ("fit 2/2", "5/5")]


def test_whole_run_bar_continues_from_the_epochs_done(monkeypatch):
    err = _Stderr()
    monkeypatch.setattr(sys, "stderr", err)
    w = torch.zeros(1, requires_grad=True)
    loop = FitLoop(lambda: w.sum(), torch.optim.SGD([w], lr=0.1), epochs=2, progress=True, desc="refit")
    loop.run()
    assert _shown(err.getvalue()) == [("refit", "0/2"), ("refit", "1/2"), ("refit", "2/2")]
    err.seek(0), err.truncate()
    loop.epochs = 5
    loop.run()
    assert _shown(err.getvalue()) == [("refit", f"{k}/5") for k in (2, 3, 4, 5)]


@pytest.mark.parametrize("tty,interval", [(False, 10.0), (True, 0.5)], ids=["log", "terminal"])
def test_progress_bar_refreshes_rarely_in_a_log_and_follows_the_terminal_width(monkeypatch, tty, interval):
    # a log file (stderr not a terminal) gets a refresh at most every 10 s, a terminal every 0.5 s; the width is
    # re-read at every refresh (dynamic_ncols), so a resized terminal gets a bar that fits
    monkeypatch.setattr(sys, "stderr", _Stderr(tty))
    made = []

    class Recorded(tqdm.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(fit_loop_module, "tqdm", Recorded)
    w = torch.zeros((), requires_grad=True)
    FitLoop(lambda xb: (w * xb).sum(), torch.optim.SGD([w], lr=0.0), torch.arange(4.0), batch_size=2, epochs=2,
            progress=True).run()
    assert len(made) == 2 and all(bar.mininterval == interval for bar in made)
    assert all(callable(bar.dynamic_ncols) for bar in made)


def test_an_interrupted_epoch_adds_its_unlogged_steps_to_the_logged_ones():
    # log_every = 2 and a stop after step 3: steps 1-2 are logged (flushed), step 3 is not; both count
    w = torch.zeros(2, requires_grad=True)
    x = torch.arange(20.0).reshape(10, 2)
    step_losses = []
    loop = FitLoop(_recording_loss(w, step_losses), torch.optim.SGD([w], lr=0.01), x, batch_size=2, epochs=1,
                   log_every=2, agree=lambda lp, flag: lp.global_step == 3)
    assert loop.run().interrupted and len(step_losses) == 3
    state = loop.state_dict()
    assert state["epoch_count"] == 3 and math.isclose(state["epoch_loss"], sum(step_losses), rel_tol=1e-12)
    loop.agree = None
    assert math.isclose(loop.run().losses[0], sum(step_losses) / 5, rel_tol=1e-12) and len(step_losses) == 5


def test_each_full_batch_epoch_reports_the_loss_of_its_one_step():
    # (w - 1)^2 from w = 0 with SGD at lr 0.25: w = 0, 0.5, 0.75, so the losses are 1, 1/4, 1/16 exactly
    w = torch.zeros((), requires_grad=True)
    result = FitLoop(lambda: (w - 1) ** 2, torch.optim.SGD([w], lr=0.25), epochs=3).run()
    assert result.losses == [1.0, 0.25, 0.0625] and w.item() == 0.875


def test_lr_decay_is_planned_over_all_the_steps_of_all_epochs():
    # 3 epochs of 4 mini-batch steps: the rate reaches lr * lr_decay after the 12th step, not before
    w = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([w], lr=1.0)
    lrs = []
    FitLoop(lambda xb: (w - xb).pow(2).sum(), opt, torch.ones(8, 1), batch_size=2, epochs=3, lr_decay=0.5,
            on_epoch_end=lambda lp, m: lrs.append(opt.param_groups[0]["lr"])).run()
    assert [math.log2(lr) for lr in lrs] == pytest.approx([-1 / 3, -2 / 3, -1.0], rel=1e-12)


def test_default_options(monkeypatch):
    err = _Stderr()
    monkeypatch.setattr(sys, "stderr", err)
    w = torch.zeros((), requires_grad=True)
    other = torch.ones((), requires_grad=True)  # in the graph, not in the optimizer: gets a gradient by default
    x = torch.arange(120.0)
    seen, records = [], []

    def loss(xb):
        seen.append(xb)
        return (w * other * xb).sum()

    FitLoop(loss, torch.optim.SGD([w], lr=0.0), x, batch_size=60, epochs=1).run()
    # seed 0; no progress bar; gradients for every leaf of the graph (grad_inputs_only=False)
    assert torch.equal(torch.cat(seen), x[epoch_order(0, 0, 120)]) and err.getvalue() == ""
    assert other.grad is not None
    # on_log every 50 steps (and at the end of the epoch)
    FitLoop(lambda xb: (w * xb).sum(), torch.optim.SGD([w], lr=0.0), x, batch_size=1, on_log=records.append).run()
    assert [r["step"] for r in records] == [50, 100, 120]
    # the bars are labelled "epoch": "epoch 1/1" per epoch, "epoch" over a run of one-step epochs
    FitLoop(lambda xb: (w * xb).sum(), torch.optim.SGD([w], lr=0.0), x, batch_size=60, progress=True).run()
    FitLoop(lambda: w * 1.0, torch.optim.SGD([w], lr=0.0), progress=True).run()
    assert {label for label, _ in _shown(err.getvalue())} == {"epoch 1/1", "epoch"}
