# %% [markdown]
# # 2. Imaginary noise: the KL power law and inference on extreme noise
#
# A σ-VAE (Saremi, *Learning and Inference in Imaginary Noise Models*, 2020) has a decoder for the noisy
# variable $Y = X + N(0, \sigma^2 I)$ with a fixed σ, but it is trained on clean data only: the noise is
# *imaginary*. The paper makes two empirical claims on MNIST:
#
# 1. **Power law.** The learned models follow $D_\mathrm{KL} \sim \sigma^{-\nu}$, where $D_\mathrm{KL}$ is the
#    average $\mathrm{KL}(q(z|x)\,\|\,p(z))$ over test data.
# 2. **Inference on extreme noise.** A σ-VAE with a large σ makes reasonable inferences on test digits
#    buried in noise it never saw during training, $y = x + N(0, s^2 I)$ with $s \gtrsim 1$. A vanilla VAE
#    breaks down there.
#
# This notebook tests both claims. It uses the same runners as the command-line experiments
# `pyro-noisevae sweep-sigma` and `pyro-noisevae noisy-inference`, and the measurement helpers in
# `pyro_noisevae.analysis`. Those helpers (analytic KL, power-law fit with a bootstrap CI, active units,
# linear probe, k-NN, PSNR) also work on your own models.
#
# If the two commands have been run from the repository root, the notebook loads their trained models
# (`runs/sigma_vae`) and only measures them. The stored outputs below come from that case. Otherwise it trains
# smaller models itself, in a few minutes on a CPU. Section 4 gives our reading of the full-budget numbers. In
# short: the claims hold only in part at this budget.

# %%
import json
import os
import tempfile
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm's notebook bars need ipywidgets

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Image, Markdown, display

from pyro_noisevae.analysis import (
    active_units, fit_linear_probe, fit_power_law, gaussian_kl_standard_normal, local_exponents, psnr,
)
from pyro_noisevae.data import load_dataset
from pyro_noisevae.experiments.sigma_vae import (
    DEFAULT_SCALES, Budget, noisy_inference, noisy_test_set, run_name, sweep_sigma,
)

smoke_test = "CI" in os.environ  # the test suite runs this notebook with CI=1 and tiny budgets
DATA_ROOT = os.environ.get("PYRO_NOISEVAE_DATA", "../../shared/data")
# PYRO_NOISEVAE_DEVICE (tutorials/execute.py --device) overrides the default: CUDA when available, except in smoke runs.
# A string, not a torch.device: Budget.device is saved in the JSON run configurations.
device = os.environ.get("PYRO_NOISEVAE_DEVICE") or ("cuda" if torch.cuda.is_available() and not smoke_test else "cpu")
if torch.device(device).type == "cuda" and not torch.cuda.is_available():
    raise RuntimeError(f"PYRO_NOISEVAE_DEVICE={device} but torch sees no CUDA device; use --device cpu")
# Models live in run folders and are reused when present. If the full-budget experiments were run from the
# repository root (`pyro-noisevae sweep-sigma`, `pyro-noisevae noisy-inference`), their models in ../runs/sigma_vae
# are loaded here and only measured (on 2,000 test images); otherwise small models are trained into
# ../runs/tutorial_02 (a few minutes on a laptop CPU). Smoke runs (CI) use tiny models in a temporary folder.
FULL_RUNS = Path("../runs/sigma_vae")
OUT = Path(tempfile.mkdtemp(prefix="tutorial_02_"))
full = Budget(data_root=DATA_ROOT, eval_size=2000, device=device)
use_full = not smoke_test and (
    FULL_RUNS / run_name(full.config(FULL_RUNS, likelihood="normal", sigma=DEFAULT_SCALES[0])) / "checkpoint.pt"
).exists()
if smoke_test:
    RUNS, budget = Path(tempfile.mkdtemp()), Budget(train_size=200, epochs=1, z_dim=4, hidden_dims=(32,),
                                                     eval_size=200, data_root=DATA_ROOT, device=device)
    sigmas, noisy_sigmas = [0.05, 0.2, 1.0], (1.0,)
elif use_full:
    RUNS, budget = FULL_RUNS, full
    sigmas, noisy_sigmas = list(DEFAULT_SCALES), (0.2, 0.5, 1.0)
