"""``bandit-lab fixed-points``: the exact population optimum of every registered loss on one bandit.

For each registered loss (at its defaults, with the bandit's β; plus a few named variants) this
finds the minimiser with the exact float64 solver (:func:`bandit_lab.solvers.solver.newton_free`, from
π_ref, uniform and 6 random starts, keeping the lowest value: DiscoPOP is non-convex and has
several local minima), and
reports its entropy, its TV distance to the RLHF optimum ``π_ref·e^{r/β}/Z`` and to DPO's optimum,
the closed form where one is known (and its distance to the numerical answer), and whether a
*finite* minimiser exists at all.

How each answer is obtained (``method``):
- ``newton`` — the exact solver; certified by its first-order residual;
- ``lp`` — ``hinge`` is piecewise linear, so its minimiser sits on a kink where no gradient
  vanishes: it is solved as the linear programme ``min Σ w_ij ξ_ij, ξ_ij ≥ 1 − β(g_i − g_j),
  ξ ≥ 0`` in the log-ratios ``g`` (per context), :func:`hinge_lp`;
- ``self-consistent`` — ``bco_pair`` and ``kto`` read a *detached* statistic ``s`` of the policy
  (δ, z_ref). Training follows the field ``∇_θ L(θ; s)|_{s = s(θ)}``, which has no potential, so
  the Newton solver cannot minimise it directly. Its zeros are the points where ``θ`` minimises
  ``L(·; s)`` with ``s`` frozen *and* ``s = s(θ)``: :func:`self_consistent` solves the scalar
  equation ``s(θ*(s)) = s`` by the secant method, each ``θ*(s)`` exact.

Verdicts (``verdict``, ``status``, ``finite``): every answer is certified by
:mod:`bandit_lab.certificates` — a unique minimiser (scale-free Newton step, Hessian positive definite on
the tangent space), a set of minimisers (flat directions), no finite minimiser (a recession ray
along which the loss strictly decreases to its infimum: the *limit* policy and the responses whose
mass goes to 0 are reported), a stationary point of a non-gradient field, or *not certified*.
``finite`` is true exactly when a finite minimiser (or a reached stationary point) is certified.
"Distinct local minima" are counted only for a loss not declared convex, and only among starts
that are certified minima themselves.

Closed forms (``closed_form``): the core oracles (DPO, f-DPO, IPO, Gaussian NLL, RLHF); and, for
every *margin loss* ``ℓ(β·Δ)`` (cDPO, robust, EXO, DiscoPOP, SimPO), the per-pair population target
``m*(p) = argmin_m p·ℓ(m) + (1 − p)·ℓ(−m)`` (closed forms listed in :func:`pair_target`). When the
targets are additive on the pair graph (``m*_ij = g_i − g_j``) the optimum is
``π ∝ π_ref·e^{g/β}`` (``e^{g/β}`` for reference-free losses) — e.g. SimPO with γ = 0 gives
``softmax(r/β)``; otherwise no closed form (the optimum is a weighted compromise between
inconsistent pair targets). ``eta_linear``'s limit is the vertex of the largest net win weight.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from scipy import optimize

from bandit_lab.solvers import exact_solvers
from bandit_lab import losses
from bandit_lab.core import metrics
from bandit_lab.core.data import population
from bandit_lab.errors import BanditError
from bandit_lab.solvers.exact_solvers import hinge_lp  # noqa: F401  (re-exported: the LP lives below both modules)
from bandit_lab.solvers.oracles import loss_oracle, rlhf_optimum, softmax_np
from bandit_lab.certificates import convex, onpolicy_verdict, verdict_of
from bandit_lab.solvers.solver import ExactResult, newton_free, solve_exact
from bandit_lab.verdict import Kind, Verdict, response_label

DEFAULT_SPEC = {
    "pi_ref": [0.4, 0.4, 0.2],
    "preference": {"pi_star": [0.6, 0.3, 0.1]},
    "pairs": "uniform",
    "loss": "dpo",
    "loss_params": {"beta": 1.0},
}
SHARE_TOL = 1e-6  # TV below which two optima are "the same fixed point"
RESIDUAL_TOL = 1e-8

# Named variants shown besides every loss at its defaults.
VARIANTS: dict[str, list[dict]] = {
    "fdpo": [{"divergence": "reverse_kl"}, {"divergence": "forward_kl"}, {"divergence": "js"}, {"divergence": "alpha", "f_alpha": 0.5}],
    "rlhf": [{"divergence": "reverse_kl", "reward": "bt"}, {"divergence": "reverse_kl", "reward": "ipo"}],
    "simpo": [{}, {"gamma": 0.0}, {"cpo_alpha": 1.0}],
    "robust": [{}, {"label_smoothing": 0.2}],
    "bco_pair": [{}, {"delta": "mean"}],
    "kto": [{}, {"reference_point": "data"}],
    "cpo": [{}, {"loss_type": "hinge", "cpo_alpha": 0.0}, {"loss_type": "ipo", "cpo_alpha": 0.0}, {"loss_type": "simpo"}],
    "alphapo": [{}, {"gamma": 0.0}],
    "aot": [{}, {"label_smoothing": 0.1}],
    "dpop": [{}, {"lam": 1.0}],
    "mixture": [{"terms": ["hinge", "sft"]}, {"terms": ["ipo", "sft"], "w_sft": 0.5}],
}

NO_CLOSED_FORM = {
    "orpo": "none known (odds-ratio term + NLL)",
    "kto": "none known (sigmoid value function around a detached KL reference point)",
    "cpo": "none known (NLL on y_w pulls towards the winner marginal)",
    "nca_pair": "none known (per-response terms coupled only by normalisation)",
    "bco_pair": "none known (per-response terms around a detached baseline δ)",
    "sppo_hard": "none known (per-response squares; SPPO drops log Z, the exact loss keeps it)",
    "apo_zero": "none known (saturating; losers pushed to 0)",
    "apo_down": "none known",
    "eta_sigmoid": "none known (targets π_i − π_j = logit p_ij / β, often off the simplex)",
    "aot": "none known (quantile coupling of the policy and reference log-ratio laws)",
    "aot_unpaired": "none known (quantile coupling of the chosen and rejected log-ratio laws)",
    "apo_zero_unpaired": "none known (= apo_zero's optimum at λ_D = λ_U: a positive rescaling)",
    "mpo": "none known (sigmoid + bco_pair + sft compromise)",
    "dpop": "none known (the λ·max(0, −h_w) kink pins chosen responses at h_w ≥ 0 when λ is large)",
    "caldpo": "none known (β-free DPO term + per-response calibration squares)",
    "alphapo": "none: γ ≠ 0 makes the per-pair targets non-additive",
}


# --------------------------------------------------------------------------- per-pair targets

def pair_target(name: str, hp: dict, p: float) -> float | None:
    """``m*(p) = argmin_m p·ℓ(m) + (1 − p)·ℓ(−m)`` for a margin loss ``ℓ(m)``, ``m = β·Δ``
    (for SimPO ``m = β(log π_w − log π_l)``). ``None``: no finite target (runaway), or not a
    margin loss. Closed forms where they exist, else a bracketed scalar minimisation.
    """
    if name == "cdpo" and 0.0 < hp["label_smoothing"] < 1.0:  # smoothed labels: q ∈ (0, 1) even at p ∈ {0, 1}
        e = hp["label_smoothing"]
        q = e + (1 - 2 * e) * p
        return float(np.log(q) - np.log1p(-q))
    if not 0.0 < p < 1.0:
        return None
    logit = float(np.log(p) - np.log1p(-p))
    if name in ("dpo", "gaussian_nll"):
        return logit
    if name == "cdpo":
        e = hp["label_smoothing"]
        q = e + (1 - 2 * e) * p
        return float(np.log(q) - np.log1p(-q))
    if name == "robust":
        e = hp["label_smoothing"]
        if not (e < p < 1 - e):
            return None
        q = (p - e) / (1 - 2 * e)
        return float(np.log(q) - np.log1p(-q))
    if name == "exo_pair":
        e = hp["label_smoothing"]
        return float((2 * p - 1) * (np.log1p(-e) - np.log(e)))
    if name == "hinge":
        return float(np.sign(2 * p - 1))
    if name == "cpo_ipo":  # argmin p(Δ − c)² + (1 − p)(Δ + c)², c = 1/(2β): Δ = c(2p − 1); m = βΔ
        return float((2 * p - 1) / 2)
    if name == "simpo":
        # stationarity −p·σ(γ − m) + (1 − p)·σ(γ + m) = 0 is a quadratic in u = e^m (c = e^γ):
        # (1 − p)u² + (1 − 2p)c·u − p = 0; γ = 0 gives u = p/(1 − p), m = logit p
        c = float(np.exp(hp["gamma"]))
        bq = (1 - 2 * p) * c
        u = (-bq + np.sqrt(bq * bq + 4 * p * (1 - p))) / (2 * (1 - p))
        return float(np.log(u))
    if name == "discopop":
        tau = hp["tau"]

        def ell(m):
            return np.exp(-np.logaddexp(0.0, m / tau)) * np.logaddexp(0.0, -m) + np.exp(-np.logaddexp(0.0, -m / tau) - m)

        def dell(m):
            mod = np.exp(-np.logaddexp(0.0, -m / tau))
            dmod = mod * (1 - mod) / tau
            ex = np.exp(-m)
            return -dmod * np.logaddexp(0.0, -m) - (1 - mod) * np.exp(-np.logaddexp(0.0, m)) + dmod * ex - mod * ex

        phi = lambda m: p * ell(m) + (1 - p) * ell(-m)  # noqa: E731
        dphi = lambda m: p * dell(m) - (1 - p) * dell(-m)  # noqa: E731
        grid = np.linspace(-40.0, 40.0, 8001)
        k = int(np.argmin(phi(grid)))  # global minimiser on the grid (φ is not convex)
        if k in (0, grid.size - 1):
            return None
        lo, hi = grid[k - 1], grid[k + 1]
        if dphi(lo) < 0 < dphi(hi):
            return float(optimize.brentq(dphi, lo, hi, xtol=1e-15, rtol=4 * np.finfo(float).eps))
        return float(grid[k])
    return None


MARGIN_LOSSES = ("dpo", "gaussian_nll", "cdpo", "robust", "exo_pair", "discopop", "simpo")
REFERENCE_FREE = ("simpo", "cpo_ipo")


def _pair_stats(weight: np.ndarray):
    """Per context: shown unordered pairs ``(i, j)`` with total weight and ``p(i ≻ j)``."""
    X, K, _ = weight.shape
    out = []
    for x in range(X):
        rows = []
        for i in range(K):
            for j in range(i + 1, K):
                t = weight[x, i, j] + weight[x, j, i]
                if t > 0:
                    rows.append((i, j, t, weight[x, i, j] / t))
        out.append(rows)
    return out


def additive_closed_form(name: str, hp: dict, problem, weight: np.ndarray) -> tuple[np.ndarray | None, str]:
    """``π ∝ π_ref·e^{g/β}`` when the per-pair targets ``m*_ij`` are additive (see module doc)."""
    beta = hp.get("beta", 1.0)
    X, K, _ = weight.shape
    out = np.empty((X, K))
    for x, rows in enumerate(_pair_stats(weight)):
        A, b = [], []
        for i, j, _t, p in rows:
            m = pair_target(name, hp, p)
            if m is None:
                return None, "some pair has no finite target margin: no finite minimiser"
            a = np.zeros(K)
            a[i], a[j] = 1.0, -1.0
            A.append(a)
            b.append(m)
        A.append(np.ones(K))  # gauge
        b.append(0.0)
        A, b = np.array(A), np.array(b)
        if np.linalg.matrix_rank(A) < K:
            return None, "pair graph disconnected: the optimum is not unique"
        g, *_ = np.linalg.lstsq(A, b, rcond=None)
        if np.abs(A @ g - b).max() > 1e-9 * max(1.0, np.abs(b).max()):
            return None, "none: per-pair target margins are not additive (compromise between pairs)"
        base = np.zeros(K) if name in REFERENCE_FREE else np.log(problem.pi_ref[x])
        out[x] = softmax_np(base + g / beta)
    ref = "e^{g/β}" if name in REFERENCE_FREE else "π_ref·e^{g/β}"
    return out, f"{ref}/Z, additive per-pair targets g_i − g_j = m*(p_ij)"


def closed_form(obj) -> tuple[np.ndarray | None, str]:
    """The closed-form (or LP) optimum of an objective's loss on its data, or ``None`` + why."""
    name, hp, static = obj.loss.name, obj.hp, obj.static
    wd = hp.get("weight_decay", 0.0)
    if name == "trdpo":
        return _trdpo_closed_form(obj, wd)
    if obj.param.name not in ("softmax", "simplex") or wd != 0.0:
        return None, "constrained (weight decay or a restricted parameterization): closed forms are unconstrained answers"
    weight = np.asarray(obj.data.weight)
    pop = bool(np.allclose(weight, np.asarray(population(obj.problem).weight), rtol=0, atol=1e-15))
    if name in ("rlhf", "ipo", "fdpo"):
        return loss_oracle(obj.problem, name, hp, static, population_data=pop)
    if name in MARGIN_LOSSES:
        return additive_closed_form(name, hp, obj.problem, weight)
    if name == "hinge" or (name == "cpo" and static.get("loss_type") == "hinge" and hp["cpo_alpha"] == 0 and hp["alpha"] == 0):
        pi, ok = hinge_lp(obj.problem, weight, hp["beta"], reference=name == "hinge")
        return (pi, "linear programme (exact for the piecewise-linear loss)") if ok else (None, "LP failed")
    if name == "sft":
        c = weight.sum(-1)
        return c / c.sum(-1, keepdims=True), "chosen marginal π(y|x) ∝ Σ_l D(x, y, l) (NLL minimiser)"
    if name in ("cpo", "alphapo") and hp["cpo_alpha"] == 0 and hp["label_smoothing"] == 0 and static.get("loss_type", "simpo") != "hinge":
        kind = static.get("loss_type", "simpo")
        if kind == "ipo":
            return additive_closed_form("cpo_ipo", hp, obj.problem, weight)
        if kind in ("sigmoid", "simpo") and (kind == "sigmoid" or hp["gamma"] == 0):
            if hp["alpha"] == 0:
                return additive_closed_form("simpo", {**hp, "gamma": 0.0}, obj.problem, weight)
            return _alphapo_closed_form(obj, weight)
    if name == "chipo":
        cf, note = loss_oracle(obj.problem, "fdpo", hp, {"divergence": "chi_mix"}, population_data=pop)
        if cf is None:
            return cf, note
        p = [t[3] for rows in _pair_stats(weight) for t in rows]
        if any(abs(np.log(q) - np.log1p(-q)) >= 2 * hp["r_max"] for q in p if 0 < q < 1):
            return None, "some pair's logit p reaches the clip 2R: the clip may move the optimum"
        return cf, "χ²-mix RLHF optimum β(u + log u) = r − λ, u = W(e^{(r−λ)/β}) (Huang et al. 2024; clip inactive)"
    if name == "sigmoid_norm" and obj.param.name in ("softmax", "simplex"):
        return additive_closed_form("dpo", hp, obj.problem, weight)
    if name in ("wpo", "mixture") and tuple(static["terms"]) == ("dpo",) and static.get("divergence", "reverse_kl") == "reverse_kl":
        cf, note = additive_closed_form("dpo", hp, obj.problem, weight)
        if cf is not None and static.get("use_weighting"):
            note = "DPO's optimum: detached pair weights w(y_w)w(y_l) > 0 rescale each pair, and additive targets stay additive"
        return cf, note
    if name == "eta_linear":
        net = weight.sum(-1) - weight.sum(-2)  # Σ_j w_ij − w_ji
        out = np.zeros_like(net)
        out[np.arange(net.shape[0]), net.argmax(-1)] = 1.0
        return out, "vertex with the largest net win weight Σ_j (w_ij − w_ji) (a limit)"
    if name in NO_CLOSED_FORM:
        return None, NO_CLOSED_FORM[name]
    pi, note = loss_oracle(obj.problem, name, hp, static, population_data=pop)
    return pi, note


