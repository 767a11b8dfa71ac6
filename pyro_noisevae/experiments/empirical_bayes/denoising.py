"""
Experiments (a) and (c), ``uvb-denoise``: MNIST denoising by UVB, DEEN, a σ-VAE and Wiener; UVB ≠ VAE; and
``uvb-denoise --capacity matched``: UVB against DEEN at equal parameter counts, over several seeds.
"""

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import pyro
import torch
from tqdm import tqdm

from ...analysis import active_units, psnr
from ...empirical_bayes import GaussianEnergy, bayes_estimator
from ...evaluation import summarize
from ...models import elbo_terms
from ..common import ModelBudget, read_json, save_figure, write_json, write_text
from .models import (
    DEFAULTS,
    KINDS,
    MATCH_TOLERANCE,
    jsonable,
    load_mnist,
    matched_hidden_dims,
    model_energy,
    sigma_tag,
    train_model,
)
from .reports import (
    METHOD_LABELS,
    denoise_figure,
    denoise_markdown,
    matched_figure,
    matched_markdown,
    samples_figure,
    training_figure,
    uvb_vs_vae_figure,
)

__all__ = ["Budget", "ExperimentRun", "uvb_denoise", "uvb_vs_deen_matched"]

#: seed of the test noise y = x + σε (the same draw for every seed of the models)
NOISE_SEED = 10_000

#: the denoisers of :func:`uvb_vs_deen_matched`, in table order
MATCHED_METHODS = ("identity", "mean", "wiener", "deen", "uvb")


@dataclass
class Budget(ModelBudget):
    """
    The settings of the models of :func:`uvb_denoise` and :func:`walk_jump_experiment`, defaults
    :data:`~pyro_noisevae.experiments.empirical_bayes.models.DEFAULTS`: run in the same ``out`` folder with the
    same budget, the two experiments share their checkpoints. The fields of
    :class:`~pyro_noisevae.experiments.common.ModelBudget`, and:

    :ivar hidden_dims: hidden layers of the σ-VAE's encoder and decoder; ``deen_hidden_dims`` those of DEEN.
    """

    epochs: int = DEFAULTS["epochs"]
    train_size: int | None = DEFAULTS["train_size"]
    batch_size: int = DEFAULTS["batch_size"]
    lr: float = DEFAULTS["lr"]
    z_dim: int = DEFAULTS["z_dim"]
    seed: int = DEFAULTS["seed"]
    hidden_dims: tuple = DEFAULTS["hidden_dims"]
    deen_hidden_dims: tuple = DEFAULTS["deen_hidden_dims"]

    def config(self, test_size=None):
        """The configuration dict that :func:`~.models.train_model` and :func:`~.models.model_meta` read."""
        return dict(epochs=int(self.epochs), batch_size=int(self.batch_size), lr=float(self.lr), z_dim=int(self.z_dim),
                    hidden_dims=tuple(self.hidden_dims), deen_hidden_dims=tuple(self.deen_hidden_dims),
                    train_size=self.train_size, test_size=test_size, seed=int(self.seed))


class ExperimentRun:
    """
    One call of an empirical-Bayes experiment into ``out``: makes ``out/stages``, seeds Pyro, loads the
    (subset of the) MNIST training split of the ``budget`` (``x_train``, ``t_train``) and, at the end,
    :meth:`finish` writes the results.
    """

    def __init__(self, out, budget):
        self.out = Path(out)
        (self.out / "stages").mkdir(parents=True, exist_ok=True)
        self.device = torch.device(budget.device)
        self.t_start = time.time()
        pyro.set_rng_seed(int(budget.seed))
        self.x_train, self.t_train = load_mnist("train", budget.train_size, budget.seed, budget.data_root)

    def finish(self, name, results, markdown):
        """Write ``results`` (with the seconds of this call) to ``<name>.json`` and ``markdown`` of them to ``<name>.md``."""
        results["seconds_this_call"] = round(time.time() - self.t_start, 1)
        write_json(self.out / f"{name}.json", results)
        write_text(self.out / f"{name}.md", markdown(results))
        return results


