"""σ↔β equivalence of σ-VAEs through the β-scaling handler (Saremi 2020), values and gradients."""

import math
import re

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import RenyiELBO, Trace_ELBO, TraceMeanField_ELBO

from pyro_noisevae.handlers import BetaScaleMessenger, beta_scale, bound_constant, equivalent_beta
from pyro_noisevae.models import VAE

D, Z, B, N = 12, 3, 8, 40  # observed dim, latent dim, mini-batch, full data size (plate subsamples)


def _pair(family, s1, s2, seed=0):
    """Two VAEs with identical weights and decoder noise s1 and s2 (σ for normal, b for laplace)."""
    torch.manual_seed(seed)
    m1 = VAE(x_dim=D, z_dim=Z, hidden_dims=(16,), likelihood=family, sigma=s1).double()
    m2 = VAE(x_dim=D, z_dim=Z, hidden_dims=(16,), likelihood=family, sigma=s2).double()
    # copy the network weights only: the fixed σ/b is a buffer and belongs to each model
    m2.load_state_dict({k: v for k, v in m1.state_dict().items() if not k.startswith("likelihood.")}, strict=False)
    return m1, m2


def _data(seed=1):
    return torch.rand(B, D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _loss_and_grads(elbo, vae, x, beta=None, seed=3):
    model, guide = vae.model, vae.guide
    if beta is not None:
        model, guide = beta_scale(model, beta=beta), beta_scale(guide, beta=beta)
    vae.zero_grad()
    pyro.set_rng_seed(seed)
    with pyro.settings.context(module_local_params=True):
        loss = elbo.differentiable_loss(model, guide, x, num_data=N)
    loss.backward()
    return loss.detach(), {k: p.grad.clone() for k, p in vae.named_parameters()}


@pytest.mark.parametrize("elbo_cls", [Trace_ELBO, TraceMeanField_ELBO], ids=["Trace", "TraceMeanField"])
@pytest.mark.parametrize(
    "family,s1,s2", [("normal", 0.3, 0.9), ("normal", 1.0, 0.1), ("laplace", 0.2, 0.5), ("laplace", 1.0, 0.25)]
)
def test_sigma_beta_equivalence_values_and_gradients(elbo_cls, family, s1, s2):
    """L(σ₂) = L(σ₁, β)/β + c with β = σ₂²/σ₁² (normal) or b₂/b₁ (laplace), under a subsampling plate."""
    m1, m2 = _pair(family, s1, s2)
    x = _data()
    beta = equivalent_beta(s1, s2, family)
    expected_beta = (s2 / s1) ** 2 if family == "normal" else s2 / s1
    assert beta == pytest.approx(expected_beta)

    loss2, grads2 = _loss_and_grads(elbo_cls(), m2, x)
    loss1, grads1 = _loss_and_grads(elbo_cls(), m1, x, beta=beta)
    c = bound_constant(s1, s2, num_dims=D, family=family)
    # losses are negative bounds; the plate scales every term by N/B, so the constant appears N times
    assert (-loss2).item() == pytest.approx((-loss1 / beta).item() + N * c, rel=1e-10, abs=1e-8)
    for name in grads2:
        torch.testing.assert_close(grads2[name], grads1[name] / beta, rtol=1e-9, atol=1e-10, msg=name)


def test_bound_constant_matches_log_normalizers():
    s1, s2, d = 0.4, 1.3, 7
    beta = equivalent_beta(s1, s2)
    direct = -0.5 * d * math.log(2 * math.pi * s2**2) + (0.5 * d * math.log(2 * math.pi * s1**2)) / beta
    assert bound_constant(s1, s2, d) == pytest.approx(direct)
    # Laplace log-normalizer is -log(2b) per dimension
    assert bound_constant(s1, s2, d, family="laplace") == pytest.approx(-d * math.log(2 * s2) + d * math.log(2 * s1) * s1 / s2)
    # equal noise levels: β = 1 and no constant
    assert equivalent_beta(0.7, 0.7) == 1.0 and bound_constant(0.7, 0.7, d) == pytest.approx(0.0, abs=1e-12)


def test_identity_does_not_hold_for_importance_weighted_bounds():
    """
    With K > 1 the β-scaling sits inside the log-sum-exp: log mean_k exp(log p(x|z_k) + β(log p(z_k) - log q(z_k)))
    divided by β is not the σ₂ bound. Single-sample bounds satisfy the identity exactly (test above); the IWAE
    bound misses it by far more than float error.
    """
    s1, s2 = 0.3, 0.9
    m1, m2 = _pair("normal", s1, s2)
    x = _data()
    beta = equivalent_beta(s1, s2)
    c = bound_constant(s1, s2, num_dims=D)
    elbo = RenyiELBO(alpha=0.0, num_particles=8, vectorize_particles=True, max_plate_nesting=1)
    with pyro.settings.context(module_local_params=True):
        pyro.set_rng_seed(5)
        loss2 = elbo.loss(m2.model, m2.guide, x)  # no subsampling here: RenyiELBO mis-scales subsampled plates
        pyro.set_rng_seed(5)
        loss1 = elbo.loss(beta_scale(m1.model, beta=beta), beta_scale(m1.guide, beta=beta), x)
    gap = abs(-loss2 - (-loss1 / beta + B * c))
    assert gap > 1e-2 * abs(loss2)  # several nats per data point, not rounding


def _sgd_trajectory(vae, beta, lr, steps, x, family_seed=11):
    opt = torch.optim.SGD(vae.parameters(), lr=lr)
    for t in range(steps):
        opt.zero_grad()
        model, guide = vae.model, vae.guide
        if beta is not None:
            model, guide = beta_scale(model, beta=beta), beta_scale(guide, beta=beta)
        pyro.set_rng_seed(family_seed + t)
        with pyro.settings.context(module_local_params=True):
            Trace_ELBO().differentiable_loss(model, guide, x, num_data=N).backward()
        opt.step()
    return torch.cat([p.detach().flatten() for p in vae.parameters()])


def test_sgd_trajectories_coincide_with_lr_over_beta():
    """SGD(η) on L(σ₂) and SGD(η/β) on L(σ₁, β) take identical steps, since ∇L(σ₂) = ∇L(σ₁, β)/β."""
    s1, s2 = 0.5, 0.25
    beta = equivalent_beta(s1, s2)
    x = _data()
    m1, m2 = _pair("normal", s1, s2)
    eta = 1e-4
    p2 = _sgd_trajectory(m2, None, eta, 6, x)
    p1 = _sgd_trajectory(m1, beta, eta / beta, 6, x)
    start = torch.cat([p.detach().flatten() for p in _pair("normal", s1, s2)[0].parameters()])
    assert (p2 - start).abs().max() > 1e-4  # the parameters really moved
    torch.testing.assert_close(p1, p2, rtol=1e-9, atol=1e-11)
    # with the same η instead, the trajectories differ: the factor 1/β matters for SGD
    m1b, _ = _pair("normal", s1, s2)
    p1_same_lr = _sgd_trajectory(m1b, beta, eta, 6, x)
    assert (p1_same_lr - p2).abs().max() > 1e-3 * (p2 - start).abs().max()


def test_adam_is_nearly_invariant_to_the_gradient_factor():
    """Adam normalises the gradient scale away (up to its ε): same η on both bounds gives ≈ the same path."""
    s1, s2 = 0.5, 0.25
    beta = equivalent_beta(s1, s2)
    x = _data()
    paths = []
    for vae, b in zip(_pair("normal", s1, s2), (beta, None)):
        opt = torch.optim.Adam(vae.parameters(), lr=1e-3, eps=1e-12)
        for t in range(5):
            opt.zero_grad()
            model, guide = (vae.model, vae.guide) if b is None else (beta_scale(vae.model, beta=b), beta_scale(vae.guide, beta=b))
            pyro.set_rng_seed(20 + t)
            with pyro.settings.context(module_local_params=True):
                Trace_ELBO().differentiable_loss(model, guide, x, num_data=N).backward()
            opt.step()
        paths.append(torch.cat([p.detach().flatten() for p in vae.parameters()]))
    torch.testing.assert_close(paths[0], paths[1], rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------------------------------------------------
# handler mechanics
# ---------------------------------------------------------------------------------------------------------


def _toy(x):
    with pyro.plate("data", 10, subsample_size=5):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        w = pyro.sample("w", dist.Normal(0.0, 1.0))
        aux = pyro.sample("aux", dist.Normal(0.0, 1.0), infer={"is_auxiliary": True})
        pyro.sample("x", dist.Normal(z + w + aux, 1.0), obs=x)


def _scales(fn):
    tr = poutine.trace(fn).get_trace(torch.zeros(5))
    return {name: float(site["scale"]) for name, site in tr.nodes.items() if site["type"] == "sample"}


def test_scales_only_latent_sites_and_composes_with_subsampling():
    plain = _scales(_toy)
    assert plain["z"] == plain["x"] == 2.0  # plate subsampling scale N/B
    scaled = _scales(beta_scale(_toy, beta=3.0))
    assert scaled["z"] == scaled["w"] == 6.0  # multiplicative with the subsample scale
    assert scaled["x"] == 2.0 and scaled["aux"] == 2.0  # observed and auxiliary sites untouched
    only_w = _scales(beta_scale(_toy, beta=3.0, sites=["w"]))
    assert only_w["z"] == 2.0 and only_w["w"] == 6.0
    nested = _scales(beta_scale(beta_scale(_toy, beta=3.0), beta=0.5))
    assert nested["z"] == pytest.approx(3.0)


def test_context_manager_decorator_and_schedule():
    with beta_scale(beta=4.0):
        assert _scales(_toy)["z"] == 8.0
    decorated = beta_scale(beta=0.25)(_toy)
    assert _scales(decorated)["z"] == 0.5
    state = {"beta": 0.1}
    scheduled = beta_scale(_toy, beta=lambda: state["beta"])
    assert _scales(scheduled)["z"] == pytest.approx(0.2)
    state["beta"] = 1.0  # β may change between steps: KL warm-up
    assert _scales(scheduled)["z"] == pytest.approx(2.0)
    assert isinstance(beta_scale(beta=1.0), BetaScaleMessenger)


def test_scaling_only_the_model_is_not_beta_vae():
    """Why the handler must wrap model AND guide: model-only scaling leaves log q unscaled."""
    vae = VAE(x_dim=D, z_dim=Z, hidden_dims=(16,), likelihood="normal", sigma=0.5).double()
    x = _data()
    beta = 3.0
    with pyro.settings.context(module_local_params=True):
        pyro.set_rng_seed(0)
        guide_tr = poutine.trace(vae.guide).get_trace(x)
        model_tr = poutine.trace(poutine.replay(vae.model, trace=guide_tr)).get_trace(x)
        log_px = model_tr.nodes["x"]["fn"].log_prob(x).sum()
        log_pz = model_tr.nodes["z"]["fn"].log_prob(model_tr.nodes["z"]["value"]).sum()
        log_qz = guide_tr.nodes["z"]["fn"].log_prob(guide_tr.nodes["z"]["value"]).sum()
        pyro.set_rng_seed(0)
        both = -Trace_ELBO().loss(beta_scale(vae.model, beta=beta), beta_scale(vae.guide, beta=beta), x)
        pyro.set_rng_seed(0)
        model_only = -Trace_ELBO().loss(beta_scale(vae.model, beta=beta), vae.guide, x)
    assert both == pytest.approx((log_px + beta * (log_pz - log_qz)).item(), rel=1e-9)
    assert model_only == pytest.approx((log_px + beta * log_pz - log_qz).item(), rel=1e-9)
    assert abs(both - model_only) > 1.0


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), torch.ones(2)])
def test_bad_beta_is_rejected(bad):
    with pytest.raises(ValueError, match="beta"):
        beta_scale(_toy, beta=bad)


