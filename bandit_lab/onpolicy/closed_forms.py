"""Closed forms and characterisations of on-policy stationary points (NumPy float64, independent
of the JAX losses: own enumeration, own root finding).

Notation per context: π the policy, π_ref, rewards r, β the KL coefficient. A policy-gradient
update with per-response weights ``W_k = π_k ā_k`` (``ā_k`` = the expected advantage a response k
receives) and a KL term has, in softmax logits, the field ``F_k = −π_k(ā_k − Σ_j π_j ā_j) + β·∇_k D``.

- **Gibbs** ``π_ref·e^{r/β}/Z``: REINFORCE / RLOO / PPO with the KL as k1 in the reward, k2 in the
  loss or exact (the expected update is ∇ of −E_π r + β KL(π‖π_ref)); GRPO and Dr. GRPO with k1 *in
  the reward* too — their advantages vanish in expectation for every response iff the shaped
  rewards ``r − β log(π/π_ref)`` are equal (the normalised advantage is monotone), which is Gibbs.
- **forward-KL RLHF optimum** ``β·π_ref/(λ − r)``: the same with k3 in the loss (its expected
  gradient is ∇KL(π_ref‖π), Tang & Munos 2025).
- **Dr. GRPO** (group mean, no std): ``ā_k = (1 − 1/G)(r_k − E_π r)``, so Gibbs / forward-KL at
  ``β·G/(G−1)`` with the KL in the loss (Liu et al. 2025's unbiased advantage up to the factor).
- **GRPO** (group std): Vojnovic & Yun 2025 — with the KL gradient of k3 (their "reverse KL"
  penalty in their naming of GRPO's estimator, which differentiates KL(π_ref‖π)) the stationary
  policy solves ``π_k = π_ref,k / (1 − ā_k(π)/β)`` (Σ_k π_k ā_k = 0 for group-normalised
  advantages); with an exact reverse-KL gradient, ``π ∝ π_ref·exp(ā(π)/β)``. ``ā(π)`` is the
  reward preference model ``P_G(o|π)``: the expected normalised advantage of o in a group of G
  with G−1 i.i.d. companions. Closed forms: G = 2, ``ā_k = Σ_j π_j a(r_k − r_j)`` with
  ``a(Δ) = (Δ/2)/(|Δ|/√2 + ε)`` (ddof 1; ``sign(Δ)/√2`` at ε = 0: pairwise comparisons); binary
  rewards, one scalar equation in the success probability p with binomial sums
  (:func:`binary_abar`).
- **Mroueh 2025** (binary rewards, population mean/variance, exact KL): ``p_n = h(p_{n−1})``,
  ``h(p) = 1/(1 + (1 − p_ref)/p_ref · exp(−1/(β√(p(1−p)+ε))))``; its fixed point is GRPO's
  stationary success probability in that model, and exceeds p_ref (success amplification).
- **Nash-MD** (Munos et al. 2023): the expected Nash-MD-PG update with mixture m has zeros
  ``π ∝ π_ref·exp(P(y ≻ π^μ)/β)``, ``π^μ ∝ π^{1−m}π_ref^m``; m = 0 is the regularised Nash
  equilibrium — also online IPO's stationary point — and m = 1 is IPO's optimum with the
  π_ref⊗π_ref pair law (``r_IPO(y) = P(y ≻ π_ref)``).
"""
from __future__ import annotations

import itertools
import math

import numpy as np

from bandit_lab.solvers.f_rlhf import rlhf_optimum, softmax_np


