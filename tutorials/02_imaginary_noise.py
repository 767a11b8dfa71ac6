# %% [markdown]
# # 2. Imaginary noise: σ sweeps, the KL power law and inference on extreme noise
#
# **What you will learn**
#
# * how to run a σ sweep yourself: a plain loop over `pyro_noisevae.models.VAE` and
#   `pyro_noisevae.training.fit`, measured with `pyro_noisevae.analysis` (analytic KL, active units, power-law
#   fit with a bootstrap interval, local exponents);
# * that a β-VAE at a fixed σ₁ *is* a σ-VAE at σ₂ (`equivalent_beta`, `bound_constant`, `beta_scale`): the bounds
#   agree on a trained model, and a β run retraces the σ run;
# * how σ-VAEs with small and large σ behave on test digits buried in noise they never saw in training.
#
# **Runtime at full budget:** about 6 min on one CPU thread (measured on a busy shared machine; smoke mode,
# `CI=1`, what the tests run, takes one to two minutes).
#
# A σ-VAE (Saremi, *Learning and Inference in Imaginary Noise Models*, 2020) has a decoder for the noisy variable
# $Y = X + N(0, \sigma^2 I)$ with a fixed σ, but it is trained on clean data only: the noise is *imaginary*. The
# paper makes two empirical claims on MNIST:
#
# 1. **Power law.** The learned models follow $D_\mathrm{KL} \sim \sigma^{-\nu}$, where $D_\mathrm{KL}$ is the
#    average $\mathrm{KL}(q(z|x)\,\|\,p(z))$ over test data.
# 2. **Inference on extreme noise.** A σ-VAE with a large σ makes reasonable inferences on test digits buried in
#    noise, $y = x + N(0, s^2 I)$ with $s \gtrsim 1$, where a vanilla VAE breaks down.
#
# This notebook trains six small σ-VAEs and one β-VAE (10,000 training images, 5 epochs each) to look at both. Section 4 gives
# the commands that reproduce the full-size experiments, and what they found.

# %%
import json
import os
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm's notebook bars need ipywidgets

import matplotlib.pyplot as plt
import numpy as np
import pyro
import torch
from pyro.infer import Trace_ELBO

import pyro_noisevae as pn
from pyro_noisevae.analysis import active_units, fit_linear_probe, fit_power_law, gaussian_kl_standard_normal, local_exponents
from pyro_noisevae.data import load_dataset
from pyro_noisevae.handlers import beta_scale, bound_constant, equivalent_beta
from pyro_noisevae.models import VAE
from pyro_noisevae.training import fit

smoke_test = "CI" in os.environ  # the test suite runs this notebook with CI=1 and tiny budgets
DATA_ROOT = os.environ.get("PYRO_NOISEVAE_DATA", "../../shared/data")
# PYRO_NOISEVAE_DEVICE (tutorials/execute.py --device) overrides the default: CUDA when available, except in smoke runs
device = torch.device(os.environ.get("PYRO_NOISEVAE_DEVICE") or ("cuda" if torch.cuda.is_available() and not smoke_test else "cpu"))
if device.type == "cuda" and not torch.cuda.is_available():
    raise RuntimeError(f"PYRO_NOISEVAE_DEVICE={device} but torch sees no CUDA device; use --device cpu")
torch.set_num_threads(1)  # small networks: one thread avoids oversubscribing a shared CPU
print("pyro_noisevae", pn.__version__, "| pyro", pyro.__version__, "| torch", torch.__version__, "| device", device)

train = load_dataset("mnist", split="train", root=DATA_ROOT)
test = load_dataset("mnist", split="test", root=DATA_ROOT)
gen = torch.Generator().manual_seed(0)
n_train, epochs = (2000, 1) if smoke_test else (10000, 5)
idx = torch.randperm(len(train), generator=gen)
x_train = train.data[idx[:n_train]]
x_probe, y_probe = train.data[idx[-2000:]], train.targets[idx[-2000:]]   # held apart, for the linear probes
idx = torch.randperm(len(test), generator=gen)[:1000]                     # the test set is sorted by label
x_test, y_test = test.data[idx], test.targets[idx]


def train_sigma_vae(sigma, beta=None, seed=0):
    """A 784-256-20 σ-VAE trained with Adam on x_train; with ``beta``, model and guide run under ``beta_scale``."""
    pyro.set_rng_seed(seed)
    vae = VAE(x_dim=784, z_dim=20, hidden_dims=(256,), likelihood="normal", sigma=sigma)
    model, guide = vae.model, vae.guide
    if beta is not None:
        model, guide = beta_scale(model, beta=beta), beta_scale(guide, beta=beta)
    fit(model, guide, x_train, epochs=epochs, batch_size=100, lr=1e-3, seed=seed, progress=False, device=device,
        params_from=vae)
    return vae.cpu()

