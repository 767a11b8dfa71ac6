"""DenoisingGuide: exact answers on a linear-Gaussian model (AIR), plate/scale wiring, every ELBO, errors."""

import functools
import math
import re

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.distributions import constraints
from pyro.infer import SVI, Trace_ELBO, TraceMeanField_ELBO
from pyro.optim import Adam
from pyro.poutine.util import prune_subsample_sites, site_is_subsample
from torch import nn
from torch.distributions.utils import broadcast_all

from pyro_noisevae.distributions import Corruption, GaussianCorruption, SaltAndPepper, make_corruption
from pyro_noisevae.guides import DenoisingGuide
from pyro_noisevae.infer import IWAE_ELBO
from pyro_noisevae.models import VAE
from pyro_noisevae.models.vae import data_plate

F64 = dict(dtype=torch.float64)
K_LAT, D, S, N = 2, 4, 0.7, 40


# ---------------------------------------------------------------------------------------------------
# linear-Gaussian model with a fixed decoder and a linear encoder q(z | x~) = N(A x~ + c, diag exp(2 ls))


class Problem:
    r"""
    Closed forms (sums over the N data points) for a linear encoder :math:`m = A\tilde x + c`, variances
    :math:`v`, and Gaussian corruption :math:`\tilde x = x + \sigma\varepsilon`. Since the ELBO depends on
    the mean as :math:`-\tfrac12 (m - \mu)^\top \Lambda (m - \mu) + \text{const}`,

    .. math::

        J_\sigma(A, c, v) = \sum_n \mathrm{ELBO}(A x_n + c, v; x_n) - \tfrac{N\sigma^2}{2}\operatorname{tr}(A^\top\Lambda A),

    a concave quadratic in :math:`(A, c)` maximized by the ridge regression
    :math:`A_\sigma = P C (C + \sigma^2 I)^{-1}`, :math:`c_\sigma = P(\bar x - b) - A_\sigma \bar x`
    (:math:`C` the data covariance), with :math:`v^* = 1 / \mathrm{diag}\,\Lambda` for every σ. At σ = 0
    this is the exact posterior mean map :math:`A_0 = P`, :math:`c_0 = -Pb`.
    """

    def __init__(self, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.W = torch.randn(D, K_LAT, generator=g, **F64)
        self.b = torch.randn(D, generator=g, **F64)
        z = torch.randn(N, K_LAT, generator=g, **F64)
        self.x = z @ self.W.T + self.b + S * torch.randn(N, D, generator=g, **F64)
        self.Lam = torch.eye(K_LAT, **F64) + self.W.T @ self.W / S**2
        self.Sig = torch.linalg.inv(self.Lam)
        self.P = self.Sig @ self.W.T / S**2
        xbar = self.x.mean(0)
        self.xbar, self.C = xbar, (self.x - xbar).T @ (self.x - xbar) / N
        self.ls_star = -0.5 * torch.diagonal(self.Lam).log()

    def model(self, x, num_data=None):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(K_LAT), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ self.W.T + self.b, S).to_event(1), obs=x)

    def optimum(self, sigma):
        A = self.P @ self.C @ torch.linalg.inv(self.C + sigma**2 * torch.eye(D, **F64))
        return A, self.P @ (self.xbar - self.b) - A @ self.xbar

    def objective(self, sigma, A, c):
        m = self.x @ A.T + c
        v = (2 * self.ls_star).exp()
        fit = ((self.x - m @ self.W.T - self.b) ** 2).sum(-1) + (v * (self.W**2).sum(0)).sum()
        elbo = (
            -0.5 * D * math.log(2 * math.pi * S**2)
            - fit / (2 * S**2)
            - 0.5 * K_LAT * math.log(2 * math.pi)
            - 0.5 * ((m**2).sum(-1) + v.sum())
            + 0.5 * torch.log(2 * math.pi * math.e * v).sum()
        )
        return elbo.sum().item() - 0.5 * N * sigma**2 * torch.trace(A.T @ self.Lam @ A).item()

    def log_px(self):
        return dist.MultivariateNormal(self.b, self.W @ self.W.T + S**2 * torch.eye(D, **F64)).log_prob(self.x).sum()


class LinearEncoder(nn.Module):
    def __init__(self, A, c, ls):
        super().__init__()
        self.A, self.c, self.ls = nn.Parameter(A.clone()), nn.Parameter(c.clone()), nn.Parameter(ls.clone())

    def forward(self, x):
        loc = x @ self.A.T + self.c
        return loc, self.ls.exp().expand(loc.shape)


