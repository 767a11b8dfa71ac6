"""Experiments for unnormalized variational Bayes (UVB) and neural empirical Bayes (DEEN) on MNIST.

Two experiments, each a function writing JSON + a Markdown table + PNGs into an output folder, resumable
(one checkpoint per trained model, updated every epoch, and one JSON per finished stage):

* :func:`uvb_denoise` (CLI ``uvb-denoise``): denoising MSE / PSNR on MNIST test images at σ ∈ {0.5, 1} for UVB,
  DEEN, the plain σ-VAE (reconstruction, and the Bayes estimator of its ELBO), the Wiener filter and the mean
  image; and the "UVB ≠ VAE" comparison of a UVB-trained VAE with a plain σ-VAE.
* :func:`walk_jump_experiment` (CLI ``walk-jump``): one long walk-jump chain at σ = 1 on the UVB energy (and,
  for contrast, on DEEN), classified by an MLP digit classifier trained here: classes visited and class
  transitions.

Both share the trained models when run with the same ``out`` folder and model settings.

    python -m pyro_noisevae.experiments.empirical_bayes uvb-denoise --out results/empirical_bayes
    python -m pyro_noisevae.experiments.empirical_bayes walk-jump --out results/empirical_bayes
"""

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import pyro
import torch
from pyro.infer import TraceMeanField_ELBO
from torch import nn
from tqdm import tqdm

from ..analysis import active_units
from ..data import load_dataset
from ..empirical_bayes import DEEN, ELBOEnergy, GaussianEnergy, bayes_estimator, walk_jump
from ..models import VAE, elbo_terms

__all__ = ["DEFAULTS", "register", "uvb_denoise", "walk_jump_experiment"]

#: default budget: about 15-25 minutes for ``uvb_denoise`` and 5-10 for ``walk_jump_experiment`` (which reuses
#: the σ = 1 models of ``uvb_denoise`` from the same folder) on one CPU thread
DEFAULTS = dict(
    z_dim=32,
    hidden_dims=(256, 256),
    deen_hidden_dims=(512, 512),
    epochs=6,
    batch_size=100,
    lr=1e-3,
    seed=0,
    train_size=None,
    test_size=None,
)

_KINDS = ("vae", "uvb", "deen")
_LABELS = {
    "identity": "noisy input y (no denoising)",
    "mean": "mean training image",
    "wiener": "Wiener filter (optimal linear)",
    "vae_recon": "σ-VAE reconstruction decode(enc(y))",
    "vae_energy": "σ-VAE ELBO as energy: y + σ²∇ELBO(y)",
    "deen": "DEEN (MLP energy)",
    "uvb": "UVB (ELBO energy, denoising-trained)",
}


# ----------------------------------------------------------------------------------------------------------
# small utilities
# ----------------------------------------------------------------------------------------------------------


def _sigma_tag(sigma):
    return f"{sigma:g}".replace(".", "p")


def _write_json(path, obj):
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _read_json(path):
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else None


def _save_torch(path, obj):
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _load_torch(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def _jsonable(cfg):
    return json.loads(json.dumps(cfg, default=lambda o: list(o) if isinstance(o, tuple) else str(o)))


def _load_mnist(split, size=None, seed=0, root=None):
    ds = load_dataset("mnist", split=split, root=root)
    x, t = ds.data, ds.targets
    if size is not None and size < x.shape[0]:
        idx = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))[:size]
        x, t = x[idx], t[idx]
    return x, t


def _grid(images, nrow, pad=1):
    """``(N, 784)`` -> a 2-D array with ``nrow`` images per row, clipped to [0, 1] for display."""
    images = images.detach().cpu().clamp(0, 1).reshape(-1, 28, 28)
    n = images.shape[0]
    ncol_rows = math.ceil(n / nrow)
    canvas = torch.ones(ncol_rows * (28 + pad) + pad, nrow * (28 + pad) + pad)
    for i in range(n):
        r, c = divmod(i, nrow)
        canvas[pad + r * (28 + pad) : pad + r * (28 + pad) + 28, pad + c * (28 + pad) : pad + c * (28 + pad) + 28] = images[i]
    return canvas.numpy()


def _figure(*args, **kwargs):
    # object-oriented matplotlib: no pyplot, no global backend change
    from matplotlib.figure import Figure

    return Figure(*args, **kwargs)


def _psnr(mse):
    return 10 * math.log10(1.0 / mse)


# ----------------------------------------------------------------------------------------------------------
# models and resumable training
# ----------------------------------------------------------------------------------------------------------


def _build(kind, sigma, cfg):
    if kind in ("vae", "uvb"):
        # UVB's latent variable model is a σ-VAE for Y = X + N(0, σ²I): its decoder noise is the real noise
        return VAE(784, cfg["z_dim"], cfg["hidden_dims"], likelihood="normal", sigma=sigma)
    if kind == "deen":
        return DEEN(784, cfg["deen_hidden_dims"])
    raise ValueError(kind)


