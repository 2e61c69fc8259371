"""``bandit-lab check-loss NAME``: the battery every registered loss — built-in or a user's — is held to.

:func:`check_loss` runs it on anything in :func:`bandit_lab.losses.registry` and returns a
:class:`LossCheckReport`: **rows** are pass/fail checks (``name, claim, value, tolerance, passed``;
``passed is None`` = not applicable, with the reason in ``note``), **facts** are properties that
are findings, not failures (convex or not, shares DPO's fixed point or not). Everything runs in
float64 (``bandit_lab.x64()``, JAX's own ``enable_x64`` context, around the numerics, whatever
the caller's JAX config).

Must pass (``bandit-lab check-loss`` exits 1 if any fails):

``evaluates``
    The loss evaluates (value and gradient, traced by ``jit``) at π_ref on Kong et al.'s App. B
    bandit. A :class:`~bandit_lab.errors.BanditError` here (a token-level loss needs a token tree)
    makes the whole battery *not applicable* with that reason; any other exception fails the row.
``finite``
    Value and gradient are finite on a grid of extreme inputs: margins ``|βΔ| ∈ {0, 1, 10, 100,
    1e3}`` (both signs: every pair occurs in both orders), with ``π_ref`` entries down to 1e-12 (and
    π_θ on those responses near 1, so ``h = log π/π_ref ≈ 27.6``), uniform and reference pair laws,
    population and sampled data (zero-weight triples must not poison anything: the "double
    where" of :func:`bandit_lab.losses.base.expect`). Large margins are reached through β
    (``βΔ = 1e3`` as β = 100, Δ = 10) so every log-ratio stays within ±40 and every quantity a
    correct loss computes is representable; ``−log σ(βΔ)`` written as ``jnp.log(jax.nn.sigmoid(·))``
    is ``log 0 = −∞`` there (and its gradient 0/0). Tolerance: zero non-finite points.
    Log-ratio margins ``|Δ| = 1e3`` at β = 1 (π_θ(y) ≈ e^−1000) are a *fact* instead: there a
    correct loss may have no float64 value (f-DPO with the forward KL has ``f'(u) = −1/u``,
    ``e^{1000}``).
``gradient``
    The gradient JAX returns equals central finite differences of the value, in float64, at
    several random points (random bandits from :mod:`bandit_lab.core.random_problems` with K = 4 and
    two contexts, logits ``N(0, 1)``). Error = ``‖g − g_FD‖₂ / max(‖g‖₂, ‖g_FD‖₂, 1e-8(1 + |f|))``,
    the smallest over steps ``h ∈ {1e-3, 1e-4, 1e-5, 1e-6}·max(1, |θ_i|)`` (the best step balances
    truncation O(h²) against rounding O(ε/h); a wrong gradient is wrong at *every* step, so the
    minimum cannot hide one), the largest over points. Tolerance 1e-6: the central difference
    reaches ~1e-10 in float64 at its best step, while a wrong rule, a missing term or a sign errs
    by ≳ 1e-3. Detached quantities are honoured: a loss that calls ``stop_gradient`` (KTO's
    reference point, WPO's weights, an on-policy algorithm's samples) trains on the gradient with
    those quantities *frozen*, so the finite differences are taken of the value with every
    ``stop_gradient`` output frozen at the point (the loss's jaxpr is re-evaluated with them
    replaced, :func:`_frozen_evaluator`), and a per-step loss state is frozen the same way.
    Kinks (hinge, DPO-Positive) form a set of measure zero, which random points avoid almost
    surely, and the smallest step sees a kink within ``10⁻⁶`` only.
``counterpart`` (only if the loss declares ``LossSpec.counterpart``)
    At α = 0 the exact population optimum of the loss equals its declared RLHF counterpart's
    (TV ≤ 1e-6 = :data:`bandit_lab.fixed_points.SHARE_TOL`) on two Bradley–Terry bandits with
    uniform pairs, where the classical equivalences hold: DPO ↔ reverse-KL RLHF with the BT
    reward (Rafailov et al. 2023 §4; Kong et al. Eq. 10), IPO ↔ RLHF with ``r_IPO`` (Azar et al.
    2024 Prop. 4; Kong Eq. 9), f-DPO ↔ f-RLHF (Wang et al. 2024 Thm 1). This is a must-pass row,
    not a fact, because the declaration *is* a claim the loss makes: the weight-decay and
    early-stopping experiments measure how constraints separate a loss from its counterpart
    (Kong Props. 3.1/3.2), and a counterpart that is not equivalent at α = 0 makes every such
    number mean something else. Both optima come from :func:`bandit_lab.fixed_points.solve_one`
    (Newton from 8 starts, or the loss's own exact solver) and must be finite.

Facts (reported, never failures):

- ``fixed_point``: the exact population optimum on Kong et al.'s App. B bandit (π* = [0.6, 0.3,
  0.1], π_ref = [0.4, 0.4, 0.2], uniform pairs) by :func:`bandit_lab.fixed_points.solve_one`
  (multistart, runaway / no-finite-minimiser detection, closed forms, TV to DPO's and RLHF's
  optima), and whether it shares DPO's fixed point (TV ≤ 1e-6).
- ``large_margins``: finite or not at log-ratio margins ``|Δ| = 1e3`` with β = 1.
- ``convexity``: convexity of the value in the softmax logits, on 12 random bandits (K = 3, three
  random points each): the smallest Hessian eigenvalue (reported; its eigenvector is a search
  direction) and the midpoint test ``f((a+b)/2) ≤ (f(a)+f(b))/2`` along its eigenvector and random directions;
  a violation beyond rounding (``> 1e-9·(1 + |f(a)| + |f(b)|)``) is re-evaluated outside the
  batch and reported as a counterexample (bandit, a, b, values). DPO and IPO are convex (their
  margins ``h_w − h_l = θ_w − θ_l + const`` are linear in the logits of one context, composed with
  softplus / a square); DiscoPOP is not. Not applicable to losses with a per-step state (on-policy
  algorithms, TR-DPO): their update is a field, not the gradient of a fixed function.
- ``weight_decay`` / ``early_stopping`` (only with a counterpart): on the App. B bandit, the TV
  between the loss and its counterpart for α ∈ {0, 0.01, 0.1, 1} (α‖θ‖²), trained (Adam, 3000
  steps, exponential schedule) and exact; and, at α = 0, along the same runs after 1, 10, 100,
  1000 and 3000 steps. All of it is one compiled ``jit(vmap(scan))`` plus one batched exact
  solve (:func:`bandit_lab.runner.train_and_solve`). Kong Props. 3.1/3.2: a constraint separates
  them; at α = 0 the exact TV is 0.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bandit_lab.infra import budget, precision
from bandit_lab import losses
from bandit_lab.core import metrics
from bandit_lab.errors import BanditError

FD_TOL = 1e-6
FD_STEPS = (1e-3, 1e-4, 1e-5, 1e-6)
FD_POINTS = 6
COUNTERPART_TOL = 1e-6  # = fixed_points.SHARE_TOL (tested equal)
MARGINS = (0.0, 1.0, 10.0, 100.0, 1000.0)
TINY_REF = 1e-12
CONVEX_BANDITS = 12
CONVEX_POINTS = 3  # random logits per bandit, at three scales
CONVEX_T = (0.02, 0.1, 0.5, 2.0)
CONVEX_TOL = 1e-9  # relative: midpoint gaps above this are not rounding
ALPHAS = (0.0, 0.01, 0.1, 1.0)
STEPS = 3000
LR = 0.05
EARLY_STEPS = (1, 10, 100, 1000, 3000)
APP_B = {"pi_ref": [0.4, 0.4, 0.2], "pi_star": [0.6, 0.3, 0.1]}


@dataclasses.dataclass(frozen=True)
class CheckRow:
    """A pass/fail check: ``passed is None`` means not applicable (``note`` says why)."""

    name: str
    claim: str
    value: float | None
    tolerance: float | None
    passed: bool | None
    note: str = ""


@dataclasses.dataclass(frozen=True)
class Fact:
    """A finding about the loss (never a failure); ``value`` is JSON-ready."""

    name: str
    claim: str
    value: Any
    note: str = ""


@dataclasses.dataclass(frozen=True)
class LossCheckReport:
    loss: str
    params: dict  # float hyperparameters and static options the battery ran with
    seed: int
    applicable: bool
    reason: str  # why not applicable ("" if applicable)
    rows: tuple
    facts: tuple
    seconds: float

    @property
    def passed(self) -> bool:
        """No must-pass row failed (not-applicable rows do not fail)."""
        return all(r.passed is not False for r in self.rows)

    def row(self, name: str) -> CheckRow:
        return next(r for r in self.rows if r.name == name)

    def fact(self, name: str) -> Fact:
        return next(f for f in self.facts if f.name == name)


# --------------------------------------------------------------------------- building blocks

def _problem(pi_ref, pi_star=None, reward=None, pairs="uniform"):
    from bandit_lab.core.problems import Problem

    return Problem.create(pi_ref, pi_star=pi_star, reward=reward, pairs=pairs)


def _objective(problem, name, loss_params, data=None):
    from bandit_lab.core.objective import make_objective

    return make_objective(problem, name, loss_params, data=data)


def _stack(trees):
    return jax.tree_util.tree_map(lambda *a: jnp.stack([jnp.asarray(x) for x in a]), *trees)


def _value_fn(obj):
    """``f(θ, hp, consts) -> value`` with the loss's state (if any) built from θ and detached."""
    return lambda th, hp, c: obj.value(th, hp, consts=c)


