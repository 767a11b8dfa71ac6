"""The ``train`` command: ``pyro-noisevae train ...`` (also ``python -m pyro_noisevae train ...``)."""

import argparse
import dataclasses
import math
import sys
from pathlib import Path

import torch

from .config import (
    ACTIVATIONS,
    BINARIZE,
    CORRUPTIONS,
    DATASETS,
    ENCODERS,
    GRADIENT_ESTIMATORS,
    LIKELIHOODS,
    OBJECTIVES,
    RUN_CONTROL,
    SPLITS,
    TrainConfig,
    config_differences,
    nonnegative_float,
    positive_float,
    positive_int,
    unit_interval,
)
from .distributed import DistributedSetupError
from .run_folder import CHECKPOINT, CheckpointError, RunFolder, RunFolderError, load_checkpoint
from .runs import resumed_config, train

__all__ = ["add_model_arguments", "register"]

#: the errors a user can cause and fix: one line on stderr and exit status 2, no traceback
USER_ERRORS = (CheckpointError, RunFolderError, DistributedSetupError, FileExistsError, FileNotFoundError, ValueError,
               FloatingPointError)
#: the likelihoods whose scale ``--sigma`` sets (``--laplace-scale`` sets the Laplace decoder's)
SIGMA_LIKELIHOODS = tuple(lik for lik in LIKELIHOODS if lik not in ("bernoulli", "laplace"))

_DEFAULTS = TrainConfig()


def _arg_type(parse, check, name):
    """An argparse ``type``: ``check(parse(text))``, its ``ValueError`` reported as the argument's error."""

    def convert(text):
        try:
            return check(parse(text))
        except ValueError as e:
            message = str(e) if str(e).startswith("must") else f"must be {name}, got {text!r}"
            raise argparse.ArgumentTypeError(message) from None

    convert.__name__ = name  # argparse names the type in some messages
    return convert


POSITIVE_INT = _arg_type(int, positive_int, "an integer >= 1")
POSITIVE_FLOAT = _arg_type(float, positive_float, "a finite number > 0")
NONNEGATIVE_FLOAT = _arg_type(float, nonnegative_float, "a finite number >= 0")
UNIT_INTERVAL = _arg_type(float, unit_interval, "a number in [0, 1]")
INTEGER = _arg_type(int, lambda v: v, "an integer")


def _device(text):
    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"must be a torch device such as cpu, cuda or cuda:1, got {text!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text}: torch sees no CUDA device here; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(f"{text}: torch sees {torch.cuda.device_count()} CUDA device(s) here")
    return text


def _default(name):
    return f"(default {getattr(_DEFAULTS, name)})"


def add_model_arguments(parser):
    """
    Model / objective / guide flags of ``pyro-noisevae train`` (shared with other subcommands). Every default
    is ``None`` (a flag not given); the :class:`~pyro_noisevae.training.TrainConfig` default applies.
    """
    g = parser.add_argument_group("model")
    g.add_argument("--likelihood", choices=LIKELIHOODS,
                   help="decoder noise model: 'normal'/'noisy-bernoulli' with a FIXED imaginary sigma, 'laplace' with a "
                        "fixed scale b, 'learned-normal' learns one shared sigma, 'bernoulli' needs binary data "
                        + _default("likelihood"))
    g.add_argument("--sigma", type=POSITIVE_FLOAT,
                   help=f"sigma of the {'/'.join(SIGMA_LIKELIHOODS)} decoder (for learned-normal: the initial sigma) "
                        + _default("sigma"))
    g.add_argument("--laplace-scale", type=POSITIVE_FLOAT, metavar="B",
                   help=f"scale b of the laplace decoder (default {_DEFAULTS.sigma})")
    g.add_argument("--beta", type=POSITIVE_FLOAT, help="KL weight beta " + _default("beta"))
    g.add_argument("--kl-warmup-epochs", type=NONNEGATIVE_FLOAT,
                   help="raise beta linearly from 0 over this many epochs " + _default("kl_warmup_epochs"))
    g.add_argument("--z-dim", type=POSITIVE_INT, help=_default("z_dim"))
    g.add_argument("--hidden-dims", type=POSITIVE_INT, nargs="+", help=f"(default {' '.join(map(str, _DEFAULTS.hidden_dims))})")
    g.add_argument("--activation", choices=ACTIVATIONS, help=_default("activation"))
    g.add_argument("--encoder", choices=ENCODERS,
                   help="'mlp', 'wni' (weight-normalized, norms bounded by --wni-bound; AIR) or 'gru' (GRU over image "
                        "rows, hidden size = first --hidden-dims entry; DVAE paper) " + _default("encoder"))
    g.add_argument("--wni-bound", type=POSITIVE_FLOAT, help="bound H on every encoder weight vector's norm for --encoder wni")
    g = parser.add_argument_group("objective")
    g.add_argument("--objective", choices=OBJECTIVES,
                   help="trace/meanfield: the ELBO (analytic KL for meanfield); iwae: the importance-weighted bound "
                        + _default("objective"))
    g.add_argument("--num-particles", type=POSITIVE_INT,
                   help="K latent samples per data point (importance samples for iwae) " + _default("num_particles"))
    g.add_argument("--gradient-estimator", choices=GRADIENT_ESTIMATORS,
                   help="iwae gradient: standard or doubly reparameterized " + _default("gradient_estimator"))
    g.add_argument("--corruption", choices=CORRUPTIONS,
                   help="corrupt the encoder's input (denoising guide: DVAE with trace, DIWAE with iwae) "
                        + _default("corruption"))
    g.add_argument("--corruption-level", type=NONNEGATIVE_FLOAT, help="Gaussian sigma, or the salt-and-pepper rate in [0, 1]")
    g.add_argument("--num-corruptions", type=POSITIVE_INT, help="M corruptions per data point " + _default("num_corruptions"))
    g.add_argument("--partial-alpha", type=UNIT_INTERVAL,
                   help="partial denoising: weight of the denoising objective against the clean one (1 = full)")


