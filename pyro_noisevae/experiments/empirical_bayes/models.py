"""The models of the empirical-Bayes experiments (σ-VAE, UVB, DEEN, a digit classifier) and their training."""

import json
import time
from pathlib import Path

import torch
from pyro.infer import TraceMeanField_ELBO
from torch import nn

from ...empirical_bayes import DEEN, ELBOEnergy, denoising_loss
from ...models import VAE
from ...training import FitLoop
from ..common import load_split, load_torch, save_torch

__all__ = [
    "DEFAULTS",
    "KINDS",
    "MATCH_TOLERANCE",
    "Classifier",
    "checkpoint_name",
    "jsonable",
    "load_mnist",
    "matched_hidden_dims",
    "model_energy",
    "model_meta",
    "parameter_count",
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

#: largest relative difference between the parameter counts of UVB's VAE and DEEN at matched capacity
MATCH_TOLERANCE = 0.05


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


def parameter_count(kind, cfg):
    """Number of parameters of the model ``kind`` (``vae``, ``uvb`` or ``deen``) with the settings ``cfg``."""
    return sum(p.numel() for p in _build(kind, 1.0, cfg).parameters())


def matched_hidden_dims(cfg, depth=None):
    """
    Hidden layers ``(H,) * depth`` (default: as many as ``cfg["hidden_dims"]``) of the VAE behind UVB whose
    parameter count is the closest to DEEN's with ``cfg["deen_hidden_dims"]``: the "equal capacity"
    comparison grows the VAE rather than shrink DEEN, whose first layer must stay at least 784 wide (784² =
    614,656 weights alone already exceed the default VAE's 558,928 parameters).

    :raises ValueError: if no width brings the VAE within :data:`MATCH_TOLERANCE` of DEEN.
    """
    depth = len(cfg["hidden_dims"]) if depth is None else int(depth)
    target = parameter_count("deen", cfg)

    def count(h):
        return parameter_count("uvb", dict(cfg, hidden_dims=(h,) * depth))

    lo, hi = 1, 1
    while count(hi) < target:  # the count grows with the width: bracket the target, then bisect
        lo, hi = hi, 2 * hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(mid) < target else (lo, mid)
    h = min((lo, hi), key=lambda w: abs(count(w) - target))
    if abs(count(h) - target) > MATCH_TOLERANCE * target:
        raise ValueError(f"no VAE of {depth} equal hidden layers has {target} parameters within "
                         f"{MATCH_TOLERANCE:.0%}")
    return (h,) * depth


def checkpoint_name(kind, sigma, cfg):
    """
    File name of a model's checkpoint: ``<kind>_sigma<σ>.pt`` at the default seed and architecture, with
    ``_seed<s>`` and ``_h<layers>`` appended when they differ, so that the models of several seeds and
    capacities live side by side in one folder (and the default run's names are unchanged).
    """
    name = f"{kind}_sigma{sigma_tag(sigma)}"
    if int(cfg["seed"]) != DEFAULTS["seed"]:
        name += f"_seed{int(cfg['seed'])}"
    key = "deen_hidden_dims" if kind == "deen" else "hidden_dims"
    if tuple(cfg[key]) != tuple(DEFAULTS[key]):
        name += "_h" + "x".join(str(int(h)) for h in cfg[key])
    return name + ".pt"


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


class _EpochDraws:
    """
    Every epoch's mini-batch order, noise and latent draws derive from ``(seed, epoch)``, so that a run resumed
    from the checkpoint of an epoch replays the same run: at the start of each epoch torch's global RNG (the
    VAE's latents) and a CPU generator (the order, then the denoising noise) are seeded with
    ``1000 * seed + epoch``.
    """

    def __init__(self, seed, n):
        self.seed, self.n, self.gen = int(seed), int(n), None

    def order(self, epoch):
        s = 1000 * self.seed + int(epoch)
        self.gen = torch.Generator().manual_seed(s)
        torch.manual_seed(s)
        return torch.randperm(self.n, generator=self.gen)


def train_model(kind, sigma, cfg, x_train, out, device, progress):
    """
    Train (or resume, or load) one model on :class:`~pyro_noisevae.training.FitLoop`; a checkpoint
    (``out/checkpoints/`` :func:`checkpoint_name`, written atomically) after every epoch.

    ``vae``: plain σ-VAE, ELBO on clean data (TraceMeanField_ELBO). ``uvb``: the same VAE trained by
    :func:`~pyro_noisevae.empirical_bayes.denoising_loss` through its ELBO energy. ``deen``: MLP energy, same
    objective. The losses are per-epoch means of the mini-batch means. SIGINT/SIGTERM stop after the current
    step and raise ``KeyboardInterrupt``; rerunning resumes from the last finished epoch (the same draws).
    """
    ckpt_path = Path(out) / "checkpoints" / checkpoint_name(kind, sigma, cfg)
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
    draws = _EpochDraws(cfg["seed"], x_train.shape[0])
    if kind == "vae":
        elbo = TraceMeanField_ELBO(max_plate_nesting=1)

        def loss_fn(x):
            x = x.to(device)
            return elbo.differentiable_loss(module.model, module.guide, x) / x.shape[0]
    else:
        energy = model_energy(kind, module)

        def loss_fn(x):
            # the noise is drawn on the CPU generator of the epoch (on a GPU too), as the checkpoints were made
            eps = torch.randn(x.shape, generator=draws.gen)
            return denoising_loss(energy, x.to(device), sigma, noise=eps.to(device))

    t0 = time.time()

    def save(loop, mean):
        nonlocal t0
        state["epoch"] = loop.epoch
        state["losses"].append(mean)
        state["seconds"] += time.time() - t0
        save_torch(ckpt_path, {"meta": json.dumps(meta), "model": module.state_dict(), "optim": opt.state_dict(),
                               "epoch": state["epoch"], "losses": state["losses"], "seconds": state["seconds"]})
        t0 = time.time()

    loop = FitLoop(loss_fn, opt, x_train, batch_size=cfg["batch_size"], epochs=cfg["epochs"], shuffle=draws.order,
                   on_epoch_end=save, progress=progress, desc=f"{kind} σ={sigma:g} epoch")
    loop.epoch = state["epoch"]
    loop.global_step = state["epoch"] * loop.steps_per_epoch
    if loop.run().interrupted:
        raise KeyboardInterrupt(f"{kind} σ={sigma:g} interrupted; rerun to resume from epoch {state['epoch']}")
    module.eval()
    return module, state


class Classifier(nn.Module):
    """MLP digit classifier 784 -> 512 -> 256 -> 10 (ReLU), used only to label walk-jump samples."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10))

    def forward(self, x):
        return self.net(x)


def train_classifier(out, x_train, t_train, x_test, t_test, epochs, seed, device, progress):
    """
    Train (or load) the :class:`Classifier` into ``out/checkpoints`` on :class:`~pyro_noisevae.training.FitLoop`
    (Adam, lr 1e-3, mini-batches of 128; the epochs' orders are successive permutations of one generator
    seeded with ``seed``); returns it and its test accuracy.
    """
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
    gen = torch.Generator().manual_seed(seed)
    orders = [torch.randperm(x_train.shape[0], generator=gen) for _ in range(epochs)]
    loop = FitLoop(lambda x, t: nn.functional.cross_entropy(clf(x.to(device)), t.to(device)),
                   torch.optim.Adam(clf.parameters(), lr=1e-3), (x_train, t_train), batch_size=128, epochs=epochs,
                   shuffle=orders.__getitem__, progress=progress, desc="classifier epoch")
    if loop.run().interrupted:
        raise KeyboardInterrupt("classifier training interrupted; rerun to train it again")
    clf.eval()
    with torch.no_grad():
        acc = (clf(x_test.to(device)).argmax(-1).cpu() == t_test).float().mean().item()
    save_torch(path, {"meta": meta, "model": clf.state_dict(), "test_accuracy": acc})
    return clf, acc
