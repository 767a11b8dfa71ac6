"""IWAE_ELBO against exact answers on a linear-Gaussian model, gradient estimators, plates and subsampling."""

import itertools
import warnings
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.distributions import constraints
from pyro.infer import SVI, RenyiELBO, Trace_ELBO
from pyro.optim import Adam

from pyro_noisevae.handlers import beta_scale
from pyro_noisevae.infer import IWAE_ELBO

F64 = dict(dtype=torch.float64)
K_LAT, D, S = 2, 4, 0.7  # latent dim, observed dim, decoder noise s


class LinearGaussian:
    r"""
    :math:`z \sim N(0, I_k)`, :math:`x \mid z \sim N(Wz + b, s^2 I_d)`, with the exact
    :math:`\log p(x) = \log N(x; b, WW^\top + s^2 I)` and posterior
    :math:`N(P(x - b), \Lambda^{-1})`, :math:`\Lambda = I + W^\top W / s^2`, :math:`P = \Lambda^{-1} W^\top / s^2`.
    """

    def __init__(self, n=40, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.W = torch.randn(D, K_LAT, generator=g, **F64)
        self.b = torch.randn(D, generator=g, **F64)
        z = torch.randn(n, K_LAT, generator=g, **F64)
        self.x = z @ self.W.T + self.b + S * torch.randn(n, D, generator=g, **F64)
        self.Lam = torch.eye(K_LAT, **F64) + self.W.T @ self.W / S**2
        self.Sig = torch.linalg.inv(self.Lam)
        self.P = self.Sig @ self.W.T / S**2

    def log_px(self, x):
        return dist.MultivariateNormal(self.b, self.W @ self.W.T + S**2 * torch.eye(D, **F64)).log_prob(x)

    def model(self, x, num_data=None):
        b = pyro.param("b", self.b.clone())  # a model parameter (theta), at its true value
        with _plate(x, num_data):
            z = pyro.sample("z", dist.Normal(x.new_zeros(K_LAT), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ self.W.T + b, S).to_event(1), obs=x)

    def exact_guide(self, x, num_data=None):
        """The exact posterior, with its location offset and Cholesky factor as parameters."""
        c = pyro.param("c_exact", torch.zeros(K_LAT, **F64))
        L = pyro.param("L_exact", torch.linalg.cholesky(self.Sig), constraint=constraints.lower_cholesky)
        with _plate(x, num_data):
            pyro.sample("z", dist.MultivariateNormal((x - self.b) @ self.P.T + c, scale_tril=L))

    def amortized_guide(self, x, num_data=None):
        """A deliberately poor amortized diagonal guide: loc = A (x - b) + c, scale = exp(ls)."""
        A = pyro.param("A", 0.6 * self.P)
        c = pyro.param("c", torch.full((K_LAT,), 0.3, **F64))
        ls = pyro.param("ls", 0.5 * torch.diagonal(self.Sig).log() + 0.5)
        with _plate(x, num_data):
            pyro.sample("z", dist.Normal((x - self.b) @ A.T + c, ls.exp()).to_event(1))

    def local_guide(self, x, num_data=None):
        """Non-amortized guide: one (loc, log scale) per data point, all initialized alike."""
        n = x.shape[0]
        loc = pyro.param("loc_local", torch.full((n, K_LAT), 0.3, **F64))
        ls = pyro.param("ls_local", torch.full((n, K_LAT), -0.2, **F64))
        with _plate(x, num_data):
            pyro.sample("z", dist.Normal(loc, ls.exp()).to_event(1))

    def elbo_of_amortized_guide(self, x):
        """Closed-form ELBO of :meth:`amortized_guide` at its initial parameters, per data point."""
        m = (x - self.b) @ (0.6 * self.P).T + 0.3
        v = torch.diagonal(self.Sig) * math.e
        fit = ((x - m @ self.W.T - self.b) ** 2).sum(-1) + (v * (self.W**2).sum(0)).sum()
        return (
            -0.5 * D * math.log(2 * math.pi * S**2)
            - fit / (2 * S**2)
            - 0.5 * K_LAT * math.log(2 * math.pi)
            - 0.5 * ((m**2).sum(-1) + v.sum())
            + 0.5 * torch.log(2 * math.pi * math.e * v).sum()
        )


def _plate(x, num_data):
    if num_data is None:
        return pyro.plate("data", x.shape[0])
    return pyro.plate("data", num_data, subsample=torch.arange(x.shape[0]))


@pytest.fixture
def lg():
    return LinearGaussian()


def _grads(loss, names):
    params = [pyro.param(n).unconstrained() for n in names]
    return dict(zip(names, torch.autograd.grad(loss, params)))


def _mean_se(values):
    v = torch.as_tensor(values, **F64)
    return v.mean(0), v.std(0) / math.sqrt(v.shape[0])


# ------------------------------------------------------------------------------------ exact values


@pytest.mark.parametrize("vectorize", [True, False])
@pytest.mark.parametrize("K", [1, 3])
def test_exact_posterior_gives_log_evidence_for_any_K(lg, K, vectorize):
    """With q = p(z|x) every weight equals p(x): the bound is log p(x) exactly, also when subsampled."""
    elbo = IWAE_ELBO(num_particles=K, vectorize_particles=vectorize)
    x = lg.x
    assert -elbo.loss(lg.model, lg.exact_guide, x) == pytest.approx(lg.log_px(x).sum().item(), rel=1e-10)
    batch = x[:10]
    expected = (x.shape[0] / 10) * lg.log_px(batch).sum().item()
    assert -elbo.loss(lg.model, lg.exact_guide, batch, num_data=x.shape[0]) == pytest.approx(expected, rel=1e-10)


def test_trace_elbo_le_iwae_le_log_evidence_and_increasing_in_K(lg):
    """E[ELBO] <= E[IWAE_8] <= E[IWAE_64] <= log p(x), each gap resolved by more than 4 Monte Carlo SEs."""
    x, R = lg.x, 30
    log_px = lg.log_px(x).sum().item()
    exact_elbo = lg.elbo_of_amortized_guide(x).sum().item()
    trace = _mean_se([-Trace_ELBO().loss(lg.model, lg.amortized_guide, x) for _ in range(R)])
    # the Monte Carlo Trace_ELBO agrees with the closed form
    assert abs(trace[0] - exact_elbo) < 4 * trace[1]
    bounds = {}
    for K in (8, 64):
        elbo = IWAE_ELBO(num_particles=K, max_plate_nesting=1)
        bounds[K] = _mean_se([-elbo.loss(lg.model, lg.amortized_guide, x) for _ in range(R)])
    chain = [trace, bounds[8], bounds[64]]
    for lo, hi in zip(chain[:-1], chain[1:]):
        assert hi[0] - lo[0] > 4 * math.hypot(lo[1], hi[1])
    assert bounds[64][0] < log_px + 4 * bounds[64][1]
    # the remaining gap at K = 64 is small next to the ELBO's (IWAE_K -> log p(x))
    assert log_px - bounds[64][0] < 0.1 * (log_px - exact_elbo)


def test_K1_equals_trace_elbo_values_and_gradients(lg):
    names = ["A", "c", "ls", "b"]
    pyro.set_rng_seed(3)
    loss_t = Trace_ELBO().differentiable_loss(lg.model, lg.amortized_guide, lg.x, num_data=100)
    grads_t = _grads(loss_t, names)
    pyro.set_rng_seed(3)
    loss_i = IWAE_ELBO(num_particles=1).differentiable_loss(lg.model, lg.amortized_guide, lg.x, num_data=100)
    grads_i = _grads(loss_i, names)
    assert loss_i.item() == pytest.approx(loss_t.item(), rel=1e-12)
    for n in names:
        torch.testing.assert_close(grads_i[n], grads_t[n], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("estimator", ["standard", "dreg"])
@pytest.mark.parametrize("vectorize", [True, False])
def test_loss_differentiable_loss_and_loss_and_grads_agree(lg, estimator, vectorize):
    names = ["A", "c", "ls", "b"]
    elbo = IWAE_ELBO(num_particles=5, gradient_estimator=estimator, vectorize_particles=vectorize)
    args = (lg.model, lg.amortized_guide, lg.x[:7])
    pyro.set_rng_seed(1)
    loss = elbo.loss(*args, num_data=30)
    pyro.set_rng_seed(1)
    dloss = elbo.differentiable_loss(*args, num_data=30)
    grads = _grads(dloss, names)
    pyro.set_rng_seed(1)
    for n in names:
        pyro.param(n).unconstrained().grad = None
    lg_loss = elbo.loss_and_grads(*args, num_data=30)
    assert loss == pytest.approx(dloss.item(), rel=1e-12) and lg_loss == pytest.approx(loss, rel=1e-12)
    for n in names:
        torch.testing.assert_close(pyro.param(n).unconstrained().grad, grads[n], rtol=1e-10, atol=1e-12)


def test_agrees_with_renyi_alpha0_without_subsampling(lg):
    names = ["A", "c", "ls", "b"]
    renyi = RenyiELBO(alpha=0, num_particles=6, vectorize_particles=True, max_plate_nesting=1)
    iwae = IWAE_ELBO(num_particles=6, max_plate_nesting=1)
    out = {}
    for name, elbo in (("renyi", renyi), ("iwae", iwae)):
        pyro.set_rng_seed(5)
        for n in names:
            if n in pyro.get_param_store():
                pyro.param(n).unconstrained().grad = None
        loss = elbo.loss_and_grads(lg.model, lg.amortized_guide, lg.x)
        out[name] = loss, {n: pyro.param(n).unconstrained().grad.clone() for n in names}
    assert out["iwae"][0] == pytest.approx(out["renyi"][0], rel=1e-12)
    for n in names:
        torch.testing.assert_close(out["iwae"][1][n], out["renyi"][1][n], rtol=1e-9, atol=1e-10)


# ------------------------------------------------------------------------------------ subsampling


def test_subsample_scale_is_applied_after_the_logsumexp(lg):
    """Same particles: the N/B-scaled mini-batch loss is exactly N/B times the unscaled one."""
    elbo = IWAE_ELBO(num_particles=16, max_plate_nesting=1)
    batch, N = lg.x[:8], 40
    pyro.set_rng_seed(2)
    plain = elbo.loss(lg.model, lg.amortized_guide, batch)
    pyro.set_rng_seed(2)
    scaled = elbo.loss(lg.model, lg.amortized_guide, batch, num_data=N)
    assert scaled == pytest.approx(N / 8 * plain, rel=1e-12)


def test_subsampled_minibatches_estimate_the_full_data_bound(lg):
    """Random mini-batches (B = 8 of N = 40) with scale N/B average to the full-data IWAE_8 bound."""
    x, N, B, R = lg.x, 40, 8, 60
    elbo = IWAE_ELBO(num_particles=8, max_plate_nesting=1)
    g = torch.Generator().manual_seed(11)
    sub = [elbo.loss(lg.model, lg.amortized_guide, x[torch.randperm(N, generator=g)[:B]], num_data=N) for _ in range(R)]
    full = [elbo.loss(lg.model, lg.amortized_guide, x) for _ in range(R)]
    (ms, ss), (mf, sf) = _mean_se(sub), _mean_se(full)
    assert abs(ms - mf) < 4 * math.hypot(ss, sf)


def test_beta_scaled_latent_keeps_its_relative_scale_and_K1_matches_trace(lg):
    """Scales shared with the observed site act outside the logsumexp; a latent-only beta stays inside."""
    model, guide = beta_scale(lg.model, beta=2.0), beta_scale(lg.amortized_guide, beta=2.0)
    pyro.set_rng_seed(4)
    t = Trace_ELBO().loss(model, guide, lg.x, num_data=80)
    pyro.set_rng_seed(4)
    i = IWAE_ELBO(num_particles=1).loss(model, guide, lg.x, num_data=80)
    assert i == pytest.approx(t, rel=1e-12)
    # K = 4 against a hand-made log-sum-exp of log p(x|z) + beta (log p(z) - log q(z)) per data point
    elbo = IWAE_ELBO(num_particles=4, max_plate_nesting=1)
    pyro.set_rng_seed(6)
    value = elbo.loss(model, guide, lg.x, num_data=80)
    pyro.set_rng_seed(6)  # replay the same particles: the guide runs first, in the particle plate at dim -2
    with pyro.plate("num_particles_vectorized", 4, dim=-2):
        z = poutine.trace(guide).get_trace(lg.x, num_data=80).nodes["z"]["value"]
    loc = (lg.x - lg.b) @ pyro.param("A").T + pyro.param("c")
    log_q = dist.Normal(loc, pyro.param("ls").exp()).log_prob(z).sum(-1)
    log_pz = dist.Normal(0.0, 1.0).log_prob(z).sum(-1)
    log_pxz = dist.Normal(z @ lg.W.T + lg.b, S).log_prob(lg.x).sum(-1)
    log_w = log_pxz + 2.0 * (log_pz - log_q)  # (K, N)
    expected = -(80 / 40) * (log_w.logsumexp(0) - math.log(4)).sum().item()
    assert value == pytest.approx(expected, rel=1e-10)


# ------------------------------------------------------------------------------------ gradients


def test_dreg_and_standard_estimate_the_same_gradient_and_dreg_has_lower_variance(lg):
    """
    N identical data points with their own guide parameters give N i.i.d. gradient draws per call.
    Both estimators' means agree within 4 standard errors for every coordinate, and DReG's total
    variance is lower by more than 4 standard errors of the difference (Tucker et al. 2019).
    """
    x = lg.x[:1].expand(3000, D).contiguous()
    names = ["loc_local", "ls_local"]
    draws = {}
    for est in ("standard", "dreg"):
        pyro.set_rng_seed(0)
        loss = IWAE_ELBO(num_particles=8, gradient_estimator=est, max_plate_nesting=1).differentiable_loss(
            lg.model, lg.local_guide, x
        )
        g = _grads(loss, names)
        draws[est] = torch.cat([g[n] for n in names], -1)  # (N, 2 * K_LAT) i.i.d. rows
    (m_s, se_s), (m_d, se_d) = _mean_se(draws["standard"]), _mean_se(draws["dreg"])
    assert ((m_s - m_d).abs() < 4 * (se_s**2 + se_d**2).sqrt()).all(), (m_s, m_d)
    assert (m_s.abs() > 4 * se_s).any()  # a non-trivial gradient is being compared
    sq = {k: (v - v.mean(0)).pow(2).sum(-1) for k, v in draws.items()}  # per-draw squared deviations
    (v_s, e_s), (v_d, e_d) = _mean_se(sq["standard"]), _mean_se(sq["dreg"])
    assert v_s - v_d > 4 * math.hypot(e_s, e_d)


def test_model_gradients_are_identical_for_both_estimators(lg):
    out = {}
    for est in ("standard", "dreg"):
        pyro.set_rng_seed(9)
        loss = IWAE_ELBO(num_particles=5, gradient_estimator=est).differentiable_loss(lg.model, lg.amortized_guide, lg.x)
        out[est] = _grads(loss, ["b"])["b"]
    torch.testing.assert_close(out["dreg"], out["standard"], rtol=1e-12, atol=1e-12)


def test_dreg_guide_gradient_vanishes_at_the_exact_posterior(lg):
    """log w is constant in z at q = p(z|x): DReG's path gradient is exactly zero, the standard one is not."""
    names = ["c_exact", "L_exact"]
    out = {}
    for est in ("standard", "dreg"):
        pyro.set_rng_seed(0)
        loss = IWAE_ELBO(num_particles=4, gradient_estimator=est).differentiable_loss(lg.model, lg.exact_guide, lg.x)
        out[est] = _grads(loss, names)
    for n in names:
        assert out["dreg"][n].abs().max() < 1e-9
    assert max(out["standard"][n].abs().max() for n in names) > 1e-2


def test_score_function_gradient_matches_exact_enumeration():
    r"""
    Discrete latent c ~ Bernoulli(0.3), x | c ~ N(2c, 1); guide c ~ Bernoulli(sigmoid(theta_n)) with
    one theta per data point. For K = 2 the IWAE bound is a finite sum over (c_1, c_2), so its gradient
    is exact by autograd; the standard (score-function) estimator's mean over i.i.d. draws matches it.
    """
    N, K, theta0, x0 = 4000, 2, -1.5, 3.0
    x = torch.full((N,), x0, **F64)

    def model(x):
        with pyro.plate("data", x.shape[0]):
            c = pyro.sample("c", dist.Bernoulli(x.new_tensor(0.3)))
            pyro.sample("x", dist.Normal(2.0 * c, 1.0), obs=x)

    def guide(x):
        theta = pyro.param("theta", torch.full((x.shape[0],), theta0, **F64))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("c", dist.Bernoulli(logits=theta))

    loss = IWAE_ELBO(num_particles=K).differentiable_loss(model, guide, x)
    (draws,) = torch.autograd.grad(loss, [pyro.param("theta").unconstrained()])
    theta = torch.tensor(theta0, requires_grad=True, **F64)
    q1 = torch.sigmoid(theta)
    bound = 0.0
    for cs in itertools.product([0.0, 1.0], repeat=K):
        prob = math.prod(q1 if c else 1 - q1 for c in cs)
        log_w = torch.stack(
            [
                dist.Bernoulli(torch.tensor(0.3, **F64)).log_prob(torch.tensor(c, **F64))
                + dist.Normal(2.0 * c, 1.0).log_prob(torch.tensor(x0, **F64))
                - dist.Bernoulli(logits=theta).log_prob(torch.tensor(c, **F64))
                for c in cs
            ]
        )
        bound = bound + prob * (log_w.logsumexp(0) - math.log(K))
    (exact,) = torch.autograd.grad(-bound, [theta])
    mean, se = _mean_se(draws)
    assert abs(mean - exact) < 4 * se
    assert abs(exact) > 4 * se  # the test can tell a wrong gradient from the right one


def test_svi_and_elbo_module_train_the_amortized_guide(lg):
    """A few SVI steps with IWAE_8 (DReG) raise the bound; ELBOModule's forward is differentiable_loss."""
    elbo = IWAE_ELBO(num_particles=8, gradient_estimator="dreg", max_plate_nesting=1)
    svi = SVI(lg.model, lg.amortized_guide, Adam({"lr": 0.1}), elbo)
    pyro.set_rng_seed(0)
    before = _mean_se([elbo.loss(lg.model, lg.amortized_guide, lg.x) for _ in range(10)])
    for _ in range(30):
        svi.step(lg.x)
    after = _mean_se([elbo.loss(lg.model, lg.amortized_guide, lg.x) for _ in range(10)])
    assert before[0] - after[0] > 4 * math.hypot(before[1], after[1])
    module = elbo(lg.model, lg.amortized_guide)
    pyro.set_rng_seed(7)
    a = module(lg.x)
    pyro.set_rng_seed(7)
    assert a.requires_grad and a.item() == pytest.approx(elbo.loss(lg.model, lg.amortized_guide, lg.x), rel=1e-12)


# ------------------------------------------------------------------------------------ errors


def test_constructor_validation():
    with pytest.raises(ValueError, match="num_particles"):
        IWAE_ELBO(num_particles=0)
    with pytest.raises(ValueError, match="num_particles"):
        IWAE_ELBO(num_particles=2.5)
    with pytest.raises(ValueError, match="gradient_estimator"):
        IWAE_ELBO(gradient_estimator="vimco")
    with pytest.raises(ValueError, match="max_plate_nesting"):
        IWAE_ELBO(max_plate_nesting=-1)


def _bernoulli_pair():
    def model(x):
        with pyro.plate("data", x.shape[0]):
            c = pyro.sample("c", dist.Bernoulli(x.new_tensor(0.3)))
            pyro.sample("x", dist.Normal(c, 1.0), obs=x)

    def guide(x):
        p = pyro.param("p", torch.tensor(0.5), constraint=constraints.unit_interval)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("c", dist.Bernoulli(p))

    return model, guide


def test_dreg_rejects_non_reparameterized_guides():
    model, guide = _bernoulli_pair()
    with pytest.raises(ValueError, match="reparameterized guide.*'c'"):
        IWAE_ELBO(num_particles=3, gradient_estimator="dreg").loss(model, guide, torch.zeros(4))
    # the standard estimator handles it with a score-function term
    loss = IWAE_ELBO(num_particles=3).differentiable_loss(model, guide, torch.zeros(4))
    assert torch.isfinite(loss) and loss.requires_grad


def test_enumerated_guide_sites_are_rejected():
    model, _ = _bernoulli_pair()

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("c", dist.Bernoulli(0.5), infer={"enumerate": "parallel"})

    with pytest.raises(NotImplementedError, match="enumerat"):
        IWAE_ELBO(num_particles=2, max_plate_nesting=1).loss(model, guide, torch.zeros(4))


@pytest.mark.disable_validation  # with validation on, Pyro's own model/guide check fires first
def test_model_latent_missing_from_guide_is_rejected(lg):
    def guide(x, num_data=None):
        pass

    with pytest.raises(ValueError, match=r"model latent sites \['z'\] are not sampled by the guide"):
        IWAE_ELBO(num_particles=2, max_plate_nesting=1).loss(lg.model, guide, lg.x)


def _chain_model(x):
    a = pyro.sample("a", dist.Normal(x.new_zeros(()), 1.0))
    b = pyro.sample("b", dist.Normal(a, 1.0))
    pyro.sample("x", dist.Normal(b, 1.0), obs=x)


def test_dreg_rejects_hierarchical_guides():
    model = _chain_model

    def guide(x):
        m = pyro.param("m", torch.tensor(0.0))
        a = pyro.sample("a", dist.Normal(m, 1.0))
        pyro.sample("b", dist.Normal(a, 1.0))

    with pytest.raises(NotImplementedError, match="hierarchical"):
        IWAE_ELBO(num_particles=2, gradient_estimator="dreg", max_plate_nesting=0).differentiable_loss(
            model, guide, torch.tensor(0.5)
        )


def _reference_iwae_gradient(lg, x0, loc, log_scale, K, groups=400_000, batches=100, seed=123):
    r"""
    High-precision Monte Carlo reference of :math:`\nabla_{(\mu, \rho)} \mathcal L_K(x_0)` for the local guide
    :math:`q = N(\mu, \mathrm{diag}\, e^{2\rho})`, written independently of the library in plain torch: the
    pathwise gradient of :math:`\log \frac1K \sum_k w(\mu + e^\rho \epsilon_k)` averaged over ``groups``
    independent groups (its expectation is :math:`\nabla \mathcal L_K`, which both estimators are unbiased
    for). Returns the mean and its standard error (from ``batches`` batch means).
    """
    g = torch.Generator().manual_seed(seed)
    means = []
    for _ in range(batches):
        mu = loc.clone().requires_grad_()
        rho = log_scale.clone().requires_grad_()
        z = mu + rho.exp() * torch.randn(groups // batches, K, K_LAT, generator=g, **F64)
        log_w = (dist.Normal(torch.zeros(K_LAT, **F64), 1.0).log_prob(z).sum(-1)
                 + dist.Normal(z @ lg.W.T + lg.b, S).log_prob(x0).sum(-1)
                 - dist.Normal(mu, rho.exp()).log_prob(z).sum(-1))
        bound = torch.logsumexp(log_w, -1) - math.log(K)
        means.append(torch.cat(torch.autograd.grad(bound.mean(), (mu, rho))))
    return _mean_se(torch.stack(means))


def test_dreg_gradient_matches_a_high_precision_reference(lg):
    r"""
    The DReG guide gradient of ``IWAE_ELBO`` is unbiased for :math:`\nabla \mathcal L_K`: its mean over 4,000 i.i.d.
    draws lies within 4 standard errors of an independent high-precision Monte Carlo reference (400,000 groups),
    for every coordinate, and the gradient is far from zero. Dropping one of DReG's two weight factors (the gradient
    hook on :math:`z`, i.e. :math:`\tilde w_k` instead of :math:`\tilde w_k^2`) biases it by many standard errors.
    """
    K, n = 5, 4000
    x0 = lg.x[3]
    x = x0.expand(n, D).contiguous()
    loc0, ls0 = torch.full((K_LAT,), 0.3, **F64), torch.full((K_LAT,), -0.2, **F64)
    reference, ref_se = _reference_iwae_gradient(lg, x0, loc0, ls0, K)
    pyro.set_rng_seed(1)
    loss = IWAE_ELBO(num_particles=K, gradient_estimator="dreg", max_plate_nesting=1).differentiable_loss(
        lg.model, lg.local_guide, x)
    g = _grads(loss, ["loc_local", "ls_local"])
    draws = -torch.cat([g["loc_local"], g["ls_local"]], -1)  # (n, 2 K_LAT): gradient of the bound, per draw
    mean, se = _mean_se(draws)
    assert ((mean - reference).abs() < 4 * (se**2 + ref_se**2).sqrt()).all(), (mean, reference, se, ref_se)
    assert (reference.abs() > 10 * se).any()


# ------------------------------------------------------------------------------------ scales, plates, globals, fallback


def _replayed_draws(guide, x, K, **kwargs):
    """The guide draws of a vectorized IWAE_ELBO call made right after the same seed (particle plate at dim -2)."""
    with pyro.plate("num_particles_vectorized", K, dim=-2):
        return poutine.trace(guide).get_trace(x, **kwargs).nodes["z"]["value"]


def _amortized_log_terms(lg, z, x):
    """log p(x|z), log p(z), log q(z|x) of the amortized guide, per particle and point."""
    loc = (x - lg.b) @ pyro.param("A").T + pyro.param("c")
    return (dist.Normal(z @ lg.W.T + lg.b, S).log_prob(x).sum(-1), dist.Normal(0.0, 1.0).log_prob(z).sum(-1),
            dist.Normal(loc, pyro.param("ls").exp()).log_prob(z).sum(-1))


def test_a_scale_shared_by_all_sites_acts_after_the_logsumexp(lg):
    """poutine.scale(0.5) around model and guide: with the same particles the loss is exactly half the unscaled one."""
    elbo = IWAE_ELBO(num_particles=4, max_plate_nesting=1)
    pyro.set_rng_seed(2)
    plain = elbo.loss(lg.model, lg.amortized_guide, lg.x)
    pyro.set_rng_seed(2)
    half = elbo.loss(poutine.scale(lg.model, scale=0.5), poutine.scale(lg.amortized_guide, scale=0.5), lg.x)
    assert half == pytest.approx(0.5 * plain, rel=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_per_datapoint_tensor_scale_weights_each_bound(lg, dtype):
    """Model and guide under poutine.scale(w), w of shape (N,): loss = -sum_n w_n L_K(x_n), with the same draws."""
    K, x = 4, lg.x
    w = torch.linspace(0.2, 1.7, x.shape[0], dtype=dtype)
    model, guide = poutine.scale(lg.model, scale=w), poutine.scale(lg.amortized_guide, scale=w)
    pyro.set_rng_seed(6)
    value = IWAE_ELBO(num_particles=K).loss(model, guide, x)
    pyro.set_rng_seed(6)
    log_px_z, log_pz, log_qz = _amortized_log_terms(lg, _replayed_draws(guide, x, K), x)
    bound = (log_px_z + log_pz - log_qz).logsumexp(0) - math.log(K)
    assert value == pytest.approx(-(w.double() * bound).sum().item(), rel=1e-6 if dtype == torch.float32 else 1e-12)


@pytest.mark.parametrize("scales", [(0.5, 1.0), (0.5, "w"), ("w", "2w"), (1.0, "w")])
def test_observed_sites_with_different_scales_keep_them_inside_the_logsumexp(lg, scales):
    """Two observed sites (the first two and the last two coordinates of x) with different scales share none:
    each scale stays on its own term inside log w."""
    K, x = 3, lg.x
    w = torch.linspace(0.1, 0.35, x.shape[0], **F64)
    s1, s2 = [w if s == "w" else 2 * w if s == "2w" else s for s in scales]

    def model(x):
        with _plate(x, None):
            z = pyro.sample("z", dist.Normal(x.new_zeros(K_LAT), 1.0).to_event(1))
            loc = z @ lg.W.T + lg.b
            with poutine.scale(scale=s1):
                pyro.sample("x1", dist.Normal(loc[..., :2], S).to_event(1), obs=x[..., :2])
            with poutine.scale(scale=s2):
                pyro.sample("x2", dist.Normal(loc[..., 2:], S).to_event(1), obs=x[..., 2:])

    pyro.set_rng_seed(1)
    value = IWAE_ELBO(num_particles=K).loss(model, lg.amortized_guide, x)
    pyro.set_rng_seed(1)
    z = _replayed_draws(lg.amortized_guide, x, K)
    _, log_pz, log_qz = _amortized_log_terms(lg, z, x)
    loc = z @ lg.W.T + lg.b
    log_w = (s1 * dist.Normal(loc[..., :2], S).log_prob(x[..., :2]).sum(-1)
             + s2 * dist.Normal(loc[..., 2:], S).log_prob(x[..., 2:]).sum(-1) + log_pz - log_qz)
    assert value == pytest.approx(-(log_w.logsumexp(0) - math.log(K)).sum().item(), rel=1e-12)


def test_a_scale_varying_along_a_nested_plate_stays_inside_the_logsumexp():
    """A scale that varies along a plate nested in the data plate cannot act after the log-sum-exp."""
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(0), **F64)
    v = torch.tensor([0.3, 1.4], **F64)

    def model(x):
        with pyro.plate("data", x.shape[0], dim=-2):
            z = pyro.sample("z", dist.Normal(x.new_zeros(1), 1.0))
            with pyro.plate("pixels", 2, dim=-1), poutine.scale(scale=v):
                pyro.sample("x", dist.Normal(z, S), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0], dim=-2):
            pyro.sample("z", dist.Normal(0.4 * x.sum(-1, keepdim=True), 0.8))

    pyro.set_rng_seed(4)
    value = IWAE_ELBO(num_particles=3, max_plate_nesting=2).loss(model, guide, x)
    pyro.set_rng_seed(4)
    with pyro.plate("num_particles_vectorized", 3, dim=-3):
        z = poutine.trace(guide).get_trace(x).nodes["z"]["value"]  # (K, N, 1)
    log_w = ((v * dist.Normal(z, S).log_prob(x)).sum(-1) + dist.Normal(0.0, 1.0).log_prob(z).sum(-1)
             - dist.Normal(0.4 * x.sum(-1, keepdim=True), 0.8).log_prob(z).sum(-1))
    assert value == pytest.approx(-(log_w.logsumexp(0) - math.log(3)).sum().item(), rel=1e-12)


@pytest.mark.parametrize("estimator", ["standard", "dreg"])
def test_nested_plate_equals_to_event(estimator):
    """An observation in plate('pixels', 2) nested in the data plate gives the IWAE loss and gradients of the same
    observation with .to_event(1) (same draws)."""
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(0), **F64)

    def nested_model(x):
        with pyro.plate("data", x.shape[0], dim=-2):
            z = pyro.sample("z", dist.Normal(x.new_zeros(1), 1.0))
            with pyro.plate("pixels", 2, dim=-1):
                pyro.sample("x", dist.Normal(z, S), obs=x)

    def nested_guide(x):
        a = pyro.param("a", x.new_tensor(0.4))
        with pyro.plate("data", x.shape[0], dim=-2):
            pyro.sample("z", dist.Normal(a * x.sum(-1, keepdim=True), 0.8))

    def flat_model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(()), 1.0))
            pyro.sample("x", dist.Normal(z.unsqueeze(-1), S).to_event(1), obs=x)

    def flat_guide(x):
        a = pyro.param("a", x.new_tensor(0.4))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(a * x.sum(-1), 0.8))

    out = []
    for m, g in ((nested_model, nested_guide), (flat_model, flat_guide)):
        pyro.set_rng_seed(5)
        loss = IWAE_ELBO(num_particles=3, gradient_estimator=estimator).differentiable_loss(m, g, x)
        out.append((loss, _grads(loss, ["a"])["a"]))
    assert out[0][0].item() == pytest.approx(out[1][0].item(), rel=1e-12)
    torch.testing.assert_close(out[0][1], out[1][1], rtol=1e-10, atol=1e-12)


