"""Exact stationary points of on-policy algorithms: roots of their expected-update field.

An on-policy algorithm's expected update at θ is ``F(θ) = ∇_θ' L(θ'; s(θ))|_{θ'=θ}``: the gradient
of its surrogate with the per-step state ``s`` (behaviour policy, advantages) built from θ itself
and held fixed. ``F`` is in general not the gradient of any function (its Jacobian is not
symmetric), so minimising a value is the wrong tool. :func:`solve_batch` finds ``F(θ) = 0`` by
Newton's method on the field:

- a start from the algorithm's own flow: the exact-mode trainer (Adam, one compiled
  ``jit(vmap(scan))`` over the hyperparameter batch, :func:`bandit_lab.runner.train_batch`) from
  ``init``. Newton alone is not enough: every vertex of the simplex is a zero of a policy-gradient
  field (``F_k ∝ π_k``), and from π_ref a Newton step happily heads there;
- ``F`` and its Jacobian ``J = ∂F/∂θ`` by JAX — forward mode through the state too (the state is
  built *without* ``stop_gradient``, directly from ``LossSpec.state_init``), float64;
- the minimum-norm step ``−J⁺F`` (``lstsq``): softmax logits have one flat gauge direction per
  context (per state on a token tree) where ``J`` is singular, and the pseudo-inverse ignores it;
- a trust radius of 1 per coordinate and backtracking on ‖F‖;
- when Newton stalls (a singular Jacobian far from the root, a saddle of ‖F‖²), a burst of the
  flow ``θ̇ = −F(θ)`` — what training does — then Newton again.

A result is certified by its residual ‖F‖ (``converged`` only when ‖F‖ ≤ 1e-10) and classified:

- ``attracting``: every eigenvalue of ``J`` off the gauge has a positive real part, so the
  algorithm's flow (and small-step training) converges to it;
- ``not attracting``: a root the flow leaves or circles (an eigenvalue with Re λ ≤ 0) — training
  cycles around it or runs elsewhere; reported as such, never as where training lands;
- ``runaway``: no finite root was reached: ‖F‖ → 0 only because probabilities → 0 (e.g. no KL
  penalty: the policy collapses onto the best response); the limit is shown, never called exact;
- ``not converged``: none of the above within the iteration budget (slow spiral or a cycle).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from bandit_lab.solvers.solver import ExactResult

TOL = 1e-12
CERTIFY = 1e-10
ZERO_MASS = 1e-9
_LS = 30  # backtracking candidates t = 1, 1/2, …


class Stationary(NamedTuple):
    result: ExactResult  # params, policy, value, residual ‖F‖, converged, iterations, grad = F
    status: str  # attracting | not attracting | runaway | not converged
    note: str
    min_real_eig: float | None  # smallest real part of J's eigenvalues off the gauge


_CACHE: dict = {}


def _fns(objective, unravel, rows: int):
    key = ("stationary", objective.signature(), rows)
    if key not in _CACHE:
        if len(_CACHE) > 64:
            _CACHE.clear()
        loss = objective.loss

        def F(z, hp, c):
            p = unravel(z)
            st = loss.state_init(objective, p, hp, None, c)  # no stop_gradient: J sees the state's dependence
            g = jax.grad(lambda q: objective.value(q, hp, consts=c, state=st))(p)
            return ravel_pytree(g)[0]

        def logp(z, c):
            return objective.param.log_probs(unravel(z), c["param"]).reshape(-1)

        ax = (0, 0, None)
        _CACHE[key] = {
            "F": jax.jit(jax.vmap(F, in_axes=ax)),
            "J": jax.jit(jax.vmap(jax.jacfwd(F), in_axes=ax)),
            "dlogp": jax.jit(jax.jacfwd(logp)),
            "logp": jax.jit(jax.vmap(logp, in_axes=(0, None))),
            "value": jax.jit(jax.vmap(lambda z, hp, c: objective.value(unravel(z), hp, consts=c), in_axes=ax)),
            "flow": jax.jit(jax.vmap(lambda z, eta, hp, c: jax.lax.fori_loop(0, 400, lambda i, zz: zz - eta * F(zz, hp, c), z),
                                     in_axes=(0, 0, 0, None))),
        }
    return _CACHE[key]


def _rows(hps: list[dict], keys, reps: int) -> dict:
    return {k: np.repeat(np.asarray([float(h[k]) for h in hps]), reps) for k in keys}


WARM_STEPS = 3000
WARM_LR = 0.05


def warm_start(objective, hps: list[dict], init=None, steps: int = WARM_STEPS, lr: float = WARM_LR):
    """The exact-mode trainer's endpoints (Adam, cosine schedule) at every point: the flow's limit."""
    from bandit_lab.runner import train_batch
    from bandit_lab.core.train import TrainConfig

    cfg = TrainConfig(optimizer="adam", steps=steps, schedule="cosine", log_steps=(0, steps))
    exact = objective if objective.static.get("sampling", "exact") == "exact" else objective.with_loss(
        objective.loss.name, {**objective.static, "sampling": "exact"})
    (traj,) = train_batch([exact], cfg, [[{**h, "lr": lr} for h in hps]], inits=None if init is None else [init])
    return traj.params


def solve_batch(objective, hps: list[dict], init=None, *, tol: float = TOL, iters: int = 100, bursts: int = 6,
                warm: bool = True) -> list[Stationary]:
    """Stationary points of ``objective``'s expected update at every hyperparameter point."""
    full = [{**objective.hp, **h} for h in hps]
    keys = sorted({k for h in full for k in h})
    full = [{k: float(h.get(k, objective.hp.get(k, 0.0))) for k in keys} for h in full]
    template = objective.param.init() if init is None else init
    z0, unravel = ravel_pytree(jax.tree_util.tree_map(jnp.asarray, template))
    n = int(z0.size)
    B = len(full)
    fn = _fns(objective, unravel, B * _LS)
    c = objective.consts()
    hp_ls = _rows(full, keys, _LS)  # B·_LS rows: one compile for plain and line-search evaluations
    hp_b = _rows(full, keys, 1)

    def field(Z):  # Z [B, n] → F [B, n] through the fixed-size program
        out = np.array(fn["F"](np.repeat(Z, _LS, axis=0), hp_ls, c)).reshape(B, _LS, n)
        return out[:, 0]

    if warm:
        P = warm_start(objective, hps, init)
        z = np.array(jax.vmap(lambda p: ravel_pytree(p)[0])(jax.tree_util.tree_map(jnp.asarray, P)), dtype=np.float64).reshape(B, n)
        bad = ~np.all(np.isfinite(z), axis=1)  # the flow ran into a singularity (e.g. k3 in the reward at π → 0)
        z[bad] = np.asarray(z0, dtype=np.float64)
    else:
        z = np.tile(np.asarray(z0, dtype=np.float64), (B, 1))
    softmax = getattr(objective.param, "name", "") == "softmax"

    def scale(Z):  # softmax: measure F_k relative to π_k (a vertex zeroes F, not F/π)
        if not softmax:
            return np.ones_like(Z)
        return 1.0 / np.maximum(np.exp(np.asarray(fn["logp"](Z, c))), 1e-300)

    f = field(z)
    S = scale(z)
    r = np.linalg.norm(f * S, axis=1)
    ts = 0.5 ** np.arange(_LS)
    stalled_bursts = np.zeros(B, int)
    it = 0
    for it in range(1, iters + 1):
        live = (r > tol) | (np.linalg.norm(f, axis=1) > tol)
        if not live.any():
            break
        J = np.asarray(fn["J"](z, hp_b, c))
        d = np.zeros_like(z)
        for b in np.nonzero(live)[0]:
            if not (np.all(np.isfinite(J[b])) and np.all(np.isfinite(f[b] * S[b]))):
                continue  # a singular point of the state (e.g. 1/P(non-degenerate group) at a vertex): no Newton step
            d[b] = -np.linalg.lstsq(S[b][:, None] * J[b], S[b] * f[b], rcond=1e-13)[0]
        d *= np.minimum(1.0, 1.0 / np.maximum(np.abs(d).max(axis=1), 1e-300))[:, None]
        C = z[:, None, :] + ts[None, :, None] * d[:, None, :]
        FC = np.asarray(fn["F"](C.reshape(B * _LS, n), hp_ls, c)).reshape(B, _LS, n)
        SC = scale(C.reshape(B * _LS, n)).reshape(B, _LS, n)
        with np.errstate(over="ignore", invalid="ignore"):  # overflowing candidates: rc = inf, rejected below
            rc = np.linalg.norm(FC * SC, axis=2)
        ok = np.isfinite(rc) & (rc < (1.0 - 1e-4 * ts[None]) * r[:, None])
        moved = ok.any(axis=1) & live
        pick = np.argmax(ok, axis=1)
        for b in np.nonzero(moved)[0]:
            z[b], f[b], r[b], S[b] = C[b, pick[b]], FC[b, pick[b]], rc[b, pick[b]], SC[b, pick[b]]
        stuck = live & ~moved
        if stuck.any():  # Newton cannot reduce ‖F‖ here: follow the flow θ̇ = −F for a while
            if np.all(stalled_bursts[stuck] >= bursts):
                break
            rho = np.array([np.abs(np.linalg.eigvals(J[b])).max() if np.all(np.isfinite(J[b])) else 1.0 for b in range(B)])
            eta = np.where(stuck, 0.5 / np.maximum(rho, 1e-12), 0.0)
            zn = np.array(fn["flow"](z, eta, hp_b, c))
            zn[~np.all(np.isfinite(zn), axis=1)] = z[~np.all(np.isfinite(zn), axis=1)]
            z = zn
            f = field(z)
            S = scale(z)
            with np.errstate(over="ignore", invalid="ignore"):  # a field of 1e299 near a vertex: r = inf, not moved to
                r = np.linalg.norm(f * S, axis=1)
            stalled_bursts += stuck
    pol = np.exp(np.asarray(fn["logp"](z, c))).reshape((B,) + np.shape(objective.policy(template)))
    vals = np.asarray(fn["value"](z, hp_b, c))
    J = np.asarray(fn["J"](z, hp_b, c))
    out = []
    for b in range(B):
        out.append(_classify(objective, fn, unravel, z[b], f[b], float(np.linalg.norm(f[b])), float(r[b]), J[b], pol[b],
                             float(vals[b]), it, full[b], c))
    return out


