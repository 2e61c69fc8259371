"""Core theorem checks (Kong et al. §3–4): each over random float64 instances, by the exact solver."""
from __future__ import annotations

import numpy as np
from scipy import optimize

from bandit_lab.core import metrics
from bandit_lab.checks import Check, padded
from bandit_lab.core.data import population
from bandit_lab.losses import LossInputs, dpo, gaussian_nll
from bandit_lab.core.objective import make_objective
from bandit_lab.solvers.oracles import ipo_optimum, rlhf_optimum
from bandit_lab.core.random_problems import dirichlet, random_problem
from bandit_lab.solvers.solver import solve_exact

import jax


def _beta(rng) -> float:
    return float(np.exp(rng.uniform(np.log(0.2), np.log(3.0))))


def _pair_gap(loss: str, lp: dict, cp_static: dict, n: int, seed: int, oracle) -> float:
    """max over instances of TV(exact loss optimum, exact counterpart optimum, closed form)."""
    rng = np.random.default_rng(seed)
    worst = 0.0
    for _ in range(n):
        pb = random_problem(rng)
        beta = _beta(rng)
        o = make_objective(padded(pb, 3), loss, {"beta": beta, **lp})  # 1 or 3 contexts solved as 3: one compile per K
        c = o.with_loss("rlhf", cp_static)
        X = pb.n_contexts
        a, b = solve_exact(o).policy[:X], solve_exact(c).policy[:X]
        ref = oracle(pb, beta)
        w = pb.context_weight
        worst = max(worst, metrics.tv(a, b, w), metrics.tv(a, ref, w), metrics.tv(b, ref, w))
    return worst


def dpo_vs_rlhf(n: int, seed: int) -> float:
    return _pair_gap("dpo", {}, {"divergence": "reverse_kl", "reward": "bt"}, n, seed,
                     lambda pb, b: rlhf_optimum(pb.pi_ref, pb.reward, b))


def _fdpo(div: str, f_alpha: float = 0.5):
    def run(n: int, seed: int) -> float:
        return _pair_gap("fdpo", {"divergence": div, "f_alpha": f_alpha}, {"divergence": div, "reward": "bt", "f_alpha": f_alpha},
                         n, seed, lambda pb, b: rlhf_optimum(pb.pi_ref, pb.reward, b, div, f_alpha))
    return run


def ipo_vs_rlhf(n: int, seed: int) -> float:
    return _pair_gap("ipo", {}, {"divergence": "reverse_kl", "reward": "ipo"}, n, seed, ipo_optimum)


@jax.jit
def _dpo_gaussian_gaps(p1, p2, lref, weight, beta):
    """``(DPO(p1) − DPO(p2), G_closed(p1) − G_closed(p2))`` at log-policies ``p1, p2`` — jitted once
    per shape (eagerly, every primitive compiled a program of its own per shape: issue 22)."""
    from bandit_lab.core.data import PreferenceData

    data = PreferenceData(weight)
    inp = lambda lp: LossInputs(lp, lref, data)  # noqa: E731
    hp = {"beta": beta}
    return dpo(inp(p1), hp) - dpo(inp(p2), hp), gaussian_nll(inp(p1), hp) - gaussian_nll(inp(p2), hp)