def kl_kind(static: dict, beta: float) -> str:
    """Which divergence the expected KL gradient differentiates (docs/onpolicy.md, Table 1):
    ``reverse`` (KL(π‖π_ref), in the loss), ``reverse_reward`` (k1 in the reward), ``forward``
    (KL(π_ref‖π)), ``none`` (β = 0 or k1 in the loss), ``other`` (k2/k3 in the reward)."""
    est, place = static.get("kl_estimator", "exact"), static.get("kl_placement", "loss")
    if beta == 0:
        return "none"
    if est == "exact" or (est, place) == ("k2", "loss"):
        return "reverse"
    if (est, place) == ("k1", "reward"):
        return "reverse_reward"
    if place == "loss" and static.get("kl_bias_correction", False) and est in ("k1", "k3"):
        # TRL 1.16 use_bias_correction_kl: k̂·ρ with ρ differentiable, E_π[∇(k̂ρ)] = ∇E_π[k̂] = ∇KL(π‖π_ref)
        # for the unbiased k1 and k3 (token ratio; a sequence-level ratio on a tree is not covered here)
        return "reverse"
    if (est, place) == ("k3", "loss"):
        return "forward"
    if (est, place) == ("k1", "loss"):
        return "none"
    return "other"


# --------------------------------------------------------------------------- group advantages

def group_advantages(rewards: np.ndarray, normalize: str, ddof: int = 1, eps: float = 1e-4) -> np.ndarray:
    """Advantages of one group (NumPy, as TRL computes them: ``(r − mean)/(std + ε)``)."""
    r = np.asarray(rewards, dtype=np.float64)
    G = r.size
    if normalize == "group_mean":
        return r - r.mean()
    if normalize == "loo":
        return r - (r.sum() - r) / (G - 1)
    if normalize == "none":
        return r.copy()
    if np.all(r == r[0]):
        return np.zeros_like(r)
    return (r - r.mean()) / (np.std(r, ddof=ddof) + eps)


def _companions(K: int, G: int):
    """The multisets of G−1 companions among K responses: (counts (M, K), multinomial coefficients (M,))."""
    key = (K, G)
    if key not in _COMPANIONS:
        combos = list(itertools.combinations_with_replacement(range(K), G - 1))
        counts = np.array([np.bincount(c, minlength=K) if c else np.zeros(K, int) for c in combos], dtype=np.int64)
        coef = np.array([math.factorial(G - 1) / np.prod([math.factorial(int(c)) for c in row]) for row in counts])
        _COMPANIONS[key] = (counts, coef)
    return _COMPANIONS[key]


_COMPANIONS: dict = {}


def abar(pi: np.ndarray, r: np.ndarray, G: int, normalize: str, ddof: int = 1, eps: float = 1e-4) -> np.ndarray:
    """``ā_k`` = E[advantage of a response k | it is in a group with G−1 i.i.d. π-draws], by
    brute-force enumeration of the companions' multisets (one context; vectorised over the
    multisets, the same arithmetic as :func:`group_advantages` per group)."""
    pi, r = np.asarray(pi, float), np.asarray(r, float)
    K = r.size
    counts, coef = _companions(K, G)
    prob = coef * np.prod(pi[None, :] ** counts, axis=1)  # (M,)
    # group sum over the companions; the focal k adds r_k
    s1 = counts @ r
    rk = r[:, None]
    tot1 = s1[None, :] + rk  # (K, M)
    mean = tot1 / G
    if normalize == "group_mean":
        A = rk - mean
    elif normalize == "loo":
        A = rk - s1[None, :] / (G - 1)
    elif normalize == "none":
        A = np.broadcast_to(rk, mean.shape)
    else:
        dev = r[None, None, :] - mean[:, :, None]  # (K, M, K): deviation of each response from the group mean
        ss = (counts[None, :, :] * dev * dev).sum(-1) + (rk - mean) ** 2
        # all G rewards equal (focal's reward on every companion's response): advantage 0
        same = (counts[None, :, :] * (r[None, None, :] != rk[:, :, None])).sum(-1) == 0
        std = np.sqrt(ss / (G - ddof))
        A = np.where(same, 0.0, (rk - mean) / (std + eps))
    return A @ prob


def abar_pairs(pi: np.ndarray, r: np.ndarray, ddof: int = 1, eps: float = 1e-4) -> np.ndarray:
    """G = 2 closed form (Vojnovic & Yun §groups of two): ``ā_k = Σ_j π_j a(r_k − r_j)``,
    ``a(Δ) = (Δ/2)/(|Δ|/s + ε)``, ``s = √2`` (ddof 1) or 2 (ddof 0); a(0) = 0."""
    s = np.sqrt(2.0) if ddof == 1 else 2.0
    d = r[:, None] - r[None, :]
    a = np.where(d != 0, (d / 2) / (np.abs(d) / s + eps + (d == 0)), 0.0)
    return a @ pi


