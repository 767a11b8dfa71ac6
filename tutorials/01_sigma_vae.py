# %% [markdown]
# # 1. The σ-VAE: an imaginary-noise decoder in Pyro
#
# A σ-VAE (Saremi, *Learning and Inference in Imaginary Noise Models*, 2020) is a VAE whose decoder is the law of
# the **noisy** variable $Y = X + N(0, \sigma^2 I)$ with a *fixed* σ, while the encoder only ever sees clean data:
#
# $$\mathcal{L}(\sigma) = E_{q(z|x)}\Big[-\frac{\lVert x - \mu(z)\rVert^2}{2\sigma^2}\Big] - \frac d2 \log 2\pi\sigma^2 - \mathrm{KL}(q(z|x)\,\|\,p(z)).$$
#
# All σ-VAEs are one β-VAE family: $\mathcal{L}(\sigma_2) = \mathcal{L}(\sigma_1, \beta)/\beta + c$ with $\beta = \sigma_2^2/\sigma_1^2$.
#
# In this tutorial we
# 1. write a σ-VAE as an ordinary Pyro model/guide pair with `pyro_noisevae.distributions.NoisyNormal`;
# 2. check the σ↔β identity numerically with the `beta_scale` effect handler, values and gradients;
# 3. train briefly on MNIST, and look at reconstructions of clean and noisy digits.

# %%
import math
import os

import matplotlib.pyplot as plt
import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, Trace_ELBO
from torch import nn

import pyro_noisevae as pn
from pyro_noisevae.data import load_dataset
from pyro_noisevae.distributions import NoisyNormal
from pyro_noisevae.handlers import beta_scale, bound_constant, equivalent_beta
from pyro_noisevae.nn import MLPDecoder, MLPEncoder

smoke_test = "CI" in os.environ  # the test suite runs this notebook with CI=1 and tiny budgets
DATA_ROOT = os.environ.get("PYRO_NOISEVAE_DATA", "../../shared/data")
# PYRO_NOISEVAE_DEVICE (tutorials/execute.py --device) overrides the default: CUDA when available, except in smoke runs
device = torch.device(os.environ.get("PYRO_NOISEVAE_DEVICE") or ("cuda" if torch.cuda.is_available() and not smoke_test else "cpu"))
if device.type == "cuda" and not torch.cuda.is_available():
    raise RuntimeError(f"PYRO_NOISEVAE_DEVICE={device} but torch sees no CUDA device; use --device cpu")
pyro.set_rng_seed(0)
print("pyro_noisevae", pn.__version__, "| pyro", pyro.__version__, "| torch", torch.__version__, "| device", device)


# %% [markdown]
# ## 1. A σ-VAE written by hand
#
# The model scores the clean image `x` under `NoisyNormal(μ(z), σ)` — the density of $Y = \mu(z) + N(0, \sigma^2)$
# evaluated at $y = x$. The guide is an amortized Gaussian encoder. Nothing here is specific to the library except
# the observation distribution: it is plain Pyro (global param store, `pyro.module`, `SVI`).

# %%
class SigmaVAE(nn.Module):
    def __init__(self, sigma, x_dim=784, z_dim=20, hidden=(400,)):
        super().__init__()
        self.sigma, self.z_dim = sigma, z_dim
        self.encoder = MLPEncoder(x_dim, z_dim, hidden)
        self.decoder = MLPDecoder(z_dim, x_dim, hidden)

    def model(self, x, num_data=None):
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", num_data or x.shape[0], subsample=torch.arange(x.shape[0], device=x.device)):
            z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], self.z_dim), 1.0).to_event(1))
            mu = torch.sigmoid(self.decoder(z))
            pyro.sample("x", NoisyNormal(mu, self.sigma).to_event(1), obs=x)

    def guide(self, x, num_data=None):
        pyro.module("encoder", self.encoder)
        with pyro.plate("data", num_data or x.shape[0], subsample=torch.arange(x.shape[0], device=x.device)):
            loc, scale = self.encoder(x)
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

train = load_dataset("mnist", split="trainval", root=DATA_ROOT)
test = load_dataset("mnist", split="test", root=DATA_ROOT)
print(train, test, sep="\n")

# %% [markdown]
# ## 2. The σ↔β identity, numerically
#
# Take two σ-VAEs with **the same weights**, σ₁ = 0.2 and σ₂ = 0.5. With β = σ₂²/σ₁², the bound of the second equals
# the β-VAE bound of the first divided by β, plus a constant that only depends on σ₁, σ₂ and the dimension d:
#
# $$c = -\tfrac d2 \log(2\pi\sigma_2^2) + \tfrac1\beta\,\tfrac d2 \log(2\pi\sigma_1^2).$$
#
# `beta_scale` multiplies the log-density of every latent site by β. It must wrap the model **and** the guide
# (the KL term is $\log p(z) - \log q(z)$). We use the same random draws (same seed) for both bounds, and a
# data plate that subsamples a mini-batch of 64 out of N = 60 000 points.

# %%
s1, s2 = 0.2, 0.5
beta = equivalent_beta(s1, s2)                     # (s2 / s1) ** 2 = 6.25
c = bound_constant(s1, s2, num_dims=784)           # per data point
vae1 = SigmaVAE(s1).double()
vae2 = SigmaVAE(s2).double()
vae2.load_state_dict(vae1.state_dict())            # identical networks
x = train.data[:64].double()
N = len(train)

