"""Conformance programs: Pyro model/guide pairs written the way users write them, with closed forms where they exist.

Every program is built by a factory registered under a name with tags; the conformance tests are parametrized
over the names (``names(...)``) and build a fresh program in each test (``make(name)``), since the autouse
fixture of ``tests/conftest.py`` clears the param store between tests.

Closed forms are computed in float64 with :class:`torch.distributions.MultivariateNormal`. The linear-Gaussian
decoders have orthogonal columns, so every exact posterior is a diagonal Gaussian that the programs' guide
families contain: ``init="exact"`` sets the guide to it (the importance weights are then constant),
``init="near"`` (default) moves each location by half a posterior standard deviation and widens each scale by
30 % (so the weights vary, but mildly), ``init="random"`` leaves the modules at their random initialization.

Tags:

* ``amortized`` / ``local`` / ``global``: amortized guide; per-data-point latents; latents shared by all points.
* ``closed_form``: the exact ``log p(x_n)`` (local) or the exact log evidence (global) is known.
* ``exact_family``: ``init="exact"`` puts the guide at the exact posterior.
* ``reparam`` / ``discrete``: every guide site has ``rsample`` / a guide site is discrete.
* ``hierarchical``: a guide site depends on another guide latent.
* ``image``: observations are ``(B, C, H, W)`` images (``.to_event(3)``).
* ``subsample``: model and guide take ``subsample_size=`` (the Pyro subsampling idiom).
* ``pyrosample``: a ``PyroSample`` attribute of a ``PyroModule[nn.Linear]`` (not safe to vectorize).
* ``denoising``: the guide is a :class:`~pyro_noisevae.guides.DenoisingGuide` (``/denoising_M1``, ``_M3``).
* ``nn_owner``: model and guide are bound methods of one ``nn.Module`` (``Program.owner``).
"""

import functools
import math
from dataclasses import dataclass, field, replace

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.infer.autoguide import AutoDiagonalNormal, AutoNormal
from pyro.nn import PyroModule, PyroSample, pyro_method
from pyro.nn.module import to_pyro_module_
from torch import nn

from pyro_noisevae.distributions import GaussianCorruption
from pyro_noisevae.guides import DenoisingGuide

F64 = dict(dtype=torch.float64)
#: standard deviation of the Gaussian corruption of the denoising variants
CORRUPTION_SIGMA = 0.1
#: number of corruptions of the denoising variants
NUM_CORRUPTIONS = (1, 3)
INITS = ("exact", "near", "random")


# ----------------------------------------------------------------------------------------------------------
# the program record and the registry
# ----------------------------------------------------------------------------------------------------------


@dataclass
class Program:
    """A model/guide pair with its data and what is known about it in closed form."""

    name: str
    model: object
    guide: object
    args: tuple
    kwargs: dict = field(default_factory=dict)
    tags: frozenset = frozenset()
    #: the plate indexing data points
    data_plate: str = "data"
    #: options a user passes to the evaluation tools for this program (e.g. ``data_arg``)
    eval_options: dict = field(default_factory=dict)
    #: rightmost dims of one observation (1 for vectors, 3 for images)
    input_event_dim: int = 1
    #: exact per-point ``log p(x_n)``, shape ``(N,)`` (local-latent programs)
    exact_log_px: torch.Tensor = None
    #: exact log evidence of the whole data set
    exact_log_evidence: float = None
    #: ``() -> (N,)`` or ``() -> float``: closed-form ELBO of the guide at its current parameters
    exact_elbo: object = None
    #: ``x0 -> (mean, cov)``: the exact posterior of one observation, over the flattened latents
    posterior: object = None
    #: ``x0 -> (mean, cov)``: the guide's Gaussian ``q(z | x0)`` at its current parameters
    guide_moments: object = None
    #: the ``nn.Module`` whose bound methods are ``model`` and ``guide``
    owner: nn.Module = None
    #: the model before :meth:`DenoisingGuide.wrap_model` (denoising variants)
    base_model: object = None

    @property
    def data(self):
        return self.args[0]

    @property
    def num_data(self):
        return self.args[0].shape[0]

    def call(self, fn, *extra, **kwargs):
        """``fn(model, guide, *args, *extra, **kwargs, **program kwargs)``."""
        return fn(self.model, self.guide, *self.args, *extra, **{**self.kwargs, **kwargs})


_FACTORIES = {}
TAGS = {}


def register(name, *tags):
    def decorator(factory):
        _FACTORIES[name] = factory
        TAGS[name] = frozenset(tags)
        return factory

    return decorator


def make(name, init="near"):
    """Build the program ``name`` with its guide at ``init`` (``"exact"``, ``"near"`` or ``"random"``)."""
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    return _FACTORIES[name](init)


def names(*include, exclude=()):
    """Registered names having every tag in ``include`` and none in ``exclude``, in registration order."""
    return [n for n, t in TAGS.items() if set(include) <= t and not set(exclude) & t]


# ----------------------------------------------------------------------------------------------------------
# linear-Gaussian closed forms
# ----------------------------------------------------------------------------------------------------------


def orthogonal_columns(rows, norms, gen):
    """A ``(rows, len(norms))`` matrix with orthogonal columns of the given norms."""
    q, _ = torch.linalg.qr(torch.randn(rows, len(norms), generator=gen, **F64))
    return q * torch.tensor(norms, **F64)


