"""Token-tree checks (issue 5): UE-DPO Eq. 28 and Eq. 34–39 (Eq. 35 with its exact factor), the
token/sequence optimum, TDPO1 ≡ DPO at T = 1, Ra-DPO Lemma 3.1 and Thm 3.6 — exact when D_SeqRR
takes the CVaR tail opposite to the value recursion's, broken when it takes the same one (all
four pairings are evaluated). Every instance is a random float64 token tree
(:func:`bandit_lab.tokens.random_tree_problem`); quantities are compared with references that
are computed another way (closed forms over sequences, a second recursion, exact solvers)."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from bandit_lab.core import metrics
from bandit_lab.checks import Check, padded, value_and_grad
from bandit_lab.core.objective import make_objective
from bandit_lab.solvers.oracles import rlhf_optimum
from bandit_lab.solvers.solver import solve_exact
from bandit_lab.tokens.dp import eq31_optimum
from bandit_lab.tokens import lemma34_policy, make_param, nested_values, random_tree_problem, soft_dp
from bandit_lab.tokens.risk import cvar_np
from bandit_lab.tokens.tree import log_softmax_np


def _padded(tp, contexts: int = 2):
    """``tp`` with its last prompt repeated up to ``contexts`` prompts (:func:`bandit_lab.checks.padded`:
    the solver compiles once per shape, and instances have 1 or 2 prompts; the losses solved here
    are sums of per-prompt terms without weight decay, so the first ``X`` rows are ``tp``'s own)."""
    import dataclasses

    X = tp.problem.n_contexts
    idx = list(range(X)) + [X - 1] * max(contexts - X, 0)
    take = lambda a: None if a is None else np.asarray(a)[idx]  # noqa: E731
    return dataclasses.replace(tp, problem=padded(tp.problem, contexts), ref_logp=take(tp.ref_logp), token_reward=take(tp.token_reward))


def _beta(rng) -> float:
    return float(np.exp(rng.uniform(np.log(0.3), np.log(3.0))))


def eq28(n: int, seed: int) -> float:
    """max |β log π*(a|s)/π_ref(a|s) − (Q*(s,a) − V*(s))| over every state and token, with π*(a|s)
    read off the *sequence-level* closed form π_ref(y)e^{r(y)/β}/Z (prefix marginals), and Q*, V*
    from the backward soft recursion (UE-DPO Eq. 17–18)."""
    rng = np.random.default_rng(seed)
    worst = 0.0
    for _ in range(n):
        tp = random_tree_problem(rng, reward_scale=2.0)
        b = _beta(rng)
        seq = rlhf_optimum(tp.problem.pi_ref, tp.problem.reward, b)
        cond = tp.tree.conditionals(seq)
        dp = soft_dp(tp.tree, tp.ref_logp, tp.token_reward, b)
        lhs = b * (np.log(cond) - tp.ref_logp)
        worst = max(worst, float(np.abs(lhs - (dp.Q - dp.V[..., None])).max()))
    return worst


def token_equals_sequence(n: int, seed: int) -> float:
    """max TV between (i) the soft-DP token optimum multiplied along each response, (ii) the
    sequence RLHF optimum π_ref(y)e^{r(y)/β}/Z, (iii) the exact optimum of sequence DPO (core
    ``dpo`` on the token-tree parameterization, population data, exact solver)."""
    rng = np.random.default_rng(seed)
    worst = 0.0
    for _ in range(n):
        tp = random_tree_problem(rng)
        b = _beta(rng)
        dp = soft_dp(tp.tree, tp.ref_logp, tp.token_reward, b)
        tok = np.exp(tp.tree.seq_logp(dp.logpi))
        seq = rlhf_optimum(tp.problem.pi_ref, tp.problem.reward, b)
        pt = _padded(tp)
        res = solve_exact(make_objective(pt.problem, "dpo", {"beta": b}, param=make_param(pt)))
        pol = res.policy[: tp.problem.n_contexts]
        w = tp.problem.context_weight
        worst = max(worst, metrics.tv(tok, seq, w), metrics.tv(pol, seq, w), metrics.tv(pol, tok, w))
    return worst


def tdpo1_is_dpo(n: int, seed: int) -> float:
    """T = 1: max |TDPO1 − DPO| over values and gradients at random logits (D_SeqKL is the same
    root KL for every response, so δ ≡ 0)."""
    rng = np.random.default_rng(seed)
    worst = 0.0
    for _ in range(n):
        tp = random_tree_problem(rng, horizon=1)
        b = _beta(rng)
        par = make_param(tp)
        theta = jnp.asarray(rng.normal(0, 2, par.shape))
        vals = []
        for name in ("dpo", "tdpo1"):
            o = make_objective(tp.problem, name, {"beta": b}, param=par)
            vals.append(value_and_grad(o, theta))
        worst = max(worst, abs(float(vals[0][0] - vals[1][0])), float(jnp.abs(vals[0][1] - vals[1][1]).max()))
    return worst


# ------------------------------------------------------------------ UE-DPO Eq. 31–39 at one state

def _state_instance(rng):
    tp = random_tree_problem(rng)
    b = _beta(rng)
    dp = soft_dp(tp.tree, tp.ref_logp, tp.token_reward, b)
    x = int(rng.integers(tp.problem.n_contexts))
    s = int(rng.integers(tp.tree.n_states))
    lam = rng.uniform(0.5, 2.0, tp.tree.vocab)
    return dp.Q[x, s], tp.ref_logp[x, s], lam, b


def eq34_39(n: int, seed: int) -> float:
    """At a random state with random per-action λ ∈ [0.5, 2] and Q* from the soft DP: the exact
    maximiser of Eq. 31 has the Eq. 34 form with ONE η(s) (spread of the per-action η), and
    Eq. 36, 38, 39 hold there. Returns the largest residual."""
    rng = np.random.default_rng(seed)
    worst = 0.0
    for _ in range(n):
        Q, lref, lam, b = _state_instance(rng)
        lp = eq31_optimum(Q, lref, lam, b)
        p = np.exp(lp)
        eta_a = b * lam * (1.0 + lp) - b * lref - Q  # Eq. 33 solved for η, one value per action
        eta = float(np.dot(p, eta_a))
        spread = float(eta_a.max() - eta_a.min())
        # Eq. 34: π = π_ref^{1/λ}·exp((Q + η)/(βλ))/Z with one Z (here Z = e, from the "+1" of Eq. 33)
        form = lref / lam + (Q + eta) / (b * lam)
        e34 = float(np.abs((form - np.log(np.exp(form).sum())) - lp).max())
        e36 = float(np.abs(b * (lam * lp - lref) - (Q - b * lam + eta)).max())
        V = float(np.dot(p, Q - b * (lam * lp - lref)))  # Eq. 37
        e38 = abs(V - (b * float(np.dot(p, lam)) - eta))
        e39 = float(np.abs(b * (lam * lp - lref) - (Q - V - b * (lam - np.dot(p, lam)))).max())
        worst = max(worst, spread, e34, e36, e38, e39)
    return worst


def eq35_sign(n: int, seed: int) -> float:
    """Sign of UE-DPO Eq. 35 vs central finite differences of log π*_a in λ_a (re-solving Eq. 31
    exactly at λ_a ± h). Returns the number of mismatches over all actions of all instances where
    the finite difference is clearly non-zero (|fd| > 1e-6)."""
    rng = np.random.default_rng(seed)
    bad = compared = 0
    for _ in range(n):
        Q, lref, lam, b = _state_instance(rng)
        lp = eq31_optimum(Q, lref, lam, b)
        eta = float(np.dot(np.exp(lp), b * lam * (1.0 + lp) - b * lref - Q))
        h = 1e-4
        for a in range(lam.size):
            up, dn = lam.copy(), lam.copy()
            up[a] += h
            dn[a] -= h
            fd = (eq31_optimum(Q, lref, up, b)[a] - eq31_optimum(Q, lref, dn, b)[a]) / (2 * h)
            eq35 = -lref[a] / lam[a] ** 2 - (Q[a] + eta) / (b * lam[a] ** 2)
            if abs(fd) > 1e-6:
                compared += 1
                bad += int(np.sign(fd) != np.sign(eq35))
    return float(bad) if compared >= n else float("inf")  # a vacuous comparison fails


def eq35_factor(n: int, seed: int) -> float:
    """UE-DPO Eq. 35 is printed with ∝. Exactly: Eq. 35 is ∂log π*_a/∂λ_a *at fixed η* (of the
    Eq. 33 form log π_a = (Q_a + η + β log π_ref,a)/(βλ_a) − 1), and with η re-solved so that
    Σπ* = 1 the total derivative is ``Eq. 35 × (1 − w_a)``, ``w_a = (π*_a/λ_a)/Σ_b π*_b/λ_b`` ∈ (0, 1)
    (differentiate Σ_b π*_b = 1: dη/dλ_a = −βλ_a w_a·Eq. 35). Returns the largest relative error
    of (i) a central difference of the Eq. 33 form at fixed η against Eq. 35 and (ii) a central
    difference of the exact Eq. 31 maximiser (re-solved at λ_a ± h) against Eq. 35 × (1 − w_a);
    also fails (inf) if some 1 − w_a leaves (0, 1)."""
    rng = np.random.default_rng(seed)
    worst = 0.0
    h = 1e-4
    for _ in range(n):
        Q, lref, lam, b = _state_instance(rng)
        lp = eq31_optimum(Q, lref, lam, b)
        p = np.exp(lp)
        eta = float(np.dot(p, b * lam * (1.0 + lp) - b * lref - Q))
        w = (p / lam) / np.sum(p / lam)
        if not np.all((w > 0) & (w < 1)):
            return float("inf")
        for a in range(lam.size):
            eq35 = -lref[a] / lam[a] ** 2 - (Q[a] + eta) / (b * lam[a] ** 2)
            fixed = lambda la: (Q[a] + eta + b * lref[a]) / (b * la) - 1.0  # noqa: E731  Eq. 33 at fixed η
            fd_fixed = (fixed(lam[a] + h) - fixed(lam[a] - h)) / (2 * h)
            up, dn = lam.copy(), lam.copy()
            up[a] += h
            dn[a] -= h
            fd_total = (eq31_optimum(Q, lref, up, b)[a] - eq31_optimum(Q, lref, dn, b)[a]) / (2 * h)
            scale = max(abs(eq35), 1e-3)
            worst = max(worst, abs(fd_fixed - eq35) / scale, abs(fd_total - eq35 * (1.0 - w[a])) / scale)
    return worst


# ------------------------------------------------------------------ Ra-DPO

def lemma31(n: int, seed: int) -> float:
    """Ra-DPO Lemma 3.1 on a tree, both CVaR tails, random policy and μ ∈ [0.3, 1]:
    max |Ṽ(s_t) − V(s_t) − R_{1:t−1}| with Ṽ from the cumulative-reward recursion (Eq. 6) and V
    from the per-step recursion (Eq. 5), computed independently."""
    rng = np.random.default_rng(seed)
    worst = 0.0
    for _ in range(n):
        tp = random_tree_problem(rng, reward_scale=2.0)
        pol = np.exp(log_softmax_np(rng.normal(0, 1.5, tp.ref_logp.shape)))
        mu = float(rng.uniform(0.3, 1.0))
        for tail in ("lower", "upper"):
            nv = nested_values(tp.tree, pol, tp.token_reward, mu, tail)
            worst = max(worst, float(np.abs(nv.Vt - nv.V - tp.tree.prefix_reward(tp.token_reward)).max()))
    return worst


# (value-recursion tail, D_SeqRR tail). Eq. 21 read literally is the lower tail for both.
OPPOSITE_TAILS = (("lower", "upper"), ("upper", "lower"))
SAME_TAILS = (("lower", "lower"), ("upper", "upper"))


@functools.lru_cache(maxsize=4)
def thm36_gaps(n: int, seed: int) -> dict:
    """For every pairing (recursion tail, D_SeqRR tail) of the four, the list over ``n`` random
    trees of max over pairs |(u* − δ*) − (r(y1) − r(y2))| at the Lemma 3.4 policy of that
    recursion (each instance is evaluated under all four pairings; cached: two checks use it).

    Why only opposite tails work (Ra-DPO App. B.6 redone): with Φ the recursion's CVaR,
    Lemma 3.4 gives Q̃(s, z) = β log π*/π_ref(z|s) + β log Z(s) and Ṽ(s) = Φ_{π_ref}(Q̃(s, ·)), so by
    translation equivariance and positive homogeneity Ã(s, z) = β log π*/π_ref(z|s) −
    β Φ(log π*/π_ref(·|s)). Summed along y the advantages telescope to r(y) − Ṽ(root), and
    −Φ^tail(Z) = Φ^opposite(−Z), so Σ_t Ã = β log π*(y)/π_ref(y) + β Σ_t Φ^opposite(log π_ref/π*):
    D_SeqRR must take the tail opposite to the recursion's. Eq. 42 drops that sign flip."""
    rng = np.random.default_rng(seed)
    gaps = {c: [] for c in OPPOSITE_TAILS + SAME_TAILS}
    for _ in range(n):
        tp = random_tree_problem(rng, reward_scale=2.0, horizon=int(rng.choice([2, 3])))
        b = _beta(rng)
        mu = float(rng.uniform(0.5, 0.99))
        t = tp.tree
        r = tp.problem.reward
        for rec_tail in ("lower", "upper"):
            lp = lemma34_policy(t, tp.ref_logp, tp.token_reward, b, mu, rec_tail)  # Eq. 11 under that recursion
            h = t.seq_logp(lp) - t.seq_logp(tp.ref_logp)  # log π*(y)/π_ref(y)
            for d_tail in ("lower", "upper"):
                rr = cvar_np(tp.ref_logp - lp, np.exp(tp.ref_logp), mu, d_tail) @ t.visits.T  # D_SeqRR(x, y; π_ref‖π*)
                g = b * h + b * rr
                margin = g[:, :, None] - g[:, None, :]  # u* − δ*
                gaps[(rec_tail, d_tail)].append(float(np.abs(margin - (r[:, :, None] - r[:, None, :])).max()))
    return gaps


def thm36(n: int, seed: int) -> float:
    """Ra-DPO Thm 3.6 made exact: max over instances and over both *opposite* pairings (recursion
    lower = Eq. 21 with D_SeqRR upper; recursion upper with D_SeqRR lower) of
    max over pairs |(u* − δ*) − (r(y1) − r(y2))|, i.e. P_BT = σ(u* − δ*) exactly."""
    g = thm36_gaps(n, seed)
    return max(max(g[c]) for c in OPPOSITE_TAILS)


def thm36_same_tail(n: int, seed: int) -> float:
    """The same with D_SeqRR on the *same* tail as the recursion (lower/lower is Eq. 21 taken
    literally in both places; upper/upper): the identity breaks. Returns, over the two same-tail
    pairings, the smaller of their largest gaps (each pairing must fail somewhere: ≥ 1e-2)."""
    g = thm36_gaps(n, seed)
    return min(max(g[c]) for c in SAME_TAILS)


def radpo1_optimum(n: int, seed: int) -> float:
    """Consequence of Thm 3.6: the Lemma 3.4 policy is the population optimum of Ra-DPO1 when
    the loss's D_SeqRR takes the tail opposite to the recursion's. Instances alternate the two
    pairings (even: Eq. 21's lower-tail recursion with the default ``tail="upper"`` loss; odd:
    upper-tail recursion with ``tail="lower"``). max TV between the exact solver's Ra-DPO1
    optimum (μ ∈ [0.5, 1]) and that Lemma 3.4 policy."""
    rng = np.random.default_rng(seed)
    worst = 0.0
    for i in range(n):
        tp = random_tree_problem(rng, pairs="uniform")
        b = _beta(rng)
        mu = float(rng.uniform(0.5, 1.0))
        rec_tail, d_tail = OPPOSITE_TAILS[i % 2]
        lp = lemma34_policy(tp.tree, tp.ref_logp, tp.token_reward, b, mu, rec_tail)
        pt = _padded(tp)
        res = solve_exact(make_objective(pt.problem, "radpo1", {"beta": b, "mu": mu, "tail": d_tail}, param=make_param(pt)))
        worst = max(worst, metrics.tv(res.policy[: tp.problem.n_contexts], np.exp(tp.tree.seq_logp(lp)), tp.problem.context_weight))
    return worst


CHECKS = [
    Check("token-eq28", "β·log π*(a|s)/π_ref(a|s) = Q*(s,a) − V*(s) at every state of a tree (UE-DPO Eq. 28, soft DP Eq. 16–18)", 1e-10, eq28),
    Check("token-optimum", "soft-DP token optimum = sequence RLHF optimum π_ref·e^{r/β}/Z = exact sequence-DPO optimum (UE-DPO Eq. 24, 29)", 1e-8, token_equals_sequence),
    Check("tdpo1-dpo-T1", "TDPO1 ≡ DPO at T = 1, values and gradients (Ra-DPO Fig. 1: D_SeqKL identical for every response)", 1e-12, tdpo1_is_dpo),
    Check("uedpo-eq34", "exact optimum of Eq. 31 has the Eq. 34 form with one η(s); Eq. 36, 38, 39 hold (UE-DPO App. C–D)", 1e-9, eq34_39),
    Check("uedpo-eq35-sign", "sign of ∂log π*/∂λ from Eq. 35 = sign of finite differences of the exact optimum (mismatches)", 0.0, eq35_sign),
    Check("uedpo-eq35-factor", "Eq. 35 (printed with ∝) = ∂log π*_a/∂λ_a at fixed η; η re-solved: Eq. 35 × (1 − w_a), 0 < w_a < 1 — consistent with its ∝ (rel. error vs finite differences)",
          1e-6, eq35_factor),
    Check("radpo-lemma31", "Ṽ(s_t) = V(s_t) + R_{1:t−1} on a tree under nested CVaR, both tails (Ra-DPO Lemma 3.1, Eq. 5–7)", 1e-12, lemma31),
    Check("radpo-thm36", "Ra-DPO Thm 3.6 (Eq. 14–16) is exact when D_SeqRR's CVaR tail is opposite to the value recursion's: max |(u*−δ*) − Δr| over both opposite pairings",
          1e-10, thm36),
    Check("radpo-thm36-literal", "Thm 3.6 FAILS with D_SeqRR on the recursion's own tail (lower/lower = Eq. 21 literally; upper/upper): smaller of the two largest gaps ≥ 1e-2",
          1e-2, thm36_same_tail, direction="≥"),
    Check("radpo1-optimum", "Ra-DPO1 optimum (exact solver) = Lemma 3.4 policy π_ref·e^{Q̃_ref/β}/Z, D_SeqRR tail opposite to the recursion's, both pairings (Ra-DPO Eq. 11, 17)", 1e-8, radpo1_optimum),
]
