"""``closed_forms.grpo_fixed_point`` on random problems: the expected update vanishes at the point it
returns (issue 21, round 3 session 4).

The Vojnovic–Yun characterisation with GRPO's k3 differentiated (``penalty="forward"``): the field in
softmax logits is ``F_k = −π_k ā_k(π) + β(π_k − π_ref,k)`` (Σπā = 0), zero iff
``π_k(1 − ā_k/β) = π_ref,k``; with a straight-through KL (``"reverse"``), ``F = −π∘(ā − Σπā) +
β∇KL(π‖π_ref)``, zero iff ``π ∝ π_ref e^{ā/β}``. The returned point is checked against the expected
update of bandit-lab's native ``grpo`` loss (TRL's k3 in the loss, no clamp — verl's low_var_kl clamps
k3 at 10, which binds at small β; ``kl_estimator="exact"`` for the reverse case) as the JAX loss
computes it (exact expectation over groups, independent of the NumPy enumeration inside
grpo_fixed_point), in float64, scale-free:
``max_k |F_k| / (β·(π_k + π_ref,k)) ≤ 1e-10``. Before the fix the forward solver stopped at a spurious
boundary point (π_k = 0, residual π_ref,k: 0.2–0.4) whenever a response's ā_k(π_ref) exceeded β."""
from __future__ import annotations

import numpy as np
import pytest

from bandit_lab.core.objective import make_objective
from bandit_lab.onpolicy.closed_forms import abar, grpo_fixed_point


def _problem(pi_ref, reward):
    from bandit_lab.spec import build

    obj, *_ = build({"pi_ref": np.asarray(pi_ref).tolist(), "preference": {"reward": np.asarray(reward).tolist()},
                     "pairs": "uniform", "loss": "dpo", "loss_params": {"beta": 1.0}})
    return obj.problem


# K = 4, four contexts (random π_ref ~ Dirichlet(2), rewards ~ N(0, 1)) — the last one the round-3
# finding —, β from 0.05 to 1.5: one objective (one compile) per (G, penalty), β passed as data.
_RNG = np.random.default_rng(21)
REF = np.vstack([_RNG.dirichlet(np.full(4, 2.0), size=3), [0.4, 0.3, 0.2, 0.1]])
R = np.vstack([_RNG.normal(size=(3, 4)), [0.5, -0.2, 1.0, -1.1]])
BETAS = (0.05, 0.4, 1.5)
KL = {"forward": "k3", "reverse": "exact"}


@pytest.mark.parametrize("penalty, G", [("forward", 3), ("forward", 4), ("reverse", 4)])
def test_expected_update_vanishes_at_the_returned_point(penalty, G):
    import jax
    import jax.numpy as jnp

    pb = _problem(REF, R)
    o = make_objective(pb, "grpo", {"beta": 1.0, "group_size": G, "std_eps": 1e-6, "kl_estimator": KL[penalty]})
    assert o.static["std_ddof"] == 1 and o.static["kl_placement"] == "loss"
    field = jax.jit(jax.grad(o.value))
    cw = np.asarray(pb.context_weight)
    worst = 0.0
    for beta in BETAS:
        pi = np.empty_like(REF)
        for x in range(REF.shape[0]):
            pi[x], res, _ = grpo_fixed_point(REF[x], R[x], beta, G, eps=1e-6, penalty=penalty)
            assert res <= 1e-12 and np.all(pi[x] > 0), (x, beta, res)
            if penalty == "forward":  # on the branch 1 − ā/β = π_ref/π > 0
                assert np.all(1 - abar(pi[x], R[x], G, "group_std", 1, 1e-6) / beta > 0)
        F = np.asarray(field(jnp.log(jnp.asarray(pi)), {**o.hp, "beta": beta}))
        worst = max(worst, float(np.max(np.abs(F) / (cw[:, None] * beta * (pi + REF)))))
    assert worst <= 1e-10, worst
