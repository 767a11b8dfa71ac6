"""The figures of a run folder: reconstructions, prior samples and loss curves."""

import io

import torch
from matplotlib.figure import Figure  # not pyplot: the caller's backend (e.g. inline) is left alone
from matplotlib.image import imsave

from .run_folder import atomic_write

__all__ = ["image_grid", "write_figures"]


def image_grid(images, nrow, padding=1, pad_value=1.0):
    """
    Tile grey images ``(N, H, W)`` into one ``(rows·(H+p)+p, nrow·(W+p)+p)`` image, row-major, with
    ``padding`` pixels of ``pad_value`` around each.
    """
    n, h, w = images.shape
    rows = -(-n // nrow)
    grid = torch.full((rows * (h + padding) + padding, nrow * (w + padding) + padding), pad_value, dtype=images.dtype)
    for i, img in enumerate(images):
        r, c = divmod(i, nrow)
        top, left = padding + r * (h + padding), padding + c * (w + padding)
        grid[top : top + h, left : left + w] = img
    return grid


def _save_png(path, image):
    buf = io.BytesIO()
    imsave(buf, image.clamp(0, 1).cpu().numpy(), cmap="gray", vmin=0.0, vmax=1.0, format="png")
    atomic_write(path, lambda f: f.write(buf.getvalue()))


@torch.no_grad()
def write_figures(out, vae, test_data, image_shape, history, cfg, n=16):
    """
    Write ``reconstructions.png`` (clean test images, their reconstructions, the same images with
    N(0, ``cfg.noisy_eval_std``²) noise, their reconstructions), ``samples.png`` (64 prior samples) and
    ``loss_curves.png`` (training and test −ELBO per point over the steps) to the folder ``out``.
    """
    h, w = image_shape
    gen = torch.Generator(device=test_data.device).manual_seed(cfg.seed)
    x = test_data[:n]
    noisy = x + cfg.noisy_eval_std * torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
    rows = torch.cat([x, vae.reconstruct(x), noisy.clamp(0, 1), vae.reconstruct(noisy)])
    _save_png(out / "reconstructions.png", image_grid(rows.reshape(-1, h, w).cpu(), nrow=x.shape[0]))
    samples = vae.sample(64, generator=gen).reshape(-1, h, w).cpu()
    _save_png(out / "samples.png", image_grid(samples, nrow=8))

    train_pts = [(r["step"], r["loss"]) for r in history if r["kind"] == "train"]
    eval_pts = [(r["step"], -r["test_elbo"]) for r in history if r["kind"] == "eval"]
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    if train_pts:
        ax.plot(*zip(*train_pts), label="train: −ELBO / point", lw=1)
    if eval_pts:
        ax.plot(*zip(*eval_pts), "o-", label="test: −ELBO / point")
    ax.set_xlabel("step")
    ax.set_ylabel("nats")
    scale = "b" if cfg.likelihood == "laplace" else "σ"
    ax.set_title(f"{cfg.dataset}, likelihood={cfg.likelihood}, {scale}={cfg.sigma}, β={cfg.beta}")
    ax.legend()
    fig.tight_layout()
    atomic_write(out / "loss_curves.png", lambda f: fig.savefig(f, format="png", dpi=100))
