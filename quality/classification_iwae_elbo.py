"""Classification of the surviving mutants of pyro_noisevae/infer/iwae_elbo.py (tests/infer/test_iwae_elbo.py and
tests/infer/test_iwae_elbo_units.py).

Baseline (test_iwae_elbo.py only, module before the two fixes of issue 15): 683 mutants, 527 killed (77.2 %), 126
survived, 29 "no tests" (`_get_trace`), 1 timeout. The blind spots are killed by tests/infer/test_iwae_elbo_units.py
(see quality/notes_iwae_elbo.md for the test -> mutant list and how mutation_iwae_elbo.txt was assembled from two
runs). What survives below is equivalent; the one timeout is a detection.
"""
E = "equivalent"
EP = "equivalent (practically)"
ED = "equivalent (in distribution)"

RETAIN = (EP, "the autograd pass of the DReG dependence check only runs the nodes between the site's parameters and the "
              "earlier draws; such nodes exist only when the site depends on an earlier draw, and then the check raises "
              "and the graph is dropped, so freeing them (`retain_graph` False / None) is never observed (the "
              "independent-latent tests backpropagate after the check and pass)")
GET_TRACE_GLOBALS = (ED, "`_get_trace` (the unused hook of Pyro's ELBO) without `global_names`: with K = 1 the global "
                         "sites are drawn once either way; only the RNG consumption (one extra guide run to draw the "
                         "globals first) differs, so the pair has the same distribution")
FALSY = (E, "`None` and `False` are both falsy where the value is read (`if vectorize and K > 1`, `setup.vectorize`, "
            "`setup.checked`)")
CHECK_FIRST = (E, "`_traces` reaches its vectorized try / looped fallback only while `setup.checked` is False, i.e. on "
                  "the first call of a pair, where `check = validate == 'always' or first` is True: dropping `check` "
                  "(default True) passes the same value")
INF_CASE = (E, "`float('INF')` is `float('inf')`: Python parses the special values case-insensitively")
ARGS = (EP, "a sample site's `args` / `kwargs` are the extra arguments of `pyro.sample`, passed to the distribution's "
            "`log_prob`; Pyro's primitives always leave them empty (`()` / `{}`), so dropping them changes nothing")
DREG_OF_SCORE = (E, "`log_w_dreg` is read only by the DReG estimator, which refuses a non-reparameterized guide site "
                    "(ValueError) before it is reached; in this branch (`has_score`) its value is never used")
LEFT_PAD = (EP, "a vectorized pass broadcasts every site over the particle plate, so the log weights always have at "
                "least `-particle_dim` dims and `left_pad` is a no-op (`score` is 0.0 or such a tensor too)")

C = {
    "_Setup.__init__#2": FALSY,
    "_Setup.__init__#4": (E, "`dependence_checked` None or False: read only in `not setup.dependence_checked` and "
                             "`setup.dependence_checked or torch.is_grad_enabled()`, where both are falsy alike"),
    "IWAE_ELBO._setup#7": ("detected (timeout)", "`nesting != inf`: with max_plate_nesting=None the nesting stays inf "
                                                 "and the particle plate is asked for dim -(inf + 1); the tests do not "
                                                 "finish within mutmut's time limit (a detection, not a survivor)"),
    "IWAE_ELBO._setup#10": INF_CASE,
    "IWAE_ELBO._setup#34": FALSY,
    "IWAE_ELBO._setup#41": (E, "the setup pass draws K = 1: `importance_traces` adds a particle plate only for K > 1, so "
                               "`vectorize` (default True) makes no difference"),
    "IWAE_ELBO._setup#43": (E, "as #41, `vectorize=True` with K = 1"),
    "IWAE_ELBO.__init__#17": INF_CASE,
    "IWAE_ELBO.__init__#22": INF_CASE,
    "IWAE_ELBO._particle_terms#19": (EP, "`full_size is not None or ...`: every `pyro.plate` frame has `full_size` "
                                         "set (Pyro's SubsampleMessenger writes `full_size=self.size`), so the `and` "
                                         "and the `or` agree (N/B, or 1 when not subsampled); only a bare "
                                         "`IndepMessenger` frame (full_size None) in the kept plates would differ"),
    "IWAE_ELBO._collect#93": (E + " (unreachable default)", "the `()` default of `getattr(log_w, 'shape', ())` is used "
                                                            "only when `log_w` is not a tensor, which never happens "
                                                            "(every pair has a local model site, so log_w is a tensor)"),
    "IWAE_ELBO._collect#96": (E + " (unreachable default)", "as #93"),
    "IWAE_ELBO._particle_terms#9": (E, "adds the particle dim `None` to `keep_dims` for looped particles: no tensor "
                                       "dim equals None (reduce_to_kept compares negative ints)"),
    "IWAE_ELBO._particle_terms#52": (E + " (unreachable else)", "`reference` is never empty: every pair has a local "
                                                                "sample site (the data plate is taken from the sites' own "
                                                                "plates, and a program without plates is all local)"),
    "IWAE_ELBO._particle_terms#54": (E + " (unreachable else)", "as #52"),
    "IWAE_ELBO._particle_terms#187": DREG_OF_SCORE,
    "IWAE_ELBO._particle_terms#188": DREG_OF_SCORE,
    "IWAE_ELBO._particle_terms#197": ARGS,
    "IWAE_ELBO._particle_terms#198": ARGS,
    "IWAE_ELBO._check_no_latent_dependence#10": RETAIN,
    "IWAE_ELBO._check_no_latent_dependence#14": RETAIN,
    "IWAE_ELBO._check_no_latent_dependence#17": RETAIN,
    "IWAE_ELBO._get_trace#17": FALSY,
    "IWAE_ELBO._get_trace#18": GET_TRACE_GLOBALS,
    "IWAE_ELBO._get_trace#25": GET_TRACE_GLOBALS,
    "IWAE_ELBO._get_trace#26": GET_TRACE_GLOBALS,
    "IWAE_ELBO._get_trace#27": (EP, "two looped pairs drawn, the first returned: the same pair as with one (same "
                                    "draws in the same order); only the work and the RNG state afterwards differ"),
    "IWAE_ELBO._get_trace#28": (E, "`vectorize=True` with K = 1: `importance_traces` adds a particle plate only for K > 1"),
    "IWAE_ELBO._traces#5": (E, "`K >= 1` instead of `K > 1`: with K = 1 the try path calls `importance_traces` with "
                               "`vectorize=True` and K = 1, which has no particle plate, i.e. the direct call; it cannot "
                               "fail differently"),
    "IWAE_ELBO._traces#42": CHECK_FIRST,
    "IWAE_ELBO._traces#62": CHECK_FIRST,
    "IWAE_ELBO._traces#51": FALSY,
    "IWAE_ELBO._traces#65": FALSY,
    "IWAE_ELBO._collect#57": LEFT_PAD,
    "IWAE_ELBO._collect#59": LEFT_PAD,
}
