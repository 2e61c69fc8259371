"""Verdict checks (issue 20): each verdict kind of :mod:`bandit_lab.certificates` on random
instances, its certificate re-checked here independently — NumPy losses, closed forms, the sign
structure of a recession direction. A wrong kind counts as error 1.

- ``verdict-no-minimiser``: DPO with deterministic preferences (a random total order), K ∈ {2, 4,
  6}, β log-uniform in [1e-3, 1e3] — Azar et al. 2023 §4.2: no finite minimiser for any β. Re-check:
  the recession direction raises the margin of every shown pair (so each term of the loss strictly
  decreases to 0, the loss's lower bound), the limit is the top-ranked response's vertex.
- ``verdict-set``: IPO with some responses in no pair (a random tree on the others) — Azar et al.
  2023 App. A.2: the minimisers form a set of dimension = number of unobserved responses. Re-check:
  the shown point against the closed form nearest π_ref (least-norm logit change meeting each
  edge's IPO target m* = (2p − 1)/(2β)).
- ``verdict-unique``: DPO with stochastic BT preferences on uniform pairs: unique; re-check with a
  NumPy central-difference Hessian on the tangent space (positive definite, Newton step ≤ 1e-8)
  and the closed form π_ref·e^{r/β}/Z (Rafailov et al. 2023 Eq. 4).
- ``verdict-not-certified``: the same IPO problems at a non-stationary point (π_ref): *not
  certified*, never a minimiser; re-check: the NumPy Newton step there is > 1e-3.
- ``verdict-stationary``: RLOO (exact expected update, k1 reward penalty) — a field with root the
  Gibbs policy π_ref·e^{r/β}/Z (Ahmadian et al. 2024; :mod:`bandit_lab.onpolicy`): *stationary
  point, attracting*; re-check: TV to the Gibbs closed form.
"""
from __future__ import annotations

import numpy as np

from bandit_lab.checks import Check
from bandit_lab.core import metrics
from bandit_lab.core.objective import make_objective
from bandit_lab.core.problems import Problem
from bandit_lab.core.random_problems import dirichlet
from bandit_lab.solvers.oracles import rlhf_optimum
from bandit_lab.solvers.solver import solve_exact
from bandit_lab.verdict import Kind


def _certify(obj, ex):
    from bandit_lab.certificates import verdict_of

    return verdict_of(obj, ex)


def _log_beta(rng, lo=-3.0, hi=3.0) -> float:
    return float(10.0 ** rng.uniform(lo, hi))


def _dpo_np(theta, lref, W, beta) -> float:
    lp = theta - np.logaddexp.reduce(theta)
    h = lp - lref
    return float(np.sum(W * np.logaddexp(0.0, -beta * (h[:, None] - h[None, :]))))


def _ipo_np(theta, lref, W, beta) -> float:
    lp = theta - np.logaddexp.reduce(theta)
    h = lp - lref
    return float(np.sum(W * (h[:, None] - h[None, :] - 0.5 / beta) ** 2))


def _newton_step_np(f, th) -> tuple[float, float]:
    """(‖H_T⁻¹ g_T‖, λ_min(H_T)) by central differences on the sum-zero tangent space."""
    K = th.size
    T = np.linalg.svd(np.eye(K) - 1.0 / K)[2][: K - 1].T
    e = 1e-4
    H = np.array([[(f(th + e * a + e * b) - f(th + e * a - e * b) - f(th - e * a + e * b) + f(th - e * a - e * b)) / (4 * e * e)
                   for b in T.T] for a in T.T])
    g = np.array([(f(th + e * a) - f(th - e * a)) / (2 * e) for a in T.T])
    lam = np.linalg.eigvalsh(0.5 * (H + H.T))
    return float(np.linalg.norm(np.linalg.solve(H, g))) if lam.min() > 0 else float("inf"), float(lam.min())


