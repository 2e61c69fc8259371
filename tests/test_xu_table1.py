"""Xu et al. 2024 Table 1 (bandit_lab/experiments/xu_table1.py): π_ref = (0.5, 0.5, 0), y1 ≻ y2.
DPO's loss → 0 along sequences approaching both π_DPO = (0.1, 0, 0.9) and π_PPO = (1, 0, 0) (the
library's objective against the closed form log(1 + (π2/π1)^β)); RLHF/PPO put exactly 0 on y3."""
import numpy as np
import pytest

from bandit_lab import experiments
from bandit_lab.experiments import xu_table1


@pytest.fixture(scope="module")
def res():
    exp = experiments.get("xu-table1")
    return exp.run(experiments.make_settings(exp, {"beta": 0.5, "epsilons": (1e-1, 1e-4, 1e-16, 1e-64), "floors": (1e-12,)}))


def test_dpo_loss_tends_to_its_infimum_at_both_table_policies(res):
    for name, limit in xu_table1.TABLE.items():
        rows = [r for r in res["records"] if r["limit"] == name]
        losses = [r["loss"] for r in rows]
        assert all(a > b > 0 for a, b in zip(losses, losses[1:]))  # strictly decreasing, positive: no minimiser
        for r in rows:  # exact values: log(1 + (ε/π1)^β), β = 0.5
            want = np.log1p((r["eps"] / limit[0] if name == "pi_dpo" else r["eps"] / (1 - r["eps"])) ** 0.5)
            np.testing.assert_allclose(r["loss"], want, rtol=1e-13)
            assert r["grad_y3"] == 0.0  # y3 is in no pair: a flat direction
        # at ε = 1e-64 the loss is (ε/π1)^β to first order: 3.16e-32 and 1e-32
        assert rows[-1]["loss"] == pytest.approx((1e-64 / limit[0]) ** 0.5, rel=1e-12)
        np.testing.assert_allclose(rows[-1]["policy"], limit, atol=1e-63)
    assert res["dpo_vs_closed_form_rel"] < 1e-13


def test_rlhf_and_ppo_put_zero_on_y3_and_tend_to_pi_ppo(res):
    for r in res["rlhf"]:
        assert r["closed_form"][2] == 0.0 and r["solver"][2] == 0.0 and r["ppo_stationary"][2] == 0.0
        assert r["solver_converged"]
        # π_ref·e^{r/β}/Z with r = (0, log ε), β = 0.5: π(y2) = ε² / (1 + ε²)
        assert r["closed_form"][1] == pytest.approx(r["floor"] ** 2 / (1 + r["floor"] ** 2), rel=1e-12)
        assert r["ppo_stationary"][1] <= 1e-7 and r["ppo_residual"] < 1e-12
    assert res["rlhf"][-1]["tv_to_pi_ppo"] == pytest.approx(1e-24, rel=1e-9)
    assert res["rlhf_y3_mass"] == 0.0
    assert "no finite minimiser" in xu_table1.report(res)
