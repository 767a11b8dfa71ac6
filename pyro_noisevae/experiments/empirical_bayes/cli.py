"""The ``uvb-denoise`` and ``walk-jump`` subcommands (and their many-seed / many-chain variants)."""

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from ..common import cli_errors, command_main
from .denoising import Budget, uvb_denoise, uvb_vs_deen_matched
from .models import DEFAULTS
from .walk_jump import walk_jump_chains, walk_jump_experiment

__all__ = ["main", "register"]


def _add_model_args(p):
    g = p.add_argument_group("models (shared by uvb-denoise and walk-jump: same settings reuse checkpoints)")
    g.add_argument("-n", "--epochs", type=int, default=DEFAULTS["epochs"], help="epochs per model (default %(default)s)")
    g.add_argument("-b", "--batch-size", type=int, default=DEFAULTS["batch_size"])
    g.add_argument("-lr", "--learning-rate", dest="lr", type=float, default=DEFAULTS["lr"])
    g.add_argument("--z-dim", type=int, default=DEFAULTS["z_dim"])
    g.add_argument("--hidden-dims", type=int, nargs="+", default=list(DEFAULTS["hidden_dims"]))
    g.add_argument("--deen-hidden-dims", type=int, nargs="+", default=list(DEFAULTS["deen_hidden_dims"]))
    g.add_argument("--train-size", type=int, default=None, help="train on a random subset (quick runs)")
    g.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    g = p.add_argument_group("run")
    g.add_argument("--data-root", default=None, help="folder holding MNIST/raw (default: $PYRO_NOISEVAE_DATA or ./data)")
    g.add_argument("-o", "--out", default="results/empirical_bayes", help="output folder (default %(default)s)")
    g.add_argument("--device", default="cpu", help="cpu or cuda (default %(default)s)")
    g.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")


def _run(args, experiment, report, *positional, **kwargs):
    """Run ``experiment(args.out, *positional, **kwargs)`` with the model settings of ``args``, print its report."""
    if args.threads:
        torch.set_num_threads(args.threads)
    budget = {f.name: getattr(args, f.name) for f in dataclasses.fields(Budget)}
    experiment(args.out, *positional, progress=not args.no_progress, **kwargs, **budget)
    print((Path(args.out) / report).read_text())


@cli_errors
def _uvb_denoise_main(args):
    if args.capacity == "matched":
        _run(args, uvb_vs_deen_matched, "uvb_vs_deen_matched.md", tuple(args.sigmas), tuple(args.seeds or (0, 1, 2)),
             test_size=args.test_size, eval_particles=args.eval_particles)
        return
    if args.seeds is not None:
        raise ValueError("--seeds goes with --capacity matched; use --seed for one run at the default capacity")
    _run(args, uvb_denoise, "uvb_denoise.md", tuple(args.sigmas), test_size=args.test_size,
         eval_particles=args.eval_particles)


@cli_errors
def _walk_jump_main(args):
    steps = {} if args.num_steps is None else {"num_steps": args.num_steps}
    common = dict(**steps, jump_every=args.jump_every, friction=args.friction,
                  inverse_mass=args.inverse_mass, energy_particles=args.energy_particles, models=tuple(args.models),
                  classifier_epochs=args.classifier_epochs)
    if args.chains > 1:
        _run(args, walk_jump_chains, "walk_jump_chains.md", args.sigma, num_chains=args.chains,
             eps_scales=tuple(args.eps_scale), **common)
        return
    if len(args.eps_scale) != 1:
        raise ValueError("several --eps-scale values go with --chains > 1")
    _run(args, walk_jump_experiment, "walk_jump.md", args.sigma, eps_scale=args.eps_scale[0], **common)


def register(subparsers):
    """Add the ``uvb-denoise`` and ``walk-jump`` subcommands to a CLI's ``subparsers``."""
    p = subparsers.add_parser(
        "uvb-denoise",
        help="UVB vs DEEN vs σ-VAE vs Wiener denoising on MNIST, and UVB ≠ VAE",
        description=uvb_denoise.__doc__.split("\n\n")[0].strip(),
    )
    p.add_argument("--sigmas", type=float, nargs="+", default=[0.5, 1.0], help="noise levels (default %(default)s)")
    p.add_argument("--test-size", type=int, default=None, help="evaluate on a random test subset")
    p.add_argument("--eval-particles", type=int, default=10, help="latent samples averaged in ELBO energies at test time")
    p.add_argument("--capacity", choices=["default", "matched"], default="default",
                   help="matched: UVB vs DEEN only, the VAE widened to DEEN's parameter count, over --seeds, into "
                        "uvb_vs_deen_matched.{json,md,png} (default %(default)s)")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds of --capacity matched (default 0 1 2)")
    _add_model_args(p)
    p.set_defaults(func=_uvb_denoise_main)
    p = subparsers.add_parser(
        "walk-jump",
        help="walk-jump chains on the UVB (and DEEN) energy, classes visited",
        description=walk_jump_experiment.__doc__.split("\n\n")[0].strip(),
    )
    p.add_argument("--sigma", type=float, default=1.0)
    p.add_argument("--num-steps", type=int, default=None,
                   help="Langevin steps per chain (default 10,000 for one chain, 2,000 with --chains > 1)")
    p.add_argument("--jump-every", type=int, default=20)
    p.add_argument("--eps-scale", type=float, nargs="+", default=[0.5],
                   help="Langevin step δ = eps_scale·σ; several values with --chains > 1 (default %(default)s)")
    p.add_argument("--chains", type=int, default=1,
                   help="> 1: that many chains in parallel per energy and step size, summarized over chains, into "
                        "walk_jump_chains.{json,md} (default %(default)s: one chain, walk_jump.{json,md})")
    p.add_argument("--friction", type=float, default=0.5)
    p.add_argument("--inverse-mass", type=float, default=1.0)
    p.add_argument("--energy-particles", type=int, default=8)
    p.add_argument("--models", nargs="+", default=["uvb", "deen"], choices=["uvb", "deen", "vae"])
    p.add_argument("--classifier-epochs", type=int, default=3)
    _add_model_args(p)
    p.set_defaults(func=_walk_jump_main)


def main(argv=None):
    """Run one of the subcommands (``python -m pyro_noisevae.experiments.empirical_bayes uvb-denoise ...``)."""
    return command_main(register, argv, prog="python -m pyro_noisevae.experiments.empirical_bayes",
                        description=sys.modules[__package__].__doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
