"""σ-VAE science on MNIST: the KL power law (``sweep-sigma``) and inference on extreme noise (``noisy-inference``).

Both experiments train every model through :func:`pyro_noisevae.training.train` into a run folder named after
its configuration (``<runs>/<likelihood>-s<σ>-beta<β>-<hash>``), so re-running a command skips finished models,
resumes interrupted ones, and the two experiments share models whose configurations coincide. Results go to
``<out>/results.json``, ``<out>/table.md`` and PNG figures.

Modules: :mod:`.runs` (budget, run names, measurements), :mod:`.sweep` (:func:`sweep_sigma`), :mod:`.noisy`
(:func:`noisy_inference`), :mod:`.reports` (tables and figures), :mod:`.cli` (the subcommands; also
``python -m pyro_noisevae.experiments.sigma_vae sweep-sigma ...``).

References:

1. S. Saremi, *Learning and Inference in Imaginary Noise Models*, arXiv:2005.09047 (2020).
2. Y. Burda, R. Grosse, R. Salakhutdinov, *Importance Weighted Autoencoders*, ICLR 2016 (active units).
"""

from .cli import main, register
from .noisy import noisy_inference
from .runs import DEFAULT_NOISE_LEVELS, DEFAULT_SCALES, Budget, measure_model, noisy_test_set, run_name, train_or_load
from .sweep import sweep_sigma

__all__ = [
    "DEFAULT_NOISE_LEVELS",
    "DEFAULT_SCALES",
    "Budget",
    "main",
    "measure_model",
    "noisy_inference",
    "noisy_test_set",
    "register",
    "run_name",
    "sweep_sigma",
    "train_or_load",
]