def _classify(objective, fn, unravel, z, f, r, r_rel, J, pol, value, it, hp, c) -> Stationary:
    params = unravel(jnp.asarray(z))
    finite = bool(np.all(np.isfinite(z)) and np.isfinite(r))
    converged = finite and r <= CERTIFY
    tiny = np.argwhere(pol < ZERO_MASS)
    if len(tiny) and getattr(objective.param, "name", "") == "softmax" and np.shape(z) == np.shape(pol.reshape(-1)):
        # a finite root may have tiny masses (small β); a runaway has F_k/π_k = O(1) there (the
        # logit keeps being pushed down), a root has F_k/π_k = 0
        rel = np.abs(f.reshape(pol.shape)) / np.maximum(pol, 1e-300)
        tiny = np.argwhere((pol < ZERO_MASS) & ((rel > 1e-6) | (pol < 1e-200)))  # < 1e-200: the field underflowed
    res = ExactResult(params, pol, value, r, converged and not len(tiny), it, unravel(jnp.asarray(f)))
    if not finite or not np.all(np.isfinite(pol)):
        return Stationary(res, "not converged", "the field is not finite along the flow (a probability reached 0 where the "
                                                "estimator is singular): no stationary point found", None)
    if len(tiny):
        where = ", ".join(f"y{k + 1}" if pol.shape[0] == 1 else f"x{x + 1}:y{k + 1}" for x, k in tiny)
        return Stationary(res, "runaway", f"no finite stationary point: π({where}) → 0 (‖F‖ = {r:.1e} only because the mass "
                                          f"vanishes); the limit is shown", None)
    if not converged:
        return Stationary(res, "not converged", f"‖F‖ = {r:.1e} after {it} iterations: no certified stationary point "
                                                f"(slow spiral or a cycle of the flow)", None)
    # eigenvalues of J off the gauge (directions that leave π unchanged), unless a penalty pins them
    if hp.get("weight_decay", 0.0) > 0:
        U = np.eye(z.size)
    else:
        Dl = np.asarray(fn["dlogp"](jnp.asarray(z), c))
        _, s, Vt = np.linalg.svd(Dl, full_matrices=False)
        U = Vt[: int((s > 1e-10 * max(s.max(), 1e-300)).sum())].T
    if not np.all(np.isfinite(J)):
        return Stationary(res, "not converged", "the expected update is not differentiable here: no certified stationary point", None)
    lam = np.linalg.eigvals(U.T @ J @ U)
    lo = float(lam.real.min()) if lam.size else 0.0
    scale = max(float(np.abs(lam).max()) if lam.size else 1.0, 1e-300)
    if np.any(lam.real < -1e-8 * scale):
        return Stationary(res, "not attracting", "a root of the expected update, but the flow leaves it (an eigenvalue with "
                                                 "Re λ < 0): training does not settle here", lo)
    if np.any((np.abs(lam.real) <= 1e-8 * scale) & (np.abs(lam.imag) > 1e-6 * scale)):
        return Stationary(res, "not attracting", "a root of the expected update, but the flow circles it (Re λ = 0, Im λ ≠ 0): "
                                                 "training cycles around it", lo)
    weak = int(np.sum(np.abs(lam) <= 1e-8 * scale))
    return Stationary(res, "attracting", "a root of the expected update; the flow θ̇ = −F converges to it"
                      + (f" ({weak} very slow direction(s): tiny probabilities)" if weak else ""), lo)


