"""``bandit-lab explain`` (issue 21) on TRL 1.16's default GRPOConfig and RLOOConfig, Kong App. B."""
from __future__ import annotations

import numpy as np
import pytest

from bandit_lab.explain import explain
from bandit_lab.solvers.oracles import rlhf_optimum
from conftest import group_std_point_by_enumeration  # noqa: E402  (tests/ is on the path)


def test_trl_default_grpo_config_runs_away():
    """TRL 1.16 default: loss_type dapo, β = 0, group std → no regulariser, no finite stationary point."""
    r = explain("grpo", {})
    assert r["loss_params"]["loss_type"] == "dapo" and r["beta"] == 0.0
    assert r["divergence"].startswith("none") and "not the gradient" in r["objective"]
    assert r["status"] == "runaway" and r["policy"] is None


def test_rloo_default_is_gibbs_and_cli_prints_it(capsys):
    r = explain("rloo", {"beta": 0.5})
    g = rlhf_optimum(np.array([[0.4, 0.4, 0.2]]), np.log(np.array([[0.6, 0.3, 0.1]])), 0.5)
    assert r["status"] == "attracting" and np.max(np.abs(np.asarray(r["policy"]) - g)) < 1e-10
    assert r["tv_gibbs"] < 1e-10 and r["divergence"].startswith("KL(π‖π_ref)")
    # the command in-process (a real process's contract: tests/test_bad_input.py::test_a_few_real_subprocesses)
    from cli.main import main

    with pytest.raises(SystemExit) as e:
        main(["explain", "grpo"])
    out, err = capsys.readouterr()
    assert e.value.code in (0, None), err
    assert "divergence  none (β = 0)" in out and "stationary  runaway" in out


def test_cispo_at_trl_default_epsilon_high_says_the_kl_acts_as_5_beta():
    """TRL 1.16 cispo caps the detached ratio at epsilon_high, whose default (None → epsilon = 0.2)
    scales the policy gradient by 0.2 on-policy: with scale_rewards none + corrected k3 the point
    is Gibbs at 5·β·G/(G−1) (closed form; test_trl_loss_types derives it)."""
    r = explain("grpo", {"loss_type": "cispo", "scale_rewards": "none", "beta": 0.1, "num_generations": 4})
    assert "× min(1, ε_high) = 0.2" in r["objective"] and "β/0.2" in r["objective"]
    g = rlhf_optimum(np.array([[0.4, 0.4, 0.2]]), np.log(np.array([[0.6, 0.3, 0.1]])), 5 * 0.1 * 4 / 3)
    assert r["status"] == "attracting" and np.max(np.abs(np.asarray(r["policy"]) - g)) < 1e-8


def test_a2po_default_config_is_gibbs_at_beta2():
    """A*-PO's expected update is 2β₂∇[β₂KL(π‖π_ref) − E_π r] (tests/test_a2po.py), so its point is
    Gibbs at β₂ (closed form, 1e-8). At TRL's default β₂ = 1e-3 that Gibbs point has π(y2) ≈ e^{−693}
    on Kong's bandit, below float64: the solver reports the vertex limit there, so β₂ = 0.5 here."""
    r = explain("a2po", {"beta2": 0.5})
    g = rlhf_optimum(np.array([[0.4, 0.4, 0.2]]), np.log(np.array([[0.6, 0.3, 0.1]])), 0.5)
    assert r["divergence"].startswith("KL(π‖π_ref)") and r["status"] == "attracting"
    assert np.max(np.abs(np.asarray(r["policy"]) - g)) < 1e-8 and r["tv_gibbs"] < 1e-8


def test_trl_grpo_beta004_has_a_finite_attracting_point_with_tiny_masses():
    """TRL 1.16 GRPOConfig(beta=0.04) (dapo, group std, bias-corrected k3) on Kong App. B: a finite,
    attracting point with π(y2), π(y3) ≈ 1e-27 (logit gaps ≈ −62 = −2.47/β: the outlier's
    std-normalised advantage is scale-free). It was reported "runaway" before the corrected k3 was
    written without cancellation (k3·ρ's two ±π_ref/π_old terms swamped its gradient at π ≪ π_ref).
    Checked against the independent enumeration (tests/conftest.py): logit gaps to 1e-8."""
    r = explain("grpo", {"beta": 0.04})
    assert r["status"] == "attracting", r["note"]
    want = group_std_point_by_enumeration(np.array([0.4, 0.4, 0.2]), np.log([0.6, 0.3, 0.1]), 8, 0.04)
    gaps = np.log(np.asarray(r["policy"]).ravel())
    np.testing.assert_allclose(gaps - gaps[0], want, rtol=0, atol=1e-8)
    assert want[1] < -60 and want[2] < -60


def test_preset_table_prints_a_point_only_where_a_root_is_certified(capsys):
    """``bandit-lab explain presets``: an uncertified row shows no point and no TV (a number there
    would be a claim); a runaway shows "→" its limit where the solver certified it on the face (here
    TRL's default GRPO, β = 0: the vertex of argmax r, y1); an attracting row shows both. The full
    table is a generated docs block (docs/onpolicy-libraries.md, checked in the slow docs test); here
    two real presets."""
    from bandit_lab.explain import PRESETS, explain as run, preset_lines

    rows = [{"preset": name, **run(*PRESETS[name])} for name in ("trl-grpo-default", "trl-rloo-default")]
    text = preset_lines(rows)
    head, runaway, attracting = text[0], text[1], next(t for t in text if t.startswith("trl-rloo-default"))
    assert "TV to Gibbs" in head and "runaway" in runaway and "undefined (β = 0)" in runaway and " → [1, 0, 0] " in runaway
    assert rows[0]["limit"] == [[1.0, 0.0, 0.0]] and rows[0]["policy"] is None
    g = rlhf_optimum(np.array([[0.4, 0.4, 0.2]]), np.log(np.array([[0.6, 0.3, 0.1]])), 0.05)
    tv = float(attracting.split()[-1])
    assert "attracting" in attracting and tv == float(f"{rows[1]['tv_gibbs']:.3e}") and tv < 1e-15
    assert np.max(np.abs(np.asarray(rows[1]["policy"]) - g)) < 1e-10
    assert any("no finite stationary point" in t for t in text)  # the runaway's certificate line
    from cli.main import main

    with pytest.raises(SystemExit) as e:
        main(["explain", "presets", "--set", "beta=1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "presets" in err[0] and "--set" in err[0]
