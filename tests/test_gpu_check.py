"""`python -m bandit_lab.gpu_check` (issue 22's GPU checks, prepared for a session lent a device):
its records comparison on hand-made files, its bad options, and — slow — the whole command on
the CPU at small sizes."""
import json
import subprocess
import sys

import numpy as np
import pytest

from bandit_lab import gpu_check


def _npz(path, **cols):
    np.savez(path, **cols)
    return str(path)


def test_compare_records_reports_the_largest_float_difference_and_unequal_columns(tmp_path):
    a = _npz(tmp_path / "a.npz", policy=np.array([[0.5, 0.5], [0.2, np.nan]]), tv=np.array([1e-3, np.nan]),
             loss=np.array(["dpo", "ipo"]), only_a=np.zeros(2))
    b = _npz(tmp_path / "b.npz", policy=np.array([[0.5, 0.5 + 3e-16], [0.2, np.nan]]), tv=np.array([1e-3 + 2e-12, np.nan]),
             loss=np.array(["dpo", "rlhf"]), only_b=np.zeros(2))
    r = gpu_check.compare_records(a, b)
    assert r["max_abs"] == pytest.approx(2e-12, rel=1e-3) and r["worst"] == "tv"  # NaN on both sides: equal
    assert r["unequal"] == ["loss"] and r["missing"] == ["only_a", "only_b"]
    same = gpu_check.compare_records(a, a)
    assert same["max_abs"] == 0.0 and same["worst"] is None and same["unequal"] == []
    # NaN on one side only is a difference, not a silent 0
    c = _npz(tmp_path / "c.npz", policy=np.array([[0.5, 0.5], [0.2, 0.8]]), tv=np.array([1e-3, np.nan]),
             loss=np.array(["dpo", "ipo"]), only_a=np.zeros(2))
    assert np.isnan(gpu_check.compare_records(a, c)["max_abs"]) and gpu_check.compare_records(a, c)["worst"] == "policy"
    d = _npz(tmp_path / "d.npz", policy=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="policy.*shape"):
        gpu_check.compare_records(a, d)


@pytest.mark.parametrize("argv, field", [(["--points", "0"], "--points"), (["--repeats", "0"], "--repeats"),
                                         (["--big", "-1"], "--big"), (["--budget", "0"], "--budget")])
def test_bad_options_are_one_line_and_exit_2(tmp_path, capsys, argv, field):
    assert gpu_check.main(["--out", str(tmp_path / "o"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and field in err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_the_whole_check_runs_on_the_cpu_at_small_sizes(tmp_path):
    """Steps 1–4 on this machine's CPU (64 and 256 points, one repeat): every step reports, the
    sweep against its floor, the two runs of step 3 agree exactly (both are the CPU here), the big
    sweep writes every row."""
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-m", "bandit_lab.gpu_check", "--out", str(out), "--points", "64", "--big", "256",
                        "--repeats", "1", "--no-suite", "--budget", "300"], capture_output=True, text=True, cwd=gpu_check.ROOT)
    assert p.returncode == 0, p.stderr[-2000:]
    steps = {s["step"]: s for s in json.loads((out / "gpu_check.json").read_text())}
    assert list(steps) == ["platform", "sweep", "agreement", "big"]
    assert steps["platform"]["backend"] == "cpu"
    assert steps["sweep"]["runs"] == 1 and steps["sweep"]["median_s"] > 0 and steps["sweep"]["floor_median_s"] > 0
    assert steps["agreement"]["max_abs"] == 0.0 and steps["agreement"]["unequal"] == [] and steps["agreement"]["missing"] == []
    assert steps["big"]["records"] == 3 * 256  # a row per α and loss/counterpart pair
