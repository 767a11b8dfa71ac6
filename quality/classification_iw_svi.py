"""Classification of the surviving mutants of pyro_noisevae/evaluation/iw_svi.py (tests/evaluation/test_eval_iw_svi.py).

Baseline (first run, 2026-12-02T16:32Z, all 356 mutants checked, no test added): 259 killed, 97 survived. The tests
compare IW-SVI with the exact log p(x) of a linear-Gaussian model and the ELBO fit with the closed-form KL, so the
numerics of the fit are well covered. What survives: the objective switch (for a linear-Gaussian model the ELBO and
the IWAE optima coincide: the diagonal Gaussian family contains the posterior), `init=`, keyword arguments,
`max_plate_nesting` / `data_plate` given by the caller, argument names in messages, the autoguide and
DenoisingGuide paths, and the progress bar. Blind spots name the test that would kill them (in
tests/evaluation/test_eval_iw_svi.py); none was written here.
"""
E = "equivalent"
B = "blind spot"
NDIMS = (E, "the second element of `_unwrap_normal`'s result (the reinterpreted ndims) is never read: its only caller, "
            "`from_guide`, unpacks `normal, _` and takes the event dim from the site's `fn.event_dim`")
DEFAULT_NUM = (E + " (practically)", "a default count one larger (steps, particles, samples, chunk or batch size): "
               "the same estimator with one more step / draw / row, not observable beyond Monte Carlo error")
MSG = (B, "`test_argument_errors` with full messages: match \"^num_particles must be\", \"^lr must be\", "
          "\"^lr_decay must be\", \"^batch_size must be an integer >= 1 or None\" (now only a word of each, which "
          "FitLoop's or another check's message also contains)")
AUTOGUIDE = (B, "`test_autoguide_is_refused`: iw_svi / inference_gaps with an AutoNormal guide must raise "
                "refuse_autoguide's message in full (\"the guide is a AutoNormal ... AMORTIZED ... importance_estimate "
                "instead.\"); no test passes an autoguide. (Inside the chunk loop the guide is wrapped by the chunk, "
                "so the later check in from_guide no longer sees an AutoGuide)")
NESTING = (B, "`test_max_plate_nesting_is_checked`: `max_plate_nesting=0` must raise check_nesting's message (and a "
              "valid larger value give the same estimate); the tests never pass max_plate_nesting")
NESTING_EQ = (E + " (practically)", "`max_plate_nesting` left None is inferred again from the same chunk by "
              "fit_local_guide / traced_pass (data_plate_nesting); only a caller-given larger value would be "
              "replaced, which places the particle dim differently but gives the same values in distribution")
DATA_PLATE = (B, "`test_named_data_plate`: a model with a second, non-data plate, called with data_plate=\"data\"; "
                 "with the name dropped the probe / pass infers it and refuses or picks the wrong plate; the tests "
                 "only use data_plate=None")
KW = (B, "`test_keyword_arguments_reach_model_and_guide`: model and guide taking a keyword that changes the "
         "likelihood (e.g. `noise_scale=`), passed to iw_svi / fit_local_guide; without it the fit (or the trace of "
         "from_guide, or LocalGaussianGuide.__call__) runs with the default and misses the exact log p(x)")
COUNTS = (B, "`test_options_reach_fit_local_guide`: a spy on `iw_svi.fit_local_guide` (monkeypatch) records "
             "num_particles, lr and lr_decay, which must be the values given (all tests use the defaults lr=0.05, "
             "lr_decay=0.1 or a count whose loss in accuracy stays within the tolerance)")
CHUNKS = (B, "`test_batch_size_splits_the_fit`: with 20 points and batch_size=7 IW-SVI must fit 3 local guides "
             "(spy on fit_local_guide: batch shapes 7, 7, 6); with data_arg or batch_size replaced by None the data "
             "go in one chunk and the values stay right, so the existing batches-of-7 test cannot tell")
BAR = (B + " (cosmetic)", "`test_progress_bar`: with progress=True (the default) a bar \"IW-SVI (T=..., K=...)\" is "
                          "written to stderr (capsys) and removed (leave=False); progress=False writes nothing; the "
                          "tests always pass progress=False")
PER_ROW = (B, "`test_guide_with_a_parameter_row_per_point`: a hand-written guide with a pyro.param of one row per data "
              "point and batch_size < N must be evaluated by subsampling the data plate (make_chunks probes the guide "
              "and then the model); with either replaced by None the probe fails or is skipped")