def test_bad_schedule_value_is_rejected_when_read():
    fn = beta_scale(_toy, beta=lambda: -2.0)
    with pytest.raises(ValueError, match="beta"):
        _scales(fn)


@pytest.mark.parametrize(
    "args", [(0.0, 1.0), (1.0, -2.0), (float("nan"), 1.0), (1.0, float("inf"))], ids=["zero", "negative", "nan", "inf"]
)
def test_equivalent_beta_rejects_nonpositive_sigma(args):
    with pytest.raises(ValueError, match="sigma"):
        equivalent_beta(*args)
    with pytest.raises(ValueError, match="sigma"):
        bound_constant(*args, num_dims=3)


def test_bad_family_and_num_dims():
    with pytest.raises(ValueError, match="family"):
        equivalent_beta(1.0, 2.0, family="cauchy")
    with pytest.raises(ValueError, match="num_dims"):
        bound_constant(1.0, 2.0, num_dims=0)


def test_bound_constant_takes_num_dims_not_event_dim():
    """d is a count of observed dimensions; a Pyro user's ``event_dim=1`` must fail, not give a wrong constant."""
    s1, s2, d = 0.2, 0.5, 784
    expected = -0.5 * d * math.log(2 * math.pi * s2**2) + 0.5 * d * math.log(2 * math.pi * s1**2) * s1**2 / s2**2
    assert bound_constant(s1, s2, num_dims=d) == pytest.approx(expected)
    assert bound_constant(s1, s2, d) == bound_constant(sigma_from=s1, sigma_to=s2, num_dims=d)
    with pytest.raises(TypeError, match="num_dims"):
        bound_constant(s1, s2, event_dim=1)
    with pytest.raises(TypeError, match="num_dims"):
        bound_constant(s1, s2, d, event_dim=1)
    with pytest.raises(TypeError, match="num_dims"):
        bound_constant(s1, s2, family="laplace")


