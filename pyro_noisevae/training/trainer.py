"""Mini-batch SVI of a VAE on the fit loop: :class:`Trainer`, the in-memory :func:`fit`, and :func:`evaluate_elbo`."""

import sys

import pyro
import torch
from pyro.infer import Trace_ELBO
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..analysis import active_units
from ..models import check_data, elbo_terms
from .distributed import check_global_batches, shard, stop_agreement
from .factories import StepSchedule
from ..infer.fit_loop import FitLoop

__all__ = ["SVIObjective", "Trainer", "evaluate_elbo", "fit"]


class SVIObjective(nn.Module):
    """
    ``forward(x, step)``: the negative bound per data point of a mini-batch ``x`` at training step ``step``,
    ``elbo.differentiable_loss(model, guide, x, num_data=N) / N`` (or the fused objective's equal value), as an
    ``nn.Module`` that holds the model's (and a guide module's) parameters, so that
    :class:`~torch.nn.parallel.DistributedDataParallel` can wrap it.

    :param vae: the module whose parameters are trained.
    :param model: the Pyro model (e.g. from :func:`~pyro_noisevae.training.build_programs`).
    :param guide: the Pyro guide.
    :param elbo: the objective.
    :param int num_data: ``N``, the size of the data set the batches come from.
    :param fused: optional fast path, ``fused(x, num_data=N)`` equal to the Pyro loss (e.g. from
        :func:`~pyro_noisevae.training.build_fused_objective`).
    :param StepSchedule beta: the β schedule that ``model``/``guide``/``fused`` read; it is set to ``step``
        before every evaluation (``None`` when β does not depend on the step).
    """

    def __init__(self, vae, model, guide, elbo, num_data, fused=None, beta=None):
        super().__init__()
        self.vae = vae
        if isinstance(guide, nn.Module) and guide is not vae:
            self.guide_module = guide
        self.model, self.guide, self.elbo, self.num_data = model, guide, elbo, int(num_data)
        self.fused, self.beta = fused, beta

    def forward(self, x, step=0):
        if self.beta is not None:
            self.beta.at(step)
        if self.fused is not None:
            return self.fused(x, num_data=self.num_data) / self.num_data
        return self.elbo.differentiable_loss(self.model, self.guide, x, num_data=self.num_data) / self.num_data


class Trainer:
    """
    Mini-batch SVI with Adam on ``elbo.differentiable_loss(model, guide, x, num_data=N) / N``, the negative
    bound per data point (the data plate subsamples, so the estimate is unbiased for the full-data bound), run
    by a :class:`~pyro_noisevae.training.FitLoop` (``trainer.loop``): epochs of mini-batches in an order fixed by
    ``(seed, epoch)``, resumable through :meth:`state_dict` / :meth:`load_state_dict` (parameters, optimizer,
    position and torch RNG).

    :param vae: the model; its parameters (and those of ``guide`` if it is a module) are optimised.
    :param callable model: the Pyro model (e.g. from :func:`~pyro_noisevae.training.build_programs`).
    :param callable guide: the Pyro guide.
    :param pyro.infer.ELBO elbo: objective with ``differentiable_loss``.
    :param torch.Tensor data: training data ``(N, D)`` already on the training device.
    :param str binarize: ``"dynamic"`` draws Bernoulli pixels from every mini-batch.
    :param int max_steps: cap on the steps of each epoch.
    :param objective: optional fast path, a callable ``objective(x, num_data=N)`` returning the same loss as
        ``elbo.differentiable_loss(model, guide, x, num_data=N)`` (e.g. from
        :func:`~pyro_noisevae.training.build_fused_objective`); when set, steps use it instead of the Pyro ELBO.
    :param beta: a :class:`~pyro_noisevae.training.StepSchedule` that ``model``/``guide``/``objective`` read
        as their β: the trainer evaluates it at its current step (a KL warm-up).
    """

    def __init__(self, vae, model, guide, elbo, data, *, batch_size=100, lr=1e-3, seed=0, binarize=None,
                 max_steps=None, objective=None, beta=None, log_every=50):
        if beta is not None and not isinstance(beta, StepSchedule):
            raise TypeError(f"beta must be a StepSchedule (or None: the programs carry their β), got {type(beta).__name__}")
        self.vae, self.data, self.binarize = vae, data, binarize
        self.objective = SVIObjective(vae, model, guide, elbo, data.shape[0], fused=objective, beta=beta)
        self.dist = None  # a DistributedContext once enable_distributed() ran
        self._ddp = None
        params = list(vae.parameters())
        if isinstance(guide, nn.Module):  # a guide with its own parameters (e.g. a wrapper)
            seen = {id(p) for p in params}
            params += [p for p in guide.parameters() if id(p) not in seen]
        self.optim = torch.optim.Adam(params, lr=lr)
        self.loop = FitLoop(self._loss, self.optim, data, batch_size=batch_size, max_steps_per_epoch=max_steps,
                            seed=seed, log_every=log_every)

    model = property(lambda self: self.objective.model)
    guide = property(lambda self: self.objective.guide)
    elbo = property(lambda self: self.objective.elbo)
    epoch = property(lambda self: self.loop.epoch)
    step_in_epoch = property(lambda self: self.loop.step_in_epoch)
    global_step = property(lambda self: self.loop.global_step)

    @property
    def num_data(self):
        return self.data.shape[0]

    def steps_per_epoch(self):
        return self.loop.steps_per_epoch

    def _loss(self, x):
        if self.binarize == "dynamic":
            x = torch.bernoulli(x)
        if self._ddp is None:
            return self.objective(x, self.loop.global_step)
        return self._ddp(shard(x, self.dist.rank, self.dist.world_size), self.loop.global_step)

    def enable_distributed(self, ctx):
        """
        Data-parallel training over ``ctx.world_size`` processes (see :mod:`pyro_noisevae.training.distributed`):
        the objective is wrapped in :class:`~torch.nn.parallel.DistributedDataParallel` (which broadcasts rank
        0's parameters), every step uses this rank's shard of the global mini-batch, and the ranks agree on
        stopping (SIGINT/SIGTERM) every few steps. One objective evaluation first creates any lazily built
        parameters, so that DDP sees all of them.
        """
        check_global_batches(self.num_data, self.loop.batch_size, ctx.world_size, self.loop.steps_per_epoch)
        self.dist = ctx
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            self.objective(self.data[: max(ctx.world_size, 2)], self.loop.global_step)
        device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        self._ddp = DistributedDataParallel(self.objective, device_ids=device_ids)
        self.loop.agree = stop_agreement(ctx)

    def step(self, x):
        """
        One Adam step on a mini-batch ``x (B, D)`` (the global batch when distributed: this rank takes its
        shard) at the current position; returns the detached loss per data point (of this rank's shard).
        """
        return self.loop.step(x)

    def run_epoch(self, progress=True, on_log=None, log_every=50, desc="epoch"):
        """
        Run (the rest of) the current epoch. Returns the mean training loss per data point, or ``None`` if
        interrupted (the position is kept, so :meth:`state_dict` can checkpoint mid-epoch).
        """
        loop = self.loop
        loop.epochs, loop.progress, loop.on_log, loop.log_every, loop.desc = loop.epoch + 1, progress, on_log, log_every, desc
        result = loop.run()
        return None if result.interrupted else result.losses[-1]

    def state_dict(self):
        guide = self.objective.guide
        return {"vae": self.vae.state_dict(), "guide": guide.state_dict() if isinstance(guide, nn.Module) else {},
                **self.loop.state_dict()}

    def load_state_dict(self, state):
        self.vae.load_state_dict(state["vae"])
        guide = self.objective.guide
        if isinstance(guide, nn.Module) and state["guide"]:
            guide.load_state_dict(state["guide"])
        self.loop.load_state_dict(state)


