"""Classification of the surviving mutants of pyro_noisevae/distributions/corruption.py (tests/distributions/).

Measured once, with the tests of issue 15 already in tests/distributions/ (no run with the earlier tests: time box).
Written for this module in tests/distributions/test_edge_cases.py: make_corruption's every name, text levels, both
rate bounds and the exact messages; SaltAndPepper with mixed Python-number / tensor arguments, its discrete support,
the masses when the clean value is itself an atom, the non-negative variance, the sample dtype; the Corruption base
class defaults; expand through a subclass's `_instance` and without re-validation; and a CUDA-only device test
(skipped here). What survives only changes the law by a float rounding, or only on a GPU, or not at all.
"""
E = "equivalent"
GPU = ("equivalent (on CPU)", "`device=None` (or dropped) draws the uniforms on the CPU: identical on a CPU-only "
       "machine; on a GPU the CUDA-only `test_salt_and_pepper_samples_on_the_device_of_the_clean_input` kills it")
F32 = (E + " (in distribution)", "the uniform that decides replacement is drawn in float32 instead of the clean "
       "dtype: P(u < r) moves by at most 2^-24 (float32 resolution), far below what a sampling test can see")
TIE = (E + " (in distribution)", "`<=` instead of `<` against a uniform on [0, 1) changes the probability only by "
       "P(u == threshold), 2^-53 in float64 (2^-24 in float32)")
PROMOTE = (E, "`(value == 0).to(None)` leaves the bool tensor as is; `bool + float` promotes it to the float dtype in "
              "the same sum, so the masses and their dtype are unchanged")
C = {
    "SaltAndPepper.sample#5": F32, "SaltAndPepper.sample#8": F32,
    "SaltAndPepper.sample#6": GPU, "SaltAndPepper.sample#9": GPU,
    "SaltAndPepper.sample#13": GPU, "SaltAndPepper.sample#16": GPU,
    "SaltAndPepper.sample#17": TIE, "SaltAndPepper.sample#20": TIE,
    "SaltAndPepper.__init__#7": (E, "`broadcast_all` turns two Python numbers into 0-dim tensors, so "
                                    "`self.clean.shape` is already `torch.Size()` when both are numbers"),
    "SaltAndPepper.sample#23": (E, "`coin.to(None)` leaves the coin a bool tensor; `torch.where(replaced, coin, clean)` "
                                   "promotes it to the clean dtype, so the draws and their dtype are unchanged"),
    "SaltAndPepper.log_prob#13": PROMOTE, "SaltAndPepper.log_prob#16": PROMOTE,
}