# ---------------------------------------------------------------------------------------------------------
# named sites: a misspelled or observed name must not silently scale nothing
# ---------------------------------------------------------------------------------------------------------


def test_misspelled_site_raises_and_lists_the_latent_sites():
    with pytest.raises(ValueError, match=r"\['zz'\].*latent sites that ran: \['w', 'z'\]. Did you mean 'z' for 'zz'"):
        _scales(beta_scale(_toy, beta=3.0, sites=["z", "zz"]))
    with pytest.raises(ValueError, match=r"\['v'\]"):  # context-manager form: checked on leaving the block
        with beta_scale(beta=3.0, sites="v"):
            _scales(_toy)
    assert _scales(beta_scale(_toy, beta=3.0, sites=["z", "w"])) == {"data": 1.0, "z": 6.0, "w": 6.0, "aux": 2.0, "x": 2.0}


@pytest.mark.parametrize("name,kind", [("x", "observed"), ("aux", "auxiliary")])
def test_named_observed_or_auxiliary_site_raises(name, kind):
    with pytest.raises(ValueError, match=f"latent sites only.*'{name}' is {kind}"):
        _scales(beta_scale(_toy, beta=3.0, sites=["z", name]))


def test_site_check_is_per_call_of_the_wrapped_function():
    def prog(flag):
        if flag:
            pyro.sample("a", dist.Normal(0.0, 1.0))
        pyro.sample("b", dist.Normal(0.0, 1.0))

    wrapped = beta_scale(prog, beta=2.0, sites=["a"])
    assert float(poutine.trace(wrapped).get_trace(True).nodes["a"]["scale"]) == 2.0
    with pytest.raises(ValueError, match=r"\['a'\].*latent sites that ran: \['b'\]"):
        wrapped(False)  # an earlier call that met "a" does not count
    # a `with` block is one entry: sites met in any program run inside it count
    with beta_scale(beta=2.0, sites=["a", "c"]):
        prog(True)
        pyro.sample("c", dist.Normal(0.0, 1.0))


