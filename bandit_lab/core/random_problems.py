"""Random bandits for theorem checks and tests (NumPy generator ⇒ reproducible from a seed)."""
from __future__ import annotations

import numpy as np

from bandit_lab.core.problems import Problem


def dirichlet(rng: np.random.Generator, shape: tuple, conc: float = 1.0, floor: float = 0.02) -> np.ndarray:
    """Dirichlet rows mixed with a little uniform so no probability is vanishingly small."""
    p = rng.dirichlet(np.full(shape[-1], conc), size=shape[:-1])
    return (1 - floor * shape[-1]) * p + floor


def random_problem(
    rng: np.random.Generator,
    *,
    k: int | None = None,
    contexts: int | None = None,
    preference: str | None = None,
    pairs: str | None = None,
) -> Problem:
    """A random problem: K ∈ {2, 3, 5, 8}, 1 or 3 contexts, BT preferences from π* or r, pair
    law uniform or reference (each drawn when not given). Few distinct shapes on purpose: the
    exact solver compiles once per shape and reuses it for every instance."""
    k = int(rng.choice([2, 3, 5, 8])) if k is None else k
    X = int(rng.choice([1, 3])) if contexts is None else contexts
    ref = dirichlet(rng, (X, k))
    preference = preference or str(rng.choice(["pi_star", "reward"]))
    pairs = pairs or str(rng.choice(["uniform", "reference"]))
    if preference == "pi_star":
        return Problem.create(ref, pi_star=dirichlet(rng, (X, k)), pairs=pairs)
    if preference == "reward":
        return Problem.create(ref, reward=rng.normal(0, 1.5, (X, k)), pairs=pairs)
    if preference == "matrix":  # a general (usually intransitive) matrix
        a = rng.uniform(0.05, 0.95, (X, k, k))
        m = np.triu(a, 1)
        m = m + np.swapaxes(1 - m, -1, -2) * np.tril(np.ones((k, k)), -1)
        m[:, np.arange(k), np.arange(k)] = 0.5
        return Problem.create(ref, matrix=m, pairs=pairs)
    raise ValueError(preference)
