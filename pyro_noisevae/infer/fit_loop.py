"""The one optimisation loop of the package: :class:`FitLoop`."""

import math
import signal
import sys
import threading
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

__all__ = ["FitLoop", "FitResult", "epoch_order"]


def epoch_order(seed, epoch, n):
    """
    The shuffled order of ``n`` rows in ``epoch``. It depends on ``(seed, epoch)`` only, so a resumed loop
    draws the same mini-batches as an uninterrupted one.
    """
    gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    return torch.randperm(n, generator=gen)


@dataclass
class FitResult:
    """What :meth:`FitLoop.run` did."""

    #: the mean loss of every epoch this call completed (per step when each epoch is one full-batch step)
    losses: list = field(default_factory=list)
    #: ``None`` if the loop reached its ``epochs``; else ``"interrupted"`` (SIGINT/SIGTERM), ``"max_steps"``,
    #: or the reason the ``stop`` hook returned
    stopped: str | None = None
    #: the signal that interrupted the loop (``None`` when another process asked, see ``agree``)
    signum: int | None = None

    @property
    def interrupted(self):
        return self.stopped == "interrupted"


class _Interrupt:
    """Turns SIGINT/SIGTERM into a flag checked between steps; a second signal gives up at once."""

    def __init__(self, enabled=True):
        self.enabled, self.signum, self._old = enabled, None, {}

    def __enter__(self):
        if self.enabled and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        # a loop run inside another loop's hook passes the signal on, so that the outer loop stops too
        outer = self._old.get(self.signum)
        if isinstance(getattr(outer, "__self__", None), _Interrupt):
            outer(self.signum, None)
        return False