def gaussian_prop41(n: int, seed: int) -> float:
    """|[G(π₁) − G(π₂)] − [DPO(π₁) − DPO(π₂)]| where G profiles γ *numerically* (Brent on log γ)
    in the Gaussian NLL −log N(v | 0, γI) of Kong Eq. 16 — independent of the closed form."""
    rng = np.random.default_rng(seed)
    worst = 0.0
    for _ in range(n):
        pb = random_problem(rng)
        beta = _beta(rng)
        data = population(pb)
        lref = np.log(pb.pi_ref)

        def numeric_g(logp):
            W = np.asarray(data.weight)
            total = 0.0
            for x, w, l_ in zip(*np.nonzero(W)):
                v1 = np.exp(0.5 * beta * (logp[x, l_] - logp[x, w]))
                v2 = np.exp(0.5 * beta * (lref[x, l_] - lref[x, w]))
                vv = v1**2 + v2**2
                nll = lambda s: np.log(2 * np.pi) + s + vv / (2 * np.exp(s))  # noqa: E731  (s = log γ)
                total += W[x, w, l_] * optimize.minimize_scalar(nll, bracket=(-5.0, 5.0), tol=1e-12).fun
            return total

        p1 = np.log(dirichlet(rng, pb.pi_ref.shape))
        p2 = np.log(dirichlet(rng, pb.pi_ref.shape))
        d_dpo, d_closed = (float(d) for d in _dpo_gaussian_gaps(p1, p2, lref, data.weight, beta))
        d_g = numeric_g(p1) - numeric_g(p2)
        worst = max(worst, abs(d_g - d_dpo), abs(d_closed - d_dpo))
    return worst


def weight_decay_separates(n: int, seed: int) -> float:
    """Smallest TV between exact DPO and exact RLHF optima under α‖θ‖², α ∈ [0.05, 1] (must be
    clearly positive), on instances where the exact solves themselves converged (asserted)."""
    rng = np.random.default_rng(seed)
    smallest = np.inf
    for _ in range(n):
        pb = random_problem(rng, k=int(rng.choice([3, 5])), contexts=1)
        alpha = float(rng.uniform(0.05, 1.0))
        o = make_objective(pb, "dpo", {"beta": 1.0}, weight_decay=alpha)
        a, b = solve_exact(o), solve_exact(o.counterpart())
        if not (a.residual < 1e-9 and b.residual < 1e-9):
            return 0.0
        smallest = min(smallest, metrics.tv(a.policy, b.policy))
    return float(smallest)


def exact_reaches_stationarity(n: int, seed: int) -> float:
    """Largest first-order residual of the exact solver under weight decay (DPO and RLHF)."""
    rng = np.random.default_rng(seed)
    worst = 0.0
    for _ in range(n):
        pb = random_problem(rng)
        o = make_objective(pb, "dpo", {"beta": _beta(rng)}, weight_decay=float(rng.uniform(0.01, 1.0)))
        worst = max(worst, solve_exact(o).residual, solve_exact(o.counterpart()).residual)
    return worst


CHECKS = [
    Check("dpo-rlhf", "unconstrained DPO optimum = reverse-KL RLHF optimum π_ref·e^{r/β}/Z (Kong Eq. 10)", 1e-8, dpo_vs_rlhf),
    Check("fdpo-forward-kl", "f-DPO(forward KL) optimum = f-RLHF optimum β·π_ref/(λ−r) (Wang et al. Thm 1)", 1e-8, _fdpo("forward_kl")),
    Check("fdpo-js", "f-DPO(JS) optimum = f-RLHF(JS) optimum (Wang et al. Thm 1)", 1e-8, _fdpo("js")),
    Check("fdpo-alpha", "f-DPO(α=0.3) optimum = f-RLHF(α=0.3) optimum (Wang et al. Thm 1)", 1e-8, _fdpo("alpha", 0.3)),
    Check("ipo-rlhf", "IPO optimum = RLHF optimum with r_IPO, π_ref·e^{r_IPO/β}/Z (Kong Eq. 9; Azar et al.)", 1e-8, ipo_vs_rlhf),
    Check("gaussian-nll", "min_γ Gaussian NLL (Eq. 16, μ(u)=u^{β/2}) = DPO + const (Kong Prop. 4.1)", 1e-9, gaussian_prop41),
    Check("weight-decay-splits", "under α‖θ‖², α>0: TV(DPO optimum, RLHF optimum) stays > 1e-3 (Kong Prop. 3.1)", 1e-3, weight_decay_separates, direction="≥"),
    Check("exact-solver", "exact solver's first-order residual under weight decay (DPO and RLHF)", 1e-10, exact_reaches_stationarity),
]