OBJ = (B, "`test_iwae_and_elbo_objectives_differ`: on a model whose posterior is not in the diagonal Gaussian family "
          "(e.g. the small VAE of the existing test, or a correlated 2-d posterior) the IWAE-K fit (K=50) is wider "
          "than the ELBO fit (mass-covering vs mode-seeking) and has the higher IWAE-K bound; on the linear-Gaussian "
          "model both optima are the exact posterior, so no current test can tell the objectives apart")
ADAM = (E + " (practically)", "the loss stays a constant positive multiple of the true one (the true loss is "
        "-(1/S) times the sum of all S x B log weights; `.mean(None)` gives 1/B of it, `.mean(1)` summed over "
        "particles S/B of it), and Adam's steps do not change under a constant scale of the gradient, up to its "
        "eps = 1e-8")
FPE = (B, "`test_non_finite_bound_raises`: a model whose log density is -inf at the guide's draws (e.g. an observation "
          "outside a Uniform support) must raise FloatingPointError matching \"bound became .* at step 0; lower lr or "
          "check the model's support for these data\"")
SIGNALS = (B, "`test_fit_local_guide_lets_keyboard_interrupt_propagate`: a model that raises SIGINT in the process "
              "(signal.raise_signal) on its 3rd call must make fit_local_guide raise KeyboardInterrupt; with "
              "handle_signals=True FitLoop's handler stops quietly after the step and a half-fitted guide is returned "
              "as if fitted (what the comment above the FitLoop call rules out)")