def test_looped_particles_equal_vectorized_with_spare_plate_dims(lg):
    """max_plate_nesting=3 with only the data plate: looped terms are left-padded; exact posterior => log p(x)."""
    for vectorize in (True, False):
        elbo = IWAE_ELBO(num_particles=3, max_plate_nesting=3, vectorize_particles=vectorize)
        assert -elbo.loss(lg.model, lg.exact_guide, lg.x) == pytest.approx(lg.log_px(lg.x).sum().item(), rel=1e-10)


def _global_pair(x):
    r"""
    :math:`\mu \sim N(0, 1)`, :math:`z_n \mid \mu \sim N(\mu, 1)`, :math:`x_n \mid z_n \sim N(z_n, 1/4)`, and the exact
    posterior guide :math:`q(\mu) = p(\mu \mid x)`, :math:`q(z_n \mid x_n, \mu) = p(z_n \mid x_n, \mu)`: every weight
    is :math:`p(x)`, which is :math:`N(0, \mathbf 1 \mathbf 1^\top + 1.25 I)`.
    """
    n = x.shape[0]
    prec = 1.0 + n / 1.25

    def model(x):
        mu = pyro.sample("mu", dist.Normal(x.new_zeros(()), 1.0))
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(mu, 1.0))
            pyro.sample("x", dist.Normal(z, 0.5), obs=x)

    def guide(x):
        m = pyro.param("m_mu", x.sum() / 1.25 / prec)
        mu = pyro.sample("mu", dist.Normal(m, prec**-0.5))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal((mu + 4 * x) / 5, 0.2**0.5))

    log_px = dist.MultivariateNormal(x.new_zeros(n), torch.ones(n, n, **F64) + 1.25 * torch.eye(n, **F64)).log_prob(x)
    return model, guide, log_px.item()


