"""Plumbing shared by the experiments: run identity, locking, training or loading, atomic writers, subsets, CLI."""

import argparse
import contextlib
import dataclasses
import functools
import hashlib
import json
import math
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data import load_dataset
from ..training import (
    CHECKPOINT,
    CheckpointError,
    RunFolderError,
    TrainConfig,
    atomic_write,
    atomic_write_text,
    load_checkpoint,
    load_run,
    train,
)

__all__ = [
    "NOT_IN_HASH",
    "ModelBudget",
    "cli_errors",
    "command_main",
    "figure",
    "fmt",
    "invoked_command",
    "load_split",
    "load_torch",
    "locked",
    "log",
    "read_json",
    "run_digest",
    "save_figure",
    "save_torch",
    "subset",
    "train_or_load",
    "weight_settings",
    "write_json",
    "write_text",
]

#: :class:`~pyro_noisevae.training.TrainConfig` fields that never change the trained weights: left out of run
#: hashes, and free to differ when a run folder is reused
NOT_IN_HASH = frozenset({"out", "device", "data_root", "log_every", "eval_size", "eval_split", "noisy_eval_std",
                         "patience", "lr_drops"})


# ----------------------------------------------------------------------------------------------------------
# run identity and training
# ----------------------------------------------------------------------------------------------------------


@dataclass
class ModelBudget:
    """
    Optimisation budget shared by the models of an experiment, mapped onto
    :class:`~pyro_noisevae.training.TrainConfig` by :meth:`train_config`. Experiments subclass it to add their
    architecture fields and defaults.

    :ivar int epochs, batch_size: Adam epochs and mini-batch size; ``lr`` its learning rate.
    :ivar int train_size: random subset of the training split (``None``: all of it).
    :ivar int z_dim: latent dimension.
    :ivar int seed: seed of initialization, mini-batch order and subsets.
    :ivar str device: ``"cpu"`` or ``"cuda"``; ``data_root`` the dataset folder.
    """

    epochs: int = 10
    train_size: int | None = None
    batch_size: int = 100
    lr: float = 1e-3
    z_dim: int = 50
    seed: int = 0
    device: str = "cpu"
    data_root: str | None = None

    def __post_init__(self):
        for name in ("epochs", "batch_size", "z_dim"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.train_size is not None and int(self.train_size) < 2:
            raise ValueError(f"train_size must be >= 2 or None, got {self.train_size}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr}")

    def train_config(self, **settings):
        """The :class:`~pyro_noisevae.training.TrainConfig` of this budget with the model ``settings``."""
        return TrainConfig(data_root=self.data_root, train_size=self.train_size, z_dim=self.z_dim, epochs=self.epochs,
                           batch_size=self.batch_size, lr=self.lr, seed=self.seed, device=self.device, **settings)


def weight_settings(cfg_dict):
    """The settings of a configuration dict that change the trained weights (all but :data:`NOT_IN_HASH`)."""
    return {k: v for k, v in cfg_dict.items() if k not in NOT_IN_HASH}


def run_digest(cfg, always=frozenset()):
    """
    8-hex-digit hash of the settings of ``cfg`` that change the trained weights. Only settings that differ from
    the :class:`~pyro_noisevae.training.TrainConfig` defaults enter it, so that a new trainer option does not
    rename existing runs; the fields in ``always`` enter it whatever their value.
    """
    defaults = TrainConfig().to_dict()
    d = {k: v for k, v in weight_settings(cfg.to_dict()).items()
         if k in always or k not in defaults or v != defaults[k]}
    return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:8]