@pytest.fixture
def prob():
    return Problem()


def _estimates(prob, sigma, A, c, reps=30, alpha=1.0, M=10, K=5):
    """Monte Carlo value and gradient of the denoising objective J (Trace_ELBO + DenoisingGuide)."""
    enc = LinearEncoder(A, c, prob.ls_star)
    guide = DenoisingGuide.from_encoder(enc, make_corruption("gaussian", sigma), num_corruptions=M, alpha=alpha)
    model = guide.wrap_model(prob.model)
    elbo = Trace_ELBO(num_particles=K, vectorize_particles=True, max_plate_nesting=guide.elbo_max_plate_nesting)
    values, grads = [], []
    for _ in range(reps):
        loss = elbo.differentiable_loss(model, guide, prob.x)
        g = torch.autograd.grad(loss, [enc.A, enc.c, enc.ls])
        values.append(-loss.item())
        grads.append(torch.cat([t.flatten() for t in g]))
    v, g = torch.tensor(values, **F64), torch.stack(grads)
    return (v.mean().item(), v.std().item() / math.sqrt(reps)), (g.mean(0), g.std(0) / math.sqrt(reps))


# ---------------------------------------------------------------------------------------------------
# AIR: the best denoising objective is below the best clean one, and approaches it as sigma -> 0


def test_denoising_objective_matches_its_closed_form(prob):
    """The library's DVAE estimate equals J_sigma (value and A-gradient) at the clean optimum."""
    sigma = 0.5
    A0, c0 = prob.optimum(0.0)
    (value, se), (grad, gse) = _estimates(prob, sigma, A0, c0)
    assert abs(value - prob.objective(sigma, A0, c0)) < 4 * se
    # d(-J_sigma)/dA at (P, -Pb) is N sigma^2 Lambda P; d/dc and d/dls vanish there
    expected = torch.cat([(N * sigma**2 * prob.Lam @ A0).flatten(), torch.zeros(2 * K_LAT, **F64)])
    assert ((grad - expected).abs() < 4 * gse + 1e-9).all(), (grad, expected)
    assert (expected[: K_LAT * D].abs() > 4 * gse[: K_LAT * D]).any()


@pytest.mark.parametrize("sigma", [1.0, 0.5])
def test_best_denoising_objective_is_below_best_clean_objective(prob, sigma):
    """
    (A_sigma, c_sigma, ls*) is a stationary point of the library's denoising objective (every gradient
    coordinate within 4 SE of 0), hence its global maximum (J_sigma is concave in the encoder), and the
    estimated maximum lies below the clean maximum J_0(P, -Pb) by more than 4 SE.
    """
    A, c = prob.optimum(sigma)
    (value, se), (grad, gse) = _estimates(prob, sigma, A, c)
    assert (grad.abs() < 4 * gse + 1e-9).all(), grad / gse
    best_clean = prob.objective(0.0, *prob.optimum(0.0))
    assert abs(value - prob.objective(sigma, A, c)) < 4 * se
    assert value + 4 * se < best_clean
    assert best_clean <= prob.log_px().item() + 1e-9


def test_denoising_gap_vanishes_as_corruption_goes_to_zero(prob):
    best_clean = prob.objective(0.0, *prob.optimum(0.0))
    gaps = [best_clean - prob.objective(s, *prob.optimum(s)) for s in (1.0, 0.3, 0.1, 0.03)]
    assert all(g > 0 for g in gaps) and all(a > b for a, b in zip(gaps, gaps[1:]))
    assert gaps[-1] < 1e-2 * gaps[0]  # O(sigma^2): (0.03 / 1)^2 ~ 1e-3
    # at small sigma the library's estimate at the denoising optimum matches J_sigma there, and lies within
    # 1% of the sigma = 1 gap (plus 4 SE) of the clean optimum
    A, c = prob.optimum(0.03)
    (value, se), _ = _estimates(prob, 0.03, A, c, reps=10)
    assert abs(value - prob.objective(0.03, A, c)) < 4 * se
    assert best_clean - value < 1e-2 * gaps[0] + 4 * se


def test_partial_denoising_is_the_convex_combination(prob):
    """alpha * J_sigma + (1 - alpha) * J_0 at a fixed encoder (AIR eq. 16)."""
    sigma, alpha = 1.0, 0.4
    A, c = prob.optimum(0.0)
    (value, se), _ = _estimates(prob, sigma, A, c, alpha=alpha)
    expected = alpha * prob.objective(sigma, A, c) + (1 - alpha) * prob.objective(0.0, A, c)
    assert abs(value - expected) < 4 * se
    assert abs(prob.objective(sigma, A, c) - expected) > 4 * se  # distinguishable from full denoising