def _trdpo_closed_form(obj, wd):
    """TR-DPO's synced fixed point (:mod:`bandit_lab.losses.trdpo`): with α‖θ‖² on softmax logits
    ``θ* = β·n/(4α)``, ``n`` the net win weight; without weight decay the runaway limit, the
    vertex of the largest net win weight."""
    W = np.asarray(obj.data.weight)
    net = W.sum(-1) - W.sum(-2)
    if wd == 0.0:
        out = np.zeros_like(net)
        out[np.arange(net.shape[0]), net.argmax(-1)] = 1.0
        return out, "no finite synced fixed point: the field at θ_ref = θ is the constant −(β/2)n; limit = vertex of max net win n"
    if obj.param.name == "softmax" and obj.penalty == "params":
        return softmax_np(obj.hp["beta"] * net / (4.0 * wd)), "synced fixed point θ* = β·n/(4α), n = net win weight"
    return None, "constrained: the synced closed form needs softmax logits with α‖θ‖²"


def _alphapo_closed_form(obj, weight):
    """γ = 0 AlphaPO under BT: ``β(f'_α(π_i) − f'_α(π_j)) = r_i − r_j`` ⇒ the α-divergence "RLHF"
    optimum against the unnormalised measure 1 (``rlhf_optimum`` with π_ref ≡ 1)."""
    pb = obj.problem
    if pb.reward is None:
        return None, "preferences are not Bradley–Terry: no closed form"
    return rlhf_optimum(np.ones_like(pb.pi_ref), pb.reward, obj.hp["beta"], "alpha", obj.hp["alpha"]), \
        "α-reward optimum: β(1 − π^−α)/α = r − λ (AlphaPO with γ = 0, BT)"