def _energy(kind, module, num_particles=1):
    if kind == "deen":
        return module
    return ELBOEnergy(module.model, module.guide, num_particles=num_particles)


def _model_meta(kind, sigma, cfg):
    keys = ("z_dim", "hidden_dims") if kind != "deen" else ("deen_hidden_dims",)
    meta = {"kind": kind, "sigma": sigma, "batch_size": cfg["batch_size"], "lr": cfg["lr"], "seed": cfg["seed"],
            "train_size": cfg["train_size"]}
    meta.update({k: cfg[k] for k in keys})
    return _jsonable(meta)


def _train_model(kind, sigma, cfg, x_train, out, device, progress):
    """
    Train (or resume, or load) one model; a checkpoint is written after every epoch.

    ``vae``: plain σ-VAE, ELBO on clean data (TraceMeanField_ELBO). ``uvb``: the same VAE trained by
    :func:`denoising_loss` through its ELBO energy. ``deen``: MLP energy, same objective.
    """
    ckpt_path = Path(out) / "checkpoints" / f"{kind}_sigma{_sigma_tag(sigma)}.pt"
    ckpt_path.parent.mkdir(parents=True, exist_ok=True)
    meta = _model_meta(kind, sigma, cfg)
    torch.manual_seed(cfg["seed"])
    module = _build(kind, sigma, cfg).to(device)
    opt = torch.optim.Adam(module.parameters(), lr=cfg["lr"])
    state = {"epoch": 0, "losses": [], "seconds": 0.0}
    if ckpt_path.is_file():
        ckpt = _load_torch(ckpt_path)
        if json.loads(ckpt["meta"]) != meta:
            raise ValueError(
                f"{ckpt_path} was trained with different settings ({ckpt['meta']}); use another --out folder "
                f"or delete the checkpoint"
            )
        module.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optim"])
        state = {"epoch": int(ckpt["epoch"]), "losses": list(ckpt["losses"]), "seconds": float(ckpt["seconds"])}
    n, bs = x_train.shape[0], cfg["batch_size"]
    elbo = TraceMeanField_ELBO(max_plate_nesting=1)
    energy = _energy(kind, module)
    for epoch in range(state["epoch"], cfg["epochs"]):
        t0 = time.time()
        # every epoch's order and noise derive from (seed, epoch): resuming replays the same run
        gen = torch.Generator().manual_seed(1000 * cfg["seed"] + epoch)
        torch.manual_seed(1000 * cfg["seed"] + epoch)
        perm = torch.randperm(n, generator=gen)
        total, count = 0.0, 0
        bar = tqdm(range(0, n, bs), desc=f"{kind} σ={sigma:g} epoch {epoch + 1}/{cfg['epochs']}", disable=not progress)
        for start in bar:
            x = x_train[perm[start : start + bs]].to(device)
            if kind == "vae":
                loss = elbo.differentiable_loss(module.model, module.guide, x) / x.shape[0]
            else:
                eps = torch.randn(x.shape, generator=gen).to(device)
                y = x + sigma * eps
                x_hat = bayes_estimator(energy, y, sigma, create_graph=True)
                loss = (x - x_hat).pow(2).sum(-1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * x.shape[0]
            count += x.shape[0]
            bar.set_postfix(loss=f"{total / count:.3f}")
        state["epoch"] = epoch + 1
        state["losses"].append(total / count)
        state["seconds"] += time.time() - t0
        _save_torch(ckpt_path, {"meta": json.dumps(meta), "model": module.state_dict(), "optim": opt.state_dict(),
                                "epoch": state["epoch"], "losses": state["losses"], "seconds": state["seconds"]})
    module.eval()
    return module, state


# ----------------------------------------------------------------------------------------------------------
# (a) denoising, and (c) UVB ≠ VAE
# ----------------------------------------------------------------------------------------------------------


def _wiener(x_train):
    """Mean and covariance of the training images (float64), for the optimal linear denoiser."""
    x = x_train.double()
    mean = x.mean(0)
    cov = torch.cov(x.T)
    return mean, cov


def _denoise_all(methods, y, batch_size, device, progress, desc):
    outs = {name: [] for name in methods}
    for start in tqdm(range(0, y.shape[0], batch_size), desc=desc, disable=not progress):
        yb = y[start : start + batch_size].to(device)
        for name, fn in methods.items():
            outs[name].append(fn(yb).detach().cpu())
    return {name: torch.cat(v) for name, v in outs.items()}


@torch.no_grad()
def _encoder_stats(vae, x, x_clean, batch_size, device):
    """
    Per-point ELBO of ``x`` (one reparameterized sample, analytic KL: :func:`~pyro_noisevae.models.elbo_terms`),
    KL, MSE of decode(E_q[z|x]) against the clean images ``x_clean``, and active units
    (:func:`~pyro_noisevae.analysis.active_units`: Var_x(E_q[z|x]) > 0.01).
    """
    gen = torch.Generator().manual_seed(123)
    elbo_sum = kl_sum = mse_sum = 0.0
    locs = []
    for start in range(0, x.shape[0], batch_size):
        xb = x[start : start + batch_size].to(device)
        terms = elbo_terms(vae, xb, generator=gen)
        elbo_sum += terms["elbo"].sum().item()
        kl_sum += terms["kl"].sum().item()
        mse_sum += (vae.decode(terms["loc"]) - x_clean[start : start + batch_size].to(device)).pow(2).mean(-1).sum().item()
        locs.append(terms["loc"].cpu())
    n = x.shape[0]
    return {"elbo": elbo_sum / n, "kl": kl_sum / n, "recon_mse_vs_clean": mse_sum / n,
            "active_units": active_units(torch.cat(locs))[0]}


def uvb_denoise(
    out="results/empirical_bayes",
    sigmas=(0.5, 1.0),
    *,
    epochs=DEFAULTS["epochs"],
    batch_size=DEFAULTS["batch_size"],
    lr=DEFAULTS["lr"],
    z_dim=DEFAULTS["z_dim"],
    hidden_dims=DEFAULTS["hidden_dims"],
    deen_hidden_dims=DEFAULTS["deen_hidden_dims"],
    train_size=DEFAULTS["train_size"],
    test_size=DEFAULTS["test_size"],
    eval_particles=10,
    seed=DEFAULTS["seed"],
    data_root=None,
    device="cpu",
    progress=True,
):
    r"""
    Experiment (a) + (c): denoising MNIST test digits :math:`y = x + \sigma\varepsilon` at each σ with

    * ``uvb``: a σ-VAE (decoder noise σ) trained with the UVB objective :math:`E\lVert x - \hat x(y)\rVert^2`,
      :math:`\hat x(y) = y + \sigma^2 \nabla_y \mathrm{ELBO}(y)` (double backpropagation);
    * ``deen``: an MLP energy trained with the same objective;
    * ``vae_recon`` / ``vae_energy``: a plain σ-VAE trained on clean images with its ELBO, used either as an
      autoencoder ``decode(E_q[z|y])`` or through the Bayes estimator of its ELBO;
    * ``wiener``: :math:`\mu + \Sigma(\Sigma + \sigma^2 I)^{-1}(y - \mu)` with the training mean/covariance;
      ``mean``: the mean image; ``identity``: :math:`y` itself.

    Metrics: MSE per pixel over all test pixels (estimates not clipped) and :math:`\mathrm{PSNR} =
    10\log_{10}(1/\mathrm{MSE})` (peak 1). ELBO energies are averaged over ``eval_particles`` latent samples.
    Then (c): for the plain σ-VAE and the UVB-trained VAE, the ELBO, KL, active units and reconstruction error
    of their encoders/decoders on clean and on noisy test images, and figures of reconstructions and of
    decoder samples :math:`\mathrm{decode}(z), z \sim N(0, I)`.

    Writes ``uvb_denoise.json``, ``uvb_denoise.md``, ``denoise_sigma*.png``, ``uvb_vs_vae_sigma*.png``,
    ``samples_sigma*.png`` and ``training_curves.png`` to ``out``; checkpoints in ``out/checkpoints``, stage
    results in ``out/stages``. Rerunning resumes.

    :returns: the results dictionary (also in ``uvb_denoise.json``).
    """
    cfg = dict(epochs=int(epochs), batch_size=int(batch_size), lr=float(lr), z_dim=int(z_dim),
               hidden_dims=tuple(hidden_dims), deen_hidden_dims=tuple(deen_hidden_dims), train_size=train_size,
               test_size=test_size, seed=int(seed))
    sigmas = [float(s) for s in sigmas]
    out = Path(out)
    (out / "stages").mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    t_start = time.time()
    pyro.set_rng_seed(cfg["seed"])
    x_train, _ = _load_mnist("train", train_size, seed, data_root)
    x_test, _ = _load_mnist("test", test_size, seed + 1, data_root)
    mean, cov = _wiener(x_train)

    results = {"config": _jsonable(dict(cfg, sigmas=sigmas, eval_particles=eval_particles, device=str(device))),
               "denoising": {}, "uvb_vs_vae": {}, "training": {}}
    with pyro.settings.context(module_local_params=True):
        for sigma in sigmas:
            tag = _sigma_tag(sigma)
            models, states = {}, {}
            for kind in _KINDS:
                models[kind], states[kind] = _train_model(kind, sigma, cfg, x_train, out, device, progress)
                results["training"][f"{kind}_sigma{tag}"] = {
                    "epochs": states[kind]["epoch"], "losses": states[kind]["losses"],
                    "seconds": round(states[kind]["seconds"], 1),
                    "parameters": sum(p.numel() for p in models[kind].parameters()),
                }
            stage_key = _jsonable(dict(cfg, sigma=sigma, eval_particles=eval_particles))
            stage_path = out / "stages" / f"denoise_sigma{tag}.json"
            stage = _read_json(stage_path)
            if stage is None or stage.get("key") != stage_key:
                stage = {"key": stage_key, **_evaluate_sigma(sigma, models, x_test, mean, cov, eval_particles, seed,
                                                             out, device, progress)}
                _write_json(stage_path, stage)
            results["denoising"][tag] = stage["denoising"]
            results["uvb_vs_vae"][tag] = stage["uvb_vs_vae"]
    _training_figure(results["training"], out / "training_curves.png")
    results["seconds_this_call"] = round(time.time() - t_start, 1)
    _write_json(out / "uvb_denoise.json", results)
    (out / "uvb_denoise.md").write_text(_denoise_markdown(results))
    return results


def _evaluate_sigma(sigma, models, x_test, mean, cov, eval_particles, seed, out, device, progress):
    tag = _sigma_tag(sigma)
    gen = torch.Generator().manual_seed(10_000 + seed)
    y_test = x_test + sigma * torch.randn(x_test.shape, generator=gen)
    torch.manual_seed(seed)
    wiener = GaussianEnergy.smoothed(mean, cov, sigma).to(device)
    vae, uvb, deen = models["vae"], models["uvb"], models["deen"]
    vae_energy = _energy("vae", vae, eval_particles)
    uvb_energy = _energy("uvb", uvb, eval_particles)
    mean_dev = mean.float().to(device)
    methods = {
        "identity": lambda y: y,
        "mean": lambda y: mean_dev.expand_as(y),
        "wiener": lambda y: bayes_estimator(wiener, y.double(), sigma).float(),
        "vae_recon": torch.no_grad()(lambda y: vae.reconstruct(y)),
        "vae_energy": lambda y: bayes_estimator(vae_energy, y, sigma),
        "deen": lambda y: bayes_estimator(deen, y, sigma),
        "uvb": lambda y: bayes_estimator(uvb_energy, y, sigma),
    }
    est = _denoise_all(methods, y_test, 250, device, progress, f"denoise σ={sigma:g}")
    denoising = {}
    for name, x_hat in est.items():
        mse = (x_hat - x_test).pow(2).mean().item()
        per_image = (x_hat - x_test).pow(2).mean(-1)
        denoising[name] = {"label": _LABELS[name], "mse": mse, "mse_se": per_image.std().item() / per_image.numel() ** 0.5,
                           "psnr": _psnr(mse),
                           "mse_clipped": (x_hat.clamp(0, 1) - x_test).pow(2).mean().item()}

    # figure: 10 test digits, rows = methods
    rows = ["clean", "noisy"] + [k for k in ("wiener", "vae_recon", "vae_energy", "deen", "uvb")]
    show = torch.arange(10)
    imgs = {"clean": x_test[show], "noisy": y_test[show], **{k: est[k][show] for k in rows[2:]}}
    fig = _figure(figsize=(8, 1.0 * len(rows) + 0.3))
    axes = fig.subplots(len(rows), 1)
    for ax, r in zip(axes, rows):
        ax.imshow(_grid(imgs[r], 10), cmap="gray", vmin=0, vmax=1)
        ax.set_axis_off()
        label = r if r in ("clean", "noisy") else f"{r} (PSNR {denoising[r]['psnr']:.1f} dB)"
        ax.set_title(label, fontsize=8, loc="left")
    fig.suptitle(f"MNIST test denoising, σ = {sigma:g} (images clipped to [0,1] for display)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / f"denoise_sigma{tag}.png", dpi=110)

    # (c) UVB ≠ VAE: the encoder/decoder of the two models
    comparison = {}
    for name, model in (("vae", vae), ("uvb", uvb)):
        comparison[name] = {
            "clean_x": _encoder_stats(model, x_test, x_test, 500, device),
            "noisy_y": _encoder_stats(model, y_test, x_test, 500, device),
        }
    with torch.no_grad():
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(64, vae.z_dim, generator=g).to(device)
        samples = {name: model.decode(z).cpu() for name, model in (("vae", vae), ("uvb", uvb))}
        recon = {name: model.reconstruct(x_test[show].to(device)).cpu() for name, model in (("vae", vae), ("uvb", uvb))}
        recon_y = {name: model.reconstruct(y_test[show].to(device)).cpu() for name, model in (("vae", vae), ("uvb", uvb))}
    for name in ("vae", "uvb"):
        comparison[name]["sample_pixel_mean"] = samples[name].mean().item()
        comparison[name]["sample_diversity"] = samples[name].std(0).mean().item()
    fig = _figure(figsize=(8, 4.6))
    axes = fig.subplots(5, 1)
    panels = [("clean x", x_test[show]), ("σ-VAE decode(E_q[z|x])", recon["vae"]), ("UVB decode(E_q[z|x])", recon["uvb"]),
              ("σ-VAE decode(E_q[z|y])", recon_y["vae"]), ("UVB decode(E_q[z|y])", recon_y["uvb"])]
    for ax, (title, im) in zip(axes, panels):
        ax.imshow(_grid(im, 10), cmap="gray", vmin=0, vmax=1)
        ax.set_axis_off()
        ax.set_title(title, fontsize=8, loc="left")
    fig.suptitle(f"UVB ≠ VAE at σ = {sigma:g}: reconstructions through each model's encoder/decoder", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / f"uvb_vs_vae_sigma{tag}.png", dpi=110)
    fig = _figure(figsize=(8, 4.3))
    axes = fig.subplots(1, 2)
    for ax, name in zip(axes, ("vae", "uvb")):
        ax.imshow(_grid(samples[name], 8), cmap="gray", vmin=0, vmax=1)
        ax.set_axis_off()
        ax.set_title(f"{'σ-VAE' if name == 'vae' else 'UVB'} decoder samples decode(z), z ~ N(0, I)", fontsize=8)
    fig.suptitle(f"σ = {sigma:g}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / f"samples_sigma{tag}.png", dpi=110)
    return {"denoising": denoising, "uvb_vs_vae": comparison}


def _training_figure(training, path):
    fig = _figure(figsize=(9, 3))
    axes = fig.subplots(1, 3)
    for ax, kind in zip(axes, _KINDS):
        for key, rec in sorted(training.items()):
            if key.startswith(kind + "_"):
                ax.plot(range(1, len(rec["losses"]) + 1), rec["losses"], marker="o", label=key.split("_", 1)[1])
        ax.set_title({"vae": "σ-VAE: −ELBO per image", "uvb": "UVB: ‖x − x̂‖² per image",
                      "deen": "DEEN: ‖x − x̂‖² per image"}[kind], fontsize=9)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _denoise_markdown(res):
    cfg = res["config"]
    lines = ["# UVB vs DEEN vs σ-VAE denoising on MNIST (test set)", ""]
    lines.append(
        f"Budget: {cfg['epochs']} epochs per model, batch {cfg['batch_size']}, Adam lr {cfg['lr']}, VAE z_dim "
        f"{cfg['z_dim']} hidden {cfg['hidden_dims']}, DEEN hidden {cfg['deen_hidden_dims']}, train size "
        f"{cfg['train_size'] or 50000}, test size {cfg['test_size'] or 10000}, ELBO energies averaged over "
        f"{cfg['eval_particles']} latent samples at test time. MSE per pixel (unclipped estimates; ± 1 s.e. over "
        "images), PSNR = 10 log10(1/MSE)."
    )
    lines.append("")
    tags = sorted(res["denoising"], key=lambda t: float(t.replace("p", ".")))
    header = "| method | " + " | ".join(f"MSE σ={t.replace('p', '.')} | PSNR σ={t.replace('p', '.')}" for t in tags) + " |"
    lines += [header, "|---|" + "---:|---:|" * len(tags)]
    for name, label in _LABELS.items():
        cells = []
        for t in tags:
            r = res["denoising"][t][name]
            cells.append(f"{r['mse']:.4f} ± {r['mse_se']:.4f} | {r['psnr']:.2f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "## UVB ≠ VAE: encoder/decoder of the plain σ-VAE and of the UVB-trained VAE", ""]
    lines.append("| σ | model | input | ELBO (nats) | KL (nats) | active units | MSE decode(E_q[z]) vs clean x |")
    lines.append("|---|---|---|---:|---:|---:|---:|")
    for t in tags:
        for name in ("vae", "uvb"):
            for inp in ("clean_x", "noisy_y"):
                r = res["uvb_vs_vae"][t][name][inp]
                lines.append(
                    f"| {t.replace('p', '.')} | {'σ-VAE' if name == 'vae' else 'UVB'} | {inp.replace('_', ' ')} | "
                    f"{r['elbo']:.1f} | {r['kl']:.2f} | {r['active_units']} | {r['recon_mse_vs_clean']:.4f} |"
                )
    lines += ["", "## Training", "", "| model | epochs | final loss | parameters | seconds |", "|---|---:|---:|---:|---:|"]
    for key, rec in sorted(res["training"].items()):
        lines.append(f"| {key} | {rec['epochs']} | {rec['losses'][-1]:.3f} | {rec['parameters']} | {rec['seconds']} |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------------------
# (b) walk-jump sampling
# ----------------------------------------------------------------------------------------------------------


class _Classifier(nn.Module):
    """MLP digit classifier 784 -> 512 -> 256 -> 10 (ReLU), used only to label walk-jump samples."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10))

    def forward(self, x):
        return self.net(x)


def _train_classifier(out, x_train, t_train, x_test, t_test, epochs, seed, device, progress):
    path = Path(out) / "checkpoints" / "classifier.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    clf = _Classifier().to(device)
    meta = json.dumps({"epochs": epochs, "seed": seed, "train_size": int(x_train.shape[0])})
    if path.is_file():
        ckpt = _load_torch(path)
        if ckpt["meta"] == meta:
            clf.load_state_dict(ckpt["model"])
            clf.eval()
            return clf, float(ckpt["test_accuracy"])
    opt = torch.optim.Adam(clf.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        perm = torch.randperm(x_train.shape[0], generator=gen)
        for start in tqdm(range(0, x_train.shape[0], 128), desc=f"classifier epoch {epoch + 1}/{epochs}",
                          disable=not progress):
            idx = perm[start : start + 128]
            loss = nn.functional.cross_entropy(clf(x_train[idx].to(device)), t_train[idx].to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
    clf.eval()
    with torch.no_grad():
        acc = (clf(x_test.to(device)).argmax(-1).cpu() == t_test).float().mean().item()
    _save_torch(path, {"meta": meta, "model": clf.state_dict(), "test_accuracy": acc})
    return clf, acc


def _class_stats(labels, confidence, threshold):
    labels = labels.tolist()
    transitions = sum(a != b for a, b in zip(labels[:-1], labels[1:]))
    confident = [lab for lab, c in zip(labels, confidence.tolist()) if c >= threshold]
    counts = [labels.count(k) for k in range(10)]
    # transitions between consecutive confident jumps: label flicker on ambiguous jumps does not count
    confident_transitions = sum(a != b for a, b in zip(confident[:-1], confident[1:]))
    return {
        "num_jumps": len(labels),
        "classes_visited": len(set(labels)),
        "class_counts": counts,
        "transitions": transitions,
        "confident_threshold": threshold,
        "confident_jumps": len(confident),
        "classes_visited_confident": len(set(confident)),
        "transitions_confident": confident_transitions,
        "mean_confidence": float(confidence.mean()),
        "first_visit_jump": {str(k): labels.index(k) for k in sorted(set(labels))},
    }


def walk_jump_experiment(
    out="results/empirical_bayes",
    sigma=1.0,
    *,
    num_steps=10_000,
    jump_every=20,
    eps_scale=0.5,
    friction=0.5,
    inverse_mass=1.0,
    energy_particles=8,
    models=("uvb", "deen"),
    classifier_epochs=3,
    confident_threshold=0.9,
    epochs=DEFAULTS["epochs"],
    batch_size=DEFAULTS["batch_size"],
    lr=DEFAULTS["lr"],
    z_dim=DEFAULTS["z_dim"],
    hidden_dims=DEFAULTS["hidden_dims"],
    deen_hidden_dims=DEFAULTS["deen_hidden_dims"],
    train_size=DEFAULTS["train_size"],
    seed=DEFAULTS["seed"],
    data_root=None,
    device="cpu",
    progress=True,
):
    r"""
    Experiment (b): one long walk-jump chain at σ (default 1) on each learned energy (UVB first, DEEN for
    contrast), started from :math:`U(0,1)^{784} + N(0, \sigma^2 I)`, with underdamped Langevin steps
    :math:`\delta = \mathrm{eps\_scale}\cdot\sigma`, friction and inverse mass as given, and a jump
    :math:`\hat x(y_t)` every ``jump_every`` steps. The jumps (after the one at step 0) are labelled by an MLP
    digit classifier trained here on the MNIST training split (its test accuracy is reported): number of
    digit classes visited, class transitions between consecutive jumps, and the same counts restricted to
    jumps the classifier labels with probability ≥ ``confident_threshold``.

    The models are those of :func:`uvb_denoise` (same checkpoints when run in the same ``out`` with the same
    settings), trained here if missing. The UVB energy averages ``energy_particles`` latent samples per step.

    Writes ``walk_jump.json``, ``walk_jump.md``, ``walk_jump_<model>.png`` (jumps) and ``walk_jump_classes.png``.

    :returns: the results dictionary (also in ``walk_jump.json``).
    """
    cfg = dict(epochs=int(epochs), batch_size=int(batch_size), lr=float(lr), z_dim=int(z_dim),
               hidden_dims=tuple(hidden_dims), deen_hidden_dims=tuple(deen_hidden_dims), train_size=train_size,
               test_size=None, seed=int(seed))
    sigma = float(sigma)
    out = Path(out)
    (out / "stages").mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    t_start = time.time()
    pyro.set_rng_seed(cfg["seed"])
    x_train, t_train = _load_mnist("train", train_size, seed, data_root)
    x_test, t_test = _load_mnist("test", root=data_root)
    clf, acc = _train_classifier(out, x_train, t_train, x_test, t_test, classifier_epochs, seed, device, progress)
    chain_cfg = dict(sigma=sigma, num_steps=int(num_steps), jump_every=int(jump_every), eps_scale=eps_scale,
                     friction=friction, inverse_mass=inverse_mass, energy_particles=int(energy_particles), seed=seed)
    results = {"config": _jsonable(dict(cfg, **chain_cfg, classifier_epochs=classifier_epochs, device=str(device))),
               "classifier_test_accuracy": acc, "chains": {}}
    jumps_by_model = {}
    with pyro.settings.context(module_local_params=True):
        for kind in models:
            module, _ = _train_model(kind, sigma, cfg, x_train, out, device, progress)
            stage_path = out / "checkpoints" / f"walk_jump_{kind}_sigma{_sigma_tag(sigma)}.pt"
            key = json.dumps(_jsonable(dict(chain_cfg, model=_model_meta(kind, sigma, cfg), epochs=cfg["epochs"])))
            stage = _load_torch(stage_path) if stage_path.is_file() else None
            if stage is None or stage["key"] != key:
                energy = _energy(kind, module, energy_particles)
                gen = torch.Generator(device=device).manual_seed(seed)
                torch.manual_seed(seed)
                t0 = time.time()
                res = walk_jump(energy, sigma, int(num_steps), num_chains=1, jump_every=int(jump_every),
                                eps_scale=eps_scale, friction=friction, inverse_mass=inverse_mass, save_every=0,
                                generator=gen, progress=progress)
                stage = {"key": key, "jumps": res.jumps[:, 0], "jump_steps": res.jump_steps,
                         "seconds": time.time() - t0}
                _save_torch(stage_path, stage)
            jumps = stage["jumps"]
            with torch.no_grad():
                probs = clf(jumps.to(device)).softmax(-1).cpu()
            conf, labels = probs.max(-1)
            # drop the jump at step 0: it denoises the random initial point, not a state of the walk
            stats = _class_stats(labels[1:], conf[1:], confident_threshold)
            stats["seconds"] = round(float(stage["seconds"]), 1)
            stats["labels"] = labels.tolist()
            results["chains"][kind] = stats
            jumps_by_model[kind] = (jumps, stage["jump_steps"], labels, conf)
            _jumps_figure(kind, jumps, stage["jump_steps"], labels, conf, sigma, out / f"walk_jump_{kind}.png")
    _classes_figure(jumps_by_model, out / "walk_jump_classes.png")
    results["seconds_this_call"] = round(time.time() - t_start, 1)
    _write_json(out / "walk_jump.json", results)
    (out / "walk_jump.md").write_text(_walk_markdown(results))
    return results


def _jumps_figure(kind, jumps, steps, labels, conf, sigma, path, num_show=100):
    idx = torch.linspace(1, len(jumps) - 1, min(num_show, len(jumps) - 1)).round().long().unique()
    ncol = 10
    nrow = math.ceil(len(idx) / ncol)
    fig = _figure(figsize=(ncol * 0.9, nrow * 1.05 + 0.4))
    axes = fig.subplots(nrow, ncol, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, i in zip(axes.flat, idx.tolist()):
        ax.imshow(jumps[i].clamp(0, 1).reshape(28, 28).numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{labels[i].item()} ({conf[i].item():.2f})", fontsize=6)
    name = {"uvb": "UVB", "deen": "DEEN"}.get(kind, kind)
    fig.suptitle(f"{name} walk-jump at σ = {sigma:g}: jumps x̂(y_t), steps {int(steps[idx[0]])}..{int(steps[idx[-1]])} "
                 "(title: classifier label (prob.))", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _classes_figure(jumps_by_model, path):
    fig = _figure(figsize=(9, 1.8 * len(jumps_by_model) + 0.3))
    axes = fig.subplots(len(jumps_by_model), 1, squeeze=False)[:, 0]
    for ax, (kind, (jumps, steps, labels, conf)) in zip(axes, jumps_by_model.items()):
        sc = ax.scatter(steps[1:].numpy(), labels[1:].numpy(), c=conf[1:].numpy(), s=6, cmap="viridis", vmin=0, vmax=1)
        ax.plot(steps[1:].numpy(), labels[1:].numpy(), lw=0.3, color="gray")
        ax.set_yticks(range(10))
        ax.set_ylabel(f"{kind.upper()}\nclass", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[-1].set_xlabel("Langevin step")
    fig.colorbar(sc, ax=list(axes), label="classifier prob.")
    fig.savefig(path, dpi=100)


def _walk_markdown(res):
    cfg = res["config"]
    lines = ["# Walk-jump sampling on MNIST", ""]
    lines.append(
        f"σ = {cfg['sigma']}, {cfg['num_steps']} underdamped Langevin steps (δ = {cfg['eps_scale']}·σ, friction "
        f"{cfg['friction']}, inverse mass {cfg['inverse_mass']}), one jump x̂(y) every {cfg['jump_every']} steps, "
        f"one chain per model started from U(0,1) + N(0, σ²). UVB energy averaged over {cfg['energy_particles']} "
        f"latent samples per step. Jumps labelled by an MLP classifier with MNIST test accuracy "
        f"{100 * res['classifier_test_accuracy']:.2f}%; the jump at step 0 is excluded. \"Confident\" columns use "
        "only jumps labelled with probability above the threshold (the classifier can also be confident on "
        "images that are not digits: look at the jump figures)."
    )
    lines += ["", "| energy | jumps | classes visited | class transitions | confident jumps (p ≥ "
              f"{next(iter(res['chains'].values()))['confident_threshold'] if res['chains'] else ''}) | classes visited (confident) "
              "| transitions (confident) | mean classifier prob. | jumps per class 0..9 |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for kind, s in res["chains"].items():
        lines.append(
            f"| {kind.upper()} | {s['num_jumps']} | {s['classes_visited']} | {s['transitions']} | {s['confident_jumps']} | "
            f"{s['classes_visited_confident']} | {s['transitions_confident']} | {s['mean_confidence']:.2f} | {' '.join(map(str, s['class_counts']))} |"
        )
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------------------


def _add_model_args(p):
    g = p.add_argument_group("models (shared by uvb-denoise and walk-jump: same settings reuse checkpoints)")
    g.add_argument("-n", "--epochs", type=int, default=DEFAULTS["epochs"], help="epochs per model (default %(default)s)")
    g.add_argument("-b", "--batch-size", type=int, default=DEFAULTS["batch_size"])
    g.add_argument("-lr", "--learning-rate", dest="lr", type=float, default=DEFAULTS["lr"])
    g.add_argument("--z-dim", type=int, default=DEFAULTS["z_dim"])
    g.add_argument("--hidden-dims", type=int, nargs="+", default=list(DEFAULTS["hidden_dims"]))
    g.add_argument("--deen-hidden-dims", type=int, nargs="+", default=list(DEFAULTS["deen_hidden_dims"]))
    g.add_argument("--train-size", type=int, default=None, help="train on a random subset (quick runs)")
    g.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    g = p.add_argument_group("run")
    g.add_argument("--data-root", default=None, help="folder holding MNIST/raw (default: $PYRO_NOISEVAE_DATA or ./data)")
    g.add_argument("-o", "--out", default="results/empirical_bayes", help="output folder (default %(default)s)")
    g.add_argument("--device", default="cpu", help="cpu or cuda (default %(default)s)")
    g.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")


def _model_kwargs(args):
    return dict(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, z_dim=args.z_dim,
                hidden_dims=tuple(args.hidden_dims), deen_hidden_dims=tuple(args.deen_hidden_dims),
                train_size=args.train_size, seed=args.seed, data_root=args.data_root, device=args.device,
                progress=not args.no_progress)


def _uvb_denoise_main(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    res = uvb_denoise(args.out, tuple(args.sigmas), test_size=args.test_size, eval_particles=args.eval_particles,
                      **_model_kwargs(args))
    print((Path(args.out) / "uvb_denoise.md").read_text())
    return 0 if res else 1


def _walk_jump_main(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    walk_jump_experiment(args.out, args.sigma, num_steps=args.num_steps, jump_every=args.jump_every,
                         eps_scale=args.eps_scale, friction=args.friction, inverse_mass=args.inverse_mass,
                         energy_particles=args.energy_particles, models=tuple(args.models),
                         classifier_epochs=args.classifier_epochs, **_model_kwargs(args))
    print((Path(args.out) / "walk_jump.md").read_text())
    return 0


def register(subparsers):
    """Add the ``uvb-denoise`` and ``walk-jump`` subcommands to a CLI's ``subparsers``."""
    p = subparsers.add_parser(
        "uvb-denoise",
        help="UVB vs DEEN vs σ-VAE vs Wiener denoising on MNIST, and UVB ≠ VAE",
        description=uvb_denoise.__doc__.split("\n\n")[0].strip(),
    )
    p.add_argument("--sigmas", type=float, nargs="+", default=[0.5, 1.0], help="noise levels (default %(default)s)")
    p.add_argument("--test-size", type=int, default=None, help="evaluate on a random test subset")
    p.add_argument("--eval-particles", type=int, default=10, help="latent samples averaged in ELBO energies at test time")
    _add_model_args(p)
    p.set_defaults(func=_uvb_denoise_main)
    p = subparsers.add_parser(
        "walk-jump",
        help="one long walk-jump chain on the UVB (and DEEN) energy, classes visited",
        description=walk_jump_experiment.__doc__.split("\n\n")[0].strip(),
    )
    p.add_argument("--sigma", type=float, default=1.0)
    p.add_argument("--num-steps", type=int, default=10_000)
    p.add_argument("--jump-every", type=int, default=20)
    p.add_argument("--eps-scale", type=float, default=0.5, help="Langevin step δ = eps_scale·σ (default %(default)s)")
    p.add_argument("--friction", type=float, default=0.5)
    p.add_argument("--inverse-mass", type=float, default=1.0)
    p.add_argument("--energy-particles", type=int, default=8)
    p.add_argument("--models", nargs="+", default=["uvb", "deen"], choices=["uvb", "deen", "vae"])
    p.add_argument("--classifier-epochs", type=int, default=3)
    _add_model_args(p)
    p.set_defaults(func=_walk_jump_main)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m pyro_noisevae.experiments.empirical_bayes", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
