"""Experiment 1 (``sweep-sigma``): the KL power law D_KL ~ σ^(-ν) of trained σ-VAEs on MNIST.

References:

1. S. Saremi, *Learning and Inference in Imaginary Noise Models*, arXiv:2005.09047 (2020).
"""

import math
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ...analysis import fit_broken_power_law, fit_power_law, local_exponents
from ..common import save_figure, write_json, write_text
from .reports import power_law_figure, power_law_markdown
from .runs import DEFAULT_SCALES, Budget, measure_model, mnist_test_images, result_header, train_or_load, train_seconds

__all__ = ["sweep_sigma"]


def _fit_family(points, key, num_bootstrap, seed):
    xs = np.array([p[key] for p in points])
    kls = np.array([p["kl"] for p in points])
    res = {"fit": fit_power_law(xs, kls, num_bootstrap=num_bootstrap, seed=seed).to_dict()}
    mid, nu = local_exponents(xs, kls)
    res["local_exponents"] = [{"at": float(m), "nu": float(v)} for m, v in zip(mid, nu)]
    if len(points) >= 6:
        res["broken"] = fit_broken_power_law(xs, kls, num_bootstrap=num_bootstrap, seed=seed).to_dict()
    return res


def sweep_sigma(
    sigmas=DEFAULT_SCALES,
    laplace_scales=DEFAULT_SCALES,
    beta_sigma1=0.2,
    families=("normal", "laplace", "beta"),
    budget=None,
    out="results/sigma_vae/power_law",
    runs_dir="runs/sigma_vae",
    num_bootstrap=2000,
    progress=True,
    command=None,
):
    r"""
    The power law :math:`D_\mathrm{KL} \sim \sigma^{-\nu}` of trained σ-VAEs on MNIST.

    For each family, trains one model per noise scale with the same architecture and budget, measures the
    test-set average analytic :math:`\mathrm{KL}(q(z|x)\,\|\,p(z))`, the reconstruction term, the MSE and the
    active units (:func:`measure_model`), and fits :math:`\nu` by least squares in log-log space with a
    bootstrap 95% interval and :math:`R^2` (:func:`~pyro_noisevae.analysis.fit_power_law`), plus a two-segment
    fit and local exponents to locate a bend.

    Families: ``"normal"`` (fixed σ in ``sigmas``), ``"laplace"`` (fixed b in ``laplace_scales``), and
    ``"beta"``: the Normal sweep redone as a β-VAE at fixed :math:`\sigma_1` = ``beta_sigma1`` with
    :math:`\beta = \sigma^2/\sigma_1^2` for each σ, which optimises the same bound up to the factor
    :math:`1/\beta` and a constant (``results["beta_vs_sigma"]`` compares the two sweeps model by model).

    :param Budget budget: architecture and budget (default :class:`Budget()`).
    :param str out: results folder (``results.json``, ``table.md``, ``power_law.png``).
    :param str runs_dir: folder of the model run folders (resumable; shared with :func:`noisy_inference`).
    :returns: the results dictionary written to ``results.json``.
    """
    budget = budget or Budget()
    families = tuple(families)
    unknown = set(families) - {"normal", "laplace", "beta"}
    if unknown:
        raise ValueError(f"families must be among 'normal', 'laplace', 'beta', got {sorted(unknown)}")
    if "beta" in families and "normal" not in families:
        raise ValueError("the 'beta' family is compared with the 'normal' sweep; include 'normal' too")
    for name, grid in (("sigmas", sigmas), ("laplace_scales", laplace_scales)):
        if any(not (math.isfinite(s) and s > 0) for s in grid):
            raise ValueError(f"{name} must all be finite and > 0, got {list(grid)}")
        if len(grid) < 3:
            raise ValueError(f"{name} needs at least 3 values for a power-law fit, got {len(grid)}")
        if len(set(map(float, grid))) != len(grid):
            raise ValueError(f"{name} must not repeat values, got {list(grid)}")
    if not (math.isfinite(beta_sigma1) and beta_sigma1 > 0):
        raise ValueError(f"beta_sigma1 must be finite and > 0, got {beta_sigma1}")
    out, runs_dir = Path(out), Path(runs_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()

    jobs = []
    for fam in families:
        if fam == "normal":
            jobs += [("normal", dict(likelihood="normal", sigma=float(s)), float(s)) for s in sigmas]
        elif fam == "laplace":
            jobs += [("laplace", dict(likelihood="laplace", sigma=float(b)), float(b)) for b in laplace_scales]
        else:
            jobs += [("beta", dict(likelihood="normal", sigma=float(beta_sigma1), beta=float(s) ** 2 / beta_sigma1**2),
                      float(s)) for s in sigmas]
    x_test, _, _ = mnist_test_images(budget)
    results = result_header("sweep-sigma", budget, command, started)
    results.update({"beta_sigma1": float(beta_sigma1), "families": {f: {"points": []} for f in families}})
    vaes = {}
    for fam, kw, scale in tqdm(jobs, desc="sweep-sigma models", disable=not progress, dynamic_ncols=True):
        cfg = budget.config(runs_dir, **kw)
        vae, history, status = train_or_load(cfg, progress=progress)
        point = {"scale": scale, "sigma": cfg.sigma, "beta": cfg.beta, "run": str(cfg.out), "status": status,
                 "train_seconds": train_seconds(history)}
        point.update(measure_model(vae, x_test, seed=budget.seed))
        results["families"][fam]["points"].append(point)
        if fam in ("normal", "beta"):
            vaes[(fam, scale)] = vae
        if progress:
            tqdm.write(f"{fam:8s} scale={scale:<7.4g} beta={cfg.beta:<8.4g} KL={point['kl']:8.3f} "
                       f"MSE={point['mse']:.5f} AU={point['active_units']:2d} ({status})")
    for fam in families:
        results["families"][fam].update(_fit_family(results["families"][fam]["points"], "scale", num_bootstrap, budget.seed))
    if "beta" in families:
        results["beta_vs_sigma"] = _compare_beta(results, vaes, sigmas)
    results["wall_seconds"] = time.time() - started
    write_json(out / "results.json", results, sort_keys=False, allow_nan=False)
    write_text(out / "table.md", power_law_markdown(results))
    save_figure(power_law_figure(results), out / "power_law.png", dpi=110)
    return results


def _param_distance(a, b):
    num, den = 0.0, 0.0
    for (ka, pa), (kb, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        if ka != kb:
            raise RuntimeError(f"parameter mismatch {ka} vs {kb}")
        if pa.is_floating_point() and not ka.startswith("likelihood."):  # σ buffers differ by design
            num += float((pa.double() - pb.double()).pow(2).sum())
            den += float(pa.double().pow(2).sum())
    return math.sqrt(num / den)


def _compare_beta(results, vaes, sigmas):
    normal = {p["scale"]: p for p in results["families"]["normal"]["points"]}
    beta = {p["scale"]: p for p in results["families"]["beta"]["points"]}
    rows = []
    for s in map(float, sigmas):
        a, b = normal[s], beta[s]
        rows.append({
            "sigma": s,
            "beta": b["beta"],
            "kl_sigma": a["kl"],
            "kl_beta": b["kl"],
            "kl_rel_diff": (b["kl"] - a["kl"]) / a["kl"],
            "kl_diff_in_se": (b["kl"] - a["kl"]) / math.hypot(a["kl_se"], b["kl_se"]),
            "mse_sigma": a["mse"],
            "mse_beta": b["mse"],
            "au_sigma": a["active_units"],
            "au_beta": b["active_units"],
            "param_rel_distance": _param_distance(vaes[("normal", s)], vaes[("beta", s)]),
        })
    return rows
