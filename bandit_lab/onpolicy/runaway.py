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
  on the face is pushed into the bracket from both sides. On a face of dimension d ≥ 2
  (:func:`_pinned`) the sliding point sought is one with every survivor but one per context on its
  switching surface π_k = π_ref,k, certified at the 2^d corners ±``BRACKET``/2 of log π_k/π_ref,k:
  every pinned log-ratio is pushed back towards 0 on every side, and every sliding motion there
  pushes the vanishing responses down (verl ``abs``: (0.5, 0.3, 0.2, 0) on 4 responses,
  (0.4, 0.2, 0.2, 0.2, 0) and (0.5, 0.3, 0.2, 0, 0) on 5); a sliding point with two free survivors in a context, or one whose
  pinned coordinates are attracted only through a sliding motion (not from every corner), is not
  sought (the note then says "NOT the limit").
- **a face that runs away too.** Where the face has no limit (its Newton stalls and no sliding
  point is found), the survivors the face's update pushes down *relative to their context's
  largest* (``w_k = (F_k − F_top)/π_k > 0``, :func:`st._relative`), smallest first, are tried with
  the runaway ray from the solver's point on the face (and, where none runs away from there, from
  the first candidates of :func:`_pinned`); the first prefix that runs away (``w_k > 0``
  at every probe, not weakening) joins the vanishing set and the face's limit is sought again, down
  to a vertex. TR-DPO without weight decay: the synced field is the constant −(β/2)·n, no face has a
  root, and the limit is the vertex of the largest net win weight n (``fixed_points._trdpo_runaway_row``).
  The relative push, not ``u_k``, is the measure there: u_2 = F_2/π_2 < 0 where n_2 > 0, yet
  π_2/π_1 → 0 because y1 is pushed up faster.

