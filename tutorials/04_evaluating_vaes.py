# %% [markdown]
# # 4. Evaluating VAEs honestly: IWAE-k log-likelihood, IW-SVI and inference gaps
#
# The training loss of a VAE is a *bound*, and the bound depends on the encoder. To compare models we need
# an estimate of the test log-likelihood $\log p_\theta(x)$ itself, and to understand them we need to know how
# much of the bound is lost to inference. `pyro_noisevae.evaluation` provides three tools that work for any
# Pyro model/guide pair with a data plate:
#
# | function | estimates | idea |
# |---|---|---|
# | `log_likelihood(model, guide, x, num_samples=k)` | $\log p(x_n)$ per data point | IWAE-k: $\log \frac1k \sum_i p(x_n, z_i)/q(z_i \mid x_n)$, $z_i \sim q$ |
# | `iw_svi(model, guide, x, num_steps=T, num_particles=K)` | $\log p(x_n)$ per data point | first optimise a per-point Gaussian proposal on the IWAE-K bound (Shu et al. 2018, App. C), then IWAE-k |
# | `inference_gaps(model, guide, x)` | inference / approximation / amortization gaps | $\log p - \mathcal L[q_\phi] = (\log p - \mathcal L[q^*]) + (\mathcal L[q^*] - \mathcal L[q_\phi])$ (Cremer et al. 2018) |
#
# All of them are chunked over samples and over data points, so memory is bounded by the chunk size, not by
# $k$ (IWAE-5000 over a whole test set runs on a laptop). This notebook first checks every estimator against
# **exact** answers on a linear-Gaussian model, then applies them to a small VAE on binarized MNIST.

# %%
import math
import os
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # progress bars are off in this notebook

import matplotlib.pyplot as plt
import pyro
import pyro.distributions as dist
import torch

from pyro_noisevae.data import load_dataset
from pyro_noisevae.evaluation import (
    LocalGaussianGuide, importance_estimate, inference_gaps, iw_svi_estimate, iwae_bound, log_likelihood, summarize,
)
from pyro_noisevae.models import VAE
from pyro_noisevae.training import fit

smoke_test = "CI" in os.environ  # the test suite runs this notebook with CI=1 and tiny budgets
DATA_ROOT = os.environ.get("PYRO_NOISEVAE_DATA", "../../shared/data")
# the MNIST VAE of section 2 trains and is evaluated on `device` (PYRO_NOISEVAE_DEVICE, set by tutorials/execute.py
# --device, overrides the default); the small float64 linear-Gaussian checks of section 1 stay on the CPU
device = torch.device(os.environ.get("PYRO_NOISEVAE_DEVICE") or ("cuda" if torch.cuda.is_available() and not smoke_test else "cpu"))
if device.type == "cuda" and not torch.cuda.is_available():
    raise RuntimeError(f"PYRO_NOISEVAE_DEVICE={device} but torch sees no CUDA device; use --device cpu")
torch.set_num_threads(1)
pyro.set_rng_seed(0)

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
print("exact mean log p(x):", exact.mean().item())

# %% [markdown]
# ### IWAE-k converges to the exact log-likelihood
#
# With the exact posterior as proposal every importance weight equals $p(x)$, so even $k = 1$ is exact. With a
# wrong encoder, IWAE-1 is the ELBO, below $\log p(x)$ by $\mathrm{KL}(q \,\|\, p(z \mid x))$, and the bound
# tightens as $k$ grows. `importance_estimate` also returns a delta-method Monte Carlo standard error per
# point, $\sqrt{(\overline{w^2}/\bar w^2 - 1)/k}$, and the effective sample size.

# %%
est = importance_estimate(model, make_guide(), x, num_samples=5, progress=False)
print("exact proposal, k=5: max |error| =", (est.log_px - exact).abs().max().item())

bad = make_guide(shift=0.3, scale_factor=1.5)
ks = [1, 10, 100, 1000] if smoke_test else [1, 3, 10, 30, 100, 300, 1000, 3000, 10000]
rows = []
for k in ks:
    e = importance_estimate(model, bad, x, num_samples=k, chunk_size=1000, progress=False)
    err = (e.log_px - exact)
    rows.append((k, err.mean().item(), (e.stderr.pow(2).sum().sqrt() / len(x)).item(), e.ess.mean().item()))
    print(f"k={k:6d}  mean(IWAE-k - exact) = {rows[-1][1]:+.4f} ± {rows[-1][2]:.4f}   mean ESS = {rows[-1][3]:.1f}")
