"""SVI training of noise-model VAEs: an in-memory :func:`fit` and a run-folder trainer :func:`train`.

The run folder written by :func:`train` holds ``config.json``, ``metrics.jsonl``, ``checkpoint.pt`` (written
atomically every epoch and on SIGINT/SIGTERM) and PNGs (reconstructions of clean and noisy test images,
prior samples, loss curves). ``--resume`` continues an interrupted run; on CPU the resumed run is bit-for-bit
the uninterrupted one, because the mini-batch order of every epoch is derived from ``(seed, epoch)`` and the
torch RNG state is checkpointed.
"""

import argparse
import dataclasses
import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyro
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from tqdm import tqdm

from .handlers import beta_scale
from .analysis import active_units
from .models import LIKELIHOODS, VAE, FusedVAEObjective, check_data, elbo_terms

__all__ = [
    "CheckpointError",
    "TrainConfig",
    "Trainer",
    "add_model_arguments",
    "build_model",
    "build_programs",
    "evaluate_elbo",
    "fit",
    "load_checkpoint",
    "load_run",
    "train",
]

CHECKPOINT = "checkpoint.pt"
_FORMAT = "pyro_noisevae.checkpoint/1"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or does not belong to this run."""


@dataclass
class TrainConfig:
    """
    Everything that defines a training run (saved as ``config.json`` in the run folder).

    Data: ``dataset`` (mnist | binarized-mnist | frey-face | caltech101), ``data_root``, ``train_split``,
    ``eval_split``, ``binarize`` (None | threshold | dynamic: dynamic resamples every mini-batch),
    ``train_size``/``eval_size`` (random subsets, for quick runs).
    Model: ``likelihood`` (bernoulli | normal | laplace | noisy-bernoulli | learned-normal), ``sigma`` (the
    fixed imaginary σ, the Laplace b, or the initial learned σ), ``beta`` and ``kl_warmup_epochs`` (β rises
    linearly from 0 over that many epochs), ``z_dim``, ``hidden_dims``, ``activation``, ``encoder``.
    Objective: ``objective`` (trace | meanfield | iwae), ``num_particles``, ``gradient_estimator``, and the
    denoising guide's ``corruption``, ``corruption_level``, ``num_corruptions``, ``partial_alpha``.
    Optimisation: ``epochs``, ``batch_size``, ``lr``, ``seed``, ``device``, ``max_steps`` (cap per epoch).
    Execution: ``distributed`` (DDP over ``torchrun`` processes), ``fast_path`` (train with the fused tensor
    objective :class:`~pyro_noisevae.models.FusedVAEObjective`, same estimator and random draws as the Pyro
    programs; ``False`` runs the Pyro ELBO on the programs of :func:`build_programs`).
    """

    dataset: str = "mnist"
    data_root: str | None = None
    train_split: str = "trainval"
    eval_split: str = "test"
    binarize: str | None = None
    train_size: int | None = None
    eval_size: int | None = None
    likelihood: str = "normal"
    sigma: float | None = 0.2
    beta: float = 1.0
    kl_warmup_epochs: float = 0.0
    z_dim: int = 50
    hidden_dims: tuple = (500, 500)
    activation: str = "softplus"
    encoder: str = "mlp"
    wni_bound: float | None = None
    objective: str = "trace"
    num_particles: int = 1
    gradient_estimator: str = "standard"
    corruption: str = "none"
    corruption_level: float = 0.0
    num_corruptions: int = 1
    partial_alpha: float = 1.0
    epochs: int = 10
    batch_size: int = 100
    lr: float = 1e-3
    seed: int = 0
    device: str = "cpu"
    max_steps: int | None = None
    log_every: int = 50
    noisy_eval_std: float = 0.5
    out: str = "runs/sigma_vae"
    distributed: bool = False
    fast_path: bool = True
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.hidden_dims = tuple(int(h) for h in self.hidden_dims)
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {self.likelihood!r}")
        if self.likelihood == "bernoulli":
            self.sigma = None
        elif self.sigma is not None and not (math.isfinite(self.sigma) and self.sigma > 0):
            raise ValueError(f"sigma must be a finite number > 0, got {self.sigma}")
        for name in ("epochs", "batch_size", "z_dim", "num_particles", "num_corruptions", "log_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (math.isfinite(self.beta) and self.beta > 0):
            raise ValueError(f"beta must be a finite number > 0, got {self.beta}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr}")
        if self.kl_warmup_epochs < 0:
            raise ValueError(f"kl_warmup_epochs must be >= 0, got {self.kl_warmup_epochs}")
        if self.binarize not in (None, "threshold", "dynamic"):
            raise ValueError(f"binarize must be None, 'threshold' or 'dynamic', got {self.binarize!r}")
        if self.objective not in ("trace", "meanfield", "iwae"):
            raise ValueError(f"objective must be 'trace', 'meanfield' or 'iwae', got {self.objective!r}")

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["hidden_dims"] = list(self.hidden_dims)
        return d

    @classmethod
    def from_dict(cls, d):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}")
        return cls(**d)


# ----------------------------------------------------------------------------------------------------------
# model / objective construction
# ----------------------------------------------------------------------------------------------------------


def build_model(cfg, x_dim, image_shape=None):
    """
    The :class:`~pyro_noisevae.models.VAE` described by ``cfg`` for data of dimension ``x_dim``.

    Encoders (``cfg.encoder``): ``mlp`` (:class:`~pyro_noisevae.nn.MLPEncoder`), ``wni``
    (:class:`~pyro_noisevae.nn.WNIEncoder`, the same MLP with every weight vector's norm bounded by
    ``cfg.wni_bound``), ``gru`` (:class:`~pyro_noisevae.nn.GRUEncoder` reading the ``image_shape`` rows, with
    ``hidden_dims[0]`` units).
    """
    from .nn import GRUEncoder, WNIEncoder

    encoder = None
    if cfg.encoder == "wni":
        if cfg.wni_bound is None:
            raise ValueError("encoder 'wni' needs --wni-bound (the bound H > 0 on every weight vector's norm)")
        encoder = WNIEncoder(x_dim, cfg.z_dim, cfg.hidden_dims, bound=cfg.wni_bound, activation=cfg.activation)
    elif cfg.encoder == "gru":
        if image_shape is None or len(image_shape) != 2 or image_shape[0] * image_shape[1] != x_dim:
            raise ValueError(f"encoder 'gru' reads image rows and needs image_shape (H, W) with H*W = {x_dim}, "
                             f"got {image_shape!r}")
        encoder = GRUEncoder(tuple(image_shape), cfg.z_dim, hidden_size=cfg.hidden_dims[0])
    elif cfg.encoder != "mlp":
        raise ValueError(f"encoder must be one of {ENCODERS}, got {cfg.encoder!r}")
    return VAE(
        x_dim=x_dim,
        z_dim=cfg.z_dim,
        hidden_dims=cfg.hidden_dims,
        likelihood=cfg.likelihood,
        sigma=cfg.sigma,
        activation=cfg.activation,
        encoder=encoder,
    )


#: ``--encoder`` choices
ENCODERS = ("mlp", "wni", "gru")


def _denoising_guide(vae, cfg):
    """The :class:`~pyro_noisevae.guides.DenoisingGuide` over the VAE's encoder that ``cfg`` asks for, or ``None``."""
    from .distributions import make_corruption
    from .guides import DenoisingGuide

    if cfg.corruption != "none":
        return DenoisingGuide.from_encoder(vae.encoder, make_corruption(cfg.corruption, cfg.corruption_level),
                                           num_corruptions=cfg.num_corruptions, alpha=cfg.partial_alpha)
    if cfg.num_corruptions != 1 or cfg.partial_alpha != 1.0:
        raise ValueError("--num-corruptions and --partial-alpha need a --corruption (gaussian or salt-and-pepper)")
    return None