def _wiener(x_train):
    """Mean and covariance of the training images (float64), for the optimal linear denoiser."""
    x = x_train.double()
    mean = x.mean(0)
    cov = torch.cov(x.T)
    return mean, cov


def _denoising_rows(est, x_test):
    """MSE per pixel (± 1 s.e. over images), PSNR and MSE of the clipped estimate of each estimate ``est[name]``."""
    rows = {}
    for name, x_hat in est.items():
        per_image = (x_hat - x_test).pow(2).mean(-1)
        rows[name] = {"label": METHOD_LABELS[name], "mse": (x_hat - x_test).pow(2).mean().item(),
                      "mse_se": summarize(per_image)["stderr"],
                      # PSNR of the whole test set as one image: 10 log10(1 / MSE over all pixels)
                      "psnr": psnr(x_hat.double().reshape(1, -1), x_test.double().reshape(1, -1)).item(),
                      "mse_clipped": (x_hat.clamp(0, 1) - x_test).pow(2).mean().item()}
    return rows


def _paired_difference(est_a, est_b, x_test):
    """Mean over images of the per-image MSE of ``est_a`` minus that of ``est_b``, and its (paired) s.e."""
    diff = (est_a - x_test).pow(2).mean(-1) - (est_b - x_test).pow(2).mean(-1)
    paired = summarize(diff)
    return {"mean": paired["mean"], "se": paired["stderr"], "fraction_a_better": (diff < 0).double().mean().item()}


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
    test_size=DEFAULTS["test_size"],
    eval_particles=10,
    progress=True,
    **budget,
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

    :param budget: the settings of the models, keywords of :class:`Budget` (``epochs``, ``batch_size``, ``lr``,
        ``z_dim``, ``hidden_dims``, ``deen_hidden_dims``, ``train_size``, ``seed``, ``device``, ``data_root``).
    :returns: the results dictionary (also in ``uvb_denoise.json``).
    """
    budget = Budget(**budget)
    cfg = budget.config(test_size)
    sigmas = [float(s) for s in sigmas]
    run = ExperimentRun(out, budget)
    out, device, x_train, seed = run.out, run.device, run.x_train, cfg["seed"]
    x_test, _ = load_mnist("test", test_size, seed + 1, budget.data_root)
    mean, cov = _wiener(x_train)

    results = {"config": jsonable(dict(cfg, sigmas=sigmas, eval_particles=eval_particles, device=str(device))),
               "denoising": {}, "uvb_vs_vae": {}, "training": {}}
    with pyro.settings.context(module_local_params=True):
        for sigma in sigmas:
            tag = sigma_tag(sigma)
            models, states = {}, {}
            for kind in KINDS:
                models[kind], states[kind] = train_model(kind, sigma, cfg, x_train, out, device, progress)
                results["training"][f"{kind}_sigma{tag}"] = {
                    "epochs": states[kind]["epoch"], "losses": states[kind]["losses"],
                    "seconds": round(states[kind]["seconds"], 1),
                    "parameters": sum(p.numel() for p in models[kind].parameters()),
                }
            stage_key = jsonable(dict(cfg, sigma=sigma, eval_particles=eval_particles))
            stage_path = out / "stages" / f"denoise_sigma{tag}.json"
            stage = read_json(stage_path)
            if stage is None or stage.get("key") != stage_key:
                stage = {"key": stage_key, **_evaluate_sigma(sigma, models, x_test, mean, cov, eval_particles, seed,
                                                             out, device, progress)}
                write_json(stage_path, stage)
            results["denoising"][tag] = stage["denoising"]
            results["uvb_vs_vae"][tag] = stage["uvb_vs_vae"]
    save_figure(training_figure(results["training"]), out / "training_curves.png", dpi=100)
    return run.finish("uvb_denoise", results, denoise_markdown)


def _evaluate_sigma(sigma, models, x_test, mean, cov, eval_particles, seed, out, device, progress):
    tag = sigma_tag(sigma)
    gen = torch.Generator().manual_seed(NOISE_SEED + seed)
    y_test = x_test + sigma * torch.randn(x_test.shape, generator=gen)
    torch.manual_seed(seed)
    wiener = GaussianEnergy.smoothed(mean, cov, sigma).to(device)
    vae, uvb, deen = models["vae"], models["uvb"], models["deen"]
    vae_energy = model_energy("vae", vae, eval_particles)
    uvb_energy = model_energy("uvb", uvb, eval_particles)
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
    denoising = _denoising_rows(est, x_test)
    rows = ["clean", "noisy", "wiener", "vae_recon", "vae_energy", "deen", "uvb"]
    show = torch.arange(10)
    imgs = {"clean": x_test[show], "noisy": y_test[show], **{k: est[k][show] for k in rows[2:]}}
    save_figure(denoise_figure(sigma, imgs, rows, denoising), out / f"denoise_sigma{tag}.png", dpi=110)

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
    panels = [("clean x", x_test[show]), ("σ-VAE decode(E_q[z|x])", recon["vae"]), ("UVB decode(E_q[z|x])", recon["uvb"]),
              ("σ-VAE decode(E_q[z|y])", recon_y["vae"]), ("UVB decode(E_q[z|y])", recon_y["uvb"])]
    save_figure(uvb_vs_vae_figure(sigma, panels), out / f"uvb_vs_vae_sigma{tag}.png", dpi=110)
    save_figure(samples_figure(sigma, samples), out / f"samples_sigma{tag}.png", dpi=110)
    return {"denoising": denoising, "uvb_vs_vae": comparison}


def _spread(values):
    """Mean, standard deviation (n − 1; 0 for one value), min and max of a list of numbers."""
    v = torch.tensor(values, dtype=torch.float64)
    return {"mean": v.mean().item(), "sd": v.std().item() if len(values) > 1 else 0.0, "min": v.min().item(),
            "max": v.max().item(), "n": len(values)}


def uvb_vs_deen_matched(
    out="results/empirical_bayes",
    sigmas=(0.5, 1.0),
    seeds=(0, 1, 2),
    *,
    test_size=DEFAULTS["test_size"],
    eval_particles=10,
    progress=True,
    **budget,
):
    r"""
    UVB against DEEN at equal capacity and equal budget (CLI ``uvb-denoise --capacity matched``): at each σ
    and seed, UVB's VAE gets equal hidden layers as wide as makes its parameter count closest to DEEN's
    (:func:`~.models.matched_hidden_dims`, within :data:`~.models.MATCH_TOLERANCE`; the depth and ``z_dim``
    of ``hidden_dims`` are kept, their width is replaced), and both are trained with the same optimiser,
    batch size and number of epochs (:func:`~.models.train_model`, seeded by the seed). The Wiener filter
    and the mean training image are the baselines.

    Every seed is evaluated on the same test images with the same noise draw :math:`y = x + \sigma\varepsilon`,
    so the spread over seeds is that of training alone. Per seed: MSE per pixel ± 1 s.e. over images and
    PSNR of each method, and the paired per-image MSE differences UVB − DEEN, UVB − Wiener and DEEN −
    Wiener (± their s.e.); over seeds: mean, standard deviation, min and max.

    Writes ``uvb_vs_deen_matched.json``, ``uvb_vs_deen_matched.md`` and ``uvb_vs_deen_matched.png`` to ``out``;
    checkpoints (``<kind>_sigma<σ>_seed<s>_h<layers>.pt``) in ``out/checkpoints``, one stage result per σ
    and seed in ``out/stages``. Rerunning resumes; DEEN's checkpoints at the default architecture are shared
    with :func:`uvb_denoise` in the same folder.

    :param seeds: the seeds of the models (initialization, mini-batch order, training noise and latents).
    :param budget: the settings of the models, keywords of :class:`Budget` (``hidden_dims`` sets only the
        depth of the VAE; ``seed`` is ignored in favour of ``seeds``).
    :returns: the results dictionary (also in ``uvb_vs_deen_matched.json``).
    """
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct and at least one, got {seeds}")
    budget = dataclasses.replace(Budget(**budget), seed=seeds[0])
    base = budget.config(test_size)
    hidden = matched_hidden_dims(base)
    sigmas = [float(s) for s in sigmas]
    run = ExperimentRun(out, budget)
    out, device = run.out, run.device
    x_test, _ = load_mnist("test", test_size, 1, budget.data_root)
    results = {
        "config": jsonable(dict(base, hidden_dims=hidden, sigmas=sigmas, seeds=seeds, eval_particles=eval_particles,
                                noise_seed=NOISE_SEED, device=str(device), match_tolerance=MATCH_TOLERANCE)),
        "parameters": {}, "denoising": {}, "paired": {}, "summary": {}, "training": {},
    }
    with pyro.settings.context(module_local_params=True):
        for sigma in sigmas:
            tag = sigma_tag(sigma)
            y_test = x_test + sigma * torch.randn(x_test.shape, generator=torch.Generator().manual_seed(NOISE_SEED))
            results["denoising"][tag], results["paired"][tag] = {}, {}
            for seed in seeds:
                cfg = dict(base, seed=seed, hidden_dims=hidden)
                x_train = run.x_train if seed == seeds[0] else load_mnist("train", budget.train_size, seed,
                                                                           budget.data_root)[0]
                models = {}
                for kind in ("uvb", "deen"):
                    models[kind], state = train_model(kind, sigma, cfg, x_train, out, device, progress)
                    results["parameters"][kind] = sum(p.numel() for p in models[kind].parameters())
                    results["training"][f"{kind}_sigma{tag}_seed{seed}"] = {
                        "epochs": state["epoch"], "losses": state["losses"], "seconds": round(state["seconds"], 1)}
                stage_key = jsonable(dict(cfg, sigma=sigma, eval_particles=eval_particles, noise_seed=NOISE_SEED))
                stage_path = out / "stages" / f"matched_sigma{tag}_seed{seed}.json"
                stage = read_json(stage_path)
                if stage is None or stage.get("key") != stage_key:
                    stage = {"key": stage_key, **_evaluate_matched(sigma, models, x_train, x_test, y_test,
                                                                   eval_particles, seed, device, progress)}
                    write_json(stage_path, stage)
                results["denoising"][tag][str(seed)] = stage["denoising"]
                results["paired"][tag][str(seed)] = stage["paired"]
            results["summary"][tag] = {
                name: {metric: _spread([results["denoising"][tag][str(s)][name][metric] for s in seeds])
                       for metric in ("mse", "psnr")}
                for name in MATCHED_METHODS
            }
            results["summary"][tag]["uvb_minus_deen"] = _spread(
                [results["paired"][tag][str(s)]["uvb_minus_deen"]["mean"] for s in seeds])
    n_uvb, n_deen = results["parameters"]["uvb"], results["parameters"]["deen"]
    results["parameters"]["relative_difference"] = (n_uvb - n_deen) / n_deen
    save_figure(matched_figure(results), out / "uvb_vs_deen_matched.png", dpi=100)
    return run.finish("uvb_vs_deen_matched", results, matched_markdown)


def _evaluate_matched(sigma, models, x_train, x_test, y_test, eval_particles, seed, device, progress):
    mean, cov = _wiener(x_train)
    wiener = GaussianEnergy.smoothed(mean, cov, sigma).to(device)
    uvb_energy = model_energy("uvb", models["uvb"], eval_particles)
    mean_dev = mean.float().to(device)
    torch.manual_seed(seed)
    methods = {
        "identity": lambda y: y,
        "mean": lambda y: mean_dev.expand_as(y),
        "wiener": lambda y: bayes_estimator(wiener, y.double(), sigma).float(),
        "deen": lambda y: bayes_estimator(models["deen"], y, sigma),
        "uvb": lambda y: bayes_estimator(uvb_energy, y, sigma),
    }
    est = _denoise_all(methods, y_test, 250, device, progress, f"denoise σ={sigma:g} seed {seed}")
    paired = {f"{a}_minus_{b}": _paired_difference(est[a], est[b], x_test)
              for a, b in (("uvb", "deen"), ("uvb", "wiener"), ("deen", "wiener"))}
    return {"denoising": _denoising_rows(est, x_test), "paired": paired}
