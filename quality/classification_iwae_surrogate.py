"""Classification of the surviving mutants of pyro_noisevae/infer/iwae_surrogate.py
(tests/infer/test_iwae_elbo.py + tests/infer/test_iwae_surrogate.py)."""
E, B = "equivalent", "blind spot"
C = {
    "register_dreg_hook#3": (E, "with `weights.dim() == batch_ndim` the branch takes `lead = ()` (no error) and reshapes "
                                "the weights to their own shape: a no-op"),
    "iwae_objective#25": (E, "`weights[None]` only adds a leading size-1 dim, which `register_dreg_hook` strips again "
                             "(the `lead` branch accepts size-1 leading dims and reshapes them away; tested in "
                             "`test_dreg_hook_multiplies_the_gradient_by_the_aligned_weights`)"),
}
