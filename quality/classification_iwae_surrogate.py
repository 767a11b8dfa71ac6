"""Classification of the surviving mutants of pyro_noisevae/infer/iwae_surrogate.py (tests/infer/test_iwae_elbo.py)."""
E, B = "equivalent", "blind spot"
LEAD = (B, "the branch `weights.dim() > batch_ndim` (a DReG guide value without the particle/plate dims of the weights) never "
           "runs. Add `test_dreg_rejects_a_guide_latent_outside_the_particle_plate`: a vectorized IWAE_ELBO(dreg) whose guide "
           "draws `z` from a distribution expanded to the data plate but not to the particle dim must raise `RuntimeError` "
           "matching `lacks the particle and plate dims of the importance weights; sample every latent inside the plates`; "
           "plus the legal case (leading size-1 dims dropped) giving the same gradient as the standard estimator in expectation")
BCAST = (B, "the 'broadcast along a plate' guard never fires. Add `test_dreg_rejects_a_guide_broadcast_along_a_plate`: "
            "IWAE_ELBO(dreg) with a guide `Normal(loc, scale).to_event(1)` of shape `(D,)` sampled inside the data plate of "
            "size N > 1 (not `.expand`ed) must raise `RuntimeError` matching `is broadcast along a plate of the importance "
            "weights \\(.*\\); expand the guide distribution to the plate`")
C = {
    "_left_pad#4": (B, "the left padding (weights with fewer dims than the value's batch dims) never runs. Covered by the "
                       "legal case of the test under `register_dreg_hook#4`: a DReG guide latent with an extra batch dim "
                       "that the log weights do not carry (e.g. `Normal(zeros(3), 1)` outside `to_event`, looped particles)"),
    "register_dreg_hook#3": (E, "with `weights.dim() == batch_ndim` the branch takes `lead = ()` (no error) and reshapes "
                                "the weights to their own shape: a no-op"),
    **{f"register_dreg_hook#{i}": LEAD for i in range(4, 16)},
    "register_dreg_hook#26": BCAST, "register_dreg_hook#28": BCAST,
    "register_dreg_hook#31": BCAST, "register_dreg_hook#32": BCAST, "register_dreg_hook#33": BCAST,
    "register_dreg_hook#35": (E, "`Tensor.to(None)` is a no-op, and the weights are computed from the log densities of these "
                                 "very draws, so they already have the value's dtype (float64 draws with float32 weights "
                                 "would promote anyway)"),
    "iwae_objective#25": (E, "`weights[None]` only adds a leading size-1 dim, which `register_dreg_hook` strips again "
                             "(the `lead` branch accepts size-1 leading dims and reshapes them away)"),
}