def _state(obj, th, hp, c):
    return obj.init_state(th, hp, None, c) if obj.stateful else None


def _fmt(x, f=".1e"):
    return "—" if x is None else format(x, f)


def _pol(p) -> str:
    a = np.atleast_2d(np.asarray(p, dtype=float))
    return "; ".join("[" + ", ".join(f"{v:.4f}" for v in row) + "]" for row in a)


def _exc(e: BaseException) -> str:
    return f"{type(e).__name__}: {' '.join(str(e).split())[:160]}"


# --------------------------------------------------------------------------- frozen stop_gradient

class _Unsupported(Exception):
    pass


_CALLS = ("jit", "pjit", "closed_call", "core_call", "remat", "checkpoint", "custom_jvp_call", "custom_vjp_call",
          "custom_vjp_call_jaxpr")


def _subjaxprs(params):
    from jax.extend.core import ClosedJaxpr, Jaxpr

    for v in params.values():
        for j in (v if isinstance(v, (tuple, list)) else (v,)):
            if isinstance(j, (ClosedJaxpr, Jaxpr)):
                yield j


def _has_stop_gradient(jaxpr) -> bool:
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    return any(e.primitive.name == "stop_gradient" or any(_has_stop_gradient(j) for j in _subjaxprs(e.params)) for e in jaxpr.eqns)


