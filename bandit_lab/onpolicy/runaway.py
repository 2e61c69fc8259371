"""The runaway verdict of :mod:`bandit_lab.onpolicy.stationary`: which responses vanish, and the limit.

Two pieces the stationary solver calls once its Newton iteration has stopped short of a root
(softmax logits only; everything is measured per unit of mass, ``u = F/π``, as in the solver):

- **a second candidate rule** (:func:`second_rule`). The runaway ray of the solver is tried first
  on the responses below ``SMALL`` × their context's largest mass that the update pushes down. A
  field whose push on a response does not weaken as it vanishes (a clamped KL estimate, e.g.
  OpenRLHF's ±10 on k1 in the reward: ``u_k`` is constant in ``θ_k`` once the clamp bites) gives
  Newton nothing to reduce, so the solver can stop with that response above ``SMALL``
  (``openrlhf-reinforce_baseline-beta0.1``: π(y3) ≈ 1.8e-6). Where rule 1 finds no candidate and
  the Newton step exceeds ``STEP_TOL``, the ray is tried on the responses the update pushes down
  (``u_k > 0``, never a context's largest), smallest first: {the smallest}, {the two smallest}, …
  The ray's own test (``u_k > 0`` at every probe down to e^−575, not weakening at the far end)
  decides, exactly as for rule 1; the candidate rule only chooses the direction.
- **the limit on the face** (:func:`face_limits`). On a runaway the vanishing responses' masses go
  to 0 and the survivors follow the field restricted to the face (their contributions to the
  survivors' update are O(π_vanishing)). With the vanishing logits put e^−575 below their context's
  largest survivor, the face's point is found by Newton on the survivors' per-mass field (the
  survivors' tangent space: each context's survivors moving with zero sum), certified by the same
  scale-free Newton step ≤ ``STEP_TOL`` as a root, and its stability on the face by the contraction
  test of the solver (symmetric part of ``diag(π)⁻¹J`` on the face positive definite, or every
  eigenvalue of ``J`` there with Re λ > 0). A field that is discontinuous on the face (verl's
  ``abs`` KL loss: sgn(log π/π_ref) jumps at π = π_ref) has no root there; on a one-dimensional
  face its limit is a **sliding point** (Filippov): the update along the face changes sign from
  "pushed up" to "pushed down" across a bracket narrowed to ≤ ``BRACKET`` in the logit, so the flow
  on the face is pushed into the bracket from both sides. Either way the limit is certified only if,
  from the limit's survivors (the vanishing logits back at the solver's values), the runaway ray
  still finds the vanishing responses pushed down at every probe, not weakening.

The tests put both against independent NumPy computations of the libraries' expected updates
(tests/test_runaway_limits.py: OpenRLHF reinforce_baseline's clamp and verl's abs KL loss).
"""
from __future__ import annotations

import numpy as np

from bandit_lab.onpolicy import stationary as st

BRACKET = 1e-10  # width (logit units) to which a sliding point's bracket is narrowed
FACE_ITERS = 40  # Newton iterations on the face
RADIUS = 4.0  # per-coordinate cap (logits) of a Newton step on the face


def second_rule(fn, shape, supp, z, u, M, tangents, alpha, hp_ls, c, rays) -> list:
    """``rays`` with rule 2's ray put in where rule 1 had no candidate, the Newton step exceeds
    ``STEP_TOL`` and a prefix of the pushed-down responses (smallest first) gives a ``runaway`` or
    ``beyond`` verdict (``ray["rule"] = 2``)."""
    X, K = shape
    B, n = z.shape
    LP = np.asarray(fn["logp"](z, c)).reshape(B, X, K)
    order = {}
    for b in range(B):
        if rays[b] is not None or tangents[b] is None:
            continue
        if not (np.all(np.isfinite(M[b])) and np.all(np.isfinite(u[b]))):
            continue
        if np.linalg.norm(st._newton_dir(M[b], u[b], tangents[b])) <= st.STEP_TOL:
            continue
        lp = np.where(supp, LP[b], -np.inf)
        rel = lp - lp.max(axis=1, keepdims=True)
        top = np.zeros((X, K), bool)
        top[np.arange(X), np.argmax(lp, axis=1)] = True
        down = supp & ~top & (u[b].reshape(X, K) > 0) & (rel > st.UNDERFLOW_LOGP)
        idx = np.argwhere(down)
        if len(idx):
            order[b] = idx[np.argsort(rel[down], kind="stable")]
    j = 1
    out = list(rays)
    while order:
        cands = [None] * B
        for b, idx in order.items():
            m = np.zeros((X, K), bool)
            m[tuple(idx[:j].T)] = True
            cands[b] = m
        rs = st._rays(None, fn, shape, supp, z, u, alpha, hp_ls, c, cands)
        for b in list(order):
            kind = st._ray_verdict(rs[b])[0]
            if kind in ("runaway", "beyond"):
                out[b] = {**rs[b], "rule": 2}
            if kind in ("runaway", "beyond") or j >= len(order[b]):
                del order[b]
        j += 1
    return out