kl = kl_to_posterior(x, (x - b) @ A.T + 0.3, post_scale * 1.5)
print("closed-form mean KL(q || posterior) =", kl.mean().item(), "(the k = 1 error, up to sign and noise)")

fig, ax = plt.subplots(figsize=(5, 3.5))
ax.errorbar([r[0] for r in rows], [-r[1] for r in rows], yerr=[0 if math.isnan(r[2]) else 2 * r[2] for r in rows],
            marker="o")
ax.set_xscale("log"); ax.set_yscale("log")
ax.set_xlabel("k (importance samples)"); ax.set_ylabel("log p(x) − IWAE-k (nats)")
ax.set_title("IWAE-k approaches the exact log-likelihood")
plt.show()

# %% [markdown]
# The error decays roughly like $1/k$ once the weights are well behaved (the bias of a log-mean-exp is
# $\approx -\mathrm{Var}(w)/(2k\,p(x)^2)$). Chunking changes nothing but memory: the chunks are combined by a
# running log-sum-exp.

# %%
whole = importance_estimate(model, bad, x, num_samples=2000, chunk_size=2000, batch_size=None, progress=False)
chunked = importance_estimate(model, bad, x, num_samples=2000, chunk_size=64, batch_size=7, progress=False)
z = (whole.log_px - chunked.log_px) / (whole.stderr**2 + chunked.stderr**2).sqrt()
print("chunked vs whole: max |z-score| over", len(x), "points =", z.abs().max().item())

# %% [markdown]
# ### IW-SVI: fix the proposal per data point
#
# IWAE-k inherits the encoder's mistakes: with a far-off or too-narrow encoder even $k = 1000$ is badly
# biased. IW-SVI initialises a free Gaussian $q_n = N(\mu_n, \mathrm{diag}\, e^{2\rho_n})$ at the encoder's
# output for each point, takes `num_steps` Adam steps on the IWAE-K bound (all points at once; they do not
# interact), and evaluates the refined proposal with IWAE-k. It needs the guide's latent sites to be
# `Normal(...).to_event(n)` inside the data plate (a clear error says so otherwise).

# %%
terrible = make_guide(shift=0.8, scale_factor=0.5)   # far off and too narrow: heavy-tailed weights
k = 1000
amortized = importance_estimate(model, terrible, x, num_samples=k, chunk_size=k, progress=False)
steps = 30 if smoke_test else 150
refined = iw_svi_estimate(model, terrible, x, num_steps=steps, num_particles=20, num_samples=k, chunk_size=k,
                          progress=False)
for name, e in (("encoder IWAE-1000", amortized), (f"IW-SVI (T={steps}) + IWAE-1000", refined)):
    s_ = summarize(e.log_px - exact, e.stderr)
    print(f"{name:32s} mean error {s_['mean']:+.4f} (MC error {s_['mc_stderr']:.4f}), mean ESS {e.ess.mean():.0f}")

# %% [markdown]
# ### Gaps, checked against closed-form KL divergences
#
# For any $q$, $\log p(x) - \mathcal L[q] = \mathrm{KL}(q \,\|\, p(z \mid x))$. So here the inference gap must
# equal the KL of the encoder's Gaussian, and the approximation gap the KL of the optimised $q^*$, which is
# $\approx 0$ because the family contains the posterior. We pass the exact $\log p(x)$ (`log_px=` also accepts
# `"iw-svi"` or `"iwae"` to estimate it).

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
    print(f"{name:18s} estimated {summary[name]['mean']:.4f} ± {summary[name]['mc_stderr']:.4f}   "
          f"closed form {closed.mean().item():.4f}")

# %% [markdown]
# ## 2. A VAE on binarized MNIST
#
# Now a real model: a Bernoulli-decoder VAE (`pyro_noisevae.models.VAE`) trained briefly on static binarized
# MNIST. Nothing changes in the calls: `vae.model` and `vae.guide` have the data plate `"data"`.