class LinearGaussian:
    r"""
    :math:`z \sim N(0, I_k)`, :math:`x \mid z \sim N(Wz + b, s^2 I_D)` with orthogonal columns of :math:`W`:
    :math:`\log p(x) = \log N(x; b, WW^\top + s^2 I)`, posterior :math:`N(A(x - b), \mathrm{diag}\,\sigma_q^2)`,
    :math:`\Sigma = (I + W^\top W / s^2)^{-1}` diagonal, :math:`A = \Sigma W^\top / s^2`.
    """

    def __init__(self, x_dim, norms, noise, seed, offset=0.3):
        gen = torch.Generator().manual_seed(seed)
        self.W = orthogonal_columns(x_dim, norms, gen)
        self.b = offset * torch.randn(x_dim, generator=gen, **F64)
        self.s = float(noise)
        self.x_dim, self.z_dim = x_dim, len(norms)
        cov = torch.linalg.inv(torch.eye(self.z_dim, **F64) + self.W.T @ self.W / self.s**2)
        self.post_scale = cov.diagonal().sqrt()
        self.A = cov @ self.W.T / self.s**2
        self.marginal = dist.MultivariateNormal(self.b, self.W @ self.W.T + self.s**2 * torch.eye(x_dim, **F64))

    def sample(self, n, seed):
        return _sample(self.marginal, n, seed)

    def posterior_loc(self, x):
        return (x - self.b) @ self.A.T

    def elbo(self, x, loc, scale):
        r"""Closed-form ELBO of :math:`q(z) = N(loc, \mathrm{diag}\, scale^2)` per data point."""
        v = scale**2
        fit = ((x - loc @ self.W.T - self.b) ** 2).sum(-1) + (v * (self.W**2).sum(0)).sum(-1)
        expected_loglik = -0.5 * self.x_dim * math.log(2 * math.pi * self.s**2) - fit / (2 * self.s**2)
        neg_kl = 0.5 * (1 + v.log() - loc**2 - v).sum(-1)
        return expected_loglik + neg_kl


def _sample(distribution, n, seed):
    state = torch.get_rng_state()
    torch.manual_seed(seed)
    try:
        return distribution.sample((n,))
    finally:
        torch.set_rng_state(state)


def _guide_values(init, exact_loc_shift, exact_scale, loc_scale_units):
    """``(shift, scale)`` of the guide for ``init``: exact, or moved by half a posterior sd and 30 % wider."""
    if init == "exact":
        return exact_loc_shift, exact_scale
    return exact_loc_shift + 0.5 * loc_scale_units, 1.3 * exact_scale


def _set(param, value):
    with torch.no_grad():
        param.copy_(value.reshape(param.shape))


def set_param(name, value):
    """Set the (constrained) value of the existing Pyro param ``name`` in place, so modules holding it see it too."""
    store = pyro.get_param_store()
    unconstrained = dict(store.named_parameters())[name]
    constraint = store.get_state()["constraints"][name]
    _set(unconstrained, torch.distributions.transform_to(constraint).inv(value))


def _diag_posterior(loc, scale):
    return loc.reshape(-1), torch.diag(scale.reshape(-1) ** 2)


# ----------------------------------------------------------------------------------------------------------
# a. VAEs with vector observations
# ----------------------------------------------------------------------------------------------------------


@register("linear_vae", "amortized", "local", "closed_form", "exact_family", "reparam", "subsample")
def linear_vae(init, num_data=20, seed=0):
    """Plain functions with ``pyro.module``, plate ``"obs"``, linear encoder and decoder, a per-dim scale param."""
    lg = LinearGaussian(x_dim=6, norms=(2.0, 0.8), noise=0.5, seed=seed)
    x = lg.sample(num_data, seed + 1)
    decoder = nn.Linear(2, 6, **F64)
    encoder = nn.Linear(6, 2, **F64)
    _set(decoder.weight, lg.W)
    _set(decoder.bias, lg.b)
    init_scale = torch.ones(2, **F64)
    if init != "random":
        shift, init_scale = _guide_values(init, torch.zeros(2, **F64), lg.post_scale, lg.post_scale)
        _set(encoder.weight, lg.A)
        _set(encoder.bias, -lg.A @ lg.b + shift)

    def model(x, subsample_size=None):
        pyro.module("decoder", decoder)
        with pyro.plate("obs", x.shape[-2], subsample_size=subsample_size) as idx:
            z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(decoder(z), lg.s).to_event(1), obs=x[..., idx, :])

    def guide(x, subsample_size=None):
        pyro.module("encoder", encoder)
        scale = pyro.param("z_scale", init_scale.clone(), constraint=constraints.positive)
        with pyro.plate("obs", x.shape[-2], subsample_size=subsample_size) as idx:
            pyro.sample("z", dist.Normal(encoder(x[..., idx, :]), scale).to_event(1))

    def exact_elbo():
        with torch.no_grad():
            scale = pyro.param("z_scale", init_scale.clone(), constraint=constraints.positive)
            return lg.elbo(x, encoder(x), scale.expand(num_data, 2))

    def posterior(x0):
        return _diag_posterior(lg.posterior_loc(x0), lg.post_scale)

    def guide_moments(x0):
        with torch.no_grad():
            scale = pyro.param("z_scale", init_scale.clone(), constraint=constraints.positive)
            return _diag_posterior(encoder(x0), scale)

    log_px = lg.marginal.log_prob(x)
    return Program(
        "linear_vae", model, guide, (x,), tags=TAGS["linear_vae"], data_plate="obs", exact_log_px=log_px,
        exact_log_evidence=log_px.sum().item(), exact_elbo=exact_elbo, posterior=posterior,
        guide_moments=guide_moments,
    )


