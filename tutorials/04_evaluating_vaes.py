# %% [markdown]
# # 4. Evaluating VAEs honestly: IWAE-k log-likelihood, IW-SVI and inference gaps
#
# **What you will learn**
#
# * how to estimate the test log-likelihood $\log p_\theta(x)$ of any Pyro model/guide pair with
#   `log_likelihood` (IWAE-k), and how many importance samples $k$ it needs;
# * how `iw_svi` removes most of the bias that a poor encoder puts into that estimate;
# * how `inference_gaps` splits the loss of the ELBO into an approximation gap and an amortization gap;
# * that each of these agrees with closed-form answers on a linear-Gaussian model.
#
# **Runtime at full budget:** about 12 min on one CPU thread, measured on a 2-core machine shared with other jobs
# (2 to 3 min of CPU time; an idle machine is faster).
#
# The training loss of a VAE is a *bound*, and the bound depends on the encoder. To compare models we need an
# estimate of $\log p_\theta(x)$ itself, and to understand them we need to know how much of the bound is lost to
# inference. `pyro_noisevae.evaluation` has one function per question. Each works for any Pyro model/guide pair
# whose local latents sit in a data plate, and each is chunked over samples and over data points, so memory is
# bounded by the chunk sizes, not by $k$ (IWAE-5000 over a whole test set runs on a laptop):
#
# | you want | call | returns |
# |---|---|---|
# | $\log p(x_n)$ by IWAE-k | `log_likelihood(model, guide, x, num_samples=k)` | tensor `(N,)` |
# | the same, with error bars | `importance_estimate(model, guide, x, num_samples=k)` | `ImportanceEstimate`: `log_px`, `stderr`, `ess`, `elbo`, `elbo_stderr` |
# | $\log p(x_n)$ by IW-SVI | `iw_svi(model, guide, x, num_steps=T, num_particles=K)` | tensor `(N,)` |
# | the same, with error bars | `iw_svi_estimate(model, guide, x, ...)` | `ImportanceEstimate` |
# | the expected IWAE-K *bound* (a training objective) | `iwae_bound(model, guide, x, num_particles=K)` | `(bound, stderr)` |
# | inference / approximation / amortization gaps | `inference_gaps(model, guide, x)` | `InferenceGaps` |
#
# `log_likelihood` and `iw_svi` are the one-liners: each is `importance_estimate(...).log_px` and
# `iw_svi_estimate(...).log_px`, the same computation with the diagnostics dropped. Use the `*_estimate` form when
# you need the Monte Carlo standard errors or the effective sample size, as in most of this notebook. All of them
# stand on one low-level piece, the per-data-point log importance weights of `pyro_noisevae.infer`
# (`per_point_log_weights`), which the IWAE training objective `IWAE_ELBO` uses too.
#
# This notebook first checks every estimator against **exact** answers on a linear-Gaussian model, then applies
# them to a small VAE on binarized MNIST.

# %%
import math
import os
import time
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # progress bars are off in this notebook

import matplotlib.pyplot as plt
import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, Trace_ELBO

from pyro_noisevae.data import load_dataset
from pyro_noisevae.evaluation import (
    importance_estimate, inference_gaps, iw_svi, iw_svi_estimate, iwae_bound, log_likelihood, summarize,
)
from pyro_noisevae.models import VAE

smoke_test = "CI" in os.environ  # the test suite runs this notebook with CI=1 and tiny budgets
DATA_ROOT = os.environ.get("PYRO_NOISEVAE_DATA", "../../shared/data")
# the MNIST VAE of section 2 trains and is evaluated on `device` (PYRO_NOISEVAE_DEVICE, set by tutorials/execute.py
# --device, overrides the default); the small float64 linear-Gaussian checks of section 1 stay on the CPU
device = torch.device(os.environ.get("PYRO_NOISEVAE_DEVICE") or ("cuda" if torch.cuda.is_available() and not smoke_test else "cpu"))
if device.type == "cuda" and not torch.cuda.is_available():
    raise RuntimeError(f"PYRO_NOISEVAE_DEVICE={device} but torch sees no CUDA device; use --device cpu")
torch.set_num_threads(1)
pyro.set_rng_seed(0)
t_start = time.time()

