"""The models of the empirical-Bayes experiments (σ-VAE, UVB, DEEN, a digit classifier) and their training."""

import json
import time
from pathlib import Path

import torch
from pyro.infer import TraceMeanField_ELBO
from torch import nn
from tqdm import tqdm

from ...empirical_bayes import DEEN, ELBOEnergy, bayes_estimator
from ...models import VAE
from ..common import load_split, load_torch, save_torch

__all__ = [
    "DEFAULTS",
    "KINDS",
    "Classifier",
    "jsonable",
    "load_mnist",
    "model_energy",
    "model_meta",
    "sigma_tag",
    "train_classifier",
    "train_model",
]

#: default budget: about 15-25 minutes for ``uvb_denoise`` and 5-10 for ``walk_jump_experiment`` (which reuses
#: the σ = 1 models of ``uvb_denoise`` from the same folder) on one CPU thread
DEFAULTS = dict(
    z_dim=32,
    hidden_dims=(256, 256),
    deen_hidden_dims=(1000, 1000),  # DEEN's default for D = 784: a first layer narrower than D cannot denoise
    epochs=6,
    batch_size=100,
    lr=1e-3,
    seed=0,
    train_size=None,
    test_size=None,
)

#: the models trained at each σ
KINDS = ("vae", "uvb", "deen")


def sigma_tag(sigma):
    """σ in file names: ``0.5 -> "0p5"``."""
    return f"{sigma:g}".replace(".", "p")


def jsonable(cfg):
    """``cfg`` as plain JSON values (tuples as lists, anything else unknown as its string)."""
    return json.loads(json.dumps(cfg, default=lambda o: list(o) if isinstance(o, tuple) else str(o)))


def load_mnist(split, size=None, seed=0, root=None):
    """``(images, labels)`` of an MNIST split, a seeded random subset of ``size`` of them when given."""
    ds = load_split("mnist", split, size, seed, root=root)
    return ds.data, ds.targets


def _build(kind, sigma, cfg):
    if kind in ("vae", "uvb"):
        # UVB's latent variable model is a σ-VAE for Y = X + N(0, σ²I): its decoder noise is the real noise
        return VAE(784, cfg["z_dim"], cfg["hidden_dims"], likelihood="normal", sigma=sigma)
    if kind == "deen":
        return DEEN(784, cfg["deen_hidden_dims"])
    raise ValueError(kind)


def model_energy(kind, module, num_particles=1):
    """The energy of a trained model: DEEN is one; a VAE's is its ELBO (averaged over ``num_particles``)."""
    if kind == "deen":
        return module
    return ELBOEnergy(module.model, module.guide, num_particles=num_particles)


def model_meta(kind, sigma, cfg):
    """The settings a checkpoint of ``kind`` at ``sigma`` was trained with (a resumed run must match them)."""
    keys = ("z_dim", "hidden_dims") if kind != "deen" else ("deen_hidden_dims",)
    meta = {"kind": kind, "sigma": sigma, "batch_size": cfg["batch_size"], "lr": cfg["lr"], "seed": cfg["seed"],
            "train_size": cfg["train_size"]}
    meta.update({k: cfg[k] for k in keys})
    return jsonable(meta)


# TODO(fit-loop): move onto the package's one fit loop (it re-implements denoising_loss and its checkpoints)
def train_model(kind, sigma, cfg, x_train, out, device, progress):
    """
    Train (or resume, or load) one model; a checkpoint is written after every epoch.

    ``vae``: plain σ-VAE, ELBO on clean data (TraceMeanField_ELBO). ``uvb``: the same VAE trained by
    :func:`denoising_loss` through its ELBO energy. ``deen``: MLP energy, same objective.
    """
    ckpt_path = Path(out) / "checkpoints" / f"{kind}_sigma{sigma_tag(sigma)}.pt"
    ckpt_path.parent.mkdir(parents=True, exist_ok=True)
    meta = model_meta(kind, sigma, cfg)
    torch.manual_seed(cfg["seed"])
    module = _build(kind, sigma, cfg).to(device)
    opt = torch.optim.Adam(module.parameters(), lr=cfg["lr"])
    state = {"epoch": 0, "losses": [], "seconds": 0.0}
    if ckpt_path.is_file():
        ckpt = load_torch(ckpt_path)
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
    energy = model_energy(kind, module)
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
        save_torch(ckpt_path, {"meta": json.dumps(meta), "model": module.state_dict(), "optim": opt.state_dict(),
                                "epoch": state["epoch"], "losses": state["losses"], "seconds": state["seconds"]})
    module.eval()
    return module, state


class Classifier(nn.Module):
    """MLP digit classifier 784 -> 512 -> 256 -> 10 (ReLU), used only to label walk-jump samples."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10))

    def forward(self, x):
        return self.net(x)


# TODO(fit-loop): move onto the package's one fit loop
def train_classifier(out, x_train, t_train, x_test, t_test, epochs, seed, device, progress):
    """Train (or load) the :class:`Classifier` into ``out/checkpoints``; returns it and its test accuracy."""
    path = Path(out) / "checkpoints" / "classifier.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    clf = Classifier().to(device)
    meta = json.dumps({"epochs": epochs, "seed": seed, "train_size": int(x_train.shape[0])})
    if path.is_file():
        ckpt = load_torch(path)
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
    save_torch(path, {"meta": meta, "model": clf.state_dict(), "test_accuracy": acc})
    return clf, acc
