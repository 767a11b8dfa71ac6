"""Classification of the surviving mutants of pyro_noisevae/distributions/noisy_laplace.py (tests/distributions/).

The first run (2026-12-02T15:13Z) left 6 of 30 alive: `__init__#5/#10/#14` (the `meaning="the noise scale b"` of the
error message: the tests matched the message with `.*` around it) and `expand#3/#5` (a subclass's own `_instance`
ignored). Killed by tests/distributions/test_edge_cases.py::test_noise_level_message_names_the_meaning_and_the_values
(the whole message compared) and ::test_expand_fills_the_instance_a_subclass_passes.
"""
C = {}