else:
    RUNS, budget = Path("../runs/tutorial_02"), Budget(train_size=10000, epochs=5, eval_size=2000,
                                                       data_root=DATA_ROOT, device=device)
    sigmas, noisy_sigmas = [float(f"{s:.3g}") for s in np.geomspace(0.05, 2.0, 7)], (0.2, 0.5, 1.0)
print("models from", RUNS, "(full-budget experiment models)" if use_full else "")
print(budget)
print("sigma grid:", sigmas)

# %% [markdown]
# ## 1. The KL power law
#
# `sweep_sigma` trains one σ-VAE per σ with the same architecture and budget. It then measures the test-set
# average of the analytic KL
#
# $$\mathrm{KL}\big(N(\mu, \mathrm{diag}\,s^2)\,\|\,N(0, I)\big) = \tfrac12 \textstyle\sum_j \big(\mu_j^2 + s_j^2 - 1 - \log s_j^2\big),$$
#
# and fits $\log D_\mathrm{KL} = \log A - \nu \log\sigma$ by least squares.
#
# We also ask for the `"beta"` family. All σ-VAEs are one β-VAE family:
# $\mathcal L(\sigma) = \mathcal L(\sigma_1, \beta)/\beta + c$ with $\beta = \sigma^2/\sigma_1^2$. So the same sweep can be
# done as a β sweep at a fixed $\sigma_1$, and it should give the same curve. Adam divides each gradient by its
# running RMS, so the factor $1/\beta$ barely changes the updates. The two sweeps should therefore follow
# nearly the same trajectories.

# %%
power = sweep_sigma(sigmas=sigmas, families=("normal", "beta"), beta_sigma1=0.2, budget=budget,
                    out=OUT / "power_law", runs_dir=RUNS, num_bootstrap=1000, progress=False)
for fam, d in power["families"].items():
    f = d["fit"]
    print(f"{fam:7s} nu = {f['nu']:.3f}  95% bootstrap CI [{f['ci'][0]:.3f}, {f['ci'][1]:.3f}]  R^2 = {f['r2']:.4f}")
    if "broken" in d:  # best two-segment fit (needs >= 6 models): where the log-log curve bends
        br = d["broken"]
        print(f"        two segments: nu = {br['left']['nu']:.3f} below sigma = {br['x_break']:.2g} "
              f"(R^2 {br['left']['r2']:.3f}), {br['right']['nu']:.3f} above")
print("\n  sigma    beta   KL(sigma-sweep)  KL(beta-sweep)  rel.diff  |theta_s - theta_b|/|theta_s|")
for c in power["beta_vs_sigma"]:
    print(f"{c['sigma']:7.3g} {c['beta']:7.3g} {c['kl_sigma']:14.3f} {c['kl_beta']:15.3f} {c['kl_rel_diff']:+9.1e}"
          f" {c['param_rel_distance']:12.2e}")

# %% [markdown]
# Next we plot the curve, its fit, the *local* exponents $-\Delta\log D_\mathrm{KL}/\Delta\log\sigma$ between
# neighbouring σ, and the number of active latent units, $\mathrm{Var}_x\,E[z_j|x] > 0.01$. A straight power law
# has constant local exponents. When σ is large, the decoder's reconstruction reward
# $\lVert x-\mu(z)\rVert^2/2\sigma^2$ becomes too weak to pay for information in $z$. Latent units then
# switch off one by one, and the curve bends downward.

# %%
# %matplotlib inline
# (re-selects the inline backend: the trainer's figure writer switches matplotlib to "Agg" when it trains a model)
fig, axes = plt.subplots(1, 3, figsize=(15, 4))
for fam, marker in (("normal", "o"), ("beta", "x")):
    pts = power["families"][fam]["points"]
    x = np.array([p["scale"] for p in pts]); kl = np.array([p["kl"] for p in pts])
    fit = fit_power_law(x, kl, num_bootstrap=1000)  # the same fit the runner stored, recomputed from the points
    axes[0].loglog(x, kl, marker, ms=8, mfc="none" if fam == "beta" else None,
                   label=f"{fam}: nu={fit.nu:.2f} [{fit.ci[0]:.2f}, {fit.ci[1]:.2f}], R2={fit.r2:.3f}")
    axes[0].loglog(x, fit.predict(x), "-" if fam == "normal" else "--", lw=1)
    mid, nu_loc = local_exponents(x, kl)
    axes[1].semilogx(mid, nu_loc, marker + "-", label=fam)
    axes[2].semilogx(x, [p["active_units"] for p in pts], marker + "-", label=fam)