C = {
    "_unwrap_normal#2": NDIMS, "_unwrap_normal#3": NDIMS, "_unwrap_normal#4": NDIMS, "_unwrap_normal#8": NDIMS,
    "LocalGaussianGuide.__init__#3": (B, "`test_local_guide_needs_a_callable`: `LocalGaussianGuide(None, {})` must raise "
                                         "TypeError \"guide must be callable, got NoneType\" (the existing \"callable\" "
                                         "check goes through iw_svi's check_programs instead)"),
    "LocalGaussianGuide.__init__#4": (B, "`test_local_guide_needs_a_callable` with a non-None value (e.g. 3: \"got int\")"),
    "LocalGaussianGuide.__call__#3": KW,
    "amortized_pair#1": (B, "`test_denoising_guide_is_refined_through_its_base_guide`: iw_svi / fit_local_guide with a "
                            "DenoisingGuide (M > 1) and its wrapped model must unwrap the model from the corruption "
                            "plate (`unwrap_model(None)` fails) and give the base guide's exact log p(x); no test "
                            "passes a DenoisingGuide"),
    "fit_local_guide#3": DEFAULT_NUM, "fit_local_guide#4": DEFAULT_NUM,
    "fit_local_guide#23": MSG, "fit_local_guide#36": MSG, "fit_local_guide#45": MSG,
    "fit_local_guide#26": (B, "`test_argument_errors`: num_steps=True and num_steps=2.5 must raise \"num_steps must be an "
                              "integer >= 0\"; with `and` only negative integers are refused"),
    "fit_local_guide#44": (B, "`test_argument_errors`: lr_decay=1.5 with num_steps=0 must raise; with num_steps > 0 "
                              "FitLoop's own check (\"lr_decay (final / initial learning rate) must be in (0, 1]\") "
                              "raises instead, which is why the existing check passes"),
    "fit_local_guide#47": (B, "as #44: lr_decay=1.5 with num_steps=0"),
    "fit_local_guide#48": NESTING, "fit_local_guide#49": NESTING,
    "fit_local_guide#54": (B, "`test_argument_errors`: match \"init must be a LocalGaussianGuide or None, got str\" "
                              "(only \"init\" is matched)"),
    "fit_local_guide#55": (B, "`test_fit_local_guide_refuses_global_latents`: a model with a global latent (outside the "
                              "data plate) must be refused by check_local before any step when init is None; with the "
                              "test inverted the refusal is skipped (the autoguide refusal survives in from_guide)"),
    "fit_local_guide#61": DATA_PLATE,
    "fit_local_guide#67": (E, "fit_local_guide then calls `LocalGaussianGuide.from_guide(guide)`, which calls "
                              "`refuse_autoguide(guide)` on the same object first: the same error, from the next line"),
    "fit_local_guide#79": (B, "`test_init_is_the_starting_point`: fit_local_guide(..., init=q, num_steps=0) must return "
                              "q's loc and scale exactly (and leave q unchanged); `init` is never passed by a test"),
    "fit_local_guide#85": KW,
    "fit_local_guide#93": (B, "`test_one_step_moves_the_parameters`: num_steps=1 must change loc / log_scale from the "
                              "encoder's values (the mutant returns the start unchanged for 1 step and runs a "
                              "zero-epoch loop for 0, which also returns the start)"),
    "fit_local_guide#95": (E, "`loop` is rebound to the FitLoop before `negative_bound` first reads it; the initial "
                              "value is never read"),
    "fit_local_guide#103": DATA_PLATE,
    "fit_local_guide#112": (E + " (practically)", "`check` dropped: traced_log_weights's default is True, so every step "
                            "is checked, not only the first: slower, same values"),
    "fit_local_guide#113": (E + " (practically)", "the structural check of the traced pass moves from the first step to "
                            "the later ones; the same structure was already checked by probe_structure / check_local "
                            "(init None) or by the LocalGaussianGuide messenger's shape check (init given), so only "
                            "a program whose structure changes between calls could tell"),
    "fit_local_guide#114": (E + " (practically)", "as #113: the check runs on the second step instead of the first"),
    "fit_local_guide#116": OBJ, "fit_local_guide#120": OBJ, "fit_local_guide#121": OBJ,
    "fit_local_guide#122": ADAM, "fit_local_guide#123": ADAM,
    "fit_local_guide#128": FPE, "fit_local_guide#129": FPE, "fit_local_guide#130": FPE,
    "fit_local_guide#137": (E, "`handle_signals=None` is falsy: FitLoop installs no handler, as with False"),
    "fit_local_guide#143": SIGNALS, "fit_local_guide#149": SIGNALS,
    "iw_svi_estimate#1": DEFAULT_NUM, "iw_svi_estimate#2": DEFAULT_NUM, "iw_svi_estimate#5": DEFAULT_NUM,
    "iw_svi_estimate#6": DEFAULT_NUM, "iw_svi_estimate#7": DEFAULT_NUM,
    "iw_svi_estimate#10": BAR,
    "iw_svi_estimate#23": (B, "`test_batch_size_none_is_one_batch`: batch_size=None (allowed) must fit all points in "
                              "one batch; with allow_none False / None / dropped it raises"),
    "iw_svi_estimate#26": (B, "`test_batch_size_none_is_one_batch` (see #23)"),
    "iw_svi_estimate#29": (B, "`test_batch_size_none_is_one_batch` (see #23)"),
    "iw_svi_estimate#27": MSG,
    "iw_svi_estimate#30": NESTING, "iw_svi_estimate#31": NESTING,
    "iw_svi_estimate#37": DATA_PLATE, "iw_svi_estimate#51": DATA_PLATE, "iw_svi_estimate#91": DATA_PLATE,
    "iw_svi_estimate#101": DATA_PLATE, "iw_svi_estimate#117": DATA_PLATE,
    "iw_svi_estimate#43": AUTOGUIDE,
    "iw_svi_estimate#45": PER_ROW, "iw_svi_estimate#46": PER_ROW,
    "iw_svi_estimate#49": CHUNKS, "iw_svi_estimate#50": CHUNKS,
    "iw_svi_estimate#61": BAR, "iw_svi_estimate#62": BAR, "iw_svi_estimate#63": BAR, "iw_svi_estimate#65": BAR,
    "iw_svi_estimate#66": BAR, "iw_svi_estimate#67": BAR, "iw_svi_estimate#68": BAR, "iw_svi_estimate#69": BAR,
    "iw_svi_estimate#73": NESTING_EQ, "iw_svi_estimate#74": NESTING_EQ, "iw_svi_estimate#92": NESTING_EQ,
    "iw_svi_estimate#102": NESTING_EQ, "iw_svi_estimate#118": NESTING_EQ, "iw_svi_estimate#122": NESTING_EQ,
    "iw_svi_estimate#96": (E, "`objective` dropped: fit_local_guide's default objective is \"iwae\", the value given"),
    "iw_svi_estimate#97": COUNTS, "iw_svi_estimate#99": COUNTS, "iw_svi_estimate#100": COUNTS,
    "iw_svi_estimate#103": KW,
    "iw_svi_estimate#114": (E + " (practically)", "chunk_size dropped: estimate_chunks then draws 100 at a time; the "
                            "estimate is the same, only the memory per pass changes"),
    "iw_svi#1": DEFAULT_NUM, "iw_svi#2": DEFAULT_NUM, "iw_svi#3": DEFAULT_NUM,
    "iw_svi#4": BAR, "iw_svi#10": BAR, "iw_svi#17": BAR,
    "iw_svi#15": (B, "`test_options_reach_fit_local_guide` (see the COUNTS rows): iw_svi must pass num_particles on "
                     "(spy on iw_svi_estimate or fit_local_guide)"),
}
PREFIX = {"refuse_autoguide": AUTOGUIDE}
