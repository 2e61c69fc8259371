"""The one-dimensional DPO loss of Kong et al. §5.2 (Eq. 20), with and without weight decay.

Two responses ``{y_a, y_b}``, ``p*(y_a ≻ y_b) = 1``, ``π_θ = [θ, 1 − θ]`` with ``θ ∈ [0, 1]``,
``λ = β = ½`` and ``c = π_ref(y_b)/π_ref(y_a)``. Eq. 20 (the reduction of Eq. 17):

    ℓ(θ) = log(√c + √((1 − θ)/θ)),          L(θ) = ℓ(θ) + α θ²   (Table 1: α = 1, App. B.2)

``ℓ`` equals the DPO loss of Eq. 6 (``−log σ(β(h_w − h_l))``, β = ½) plus ``log √c``: the two
differ by a θ-independent constant, so gradients and trajectories are identical (the tests
check this against the core ``dpo`` loss on the ``Mixture`` parameterization).

Closed forms used throughout (``s = √c``, ``D(θ) = s θ^{3/2}(1−θ)^{1/2} + θ(1−θ)``):

    L'(θ)  = −1/(2 D(θ)) + 2αθ
    L''(θ) = D'(θ)/(2 D(θ)²) + 2α,   D'(θ) = s(3/2 θ^{1/2}(1−θ)^{1/2} − ½ θ^{3/2}(1−θ)^{−1/2}) + 1 − 2θ

``D(θ) → 0`` at both ends, so ``L' → −∞`` as ``θ → 0⁺`` and as ``θ → 1⁻``: θ = 1 is always a
local minimiser on ``[0, 1]`` (the thresholding of §5.2), θ = 0 never is (``L(0⁺) = +∞``).
Interior stationary points solve ``L' = 0`` ⇔ ``s = s(θ) := (1/(4αθ) − θ(1−θ)) / (θ^{3/2}(1−θ)^{1/2})``;
an interior minimum exists iff ``√c ≥ min_θ s(θ)``, which gives the critical ratio ``c*`` exactly
(the ratio at which the interior minimum and maximum merge, ``L' = L'' = 0``).

Why not the core trainer on ``params.Mixture``: the Mixture policy floors ``log π`` at 1e-300,
so at θ = 1 its DPO gradient is 0 and only the weight-decay gradient ``+2α`` remains — projected
GD then bounces between 1 and ``1 − 2α·lr``. Here the exact one-sided derivative ``L'(1) = −∞``
keeps θ = 1 fixed (autodiff of ``loss`` gives NaN there, 0·∞ in the chain rule of √·, hence the
closed form), with the same optax chain (``train.make_optimizer``: sgd, constant schedule,
``train.project_params`` onto ``[0, 1]`` as last link), scanned and vmapped over ratios.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from scipy import optimize

from bandit_lab.errors import BanditError
from bandit_lab.core.train import TrainConfig, make_optimizer

PAPER_RATIOS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)
PAPER_THETA = (1.00, 1.00, 0.77, 0.56, 0.50, 0.39, 0.34)  # Kong et al. Table 1


def check_ratio(c) -> None:
    c = np.asarray(c, dtype=float)
    if not np.all(np.isfinite(c)) or np.any(c <= 0):
        raise BanditError(f"π_ref ratio c must be finite and > 0; got {c.tolist()}")


def loss(theta, c, alpha=0.0, xp=jnp):
    """Kong et al. Eq. 20 plus ``α θ²``; ``+∞`` at θ = 0, ``log √c + α`` at θ = 1."""
    return xp.log(xp.sqrt(c) + xp.sqrt((1.0 - theta) / theta)) + alpha * theta**2


def dpo_form(theta, c, xp=jnp):
    """The same loss in the DPO form of Eq. 6 (β = ½): ``log(1 + √((1−θ)/θ)/√c) = ℓ(θ) − log √c``
    (positive; ``log 2`` at the init ``(1−θ)/θ = c``)."""
    return xp.log1p(xp.sqrt((1.0 - theta) / theta / c))


def _D(theta, c, xp):
    s = xp.sqrt(c)
    return s * theta**1.5 * xp.sqrt(1.0 - theta) + theta * (1.0 - theta)


def dloss(theta, c, alpha=0.0, xp=jnp):
    """``L'(θ) = −1/(2D(θ)) + 2αθ`` (closed form; ``−∞`` at θ ∈ {0, 1}, never NaN)."""
    return -0.5 / _D(theta, c, xp) + 2.0 * alpha * theta