axes[0].set(xlabel="sigma", ylabel="test KL [nats]", title="D_KL vs sigma"); axes[0].legend(fontsize=8)
axes[1].set(xlabel="sigma", ylabel="local exponent", title="local exponents"); axes[1].legend()
axes[2].set(xlabel="sigma", ylabel="active units", title=f"active units (of {budget.z_dim})"); axes[2].legend()
for ax in axes: ax.grid(alpha=0.3, which="both")
plt.tight_layout()

# %% [markdown]
# ## 2. Inference on extreme noise
#
# `noisy_inference` trains σ-VAEs and two vanilla baselines on clean data only:
#
# - a Bernoulli decoder on dynamically binarized digits;
# - a Normal decoder with a small σ = 0.05, the "almost deterministic decoder" regime.
#
# It then feeds them $y = x + N(0, s^2 I)$, unclipped. It reports the MSE/PSNR of
# $\mathrm{decode}(E[z|y])$ against the clean $x$, and the accuracy of a linear probe trained on clean-data
# latents and applied to the latents of $y$. Two baselines need no model: the noisy input's own error, and
# the same probe on raw pixels.

# %%
noisy = noisy_inference(
    sigmas=noisy_sigmas, vanilla_sigma=0.05, noise_levels=(0.0, 1.5) if smoke_test else (0.0, 0.25, 0.5, 1.0, 1.5),
    budget=budget, out=OUT / "noisy", runs_dir=RUNS, probe_train_size=300 if smoke_test else 5000, figure_levels=(1.5,),
    num_figure_images=10, progress=False,
)
display(Markdown((OUT / "noisy" / "table.md").read_text()))

# %%
# %matplotlib inline
s = noisy["noise_levels"]
fig, axes = plt.subplots(1, 2, figsize=(12, 4))
for m in noisy["models"]:
    ls = "-" if m["kind"] == "sigma-vae" else "--"
    axes[0].semilogy(s, [r["mse"] for r in m["per_noise"]], ls, marker="o", label=m["name"])
    axes[1].plot(s, [r["probe_acc"] for r in m["per_noise"]], ls, marker="o", label=m["name"])
axes[0].semilogy(s, [b["mse"] for b in noisy["baselines"]["noisy_input_clipped"]], "k:", label="clip(y) itself")
axes[1].plot(s, [b["probe_acc"] for b in noisy["baselines"]["pixels"]], "k:", label="probe on pixels")
axes[0].set(xlabel="test noise s", ylabel="MSE vs clean x", title="decode(E[z|y])")
axes[1].set(xlabel="test noise s", ylabel="accuracy", ylim=(0, 1), title="linear probe on E[z|y]")
for ax in axes: ax.grid(alpha=0.3); ax.legend(fontsize=8)
plt.tight_layout()

# %% [markdown]
# Reconstructions at $s = 1.5$. Rows: clean digits, noisy inputs (clipped to [0, 1] only for display), then
# each model's $\mathrm{decode}(E[z|y])$.

# %%
display(Image(filename=str(OUT / "noisy" / "grid_s1.5.png")))

# %% [markdown]
# ## 3. The pieces on their own
#
# The runners are thin loops around reusable functions. Here they are on one trained σ-VAE, loaded from its
# run folder:
#
# - `gaussian_kl_standard_normal` gives the KL per data point;
# - `active_units` counts the latent dimensions in use;
# - `noisy_test_set` draws the noisy inputs;
# - `psnr` scores the reconstruction;
# - `fit_linear_probe` is the probe.

# %%
from pyro_noisevae.training import load_run