# --------------------------------------------------------------------------- solving

def detached(obj):
    """``(key, fn)`` of the objective's detached statistic (``bco_pair[delta=mean]``, ``kto``), or None."""
    losses.registry()
    from bandit_lab.losses import zoo

    return zoo.detached_statistic(obj.loss.name, obj.static)


def statistic(obj, params, hp: dict) -> float:
    """The detached statistic (``bco_pair``'s δ, ``kto``'s z_ref) at ``params``."""
    return exact_solvers.statistic(obj, params, hp, detached(obj))


def self_consistent(obj, hp: dict | None = None, *, init=None, tol: float = 1e-12, iters: int = 60) -> tuple[ExactResult, float, float]:
    """:func:`bandit_lab.solvers.exact_solvers.self_consistent` for the objective's own statistic."""
    return exact_solvers.self_consistent(obj, hp, detached(obj), init=init, tol=tol, iters=iters)


N_STARTS = 8


def multistart(obj, n: int = N_STARTS, seed: int = 0) -> tuple[ExactResult, list]:
    """Exact solves from π_ref, uniform and ``n − 2`` random logit starts (N(0, 2²), seeded);
    returns the lowest converged (else lowest) point and the distinct converged points (TV > 1e-6
    apart). Distinct points are *candidates*: they are local minima only where a certificate says
    so (:func:`solve_one`) — points of one flat valley or of one runaway are distinct too."""
    if obj.param.constraint != "free":
        r = solve_exact(obj)
        return r, [r]
    rng = np.random.default_rng(seed)
    shape = np.shape(obj.param.init())
    inits = [obj.param.init(), obj.param.init("uniform")] + [jnp.asarray(rng.normal(0.0, 2.0, shape)) for _ in range(n - 2)]
    runs = [newton_free(obj, [obj.hp], i)[0] for i in inits]
    ok = [r for r in runs if r.converged and np.isfinite(r.value)]
    pool = ok or runs
    low = min(r.value if np.isfinite(r.value) else np.inf for r in pool)
    # among points tied at the lowest value (up to rounding), the best-certified one
    tied = [r for r in pool if np.isfinite(r.value) and r.value <= low + 1e-12 * max(1.0, abs(low))] or pool
    best = min(tied, key=lambda r: r.residual)
    distinct: list = []
    for r in ok:
        if all(metrics.tv(r.policy, q.policy) > 1e-6 for q in distinct):
            distinct.append(r)
    return best, distinct or [best]