def test_site_check_does_not_mask_a_propagating_exception():
    def failing():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        beta_scale(failing, beta=2.0, sites=["z"])()
    with pytest.raises(RuntimeError, match="boom"):
        with beta_scale(beta=2.0, sites=["z"]):
            failing()


@pytest.mark.parametrize("elbo_cls", [Trace_ELBO, TraceMeanField_ELBO], ids=["Trace", "TraceMeanField"])
def test_named_sites_under_elbos_that_run_programs_repeatedly(elbo_cls):
    """Wrapped model and guide each contain "z" in every call (3 particles); the context form sees their union."""
    vae = VAE(x_dim=D, z_dim=Z, hidden_dims=(16,), likelihood="normal", sigma=0.5).double()
    x, beta = _data(), 3.0
    elbo = elbo_cls(num_particles=3)
    losses = {}
    with pyro.settings.context(module_local_params=True):
        for key, sites in [("all", None), ("z", ["z"])]:
            pyro.set_rng_seed(0)
            model, guide = beta_scale(vae.model, beta=beta, sites=sites), beta_scale(vae.guide, beta=beta, sites=sites)
            losses[key] = elbo.loss(model, guide, x)
        pyro.set_rng_seed(0)
        with beta_scale(beta=beta, sites=["z"]):
            losses["context"] = elbo.loss(vae.model, vae.guide, x)
        pyro.set_rng_seed(0)
        losses["plain"] = elbo.loss(vae.model, vae.guide, x)
        with pytest.raises(ValueError, match="Did you mean 'z' for 'zz'"):
            elbo.loss(beta_scale(vae.model, beta=beta, sites=["zz"]), beta_scale(vae.guide, beta=beta, sites=["zz"]), x)
    assert losses["z"] == pytest.approx(losses["all"], rel=1e-12)
    assert losses["context"] == pytest.approx(losses["all"], rel=1e-12)
    assert abs(losses["all"] - losses["plain"]) > 1.0  # β really applied


