"""One consistent API (issue 23, item 4): float64 answers without a switch, or a clear error —
never a silent float32 answer; the optimiser's argument names shared by train_policy, TrainConfig
and a spec's optimizer block; the public closed forms. Each test runs in a fresh process, where
JAX starts in its default float32 (the suite's own process may have float64 switched on)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

PRELUDE = """
import jax, numpy as np, bandit_lab as bl
assert not jax.config.read("jax_enable_x64")
pb = bl.Problem.create([0.4, 0.4, 0.2], pi_star=[0.6, 0.3, 0.1], pairs="uniform")
"""


def _run(code: str) -> str:
    r = subprocess.run([sys.executable, "-c", PRELUDE + code], capture_output=True, text=True, cwd=ROOT, timeout=300,
                       env={k: v for k, v in __import__("os").environ.items() if k != "JAX_ENABLE_X64"})
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout.strip()


@pytest.fixture(scope="module")
def default_precision_run():
    """One process: train, solve, closed form with no precision switch; then float32 chosen."""
    return _run("""
dpo = bl.make_objective(pb, "dpo", {"beta": 1.0})
t = bl.train_policy(dpo, steps=3000, lr=0.05)
ex = bl.solve_exact(dpo)
cf = bl.closed_form(pb, "dpo", {"beta": 1.0})
print(t.policy.dtype, ex.policy.dtype, cf.policy.dtype, jax.config.read("jax_enable_x64"))
print(float(np.abs(t.policy - cf.policy).max()), float(np.abs(ex.policy - cf.policy).max()))
bl.use_float32()
t32 = bl.train_policy(bl.make_objective(pb, "dpo", {"beta": 1.0}), steps=3000)
print(t32.policy.dtype)
try:
    bl.solve_exact(bl.make_objective(pb, "dpo", {"beta": 1.0}))
except bl.BanditError as e:
    print("refused:", e)
""").splitlines()


def test_train_policy_and_solve_exact_answer_in_float64_without_a_switch(default_precision_run):
    dtypes, errs = default_precision_run[0].split(), default_precision_run[1].split()
    assert dtypes == ["float64", "float64", "float64", "False"]  # and JAX's config is left as it was
    # Adam after 3000 cosine steps and the Newton solve both reach the closed form to float64
    # rounding (float32 would leave ~1e-7: the float32 run below)
    assert float(errs[0]) < 1e-12 and float(errs[1]) < 1e-12


def test_float32_only_when_chosen_and_solve_exact_refuses_it(default_precision_run):
    assert default_precision_run[2] == "float32"
    assert default_precision_run[3].startswith("refused: solve_exact needs float64")


def test_an_objective_built_in_float32_is_refused_not_used():
    out = _run("""
with bl.x64(False):
    obj = bl.make_objective(pb, "dpo")  # float32 chosen inside this scope: float32 data
try:
    bl.train_policy(obj, steps=10)
except bl.BanditError as e:
    print(e)
""")
    assert "holds float32 arrays" in out and "bandit_lab.x64()" in out


def test_optimizer_names_are_shared_by_train_policy_trainconfig_and_spec():
    import dataclasses
    import inspect

    import bandit_lab as bl
    from bandit_lab import schema

    spec_names = set(schema.Optimizer.model_fields) - {"name"} | {"optimizer"}
    assert spec_names <= {f.name for f in dataclasses.fields(bl.TrainConfig)} | {"lr"}
    assert spec_names <= set(inspect.signature(bl.train_policy).parameters)


def test_keywords_override_the_config_and_match_it():
    import numpy as np

    import bandit_lab as bl

    with bl.x64():
        pb = bl.Problem.create([0.4, 0.4, 0.2], pi_star=[0.6, 0.3, 0.1], pairs="uniform")
        ipo = bl.make_objective(pb, "ipo", {"beta": 1.0})
        a = bl.train_policy(ipo, bl.TrainConfig(steps=200, optimizer="sgd", schedule="constant"), lr=0.1)
        b = bl.train_policy(ipo, steps=200, optimizer="sgd", schedule="constant", lr=0.1)
        c = bl.train_policy(ipo, bl.TrainConfig(steps=5), steps=200, optimizer="sgd", schedule="constant", lr=0.1)
    assert np.array_equal(a.policy, b.policy) and np.array_equal(a.policy, c.policy)


def test_closed_form_matches_the_formula_and_says_when_there_is_none():
    import numpy as np

    import bandit_lab as bl

    pb = bl.Problem.create([0.4, 0.4, 0.2], pi_star=[0.6, 0.3, 0.1], pairs="uniform")
    g = np.array([0.4, 0.4, 0.2]) * np.array([0.6, 0.3, 0.1]) ** (1 / 0.5)  # π_ref·e^{r/β}, r = log π*, β = 0.5
    cf = bl.closed_form(pb, "rlhf", {"beta": 0.5})
    assert np.allclose(cf.policy[0], g / g.sum(), rtol=0, atol=1e-15)
    none = bl.closed_form(pb, "hinge")
    assert none.policy is None and none.note
    with pytest.raises(bl.BanditError):
        bl.closed_form(pb, "no_such_loss")
