"""Classification of the surviving mutants of pyro_noisevae/infer/fit_loop.py (tests/infer/test_fit_loop.py).

First run (2026-12-02T14:44Z, stopped by the time box after 126 of 409 mutants): 93 killed, 31 survived, 1
"suspicious" and 1 "interrupted by user". Two of those were artefacts of the test, not of the mutants: a mutant that
makes the *first* SIGINT raise KeyboardInterrupt, or that installs no handler so that SIGTERM's default action ends the
process, took down the whole pytest session instead of failing a test; the tests send signals through `_send`, which
fails the test in both cases. A rerun of the not-killed stopped at 15:45Z with 187 checked (83.4 %), 21 "suspicious"
(hung) and 222 not checked.

Why the test processes hung (found 2026-12-02, issue 15, third pass). mutmut's `process_isolation = fork` forks every
mutant's test process from one parent. tqdm's default write lock (`TqdmDefaultWriteLock`) holds a
`multiprocessing.RLock`, i.e. a POSIX semaphore in shared memory (`/dev/shm/sem.*`), created once in the parent and
shared, not copied, by every process forked after. `tqdm.refresh` acquires it without `try`/`finally` (tqdm 4.70.1), so
a bar whose display raises leaves it held. `FitLoop.run#9` (`initial=None`) does exactly that: the first visible bar
raises a TypeError inside `refresh`, the test process exits with the semaphore held (value 0), and every later mutant
process blocked in `sem_wait` at its first `tqdm(...)` (gdb: `_multiprocessing_SemLock_acquire` in `tqdm.__new__`; a
pytest plugin logging the semaphore after every test showed `run#9`'s process ending with count 1, value 0). That is
why the hangs started at `run#10` in every run and hit every mutant after it; the earlier guess, tqdm's monitor thread,
was not the cause. The fix is in the test module, not the tester options: an autouse module fixture
(`_process_private_tqdm_lock`) gives tqdm a `threading.RLock` (copied, not shared, by fork) and no monitor thread while
these tests run. With it, the default `process_isolation = fork` checked all 409 mutants with no hang (1751 s on the
loaded machine): 363 killed, 42 survived, 4 timed out (88.8 %). `forkserver` would also avoid the shared semaphore (a
fresh one per test process) but pays the first optimizer step's lazy imports (~7 s) for every mutant.

Tests added after that run (tests/infer/test_fit_loop.py, "issue 15, second pass"), then the 42 survivors rerun in the
same /tmp copy: what the bar shows, on a fake stderr (`_Stderr`, a terminal or a log): the logged mean loss as postfix
and the line cleared at the end (leave=False), per-epoch bars labelled with their epoch and counting from where a
resumed epoch starts, the whole-run bar continuing from the epochs done, the refresh interval (10 s in a log, 0.5 s on
a terminal) and dynamic width (a recording tqdm subclass); an interrupted epoch adding its unlogged steps to logged
ones; each full-batch epoch reporting its one step's loss; lr_decay planned over all steps of all epochs; the
defaults (seed 0, log_every 50, no bar, label "epoch", gradients for every leaf); the full non-finite-loss message.
"""
E = "equivalent"
CPU = ("equivalent (on CPU)", "without CUDA `torch.cuda.get_rng_state_all()` is `[]` and `set_rng_state_all` is never "
       "reached, so the CUDA RNG branch cannot change anything here; on a GPU "
       "`test_state_dict_restores_the_cuda_rng` (skipped on CPU) kills it")
SEED_MAP = (E + " (practically)", "any other injective map of (seed, epoch) to the generator seed gives orders that are "
            "just as random; the contract is only that the order is a function of (seed, epoch), which "
            "`test_epoch_order_is_a_permutation_that_depends_on_seed_and_epoch` checks (nine pairs, nine orders)")
C = {
    "epoch_order#3": SEED_MAP,
    "epoch_order#6": SEED_MAP,
    "_Interrupt.__init__#1": (E, "the default of the private `_Interrupt(enabled=True)` is never used: `FitLoop.run` "
                                 "always passes `self.handle_signals`"),
    "FitLoop._order#14": (E + " (on CPU)", "`order.to(None)` returns the order unchanged; the device move only matters "
                                             "for data on a GPU"),
    "FitLoop.state_dict#19": CPU,
    "FitLoop.state_dict#20": (E + " (on CPU)", "`get_rng_state_all()` is called without CUDA too: it returns `[]` "
                              "(checked), the value of the else branch; on a GPU the condition is true anyway"),
    "FitLoop.load_state_dict#33": (E, "`set_rng_state_all` with the saved list: without CUDA the list is `[]` "
                                      "(`set_rng_state_all([])` is a no-op, checked); with CUDA and a state saved on "
                                      "a CPU machine, `[]` again; otherwise both conditions are true"),
    "FitLoop.load_state_dict#36": CPU, "FitLoop.load_state_dict#37": CPU,
    "FitLoop.load_state_dict#38": CPU,
}
LOOP = ("detected (timeout)", "an endless loop (the epoch or the run never reaches its end): mutmut's time limit ends "
        "it (SIGXCPU), which is a detection, not a survivor")
C.update({"FitLoop._run_epoch#18": LOOP, "FitLoop._run_epoch#35": LOOP, "FitLoop._run_epoch#67": LOOP,
          "FitLoop._run_epoch#68": LOOP})