# %% [markdown]
# ## 1. A model with a known answer
#
# Take $z \sim N(0, I_2)$ and $x \mid z \sim N(Wz + b, s^2 I_6)$. Then $p(x) = N(b, WW^\top + s^2 I)$ in closed
# form, and the posterior is Gaussian, $p(z \mid x) = N(A(x - b), \Sigma)$ with
# $\Sigma = (I + W^\top W/s^2)^{-1}$ and $A = \Sigma W^\top / s^2$. We pick $W$ with orthogonal columns, so
# $\Sigma$ is diagonal and the usual mean-field Gaussian guide family *contains* the exact posterior.
#
# The guide below is an "encoder" that we can make deliberately wrong: it shifts the exact posterior mean and
# multiplies its standard deviations.

# %%
torch.set_default_dtype(torch.float64)
D, K, s = 6, 2, 0.5
gen = torch.Generator().manual_seed(0)
Q, _ = torch.linalg.qr(torch.randn(D, K, generator=gen))
W = Q * torch.tensor([2.0, 0.8])          # orthogonal columns -> diagonal posterior covariance
b = 0.3 * torch.randn(D, generator=gen)
marginal = dist.MultivariateNormal(b, W @ W.T + s**2 * torch.eye(D))
post_cov = torch.linalg.inv(torch.eye(K) + W.T @ W / s**2)
A = post_cov @ W.T / s**2
post_scale = post_cov.diagonal().sqrt()


def model(x):
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], K), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z @ W.T + b, s).to_event(1), obs=x)


def make_guide(shift=0.0, scale_factor=1.0):
    def guide(x):
        loc = (x - b) @ A.T + shift
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, post_scale * scale_factor).to_event(1))
    return guide


def kl_to_posterior(x, loc, scale):
    # closed-form KL(q || p(z|x)) per data point
    mu = (x - b) @ A.T
    return torch.distributions.kl_divergence(dist.Normal(loc, scale).to_event(1),
                                             dist.Normal(mu, post_scale).to_event(1))


x = marginal.sample((50,))
exact = marginal.log_prob(x)
print(f"exact mean log p(x): {exact.mean().item():.4f}")

# %% [markdown]
# ### IWAE-k converges to the exact log-likelihood
#
# `log_likelihood` is the call a user makes: one IWAE-k estimate per data point. With the exact posterior as the
# proposal every importance weight equals $p(x)$, so even a handful of samples give $\log p(x)$ to float precision.

# %%
ll = log_likelihood(model, make_guide(), x, num_samples=5, progress=False)   # shape (50,)
print("exact proposal, k = 5: max |log_likelihood - exact| =", f"{(ll - exact).abs().max().item():.1e}")
assert (ll - exact).abs().max() < 1e-10

# %% [markdown]
# With a wrong encoder, IWAE-1 is the ELBO, below $\log p(x)$ by $\mathrm{KL}(q \,\|\, p(z \mid x))$, and the
# bound tightens as $k$ grows. How fast? A single IWAE-k estimate is too noisy to show it: its Monte Carlo error
# (the `stderr` of `importance_estimate`) is larger than its bias once $k$ exceeds a few tens. So we measure the
# bias directly with `iwae_bound(..., num_particles=k, num_repeats=R)`, which averages $R$ independent IWAE-k
# estimates: it estimates the expected IWAE-k value $\mathcal L_k$, and $\log p(x) - \mathcal L_k \ge 0$ is the
# bias, with a standard error that shrinks as $1/\sqrt R$. We spend the same number of samples at every $k$.

# %%
bad = make_guide(shift=0.3, scale_factor=1.5)   # mean shifted, standard deviations 1.5 times too wide
ks = [1, 10, 100] if smoke_test else [1, 3, 10, 30, 100, 300]
samples_per_point = 20_000 if smoke_test else 100_000
gap, gap_se = [], []
for k in ks:
    bound, bound_se = iwae_bound(model, bad, x, num_particles=k, num_repeats=samples_per_point // k,
                                 chunk_size=2000, batch_size=None, progress=False)
    gap.append((exact - bound).mean().item())
    gap_se.append((bound_se.pow(2).sum().sqrt() / len(x)).item())   # Monte Carlo error of the mean over points
    print(f"k = {k:4d}   log p(x) - IWAE-k bound = {gap[-1]:.4f} ± {gap_se[-1]:.4f}   k × gap = {k * gap[-1]:.2f}")
kl = kl_to_posterior(x, (x - b) @ A.T + 0.3, post_scale * 1.5).mean().item()
print(f"closed-form mean KL(q || posterior) = {kl:.4f}")

