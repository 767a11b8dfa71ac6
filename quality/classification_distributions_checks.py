"""Classification of the surviving mutants of pyro_noisevae/distributions/_checks.py (tests/distributions/).

The first run (2026-12-02T15:32Z) killed 17 of 31 (54.8 %): every survivor was in the text of the noise-level error
(the default `meaning`, the list of the first three bad values, the "(and N more)" count and its threshold), which the
tests only matched as `sigma must be finite and > 0 .* pass a finite sigma > 0`. Killed by
tests/distributions/test_edge_cases.py: test_noise_level_message_names_the_meaning_and_the_values (whole messages, the
default meaning) and test_noise_level_message_shows_three_bad_values_and_counts_the_rest (exactly three bad values: no
count; four and five: "(and 1 more)", "(and 2 more)").
"""
C = {}