# %% [markdown]
# ## 1. A σ sweep, written as a loop
#
# One σ-VAE per σ, same architecture, data, seed and budget. For each we measure the test-set average of the
# analytic KL of the guide,
#
# $$\mathrm{KL}\big(N(\mu, \mathrm{diag}\,s^2)\,\|\,N(0, I)\big) = \tfrac12 \textstyle\sum_j \big(\mu_j^2 + s_j^2 - 1 - \log s_j^2\big),$$
#
# and the number of **active units**, the latent dimensions whose posterior mean varies across test images
# ($\mathrm{Var}_x\,E[z_j|x] > 0.01$).
# <!-- not an output: 0.01 -->

# %%
sigmas = [0.05, 0.1, 0.2, 0.4, 0.8, 1.6]
models, kl, units = {}, [], []
for sigma in sigmas:
    vae = train_sigma_vae(sigma)
    with torch.no_grad():
        loc, scale = vae.encode(x_test)
    models[sigma] = vae
    kl.append(gaussian_kl_standard_normal(loc, scale).mean().item())
    units.append(active_units(loc)[0])
    print(f"σ = {sigma:<5} test KL {kl[-1]:8.3f} nats   active units {units[-1]:2d}/20")

mid, nu_local = local_exponents(np.array(sigmas), np.array(kl))
print("local exponents between neighbouring σ:", np.round(nu_local, 2).tolist())
whole = fit_power_law(sigmas, kl, num_bootstrap=1000)
low = fit_power_law(sigmas[:4], kl[:4], num_bootstrap=1000)   # σ ≤ 0.4
for name, f in (("all six σ", whole), ("σ ≤ 0.4", low)):
    print(f"{name:10s} ν = {f.nu:.2f}  95% bootstrap CI [{f.ci[0]:.2f}, {f.ci[1]:.2f}]  R² = {f.r2:.3f}")

assert all(a > b for a, b in zip(kl, kl[1:]))            # the KL falls as σ grows ...
assert all(a >= b for a, b in zip(units, units[1:]))     # ... and latent units switch off
assert 0.5 < low.nu < 3                                  # an exponent of order one at small σ

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 4))
axes[0].loglog(sigmas, kl, "o", ms=8, label="test KL")
grid = np.geomspace(sigmas[0], sigmas[3], 20)
axes[0].loglog(grid, low.predict(grid), "-", label=f"fit on σ ≤ 0.4: ν = {low.nu:.2f}")
axes[0].set(xlabel="σ", ylabel="test KL [nats]", title="D_KL against σ")
axes[1].semilogx(mid, nu_local, "o-")
axes[1].set(xlabel="σ (geometric midpoint)", ylabel="local exponent −Δlog KL / Δlog σ", title="local exponents")
axes[2].semilogx(sigmas, units, "o-")
axes[2].set(xlabel="σ", ylabel="active units (of 20)", title="active latent units", ylim=(-0.5, 20.5))
axes[0].legend()
for ax in axes:
    ax.grid(alpha=0.3, which="both")
fig.tight_layout()
plt.show()

# %% [markdown]
# Up to σ = 0.4 the log-log curve is close to a straight line: the fit gives ν = 0.98 (95% bootstrap interval
# [0.87, 1.11]) with R² = 0.997, and the local exponents stay near one (0.87 to 1.11). Beyond that the curve bends
# down, with local exponents of 1.93 and then 5.44: the reconstruction reward $\lVert x-\mu(z)\rVert^2/2\sigma^2$
# becomes too weak to pay for information in z, and latent units switch off (all 20 are active up to σ = 0.8,
# only 4 at σ = 1.6). One line through all six points fits less well (ν = 1.85, R² = 0.848). So at this budget
# the power law is a good description at small σ only; the full-size sweep of section 4 finds the same bend.
#
# ## 2. The β sweep is the σ sweep
#
# `equivalent_beta(σ₁, σ₂)` is β = σ₂²/σ₁², and `bound_constant(σ₁, σ₂, d)` the additive constant c in
# $\mathcal{L}(\sigma_2) = \mathcal{L}(\sigma_1, \beta)/\beta + c$. `beta_scale` multiplies the log-density of
# every latent site by β; wrapped around model **and** guide it turns the σ₁-VAE's ELBO into the β-VAE bound
# $\mathcal{L}(\sigma_1, \beta)$. First the identity on the trained σ₂ = 0.8 model: a σ₁ = 0.2 VAE with the
# same networks, scored with the same random draws.
# <!-- not an output: 0.8 0.2 -->