@contextlib.contextmanager
def locked(folder):
    """Exclusive lock on a run folder (waits for it), so two experiments never train the same model at once."""
    import fcntl

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # not the training package's .owner.lock: train() takes that one itself, and refuses rather than waits
    with open(folder / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def train_or_load(cfg, progress=True, load=True):
    """
    Train the model of ``cfg`` into ``cfg.out`` unless it is already there: a finished run is loaded (when
    ``load``), an interrupted one resumed from its checkpoint.

    :returns: ``(vae, history, status)`` with ``status`` one of ``"trained"``, ``"resumed"``, ``"loaded"``;
        the VAE is in eval mode on ``cfg.device`` (``vae`` and ``history`` are ``None`` for a finished run
        when ``load=False``).
    :raises ValueError: if ``cfg.out`` holds a run whose saved configuration differs from ``cfg`` in a setting
        that changes the weights (e.g. a trainer default changed since it was trained).
    """
    out = Path(cfg.out)
    with locked(out):
        status = "trained"
        if (out / CHECKPOINT).exists():
            ckpt = load_checkpoint(out / CHECKPOINT)
            saved, wanted = weight_settings(ckpt["config"]), weight_settings(cfg.to_dict())
            # epochs may differ: a shorter run is continued, a longer one is used as is
            differ = sorted(k for k in set(saved) & set(wanted) if k != "epochs" and saved[k] != wanted[k])
            if differ:
                what = ", ".join(f"{k}: {saved[k]!r} there, {wanted[k]!r} here" for k in differ)
                raise ValueError(f"{out} holds a run trained with different settings ({what}); delete it or "
                                 "choose another runs folder")
            state = ckpt["trainer"]
            if state["epoch"] >= cfg.epochs and state["step_in_epoch"] == 0:
                if not load:
                    return None, None, "loaded"
                vae, _, history = load_run(out, map_location=cfg.device)
                return vae.to(cfg.device).eval(), history, "loaded"
            status = "resumed"
        vae, history = train(cfg, resume=status == "resumed", progress=progress, overwrite=status == "trained")
    return vae.eval(), history, status


# ----------------------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------------------


def subset(x, size, seed):
    """A seeded random subset of ``size`` rows of ``x`` (all of ``x`` when ``size`` is ``None`` or too large)."""
    if x is None or size is None or size >= x.shape[0]:
        return x
    return x[torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(int(seed)))[: int(size)]]


def load_split(dataset, split, size=None, subset_seed=0, root=None, **kwargs):
    """
    A split of ``dataset`` (:func:`~pyro_noisevae.data.load_dataset` with ``kwargs``) with ``data`` and
    ``targets`` replaced by the same random subset of ``size`` rows (:func:`subset` seeded by ``subset_seed``).
    """
    ds = load_dataset(dataset, split=split, root=root, **kwargs)
    return dataclasses.replace(ds, data=subset(ds.data, size, subset_seed),
                               targets=subset(ds.targets, size, subset_seed))


# ----------------------------------------------------------------------------------------------------------
# writers: atomic (the training package's writer), so a reader or an interrupted run never sees half a file
# ----------------------------------------------------------------------------------------------------------


def write_text(path, text):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)


def write_json(path, obj, sort_keys=True, allow_nan=True):
    write_text(path, json.dumps(obj, indent=2, sort_keys=sort_keys, allow_nan=allow_nan) + "\n")


def read_json(path):
    """The JSON object in ``path``, or ``None`` when there is no such file."""
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else None


def save_torch(path, obj):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: torch.save(obj, f))


def load_torch(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def figure(*args, **kwargs):
    """A :class:`matplotlib.figure.Figure`: object-oriented, so writing files never changes pyplot's backend."""
    from matplotlib.figure import Figure

    return Figure(*args, **kwargs)


def save_figure(fig, path, **kwargs):
    """``fig.savefig`` to ``path`` atomically, in the format its suffix names."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: fig.savefig(f, format=path.suffix[1:], **kwargs))


# ----------------------------------------------------------------------------------------------------------
# reports and command line
# ----------------------------------------------------------------------------------------------------------


def fmt(mean, se=None, digits=2):
    """``mean ± se`` for tables; ``–`` for a missing or NaN mean."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    return f"{mean:.{digits}f}" if se is None or math.isnan(se) else f"{mean:.{digits}f} ± {se:.{digits}f}"


def log(progress, msg):
    if progress:
        print(msg, file=sys.stderr, flush=True)


def invoked_command():
    """The command line of this process, as ``pyro-noisevae <arguments>``."""
    return "pyro-noisevae " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def cli_errors(fn):
    """Wrap a subcommand: user errors become one line on stderr and exit status 2."""

    @functools.wraps(fn)
    def wrapped(args):
        try:
            rc = fn(args)
        except (CheckpointError, FileNotFoundError, RunFolderError, ValueError) as e:
            print(f"pyro-noisevae {args.command}: error: {e}", file=sys.stderr)
            return 2
        return rc or 0

    return wrapped


def command_main(register, argv=None, **parser_kwargs):
    """Parse ``argv`` with the subcommands of ``register(subparsers)`` and run the chosen one."""
    parser = argparse.ArgumentParser(**parser_kwargs)
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)