def binary_abar(p: float, G: int, ddof: int = 1, eps: float = 1e-4) -> tuple[float, float]:
    """Binary rewards (success 1, failure 0), success probability p: ``(ā_success, ā_failure)``
    from binomial sums over the number s of successes among the G−1 companions."""
    a1 = a0 = 0.0
    for s in range(G):
        w = math.comb(G - 1, s) * p**s * (1 - p) ** (G - 1 - s)
        for focal, succ in ((1.0, s + 1), (0.0, s)):
            m = succ / G
            ss = succ * (1 - m) ** 2 + (G - succ) * m**2
            std = math.sqrt(ss / (G - ddof))
            A = 0.0 if succ in (0, G) else (focal - m) / (std + eps)
            if focal == 1.0:
                a1 += w * A
            else:
                a0 += w * A
    return a1, a0


# --------------------------------------------------------------------------- fixed points

def _solve_logits(residual, z0: np.ndarray) -> tuple[np.ndarray, float]:
    """Root of ``residual(z) = 0`` in logits (one context), SciPy's hybrid Powell method."""
    from scipy import optimize

    sol = optimize.root(residual, z0, method="hybr", options={"xtol": 1e-15, "maxfev": 20000})
    z = sol.x
    return softmax_np(z[None])[0], float(np.linalg.norm(residual(z)))