def d2loss(theta, c, alpha=0.0, xp=np):
    """``L''(θ)`` on the open interval (0, 1)."""
    s = xp.sqrt(c)
    r = xp.sqrt(1.0 - theta)
    dD = s * (1.5 * xp.sqrt(theta) * r - 0.5 * theta**1.5 / r) + 1.0 - 2.0 * theta
    D = _D(theta, c, xp)
    return dD / (2.0 * D**2) + 2.0 * alpha


def s_of_theta(theta, alpha):
    """The √c for which θ is stationary (``L'(θ) = 0``), for α > 0."""
    return (0.25 / (alpha * theta) - theta * (1.0 - theta)) / (theta**1.5 * np.sqrt(1.0 - theta))


def critical_ratio(alpha: float = 1.0) -> tuple[float, float]:
    """``(c*, θ*)``: below ``c*`` no interior stationary point exists (L' < 0 on (0, 1), so every
    descent ends at θ = 1); at ``c*`` the interior minimum and maximum merge at ``θ*``
    (``L' = L'' = 0``). Exact: ``√c* = min_θ s(θ)``, minimised by Brent on ``s'`` = 0."""
    if not alpha > 0:
        raise BanditError("the critical ratio needs weight decay α > 0 (with α = 0, L' < 0 everywhere)")
    res = optimize.minimize_scalar(lambda t: s_of_theta(t, alpha), bounds=(1e-9, 1 - 1e-12), method="bounded",
                                   options={"xatol": 1e-14, "maxiter": 500})
    # polish: s'(θ) = 0 by brentq on a central-difference-free bracket around the minimiser
    t0 = float(res.x)
    ds = lambda t: (s_of_theta(t + 1e-7, alpha) - s_of_theta(t - 1e-7, alpha)) / 2e-7  # noqa: E731
    try:
        t0 = optimize.brentq(ds, max(t0 - 1e-3, 1e-6), min(t0 + 1e-3, 1 - 1e-6), xtol=1e-15)
    except ValueError:
        pass
    s = float(s_of_theta(t0, alpha))
    if s <= 0:
        return 0.0, t0
    return s * s, t0


def stationary_points(c: float, alpha: float = 1.0, n_grid: int = 200_001) -> list[dict]:
    """Every stationary point of ``L`` on (0, 1), with its type.

    Sign changes of ``L'`` on a fine grid (uniform in the logit of θ, so both ends are resolved)
    refined by ``brentq``: − → + is a minimum, + → − a maximum. A tangency (``L'`` touching 0
    without changing sign, only at ``c = c*``) is found as a root of ``L''`` where ``|L'|`` is
    tiny, and reported as an ``inflection`` (a degenerate saddle of the 1-D landscape).
    """
    check_ratio(c)
    z = np.linspace(-30.0, 30.0, n_grid)
    t = 1.0 / (1.0 + np.exp(-z))
    t = t[(t > 0) & (t < 1)]
    f = lambda x: float(dloss(x, c, alpha, np))  # noqa: E731
    g = dloss(t, c, alpha, np)
    out = []
    sg = np.sign(g)
    for i in np.nonzero(sg[:-1] * sg[1:] < 0)[0]:
        r = optimize.brentq(f, t[i], t[i + 1], xtol=1e-15)
        kind = "min" if sg[i] < 0 else "max"
        out.append({"theta": r, "type": kind, "value": float(loss(r, c, alpha, np)), "curvature": float(d2loss(r, c, alpha))})
    # tangency: L'' changes sign where |L'| ≈ 0 and L' does not change sign nearby
    h = d2loss(t, c, alpha)
    for i in np.nonzero(np.sign(h[:-1]) * np.sign(h[1:]) < 0)[0]:
        r = optimize.brentq(lambda x: float(d2loss(x, c, alpha)), t[i], t[i + 1], xtol=1e-15)
        if abs(f(r)) < 1e-9 and not any(abs(p["theta"] - r) < 1e-6 for p in out):
            out.append({"theta": r, "type": "inflection", "value": float(loss(r, c, alpha, np)), "curvature": 0.0})
    return sorted(out, key=lambda p: p["theta"])


def global_min(c: float, alpha: float = 1.0, points: list[dict] | None = None) -> dict:
    """Global minimiser of ``L`` on [0, 1]: the best interior minimum or the boundary θ = 1
    (``L(1) = log √c + α``; θ = 0 has ``L = +∞``)."""
    points = stationary_points(c, alpha) if points is None else points
    best = {"theta": 1.0, "value": float(np.log(np.sqrt(c)) + alpha), "where": "boundary θ = 1"}
    for p in points:
        if p["type"] == "min" and p["value"] < best["value"]:
            best = {"theta": p["theta"], "value": p["value"], "where": "interior minimum"}
    return best