def test_diwae_lies_between_dvae_and_log_evidence(prob):
    A, c = prob.optimum(0.0)
    enc = LinearEncoder(A + 0.2, c, prob.ls_star)
    guide = DenoisingGuide.from_encoder(enc, make_corruption("gaussian", 0.5), num_corruptions=4)
    model = guide.wrap_model(prob.model)
    stats = {}
    for name, elbo in (("dvae", Trace_ELBO(num_particles=8, vectorize_particles=True)), ("diwae", IWAE_ELBO(8))):
        v = torch.tensor([-elbo.loss(model, guide, prob.x) for _ in range(20)], **F64)
        stats[name] = v.mean().item(), v.std().item() / math.sqrt(20)
    (mv, sv), (mi, si) = stats["dvae"], stats["diwae"]
    assert mi - mv > 4 * math.hypot(sv, si)
    assert mi < prob.log_px().item() + 4 * si
    # with one particle DIWAE is DVAE exactly (same draws)
    for elbo in (Trace_ELBO(), IWAE_ELBO(1)):
        pyro.set_rng_seed(3)
        stats[type(elbo).__name__] = elbo.loss(model, guide, prob.x)
    assert stats["IWAE_ELBO"] == pytest.approx(stats["Trace_ELBO"], rel=1e-12)


# ---------------------------------------------------------------------------------------------------
# wiring: no corruption site, plate and scale, exact values for every ELBO


class ExactPosterior(nn.Module):
    """Encoder returning the exact posterior N(P(x - b), Lambda^-1) as a distribution."""

    def __init__(self, prob):
        super().__init__()
        self.prob = prob

    def forward(self, x):
        return dist.MultivariateNormal((x - self.prob.b) @ self.prob.P.T, self.prob.Sig)


@pytest.mark.parametrize("elbo_factory", [Trace_ELBO, TraceMeanField_ELBO, lambda: IWAE_ELBO(5), lambda: IWAE_ELBO(5, gradient_estimator="dreg")])
@pytest.mark.parametrize("M", [1, 3])
def test_uncorrupted_exact_encoder_gives_log_evidence_for_every_elbo(prob, elbo_factory, M):
    """With corruption=None the M copies are averaged (scale 1/M): the bound is log p(x) exactly."""
    guide = DenoisingGuide.from_encoder(ExactPosterior(prob), None, num_corruptions=M)
    loss = elbo_factory().loss(guide.wrap_model(prob.model), guide, prob.x)
    assert -loss == pytest.approx(prob.log_px().item(), rel=1e-10)


def test_corruption_is_not_a_sample_site_and_plate_scales(prob):
    guide = DenoisingGuide.from_encoder(
        LinearEncoder(*prob.optimum(0.0), prob.ls_star), make_corruption("gaussian", 0.3), num_corruptions=3
    )
    tr = pyro.poutine.trace(guide).get_trace(prob.x[:5], num_data=20)
    sites = prune_subsample_sites(tr)
    names = [n for n, s in sites.nodes.items() if s["type"] == "sample"]
    assert names == ["z"]
    z = sites.nodes["z"]
    assert z["fn"].batch_shape == (3, 5) and z["value"].shape == (3, 5, K_LAT)
    assert z["scale"] == pytest.approx(20 / 5 / 3)
    assert {(f.name, f.dim) for f in z["cond_indep_stack"]} == {("data", -1), ("corruptions", -2)}
    assert guide.plate_dim == -2 and guide.elbo_max_plate_nesting == 2
    # M = 1: no plate, the wrapped model's trace is the model's
    wrapped = DenoisingGuide(prob.model, None).wrap_model(prob.model)
    mt = prune_subsample_sites(pyro.poutine.trace(wrapped).get_trace(prob.x))
    assert mt.nodes["z"]["fn"].batch_shape == (N,) and mt.nodes["x"]["scale"] == 1.0


