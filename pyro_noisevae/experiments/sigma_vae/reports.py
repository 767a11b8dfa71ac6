"""Markdown tables and figures of the σ-VAE experiments, from their results dictionaries."""

import math

import numpy as np

from ...analysis import PowerLawFit
from ..common import figure

__all__ = ["noisy_curves_figure", "noisy_grid_figure", "noisy_markdown", "power_law_figure", "power_law_markdown"]


def _fmt_ci(fit):
    return f"{fit['nu']:.3f} [{fit['ci'][0]:.3f}, {fit['ci'][1]:.3f}]"


def _command_line(r):
    return f"Command: `{r['command']}`  " if r["command"] else "Called from Python (no command line).  "


def _budget_sentence(r, images):
    """The training budget of every model of the results ``r``, trained on ``images``, with the threads used."""
    b = r["budget"]
    n = b["train_size"] or 50000
    return (f"Budget per model: {b['epochs']} epochs on {n} {images} ({b['epochs'] * math.ceil(n / b['batch_size'])} "
            f"Adam steps), batch {b['batch_size']}, Adam lr {b['lr']}, MLP 784-{'-'.join(map(str, b['hidden_dims']))}-"
            f"{b['z_dim']}, seed {b['seed']}, device {b['device']}, {r['torch_threads']} torch thread(s)")


def power_law_markdown(r):
    b = r["budget"]
    lines = [
        "# σ-VAE KL power law on MNIST",
        "",
        _command_line(r),
        _budget_sentence(r, "MNIST training images") + "; measured on "
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


def power_law_figure(r):
    fams = r["families"]
    fig = figure(figsize=(19, 4.3))
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
    return fig


def noisy_markdown(r):
    models = r["models"]
    base = r["baselines"]
    lines = [
        "# Inference on extreme noise (MNIST, models trained on clean data only)",
        "",
        _command_line(r),
        _budget_sentence(r, "training images") + f". Test: {r['test_size']} images, "
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


def noisy_curves_figure(r):
    s = r["noise_levels"]
    fig = figure(figsize=(21, 4.3))
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
    return fig


def noisy_grid_figure(r, s, x, y, recons, image_shape):
    h, w = image_shape
    rows = [("clean x", x), (f"noisy y, s={s:g} (clipped for display)", y.clamp(0, 1))]
    rows += [(m["name"], recons[(m["name"], s)]) for m in r["models"]]
    n = x.shape[0]
    label_w, strip_h = 2.2, 0.6  # inches: room for the row labels, height of one row of digits
    width, height = label_w + n * strip_h, len(rows) * (strip_h + 0.08) + 0.4
    fig = figure(figsize=(width, height))
    axes = fig.subplots(len(rows), 1)
    fig.subplots_adjust(left=label_w / width, right=0.99, bottom=0.02, top=1 - 0.35 / height, hspace=0.12)
    for ax, (label, imgs) in zip(axes, rows):
        strip = imgs.reshape(n, h, w).clamp(0, 1).permute(1, 0, 2).reshape(h, n * w)
        ax.imshow(strip.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(f"test noise s = {s:g}: reconstructions decode(E[z|y])", fontsize=9)
    return fig
