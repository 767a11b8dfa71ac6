"""σ-VAE science on MNIST: the KL power law (``sweep-sigma``) and inference on extreme noise (``noisy-inference``).

Both experiments train every model through :func:`pyro_noisevae.training.train` into a run folder named after
its configuration (``<runs>/<likelihood>-s<σ>-beta<β>-<hash>``), so re-running a command skips finished models,
resumes interrupted ones, and the two experiments share models whose configurations coincide. Results go to
``<out>/results.json``, ``<out>/table.md`` and PNG figures.

References:

1. S. Saremi, *Learning and Inference in Imaginary Noise Models*, arXiv:2005.09047 (2020).
2. Y. Burda, R. Grosse, R. Salakhutdinov, *Importance Weighted Autoencoders*, ICLR 2016 (active units).
"""

import argparse
import contextlib
import dataclasses
import hashlib
import json
import math
import numbers
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..analysis import (
    PowerLawFit,
    active_units,
    fit_broken_power_law,
    fit_linear_probe,
    fit_power_law,
    knn_accuracy,
    local_exponents,
    mse,
    psnr,
)
from ..data import add_gaussian_noise, load_dataset
from ..models import elbo_terms
from ..training import CHECKPOINT, TrainConfig, load_checkpoint, load_run, train

__all__ = [
    "DEFAULT_NOISE_LEVELS",
    "DEFAULT_SCALES",
    "Budget",
    "measure_model",
    "noisy_inference",
    "noisy_test_set",
    "register",
    "run_name",
    "sweep_sigma",
    "train_or_load",
]

#: default σ (and Laplace b) grid of ``sweep-sigma``: 10 values log-spaced over [0.05, 2], 3 significant digits
DEFAULT_SCALES = tuple(float(f"{s:.3g}") for s in np.geomspace(0.05, 2.0, 10))
#: default test-noise levels s of ``noisy-inference``
DEFAULT_NOISE_LEVELS = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)


@dataclass
class Budget:
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
    epochs: int = 10
    batch_size: int = 100
    lr: float = 1e-3
    z_dim: int = 20
    hidden_dims: tuple = (256, 256)
    eval_size: int | None = None
    seed: int = 0
    device: str = "cpu"
    data_root: str | None = None

    def __post_init__(self):
        self.hidden_dims = tuple(int(h) for h in self.hidden_dims)
        for name in ("epochs", "batch_size", "z_dim"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("train_size", "eval_size"):
            v = getattr(self, name)
            if v is not None and int(v) < 2:
                raise ValueError(f"{name} must be >= 2 or None, got {v}")

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["hidden_dims"] = list(self.hidden_dims)
        return d

    def config(self, runs_dir, likelihood, sigma=None, beta=1.0, binarize=None):
        """The :class:`~pyro_noisevae.training.TrainConfig` of one model; its ``out`` is ``runs_dir/run_name``."""
        cfg = TrainConfig(
            dataset="mnist", data_root=self.data_root, train_split="train", eval_split="test", binarize=binarize,
            train_size=self.train_size, eval_size=1000, likelihood=likelihood, sigma=sigma, beta=float(beta),
            z_dim=self.z_dim, hidden_dims=self.hidden_dims, epochs=self.epochs, batch_size=self.batch_size,
            lr=self.lr, seed=self.seed, device=self.device,
        )
        cfg.out = str(Path(runs_dir) / run_name(cfg))
        return cfg


_NOT_IN_HASH = ("out", "data_root", "device", "log_every", "eval_size", "noisy_eval_std", "extra")


def _weight_settings(cfg_dict):
    return {k: v for k, v in cfg_dict.items() if k not in _NOT_IN_HASH}


def run_name(cfg):
    """
    Folder name of a model: readable prefix plus a hash of the settings that change the trained weights (so
    the same model is found again, and different budgets never collide). Only settings that differ from the
    :class:`~pyro_noisevae.training.TrainConfig` defaults enter the hash, so that adding a new option to the
    trainer does not rename existing runs; :func:`train_or_load` checks the saved configuration in full.
    """
    default = TrainConfig().to_dict()
    d = {k: v for k, v in _weight_settings(cfg.to_dict()).items() if k not in default or v != default[k]}
    digest = hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:8]
    parts = [cfg.likelihood]
    if cfg.sigma is not None:
        parts.append(f"s{cfg.sigma:.4g}")
    if cfg.beta != 1.0:
        parts.append(f"beta{cfg.beta:.4g}")
    if cfg.binarize:
        parts.append(cfg.binarize)
    return "-".join(parts + [digest])


