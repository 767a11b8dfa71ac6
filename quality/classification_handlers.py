"""Classification of the surviving mutants of pyro_noisevae/handlers.py (tests/test_handlers.py).

The 35 blind spots of the first run (2026-12-02T07:12Z) and the "practically equivalent" `__exit__#2` are killed by
the tests added to tests/test_handlers.py for issue 15: test_scalar_tensor_beta_scales_like_a_float,
test_beta_zero_is_allowed, test_default_beta_is_one, test_non_numeric_beta_is_a_type_error,
test_beta_scale_rejects_a_non_callable_fn, test_equivalent_beta_accepts_scalar_tensors,
test_bad_sigma_names_the_argument, test_bound_constant_keyword_messages, test_bound_constant_for_one_observed_dimension,
test_site_typo_hints and test_an_exception_unwinds_the_handler_stack_below_beta_scale (a program that leaves a handler
entered and raises: with `exc_type=None` Pyro's `__exit__` raises "not on the bottom of the stack" over the user's
exception). What survives is equivalent.
"""
E = "equivalent"
EXIT_ARGS = (E, "Pyro 1.9's `Messenger.__exit__` reads only `exc_type` (pop this messenger, or unwind the stack to it on "
                "an exception); `exc_value` and `traceback` are never used")
AUX_DEFAULT = (E, "`.get(\"is_auxiliary\", None)` / `.get(\"is_auxiliary\")` are falsy exactly when `False` is")
C = {
    "BetaScaleMessenger.__init__#10": (E, "`__enter__` resets `_latent_seen = set()`, and Pyro enters the messenger (`with` "
                                          "block or wrapped call) before any `_pyro_sample` or `__exit__` reads it; only a "
                                          "direct call of the private `_check_sites_seen` on a never-entered messenger "
                                          "could see the initial value"),
    "BetaScaleMessenger.__exit__#3": EXIT_ARGS, "BetaScaleMessenger.__exit__#4": EXIT_ARGS,
    "BetaScaleMessenger._pyro_sample#12": AUX_DEFAULT, "BetaScaleMessenger._pyro_sample#14": AUX_DEFAULT,
}