class _Tape:
    """The outputs of a jaxpr's ``stop_gradient`` equations, in evaluation order: recorded at one
    point, then replayed (``pos`` walks them) at others."""

    def __init__(self):
        self.values: list = []
        self.replay = False
        self.pos = 0

    def __call__(self, x):
        if not self.replay:
            self.values.append(x)
            return x
        self.pos += 1
        return self.values[self.pos - 1]


def _eval_frozen(closed, args, tape: _Tape):
    """Evaluate a (closed) jaxpr with its ``stop_gradient`` outputs passed through ``tape``.
    Calls (``jit``, ``custom_jvp_call``…) that contain a ``stop_gradient`` are entered; any other
    primitive containing one (a ``scan``, a ``cond``) is refused (:class:`_Unsupported`)."""
    from jax.extend.core import Literal

    jaxpr = getattr(closed, "jaxpr", closed)
    env: dict = dict(zip(jaxpr.constvars, getattr(closed, "consts", [])))
    env.update(zip(jaxpr.invars, args))

    def read(v):
        return v.val if isinstance(v, Literal) else env[v]

    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        if eqn.primitive.name == "stop_gradient":
            outs = [tape(invals[0])]
        elif any(_has_stop_gradient(j) for j in _subjaxprs(eqn.params)):
            if eqn.primitive.name not in _CALLS:
                raise _Unsupported(f"stop_gradient inside a `{eqn.primitive.name}`")
            sub = eqn.params.get("jaxpr") or eqn.params.get("call_jaxpr") or eqn.params.get("fun_jaxpr")
            outs = _eval_frozen(sub, invals, tape)
        else:
            bp = eqn.primitive.get_bind_params(eqn.params)  # jax ≥ 0.8: params; before: (subfuns, params)
            subfuns, bp = bp if isinstance(bp, tuple) else ((), bp)
            with eqn.ctx.manager:
                outs = eqn.primitive.bind(*subfuns, *invals, **bp)
            if not eqn.primitive.multiple_results:
                outs = [outs]
        env.update(zip(eqn.outvars, outs))
    return [read(v) for v in jaxpr.outvars]


def _frozen_evaluator(fn, example_args):
    """``(has_sg, frozen_fn)``: ``frozen_fn(args0, args) = fn(args)`` with every ``stop_gradient``
    output replaced by its value at ``args0`` — the function whose derivative the gradient of a
    detaching loss is. ``has_sg`` False: ``fn`` detaches nothing (``frozen_fn`` is ``fn``)."""
    closed = jax.make_jaxpr(fn)(*example_args)
    if not _has_stop_gradient(closed):
        return False, lambda args0, args: fn(*args)

    def frozen_fn(args0, args):
        tape = _Tape()
        _eval_frozen(closed, jax.tree_util.tree_leaves(args0), tape)
        tape.replay = True
        (out,) = _eval_frozen(closed, jax.tree_util.tree_leaves(args), tape)
        return out

    frozen_fn(example_args, example_args)  # refuse unsupported structures now (_Unsupported)
    return True, frozen_fn


# --------------------------------------------------------------------------- the checks

def _first_point(name, loss_params):
    """The App. B objective and a jitted ``value_and_grad`` at π_ref (the ``evaluates`` row)."""
    pb = _problem(APP_B["pi_ref"], pi_star=APP_B["pi_star"])
    obj = _objective(pb, name, loss_params)
    th = obj.param.init()
    v, g = jax.jit(jax.value_and_grad(_value_fn(obj)))(th, obj.hp, obj.consts())
    return obj, float(v), np.asarray(g)