def _field_residual(obj, params) -> float:
    """‖∇_θ L‖ with the statistic detached — the training signal Adam follows."""
    return exact_solvers.field_residual(obj, params)


@dataclasses.dataclass
class Row:
    loss: str
    label: str
    params: dict
    method: str
    policy: list
    entropy: float
    tv_rlhf: float | None
    tv_dpo: float | None
    shares_dpo: bool | None
    finite: bool
    status: str
    residual: float
    closed_form: list | None
    closed_form_note: str
    tv_closed_form: float | None
    verdict: dict | None = None  # bandit_lab.verdict.Verdict.as_json(): kind, certificate, limit, …


def _label(name: str, params: dict) -> str:
    return name + ("[" + ",".join(f"{k}={v}" for k, v in params.items()) + "]" if params else "")


def _row_params(obj) -> dict:
    """A row's ``params``: the loss's hyperparameters (weight decay is the bandit's, printed once) and static options."""
    return {**{k: v for k, v in obj.hp.items() if k != "weight_decay"}, **obj.static}


def _trdpo_runaway_row(obj, name, params, w, dpo_policy, rlhf_policy) -> Row:
    """TR-DPO without weight decay: no synced fixed point. The certificate is the identity of
    :mod:`bandit_lab.losses.trdpo` — at ``θ_ref = θ`` the field is the constant ``−(β/2)·n`` — re-checked
    here numerically: the field evaluated at π_ref's logits and at two random logit vectors equals
    ``−(β/2)·n`` (context-weighted, centred per context: softmax logits' gauge), and ``n ≠ 0``. A
    constant non-zero field has no zero anywhere, and the flow θ̇ = (β/2)·n drives every context to
    the vertex of its largest net win weight (the limit shown). The on-policy stationary solver
    cannot say this scale-free (its runaway ray needs ``F_k = O(π_k)``; here ``F`` is constant)."""
    from jax.flatten_util import ravel_pytree

    cf, note = closed_form(obj)
    W = np.asarray(obj.data.weight)
    n = W.sum(-1) - W.sum(-2)
    beta = float(obj.hp["beta"])
    c = obj.consts()

    def field(p):
        st = obj.loss.state_init(obj, p, obj.hp, None, c)
        st = jax.tree_util.tree_map(jax.lax.stop_gradient, st)
        return np.asarray(ravel_pytree(jax.grad(lambda q: obj.value(q, obj.hp, consts=c, state=st))(p))[0])

    rng = np.random.default_rng(0)
    starts = [obj.param.init()] + [jax.tree_util.tree_map(lambda a: jnp.asarray(rng.normal(0.0, 3.0, np.shape(a))), obj.param.init())
                                    for _ in range(2)]
    fields = [field(p).reshape(n.shape) for p in starts]
    centred = [f - f.mean(-1, keepdims=True) for f in fields]
    want = -(beta / 2.0) * n
    want = want - want.mean(-1, keepdims=True)
    scale = max(float(np.abs(want).max()), 1e-300)
    # the objective's value may weight contexts (and scale the loss): compare up to one positive factor per context
    ratios = [np.array([(f[x] @ want[x]) / max(float(want[x] @ want[x]), 1e-300) for x in range(n.shape[0])]) for f in centred]
    dev = max(float(np.abs(f - r[:, None] * want).max()) for f, r in zip(centred, ratios)) / scale
    agree = max(float(np.abs(r - ratios[0]).max()) for r in ratios) / max(float(np.abs(ratios[0]).max()), 1e-300)
    constant = dev <= 1e-10 and agree <= 1e-10 and bool(np.all(ratios[0] > 0)) and bool(np.any(np.abs(want) > 0))
    cert = {"net_win": n.tolist(), "field_deviation": dev, "field_variation": agree, "stability": "runaway" if constant else "not converged"}
    tv_d = None if dpo_policy is None else float(metrics.tv(cf, dpo_policy, w))
    tv_r = None if rlhf_policy is None else float(metrics.tv(cf, rlhf_policy, w))
    if constant:
        zero_rows = [[int(k) for k in np.nonzero(row < 0.5)[0]] for row in np.atleast_2d(cf)]
        status = ("no finite minimiser: π(" + "; ".join(", ".join(response_label(k) for k in z) for z in zero_rows)
                  + f") → 0 along the constant synced field −(β/2)n (re-checked at 3 points to {max(dev, agree):.0e}); limit shown")
        verdict = Verdict(Kind.STATIONARY, "runaway: " + status, certificate=cert, limit=np.atleast_2d(cf).tolist())
        policy = np.atleast_2d(cf)
    else:  # the identity failed numerically: say so, never claim the runaway
        status = f"not certified: the synced field is not the constant −(β/2)n here (deviation {dev:.1e})"
        verdict = Verdict(Kind.NOT_CERTIFIED, status, certificate=cert)
        policy = np.atleast_2d(obj.policy(obj.param.init()))
    return Row(loss=name, label=_label(name, params), params=_row_params(obj),
               method="field", policy=np.asarray(policy, dtype=np.float64).tolist(), entropy=float(np.sum(w * metrics.entropy(policy))),
               tv_rlhf=tv_r, tv_dpo=tv_d, shares_dpo=False, finite=False, status=status, residual=float(np.linalg.norm(fields[0])),
               closed_form=np.asarray(cf).tolist(), closed_form_note=note, tv_closed_form=0.0 if constant else None,
               verdict=verdict.as_json())