# EXTENSION POINT: objectives and guides
def build_programs(vae, cfg, beta=None):
    """
    The ``(model, guide, elbo)`` triple SVI optimises for ``cfg``.

    * Objective (``cfg.objective``): ``trace`` (:class:`~pyro.infer.Trace_ELBO`), ``meanfield``
      (:class:`~pyro.infer.TraceMeanField_ELBO`) or ``iwae`` (:class:`~pyro_noisevae.infer.IWAE_ELBO` with
      ``cfg.gradient_estimator`` ``standard`` | ``dreg``), each with ``cfg.num_particles`` vectorized particles.
    * Denoising guide (``cfg.corruption`` ``gaussian`` | ``salt-and-pepper`` at ``cfg.corruption_level``):
      :meth:`~pyro_noisevae.guides.DenoisingGuide.from_encoder` on the VAE's encoder, with
      ``cfg.num_corruptions`` corruptions per data point and partial-denoising weight ``cfg.partial_alpha``;
      the model is wrapped into the matching corruption plate. DVAE = ``trace`` + corruption, DIWAE =
      ``iwae`` + corruption.
    * β-scaling (a constant ``cfg.beta`` or a warm-up schedule passed as the callable ``beta``) wraps model
      **and** guide with :func:`~pyro_noisevae.handlers.beta_scale`, as the σ↔β equivalence requires.
    """
    from .infer import IWAE_ELBO

    beta = cfg.beta if beta is None else beta
    model, guide = vae.model, vae.guide
    nesting = 1
    denoiser = _denoising_guide(vae, cfg)
    if denoiser is not None:
        guide = denoiser
        model = guide.wrap_model(vae.model)
        nesting = guide.elbo_max_plate_nesting
    if cfg.gradient_estimator != "standard" and cfg.objective != "iwae":
        raise ValueError(f"--gradient-estimator {cfg.gradient_estimator} is implemented for --objective iwae only")
    vectorize = cfg.num_particles > 1
    if cfg.objective == "trace":
        elbo = Trace_ELBO(num_particles=cfg.num_particles, vectorize_particles=vectorize, max_plate_nesting=nesting)
    elif cfg.objective == "meanfield":
        elbo = TraceMeanField_ELBO(
            num_particles=cfg.num_particles, vectorize_particles=vectorize, max_plate_nesting=nesting
        )
    elif cfg.objective == "iwae":
        elbo = IWAE_ELBO(
            num_particles=cfg.num_particles,
            max_plate_nesting=nesting,
            vectorize_particles=True,
            gradient_estimator=cfg.gradient_estimator,
        )
    else:
        raise ValueError(f"objective must be 'trace', 'meanfield' or 'iwae', got {cfg.objective!r}")
    if callable(beta) or beta != 1.0:
        model, guide = beta_scale(model, beta=beta), beta_scale(guide, beta=beta)
    return model, guide, elbo


