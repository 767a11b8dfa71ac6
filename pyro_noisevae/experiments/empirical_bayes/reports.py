"""Markdown tables and figures of the empirical-Bayes experiments."""

import math

import matplotlib
import matplotlib.patches
import torch

from ..common import figure
from .models import KINDS

__all__ = [
    "METHOD_LABELS",
    "chains_figure",
    "chains_markdown",
    "classes_figure",
    "denoise_figure",
    "denoise_markdown",
    "jumps_figure",
    "matched_figure",
    "matched_markdown",
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


def _sigma(tag):
    return tag.replace("p", ".")


def _sorted_tags(d):
    return sorted(d, key=lambda t: float(_sigma(t)))


def matched_markdown(res):
    """The tables of :func:`~.denoising.uvb_vs_deen_matched`: per seed, over seeds, paired differences, training."""
    cfg, par = res["config"], res["parameters"]
    tags = _sorted_tags(res["denoising"])
    seeds = [str(s) for s in cfg["seeds"]]
    methods = [m for m in METHOD_LABELS if m in res["denoising"][tags[0]][seeds[0]]]
    lines = ["# UVB vs DEEN at equal capacity and equal budget, MNIST test denoising", ""]
    lines.append(
        f"UVB: σ-VAE z_dim {cfg['z_dim']}, hidden {cfg['hidden_dims']}, {par['uvb']:,} parameters. DEEN: hidden "
        f"{cfg['deen_hidden_dims']}, {par['deen']:,} parameters (difference {100 * par['relative_difference']:+.2f}%, "
        f"tolerance ±{100 * cfg['match_tolerance']:.0f}%). Both: Adam lr {cfg['lr']}, batch {cfg['batch_size']}, "
        f"{cfg['epochs']} epochs on {cfg['train_size'] or 50000} training images, seeds {', '.join(seeds)}. "
        f"Evaluation on {cfg['test_size'] or 10000} test images with one noise draw shared by all seeds; UVB's "
        f"ELBO energy averaged over {cfg['eval_particles']} latent samples. MSE per pixel (unclipped estimates) "
        "± 1 s.e. over images; PSNR = 10 log10(1/MSE)."
    )
    for t in tags:
        lines += ["", f"## σ = {_sigma(t)}: each seed, MSE ± s.e. (PSNR dB)", ""]
        lines += ["| method | " + " | ".join(f"seed {s}" for s in seeds) + " |", "|---|" + "---:|" * len(seeds)]
        for m in methods:
            cells = [f"{r['mse']:.4f} ± {r['mse_se']:.4f} ({r['psnr']:.2f})"
                     for r in (res["denoising"][t][s][m] for s in seeds)]
            lines.append(f"| {METHOD_LABELS[m]} | " + " | ".join(cells) + " |")
    lines += ["", f"## Over the {len(seeds)} seeds: mean ± standard deviation [min, max]", ""]
    lines += ["| method | " + " | ".join(f"MSE σ={_sigma(t)} | PSNR σ={_sigma(t)}" for t in tags) + " |",
              "|---|" + "---:|---:|" * len(tags)]
    for m in methods:
        cells = []
        for t in tags:
            a, b = res["summary"][t][m]["mse"], res["summary"][t][m]["psnr"]
            cells.append(f"{a['mean']:.4f} ± {a['sd']:.4f} [{a['min']:.4f}, {a['max']:.4f}] | "
                         f"{b['mean']:.2f} ± {b['sd']:.2f} [{b['min']:.2f}, {b['max']:.2f}]")
        lines.append(f"| {METHOD_LABELS[m]} | " + " | ".join(cells) + " |")
    lines += ["", "## Paired per-image differences of MSE (negative: the first is better), ± 1 s.e. over images", "",
              "| σ | seed | UVB − DEEN | images where UVB beats DEEN | UVB − Wiener | DEEN − Wiener |",
              "|---|---|---:|---:|---:|---:|"]
    for t in tags:
        for s in seeds:
            p = res["paired"][t][s]
            cell = "{mean:+.5f} ± {se:.5f}".format
            lines.append(f"| {_sigma(t)} | {s} | {cell(**p['uvb_minus_deen'])} | "
                         f"{100 * p['uvb_minus_deen']['fraction_a_better']:.1f}% | {cell(**p['uvb_minus_wiener'])} | "
                         f"{cell(**p['deen_minus_wiener'])} |")
    lines += ["", "## Training", "", "| model | epochs | final loss ‖x − x̂‖² | seconds |", "|---|---:|---:|---:|"]
    for key, rec in sorted(res["training"].items()):
        lines.append(f"| {key} | {rec['epochs']} | {rec['losses'][-1]:.3f} | {rec['seconds']} |")
    return "\n".join(lines) + "\n"


def matched_figure(res):
    """PSNR of DEEN and UVB per seed at each σ, with the Wiener filter and the mean image as lines."""
    tags = _sorted_tags(res["denoising"])
    fig = figure(figsize=(4 * len(tags), 3))
    axes = fig.subplots(1, len(tags), squeeze=False)[0]
    for ax, t in zip(axes, tags):
        for i, m in enumerate(("deen", "uvb")):
            vals = [r[m]["psnr"] for r in res["denoising"][t].values()]
            ax.plot([i] * len(vals), vals, "o", alpha=0.7, label=f"{m.upper()} (one dot per seed)")
        for m, style in (("wiener", "--"), ("mean", ":")):
            ax.axhline(res["summary"][t][m]["psnr"]["mean"], ls=style, color="gray", label=METHOD_LABELS[m])
        ax.set_xticks([0, 1], ["DEEN", "UVB"])
        ax.set_xlim(-0.6, 1.6)
        ax.set_ylabel("PSNR (dB)")
        ax.set_title(f"σ = {_sigma(t)}, equal parameter counts", fontsize=9)
        ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


#: per-chain statistics summarized over chains by :func:`chains_markdown`, with their column titles
CHAIN_COLUMNS = {
    "classes_visited": "classes visited",
    "transitions": "class changes",
    "confident_fraction": "confident fraction",
    "classes_visited_confident": "classes visited (confident)",
    "transitions_confident": "class changes (confident)",
}


def chains_markdown(res):
    """The tables of :func:`~.walk_jump.walk_jump_chains`: summary over chains per energy and step, then each chain."""
    cfg = res["config"]
    runs = res["runs"]
    first = next(iter(runs.values()))
    thr = first["summary"]["confident_threshold"]
    lines = ["# Walk-jump sampling with many chains on MNIST", ""]
    lines.append(
        f"σ = {cfg['sigma']}, {cfg['num_chains']} chains per energy and step size, run in parallel (one batch), "
        f"each started from its own U(0,1) + N(0, σ²) draw; {cfg['num_steps']} BAOAB underdamped Langevin steps "
        f"(step δ = eps_scale·σ, friction {cfg['friction']}, inverse mass {cfg['inverse_mass']}); a jump x̂(y) every "
        f"{cfg['jump_every']} steps, the one at step 0 excluded. UVB energy averaged over {cfg['energy_particles']} "
        f"latent samples per step. Models: UVB hidden {cfg['hidden_dims']}, DEEN hidden {cfg['deen_hidden_dims']}, "
        f"seed {cfg['seed']}. Jumps labelled by the MLP classifier (MNIST test accuracy "
        f"{100 * res['classifier_test_accuracy']:.2f}%); a jump is confident when the classifier's largest "
        f"probability is ≥ {thr}. Cells: mean over chains [min, max]."
    )
    lines += ["", "| energy | eps_scale | jumps per chain | " + " | ".join(CHAIN_COLUMNS.values())
              + " | classes over all chains | chains visiting all 10 | seconds |",
              "|---|---:|---:|" + "---:|" * len(CHAIN_COLUMNS) + "---:|---:|---:|"]
    for r in runs.values():
        sm = r["summary"]
        cells = []
        for key in CHAIN_COLUMNS:
            a = sm[key]
            mean_fmt, range_fmt = ("{:.2f}", "{:.2f}") if key == "confident_fraction" else ("{:.1f}", "{:g}")
            cells.append(f"{mean_fmt.format(a['mean'])} [{range_fmt.format(a['min'])}, {range_fmt.format(a['max'])}]")
        lines.append(f"| {r['model'].upper()} | {r['eps_scale']:g} | {sm['jumps_per_chain']} | " + " | ".join(cells)
                     + f" | {sm['classes_over_all_chains']} | {sm['chains_visiting_all_classes']} / "
                     f"{sm['num_chains']} | {r['seconds']} |")
    lines += ["", "## Classes over all chains", "", "| energy | eps_scale | jumps per class 0..9, all chains | "
              "jump by which a chain has seen all 10 classes (median, max; over the chains that do) |",
              "|---|---:|---|---:|"]
    for r in runs.values():
        sm, to_all = r["summary"], r["summary"]["jumps_to_all_classes"]
        reach = "never" if to_all is None else f"{to_all['median']}, {to_all['max']}"
        lines.append(f"| {r['model'].upper()} | {r['eps_scale']:g} | {' '.join(map(str, sm['class_counts_all_chains']))} "
                     f"| {reach} |")
    lines += ["", "## Each chain", "", "| energy | eps_scale | chain | " + " | ".join(CHAIN_COLUMNS.values())
              + " | jumps per class 0..9 |", "|---|---:|---:|" + "---:|" * len(CHAIN_COLUMNS) + "---|"]
    for r in runs.values():
        for c, st in enumerate(r["chains"]):
            vals = [f"{st[k]:.2f}" if k == "confident_fraction" else str(st[k]) for k in CHAIN_COLUMNS]
            lines.append(f"| {r['model'].upper()} | {r['eps_scale']:g} | {c} | " + " | ".join(vals)
                         + f" | {' '.join(map(str, st['class_counts']))} |")
    return "\n".join(lines) + "\n"


def chains_figure(kind, eps_scale, jumps, steps, labels, conf, sigma, threshold, num_times=20):
    """
    Chains × time: the jumps ``(J, C, 784)`` of every chain (rows) at ``num_times`` evenly spaced jumps
    (columns), and below, every jump's classifier label (colour) of every chain, faded where the label's
    probability is under ``threshold``.
    """
    num_jumps, num_chains = labels.shape
    idx = torch.linspace(1, num_jumps - 1, min(num_times, num_jumps - 1)).round().long().unique()
    fig = figure(figsize=(max(8.0, 0.45 * len(idx) + 1), 0.45 * num_chains * 1.45 + 1.6))
    top, bottom = fig.subplots(2, 1, gridspec_kw={"height_ratios": [num_chains, 0.45 * num_chains]})
    grid = jumps[idx].transpose(0, 1).reshape(-1, jumps.shape[-1])  # row c: chain c over time
    top.imshow(_grid(grid, len(idx)), cmap="gray", vmin=0, vmax=1)
    top.set_xticks([(28 + 1) * i + 15 for i in range(len(idx))], [str(int(steps[i])) for i in idx.tolist()],
                   fontsize=5, rotation=90)
    top.set_yticks([(28 + 1) * c + 15 for c in range(num_chains)], [str(c) for c in range(num_chains)], fontsize=6)
    top.set_ylabel("chain", fontsize=8)
    top.set_xlabel("Langevin step of the jump", fontsize=7)
    cmap = matplotlib.colormaps["tab10"]
    rgba = torch.tensor(cmap(labels[1:].T.numpy()))  # integer labels index tab10's 10 colours
    rgba[..., 3] = torch.where(conf[1:].T >= threshold, 1.0, 0.25)
    bottom.imshow(rgba.numpy(), aspect="auto", interpolation="nearest",
                  extent=(float(steps[1]), float(steps[-1]), num_chains - 0.5, -0.5))
    bottom.set_xlabel("Langevin step", fontsize=7)
    bottom.set_ylabel("chain", fontsize=8)
    bottom.tick_params(labelsize=6)
    handles = [matplotlib.patches.Patch(color=cmap(k), label=str(k)) for k in range(10)]
    bottom.legend(handles=handles, ncol=10, fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.35),
                  frameon=False, title=f"classifier label (faded: probability < {threshold})", title_fontsize=6)
    name = {"uvb": "UVB", "deen": "DEEN"}.get(kind, kind)
    fig.suptitle(f"{name} walk-jump, σ = {sigma:g}, step δ = {eps_scale:g}σ: {num_chains} chains × time", fontsize=9)
    fig.tight_layout()
    return fig