@pytest.mark.parametrize("vectorize", [True, False])
@pytest.mark.parametrize("K", [1, 4])
def test_global_latent_is_drawn_once_per_step_and_gives_the_exact_evidence(K, vectorize):
    """A global latent is drawn once and shared by the K particles, its log p - log q counted once: with the exact
    posterior as guide the bound is log p(x) exactly (a draw per particle, or the term counted K times, is not)."""
    x = torch.randn(6, generator=torch.Generator().manual_seed(2), **F64) + 1.0
    model, guide, log_px = _global_pair(x)
    elbo = IWAE_ELBO(num_particles=K, vectorize_particles=vectorize)
    for _ in range(2):
        assert -elbo.loss(model, guide, x) == pytest.approx(log_px, rel=1e-10)


def test_vectorize_fallback_warns_and_matches_looped(lg):
    """A model that breaks under the particle plate falls back to looped particles once, with a RuntimeWarning."""

    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(K_LAT), 1.0).to_event(1))
            loc = z.reshape(x.shape[0], K_LAT) @ lg.W.T + lg.b  # breaks under a particle plate
            pyro.sample("x", dist.Normal(loc, S).to_event(1), obs=x)

    message = (r"(?s)^the programs failed under a vectorized particle plate \(RuntimeError: shape .* is invalid for "
               r"input of size \d+.*\); falling back to looped particles \(pass vectorize_particles=False to choose this "
               r"explicitly\)$")
    with pytest.warns(RuntimeWarning, match=message):
        value = IWAE_ELBO(num_particles=3).loss(model, lg.exact_guide, lg.x)
    assert value == pytest.approx(-lg.log_px(lg.x).sum().item(), rel=1e-10)
    elbo = IWAE_ELBO(num_particles=3)
    with pytest.warns(RuntimeWarning):
        elbo.loss(model, lg.amortized_guide, lg.x)
    pyro.set_rng_seed(8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once: the pair is looped from now on
        second = elbo.loss(model, lg.amortized_guide, lg.x)
    pyro.set_rng_seed(8)
    assert second == pytest.approx(IWAE_ELBO(num_particles=3, vectorize_particles=False).loss(
        model, lg.amortized_guide, lg.x), rel=1e-12)


# ------------------------------------------------------------------------------------ DReG: refusals and Delta sites


def test_dreg_rejects_a_hierarchy_hidden_in_a_transform():
    """A guide site whose dependence on an earlier latent sits in a TransformedDistribution's transform
    (AffineTransform(loc=a)) is hierarchical too: DReG refuses it, as it refuses Normal(a, 1)."""

    model = _chain_model

    def guide(x):
        m = pyro.param("m", torch.tensor(0.0))
        a = pyro.sample("a", dist.Normal(m, 1.0))
        pyro.sample("b", dist.TransformedDistribution(dist.Normal(torch.tensor(0.0), 1.0),
                                                      [dist.transforms.AffineTransform(loc=a, scale=1.0)]))

    with pytest.raises(NotImplementedError, match="guide site 'b' depends on an earlier guide latent"):
        IWAE_ELBO(num_particles=2, gradient_estimator="dreg", max_plate_nesting=0).differentiable_loss(
            model, guide, torch.tensor(0.5))
    # the standard estimator handles it
    loss = IWAE_ELBO(num_particles=2, max_plate_nesting=0).differentiable_loss(model, guide, torch.tensor(0.5))
    assert loss.requires_grad


def test_dreg_with_a_delta_site_of_an_auxiliary_draw_equals_the_direct_guide(lg):
    """An autoguide-style guide (an auxiliary Normal draw, the latent a Delta(...).to_event(1) of it) gets the same
    DReG loss and gradients as the guide that samples the latent directly: the Delta carries no parameters."""

    def direct(x):
        loc = pyro.param("loc_d", torch.full((x.shape[0], K_LAT), 0.3, **F64))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, 0.8).to_event(1))

    def via_delta(x):
        loc = pyro.param("loc_d", torch.full((x.shape[0], K_LAT), 0.3, **F64))
        with pyro.plate("data", x.shape[0]):
            aux = pyro.sample("aux", dist.Normal(loc, 0.8).to_event(1), infer={"is_auxiliary": True})
            pyro.sample("z", dist.Delta(aux).to_event(1))

    out = []
    for guide in (direct, via_delta):
        pyro.set_rng_seed(3)
        loss = IWAE_ELBO(num_particles=4, gradient_estimator="dreg").differentiable_loss(lg.model, guide, lg.x)
        out.append((loss.item(), _grads(loss, ["loc_d"])["loc_d"]))
    assert out[1][0] == pytest.approx(out[0][0], rel=1e-12)
    torch.testing.assert_close(out[1][1], out[0][1], rtol=1e-10, atol=1e-12)
    assert out[0][1].abs().max() > 1e-3