def solve_one(base, name: str, params: dict, dpo_policy, rlhf_policy) -> Row:
    obj = base.with_loss(name, params)
    w = obj.problem.context_weight
    method = "newton"
    extra = ""
    distinct: list = []
    hp = dict(obj.hp)
    if name == "trdpo" and hp.get("weight_decay", 0.0) == 0.0:
        return _trdpo_runaway_row(obj, name, params, w, dpo_policy, rlhf_policy)
    if obj.stateful:  # on-policy algorithm: the root of its expected-update field, not a minimum
        from bandit_lab.onpolicy.stationary import solve

        st = solve(obj)
        r = st.result
        method = "stationary"
        verdict = onpolicy_verdict(st.status, st.note, r.residual, r.converged, st.certificate)
        # a runaway whose limit is certified on its face shows the limit (as for a loss with no finite minimiser)
        policy = np.atleast_2d(np.asarray(r.policy if verdict.limit is None else verdict.limit, dtype=np.float64))
        cf, note = closed_form(obj)
        finite = st.status == "attracting" or (st.status == "not attracting" and r.converged)
        tv_r = None if rlhf_policy is None else float(metrics.tv(policy, rlhf_policy, w))
        tv_d = None if dpo_policy is None else float(metrics.tv(policy, dpo_policy, w))
        return Row(loss=name, label=_label(name, params), params=_row_params(obj),
                   method=method, policy=policy.tolist(), entropy=float(np.sum(w * metrics.entropy(policy))), tv_rlhf=tv_r, tv_dpo=tv_d,
                   shares_dpo=None if tv_d is None else bool(tv_d <= SHARE_TOL and finite), finite=finite,
                   status=f"stationary point ({st.status})" if finite else st.note, residual=float(r.residual),
                   closed_form=None if cf is None else np.asarray(cf).tolist(), closed_form_note=note,
                   tv_closed_form=None if cf is None else float(metrics.tv(policy, np.asarray(cf), w)),
                   verdict=verdict.as_json())
    det = detached(obj)
    if det is not None:
        if obj.param.constraint != "free":
            raise BanditError("the self-consistent solve of a detached statistic needs a free parameterization (softmax, loglinear)")
        r, s, gap = self_consistent(obj)
        method = "self-consistent"
        key = det[0]
        field = _field_residual(obj, r.params)
        residual = max(r.residual, field)
        converged = r.converged and gap <= 1e-10 and field <= RESIDUAL_TOL
        extra = f"; {key} = {s:.6g}"
        hp[key] = s
        params_, policy = r.params, r.policy
    else:
        # hinge without weight decay is the LP below (closed_form); with it, the loss's own QP
        special = (None if obj.loss.exact is None or (name == "hinge" and hp.get("weight_decay", 0.0) == 0.0)
                   else obj.loss.exact(obj, dict(obj.hp), None))
        distinct = []
        if special is not None:
            r = special
            method = "kkt"  # LP/QP/NLP for a kinked loss, polished on its KKT system
            residual, converged, params_, policy = r.residual, r.converged, r.params, r.policy
        else:
            r, distinct = multistart(obj)
            residual, converged, params_, policy = r.residual, r.converged, r.params, r.policy
    cf, note = closed_form(obj)
    unconstrained = obj.param.name in ("softmax", "simplex") and hp.get("weight_decay", 0.0) == 0.0
    if name == "hinge" and cf is not None:
        method = "lp"
        policy, converged, residual = cf, True, float("nan")
        from bandit_lab.certificates import hinge_lp_verdict

        verdict = hinge_lp_verdict(obj, hp, "optimal for the linear programme (exact for the piecewise-linear loss)",
                                   {"solver": "LP (HiGHS)"}) or Verdict(
            Kind.SET, "optimal for the linear programme (exact for the piecewise-linear loss); the optimal "
            "face's dimension is not computed", certificate={"solver": "LP (HiGHS)"}, shown="an optimal vertex")
    else:
        verdict = verdict_of(obj, r._replace(converged=bool(converged)), note=note if unconstrained else None)
        if len(distinct) > 1 and verdict.kind is Kind.UNIQUE and not convex(obj):
            # several starts ended apart: count the ones that are certified local minima themselves
            n_min = 1 + sum(verdict_of(obj, q).kind is Kind.UNIQUE for q in distinct
                            if metrics.tv(q.policy, policy) > SHARE_TOL)
            if n_min > 1:  # each is an isolated (locally unique) minimiser; none is *the* minimiser
                verdict = dataclasses.replace(
                    verdict, summary=f"the lowest of {n_min} distinct certified local minima from {N_STARTS} starts; "
                    f"this one: {verdict.summary}",
                    certificate={**verdict.certificate, "local_minima": n_min, "starts": N_STARTS})
    if verdict.limit is not None:
        policy = np.asarray(verdict.limit)
    elif verdict.kind is Kind.SET and verdict.certificate.get("shown_policy") is not None:
        policy = np.asarray(verdict.certificate["shown_policy"])  # the set's member nearest π_ref
    policy = np.atleast_2d(np.asarray(policy, dtype=np.float64))
    finite = verdict.finite
    status = verdict.line() + extra
    tv_r = None if rlhf_policy is None else float(metrics.tv(policy, rlhf_policy, w))
    tv_d = None if dpo_policy is None else float(metrics.tv(policy, dpo_policy, w))
    return Row(
        loss=name, label=_label(name, params), params=_row_params(obj),
        method=method, policy=policy.tolist(), entropy=float(np.sum(w * metrics.entropy(policy))),
        tv_rlhf=tv_r, tv_dpo=tv_d, shares_dpo=None if tv_d is None else bool(tv_d <= SHARE_TOL and finite),
        finite=finite, status=status, residual=float(residual),
        closed_form=None if cf is None else np.asarray(cf).tolist(), closed_form_note=note,
        tv_closed_form=None if cf is None else float(metrics.tv(policy, np.asarray(cf), w)),
        verdict=verdict.as_json(),
    )