class FitLoop:
    r"""
    Minimise ``loss_fn`` with ``optimizer``: epochs of mini-batches of ``data``, or full-batch steps.

    Each step calls ``optimizer.zero_grad()``, ``loss = loss_fn(*batch)``, ``loss.backward()``,
    ``optimizer.step()`` and then steps the learning-rate schedule. ``batch`` holds the rows of each tensor of
    ``data`` (a tensor or a tuple of tensors with the same first dimension) picked for the step; without
    ``batch_size`` every epoch is one step on all rows, and without ``data`` one step of ``loss_fn()``.
    The loop owns the position (``epoch``, ``step_in_epoch``, ``global_step``), the mean loss of the epoch in
    progress, the optimizer, the schedule and the torch RNG: :meth:`state_dict`/:meth:`load_state_dict` save
    and restore them (the parameters belong to the caller), so that a resumed loop continues bit-for-bit on CPU.
    The mini-batch order of every epoch is :func:`epoch_order` of ``(seed, epoch)``.

    SIGINT and SIGTERM (when ``handle_signals`` and :meth:`run` runs in the main thread) stop the loop after
    the current step; :meth:`run` then returns with ``stopped == "interrupted"`` and the position kept, ready
    for :meth:`state_dict`. A second signal raises ``KeyboardInterrupt`` at once.

    Mini-batch SVI (what :class:`~pyro_noisevae.training.Trainer` does)::

        loss = lambda x: elbo.differentiable_loss(vae.model, vae.guide, x, num_data=N) / N
        losses = FitLoop(loss, torch.optim.Adam(vae.parameters()), data, batch_size=100, epochs=10).run().losses

    Full-batch steps with the learning rate decayed from ``lr`` to ``lr * 0.1``, gradients for two leaf tensors
    only (IW-SVI's local refit; the model's parameters get no ``.grad``)::

        FitLoop(lambda: -bound(loc, log_scale).sum(), torch.optim.Adam([loc, log_scale], lr=0.05), epochs=100,
                lr_decay=0.1, grad_inputs_only=True).run()

    One loss per full-batch step (the robust linear VAE)::

        losses = FitLoop(lambda: elbo.differentiable_loss(m.model, m.guide, x) / len(x),
                         torch.optim.Adam(m.parameters(), lr=0.05), epochs=1000, lr_decay=0.05).run().losses

    A capped number of steps and a per-epoch callback (the DEEN/UVB denoisers)::

        FitLoop(lambda x: denoising_loss(energy, x, sigma), optimizer, x_train, batch_size=100, epochs=5,
                max_steps=2000, on_epoch_end=lambda loop, loss: print(loop.epoch, loss)).run()

    Labelled data and no progress bar (a classifier)::

        FitLoop(lambda x, t: F.cross_entropy(clf(x), t), torch.optim.Adam(clf.parameters()), (x_train, t_train),
                batch_size=128, epochs=3, seed=seed, progress=False).run()

    A stop hook, called after every epoch (validation-based early stopping goes here)::

        FitLoop(..., stop=lambda loop: loop.epoch >= 2 and valid_loss() > best and "no improvement").run()

    Resuming::

        torch.save({"model": model.state_dict(), "loop": loop.state_dict()}, path)
        ...                                    # a new process builds the same model, optimizer and loop
        model.load_state_dict(state["model"]); loop.load_state_dict(state["loop"]); loop.run()

    A runnable example, interrupted and resumed:

    >>> w = torch.zeros(3, requires_grad=True)
    >>> x = torch.arange(12.0).reshape(4, 3)
    >>> loop = FitLoop(lambda xb: ((xb - w) ** 2).mean(), torch.optim.SGD([w], lr=0.1), x, batch_size=2, epochs=3)
    >>> result = loop.run()
    >>> len(result.losses), result.stopped, loop.global_step
    (3, None, 6)
    >>> loop.epochs = 5                          # extend the target and continue
    >>> len(loop.run().losses), loop.epoch
    (2, 5)

    :param callable loss_fn: ``loss_fn(*batch)`` returning a scalar tensor (the mean over the batch, for a
        learning rate that does not depend on the batch size).
    :param torch.optim.Optimizer optimizer: the optimizer of the parameters to train.
    :param data: ``None``, a tensor ``(N, ...)`` or a tuple of tensors ``(N, ...)``.
    :param int batch_size: rows per step (the last batch of an epoch may be smaller); ``None``: all rows.
    :param int epochs: the target: :meth:`run` returns once ``epoch == epochs`` (an attribute; raise it to
        extend a finished loop).
    :param int max_steps: stop once ``global_step`` reaches this (mid-epoch too: the epoch is closed there).
    :param int max_steps_per_epoch: at most this many steps per epoch.
    :param shuffle: ``True`` (:func:`epoch_order`), ``False`` (rows in order) or ``order(epoch) -> LongTensor``.
    :param int seed: seed of the mini-batch order.
    :param float lr_decay: decay every learning rate exponentially, per step, to ``lr * lr_decay`` after the
        ``epochs`` (or ``max_steps``) planned at construction.
    :param lr_scheduler: any ``torch.optim.lr_scheduler`` on ``optimizer``, stepped after every step (instead
        of ``lr_decay``).
    :param callable on_log: ``on_log({"epoch", "step", "loss"})`` every ``log_every`` steps and at the end of
        each epoch, with the mean loss of those steps (the only host sync of the loss).
    :param callable on_epoch_end: ``on_epoch_end(loop, mean_loss)`` after every epoch.
    :param callable stop: ``stop(loop)`` after every epoch (after ``on_epoch_end``); a true value stops the
        loop, a string is the reason reported in :attr:`FitResult.stopped`.
    :param bool progress: show a tqdm bar (one per epoch; one over all epochs when each epoch is one step).
    :param str desc: label of the progress bar.
    :param bool grad_inputs_only: compute gradients for the optimizer's tensors only (``backward(inputs=...)``).
    :param callable agree: ``agree(loop, stop_requested) -> bool``, called before every step, so that
        processes that must step together (DDP) stop at the same step.
    :param bool handle_signals: catch SIGINT/SIGTERM during :meth:`run`.
    """

    def __init__(self, loss_fn, optimizer, data=None, *, batch_size=None, epochs=1, max_steps=None,
                 max_steps_per_epoch=None, shuffle=True, seed=0, lr_decay=None, lr_scheduler=None, on_log=None,
                 log_every=50, on_epoch_end=None, stop=None, progress=False, desc="epoch", grad_inputs_only=False,
                 agree=None, handle_signals=True):
        self.loss_fn, self.optimizer = loss_fn, optimizer
        if data is None:
            self._tensors = None
        else:
            self._tensors = (data,) if isinstance(data, torch.Tensor) else tuple(data)
            if not self._tensors or any(len(t) != len(self._tensors[0]) for t in self._tensors):
                raise ValueError("data must be a tensor or a tuple of tensors with the same first dimension")
            if len(self._tensors[0]) == 0:
                raise ValueError("data has no rows")
        if batch_size is not None and (self._tensors is None or int(batch_size) < 1):
            raise ValueError("batch_size needs data and must be >= 1")
        self.batch_size = None if batch_size is None else int(batch_size)
        self.epochs = int(epochs)
        self.max_steps = None if max_steps is None else int(max_steps)
        self.max_steps_per_epoch = None if max_steps_per_epoch is None else int(max_steps_per_epoch)
        self.shuffle, self.seed = shuffle, int(seed)
        if lr_decay is not None and lr_scheduler is not None:
            raise ValueError("pass lr_decay or lr_scheduler, not both")
        if lr_decay is not None:
            if not 0 < lr_decay <= 1:
                raise ValueError(f"lr_decay (final / initial learning rate) must be in (0, 1], got {lr_decay!r}")
            planned = self.epochs * self.steps_per_epoch
            planned = planned if self.max_steps is None else min(planned, self.max_steps)
            lr_scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=lr_decay ** (1.0 / max(planned, 1)))
        self.lr_scheduler = lr_scheduler
        self.on_log, self.log_every = on_log, log_every
        self.on_epoch_end, self.stop = on_epoch_end, stop
        self.progress, self.desc = progress, desc
        self._inputs = [p for g in optimizer.param_groups for p in g["params"]] if grad_inputs_only else None
        self.agree, self.handle_signals = agree, handle_signals
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self._epoch_loss, self._epoch_count = 0.0, 0

    @property
    def num_data(self):
        """Rows of ``data`` (``None`` without data)."""
        return None if self._tensors is None else len(self._tensors[0])

    @property
    def steps_per_epoch(self):
        steps = 1 if self.batch_size is None else math.ceil(self.num_data / self.batch_size)
        return steps if self.max_steps_per_epoch is None else min(steps, self.max_steps_per_epoch)

    def _capped(self):
        return self.max_steps is not None and self.global_step >= self.max_steps

    def step(self, *batch):
        """
        One optimisation step on ``batch`` (zero the gradients, ``loss_fn(*batch)``, backward, optimizer and
        schedule step), without moving the loop's position. Returns the detached loss.
        """
        self.optimizer.zero_grad(set_to_none=True)
        with torch.enable_grad():
            loss = self.loss_fn(*batch)
            loss.backward(inputs=self._inputs)
        self.optimizer.step()
        if self.lr_scheduler is not None:
            self.lr_scheduler.step()
        return loss.detach()

    def run(self):
        """Run until ``epoch == epochs``, ``max_steps``, the ``stop`` hook or a signal; returns a :class:`FitResult`."""
        result = FitResult()
        whole_run_bar = self.steps_per_epoch == 1
        bar = self._bar(self.epochs, self.epoch, self.desc) if whole_run_bar else None
        try:
            with _Interrupt(self.handle_signals) as interrupt:
                while self.epoch < self.epochs:
                    if self._capped():
                        result.stopped = "max_steps"
                        break
                    mean = self._run_epoch(interrupt, bar)
                    if mean is None:
                        result.stopped, result.signum = "interrupted", interrupt.signum
                        break
                    result.losses.append(mean)
                    if self.on_epoch_end is not None:
                        self.on_epoch_end(self, mean)
                    reason = self.stop(self) if self.stop is not None else None
                    if reason:
                        result.stopped = reason if isinstance(reason, str) else "stop"
                        break
        finally:
            if bar is not None:
                bar.close()
        return result

    def _bar(self, total, initial, desc):
        return tqdm(total=total, initial=initial, desc=desc, disable=not self.progress, leave=False,
                    mininterval=0.5 if sys.stderr.isatty() else 10.0, dynamic_ncols=True)

    def _order(self):
        n = self.num_data
        if callable(self.shuffle):
            order = self.shuffle(self.epoch)
        elif self.shuffle:
            order = epoch_order(self.seed, self.epoch, n)
        else:
            order = torch.arange(n)
        return order.to(self._tensors[0].device)

    def _batch(self, order, i):
        if self._tensors is None:
            return ()
        if order is None:
            return self._tensors
        rows = order[i * self.batch_size : (i + 1) * self.batch_size]
        return tuple(t[rows] for t in self._tensors)

    def _stop_requested(self, interrupt):
        flag = interrupt.signum is not None
        return flag if self.agree is None else self.agree(self, flag)

    def _run_epoch(self, interrupt, run_bar):
        """The rest of the current epoch: its mean loss, or ``None`` if interrupted (the position is kept)."""
        total = self.steps_per_epoch
        order = self._order() if self.batch_size is not None else None
        bar = run_bar or self._bar(total, self.step_in_epoch, f"{self.desc} {self.epoch + 1}/{self.epochs}")
        running, running_n = None, 0
        try:
            while self.step_in_epoch < total and not self._capped():
                if self._stop_requested(interrupt):
                    return None
                loss = self.step(*self._batch(order, self.step_in_epoch)).double()
                running = loss if running is None else running + loss
                running_n += 1
                self.step_in_epoch += 1
                self.global_step += 1
                bar.update(1)
                if running_n == self.log_every or self.step_in_epoch == total or self._capped():
                    self._flush(running, running_n, bar)
                    running, running_n = None, 0
        finally:
            if bar is not run_bar:
                bar.close()
            if running_n:  # interrupted with unlogged steps: they stay in the epoch's mean
                self._epoch_loss += running.item()
                self._epoch_count += running_n
        mean = self._epoch_loss / max(self._epoch_count, 1)
        self.epoch += 1
        self.step_in_epoch = 0
        self._epoch_loss, self._epoch_count = 0.0, 0
        return mean

    def _flush(self, running, n, bar):
        value = running.item()  # the host sync: every log_every steps
        if not math.isfinite(value):
            raise FloatingPointError(f"the loss became {value} by step {self.global_step}; lower the learning rate "
                                     "or check the data")
        self._epoch_loss += value
        self._epoch_count += n
        bar.set_postfix(loss=f"{value / n:.4g}")
        if self.on_log is not None:
            self.on_log({"epoch": self.epoch + 1, "step": self.global_step, "loss": value / n})

    def state_dict(self):
        """Position, mean loss of the epoch in progress, optimizer, schedule and torch RNG states."""
        state = {
            "optim": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "epoch_loss": float(self._epoch_loss),
            "epoch_count": self._epoch_count,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }
        if self.lr_scheduler is not None:
            state["lr_scheduler"] = self.lr_scheduler.state_dict()
        return state

    def load_state_dict(self, state):
        self.optimizer.load_state_dict(state["optim"])
        if self.lr_scheduler is not None and "lr_scheduler" in state:
            self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        self.epoch, self.step_in_epoch = int(state["epoch"]), int(state["step_in_epoch"])
        self.global_step = int(state["global_step"])
        self._epoch_loss, self._epoch_count = float(state["epoch_loss"]), int(state["epoch_count"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
