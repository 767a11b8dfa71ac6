"""Conformance of the evaluation tools (IWAE-k log-likelihood, IWAE bound, IW-SVI, inference gaps)."""

import functools

import pyro
import pytest
import torch
from programs import at_most, make, names, within

from pyro_noisevae.evaluation import (
    importance_estimate,
    inference_gaps,
    iw_svi,
    iw_svi_estimate,
    iwae_bound,
    log_likelihood,
)

#: the value-checked programs with per-point latents (AutoDiagonalNormal: test_autodiagonalnormal_*)
CLOSED_FORM_LOCAL = names("closed_form", "local", exclude=("global",))
CLOSED_FORM_LOCAL = [n for n in CLOSED_FORM_LOCAL if n != "local_autodiagonalnormal"]


def _estimate(prog, model=None, num_samples=2000, **kwargs):
    model = prog.model if model is None else model
    options = dict(num_samples=num_samples, chunk_size=1000, progress=False)
    options = {**options, **prog.eval_options, **prog.kwargs, **kwargs}
    return importance_estimate(model, prog.guide, *prog.args, **options)


def _assert_estimates_log_px(est, exact):
    """Per point within 4 reported standard errors, and the mean over points within 4 of its own."""
    assert est.log_px.shape == exact.shape
    assert torch.isfinite(est.stderr).all()
    assert within(est.log_px, exact, est.stderr).all(), (est.log_px - exact, est.stderr)
    mean_se = est.stderr.pow(2).sum().sqrt() / exact.numel()
    assert within(est.log_px.mean(), exact.mean(), mean_se)


# ---------------------------------------------------------------------------------------------------------
# importance_estimate / log_likelihood against closed forms


@pytest.mark.parametrize("program", CLOSED_FORM_LOCAL, indirect=True)
def test_importance_estimate_matches_the_closed_form(program):
    """Includes every DenoisingGuide (M = 1, 3) behind ``wrap_model``: log p(x), not M log p(x)."""
    _assert_estimates_log_px(_estimate(program), program.exact_log_px)


@pytest.mark.parametrize("exact_program", [n for n in CLOSED_FORM_LOCAL if n in names("exact_family")], indirect=True)
def test_importance_estimate_at_the_exact_posterior_is_exact(exact_program):
    """Constant weights: log p(x) to float precision, zero standard error, and ELBO = log p(x)."""
    est = _estimate(exact_program, num_samples=200, batch_size=None)
    torch.testing.assert_close(est.log_px, exact_program.exact_log_px, rtol=0, atol=1e-8)
    torch.testing.assert_close(est.elbo, exact_program.exact_log_px, rtol=0, atol=1e-8)
    assert (est.stderr < 1e-6).all()


@pytest.mark.parametrize("program", CLOSED_FORM_LOCAL, indirect=True)
def test_iwae_bound_and_elbo_are_below_log_px(program):
    bound, bound_se = iwae_bound(
        program.model, program.guide, *program.args, num_particles=5, num_repeats=50, progress=False,
        **program.eval_options, **program.kwargs,
    )
    est = _estimate(program, num_samples=500)
    exact = program.exact_log_px
    assert at_most(bound, exact, bound_se).all()
    assert at_most(est.elbo, exact, est.elbo_stderr).all()
    assert at_most(est.elbo, bound, torch.hypot(est.elbo_stderr, bound_se)).all()
    if program.exact_elbo is not None:
        assert within(est.elbo, program.exact_elbo(), est.elbo_stderr).all()


@pytest.mark.parametrize("program", names("local", exclude=("closed_form",)), indirect=True)
def test_estimates_are_ordered_without_a_closed_form(program):
    """Random MLP and conv VAEs (also behind DenoisingGuides): per-point, finite, ELBO <= IWAE-k on the same draws."""
    est = _estimate(program, num_samples=200)
    n = program.num_data
    for field in ("log_px", "stderr", "ess", "elbo", "elbo_stderr"):
        value = getattr(est, field)
        assert value.shape == (n,) and torch.isfinite(value).all(), field
    assert (est.elbo <= est.log_px + 1e-4 * est.log_px.abs()).all()
    assert ((est.ess >= 1 - 1e-6) & (est.ess <= est.num_samples + 1e-6)).all()


