"""Classification of the surviving mutants of pyro_noisevae/handlers.py (tests/test_handlers.py)."""
E, B = "equivalent", "blind spot"
TENSOR_BETA = (B, "no test passes a valid scalar-tensor β (only `torch.ones(2)`, rejected earlier). Add "
               "`test_scalar_tensor_beta_scales_like_a_float`: `_scales(beta_scale(_toy, beta=torch.tensor(3.0)))` equals the float-3.0 scales")
TYPE_BETA = (B, "no test passes a non-number β. Add `test_non_numeric_beta_is_a_type_error`: `beta_scale(_toy, beta=\"2\")` "
             "raises `TypeError` matching `got str`")
EXIT_ARGS = (E, "Pyro's `Messenger.__exit__` ignores `exc_value`/`traceback`")
SITES2 = (B, "the typo-hint is only tested with one missing name. Extend `test_misspelled_site_raises_and_lists_the_latent_sites` "
          "with `sites=[\"z\", \"zz\", \"ww\"]` and match `Did you mean 'w' for 'ww', 'z' for 'zz'\\?$`")
NOHINT = (B, "the no-close-match case only matches `\\['v'\\]`. Tighten the `with beta_scale(beta=3.0, sites=\"v\")` check to "
          "`match=r\"latent sites that ran: \\['w', 'z'\\]$\"` (no trailing `. Did you mean`/junk)")
NCLOSE = (B, "with several close seen names only the best guess must be given. Add a case with latent sites `z1`, `z2` and "
          "`sites=[\"z\"]` matching `Did you mean 'z1' for 'z'\\?$` (one guess)")
AUX_DEFAULT = (E, "`.get(\"is_auxiliary\", None)` / `.get(\"is_auxiliary\")` are falsy exactly when `False` is")
FN_TYPE = (B, "no test passes a non-callable `fn`. Add `test_beta_scale_rejects_a_non_callable_fn`: `beta_scale(3.0)` raises "
           "`TypeError` matching `callable or None as .fn., got float`")
TENSOR_SIGMA = (B, "`equivalent_beta`/`bound_constant` are never given tensor σ. Add `test_equivalent_beta_accepts_scalar_tensors`: "
                "`equivalent_beta(torch.tensor(0.5), torch.tensor(1.0)) == 4.0` (and a 1-element tensor of shape (1,))")
SIGMA_NAME = (B, "`test_equivalent_beta_rejects_nonpositive_sigma` matches only `sigma`; match `^sigma_from must` for the (0, 1) and "
              "(nan, 1) cases and `^sigma_to must` for (1, -2) and (1, inf)")
HINT = (B, "`test_bound_constant_takes_num_dims_not_event_dim` matches only `num_dims`. Match "
        "`\\(e\\.g\\. 784 for MNIST\\) \\(it is not a Pyro event_dim\\)$` for `event_dim=1`, and add `bound_constant(s1, s2, 3, foo=1)` "
        "matching `\\['foo'\\].*784 for MNIST\\)$` (no hint)")
D1 = (B, "d = 1 is never tested. Add `bound_constant(s1, s2, num_dims=1)` equal to the closed form for d = 1")
C = {
    "_check_beta#5": TENSOR_BETA, "_check_beta#6": TENSOR_BETA,
    "_check_beta#9": TYPE_BETA, "_check_beta#10": TYPE_BETA,
    "_check_beta#14": (B, "β = 0 (documented as allowed, `>= 0`) is never used. Add `test_beta_zero_is_allowed`: "
                          "`_scales(beta_scale(_toy, beta=0.0))` gives latent scales 0 and observed scales unchanged"),
    "BetaScaleMessenger.__init__#10": (E, "`__enter__` resets `_latent_seen = set()` and Pyro enters the messenger before any "
                                          "`_pyro_sample`, so the initial value is never read"),
    "BetaScaleMessenger.__exit__#2": (E + " (practically)", "with `exc_type=None` Pyro pops the top of the stack instead of "
                                      "unwinding to this messenger; identical whenever inner handlers are context-managed "
                                      "(they pop themselves on the way out). Killable only by a contrived test that leaves a "
                                      "manually `__enter__`ed messenger on the stack and raises"),
    "BetaScaleMessenger.__exit__#3": EXIT_ARGS, "BetaScaleMessenger.__exit__#4": EXIT_ARGS,
    "BetaScaleMessenger._check_sites_seen#8": SITES2, "BetaScaleMessenger._check_sites_seen#22": SITES2,
    "BetaScaleMessenger._check_sites_seen#15": NCLOSE, "BetaScaleMessenger._check_sites_seen#16": NCLOSE,
    "BetaScaleMessenger._check_sites_seen#20": NOHINT, "BetaScaleMessenger._check_sites_seen#23": NOHINT,
    "BetaScaleMessenger._pyro_sample#12": AUX_DEFAULT, "BetaScaleMessenger._pyro_sample#14": AUX_DEFAULT,
    "beta_scale#1": (B, "the default β = 1 is never used. Add `test_default_beta_is_one`: `_scales(beta_scale(_toy))` equals "
                        "`_scales(_toy)`"),
    "beta_scale#10": FN_TYPE, "beta_scale#11": FN_TYPE,
    "_positive#2": TENSOR_SIGMA, "_positive#4": TENSOR_SIGMA, "_positive#6": TENSOR_SIGMA, "_positive#7": TENSOR_SIGMA,
    "equivalent_beta#8": SIGMA_NAME, "equivalent_beta#14": SIGMA_NAME,
    "bound_constant#24": SIGMA_NAME, "bound_constant#30": SIGMA_NAME,
    **{f"bound_constant#{i}": HINT for i in range(3, 13)},
    "bound_constant#17": (B, "the missing-`num_dims` test matches only `num_dims`; match "
                             "`^bound_constant\\(\\) missing required argument num_dims`"),
    "bound_constant#34": D1, "bound_constant#35": D1,
}