def grpo_fixed_point(ref: np.ndarray, r: np.ndarray, beta: float, G: int, *, normalize: str = "group_std", ddof: int = 1,
                     eps: float = 1e-4, penalty: str = "forward", start: np.ndarray | None = None,
                     success: np.ndarray | None = None) -> tuple[np.ndarray, float, str]:
    """Vojnovic–Yun stationary policy of GRPO in one context: ``π = π_ref/(1 − ā(π)/β)``
    (penalty ``forward``, GRPO's k3 in the loss) or ``π ∝ π_ref·e^{ā(π)/β}`` (``reverse``).
    Uses the G = 2 and binary closed forms of ā where they apply. ``success`` (stochastic 0/1
    rewards, ``reward_noise``): response k succeeds with probability q_k; a companion succeeds with
    p̄ = Σπq, so ``ā_k = q_k ā₁(p̄) + (1 − q_k) ā₀(p̄)`` (:func:`binary_abar`), or with population
    moments ``(q_k − p̄)/√(p̄(1 − p̄) + ε)``; ``r`` is then unused. Returns (π, residual, method)."""
    ref, r = np.asarray(ref, float), np.asarray(r, float)
    if np.any(ref <= 0):  # π_ref with zeros: the stationary policy lives on supp(π_ref) (bandit_lab.core.support)
        s = ref > 0
        out = np.zeros_like(ref)
        out[s], res, method = grpo_fixed_point(ref[s], r[s], beta, G, normalize=normalize, ddof=ddof, eps=eps, penalty=penalty,
                                               start=None if start is None else start[s] / start[s].sum(),
                                               success=None if success is None else np.asarray(success, float)[s])
        return out, res, method
    vals = np.unique(r)
    if success is not None:
        qs = np.asarray(success, float)
        if normalize == "population":
            def ab(pi):
                p = float(pi @ qs)
                return (qs - p) / np.sqrt(p * (1 - p) + eps)
        elif normalize == "group_std":
            def ab(pi):
                a1, a0 = binary_abar(float(pi @ qs), G, ddof, eps)
                return qs * a1 + (1 - qs) * a0
        else:
            raise ValueError(f"stochastic rewards with normalize={normalize!r}: affine advantage, use the expected reward")
        method = "stochastic 0/1 rewards: binomial sums in p̄ = Σπq"
    elif normalize == "population":
        def ab(pi):
            m = pi @ r
            return (r - m) / np.sqrt(pi @ (r - m) ** 2 + eps)
        method = "population moments (Mroueh 2025)"
    elif normalize == "group_std" and vals.size == 2:
        succ = r == vals[1]

        def ab(pi):
            a1, a0 = binary_abar(float(pi[succ].sum()), G, ddof, eps)
            return np.where(succ, a1, a0)
        method = "binary-reward closed form (binomial sums)"
    elif normalize == "group_std" and G == 2:
        ab = lambda pi: abar_pairs(pi, r, ddof, eps)  # noqa: E731
        method = "groups-of-two closed form"
    else:
        ab = lambda pi: abar(pi, r, G, normalize, ddof, eps)  # noqa: E731
        method = f"enumeration of the G−1 = {G - 1} companions"

    lref = np.log(ref)
    b_t = [float(beta)]  # the β the residual uses (continuation in β below changes it)

    def residual(z):
        # forward: the linear form π_k(1 − ā_k/β) − π_ref,k (Σ_k = −Σπā/β = 0 for group-normalised
        # advantages), well conditioned where 1 − ā_k/β ≈ π_ref,k/π_k → 0 (π_ref,k down to 1e-12),
        # unlike log π − log(π_ref/(1 − ā/β)), whose derivative there is ~1/π_ref,k.
        pi = softmax_np(z[None])[0]
        a = ab(pi)
        if penalty == "forward":
            out = pi * (1.0 - a / b_t[0]) - ref
        else:
            t = lref + a / b_t[0]  # log π − log softmax(t), both in log space (no log 0)
            out = (z - z.max() - np.log(np.exp(z - z.max()).sum())) - (t - t.max() - np.log(np.exp(t - t.max()).sum()))
            out = out - out.mean()
        return out + (z.mean() - lref.mean())

    def attempt(z0):
        z = _solve_logits(residual, z0)[0]
        with np.errstate(divide="ignore", invalid="ignore"):
            zz = np.log(z)
            zz = zz - zz.mean() + lref.mean()
        res = float(np.max(np.abs(residual(zz)))) if np.all(np.isfinite(zz)) else math.inf
        return z, res, zz

    # Starts: the given one, π_ref, uniform. Forward penalty: a root has 1 − ā_k/β = π_ref,k/π_k > 0
    # for every k, but where a response's ā_k(π) > β (a good response at small β, e.g. at π_ref),
    # ∂/∂z_k of π_k(1 − ā_k/β) is negative and Newton/Powell lowers z_k: ‖residual‖ decreases to
    # π_ref,k as π_k → 0 — a spurious boundary minimum (residual = π_ref,k, 0.2–0.4 on K = 4 problems,
    # found in round 3). So next: continuation in β from β_0 large (root ≈ π_ref, 1 − ā/β > 0), down
    # to β, warm-started, step halved on failure — it follows the branch with 1 − ā/β > 0. Last,
    # continuation in log π_ref from the uniform reference (t: 0 → 1) — the boundary regime
    # π_ref,k → 0 where a cold start from log π_ref lands on the wrong side of 1 − ā/β = 0.
    tol = 1e-13
    starts = ([np.log(start)] if start is not None else []) + [lref.copy(), np.full_like(lref, lref.mean())]
    best = None
    for z0 in starts:
        pi, res, _ = attempt(z0)
        if best is None or res < best[1]:
            best = (pi, res)
        if res <= tol:
            return pi, res, method
    amax = float(np.max(np.abs(ab(ref))))
    if amax > 0:
        lb, lb0 = math.log(beta), math.log(max(beta, 4.0 * amax))
        s, h, z = 0.0, 0.25, lref.copy()
        b_t[0] = math.exp(lb0)
        pi, res, zz = attempt(z)
        if res <= tol:
            z = zz
            while s < 1.0 and h > 1e-6:
                sn = min(1.0, s + h)
                b_t[0] = math.exp(lb0 + sn * (lb - lb0))
                pi, res, zz = attempt(z)
                if res <= tol:
                    s, z, h = sn, zz, min(2 * h, 0.5)
                else:
                    h /= 2
            b_t[0] = float(beta)
            if s >= 1.0:
                pi, res, _ = attempt(z)
                if res < best[1]:
                    best = (pi, res)
                if res <= tol:
                    return pi, res, method
        b_t[0] = float(beta)
    full_ref = ref
    uni = np.full_like(lref, lref.mean())
    t, h, z = 0.0, 0.125, uni.copy()
    while t < 1.0 and h > 1e-6:
        tn = min(1.0, t + h)
        ref = softmax_np((uni + tn * (lref - uni))[None])[0]
        lref_t = np.log(ref)
        saved = lref
        lref = lref_t
        pi, res, zz = attempt(z)
        lref = saved
        if res <= tol:
            t, z, h = tn, zz - zz.mean() + lref.mean(), min(2 * h, 0.25)
        else:
            h /= 2
    ref = full_ref
    pi, res, _ = attempt(z)
    if res < best[1]:
        best = (pi, res)
    return best[0], best[1], method