class MLPVAE(nn.Module):
    """The shape of Pyro's VAE example: ``model``/``guide`` methods of one ``nn.Module``, ``pyro.module`` inside."""

    def __init__(self, x_dim=8, z_dim=2, hidden=16, sigma=0.5):
        super().__init__()
        self.z_dim, self.sigma = z_dim, sigma
        self.encoder = nn.Sequential(nn.Linear(x_dim, hidden), nn.Tanh(), nn.Linear(hidden, 2 * z_dim))
        self.decoder = nn.Sequential(nn.Linear(z_dim, hidden), nn.Tanh(), nn.Linear(hidden, x_dim))

    def model(self, x):
        pyro.module("mlp_vae", self)
        with pyro.plate("data", x.shape[-2]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(self.z_dim), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(self.decoder(z), self.sigma).to_event(1), obs=x)

    def guide(self, x):
        pyro.module("mlp_vae", self)
        with pyro.plate("data", x.shape[-2]):
            loc, raw = self.encoder(x).chunk(2, -1)
            pyro.sample("z", dist.Normal(loc, nn.functional.softplus(raw) + 1e-3).to_event(1))


@register("mlp_vae", "amortized", "local", "reparam", "nn_owner")
def mlp_vae(init, num_data=16, seed=0):
    """Random MLPs (float32); no closed form: bound and shape checks only."""
    torch.manual_seed(seed)
    vae = MLPVAE()
    with torch.no_grad():
        z = torch.randn(num_data, vae.z_dim)
        x = vae.decoder(z) + vae.sigma * torch.randn(num_data, 8)
    return Program("mlp_vae", vae.model, vae.guide, (x,), tags=TAGS["mlp_vae"], owner=vae)


# ----------------------------------------------------------------------------------------------------------
# b. convolutional VAEs on images
# ----------------------------------------------------------------------------------------------------------


class ConvVAE(PyroModule):
    """A small conv VAE on 1x28x28 images as a ``PyroModule`` (Conv2d encoder, Linear + ConvTranspose2d decoder)."""

    def __init__(self, z_dim=4, sigma=0.2):
        super().__init__()
        self.z_dim, self.sigma = z_dim, sigma
        self.conv_encoder = nn.Sequential(
            nn.Conv2d(1, 4, 4, stride=2, padding=1), nn.ReLU(), nn.Conv2d(4, 8, 4, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(8 * 7 * 7, 2 * z_dim),
        )
        self.conv_decoder = nn.Sequential(
            nn.Linear(z_dim, 8 * 7 * 7), nn.ReLU(), nn.Unflatten(-1, (8, 7, 7)),
            nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(4, 1, 4, stride=2, padding=1), nn.Sigmoid(),
        )
        to_pyro_module_(self)  # every submodule a PyroModule, so that its parameters are Pyro params

    def decode(self, z):
        return self.conv_decoder(z.reshape(-1, self.z_dim)).reshape(z.shape[:-1] + (1, 28, 28))

    @pyro_method
    def model(self, x):
        with pyro.plate("images", x.shape[-4]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(self.z_dim), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(self.decode(z), self.sigma).to_event(3), obs=x)

    @pyro_method
    def guide(self, x):
        with pyro.plate("images", x.shape[-4]):
            h = self.conv_encoder(x.reshape(-1, 1, 28, 28)).reshape(x.shape[:-3] + (2 * self.z_dim,))
            loc, raw = h.chunk(2, -1)
            pyro.sample("z", dist.Normal(loc, nn.functional.softplus(raw) + 1e-3).to_event(1))


@register("conv_vae_28", "amortized", "local", "reparam", "image", "nn_owner")
def conv_vae_28(init, num_data=6, seed=0):
    """Random init (float32), images from its own prior predictive; bound and shape checks only."""
    torch.manual_seed(seed)
    vae = ConvVAE()
    with torch.no_grad():
        x = vae.conv_decoder(torch.randn(num_data, vae.z_dim)) + vae.sigma * torch.randn(num_data, 1, 28, 28)
    return Program(
        "conv_vae_28", vae.model, vae.guide, (x,), tags=TAGS["conv_vae_28"], data_plate="images", input_event_dim=3,
        owner=vae,
    )


class LinearConvVAE(nn.Module):
    """1x8x8 images; ``Conv2d(1, k, 8)`` encoder and ``ConvTranspose2d(k, 1, 8)`` decoder, both linear maps."""

    def __init__(self, z_dim, sigma):
        super().__init__()
        self.z_dim, self.sigma = z_dim, sigma
        self.encoder = nn.Conv2d(1, z_dim, 8, **F64)
        self.decoder = nn.ConvTranspose2d(z_dim, 1, 8, **F64)
        self.log_scale = nn.Parameter(torch.zeros(z_dim, **F64))

    def model(self, x):
        pyro.module("linear_conv_vae", self)
        with pyro.plate("images", x.shape[-4]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(self.z_dim), 1.0).to_event(1))
            loc = self.decoder(z.reshape(-1, self.z_dim, 1, 1)).reshape(z.shape[:-1] + (1, 8, 8))
            pyro.sample("x", dist.Normal(loc, self.sigma).to_event(3), obs=x)

    def guide(self, x):
        pyro.module("linear_conv_vae", self)
        with pyro.plate("images", x.shape[-4]):
            loc = self.encoder(x.reshape(-1, 1, 8, 8)).reshape(x.shape[:-3] + (self.z_dim,))
            pyro.sample("z", dist.Normal(loc, self.log_scale.exp()).to_event(1))


