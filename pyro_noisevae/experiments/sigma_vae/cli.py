"""The ``sweep-sigma`` and ``noisy-inference`` subcommands."""

import shlex
import sys

import torch

from ..common import cli_errors, command_main
from .noisy import noisy_inference
from .runs import DEFAULT_NOISE_LEVELS, DEFAULT_SCALES, Budget
from .sweep import sweep_sigma

__all__ = ["main", "register"]


def _optional_int(s):
    return None if s.lower() == "none" else int(s)


def _add_budget_arguments(p, out_default):
    d = Budget()
    g = p.add_argument_group("budget and architecture (shared by every model)")
    g.add_argument("-n", "--epochs", type=int, default=d.epochs, help="epochs per model (default %(default)s)")
    g.add_argument("--train-size", type=_optional_int, default=d.train_size,
                   help="random subset of the 50,000 MNIST training images; 'none' for all (default %(default)s)")
    g.add_argument("-b", "--batch-size", type=int, default=d.batch_size)
    g.add_argument("-lr", "--learning-rate", dest="lr", type=float, default=d.lr)
    g.add_argument("--z-dim", type=int, default=d.z_dim)
    g.add_argument("--hidden-dims", type=int, nargs="+", default=list(d.hidden_dims))
    g.add_argument("--eval-size", type=_optional_int, default=d.eval_size,
                   help="test images used for measurements (default: all 10,000)")
    g.add_argument("--seed", type=int, default=d.seed)
    g = p.add_argument_group("environment")
    g.add_argument("--data-root", default=None, help="folder holding MNIST/raw (default: $PYRO_NOISEVAE_DATA or ./data)")
    g.add_argument("--device", default="cpu", help="cpu or cuda (default %(default)s)")
    g.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    g.add_argument("-o", "--out", default=out_default, help="results folder (default %(default)s)")
    g.add_argument("--runs", default="runs/sigma_vae",
                   help="folder of the per-model run folders; finished models there are reused (default %(default)s)")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")


def _budget_from_args(args):
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was requested but torch sees no CUDA device; use --device cpu")
    return Budget(train_size=args.train_size, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                  z_dim=args.z_dim, hidden_dims=tuple(args.hidden_dims), eval_size=args.eval_size, seed=args.seed,
                  device=args.device, data_root=args.data_root)


def _command_line(args, skip=("func", "command", "no_progress", "threads")):
    """An explicit command line (every option spelt out) that reproduces ``args``."""
    words = ["pyro-noisevae", args.command]
    for key, value in vars(args).items():
        if key in skip:
            continue
        flag = "--" + key.replace("_", "-")
        if value is None:
            if key in ("train_size", "eval_size"):  # None is spelt 'none' on the command line
                words += [flag, "none"]
            continue
        if key == "lr":
            flag = "--learning-rate"
        if isinstance(value, bool):
            if value:
                words.append(flag)
        elif isinstance(value, (list, tuple)):
            words += [flag, *map(str, value)]
        else:
            words += [flag, str(value)]
    if args.threads is not None:
        words += ["--threads", str(args.threads)]
    return " ".join(shlex.quote(w) for w in words)


def _run(args, fn, **kwargs):
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    fn(budget=_budget_from_args(args), out=args.out, runs_dir=args.runs, progress=not args.no_progress,
       command=_command_line(args), **kwargs)
    print(f"results written to {args.out}", file=sys.stderr)


@cli_errors
def _sweep_main(args):
    return _run(args, sweep_sigma, sigmas=args.sigmas, laplace_scales=args.laplace_scales,
                beta_sigma1=args.beta_sigma1, families=args.families, num_bootstrap=args.num_bootstrap)


@cli_errors
def _noisy_main(args):
    return _run(args, noisy_inference, sigmas=args.sigmas, vanilla_sigma=args.vanilla_sigma,
                noise_levels=args.noise_levels, probe_train_size=args.probe_train_size, knn_k=args.knn_k,
                figure_levels=args.figure_levels)


def register(subparsers):
    """Add the ``sweep-sigma`` and ``noisy-inference`` subcommands to a CLI."""
    p = subparsers.add_parser(
        "sweep-sigma",
        help="sigma-VAE KL power law D_KL ~ sigma^-nu on MNIST (Normal, Laplace, and the equivalent beta sweep)",
        description="Train sigma-VAEs over a grid of sigma (and Laplace b, and beta at fixed sigma_1), measure the "
                    "test KL, fit nu with a bootstrap CI. Resumable: finished models in --runs are reused.",
    )
    p.add_argument("--sigmas", type=float, nargs="+", default=list(DEFAULT_SCALES),
                   help="sigma grid of the Normal sweep (default: 10 log-spaced values in [0.05, 2])")
    p.add_argument("--laplace-scales", type=float, nargs="+", default=list(DEFAULT_SCALES),
                   help="b grid of the Laplace sweep (default: same as --sigmas default)")
    p.add_argument("--beta-sigma1", type=float, default=0.2,
                   help="sigma_1 of the beta sweep, beta = sigma^2 / sigma_1^2 (default %(default)s)")
    p.add_argument("--families", nargs="+", default=["normal", "laplace", "beta"], choices=["normal", "laplace", "beta"])
    p.add_argument("--num-bootstrap", type=int, default=2000, help="bootstrap replicates for the CI of nu")
    _add_budget_arguments(p, "results/sigma_vae/power_law")
    p.set_defaults(func=_sweep_main)

    p = subparsers.add_parser(
        "noisy-inference",
        help="sigma-VAEs vs vanilla VAEs on test digits with extreme Gaussian noise (trained on clean data only)",
        description="Reconstruction MSE/PSNR and linear-probe / kNN accuracy on latents of y = x + N(0, s^2 I), "
                    "with pixel baselines. Resumable: finished models in --runs are reused.",
    )
    p.add_argument("--sigmas", type=float, nargs="+", default=[0.2, 0.5, 1.0], help="sigma of the sigma-VAEs")
    p.add_argument("--vanilla-sigma", type=float, default=0.05, help="sigma of the vanilla Normal-decoder VAE")
    p.add_argument("--noise-levels", type=float, nargs="+", default=list(DEFAULT_NOISE_LEVELS),
                   help="test noise standard deviations s (default %(default)s)")
    p.add_argument("--figure-levels", type=float, nargs="+", default=[0.5, 1.0, 1.5],
                   help="noise levels with a reconstruction grid figure (default %(default)s)")
    p.add_argument("--probe-train-size", type=int, default=10000, help="clean training images for the probes")
    p.add_argument("--knn-k", type=int, default=5)
    _add_budget_arguments(p, "results/sigma_vae/noisy_inference")
    p.set_defaults(func=_noisy_main)


def main(argv=None):
    """Run one of this module's subcommands (``python -m pyro_noisevae.experiments.sigma_vae sweep-sigma ...``)."""
    return command_main(register, argv, prog="python -m pyro_noisevae.experiments.sigma_vae")