def _grid_points(name, loss_params, hp, seed):
    """The extreme-input grid: ``(objectives, logits, hps, labels, large)`` per point."""
    rng = np.random.default_rng(seed)
    refs = ([0.4, 0.4, 0.2], [1 - 2 * TINY_REF, TINY_REF, TINY_REF], [TINY_REF, 0.5 - TINY_REF / 2, 0.5 - TINY_REF / 2])
    v = np.array([0.5, 0.0, -0.5])  # margins c·(v_i − v_j): the largest is c, the others c/2
    has_beta = "beta" in hp
    points = []
    for ref in refs:
        for pairs in ("uniform", "reference"):
            pb = _problem(ref, pi_star=APP_B["pi_star"], pairs=pairs)
            # whole-distribution objectives (RLHF) read no pairs: one "data" case for them
            datas = {"population": None} if losses.get(name).kind == "policy" else {"population": None, "sampled": _sampled(pb, rng)}
            for kind, data in datas.items():
                obj = _objective(pb, name, loss_params, data=data)
                for m in MARGINS:
                    # |βΔ| = m through β (log-ratios stay ≤ 40); without β the margin is Δ itself
                    c = min(m, 10.0) if has_beta else min(m, 30.0)
                    beta = (m / c if m > 10 else 1.0) if has_beta else None
                    for sign in ((1.0, -1.0) if m else (1.0,)):
                        th = np.log(np.asarray(ref))[None, :] + sign * c * v[None, :]
                        h = {**hp, **({"beta": beta} if has_beta else {})}
                        lab = f"|βΔ|={m:g} (β={beta:g}, Δ={c:g}), π_ref={ref[0]:.3g}/{ref[1]:.3g}/{ref[2]:.3g}, {pairs} pairs, {kind}" \
                            if has_beta else f"|Δ|={c:g}, π_ref={ref[0]:.3g}/{ref[1]:.3g}/{ref[2]:.3g}, {pairs} pairs, {kind}"
                        points.append((obj, th, h, lab, False))
                # log-ratio margins |Δ| = 1e3 at β = 1 (a fact: see the module docstring)
                for sign in (1.0, -1.0):
                    th = np.log(np.asarray(ref))[None, :] + sign * 1000.0 * v[None, :]
                    h = {**hp, **({"beta": 1.0} if has_beta else {})}
                    points.append((obj, th, h, f"|Δ|=1e3 (β=1), π_ref={ref[0]:.3g}/{ref[1]:.3g}/{ref[2]:.3g}, {pairs} pairs, {kind}", True))
    return points


def _sampled(problem, rng, n_pairs: int = 40):
    """A finite dataset of ``n_pairs`` triples drawn from the population (NumPy: this grid's six
    draws would each cost a dispatch-heavy ``data.sample``); most triples get weight 0."""
    from bandit_lab.core.data import PreferenceData, population

    w = np.asarray(population(problem).weight)
    counts = rng.multinomial(n_pairs, w.ravel() / w.sum()).reshape(w.shape)
    return PreferenceData(jnp.asarray(counts / n_pairs))


def _finite_rows(name, loss_params, hp, seed):
    pts = _grid_points(name, loss_params, hp, seed)
    obj0 = pts[0][0]
    f = jax.jit(jax.vmap(jax.value_and_grad(_value_fn(obj0))))
    Th = jnp.asarray(np.stack([p[1] for p in pts]))
    HP = {k: jnp.asarray([float(p[2][k]) for p in pts]) for k in pts[0][2]}
    C = _stack([p[0].consts() for p in pts])
    vals, grads = f(Th, HP, C)
    vals, grads = np.asarray(vals), np.asarray(grads).reshape(len(pts), -1)
    ok = np.isfinite(vals) & np.all(np.isfinite(grads), -1)
    large = np.array([p[4] for p in pts])
    bad = [i for i in range(len(pts)) if not ok[i] and not large[i]]
    n_main = int((~large).sum())
    first = "" if not bad else f"first: {pts[bad[0]][3]}: value {vals[bad[0]]:.3g}, " \
        f"{int(np.sum(~np.isfinite(grads[bad[0]])))} non-finite gradient entries"
    data = "population data" if losses.get(name).kind == "policy" else "population and sampled data"
    row = CheckRow("finite", f"value and gradient finite at |βΔ| ≤ 1e3, π_ref ≥ 1e-12, {data} ({n_main} points)",
                   float(len(bad)), 0.0, not bad, first)
    bad_l = [i for i in range(len(pts)) if not ok[i] and large[i]]
    fact = Fact("large_margins", "finite at log-ratio margins |Δ| = 1e3 with β = 1 (π_θ(y) ≈ e^-1000)", not bad_l,
                f"|Δ| = 1e3 at β = 1: {len(bad_l)} of {int(large.sum())} points non-finite (first: {pts[bad_l[0]][3]})" if bad_l
                else f"|Δ| = 1e3 at β = 1 (π_θ(y) ≈ e^-1000): finite at all {int(large.sum())} points")
    return row, fact