@contextlib.contextmanager
def _locked(folder):
    """Exclusive lock on a run folder, so two experiments sharing it never train the same model at once."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _train_seconds(history):
    return float(sum((r["step"] - prev) / r["steps_per_sec"] for r, prev in _eval_steps(history)))


def _eval_steps(history):
    prev = 0
    for r in history:
        if r["kind"] == "eval":
            yield r, prev
            prev = r["step"]


def train_or_load(cfg, progress=True):
    """
    Train the model of ``cfg`` into ``cfg.out`` unless it is already there: a finished run is loaded, an
    interrupted one resumed from its checkpoint.

    :returns: ``(vae, history, status)`` with ``status`` one of ``"trained"``, ``"resumed"``, ``"loaded"``;
        the VAE is in eval mode on ``cfg.device``.
    :raises ValueError: if ``cfg.out`` holds a run whose saved configuration differs from ``cfg`` in a setting
        that changes the weights (e.g. a trainer default changed since it was trained).
    """
    out = Path(cfg.out)
    with _locked(out):
        status = "trained"
        if (out / CHECKPOINT).exists():
            ckpt = load_checkpoint(out / CHECKPOINT)
            saved, wanted = _weight_settings(ckpt["config"]), _weight_settings(cfg.to_dict())
            # epochs may differ: a shorter run is continued, a longer one is used as is
            differ = sorted(k for k in set(saved) & set(wanted) if k != "epochs" and saved[k] != wanted[k])
            if differ:
                what = ", ".join(f"{k}: {saved[k]!r} there, {wanted[k]!r} here" for k in differ)
                raise ValueError(f"{out} holds a run trained with different settings ({what}); delete it or "
                                 "choose another runs folder")
            state = ckpt["trainer"]
            if state["epoch"] >= cfg.epochs and state["step_in_epoch"] == 0:
                vae, _, history = load_run(out, map_location=cfg.device)
                return vae.to(cfg.device).eval(), history, "loaded"
            status = "resumed"
        vae, history = train(cfg, resume=status == "resumed", progress=progress, overwrite=status == "trained")
    return vae.eval(), history, status


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


def _subset(data, targets, size, seed):
    if size is None or size >= data.shape[0]:
        return data, targets
    idx = torch.randperm(data.shape[0], generator=torch.Generator().manual_seed(seed))[:size]
    return data[idx], (targets[idx] if targets is not None else None)


def _test_data(budget):
    test = load_dataset("mnist", split="test", root=budget.data_root)
    x, y = _subset(test.data, test.targets, budget.eval_size, budget.seed + 2)
    return x.to(budget.device), y.to(budget.device), tuple(test.image_shape)


def _header(name, budget, command, started):
    return {
        "experiment": name,
        "command": command,
        "budget": budget.to_dict(),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
    }


def _write_json(path, obj):
    path.write_text(json.dumps(obj, indent=2, allow_nan=False) + "\n")


# ----------------------------------------------------------------------------------------------------------
# experiment 1: the power law
# ----------------------------------------------------------------------------------------------------------


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
    x_test, _, _ = _test_data(budget)
    results = _header("sweep-sigma", budget, command, started)
    results.update({"beta_sigma1": float(beta_sigma1), "families": {f: {"points": []} for f in families}})
    vaes = {}
    for fam, kw, scale in tqdm(jobs, desc="sweep-sigma models", disable=not progress, dynamic_ncols=True):
        cfg = budget.config(runs_dir, **kw)
        vae, history, status = train_or_load(cfg, progress=progress)
        point = {"scale": scale, "sigma": cfg.sigma, "beta": cfg.beta, "run": str(cfg.out), "status": status,
                 "train_seconds": _train_seconds(history)}
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
    _write_json(out / "results.json", results)
    (out / "table.md").write_text(_power_law_markdown(results))
    _power_law_figure(results, out / "power_law.png")
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


def _fmt_ci(fit):
    return f"{fit['nu']:.3f} [{fit['ci'][0]:.3f}, {fit['ci'][1]:.3f}]"


def _power_law_markdown(r):
    b = r["budget"]
    lines = [
        "# σ-VAE KL power law on MNIST",
        "",
        f"Command: `{r['command']}`  " if r["command"] else "Called from Python (no command line).  ",
        f"Budget per model: {b['epochs']} epochs on {b['train_size'] or 50000} MNIST training images "
        f"({b['epochs'] * math.ceil((b['train_size'] or 50000) / b['batch_size'])} Adam steps), batch {b['batch_size']}, "
        f"Adam lr {b['lr']}, MLP 784-{'-'.join(map(str, b['hidden_dims']))}-{b['z_dim']}, seed {b['seed']}, "
        f"device {b['device']}, {r['torch_threads']} torch thread(s); measured on "
        f"{b['eval_size'] or 10000} test images; training time "
        f"{sum(p['train_seconds'] for d in r['families'].values() for p in d['points']) / 60:.1f} min (sum over "
        f"models), wall time of this invocation {r['wall_seconds'] / 60:.1f} min.",
        "",
        "## Fits of D_KL = A · scale^(-ν) (least squares in log-log, 95% pairs-bootstrap CI)",
        "",
        "| family | points | ν [95% bootstrap CI] | ν t-interval | R² | break at | ν below break | ν above break |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for fam, d in r["families"].items():
        f = d["fit"]
        br = d.get("broken")
        brk = (f"{br['x_break']:.3g} | {br['left']['nu']:.3f} (R² {br['left']['r2']:.3f}) | "
               f"{br['right']['nu']:.3f} (R² {br['right']['r2']:.3f})") if br else "– | – | –"
        label = {"normal": "Normal σ-VAE (σ)", "laplace": "Laplace σ-VAE (b)",
                 "beta": f"β-sweep at σ₁={r['beta_sigma1']:g} (σ)"}[fam]
        lines.append(f"| {label} | {f['n']} | {_fmt_ci(f)} | [{f['ci_t'][0]:.3f}, {f['ci_t'][1]:.3f}] | "
                     f"{f['r2']:.4f} | {brk} |")
    for fam, d in r["families"].items():
        key = "b" if fam == "laplace" else "σ"
        lines += ["", f"## {fam}: per model", "",
                  f"| {key} | β | KL (nats) ± SE | E_q log p(x\\|z) | MSE | active units | local ν (to next) | train s |",
                  "|---|---|---|---|---|---|---|---|"]
        local = [e["nu"] for e in d["local_exponents"]] + [float("nan")]
        pts = sorted(d["points"], key=lambda p: p["scale"])
        for p, nu in zip(pts, local):
            ll = "–" if p["recon_ll"] is None else f"{p['recon_ll']:.1f}"
            lines.append(f"| {p['scale']:.4g} | {p['beta']:.4g} | {p['kl']:.3f} ± {p['kl_se']:.3f} | {ll} | "
                         f"{p['mse']:.5f} | {p['active_units']} | {nu:.3f} | {p['train_seconds']:.0f} |")
    if "beta_vs_sigma" in r:
        lines += ["", f"## σ-sweep vs β-sweep (σ₁ = {r['beta_sigma1']:g}, β = σ²/σ₁²)", "",
                  "| σ | β | KL σ-sweep | KL β-sweep | rel. diff | diff / SE | MSE σ | MSE β | AU σ / β | ‖θσ−θβ‖/‖θσ‖ |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for c in r["beta_vs_sigma"]:
            lines.append(f"| {c['sigma']:.4g} | {c['beta']:.4g} | {c['kl_sigma']:.3f} | {c['kl_beta']:.3f} | "
                         f"{c['kl_rel_diff']:+.1e} | {c['kl_diff_in_se']:+.1e} | {c['mse_sigma']:.5f} | "
                         f"{c['mse_beta']:.5f} | {c['au_sigma']} / {c['au_beta']} | {c['param_rel_distance']:.3g} |")
    return "\n".join(lines) + "\n"


def _power_law_figure(r, path):
    # the object-oriented Figure needs no pyplot backend, so writing files never changes the user's backend
    from matplotlib.figure import Figure

    fams = r["families"]
    fig = Figure(figsize=(19, 4.3))
    axes = fig.subplots(1, 4)
    style = {"normal": ("C0", "o", "Normal σ-VAE (x = σ)"), "laplace": ("C1", "s", "Laplace σ-VAE (x = b)"),
             "beta": ("C2", "x", f"β-sweep at σ₁={r['beta_sigma1']:g} (x = σ₁√β)")}
    for fam, d in fams.items():
        color, marker, label = style[fam]
        pts = sorted(d["points"], key=lambda p: p["scale"])
        xs = np.array([p["scale"] for p in pts])
        f = d["fit"]
        axes[0].errorbar(xs, [p["kl"] for p in pts], yerr=[2 * p["kl_se"] for p in pts], color=color, marker=marker,
                         ls="none", ms=7 if fam != "beta" else 9, mfc="none" if fam == "beta" else color,
                         label=f"{label}: ν={f['nu']:.2f} [{f['ci'][0]:.2f}, {f['ci'][1]:.2f}], R²={f['r2']:.3f}")
        grid = np.geomspace(xs.min(), xs.max(), 50)
        fitobj = PowerLawFit(**{**f, "ci": tuple(f["ci"]), "ci_t": tuple(f["ci_t"])})
        axes[0].plot(grid, fitobj.predict(grid), color=color, lw=1, ls="--" if fam == "beta" else "-")
        br = d.get("broken")
        if br and fam != "beta":  # the β sweep's segments coincide with the Normal ones
            left = PowerLawFit(**{**br["left"], "ci": tuple(br["left"]["ci"]), "ci_t": tuple(br["left"]["ci_t"])})
            seg = grid[grid < br["x_break"]]
            axes[0].plot(seg, left.predict(seg), color=color, lw=2, ls=":",
                         label=f"  below {br['x_break']:.2g}: ν={left.nu:.2f} [{left.ci[0]:.2f}, {left.ci[1]:.2f}]")
        axes[1].plot([e["at"] for e in d["local_exponents"]], [e["nu"] for e in d["local_exponents"]],
                     color=color, marker=marker, label=label)
        axes[2].plot(xs, [p["active_units"] for p in pts], color=color, marker=marker, label=label)
        axes[3].plot(xs, [p["mse"] for p in pts], color=color, marker=marker, label=label)
    axes[0].set(xscale="log", yscale="log", xlabel="noise scale (σ or b)", ylabel="test KL(q(z|x) || p(z)) [nats]",
                title="KL vs noise scale (±2 SE)")
    axes[1].set(xscale="log", xlabel="noise scale", ylabel="local exponent −dlogKL/dlogσ", title="local exponents")
    axes[2].set(xscale="log", xlabel="noise scale", ylabel="active units (Var E[z_j|x] > 0.01)", title="active units")
    axes[3].set(xscale="log", yscale="log", xlabel="noise scale", ylabel="MSE of decode(E[z|x])",
                title="reconstruction error")
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# ----------------------------------------------------------------------------------------------------------
# experiment 2: inference on extreme noise
# ----------------------------------------------------------------------------------------------------------


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
    x_test, y_test, image_shape = _test_data(budget)
    train_set = load_dataset("mnist", split="train", root=budget.data_root)
    x_probe, y_probe = _subset(train_set.data, train_set.targets, probe_train_size, budget.seed + 3)
    x_probe, y_probe = x_probe.to(device), y_probe.to(device)
    noisy = {s: noisy_test_set(x_test, s, seed=budget.seed) for s in noise_levels}

    results = _header("noisy-inference", budget, command, started)
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
                                  "run": cfg.out, "status": status, "train_seconds": _train_seconds(history),
                                  "clean_kl": clean["kl"], "clean_active_units": clean["active_units"],
                                  "probe_train_acc": probe.accuracy(z_train, y_probe), "per_noise": rows})
        if progress:
            tqdm.write(f"{name:24s} " + "  ".join(f"s={r['s']:g}: mse {r['mse']:.4f} acc {r['probe_acc']:.3f}"
                                                   for r in rows[:: max(1, len(rows) // 4)]) + f" ({status})")
    results["wall_seconds"] = time.time() - started
    _write_json(out / "results.json", results)
    (out / "table.md").write_text(_noisy_markdown(results))
    _noisy_curves_figure(results, out / "metrics_vs_noise.png")
    for s in figure_levels:
        _noisy_grid_figure(results, s, x_test[:num_figure_images].cpu(), noisy[s][:num_figure_images].cpu(),
                           recons, image_shape, out / f"grid_s{s:g}.png")
    return results


def _noisy_markdown(r):
    b = r["budget"]
    models = r["models"]
    base = r["baselines"]
    lines = [
        "# Inference on extreme noise (MNIST, models trained on clean data only)",
        "",
        f"Command: `{r['command']}`  " if r["command"] else "Called from Python (no command line).  ",
        f"Budget per model: {b['epochs']} epochs on {b['train_size'] or 50000} training images "
        f"({b['epochs'] * math.ceil((b['train_size'] or 50000) / b['batch_size'])} Adam steps), batch "
        f"{b['batch_size']}, Adam lr {b['lr']}, MLP 784-{'-'.join(map(str, b['hidden_dims']))}-{b['z_dim']}, seed "
        f"{b['seed']}, device {b['device']}, {r['torch_threads']} torch thread(s). Test: {r['test_size']} images, "
        f"y = x + N(0, s²I) unclipped; probes fitted on {r['probe_train_size']} clean training images; "
        f"training time {sum(m['train_seconds'] for m in models) / 60:.1f} min (sum over models), wall time of "
        f"this invocation {r['wall_seconds'] / 60:.1f} min.",
        "",
        "## MSE of decode(E[z|y]) against the clean x (PSNR in dB in parentheses)",
        "",
        f"Constant guess (mean training image, ignores y): MSE {base['mean_image']['mse']:.4f} "
        f"(PSNR {base['mean_image']['psnr']:.1f} dB). Best model per row in bold.",
        "",
        "| s | noisy y | clip(y) | " + " | ".join(m["name"] for m in models) + " |",
        "|---|---|---|" + "---|" * len(models),
    ]
    for i, s in enumerate(r["noise_levels"]):
        cells = [f"{base[k][i]['mse']:.4f} ({'∞' if base[k][i]['psnr'] is None else format(base[k][i]['psnr'], '.1f')})"
                 for k in ("noisy_input", "noisy_input_clipped")]
        best = min(m["per_noise"][i]["mse"] for m in models)
        for m in models:
            row = m["per_noise"][i]
            txt = f"{row['mse']:.4f} ({row['psnr']:.1f})"
            cells.append(f"**{txt}**" if row["mse"] == best else txt)
        lines.append(f"| {s:g} | " + " | ".join(cells) + " |")
    for metric, title in (("probe_acc", "Linear-probe accuracy on latents of noisy inputs (pixels: probe on raw pixels)"),
                          ("knn_acc", f"{r['knn_k']}-NN accuracy on latents of noisy inputs")):
        lines += ["", f"## {title}", "",
                  "| s | pixels y | pixels clip(y) | " + " | ".join(m["name"] for m in models) + " |",
                  "|---|---|---|" + "---|" * len(models)]
        for i, s in enumerate(r["noise_levels"]):
            vals = [m["per_noise"][i][metric] for m in models]
            best = max(vals)
            cells = [f"{base['pixels'][i][metric]:.3f}", f"{base['pixels_clipped'][i][metric]:.3f}"]
            cells += [f"**{v:.3f}**" if v == best else f"{v:.3f}" for v in vals]
            lines.append(f"| {s:g} | " + " | ".join(cells) + " |")
    lines += ["", "## Models", "", "| model | clean test KL | active units | probe train acc | train s | run |",
              "|---|---|---|---|---|---|"]
    for m in models:
        lines.append(f"| {m['name']} | {m['clean_kl']:.2f} | {m['clean_active_units']} | {m['probe_train_acc']:.3f} | "
                     f"{m['train_seconds']:.0f} | `{m['run']}` |")
    return "\n".join(lines) + "\n"


def _noisy_curves_figure(r, path):
    # the object-oriented Figure needs no pyplot backend, so writing files never changes the user's backend
    from matplotlib.figure import Figure

    s = r["noise_levels"]
    fig = Figure(figsize=(21, 4.3))
    axes = fig.subplots(1, 4)
    for i, m in enumerate(r["models"]):
        ls = "-" if m["kind"] == "sigma-vae" else "--"
        rows = m["per_noise"]
        for ax, key in zip(axes, ("mse", "psnr", "probe_acc", "knn_acc")):
            ax.plot(s, [row[key] for row in rows], ls=ls, marker="o", color=f"C{i}", label=m["name"])
    base = r["baselines"]
    for ax, key in zip(axes, ("mse", "psnr")):
        ax.axhline(base["mean_image"][key], color="k", lw=1, ls="-.", label="mean training image")
    axes[3].plot(s, [b["knn_acc"] for b in base["pixels"]], color="k", ls=":", marker=".", label="k-NN on pixels y")
    axes[3].set(xlabel="test noise s", ylabel="accuracy", ylim=(0, 1), title=f"{r['knn_k']}-NN on E[z|y] (trained clean)")
    axes[0].plot(s, [b["mse"] for b in base["noisy_input_clipped"]], color="k", ls=":", marker=".", label="clip(y) itself")
    axes[1].plot(s[1:], [b["psnr"] for b in base["noisy_input_clipped"]][1:], color="k", ls=":", marker=".",
                 label="clip(y) itself")
    axes[2].plot(s, [b["probe_acc"] for b in base["pixels"]], color="k", ls=":", marker=".", label="probe on pixels y")
    axes[2].plot(s, [b["probe_acc"] for b in base["pixels_clipped"]], color="gray", ls=":", marker=".",
                 label="probe on pixels clip(y)")
    axes[0].set(yscale="log", xlabel="test noise s", ylabel="MSE vs clean x", title="reconstruction error of decode(E[z|y])")
    axes[1].set(xlabel="test noise s", ylabel="PSNR [dB]", title="PSNR vs clean x")
    axes[2].set(xlabel="test noise s", ylabel="accuracy", ylim=(0, 1), title="linear probe on E[z|y] (trained clean)")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _noisy_grid_figure(r, s, x, y, recons, image_shape, path):
    # the object-oriented Figure needs no pyplot backend, so writing files never changes the user's backend
    from matplotlib.figure import Figure

    h, w = image_shape
    rows = [("clean x", x), (f"noisy y, s={s:g} (clipped for display)", y.clamp(0, 1))]
    rows += [(m["name"], recons[(m["name"], s)]) for m in r["models"]]
    n = x.shape[0]
    label_w, strip_h = 2.2, 0.6  # inches: room for the row labels, height of one row of digits
    width, height = label_w + n * strip_h, len(rows) * (strip_h + 0.08) + 0.4
    fig = Figure(figsize=(width, height))
    axes = fig.subplots(len(rows), 1)
    fig.subplots_adjust(left=label_w / width, right=0.99, bottom=0.02, top=1 - 0.35 / height, hspace=0.12)
    for ax, (label, imgs) in zip(axes, rows):
        strip = imgs.reshape(n, h, w).clamp(0, 1).permute(1, 0, 2).reshape(h, n * w)
        ax.imshow(strip.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(f"test noise s = {s:g}: reconstructions decode(E[z|y])", fontsize=9)
    fig.savefig(path, dpi=110)


# ----------------------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------------------


def _optional_int(s):
    return None if s.lower() == "none" else int(s)


def _add_budget_arguments(p, out_default):
    d = Budget()
    g = p.add_argument_group("budget and architecture (shared by every model)")
    g.add_argument("-n", "--epochs", type=int, default=d.epochs, help="epochs per model (default %(default)s)")
    g.add_argument("--train-size", type=_optional_int, default=d.train_size,
                   help="random subset of the 50,000 MNIST training images; 'none' for all (default %(default)s)")
    g.add_argument("-b", "--batch-size", type=int, default=d.batch_size)
    g.add_argument("-lr", "--learning-rate", dest="lr", type=float, default=d.lr)
    g.add_argument("--z-dim", type=int, default=d.z_dim)
    g.add_argument("--hidden-dims", type=int, nargs="+", default=list(d.hidden_dims))
    g.add_argument("--eval-size", type=_optional_int, default=d.eval_size,
                   help="test images used for measurements (default: all 10,000)")
    g.add_argument("--seed", type=int, default=d.seed)
    g = p.add_argument_group("environment")
    g.add_argument("--data-root", default=None, help="folder holding MNIST/raw (default: $PYRO_NOISEVAE_DATA or ./data)")
    g.add_argument("--device", default="cpu", help="cpu or cuda (default %(default)s)")
    g.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    g.add_argument("-o", "--out", default=out_default, help="results folder (default %(default)s)")
    g.add_argument("--runs", default="runs/sigma_vae",
                   help="folder of the per-model run folders; finished models there are reused (default %(default)s)")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")


def _budget_from_args(args):
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was requested but torch sees no CUDA device; use --device cpu")
    return Budget(train_size=args.train_size, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                  z_dim=args.z_dim, hidden_dims=tuple(args.hidden_dims), eval_size=args.eval_size, seed=args.seed,
                  device=args.device, data_root=args.data_root)


def _command_line(args, skip=("func", "command", "no_progress", "threads")):
    """An explicit command line (every option spelt out) that reproduces ``args``."""
    words = ["pyro-noisevae", args.command]
    for key, value in vars(args).items():
        if key in skip:
            continue
        flag = "--" + key.replace("_", "-")
        if value is None:
            if key in ("train_size", "eval_size"):  # None is spelt 'none' on the command line
                words += [flag, "none"]
            continue
        if key == "lr":
            flag = "--learning-rate"
        if isinstance(value, bool):
            if value:
                words.append(flag)
        elif isinstance(value, (list, tuple)):
            words += [flag, *map(str, value)]
        else:
            words += [flag, str(value)]
    if args.threads is not None:
        words += ["--threads", str(args.threads)]
    return " ".join(shlex.quote(w) for w in words)


def _run(args, fn, **kwargs):
    try:
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        budget = _budget_from_args(args)
        fn(budget=budget, out=args.out, runs_dir=args.runs, progress=not args.no_progress,
           command=_command_line(args), **kwargs)
    except (ValueError, FileNotFoundError) as e:
        print(f"pyro-noisevae {args.command}: error: {e}", file=sys.stderr)
        return 2
    print(f"results written to {args.out}", file=sys.stderr)
    return 0


def _sweep_main(args):
    return _run(args, sweep_sigma, sigmas=args.sigmas, laplace_scales=args.laplace_scales,
                beta_sigma1=args.beta_sigma1, families=args.families, num_bootstrap=args.num_bootstrap)


def _noisy_main(args):
    return _run(args, noisy_inference, sigmas=args.sigmas, vanilla_sigma=args.vanilla_sigma,
                noise_levels=args.noise_levels, probe_train_size=args.probe_train_size, knn_k=args.knn_k,
                figure_levels=args.figure_levels)


def register(subparsers):
    """Add the ``sweep-sigma`` and ``noisy-inference`` subcommands to a CLI."""
    p = subparsers.add_parser(
        "sweep-sigma",
        help="sigma-VAE KL power law D_KL ~ sigma^-nu on MNIST (Normal, Laplace, and the equivalent beta sweep)",
        description="Train sigma-VAEs over a grid of sigma (and Laplace b, and beta at fixed sigma_1), measure the "
                    "test KL, fit nu with a bootstrap CI. Resumable: finished models in --runs are reused.",
    )
    p.add_argument("--sigmas", type=float, nargs="+", default=list(DEFAULT_SCALES),
                   help="sigma grid of the Normal sweep (default: 10 log-spaced values in [0.05, 2])")
    p.add_argument("--laplace-scales", type=float, nargs="+", default=list(DEFAULT_SCALES),
                   help="b grid of the Laplace sweep (default: same as --sigmas default)")
    p.add_argument("--beta-sigma1", type=float, default=0.2,
                   help="sigma_1 of the beta sweep, beta = sigma^2 / sigma_1^2 (default %(default)s)")
    p.add_argument("--families", nargs="+", default=["normal", "laplace", "beta"], choices=["normal", "laplace", "beta"])
    p.add_argument("--num-bootstrap", type=int, default=2000, help="bootstrap replicates for the CI of nu")
    _add_budget_arguments(p, "results/sigma_vae/power_law")
    p.set_defaults(func=_sweep_main)

    p = subparsers.add_parser(
        "noisy-inference",
        help="sigma-VAEs vs vanilla VAEs on test digits with extreme Gaussian noise (trained on clean data only)",
        description="Reconstruction MSE/PSNR and linear-probe / kNN accuracy on latents of y = x + N(0, s^2 I), "
                    "with pixel baselines. Resumable: finished models in --runs are reused.",
    )
    p.add_argument("--sigmas", type=float, nargs="+", default=[0.2, 0.5, 1.0], help="sigma of the sigma-VAEs")
    p.add_argument("--vanilla-sigma", type=float, default=0.05, help="sigma of the vanilla Normal-decoder VAE")
    p.add_argument("--noise-levels", type=float, nargs="+", default=list(DEFAULT_NOISE_LEVELS),
                   help="test noise standard deviations s (default %(default)s)")
    p.add_argument("--figure-levels", type=float, nargs="+", default=[0.5, 1.0, 1.5],
                   help="noise levels with a reconstruction grid figure (default %(default)s)")
    p.add_argument("--probe-train-size", type=int, default=10000, help="clean training images for the probes")
    p.add_argument("--knn-k", type=int, default=5)
    _add_budget_arguments(p, "results/sigma_vae/noisy_inference")
    p.set_defaults(func=_noisy_main)


def main(argv=None):
    """Run one of this module's subcommands (``python -m pyro_noisevae.experiments.sigma_vae sweep-sigma ...``)."""
    parser = argparse.ArgumentParser(prog="sigma_vae")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
