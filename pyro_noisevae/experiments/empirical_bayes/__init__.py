"""Experiments for unnormalized variational Bayes (UVB) and neural empirical Bayes (DEEN) on MNIST.

Two experiments, each a function writing JSON + a Markdown table + PNGs into an output folder, resumable
(one checkpoint per trained model, updated every epoch, and one JSON per finished stage):

* :func:`uvb_denoise` (CLI ``uvb-denoise``): denoising MSE / PSNR on MNIST test images at σ ∈ {0.5, 1} for UVB,
  DEEN, the plain σ-VAE (reconstruction, and the Bayes estimator of its ELBO), the Wiener filter and the mean
  image; and the "UVB ≠ VAE" comparison of a UVB-trained VAE with a plain σ-VAE.
* :func:`walk_jump_experiment` (CLI ``walk-jump``): one long walk-jump chain at σ = 1 on the UVB energy (and,
  for contrast, on DEEN), classified by an MLP digit classifier trained here: classes visited and class
  transitions.

Both share the trained models when run with the same ``out`` folder and model settings. Modules:
:mod:`.models` (the models and their training), :mod:`.denoising`, :mod:`.walk_jump`, :mod:`.reports` (tables
and figures), :mod:`.cli`.

    python -m pyro_noisevae.experiments.empirical_bayes uvb-denoise --out results/empirical_bayes
    python -m pyro_noisevae.experiments.empirical_bayes walk-jump --out results/empirical_bayes
"""

from .cli import main, register
from .denoising import uvb_denoise
from .models import DEFAULTS
from .walk_jump import walk_jump_experiment

__all__ = ["DEFAULTS", "main", "register", "uvb_denoise", "walk_jump_experiment"]