def _fd_row(name, loss_params, hp, seed):
    from bandit_lab.core.random_problems import random_problem

    rng = np.random.default_rng(seed + 1)
    objs = [_objective(random_problem(rng, k=4, contexts=2), name, loss_params) for _ in range(FD_POINTS)]
    obj0 = objs[0]
    ths = [jnp.asarray(rng.normal(0.0, 1.0, (2, 4))) for _ in objs]
    cs = [o.consts() for o in objs]
    hp = {k: float(v) for k, v in hp.items()}
    states = [_state(obj0, t, hp, c) for t, c in zip(ths, cs)]

    def fn(th, hp_, c, st):
        return obj0.value(th, hp_, consts=c, state=st)

    def _restate(th, c):  # the state rebuilt at the perturbed point (the "unfrozen" comparison)
        return obj0.init_state(th, hp, None, c)

    try:
        frozen, ffn = _frozen_evaluator(fn, (ths[0], hp, cs[0], states[0]))
    except _Unsupported as e:
        return CheckRow("gradient", "gradient = central finite differences of the value (float64)", None, FD_TOL, None,
                        f"not applicable: {e} (the detached values cannot be frozen)"), True
    n = ths[0].size
    E = jnp.asarray(np.eye(n).reshape(n, *ths[0].shape))
    H = jnp.asarray(FD_STEPS)

    @jax.jit
    def one(th, c, st):
        args0 = (th, hp, c, st)
        v, g = jax.value_and_grad(lambda t: fn(t, hp, c, st))(th)
        h = H[:, None] * jnp.maximum(1.0, jnp.abs(th)).reshape(-1)[None]  # [S, n]: step of coordinate i
        d = h[:, :, None, None] * E[None]  # [S, n, X, K]
        gflat = g.reshape(-1)

        def err(f1):
            ev = jax.vmap(jax.vmap(f1))
            fd = (ev(th + d) - ev(th - d)) / (2.0 * h)  # [S, n]
            den = jnp.maximum(jnp.maximum(jnp.linalg.norm(gflat), jnp.linalg.norm(fd, axis=-1)), 1e-8 * (1.0 + jnp.abs(v)))
            return jnp.min(jnp.linalg.norm(fd - gflat[None], axis=-1) / den)

        plain = err(lambda t: fn(t, hp, c, None if st is None else _restate(t, c)))
        return err(lambda t: ffn(args0, (t, hp, c, st))), plain, v

    errs = [one(t, c, s) for t, c, s in zip(ths, cs, states)]
    err = np.array([float(e) for e, _, _ in errs])
    plain = np.array([float(p) for _, p, _ in errs])
    vals = np.array([float(v) for _, _, v in errs])
    note = f"{FD_POINTS} random points (K = 4, 2 contexts), steps {', '.join(f'{h:g}' for h in FD_STEPS)}·max(1, |θ|)"
    detached = bool((frozen or obj0.stateful) and not plain.max() <= FD_TOL)
    if detached:  # the frozen comparison passes or fails on its own; say that training follows a field
        what = " and ".join(w for w, on in (("its stop_gradient values", frozen), ("its per-step state", obj0.stateful)) if on)
        note += f"; with {what} frozen (unfrozen: error {plain.max():.1e}: the gradient is a field, not the derivative of the value)"
    if not np.all(np.isfinite(vals)) or not np.all(np.isfinite(err)):
        return CheckRow("gradient", "gradient = central finite differences of the value (float64)", None, FD_TOL, False,
                        "non-finite value, gradient or differences at a random point; " + note), detached
    return CheckRow("gradient", "gradient = central finite differences of the value (float64, relative error)",
                    float(err.max()), FD_TOL, bool(err.max() <= FD_TOL), note), detached


def _dpo_rlhf_refs(base):
    from bandit_lab.solvers.oracles import rlhf_optimum
    from bandit_lab.solvers.solver import solve_exact

    beta = base.hp.get("beta", 1.0)
    if not beta > 0:  # β = 0 (an on-policy algorithm without KL): neither reference optimum is finite
        return None, None
    pb = base.problem
    rl = rlhf_optimum(pb.pi_ref, pb.reward, beta)
    d = solve_exact(base.with_loss("dpo", {"beta": beta}))
    return (np.atleast_2d(d.policy) if d.converged else None), rl


def _fixed_point(name, loss_params, problem):
    from bandit_lab import fixed_points

    from bandit_lab.core.data import population

    # population pair data even for a whole-distribution loss: DPO's reference optimum reads it
    base = _objective(problem, name, loss_params, data=population(problem))
    dpo_pol, rl = _dpo_rlhf_refs(base)
    return base, fixed_points.solve_one(base, name, dict(loss_params or {}), dpo_pol, rl)


def _fixed_point_fact(row) -> Fact:
    shares = "—" if row.shares_dpo is None else ("yes" if row.shares_dpo else "no")
    value = {"policy": row.policy, "finite": row.finite, "method": row.method, "status": row.status, "residual": row.residual,
             "tv_rlhf": row.tv_rlhf, "tv_dpo": row.tv_dpo, "shares_dpo": row.shares_dpo,
             "closed_form": row.closed_form, "closed_form_note": row.closed_form_note, "tv_closed_form": row.tv_closed_form,
             "verdict": row.verdict}  # bandit_lab.verdict: kind, certificate, limit … (issue 20)
    note = (f"π = {_pol(row.policy)} ({row.method}): {row.status}\n"
            f"TV→RLHF {_fmt(row.tv_rlhf)}, TV→DPO {_fmt(row.tv_dpo)}: shares DPO's fixed point: {shares}\n"
            f"closed form: {row.closed_form_note}" + (f" (TV {_fmt(row.tv_closed_form)})" if row.tv_closed_form is not None else ""))
    return Fact("fixed_point", "exact population optimum on Kong App. B (π*=[0.6,0.3,0.1], π_ref=[0.4,0.4,0.2], uniform pairs), 8 starts",
                value, note)


