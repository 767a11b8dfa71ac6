"""Paper reproductions: each experiment is a function writing JSON/Markdown/PNG, with a CLI subcommand.

* :mod:`.common`: the plumbing every experiment shares (run hashing, locking, training or loading a run, atomic
  writers, subsets, budgets mapped onto :class:`~pyro_noisevae.training.TrainConfig`, CLI boilerplate);
* :mod:`.evaluate` (``evaluate``), :mod:`.dvae_table` (``reproduce-dvae-table``), :mod:`.air_table`
  (``reproduce-air-table``) and :mod:`.scheduler` (the tables' budget and parallel training);
* :mod:`.sigma_vae` (``sweep-sigma``, ``noisy-inference``), :mod:`.empirical_bayes` (``uvb-denoise``,
  ``walk-jump``) and :mod:`.amortization` (the amortization gap against NUTS, used by a tutorial).
"""