def test_corrupt_draws_and_partial_mixture():
    x = torch.rand(2000, 6, **F64)
    g = DenoisingGuide(lambda x: None, make_corruption("gaussian", 0.2), num_corruptions=2)
    noisy = g.corrupt(x)
    assert noisy.shape == (2, 2000, 6) and not noisy.requires_grad
    diff = noisy - x
    n = diff.numel()
    assert abs(diff.mean().item()) < 5 * 0.2 / math.sqrt(n)
    assert abs(diff.var().item() - 0.04) < 5 * 0.04 * math.sqrt(2 / n)
    alpha = 0.3
    g = DenoisingGuide(lambda x: None, make_corruption("salt-and-pepper", 0.5), alpha=alpha)
    noisy = g.corrupt((x > 0.5).double())
    clean_rows = (noisy == (x > 0.5).double()).all(-1).double()
    # a corrupted row equals the clean one with probability (1 - 0.25)^6 (each pixel flips w.p. 0.25)
    p_clean = (1 - alpha) + alpha * 0.75**6
    assert abs(clean_rows.mean().item() - p_clean) < 5 * math.sqrt(p_clean * (1 - p_clean) / 2000)
    assert torch.equal(DenoisingGuide(lambda x: None, make_corruption("gaussian", 0.2), alpha=0.0).corrupt(x), x)


class Masking(Corruption):
    """A user-defined corruption (the example of the Corruption docstring): zero each pixel w.p. rate."""

    arg_constraints = {"clean": constraints.real, "rate": constraints.unit_interval}
    support = constraints.real

    def __init__(self, clean, rate, *, validate_args=None):
        self.clean, self.rate = broadcast_all(clean, rate)
        super().__init__(self.clean.shape, validate_args=validate_args)

    def sample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        with torch.no_grad():
            keep = torch.rand(shape, dtype=self.clean.dtype, device=self.clean.device) >= self.rate
            return torch.where(keep, self.clean.expand(shape), torch.zeros_like(self.clean).expand(shape))


def test_user_defined_corruption_plugs_in():
    x = torch.ones(500, 8)
    g = DenoisingGuide(lambda x: None, functools.partial(Masking, rate=0.25), num_corruptions=4)
    noisy = g.corrupt(x)
    assert noisy.shape == (4, 500, 8) and set(noisy.unique().tolist()) == {0.0, 1.0}
    assert abs((noisy == 0).double().mean().item() - 0.25) < 5 * math.sqrt(0.25 * 0.75 / noisy.numel())


# ---------------------------------------------------------------------------------------------------
# the VAE: DVAE / DIWAE with every ELBO, SVI and ELBOModule


def _vae():
    return VAE(x_dim=12, z_dim=3, hidden_dims=(16,))


@pytest.mark.parametrize("M,alpha", [(1, 1.0), (3, 0.5)])
@pytest.mark.parametrize(
    "elbo_factory",
    [Trace_ELBO, TraceMeanField_ELBO, lambda: IWAE_ELBO(4), lambda: IWAE_ELBO(4, gradient_estimator="dreg")],
    ids=["trace", "meanfield", "iwae", "iwae-dreg"],
)
def test_vae_denoising_training_step_with_every_elbo(elbo_factory, M, alpha):
    vae = _vae()
    x = (torch.rand(10, 12) > 0.5).float()
    guide = DenoisingGuide.from_encoder(vae.encoder, make_corruption("salt-and-pepper", 0.1), num_corruptions=M, alpha=alpha)
    module = elbo_factory()(guide.wrap_model(vae.model), guide)
    names = {n for n, _ in module.named_parameters()}
    assert any("encoder" in n for n in names) and any("decoder" in n for n in names)
    loss = module(x, num_data=100)
    loss.backward()
    assert torch.isfinite(loss)
    for p in vae.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()


def test_wrapping_the_vae_guide_directly_with_svi():
    vae = _vae()
    x = (torch.rand(10, 12) > 0.5).float()
    guide = DenoisingGuide(vae.guide, functools.partial(SaltAndPepper, rate=0.2))
    svi = SVI(vae.model, guide, Adam({"lr": 1e-2}), IWAE_ELBO(num_particles=3))
    assert math.isfinite(svi.step(x))
    before = {k: v.detach().clone() for k, v in pyro.get_param_store().items()}
    svi.step(x)
    changed = [k for k, v in pyro.get_param_store().items() if not torch.equal(before[k], v.detach())]
    assert any(k.startswith("encoder") for k in changed) and any(k.startswith("decoder") for k in changed)


def test_plain_encoder_module_is_registered_with_the_param_store():
    guide = DenoisingGuide.from_encoder(_SplitEncoder(), make_corruption("gaussian", 0.1))
    tr = pyro.poutine.trace(guide).get_trace(torch.rand(5, 12))
    assert tr.nodes["z"]["value"].shape == (5, 3)
    assert {"z_encoder$$$lin.weight", "z_encoder$$$lin.bias"} <= set(pyro.get_param_store().keys())
    assert "encoder" in dict(guide.named_modules())  # and visible to ELBOModule / torch optimizers