def configurations() -> list[tuple[str, dict]]:
    out = []
    for name in sorted(losses.registry()):
        for v in VARIANTS.get(name, [{}]):
            out.append((name, v))
    return out


def _check_only(only) -> list[str]:
    """``only``: a list of registered bandit loss names (not a bare string, not a token-tree loss)."""
    from bandit_lab.experiments import check_losses
    from bandit_lab.losses.token import TOKEN_LOSSES

    if isinstance(only, (str, bytes)) or not all(isinstance(n, str) for n in only):
        raise BanditError(f"only: a list of loss names (e.g. [\"dpo\"]); got {only!r}")
    names = list(dict.fromkeys(only))
    if not names:
        raise BanditError("only: an empty list selects no loss; pass None for every registered loss")
    check_losses("only", names, kinds=("pairwise", "policy", "onpolicy"))
    tok = [n for n in names if n in TOKEN_LOSSES]
    if tok:
        raise BanditError(f"only: {', '.join(map(repr, tok))} is a token-tree loss (it compares sequences, not bandit "
                          "responses); its fixed points are not defined on a bandit — see `bandit-lab run token-tree`")
    return names


def fixed_points(spec: dict | None = None, only: list[str] | None = None) -> dict:
    """Every registered loss's exact population optimum on ``spec`` (default: Kong et al. App. B,
    π* = [0.6, 0.3, 0.1], π_ref = [0.4, 0.4, 0.2], uniform pairs, β = 1)."""
    from bandit_lab.spec import build

    if only is not None:
        only = _check_only(only)
    spec = dict(DEFAULT_SPEC if spec is None else spec)
    spec.setdefault("loss", "dpo")
    base, *_ = build(spec)
    beta = base.hp.get("beta", 1.0)
    pb = base.problem
    rl = None if pb.reward is None else rlhf_optimum(pb.pi_ref, pb.reward, beta)
    dpo_obj = base.with_loss("dpo", {"beta": beta})
    d = solve_exact(dpo_obj)
    dv = verdict_of(dpo_obj, d)
    shown = dv.certificate.get("shown_policy") if dv.kind is Kind.SET else None
    dpo_pol = np.atleast_2d(d.policy if shown is None else shown) if dv.has_minimiser else None
    rows = []
    for name, params in configurations():
        if only is not None and name not in only:
            continue
        try:
            rows.append(dataclasses.asdict(solve_one(base, name, params, dpo_pol, rl)))
        except BanditError as e:  # e.g. RLHF with a non-BT matrix, token-level losses
            rows.append({"loss": name, "label": _label(name, params), "status": f"not applicable: {e}", "finite": None,
                         "policy": None, "entropy": None, "tv_rlhf": None, "tv_dpo": None, "shares_dpo": None,
                         "method": "-", "residual": None, "closed_form": None, "closed_form_note": "", "tv_closed_form": None, "params": params})
    return {
        "bandit": {k: spec[k] for k in ("pi_ref", "preference", "pairs") if k in spec},
        "beta": beta,
        "weight_decay": base.hp.get("weight_decay", 0.0),
        "parameterization": base.param.name,
        "rlhf_optimum": None if rl is None else rl.tolist(),
        "dpo_optimum": None if dpo_pol is None else dpo_pol.tolist(),
        "share_tolerance": SHARE_TOL,
        "records": rows,
        "shares_dpo": sorted({r["label"] for r in rows if r.get("shares_dpo")}),
        "differs_from_dpo": sorted({r["label"] for r in rows if r.get("shares_dpo") is False and r.get("finite")}),
        "no_finite_minimiser": sorted({r["label"] for r in rows if r.get("finite") is False and not _uncertified(r)}),
        "not_certified": sorted({r["label"] for r in rows if r.get("finite") is False and _uncertified(r)}),
        "not_applicable": sorted({r["label"] for r in rows if r.get("finite") is None}),
    }