@register("linear_conv_vae", "amortized", "local", "closed_form", "exact_family", "reparam", "image", "nn_owner")
def linear_conv_vae(init, num_data=12, seed=0):
    """The linear-Gaussian model on 1x8x8 images (D = 64), written with conv layers."""
    lg = LinearGaussian(x_dim=64, norms=(3.0, 2.0, 1.0), noise=0.5, seed=seed, offset=0.0)
    lg.b = torch.full((64,), 0.2, **F64)  # ConvTranspose2d has one bias per output channel
    lg.marginal = dist.MultivariateNormal(lg.b, lg.marginal.covariance_matrix)
    x = lg.sample(num_data, seed + 1).reshape(num_data, 1, 8, 8)
    vae = LinearConvVAE(3, lg.s)
    _set(vae.decoder.weight, lg.W.T)
    _set(vae.decoder.bias, lg.b[:1])
    if init != "random":
        shift, scale = _guide_values(init, torch.zeros(3, **F64), lg.post_scale, lg.post_scale)
        _set(vae.encoder.weight, lg.A)
        _set(vae.encoder.bias, -lg.A @ lg.b + shift)
        _set(vae.log_scale, scale.log())

    def exact_elbo():
        with torch.no_grad():
            flat = x.reshape(num_data, 64)
            return lg.elbo(flat, flat @ vae.encoder.weight.reshape(3, 64).T + vae.encoder.bias, vae.log_scale.exp())

    def posterior(x0):
        return _diag_posterior(lg.posterior_loc(x0.reshape(-1, 64)), lg.post_scale)

    log_px = lg.marginal.log_prob(x.reshape(num_data, 64))
    return Program(
        "linear_conv_vae", vae.model, vae.guide, (x,), tags=TAGS["linear_conv_vae"], data_plate="images",
        input_event_dim=3, exact_log_px=log_px, exact_log_evidence=log_px.sum().item(), exact_elbo=exact_elbo,
        posterior=posterior, owner=vae,
    )


# ----------------------------------------------------------------------------------------------------------
# c. two-layer hierarchical VAE
# ----------------------------------------------------------------------------------------------------------


class HierarchicalVAE(PyroModule):
    r"""
    :math:`z_2 \sim N(0, I)`, :math:`z_1 \mid z_2 \sim N(V z_2 + c, \tau^2 I)`,
    :math:`x \mid z_1 \sim N(W z_1 + b, s^2 I)`; guide :math:`q(z_2 \mid x)\, q(z_1 \mid z_2, x)` with linear maps
    (``PyroModule[nn.Linear]``).
    """

    def __init__(self, x_dim, z1_dim, z2_dim, tau, sigma):
        super().__init__()
        self.z1_dim, self.z2_dim, self.tau, self.sigma = z1_dim, z2_dim, tau, sigma
        self.top_down = PyroModule[nn.Linear](z2_dim, z1_dim, **F64)
        self.bottom_decoder = PyroModule[nn.Linear](z1_dim, x_dim, **F64)
        self.top_encoder = PyroModule[nn.Linear](x_dim, z2_dim, **F64)
        self.bottom_encoder_x = PyroModule[nn.Linear](x_dim, z1_dim, **F64)
        self.bottom_encoder_z = PyroModule[nn.Linear](z2_dim, z1_dim, bias=False, **F64)
        self.z2_log_scale = nn.Parameter(torch.zeros(z2_dim, **F64))
        self.z1_log_scale = nn.Parameter(torch.zeros(z1_dim, **F64))

    @pyro_method
    def model(self, x):
        with pyro.plate("data", x.shape[-2]):
            z2 = pyro.sample("z2", dist.Normal(x.new_zeros(self.z2_dim), 1.0).to_event(1))
            z1 = pyro.sample("z1", dist.Normal(self.top_down(z2), self.tau).to_event(1))
            pyro.sample("x", dist.Normal(self.bottom_decoder(z1), self.sigma).to_event(1), obs=x)

    @pyro_method
    def guide(self, x):
        with pyro.plate("data", x.shape[-2]):
            z2 = pyro.sample("z2", dist.Normal(self.top_encoder(x), self.z2_log_scale.exp()).to_event(1))
            loc = self.bottom_encoder_x(x) + self.bottom_encoder_z(z2)
            pyro.sample("z1", dist.Normal(loc, self.z1_log_scale.exp()).to_event(1))