run = next(m["run"] for m in noisy["models"] if m["kind"] == "sigma-vae")
vae, cfg, _ = load_run(run)
test = load_dataset("mnist", split="test", root=DATA_ROOT)
train = load_dataset("mnist", split="train", root=DATA_ROOT)
x, labels = test.data[:1000], test.targets[:1000]
with torch.no_grad():
    loc, scale = vae.encode(x)
    kl = gaussian_kl_standard_normal(loc, scale)
    probe = fit_linear_probe(vae.encode(train.data[:2000])[0], train.targets[:2000])
    y = noisy_test_set(x, 1.0)
    z_noisy = vae.encode(y)[0]
    print(f"sigma = {cfg.sigma}: KL per point {kl.mean():.2f} nats, active units {active_units(loc)[0]}/{cfg.z_dim}")
    print(f"s = 1.0: PSNR of y {psnr(y.clamp(0, 1), x).mean():.2f} dB, of decode(E[z|y]) "
          f"{psnr(vae.decode(z_noisy), x).mean():.2f} dB; probe accuracy on clean {probe.accuracy(loc, labels):.3f}, "
          f"on noisy {probe.accuracy(z_noisy, labels):.3f}")

# %% [markdown]
# ## 4. Results at the full default budget, read honestly
#
# The default budget of `pyro-noisevae sweep-sigma` and `pyro-noisevae noisy-inference` is 20,000 training images,
# 10 epochs, a 784-256-256-20 MLP, and the full 10,000-image test set. The two commands write their results to
# `results/sigma_vae/`. If those files are present, the cell below prints the fitted exponents and the σ-VAE vs
# vanilla tables. `results/sigma_vae/README.md` has the exact commands and compute budgets. Our reading of those
# numbers:
#
# - **The power law holds only below σ ≈ 0.6.** For σ ≤ 0.585 and a Normal decoder, the fit gives ν ≈ 0.94
#   (95% bootstrap CI ≈ [0.74, 1.14], R² ≈ 0.975). Even there, the local exponents drift from ≈ 0.6 to ≈ 1.4.
#   Above σ ≈ 0.6 the latent units switch off: 19 active units become 9, 2, 1 and then 0. The KL then falls
#   much faster, with local exponents of 3 to 10. One line through the whole grid fits poorly (R² ≈ 0.78).
# - **The Laplace decoder bends more gently.** Over the whole grid, ν ≈ 0.87 (R² ≈ 0.97). The local exponents
#   rise steadily from ≈ 0.4 to ≈ 1.2.
# - **The β sweep is the σ sweep.** Test KLs agree to about 1e-5 relative, and the weights to about 0.1–0.5%.
# - **Vanilla VAEs degrade but do not "completely break down".** At s = 1.5, the linear probe on latents reaches
#   0.43 for the best σ-VAE (σ = 0.2), against 0.41 for both vanilla VAEs. The probe on raw pixels reaches 0.25,
#   and chance is 0.1. All models still decode digit-like images, often of the wrong class. The σ-VAEs with
#   σ = 0.5 and σ = 1 do have the lowest reconstruction error at s ≥ 1, but they get it by staying near the
#   mean image. The mean image alone scores MSE 0.0675. The σ = 1 model keeps a single active unit, and its
#   probe reaches only 0.53 on clean digits. Under the 5-NN classifier on latents, the vanilla σ = 0.05 VAE
#   is the best model at every s. A 5-NN on raw pixels beats every latent representation for s ≥ 0.25,
#   with 0.71 at s = 1.5.

# %%
results = Path("../results/sigma_vae")
if (results / "power_law" / "results.json").exists():
    full_res = json.loads((results / "power_law" / "results.json").read_text())
    for fam, d in full_res["families"].items():
        f, br = d["fit"], d["broken"]
        print(f"{fam:7s} nu = {f['nu']:.3f} [{f['ci'][0]:.3f}, {f['ci'][1]:.3f}]  R^2 = {f['r2']:.4f}  ({f['n']} models);"
              f"  below {br['x_break']:.2g}: nu = {br['left']['nu']:.3f} [{br['left']['ci'][0]:.3f}, "
              f"{br['left']['ci'][1]:.3f}]  R^2 = {br['left']['r2']:.4f}")
    display(Image(filename=str(results / "power_law" / "power_law.png")))
else:
    print("no full-budget power-law results in", results)
if (results / "noisy_inference" / "table.md").exists():
    display(Markdown((results / "noisy_inference" / "table.md").read_text()))
    display(Image(filename=str(results / "noisy_inference" / "grid_s1.5.png")))
