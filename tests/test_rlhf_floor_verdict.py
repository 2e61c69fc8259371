"""RLHF with a deterministic preference (issue 20 leftover): the BT reward log π* is floored at
``reward_floor`` (1e-12), so the reverse-KL optimum is finite — Gibbs, π(y2)/π(y1) =
(π_ref,2/π_ref,1)·e^{(log 1e-12 − 0)/β} — with masses e^−276 at β = 0.1 and e^−2763 at β = 0.01.
Its loss differs from the vertex limit's by about that mass, below float64's resolution of the
loss, so the values along the ray look like a runaway; the gradient per unit mass does not (it is
β·log π_k + const, crossing zero at the minimiser). The verdict must not say "no finite
minimiser": it says *not certified* with the log-mass of the crossing, checked here against the
closed form (1e-6 absolute in log π at β = 0.1, where the crossing is inside float64's range;
1e-6 relative at β = 0.01, extrapolated linearly from beyond e^−575).
"""
from __future__ import annotations

import numpy as np
import pytest

from bandit_lab.certificates import verdict_of
from bandit_lab.solvers.solver import solve_exact
from bandit_lab.spec import build
from bandit_lab.verdict import Kind


@pytest.mark.parametrize("beta, rel", [(0.1, None), (0.01, 1e-6)])
def test_floored_reward_rlhf_is_a_finite_minimiser_not_a_runaway(beta, rel):
    obj, *_ = build({"pi_ref": [0.5, 0.5, 0], "preference": {"pi_star": [1, 0, 0]}, "pairs": [[0, 1, 1.0]],
                     "loss": "rlhf", "loss_params": {"beta": beta}})
    v = verdict_of(obj, solve_exact(obj))
    want = np.log(0.5 / 0.5) + np.log(1e-12) / beta
    assert v.kind is Kind.NOT_CERTIFIED and "finite minimiser" in v.summary and "no finite" not in v.summary, v.line()
    got = v.certificate["per_mass_turn_logp"]
    if rel is None:
        assert v.certificate["per_mass_turn"] == "turns" and abs(got - want) < 1e-6, (got, want)
    else:
        assert v.certificate["per_mass_turn"].startswith("would turn") and abs(got / want - 1) < rel, (got, want)
