"""Experiment 2 (``noisy-inference``): σ-VAEs and vanilla VAEs on extremely noisy test digits.

References:

1. S. Saremi, *Learning and Inference in Imaginary Noise Models*, arXiv:2005.09047 (2020).
2. Y. Burda, R. Grosse, R. Salakhutdinov, *Importance Weighted Autoencoders*, ICLR 2016 (active units).
"""

import math
import time
from pathlib import Path

import torch
from tqdm import tqdm

from ...analysis import fit_linear_probe, knn_accuracy, mse, psnr
from ..common import load_split, save_figure, write_json, write_text
from .reports import noisy_curves_figure, noisy_grid_figure, noisy_markdown
from .runs import (
    DEFAULT_NOISE_LEVELS,
    Budget,
    measure_model,
    mnist_test_images,
    noisy_test_set,
    result_header,
    train_or_load,
    train_seconds,
)

__all__ = ["noisy_inference"]


@torch.no_grad()
def _encode_means(vae, x, batch_size=1000):
    return torch.cat([vae.encode(x[i : i + batch_size])[0] for i in range(0, x.shape[0], batch_size)])


@torch.no_grad()
def _decode(vae, z, batch_size=1000):
    return torch.cat([vae.decode(z[i : i + batch_size]) for i in range(0, z.shape[0], batch_size)])


def _stats(values):
    v = values.double()
    return float(v.mean()), float(v.std() / math.sqrt(v.numel()))


