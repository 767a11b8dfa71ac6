"""
Training: configuration, the one fit loop, run folders, the ``train`` command and data-parallel training.

* :mod:`~pyro_noisevae.training.config`: :class:`TrainConfig`, its validation, and the registries of its
  choices (likelihoods, objectives, corruptions, encoders, datasets), which the command line reads.
* :mod:`~pyro_noisevae.training.factories`: the VAE, Pyro programs, fused objective and β schedule of a config.
* :mod:`~pyro_noisevae.infer.fit_loop` (re-exported here): :class:`FitLoop`, the optimisation loop (epochs or full-batch steps,
  progress, SIGINT/SIGTERM, learning-rate decay, stop hook, resumable state).
* :mod:`~pyro_noisevae.training.trainer`: :class:`Trainer` (mini-batch SVI of a VAE on the loop), the in-memory
  :func:`fit`, :func:`evaluate_elbo`.
* :mod:`~pyro_noisevae.training.run_folder`: :class:`RunFolder` (one owner process, atomic writes, stale
  temporaries removed) and the checkpoint format.
* :mod:`~pyro_noisevae.training.runs`: :func:`train` into a run folder, :func:`load_run`;
  :mod:`~pyro_noisevae.training.figures`: its PNGs.
* :mod:`~pyro_noisevae.training.cli`: ``pyro-noisevae train``; :mod:`~pyro_noisevae.training.distributed`: DDP.
"""

from .cli import add_model_arguments, register
from .config import (ACTIVATIONS, BINARIZE, CORRUPTIONS, DATASETS, ENCODERS, GRADIENT_ESTIMATORS, LIKELIHOODS,
                     OBJECTIVES, RUN_CONTROL, SPLITS, TrainConfig, config_differences)
from .factories import StepSchedule, build_fused_objective, build_model, build_programs, kl_warmup
from ..infer.fit_loop import FitLoop, FitResult, epoch_order
from .run_folder import BEST, CHECKPOINT, CheckpointError, RunFolder, RunFolderError, atomic_write, atomic_write_text, load_checkpoint
from .runs import build_trainer, epochs_without_improvement, eval_bound, load_run, resumed_config, train
from .trainer import SVIObjective, Trainer, evaluate_elbo, fit

__all__ = [
    "ACTIVATIONS",
    "BEST",
    "BINARIZE",
    "CHECKPOINT",
    "CORRUPTIONS",
    "CheckpointError",
    "DATASETS",
    "ENCODERS",
    "FitLoop",
    "FitResult",
    "GRADIENT_ESTIMATORS",
    "LIKELIHOODS",
    "OBJECTIVES",
    "RUN_CONTROL",
    "RunFolder",
    "RunFolderError",
    "SPLITS",
    "SVIObjective",
    "StepSchedule",
    "TrainConfig",
    "Trainer",
    "add_model_arguments",
    "atomic_write",
    "atomic_write_text",
    "build_fused_objective",
    "build_model",
    "build_programs",
    "build_trainer",
    "config_differences",
    "epoch_order",
    "epochs_without_improvement",
    "eval_bound",
    "evaluate_elbo",
    "fit",
    "kl_warmup",
    "load_checkpoint",
    "load_run",
    "register",
    "resumed_config",
    "train",
]
__all__[:] = sorted(set(__all__))