class _SplitEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(12, 6)

    def forward(self, x):
        loc, raw = self.lin(x).split(3, -1)
        return loc, nn.functional.softplus(raw) + 1e-3


# ---------------------------------------------------------------------------------------------------
# errors


def _exact(message):
    return "^" + re.escape(message) + "$"


def test_invalid_arguments_raise():
    g = lambda x: None  # noqa: E731
    corr = make_corruption("gaussian", 0.1)
    with pytest.raises(ValueError, match=_exact("num_corruptions must be an integer >= 1, got 0")):
        DenoisingGuide(g, corr, num_corruptions=0)
    with pytest.raises(ValueError, match=_exact("alpha (partial-denoising weight) must be in [0, 1], got 1.5")):
        DenoisingGuide(g, corr, alpha=1.5)
    with pytest.raises(TypeError, match=_exact(
            "corruption must be a factory clean -> distribution, not a distribution instance; pass e.g. "
            "functools.partial(GaussianCorruption, sigma=0.1)")):
        DenoisingGuide(g, GaussianCorruption(torch.zeros(3), 0.1))
    with pytest.raises(TypeError, match=_exact("guide must be callable, got str")):
        DenoisingGuide("guide", corr)
    with pytest.raises(ValueError, match=_exact("max_plate_nesting must be an integer >= 0, got -1")):
        DenoisingGuide(g, corr, max_plate_nesting=-1)
    bad = DenoisingGuide(g, lambda x: GaussianCorruption(x[0], 0.1))  # wrong sample shape
    with pytest.raises(ValueError, match=_exact(
            "corruption sample has shape (3,), expected (4, 3) (sample_shape + x.shape); a corruption factory must "
            "return a distribution with batch_shape + event_shape == x.shape")):
        bad.corrupt(torch.zeros(4, 3))
    with pytest.raises(ValueError, match=_exact(
            "input of shape (2, 4, 3) has 2 batch dims (input_event_dim=1), but max_plate_nesting=1")):
        DenoisingGuide(g, corr).corrupt(torch.zeros(2, 4, 3))
    with pytest.raises(TypeError, match=_exact("DenoisingGuide: keyword input 'data' missing from the guide call")):
        DenoisingGuide(g, corr, input_arg="data")(torch.zeros(4, 3))
    with pytest.raises(TypeError, match=_exact(
            "DenoisingGuide: the guide was called with 1 positional args but input_arg=1; pass the data positionally "
            "or set input_arg to its keyword")):
        DenoisingGuide(g, corr, input_arg=1)(torch.zeros(4, 3))


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        (dict(num_corruptions=2.5), ValueError, "num_corruptions must be an integer >= 1, got 2.5"),
        (dict(num_corruptions=True), ValueError, "num_corruptions must be an integer >= 1, got True"),
        (dict(max_plate_nesting=1.0), ValueError, "max_plate_nesting must be an integer >= 0, got 1.0"),
        (dict(alpha=-0.1), ValueError, "alpha (partial-denoising weight) must be in [0, 1], got -0.1"),
        (dict(input_arg=1.5), TypeError, "input_arg must be a position (int) or a keyword (str), got 1.5"),
        (dict(input_arg=True), TypeError, "input_arg must be a position (int) or a keyword (str), got True"),
        (dict(input_event_dim=-1), ValueError, "input_event_dim must be an integer >= 0, got -1"),
        (dict(input_event_dim=1.5), ValueError, "input_event_dim must be an integer >= 0, got 1.5"),
    ],
    ids=lambda v: repr(v) if isinstance(v, dict) else None,
)
def test_option_types_and_ranges(kwargs, error, message):
    """Floats and bools are not counts or positions; every message names the option and the value given."""
    with pytest.raises(error, match=_exact(message)):
        DenoisingGuide(lambda x: None, make_corruption("gaussian", 0.1), **kwargs)


class _FloatSampler:
    """Not a distribution: its ``sample`` returns a Python float."""

    def sample(self, sample_shape=torch.Size()):
        return 0.5


