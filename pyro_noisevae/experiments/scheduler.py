"""The models of a paper table: their training budget, run names, and training in parallel processes."""

import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from ..training import ACTIVATIONS, TrainConfig
from .common import ModelBudget, log, run_digest, train_or_load

__all__ = ["TABLE_HASHED_FIELDS", "TrainBudget", "add_train_budget_arguments", "table_run_name", "train_all",
           "train_budget_from_args"]

#: the TrainConfig fields when the tables were first run: always hashed. A field added to TrainConfig later
#: enters the hash only when it differs from its default, so trained models stay findable across versions.
TABLE_HASHED_FIELDS = frozenset({
    "activation", "batch_size", "beta", "binarize", "corruption", "corruption_level", "dataset", "encoder", "epochs",
    "extra", "gradient_estimator", "hidden_dims", "kl_warmup_epochs", "likelihood", "lr", "max_steps",
    "num_corruptions", "num_particles", "objective", "partial_alpha", "seed", "sigma", "train_size", "train_split",
    "wni_bound", "z_dim",
})


@dataclass
class TrainBudget(ModelBudget):
    """
    Training budget shared by the models of a table.

    :ivar int epochs: passes over the training subset (constant-learning-rate Adam); with ``patience``, the cap.
    :ivar str activation: hidden-layer nonlinearity (the IWAE paper's 784-200-200-50 networks use ``"tanh"``).
    :ivar int patience: early stopping (``None``: off): each model stops once its validation bound (ELBO, or
        IWAE-K for IWAE models) has not improved for this many epochs, measured after every epoch on the
        whole validation split, and delivers the weights of its best epoch.
    :ivar int lr_drops: with ``patience``, the first ``lr_drops`` plateaus divide the learning rate by 10
        instead of stopping.
    :ivar int train_size: random subset of the training split (``None``: all of it, e.g. 50,000 binarized-MNIST or
        4,100 Caltech 101 images; a larger size means the whole split).
    :ivar int batch_size, lr: mini-batch size and Adam learning rate.
    :ivar int z_dim: latent dimension; ``hidden`` the hidden-layer width.
    :ivar int seed: seed of initialization, mini-batch order, subsets and evaluation draws.
    :ivar str device: ``"cpu"`` or ``"cuda"``; ``data_root`` the dataset folder.
    """

    epochs: int = 5
    hidden: int = 200
    activation: str = "softplus"
    patience: int | None = None
    lr_drops: int = 0

    def __post_init__(self):
        super().__post_init__()
        if int(self.hidden) < 1:
            raise ValueError(f"hidden must be >= 1, got {self.hidden}")
        if self.patience is not None and int(self.patience) < 1:
            raise ValueError(f"patience must be >= 1 or None, got {self.patience}")

    def train_config(self, **settings):
        """The model's :class:`~pyro_noisevae.training.TrainConfig`; with ``patience``, early stopping on the
        whole validation split (``settings`` must then name ``eval_split="valid"``)."""
        settings.setdefault("activation", self.activation)
        if self.patience is not None:
            settings.update(patience=int(self.patience), lr_drops=int(self.lr_drops), eval_size=None)
        return super().train_config(**settings)


def table_run_name(cfg, tag):
    """``<tag>-<hash>``, the hash covering every setting that changes the trained weights."""
    return f"{tag}-{run_digest(cfg, always=TABLE_HASHED_FIELDS)}"


def _train_timed(cfg, progress):
    t0 = time.perf_counter()
    _, _, status = train_or_load(cfg, progress=progress, load=False)
    return 0.0 if status == "loaded" else time.perf_counter() - t0


def _train_worker(cfg_dict, threads):
    torch.set_num_threads(threads)
    cfg = TrainConfig.from_dict(cfg_dict)
    return cfg.out, _train_timed(cfg, progress=False)


def train_all(configs, jobs=1, progress=True):
    """
    Train every config into its ``out`` folder unless finished there (an interrupted run is resumed), in ``jobs``
    processes when > 1. Returns ``{out: seconds}`` (0 for models that were already trained).
    """
    seconds = {}
    if jobs <= 1:
        for i, cfg in enumerate(configs):
            log(progress, f"[train {i + 1}/{len(configs)}] {Path(cfg.out).name}")
            seconds[cfg.out] = _train_timed(cfg, progress=progress)
        return seconds
    import multiprocessing

    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_train_worker, cfg.to_dict(), max(1, torch.get_num_threads() // jobs)) for cfg in configs]
        for i, fut in enumerate(futures):
            out, secs = fut.result()
            seconds[out] = secs
            log(progress, f"[train {i + 1}/{len(configs)}] {Path(out).name}: {secs:.0f}s")
    return seconds


def add_train_budget_arguments(p, epochs, epochs_help=None):
    """The ``training budget`` argument group of a table command (:func:`train_budget_from_args` reads it)."""
    d = TrainBudget()
    g = p.add_argument_group("training budget")
    g.add_argument("-n", "--epochs", type=int, default=epochs, help=epochs_help)
    g.add_argument("--patience", type=int, default=None,
                   help="early stopping: stop a model after this many epochs without a better validation bound and "
                        "keep its best epoch (--epochs is then the cap; default: off)")
    g.add_argument("--lr-drops", type=int, default=0,
                   help="with --patience: divide the learning rate by 10 on the first N validation plateaus instead "
                        "of stopping (default 0)")
    g.add_argument("--train-size", type=int, default=None,
                   help="random subset of the training split (default: all of it)")
    g.add_argument("-b", "--batch-size", type=int, default=d.batch_size)
    g.add_argument("-lr", "--learning-rate", dest="lr", type=float, default=d.lr)
    g.add_argument("--z-dim", type=int, default=d.z_dim)
    g.add_argument("--hidden", type=int, default=d.hidden, help="hidden-layer width (default %(default)s)")
    g.add_argument("--activation", default=d.activation, choices=ACTIVATIONS,
                   help="hidden-layer nonlinearity (default %(default)s; the IWAE paper uses tanh)")
    g.add_argument("--seed", type=int, default=d.seed)
    g.add_argument("--device", default="cpu", help="cpu or cuda")
    g.add_argument("--data-root", default=None)
    g.add_argument("--jobs", type=int, default=1, help="train this many models in parallel processes")


def train_budget_from_args(args):
    return TrainBudget(epochs=args.epochs, train_size=args.train_size, batch_size=args.batch_size, lr=args.lr,
                       z_dim=args.z_dim, hidden=args.hidden, seed=args.seed, device=args.device,
                       data_root=args.data_root, activation=args.activation,
                       patience=args.patience, lr_drops=args.lr_drops)
