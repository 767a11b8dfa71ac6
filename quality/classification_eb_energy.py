"""Classification of the surviving mutants of pyro_noisevae/empirical_bayes/energy.py
(tests/empirical_bayes/test_eb_energy.py).

Baseline (2026-12-02T18:38Z, original energy.py): 403 mutants, 252 killed, 136 survived, 15 "no tests"
(`_ParamStoreView.add`: no test of the file reached a plain-function program) — 62.5 %. energy.py then changed (the
subsampled-plate message, see quality/notes_eb_energy.md), so the module was rerun in full with the first set of new
tests (18:55Z: 408 mutants, 375 killed, 33 survived), and the 33 were rerun with the tests added after it.
"""
E = "equivalent"
CPU = ("equivalent (on CPU)", "`device=None` / dropped: the identity is made on the default device, the CPU, where the "
                              "covariance of every test lives")
SHAPE = (E, "`shape[+1]` / `sum(+1)` for `[-1]` / `sum(-1)` on a tensor that is 2-D there (check_points has just "
            "required `y.dim() == 2`; `w` has the shape of y), where 1 and -1 are the same dimension")
RESHAPE = (E, "the reshape `(-1, K, B).mean(0)` applied also when the log weights already have K rows (no replicate "
              "plate) is a no-op: a (1, K, B) view averaged over its single row")
KNOWN = (E, "`known` only stops registering one store tensor twice within the first call; a second `add` of the same "
            "name is already a no-op in `_ParamStoreView.add` (`if key not in self._parameters`), and parameters() "
            "deduplicates by identity, so nothing observable changes")
PLATE = ("blind spot (killed in the working tree, not rerun)",
         "`plate_name` ignored: in the mutation copy (made 18:33Z) infer.importance.site_structure chose among several "
         "common plates in set order, so the named-plate test could pass; importance.py now takes the outermost plate "
         "deterministically, and test_a_named_inner_data_plate (data plate inside a features plate: unnamed, the "
         "outer one is taken and refused) kills these with it; not rerun, the copy's importance.py is the old one")
C = {
    "ELBOEnergy.log_weights#64": PLATE, "ELBOEnergy.log_weights#67": PLATE,
    "check_points#21": SHAPE, "check_points#25": SHAPE, "GaussianEnergy.forward#22": SHAPE,
    "GaussianEnergy.smoothed#6": CPU, "GaussianEnergy.smoothed#9": CPU,
    "ELBOEnergy._register_params#19": KNOWN, "ELBOEnergy._register_params#20": KNOWN,
    "ELBOEnergy.log_weights#102": RESHAPE,
    "Energy.energy_and_grad#9": ("equivalent (practically)",
                                 "`create_graph or y.requires_grad`: without create_graph a y that requires grad is "
                                 "differentiated directly instead of through a detached copy; the gradient is the same "
                                 "and both results are detached before they are returned (the graph from f back to y "
                                 "is freed either way; the caller's graph above y is not traversed)"),
    "ELBOEnergy.log_weights#14": ("equivalent (practically)",
                                  "`max(2, nesting)`: the particle plate goes one dim further left when the programs "
                                  "use a single plate; per_point_log_weights keeps the particle, replicate and data "
                                  "dims wherever they are and reduces the others, so the (K, B) log weights are the "
                                  "same values (the exact-posterior tests, 1 and 2 plates, pass on it)"),
    "ELBOEnergy.log_weights#39": ("equivalent (performance only)",
                                  "`check=first` dropped: importance_traces' default `check=True` runs the model/guide "
                                  "match check and Pyro's validation on every call instead of the first only; same "
                                  "values, slower steps"),
}