# %%
torch.set_default_dtype(torch.float32)
pyro.set_rng_seed(0)
train = load_dataset("binarized-mnist", split="train", root=DATA_ROOT).data
test = load_dataset("binarized-mnist", split="test", root=DATA_ROOT).data
gen = torch.Generator().manual_seed(0)
train = train[torch.randperm(len(train), generator=gen)[: 500 if smoke_test else 20000]].to(device)
test = test[torch.randperm(len(test), generator=gen)[: 20 if smoke_test else 200]].to(device)  # test set is sorted by label

vae = VAE(x_dim=784, z_dim=2 if smoke_test else 20, hidden_dims=(32,) if smoke_test else (200, 200),
          likelihood="bernoulli").to(device)
losses = fit(vae.model, vae.guide, train, epochs=1 if smoke_test else 10, batch_size=100, lr=1e-3, progress=False,
             device=device)
print("training loss (negative ELBO per image) by epoch:", [round(l, 2) for l in losses])

# %% [markdown]
# ### How many samples does the estimate need?
#
# The IWAE-k estimate rises with $k$ and flattens; the standard errors say when the remaining Monte Carlo
# error is small compared with differences between models. `iwae_bound` estimates the *bound* a K-sample
# model is trained on (averaged over many groups of K), which is a different quantity from the IWAE-k
# log-likelihood estimate with the same K.

# %%
ks = [1, 10, 100] if smoke_test else [1, 10, 100, 1000, 5000]
curve = []
for k in ks:
    e = importance_estimate(vae.model, vae.guide, test, num_samples=k, chunk_size=100, batch_size=100, progress=False)
    s_ = e.summary()
    curve.append((k, s_["log_px_mean"], s_["log_px_mc_stderr"]))
    print(f"IWAE-{k:<5d} mean log p(x) = {s_['log_px_mean']:.2f} (MC ± {s_['log_px_mc_stderr']:.2f}, "
          f"test-set ± {s_['log_px_stderr']:.2f});  ELBO from the same samples {s_['elbo_mean']:.2f}")
bound5, bound5_se = iwae_bound(vae.model, vae.guide, test, num_particles=5, num_repeats=20, progress=False)
print("IWAE-5 bound:", summarize(bound5, bound5_se))

# %% [markdown]
# ### IW-SVI and the gaps on train and test images
#
# A short training run has an encoder that is still far from the per-image optimum, so IW-SVI finds a higher
# log-likelihood than the encoder's IWAE-k, and the amortization gap dominates the inference gap. Comparing
# training and test images shows whether the encoder generalises (Cremer et al. 2018; Shu et al. 2018).

# %%
n = 10 if smoke_test else 100
opts = dict(num_steps=10 if smoke_test else 100, num_particles=10 if smoke_test else 20,
            num_samples=100 if smoke_test else 1000, progress=False)
results = {}
for split, data in (("train", train[:n]), ("test", test[:n])):
    enc = importance_estimate(vae.model, vae.guide, data, num_samples=opts["num_samples"], progress=False)
    ref = iw_svi_estimate(vae.model, vae.guide, data, **opts)
    g = inference_gaps(vae.model, vae.guide, data, log_px=ref.log_px, elbo_samples=opts["num_samples"],
                       num_steps=opts["num_steps"], num_particles=opts["num_particles"], progress=False)
    results[split] = (enc, ref, g.summary())
    print(f"{split}: IWAE-k {enc.log_px.mean():.2f}  IW-SVI {ref.log_px.mean():.2f}  | "
          + "  ".join(f"{k} {g.summary()[k]['mean']:.2f}" for k in ("inference_gap", "approximation_gap", "amortization_gap")))

fig, ax = plt.subplots(figsize=(6, 3.5))
names = ["inference_gap", "approximation_gap", "amortization_gap"]
for i, split in enumerate(results):
    s_ = results[split][2]
    ax.bar([j + 0.38 * i for j in range(3)], [s_[k]["mean"] for k in names], width=0.38,
           yerr=[s_[k]["stderr"] for k in names], label=split)
ax.set_xticks([j + 0.19 for j in range(3)], ["inference", "approximation", "amortization"])
ax.set_ylabel("nats per image"); ax.legend(); ax.set_title("Gap decomposition (log p from IW-SVI)")
plt.show()

# %% [markdown]
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