def mroueh_h(p: float, p_ref: float, beta: float, eps: float = 1e-4) -> float:
    """Mroueh 2025's success-probability map ``h_{ε,p_ref}(p)``."""
    return 1.0 / (1.0 + (1.0 - p_ref) / p_ref * math.exp(-1.0 / (beta * math.sqrt(p * (1 - p) + eps))))


def mroueh_fixed_point(p_ref: float, beta: float, eps: float = 1e-4, iters: int = 10000) -> tuple[float, list[float]]:
    """Iterate ``p_n = h(p_{n−1})`` from p_ref (Mroueh 2025); returns (limit, iterates). The limit
    is refined by Brent's method in log space, ``log h(e^u) − u = 0`` on a relative window
    u = log p_last ± 1e-3 (relative precision, so p_ref down to 1e-12 works: the earlier absolute
    window [p − 1e-3, p + 1e-3] left a relative residual 7e-8 at p_ref = 1e-12, β = 50). Without a
    sign change there (the iteration has not settled) the root of a log-grid scan nearest the last
    iterate; the last iterate only if g has no sign change at all."""
    from scipy import optimize

    ps = [p_ref]
    for _ in range(iters):
        nxt = mroueh_h(ps[-1], p_ref, beta, eps)
        ps.append(nxt)
        if abs(nxt - ps[-2]) <= 1e-16 * max(nxt, 1e-300):
            break
    lodds = math.log1p(-p_ref) - math.log(p_ref)

    def g(u):
        p = math.exp(u)
        c = 1.0 / (beta * math.sqrt(p * (1.0 - p) + eps))
        return float(-np.logaddexp(0.0, lodds - c) - u)

    if mroueh_h(ps[-1], p_ref, beta, eps) == ps[-1]:  # a fixed point in float64 (e.g. p = 1.0)
        return ps[-1], ps
    u0 = math.log(ps[-1])
    lo, hi = u0 - 1e-3, min(u0 + 1e-3, math.log1p(-1e-16))
    if lo < hi and g(lo) * g(hi) < 0:
        return float(math.exp(optimize.brentq(g, lo, hi, xtol=1e-300, rtol=4 * np.finfo(float).eps))), ps
    # not settled (e.g. a 2-cycle of the map): every sign change of g on a log grid above p_ref,
    # the root nearest the last iterate in log p (the old absolute window found one only by chance)
    grid = np.linspace(math.log(p_ref), math.log1p(-1e-16), 2001)
    vals = np.array([g(u) for u in grid])
    roots = [optimize.brentq(g, grid[k], grid[k + 1], xtol=1e-300, rtol=4 * np.finfo(float).eps)
             for k in range(len(grid) - 1) if vals[k] * vals[k + 1] < 0]
    if roots:
        return float(math.exp(min(roots, key=lambda u: abs(u - u0)))), ps
    return ps[-1], ps