def _add_train_parser(subparsers):
    p = subparsers.add_parser(
        "train",
        help="train a sigma-VAE (or another noise-model VAE) and write a run folder",
        description="Train a VAE with SVI. Writes config.json, metrics.jsonl, checkpoint.pt and PNGs to --out. "
                    "With --resume, the run's saved settings apply; only run-control flags (--epochs, --patience, --lr-drops, --device, "
                    "--data-root, --log-every, --distributed, --no-fast-path, --no-progress) may be given.",
    )
    g = p.add_argument_group("data")
    g.add_argument("--dataset", choices=DATASETS, help=_default("dataset"))
    g.add_argument("--data-root", help="folder holding the datasets (default: $PYRO_NOISEVAE_DATA or ./data)")
    g.add_argument("--train-split", choices=SPLITS, help=_default("train_split"))
    g.add_argument("--eval-split", choices=SPLITS, help=_default("eval_split"))
    g.add_argument("--binarize", choices=BINARIZE, help="binarize the images: at 0.5, or redrawn every mini-batch")
    g.add_argument("--train-size", type=POSITIVE_INT, help="train on a random subset of this size (default: all)")
    g.add_argument("--eval-size", type=POSITIVE_INT, help="evaluate on a random subset of this size (default: all)")
    add_model_arguments(p)
    g = p.add_argument_group("optimisation")
    g.add_argument("-n", "--epochs", type=POSITIVE_INT, help="the run's number of epochs " + _default("epochs"))
    g.add_argument("-b", "--batch-size", type=POSITIVE_INT, help=_default("batch_size"))
    g.add_argument("-lr", "--learning-rate", dest="lr", type=POSITIVE_FLOAT, help=_default("lr"))
    g.add_argument("--seed", type=INTEGER, help=_default("seed"))
    g.add_argument("--device", type=_device, help="cpu or cuda " + _default("device"))
    g.add_argument("--max-steps", type=POSITIVE_INT, help="cap the steps per epoch (quick runs)")
    g.add_argument("--patience", type=POSITIVE_INT,
                   help="early stopping: stop after this many epochs without a better validation bound (needs "
                        "--eval-split valid); the best epoch's weights are kept in best.pt, --epochs is the cap")
    g.add_argument("--lr-drops", type=int,
                   help="with --patience: divide the learning rate by 10 on the first N validation plateaus instead "
                        "of stopping (default 0)")
    g.add_argument("--distributed", action="store_true", default=None,
                   help="data-parallel over torchrun processes (gloo on CPU, nccl on CUDA); --batch-size is the "
                        "global batch, split across processes")
    g.add_argument("--no-fast-path", dest="fast_path", action="store_false", default=None,
                   help="run the Pyro ELBO on the model/guide programs instead of the fused tensor objective (same "
                        "estimator and random draws; the fused path is faster)")
    g.add_argument("--log-every", type=POSITIVE_INT, help="steps between training-loss records " + _default("log_every"))
    g = p.add_argument_group("run folder")
    g.add_argument("-o", "--out", default=_DEFAULTS.out, help="run folder (default %(default)s)")
    g.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its checkpoint, to its configured epochs (or --epochs)")
    g.add_argument("--overwrite", action="store_true", help="replace a previous run in --out")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_train_main)
    _one_line_errors(p)
    return p