fig, ax = plt.subplots(figsize=(5, 3.5))
ax.errorbar(ks, gap, yerr=[2 * e for e in gap_se], marker="o", capsize=3, label="measured bias ± 2 SE")
c = math.exp(sum(math.log(k * g) for k, g in zip(ks, gap) if k >= 10) / sum(k >= 10 for k in ks))
ax.plot(ks, [c / k for k in ks], "k--", lw=0.8, label=f"{c:.2f} / k (fitted for k ≥ 10)")
ax.set_xscale("log"); ax.set_yscale("log")
ax.set_xlabel("k (importance samples)"); ax.set_ylabel("log p(x) − IWAE-k bound (nats)")
ax.set_title("The IWAE-k bias falls like 1/k"); ax.legend(fontsize=8)
plt.show()

# every measured bias is positive and resolved (more than 3 SE), so the log-log plot shows all of them
assert all(g > 3 * e for g, e in zip(gap, gap_se))
assert abs(gap[0] - kl) < 4 * gap_se[0]                                     # IWAE-1 is the ELBO: bias = KL
assert all(a > b_ for a, b_ in zip(gap, gap[1:]))                            # tighter with every k
assert max(k * g for k, g in zip(ks, gap) if k >= 10) < 1.5 * min(k * g for k, g in zip(ks, gap) if k >= 10)

# %% [markdown]
# At $k = 1$ the bias is the KL divergence, as it must be. From $k = 10$ on, $k$ times the bias is roughly
# constant (between 0.75 and 0.92 at full budget; the last value is the noisiest): the bias falls like $1/k$. That is the delta-method result for a log-mean-exp,
# $\log p(x) - \mathcal L_k \approx \mathrm{Var}(w) / (2k\,p(x)^2)$ with $w = p(x, z)/q(z \mid x)$, which holds
# once the weights are well behaved. A wrong encoder makes $\mathrm{Var}(w)$ large, and that is what costs samples.
#
# Chunking changes nothing but memory: the chunks are combined by a running log-sum-exp, so one pass over all
# samples and a pass in chunks of 64 samples and 7 data points agree within Monte Carlo error (z-scores of the
# difference per point).

# %%
whole = importance_estimate(model, bad, x, num_samples=2000, chunk_size=2000, batch_size=None, progress=False)
chunked = importance_estimate(model, bad, x, num_samples=2000, chunk_size=64, batch_size=7, progress=False)
z = (whole.log_px - chunked.log_px) / (whole.stderr**2 + chunked.stderr**2).sqrt()
print(f"chunked vs whole: max |z-score| over {len(x)} points = {z.abs().max().item():.2f}")
assert z.abs().max() < 4.5

# %% [markdown]
# ### IW-SVI: fix the proposal per data point
#
# IWAE-k inherits the encoder's mistakes: with a far-off or too-narrow encoder even $k = 1000$ is badly biased.
# IW-SVI (Shu et al. 2018, App. C) initialises a free Gaussian $q_n = N(\mu_n, \mathrm{diag}\, e^{2\rho_n})$ at
# the encoder's output for each point, takes `num_steps` Adam steps on the IWAE-K bound (all points at once; they do
# not interact), and evaluates the refined proposal with IWAE-k. It needs the guide's latent sites to be
# `Normal(...).to_event(n)` inside the data plate (a clear error says so otherwise).

# %%
terrible = make_guide(shift=0.8, scale_factor=0.5)   # far off and too narrow: heavy-tailed weights
k = 1000
steps = 30 if smoke_test else 150
# the one-liner: per-point log p(x) under the refined proposals
ll_iw = iw_svi(model, terrible, x, num_steps=steps, num_particles=20, num_samples=k, chunk_size=k, progress=False)
print(f"iw_svi: mean log p(x) = {ll_iw.mean().item():.4f} (exact {exact.mean().item():.4f})")

# the same computation with its diagnostics, next to the encoder's IWAE-1000
amortized = importance_estimate(model, terrible, x, num_samples=k, chunk_size=k, progress=False)
refined = iw_svi_estimate(model, terrible, x, num_steps=steps, num_particles=20, num_samples=k, chunk_size=k,
                          progress=False)
errors = {}
for name, e in (("encoder IWAE-1000", amortized), (f"IW-SVI (T={steps}) + IWAE-1000", refined)):
    s_ = summarize(e.log_px - exact, e.stderr)
    errors[name] = s_["mean"]
    print(f"{name:32s} mean error {s_['mean']:+.4f} (MC error {s_['mc_stderr']:.4f}), mean ESS {e.ess.mean():.0f}")
err_amortized, err_refined = errors.values()
assert err_amortized < -1.0 and abs(err_refined) < 0.1 * abs(err_amortized)   # IW-SVI removes most of the bias
assert refined.ess.mean() > 10 * amortized.ess.mean()

