"""Classification of the surviving mutants of pyro_noisevae/empirical_bayes/deen.py.

Tests: tests/empirical_bayes/test_eb_deen.py without its 40 s learning test
(test_default_deen_learns_to_denoise_a_784d_gaussian_with_mnist_moments), selected by node id; see
quality/notes_eb_deen.md. The 7 blind spots of the baseline (57 / 65 killed) are killed by the tests added for issue 15:
test_default_dimension_is_mnists (__init__#1), test_relu_refusal_message (__init__#8, #9),
test_forward_checks_the_feature_size (forward#2, #4) and
test_first_adam_step_moves_the_effective_first_layer_by_lr_over_sqrt_d (__init__#29, #30: the input scale 1/sqrt(D)
is invisible at initialization, since the first layer's weights are divided by it, but sets the effective Adam step).
"""
E = "equivalent"
C = {
    "DEEN.forward#8": (E, "`squeeze(+1)` vs `squeeze(-1)`: the MLP's output has shape (B, 1) (forward's check_points "
                          "requires a 2-D input), where dims 1 and -1 are the same"),
}