def noisy_inference(
    sigmas=(0.2, 0.5, 1.0),
    vanilla_sigma=0.05,
    noise_levels=DEFAULT_NOISE_LEVELS,
    budget=None,
    out="results/sigma_vae/noisy_inference",
    runs_dir="runs/sigma_vae",
    probe_train_size=10000,
    knn_k=5,
    figure_levels=(0.5, 1.0, 1.5),
    num_figure_images=10,
    progress=True,
    command=None,
):
    r"""
    Inference on extremely noisy digits never seen in training: all models are trained on clean MNIST only and
    then fed :math:`y = x + N(0, s^2 I)` (:func:`noisy_test_set`, unclipped) for each test-noise level
    :math:`s`.

    Models: σ-VAEs with fixed σ in ``sigmas``; vanilla VAEs: a Bernoulli decoder trained on dynamically
    binarized images, and a Normal decoder with small σ = ``vanilla_sigma``. Per model and :math:`s`:

    * MSE and PSNR of :math:`\mathrm{decode}(E_q[z|y])` against the clean :math:`x`;
    * accuracy of a linear probe (multinomial logistic regression, :func:`~pyro_noisevae.analysis.fit_linear_probe`)
      and of a :math:`k`-NN classifier, both fitted on clean-data posterior means of ``probe_train_size``
      training images and applied to the posterior means of the noisy test images.

    Baselines with no model: the same probe/k-NN on raw pixels (fitted on clean pixels, applied to :math:`y`
    and to :math:`y` clipped to [0, 1]); the MSE/PSNR of :math:`y` itself, unclipped and clipped; and the
    MSE/PSNR of the mean training image (a constant guess that ignores :math:`y`).

    :returns: the results dictionary written to ``out/results.json`` (also ``table.md``,
        ``metrics_vs_noise.png`` and ``grid_s<s>.png``).
    """
    budget = budget or Budget()
    if any(not (math.isfinite(s) and s > 0) for s in [*sigmas, vanilla_sigma]):
        raise ValueError("sigmas and vanilla_sigma must be finite and > 0")
    if any(not (math.isfinite(s) and s >= 0) for s in noise_levels):
        raise ValueError(f"noise_levels must be finite and >= 0, got {list(noise_levels)}")
    if not set(figure_levels) <= set(noise_levels):
        raise ValueError(f"figure_levels {list(figure_levels)} must be among noise_levels {list(noise_levels)}")
    out, runs_dir = Path(out), Path(runs_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    device = torch.device(budget.device)

    specs = [(f"σ-VAE σ={s:g}", "sigma-vae", dict(likelihood="normal", sigma=float(s))) for s in sigmas]
    specs += [("vanilla Bernoulli", "vanilla", dict(likelihood="bernoulli", binarize="dynamic")),
              (f"vanilla Normal σ={vanilla_sigma:g}", "vanilla", dict(likelihood="normal", sigma=float(vanilla_sigma)))]
    x_test, y_test, image_shape = mnist_test_images(budget)
    probe_set = load_split("mnist", "train", probe_train_size, budget.seed + 3, root=budget.data_root)
    x_probe, y_probe = probe_set.data.to(device), probe_set.targets.to(device)
    noisy = {s: noisy_test_set(x_test, s, seed=budget.seed) for s in noise_levels}

    results = result_header("noisy-inference", budget, command, started)
    results.update({"noise_levels": list(map(float, noise_levels)), "probe_train_size": int(x_probe.shape[0]),
                    "test_size": int(x_test.shape[0]), "knn_k": int(knn_k), "models": [], "baselines": {}})

    # baselines that need no model
    pixel_probe = fit_linear_probe(x_probe, y_probe, num_classes=10)
    base = {"noisy_input": [], "noisy_input_clipped": [], "pixels": [], "pixels_clipped": []}
    # predicting the average training digit whatever y is: a reconstruction worse than this carries no information
    mean_image = x_probe.mean(0, keepdim=True).expand_as(x_test)
    m, m_se = _stats(mse(mean_image, x_test))
    p, p_se = _stats(psnr(mean_image, x_test))
    base["mean_image"] = {"mse": m, "mse_se": m_se, "psnr": p, "psnr_se": p_se}
    for s in tqdm(noise_levels, desc="pixel baselines", disable=not progress, dynamic_ncols=True):
        y = noisy[s]
        for key, yy in (("noisy_input", y), ("noisy_input_clipped", y.clamp(0, 1))):
            m, m_se = _stats(mse(yy, x_test))
            p, p_se = _stats(psnr(yy, x_test)) if s > 0 else (None, None)  # y = x: infinite PSNR
            base[key].append({"s": s, "mse": m, "mse_se": m_se, "psnr": p, "psnr_se": p_se})
        for key, yy in (("pixels", y), ("pixels_clipped", y.clamp(0, 1))):
            base[key].append({"s": s, "probe_acc": pixel_probe.accuracy(yy, y_test),
                              "knn_acc": knn_accuracy(x_probe, y_probe, yy, y_test, k=knn_k)})
    results["baselines"] = base

    recons = {}
    for name, kind, kw in tqdm(specs, desc="noisy-inference models", disable=not progress, dynamic_ncols=True):
        cfg = budget.config(runs_dir, **kw)
        vae, history, status = train_or_load(cfg, progress=progress)
        z_train = _encode_means(vae, x_probe)
        probe = fit_linear_probe(z_train, y_probe, num_classes=10)
        rows = []
        for s in noise_levels:
            z = _encode_means(vae, noisy[s])
            rec = _decode(vae, z)
            m, m_se = _stats(mse(rec, x_test))
            p, p_se = _stats(psnr(rec, x_test))
            rows.append({"s": s, "mse": m, "mse_se": m_se, "psnr": p, "psnr_se": p_se,
                         "probe_acc": probe.accuracy(z, y_test),
                         "knn_acc": knn_accuracy(z_train, y_probe, z, y_test, k=knn_k)})
            if s in figure_levels:
                recons[(name, s)] = rec[:num_figure_images].cpu()
        clean = measure_model(vae, x_test, seed=budget.seed)
        results["models"].append({"name": name, "kind": kind, "likelihood": cfg.likelihood, "sigma": cfg.sigma,
                                  "run": cfg.out, "status": status, "train_seconds": train_seconds(history),
                                  "clean_kl": clean["kl"], "clean_active_units": clean["active_units"],
                                  "probe_train_acc": probe.accuracy(z_train, y_probe), "per_noise": rows})
        if progress:
            tqdm.write(f"{name:24s} " + "  ".join(f"s={r['s']:g}: mse {r['mse']:.4f} acc {r['probe_acc']:.3f}"
                                                   for r in rows[:: max(1, len(rows) // 4)]) + f" ({status})")
    results["wall_seconds"] = time.time() - started
    write_json(out / "results.json", results, sort_keys=False, allow_nan=False)
    write_text(out / "table.md", noisy_markdown(results))
    save_figure(noisy_curves_figure(results), out / "metrics_vs_noise.png", dpi=110)
    for s in figure_levels:
        fig = noisy_grid_figure(results, s, x_test[:num_figure_images].cpu(), noisy[s][:num_figure_images].cpu(),
                                recons, image_shape)
        save_figure(fig, out / f"grid_s{s:g}.png", dpi=110)
    return results
