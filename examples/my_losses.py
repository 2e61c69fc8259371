"""An example plugin: a loss of your own, checked like the built-in ones (README "Your own loss").

    bandit-lab --plugin examples/my_losses.py list losses
    bandit-lab --plugin examples/my_losses.py check-loss tempered_dpo
    bandit-lab --plugin examples/my_losses.py solve examples/tempered_dpo.json
    bandit-lab --plugin examples/my_losses.py run weight-decay --alpha 0.1 --loss dpo,tempered_dpo

``tempered_dpo`` is DPO with its sigmoid run at temperature τ: ``ℓ = −τ·log σ(β·Δ/τ)`` with
``Δ = h_w − h_l``. Per pair, ``p·ℓ(Δ) + (1 − p)·ℓ(−Δ)`` is minimised at ``β·Δ/τ = logit p`` (the
same first-order condition as DPO's, rescaled), so on Bradley–Terry population data with a
connected pair graph the optimum is the RLHF policy at KL strength β/τ:
``π ∝ π_ref·exp(τ·r/β)`` — the closed form declared below as the loss's ``oracle``. τ = 1 is
DPO; τ ≠ 1 is DPO at another β, which ``check-loss`` shows as "does not share DPO's fixed point".
"""
import jax
import numpy as np

import bandit_lab as bl


def tempered_optimum(problem, hp, static):
    """``π_ref·exp(τ r/β)/Z`` (Bradley–Terry reward r; population data, connected pairs)."""
    if problem.reward is None:
        return None, "needs Bradley–Terry preferences"
    z = np.log(problem.pi_ref) + hp["tau"] * problem.reward / hp["beta"]
    z = np.exp(z - z.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True), "π_ref·exp(τ·r/β)/Z (RLHF at β/τ)"


def check_tau(hp, static):
    if not hp["tau"] > 0:
        raise bl.BanditError(f"tau must be > 0; got {hp['tau']}")


@bl.loss(defaults={"beta": 1.0, "tau": 0.5}, check=check_tau, oracle=tempered_optimum,
         summary="DPO with a tempered sigmoid, −τ·log σ(βΔ/τ) (example plugin)",
         citation="bandit-lab examples/my_losses.py")
def tempered_dpo(inputs, hp):
    hw, hl = bl.log_ratios(inputs)
    return bl.expect(inputs.data, -hp["tau"] * jax.nn.log_sigmoid(hp["beta"] * (hw - hl) / hp["tau"]))
