"""Classification of the surviving mutants of pyro_noisevae/infer/importance.py (tests/infer/test_importance.py,
test_iwae_elbo.py, test_particle_terms.py, test_iwae_surrogate.py and tests/evaluation/test_eval_chunks.py)."""
E, B = "equivalent", "blind spot"
DONE = (E, "Pyro's `default_process_message` treats a site whose value is already set as done (`if msg['done'] or "
           "msg['is_observed'] or msg['value'] is not None`), so the set value is kept whatever `done` says; the other "
           "handlers that read `done` (plate broadcasting, enumeration, markov) are the programs' own plates and the "
           "particle plate, which sit inside this messenger and see the message before it is set. Only a handler "
           "wrapped around the whole evaluation could tell")
ENUM_MSG = (B, "message text only; `test_enumerated_guide_sites_are_refused` now matches the whole message")
MATCH_GLOBALS = (E + " (practically)", "with global latents the vectorized pass replays one unexpanded draw, but the "
                                       "particle plate broadcasts the guide's and the model's distributions alike, so "
                                       "Pyro's shape match (which compares `fn.shape()`) passes anyway (checked on the "
                                       "global-latent programs of the tests); `match=False` only skips a check that "
                                       "cannot fail there")
C = {
    "infer_max_plate_nesting#14": (E, "a sequential (non-vectorized) plate has `dim None` and a vectorized one always has "
                                      "a dim, so `vectorized or dim is not None` selects the same frames"),
    **{f"_ReplayGlobals._pyro_sample#{i}": DONE for i in (12, 13, 14, 15)},
    **{f"SetSubsample._pyro_sample#{i}": DONE for i in (11, 12, 13, 14)},
    "_subsample_indices#3": (E, "the extra entries (every sample site's value) are never used: `SetSubsample` only sets "
                                "sites that are subsample sites"),
    "_trace_pair#22": (E + " (practically)", "the model replays the guide's trace, so every plate the model shares with "
                                             "the guide has the guide's indices in the model trace too; only a "
                                             "subsampled plate that exists in the guide alone (auxiliary draws only) "
                                             "would lose its sharing between looped particles"),
    "_trace_pair#32": ENUM_MSG, "_trace_pair#33": ENUM_MSG, "_trace_pair#34": ENUM_MSG,
    "_trace_pair#69": MATCH_GLOBALS,
    "_trace_pair#80": (E, "`importance_traces` runs the programs under `pyro.validation_enabled(False)` when `check` is "
                          "False, so inside `_trace_pair` `is_validation_enabled()` is False whenever `check` is"),
    "importance_traces#6": (E, "performance only: the validation flag is set to the value it already has"),
    "importance_traces#35": (E, "`_ReplayGlobals({})` replays nothing (every site's lookup is None)"),
    "importance_traces#62": (E, "`_ReplayGlobals({})` replays nothing (every site's lookup is None)"),
    "importance_traces#49": (B, "Pyro's shape match of a vectorized pass without globals; "
                                "`test_trace_pair_runs_pyro_validation_when_checking` now checks it vectorized too"),
    "importance_traces#60": (B, "as #49"),
    "importance_traces#56": MATCH_GLOBALS,
    "importance_traces#59": (B, "the nesting given to Pyro's checks of the vectorized pass; "
                                "`test_trace_pair_runs_pyro_validation_when_checking` now has a guide with a batch dim "
                                "left of the particle plate, which the checks must accept"),
    "importance_traces#87": (E, "after the first particle, each particle's drawn indices are the ones it was given, so "
                                "passing the latest particle's indices is passing the first's"),
    "site_structure#91": (E + " (unreachable else)", "`local_plates` is never empty: the data plates are taken from the "
                                                     "sites' own plates, so at least one site lies in them"),
    "site_structure#92": (E + " (unreachable else)", "as #91"),
    "site_structure#102": (B, "a `replicate_plate` tag naming a plate outside the kept plates; "
                              "`test_a_replicate_plate_outside_the_kept_plates_is_ignored` now covers it"),
    "site_structure#103": (E + " (set order)", "`data_frame = None` falls back to `next(iter(data_frames))`, which is the "
                                               "data plate or the replicate plate depending on the hash order of the "
                                               "frames; the replicate test asserts the data plate, so it is killed "
                                               "only under some hash seeds"),
    "_outermost#17": (E + " (unreachable else)", "`_plates` keeps only vectorized plates, whose frames always carry an "
                                                 "integer `dim`; the `None` branch (a sequential plate) never runs"),
    "_outermost#19": (E + " (unreachable else)", "as #17"),
    "per_point_log_weights#20": (E, "adds `None` to the kept dims, which no dim equals"),
    "per_point_log_weights#12": (E + " (for values)", "one more leading size-1 dim is padded, never summed, and dropped "
                                                      "by the final reshape"),
}
