"""On-policy oracles at the boundary (issue 20 item 4) and the library forms (issue 21)."""
from __future__ import annotations

import numpy as np
import pytest

from bandit_lab.core import metrics
from bandit_lab.core.objective import make_objective
from bandit_lab.solvers.oracles import loss_oracle
from bandit_lab.core.problems import Problem


def _boundary_problem(a: float, r):
    K = len(r)
    ref = np.array([a] + [1.0] * (K - 1))
    ref = ref / ref.sum()
    return Problem(pi_ref=ref[None], given_pref=None, given_pairs=None, context_weight=np.ones(1),
                   reward=np.asarray(r, float)[None], preference_kind="reward")


@pytest.mark.parametrize("a", [1e-3, 1e-6, 1e-9, 1e-12])
def test_vojnovic_yun_oracle_at_the_boundary(a):
    """π_ref(a) down to 1e-12, β 0.5, G 2 (was "no solution found (residual 4.9e+02)" from 1e-6):
    the oracle's point satisfies π_k(1 − ā_k/β) = π_ref,k (ā by brute-force enumeration) and, for
    the forward (k3) penalty, π(a) stays ≈ 0.2928 as π_ref(a) → 0 (V–Y's near-discontinuity)."""
    from bandit_lab.onpolicy.closed_forms import abar, grpo_fixed_point

    pb = _boundary_problem(a, [1.0, 0.0])
    ref, r = pb.pi_ref[0], pb.reward[0]
    pi, res, _ = grpo_fixed_point(ref, r, 0.5, 2)
    assert res < 1e-14
    ab = abar(pi, r, 2, "group_std")
    np.testing.assert_allclose(pi * (1 - ab / 0.5), ref, atol=1e-15, rtol=0)
    if a <= 1e-9:
        assert pi[0] == pytest.approx(0.2927932, abs=1e-6)
    pi_rev, res_rev, _ = grpo_fixed_point(ref, r, 0.5, 2, penalty="reverse")
    assert res_rev < 1e-13
    ab = abar(pi_rev, r, 2, "group_std")
    t = np.log(ref) + ab / 0.5
    np.testing.assert_allclose(np.log(pi_rev), t - np.log(np.exp(t - t.max()).sum()) - t.max(), atol=1e-12)


def test_vojnovic_yun_oracle_agrees_with_stationary_solver_at_1e_12():
    from bandit_lab.onpolicy.stationary import solve

    pb = _boundary_problem(1e-12, [1.0, 0.0, 0.5])
    o = make_objective(pb, "grpo", {"beta": 0.5, "group_size": 2})
    orc, note = loss_oracle(pb, "grpo", o.hp, o.static)
    assert orc is not None and "Vojnovic" in note
    s = solve(o)
    assert metrics.tv(orc[0], s.result.policy[0]) < 1e-9


@pytest.mark.parametrize("beta,p_ref", [(50.0, 1e-12), (50.0, 1e-9), (5.0, 1e-6), (5.0, 0.3)])
def test_mroueh_fixed_point_relative_precision(beta, p_ref):
    """Mroueh's map h at its returned point: relative residual at rounding level (was 7e-8 at
    p_ref = 1e-12, β = 50, and 5e5 at p_ref = 1e-6, β = 5, where the iteration has not settled)."""
    from bandit_lab.onpolicy.closed_forms import mroueh_fixed_point, mroueh_h

    p, _ = mroueh_fixed_point(p_ref, beta)
    assert abs(mroueh_h(p, p_ref, beta) - p) <= 1e-14 * p


@pytest.mark.parametrize("a", [0.3, 1e-6, 1e-12])
def test_forward_kl_optimum_at_the_boundary(a):
    """β·π_ref/(λ − r): stationarity β(1 − π_ref/π) − r = −λ in every component to 1e-14 (was 6e-6
    at π_ref = 1e-12, from bisection on λ instead of on the gap λ − max r)."""
    from bandit_lab.solvers.oracles import rlhf_optimum

    ref = np.array([a, 0.5, 0.5])
    ref = ref / ref.sum()
    r = np.array([1.0, 0.0, 0.5])
    p = rlhf_optimum(ref[None], r[None], 0.5, "forward_kl")[0]
    g = 0.5 * (1 - ref / p) - r
    assert np.ptp(g) < 1e-14 and abs(p.sum() - 1) < 1e-15
    p = rlhf_optimum(ref[None], r[None], 0.5, "js")[0]  # f'(u) = log(2u/(1 + u)); was 1.8e-5 at 1e-12
    u = p / ref
    assert np.ptp(0.5 * np.log(2 * u / (1 + u)) - r) < 1e-14 and abs(p.sum() - 1) < 1e-15