@pytest.mark.parametrize("program", ["linear_vae", "local_autonormal", "linear_vae/denoising_M3"], indirect=True)
def test_log_likelihood_is_the_importance_estimate(program):
    options = dict(num_samples=300, progress=False, **program.eval_options, **program.kwargs)
    pyro.set_rng_seed(5)
    ll = log_likelihood(program.model, program.guide, *program.args, **options)
    pyro.set_rng_seed(5)
    torch.testing.assert_close(ll, importance_estimate(program.model, program.guide, *program.args, **options).log_px)


@pytest.mark.parametrize("program", names("denoising", "closed_form"), indirect=True)
def test_denoising_guide_with_the_unwrapped_model_estimates_log_px(program):
    _assert_estimates_log_px(_estimate(program, model=program.base_model), program.exact_log_px)


# ---------------------------------------------------------------------------------------------------------
# non-amortized guides: chunked evaluation through the plate's subsample indices


@pytest.mark.parametrize("program", ["local_autonormal", "local_params"], indirect=True)
def test_local_guides_are_evaluated_in_chunks(program):
    assert program.num_data > 100
    chunked = _estimate(program, num_samples=1000, batch_size=100)
    whole = _estimate(program, num_samples=1000, batch_size=None)
    _assert_estimates_log_px(chunked, program.exact_log_px)
    _assert_estimates_log_px(whole, program.exact_log_px)
    assert within(chunked.log_px, whole.log_px, torch.hypot(chunked.stderr, whole.stderr)).all()


def test_hand_written_local_guide_default_call_is_right_or_refused_naming_data_arg():
    """Without ``data_arg=None`` the tools slice ``x``, which misaligns per-point params indexed by the plate:
    the estimate must still be right, or the call refused naming ``data_arg=None``; never silently wrong."""
    prog = make("local_params")
    try:
        est = importance_estimate(prog.model, prog.guide, *prog.args, num_samples=1000, chunk_size=1000, progress=False)
    except (ValueError, NotImplementedError) as e:
        assert "data_arg=None" in str(e)
        return
    _assert_estimates_log_px(est, prog.exact_log_px)


@pytest.mark.parametrize("batch_size", [100, None])
def test_autodiagonalnormal_is_evaluated_or_refused_naming_autonormal(batch_size):
    """AutoDiagonalNormal draws all points' latents as one vector outside the data plate: either the per-point
    estimate is right, or the tool refuses and names the per-point alternative (AutoNormal)."""
    prog = make("local_autodiagonalnormal")
    try:
        est = _estimate(prog, num_samples=1000, batch_size=batch_size)
    except (ValueError, NotImplementedError) as e:
        assert "AutoNormal" in str(e)
        return
    _assert_estimates_log_px(est, prog.exact_log_px)


# ---------------------------------------------------------------------------------------------------------
# IW-SVI and inference gaps

IW_SVI = dict(num_steps=30, num_particles=20, num_samples=1000, progress=False)
GAPS = dict(num_samples=1000, elbo_samples=500, num_steps=30, num_particles=20, progress=False)


@pytest.mark.parametrize(
    "program", ["linear_vae", "linear_conv_vae", "hierarchical_vae", "linear_vae/denoising_M3"], indirect=True
)
def test_iw_svi_matches_the_closed_form(program):
    est = iw_svi_estimate(program.model, program.guide, *program.args, batch_size=None, **IW_SVI)
    _assert_estimates_log_px(est, program.exact_log_px)
    ll = iw_svi(program.model, program.guide, *program.args, batch_size=None, **IW_SVI)
    assert ll.shape == program.exact_log_px.shape and torch.isfinite(ll).all()