def precompile(objective, hp: dict | None = None, init=None) -> None:
    """Compile every program :func:`solve_batch` may call for one hyperparameter point (the flow
    burst and the gauge Jacobian are otherwise compiled lazily, the first time a solve stalls or
    classifies an unpenalised root): afterwards, moving only numbers — the problem's arrays, β, α —
    never compiles (the live explorer, ``tests/test_explore_live.py``). Values are discarded."""
    full = [{k: float(v) for k, v in {**objective.hp, **(hp or {})}.items()}]
    keys = sorted(full[0])
    template = objective.param.init() if init is None else init
    z0, unravel = ravel_pytree(jax.tree_util.tree_map(jnp.asarray, template))
    fn = _fns(objective, unravel, _LS)
    c = objective.consts()
    z = np.asarray(z0, dtype=np.float64)[None]
    hp_b = _rows(full, keys, 1)
    fn["F"](np.repeat(z, _LS, axis=0), _rows(full, keys, _LS), c)
    fn["J"](z, hp_b, c)
    fn["logp"](z, c)
    fn["logp"](np.repeat(z, _LS, axis=0), c)
    fn["value"](z, hp_b, c)
    fn["flow"](z, np.zeros(1), hp_b, c)
    fn["dlogp"](jnp.asarray(z[0]), c)
    warm_start(objective, [full[0]], init)