def test_non_callable_arguments_and_non_tensor_samples_raise():
    g = lambda x: None  # noqa: E731
    corr = make_corruption("gaussian", 0.1)
    with pytest.raises(TypeError, match=_exact(
            "corruption must be a factory clean -> distribution (e.g. functools.partial(GaussianCorruption, "
            "sigma=0.1)) or None, got float")):
        DenoisingGuide(g, 0.1)
    with pytest.raises(TypeError, match=_exact("encoder must be callable, got str")):
        DenoisingGuide.from_encoder("encoder", corr)
    with pytest.raises(TypeError, match=_exact("model must be callable, got str")):
        DenoisingGuide(g, corr).wrap_model("model")
    with pytest.raises(TypeError, match=_exact("the input to corrupt must be a torch.Tensor, got list")):
        DenoisingGuide(g, corr).corrupt([1.0])
    with pytest.raises(ValueError, match=_exact(
            "corruption sample has shape (), expected (4, 3) (sample_shape + x.shape); a corruption factory must "
            "return a distribution with batch_shape + event_shape == x.shape")):
        DenoisingGuide(g, lambda x: _FloatSampler()).corrupt(torch.zeros(4, 3))


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_corrupted_input_keeps_the_dtype_of_x(alpha):
    """A corruption whose samples are float32 still gives the encoder float64 inputs for float64 data."""
    x = torch.rand(50, 3, **F64)
    g = DenoisingGuide(lambda x: None, lambda clean: GaussianCorruption(clean.float(), 0.1), alpha=alpha)
    noisy = g.corrupt(x)
    assert noisy.dtype == torch.float64 and noisy.shape == x.shape and not torch.equal(noisy, x)


def test_full_denoising_draws_exactly_the_corruption():
    """With alpha = 1 corrupt(x) is the corruption's own draw and uses no other randomness: under one seed,
    consecutive calls reproduce consecutive draws of the corruption (reproducible against a direct draw)."""
    x = torch.rand(6, 4)
    corr = make_corruption("gaussian", 0.2)
    g = DenoisingGuide(lambda x: None, corr, num_corruptions=2)
    torch.manual_seed(0)
    got = [g.corrupt(x) for _ in range(3)]
    torch.manual_seed(0)
    want = [corr(x).sample((2,)) for _ in range(3)]
    for a, b in zip(got, want):
        assert torch.equal(a, b)


# ---------------------------------------------------------------------------------------------------
# keywords, module registration, shapes and frames


def _frames(site):
    """(name, dim, size) of a site's plates; a subsampled plate's size is the subsample's."""
    return {(f.name, f.dim, f.size) for f in site["cond_indep_stack"]}


def _toy_model(x, num_data=None):
    with data_plate(x, num_data):
        z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], 2), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z.sum(-1, keepdim=True) + torch.zeros_like(x), 1.0).to_event(1), obs=x)


def _toy_encoder(x):
    """A plain function (no parameters): (..., B, 3) -> loc, scale of shape (..., B, 2)."""
    return x[..., :2], torch.ones_like(x[..., :2])


@pytest.mark.parametrize("M", [1, 3])
def test_keywords_and_frames_of_guide_and_wrapped_model(M):
    """num_data reaches the guide and the wrapped model (scale num_data / B, times 1/M); the data plate runs over
    the B rows and the corruption plate over the M copies, at the documented dims."""
    x = torch.randn(5, 3)
    guide = DenoisingGuide.from_encoder(_toy_encoder, make_corruption("gaussian", 0.1), num_corruptions=M)
    model = guide.wrap_model(_toy_model)
    corruption_frame = {("corruptions", -2, M)} if M > 1 else set()
    for num_data, size in [(None, 5), (5, 5), (20, 20)]:
        gt = poutine.trace(guide).get_trace(x, num_data=num_data)
        mt = poutine.trace(poutine.replay(model, trace=gt)).get_trace(x, num_data=num_data)
        for name, site in [("z", gt.nodes["z"]), ("z", mt.nodes["z"]), ("x", mt.nodes["x"])]:
            assert _frames(site) == {("data", -1, 5)} | corruption_frame, name
            assert site["scale"] == pytest.approx(size / 5 / M), name
        assert gt.nodes["z"]["value"].shape == ((M,) if M > 1 else ()) + (5, 2)
    with pytest.raises(ValueError, match=_exact("num_data=3 is smaller than the batch size 5")):
        guide(x, num_data=3)


def test_keyword_input_is_corrupted():
    seen = {}

    def g(prefix, *, data, flag):
        seen.update(prefix=prefix, data=data, flag=flag)

    x = torch.zeros(4, 3)
    prefix = torch.ones(2)
    for M, shape in [(1, (4, 3)), (2, (2, 4, 3))]:
        guide = DenoisingGuide(g, make_corruption("gaussian", 0.5), input_arg="data", num_corruptions=M)
        kwargs = {"data": x, "flag": "keep"}
        guide(prefix, **kwargs)
        assert seen["flag"] == "keep" and seen["prefix"] is prefix
        assert seen["data"].shape == shape and (seen["data"] != 0).all()
        assert kwargs["data"] is x and (x == 0).all()  # the caller's data untouched


