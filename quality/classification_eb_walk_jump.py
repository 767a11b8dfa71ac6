"""Classification of the surviving mutants of pyro_noisevae/empirical_bayes/walk_jump.py
(tests/empirical_bayes/test_eb_walk_jump.py).

Baseline (2026-12-02T17:43Z): 176 / 255 killed (69.0 %), 79 survived. The blind spots are killed by the tests added
for issue 15 (see quality/notes_eb_walk_jump.md): test_walk_steps_follow_the_baoab_recursion_exactly (the BAOAB
constants, the generator and dtype of the Langevin noise, the first step, the returned velocity),
test_walk_jump_defaults (default step, friction, inverse mass, jump period, chain count, progress bar),
test_zero_steps_records_the_start_only, test_save_every_zero_saves_an_empty_long_index,
test_default_start_is_uniform_plus_noise_in_the_energys_dtype, test_walk_jump_error_messages and
test_divergence_message_names_the_step_and_the_remedy. The first rerun (18:03Z) left 16; `walk_jump#150` (bar label
`XXwalk-jumpXX`, which contains `walk-jump`) was then killed by a stricter label check in test_walk_jump_defaults,
confirmed by a second rerun (18:13Z). The 15 left are equivalent.
"""
E = "equivalent"
CPU = ("equivalent (on CPU)", "`device=None` (or dropped) draws on the default device, the CPU, where the energy's "
                              "tensors are in every test; on a GPU energy the draw would land on the CPU")
DTYPE = ("equivalent (in distribution)", "the draw is made in torch's default float32 and promoted to float64 when added "
                                         "to the other (float64) term: the same law up to the 24-bit resolution of the "
                                         "float32 draw; the start's dtype (the energy's) is tested, and for a float32 "
                                         "energy both dtypes coincide")
C = {
    "langevin_step#24": CPU, "langevin_step#28": CPU,
    "walk_jump#81": CPU, "walk_jump#82": CPU, "walk_jump#89": CPU, "walk_jump#93": CPU, "walk_jump#100": CPU,
    "walk_jump#104": CPU,
    "walk_jump#88": DTYPE, "walk_jump#92": DTYPE, "walk_jump#99": DTYPE, "walk_jump#103": DTYPE,
    "walk_jump#96": ("equivalent (in distribution)", "`y0 - sigma * N(0, 1)` has the law of `y0 + sigma * N(0, 1)` (the "
                                                     "normal is symmetric); the start is documented by its law only"),
    "walk_jump#193": (E, "`torch.tensor` of a list of Python ints is int64 (= torch.long) by default, and `jump_steps` "
                         "is never empty (step 0 is always a jump); only `chain_steps` can be empty (save_every=0), "
                         "where the explicit dtype matters and is tested"),
    "walk_jump#195": (E, "`torch.tensor` of a list of Python ints is int64 (= torch.long) by default, and `jump_steps` "
                         "is never empty (step 0 is always a jump); only `chain_steps` can be empty (save_every=0), "
                         "where the explicit dtype matters and is tested"),
}
