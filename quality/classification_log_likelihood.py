"""Classification of the surviving mutants of pyro_noisevae/evaluation/log_likelihood.py
(tests/evaluation/test_eval_log_likelihood.py).

Baseline (2026-12-02T17:58Z, the suite before issue 15's tests): 777 mutants, 560 killed, 203 survived, 13 no tests
(`ImportanceEstimate.summary` was never called), 1 timeout (`iwae_bound#63`) — 72.1 %. The 217 not killed were rerun
after the tests listed in quality/notes_log_likelihood.md were added; what survives is below, all equivalent.
"""
E = "equivalent"
UNREACHABLE = (E + " (unreachable)", "the check `frame.dim is None or frame.dim < -max_plate_nesting` cannot fire: the "
                                     "data frame comes from `_plates`, which keeps vectorized plates only (their `dim` is "
                                     "never None), and a data plate left of `-max_plate_nesting` collides with the particle "
                                     "plate inside Pyro first (`ValueError: at plates \"data\" and "
                                     "\"num_particles_vectorized\", collide at dim=-2`, tested by "
                                     "`test_a_given_max_plate_nesting_is_used_not_inferred`); the guard is defensive")
NAN_SE = (E, "with one group (`count == 1`) the variance is `(b^2 - b^2) / 0 = 0 / 0 = NaN` (clamp keeps NaN), so "
             "computing it instead of `full_like(mean, nan)` gives the same NaN (`test_iwae_bound_equals_a_hand_computation` "
             "checks R = 1 gives NaN)")
C = {
    "traced_log_weights#17": (E, "`vectorize=True` dropped: `importance_traces`' default is `vectorize=True`"),
    "traced_log_weights#43": UNREACHABLE,
    "traced_log_weights#47": UNREACHABLE,
    "traced_pass#29": (E + " (practically)", "`max(2, nesting)` instead of `max(1, nesting)` only for programs with at "
                                             "most one plate dim: the particle plate then sits one dim further left; "
                                             "the log weights are the same (per-point reduction keeps the data plate "
                                             "by name)"),
    "traced_pass#55": (E + " (performance)", "`check=first` dropped: `traced_log_weights` then checks on every pass "
                                             "(default `check=True`), repeating the first pass's validation; "
                                             "`test_the_traced_path_validates_each_data_chunk` kills the opposite "
                                             "mutants (no check on the first pass)"),
    "iwae_bound#3": (E + " (practically)", "default `chunk_size=501` instead of 500: with the default K = 5 both give "
                                           "`500 // 5 = 501 // 5 = 100` groups per pass, i.e. the same draws; for other "
                                           "K only the split of the draws into passes (memory) changes"),
    "iwae_bound#138": (E, "`log_w.shape[+1]` is `log_w.shape[-1]` for the 2-D `(S, B)` log weights"),
    "iwae_bound#173": NAN_SE,
    "iwae_bound#183": NAN_SE,
}