# ---------------------------------------------------------------------------------------------------------
# argument forms and exact messages (mutation survivors of quality/README.md)
# ---------------------------------------------------------------------------------------------------------


def _exact(message):
    return "^" + re.escape(message) + "$"


def test_scalar_tensor_beta_scales_like_a_float():
    assert _scales(beta_scale(_toy, beta=torch.tensor(3.0))) == _scales(beta_scale(_toy, beta=3.0))
    assert _scales(beta_scale(_toy, beta=torch.tensor(3.0)))["z"] == 6.0


def test_beta_zero_is_allowed():
    """β = 0 is documented as allowed (>= 0): latent terms vanish, observed and auxiliary ones keep their scale."""
    scales = _scales(beta_scale(_toy, beta=0.0))
    assert scales["z"] == scales["w"] == 0.0
    assert scales["x"] == scales["aux"] == 2.0


def test_default_beta_is_one():
    assert _scales(beta_scale(_toy)) == _scales(_toy)
    assert BetaScaleMessenger(beta=1.0).current_beta() == beta_scale().current_beta() == 1.0


@pytest.mark.parametrize("bad,name", [("2", "str"), (None, "NoneType"), ([2.0], "list")])
def test_non_numeric_beta_is_a_type_error(bad, name):
    with pytest.raises(TypeError, match=_exact(f"beta must be a positive number, a scalar tensor or a callable, got {name}")):
        beta_scale(_toy, beta=bad)


def test_beta_scale_rejects_a_non_callable_fn():
    with pytest.raises(TypeError, match=_exact("beta_scale expects a callable or None as `fn`, got float")):
        beta_scale(3.0)


@pytest.mark.parametrize("shape", [(), (1,)])
def test_equivalent_beta_accepts_scalar_tensors(shape):
    s1, s2 = torch.full(shape, 0.5), torch.full(shape, 1.0)
    beta = equivalent_beta(s1, s2)
    assert type(beta) is float and beta == 4.0
    assert equivalent_beta(s1, s2, family="laplace") == 2.0
    c = bound_constant(s1, s2, num_dims=3)
    assert type(c) is float and c == pytest.approx(bound_constant(0.5, 1.0, num_dims=3), rel=1e-12)
    with pytest.raises(ValueError, match=r"^sigma_from must be a finite number > 0, got tensor\("):
        equivalent_beta(torch.tensor([0.5, 1.0]), s2)  # two numbers are not one σ