def _counterpart_row(name, loss_params, spec, static, first_row, first_base, seed) -> CheckRow:
    from bandit_lab import fixed_points
    from bandit_lab.core.random_problems import random_problem

    cp = spec.counterpart(static)
    claim = f"at α = 0 the exact optimum equals the declared counterpart {cp[0]}{_opts(cp[1])}'s (TV, 2 BT bandits)"
    rng = np.random.default_rng(seed + 2)
    pb2 = random_problem(rng, k=4, contexts=2, preference="reward", pairs="uniform")
    tvs, notes = [], []
    for base, row in ((first_base, first_row), _fixed_point(name, loss_params, pb2)):
        crow = fixed_points.solve_one(base, cp[0], dict(cp[1]), None, None)
        if not (row.finite and crow.finite):
            notes.append(f"loss: {row.status}; counterpart: {crow.status}")
            tvs.append(np.inf)
            continue
        tvs.append(float(metrics.tv(np.asarray(row.policy), np.asarray(crow.policy), base.problem.context_weight)))
    tv = max(tvs)
    if not np.isfinite(tv):
        return CheckRow("counterpart", claim, None, COUNTERPART_TOL, False, "no finite optimum to compare: " + "; ".join(notes))
    return CheckRow("counterpart", claim, tv, COUNTERPART_TOL, bool(tv <= COUNTERPART_TOL),
                    "Kong App. B bandit and a random BT bandit (K = 4, 2 contexts); TV " + ", ".join(f"{t:.1e}" for t in tvs))


def _opts(static: dict) -> str:
    return "[" + ",".join(f"{k}={v}" for k, v in static.items()) + "]" if static else ""


def _convexity_fact(name, loss_params, hp, seed) -> Fact:
    from bandit_lab.core.random_problems import random_problem

    rng = np.random.default_rng(seed + 3)
    objs = [_objective(random_problem(rng, k=3, contexts=1), name, loss_params) for _ in range(CONVEX_BANDITS)]
    obj0 = objs[0]
    hp = {k: float(v) for k, v in hp.items()}
    f = _value_fn(obj0)
    pts, cidx = [], []
    for i, o in enumerate(objs):
        base = np.log(o.problem.pi_ref)
        for s in (0.1, 1.0, 3.0)[:CONVEX_POINTS]:
            pts.append(base + rng.normal(0.0, s, base.shape))
            cidx.append(i)
    Th = jnp.asarray(np.stack(pts))
    C = _stack([objs[i].consts() for i in cidx])
    H = jax.jit(jax.vmap(jax.hessian(lambda t, c: f(t, hp, c))))(Th, C)
    n = Th[0].size
    H = np.asarray(H).reshape(len(pts), n, n)
    lam, vec = np.linalg.eigh(0.5 * (H + np.swapaxes(H, -1, -2)))
    # candidates: ±t·v along the lowest eigenvector and two random unit directions
    dirs = [vec[:, :, 0]] + [d / np.linalg.norm(d, axis=-1, keepdims=True) for d in (rng.normal(size=(len(pts), n)) for _ in range(2))]
    A, B, M, CI = [], [], [], []
    for d in dirs:
        for t in CONVEX_T:
            step = (t * d).reshape(Th.shape)
            A.append(np.asarray(Th) - step)
            B.append(np.asarray(Th) + step)
            M.append(np.asarray(Th))
            CI.append(np.arange(len(pts)))
    A, B, M = (np.concatenate(x) for x in (A, B, M))
    CI = np.concatenate(CI)
    Cb = jax.tree_util.tree_map(lambda a: a[CI], C)
    val = jax.jit(jax.vmap(lambda t, c: f(t, hp, c)))
    fa, fb, fm = (np.asarray(val(jnp.asarray(x), Cb)) for x in (A, B, M))
    gap = fm - 0.5 * (fa + fb)
    thr = CONVEX_TOL * (1.0 + np.abs(fa) + np.abs(fb))
    finite = np.isfinite(gap)
    viol = np.where(finite & (gap > thr), gap / thr, 0.0)
    n_tests = int(finite.sum())
    lam_min = float(lam[:, 0].min())
    claim = f"convex in the softmax logits (midpoint tests on {CONVEX_BANDITS} random K = 3 bandits)"
    value = {"convex": True, "tests": n_tests, "min_hessian_eigenvalue": lam_min, "counterexample": None}
    if not viol.any():
        return Fact("convexity", claim, value,
                    f"convex: no violation in {n_tests} midpoint tests; smallest Hessian eigenvalue {lam_min:.1e}")
    k = int(np.argmax(viol))
    o = objs[cidx[k % len(pts)]]
    # re-evaluate the counterexample outside the batch (un-jitted, one point at a time)
    fa1, fb1, fm1 = (float(o.value(jnp.asarray(x), hp)) for x in (A[k], B[k], M[k]))
    g1 = fm1 - 0.5 * (fa1 + fb1)
    verified = bool(g1 > CONVEX_TOL * (1.0 + abs(fa1) + abs(fb1)))
    value["convex"] = False if verified else None
    value["counterexample"] = {"pi_ref": o.problem.pi_ref.tolist(), "weight": np.asarray(o.data.weight).tolist(), "hp": hp,
                               "theta_a": A[k].tolist(), "theta_b": B[k].tolist(), "f_a": fa1, "f_b": fb1, "f_mid": fm1,
                               "gap": g1, "verified": verified}
    n_viol = int((viol > 0).sum())
    return Fact("convexity", claim, value,
                (f"NOT convex: {n_viol} of {n_tests} midpoint tests violated; " if verified else f"undecided: {n_viol} batch violations not reproduced; ")
                + f"counterexample f(mid) − (f(a)+f(b))/2 = {g1:.2e}; smallest Hessian eigenvalue {lam_min:.1e}")


