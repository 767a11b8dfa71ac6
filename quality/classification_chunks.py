"""Classification of the surviving mutants of pyro_noisevae/evaluation/chunks.py (tests/evaluation/test_eval_chunks.py
and tests/evaluation/test_eval_log_likelihood.py, through which chunks.py is exercised).

Baseline (2026-12-02, mutmut run 18:27Z-18:42Z, original tests, original source): 387 mutants, 268 killed, 75 survived, 44 no tests
(`check_float`, `data_plate_nesting` — used only by gaps.py / iw_svi.py — and `Chunk.unwrapped`) — 69.3 %.
The final run is a full rerun (the source changed: the `check_float` message fix adds mutants) with the tests listed in
quality/notes_chunks.md.
"""
E = "equivalent"
FULL_SIZE = (E, "Pyro sets `full_size` of every vectorized plate frame (`full_size == size` without subsampling), so "
                "`frame.full_size is not None` always holds and the fallback `frame.size` is never taken")
SIZE = (E, "`frame.size <= frame.full_size` always (a subsample is never larger than its plate), so `size < num` or "
           "`size <= num` or always taking `frame.size` gives the same `size`")
DEVICE = (E + " (on CPU / practically)", "the subsample index is made on the device of the first tensor argument; on a "
                                         "CPU-only run that is the default device, and on a GPU a CPU index still "
                                         "indexes a CUDA tensor (PyTorch moves it); only an extra copy differs")
PARAM_DIM = (E, "the default of `getattr(value, \"dim\", ...)` is never used: `pyro.param` values are always tensors, "
                "which have `dim`")
C = {
    "subsample_chunks#14": FULL_SIZE,
    "subsample_chunks#18": SIZE, "subsample_chunks#19": SIZE,
    "subsample_chunks#20": DEVICE, "subsample_chunks#23": DEVICE, "subsample_chunks#45": DEVICE,
    "subsample_chunks#48": DEVICE,
    "make_chunks#24": (E, "`subsample_chunks` does not use its `batch_size` argument (the chunk size is the plate's "
                          "`subsample_size`), so passing None changes nothing"),
    "_has_per_point_params#33": PARAM_DIM, "_has_per_point_params#36": PARAM_DIM,
    "_has_per_point_params#41": PARAM_DIM, "_has_per_point_params#42": PARAM_DIM,
}