Every limit is certified only if, from the limit's survivors (the vanishing logits back at the
solver's values), the runaway ray still finds **all** the vanishing responses pushed down at every
probe, not weakening: on ``u`` for a root or a sliding point (there the survivors' push is
O(π_vanishing)), on the relative push ``w`` at a vertex (its one survivor per context may carry a push
that does not vanish, as TR-DPO's does; for a policy-gradient field w_k = u_k + Σ_j π_j u_j/π_k).

The tests put these against independent NumPy computations of the libraries' expected updates
(tests/test_runaway_limits.py: OpenRLHF reinforce_baseline's clamp, verl's abs KL loss on 3 and 4
responses, TR-DPO's net win weights).
"""
from __future__ import annotations

import itertools

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
    out = list(rays)
    for b, ray in _prefix_rays(fn, shape, supp, z, alpha, hp_ls, c, order, ("runaway", "beyond")).items():
        out[b] = {**ray, "rule": 2}
    return out


def _prefix_rays(fn, shape, supp, z, alpha, hp_ls, c, order: dict, accept, rel: bool = False) -> dict:
    """Per row ``b`` of ``order`` (candidate indices ``[m, 2]``, smallest first), the runaway ray of
    the first prefix {the first}, {the first two}, … whose :func:`st._ray_verdict` (``rel``: on the
    relative push) is in ``accept``; rows with none are left out. One batched ray per prefix length."""
    X, K = shape
    B = z.shape[0]
    order, found, j = dict(order), {}, 1
    while order:
        cands = [None] * B
        for b, idx in order.items():
            m = np.zeros((X, K), bool)
            m[tuple(idx[:j].T)] = True
            cands[b] = m
        rs = st._rays(None, fn, shape, supp, z, None, alpha, hp_ls, c, cands)
        for b in list(order):
            kind = st._ray_verdict(rs[b], rel)[0]
            if kind in accept:
                found[b] = rs[b]
            if kind in accept or j >= len(order[b]):
                del order[b]
        j += 1
    return found


def face_limits(fn, shape, supp, z, alpha, hp_b, hp_ls, c, vanish, depth: int = 0, pi_ref=None) -> list:
    """Per row, the certified limit of a runaway on the face of its survivors (module docstring),
    or ``None`` (no runaway on that row), or ``{"failed": reason}``. ``vanish[b]``: the vanishing
    responses' mask ``[X, K]`` (or None). A certified limit is ``{"policy" [X, K] (vanishing
    exactly 0), "kind": "root" | "vertex" (one survivor per context) | "sliding", "face_step" | "bracket", "jump" | "pinned",
    "margin", "face_stability", "ray": the ray from the limit, "vanish": the final vanishing mask, "face_runaway": the
    rays on the faces that ran away (absent where none did)}``. ``pi_ref``: the reference masses (the switching surfaces
    of :func:`_pinned`); ``depth``: how many times the vanishing set was enlarged (≤ K)."""
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
    LPz = np.asarray(fn["logp"](Z, c)).reshape(B, X, K)
    for b, (step, Mb) in found.items():
        lp = np.where(surv[b], LPz[b], -np.inf)
        low = surv[b] & (lp - lp.max(axis=1, keepdims=True) <= st.FAR_LOGP)
        if low.any():  # a survivor as small as the vanishing ones: its u = F/π is no longer the face's (F ~ π·u underflows)
            out[b] = {"failed": f"the face's Newton stopped with a survivor's mass below e^{st.FAR_LOGP:.0f} of its context's "
                                f"largest (as small as the vanishing ones): not a point of the face"}
            continue
        stab = _face_stability(Mb, T[b], P[b], S[b])
        if stab != "attracting":
            out[b] = {"failed": f"the face's root is {stab} on the face (Newton step {step:.1e})"}
            continue
        lim[b] = {"kind": "root" if T[b].shape[1] else "vertex", "face_step": step, "face_stability": stab}
    slides = _sliding(fn, shape, supp, Z0, hp_ls, c, {b: T[b] for b in stuck if T[b].shape[1] <= 1})
    centres: dict = {}  # a failed pinned sliding point's candidate (the first tried), where the face's own runaway is sought too
    slides.update(_pinned(fn, shape, supp, Z0, hp_ls, c, [b for b in stuck if T[b].shape[1] > 1], surv, vanish, pi_ref,
                          centres))
    for b, v in slides.items():
        if isinstance(v, str):
            out[b] = {"failed": v}
            continue
        Z[b] = v.pop("z")
        lim[b] = v
    if lim:
        _certify(fn, shape, supp, z, Z, alpha, hp_ls, c, vanish, surv, S, lim, out)
    # the face has no limit of its own (its Newton stalled, no sliding point): does the face run away too?
    grow = [b for b in stuck if b not in lim and isinstance(out[b], dict) and "failed" in out[b] and int(surv[b].sum()) > X]
    if not grow or depth >= K:
        return out
    def face_rays(Zs, rows_):  # the relative-push rays on the faces of ``rows_`` from the points ``Zs``
        u_s, _ = per_mass(Zs, field(Zs), alpha)
        LPs = np.asarray(fn["logp"](Zs, c))
        Ws = st._relative(shape, supp, u_s, LPs).reshape(B, X, K)
        order = {}
        for b in rows_:
            lp = np.where(surv[b], LPs[b].reshape(X, K), -np.inf)
            rel = lp - lp.max(axis=1, keepdims=True)
            top = np.zeros((X, K), bool)
            top[np.arange(X), np.argmax(lp, axis=1)] = True
            down = surv[b] & ~top & (Ws[b] > 0) & (rel > st.UNDERFLOW_LOGP)
            idx = np.argwhere(down)
            if len(idx):
                order[b] = idx[np.argsort(rel[down], kind="stable")]
        return _prefix_rays(fn, shape, supp, Zs, alpha, hp_ls, c, order, ("runaway",), rel=True)

    more = face_rays(Z0, grow)  # from the solver's point on the face, then from the pinned candidates' centres
    for i in range(MAX_CENTRES):
        again = [b for b in grow if b not in more and len(centres.get(b, ())) > i]
        if not again:
            break
        Zc = Z0.copy()
        for b in again:
            Zc[b] = centres[b][i]
        more.update(face_rays(Zc, again))
    if not more:
        return out
    vanish2 = [None] * B
    for b, ray in more.items():
        vanish2[b] = vanish[b].copy()
        vanish2[b][tuple(np.asarray(ray["which"]).T)] = True
    sub = face_limits(fn, shape, supp, z, alpha, hp_b, hp_ls, c, vanish2, depth + 1, pi_ref)
    for b, ray in more.items():
        step = {"which": np.asarray(ray["which"]).tolist(), **st._ray_verdict(ray, rel=True)[1]}
        if "policy" in sub[b]:
            out[b] = {**sub[b], "face_runaway": [step] + sub[b].get("face_runaway", [])}
        else:
            out[b] = {"failed": f"{out[b]['failed']}; on the face a survivor runs away too (relative push along the ray on "
                                f"the face), but the smaller face's limit is not certified either: {sub[b]['failed']}"}
    return out


def _certify(fn, shape, supp, z, Z, alpha, hp_ls, c, vanish, surv, S, lim, out) -> None:
    """The limits ``lim`` found on the faces (survivors' logits in ``Z``) that pass the final test go
    into ``out``: from the limit's survivors, the vanishing logits back at the solver's values ``z``,
    the runaway ray still finds every vanishing response pushed down at every probe, not weakening —
    on ``u`` for a root or a sliding point of the face (there the survivors' push is O(π_vanishing)),
    on the push relative to the context's survivor (:func:`st._relative`) at a vertex (its one
    survivor may carry a push that does not vanish: TR-DPO's constant field)."""
    X, K = shape
    B, n = Z.shape
    # from the limit's survivors (the vanishing logits back at the solver's values): still a runaway?
    Zr = np.array(z, dtype=np.float64)
    cands = [None] * B
    for b in lim:
        Zr[b][S[b]] = Z[b][S[b]]
        cands[b] = vanish[b]
    LPr = np.asarray(fn["logp"](Zr, c))
    rays = st._rays(None, fn, shape, supp, Zr, None, alpha, hp_ls, c, cands)
    LPf = np.asarray(fn["logp"](Z, c)).reshape(B, X, K)
    for b, v in lim.items():
        kind, rc = st._ray_verdict(rays[b], rel=v["kind"] == "vertex")
        if kind != "runaway":
            out[b] = {"failed": f"from the face's point the vanishing responses' push is not a runaway ({kind})"}
            continue
        lp = np.where(surv[b], LPf[b], -np.inf)
        lp = lp - np.logaddexp.reduce(lp, axis=1, keepdims=True)
        with np.errstate(under="ignore"):
            pol = np.where(surv[b], np.exp(lp), 0.0)
        out[b] = {**v, "policy": pol, "ray": rays[b], "ray_cert": rc, "logp_start": LPr[b].tolist(), "vanish": vanish[b].copy()}


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


MAX_CORNERS = 256  # a pinned sliding point is tested at the 2^d corners of its bracket (d pinned survivors), …
MAX_CANDIDATES = 64  # … for at most this many choices of the free survivor of each context
MAX_CENTRES = 4  # a face whose pinned candidates all fail: its own runaway is sought from the first few of them


def _pinned(fn, shape, supp, Z0, hp_ls, c, rows, surv, vanish, pi_ref, centres=None) -> dict:
    """Rows whose face Newton stalled on a face of dimension ≥ 2: a **sliding point on an
    intersection of switching surfaces** (Filippov), for a field discontinuous where a response's
    mass crosses its reference mass (a KL estimate's sgn or clamp at the ratio 1: verl's ``abs``
    KL loss, sgn(log π_k/π_ref,k)). Candidates: in each context one survivor is free and every other
    survivor is pinned at π_k = π_ref,k (the free one takes the rest, which must be > 0 and off its
    own surface); the choices are tried in the order of the free survivors' masses at the solver's
    point ``Z0`` (the largest first), and the first that passes is the limit. For verl ``abs`` this
    is the generic form of a sliding point: with u_j = (r̄ − r_j) + β(s_j − Σ π_i s_i) (s = sgn h, in
    [−1, 1] on a surface) a root with two free survivors in a context needs r_j − r_l ∈ {0, ±2β}.
    Certificate: at every one of the 2^d corners h_k = σ_k·δ (h = log π/π_ref, σ ∈ {±1}^d over the d
    pinned survivors, δ = ``BRACKET``/2), every pinned h_k is pushed back towards 0 by the flow
    θ̇ = −F: σ_k·ḣ_k < 0 with ḣ_k = −F_k + Σ_j π_j F_j (its context's sum) — then every |h_k|
    decreases on every side, so the flow is pushed into the intersection from all sides, as across
    the one-dimensional bracket of :func:`_sliding` (on an intersection of some of the surfaces the
    sliding motion is a convex combination of the adjacent corners' fields, and each of them pushes
    every other |h_k| down); or, where some corner pushes a coordinate away, V = Σ_k |h_k| decreases
    along every Filippov motion (:func:`_sum_descent`) — and every vanishing response is pushed down
    by the sliding motion (:func:`_sliding_push`). Returns per row ``{"kind": "sliding", "z", "bracket", "pinned",
    "margin" (the largest σ_k·ḣ_k over the corners, < 0), "vanish_push", "corners"}`` or the reason
    there is none; ``centres[b]``: where none passed, the logits of the first ``MAX_CENTRES`` candidates tried."""
    X, K = shape
    B, n = Z0.shape
    out: dict = {}
    if not rows:
        return out
    if pi_ref is None:
        return {b: "the face's Newton stalled on a face of dimension ≥ 2 (no reference masses for its switching surfaces)"
                for b in rows}
    ref = np.asarray(pi_ref, dtype=np.float64).reshape(X, K)
    LP0 = np.asarray(fn["logp"](Z0, c)).reshape(B, X, K)
    delta = 0.5 * BRACKET
    plan = {}  # b → [(free [X] (−1: none), pin [X, K], d, groups)], in the order tried
    for b in rows:
        lp = np.where(surv[b], LP0[b], -np.inf)
        per = []
        for x in range(X):
            ks = [int(k) for k in np.argsort(-lp[x], kind="stable") if surv[b][x, k]]
            full = len(ks) > 1 and abs(float(ref[x][surv[b][x]].sum()) - 1.0) <= 1e-12
            per.append([-1] if full else ks)  # a context with nothing vanishing: all its survivors at π_ref
        cands, why = [], set()
        for free in itertools.islice(itertools.product(*per), MAX_CANDIDATES):
            free = np.array(free)
            pin = surv[b].copy()
            fx = np.nonzero(free >= 0)[0]
            pin[fx, free[fx]] = False
            rest = 1.0 - np.where(pin, ref, 0.0).sum(axis=1)[fx]
            coords = np.argwhere(pin)
            groups = [np.nonzero(coords[:, 0] == x)[0] for x in np.nonzero(free < 0)[0]]
            d = len(coords)
            if np.any(rest <= 0):
                why.add("the pinned survivors' reference masses leave none to the free one")
            elif np.any(np.abs(np.log(rest) - np.log(ref[fx, free[fx]])) <= BRACKET):
                why.add("the free survivor sits on its own switching surface too (not sought: the pinned survivors' "
                        "corners do not cover every side of its surface)")
            elif 2 ** d > MAX_CORNERS:
                why.add(f"more than {MAX_CORNERS} corners to test")
            else:
                cands.append((free, pin, d, groups))
        d = int(surv[b].sum()) - int(np.sum(surv[b].any(axis=1)))
        budget = np.cumsum([2 ** c_[2] for c_ in cands])
        cands = cands[: max(1, int(np.sum(budget <= 4 * MAX_CORNERS)))]  # ≤ 1024 corner evaluations per row
        if cands:
            plan[b] = cands
        else:
            out[b] = (f"the face's Newton stalled on a face of dimension {d}, and no sliding point with all survivors but "
                      f"one per context at π_ref is a candidate ({'; '.join(sorted(why))})")

    def logits(b, i, sig):
        """The corner ``sig`` (zeros: the point itself): pinned h_k = σ_k·δ where a context has a free
        survivor (it takes the rest); in a context with none, h_k ∝ σ_k/(π_ref,k·m_σk) (m_±: how many of
        its signs are ±), |h_k| ≤ δ, so that Σ π_ref,k h_k = 0 there and the softmax moves no sign (O(δ²))."""
        free, pin, _, groups = plan[b][i]
        h = sig * delta
        coords = np.argwhere(pin)
        for g in groups:
            m = {sgn: max(int(np.sum(sig[g] == sgn)), 1) for sgn in (-1.0, 1.0)}
            w = ref[tuple(coords[g].T)] * np.array([m.get(v, 1) for v in sig[g]])
            h[g] = sig[g] * delta * w.min() / w  # |h_k| ≤ δ
        P = np.zeros((X, K))
        P[pin] = ref[pin] * np.exp(h)
        for x in np.nonzero(free >= 0)[0]:
            P[x, free[x]] = 1.0 - P[x].sum()
        zr = Z0[b].reshape(X, K).copy()
        with np.errstate(divide="ignore"):
            zr[surv[b]] = np.log(P[surv[b]])
        top = np.max(np.where(surv[b], zr, -np.inf), axis=1, keepdims=True)
        zr[vanish[b]] = np.broadcast_to(top + st.FAR_LOGP, (X, K))[vanish[b]]
        return zr.reshape(-1)

    def corners_of(cand):  # the sign patterns of the regions: in a context with no free survivor, both signs
        _, _, d, groups = cand
        for sig in itertools.product((-1.0, 1.0), repeat=d):
            sig = np.array(sig)
            if all(len(set(sig[g])) == 2 for g in groups):
                yield sig

    jobs = [(b, i, sig) for b in plan for i, cand in enumerate(plan[b]) for sig in corners_of(cand)]
    res = {(b, i): [] for b in plan for i in range(len(plan[b]))}
    while jobs:  # batches of ≤ _LS corners per row (one compiled program)
        C = np.repeat(Z0[:, None, :], st._LS, axis=1)
        took = {b: [] for b in plan}
        later = []
        for b, i, sig in jobs:
            if len(took[b]) < st._LS:
                C[b, len(took[b])] = logits(b, i, sig)
                took[b].append((i, sig))
            else:
                later.append((b, i, sig))
        jobs = later
        Cf = C.reshape(B * st._LS, n)
        F = np.asarray(fn["F"](Cf, hp_ls, c))
        LP = np.asarray(fn["logp"](Cf, c))
        U, _ = st._per_mass(shape, supp, np.zeros(B * st._LS), Cf, F, LP)
        U, LP = U.reshape(B, st._LS, X, K), LP.reshape(B, st._LS, X, K)
        for b, done in took.items():
            for j, (i, sig) in enumerate(done):
                pin = plan[b][i][1]
                with np.errstate(under="ignore"):
                    P = np.where(supp, np.exp(LP[b, j]), 0.0)
                Fm = np.where(supp, P * U[b, j], 0.0)
                hd = -Fm + (P * Fm).sum(axis=1, keepdims=True)  # d log π_k/dt under θ̇ = −F
                res[(b, i)].append((sig, LP[b, j][pin] - np.log(ref[pin]), hd[pin], U[b, j][vanish[b]]))
    for b, cands in plan.items():
        worst = []
        for i, (free, pin, d, groups) in enumerate(cands):
            corners = res[(b, i)]
            margin = max(float(np.max(sig * g)) for sig, _, g, _ in corners)
            hmax = max(float(np.abs(h).max()) for _, h, _, _ in corners)
            side = all(np.array_equal(np.sign(h), sig) for sig, h, _, _ in corners)
            lyap = _sum_descent(corners, groups) if margin >= 0 and side and hmax <= BRACKET else None
            attracted = margin < 0 or (lyap is not None and lyap < 0)
            push = _sliding_push(corners) if vanish[b].any() and attracted else float("inf")
            if side and hmax <= BRACKET and attracted and push > 0:
                out[b] = {"kind": "sliding", "z": logits(b, i, np.zeros(d)), "bracket": 2 * delta,
                          "pinned": np.argwhere(pin).tolist(), "margin": margin, "lyapunov": lyap, "vanish_push": push,
                          "corners": len(corners)}
                break
            worst.append(margin if side and hmax <= BRACKET else float("inf"))
        else:
            if centres is not None:
                centres[b] = [logits(b, i, np.zeros(c_[2])) for i, c_ in enumerate(cands[:MAX_CENTRES])]
            d = int(surv[b].sum()) - int(np.sum(surv[b].any(axis=1)))
            out[b] = (f"the face's Newton stalled on a face of dimension {d}, and with all survivors but one per context at "
                      f"π_ref ({len(cands)} choice(s) of the free one) they are not pushed back to their switching surfaces "
                      f"from every side, or a vanishing response is not pushed down (σ·ḣ up to {min(worst):.3g} at the best)")
    return out


def _sliding_push(corners) -> float:
    """The smallest per-mass push ``u`` on a vanishing response under any sliding motion on the
    intersection: Filippov's sliding field (Filippov 1988, *Differential Equations with Discontinuous
    Righthand Sides*, §2.4 and §19) is a convex combination Σ λ_σ F_σ of the fields of the 2^d
    adjacent regions (here sampled at the corners) tangent to the intersection (Σ λ_σ ḣ_σ = 0 on
    the pinned coordinates). For each vanishing response the minimum of Σ λ_σ u_σ over all such λ is
    a linear program (scipy ``linprog``, HiGHS); > 0 for every one means it is pushed down whichever
    combination the motion takes (weaker than u > 0 at every corner, and as sound). ``corners``:
    ``(σ, h, ḣ_pinned, u_vanishing)`` per corner. ``-inf`` where no tangent combination exists."""
    from scipy.optimize import linprog

    G = np.array([g for _, _, g, _ in corners]).T  # [d, 2^d]
    Uv = np.array([v for *_, v in corners])  # [2^d, m]
    A = np.vstack([G, np.ones(G.shape[1])])
    rhs = np.concatenate([np.zeros(G.shape[0]), [1.0]])
    scale = max(float(np.abs(Uv).max()), 1e-300)
    worst = float("inf")
    for j in range(Uv.shape[1]):
        res = linprog(Uv[:, j], A_eq=A, b_eq=rhs, bounds=[(0, None)] * G.shape[1], method="highs")
        if res.status != 0:
            return float("-inf")
        worst = min(worst, float(res.fun))
    return worst if worst > 1e-9 * scale else min(worst, 0.0)


def _sum_descent(corners, groups=(), d_max: int = 5) -> float | None:
    """The largest set-valued derivative of V = Σ_k |h_k| (h: the pinned log-ratios) along the
    Filippov motions near the corners' point (Bacciotti & Ceragioli 1999, ESAIM COCV 4, "Stability
    and stabilization of discontinuous systems and nonsmooth Lyapunov functions", Thm 3.1: V convex,
    hence regular; the origin is asymptotically stable if every element of the set-valued derivative
    is < 0 away from it). Near the point every region h_k ≠ 0 (sign pattern τ on the nonzero ones,
    the set Z at 0) sees the convex hull of its adjacent corners' fields (σ = τ off Z); a motion
    there is a combination λ with ḣ_Z = 0 (else it crosses Z at once and V's derivative set is
    empty), and dV/dt = Σ_{k∉Z} τ_k ḣ_k. For each of the 3^d − 1 patterns the largest such dV/dt is a
    linear program (scipy ``linprog``, HiGHS; in the open regions, Z = ∅, the corner's own value).
    ``groups``: the coordinates of each context with every survivor pinned (Σ π_ref,k h_k = 0 there:
    a pattern whose nonzero entries in a group all have one sign is no point of the face, skipped).
    ``None`` beyond ``d_max`` pinned coordinates (3^d programs), ``inf`` where a program fails."""
    from scipy.optimize import linprog

    S = np.array([sig for sig, *_ in corners])  # [2^d, d]
    G = np.array([g for _, _, g, _ in corners])  # ḣ of the pinned coordinates at each corner
    d = S.shape[1]
    if d > d_max:
        return None
    worst = -np.inf
    for tau in itertools.product((-1.0, 0.0, 1.0), repeat=d):
        tau = np.array(tau)
        if not tau.any():
            continue
        if any(np.any(tau[g] != 0) and len(set(tau[g][tau[g] != 0])) < 2 for g in groups):
            continue
        Z = tau == 0
        adj = np.all(S[:, ~Z] == tau[~Z], axis=1)
        if not adj.any():
            continue
        Ga = G[adj]
        val = Ga[:, ~Z] @ tau[~Z]
        if not Z.any():
            worst = max(worst, float(val.max()))
            continue
        A = np.vstack([Ga[:, Z].T, np.ones(len(Ga))])
        res = linprog(-val, A_eq=A, b_eq=np.concatenate([np.zeros(int(Z.sum())), [1.0]]),
                      bounds=[(0, None)] * len(Ga), method="highs")
        if res.status == 2:  # infeasible: no motion stays on this intersection
            continue
        if res.status != 0:
            return float("inf")
        worst = max(worst, float(-res.fun))
    scale = max(float(np.abs(G).max()), 1e-300)
    return worst if worst < -1e-9 * scale else max(worst, 0.0)
