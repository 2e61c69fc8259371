"""Checks from Tri Nguyen's notes on RLHF, DPO and IPO (``papers/dpo-vs-ipo-notes.txt``).

- ``ipo-lemma-3.1``: Lemma 3.1 — with ``y1, y2 ~ μ`` i.i.d., the regression objectives (9)
  ``E[(h − E_y[v(y1,y) − v(y2,y)])²]`` and (10) ``E[(h − v(y1,y2))²]``, ``h = q(y1) − q(y2)``,
  ``q = β log π/π_ref``, differ by a constant independent of θ. Computed by plain summation over
  ``μ ⊗ μ`` for a random, generally intransitive preference matrix ``v`` (8a–8c) and random μ;
  the value is the spread ``max − min`` of (9) − (10) over 12 random policies per instance.
  The notes' proof uses only ``E_{μ⊗μ}[v] = ½`` and the symmetry (8c); ties (y1 = y2) included.
- ``ipo-lemma-3.1-needs-mu``: the converse, as a finding: for a pair law that is *not* a product
  (pairs from a random sparse symmetric law with the score s taken under its marginal) the
  difference does move with θ (smallest spread must be ≥ 1e-3), so the i.i.d. assumption is doing
  the work.
- ``ipo-product-law``: IPO's population optimum is ``π_ref·exp(r_μ/β)/Z`` with
  ``r_μ(y) = Σ_y' μ(y') p(y ≻ y')`` for a *non-uniform* product pair law ``y1, y2 ~ μ`` i.i.d.
  (ties dropped), given to :class:`Problem` as explicit pairs ``[i, j, μ_i μ_j]``, solved by the
  exact solver (the core ``ipo-rlhf`` check covers the uniform and the reference law). Note μ
  here is the law of *each* response, not the marginal of the tie-free pair law (which is
  ``∝ μ_i(1 − μ_i)``); the docstring of ``oracles.ipo_optimum`` derives why.
"""
from __future__ import annotations

import numpy as np

from bandit_lab.core import metrics
from bandit_lab.checks import Check
from bandit_lab.core.objective import make_objective
from bandit_lab.solvers.oracles import softmax_np
from bandit_lab.core.problems import Problem
from bandit_lab.core.random_problems import dirichlet
from bandit_lab.solvers.solver import solve_exact


def random_matrix(rng, k: int) -> np.ndarray:
    """A random preference matrix satisfying (8a)–(8c), in general intransitive."""
    a = rng.uniform(0.0, 1.0, (k, k))
    v = np.triu(a, 1)
    v = v + np.tril(1.0 - v.T, -1)
    np.fill_diagonal(v, 0.5)
    return v


def objectives_9_10(q: np.ndarray, v: np.ndarray, law: np.ndarray, mu: np.ndarray) -> tuple[float, float]:
    """(9) and (10) of the notes by summation over the pair law ``law[i, j]`` (rows y1, cols y2);
    the score of (9) is ``s(y) = Σ_y' μ(y') v(y, y')``."""
    h = q[:, None] - q[None, :]
    s = v @ mu
    t9 = s[:, None] - s[None, :]
    return float(np.sum(law * (h - t9) ** 2)), float(np.sum(law * (h - v) ** 2))


def _spreads(n: int, seed: int, product: bool) -> list[float]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        k = int(rng.choice([3, 5, 8]))
        v = random_matrix(rng, k)
        beta = float(np.exp(rng.uniform(np.log(0.1), np.log(3.0))))
        ref = dirichlet(rng, (k,))
        if product:
            mu = dirichlet(rng, (k,))
            law = np.outer(mu, mu)
        else:
            m = rng.uniform(0, 1, (k, k)) * (rng.uniform(0, 1, (k, k)) < 0.5)
            law = m + m.T
            law /= law.sum()
            mu = law.sum(1)
        diffs = []
        for _p in range(12):
            pi = dirichlet(rng, (k,), conc=0.5)
            q = beta * (np.log(pi) - np.log(ref))
            a, b = objectives_9_10(q, v, law, mu)
            diffs.append(a - b)
        out.append(float(np.max(diffs) - np.min(diffs)))
    return out


def lemma_3_1(n: int, seed: int) -> float:
    return max(_spreads(n, seed, product=True))


def lemma_3_1_needs_product(n: int, seed: int) -> float:
    return min(_spreads(n, seed, product=False))


def product_law_optimum(n: int, seed: int) -> float:
    """max TV(exact IPO optimum, π_ref·e^{r_μ/β}/Z) over random non-uniform product pair laws."""
    rng = np.random.default_rng(seed)
    worst = 0.0
    for _ in range(n):
        k = int(rng.choice([3, 5]))
        ref = dirichlet(rng, (k,))
        mu = dirichlet(rng, (k,))
        rows = [[i, j, float(mu[i] * mu[j])] for i in range(k) for j in range(i + 1, k)]
        kind = rng.integers(2)
        pb = (Problem.create(ref, reward=rng.normal(0, 1.5, k), pairs=rows) if kind == 0
              else Problem.create(ref, matrix=random_matrix(rng, k), pairs=rows))
        beta = float(np.exp(rng.uniform(np.log(0.2), np.log(3.0))))
        res = solve_exact(make_objective(pb, "ipo", {"beta": beta}))
        r_mu = pb.pref[0] @ mu
        closed = softmax_np(np.log(ref) + r_mu / beta)
        worst = max(worst, float(metrics.tv(res.policy[0], closed)))
    return worst


CHECKS = [
    Check("ipo-lemma-3.1", "(9) − (10) constant in θ for y1,y2 ~ μ i.i.d.: max spread over policies (Nguyen notes Lemma 3.1)", 1e-12, lemma_3_1),
    Check("ipo-lemma-3.1-needs-mu", "finding: with a non-product pair law (9) − (10) varies with θ: min spread (Nguyen notes Lemma 3.1 premise)",
          1e-3, lemma_3_1_needs_product, direction="≥"),
    Check("ipo-product-law", "IPO optimum = π_ref·e^{r_μ/β}/Z, r_μ = Σ μ(y′)p(y≻y′), non-uniform product pair law (notes Eq. 9–12; Azar Prop. 4)",
          1e-8, product_law_optimum),
]