def _one_line_errors(parser):
    # argparse prints the whole usage (dozens of lines for train) before the message; a user error is one line
    def error(message):
        parser.exit(2, f"{parser.prog}: error: {message} (see {parser.prog} --help)\n")

    parser.error = error


def _flags(parser_args):
    """``{config field: value}`` of the flags given on the command line (their defaults are ``None``)."""
    names = {f.name for f in dataclasses.fields(TrainConfig)} - {"out"}
    return {k: v for k, v in vars(parser_args).items() if k in names and v is not None}


_FLAG_NAMES = {"lr": "--learning-rate", "fast_path": "--no-fast-path"}


def _flag(name, likelihood):
    if name == "sigma" and likelihood == "laplace":
        return "--laplace-scale"
    return _FLAG_NAMES.get(name, "--" + name.replace("_", "-"))


def _scale_flags(args, likelihood):
    """``{"sigma": value}`` from ``--sigma`` or ``--laplace-scale``, whichever fits ``likelihood``."""
    if args.sigma is not None and args.laplace_scale is not None:
        raise ValueError("--sigma and --laplace-scale exclude each other: --sigma is the decoder's sigma, "
                         "--laplace-scale the scale b of --likelihood laplace")
    if args.laplace_scale is not None and likelihood != "laplace":
        raise ValueError(f"--laplace-scale is the scale b of --likelihood laplace; the likelihood is {likelihood!r}")
    if args.sigma is not None and likelihood == "laplace":
        raise ValueError("the laplace decoder's scale is set with --laplace-scale, not --sigma")
    if args.sigma is not None and likelihood not in SIGMA_LIKELIHOODS:
        raise ValueError(f"--likelihood {likelihood} has no sigma; --sigma applies to {', '.join(SIGMA_LIKELIHOODS)}")
    value = args.sigma if args.sigma is not None else args.laplace_scale
    return {} if value is None else {"sigma": value}


def _config(args):
    """The :class:`TrainConfig` a command line asks for; with ``--resume``, the saved one plus run-control flags."""
    given = _flags(args)
    if not args.resume:
        given.update(_scale_flags(args, given.get("likelihood", _DEFAULTS.likelihood)))
        return TrainConfig(**given, out=args.out)
    RunFolder(args.out).check_free()  # a run in progress may not have written its first checkpoint yet
    ckpt = load_checkpoint(Path(args.out) / CHECKPOINT)
    saved = TrainConfig.from_dict(ckpt["config"])
    given.update(_scale_flags(args, given.get("likelihood", saved.likelihood)))
    wanted = TrainConfig.from_dict({**saved.to_dict(), **given, "out": args.out})
    diffs = config_differences(saved, wanted)
    if diffs:
        what = ", ".join(f"{_flag(k, wanted.likelihood)} {_show(b)} (the run has {_show(a)})" for k, a, b in diffs)
        allowed = ", ".join(_flag(k, None) for k in RUN_CONTROL if k != "out")
        raise ValueError(f"--resume continues the run in {args.out} with its own settings, but {what}; drop these "
                         f"flags (a resume may change only {allowed}) or start a new run in another --out")
    return resumed_config(wanted, ckpt, where=args.out)


def _show(value):
    if isinstance(value, list):
        return " ".join(map(str, value))
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:g}"
    return str(value)


def _train_main(args):
    try:
        if args.resume and args.overwrite:
            raise ValueError("--resume and --overwrite exclude each other")
        cfg = _config(args)
        train(cfg, resume=args.resume, progress=not args.no_progress, overwrite=args.overwrite)
    except USER_ERRORS as e:
        print(f"pyro-noisevae train: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    return 0


def register(subparsers):
    """Add the ``train`` subcommand to a CLI."""
    _add_train_parser(subparsers)
