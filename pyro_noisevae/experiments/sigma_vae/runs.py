"""The σ-VAEs of both experiments: their budget, run names, training or loading, test data and measurements."""

import dataclasses
import math
import numbers
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ...analysis import active_units, mse
from ...data import add_gaussian_noise
from ...models import elbo_terms
from ..common import ModelBudget, load_split, run_digest, train_or_load

__all__ = [
    "DEFAULT_NOISE_LEVELS",
    "DEFAULT_SCALES",
    "Budget",
    "measure_model",
    "mnist_test_images",
    "noisy_test_set",
    "result_header",
    "run_name",
    "train_or_load",
    "train_seconds",
]

#: default σ (and Laplace b) grid of ``sweep-sigma``: 10 values log-spaced over [0.05, 2], 3 significant digits
DEFAULT_SCALES = tuple(float(f"{s:.3g}") for s in np.geomspace(0.05, 2.0, 10))
#: default test-noise levels s of ``noisy-inference``
DEFAULT_NOISE_LEVELS = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)

@dataclass
class Budget(ModelBudget):
    """
    Architecture and compute budget shared by every model of an experiment.

    :ivar int train_size: random subset of the MNIST ``train`` split (50,000 images) used for training
        (``None``: all of it).
    :ivar int epochs, batch_size: Adam epochs and mini-batch size; ``lr`` its learning rate.
    :ivar int z_dim: latent dimension; ``hidden_dims`` the MLP hidden layers of encoder and decoder.
    :ivar int eval_size: test images used for the measurements (``None``: all 10,000).
    :ivar int seed: seed of initialization, mini-batch order and subsets.
    :ivar str device: ``"cpu"`` or ``"cuda"``; ``data_root`` the dataset folder.
    """

    train_size: int | None = 20000
    z_dim: int = 20
    hidden_dims: tuple = (256, 256)
    eval_size: int | None = None

    def __post_init__(self):
        super().__post_init__()
        self.hidden_dims = tuple(int(h) for h in self.hidden_dims)
        if self.eval_size is not None and int(self.eval_size) < 2:
            raise ValueError(f"eval_size must be >= 2 or None, got {self.eval_size}")

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["hidden_dims"] = list(self.hidden_dims)
        # the key order of the results files written before the budget had a base class
        order = ("train_size", "epochs", "batch_size", "lr", "z_dim", "hidden_dims", "eval_size", "seed", "device",
                 "data_root")
        return {k: d[k] for k in order}

    def config(self, runs_dir, likelihood, sigma=None, beta=1.0, binarize=None):
        """The :class:`~pyro_noisevae.training.TrainConfig` of one model; its ``out`` is ``runs_dir/run_name``."""
        cfg = self.train_config(dataset="mnist", train_split="train", eval_split="test", binarize=binarize,
                                eval_size=1000, likelihood=likelihood, sigma=sigma, beta=float(beta),
                                hidden_dims=self.hidden_dims)
        cfg.out = str(Path(runs_dir) / run_name(cfg))
        return cfg


def run_name(cfg):
    """
    Folder name of a model: readable prefix plus a hash of the settings that change the trained weights
    (:func:`~pyro_noisevae.experiments.common.run_digest`), so the same model is found again and different
    budgets never collide; :func:`train_or_load` checks the saved configuration in full.
    """
    parts = [cfg.likelihood]
    if cfg.sigma is not None:
        parts.append(f"s{cfg.sigma:.4g}")
    if cfg.beta != 1.0:
        parts.append(f"beta{cfg.beta:.4g}")
    if cfg.binarize:
        parts.append(cfg.binarize)
    return "-".join(parts + [run_digest(cfg)])


def train_seconds(history):
    """Training seconds of a run, from the steps per second of its evaluation records."""
    return float(sum((r["step"] - prev) / r["steps_per_sec"] for r, prev in _eval_steps(history)))