@register(
    "hierarchical_vae", "amortized", "local", "closed_form", "exact_family", "reparam", "hierarchical", "nn_owner"
)
def hierarchical_vae(init, num_data=20, seed=0):
    r"""
    Closed forms: :math:`x \sim N(Wc + b, W(VV^\top + \tau^2 I)W^\top + s^2 I)`. With :math:`W = Q\,\mathrm{diag}(d)`
    (orthonormal :math:`Q`) and :math:`V` supported on distinct coordinates, :math:`p(z_2 \mid x)` and
    :math:`p(z_1 \mid z_2, x)` are diagonal Gaussians, linear in :math:`x` and :math:`z_2`.
    """
    x_dim, k1, k2, tau, s = 6, 3, 2, 0.6, 0.4
    gen = torch.Generator().manual_seed(seed)
    W = orthogonal_columns(x_dim, (2.0, 1.5, 1.0), gen)
    V = torch.zeros(k1, k2, **F64)
    V[0, 0], V[2, 1] = 1.5, 0.9
    c = 0.3 * torch.randn(k1, generator=gen, **F64)
    b = 0.3 * torch.randn(x_dim, generator=gen, **F64)
    eye = lambda n: torch.eye(n, **F64)  # noqa: E731
    marginal = dist.MultivariateNormal(W @ c + b, W @ (V @ V.T + tau**2 * eye(k1)) @ W.T + s**2 * eye(x_dim))
    x = _sample(marginal, num_data, seed + 1)
    # p(z2 | x): x = W V z2 + (W c + b) + e, e ~ N(0, R)
    R_inv = torch.linalg.inv(tau**2 * W @ W.T + s**2 * eye(x_dim))
    S2 = torch.linalg.inv(eye(k2) + V.T @ W.T @ R_inv @ W @ V)
    assert torch.allclose(S2, torch.diag(S2.diagonal()), atol=1e-12)
    A2 = S2 @ V.T @ W.T @ R_inv
    c2 = -A2 @ (W @ c + b)
    # p(z1 | z2, x)
    S1 = torch.linalg.inv(eye(k1) / tau**2 + W.T @ W / s**2)
    assert torch.allclose(S1, torch.diag(S1.diagonal()), atol=1e-12)
    B1, A1 = S1 @ V / tau**2, S1 @ W.T / s**2
    c1 = S1 @ (c / tau**2 - W.T @ b / s**2)
    sd2, sd1 = S2.diagonal().sqrt(), S1.diagonal().sqrt()

    vae = HierarchicalVAE(x_dim, k1, k2, tau, s)
    _set(vae.top_down.weight, V)
    _set(vae.top_down.bias, c)
    _set(vae.bottom_decoder.weight, W)
    _set(vae.bottom_decoder.bias, b)
    if init != "random":
        shift2, scale2 = _guide_values(init, c2, sd2, sd2)
        shift1, scale1 = _guide_values(init, c1, sd1, -sd1)
        _set(vae.top_encoder.weight, A2)
        _set(vae.top_encoder.bias, shift2)
        _set(vae.z2_log_scale, scale2.log())
        _set(vae.bottom_encoder_x.weight, A1)
        _set(vae.bottom_encoder_x.bias, shift1)
        _set(vae.bottom_encoder_z.weight, B1)
        _set(vae.z1_log_scale, scale1.log())

    def posterior(x0):
        """Joint posterior of (z2, z1) (model order) of one observation."""
        m2 = (x0.reshape(-1) @ A2.T) + c2
        m1 = B1 @ m2 + A1 @ x0.reshape(-1) + c1
        cov = torch.zeros(k1 + k2, k1 + k2, **F64)
        cov[:k2, :k2] = S2
        cov[:k2, k2:] = S2 @ B1.T
        cov[k2:, :k2] = B1 @ S2
        cov[k2:, k2:] = B1 @ S2 @ B1.T + S1
        return torch.cat([m2, m1]), cov

    log_px = marginal.log_prob(x)
    return Program(
        "hierarchical_vae", vae.model, vae.guide, (x,), tags=TAGS["hierarchical_vae"], exact_log_px=log_px,
        exact_log_evidence=log_px.sum().item(), posterior=posterior, owner=vae,
    )


# ----------------------------------------------------------------------------------------------------------
# d. non-amortized guides over per-data-point latents (the Pyro subsampling idiom)
# ----------------------------------------------------------------------------------------------------------


def _local_model(num_data, seed):
    lg = LinearGaussian(x_dim=5, norms=(1.5, 0.7), noise=0.5, seed=seed)
    x = lg.sample(num_data, seed + 1)

    def model(x, subsample_size=None):
        with pyro.plate("obs", x.shape[0], subsample_size=subsample_size) as idx:
            z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ lg.W.T + lg.b, lg.s).to_event(1), obs=x[idx])

    loc, scale = lg.posterior_loc(x), lg.post_scale.expand(num_data, 2)
    targets = {"exact": (loc, scale), "near": (loc + 0.5 * scale, 1.3 * scale)}  # the guide's (loc, scale) per init
    log_px = lg.marginal.log_prob(x)
    return lg, x, model, targets, log_px


def _local_program(name, model, guide, x, lg, log_px, exact_elbo, eval_options=None):
    return Program(
        name, model, guide, (x,), tags=TAGS[name], data_plate="obs", eval_options=eval_options or {},
        exact_log_px=log_px,
        exact_log_evidence=log_px.sum().item(), exact_elbo=exact_elbo,
        posterior=lambda x0: _diag_posterior(lg.posterior_loc(x0), lg.post_scale),
    )