def face_limits(fn, shape, supp, z, alpha, hp_b, hp_ls, c, vanish) -> list:
    """Per row, the certified limit of a runaway on the face of its survivors (module docstring),
    or ``None`` (no runaway on that row), or ``{"failed": reason}``. ``vanish[b]``: the vanishing
    responses' mask ``[X, K]`` (or None). A certified limit is ``{"policy" [X, K] (vanishing
    exactly 0), "kind": "root" | "vertex" (one survivor per context) | "sliding", "face_step" | "bracket", "jump", "face_stability",
    "ray": the ray from the limit}``."""
    X, K = shape
    B, n = z.shape
    rows = [b for b in range(B) if vanish[b] is not None and alpha[b] == 0]
    out: list = [None] * B
    for b in range(B):
        if vanish[b] is not None and alpha[b] != 0:
            out[b] = {"failed": "weight decay on the logits: the face is not invariant"}
    if not rows:
        return out
    surv = {b: supp & ~vanish[b] for b in rows}
    Z = np.array(z, dtype=np.float64)
    for b in rows:  # the vanishing logits e^FAR below their context's largest survivor
        zr = Z[b].reshape(X, K)
        top = np.max(np.where(surv[b], zr, -np.inf), axis=1, keepdims=True)
        zr[vanish[b]] = np.broadcast_to(top + st.FAR_LOGP, (X, K))[vanish[b]]
        Z[b] = zr.reshape(-1)
    Z0 = Z.copy()  # the solver's point on the face (where a sliding point is followed from)
    T = {b: st._tangent_softmax(shape, surv[b], float(alpha[b])) for b in rows}
    S = {b: surv[b].reshape(-1) for b in rows}
    ts = 0.5 ** np.arange(st._LS)

    def field(Zs):
        return np.array(fn["F"](np.repeat(Zs, st._LS, axis=0), hp_ls, c)).reshape(B, st._LS, n)[:, 0]

    def per_mass(Zs, F, al, J=None):
        return st._per_mass(shape, supp, al, Zs, F, np.asarray(fn["logp"](Zs, c)), J)

    F = field(Z)
    u, _ = per_mass(Z, F, alpha)
    r = {b: float(np.linalg.norm(u[b][S[b]])) for b in rows}
    radius = {b: 1.0 for b in rows}
    active, stuck, found = set(rows), set(), {}
    for _ in range(FACE_ITERS):
        if not active:
            break
        J = np.asarray(fn["J"](Z, hp_b, c))
        u, M = per_mass(Z, F, alpha, J)
        D = np.zeros_like(Z)
        for b in sorted(active):
            if not (np.all(np.isfinite(M[b])) and np.all(np.isfinite(u[b]))):
                active.discard(b)
                stuck.add(b)
                continue
            if T[b].shape[1] == 0:
                d = np.zeros(n)
            else:
                d = T[b] @ np.linalg.lstsq(M[b][S[b]] @ T[b], -u[b][S[b]], rcond=1e-13)[0]
            step = float(np.linalg.norm(d))
            if step <= st.STEP_TOL:
                found[b] = (step, M[b])
                active.discard(b)
                continue
            D[b] = d * min(1.0, radius[b] / max(float(np.abs(d).max()), 1e-300))
        if not active:
            break
        C = Z[:, None, :] + ts[None, :, None] * D[:, None, :]
        Cf = C.reshape(B * st._LS, n)
        FC = np.array(fn["F"](Cf, hp_ls, c))
        UC, _ = st._per_mass(shape, supp, np.repeat(alpha, st._LS), Cf, FC, np.asarray(fn["logp"](Cf, c)))
        UC, FC = UC.reshape(B, st._LS, n), FC.reshape(B, st._LS, n)
        for b in sorted(active):
            with np.errstate(over="ignore", invalid="ignore"):
                rc = np.linalg.norm(UC[b][:, S[b]], axis=1)
            ok = np.isfinite(rc) & (rc < (1.0 - 1e-4 * ts) * r[b])
            if not ok.any():
                active.discard(b)
                stuck.add(b)
                continue
            i = int(np.argmax(ok))
            full = np.abs(D[b]).max() >= radius[b] * (1 - 1e-12)
            Z[b], F[b], r[b] = C[b, i], FC[b, i], float(rc[i])
            radius[b] = min(2 * radius[b], 64.0) if (i == 0 and full) else (radius[b] if i == 0 else max(1.0, radius[b] / 2))
    stuck |= active
    lim = {}
    with np.errstate(under="ignore"):
        P = np.exp(np.asarray(fn["logp"](Z, c)))  # all rows: the compiled batch size (no new program)
    for b, (step, Mb) in found.items():
        stab = _face_stability(Mb, T[b], P[b], S[b])
        if stab != "attracting":
            out[b] = {"failed": f"the face's root is {stab} on the face (Newton step {step:.1e})"}
            continue
        lim[b] = {"kind": "root" if T[b].shape[1] else "vertex", "face_step": step, "face_stability": stab}
    for b, v in _sliding(fn, shape, supp, Z0, hp_ls, c, {b: T[b] for b in stuck}).items():
        if isinstance(v, str):
            out[b] = {"failed": v}
            continue
        Z[b] = v.pop("z")
        lim[b] = v
    if not lim:
        return out
    # from the limit's survivors (the vanishing logits back at the solver's values): still a runaway?
    Zr = np.array(z, dtype=np.float64)
    cands = [None] * B
    for b in lim:
        Zr[b][S[b]] = Z[b][S[b]]
        cands[b] = vanish[b]
    LPr = np.asarray(fn["logp"](Zr, c))
    Fr = field(Zr)
    ur, _ = per_mass(Zr, Fr, alpha)
    rays = st._rays(None, fn, shape, supp, Zr, ur, alpha, hp_ls, c, cands)
    LPf = np.asarray(fn["logp"](Z, c)).reshape(B, X, K)
    for b, v in lim.items():
        kind, rc = st._ray_verdict(rays[b])
        if kind != "runaway":
            out[b] = {"failed": f"from the face's point the vanishing responses' push is not a runaway ({kind})"}
            continue
        lp = np.where(surv[b], LPf[b], -np.inf)
        lp = lp - np.logaddexp.reduce(lp, axis=1, keepdims=True)
        with np.errstate(under="ignore"):
            pol = np.where(surv[b], np.exp(lp), 0.0)
        out[b] = {**v, "policy": pol, "ray": rays[b], "ray_cert": rc, "logp_start": LPr[b].tolist()}
    return out