def build_fused_objective(vae, cfg, beta=None, validate=False):
    """
    The fast path of :func:`build_programs`: a :class:`~pyro_noisevae.models.FusedVAEObjective` whose
    ``objective(x, num_data=N)`` equals ``elbo.differentiable_loss(model, guide, x, num_data=N)`` for
    ``(model, guide, elbo) = build_programs(vae, cfg, beta)`` (same objective, particles, gradient estimator,
    denoising guide and β), in value and gradient, under the same random draws.

    :param bool validate: check every batch's values (the trainer validates its data set once instead).
    """
    beta = cfg.beta if beta is None else beta
    return FusedVAEObjective(vae, objective=cfg.objective, num_particles=cfg.num_particles,
                             gradient_estimator=cfg.gradient_estimator, denoiser=_denoising_guide(vae, cfg), beta=beta,
                             validate=validate)


# ----------------------------------------------------------------------------------------------------------
# evaluation
# ----------------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------------
# the training loop
# ----------------------------------------------------------------------------------------------------------


class _Interrupt:
    """Turns SIGINT/SIGTERM into a flag checked between steps, so a checkpoint is written before exit."""

    def __init__(self):
        self.signum = None
        self._old = {}

    def __enter__(self):
        if _is_main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signum is not None:  # second signal: give up at once
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False


def _is_main_thread():
    import threading

    return threading.current_thread() is threading.main_thread()


def _epoch_order(seed, epoch, n):
    gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    return torch.randperm(n, generator=gen)


#: with DDP, steps between the ranks' agreement on stopping (SIGINT/SIGTERM)
STOP_CHECK_EVERY = 10


