"""Classification of the surviving mutants of pyro_noisevae/distributions/noisy_normal.py (tests/distributions/).

The first run (2026-12-02T14:50Z) left 2 of 26 alive, both `expand#3/#5` (`_get_checked_instance(NoisyNormal, None)`):
no test expanded a *subclass* that passes its own instance (`super().expand(..., _instance=new)`, the torch pattern).
Killed by tests/distributions/test_edge_cases.py::test_expand_fills_the_instance_a_subclass_passes; the rerun of the
survivors confirms 26 / 26 killed. Nothing is left to classify.
"""
C = {}
