"""Classification of the surviving mutants of pyro_noisevae/evaluation/gaps.py (tests/evaluation/test_eval_gaps.py).

Baseline (first run, 2026-12-02T16:28Z, all 333 mutants checked, no test added): 239 killed, 94 survived. The tests
check the three gaps against closed-form KL divergences, so every mutant that changes a gap's value is killed; what
survives is plumbing the tests never look at: the keys and standard errors of `summary()`, argument names in error
messages, `max_plate_nesting` / `data_plate` / keyword arguments passed by the caller (the tests pass none), the
counts given to the estimator and to the per-point fit (the tests' tolerances are in units of the reported standard
error, so fewer samples or steps still pass), and the progress bar. Blind spots name the test that would kill them
(all in tests/evaluation/test_eval_gaps.py); none was written here.
"""
E = "equivalent"
B = "blind spot"
SUMMARY = (B, "`test_summary_entries`: `summary()` must hold exactly the keys log_px, elbo_amortized, elbo_optimal, the "
              "three gaps and log_px_method, each equal to `summarize(value, its stderr)` (the Monte Carlo error "
              "entry included); only `log_px_method` and one gap's `num_points` are read now")
DEFAULT_NUM = (E + " (practically)", "a default count one larger (samples, steps, particles, chunk or batch size): the "
               "same estimator with one more draw / step / row, not observable beyond Monte Carlo error")
MSG = (B, "`test_argument_errors_name_the_argument`: pass a bad value of each argument (num_samples=0, batch_size=0, "
          "lr=0, lr_decay=1.5) and match the argument's name at the start of the message (\"^num_samples must be\"); "
          "today only elbo_samples is checked")
NESTING = (B, "`test_max_plate_nesting_is_checked_and_used`: `max_plate_nesting=0` must raise the check_nesting "
              "message, and a valid larger value (e.g. 3) must give the same gaps as None within Monte Carlo error; "
              "the tests never pass max_plate_nesting")
NESTING_EQ = (E + " (practically)", "`max_plate_nesting` left None here is inferred again, from the same chunk, by "
              "`traced_pass` / `fit_local_guide` (data_plate_nesting); only a caller-given larger value would be "
              "replaced by the inferred one, which allocates the particle dim differently but gives the same values "
              "in distribution")
DATA_PLATE = (B, "`test_named_data_plate`: a model with a second (non-data) plate outside the data plate, called "
                 "with `data_plate=\"data\"`; with the name dropped the probe / fit / pass must infer it and either "
                 "refuses or picks the wrong plate; the tests only use the default data_plate=None")
KW = (B, "`test_keyword_arguments_reach_model_and_guide`: a model and guide that take a keyword (e.g. "
         "`scale=`) changing the likelihood, called as `inference_gaps(model, guide, x, scale=..., log_px=exact)`: "
         "without `**kw` the fit of q* (or of the IW-SVI proposal) runs with the default and the gaps move off the "
         "closed-form KL")
COUNTS = (B, "`test_counts_reach_the_estimators`: monkeypatch `gaps.estimate_chunks` and `gaps.fit_local_guide` with "
             "spies that record k and the fit's num_steps / num_particles / lr / lr_decay, and check that the "
             "amortized ELBO uses elbo_samples (num_samples for log_px=\"iwae\", with num_samples != elbo_samples), "
             "q* and the IW-SVI proposal get the given fit options; a cheaper value-based check: num_steps=0 makes "
             "each q* equal the encoder's output exactly (loc and scale), which kills the dropped num_steps / **fit")
IWAE_K = (B, "`test_counts_reach_the_estimators` (see above): with log_px=\"iwae\" the amortized pass must use "
             "num_samples, otherwise elbo_samples; the only \"iwae\" test uses num_samples == elbo_samples == 2000, so "
             "the branch cannot be told apart")
BAR = (B + " (cosmetic)", "`test_progress_bar`: with progress=True (the default) a bar labelled \"inference gaps\" is "
                          "written to stderr (capsys) and removed at the end (leave=False); with progress=False nothing "
                          "is written; the tests always pass progress=False")
CPU = (E + " (on CPU)", "`.to(device=None)` / no device leaves the given log_px where it is; only a given log_px on "
                        "another device than the estimates (CUDA) would be affected")
DTYPE = (B, "`test_given_log_px_takes_the_estimates_dtype`: a float32 `log_px` with a float64 model must come back "
            "as float64 `gaps.log_px` (all tests give a float64 log_px to a float64 model)")
PER_ROW = (B, "`test_guide_with_a_parameter_row_per_point`: a hand-written guide with a `pyro.param` of one row per "
              "data point and batch_size < N; make_chunks must probe the guide, choose subsampling of the data plate "
              "and probe the model for the plate (subsample_chunks): with the model or the guide replaced by None the "
              "probe fails (model) or is skipped (guide: the data get sliced and the rows misaligned); every test "
              "uses an amortized guide, for which make_chunks only slices args[0]")