def _eval_steps(history):
    prev = 0
    for r in history:
        if r["kind"] == "eval":
            yield r, prev
            prev = r["step"]


@torch.no_grad()
def measure_model(vae, x, batch_size=1000, seed=0):
    r"""
    Test-set measurements of a trained VAE on clean data ``x (N, D)``:

    * ``kl``: :math:`\frac1N\sum_n \mathrm{KL}(q(z|x_n)\,\|\,N(0, I))` (analytic), with its standard error
      ``kl_se`` over images and the per-dimension means ``kl_per_dim``;
    * ``recon_ll``: :math:`\frac1N\sum_n \log p(x_n|z_n)`, :math:`z_n \sim q(z|x_n)` (one sample each; ``None``
      when the likelihood cannot score grey-scale data, e.g. Bernoulli), with ``recon_ll_se``;
    * ``mse``: mean squared error of :math:`\mathrm{decode}(E_q[z|x])` per pixel;
    * ``active_units`` (:math:`\mathrm{Var}_x E_q[z_j|x] > 0.01`) and the variances ``au_variance``.

    KL and reconstruction terms come from :func:`~pyro_noisevae.models.elbo_terms`, active units from
    :func:`~pyro_noisevae.analysis.active_units`.
    """
    gen = torch.Generator(device=x.device).manual_seed(seed)
    try:
        vae.likelihood.check_data(x)
        scorable = True
    except ValueError:
        scorable = False
    kls, lls, errs, locs, kl_dims = [], [], [], [], []
    for start in range(0, x.shape[0], batch_size):
        xb = x[start : start + batch_size]
        terms = elbo_terms(vae, xb, generator=gen)
        kls.append(terms["kl"].double())
        kl_dims.append(terms["kl_per_dim"].double().sum(0))
        if scorable:
            lls.append(terms["recon"].double())
        errs.append(mse(vae.decode(terms["loc"]), xb).double())
        locs.append(terms["loc"])
    kl, err = torch.cat(kls), torch.cat(errs)
    n = x.shape[0]
    count, var = active_units(torch.cat(locs))
    out = {
        "kl": float(kl.mean()),
        "kl_se": float(kl.std() / math.sqrt(n)),
        "kl_per_dim": (torch.stack(kl_dims).sum(0) / n).tolist(),
        "recon_ll": None,
        "recon_ll_se": None,
        "mse": float(err.mean()),
        "active_units": count,
        "au_variance": var.tolist(),
    }
    if scorable:
        ll = torch.cat(lls)
        out["recon_ll"], out["recon_ll_se"] = float(ll.mean()), float(ll.std() / math.sqrt(n))
    return out


def noisy_test_set(x, std, seed=0):
    r"""
    The noisy observations :math:`y = x + \epsilon`, :math:`\epsilon \sim N(0, s^2 I)` (not clipped), drawn
    from a generator seeded by ``(seed, s)`` so that every model sees the same noisy images at a given
    :math:`s`. ``x (N, D) -> y (N, D)``; ``s = 0`` returns a copy of ``x``.
    """
    if isinstance(std, bool) or not (isinstance(std, numbers.Real) and math.isfinite(std) and std >= 0):
        raise ValueError(f"std must be a finite number >= 0, got {std!r}")
    gen = torch.Generator(device=x.device).manual_seed(int(seed) * 1_000_003 + int(round(std * 1e6)))
    return add_gaussian_noise(x, float(std), generator=gen)


def mnist_test_images(budget):
    """The budget's fixed random subset of the MNIST test images: ``(x, labels, image_shape)`` on its device."""
    test = load_split("mnist", "test", budget.eval_size, budget.seed + 2, root=budget.data_root)
    return test.data.to(budget.device), test.targets.to(budget.device), tuple(test.image_shape)


def result_header(name, budget, command, started):
    """The first keys of an experiment's ``results.json``."""
    return {
        "experiment": name,
        "command": command,
        "budget": budget.to_dict(),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
    }