def init_theta(c, how: str = "ratio"):
    """θ₀ with ``(1 − θ₀)/θ₀ = c`` (``ratio``: the paper's text, θ₀ = π_ref(y_a)) or, as a
    diagnostic, ``θ₀/(1 − θ₀) = c`` (``mirrored``: θ₀ = π_ref(y_b)), or a number in (0, 1]."""
    c = np.asarray(c, dtype=float)
    if how == "ratio":
        return 1.0 / (1.0 + c)
    if how == "mirrored":
        return c / (1.0 + c)
    try:
        v = float(how)
    except (TypeError, ValueError):
        raise BanditError(f"init must be 'ratio', 'mirrored' or a number in (0, 1]; got {how!r}") from None
    if not (0 < v <= 1):
        raise BanditError(f"init θ₀ must lie in (0, 1]; got {v}")
    return np.full_like(c, v)


def _clip01(t):
    return jnp.clip(t, 0.0, 1.0)


def global_switch_ratio(alpha: float = 1.0) -> float:
    """The ratio ``c_g`` above which an interior minimum beats the boundary θ = 1 (``L`` equal at
    both), by ``brentq`` on ``c ∈ (c*, 10⁴)``; between ``c*`` and ``c_g`` descent from inside the
    basin stops at a *local* minimum while the global minimiser is θ = 1."""
    c_star, t_star = critical_ratio(alpha)

    def gap(c):
        # for c > c*, the interior minimum is the unique root of L' on (0, θ*): L'(0⁺) = −∞, L'(θ*) > 0
        t = optimize.brentq(lambda x: float(dloss(x, c, alpha, np)), 1e-12, t_star, xtol=1e-15)
        return float(loss(t, c, alpha, np)) - (np.log(np.sqrt(c)) + alpha)

    # α > 27/16: s(θ) < 0 somewhere (4αθ²(1−θ) > 1), an interior minimum exists for every c > 0
    lo = c_star * (1 + 1e-6) if c_star > 0 else 1e-300
    return float(optimize.brentq(gap, lo, 1e4, xtol=1e-13))


def pgd(ratios, theta0, lr, steps: int, alpha: float = 1.0):
    """Projected gradient descent on ``L`` (constant step ``lr``), every ratio at once.

    One ``jit(vmap(lax.scan))``; the optax chain is the core one (``train.make_optimizer`` with
    sgd, constant schedule and ``project_params`` onto [0, 1]). The gradient is the closed-form
    ``L'`` (``−∞`` at θ = 1: the step lands at ``+∞`` and the projection puts it back on 1).
    ``lr`` is a number or one step size per ratio (a sweep over step sizes is the same call).
    Returns ``(θ_final [R], trajectory [R, steps + 1])`` as numpy.
    """
    ratios = np.asarray(ratios, dtype=float)
    check_ratio(ratios)
    lrs = np.broadcast_to(np.asarray(lr, dtype=float), ratios.shape)
    if not np.all(lrs > 0):
        raise BanditError("step size lr must be > 0")
    config = TrainConfig(optimizer="sgd", schedule="constant", steps=int(steps)).validate()

    def run(c, t0, lr_):
        opt = make_optimizer(config, lr_, _clip01)
        state0 = opt.init(t0)

        def step(carry, _):
            t, st = carry
            upd, st = opt.update(dloss(t, c, alpha), st, t)
            t = t + upd
            return (t, st), t

        (t, _), traj = jax.lax.scan(step, (t0, state0), None, length=int(steps))
        return t, jnp.concatenate([t0[None], traj])

    t, traj = jax.jit(jax.vmap(run))(jnp.asarray(ratios), jnp.asarray(np.broadcast_to(theta0, ratios.shape), dtype=float),
                                         jnp.asarray(lrs))
    return np.asarray(t), np.asarray(traj)


def one_step(ratios, lr: float, theta0=None):
    """One projected gradient step on Eq. 20 (no weight decay, App. B.2) from
    ``(1 − θ₀)/θ₀ = c``. Returns ``(θ₀, θ₁, ℓ(θ₀), ℓ(θ₁), ℓ_DPO(θ₀), ℓ_DPO(θ₁))`` as numpy, with
    ``ℓ`` Eq. 20 as printed and ``ℓ_DPO`` the Eq. 6 form (they differ by ``log √c``)."""
    ratios = np.asarray(ratios, dtype=float)
    check_ratio(ratios)
    t0 = init_theta(ratios) if theta0 is None else np.broadcast_to(np.asarray(theta0, float), ratios.shape)
    t1, _ = pgd(ratios, t0, lr, 1, alpha=0.0)
    return t0, t1, loss(t0, ratios, 0.0, np), loss(t1, ratios, 0.0, np), dpo_form(t0, ratios, np), dpo_form(t1, ratios, np)
