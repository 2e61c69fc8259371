"""The numerical core: bandit problems, preference data, parameterizations, objectives, training.

``problems`` (the bandit: π_ref, p*, the pair law) → ``data`` (population or sampled pairs) →
``params`` (policy parameterizations) → ``objective`` (a registered loss on a problem) →
``train`` (optax on one jitted step); ``divergences`` (the f-divergences) and ``metrics`` (TV,
KL, win rates) are leaves every layer reads. Nothing here imports a solver, the CLI or the
plumbing's budget. Importing this package imports nothing (no JAX): modules load on use.
"""
