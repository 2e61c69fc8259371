"""On-policy RL algorithms solved exactly (issue 12).

The algorithms themselves are registered losses (:mod:`bandit_lab.losses.onpolicy`); this package
holds what sits above them: the root solver for their expected updates
(:mod:`.stationary`) and their closed forms / characterisations (:mod:`.closed_forms`). Nothing is
imported here, so ``bandit_lab.losses`` can import its helpers without a cycle.
"""
