"""Experiments for unnormalized variational Bayes (UVB) and neural empirical Bayes (DEEN) on MNIST.

Experiments, each a function writing JSON + a Markdown table + PNGs into an output folder, resumable
(one checkpoint per trained model, updated every epoch, and one JSON per finished stage):

* :func:`uvb_denoise` (CLI ``uvb-denoise``): denoising MSE / PSNR on MNIST test images at σ ∈ {0.5, 1} for UVB,
  DEEN, the plain σ-VAE (reconstruction, and the Bayes estimator of its ELBO), the Wiener filter and the mean
  image; and the "UVB ≠ VAE" comparison of a UVB-trained VAE with a plain σ-VAE.
* :func:`walk_jump_experiment` (CLI ``walk-jump``): one long walk-jump chain at σ = 1 on the UVB energy (and,
  for contrast, on DEEN), classified by an MLP digit classifier trained here: classes visited and class
  transitions.
* :func:`uvb_vs_deen_matched` (CLI ``uvb-denoise --capacity matched --seeds 0 1 2``): UVB against DEEN with
  equal parameter counts and equal budgets, over several seeds, with the Wiener filter and the mean image.
* :func:`walk_jump_chains` (CLI ``walk-jump --chains 16 --eps-scale 0.5 1.0``): many chains in parallel per
  energy and step size, their classes visited, class changes and confident jumps, summarized over chains.

Both share the trained models when run with the same ``out`` folder and model settings. Modules:
:mod:`.models` (the models and their training), :mod:`.denoising`, :mod:`.walk_jump`, :mod:`.reports` (tables
and figures), :mod:`.cli`.

    python -m pyro_noisevae.experiments.empirical_bayes uvb-denoise --out results/empirical_bayes
    python -m pyro_noisevae.experiments.empirical_bayes walk-jump --out results/empirical_bayes
"""

from .cli import main, register
from .denoising import uvb_denoise, uvb_vs_deen_matched
from .models import DEFAULTS
from .walk_jump import walk_jump_chains, walk_jump_experiment

__all__ = ["DEFAULTS", "main", "register", "uvb_denoise", "uvb_vs_deen_matched", "walk_jump_chains",
           "walk_jump_experiment"]
