"""Command line interface: ``pyro-noisevae <command>`` (also ``python -m pyro_noisevae``)."""

import argparse
import importlib
import sys

__all__ = ["COMMAND_MODULES", "main"]

#: modules that each define ``register(subparsers)`` adding their subcommands
COMMAND_MODULES = [
    "pyro_noisevae.training",
    "pyro_noisevae.experiments.empirical_bayes",
    "pyro_noisevae.experiments.sigma_vae",
    "pyro_noisevae.experiments.evaluate",
    "pyro_noisevae.experiments.dvae_table",
    "pyro_noisevae.experiments.air_table",
]


def build_parser():
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="pyro-noisevae",
        description="Noise-model VAEs in Pyro: train sigma-VAEs, denoising/IWAE variants, and run the paper experiments.",
    )
    parser.add_argument("--version", action="version", version=f"pyro_noisevae {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
