"""Markdown tables and figures of the empirical-Bayes experiments."""

import math

import torch

from ..common import figure
from .models import KINDS

__all__ = [
    "METHOD_LABELS",
    "classes_figure",
    "denoise_figure",
    "denoise_markdown",
    "jumps_figure",
    "samples_figure",
    "training_figure",
    "uvb_vs_vae_figure",
    "walk_markdown",
]

#: the denoisers of ``uvb_denoise``, in table order
METHOD_LABELS = {
    "identity": "noisy input y (no denoising)",
    "mean": "mean training image",
    "wiener": "Wiener filter (optimal linear)",
    "vae_recon": "σ-VAE reconstruction decode(enc(y))",
    "vae_energy": "σ-VAE ELBO as energy: y + σ²∇ELBO(y)",
    "deen": "DEEN (MLP energy)",
    "uvb": "UVB (ELBO energy, denoising-trained)",
}


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


def _rows_figure(panels, nrow, figsize, suptitle, layout=None, title_loc="left"):
    """One image grid per panel ``(title, images)``, ``nrow`` images per row; panels stacked (or on ``layout``)."""
    fig = figure(figsize=figsize)
    axes = fig.subplots(*(layout or (len(panels), 1)), squeeze=False)
    for ax, (title, images) in zip(axes.flat, panels):
        ax.imshow(_grid(images, nrow), cmap="gray", vmin=0, vmax=1)
        ax.set_axis_off()
        ax.set_title(title, fontsize=8, loc=title_loc)
    fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    return fig


def denoise_figure(sigma, imgs, rows, denoising):
    """10 test digits, one row per method (``imgs[row]``), titled with the method's PSNR."""
    panels = [(r if r in ("clean", "noisy") else f"{r} (PSNR {denoising[r]['psnr']:.1f} dB)", imgs[r]) for r in rows]
    return _rows_figure(panels, 10, (8, 1.0 * len(rows) + 0.3),
                        f"MNIST test denoising, σ = {sigma:g} (images clipped to [0,1] for display)")


def uvb_vs_vae_figure(sigma, panels):
    """Rows of reconstructions ``panels = [(title, images), ...]`` through each model's encoder/decoder."""
    return _rows_figure(panels, 10, (8, 4.6),
                        f"UVB ≠ VAE at σ = {sigma:g}: reconstructions through each model's encoder/decoder")


def samples_figure(sigma, samples):
    """Decoder samples of the plain σ-VAE and of the UVB-trained VAE, ``samples[name]`` ``(64, 784)``."""
    panels = [(f"{'σ-VAE' if name == 'vae' else 'UVB'} decoder samples decode(z), z ~ N(0, I)", samples[name])
              for name in ("vae", "uvb")]
    return _rows_figure(panels, 8, (8, 4.3), f"σ = {sigma:g}", layout=(1, 2), title_loc="center")


def training_figure(training):
    fig = figure(figsize=(9, 3))
    axes = fig.subplots(1, 3)
    for ax, kind in zip(axes, KINDS):
        for key, rec in sorted(training.items()):
            if key.startswith(kind + "_"):
                ax.plot(range(1, len(rec["losses"]) + 1), rec["losses"], marker="o", label=key.split("_", 1)[1])
        ax.set_title({"vae": "σ-VAE: −ELBO per image", "uvb": "UVB: ‖x − x̂‖² per image",
                      "deen": "DEEN: ‖x − x̂‖² per image"}[kind], fontsize=9)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def denoise_markdown(res):
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
    for name, label in METHOD_LABELS.items():
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


def jumps_figure(kind, jumps, steps, labels, conf, sigma, num_show=100):
    idx = torch.linspace(1, len(jumps) - 1, min(num_show, len(jumps) - 1)).round().long().unique()
    ncol = 10
    nrow = math.ceil(len(idx) / ncol)
    fig = figure(figsize=(ncol * 0.9, nrow * 1.05 + 0.4))
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
    return fig


def classes_figure(jumps_by_model):
    fig = figure(figsize=(9, 1.8 * len(jumps_by_model) + 0.3))
    axes = fig.subplots(len(jumps_by_model), 1, squeeze=False)[:, 0]
    for ax, (kind, (jumps, steps, labels, conf)) in zip(axes, jumps_by_model.items()):
        sc = ax.scatter(steps[1:].numpy(), labels[1:].numpy(), c=conf[1:].numpy(), s=6, cmap="viridis", vmin=0, vmax=1)
        ax.plot(steps[1:].numpy(), labels[1:].numpy(), lw=0.3, color="gray")
        ax.set_yticks(range(10))
        ax.set_ylabel(f"{kind.upper()}\nclass", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[-1].set_xlabel("Langevin step")
    fig.colorbar(sc, ax=list(axes), label="classifier prob.")
    return fig


def walk_markdown(res):
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