def loss_and_grads(vae, beta=None):
    model, guide = vae.model, vae.guide
    if beta is not None:
        model, guide = beta_scale(model, beta=beta), beta_scale(guide, beta=beta)
    pyro.clear_param_store()
    vae.zero_grad()
    pyro.set_rng_seed(1)
    loss = Trace_ELBO().differentiable_loss(model, guide, x, num_data=N)
    loss.backward()
    return loss.item(), torch.cat([p.grad.flatten() for p in vae.parameters()])

loss2, g2 = loss_and_grads(vae2)
loss1, g1 = loss_and_grads(vae1, beta=beta)
print(f"β = {beta:.3f}, c = {c:.3f} nats per point")
print(f"L(σ₂)              = {-loss2:.6f}")
print(f"L(σ₁, β)/β + N·c   = {-loss1 / beta + N * c:.6f}")
print(f"relative difference  {abs(-loss2 - (-loss1 / beta + N * c)) / abs(loss2):.2e}")
print(f"max |∇L(σ₂) − ∇L(σ₁,β)/β| = {(g2 - g1 / beta).abs().max():.2e}  (gradients are ~{g2.abs().max():.1e})")

# %% [markdown]
# The identity holds to float64 round-off, for values and gradients. It is exact for **single-sample** bounds only:
# for an importance-weighted bound the β-scaling sits inside the log-sum-exp, so dividing by β no longer gives
# the σ₂ bound (see `tests/test_handlers.py::test_identity_does_not_hold_for_importance_weighted_bounds`).
#
# Because the gradients differ by the factor 1/β, SGD with learning rate η on $\mathcal{L}(\sigma_2)$ follows the same
# path as SGD with η/β on $\mathcal{L}(\sigma_1, \beta)$; Adam is (up to its ε) invariant to that factor.
#
# ## 3. Train σ-VAEs on MNIST
#
# We train two σ-VAEs with the library's `VAE` class (the same model as above, packaged as a `PyroModule`):
# a small σ = 0.1 and a large σ = 1.0. `pyro_noisevae.training.fit` runs Adam on the per-point negative ELBO.
# (`pyro-noisevae train` does the same from the command line, with checkpoints, metrics and pictures.)

# %%
epochs = 1 if smoke_test else 3
data = train.data[:2000] if smoke_test else train.data
models = {}
for sigma in (0.1, 1.0):
    pyro.set_rng_seed(0)
    vae = pn.VAE(x_dim=784, z_dim=20, hidden_dims=(400,), likelihood="normal", sigma=sigma)
    losses = pn.training.fit(vae.model, vae.guide, data, epochs=epochs, batch_size=100, lr=1e-3,
                             seed=0, device=device, progress=False)
    vae = vae.cpu()
    metrics = pn.training.evaluate_elbo(vae, test.data[:2000])
    models[sigma] = vae
    print(f"σ = {sigma}: train −ELBO/point per epoch {[round(l, 1) for l in losses]}; "
          f"test ELBO {metrics['elbo']:.1f} (recon {metrics['recon']:.1f}, KL {metrics['kl']:.2f}, "
          f"active units {metrics['active_units']}/20)")

# %% [markdown]
# The KL term shrinks as σ grows: a larger imaginary noise asks the decoder to explain less, so the posterior
# carries less information about x (the σ-VAE paper reports a power law $D_{KL} \sim \sigma^{-\nu}$; see the
# `sigma-sweep` experiment).
#
# ## 4. Reconstructions of clean and noisy digits
#
# Both models were trained on clean digits only. We feed them $y = x + N(0, s^2 I)$ for growing $s$ and decode the
# posterior mean: rows are the noisy input, the σ = 0.1 reconstruction and the σ = 1.0 reconstruction.

# %%
gen = torch.Generator().manual_seed(0)
x = test.data[torch.randperm(len(test), generator=gen)[:8]]
levels = (0.0, 0.5, 1.0, 1.5)
fig, axes = plt.subplots(3, len(levels), figsize=(3.2 * len(levels), 3.4))
with torch.no_grad():
    for j, s in enumerate(levels):
        y = x + s * torch.randn(x.shape, generator=gen)
        rows = [y, models[0.1].reconstruct(y), models[1.0].reconstruct(y)]
        for i, r in enumerate(rows):
            strip = r.clamp(0, 1).reshape(8, 28, 28).permute(1, 0, 2).reshape(28, 8 * 28).numpy()
            axes[i, j].imshow(strip, cmap="gray", vmin=0, vmax=1)
            axes[i, j].set_xticks([]); axes[i, j].set_yticks([])
        axes[0, j].set_title(f"input noise s = {s}")
        mse = {k: ((m.reconstruct(y) - x) ** 2).mean().item() for k, m in models.items()}
        axes[2, j].set_xlabel(f"MSE vs clean: σ=0.1 {mse[0.1]:.3f} | σ=1 {mse[1.0]:.3f}", fontsize=8)
for i, label in enumerate(["noisy y", "σ = 0.1", "σ = 1.0"]):
    axes[i, 0].set_ylabel(label)
fig.tight_layout()
plt.show()

# %% [markdown]
# With more imaginary noise the reconstructions are blurrier on clean digits but degrade more gracefully as the
# real input noise grows. The `noisy-inference` experiment (see the README) measures this properly: MSE/PSNR
# against the clean digit and a linear probe on the latents, next to model-free baselines.
#
# **Next:** `02_imaginary_noise.ipynb` (power law and extreme noise), `03_denoising_and_iwae.ipynb`.
