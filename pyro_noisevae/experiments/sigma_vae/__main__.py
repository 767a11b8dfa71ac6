"""``python -m pyro_noisevae.experiments.sigma_vae <subcommand> ...``."""

import sys

from .cli import main

sys.exit(main())