def test_bound_method_guide_registers_its_module():
    vae = _vae()
    corr = make_corruption("salt-and-pepper", 0.1)
    guide = DenoisingGuide(vae.guide, corr)
    assert dict(guide.named_modules())["owner"] is vae
    module = Trace_ELBO()(vae.model, guide)  # ELBOModule: the parameters an optimizer would get
    assert {id(p) for p in vae.parameters()} <= {id(p) for p in module.parameters()}

    class Plain:
        def guide(self, x):
            return None

    for fn in (lambda x: None, Plain().guide):  # nothing to register, and no stray attribute
        plain = DenoisingGuide(fn, corr)
        assert not hasattr(plain, "owner") and list(plain.parameters()) == []


def test_plain_function_encoder_registers_nothing():
    guide = DenoisingGuide.from_encoder(_toy_encoder, make_corruption("gaussian", 0.1), num_corruptions=2)
    z = poutine.trace(guide).get_trace(torch.randn(5, 3)).nodes["z"]
    assert z["value"].shape == (2, 5, 2)
    assert len(pyro.get_param_store()) == 0 and not hasattr(guide, "encoder") and list(guide.parameters()) == []


def test_no_data_plate_nesting():
    """max_plate_nesting = 0 (documented >= 0): unbatched inputs, the corruption plate at dim -1."""
    corr = make_corruption("gaussian", 0.1)

    def guide_fn(x):
        return pyro.sample("z", dist.Normal(x.sum(-1), 1.0))

    guide = DenoisingGuide(guide_fn, corr, max_plate_nesting=0, num_corruptions=2)
    assert guide.plate_dim == -1 and guide.elbo_max_plate_nesting == 1
    assert guide.corrupt(torch.zeros(3)).shape == (2, 3)
    z = poutine.trace(guide).get_trace(torch.zeros(3)).nodes["z"]
    assert _frames(z) == {("corruptions", -1, 2)} and z["value"].shape == (2,) and z["scale"] == 0.5
    with pytest.raises(ValueError, match=_exact(
            "input of shape (4, 3) has 1 batch dims (input_event_dim=1), but max_plate_nesting=0")):
        guide.corrupt(torch.zeros(4, 3))


@pytest.mark.parametrize("M", [1, 2])
@pytest.mark.parametrize(
    "event_shape", [(), (3,), (2, 3)], ids=["scalar", "row", "image"]
)
def test_from_encoder_data_dim_follows_input_event_dim(M, event_shape):
    """Scalar data points (input_event_dim=0), rows and images: the data plate has the batch size B, whatever
    corruption dims lead x~."""
    x = torch.randn((5,) + event_shape)

    def encoder(x):
        flat = x.reshape(x.shape[: x.dim() - len(event_shape)] + (-1,)) if event_shape else x.unsqueeze(-1)
        loc = flat[..., :1].expand(flat.shape[:-1] + (2,))
        return loc, torch.ones_like(loc)

    guide = DenoisingGuide.from_encoder(encoder, make_corruption("gaussian", 0.1), num_corruptions=M,
                                        input_event_dim=len(event_shape))
    lead = (M,) if M > 1 else ()
    assert guide.corrupt(x).shape == lead + x.shape
    z = poutine.trace(guide).get_trace(x, num_data=20).nodes["z"]
    assert z["value"].shape == lead + (5, 2)
    assert _frames(z) == {("data", -1, 5)} | ({("corruptions", -2, M)} if M > 1 else set())
    assert z["scale"] == pytest.approx(20 / 5 / M)


