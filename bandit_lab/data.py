"""Preference data: one representation for the exact population and for a sampled dataset.

Both are one dense array ``weight[x, i, j]``: the weight of the labelled triple
``(x, y_w = i, y_l = j)``, zero on the diagonal, summing to 1:

- population: ``weight = ρ(x) · P(pair {i, j} shown) · p(i ≻ j | x)``;
- sampled: ``weight = count / n`` for ``n`` triples drawn i.i.d. from that very law.

So losses (``E_D[ℓ] = Σ weight·ℓ``) never know which they get, shapes never change, and
"population vs finite data" is one flag that does not trigger a recompile. Pairwise losses
evaluate ``ℓ`` on the broadcast grid ``[x, i, j]`` — no gathers, so gradients and Hessians are
dense arithmetic that compiles quickly (X·K² entries; ample for the sizes bandit-lab targets).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from bandit_lab.errors import BanditError
from bandit_lab.problems import Problem


class PreferenceData(NamedTuple):
    weight: jax.Array  # [X, K, K] weight of (x, y_w=i, y_l=j); zero diagonal; sums to 1


MAX_TRIPLES = 1 << 27  # X·K² entries of a dense triple grid (1 GiB in float64)


def population(problem: Problem) -> PreferenceData:
    """The exact population of labelled pairs (weights = probabilities of each triple).

    A drawn pair ``(y1, y2)`` is a tie with probability ``Σ_y pairs[y, y]``; a tie carries no
    label and is not a training example, so the weights are conditioned on distinct pairs.
    """
    import numpy as np

    n = problem.n_contexts * problem.n_responses**2
    if n > MAX_TRIPLES:
        raise BanditError(f"pairwise data on {problem.n_contexts} context(s) × K = {problem.n_responses} responses needs a dense "
                          f"X·K² = {n:.3g}-entry triple grid ({8 * n / 2**30:.1f} GiB per array; limit {MAX_TRIPLES:.3g}); "
                          "use a whole-distribution objective (rlhf) or fewer responses")

    law = problem.pairs
    off = 1.0 - np.eye(problem.n_responses)
    distinct = (law * off).sum((-1, -2))
    w = problem.context_weight[:, None, None] * 2.0 * law * off * problem.pref / distinct[:, None, None]
    return PreferenceData(jnp.asarray(w / w.sum()))


def no_pairs(problem: Problem) -> PreferenceData:
    """Empty preference data (shape ``[X, 0, 0]``) for objectives that read none (RLHF)."""
    return PreferenceData(jnp.zeros((problem.n_contexts, 0, 0)))


def sample(data: PreferenceData, n_pairs: int, key: jax.Array) -> PreferenceData:
    """A finite dataset of ``n_pairs`` triples drawn i.i.d. from the population ``data``.

    Pure JAX (jit/vmap over ``key`` works), so a sweep over seeds is one compiled call.
    """
    w = data.weight.reshape(-1)
    logits = jnp.where(w > 0, jnp.log(jnp.where(w > 0, w, 1.0)), -jnp.inf)
    draws = jax.random.categorical(key, logits, shape=(int(n_pairs),))
    counts = jnp.zeros_like(w).at[draws].add(1.0)
    return PreferenceData((counts / n_pairs).reshape(data.weight.shape))


def make_data(problem: Problem, kind: str = "population", n_pairs: int = 0, seed: int = 0) -> PreferenceData:
    """``population`` or ``sampled`` (``n_pairs`` triples, ``jax.random.key(seed)``)."""
    pop = population(problem)
    if kind == "population":
        return pop
    if kind == "sampled":
        if int(n_pairs) < 1:
            raise BanditError("sampled data needs --n-pairs ≥ 1")
        return sample(pop, int(n_pairs), jax.random.key(seed))
    raise BanditError(f"data must be 'population' or 'sampled'; got {kind!r}")