@register("local_autonormal", "local", "closed_form", "exact_family", "reparam", "subsample")
def local_autonormal(init, num_data=250, seed=0):
    """``AutoNormal`` over per-point latents; ``create_plates`` lets the guide subsample (the documented way)."""
    lg, x, model, targets, log_px = _local_model(num_data, seed)
    guide = AutoNormal(
        model, create_plates=lambda x, subsample_size=None: pyro.plate("obs", x.shape[0], subsample_size=subsample_size)
    )
    guide(x)  # set up the prototype (full-size parameters)
    store = pyro.get_param_store()
    assert {"AutoNormal.locs.z", "AutoNormal.scales.z"} <= set(store.keys()), list(store.keys())
    if init != "random":
        loc, scale = targets[init]
        set_param("AutoNormal.locs.z", loc)
        set_param("AutoNormal.scales.z", scale)

    def exact_elbo():
        return lg.elbo(x, store["AutoNormal.locs.z"].detach(), store["AutoNormal.scales.z"].detach())

    return _local_program("local_autonormal", model, guide, x, lg, log_px, exact_elbo)


@register("local_autodiagonalnormal", "local", "closed_form", "exact_family", "reparam")
def local_autodiagonalnormal(init, num_data=250, seed=0):
    """``AutoDiagonalNormal`` (one flat latent vector outside the plate, ``Delta`` sites inside), no subsampling."""
    lg, x, model, targets, log_px = _local_model(num_data, seed)
    guide = AutoDiagonalNormal(model)
    guide(x)
    store = pyro.get_param_store()
    assert {"AutoDiagonalNormal.loc", "AutoDiagonalNormal.scale"} <= set(store.keys()), list(store.keys())
    if init != "random":
        loc, scale = targets[init]
        set_param("AutoDiagonalNormal.loc", loc.reshape(-1))
        set_param("AutoDiagonalNormal.scale", scale.reshape(-1))

    def exact_elbo():
        loc = store["AutoDiagonalNormal.loc"].detach().reshape(num_data, 2)
        return lg.elbo(x, loc, store["AutoDiagonalNormal.scale"].detach().reshape(num_data, 2))

    return _local_program("local_autodiagonalnormal", model, guide, x, lg, log_px, exact_elbo)


@register("local_params", "local", "closed_form", "exact_family", "reparam", "subsample")
def local_params(init, num_data=250, seed=0):
    """Hand-written guide: per-point ``pyro.param`` loc/scale indexed by the plate's indices."""
    lg, x, model, targets, log_px = _local_model(num_data, seed)
    init_loc, init_scale = targets.get(init, (torch.zeros(num_data, 2, **F64), torch.ones(num_data, 2, **F64)))

    def guide(x, subsample_size=None):
        loc = pyro.param("z_loc", init_loc.clone())
        scale = pyro.param("z_scale", init_scale.clone(), constraint=constraints.positive)
        with pyro.plate("obs", x.shape[0], subsample_size=subsample_size) as idx:
            pyro.sample("z", dist.Normal(loc[idx], scale[idx]).to_event(1))

    def exact_elbo():
        with torch.no_grad():
            return lg.elbo(x, pyro.param("z_loc", init_loc.clone()), pyro.param("z_scale", init_scale.clone()))

    # the data stay whole and the tools walk the plate's subsample indices (slicing x would misalign the params)
    return _local_program("local_params", model, guide, x, lg, log_px, exact_elbo, eval_options={"data_arg": None})


# ----------------------------------------------------------------------------------------------------------
# e. Bayesian linear regression with global weights
# ----------------------------------------------------------------------------------------------------------

REG_ALPHA, REG_SIGMA = 1.0, 0.5


class Regression:
    r"""
    :math:`w \sim N(0, \alpha^{-1} I)`, :math:`y_n \sim N(x_n^\top w, \sigma^2)`: evidence
    :math:`\log N(y; 0, \sigma^2 I + \alpha^{-1} XX^\top)`. The design's columns (and the intercept column of
    ones) are orthogonal, so the posterior :math:`N(\Sigma X^\top y / \sigma^2, \Sigma)`,
    :math:`\Sigma = (\alpha I + X^\top X/\sigma^2)^{-1}`, is diagonal.
    """

    def __init__(self, num_data, num_features, seed, intercept):
        gen = torch.Generator().manual_seed(seed)
        columns = [torch.ones(num_data, 1, **F64), torch.randn(num_data, num_features, generator=gen, **F64)]
        q, _ = torch.linalg.qr(torch.cat(columns, 1))
        self.X = q[:, 1:] * torch.linspace(2.0, 4.0, num_features, **F64)  # columns orthogonal and orthogonal to 1
        w = torch.randn(num_features, generator=gen, **F64)
        self.y = (self.X @ w + 0.3 + REG_SIGMA * torch.randn(num_data, generator=gen, **F64)).unsqueeze(-1)
        design = torch.cat([self.X, torch.ones(num_data, 1, **F64)], 1) if intercept else self.X
        self.design = design
        eye = torch.eye(num_data, **F64)
        self.log_evidence = dist.MultivariateNormal(
            torch.zeros(num_data, **F64), REG_SIGMA**2 * eye + design @ design.T / REG_ALPHA
        ).log_prob(self.y.squeeze(-1)).item()
        cov = torch.linalg.inv(REG_ALPHA * torch.eye(design.shape[1], **F64) + design.T @ design / REG_SIGMA**2)
        assert torch.allclose(cov, torch.diag(cov.diagonal()), atol=1e-12)
        self.post_loc = cov @ design.T @ self.y.squeeze(-1) / REG_SIGMA**2
        self.post_scale = cov.diagonal().sqrt()

    def targets(self, init):
        if init == "exact":
            return self.post_loc, self.post_scale
        return self.post_loc + 0.5 * self.post_scale, 1.3 * self.post_scale

    def elbo(self, loc, scale):
        """Closed-form ELBO of :math:`q(w) = N(loc, \\mathrm{diag}\\, scale^2)` (a float)."""
        v = scale**2
        resid = (self.y.squeeze(-1) - self.design @ loc) ** 2 + (self.design**2) @ v
        expected_loglik = (-0.5 * math.log(2 * math.pi * REG_SIGMA**2) - resid / (2 * REG_SIGMA**2)).sum()
        neg_kl = 0.5 * (1 + (REG_ALPHA * v).log() - REG_ALPHA * (loc**2 + v)).sum()
        return (expected_loglik + neg_kl).item()