# %%
s1, s2 = 0.2, 0.8
beta, c = equivalent_beta(s1, s2), bound_constant(s1, s2, num_dims=784)
vae2 = models[s2]
vae1 = VAE(x_dim=784, z_dim=20, hidden_dims=(256,), likelihood="normal", sigma=s1)
vae1.encoder.load_state_dict(vae2.encoder.state_dict())   # copy the networks, not the likelihood's σ
vae1.decoder.load_state_dict(vae2.decoder.state_dict())
x64 = x_test.double()
vae1, vae2 = vae1.double(), vae2.double()


def elbo_per_point(model, guide):
    pyro.set_rng_seed(1)   # the same draws of z for both bounds
    return -Trace_ELBO().loss(model, guide, x64) / len(x64)


l2 = elbo_per_point(vae2.model, vae2.guide)
l1 = elbo_per_point(beta_scale(vae1.model, beta=beta), beta_scale(vae1.guide, beta=beta))
print(f"β = {beta:.0f}, c = {c:.3f} nats per image")
print(f"L(σ₂)             = {l2:.6f} nats per image")
print(f"L(σ₁, β)/β + c    = {l1 / beta + c:.6f}")
assert abs(l2 - (l1 / beta + c)) < 1e-9 * abs(l2)
vae2.float();

# %% [markdown]
# Now the training runs. The β-VAE's gradients are β times the σ₂-VAE's gradients (the identity, differentiated),
# and Adam divides every gradient by its running root-mean-square, so it takes (up to its ε) the same steps.
# We train the σ₁ = 0.2 VAE under `beta_scale` with β = 16, same seed and mini-batches as the σ₂ = 0.8 model of
# the sweep, and compare the two.
# <!-- not an output: 0.2 0.8 -->

# %%
vae_b = train_sigma_vae(s1, beta=beta)   # the σ₁-VAE under beta_scale: a β-VAE
theta_s = torch.cat([p.detach().flatten() for n, p in vae2.named_parameters()])
theta_b = torch.cat([p.detach().flatten() for n, p in vae_b.named_parameters()])
with torch.no_grad():
    kl_b = gaussian_kl_standard_normal(*vae_b.encode(x_test)).mean().item()
rel_theta = ((theta_s - theta_b).norm() / theta_s.norm()).item()
print(f"test KL: σ-VAE (σ = {s2}) {kl[sigmas.index(s2)]:.4f}, β-VAE (σ₁ = {s1}, β = {beta:.0f}) {kl_b:.4f}")
print(f"relative distance between the trained weights: {rel_theta:.1e}")
assert abs(kl_b - kl[sigmas.index(s2)]) < 1e-2 * kl[sigmas.index(s2)] and rel_theta < 1e-2

# %% [markdown]
# After the same number of Adam steps the two runs end at nearly the same weights (relative distance
# 7.2e-04) and the same test KL, 5.2539 nats. A sweep over β at fixed σ₁ is therefore the σ sweep under another
# name, and β-VAE results translate to σ-VAE results with β = σ²/σ₁².
#
# ## 3. Inference on noisy digits
#
# The models were trained on clean digits. We now feed them $y = x + N(0, s^2 I)$ (unclipped) and ask two
# questions: how close is the reconstruction $\mathrm{decode}(E[z|y])$ to the clean $x$ (MSE), and how much of
# the digit's identity survives in $E[z|y]$ (accuracy of a linear probe fitted on the latents of 2,000 *clean*
# training images, then applied to the latents of noisy test images)? Two baselines need no model: the error of
# the noisy input itself (clipped to [0, 1]) and the same probe fitted on raw pixels. The σ = 0.05 model stands in
# for a vanilla VAE with an almost deterministic decoder.
# <!-- not an output: 0.05 -->

# %%
levels = [0.0, 0.5, 1.0, 1.5]
chosen = [0.05, 0.2, 0.8]
noise = torch.randn(x_test.shape, generator=torch.Generator().manual_seed(1))
probes = {sigma: fit_linear_probe(models[sigma].encode(x_probe)[0].detach(), y_probe) for sigma in chosen}
pixel_probe = fit_linear_probe(x_probe, y_probe)
table = {name: {"mse": [], "probe": []} for name in [f"σ = {s}" for s in chosen] + ["pixels"]}
with torch.no_grad():
    for s in levels:
        y = x_test + s * noise
        for sigma in chosen:
            loc = models[sigma].encode(y)[0]
            table[f"σ = {sigma}"]["mse"].append(((models[sigma].decode(loc) - x_test) ** 2).mean().item())
            table[f"σ = {sigma}"]["probe"].append(probes[sigma].accuracy(loc, y_test))
        table["pixels"]["mse"].append(((y.clamp(0, 1) - x_test) ** 2).mean().item())
        table["pixels"]["probe"].append(pixel_probe.accuracy(y, y_test))