def fit(model, guide, data, *, epochs=1, batch_size=100, lr=1e-3, elbo=None, progress=True, seed=None, device=None,
        params_from=None):
    """
    Train a Pyro ``model``/``guide`` pair in memory with Adam; no files are written. Ctrl-C (or SIGTERM) stops
    after the current step and returns the losses of the epochs completed so far.

    Both programs must accept ``(x, num_data=N)`` with ``x`` a mini-batch ``(B, D)``; the objective per step is
    ``elbo.differentiable_loss(model, guide, x, num_data=N) / N``.

    :param model: Pyro model, e.g. ``vae.model`` (a bound method of a PyroModule).
    :param guide: Pyro guide, e.g. ``vae.guide``.
    :param torch.Tensor data: ``(N, D)`` training data.
    :param elbo: default ``Trace_ELBO(max_plate_nesting=1)``.
    :param params_from: the module whose parameters are optimised (default: the object ``model`` is bound
        to, e.g. the VAE).
    :returns: list of per-epoch mean losses (negative ELBO per data point).
    """
    check_data(data, name="data")
    module = params_from if params_from is not None else getattr(model, "__self__", None)
    if not isinstance(module, nn.Module):
        raise TypeError("fit() needs params_from=<nn.Module> when model is not a bound method of a PyroModule")
    if device is not None:
        module.to(device)
        data = data.to(device)
    seed = int(torch.randint(0, 2**31 - 1, ()).item()) if seed is None else seed
    elbo = elbo if elbo is not None else Trace_ELBO(max_plate_nesting=1)
    with pyro.settings.context(module_local_params=True):
        trainer = Trainer(module, model, guide, elbo, data, batch_size=batch_size, lr=lr, seed=seed)
        trainer.loop.epochs, trainer.loop.progress = int(epochs), progress
        result = trainer.loop.run()
    if result.interrupted:
        print(f"fit: interrupted after step {trainer.global_step} (epoch {trainer.epoch + 1}); returning the losses "
              f"of the {len(result.losses)} completed epochs", file=sys.stderr)
    return result.losses


@torch.no_grad()
def evaluate_elbo(vae, data, batch_size=500, seed=0):
    r"""
    Test-set ELBO of the amortized (clean-input) guide, one reparameterized sample per point, with its
    two terms: :math:`\mathcal{L}(x) = E_q[\log p(x|z)] - \mathrm{KL}(q(z|x)\,\|\,N(0, I))`, the KL analytic
    (:func:`~pyro_noisevae.models.elbo_terms`).

    :param VAE vae: the model (its ``encoder``/``decoder``/``likelihood`` are used).
    :param torch.Tensor data: ``(N, D)``.
    :returns: dict of per-data-point means ``elbo``, ``recon``, ``kl`` (floats) and ``active_units``
        (:func:`~pyro_noisevae.analysis.active_units`: latent dimensions whose posterior mean varies across
        data, :math:`\mathrm{Var}_x(E_q[z]) > 0.01`; 0 for a single point).
    """
    gen = torch.Generator(device=data.device).manual_seed(seed)
    recon_sum, kl_sum, n = 0.0, 0.0, 0
    locs = []
    for start in range(0, data.shape[0], batch_size):
        x = data[start : start + batch_size]
        terms = elbo_terms(vae, x, generator=gen)
        recon_sum += terms["recon"].sum().item()
        kl_sum += terms["kl"].sum().item()
        n += x.shape[0]
        locs.append(terms["loc"])
    locs = torch.cat(locs)
    active = active_units(locs)[0] if locs.shape[0] > 1 else 0
    return {"elbo": (recon_sum - kl_sum) / n, "recon": recon_sum / n, "kl": kl_sum / n, "active_units": active}
