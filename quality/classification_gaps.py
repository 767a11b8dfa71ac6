"""Classification of the surviving mutants of pyro_noisevae/evaluation/gaps.py (tests/evaluation/test_eval_gaps.py).

Baseline (first run, 2026-12-02T16:28Z, 333 mutants, no test added): 239 killed (71.8 %), 94 survived (74 blind
spots, 20 equivalent). Issue 15 added to tests/evaluation/test_eval_gaps.py (see quality/notes_gaps.md for which
test kills which mutants): test_summary_entries (hand-computed summary of a hand-made InferenceGaps),
test_default_log_px_is_iw_svi, test_counts_reach_the_estimators (spies on estimate_chunks / fit_local_guide: k,
chunk_size and the fit options, for log_px "iwae", "iw-svi" and given), test_batch_size_none_is_one_batch_and_no_
steps_keep_the_encoder, test_named_data_plate (repeated measurements: every site in plates "data" and "reps"; a spy on
site_structure sees the name in every structure decision), test_max_plate_nesting_is_checked,
test_a_given_max_plate_nesting_is_used (too small for two plates: Pyro's plate collision, also with no step),
test_keyword_arguments_reach_model_and_guide (a required keyword `noise`), test_given_log_px_takes_the_estimates_dtype,
test_given_log_px_moves_to_the_estimates_device (CUDA only, skipped on CPU, not yet run on a GPU),
test_guide_with_a_parameter_row_per_point, test_autoguide_is_refused, test_argument_errors_name_the_argument (full
messages), test_progress_bar (capsys) and test_documented_defaults (spies: the signature's counts reach the
estimators and the fits). The mutmut run with them (764 s) and the rerun of its 19 survivors with the final test file
(320 s, 2026-12-02T18:25Z) kill every blind spot of the baseline, plus 11 mutants the baseline classified equivalent:
the six default counts (#3-#6, #9, #10: test_documented_defaults), `#172` (chunk_size dropped) and `#226` (objective
dropped), which the spies see, and `#155` / `#176` / `#180` (test_a_given_max_plate_nesting_is_used). Result: 324 of
333 killed (97.3 %); the 9 survivors are equivalent.
"""
E = "equivalent"
NESTING_EQ = (E + " (practically)", "the fits of q* and of the IW-SVI proposal come after the amortized pass, which "
              "runs with the caller's `max_plate_nesting`: a value too small for the program raises there first "
              "(test_a_given_max_plate_nesting_is_used), and a large enough one gives the same values in distribution "
              "as the nesting the fit infers itself (data_plate_nesting) when given None; only where the particle dim "
              "sits changes")
LR_DECAY = (E + " (practically)", "lr_decay in (1, 2] (or any value > 1 with `high` dropped) then passes this check, "
            "but fit_local_guide's own `check_float(lr_decay, \"lr_decay\", high=1.0)` raises the same ValueError, with "
            "the same message, for the first chunk, after one amortized pass; no value is ever computed with it")
CPU = (E + " (on CPU)", "`.to(device=None)` / no device leaves the given log_px where it is; only a log_px given on "
                        "another device than the estimates (CUDA) is affected: the CUDA-only "
                        "test_given_log_px_moves_to_the_estimates_device is written to kill it (skipped here, not yet run "
                        "on a GPU)")
C = {
    "inference_gaps#60": LR_DECAY, "inference_gaps#63": LR_DECAY,
    "inference_gaps#156": (E, "the branch runs only when `max_plate_nesting` is None: setting it to None again leaves it "
                              "None, and every pass and fit then infers it from the same chunk"),
    "inference_gaps#195": NESTING_EQ, "inference_gaps#200": NESTING_EQ,
    "inference_gaps#222": NESTING_EQ, "inference_gaps#227": NESTING_EQ,
    "inference_gaps#239": CPU, "inference_gaps#241": CPU,
}
