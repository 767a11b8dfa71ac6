"""Classification of the surviving / untested mutants of pyro_noisevae/infer/importance.py
(tests/infer/ + tests/conformance/test_conformance_evaluation.py). Partial: the run was stopped by the time box."""
E, B = "equivalent", "blind spot"
CHUNKS = (B, "[I1] `SetSubsample` has no observable effect in these tests: setting a plate's indices is never checked. This is "
             "the issue's 'N > batch_size never run' gap. Add `test_chunked_evaluation_equals_single_batch` (evaluation / "
             "`iw_svi` / `inference_gaps` with N > batch_size equal to the single-batch run and the exact answer) and "
             "`test_looped_particles_share_one_minibatch` (`vectorize_particles=False` with `plate(..., subsample_size=B)`: every "
             "particle trace has the same indices)")
REDUCE = (B, "[T8/I2] no site has a non-kept, non-singleton batch dim, so `_reduce_to` never sums: the nested-plate test T8 "
             "(`plate(\"pixels\", 2)` inside the data plate = `.to_event(1)`) run through evaluation's per-point log weights")
PAD = (B, "[I3] left padding never happens: per-point log weights with looped particles (`particle_dim=None`, lp of shape (B,)) "
          "are never computed. Add `test_per_point_log_weights_looped_equals_vectorized`")
AKL = (B, "[I4] the `analytic_kl=True` path of `per_point_log_weights` runs in no test of tests/infer or the conformance "
          "evaluation. Add `test_per_point_log_weights_analytic_kl`: for a Normal/Normal mean-field pair it equals "
          "log p(x|z) − KL(q‖p) by hand; a latent without a registered KL keeps log p − log q; masked and (with scaled=True) "
          "β-scaled latents are masked/scaled")
SCALED = (B, "[I5] `scaled=True` is never used: add a case where a β-scaled latent and a `poutine.scale`d observation give "
             "the scaled per-point weights (and `scaled=False` the unscaled ones)")
MASK = (B, "[I6] `poutine.mask` is never exercised in per-point log weights: a per-datum mask on the observation must drop "
           "the masked terms")
NOPLATE = (B, "[I7] the 'no plate over data points' error is not tested here: `per_point_log_weights` on a program without a "
              "data plate must raise `ValueError` matching the whole message")
MOREDIMS = (B, "[I8] the 'more dims than the plates declare' error is never raised in tests: a site with an undeclared batch dim "
               "must raise `ValueError` matching `has batch shape \\(.*\\), more dims than the plates declare`")
EXTRA = (B, "[I9] `max_plate_nesting` larger than the plates used (dims outside the kept ones) is never evaluated: "
            "per-point log weights with `max_plate_nesting=3` must equal those with the inferred nesting")
NOTTENSOR = (B, "a site whose `log_prob` returns a float must raise `TypeError` matching `log_prob returned float, expected a tensor`; no test")


def classify(sid, old, new):
    if sid.startswith("SetSubsample._pyro_sample#"):
        if "or msg" in new:
            return (E, "a non-subsample sample site cannot carry a plate's name: Pyro refuses duplicate site names in a trace")
        return CHUNKS
    if sid.startswith("_reduce_to#"):
        return PAD if "(2,)" in new else REDUCE
    if sid.startswith("per_point_log_weights#"):
        n = int(sid.split("#")[1])
        if 4 <= n <= 8:
            return NOPLATE
        if n == 12:
            return (E + " (for values)", "one more leading size-1 dim is padded, never summed, and dropped by the final reshape; "
                    "it does loosen the 'more dims than declared' check, which I8 would catch")
        if n == 20:
            return (E, "adds `None` to the kept dims, which no dim equals")
        if 25 <= n <= 72:
            return AKL
        if 73 <= n <= 76:
            return SCALED
        if n in (79, 82) or "mask" in new.lower() and "mask" in old:
            return MASK
        if n in (89, 90):
            return NOTTENSOR
        if 91 <= n <= 100:
            return MOREDIMS
        if n in (104, 105, 106):
            return (E + " (unreachable)", "`site_structure` refuses traces without sample sites before this line; only a "
                                          "hand-built SiteStructure could reach it")
        if n == 116:
            return PAD
        if n in (127, 128, 129, 130):
            return EXTRA
    return None


NOGLOBAL = (B, "[T12/I10] global latents: `_global_draw` and `_ReplayGlobals` run in no test of tests/infer or the conformance "
               "evaluation. Add the global-latent test T12 (IWAE with a global `mu`: one global draw replayed unexpanded into "
               "every particle, loss vs the exact evidence of a linear-Gaussian model)")
REPR = (B + " (minor)", "`SiteStructure.__repr__` is never called by a test: a one-line `repr` check")
PREFIX = {"_global_draw": NOGLOBAL, "_ReplayGlobals.__init__": NOGLOBAL, "_ReplayGlobals._pyro_sample": NOGLOBAL,
          "SiteStructure.__repr__": REPR}
C = {}

_base = classify
DUP = (B, "[I11] the missing-latent / guide-only-site checks of `_trace_pair` never fire in these tests (IWAE_ELBO's own "
          "checks refuse such programs first): test them through evaluation (`importance_traces(..., check=True)` / "
          "`evaluate`) with full-message matches, or drop the duplicate check")
MATCH = (B, "[I12] `check_model_guide_match` is never made to fail here: a model/guide pair whose site shapes disagree must "
            "raise under validation with the default `match=True` and the given `max_plate_nesting`")
MSG = (B, "message text only: the test matches a fragment; match the whole message")


def classify(sid, old, new):  # noqa: F811
    r = _base(sid, old, new)
    if r:
        return r
    n = int(sid.split("#")[1])
    if sid.startswith("probe_traces#"):
        return (B, "[I13] programs probed with keyword arguments (e.g. `num_data=`) are never used in evaluation; the probe "
                   "must forward them")
    if sid.startswith("infer_max_plate_nesting#"):
        if n == 14:
            return (E, "sequential (non-vectorized) plates have `dim None`, so `or` keeps the same frames")
        return (B, "`infer_max_plate_nesting` of a program without plates (must be 0) is never tested")
    if sid.startswith("_subsample_indices#") or sid.startswith("_trace_pair#") and 19 <= n <= 23:
        return CHUNKS
    if sid.startswith("_trace_pair#"):
        if n == 1 or 58 <= n <= 64:
            return MATCH
        if n == 69:
            return (B + " (minor)", "shape checks with `check=False` under validation: no test passes `check=False` a program "
                                    "whose site shapes are wrong")
        return DUP
    if sid.startswith("importance_traces#"):
        return (B + " (minor)", "the defaults / `check=False` of `importance_traces` are never relied on by a test")
    if sid.startswith("check_local#"):
        if n in (15, 16):
            return (B, "[I14] per-point evaluation of a model with a global latent (not guide-only) must raise the "
                       "'Condition on the global latents' error; no test reaches it")
        return MSG
    if sid.startswith("per_point_log_weights#") and n in (131, 132):
        return EXTRA
    return None
