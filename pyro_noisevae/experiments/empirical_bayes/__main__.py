"""``python -m pyro_noisevae.experiments.empirical_bayes <subcommand> ...``."""

import sys

from .cli import main

sys.exit(main())
