"""Soft Preference Optimization (Sharifnassab et al., "Soft Preference Optimization: Aligning
Language Models to Expert Distributions"; ``papers/spo-soft-preference-optimization.txt``).

The model's own preference between two responses is ``P_π(y1 ≻ y2) = π(y1)/(π(y1)+π(y2))``
(SPO Eq. 6). Raising the probabilities to a power α gives the preference loss (Eq. 8)

    L_pref^α(π) = −(1/α) E_D[ log( π_w^α / (π_w^α + π_l^α) ) ] = −(1/α) E_D[ log σ(α(log π_w − log π_l)) ],

computed with ``log_sigmoid`` on the log-probability difference (never a ratio of powers), and
its α = 0 limit (Eq. 9) ``L_pref^0 = −½ E_D[log π_w − log π_l]``. Note ``L_pref^α = log 2/α +
L_pref^0 + O(α)``: the *gradient* is continuous at α = 0, the value is not (a θ-independent
constant diverges), which is why α = 0 is its own formula. One loss serves both: ``hp["alpha"]``
may be traced and swept; ``alpha == 0`` selects Eq. 9 with a ``where`` (the Eq. 8 branch is then
evaluated at a safe α = 1 and discarded, so no NaN reaches the gradient).

Weighted SPO (Eq. 10–11): each triple carries a symmetric positive weight μ(y_w, y_l), and
*no gradient flows through μ* (Eq. 12), even when μ depends on π — it is computed from
``jax.lax.stop_gradient(log π)``. Weightings (static option ``weight``):

- ``uniform``: μ = 1 (Eq. 8 itself);
- ``reference``: μ = π_ref(y_w) + π_ref(y_l) (a fixed, π-independent symmetric weight);
- ``power``: μ = (π(y_w) + π(y_l))^γ, the example of SPO §4;
- ``soft_importance``: μ = σ(γ log(π(y_w)+π(y_l)) − normaliser), SPO App. B Eq. 24, with the
  normaliser the *batch* average of ``γ log(π(y_w)+π(y_l))``. bandit-lab trains full-batch, so
  the batch is the whole dataset: the normaliser is the data-weighted mean
  ``Σ_{x,w,l} D(x,w,l)·γ log(π_w+π_l)`` — on population data the exact expectation over the
  pair law (the infinite-batch limit), on a sampled dataset its empirical mean. It is part of μ,
  so it is also detached.

The full SPO loss (Eq. 5 with the KL regulariser of §3) is ``L_pref^{α,μ} + β·KL(π‖π_ref)`` with
the KL over the *whole* output distribution (not only over the responses in the data), exact in
the tabular case: ``Σ_x ρ(x) Σ_y π log(π/π_ref)``. The sampled, intermittently refreshed
estimator of App. B is available for training through :func:`make_train_sampled_kl` (see there).

Theorem 1 (BT, full-support data): softmax(r/α) is the unique minimiser of L_pref^α and its only
stationary point; Theorem 2: along π̇ = Π_simplex(−∇_π L^{α,μ}) the Euclidean distance to
softmax(r/α) decreases strictly for every symmetric positive μ. Checked in
:mod:`bandit_lab.checks.spo`. Note that with β > 0 the full SPO optimum is *not* softmax(r/α):
the KL term moves it towards π_ref (``bandit-lab run spo-softness`` measures by how much).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from bandit_lab.errors import BanditError
from bandit_lab.solvers.oracles import softmax_np
from bandit_lab.losses import LossInputs, LossSpec, expect, pair_grid, register

WEIGHTS = ("uniform", "reference", "power", "soft_importance")


def pref_per_triple(logp: jax.Array, alpha) -> jax.Array:
    """Per-triple SPO preference loss on the grid ``[X, y_w, y_l]``: Eq. 8 for α > 0, Eq. 9 for α = 0.

    ``−(1/α) log σ(α (log π_w − log π_l))``; at α = 0, ``−½ (log π_w − log π_l)``.
    """
    lw, ll = pair_grid(logp)
    d = lw - ll
    pos = alpha > 0
    a = jnp.where(pos, alpha, 1.0)
    return jnp.where(pos, -jax.nn.log_sigmoid(a * d) / a, -0.5 * d)


def weights(inputs: LossInputs, hp: dict, weight: str) -> jax.Array:
    """The symmetric positive weight μ(y_w, y_l) on the triple grid, detached (SPO Eq. 12)."""
    if weight not in WEIGHTS:
        raise BanditError(f"SPO weight must be one of {', '.join(WEIGHTS)}; got {weight!r}")
    lp = jax.lax.stop_gradient(inputs.logp)
    if weight == "uniform":
        return jnp.ones(lp.shape + lp.shape[-1:])
    if weight == "reference":
        rw, rl = pair_grid(jnp.exp(inputs.logp_ref))
        return rw + rl
    lw, ll = pair_grid(lp)
    log_mass = jnp.logaddexp(lw, ll)  # log(π_w + π_l), stable
    g = hp.get("gamma", 0.5)
    if weight == "power":
        return jnp.exp(g * log_mass)
    s = g * log_mass
    normaliser = expect(inputs.data, s)  # batch (= whole dataset) average, data-weighted
    return jax.lax.stop_gradient(jax.nn.sigmoid(s - normaliser))


def spo_pref(inputs: LossInputs, hp: dict, *, weight: str = "uniform") -> jax.Array:
    """Weighted SPO preference loss ``L_pref^{α,μ}`` (SPO Eq. 10, α > 0; Eq. 11, α = 0; with
    μ = 1 these are Eq. 8 and Eq. 9). μ carries no gradient (Eq. 12)."""
    mu = weights(inputs, hp, weight)
    return expect(inputs.data, mu * pref_per_triple(inputs.logp, hp["alpha"]))


def exact_kl(inputs: LossInputs) -> jax.Array:
    """``Σ_x ρ(x) Σ_y π(y|x) (log π − log π_ref)`` over the whole output distribution (0·log 0 = 0)."""
    p = jnp.exp(inputs.logp)
    per_x = jnp.sum(jnp.where(p > 0, p * (inputs.logp - inputs.logp_ref), 0.0), -1)
    cw = inputs.context_weight
    return jnp.sum(per_x * (1.0 / per_x.shape[0] if cw is None else cw))


def sampled_kl(inputs: LossInputs, logq: jax.Array, freq: jax.Array) -> jax.Array:
    """App. B estimator of KL(π‖π_ref) from responses drawn from an *earlier* policy q (kept
    between refreshes): ``Σ_x ρ(x) Σ_y f̂_q(y|x) · (π/q)(y) · log(π/π_ref)(y)``, where ``f̂_q`` are
    the sample frequencies per context. Importance-weighted by the detached ratio's denominator
    q, it is unbiased for the KL at the *current* π and so is its gradient (a plain
    ``mean log(π/π_ref)`` over stale samples would have zero expected gradient). For single-token
    responses the paper's token-wise KL equals the exact per-context KL, so the sampling noise
    here is what the sequence-level estimate adds."""
    lq = jax.lax.stop_gradient(logq)
    ratio = jnp.exp(inputs.logp - lq)
    live = freq > 0
    per_x = jnp.sum(jnp.where(live, freq * ratio * (inputs.logp - inputs.logp_ref), 0.0), -1)
    cw = inputs.context_weight
    return jnp.sum(per_x * (1.0 / per_x.shape[0] if cw is None else cw))


def spo(inputs: LossInputs, hp: dict, *, weight: str = "uniform") -> jax.Array:
    """Full SPO loss ``L_pref^{α,μ}(π) + β·KL(π‖π_ref)`` (SPO Eq. 5 with Eq. 10–11 and the KL
    regulariser of §3), KL over the whole output distribution, exact. If ``hp`` carries a stale
    sample (``kl_logq``, ``kl_freq``, set by :func:`make_train_sampled_kl`) the App. B estimator
    :func:`sampled_kl` replaces the exact KL."""
    pref = spo_pref(inputs, hp, weight=weight)
    if "kl_logq" in hp:
        kl = sampled_kl(inputs, hp["kl_logq"], hp["kl_freq"])
    else:
        kl = exact_kl(inputs)
    return pref + hp["beta"] * kl


def softmax_r_over_alpha(reward: np.ndarray, alpha: float) -> np.ndarray:
    """SPO Thm 1's minimiser ``softmax(r/α)`` (the argmax vertex, ties shared, at α = 0)."""
    r = np.atleast_2d(np.asarray(reward, dtype=np.float64))
    if alpha <= 0:
        top = (r >= r.max(-1, keepdims=True) - 1e-12).astype(float)
        return top / top.sum(-1, keepdims=True)
    return softmax_np(r / alpha)


