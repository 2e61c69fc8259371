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
from bandit_lab.core.problems import Problem


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
    from bandit_lab.core.draws import categorical  # jax.random.categorical's draws, cheaper to compile

    idx = categorical(key, logits, (int(n_pairs),))
    counts = jnp.zeros_like(w).at[idx].add(1.0)
    return PreferenceData((counts / n_pairs).reshape(data.weight.shape))


def minibatch(data: PreferenceData, size: int, key: jax.Array, *, replacement: bool = True, pool: int = 0) -> PreferenceData:
    """One mini-batch of ``size`` labelled pairs drawn from ``data``, as the ``PreferenceData``
    (weight = count/size) every pairwise loss reads — so a loss needs no change to train on
    mini-batches, and its value on the batch is the batch mean of the per-pair loss.

    - ``replacement=True``: ``size`` i.i.d. draws from the law ``data.weight`` (the law of
      :func:`sample`, drawn by inverse CDF); Azar et al. 2024 §5 train on mini-batches of 9 pairs
      drawn this way from their datasets.
    - ``replacement=False``: ``data`` is a finite dataset of ``pool`` pairs (``weight·pool`` are
      its integer counts, as :func:`sample` makes them) and the batch is ``size`` distinct items
      of it, every subset equally likely (a simple random sample; ``size ≤ pool``).

    Either way ``E[batch.weight] = data.weight`` exactly, so the expected mini-batch loss and
    gradient are the full-data ones (every loss is linear in the weights). Pure JAX: the trainer
    calls it inside its ``lax.scan`` with a key per step (:func:`bandit_lab.core.train.batch_key`).
    """
    size = int(size)
    if size < 1:
        raise BanditError(f"a mini-batch needs size ≥ 1; got {size}")
    w = data.weight.reshape(-1)
    if replacement:
        # inverse CDF: B uniforms and a binary search each (B·log(XK²) work per step, where
        # :func:`sample`'s Gumbel-max draws B·XK² numbers); a zero-weight triple has an empty
        # interval and is never drawn
        ends = jnp.cumsum(w)
        u = jax.random.uniform(key, (size,), dtype=w.dtype) * ends[-1]
        last = jnp.max(jnp.where(w > 0, jnp.arange(w.shape[0]), 0))  # u·total rounding up to total
        triple = jnp.minimum(jnp.searchsorted(ends, u, side="right"), last)
    else:
        pool = int(pool)
        if pool < size:
            raise BanditError(f"a mini-batch of {size} distinct pairs needs a dataset of n ≥ {size} pairs; got n = {pool}")
        ends = jnp.cumsum(jnp.round(w * pool))  # item k of the dataset is the triple whose count range holds k
        items = jax.random.choice(key, pool, (size,), replace=False)
        triple = jnp.minimum(jnp.searchsorted(ends, items, side="right"), w.shape[0] - 1)
    counts = jnp.zeros_like(w).at[triple].add(1.0)
    return PreferenceData((counts / size).reshape(data.weight.shape))


def dataset_size_error(data: PreferenceData, pool: int) -> str | None:
    """Why ``data`` is not a dataset of ``pool`` pairs (``weight·pool`` not integers summing to
    ``pool``), or None — checked before drawing without replacement."""
    import numpy as np

    c = np.asarray(data.weight, dtype=float).reshape(-1) * int(pool)
    if np.abs(c - np.round(c)).max() > 1e-6 or abs(np.round(c).sum() - pool) > 0.5:
        return (f"the data is not a dataset of {pool} pairs (weight × {pool} are not integer counts); "
                "drawing without replacement needs a finite dataset (data: sampled n)")
    return None


def chosen_rejected(data: PreferenceData, policies) -> tuple:
    """The data-weighted mean probability of the chosen and of the rejected response,
    ``Σ w[x, i, j]·π(i|x)`` and ``Σ w[x, i, j]·π(j|x)``, for policies ``[..., X, K]`` (e.g. a
    trajectory's logged ``policies``): with one labelled pair these are π(y_w) and π(y_l), the
    two curves of likelihood displacement (Razin et al. 2025, *Unintentional Unalignment*)."""
    import numpy as np

    w = np.asarray(data.weight, dtype=float)
    p = np.asarray(policies, dtype=float)
    if w.shape[-1] != p.shape[-1]:
        raise BanditError("chosen/rejected probabilities need pairwise data (this objective reads none)")
    return np.einsum("xij,...xi->...", w, p), np.einsum("xij,...xj->...", w, p)


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
