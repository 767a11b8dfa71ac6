"""Classification of the surviving mutants of pyro_noisevae/evaluation/posterior_plots.py (the two plot tests of
tests/evaluation/test_posterior.py plus test_validation_errors and test_kl_of_a_perturbed_guide_is_positive_and_exact).
Blind spots marked "killed by the rerun" got their assertion after the first run; the rerun of the 60 survivors
with the completed tests killed them (quality/mutation_posterior_plots.txt)."""
E, B = "equivalent", "blind spot"
ANGLE = (B, "the ellipse's angles: every point still lies on the 2-sigma ellipse (the Mahalanobis check), but it is "
            "no longer one closed turn; `test_plot_pair_draws_each_source_and_its_gaussian_fit` now asserts the curve "
            "is closed and checks its 26th point (killed by the rerun)")
COLOR_CASE = (E, "matplotlib colour names are case-insensitive ('TAB:GRAY' is 'tab:gray')")
ELL_STYLE = (B, "cosmetic: the ellipse's colour / line width; the plot_pair test now asserts the source's colour and "
                "lw 1.5 (killed by the rerun)")
LW_DEFAULT = (E, "matplotlib's default `lines.linewidth` is 1.5, the value given (so `lw=None` or no `lw` draws "
                   "the same line)")
C = {
    "_ellipse#9": ANGLE, "_ellipse#10": ANGLE, "_ellipse#11": ANGLE,
    "_ellipse#20": (B, "the curve reflected about the mean is the same set of points (the Mahalanobis check passes); "
                       "the plot_pair test now checks the 26th point's position (killed by the rerun)"),
    "_ellipse#25": (E + " (practically)", "`np.clip(vals, 0, None)` only matters for negative eigenvalues, but every "
                                          "covariance that reaches a plot is positive definite: `compare_posteriors` "
                                          "computes `gaussian_kl` for every pair of sources, which refuses any other"),
    "_ellipse#32": ELL_STYLE, "_ellipse#36": ELL_STYLE,
    "_ellipse#33": LW_DEFAULT, "_ellipse#37": LW_DEFAULT,
    "_ellipse#40": ELL_STYLE,
    "plot_pair#1": (B, "default max_points 401: the plot_pair test now plots 500 draws with the defaults and counts 400 "
                       "(killed by the rerun)"),
    "plot_pair#2": (B, "default seed: the defaults plot now equals the seed=0 plot (killed by the rerun)"),
    "plot_subspace_error#26": COLOR_CASE, "plot_subspace_error#35": COLOR_CASE, "plot_subspace_error#42": COLOR_CASE,
    "plot_subspace_error#90": (B, "cosmetic: grid alpha; the subspace test now asserts 0.3 (killed by the "
                                  "rerun)"),
    "plot_subspace_error#92": (B, "cosmetic: legend font size; the subspace test now asserts 8 (killed by the "
                                  "rerun)"),
    "plot_subspace_error#93": (B, "as #92"),
    **{f"plot_pair#{i}": (B, "cosmetic: the fitted density's line width; the plot_pair test now asserts lw 1.2 (killed "
                             "by the rerun)") for i in (102, 107, 122)},
    **{f"plot_pair#{i}": (B, "cosmetic: scatter size / alpha; the plot_pair test now asserts s=4 and alpha 0.3 (killed "
                             "by the rerun)") for i in (126, 127, 132, 133, 136)},
    **{f"plot_pair#{i}": (B, "the scatter's source colour; the plot_pair test now asserts it (killed by the "
                             "rerun)") for i in (128, 134)},
    **{f"plot_pair#{i}": (B, "the scatter's label (the figure legend uses its own handles, but `ax.legend()` of a user "
                             "reads it); the plot_pair test now asserts it (killed by the rerun)")
       for i in (129, 135)},
    "plot_pair#141": (B, "the ellipse's colour; the plot_pair test now asserts it (killed by the rerun)"),
    "plot_pair#30": (E, "`squeeze=None` is falsy like `False`: matplotlib returns the 2-D array of axes either way"),
    "plot_pair#51": (E, "`replace=None` is falsy like `False`: numpy draws without replacement either way"),
    "plot_pair#67": (E, "matplotlib's `ax.axis()` lower-cases its string ('OFF' is 'off')"),
    **{f"plot_pair#{i}": (B, "the histogram as counts instead of a density (it would not match the fitted density "
                             "drawn over it); the plot_pair test now compares the heights with "
                             "`np.histogram(density=True)` (killed by the rerun)") for i in (71, 77, 82)},
    **{f"plot_pair#{i}": (B, "cosmetic: the histogram's colour / alpha; the plot_pair test now asserts the source's "
                             "colour and alpha 0.7 (killed by the rerun)") for i in (73, 74, 79, 80)},
    "plot_pair#81": (B, "41 bins instead of 40; the plot_pair test now counts the 41 bin edges (killed by the "
                        "rerun)"),
    **{f"plot_pair#{i}": (B, "cosmetic: the legend handles' line width 2; the plot_pair test now asserts it (killed "
                             "by the rerun)") for i in (167, 169)},
    "plot_pair#170": (B, "with one coordinate the legend went to the centre of the only panel, without font size 8; the "
                         "plot_pair test now checks the one-coordinate legend (loc 'best', size 8; added after the run)"),
    **{f"plot_pair#{i}": (B, "cosmetic: the legend's place ('center') and frame (off) in the empty panel; the "
                             "plot_pair test now asserts both (killed by the rerun)") for i in (173, 174, 176, 177, 183)},
    "plot_pair#179": (B, "the legend in panel [0, 1] instead of the top-right one: the same panel for 2 coordinates; "
                         "the 3-coordinate plot of the test now asserts it is in [0, 2] (killed by the rerun)"),
    **{f"plot_pair#{i}": (B, "cosmetic: the one-coordinate legend's font size 8 and frame; the plot_pair test now "
                             "asserts both (killed by the rerun)") for i in (185, 186, 188, 189, 192, 193)},
    **{f"plot_pair#{i}": (B, "cosmetic: the title's font size 9; the plot_pair test now asserts it (killed by the "
                             "rerun)") for i in (198, 200, 204)},
}