LR_DECAY = (E + " (practically)", "lr_decay in (1, 2] then passes this check, but fit_local_guide's own "
            "`check_float(lr_decay, \"lr_decay\", high=1.0)` raises the same ValueError for the first chunk, after "
            "one amortized pass; no value is ever computed with it")
C = {
    "inference_gaps#1": (B, "`test_default_log_px_is_iw_svi`: call without log_px and check log_px_method == "
                            "\"iw-svi\" (a garbled default raises \"log_px must be one of\")"),
    "inference_gaps#2": (B, "`test_default_log_px_is_iw_svi` (see #1)"),
    "inference_gaps#3": DEFAULT_NUM, "inference_gaps#4": DEFAULT_NUM, "inference_gaps#5": DEFAULT_NUM,
    "inference_gaps#6": DEFAULT_NUM, "inference_gaps#9": DEFAULT_NUM, "inference_gaps#10": DEFAULT_NUM,
    "inference_gaps#13": BAR,
    "inference_gaps#25": MSG, "inference_gaps#28": MSG, "inference_gaps#29": MSG, "inference_gaps#35": MSG,
    "inference_gaps#39": MSG, "inference_gaps#44": MSG, "inference_gaps#45": MSG, "inference_gaps#50": MSG,
    "inference_gaps#53": MSG, "inference_gaps#54": MSG, "inference_gaps#56": MSG, "inference_gaps#61": MSG,
    "inference_gaps#62": MSG,
    "inference_gaps#40": (B, "`test_batch_size_none_is_one_batch`: batch_size=None (documented as allowed by "
                             "check_positive_int(allow_none=True)) must run as one batch; `allow_none=None/False` or "
                             "dropped raises"),
    "inference_gaps#43": (B, "`test_batch_size_none_is_one_batch` (see #40)"),
    "inference_gaps#46": (B, "`test_batch_size_none_is_one_batch` (see #40)"),
    "inference_gaps#47": NESTING, "inference_gaps#48": NESTING,
    "inference_gaps#60": LR_DECAY, "inference_gaps#63": LR_DECAY,
    "inference_gaps#69": DATA_PLATE,
    "inference_gaps#75": (B, "`test_autoguide_is_refused`: an AutoNormal guide must raise refuse_autoguide's "
                             "\"AMORTIZED\" message; no test passes an autoguide"),
    "inference_gaps#77": PER_ROW, "inference_gaps#78": PER_ROW,
    "inference_gaps#83": DATA_PLATE,
    "inference_gaps#100": (B, "`test_errors`: match the whole message (\"^log_px contains NaN or infinite "
                              "values$\"); the check matches only \"NaN\", which the garbled string still contains"),
    "inference_gaps#119": DATA_PLATE, "inference_gaps#124": DATA_PLATE,
    "inference_gaps#120": COUNTS, "inference_gaps#121": COUNTS, "inference_gaps#122": COUNTS,
    "inference_gaps#123": COUNTS, "inference_gaps#201": COUNTS, "inference_gaps#228": COUNTS,
    "inference_gaps#171": COUNTS, "inference_gaps#172": (E + " (practically)", "chunk_size dropped: estimate_chunks's "
                                                         "default chunk_size is 100, the default here; only memory per "
                                                         "pass changes for another value, not the estimate"),
    "inference_gaps#140": BAR, "inference_gaps#141": BAR, "inference_gaps#142": BAR, "inference_gaps#144": BAR,
    "inference_gaps#145": BAR, "inference_gaps#146": BAR, "inference_gaps#147": BAR, "inference_gaps#148": BAR,
    "inference_gaps#149": BAR, "inference_gaps#150": BAR,
    "inference_gaps#155": NESTING_EQ, "inference_gaps#156": NESTING_EQ, "inference_gaps#176": NESTING_EQ,
    "inference_gaps#180": NESTING_EQ, "inference_gaps#195": NESTING_EQ, "inference_gaps#200": NESTING_EQ,
    "inference_gaps#222": NESTING_EQ, "inference_gaps#227": NESTING_EQ,
    "inference_gaps#175": DATA_PLATE,
    "inference_gaps#186": IWAE_K, "inference_gaps#187": IWAE_K, "inference_gaps#188": IWAE_K,
    "inference_gaps#189": IWAE_K, "inference_gaps#190": IWAE_K,
    "inference_gaps#202": KW, "inference_gaps#229": KW,
    "inference_gaps#226": (E, "`objective` dropped: fit_local_guide's default objective is \"iwae\", the value given"),
    "inference_gaps#239": CPU, "inference_gaps#241": CPU,
    "inference_gaps#240": DTYPE, "inference_gaps#242": DTYPE,
}
PREFIX = {"InferenceGaps.summary": SUMMARY}
