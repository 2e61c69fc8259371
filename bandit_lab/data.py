"""Preference data: one representation for the exact population and for a sampled dataset.

Both are the same fixed list of ordered triples ``(x, y_w, y_l)`` — every context and every
ordered pair of distinct responses — with a weight per triple summing to 1:

- population: ``weight = ρ(x) · P(pair {y_w, y_l} shown) · p(y_w ≻ y_l | x)``;
- sampled: ``weight = count / n`` for ``n`` triples drawn i.i.d. from that very law.

So losses (``E_D[ℓ(x, y_w, y_l)] = Σ weight · ℓ``) never know which they get, shapes never
change, and "population vs finite data" is one flag that does not trigger a recompile.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bandit_lab.errors import BanditError
from bandit_lab.problems import Problem


class PreferenceData(NamedTuple):
    x: jax.Array  # [N] int context index
    yw: jax.Array  # [N] int preferred response
    yl: jax.Array  # [N] int dispreferred response
    weight: jax.Array  # [N] float, sums to 1


def triples(n_contexts: int, n_responses: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All ``(x, i, j)`` with ``i ≠ j``, in a fixed order."""
    x, i, j = np.meshgrid(np.arange(n_contexts), np.arange(n_responses), np.arange(n_responses), indexing="ij")
    keep = (i != j).reshape(-1)
    return x.reshape(-1)[keep], i.reshape(-1)[keep], j.reshape(-1)[keep]


def population(problem: Problem) -> PreferenceData:
    """The exact population of labelled pairs (weights = probabilities of each triple).

    A drawn pair ``(y1, y2)`` is a tie with probability ``Σ_y pairs[y, y]``; a tie carries no
    label and is not a training example, so the weights are conditioned on distinct pairs.
    """
    x, i, j = triples(problem.n_contexts, problem.n_responses)
    law = problem.pairs
    distinct = law.sum((-1, -2)) - np.einsum("xii->x", law)
    w = problem.context_weight[x] * 2.0 * law[x, i, j] * problem.pref[x, i, j] / distinct[x]
    return PreferenceData(jnp.asarray(x), jnp.asarray(i), jnp.asarray(j), jnp.asarray(w / w.sum()))


def sample(data: PreferenceData, n_pairs: int | jax.Array, key: jax.Array, *, max_pairs: int | None = None) -> PreferenceData:
    """A finite dataset of ``n_pairs`` triples drawn i.i.d. from the population ``data``.

    Pure JAX (jit/vmap over ``key`` works), so a sweep over seeds is one compiled call.
    ``max_pairs`` is the static buffer size when ``n_pairs`` is traced.
    """
    size = int(n_pairs) if max_pairs is None else int(max_pairs)
    logits = jnp.log(jnp.where(data.weight > 0, data.weight, 1.0))
    logits = jnp.where(data.weight > 0, logits, -jnp.inf)
    draws = jax.random.categorical(key, logits, shape=(size,))
    keep = (jnp.arange(size) < n_pairs).astype(data.weight.dtype)
    counts = jnp.zeros_like(data.weight).at[draws].add(keep)
    return data._replace(weight=counts / jnp.sum(keep))


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
