"""Classification of the surviving mutants of pyro_noisevae/infer/particle_terms.py
(tests/infer/test_iwae_elbo.py + tests/infer/test_particle_terms.py)."""
E, B = "equivalent", "blind spot"
STACK = (E + " (untestable here)", "only the frame the RuntimeWarning is attributed to changes (message and category are "
                                   "tested). A frame-exact test cannot run under this tester: mutmut's trampoline adds "
                                   "stack frames, so such a test fails on the clean run (tried: the warning's filename was "
                                   "mutmut's trampoline.py)")
C = {
    "same_scale#8": (E, "`rel_tol` dropped: `math.isclose`'s default is 1e-9, the value given"),
    "same_scale#9": (E, "`abs_tol` dropped: `math.isclose`'s default is 0.0, the value given"),
    "varies_only_along#16": (E, "`zip` stops after `scale.dim()` pairs, and the first `scale.dim()` items of "
                                "`range(-dim, 1)` are `range(-dim, 0)`"),
    "per_particle#19": (E, "the reshaped tensor is always 2-D `(K, -1)`, so `.sum(+1)` is `.sum(-1)`"),
    "warn_vectorize_fallback#6": STACK,
    "warn_vectorize_fallback#11": STACK,
}