# %% [markdown]
# ### Gaps, checked against closed-form KL divergences
#
# For any $q$, $\log p(x) - \mathcal L[q] = \mathrm{KL}(q \,\|\, p(z \mid x))$. So here the inference gap must
# equal the KL of the encoder's Gaussian, and the approximation gap the KL of the optimised $q^*$, which is
# $\approx 0$ because the family contains the posterior. We pass the exact $\log p(x)$ (`log_px=` also accepts
# `"iw-svi"`, the default, or `"iwae"` to estimate it).

# %%
shift, factor = 0.5, 1.8
gaps = inference_gaps(model, make_guide(shift, factor), x, log_px=exact, elbo_samples=2000,
                      num_steps=40 if smoke_test else 200, num_particles=10, progress=False)
(q_star,) = gaps.optimal_guides
kl_amortized = kl_to_posterior(x, (x - b) @ A.T + shift, post_scale * factor)
kl_star = kl_to_posterior(x, q_star.loc("z"), q_star.scale("z"))
summary = gaps.summary()
for name, closed in (("inference_gap", kl_amortized), ("approximation_gap", kl_star),
                     ("amortization_gap", kl_amortized - kl_star)):
    est, se = summary[name]["mean"], summary[name]["mc_stderr"]
    print(f"{name:18s} estimated {est:.4f} ± {se:.4f}   closed form {closed.mean().item():.4f}")
    assert abs(est - closed.mean().item()) < 4 * se + 1e-3
assert summary["approximation_gap"]["mean"] < 0.05 * summary["amortization_gap"]["mean"]

# %% [markdown]
# Each estimate matches its closed form within a few Monte Carlo standard errors, and nearly the whole inference
# gap is amortization: the optimised Gaussian is almost exact here.
#
# ## 2. A VAE on binarized MNIST
#
# Now a real model: a Bernoulli-decoder VAE (`pyro_noisevae.models.VAE`) trained briefly on static binarized MNIST
# with an ordinary Pyro `SVI` loop. Nothing changes in the evaluation calls: `vae.model` and `vae.guide` have the
# data plate `"data"`.

# %%
torch.set_default_dtype(torch.float32)
pyro.set_rng_seed(0)
pyro.clear_param_store()
train = load_dataset("binarized-mnist", split="train", root=DATA_ROOT).data
test = load_dataset("binarized-mnist", split="test", root=DATA_ROOT).data
gen = torch.Generator().manual_seed(0)
train = train[torch.randperm(len(train), generator=gen)[: 500 if smoke_test else 20000]].to(device)
test = test[torch.randperm(len(test), generator=gen)[: 20 if smoke_test else 200]].to(device)  # test set is sorted by label

vae = VAE(x_dim=784, z_dim=2 if smoke_test else 20, hidden_dims=(32,) if smoke_test else (200, 200),
          likelihood="bernoulli").to(device)
svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO())
losses = []
for epoch in range(1 if smoke_test else 10):
    total = 0.0
    for idx in torch.randperm(len(train), device=device).split(100):
        total += svi.step(train[idx])          # negative ELBO summed over the mini-batch
    losses.append(total / len(train))
print("training loss (negative ELBO per image) by epoch:", [round(v, 2) for v in losses])

# %% [markdown]
# ### How many samples does the estimate need?
#
# The IWAE-k estimate rises with $k$ and flattens; its Monte Carlo standard error says when the remaining noise is
# small compared with differences between models. The test-set standard error (the spread over images) is a
# different, usually larger, number: it matters when comparing with a published result on other images, not when
# comparing two models on the same ones. `iwae_bound` with $K = 5$ estimates the bound an IWAE-5 model would be
# trained on, which lies between the ELBO and the IWAE-k estimates with large $k$.

# %%
ks = [1, 10, 100] if smoke_test else [1, 10, 100, 1000, 5000]
curve = []
for k in ks:
    e = importance_estimate(vae.model, vae.guide, test, num_samples=k, chunk_size=100, batch_size=100, progress=False)
    s_ = e.summary()
    curve.append(s_["log_px_mean"])
    print(f"IWAE-{k:<5d} mean log p(x) = {s_['log_px_mean']:.2f} (MC ± {s_['log_px_mc_stderr']:.2f}, "
          f"test-set ± {s_['log_px_stderr']:.2f});  ELBO from the same samples {s_['elbo_mean']:.2f}")
