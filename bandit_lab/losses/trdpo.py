"""TR-DPO: DPO against a *moving* reference (Gorbatovski et al. 2024, "Learn Your Reference Model
for Real Good Alignment", §3; TRL ``DPOConfig(sync_ref_model=True, ref_model_mixup_alpha=α,
ref_model_sync_steps=τ)``).

Every τ optimiser steps the reference's parameters are mixed into the policy's,
``θ_ref ← α·θ + (1 − α)·θ_ref`` (TRL's ``SyncRefModelCallback``: ``ref.mul_(1 − α).add_(θ, α)`` at the
end of every step whose count is a multiple of τ); α = 1 is the paper's *hard* update, α < 1 the
*soft* one. Here the reference is carried as the per-step loss state ``inputs.state["logp_ref"]``
(:class:`~bandit_lab.losses.base.LossSpec` ``state_init``/``state_update``), and the mix acts on the
reference's **logits**: ``log π_ref ← log_softmax(α·log π_θ + (1 − α)·log π_ref)``. For the softmax
and log-linear policies (log π affine in θ up to the normaliser) this is TRL's parameter mix
exactly; for other parameterizations it is the geometric mixture of the policies. The state
functions read the initial reference only from ``consts`` (the compiled trainer is shared by
every problem of the same shape).

Where the fixed point goes. The trained policy chases a reference that chases it, so:

- in *exact mode* (the exact solver, ``key=None``) the reference is the current policy itself
  (detached): the zeros of that field are the points where training has stopped *and* the
  reference has caught up (``θ_ref = θ``), the only possible limits of the synced dynamics. At
  ``θ_ref = θ`` every log-ratio is 0 and the DPO gradient is the constant ``−(β/2)·n``,
  ``n(x, y) = Σ_{y'} D(x, y, y') − D(x, y', y)`` (net win weight). With weight decay ``λ‖θ‖²`` on
  softmax logits the fixed point is therefore ``θ* = β·n/(4λ)`` in closed form; without weight
  decay there is none: the policy runs away to the vertex of the largest net win weight (the
  same limit as Kong's ``eta_linear``);
- along the way, with each inner problem solved exactly between syncs (BT data, no weight decay),
  the reference's logits move by ``α·r/β`` per sync: the k-th reference is ``π_ref·e^{kαr/β}/Z``
  and the k-th optimum the RLHF optimum at **β/(1 + kα)** — DPO with a shrinking KL strength,
  heading for the argmax of r (checked in ``tests/test_zoo_trl.py``).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from bandit_lab.losses import LossInputs, LossSpec, register
from bandit_lab.losses.core import dpo


def trdpo(inputs: LossInputs, hp: dict) -> jax.Array:
    """DPO (Rafailov et al. Eq. 7) with ``π_ref`` the moving reference of the loss state."""
    ref = inputs.logp_ref if inputs.state is None or "logp_ref" not in inputs.state else inputs.state["logp_ref"]
    return dpo(inputs._replace(logp_ref=ref), hp)


def state_init(objective, params, hp, key, consts):
    """Training (``key`` given): the problem's π_ref, from ``consts``. Exact mode (``key=None``):
    the current policy itself, so the solver seeks the synced fixed point (module docstring)."""
    if key is None:
        return {"logp_ref": objective.param.log_probs(params, None if consts is None else consts["param"])}
    c = objective.consts() if consts is None else consts
    return {"logp_ref": jnp.asarray(c["logp_ref"])}


def state_update(objective, params, hp, key, state, t, consts):
    """At the start of step t (after t updates): mix when t is a multiple of τ (TRL's on_step_end)."""
    lp = objective.param.log_probs(params, None if consts is None else consts["param"])
    a = hp["mixup_alpha"]
    mixed = jax.nn.log_softmax(a * lp + (1.0 - a) * state["logp_ref"], axis=-1)
    sync = jnp.mod(t, jnp.maximum(jnp.round(hp["sync_steps"]), 1.0)) == 0
    return {"logp_ref": jnp.where(sync, mixed, state["logp_ref"])}


def _exact(objective, hp, init=None):
    """``solve_exact`` hook: the synced fixed point is a zero of the field ``∇_θ L(θ; ref = θ)``
    (module docstring), which is not the gradient of the value (a line search on the value would
    stall), so it is found by Newton on the field itself (exact Jacobian by ``jax.jacfwd``). No
    weight decay: the field is the constant −(β/2)n, no zero — reported as not converged."""
    import numpy as np
    from jax.flatten_util import ravel_pytree

    from bandit_lab.solvers.solver import ExactResult

    if objective.param.constraint != "free":
        return None
    template = objective.param.init() if init is None else init
    z, unravel = ravel_pytree(template)
    field = jax.jit(lambda zz: ravel_pytree(jax.grad(lambda p: objective.value(p, hp))(unravel(zz)))[0])
    jac = jax.jit(jax.jacfwd(field))
    for _ in range(50):
        g = field(z)
        if float(jnp.linalg.norm(g)) <= 1e-13:
            break
        J = np.asarray(jac(z))
        if np.linalg.matrix_rank(J, tol=1e-10) < J.shape[0] - (1 if hp.get("weight_decay", 0.0) == 0.0 else 0) or not np.any(J):
            break  # singular beyond the gauge: no isolated zero
        z = z - jnp.asarray(np.linalg.lstsq(J, np.asarray(g), rcond=None)[0])
    g = field(z)
    res = float(jnp.linalg.norm(g))
    params = unravel(z)
    return ExactResult(params, np.asarray(objective.policy(params)), float(objective.value(params, hp)), res, bool(res <= 1e-10), 0,
                       unravel(g))


def _check(hp, static):
    from bandit_lab.errors import BanditError

    if not (0.0 < hp["mixup_alpha"] <= 1.0):
        raise BanditError(f"mixup_alpha must be in (0, 1]; got {hp['mixup_alpha']}")
    if not (hp["sync_steps"] >= 1 and float(hp["sync_steps"]).is_integer()):
        raise BanditError(f"sync_steps must be an integer ≥ 1; got {hp['sync_steps']}")


register(LossSpec(
    "trdpo", trdpo, {"beta": 1.0, "mixup_alpha": 0.6, "sync_steps": 512.0},
    summary="TR-DPO: DPO with a reference mixed into the policy every τ steps (α soft, 1 hard)",
    citation="Gorbatovski et al. 2024 §3; TRL sync_ref_model", check=_check,
    state_init=state_init, state_update=state_update, exact=_exact,
))
