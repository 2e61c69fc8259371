"""The hinge LP's optimal-face dimension (issue 20 leftover; ``certificates.hinge_face``).

Closed forms on two responses, m = β(g_1 − g_2) the margin, f(m) = w₁₂·max(0, 1 − m) + w₂₁·max(0, 1 + m):
w₁₂ > w₂₁ > 0 → f falls on (−1, 1) and rises after 1: the unique minimiser m = 1 (dimension 0);
w₂₁ = 0 → every m ≥ 1 (a half-line: dimension 1); w₁₂ = w₂₁ → f is constant on [−1, 1] (dimension
1). With a third response in no pair its log-ratio is free: dimension 2 (the half-line × a line).
"""
from __future__ import annotations

import numpy as np
import pytest

from bandit_lab.certificates import hinge_face


@pytest.mark.parametrize("w, beta, dim", [
    ([[0, .7], [.3, 0]], 1.0, 0),
    ([[0, 1.0], [0, 0]], 1.0, 1),
    ([[0, .5], [.5, 0]], 3.0, 1),
    ([[0, 1.0, 0], [0, 0, 0], [0, 0, 0]], 2.0, 2),
])
def test_face_dimension_matches_the_closed_form(w, beta, dim):
    d, dirs, _ = hinge_face(np.asarray(w, float)[None], beta)
    assert d == dim and len(dirs) == dim


def test_two_contexts_add_and_directions_are_in_their_context():
    w = np.zeros((2, 3, 3))
    w[0, 0, 1] = 1.0  # context 1: y3 free, y1 ≻ y2 deterministic → 2
    w[1, 0, 1], w[1, 1, 0], w[1, 0, 2], w[1, 2, 0], w[1, 1, 2], w[1, 2, 1] = .6, .4, .7, .3, .8, .2  # strict → 0
    d, dirs, _ = hinge_face(w, 1.0)
    assert d == 2 and all(np.all(v[3:] == 0) for v in dirs)


@pytest.mark.slow  # two certify compiles: ≈ 25 s under load
def test_exact_solve_verdict_carries_the_dimension():
    """The exact solve's verdict (what `solve` prints, without its training run): *unique* where the
    LP's face is a point and a *set* of the computed dimension where it is not (deterministic
    labels: m ≥ 1/β on the pair)."""
    from bandit_lab.certificates import verdict_of
    from bandit_lab.solvers.solver import solve_exact
    from bandit_lab.spec import build

    def verdict(spec):
        obj, *_ = build({**spec, "loss": "hinge", "loss_params": {"beta": 2.0}})
        return verdict_of(obj, solve_exact(obj))

    strict = verdict({"pi_ref": [0.4, 0.4, 0.2], "preference": {"pi_star": [0.6, 0.3, 0.1]}, "pairs": "uniform"})
    assert strict.kind.value == "unique minimiser" and strict.certificate["face_dimension"] == 0, strict.line()
    det = verdict({"pi_ref": [0.5, 0.5], "preference": {"pi_star": [1.0, 0.0]}, "pairs": [[0, 1, 1.0]]})
    assert det.kind.value == "set of minimisers" and det.dimension == 1, det.line()
