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


def population(problem: Problem) -> PreferenceData:
    """The exact population of labelled pairs (weights = probabilities of each triple).

    A drawn pair ``(y1, y2)`` is a tie with probability ``Σ_y pairs[y, y]``; a tie carries no
    label and is not a training example, so the weights are conditioned on distinct pairs.
    """
    import numpy as np

    law = problem.pairs
    off = 1.0 - np.eye(problem.n_responses)
    distinct = (law * off).sum((-1, -2))
    w = problem.context_weight[:, None, None] * 2.0 * law * off * problem.pref / distinct[:, None, None]
    return PreferenceData(jnp.asarray(w / w.sum()))


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
