"""Classification of the surviving mutants of pyro_noisevae/distributions/noisy_bernoulli.py (tests/distributions/).

The first run (2026-12-02T15:24Z) killed 177 of 190 (93.2 %); 11 survived and 2 timed out (the machine was loaded:
`expand#20` (`_use_probs = None`) and `#22` change log_prob at probs 0 / 1 and validation, and are killed in the rerun).
Blind spots killed by tests/distributions/test_edge_cases.py: the two argument messages (`__init__#5/#6/#10/#11`, the
tests matched them without the "NoisyBernoulli:" prefix) by test_noisy_bernoulli_argument_messages_name_the_law;
`validate_args` not passed to the noise-level check (`__init__#16`) and a re-validating expand (`expand#22/#24/#29`) by
test_expand_does_not_validate_again (an unvalidated law with a bad parameter expands); a subclass's `_instance`
ignored (`expand#3/#5`) by test_expand_fills_the_instance_a_subclass_passes.
"""
E = "equivalent"
C = {
    "NoisyBernoulli.__init__#40": (E, "`broadcast_all` turns two Python numbers into 0-dim tensors, so `param.shape` is "
                                      "already `torch.Size()` when both are numbers: the shortcut changes nothing"),
    "NoisyBernoulli.sample#6": (E + " (in distribution)", "`x - σε` and `x + σε` have the same law, ε ~ N(0, 1) being "
                                                         "symmetric; only the individual draws differ"),
}