# --------------------------------------------------------------------------- App. B trainer

def make_train_sampled_kl(objective, config, *, refresh_every: int = 8, n_samples: int = 32, init=None):
    """``train(hp) -> Trajectory`` for the SPO loss with the sampled KL of SPO App. B: every
    ``refresh_every`` steps, ``n_samples`` responses per context are drawn from the *current* π
    and reused until the next refresh, through :func:`sampled_kl`. This is the core
    :func:`bandit_lab.core.train.make_train` with a ``refresh`` hook (same optax chain, same scan);
    keys derive from ``hp["seed"]`` and the step. The paper used 32 samples every 8 steps.
    The recorded final loss uses the last sample (the estimator's value, not the exact KL)."""
    from bandit_lab.core.train import make_train

    if objective.loss.name != "spo":
        raise BanditError("the sampled App. B KL applies to the 'spo' loss only")
    if int(refresh_every) < 1 or int(n_samples) < 1:
        raise BanditError("refresh_every and n_samples must be ≥ 1")
    param = objective.param
    n = int(n_samples)

    def draw(params, key):
        lp = param.log_probs(params)
        y = jax.random.categorical(key, lp, axis=-1, shape=(n,) + lp.shape[:-1])  # [n, X]
        return {"kl_logq": jax.lax.stop_gradient(lp), "kl_freq": jax.nn.one_hot(y, lp.shape[-1]).mean(0)}

    return make_train(objective, config, init, refresh=draw, refresh_every=int(refresh_every))


def _check(hp: dict, static: dict) -> None:
    if not (np.isfinite(hp["alpha"]) and hp["alpha"] >= 0):
        raise BanditError(f"SPO alpha must be ≥ 0; got {hp['alpha']}")
    if not np.isfinite(hp["gamma"]):
        raise BanditError(f"SPO gamma must be finite; got {hp['gamma']}")
    if static.get("weight") not in WEIGHTS:
        raise BanditError(f"SPO weight must be one of {', '.join(WEIGHTS)}; got {static.get('weight')!r}")


register(LossSpec(
    "spo_pref", spo_pref, {"alpha": 1.0, "gamma": 0.5}, {"weight": "uniform"},
    summary="SPO preference loss L_pref^{α,μ} (α = 0: Eq. 9); μ detached",
    citation="Sharifnassab et al. SPO Eq. 8–12, 24", check=_check,
))
register(LossSpec(
    "spo", spo, {"alpha": 1.0, "beta": 0.1, "gamma": 0.5}, {"weight": "uniform"},
    summary="SPO: L_pref^{α,μ} + β·KL(π‖π_ref) over all responses (β = 0: the preference loss)",
    citation="Sharifnassab et al. SPO Eq. 5, 8–12; App. B", check=_check, beta_zero=True,
))