def regression_model(reg):
    def model(y, X, subsample_size=None):
        w = pyro.sample("w", dist.Normal(X.new_zeros(X.shape[-1]), REG_ALPHA**-0.5).to_event(1))
        with pyro.plate("data", X.shape[0], subsample_size=subsample_size) as idx:
            pyro.sample("y", dist.Normal((X[idx] * w).sum(-1, keepdim=True), REG_SIGMA).to_event(1), obs=y[idx])

    return model


def _regression_program(name, model, guide, reg, exact_elbo):
    return Program(
        name, model, guide, (reg.y, reg.X), tags=TAGS[name], eval_options={"data_arg": (0, 1)},
        exact_log_evidence=reg.log_evidence,
        exact_elbo=exact_elbo,
    )


@register("regression", "global", "closed_form", "exact_family", "reparam", "subsample")
def regression(init, num_data=60, seed=0):
    """Plain functions, a hand-written Gaussian guide on ``w`` (no plate in the guide, as users write it)."""
    reg = Regression(num_data, 3, seed, intercept=False)
    init_loc, init_scale = reg.targets(init) if init != "random" else (torch.zeros(3, **F64), torch.ones(3, **F64))

    def guide(y, X, subsample_size=None):
        loc = pyro.param("w_loc", init_loc.clone())
        scale = pyro.param("w_scale", init_scale.clone(), constraint=constraints.positive)
        pyro.sample("w", dist.Normal(loc, scale).to_event(1))

    def exact_elbo():
        with torch.no_grad():
            return reg.elbo(pyro.param("w_loc", init_loc.clone()), pyro.param("w_scale", init_scale.clone()))

    return _regression_program("regression", regression_model(reg), guide, reg, exact_elbo)


@register("regression_autonormal", "global", "closed_form", "exact_family", "reparam", "subsample")
def regression_autonormal(init, num_data=60, seed=0):
    reg = Regression(num_data, 3, seed, intercept=False)
    model = regression_model(reg)
    guide = AutoNormal(model)
    guide(reg.y, reg.X)
    store = pyro.get_param_store()
    if init != "random":
        loc, scale = reg.targets(init)
        set_param("AutoNormal.locs.w", loc)
        set_param("AutoNormal.scales.w", scale)

    def exact_elbo():
        return reg.elbo(store["AutoNormal.locs.w"].detach(), store["AutoNormal.scales.w"].detach())

    return _regression_program("regression_autonormal", model, guide, reg, exact_elbo)


class BayesianRegression(PyroModule):
    """``PyroModule[nn.Linear]`` with ``PyroSample`` weight and bias, as in Pyro's regression tutorial."""

    def __init__(self, num_features):
        super().__init__()
        prior = dist.Normal(torch.tensor(0.0, **F64), REG_ALPHA**-0.5)
        self.linear = PyroModule[nn.Linear](num_features, 1)
        self.linear.weight = PyroSample(prior.expand([1, num_features]).to_event(2))
        self.linear.bias = PyroSample(prior.expand([1]).to_event(1))

    def forward(self, y, X, subsample_size=None):
        self.linear.weight, self.linear.bias  # draw the global weights once, outside the data plate
        with pyro.plate("data", X.shape[0], subsample_size=subsample_size) as idx:
            pyro.sample("y", dist.Normal(self.linear(X[idx]), REG_SIGMA).to_event(1), obs=y[idx])


@register("regression_pyromodule", "global", "closed_form", "exact_family", "reparam", "subsample", "pyrosample")
def regression_pyromodule(init, num_data=60, seed=0):
    """``BayesianRegression`` (with an intercept) and ``AutoNormal``."""
    reg = Regression(num_data, 3, seed, intercept=True)
    model = BayesianRegression(3)
    guide = AutoNormal(model)
    guide(reg.y, reg.X)
    store = pyro.get_param_store()
    names_ = ("AutoNormal.locs.linear.weight", "AutoNormal.scales.linear.weight")
    names_ += ("AutoNormal.locs.linear.bias", "AutoNormal.scales.linear.bias")
    assert set(names_) <= set(store.keys()), list(store.keys())
    if init != "random":
        loc, scale = reg.targets(init)
        for name, value in zip(names_, (loc[:3], scale[:3], loc[3:], scale[3:])):
            set_param(name, value)

    def exact_elbo():
        get = lambda n: store[n].detach().reshape(-1)  # noqa: E731
        return reg.elbo(torch.cat([get(names_[0]), get(names_[2])]), torch.cat([get(names_[1]), get(names_[3])]))

    return _regression_program("regression_pyromodule", model, guide, reg, exact_elbo)


# ----------------------------------------------------------------------------------------------------------
# f. a discrete local latent
# ----------------------------------------------------------------------------------------------------------