def nash_fixed_point(ref: np.ndarray, P: np.ndarray, beta: float, mixture: float = 0.0) -> tuple[np.ndarray, float]:
    """Zero of Nash-MD's expected update in one context: ``π ∝ π_ref·exp(P(y ≻ π^μ)/β)`` with
    ``π^μ ∝ π^{1−m}π_ref^m`` (m = 0: the regularised Nash equilibrium, Munos et al. 2023)."""
    if np.any(np.asarray(ref) <= 0):  # π_ref with zeros: on supp(π_ref) (bandit_lab.core.support)
        s = np.asarray(ref) > 0
        out = np.zeros(len(s))
        out[s], res = nash_fixed_point(np.asarray(ref)[s], np.asarray(P)[np.ix_(s, s)], beta, mixture)
        return out, res
    lref = np.log(ref)

    def residual(z):
        pi = softmax_np(z[None])[0]
        mu = softmax_np(((1 - mixture) * np.log(pi) + mixture * lref)[None])[0]
        t = lref + P @ mu / beta
        out = np.log(pi) - (t - np.log(np.exp(t - t.max()).sum()) - t.max())
        return out - out.mean() + z.mean() - lref.mean()

    return _solve_logits(residual, lref.copy())


# --------------------------------------------------------------------------- dispatch

def problem_is_tree(problem) -> bool:
    """A token-tree problem (sequences of several tokens) rather than a one-token bandit."""
    return getattr(problem, "tree", None) is not None