@pytest.mark.parametrize("tool", ["iw_svi", "inference_gaps"])
@pytest.mark.parametrize("program", names("local", exclude=("amortized",)), indirect=True)
def test_per_point_refinement_of_non_amortized_guides_is_right_or_refused(program, tool):
    """IW-SVI and the gaps refine an amortized guide point by point; a guide with per-point parameters is
    either handled (right log p(x)) or refused naming the tool to use instead (log_likelihood)."""
    try:
        if tool == "iw_svi":
            est = program.call(iw_svi_estimate, batch_size=None, **IW_SVI, **program.eval_options)
            log_px, stderr = est.log_px, est.stderr
        else:
            gaps = program.call(inference_gaps, batch_size=None, **GAPS, **program.eval_options)
            log_px, stderr = gaps.log_px, gaps.log_px_stderr
    except (ValueError, NotImplementedError) as e:
        assert "log_likelihood" in str(e)
        return
    assert within(log_px, program.exact_log_px, stderr).all()


@pytest.mark.parametrize("program", ["hierarchical_vae"], indirect=True)
def test_iw_svi_in_batches_equals_the_single_batch_run(program):
    assert program.num_data > 8
    whole = iw_svi_estimate(program.model, program.guide, *program.args, batch_size=None, **IW_SVI)
    batched = iw_svi_estimate(program.model, program.guide, *program.args, batch_size=8, **IW_SVI)
    _assert_estimates_log_px(batched, program.exact_log_px)
    assert within(batched.log_px, whole.log_px, torch.hypot(batched.stderr, whole.stderr)).all()



@pytest.mark.parametrize("program", ["linear_vae", "hierarchical_vae"], indirect=True)
def test_inference_gaps_match_the_closed_form(program):
    gaps = inference_gaps(program.model, program.guide, *program.args, batch_size=None, **GAPS)
    exact = program.exact_log_px
    assert within(gaps.log_px, exact, gaps.log_px_stderr).all()
    # log p(x) - ELBO[q] = KL(q || p(z | x)) >= 0 for the amortized guide and for the per-point optimum
    assert at_most(gaps.elbo_amortized, exact, gaps.elbo_amortized_stderr).all()
    assert at_most(gaps.elbo_optimal, exact, gaps.elbo_optimal_stderr).all()
    assert at_most(-gaps.inference_gap, 0.0, gaps.stderr("inference_gap")).all()
    assert at_most(-gaps.approximation_gap, 0.0, gaps.stderr("approximation_gap")).all()
    # the closed form given as log p(x) is used as is; chunked runs agree with the single batch
    given = inference_gaps(program.model, program.guide, *program.args, log_px=exact, batch_size=8, **GAPS)
    torch.testing.assert_close(given.log_px, exact)
    se = torch.hypot(given.elbo_amortized_stderr, gaps.elbo_amortized_stderr)
    assert within(given.elbo_amortized, gaps.elbo_amortized, se).all()
    batched = inference_gaps(program.model, program.guide, *program.args, batch_size=8, **GAPS)
    assert within(batched.log_px, gaps.log_px, torch.hypot(batched.log_px_stderr, gaps.log_px_stderr)).all()


# ---------------------------------------------------------------------------------------------------------
# refusals, each naming what to change

PER_POINT_TOOLS = {
    "log_likelihood": functools.partial(log_likelihood, num_samples=10, progress=False),
    "importance_estimate": functools.partial(importance_estimate, num_samples=10, progress=False),
    "iw_svi": functools.partial(iw_svi, num_steps=2, num_particles=2, num_samples=10, progress=False),
    "inference_gaps": functools.partial(
        inference_gaps, num_samples=10, elbo_samples=10, num_steps=2, num_particles=2, progress=False
    ),
}


@pytest.mark.parametrize("tool", PER_POINT_TOOLS)
@pytest.mark.parametrize("program", names("global"), indirect=True)
def test_per_point_tools_refuse_global_latents(program, tool):
    with pytest.raises(ValueError, match="global"):
        program.call(PER_POINT_TOOLS[tool], **program.eval_options)


@pytest.mark.parametrize("tool", ["iw_svi", "inference_gaps"])
@pytest.mark.parametrize("program", names("discrete"), indirect=True)
def test_gaussian_proposal_tools_refuse_discrete_latents(program, tool):
    with pytest.raises(ValueError, match="Gaussian"):
        program.call(PER_POINT_TOOLS[tool])
