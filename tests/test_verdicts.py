"""Issue 20, items 1–3 and 7: certified verdicts. These tests record the Done-when as it stands
(reproduced 2026-12-05): deterministic-label DPO is still reported as a converged exact optimum at
a point on its runaway. `solve` now refuses to certify such a point
(exact_converged False, "NOT certified"); fixed-points still does not. See docs/verdicts.md."""
import numpy as np
import pytest

import bandit_lab as bl

DPO_DET = {"pi_ref": [0.5, 0.5], "preference": {"pi_star": [1.0, 0.0]}, "pairs": "uniform",
           "loss": "dpo", "loss_params": {"beta": 10.0}}


@pytest.fixture(scope="module")
def dpo_det():
    return bl.solve(DPO_DET)


def test_deterministic_dpo_loss_keeps_decreasing_past_the_reported_point(dpo_det):
    """Independent numpy check of the runaway: along the direction that moves mass to y1 the DPO
    loss -log σ(β(θ1-θ2)) (π_ref uniform) strictly decreases, so no finite point is a minimiser."""
    p = np.asarray(dpo_det.exact)
    margin = np.log(p[0] / p[1])            # log-ratio margin at the reported point
    beta = 10.0
    ts = np.array([0.0, 0.5, 1.0, 2.0])
    loss = np.logaddexp(0.0, -beta * (margin + ts))
    assert np.all(np.diff(loss) < 0)


def test_deterministic_dpo_is_not_reported_as_converged(dpo_det):
    assert not dpo_det.exact_converged