class Trainer:
    """
    Mini-batch SVI with Adam on ``elbo.differentiable_loss(model, guide, x, num_data=N) / N``, the negative
    bound per data point (the data plate subsamples, so the estimate is unbiased for the full-data bound).

    The loop is resumable: :meth:`state_dict` / :meth:`load_state_dict` capture parameters, optimizer,
    epoch position and the torch RNG.

    :param VAE vae: the model; its parameters (and those of ``guide`` if it is a module) are optimised.
    :param callable model, guide: the Pyro programs (e.g. from :func:`build_programs`).
    :param pyro.infer.ELBO elbo: objective with ``differentiable_loss``.
    :param torch.Tensor data: training data ``(N, D)`` already on the training device.
    :param objective: optional fast path, a callable ``objective(x, num_data=N)`` returning the same loss as
        ``elbo.differentiable_loss(model, guide, x, num_data=N)`` (e.g. from :func:`build_fused_objective`);
        when set, steps use it instead of the Pyro ELBO.
    """

    def __init__(self, vae, model, guide, elbo, data, *, batch_size=100, lr=1e-3, seed=0, binarize=None, max_steps=None,
                 objective=None):
        self.vae, self.model, self.guide, self.elbo = vae, model, guide, elbo
        self.objective = objective
        self.dist = None  # a DistributedContext once enable_distributed() ran
        self._ddp = None
        self.data = data
        self.batch_size, self.seed, self.binarize, self.max_steps = int(batch_size), int(seed), binarize, max_steps
        params = list(vae.parameters())
        if isinstance(guide, torch.nn.Module):
            seen = {id(p) for p in params}
            params += [p for p in guide.parameters() if id(p) not in seen]
        self.optim = torch.optim.Adam(params, lr=lr)
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self._epoch_loss = torch.zeros((), dtype=torch.float64)
        self._epoch_count = 0

    @property
    def num_data(self):
        return self.data.shape[0]

    def steps_per_epoch(self):
        steps = math.ceil(self.num_data / self.batch_size)
        return steps if self.max_steps is None else min(steps, int(self.max_steps))

    def enable_distributed(self, ctx):
        """
        Data-parallel training over ``ctx.world_size`` processes (see :mod:`pyro_noisevae.distributed`): the
        objective is wrapped in :class:`~torch.nn.parallel.DistributedDataParallel` (which broadcasts rank 0's
        parameters) and every step uses this rank's shard of the global mini-batch. Call it after
        ``model``/``guide``/``elbo`` are set; one objective evaluation first creates any lazily built
        parameters, so that DDP sees all of them.
        """
        from torch.nn.parallel import DistributedDataParallel

        from .distributed import ShardedObjective

        self.dist = ctx
        objective = ShardedObjective(self.vae, self.model, self.guide, self.elbo, self.num_data, fused=self.objective)
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            objective(self.data[: max(ctx.world_size, 2)])
        self._ddp = DistributedDataParallel(objective, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)

    def step(self, x):
        """
        One Adam step on a mini-batch ``x (B, D)`` (the global batch when distributed: this rank takes its
        shard); returns the detached loss per data point (of this rank's shard).
        """
        if self.binarize == "dynamic":
            x = torch.bernoulli(x)
        self.optim.zero_grad(set_to_none=True)
        if self._ddp is not None:
            from .distributed import shard

            world = self.dist.world_size
            x = shard(x[: (x.shape[0] // world) * world], self.dist.rank, world)
            loss = self._ddp(x)
        elif self.objective is not None:
            loss = self.objective(x, num_data=self.num_data) / self.num_data
        else:
            loss = self.elbo.differentiable_loss(self.model, self.guide, x, num_data=self.num_data) / self.num_data
        loss.backward()
        self.optim.step()
        return loss.detach()

    def _stop_requested(self, interrupt):
        flag = interrupt is not None and interrupt.signum is not None
        if self._ddp is None:
            return flag
        # every rank must leave the loop at the same step, or the next collective would hang; the ranks agree
        # every STOP_CHECK_EVERY steps (an all-reduce read back on the host: not on every step of the hot loop)
        if self.step_in_epoch % STOP_CHECK_EVERY:
            return False
        t = torch.tensor([float(flag)], device=self.dist.device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return bool(t.item())

    def run_epoch(self, progress=True, interrupt=None, on_log=None, log_every=50, desc=None):
        """
        Run (the rest of) the current epoch. Returns the mean training loss per data point, or ``None`` if
        interrupted (the position is kept, so :meth:`state_dict` can checkpoint mid-epoch).
        """
        order = _epoch_order(self.seed, self.epoch, self.num_data).to(self.data.device)
        total = self.steps_per_epoch()
        bar = tqdm(
            total=total,
            initial=self.step_in_epoch,
            desc=desc or f"epoch {self.epoch + 1}",
            disable=not progress,
            mininterval=0.5 if sys.stderr.isatty() else 10.0,
            leave=False,
            dynamic_ncols=True,
        )
        running = torch.zeros((), dtype=torch.float64, device=self.data.device)
        running_n = 0
        try:
            while self.step_in_epoch < total:
                if self._stop_requested(interrupt):
                    return None
                i = self.step_in_epoch
                x = self.data[order[i * self.batch_size : (i + 1) * self.batch_size]]
                loss = self.step(x)
                running += loss.double()
                running_n += 1
                self.step_in_epoch += 1
                self.global_step += 1
                bar.update(1)
                if running_n == log_every or self.step_in_epoch == total:
                    value = running.item()  # host sync only every log_every steps
                    if not math.isfinite(value):
                        raise FloatingPointError(
                            f"the loss became {value} by step {self.global_step}; lower the learning rate or check "
                            "the data and sigma (a very small sigma makes the reconstruction term huge)"
                        )
                    self._epoch_loss += value
                    self._epoch_count += running_n
                    bar.set_postfix(loss=f"{value / running_n:.2f}")
                    if on_log is not None:
                        on_log({"kind": "train", "epoch": self.epoch + 1, "step": self.global_step, "loss": value / running_n})
                    running.zero_()
                    running_n = 0
        finally:
            bar.close()
            if running_n:  # interrupted with unlogged steps: keep them in the epoch average
                self._epoch_loss += running.item()
                self._epoch_count += running_n
        mean = float(self._epoch_loss) / max(self._epoch_count, 1)
        self.epoch += 1
        self.step_in_epoch = 0
        self._epoch_loss.zero_()
        self._epoch_count = 0
        return mean

    def state_dict(self):
        return {
            "vae": self.vae.state_dict(),
            "guide": self.guide.state_dict() if isinstance(self.guide, torch.nn.Module) else {},
            "optim": self.optim.state_dict(),
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "epoch_loss": float(self._epoch_loss),
            "epoch_count": self._epoch_count,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def load_state_dict(self, state):
        self.vae.load_state_dict(state["vae"])
        if isinstance(self.guide, torch.nn.Module) and state["guide"]:
            self.guide.load_state_dict(state["guide"])
        self.optim.load_state_dict(state["optim"])
        self.epoch, self.step_in_epoch = int(state["epoch"]), int(state["step_in_epoch"])
        self.global_step = int(state["global_step"])
        self._epoch_loss = torch.tensor(float(state["epoch_loss"]), dtype=torch.float64)
        self._epoch_count = int(state["epoch_count"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])


def fit(model, guide, data, *, epochs=1, batch_size=100, lr=1e-3, elbo=None, progress=True, seed=None, device=None, params_from=None):
    """
    Train a Pyro ``model``/``guide`` pair in memory with Adam; no files are written.

    Both programs must accept ``(x, num_data=N)`` with ``x`` a mini-batch ``(B, D)``; the objective per step is
    ``elbo.differentiable_loss(model, guide, x, num_data=N) / N``.

    :param model, guide: Pyro programs, e.g. ``vae.model``, ``vae.guide`` (bound methods of a PyroModule).
    :param torch.Tensor data: ``(N, D)`` training data.
    :param elbo: default ``Trace_ELBO(max_plate_nesting=1)``.
    :param params_from: the module whose parameters are optimised (default: the object ``model`` is bound
        to, e.g. the VAE).
    :returns: list of per-epoch mean losses (negative ELBO per data point).
    """
    check_data(data, name="data")
    module = params_from if params_from is not None else getattr(model, "__self__", None)
    if not isinstance(module, torch.nn.Module):
        raise TypeError("fit() needs params_from=<nn.Module> when model is not a bound method of a PyroModule")
    if device is not None:
        module.to(device)
        data = data.to(device)
    seed = int(torch.randint(0, 2**31 - 1, ()).item()) if seed is None else seed
    elbo = elbo if elbo is not None else Trace_ELBO(max_plate_nesting=1)
    losses = []
    with pyro.settings.context(module_local_params=True):
        trainer = Trainer(module, model, guide, elbo, data, batch_size=batch_size, lr=lr, seed=seed)
        for _ in range(int(epochs)):
            losses.append(trainer.run_epoch(progress=progress))
    return losses


# ----------------------------------------------------------------------------------------------------------
# run folders
# ----------------------------------------------------------------------------------------------------------


def _atomic_write_bytes(path, writer):
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        writer(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _atomic_write_text(path, text):
    _atomic_write_bytes(path, lambda p: Path(p).write_text(text))


def load_checkpoint(path, map_location="cpu"):
    """
    Load a training checkpoint safely (``torch.load(..., weights_only=True)``).

    :raises CheckpointError: if the file is missing, unreadable, or not a pyro_noisevae checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; start a new run without --resume, or point --out at the run folder")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated file, garbage, or a pickle that is not weights-only
        raise CheckpointError(
            f"checkpoint {path} could not be read ({type(e).__name__}: {e}); it is corrupt or was not written by "
            "pyro_noisevae. Delete it to start over."
        ) from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != _FORMAT:
        raise CheckpointError(f"{path} is not a pyro_noisevae training checkpoint (format tag {_FORMAT!r} missing)")
    return ckpt


def _save_checkpoint(out, cfg, trainer, history, image_shape):
    state = {
        "format": _FORMAT,
        "config": cfg.to_dict(),
        "data_shape": [int(trainer.data.shape[1]), *map(int, image_shape)],
        "trainer": trainer.state_dict(),
        "history": history,
    }
    _atomic_write_bytes(Path(out) / CHECKPOINT, lambda p: torch.save(state, p))
    _atomic_write_text(Path(out) / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in history))


def _subset(data, size, seed):
    if size is None or size >= data.shape[0]:
        return data
    gen = torch.Generator().manual_seed(seed)
    return data[torch.randperm(data.shape[0], generator=gen)[:size]]


def _load_data(cfg):
    from .data import load_dataset

    binarize = "threshold" if cfg.binarize == "threshold" else None
    train = load_dataset(cfg.dataset, split=cfg.train_split, root=cfg.data_root, binarize=binarize)
    test = load_dataset(
        cfg.dataset,
        split=cfg.eval_split,
        root=cfg.data_root,
        binarize="dynamic" if cfg.binarize == "dynamic" else binarize,
        seed=cfg.seed + 1,
    )
    image_shape = tuple(train.image_shape)
    return _subset(train.data, cfg.train_size, cfg.seed), _subset(test.data, cfg.eval_size, cfg.seed + 2), image_shape


def _make_schedule(cfg, trainer):
    if cfg.kl_warmup_epochs <= 0:
        return cfg.beta
    warm_steps = cfg.kl_warmup_epochs * trainer.steps_per_epoch()

    def beta():
        return cfg.beta * min(1.0, (trainer.global_step + 1) / warm_steps)

    return beta


def train(cfg, resume=False, progress=True, overwrite=False):
    """
    Train the VAE described by ``cfg`` (a :class:`TrainConfig`) and write its run folder ``cfg.out``.

    :param bool resume: continue from ``cfg.out/checkpoint.pt`` (the saved config is used; only ``epochs``
        may be raised).
    :param bool overwrite: start afresh even if ``cfg.out`` holds a previous run (its files are replaced).
    :returns: ``(vae, history)``; ``history`` is the list of metric records also written to ``metrics.jsonl``.
    :raises CheckpointError: when resuming without a readable checkpoint.
    :raises FileExistsError: when ``cfg.out`` already holds a checkpoint and ``resume`` is false.
    """
    out = Path(cfg.out)
    ckpt = None
    if resume:
        ckpt = load_checkpoint(out / CHECKPOINT)
        saved = TrainConfig.from_dict(ckpt["config"])
        saved.epochs = max(saved.epochs, cfg.epochs)
        saved.out = str(out)
        if cfg.device != saved.device:
            saved.device = cfg.device
        cfg = saved
    elif (out / CHECKPOINT).exists() and not overwrite:
        raise FileExistsError(f"{out} already holds a run; pass --resume to continue it, --overwrite to replace it, "
                              "or choose another --out")
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was requested but torch sees no CUDA device; use --device cpu")
    ctx = None
    if cfg.distributed:
        from .distributed import init_distributed

        ctx = init_distributed(cfg.device)
        device = ctx.device
    main = ctx is None or ctx.is_main  # only rank 0 writes files and prints
    progress = progress and main
    if main:
        out.mkdir(parents=True, exist_ok=True)

    train_data, test_data, image_shape = _load_data(cfg)
    train_data, test_data = train_data.to(device), test_data.to(device)
    pyro.set_rng_seed(cfg.seed)
    with pyro.settings.context(module_local_params=True):
        vae = build_model(cfg, train_data.shape[1], image_shape).to(device)
        # the schedule reads the trainer's step, so the programs are built after the trainer exists
        trainer = Trainer(vae, None, None, None, train_data, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed,
                          binarize=cfg.binarize, max_steps=cfg.max_steps)
        beta = _make_schedule(cfg, trainer)
        trainer.model, trainer.guide, trainer.elbo = build_programs(vae, cfg, beta=beta)
        if cfg.fast_path:
            trainer.objective = build_fused_objective(vae, cfg, beta=beta)
        if isinstance(trainer.guide, torch.nn.Module):  # a guide with its own parameters (e.g. a wrapper)
            trainer.optim.add_param_group({"params": [p for p in trainer.guide.parameters()
                                                      if all(p is not q for q in vae.parameters())]})
        history = []
        if ckpt is not None:
            trainer.load_state_dict(ckpt["trainer"])
            history = list(ckpt["history"])
        if ctx is not None:
            trainer.enable_distributed(ctx)
            # each rank draws its own latent noise (rank 0's RNG state is what a checkpoint holds)
            torch.manual_seed(cfg.seed + 1_000_003 * ctx.rank + trainer.global_step)
        if main:
            _atomic_write_text(out / "config.json", json.dumps(cfg.to_dict(), indent=2) + "\n")
        if ckpt is None:  # fail early on bad data, before any training
            check_data(train_data, name="training data")
            check_data(test_data, name="evaluation data")
            vae.likelihood.check_data(train_data if cfg.binarize != "dynamic" else torch.bernoulli(train_data[:1]))
            vae.likelihood.check_data(test_data)

        t_start = time.perf_counter()
        with _Interrupt() as interrupt:
            while trainer.epoch < cfg.epochs:
                epoch = trainer.epoch + 1
                steps_before, t0 = trainer.global_step, time.perf_counter()
                mean = trainer.run_epoch(progress=progress, interrupt=interrupt, on_log=history.append,
                                         log_every=cfg.log_every, desc=f"epoch {epoch}/{cfg.epochs}")
                elapsed = time.perf_counter() - t0
                if mean is None:
                    signum = interrupt.signum or signal.SIGTERM  # another rank may have received it
                    if main:
                        _save_checkpoint(out, cfg, trainer, history, image_shape)
                        print(f"\n{signal.Signals(signum).name} received: checkpoint saved at step "
                              f"{trainer.global_step} in {out}; continue with --resume", file=sys.stderr)
                    if ctx is not None:
                        ctx.close()
                    raise SystemExit(128 + signum)
                if not main:
                    continue
                metrics = evaluate_elbo(vae, test_data, seed=cfg.seed)
                record = {
                    "kind": "eval",
                    "epoch": epoch,
                    "step": trainer.global_step,
                    "train_loss": mean,
                    "test_elbo": metrics["elbo"],
                    "test_recon": metrics["recon"],
                    "test_kl": metrics["kl"],
                    "active_units": metrics["active_units"],
                    "beta": float(beta() if callable(beta) else beta),
                    "steps_per_sec": (trainer.global_step - steps_before) / max(elapsed, 1e-9),
                }
                history.append(record)
                _save_checkpoint(out, cfg, trainer, history, image_shape)
                if progress:
                    print(f"epoch {epoch}/{cfg.epochs}: train loss {mean:.2f}  test ELBO {metrics['elbo']:.2f} "
                          f"(recon {metrics['recon']:.2f}, KL {metrics['kl']:.2f})  "
                          f"{record['steps_per_sec']:.1f} steps/s", file=sys.stderr)
        if ctx is not None:
            ctx.close()
        if not main:
            return vae, history
        _write_figures(out, vae, test_data, image_shape, history, cfg)
        if progress:
            print(f"run folder: {out}  ({time.perf_counter() - t_start:.1f}s)", file=sys.stderr)
    return vae, history


def load_run(out, map_location="cpu"):
    """Rebuild the trained :class:`VAE` of a run folder: ``(vae, config, history)``."""
    ckpt = load_checkpoint(Path(out) / CHECKPOINT, map_location=map_location)
    cfg = TrainConfig.from_dict(ckpt["config"])
    x_dim, *image_shape = ckpt["data_shape"]
    with pyro.settings.context(module_local_params=True):
        vae = build_model(cfg, x_dim, tuple(image_shape))
        vae.load_state_dict(ckpt["trainer"]["vae"])
    return vae, cfg, ckpt["history"]


# ----------------------------------------------------------------------------------------------------------
# figures
# ----------------------------------------------------------------------------------------------------------


@torch.no_grad()
def _write_figures(out, vae, test_data, image_shape, history, cfg, n=16):
    from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend (e.g. inline) alone
    from torchvision.utils import make_grid, save_image

    h, w = image_shape
    gen = torch.Generator(device=test_data.device).manual_seed(cfg.seed)
    x = test_data[:n]
    noisy = x + cfg.noisy_eval_std * torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
    rows = [x, vae.reconstruct(x), noisy.clamp(0, 1), vae.reconstruct(noisy)]
    grid = torch.cat(rows).reshape(-1, 1, h, w).clamp(0, 1).cpu()
    save_image(make_grid(grid, nrow=n, padding=1, pad_value=1.0), out / "reconstructions.png")
    samples = vae.sample(64, generator=gen).reshape(-1, 1, h, w).clamp(0, 1).cpu()
    save_image(make_grid(samples, nrow=8, padding=1, pad_value=1.0), out / "samples.png")

    train_pts = [(r["step"], r["loss"]) for r in history if r["kind"] == "train"]
    eval_pts = [(r["step"], -r["test_elbo"]) for r in history if r["kind"] == "eval"]
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    if train_pts:
        ax.plot(*zip(*train_pts), label="train: −ELBO / point", lw=1)
    if eval_pts:
        ax.plot(*zip(*eval_pts), "o-", label="test: −ELBO / point")
    ax.set_xlabel("step")
    ax.set_ylabel("nats")
    ax.set_title(f"{cfg.dataset}, likelihood={cfg.likelihood}, σ={cfg.sigma}, β={cfg.beta}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "loss_curves.png", dpi=100)


# ----------------------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------------------


def _optional_float(s):
    return None if s.lower() == "none" else float(s)


def add_model_arguments(parser):
    """Model / objective / guide flags of ``pyro-noisevae train`` (shared with other subcommands)."""
    d = TrainConfig()
    g = parser.add_argument_group("model")
    g.add_argument("--likelihood", choices=LIKELIHOODS, default=d.likelihood,
                   help="decoder noise model: 'normal'/'laplace'/'noisy-bernoulli' use a FIXED imaginary sigma; "
                        "'learned-normal' learns one shared sigma; 'bernoulli' needs binary data")
    g.add_argument("--sigma", type=_optional_float, default=d.sigma,
                   help="fixed sigma (normal, noisy-bernoulli), Laplace scale b, or initial learned sigma (default %(default)s)")
    g.add_argument("--beta", type=float, default=d.beta, help="KL weight beta (default %(default)s)")
    g.add_argument("--kl-warmup-epochs", type=float, default=d.kl_warmup_epochs,
                   help="raise beta linearly from 0 over this many epochs (default %(default)s)")
    g.add_argument("--z-dim", type=int, default=d.z_dim)
    g.add_argument("--hidden-dims", type=int, nargs="+", default=list(d.hidden_dims))
    g.add_argument("--activation", default=d.activation, choices=["softplus", "relu", "tanh", "elu"])
    g.add_argument("--encoder", default=d.encoder, choices=ENCODERS,
                   help="encoder: 'mlp', 'wni' (weight-normalized, norms bounded by --wni-bound; AIR) or 'gru' "
                        "(GRU over image rows, hidden size = first --hidden-dims entry; DVAE paper) "
                        "(default %(default)s)")
    g.add_argument("--wni-bound", type=_optional_float, default=d.wni_bound,
                   help="bound H on every encoder weight vector's norm for --encoder wni")
    g = parser.add_argument_group("objective")
    g.add_argument("--objective", choices=["trace", "meanfield", "iwae"], default=d.objective,
                   help="trace/meanfield: the ELBO (analytic KL for meanfield); iwae: the importance-weighted bound")
    g.add_argument("--num-particles", type=int, default=d.num_particles,
                   help="K latent samples per data point (importance samples for iwae)")
    g.add_argument("--gradient-estimator", choices=["standard", "dreg"], default=d.gradient_estimator,
                   help="iwae gradient: standard or doubly reparameterized (default %(default)s)")
    g.add_argument("--corruption", default=d.corruption, choices=["none", "gaussian", "salt-and-pepper"],
                   help="corrupt the encoder's input (denoising guide: DVAE with trace, DIWAE with iwae)")
    g.add_argument("--corruption-level", type=float, default=d.corruption_level,
                   help="Gaussian sigma, or the salt-and-pepper rate in [0, 1]")
    g.add_argument("--num-corruptions", type=int, default=d.num_corruptions, help="M corruptions per data point")
    g.add_argument("--partial-alpha", type=float, default=d.partial_alpha,
                   help="partial denoising: weight of the denoising objective against the clean one (1 = full)")


def _add_train_parser(subparsers):
    d = TrainConfig()
    p = subparsers.add_parser(
        "train",
        help="train a sigma-VAE (or another noise-model VAE) and write a run folder",
        description="Train a VAE with SVI. Writes config.json, metrics.jsonl, checkpoint.pt and PNGs to --out.",
    )
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default=d.dataset, choices=["mnist", "binarized-mnist", "frey-face", "caltech101"])
    g.add_argument("--data-root", default=None, help="folder holding the datasets (default: $PYRO_NOISEVAE_DATA or ./data)")
    g.add_argument("--train-split", default=d.train_split)
    g.add_argument("--eval-split", default=d.eval_split)
    g.add_argument("--binarize", default=None, choices=["threshold", "dynamic"])
    g.add_argument("--train-size", type=int, default=None, help="train on a random subset of this size")
    g.add_argument("--eval-size", type=int, default=None, help="evaluate on a random subset of this size")
    add_model_arguments(p)
    g = p.add_argument_group("optimisation")
    g.add_argument("-n", "--epochs", type=int, default=d.epochs)
    g.add_argument("-b", "--batch-size", type=int, default=d.batch_size)
    g.add_argument("-lr", "--learning-rate", dest="lr", type=float, default=d.lr)
    g.add_argument("--seed", type=int, default=d.seed)
    g.add_argument("--device", default=d.device, help="cpu or cuda (default %(default)s)")
    g.add_argument("--max-steps", type=int, default=None, help="cap the steps per epoch (quick runs)")
    g.add_argument("--distributed", action="store_true",
                   help="data-parallel over torchrun processes (gloo on CPU, nccl on CUDA); --batch-size is the "
                        "global batch, split across processes")
    g.add_argument("--no-fast-path", dest="fast_path", action="store_false",
                   help="run the Pyro ELBO on the model/guide programs instead of the fused tensor objective (same "
                        "estimator and random draws; the fused path is faster)")
    g.add_argument("--log-every", type=int, default=d.log_every)
    g = p.add_argument_group("run folder")
    g.add_argument("-o", "--out", default=d.out, help="run folder (default %(default)s)")
    g.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    g.add_argument("--overwrite", action="store_true", help="replace a previous run in --out")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_train_main)
    return p


def _config_from_args(args):
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in vars(args).items() if k in names})


def _train_main(args):
    cfg = _config_from_args(args)
    try:
        if args.resume and args.overwrite:
            raise ValueError("--resume and --overwrite exclude each other")
        train(cfg, resume=args.resume, progress=not args.no_progress, overwrite=args.overwrite)
    except (CheckpointError, FileExistsError, FileNotFoundError, ValueError) as e:
        print(f"pyro-noisevae train: error: {e}", file=sys.stderr)
        return 2
    return 0


def register(subparsers):
    """Add the ``train`` subcommand to a CLI."""
    _add_train_parser(subparsers)
