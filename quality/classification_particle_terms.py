"""Classification of the surviving / untested mutants of pyro_noisevae/infer/particle_terms.py (tests/infer/test_iwae_elbo.py)."""
E, B = "equivalent", "blind spot"
T1 = (B, "[T1] no test has a scale shared by every site other than 1 (e.g. `poutine.scale(scale=0.5)` around model and guide, or "
         "a corruption plate's 1/M): with K > 1 the loss must be 0.5 × the unscaled loss (same seed), i.e. the shared scale acts "
         "after the log-sum-exp")
T2 = (B, "[T2] no test has two observed sites with different float scales (e.g. one inside `poutine.scale(scale=0.5)`): the "
         "shared-scale detection must then fall back to 1 and the loss equal the reference with both scales inside the log-sum-exp")
T3 = (B, "[T3] no test uses a tensor scale (the whole tensor path of `same_scale`/`varies_only_along` never runs). Add "
         "`test_per_datapoint_tensor_scale_weights_each_bound`: model and guide under `poutine.scale(scale=w)` with w of shape (N,) "
         "(distinct values) give loss = −Σ_n w_n·L_K(x_n), computed point by point with the same draws; run it in float64 as well")
T4 = (B, "[T4] a tensor scale that varies along a dim that is NOT a kept plate dim (e.g. shape (1, D) over a nested 'pixels' plate "
         "under the data plate, max_plate_nesting=2) must make the detection fall back (shared = 1); no test has one")
T5 = (B, "[T5] observed sites with a float scale and a multi-element tensor scale: the original returns False (no shared scale), "
         "the mutant raises. Add a case with one observed site under `poutine.scale(scale=w)` (w of shape (N,)) and one unscaled")
T6 = (B, "[T6] observed sites with tensor scales w and 2w (w ∈ (0, 0.4)) must not be treated as one shared scale")
T7 = (B, "[T7] observed sites with non-broadcastable tensor scales (two plates of different sizes) must fall back, not crash "
         "or share")
T8 = (B, "[T8] no local site has a non-kept, non-singleton batch dim, so `reduce_to_kept` never sums. Add "
         "`test_nested_plate_equals_to_event`: an observation inside `plate('pixels', 2, dim=-1)` nested in `plate('data', N, dim=-2)` "
         "gives the same IWAE loss (values and gradients) as `Normal(...).to_event(1)`; use size 2 so that `!= 2` is also caught")
T9 = (B, "[T9] left padding of per-particle terms never happens: add a looped-vs-vectorized equality test (same seed, "
         "`vectorize_particles=False` vs `True`) on a model whose log-weight terms have fewer dims than the particle dim "
         "(e.g. `max_plate_nesting=2` with only the data plate at dim -1)")
T10 = (B, "[T10] stacking looped particles where a term is a tensor for some particles and 0.0 for others (site structure that "
          "differs between particles, e.g. a discrete guide site run only in some particles). If IWAE_ELBO forbids "
          "particle-dependent structure these three are equivalent — the lead should check which")
T11 = (B, "[T11] `is_delta` never has to unwrap `.to_event`: add `test_dreg_runs_with_an_autoguide_delta_site`: "
          "IWAE_ELBO(gradient_estimator='dreg') with `AutoMultivariateNormal` (its latents are `Delta(...).to_event` sites of an "
          "auxiliary draw) runs and its mean guide gradient matches the standard estimator's within SEs")
DEDUP = (E, "`seen` only de-duplicates and guards against reference cycles; the result feeds `sum(t.sum() for t in params)` "
            "whose `autograd.grad(...) is not None` outcome does not depend on duplicates, and Torch/Pyro distributions have "
            "no cycles through `vars()`")
LISTS = (B, "tensors inside list/tuple attributes are never met. Add a unit test `tensors_of(d)` for a distribution holding a "
            "parameter in a tuple attribute. (Also note: `TransformedDistribution(Normal(0,1), [AffineTransform(loc=z1, ...)])` "
            "hides `z1` inside a Transform, which `tensors_of` does not look into — the hierarchical-guide check misses it even "
            "without a mutant)")
PER_PART = (B, "[T12] `per_particle` runs in no test of tests/infer/test_iwae_elbo.py: no model there has a global latent "
               "(outside the data plate). Add `test_global_latent_is_summed_once_per_particle`: a model with a global `mu` and "
               "local `z`, vectorized vs looped, against the exact log evidence of a linear-Gaussian model for growing K")
FALLBACK = (B, "[T13] the vectorized→looped fallback warning runs in no test. Add `test_vectorize_fallback_warns_and_matches_looped`: "
               "a model that breaks under a particle plate (e.g. reshapes with `x.shape[0]`) warns `RuntimeWarning` matching "
               "`falling back to looped particles` and equals the `vectorize_particles=False` result")
C = {
    "as_scale#1": T3,
    "as_scale#2": (E, "Pyro site scales are always a float or a tensor, so the `float(scale)` fallback is unreachable"),
    "as_scale#3": (E, "same unreachable fallback"),
    "same_scale#1": T5,
    "same_scale#8": (E, "`rel_tol` dropped: the default is 1e-9, the value given"),
    "same_scale#9": (E, "`abs_tol` dropped: the default is 0.0, the value given"),
    "same_scale#10": T2, "same_scale#11": T2,
    **{f"same_scale#{i}": T3 for i in range(12, 21)},
    "same_scale#21": T7,
    **{f"same_scale#{i}": T3 for i in range(22, 29)},
    "same_scale#29": (E + " (practically)", "default rtol 1e-5 instead of 1e-9: differs only for scales equal to within 1e-5 relative"),
    "same_scale#30": (E + " (practically)", "default atol 1e-8 instead of 0: differs only for scales within 1e-8"),
    "same_scale#31": T6, "same_scale#32": T6,
    "varies_only_along#1": T1,
    **{f"varies_only_along#{i}": T3 for i in (2, 3, 6, 7, 8, 9, 10, 11, 12)},
    **{f"varies_only_along#{i}": T4 for i in (4, 5, 13, 14, 15)},
    "varies_only_along#16": (E, "`zip` stops after `scale.dim()` pairs, and the first `scale.dim()` items of `range(-dim, 1)` "
                                "are `range(-dim, 0)`"),
    **{f"reduce_to_kept#{i}": T8 for i in range(1, 20)},
    "left_pad#4": T9,
    "tensors_of#3": DEDUP, "tensors_of#5": DEDUP, "tensors_of#7": DEDUP, "tensors_of#8": DEDUP,
    "tensors_of#10": DEDUP, "tensors_of#12": DEDUP, "tensors_of#15": DEDUP, "tensors_of#17": DEDUP,
    "tensors_of#9": LISTS, "tensors_of#11": LISTS,
    "stack_particles#3": (E + " (probably)", "all-zero float terms become a tensor of zeros; every consumer adds them, so values "
                                             "and gradients are unchanged (the suite shows no shape clash)"),
    "stack_particles#7": (E + " (probably)", "as #3"), "stack_particles#8": (E + " (probably)", "as #3"),
    "stack_particles#4": (E, "non-tensor terms are only ever the initial 0.0, so `parts[0]` is returned either way"),
    "stack_particles#9": (E, "unreachable: non-tensor terms are only ever 0.0"),
    "stack_particles#10": T10, "stack_particles#14": T10, "stack_particles#15": T10,
    "is_delta#1": T11, "is_delta#5": T11, "is_delta#6": T11, "is_delta#7": T11,
}
PREFIX = {"per_particle": PER_PART, "warn_vectorize_fallback": FALLBACK}
