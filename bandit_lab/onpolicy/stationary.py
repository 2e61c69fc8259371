"""Exact stationary points of on-policy algorithms: roots of their expected-update field.

An on-policy algorithm's expected update at θ is ``F(θ) = ∇_θ' L(θ'; s(θ))|_{θ'=θ}``: the gradient
of its surrogate with the per-step state ``s`` (behaviour policy, advantages) built from θ itself
and held fixed. ``F`` is in general not the gradient of any function (its Jacobian is not
symmetric), so minimising a value is the wrong tool. :func:`solve_batch` finds ``F(θ) = 0`` by
Newton's method on the field:

- a start from the algorithm's own flow: the exact-mode trainer's final parameters (Adam, one
  compiled ``jit(vmap)`` over the hyperparameter batch of :func:`bandit_lab.core.train.make_endpoint`,
  make_train's steps without its records) from ``init``. Newton alone is not enough: every vertex
  of the simplex is a zero of a policy-gradient field (``F_k ∝ π_k``), and from π_ref a Newton
  step happily heads there;
- ``F`` and its Jacobian ``J = ∂F/∂θ`` by JAX — forward mode through the state too (the state is
  built *without* ``stop_gradient``, directly from ``LossSpec.state_init``), float64; one compiled
  program gives F, log π and the value at a batch of points and J at every ``_LS``-th
  (:class:`_Programs`);
- the minimum-norm step ``−J⁺F`` (``lstsq``): softmax logits have one flat gauge direction per
  context (per state on a token tree) where ``J`` is singular, and the pseudo-inverse ignores it;
- a trust radius of 1 per coordinate and backtracking on ‖F‖;
- when Newton stalls (a singular Jacobian far from the root, a saddle of ‖F‖²), a burst of the
  flow ``θ̇ = −F(θ)`` — what training does — then Newton again (400 Euler steps of 0.5/ρ(J); where
  that first step would move a logit by more than ``BURST_JUMP`` — a nearly constant field, ρ ≈ 0 —
  steps of η·max|F| = ``BURST_STEP`` instead, so the burst does not jump to underflow and get reverted).

Every test is **scale-free** (multiplying the loss by c > 0 changes no status; an absolute ‖F‖
underflows where masses are tiny — at the libraries' default β Kong's Gibbs point has masses 1e-30).
For softmax logits the field is measured per unit of mass, ``u = F/π`` (``F_k = π_k(s_k − s̄)`` for
a policy-gradient field), with each context's largest-mass row rebuilt from the gauge identity
``Σ_k F_{x,k} = 2α Σ_k θ_{x,k}`` (the row computed directly is a difference of O(1) terms whose
true value may be 1e-30), and ``M = ∂u/∂θ = diag(π)⁻¹J`` likewise. Then:

- ``attracting``: the **Newton step** ``‖M⁺u‖`` on the tangent space (logit units, scale-free) is
  ≤ ``STEP_TOL`` — a finite root — and the flow θ̇ = −F converges to it: the symmetric part of
  ``M`` on the tangent space is positive definite (then every eigenvalue λ ≠ 0 of ``J`` has
  ``Re λ · v*diag(π)⁻¹v = v*Mv > 0``: contracting in the metric ``diag(π)⁻¹``), or, failing that,
  every eigenvalue of ``J`` off the gauge has a positive real part;
- ``not attracting``: a root the flow leaves or circles (an eigenvalue with Re λ ≤ 0) — training
  cycles around it or runs elsewhere; reported as such, never as where training lands;
- ``runaway``: no finite root on the flow's path: along the ray ``θ + t·d`` that lowers the small-mass responses'
  logits (the others fixed), probed from ``t = 2^-6`` until their masses reach e^{−575} (≈ 1e-250,
  the end of float64's safe range), the update keeps pushing them down (``u_k > 0`` at every
  probe) and does not weaken at the far end (``u_k`` non-decreasing over the last probes): for the
  fields here ``u_k`` is ``a + b·log π_k + c/π_k + O(π)``, so this certifies ``b, c ≥ 0``: it never
  turns. A KL term (b < 0) turns it: if that happens beyond e^{−575} the status is ``not
  converged`` with the extrapolated log-mass of the root (a finite point below float64). The
  certificate is about the flow from this start: a finite root the flow does not reach (e.g. the
  source of RLOO with k3 in the reward, tests/test_audit_rows.py) is not excluded, and the note says
  so. Candidates for the ray: rule 1, the responses below ``SMALL`` × their context's largest mass
  that the update pushes down; where there is none and Newton has not converged, rule 2, the
  pushed-down responses smallest first (:func:`bandit_lab.onpolicy.runaway.second_rule`: a clamped
  KL leaves a push Newton cannot reduce, and the solver may stop above ``SMALL``). The **limit** is
  then certified on the survivors' face (:func:`bandit_lab.onpolicy.runaway.face_limits`): their
  root by a scale-free Newton step ≤ ``STEP_TOL``, attracting on the face, or a sliding point of a
  discontinuous field (verl's ``abs`` KL loss: on a line, or with survivors pinned at π_ref on a
  face of dimension ≥ 2), or — where the face itself runs away (TR-DPO's constant field) — the
  limit of a smaller face, down to a vertex, with all vanishing responses still pushed down along
  the ray from it (at a vertex relative to its survivor, :func:`_relative`); ``certificate["limit_policy"]`` (vanishing
  masses exactly 0) is what ``solve``/``fixed-points``/``explain`` show. Where the limit is not
  certified the stop point is called the limit only when the survivors' logits move together there
  (``face_field_spread``: the spread of their F per unit of the smallest survivor's mass ≤ 1e-6),
  else the note says it is not;
- ``not converged``: none of the above within the iteration budget (slow spiral or a cycle).

Other parameterizations (log-linear, token trees) keep the unscaled field and a mass threshold
(``ZERO_MASS``) for the runaway label; their certificate says so.
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
ZERO_MASS = 1e-9  # unscaled parameterizations only (log-linear, token trees)
STEP_TOL = 1e-8  # Newton step on the field (logit units, scale-free) certifying a finite root
SMALL = 1e-6  # a response below this × its context's largest mass is a runaway candidate (direction only)
UNDERFLOW_LOGP = -690.0  # below this log-mass F = π·u is subnormal or 0: the field is not evaluable there
FAR_LOGP = -575.0  # the ray's last probe: candidates' log-mass (e^−575 ≈ 1e-250; F = π·u stays normal)
RADIUS_MAX = 64.0  # trust radius (logits per coordinate) grows ×2 from 1 while full steps are accepted (stage 2)
BURST_JUMP = 100.0  # a burst whose first Euler step would move a logit further than this is a near-constant field …
BURST_STEP = 0.25  # … and takes steps η·max|F| = BURST_STEP instead (≤ 100 logits over its 400 steps)
RAY_BURSTS = 6  # further flow bursts for a row left with neither a root nor a runaway ray (a discontinuous field)
STAGE1 = 60  # iterations of plain Newton on F (radius 1, with flow bursts when stuck) before Newton on u joins
_DEBUG = False
_LS = 30  # backtracking candidates t = 1, 1/2, … (and the ray's probes: one compiled batch size)


class Stationary(NamedTuple):
    result: ExactResult  # params, policy, value, residual ‖F‖, converged, iterations, grad = F
    status: str  # attracting | not attracting | runaway | not converged
    note: str
    min_real_eig: float | None  # smallest real part of J's eigenvalues off the gauge
    certificate: dict = {}  # the scale-free numbers behind ``status`` (see the module docstring)


_CACHE: dict = {}


class _Programs:
    """The compiled programs of one objective signature and row count ``rows`` (= B·``_LS``).

    One program, ``evaluate``, gives at ``rows`` points the field F, log π and the value, and the
    Jacobian ``J = ∂F/∂θ`` at every ``_LS``-th point (the B points a Newton iteration is at): every
    evaluation the solver needs is a call of it (issue 22: F, J, the value and the two log π
    programs were five compiles per objective and shape, ≈ 2.1 s; one program, ≈ 1.0 s). Rows are
    repeated or padded up to ``rows`` and the results sliced back (:meth:`__call__`), so callers
    keep the per-quantity interface ``fn["F"](Z, hp, c)`` etc. The last call is memoised: the
    solver asks for F and then log π at the same candidates, which is then one execution. The flow
    burst (``fn["flow"]``, a loop of F) and the gauge Jacobian ``fn["dlogp"]`` stay programs of
    their own, compiled only when a solve stalls or classifies an unpenalised log-linear root."""

    def __init__(self, objective, unravel, rows: int):
        loss = objective.loss

        def F(z, hp, c):
            p = unravel(z)
            st = loss.state_init(objective, p, hp, None, c)  # no stop_gradient: J sees the state's dependence
            g = jax.grad(lambda q: objective.value(q, hp, consts=c, state=st))(p)
            return ravel_pytree(g)[0]

        def logp(z, c):
            return objective.param.log_probs(unravel(z), c["param"]).reshape(-1)

        ax = (0, 0, None)

        def evaluate(Z, hp, c):
            every = jax.tree_util.tree_map(lambda a: a[::_LS], hp)
            return (jax.vmap(F, in_axes=ax)(Z, hp, c), jax.vmap(logp, in_axes=(0, None))(Z, c),
                    jax.vmap(lambda z, hp, c: objective.value(unravel(z), hp, consts=c), in_axes=ax)(Z, hp, c),
                    jax.vmap(jax.jacfwd(F), in_axes=ax)(Z[::_LS], every, c))

        self.rows, self.objective = rows, objective
        self._eval = jax.jit(evaluate)
        self._last = None  # (key, outputs) of the last evaluation
        self._hp = None  # hyperparameter rows of the last call (log π reads none; any valid rows do)
        self.programs = {
            "F": lambda Z, hp, c: self._get(Z, hp, c, 0),
            "logp": lambda Z, c: self._get(Z, None, c, 1),
            "value": lambda Z, hp, c: self._get(Z, hp, c, 2),
            "J": lambda Z, hp, c: self._get(Z, hp, c, 3),
            "dlogp": jax.jit(jax.jacfwd(logp)),
            "flow": jax.jit(jax.vmap(lambda z, eta, hp, c: jax.lax.fori_loop(0, 400, lambda i, zz: zz - eta * F(zz, hp, c), z),
                                     in_axes=(0, 0, 0, None))),
        }

    def _run(self, Z, hp, c):
        """``evaluate`` at exactly ``rows`` rows, memoised on the inputs."""
        key = (Z.tobytes(), tuple((k, np.asarray(v).tobytes()) for k, v in sorted(hp.items())))
        if self._last is None or self._last[0] != key:
            self._last = (key, tuple(np.asarray(a) for a in self._eval(Z, hp, c)))
        return self._last[1]

    def _get(self, Z, hp, c, which: int):
        """Output ``which`` (0 F, 1 log π, 2 value, 3 J) at the rows of ``Z``: B·``_LS`` rows as they
        are; B rows (and J always) each repeated ``_LS`` times, so J's rows are they; any other
        count in blocks of ``rows``, the last padded with its last row."""
        Z = np.asarray(Z, dtype=np.float64)
        m, R, b = Z.shape[0], self.rows, self.rows // _LS
        hp = None if hp is None else {k: np.broadcast_to(np.asarray(v, dtype=np.float64).reshape(-1), (m,)) for k, v in hp.items()}
        out = []
        for s in range(0, m, b if which == 3 or m == b else R):
            if which == 3 or m == b:  # a block of B rows, each repeated _LS times
                Zc = Z[s:s + b]
                pad = b - Zc.shape[0]
                idx = np.repeat(np.concatenate([np.arange(Zc.shape[0]), np.full(pad, Zc.shape[0] - 1)]), _LS)
                keep = slice(None, (b - pad) * _LS, _LS)
            else:  # a block of R rows, the last padded
                Zc = Z[s:s + R]
                pad = R - Zc.shape[0]
                idx = np.concatenate([np.arange(Zc.shape[0]), np.full(pad, Zc.shape[0] - 1)]).astype(int)
                keep = slice(None, R - pad)
            hc = self._hp if hp is None else {k: v[s:s + Zc.shape[0]][idx] for k, v in hp.items()}
            if hc is None:  # log π before any other call: any rows of the objective's own hyperparameters
                hc = {k: np.full(R, float(v)) for k, v in self.objective.hp.items()}
            self._hp = hc
            res = self._run(Zc[idx], hc, c)
            out.append(res[3][: b - pad] if which == 3 else res[which][keep])
        return np.concatenate(out)


def _fns(objective, unravel, rows: int):
    key = ("stationary", objective.signature(), rows)
    if key not in _CACHE:
        if len(_CACHE) > 64:
            _CACHE.clear()
        _CACHE[key] = _Programs(objective, unravel, rows).programs
    return _CACHE[key]


def _rows(hps: list[dict], keys, reps: int) -> dict:
    return {k: np.repeat(np.asarray([float(h[k]) for h in hps]), reps) for k in keys}


WARM_STEPS = 3000
WARM_LR = 0.05


def warm_start(objective, hps: list[dict], init=None, steps: int = WARM_STEPS, lr: float = WARM_LR):
    """The exact-mode trainer's endpoints (Adam, cosine schedule) at every point: the flow's limit.

    The trainer's final parameters only (:func:`bandit_lab.core.train.make_endpoint`: the same
    steps as ``make_train``, half its compile time), one ``jit(vmap)`` per objective signature."""
    from bandit_lab.core.train import TrainConfig, make_endpoint

    cfg = TrainConfig(optimizer="adam", steps=steps, schedule="cosine", log_steps=(0, steps))
    exact = objective if objective.static.get("sampling", "exact") == "exact" else objective.with_loss(
        objective.loss.name, {**objective.static, "sampling": "exact"})
    full = [{**exact.hp, "seed": 0, **h, "lr": lr} for h in hps]
    keys = sorted({k for h in full for k in h})
    p0 = exact.param.init() if init is None else init
    key = ("warm", exact.signature(), cfg, tuple(keys), jax.tree_util.tree_structure(p0))
    if key not in _CACHE:
        if len(_CACHE) > 64:
            _CACHE.clear()
        _CACHE[key] = jax.jit(jax.vmap(make_endpoint(exact, cfg), in_axes=(0, None, None)))
    hp = {k: np.asarray([float(h.get(k, exact.hp.get(k, 0.0))) for h in full]) for k in keys}
    return _CACHE[key](hp, exact.consts(), jax.tree_util.tree_map(jnp.asarray, p0))


def _softmax_shape(objective, n: int):
    """``(X, K)`` when the parameters are softmax logits (masked or not), one per response; else ``None``."""
    from bandit_lab.core.params import Softmax

    X, K = np.shape(objective.problem.pi_ref)
    return (X, K) if isinstance(objective.param, Softmax) and n == X * K else None


def _alpha(objective, hp_b: dict, B: int) -> np.ndarray:
    """Weight decay that breaks the gauge (α‖θ‖² on the parameters), per row."""
    a = np.asarray(hp_b.get("weight_decay", np.zeros(B)), dtype=np.float64).reshape(B)
    return a if getattr(objective, "penalty", "params") == "params" else np.zeros(B)


def _per_mass(shape, supp, alpha, Z, F, LP, J=None, both=False):
    """``u = F/π`` and ``M = ∂u/∂θ`` (softmax logits; ``= diag(π)⁻¹J`` at a root), each context's largest-mass row rebuilt
    from the gauge identity ``Σ_k F_{x,k} = 2α Σ_k θ_{x,k}`` (and its derivative for ``J``): the
    row computed directly is a difference of O(1) terms whose true value may be 1e-30. Off the
    support (masked logits) the scale is 1. Rows: ``Z, F, LP`` [B, n], ``J`` [B, n, n]."""
    X, K = shape
    B, n = Z.shape
    top = np.argmax(np.where(supp[None], LP.reshape(B, X, K), -np.inf), axis=2)  # [B, X]
    bi, xi = np.meshgrid(np.arange(B), np.arange(X), indexing="ij")
    Fr = np.array(F, dtype=np.float64).reshape(B, X, K)
    Fr[bi, xi, top] = 0.0
    Fr[bi, xi, top] = 2 * alpha[:, None] * Z.reshape(B, X, K).sum(2) - Fr.sum(2)
    with np.errstate(under="ignore"):
        P = np.exp(LP).reshape(B, X, K)
    S = np.where(supp[None], 1.0 / np.maximum(P, 1e-300), 1.0)
    u = (S * Fr).reshape(B, n)
    if J is None:
        return u, None
    Jr = np.array(J, dtype=np.float64).reshape(B, X, K, n)
    Jr[bi, xi, top] = 0.0
    ind = np.kron(np.eye(X), np.ones(K)).reshape(X, n)  # context x's coordinates
    Jr[bi, xi, top] = 2 * alpha[:, None, None] * ind[None] - Jr.sum(2)
    # ∂u/∂θ = diag(π)⁻¹J − diag(u)·∂log π/∂θ (= diag(π)⁻¹J at a root); ∂log π_k/∂θ_j = δ_kj − π_j in a context
    Pm = np.where(supp[None], P, 0.0).reshape(B, n)
    dlogp = np.eye(n)[None] * supp.reshape(1, n, 1) - (ind.T @ ind)[None] * Pm[:, None, :] * supp.reshape(1, n, 1)
    MF = (S[..., None] * Jr).reshape(B, n, n)
    return (u, MF - u[:, :, None] * dlogp, MF) if both else (u, MF - u[:, :, None] * dlogp)


def _underflows(shape, supp, LP, floor: float = UNDERFLOW_LOGP) -> np.ndarray:
    """Rows [B] where a supported response's log-mass, relative to its context's largest, is below
    ``floor`` (default ``UNDERFLOW_LOGP``: ``F = π·u`` is no longer a normal float there)."""
    X, K = shape
    L = np.where(supp[None], LP.reshape(-1, X, K), 0.0)
    rel = L - np.max(np.where(supp[None], L, -np.inf), axis=2, keepdims=True)
    return np.any(supp[None] & (rel < floor), axis=(1, 2))


def _tangent_softmax(shape, supp, alpha: float) -> np.ndarray:
    """Orthonormal basis of the logit directions that change the policy: per context, the
    supported logits moving with zero sum (all supported logits when α‖θ‖² breaks the gauge)."""
    X, K = shape
    cols = []
    for x in range(X):
        idx = np.nonzero(supp[x])[0] + x * K
        if alpha > 0:
            cols += [np.eye(X * K)[:, i] for i in idx]
            continue
        m = idx.size
        if m < 2:
            continue
        C = np.eye(m) - 1.0 / m  # centring on the support, rank m − 1
        Q = np.linalg.qr(C[:, : m - 1])[0]
        for j in range(m - 1):
            v = np.zeros(X * K)
            v[idx] = Q[:, j]
            cols.append(v)
    return np.array(cols).T.reshape(X * K, -1)


def _newton_dir(M, u, T):
    """The Newton step ``−M⁺u`` restricted to the tangent space ``T`` (min-norm least squares)."""
    if T.shape[1] == 0:
        return np.zeros(M.shape[0])
    w = np.linalg.lstsq(M @ T, -u, rcond=1e-13)[0]
    return T @ w


def solve_batch(objective, hps: list[dict], init=None, *, tol: float = TOL, iters: int = 100, bursts: int = 6,
                warm: bool = True) -> list[Stationary]:
    """Stationary points of ``objective``'s expected update at every hyperparameter point.

    verl ``clip_cov`` (a field that jumps where an atom's covariance crosses the window's edges): a
    verdict stands only if no atom sits on an edge at the root
    (:func:`bandit_lab.losses.libraries.clip_cov_verdict`)."""
    out = _solve_batch(objective, hps, init, tol=tol, iters=iters, bursts=bursts, warm=warm)
    hook = getattr(objective.loss, "field_verdict", None)  # LossSpec.field_verdict
    if hook is not None:
        out = [hook(objective, {**objective.hp, **h}, s) for h, s in zip(hps, out)]
    return out


def _solve_batch(objective, hps: list[dict], init=None, *, tol: float = TOL, iters: int = 100, bursts: int = 6,
                 warm: bool = True) -> list[Stationary]:
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
    shape = _softmax_shape(objective, n)
    supp = np.asarray(objective.problem.pi_ref) > 0
    alpha = _alpha(objective, hp_b, B)
    alpha_ls = np.repeat(alpha, _LS)

    def field(Z):  # Z [B, n] → F [B, n] through the fixed-size program
        out = np.array(fn["F"](np.repeat(Z, _LS, axis=0), hp_ls, c)).reshape(B, _LS, n)
        return out[:, 0]

    def scaled(Z, F, al, J=None, both=False):  # per unit of mass (softmax) or as is
        if shape is None:
            return (F, J, J) if both else (F, J)
        return _per_mass(shape, supp, al, Z, F, np.asarray(fn["logp"](Z, c)), J, both)

    if warm:
        P = warm_start(objective, hps, init)
        z = np.array(jax.vmap(lambda p: ravel_pytree(p)[0])(jax.tree_util.tree_map(jnp.asarray, P)), dtype=np.float64).reshape(B, n)
        bad = ~np.all(np.isfinite(z), axis=1)  # the flow ran into a singularity (e.g. k3 in the reward at π → 0)
        z[bad] = np.asarray(z0, dtype=np.float64)
    else:
        z = np.tile(np.asarray(z0, dtype=np.float64), (B, 1))
    tangents = [None if shape is None else _tangent_softmax(shape, supp, float(alpha[b])) for b in range(B)]

    f = field(z)
    u, _ = scaled(z, f, alpha)
    with np.errstate(over="ignore", invalid="ignore"):
        r = np.linalg.norm(u, axis=1)
    ts = 0.5 ** np.arange(_LS)
    radius = np.ones(B)
    switched = np.zeros(B, bool) if shape is not None else np.ones(B, bool)
    step = np.full(B, np.inf)
    stalled_bursts = np.zeros(B, int)
    it = 0
    for it in range(1, iters + 1):
        J = np.asarray(fn["J"](z, hp_b, c))
        _, M, MF = scaled(z, f, alpha, J, both=True)
        d = np.zeros_like(z)
        dF = np.zeros_like(z)  # Newton on F itself (diag(π)⁻¹J): the same root; it escapes ‖u‖'s spurious minima
        ok_row = np.zeros(B, bool)
        for b in range(B):
            if not (np.all(np.isfinite(M[b])) and np.all(np.isfinite(MF[b])) and np.all(np.isfinite(u[b]))):
                continue  # a singular point of the state (e.g. 1/P(non-degenerate group) at a vertex): no Newton step
            if tangents[b] is None:
                d[b] = dF[b] = -np.linalg.lstsq(M[b], u[b], rcond=1e-13)[0]
            else:
                d[b], dF[b] = _newton_dir(M[b], u[b], tangents[b]), _newton_dir(MF[b], u[b], tangents[b])
            ok_row[b] = True
        step = np.where(ok_row, np.linalg.norm(d, axis=1), np.inf)
        # scale-free stop: the Newton step (logits) is negligible; unscaled fields also keep the old absolute test
        done = ok_row & (step <= 1e-3 * STEP_TOL) if shape is not None else ~((r > tol) | (np.linalg.norm(f, axis=1) > tol))
        live = ~done
        if not live.any():
            break
        early = (it <= STAGE1) & ~switched  # stage 1: Newton on F at radius 1 (what converges from the flow's end)
        d[early] = dF[early]
        radius[early] = 1.0
        cap = np.abs(d).max(axis=1)
        capped = (cap > radius) & ~early
        d *= np.minimum(1.0, radius / np.maximum(cap, 1e-300))[:, None]
        dF *= np.minimum(1.0, radius / np.maximum(np.abs(dF).max(axis=1), 1e-300))[:, None]
        half = _LS // 2  # candidates: t = 1, ½, … along d, then along dF
        C = np.concatenate([z[:, None, :] + ts[None, :half, None] * d[:, None, :],
                            z[:, None, :] + ts[None, :half, None] * dF[:, None, :]], axis=1)
        FC = np.asarray(fn["F"](C.reshape(B * _LS, n), hp_ls, c))
        UC, _ = scaled(C.reshape(B * _LS, n), FC, alpha_ls)
        FC, UC = FC.reshape(B, _LS, n), UC.reshape(B, _LS, n)
        with np.errstate(over="ignore", invalid="ignore"):  # overflowing candidates: rc = inf, rejected below
            rc = np.linalg.norm(UC, axis=2)
        if shape is not None:  # a candidate whose masses underflow has u = 0/π = 0 there: never an improvement
            rc[_underflows(shape, supp, np.asarray(fn["logp"](C.reshape(B * _LS, n), c))).reshape(B, _LS)] = np.inf
        tt = np.concatenate([ts[:half], ts[:half]])
        ok = np.isfinite(rc) & (rc < (1.0 - 1e-4 * tt[None]) * r[:, None])
        moved = ok.any(axis=1) & live
        first = np.where(ok[:, :half].any(axis=1), np.argmax(ok[:, :half], axis=1), 0)  # first acceptable t along d
        firstF = half + np.where(ok[:, half:].any(axis=1), np.argmax(ok[:, half:], axis=1), 0)  # … along dF
        pick = np.where(~ok[np.arange(B), firstF] | (ok[np.arange(B), first] & (rc[np.arange(B), first] <= rc[np.arange(B), firstF])),
                        first, firstF)
        for b in np.nonzero(moved)[0]:
            z[b], f[b], r[b], u[b] = C[b, pick[b]], FC[b, pick[b]], rc[b, pick[b]], UC[b, pick[b]]
            radius[b] = min(2 * radius[b], RADIUS_MAX) if (pick[b] in (0, half) and capped[b]) else (
                radius[b] if pick[b] in (0, half) else max(1.0, radius[b] / 2))
        stuck = live & ~moved
        if _DEBUG: print(it, r, step, pick, radius, moved)
        if stuck.any():  # Newton cannot reduce ‖F‖ here: follow the flow θ̇ = −F for a while
            if np.all(stalled_bursts[stuck] >= bursts):
                break
            zn = _burst(fn, shape, supp, z, f, J, stuck, hp_b, c)
            z = zn
            f = field(z)
            u, _ = scaled(z, f, alpha)
            with np.errstate(over="ignore", invalid="ignore"):  # a field of 1e299 near a vertex: r = inf, not moved to
                r = np.linalg.norm(u, axis=1)
            radius[stuck] = 1.0
            stalled_bursts += stuck
    from bandit_lab.onpolicy import runaway  # rule 2 of the runaway ray, and the limit on the face

    rays = None
    for extra in range(RAY_BURSTS + 1):
        J = np.asarray(fn["J"](z, hp_b, c))
        if shape is None:
            break
        _, M = scaled(z, f, alpha, J)
        rays = runaway.second_rule(fn, shape, supp, z, u, M, tangents, alpha, hp_ls, c,
                                   _rays(objective, fn, shape, supp, z, u, alpha, hp_ls, c))
        # a row with neither a certified root nor a runaway ray where the Newton loop stopped: on a
        # discontinuous field (verl's abs KL loss) the stop point sits on the switching surfaces, and
        # whether a vanishing response is pushed down *at that point* depends on which side of each
        # surface rounding left it (the flow slides along them: pushed down on average). Follow the
        # flow a burst further and test again, up to RAY_BURSTS times (tests/test_runaway_limits.py)
        lost = np.zeros(B, bool)
        for b in range(B):
            if rays[b] is None and np.all(np.isfinite(M[b])) and np.all(np.isfinite(u[b])) and tangents[b] is not None:
                lost[b] = np.linalg.norm(_newton_dir(M[b], u[b], tangents[b])) > STEP_TOL
        if not lost.any() or extra == RAY_BURSTS:
            break
        z = _burst(fn, shape, supp, z, f, J, lost, hp_b, c)
        f = field(z)
        u, _ = scaled(z, f, alpha)
    pol = np.exp(np.asarray(fn["logp"](z, c))).reshape((B,) + np.shape(objective.policy(template)))
    vals = np.asarray(fn["value"](z, hp_b, c))
    if shape is None:
        return [_classify(objective, fn, unravel, z[b], f[b], float(np.linalg.norm(f[b])), float(r[b]), J[b], pol[b],
                          float(vals[b]), it, full[b], c) for b in range(B)]
    out = [_classify_scaled(objective, unravel, shape, supp, z[b], f[b], u[b], M[b], tangents[b], pol[b], float(vals[b]), it,
                            full[b], rays[b]) for b in range(B)]
    vanish = [None] * B
    for b in range(B):
        if out[b].status == "runaway":
            vanish[b] = np.zeros(shape, bool)
            vanish[b][tuple(np.asarray(rays[b]["which"]).T)] = True
    if any(v is not None for v in vanish):
        limits = runaway.face_limits(fn, shape, supp, z, alpha, hp_b, hp_ls, c, vanish, pi_ref=np.asarray(objective.problem.pi_ref))
        out = [o if lim is None else _classify_scaled(objective, unravel, shape, supp, z[b], f[b], u[b], M[b], tangents[b], pol[b],
                                                      float(vals[b]), it, full[b], rays[b], lim)
               for b, (o, lim) in enumerate(zip(out, limits))]
    return out



def _burst(fn, shape, supp, z, f, J, rows, hp_b, c) -> np.ndarray:
    """A burst of the flow θ̇ = −F from ``z`` on ``rows`` (the others stay): 400 Euler steps of
    0.5/ρ(J) (module docstring); where that first step would move a logit by more than
    ``BURST_JUMP`` — a nearly constant field — steps of η·max|F| = ``BURST_STEP``. A row whose burst
    leaves float64 (non-finite, or a mass run below ``UNDERFLOW_LOGP``) keeps its point."""
    B = z.shape[0]
    rho = np.array([np.abs(np.linalg.eigvals(J[b])).max() if np.all(np.isfinite(J[b])) else 1.0 for b in range(B)])
    eta = np.where(rows, 0.5 / np.maximum(rho, 1e-12), 0.0)
    # a (nearly) constant field, ρ(J) ≈ 0: 0.5/ρ would move a logit by more than BURST_JUMP in one Euler step
    # (to underflow, then reverted: the solver could not move); there η·max|F| = BURST_STEP (≤ 100 logits
    # per burst). Elsewhere (every burst measured on the presets and native algorithms: η·max|F| ≤ 0.66) as before
    with np.errstate(over="ignore", invalid="ignore"):
        fmax = np.where(np.all(np.isfinite(f), axis=1), np.abs(f).max(axis=1), 0.0)
    jump = eta * fmax > BURST_JUMP
    eta = np.where(jump, BURST_STEP / np.maximum(fmax, 1e-300), eta)
    zn = np.array(fn["flow"](z, eta, hp_b, c))
    zn[~np.all(np.isfinite(zn), axis=1)] = z[~np.all(np.isfinite(zn), axis=1)]
    if shape is not None:  # a burst that ran a mass below float64's range: keep the point (u = 0 there means nothing)
        back = _underflows(shape, supp, np.asarray(fn["logp"](zn, c))) & ~_underflows(shape, supp, np.asarray(fn["logp"](z, c)))
        zn[back] = z[back]
    return zn


def _small_candidates(shape, supp, LP, u) -> list:
    """Rule 1 of the runaway test, per row: the responses below ``SMALL`` × their context's largest
    mass that the update pushes down (``u_k > 0``); ``None`` where there is none."""
    X, K = shape
    out = []
    for b in range(LP.shape[0]):
        lp = np.where(supp, LP[b].reshape(X, K), -np.inf)
        cand = supp & (lp - lp.max(axis=1, keepdims=True) < np.log(SMALL)) & (u[b].reshape(X, K) > 0)
        out.append(cand if cand.any() else None)
    return out


def _rays(objective, fn, shape, supp, z, u, alpha, hp_ls, c, cands=None) -> list:
    """Per row, the runaway test along ``θ + t·d`` (``d`` = −1 on the candidates ``cands[b]`` — by
    default rule 1, :func:`_small_candidates`: the small-mass responses that the update pushes down —
    0 elsewhere: the others' logits do not move), probed at t = 0 and
    geometrically from 2^-6 until their log-masses reach ``FAR_LOGP``: ``{"t", "out", "which"}``
    with ``out[i, j]`` = the j-th candidate's ``u`` at probe i (> 0: still pushed down), or ``None``
    when no response is a candidate. One batched field evaluation for all rows."""
    X, K = shape
    B, n = z.shape
    LP = np.asarray(fn["logp"](z, c)).reshape(B, X, K)
    if cands is None:
        cands = _small_candidates(shape, supp, LP.reshape(B, n), u)
    C = np.repeat(z[:, None, :], _LS, axis=1)
    todo = []
    for b in range(B):
        cand = cands[b]
        if cand is None or not cand.any():
            todo.append(None)
            continue
        t_max = max(float(LP[b][cand].min()) - FAR_LOGP, 1.0)
        t = np.concatenate([[0.0], np.geomspace(2.0 ** -6, t_max, _LS - 1)])
        d = -cand.reshape(-1).astype(np.float64)
        C[b] = z[b][None] + t[:, None] * d[None]
        todo.append((t, cand))
    if all(x is None for x in todo):
        return todo
    Cf = C.reshape(B * _LS, n)
    FC = np.asarray(fn["F"](Cf, hp_ls, c))
    UC, _ = _per_mass(shape, supp, np.repeat(alpha, _LS), Cf, FC, np.asarray(fn["logp"](Cf, c)))
    LCf = np.asarray(fn["logp"](Cf, c))
    WC = _relative(shape, supp, UC, LCf).reshape(B, _LS, X, K)
    UC = UC.reshape(B, _LS, X, K)
    LC = LCf.reshape(B, _LS, X, K)
    out = []
    for b, x in enumerate(todo):
        if x is None:
            out.append(None)
            continue
        t, cand = x
        out.append({"t": t, "out": UC[b][:, cand], "rel": WC[b][:, cand], "logp": LC[b][:, cand], "which": np.argwhere(cand)})
    return out


def _relative(shape, supp, u, LP) -> np.ndarray:
    """The push on each response relative to its context's largest-mass response, per unit of its
    own mass: ``w_k = (F_k − F_top)/π_k = u_k − u_top·π_top/π_k`` (``u`` from :func:`_per_mass`;
    0 at the top). Under the flow θ̇ = −F the log-ratio log(π_k/π_top) = θ_k − θ_top moves at
    −(F_k − F_top) = −π_k·w_k: ``w_k > 0`` is "pushed down relative to the top" whether or not the
    top itself is pushed (a field that does not vanish on the face: TR-DPO's constant −(β/2)·n,
    where ``u_k`` of a response less preferred than the top but with n_k > 0 is < 0 and yet
    π_k/π_top → 0). Rows: ``u, LP`` [B, n]."""
    X, K = shape
    B = u.shape[0]
    L = np.where(supp[None], LP.reshape(B, X, K), -np.inf)
    top = np.argmax(L, axis=2)  # [B, X]
    bi, xi = np.meshgrid(np.arange(B), np.arange(X), indexing="ij")
    U = u.reshape(B, X, K)
    with np.errstate(over="ignore", invalid="ignore"):
        ratio = np.exp(np.where(supp[None], L[bi, xi, top][..., None] - L, 0.0))
        W = np.where(supp[None], U - U[bi, xi, top][..., None] * ratio, U)
    W[bi, xi, top] = 0.0
    return W.reshape(B, X * K)


def _ray_verdict(ray, rel: bool = False) -> tuple[str, dict]:
    """``("runaway" | "turns" | "beyond", numbers)`` from :func:`_rays`' probes (module docstring);
    ``rel``: on the push relative to the context's largest response (:func:`_relative`) instead of ``u``."""
    o, t, lp = ray["rel" if rel else "out"], ray["t"], ray["logp"]
    scale = max(float(np.abs(o).max()), 1e-300) if np.all(np.isfinite(o)) else 1.0
    cert = {"ray_t": [float(t[1]), float(t[-1])], "ray_far_logp": float(lp[-1].max()),
            "ray_out_first": o[0].tolist(), "ray_out_far": o[-1].tolist()}
    if rel:
        cert["ray_measure"] = "relative"
    if not np.all(np.isfinite(o)):
        return "nonfinite", cert
    if np.any(o[1:] <= 0):  # the update turns inward at a finite t along the ray
        i = int(np.argmax(np.any(o[1:] <= 0, axis=1))) + 1
        return "turns", {**cert, "turns_at_logp": float(lp[i].max())}
    weakening = (o[-1] < o[-2] - 1e-12 * scale) | (o[-2] < o[-3] - 1e-12 * scale)
    if not weakening.any():
        return "runaway", cert
    slope = (o[-2] - o[-1]) / (t[-1] - t[-2])  # > 0 where the push weakens
    with np.errstate(divide="ignore"):
        t_star = np.where(slope > 0, t[-1] + o[-1] / np.maximum(slope, 1e-300), np.inf)
    root_logp = lp[-1] - (t_star - t[-1])
    return "beyond", {**cert, "extrapolated_root_logp": float(np.max(root_logp[np.isfinite(root_logp)]))}


def _fmt_policy(p) -> str:
    rows = ["[" + ", ".join("0" if v == 0 else f"{v:.6g}" for v in r) + "]" for r in np.atleast_2d(p)]
    return rows[0] if len(rows) == 1 else "[" + ", ".join(rows) + "]"


def _limit_note(shape, limit, where) -> tuple[str, dict]:
    """The runaway note's statement of a certified limit on the face, and its certificate fields."""
    pol = np.asarray(limit["policy"], dtype=np.float64)
    ray = limit["ray_cert"]
    cert = {"limit_policy": pol.tolist(), "limit_kind": limit["kind"], "limit_ray_out_first": ray["ray_out_first"],
            "limit_ray_out_far": ray["ray_out_far"]}
    push = (f"relative to its context's survivor, w = (F_k − F_top)/π_k = " if ray.get("ray_measure") == "relative" else "u = ")
    tail = (f"; from it π({where}) is still pushed down at every probe of the ray, not weakening "
            f"({push}{', '.join(f'{v:.3g}' for v in ray['ray_out_far'])} at log π = {ray['ray_far_logp']:.0f})")
    face = ""
    if limit.get("face_runaway"):  # the face itself ran away (no limit on it): survivors added to the vanishing set
        cert["limit_face_runaway"] = limit["face_runaway"]
        face = "".join(f"the survivors' face has no limit of its own and runs away too: π({_label(shape, f['which'])}) → 0 "
                       f"(pushed down relative to its context's largest at every probe of the ray on that face, not "
                       f"weakening, to log π = {f['ray_far_logp']:.0f}); " for f in limit["face_runaway"])
    if limit["kind"] == "vertex":
        return f"{face}the limit is the vertex π = {_fmt_policy(pol)} (one survivor per context){tail}", cert
    if limit["kind"] == "root":
        cert["limit_face_step"] = limit["face_step"]
        return (f"{face}the limit is π = {_fmt_policy(pol)}, the survivors' stationary point on their face (Newton step "
                f"{limit['face_step']:.1e} there, scale-free; attracting on the face){tail}"), cert
    if "pinned" in limit:  # on an intersection of switching surfaces (runaway._pinned)
        cert.update({"limit_bracket": limit["bracket"], "limit_pinned": _label(shape, limit["pinned"]).split(", "),
                     "limit_margin": limit["margin"], "limit_corners": limit["corners"], "limit_vanish_push": limit["vanish_push"]})
        if limit.get("lyapunov") is None:
            how = (f"the flow pushes every one of them back towards its surface (largest σ·d/dt log π_k/π_ref,k = "
                   f"{limit['margin']:.3g} < 0: the field jumps there, no root)")
        else:
            cert["limit_lyapunov"] = limit["lyapunov"]
            how = (f"not every corner pushes every one of them back (largest σ·d/dt log π_k/π_ref,k = {limit['margin']:.3g}), "
                   f"but Σ_k |log π_k/π_ref,k| decreases along every Filippov motion there, in each sign region and "
                   f"sliding on each intersection of the surfaces (largest derivative {limit['lyapunov']:.3g} < 0)")
        return (f"{face}the limit is π = {_fmt_policy(pol)}, a sliding point on the survivors' face where π({_label(shape, limit['pinned'])}) "
                f"sit on their switching surfaces π_k = π_ref,k: at all {limit['corners']} corners ±{limit['bracket'] / 2:.0e} of "
                f"log π_k/π_ref,k around it {how}, so the flow on the face is "
                f"pushed into it from all sides, and every sliding motion there (a convex combination of the corners' fields "
                f"tangent to the surfaces) pushes the vanishing responses down (u ≥ {limit['vanish_push']:.3g}){tail}"), cert
    cert.update({"limit_bracket": limit["bracket"], "limit_jump": limit["jump"]})
    return (f"{face}the limit is π = {_fmt_policy(pol)}, a sliding point on the survivors' face: the update along it changes "
            f"sign across {limit['bracket']:.0e} in the logit (per unit mass {limit['jump'][0]:.3g} | {limit['jump'][1]:.3g} at "
            f"the ends: the field jumps there, no root), so the flow on the face is pushed into it from both sides{tail}"), cert


def _label(shape, which) -> str:
    X, _ = shape
    return ", ".join(f"y{k + 1}" if X == 1 else f"x{x + 1}:y{k + 1}" for x, k in which)


def _classify_scaled(objective, unravel, shape, supp, z, f, u, M, T, pol, value, it, hp, ray, limit=None) -> Stationary:
    """Softmax logits: the scale-free classification of the module docstring; ``limit``: a runaway's
    limit on its face (:func:`bandit_lab.onpolicy.runaway.face_limits`)."""
    params = unravel(jnp.asarray(z))
    r = float(np.linalg.norm(f))
    finite = bool(np.all(np.isfinite(z)) and np.all(np.isfinite(u)) and np.all(np.isfinite(M)) and np.all(np.isfinite(pol)))
    with np.errstate(over="ignore", invalid="ignore"):  # per-mass entries ~1e250 at masses near float64's floor: norm = inf
        step = float(np.linalg.norm(_newton_dir(M, u, T))) if finite else float("inf")
        un = float(np.linalg.norm(u)) if finite else None
    cert = {"newton_step": step, "field_norm": r, "scaled_field_norm": un,
            "min_mass": float(pol[supp.reshape(pol.shape)].min()) if finite else None, "step_tol": STEP_TOL}
    converged = finite and step <= STEP_TOL
    with np.errstate(divide="ignore"):
        lp = np.log(np.where(supp.reshape(pol.shape), pol, 1.0)).reshape(shape)
    logits = z.reshape(shape)
    gap = np.where(supp, logits - np.max(np.where(supp, logits, -np.inf), axis=1, keepdims=True), 0.0)
    under = supp & ((lp < UNDERFLOW_LOGP) | (gap < UNDERFLOW_LOGP))
    res = ExactResult(params, pol, value, r, converged and not under.any(), it, unravel(jnp.asarray(f)))
    if not finite:
        return Stationary(res, "not converged", "the field is not finite along the flow (a probability reached 0 where the "
                                                "estimator is singular): no stationary point found", None, cert)
    if under.any():  # log π is exact (log-softmax) but F = π·u underflows: nothing can be certified there
        cert["underflow_logp"] = [float(g) for g in gap[under]]
        return Stationary(res, "not converged",
                          f"π({_label(shape, np.argwhere(under))}) < e^{UNDERFLOW_LOGP:.0f} of the largest (the solver stopped at log-ratios "
                          f"{', '.join(f'{g:.0f}' for g in gap[under])}): below float64's range (e^{UNDERFLOW_LOGP:.0f}), where the expected update π·u underflows and "
                          f"cannot be evaluated — no certified stationary point (Newton step on the rest {step:.1e})", None, cert)
    if not converged:
        if ray is not None:
            kind, rc = _ray_verdict(ray)
            cert.update(rc)
            where = _label(shape, ray["which"])
            if kind == "runaway":
                # the survivors (supported, not on the ray): is the flow settled on the face where the point is shown?
                # (tests/test_audit_rows.py: verl's abs KL loss stops with y2 still pushed back up towards π_ref)
                # settled ⇔ the survivors' logits move together (equal F_k: a gauge shift; the vanishing ones may
                # carry a finite force, e.g. k3 in the reward), measured per unit of the smallest survivor's mass
                surv = supp.copy()
                surv[tuple(np.asarray(ray["which"]).T)] = False
                Fm, Pm = u.reshape(shape) * pol.reshape(shape), pol.reshape(shape)
                face = max([(float(Fm[x][surv[x]].max() - Fm[x][surv[x]].min()) / float(Pm[x][surv[x]].min()))
                            for x in range(shape[0]) if surv[x].sum() > 1] or [0.0])
                cert["face_field_spread"] = face
                shown = ("the limit is shown (the survivors' logits move together: spread of their update per unit mass "
                         f"{face:.1e} ≤ 1e-6)" if face <= 1e-6 else
                         "the point shown is where the solver stopped, NOT the limit: the survivors' update still moves them "
                         f"apart (spread per unit mass {face:.1e})")
                lead = f"π({where}) → 0 — "
                if limit is not None and "policy" in limit:
                    where_all = _label(shape, np.argwhere(limit["vanish"]))
                    shown, lc = _limit_note(shape, limit, where_all)
                    cert.update(lc, vanishing=[s.strip() for s in where_all.split(",")])
                    if where_all != where:
                        lead = f"π({where_all}) → 0 — first π({where}): "
                elif limit is not None:
                    shown += f" (the face's limit is not certified: {limit['failed']})"
                    cert["limit_failed"] = limit["failed"]
                if ray.get("rule") == 2:
                    cert["ray_rule"] = 2
                    shown += (f"; found by the second candidate rule (the responses the update pushes down, smallest first: "
                              f"rule 1 takes only those below {SMALL:g} of their context's largest mass)")
                return Stationary(res._replace(converged=False), "runaway",
                                  f"no finite stationary point on the flow's path: {lead}along the ray lowering their "
                                  f"logits the update keeps pushing them down, not weakening, to log π = {rc['ray_far_logp']:.0f} "
                                  f"(Newton step {step:.1e}); {shown}; a finite root elsewhere (one the flow from this start "
                                  "does not reach) is not excluded", None, {**cert, "stability": "runaway"})
            if kind == "beyond":
                return Stationary(res, "not converged",
                                  f"a finite stationary point beyond float64: the push on π({where}) weakens along the ray and "
                                  f"turns at log π ≈ {rc['extrapolated_root_logp']:.0f} (linear extrapolation; below e^−745 "
                                  "nothing is representable); the point shown is on the way", None, cert)
            if kind == "turns":
                return Stationary(res, "not converged",
                                  f"Newton step {step:.1e} after {it} iterations, and the update turns inward along the ray at "
                                  f"log π({where}) ≈ {rc['turns_at_logp']:.0f}: a finite root the solver did not reach", None, cert)
        return Stationary(res, "not converged", f"Newton step {step:.1e} (> {STEP_TOL:g}) after {it} iterations: no certified "
                                                "stationary point (slow spiral or a cycle of the flow)", None, cert)
    # a finite root: contraction in the metric diag(π)⁻¹ — Sym(TᵀMT) positive definite
    A = T.T @ M @ T
    if A.size == 0:
        return Stationary(res, "attracting", "a root of the expected update (the tangent space is a point)", None, cert)
    sym = np.linalg.eigvalsh(0.5 * (A + A.T))
    lam = np.linalg.eigvals(A)
    top = max(float(np.abs(lam).max()), 1e-300)
    cert.update({"sym_lambda_min": float(sym.min()), "scaled_lambda_max": top})
    if sym.min() > 1e-9 * top:
        return Stationary(res, "attracting", f"a root of the expected update (Newton step {step:.1e}, scale-free); the flow "
                          f"θ̇ = −F contracts to it (symmetric part of diag(π)⁻¹J positive definite, λ_min/λ_max = "
                          f"{sym.min() / top:.1e})", float(sym.min()), {**cert, "stability": "attracting"})
    # not a contraction in that metric: the eigenvalues of J = diag(π)·M off the gauge decide
    Pd = np.exp(np.clip(np.log(np.maximum(pol.reshape(-1), 1e-300)), -700, 0))
    Pd = np.where(supp.reshape(-1), Pd, 1.0)
    lamJ = np.linalg.eigvals(T.T @ (Pd[:, None] * M) @ T)
    scale = max(float(np.abs(lamJ).max()), 1e-300)
    lo = float(lamJ.real.min())
    cert["lambda_J_min_real"] = lo
    if np.any(lamJ.real < -1e-8 * scale):
        return Stationary(res, "not attracting", "a root of the expected update, but the flow leaves it (an eigenvalue with "
                                                 "Re λ < 0): training does not settle here", lo, {**cert, "stability": "not attracting"})
    if np.any((np.abs(lamJ.real) <= 1e-8 * scale) & (np.abs(lamJ.imag) > 1e-6 * scale)):
        return Stationary(res, "not attracting", "a root of the expected update, but the flow circles it (Re λ = 0, Im λ ≠ 0): "
                                                 "training cycles around it", lo, {**cert, "stability": "not attracting"})
    weak = int(np.sum(np.abs(lamJ) <= 1e-8 * scale))
    return Stationary(res, "attracting", f"a root of the expected update (Newton step {step:.1e}); the flow θ̇ = −F converges to it"
                      + (f" ({weak} very slow direction(s): tiny probabilities)" if weak else ""), lo,
                      {**cert, "stability": "attracting"})


def _classify(objective, fn, unravel, z, f, r, r_rel, J, pol, value, it, hp, c) -> Stationary:
    """Parameterizations other than softmax logits (log-linear, token trees): the unscaled field."""
    params = unravel(jnp.asarray(z))
    finite = bool(np.all(np.isfinite(z)) and np.isfinite(r))
    converged = finite and r <= CERTIFY
    tiny = np.argwhere(pol < ZERO_MASS)
    cert = {"field_norm": r, "mass_threshold": ZERO_MASS}
    res = ExactResult(params, pol, value, r, converged and not len(tiny), it, unravel(jnp.asarray(f)))
    if not finite or not np.all(np.isfinite(pol)):
        return Stationary(res, "not converged", "the field is not finite along the flow (a probability reached 0 where the "
                                                "estimator is singular): no stationary point found", None, cert)
    if len(tiny):
        where = ", ".join(f"y{k + 1}" if pol.shape[0] == 1 else f"x{x + 1}:y{k + 1}" for x, k in tiny)
        return Stationary(res, "runaway", f"no finite stationary point: π({where}) < {ZERO_MASS:g} (‖F‖ = {r:.1e}; mass "
                                          f"threshold, not a scale-free certificate: not softmax logits); the limit is shown", None,
                          {**cert, "stability": "runaway"})
    if not converged:
        return Stationary(res, "not converged", f"‖F‖ = {r:.1e} after {it} iterations: no certified stationary point "
                                                f"(slow spiral or a cycle of the flow)", None, cert)
    # eigenvalues of J off the gauge (directions that leave π unchanged), unless a penalty pins them
    if hp.get("weight_decay", 0.0) > 0:
        U = np.eye(z.size)
    else:
        Dl = np.asarray(fn["dlogp"](jnp.asarray(z), c))
        _, s, Vt = np.linalg.svd(Dl, full_matrices=False)
        U = Vt[: int((s > 1e-10 * max(s.max(), 1e-300)).sum())].T
    if not np.all(np.isfinite(J)):
        return Stationary(res, "not converged", "the expected update is not differentiable here: no certified stationary point",
                          None, cert)
    lam = np.linalg.eigvals(U.T @ J @ U)
    lo = float(lam.real.min()) if lam.size else 0.0
    scale = max(float(np.abs(lam).max()) if lam.size else 1.0, 1e-300)
    if np.any(lam.real < -1e-8 * scale):
        return Stationary(res, "not attracting", "a root of the expected update, but the flow leaves it (an eigenvalue with "
                                                 "Re λ < 0): training does not settle here", lo, {**cert, "stability": "not attracting"})
    if np.any((np.abs(lam.real) <= 1e-8 * scale) & (np.abs(lam.imag) > 1e-6 * scale)):
        return Stationary(res, "not attracting", "a root of the expected update, but the flow circles it (Re λ = 0, Im λ ≠ 0): "
                                                 "training cycles around it", lo, {**cert, "stability": "not attracting"})
    weak = int(np.sum(np.abs(lam) <= 1e-8 * scale))
    return Stationary(res, "attracting", "a root of the expected update; the flow θ̇ = −F converges to it"
                      + (f" ({weak} very slow direction(s): tiny probabilities)" if weak else ""), lo,
                      {**cert, "stability": "attracting"})


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