def _constraint_facts(base) -> list[Fact]:
    """TV(loss, counterpart) under weight decay α and early stopping, trained and exact: one
    :func:`bandit_lab.runner.train_and_solve` call (one compiled sweep, one batched exact solve)."""
    from bandit_lab.runner import train_and_solve
    from bandit_lab.core.train import TrainConfig

    cp = base.counterpart()
    objs = [base, cp]
    config = TrainConfig(steps=STEPS, schedule="exponential", log_steps=(0,) + EARLY_STEPS)
    hps = [[{**o.hp, "weight_decay": a, "lr": LR} for a in ALPHAS] for o in objs]
    trajs, exact = train_and_solve(objs, config, hps)
    w = base.problem.context_weight
    wd = []
    for j, a in enumerate(ALPHAS):
        p, q = trajs[0].policy[j], trajs[1].policy[j]
        ep, eq = exact[0][j].policy, exact[1][j].policy
        wd.append({"alpha": a, "tv_trained": float(metrics.tv(p, q, w)), "tv_exact": float(metrics.tv(ep, eq, w)),
                   "adam_gap": float(max(metrics.tv(p, ep, w), metrics.tv(q, eq, w))),
                   "exact_residual": float(max(exact[0][j].residual, exact[1][j].residual))})
    steps = [int(s) for s in np.asarray(trajs[0].steps[0])]
    es = [{"step": s, "tv_trained": float(metrics.tv(trajs[0].policies[0, i], trajs[1].policies[0, i], w))}
          for i, s in enumerate(steps) if s > 0]
    label = f"{cp.loss.name}{_opts(cp.static)}"
    return [
        Fact("weight_decay", f"TV(loss, {label}) under α‖θ‖² on App. B, trained (Adam {STEPS} steps) and exact", wd,
             "α " + " / ".join(f"{r['alpha']:g}" for r in wd) + ": exact " + " / ".join(f"{r['tv_exact']:.1e}" for r in wd)
             + "; trained " + " / ".join(f"{r['tv_trained']:.1e}" for r in wd)
             + f"; |Adam − exact| ≤ {max(r['adam_gap'] for r in wd):.0e}"),
        Fact("early_stopping", f"TV(loss, {label}) after t Adam steps from π_ref at α = 0 (same runs)", es,
             "t " + " / ".join(str(r["step"]) for r in es) + ": " + " / ".join(f"{r['tv_trained']:.1e}" for r in es)),
    ]


def estimate(name: str) -> budget.Cost:
    """Rough cost of the battery (the weight-decay sweep and the exact solves dominate)."""
    spec = losses.get(name)
    K = 4
    pts = 3 * 2 * 2 * (2 * len(MARGINS) + 1)
    c = budget.problem(2, K) + budget.array(pts * K, "the extreme-input grid")
    c = c | budget.newton(params=2 * K, responses=K, contexts=2, points=4 * 8)
    if spec.counterpart is not None:
        c = c | budget.training(steps=STEPS, responses=3, runs=2 * len(ALPHAS), logged=len(EARLY_STEPS) + 1)
    return c