bound5, bound5_se = iwae_bound(vae.model, vae.guide, test, num_particles=5, num_repeats=20, progress=False)
b5 = summarize(bound5, bound5_se)
print(f"IWAE-5 bound: {b5['mean']:.2f} (MC ± {b5['mc_stderr']:.2f})")
assert curve[0] < b5["mean"] < curve[-1]
assert curve[-1] - curve[0] > 0.5                     # importance sampling gains over the ELBO ...
assert curve[-1] - curve[-2] < curve[1] - curve[0]    # ... and the gains shrink as k grows

# %% [markdown]
# ### IW-SVI and the gaps on train and test images
#
# A short training run has an encoder that is still far from the per-image optimum, so IW-SVI finds a higher
# log-likelihood than the encoder's IWAE-k, and the amortization gap is larger than the approximation gap.
# Comparing training and test images shows whether the encoder generalises (Cremer et al. 2018; Shu et al. 2018).
# `inference_gaps` estimates $\log p(x)$ by IW-SVI itself (`log_px="iw-svi"`, the default), so one call gives
# every column below.

# %%
n = 10 if smoke_test else 100
opts = dict(num_steps=10 if smoke_test else 100, num_particles=10 if smoke_test else 20,
            num_samples=100 if smoke_test else 1000, progress=False)
results = {}
for split, data in (("train", train[:n]), ("test", test[:n])):
    enc = importance_estimate(vae.model, vae.guide, data, num_samples=opts["num_samples"], progress=False)
    g = inference_gaps(vae.model, vae.guide, data, elbo_samples=opts["num_samples"], **opts).summary()
    results[split] = g
    print(f"{split}: encoder IWAE-k {enc.log_px.mean():.2f}  IW-SVI {g['log_px']['mean']:.2f}  | " + "  ".join(
        f"{k} {g[k]['mean']:.2f} ± {g[k]['stderr']:.2f}" for k in ("inference_gap", "approximation_gap", "amortization_gap")))
    # IW-SVI is the tighter bound (up to Monte Carlo error, which dominates with the smoke test's tiny model)
    mc = math.hypot(g["log_px"]["mc_stderr"], enc.summary()["log_px_mc_stderr"])
    assert g["log_px"]["mean"] > enc.log_px.mean().item() - 3 * mc
# amortization, not the Gaussian family, costs most of the bound (over both splits); train and test alike
tr, te = results["train"]["amortization_gap"], results["test"]["amortization_gap"]
assert abs(tr["mean"] - te["mean"]) < 3 * math.hypot(tr["stderr"], te["stderr"])
assert sum(g["amortization_gap"]["mean"] for g in results.values()) > sum(
    g["approximation_gap"]["mean"] for g in results.values()) > 0

fig, ax = plt.subplots(figsize=(6, 3.5))
names = ["inference_gap", "approximation_gap", "amortization_gap"]
for i, split in enumerate(results):
    s_ = results[split]
    ax.bar([j + 0.38 * i for j in range(3)], [s_[k]["mean"] for k in names], width=0.38,
           yerr=[s_[k]["stderr"] for k in names], label=split)
ax.set_xticks([j + 0.19 for j in range(3)], ["inference", "approximation", "amortization"])
ax.set_ylabel("nats per image"); ax.legend(); ax.set_title("Gap decomposition (log p from IW-SVI)")
plt.show()
print(f"total time {time.time() - t_start:.0f} s")

# %% [markdown]
# The error bars (± in the printout) are standard errors over the images. After so short a training run the
# amortization gap on test images differs from that on training images by less than three standard errors: the
# encoder has not overfitted measurably. What is clear is that amortization, not the Gaussian family, costs most of
# the bound.
#
# ## 3. From the command line
#
# The same estimators evaluate any run folder written by `pyro-noisevae train`:
#
# ```bash
# pyro-noisevae evaluate runs/my_vae --num-samples 5000 --iw-svi --gaps      # writes runs/my_vae/evaluation_test.json
# ```
#
# and the reproduction tables of the DVAE and AIR papers are `pyro-noisevae reproduce-dvae-table` and
# `pyro-noisevae reproduce-air-table` (see `results/evaluation/README.md` for their budgets and an honest
# reading of the numbers).
#
# **Caveats.** IWAE-k is a *stochastic lower bound*: its expectation is below $\log p(x)$, and its delta-method
# standard error is itself unreliable when the weights are heavy-tailed (check the effective sample size).
# IW-SVI is still a lower bound, just a tighter one; it can settle in a worse local optimum for a multimodal
# posterior. Log-densities are unscaled: `beta_scale`, `poutine.scale` and subsampling factors are ignored,
# because the quantity of interest is the model's $\log p(x)$, not the training objective.
