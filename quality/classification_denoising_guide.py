"""Classification of the surviving mutants of pyro_noisevae/guides/denoising_guide.py (tests/guides/).

The 70 blind spots of the first run (2026-12-02T07:18Z, 4 of them "no tests") and the two "in distribution" survivors of
`if self.alpha < 1.0` are killed by the tests added to tests/guides/test_denoising_guide.py for issue 15 (D1–D11, the
argument checks with full messages, test_corrupted_input_keeps_the_dtype_of_x and
test_full_denoising_draws_exactly_the_corruption). Writing D7 exposed a bug, fixed in the same change: `from_encoder`
took the data dim to be `x.shape[-2]` whatever `input_event_dim`, so scalar data points with M > 1 (x~ of shape (M, B))
and images used a corruption or pixel dim as the batch size; it now uses the last batch dim. The ids of `from_encoder`'s
mutants shifted with that fix. What survives is equivalent.
"""
E = "equivalent"
RAND_CPU = (E + " on CPU", "`device=None`/dropped puts the uniforms (or the subsample indices) on the CPU, identical on a "
                           "CPU-only machine. The CUDA-only `test_corruption_and_subsample_stay_on_the_device_of_x` is "
                           "written to kill it on a GPU machine (skipped here, not yet run on one)")
RAND_DIST = (E + " (in distribution)", "float32 instead of x's dtype for the uniform that decides clean-vs-corrupted rows; "
                                       "the keep probability 1 − α changes by at most 2^-24 (float32 resolution)")
C = {
    "DenoisingGuide.from_encoder#36": (E, "`num_data == batch` is taken by the first branch, so `<=` and `<` agree on "
                                          "every value that reaches this test"),
    "DenoisingGuide.from_encoder#46": RAND_CPU, "DenoisingGuide.from_encoder#48": RAND_CPU,
    "DenoisingGuide.corrupt#59": RAND_DIST, "DenoisingGuide.corrupt#62": RAND_DIST,
    "DenoisingGuide.corrupt#60": RAND_CPU, "DenoisingGuide.corrupt#63": RAND_CPU,
    "DenoisingGuide.corrupt#64": (E, "`u > α` vs `u >= α` differ only when the uniform equals α exactly (probability "
                                     "~2^-53 per row)"),
}