def check_loss(name: str, loss_params: dict | None = None, *, seed: int = 0, constraints: bool = True) -> LossCheckReport:
    """Run the battery (module docstring) on a registered loss at ``loss_params`` (float
    hyperparameters and static options, as in a spec's ``loss_params``). Raises
    :class:`~bandit_lab.errors.BanditError` for an unknown loss or a bad parameter;
    ``constraints=False`` skips the weight-decay/early-stopping facts (the slowest part).

    >>> import bandit_lab as bl
    >>> rep = bl.check_loss("ipo", constraints=False)
    >>> rep.passed, [r.name for r in rep.rows]
    (True, ['evaluates', 'finite', 'gradient', 'counterpart'])
    """
    t0 = time.perf_counter()
    from bandit_lab.infra import bounds

    if isinstance(seed, bool) or not isinstance(seed, int) or bounds.SEED.error(seed):
        raise BanditError(f"seed: an integer in [0, 2^32 − 1]; got {seed!r}")
    spec = losses.get(name)
    if loss_params is not None and not isinstance(loss_params, dict):
        raise BanditError(f"loss_params: a dict of {spec.name!r}'s parameters; got {type(loss_params).__name__}")
    loss_params = dict(loss_params or {})
    hp0, static = losses.split_params(spec, loss_params)
    budget.check(estimate(name), f"`bandit-lab check-loss {name}`")
    shown = {**hp0, **{k: (list(v) if isinstance(v, tuple) else v) for k, v in static.items()}}

    def done(applicable, reason, rows, facts):
        return LossCheckReport(name, shown, int(seed), applicable, reason, tuple(rows), tuple(facts), time.perf_counter() - t0)

    with precision.x64(True):
        try:
            obj, v0, g0 = _first_point(name, loss_params)
        except BanditError as e:
            return done(False, str(e), [], [])
        except Exception as e:  # a user loss that does not trace or raises: its failure, reported
            row = CheckRow("evaluates", "value and gradient evaluate under jit at π_ref (Kong App. B)", None, None, False, _exc(e))
            return done(True, "", [row], [])
        rows = [CheckRow("evaluates", "value and gradient evaluate under jit at π_ref (Kong App. B)", v0, None, True,
                         f"value {v0:.6g}, ‖∇‖ = {np.linalg.norm(g0):.3g}")]
        hp = dict(obj.hp)
        finite_row, large = _finite_rows(name, loss_params, hp, seed)
        fd_row, detached = _fd_row(name, loss_params, hp, seed)
        rows += [finite_row, fd_row]
        if finite_row.passed is False and not (np.isfinite(v0) and np.all(np.isfinite(g0))):
            # non-finite at π_ref itself (e.g. a NaN loss): no optimum to look for; the `finite` row fails
            rows.append(CheckRow("counterpart", "at α = 0 the exact optimum equals the declared RLHF counterpart's", None,
                                 COUNTERPART_TOL, None, "not run: the loss is not finite at π_ref (see `finite`)"))
            return done(True, "", rows, [large])
        facts = []
        base, fp = _fixed_point(name, loss_params, obj.problem)
        facts.append(_fixed_point_fact(fp))
        if spec.counterpart is None:
            rows.append(CheckRow("counterpart", "at α = 0 the exact optimum equals the declared RLHF counterpart's", None,
                                 COUNTERPART_TOL, None, "not applicable: the loss declares no counterpart (LossSpec.counterpart)"))
        else:
            rows.append(_counterpart_row(name, loss_params, spec, static, fp, base, seed))
        facts.append(large)
        if obj.stateful:
            facts.append(Fact("convexity", "convex in the softmax logits", None,
                              "not applicable: a per-step state (on-policy samples, a moving reference) makes the update a field, not the gradient of one function"))
        else:
            cv = _convexity_fact(name, loss_params, hp, seed)
            if detached:  # the value's convexity; training follows the detached gradient
                cv = dataclasses.replace(cv, note=cv.note + " (of the value; training follows its detached gradient, a field)")
            facts.append(cv)
        if spec.counterpart is not None and constraints:
            facts += _constraint_facts(base)
    return done(True, "", rows, facts)


# --------------------------------------------------------------------------- output

def to_json(rep: LossCheckReport) -> dict:
    """A JSON-ready dict with the report's fields (non-finite numbers become ``null``)."""
    from bandit_lab.runner import jsonable

    d = dataclasses.asdict(rep)
    d["passed"] = rep.passed
    return jsonable(d)


def report(rep: LossCheckReport) -> str:
    """One page: the must-pass rows, then the facts."""
    spec = losses.get(rep.loss)
    shown = {k: v for k, v in rep.params.items() if k not in spec.static or spec.static[k] != v}
    head = f"check-loss {rep.loss}{_opts(shown)}  seed {rep.seed}  ({rep.seconds:.1f} s)"
    if not rep.applicable:
        return head + f"\nnot applicable: {rep.reason}"
    lines = [head, "", f"{'must pass':<13}{'value':>10}  {'tolerance':<11}{'result':<7} claim"]
    for r in rep.rows:
        res = "n/a" if r.passed is None else ("PASS" if r.passed else "FAIL")
        val = "—" if r.value is None else (f"{r.value:.0f}" if r.name == "finite" else f"{r.value:.2e}" if r.name != "evaluates" else f"{r.value:.4g}")
        tol = "" if r.tolerance is None else ("= 0" if r.name == "finite" else f"≤ {r.tolerance:.0e}")
        lines.append(f"{r.name:<13}{val:>10}  {tol:<11}{res:<7} {r.claim}")
        if r.note:
            lines.append(f"{'':<13}{'':>10}  {'':<11}{'':<7} {r.note}")
    lines += ["", "facts"]
    for f in rep.facts:
        first, *more = f.note.split("\n")
        lines += [f"{f.name:<15}{first}"] + [f"{'':<15}{m}" for m in more]
    n_fail = sum(r.passed is False for r in rep.rows)
    n_na = sum(r.passed is None for r in rep.rows)
    lines += ["", ("PASS" if rep.passed else "FAIL") + f": {len(rep.rows) - n_fail - n_na} passed, {n_fail} failed, {n_na} not applicable"]
    return "\n".join(lines)