def _uncertified(row: dict) -> bool:
    """A row whose verdict certifies nothing (a stalled solve, a point below float64): it is not
    "no finite minimiser" — that is a claim, with a recession certificate."""
    return (row.get("verdict") or {}).get("kind") == Kind.NOT_CERTIFIED.value


def report(res: dict) -> str:
    def fmt_pol(p):
        if p is None:
            return "—"
        a = np.atleast_2d(np.asarray(p))
        return "; ".join("[" + " ".join(f"{v:.4f}" for v in row) + "]" for row in a)

    def num(v, f=".2e"):
        return "—" if v is None else format(v, f)

    b = res["bandit"]
    lines = [
        f"bandit: π_ref {b.get('pi_ref')}  preference {b.get('preference')}  pairs {b.get('pairs', 'uniform')}  β = {res['beta']:g}"
        + (f"  weight decay {res['weight_decay']:g}" if res["weight_decay"] else "") + f"  ({res['parameterization']})",
        f"RLHF optimum π_ref·e^(r/β)/Z: {fmt_pol(res['rlhf_optimum'])}    DPO optimum: {fmt_pol(res['dpo_optimum'])}",
        "",
        f"{'loss':<34} {'optimum π':<26} {'H(π)':>6} {'TV→RLHF':>8} {'TV→DPO':>8} {'=DPO':>4} {'TV→cf':>8}  status / closed form",
    ]
    for r in res["records"]:
        share = "—" if r.get("shares_dpo") is None else ("yes" if r["shares_dpo"] else "no")
        lines.append(
            f"{r['label']:<34} {fmt_pol(r['policy']):<26} {num(r['entropy'], '.3f'):>6} {num(r['tv_rlhf'], '.4f'):>8} "
            f"{num(r['tv_dpo'], '.4f'):>8} {share:>4} {num(r['tv_closed_form'], '.1e'):>8}  {r['status']}"
        )
        if r.get("finite") is not None:
            lines.append(f"{'':<34} closed form: {r['closed_form_note']}" + (f" = {fmt_pol(r['closed_form'])}" if r["closed_form"] is not None else ""))
    lines += [
        "",
        f"share DPO's fixed point (TV ≤ {res['share_tolerance']:g}): {', '.join(res['shares_dpo']) or '—'}",
        f"finite optimum elsewhere: {', '.join(res['differs_from_dpo']) or '—'}",
        f"no finite minimiser: {', '.join(res['no_finite_minimiser']) or '—'}",
    ]
    if res.get("not_certified"):
        lines.append(f"not certified (neither a finite point nor a runaway): {', '.join(res['not_certified'])}")
    if res["not_applicable"]:
        lines.append(f"not applicable to this bandit: {', '.join(res['not_applicable'])}")
    return "\n".join(lines)