def solve(objective, hp: dict | None = None, init=None, **kw) -> Stationary:
    """:func:`solve_batch` at one hyperparameter point."""
    return solve_batch(objective, [dict(hp or {})], init, **kw)[0]


def references(objective) -> dict:
    """The policies an on-policy stationary point is compared with, under the *same* constraint
    (parameterization, weight decay): the exact optimum of reverse-KL RLHF with the problem's
    reward (= Gibbs π_ref·e^{r/β}/Z when unconstrained) and DPO's exact population optimum."""
    from bandit_lab.errors import BanditError
    from bandit_lab.solvers.solver import solve_exact

    if objective.loss.name in ("distillation", "gkd"):  # β is TRL's JSD interpolation, not a KL strength
        return {"teacher": np.asarray(objective.loss.oracle(objective.problem, objective.hp, objective.static)[0])}
    beta = objective.hp.get("beta", 0.0)
    out = {}
    if beta <= 0:
        return out
    for name, loss, lp in (("gibbs", "rlhf", {"divergence": "reverse_kl", "reward": "bt"}), ("dpo", "dpo", {})):
        try:
            r = solve_exact(objective.with_loss(loss, {"beta": beta, **lp}))
        except BanditError:
            continue
        if r.converged:
            out[name] = np.asarray(r.policy)
    return out