def _face_stability(M, T, pol, S) -> str:
    """The solver's contraction test restricted to the face (tangent ``T``)."""
    if T.shape[1] == 0:
        return "attracting"
    A = T.T @ M @ T
    sym = np.linalg.eigvalsh(0.5 * (A + A.T))
    top = max(float(np.abs(np.linalg.eigvals(A)).max()), 1e-300)
    if sym.min() > 1e-9 * top:
        return "attracting"
    P = np.where(S, pol, 1.0)
    lam = np.linalg.eigvals(T.T @ (P[:, None] * M) @ T)
    scale = max(float(np.abs(lam).max()), 1e-300)
    if np.any(lam.real <= 1e-8 * scale):
        return "not attracting"
    return "attracting"


def _sliding(fn, shape, supp, Z, hp_ls, c, Ts) -> dict:
    """Rows whose face Newton stalled: on a one-dimensional face (tangent ``v``), follow the update
    along the face, ``g = v·F``, from the solver's point ``Z`` (t = 0) in the direction the flow
    θ̇ = −F moves it (−sgn g(0)·v), probed at t = 2^-20 … 2^10 logits, to its first sign change: a
    bracket where g goes from < 0 (flow along +v) to > 0 (along −v), narrowed to ``BRACKET``.
    Returns per row ``{"kind": "sliding", "z", "bracket", "jump"}`` (``jump``: the per-mass ``v·u``
    at the two ends) or the reason there is none."""
    B, n = Z.shape
    out: dict = {}
    one = {b: T[:, 0] for b, T in Ts.items() if T.shape[1] == 1}
    for b, T in Ts.items():
        if T.shape[1] != 1:
            out[b] = f"the face's Newton stalled on a face of dimension {T.shape[1]} (a sliding point is sought on a line only)"
    if not one:
        return out

    def probe(pos):
        C = np.repeat(Z[:, None, :], st._LS, axis=1)
        for b, t in pos.items():
            C[b] = Z[b][None] + t[:, None] * one[b][None]
        Cf = C.reshape(B * st._LS, n)
        F = np.asarray(fn["F"](Cf, hp_ls, c))
        U, _ = st._per_mass(shape, supp, np.zeros(B * st._LS), Cf, F, np.asarray(fn["logp"](Cf, c)))
        F, U = F.reshape(B, st._LS, n), U.reshape(B, st._LS, n)
        return {b: (F[b] @ one[b], U[b] @ one[b]) for b in pos}

    ray = np.concatenate([[0.0], np.geomspace(2.0 ** -20, 2.0 ** 10, st._LS - 1)])
    g0 = probe({b: np.zeros(st._LS) for b in one})
    bracket = {}
    pos = {}
    for b, (g, gu) in g0.items():
        if g[0] == 0:
            bracket[b] = [0.0, 0.0, gu[0], gu[0]]
        else:
            pos[b] = -np.sign(g[0]) * ray  # the flow moves along −sgn(g)·v
    for b, (g, gu) in probe(pos).items():
        t = pos[b]
        flip = np.nonzero(np.sign(g) != np.sign(g[0]))[0]
        if not len(flip):
            out[b] = "the update along the face keeps its sign for 2^10 logits from the solver's point"
            continue
        i = int(flip[0])  # the first probe past the sign change: the flow stops between i − 1 and i
        lo, hi = sorted((i - 1, i), key=lambda k: t[k])
        bracket[b] = [t[lo], t[hi], gu[lo], gu[hi]]
    for _ in range(12):
        wide = {b: v for b, v in bracket.items() if v[1] - v[0] > BRACKET}
        if not wide:
            break
        pos = {b: np.linspace(v[0], v[1], st._LS) for b, v in wide.items()}
        for b, (g, gu) in probe(pos).items():
            t = pos[b]
            up = np.nonzero((g[:-1] < 0) & (g[1:] > 0))[0]
            zero = np.nonzero(g == 0)[0]
            if len(zero):
                bracket[b] = [t[zero[0]], t[zero[0]], gu[zero[0]], gu[zero[0]]]
            elif len(up):
                i = up[0]
                bracket[b] = [t[i], t[i + 1], gu[i], gu[i + 1]]
            else:  # no sign change from < 0 to > 0 inside: not a point the flow is pushed into from both sides
                out[b] = "the update along the face does not point into the bracket from both sides"
                del bracket[b]
    for b, (t0, t1, g0_, g1) in bracket.items():
        if t1 - t0 > BRACKET:
            out[b] = f"the sliding bracket stayed {t1 - t0:.1e} wide"
            continue
        out[b] = {"kind": "sliding", "z": Z[b] + 0.5 * (t0 + t1) * one[b], "bracket": float(t1 - t0),
                  "jump": [float(g0_), float(g1)]}
    return out