def no_minimiser(n: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    worst = 0.0
    for i in range(n):
        K = (2, 4, 6)[i % 3]
        order = rng.permutation(K)  # order[0] beats everyone
        rank = np.argsort(order)
        P = [[0.5 if a == b else float(rank[a] < rank[b]) for b in range(K)] for a in range(K)]
        pb = Problem.create(dirichlet(rng, (K,), floor=0.05).tolist(), matrix=P, pairs="uniform")
        beta = _log_beta(rng)
        obj = make_objective(pb, "dpo", {"beta": beta})
        v = _certify(obj, solve_exact(obj))
        if v.kind is not Kind.NO_MINIMISER:
            return 1.0
        d = np.asarray(v.certificate["direction"])
        W = np.asarray(obj.data.weight)[0]
        rates = (d[:, None] - d[None, :])[W > 0]
        vertex = np.eye(K)[order[0]]
        worst = max(worst, float(np.abs(np.asarray(v.limit)[0] - vertex).max()), abs(v.certificate["infimum"]),
                    1.0 if rates.min() <= 0 else 0.0)
    return worst


def _ipo_unobserved(rng):
    K = int(rng.integers(3, 6))
    obs = rng.permutation(K)[: int(rng.integers(2, K))]  # at least one response in no pair
    pi_star = dirichlet(rng, (K,), floor=0.05)
    pairs = [[int(a), int(b), float(rng.uniform(0.5, 2.0))] for a, b in zip(obs[:-1], obs[1:])]  # a path: a tree
    pb = Problem.create(dirichlet(rng, (K,), floor=0.05).tolist(), pi_star=pi_star.tolist(), pairs=pairs)
    beta = _log_beta(rng, -0.5, 0.5)
    return K, obs, pb, beta, make_objective(pb, "ipo", {"beta": beta})


def set_of_minimisers(n: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    worst = 0.0
    for _ in range(n):
        K, obs, pb, beta, obj = _ipo_unobserved(rng)
        v = _certify(obj, solve_exact(obj))
        if v.kind is not Kind.SET or v.dimension != K - len(obs) or v.shown != "nearest π_ref":
            return 1.0
        W = np.asarray(obj.data.weight)[0]
        A, m = [], []
        for a in range(K):
            for b in range(a + 1, K):
                t = W[a, b] + W[b, a]
                if t > 0:
                    row = np.zeros(K)
                    row[a], row[b] = 1.0, -1.0
                    A.append(row)
                    m.append((2 * W[a, b] / t - 1) / (2 * beta))  # IPO's per-pair target (Azar et al. Eq. 17)
        delta = np.linalg.lstsq(np.array(A), np.array(m), rcond=None)[0]  # least-norm: nearest π_ref's logits
        theta = np.log(pb.pi_ref[0]) + delta
        expected = np.exp(theta - theta.max()) / np.exp(theta - theta.max()).sum()
        worst = max(worst, float(metrics.tv(np.asarray(v.certificate["shown_policy"]), expected[None])))
    return worst


def unique(n: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    worst = 0.0
    for _ in range(n):
        K = 3
        pb = Problem.create(dirichlet(rng, (K,), floor=0.05).tolist(), pi_star=dirichlet(rng, (K,), floor=0.05).tolist(), pairs="uniform")
        beta = _log_beta(rng, -0.5, 0.5)
        obj = make_objective(pb, "dpo", {"beta": beta})
        ex = solve_exact(obj)
        v = _certify(obj, ex)
        if v.kind is not Kind.UNIQUE:
            return 1.0
        W, lref = np.asarray(obj.data.weight)[0], np.log(pb.pi_ref[0])
        step, lam = _newton_step_np(lambda t: _dpo_np(t, lref, W, beta), np.asarray(ex.params)[0])  # noqa: B023
        cf = rlhf_optimum(pb.pi_ref, pb.reward, beta)
        # the finite-difference Newton step resolves ≈ 1e-6 (central differences at h = 1e-4)
        worst = max(worst, max(0.0, step - 1e-6), float(metrics.tv(ex.policy, cf)), 0.0 if lam > 0 else 1.0)
    return worst


def not_certified(n: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    worst = 0.0
    for _ in range(n):
        K, obs, pb, beta, obj = _ipo_unobserved(rng)
        ex = solve_exact(obj)
        start = obj.param.init()
        v = _certify(obj, ex._replace(params=start, converged=False))
        W, lref = np.asarray(obj.data.weight)[0], np.log(pb.pi_ref[0])
        g = np.array([(_ipo_np(np.asarray(start)[0] + 1e-5 * e, lref, W, beta) - _ipo_np(np.asarray(start)[0] - 1e-5 * e, lref, W, beta)) / 2e-5
                      for e in np.eye(K)])
        if v.kind is not Kind.NOT_CERTIFIED or np.linalg.norm(g) < 1e-3:
            return 1.0
    return worst


def stationary(n: int, seed: int) -> float:
    from bandit_lab.certificates import onpolicy_verdict
    from bandit_lab.onpolicy.stationary import solve as stationary_solve

    rng = np.random.default_rng(seed)
    worst = 0.0
    for _ in range(n):
        pb = Problem.create(dirichlet(rng, (3,), floor=0.05).tolist(), pi_star=dirichlet(rng, (3,), floor=0.05).tolist(), pairs="uniform")
        beta = _log_beta(rng, -0.5, 0.5)
        obj = make_objective(pb, "rloo", {"beta": beta})
        st = stationary_solve(obj)
        v = onpolicy_verdict(st.status, st.note, st.result.residual, st.result.converged, st.certificate)
        if v.kind is not Kind.STATIONARY or v.certificate["stability"] != "attracting":
            return 1.0
        worst = max(worst, float(metrics.tv(st.result.policy, rlhf_optimum(pb.pi_ref, pb.reward, beta))))
    return worst


CHECKS = [
    Check("verdict-no-minimiser", "deterministic-label DPO, K ∈ {2,4,6}, β ∈ [1e-3, 1e3]: no finite minimiser, limit = top "
          "vertex, every shown pair's margin rises along the certificate's ray (Azar et al. 2023 §4.2)", 1e-12, no_minimiser, n_instances=9),
    Check("verdict-set", "IPO with unobserved responses: set of minimisers of dimension #unobserved; shown point = closed form "
          "nearest π_ref (Azar et al. 2023 App. A.2)", 1e-8, set_of_minimisers, n_instances=6),
    Check("verdict-unique", "stochastic-label DPO: unique minimiser; NumPy Hessian PD on the tangent space, Newton step small, "
          "= π_ref·e^{r/β}/Z (Rafailov et al. Eq. 4)", 1e-8, unique, n_instances=6),
    Check("verdict-not-certified", "a non-stationary point (π_ref for IPO) is 'not certified', never a minimiser", 0.0,
          not_certified, n_instances=4),
    Check("verdict-stationary", "RLOO's exact field: 'stationary point (attracting)' at the Gibbs policy (Ahmadian et al. 2024)",
          1e-8, stationary, n_instances=4),
]