@pytest.mark.parametrize("name,args", [("sigma_from", (0.0, 1.0)), ("sigma_from", (float("nan"), 1.0)),
                                       ("sigma_to", (1.0, -2.0)), ("sigma_to", (1.0, float("inf")))])
def test_bad_sigma_names_the_argument(name, args):
    message = _exact(f"{name} must be a finite number > 0, got {args[0] if name == 'sigma_from' else args[1]!r}")
    with pytest.raises(ValueError, match=message):
        equivalent_beta(*args)
    with pytest.raises(ValueError, match=message):
        bound_constant(*args, num_dims=3)


def test_bound_constant_keyword_messages():
    stem = "pass num_dims, the number of observed dimensions d (e.g. 784 for MNIST)"
    with pytest.raises(TypeError, match=_exact(
            f"bound_constant() got unexpected keyword argument(s) ['event_dim']; {stem} (it is not a Pyro event_dim)")):
        bound_constant(0.2, 0.5, event_dim=1)
    with pytest.raises(TypeError, match=_exact(f"bound_constant() got unexpected keyword argument(s) ['foo']; {stem}")):
        bound_constant(0.2, 0.5, 3, foo=1)  # no event_dim hint for other names
    with pytest.raises(TypeError, match=_exact(
            "bound_constant() missing required argument num_dims (the number of observed dimensions d)")):
        bound_constant(0.2, 0.5)


@pytest.mark.parametrize("family", ["normal", "laplace"])
def test_bound_constant_for_one_observed_dimension(family):
    s1, s2 = 0.2, 0.5
    if family == "normal":
        expected = -0.5 * math.log(2 * math.pi * s2**2) + 0.5 * math.log(2 * math.pi * s1**2) * s1**2 / s2**2
    else:
        expected = -math.log(2 * s2) + math.log(2 * s1) * s1 / s2
    assert bound_constant(s1, s2, num_dims=1, family=family) == pytest.approx(expected, rel=1e-12)
    assert bound_constant(s1, s2, num_dims=3, family=family) == pytest.approx(3 * expected, rel=1e-12)
    with pytest.raises(ValueError, match=_exact("num_dims must be a positive integer (observed dimensions d), got 1.0")):
        bound_constant(s1, s2, num_dims=1.0, family=family)


def test_site_typo_hints():
    """One guess per missing name (the closest only), all joined by ', '; no hint when nothing is close."""
    end = r"(\nTrace Shapes:|$)"  # poutine.trace appends the trace's shapes to the message
    two_guesses = r"latent sites that ran: \['w', 'z'\]\. Did you mean 'w' for 'ww', 'z' for 'zz'\?"
    with pytest.raises(ValueError, match=two_guesses + end):
        _scales(beta_scale(_toy, beta=3.0, sites=["z", "zz", "ww"]))
    with pytest.raises(ValueError, match=r"^beta_scale\(sites=\.\.\.\): the named site\(s\) \['v'\] did not run .*"
                                         r"latent sites that ran: \['w', 'z'\]" + end):
        with beta_scale(beta=3.0, sites="v"):
            _scales(_toy)

    def prog():
        pyro.sample("scale", dist.Normal(0.0, 1.0))
        pyro.sample("scales", dist.Normal(0.0, 1.0))  # also close to "scalez", but further

    with pytest.raises(ValueError, match=r"\['scale', 'scales'\]\. Did you mean 'scale' for 'scalez'\?$"):
        beta_scale(prog, beta=2.0, sites=["scalez"])()


def test_an_exception_unwinds_the_handler_stack_below_beta_scale():
    """As Pyro's own messengers do: an exception leaving the handler pops it and every handler entered inside it,
    even one the failing program left open, and the original exception propagates."""
    from pyro.poutine.runtime import _PYRO_STACK

    depth = len(_PYRO_STACK)

    def leaky():
        poutine.trace().__enter__()  # entered, never exited
        raise RuntimeError("boom")

    try:
        with pytest.raises(RuntimeError, match="boom"):
            beta_scale(leaky, beta=2.0, sites=["z"])()
        assert len(_PYRO_STACK) == depth
    finally:
        del _PYRO_STACK[depth:]