@pytest.mark.parametrize("M", [1, 2])
def test_unbatched_row_is_one_data_point(M):
    """A single row (no batch dim) is corrupted with the M dim at plate_dim, padded with 1, and is one data point."""
    guide = DenoisingGuide.from_encoder(_toy_encoder, make_corruption("gaussian", 0.1), num_corruptions=M)
    x = torch.randn(3)
    assert guide.corrupt(x).shape == ((M, 1, 3) if M > 1 else (3,))
    assert DenoisingGuide(lambda x: None, None, num_corruptions=M).corrupt(x).shape == guide.corrupt(x).shape
    z = poutine.trace(guide).get_trace(x).nodes["z"]
    assert _frames(z) == {("data", -1, 1)} | ({("corruptions", -2, M)} if M > 1 else set())
    assert z["value"].shape == ((M,) if M > 1 else ()) + (1, 2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_corruption_and_subsample_stay_on_the_device_of_x():
    """The uniforms of partial denoising and the data plate's subsample indices live on x's device (a CPU-only run
    cannot tell: quality/README.md lists the device=None mutants as equivalent on CPU)."""
    x = torch.rand(5, 3, device="cuda")
    guide = DenoisingGuide.from_encoder(_toy_encoder, make_corruption("gaussian", 0.1), num_corruptions=2, alpha=0.5)
    assert guide.corrupt(x).device == x.device
    tr = poutine.trace(guide).get_trace(x, num_data=20)
    assert tr.nodes["data"]["value"].device == x.device and tr.nodes["z"]["value"].device == x.device


def test_unwrap_and_wraps():
    g = DenoisingGuide(lambda x: None, None, num_corruptions=3)
    wrapped = g.wrap_model(_toy_model)
    assert DenoisingGuide.unwrap_model(wrapped) is _toy_model and DenoisingGuide.unwrap_model(_toy_model) is _toy_model
    assert g.wraps(wrapped) and not g.wraps(_toy_model)
    for other in (dict(num_corruptions=2), dict(num_corruptions=3, plate_name="copies"),
                  dict(num_corruptions=3, max_plate_nesting=2)):
        assert not DenoisingGuide(lambda x: None, None, **other).wraps(wrapped), other
    assert DenoisingGuide(lambda x: None, make_corruption("gaussian", 0.5), num_corruptions=3).wraps(wrapped)


@pytest.mark.parametrize("plate_name", ["corruptions", "noise_copies"])
def test_corruption_plate_tags_every_sample_site(plate_name):
    """With M > 1 every sample site of the guide and of the wrapped model carries the replicate tag that evaluation
    uses to pool the M copies (existing infer entries kept); subsample sites are left alone; M = 1 adds no tag."""
    from pyro_noisevae.infer.importance import REPLICATE_KEY

    def model(x):
        with pyro.plate("data", x.shape[-2]):
            z = pyro.sample("z", dist.Normal(torch.zeros(x.shape[-2], 2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z.sum(-1, keepdim=True) + torch.zeros_like(x), 1.0).to_event(1), obs=x)

    def base_guide(x):
        with pyro.plate("data", x.shape[-2]):
            pyro.sample("aux", dist.Normal(torch.zeros(x.shape[-2], 2), 1.0).to_event(1),
                        infer={"is_auxiliary": True})
            pyro.sample("z", dist.Normal(x[..., :2], 1.0).to_event(1))

    x = torch.randn(5, 3)
    guide = DenoisingGuide(base_guide, functools.partial(GaussianCorruption, sigma=0.1), num_corruptions=3,
                           plate_name=plate_name)
    guide_trace = poutine.trace(guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(guide.wrap_model(model), trace=guide_trace)).get_trace(x)
    for trace in (guide_trace, model_trace):
        for name, site in trace.nodes.items():
            if site["type"] != "sample":
                continue
            if site_is_subsample(site):
                assert REPLICATE_KEY not in site["infer"], name
            else:
                assert site["infer"][REPLICATE_KEY] == plate_name, name
    assert guide_trace.nodes["aux"]["infer"]["is_auxiliary"] is True
    assert guide.wraps(guide.wrap_model(model)) and not guide.wraps(model)
    assert DenoisingGuide.unwrap_model(guide.wrap_model(model)) is model
    single = DenoisingGuide(base_guide, functools.partial(GaussianCorruption, sigma=0.1), num_corruptions=1)
    assert all(REPLICATE_KEY not in s["infer"] for s in poutine.trace(single).get_trace(x).nodes.values()
               if s["type"] == "sample")


def test_vae_guide_under_several_corruptions_names_from_encoder():
    from pyro_noisevae.infer import IWAE_ELBO
    from pyro_noisevae.models import VAE

    vae = VAE(x_dim=6, z_dim=2, hidden_dims=(8,), likelihood="bernoulli")
    guide = DenoisingGuide(vae.guide, make_corruption("gaussian", 0.1), num_corruptions=2)
    x = torch.bernoulli(torch.full((4, 6), 0.5))
    with pytest.raises(ValueError, match=r"got \(2, 4, 6\).*DenoisingGuide\.from_encoder\(vae\.encoder"):
        IWAE_ELBO(num_particles=3).loss(guide.wrap_model(vae.model), guide, x)
    fixed = DenoisingGuide.from_encoder(vae.encoder, make_corruption("gaussian", 0.1), num_corruptions=2)
    assert torch.isfinite(torch.tensor(IWAE_ELBO(num_particles=3).loss(fixed.wrap_model(vae.model), fixed, x)))