print(f"{'':14s}" + "".join(f"   s = {s:<4}" for s in levels))
for name, row in table.items():
    print(f"{name:9s} MSE  " + "".join(f"{v:10.4f}" for v in row["mse"]))
    print(f"{'':9s} probe" + "".join(f"{v:10.3f}" for v in row["probe"]))

big, small = table["σ = 0.8"], table["σ = 0.05"]
assert all(a < b for a, b in zip(small["mse"], small["mse"][1:]))          # the small-σ model degrades steadily,
assert big["mse"][-1] - big["mse"][0] < small["mse"][-1] - small["mse"][0]  # the large-σ one less
assert all(all(a > b for a, b in zip(row["probe"], row["probe"][1:])) for row in table.values())
assert all(row["probe"][-1] > 0.15 for row in table.values())   # chance is 0.1: nothing breaks down completely

fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
for name, row in table.items():
    style = "k:" if name == "pixels" else "o-"
    axes[0].semilogy(levels, row["mse"], style, label=name if name != "pixels" else "clip(y) itself")
    axes[1].plot(levels, row["probe"], style, label=name if name != "pixels" else "probe on pixels")
axes[0].set(xlabel="test noise s", ylabel="MSE against the clean x", title="decode(E[z|y])")
axes[1].set(xlabel="test noise s", ylabel="accuracy", ylim=(0, 1), title="linear probe on E[z|y]")
for ax in axes:
    ax.grid(alpha=0.3); ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# The small-σ model reconstructs clean digits best (MSE 0.0177, against 0.0416 for σ = 0.8), but its error grows
# fastest with the test noise, to 0.0686 at s = 1.5, while the σ = 0.8 model starts blurrier and ends lowest
# (0.0552). The probes tell a different story: at s = 1.5 they reach 0.430, 0.437 and 0.409 for σ = 0.05, 0.2
# and 0.8, against 0.310 on raw pixels and 0.1 for chance, and the large-σ code carries a little *less* class
# information even on clean digits (0.823 against 0.885). So at this budget the large-σ model is more robust in
# pixel space (it stays near smooth, typical digits), no model breaks down, and the vanilla-like σ = 0.05 model
# names the digit about as well as the best σ-VAE. The full-size experiment below reaches the same reading.
# <!-- not an output: 0.1 -->
#
# ## 4. The full-size experiments
#
# To reproduce the full figures (ten σ from 0.05 to 2, Normal and Laplace decoders and the β sweep, 20,000
# training images, 10 epochs, a 784-256-256-20 MLP, the whole test set), run from the repository root
#
#     pyro-noisevae sweep-sigma --threads 1       # -> results/sigma_vae/power_law/        (about 1 h on one thread)
#     pyro-noisevae noisy-inference --threads 1   # -> results/sigma_vae/noisy_inference/  (about 30 min)
#
# `results/sigma_vae/README.md` has the compute budgets and the full reading; the cell below prints the fitted
# exponents stored there, if present. In short: with a Normal decoder the KL follows a power law only below
# σ ≈ 0.72 (ν = 0.943 there, R² = 0.975, against R² = 0.781 for one line through the whole grid); the latent
# units collapse above it. The β sweep gives the same KLs as the σ sweep (largest relative difference 1.1e-05),
# and vanilla VAEs degrade with the noise about as much as σ-VAEs do, without breaking down.
# <!-- not an output: 0.05 -->

# %%
results = Path("../results/sigma_vae/power_law/results.json")
if results.exists():
    stored = json.loads(results.read_text())
    for fam, d in stored["families"].items():
        f, br = d["fit"], d["broken"]
        print(f"{fam:7s} all σ: ν = {f['nu']:.3f} (R² = {f['r2']:.3f});  below σ = {br['x_break']:.2g}: "
              f"ν = {br['left']['nu']:.3f} (R² = {br['left']['r2']:.3f})")
    worst = max(abs(c["kl_rel_diff"]) for c in stored["beta_vs_sigma"])
    print(f"β sweep against σ sweep: largest relative difference of the test KLs {worst:.1e}")
else:
    print("no full-size results in", results.parent)