def oracle(problem, loss: str, hp: dict, static: dict) -> tuple[np.ndarray | None, str]:
    """The closed form (or characterisation, solved independently) of an on-policy algorithm's
    unconstrained stationary point, with a one-line note; ``(None, why)`` when none is known."""
    beta = float(hp.get("beta", 0.0))
    kind = kl_kind(static, beta) if loss not in ("online_dpo",) else None
    ref, X = problem.pi_ref, problem.n_contexts
    r = problem.r_ipo if static.get("reward") == "ipo" else problem.reward
    noise = static.get("reward_noise", "none")
    succ = None
    if noise != "none" and r is not None:  # stochastic 0/1 rewards: the expected reward is q
        from bandit_lab.core.rewards import success_probability

        r = succ = np.asarray(success_probability(np.asarray(r, float), noise, float(static.get("reward_margin", 1.0))))
    if loss == "online_dpo":
        if static.get("loss_type") == "ipo":
            pol = np.stack([nash_fixed_point(ref[x], problem.pref[x], beta, 0.0)[0] for x in range(X)])
            return pol, "regularised Nash equilibrium π ∝ π_ref·e^{P(y≻π)/β} (online IPO = Nash-MD with m = 0)"
        if static.get("labels") == "argmax":
            return None, "deterministic (argmax) labels: no finite stationary point; π collapses onto the preferred responses"
        if problem.reward is None:
            return None, "preferences are not Bradley–Terry: no closed form"
        return rlhf_optimum(ref, problem.reward, beta), "Gibbs π_ref·e^{r/β}/Z (on-policy pairs, BT labels: DPO's optimum)"
    if loss == "nash_md":
        if kind != "reverse_reward":
            return None, "closed form needs the KL as k1 in the reward (TRL's Nash-MD)"
        m = float(hp.get("mixture", 0.5))
        pol = np.stack([nash_fixed_point(ref[x], problem.pref[x], beta, m)[0] for x in range(X)])
        tag = "regularised Nash equilibrium" if m == 0 else ("IPO's optimum with π_ref⊗π_ref pairs" if m == 1 else f"mixture m = {m:g}")
        return pol, f"π ∝ π_ref·e^{{P(y≻π^μ)/β}}, π^μ ∝ π^{{1−m}}π_ref^m ({tag})"
    if r is None:
        return None, "no reward for this preference matrix (not Bradley–Terry)"
    if loss == "a2po":  # losses.onpolicy: expected update 2β·∇[β·KL(π‖π_ref) − E_π r] (V* drops out)
        return rlhf_optimum(ref, r, beta), "A*-PO: 2β·∇(β·KL − E r), V* a per-prompt constant (Gibbs π_ref·e^{r/β}/Z)"
    if static.get("entropy_bonus", False):
        return None, "entropy bonus (TRL entropy_coef): no closed form here (exact stationary solver only)"
    if static.get("ratio_level") == "geometric" and static.get("kl_bias_correction", False) and problem_is_tree(problem):
        return None, "sequence-level ratio on the bias-corrected KL of a token tree: no closed form"
    if static.get("surrogate") == "cispo" and kind in ("reverse", "forward"):
        # TRL cispo: the detached weight min(ρ, ε_high) is min(1, ε_high) on-policy; it scales the policy
        # gradient, not the KL in the loss: the stationary point of β/min(1, ε_high)
        beta = beta / min(1.0, float(hp.get("clip_high", 1.0)))
    if kind == "none":
        return None, "no KL penalty (β = 0 or k1 in the loss, whose expected gradient is 0): no finite stationary point; π → argmax r"
    if kind == "other":
        return None, f"{static['kl_estimator']} in the reward differentiates a non-convex functional (docs/onpolicy.md): no closed form"
    fwd = kind == "forward"

    def rlhf(b, tag):
        return rlhf_optimum(ref, r, b, "forward_kl" if fwd else "reverse_kl"), tag + (" (forward-KL RLHF optimum β·π_ref/(λ−r))" if fwd else " (Gibbs π_ref·e^{r/β}/Z)")

    if loss == "rloo" and static.get("batch_whiten", False):
        # TRL RLOO normalize_advantages: the batch mean drops out (E_π[c·∇log π] = 0) and 1/(σ(π) + ε) multiplies
        # the whole policy term; with k1 in the reward the KL is inside it, so the zeros are Gibbs at β
        if kind != "reverse_reward":
            return None, "RLOO with normalize_advantages and the KL in the loss: the batch std rescales β (no closed form)"
        return rlhf(beta, "rloo + normalize_advantages: 1/(σ + ε) scales the whole update (k1 in the reward)")
    if loss in ("reinforce", "rloo") or (loss == "ppo" and (kind == "reverse_reward" or not static.get("whiten", False))):
        return rlhf(beta, f"{loss}: unbiased policy gradient of −E[r] + β·D")
    if loss == "ppo":
        return None, "PPO with whitened advantages and the KL in the loss: the batch std rescales β (no closed form)"
    norm, G = static["normalize"], int(static["group_size"])
    if succ is not None and norm in ("group_std", "population") and (kind == "reverse_reward" or static.get("dynamic_sampling", False)):
        return None, "stochastic rewards with the KL in the reward or dynamic sampling: no closed form (exact stationary solver only)"
    if kind == "reverse_reward":
        return rlhf_optimum(ref, r, beta), f"{loss} with k1 in the reward: advantages vanish iff shaped rewards agree (Gibbs π_ref·e^{{r/β}}/Z)"
    if static.get("dynamic_sampling", False):
        return None, "dynamic sampling rescales each context's update by 1/P(non-degenerate group): no closed form"
    if norm == "group_mean":
        return rlhf(beta * G / (G - 1), f"Dr. GRPO: ā = (1 − 1/G)(r − E r) ⇒ effective β·G/(G−1) = {beta * G / (G - 1):.6g}")
    if norm in ("loo", "none"):
        return rlhf(beta, f"{norm} advantage: unbiased")
    eps, ddof = float(hp.get("std_eps", 1e-4)), int(static.get("std_ddof", 1))
    rows, notes = [], set()
    for x in range(X):
        pi, res, method = grpo_fixed_point(ref[x], r[x], beta, G, normalize=norm, ddof=ddof, eps=eps, penalty="forward" if fwd else "reverse",
                                           success=None if succ is None else succ[x])
        if res > 1e-12:
            return None, f"Vojnovic–Yun characterisation: no solution found (residual {res:.1e})"
        rows.append(pi)
        notes.add(method)
    form = "π = π_ref/(1 − ā(π)/β)" if fwd else "π ∝ π_ref·e^{ā(π)/β}"
    return np.stack(rows), f"Vojnovic–Yun: {form}, ā = expected normalised advantage ({', '.join(sorted(notes))})"
