"""Reproduce the amortization-gap table of this folder's README: NUTS as the reference posterior.

Three tiny σ-VAEs with a 2-D latent (σ = 0.1, σ = 0.2, σ = 0.2 with a denoising guide) are trained on 5000 MNIST
images; for 8 test images NUTS samples p(z | x), log p(x) comes from importance sampling with a Student-t proposal
fitted to the NUTS draws, and the amortization and approximation gaps are measured per image
(:func:`pyro_noisevae.experiments.amortization.amortization_gap_experiment`). Tutorial 5 does the same with the public
API (``inference_gaps``, log p(x) by IW-SVI) on more images and with NUTS on one image.

    python results/exact_vs_amortized/amortization_table.py            # from the repository root

About 10 min of wall-clock time (under 2 min of CPU time) on one thread of a 2-core machine shared with other jobs.

Writes ``amortization_table.json`` and ``amortization_gaps.png`` beside this file. ``PYRO_NOISEVAE_DATA`` names the
data root (default ``../shared/data``).
"""

import json
import os
from pathlib import Path

import numpy as np
import torch

from pyro_noisevae.experiments.amortization import amortization_gap_experiment, plot_amortization_gaps, summarize

HERE = Path(__file__).resolve().parent
BUDGET = dict(dataset="mnist", num_train=5000, num_points=8, epochs=10, num_samples=150, num_warmup=150,
              num_chains=2, opt_steps=200, is_samples=4000, elbo_samples=2000)


def main():
    torch.set_num_threads(1)
    root = os.environ.get("PYRO_NOISEVAE_DATA", "../shared/data")
    results = amortization_gap_experiment(root=root, progress=True, **BUDGET)
    gaps = [np.asarray(r["amortization_gap"]) for r in results]

    def paired(d):
        return float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d)))

    out = {
        "budget": BUDGET,
        "summary": summarize(results),
        "paired_gap_difference": {
            "denoising minus plain (sigma=0.2)": paired(gaps[2] - gaps[1]),
            "sigma=0.1 minus sigma=0.2, rescaled to sigma=0.2 units": paired(gaps[0] * 0.25 - gaps[1]),
        },
    }
    for k, (m, se) in out["paired_gap_difference"].items():
        print(f"{k}: {m:+.2f} ± {se:.2f} nats")
    (HERE / "amortization_table.json").write_text(json.dumps(out, indent=1, default=float))
    plot_amortization_gaps(results).savefig(HERE / "amortization_gaps.png", dpi=120)


if __name__ == "__main__":
    main()