@register("mixture", "amortized", "local", "closed_form", "exact_family", "discrete")
def mixture(init, num_data=20, seed=0):
    r"""
    :math:`c_n \sim \mathrm{Bernoulli}(\pi)`, :math:`x_n \mid c_n \sim N(\mu_{c_n}, s^2 I)`; amortized
    :math:`q(c_n \mid x_n) = \mathrm{Bernoulli}(\mathrm{logits} = a^\top x_n + a_0)` (the exact posterior logit is
    linear in :math:`x`). :math:`\log p(x_n)` sums the two components.
    """
    x_dim, pi, s = 4, 0.4, 0.8
    gen = torch.Generator().manual_seed(seed)
    mu0 = torch.randn(x_dim, generator=gen, **F64)
    direction = torch.randn(x_dim, generator=gen, **F64)
    mu1 = mu0 + 2.0 * direction / direction.norm()
    comps = torch.bernoulli(torch.full((num_data,), pi, **F64), generator=gen)
    x = torch.where(comps.unsqueeze(-1) > 0, mu1, mu0) + s * torch.randn(num_data, x_dim, generator=gen, **F64)
    encoder = nn.Linear(x_dim, 1, **F64)
    if init != "random":
        _set(encoder.weight, (mu1 - mu0) / s**2)
        bias = math.log(pi / (1 - pi)) - (mu1.pow(2).sum() - mu0.pow(2).sum()) / (2 * s**2)
        _set(encoder.bias, bias + (0.0 if init == "exact" else 0.7))

    def model(x):
        with pyro.plate("points", x.shape[-2]):
            c = pyro.sample("c", dist.Bernoulli(x.new_tensor(pi)))
            pyro.sample("x", dist.Normal(mu0 + c.unsqueeze(-1) * (mu1 - mu0), s).to_event(1), obs=x)

    def guide(x):
        pyro.module("mixture_encoder", encoder)
        with pyro.plate("points", x.shape[-2]):
            pyro.sample("c", dist.Bernoulli(logits=encoder(x).squeeze(-1)))

    log_px = torch.logsumexp(
        torch.stack([
            math.log(1 - pi) + dist.Normal(mu0, s).to_event(1).log_prob(x),
            math.log(pi) + dist.Normal(mu1, s).to_event(1).log_prob(x),
        ]),
        0,
    )
    return Program(
        "mixture", model, guide, (x,), tags=TAGS["mixture"], data_plate="points", exact_log_px=log_px,
        exact_log_evidence=log_px.sum().item(),
    )


# ----------------------------------------------------------------------------------------------------------
# g. every amortized program behind a DenoisingGuide
# ----------------------------------------------------------------------------------------------------------


def denoising(prog, num_corruptions):
    """``prog`` with its guide wrapped in a ``DenoisingGuide`` (Gaussian corruption) and the model wrapped to match."""
    guide = DenoisingGuide(
        prog.guide,
        functools.partial(GaussianCorruption, sigma=CORRUPTION_SIGMA),
        num_corruptions=num_corruptions,
        input_event_dim=prog.input_event_dim,
        max_plate_nesting=1,
    )
    name = f"{prog.name}/denoising_M{num_corruptions}"
    return replace(
        prog, name=name, model=guide.wrap_model(prog.model), guide=guide, tags=TAGS[name], exact_elbo=None,
        guide_moments=None, base_model=prog.model,
    )


def _register_denoising(base, num_corruptions):
    tags = (TAGS[base] - {"exact_family", "subsample"}) | {"denoising"}
    register(f"{base}/denoising_M{num_corruptions}", *tags)(lambda init: denoising(make(base, init), num_corruptions))


for _base in names("amortized"):
    for _m in NUM_CORRUPTIONS:
        _register_denoising(_base, _m)


# ----------------------------------------------------------------------------------------------------------
# statistics for the assertions
# ----------------------------------------------------------------------------------------------------------


def mean_and_stderr(values):
    """Mean and standard error of repeated Monte Carlo values (a list of floats)."""
    v = torch.tensor(values, **F64)
    return v.mean().item(), (v.std() / math.sqrt(len(values))).item()


def num_stderrs(count, family_error=1e-3):
    """About 4 standard errors, widened (Bonferroni) so that ``count`` checks together fail by chance with
    probability at most ``family_error`` (4.0 for up to ~20 checks, 4.6 for 250)."""
    tail = torch.tensor(1 - family_error / (2 * count), **F64)
    return max(4.0, torch.distributions.Normal(0.0, 1.0).icdf(tail).item())


def within(estimate, exact, stderr, slack=1e-2):
    """Elementwise ``|estimate - exact| <= k * stderr + slack`` (tensors or floats, ``k = num_stderrs(numel)``)."""
    estimate, exact, stderr = torch.broadcast_tensors(*(torch.as_tensor(t, **F64) for t in (estimate, exact, stderr)))
    return (estimate - exact).abs() <= num_stderrs(estimate.numel()) * stderr + slack


def at_most(estimate, bound, stderr, slack=1e-2):
    """Elementwise ``estimate <= bound + k * stderr + slack``: a one-sided check of a stochastic bound."""
    estimate, bound, stderr = torch.broadcast_tensors(*(torch.as_tensor(t, **F64) for t in (estimate, bound, stderr)))
    return estimate <= bound + num_stderrs(estimate.numel()) * stderr + slack
