"""Classification of the surviving mutants of pyro_noisevae/evaluation/iw_svi.py (tests/evaluation/test_eval_iw_svi.py).

Baseline (first run, 2026-12-02T16:32Z, 356 mutants, no test added): 259 killed (72.8 %), 97 survived (67 blind
spots, 30 equivalent). Issue 15 added to tests/evaluation/test_eval_iw_svi.py (see quality/notes_iw_svi.md for which
test kills which mutants): test_options_reach_fit_local_guide and test_batch_size_splits_the_fit (a spy on
fit_local_guide), test_named_data_plate (repeated measurements, every site in plates "data" and "reps"; a spy on
site_structure sees the name in every structure decision), test_max_plate_nesting_is_checked,
test_a_given_max_plate_nesting_is_used, test_keyword_arguments_reach_model_and_guide (a required keyword `noise`),
test_guide_with_a_parameter_row_per_point, test_init_is_the_starting_point, test_one_step_moves_the_parameters (Adam's
first step is lr per coordinate), test_autoguide_is_refused, test_denoising_guide_is_refined_through_its_base_guide,
test_fit_local_guide_refuses_global_latents (also with num_steps=0), test_non_finite_bound_raises,
test_fit_local_guide_lets_keyboard_interrupt_propagate (a real SIGINT), test_local_guide_needs_a_callable,
test_iwae_and_elbo_objectives_differ (correlated posterior: the ELBO fit stays at the mean-field optimum sd
Lambda_ii^-1/2, the IWAE-20 fit widens), test_progress_bar (capsys), test_argument_errors_give_the_whole_message and
test_documented_defaults (spies: the signatures' counts reach the fit, FitLoop and the estimate). The mutmut run with
them (1111 s, 357 mutants) and the rerun of its 30 survivors with the final test file (425 s, 2026-12-02T18:33Z) kill
every blind spot of the baseline, plus 15 of the 30 mutants it classified equivalent: the ten default counts (fit_local_guide#3,
#4, iw_svi_estimate#1, #2, #5, #6, #7, iw_svi#1-#3: test_documented_defaults), `iw_svi_estimate#96` (objective
dropped) and `#114` (chunk_size dropped), which the spies see, and `iw_svi_estimate#73`, `#118`, `#122`
(test_a_given_max_plate_nesting_is_used). Result: 342 of 357 killed (95.8 %); the 15 survivors are equivalent.

Note: the source changed since the baseline (the FloatingPointError message now reports the bound, `-loss`, instead
of the loss), which adds one mutant to `fit_local_guide` and shifts its later ids by one (baseline `#137` is `#138`).
"""
E = "equivalent"
NDIMS = (E, "the second element of `_unwrap_normal`'s result (the reinterpreted ndims) is never read: its only caller, "
            "`from_guide`, unpacks `normal, _` and takes the event dim from the site's `fn.event_dim`")
NESTING_EQ = (E + " (practically)", "the fit's `max_plate_nesting` only: the evaluation pass after it runs with the "
              "caller's value, so a value too small for the program raises there anyway (Pyro's plate collision, "
              "test_a_given_max_plate_nesting_is_used), and a large enough one gives the same values in distribution "
              "as the nesting fit_local_guide infers itself (data_plate_nesting) from None; only where the particle "
              "dim sits during the fit changes")
CHECK = (E + " (practically)", "where the fit's per-step structural check / Pyro validation runs (every step, or the "
         "second step instead of the first): the same program was already validated before any step, by "
         "probe_structure / check_local and by from_guide's trace (init None) or by the LocalGaussianGuide messenger's "
         "shape check (init given), and the evaluation pass after the fit checks its first chunk again; only a program "
         "whose validity depends on the particular draws could tell, and only at random")
ADAM = (E + " (practically)", "the loss stays a constant positive multiple of the true one (the true loss is "
        "-(1/S) times the sum of all S x B log weights; `.mean(None)` gives 1/B of it, `.mean(1)` summed over "
        "particles S/B of it), and Adam's steps do not change under a constant scale of the gradient, up to its "
        "eps = 1e-8; the non-finite check sees the same +-inf / NaN")
C = {
    "_unwrap_normal#2": NDIMS, "_unwrap_normal#3": NDIMS, "_unwrap_normal#4": NDIMS, "_unwrap_normal#8": NDIMS,
    "fit_local_guide#67": (E, "fit_local_guide then calls `LocalGaussianGuide.from_guide(guide)`, which calls "
                              "`refuse_autoguide(guide)` on the same object first: the same error, with the same message "
                              "(test_autoguide_is_refused), from the next line"),
    "fit_local_guide#95": (E, "`loop` is rebound to the FitLoop before `negative_bound` first reads it; the initial "
                              "value is never read"),
    "fit_local_guide#112": CHECK, "fit_local_guide#113": CHECK, "fit_local_guide#114": CHECK,
    "fit_local_guide#122": ADAM, "fit_local_guide#123": ADAM,
    "fit_local_guide#138": (E, "`handle_signals=None` is falsy: FitLoop's `_Interrupt(enabled=None)` installs no "
                               "handler, as with False (test_fit_local_guide_lets_keyboard_interrupt_propagate passes)"),
    "iw_svi_estimate#74": (E, "the branch runs only when `max_plate_nesting` is None: setting it to None again leaves it "
                              "None, and the fit and the pass then infer it from the same chunk"),
    "iw_svi_estimate#92": NESTING_EQ, "iw_svi_estimate#102": NESTING_EQ,
}
