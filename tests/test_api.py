"""The public API (issue 15): the x64 rule, the re-exported names, docstring examples, and
user-defined losses loaded from a file outside the package through every door (solve,
fixed-points, run weight-decay/early-stopping --loss, list, cite), with their errors."""
import dataclasses
import doctest
import gc
import importlib
import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import bandit_lab as bl
from bandit_lab import plugins
from cli.main import hoist_plugins, main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "my_losses.py")
APP_B = {"pi_ref": [0.4, 0.4, 0.2], "preference": {"pi_star": [0.6, 0.3, 0.1]}, "pairs": "uniform"}

DPO_CLONE = textwrap.dedent('''
    import jax
    import bandit_lab as bl

    @bl.loss(defaults={"beta": 1.0}, counterpart="rlhf", summary="DPO, as a user file")
    def my_dpo(inputs, hp):
        hw, hl = bl.log_ratios(inputs)
        return bl.expect(inputs.data, -jax.nn.log_sigmoid(hp["beta"] * (hw - hl)))
''')


def run_cli(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    out, err = capsys.readouterr()
    return e.value.code, out, err


@pytest.fixture
def clean_plugins():
    """Plugins register into the process-wide registry: remove them after each test."""
    yield
    for names in plugins.loaded().values():
        for n in names:
            if n in bl.loss_registry():
                plugins.unregister_loss(n)
    plugins._LOADED.clear()


@pytest.fixture
def dpo_clone(tmp_path):
    p = tmp_path / "user_losses.py"
    p.write_text(DPO_CLONE)
    return str(p)


# --------------------------------------------------------------------------- precision rule

def _python(code: str, env: dict | None = None) -> str:
    e = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env={**e, **(env or {})}, check=True)
    return out.stdout.strip()


def test_import_leaves_jax_config_alone():
    code = ("import sys, bandit_lab; j = 'jax' in sys.modules; import jax; a = jax.config.read('jax_enable_x64'); "
            "bandit_lab.Problem; bandit_lab.make_objective; print(j, a, jax.config.read('jax_enable_x64'))")
    assert _python(code) == "False False False"  # no JAX import, float32 stays float32
    assert _python(code, {"JAX_ENABLE_X64": "1"}) == "False True True"  # a caller's float64 stays too


def test_scoped_functions_restore_the_callers_config():
    code = ("import jax, bandit_lab as bl; r = bl.solve({**%r, 'loss': 'dpo'}); "
            "print(jax.config.read('jax_enable_x64'), r.exact_vs_oracle_tv < 1e-12, type(r).__name__)") % (APP_B,)
    assert _python(code) == "False True SolveResult"


def test_solve_exact_refuses_float32():
    pb = bl.Problem.create([0.4, 0.4, 0.2], pi_star=[0.6, 0.3, 0.1], pairs="uniform")
    with bl.x64(False):
        obj = bl.make_objective(pb, "dpo")
        with pytest.raises(bl.BanditError, match="needs float64"):
            bl.solve_exact(obj)


def test_enable_x64_before_jax_import_sets_the_environment():
    assert _python("import os, bandit_lab; bandit_lab.enable_x64(); import jax.numpy as jnp; print(jnp.ones(1).dtype)") == "float64"


# --------------------------------------------------------------------------- public names and examples

def test_every_public_name_resolves_and_is_documented():
    for name in bl.__all__:
        obj = getattr(bl, name)
        assert (getattr(obj, "__doc__", None) or "").strip(), name
    with pytest.raises(AttributeError):
        bl.not_a_name  # noqa: B018


@pytest.mark.parametrize("module", ["bandit_lab", "bandit_lab.api", "bandit_lab.plugins", "bandit_lab.infra.precision",
                                    "bandit_lab.loss_check", "bandit_lab.bibliography"])
def test_docstring_examples_run(module):
    res = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert res.attempted > 0 and res.failed == 0


def test_solve_result_has_the_json_fields(tmp_path, capsys):
    spec = {**APP_B, "loss": "ipo", "loss_params": {"beta": 0.5}, "weight_decay": 0.05}
    p = tmp_path / "s.json"
    p.write_text(json.dumps(spec))
    code, out, _ = run_cli(["solve", str(p), "--json"], capsys)
    assert code == 0
    api = dataclasses.asdict(bl.solve(str(p)))
    cli = json.loads(out)
    assert {k for k, v in api.items() if v is not None} == set(cli)
    assert api["exact"] == cli["exact"] and api["policy"] == cli["policy"]  # same run, bit for bit


def test_find_fixed_points_matches_the_command(capsys):
    code, out, _ = run_cli(["fixed-points", "--only", "dpo,ipo", "--json"], capsys)
    assert code == 0
    cli = json.loads(out)
    fp = bl.find_fixed_points(only=["ipo", "dpo"])
    for lab in ("dpo", "ipo"):
        row = next(r for r in cli["records"] if r["label"] == lab)
        assert np.abs(np.subtract(fp.row(lab).policy, row["policy"])).max() < 1e-12
    assert fp.row("dpo").shares_dpo and not fp.row("ipo").shares_dpo


# --------------------------------------------------------------------------- user-defined losses

def test_plugin_loss_through_solve_equals_the_builtin(dpo_clone, tmp_path, capsys, clean_plugins):
    spec = tmp_path / "s.json"
    spec.write_text(json.dumps({**APP_B, "loss": "my_dpo", "loss_params": {"beta": 0.7}, "weight_decay": 0.1}))
    code, out, err = run_cli(["solve", str(spec), "--json", "--plugin", dpo_clone], capsys)
    assert code == 0, err
    mine = json.loads(out)
    ref = bl.solve({**APP_B, "loss": "dpo", "loss_params": {"beta": 0.7}, "weight_decay": 0.1})
    assert np.abs(np.subtract(mine["exact"], ref.exact)).max() < 1e-12
    assert mine["exact_converged"] and mine["exact_residual"] < 1e-10


def test_spec_naming_a_plugin_loss_does_not_load_code(dpo_clone, tmp_path, capsys, clean_plugins):
    spec = tmp_path / "s.json"
    spec.write_text(json.dumps({**APP_B, "loss": "my_dpo"}))
    code, out, err = run_cli(["solve", str(spec)], capsys)
    assert code == 2 and "unknown loss 'my_dpo'" in err and "--plugin" in err and len(err.strip().splitlines()) == 1


def test_plugin_loss_in_list_fixed_points_and_cite(dpo_clone, capsys, clean_plugins):
    code, out, _ = run_cli(["--plugin", dpo_clone, "list", "losses"], capsys)
    assert code == 0 and any(line.split()[:1] == ["my_dpo"] and line.endswith("(plugin)") for line in out.splitlines())
    code, out, _ = run_cli(["--plugin", dpo_clone, "fixed-points", "--only", "my_dpo,dpo", "--json"], capsys)
    res = json.loads(out)
    row = next(r for r in res["records"] if r["loss"] == "my_dpo")
    dpo = next(r for r in res["records"] if r["loss"] == "dpo")
    assert row["shares_dpo"] is True and np.abs(np.subtract(row["policy"], dpo["policy"])).max() < 1e-10
    assert row["tv_rlhf"] < 1e-9  # DPO's population optimum is RLHF's (Kong et al. Eq. 10–11)
    code, out, _ = run_cli(["cite", "my_dpo", "--plugin", dpo_clone], capsys)
    assert code == 0 and "used by: my_dpo" in out


def test_plugin_loss_in_weight_decay_and_early_stopping(dpo_clone, capsys, clean_plugins, tmp_path):
    code, out, err = run_cli(["run", "weight-decay", "--alpha", "0.1", "--loss", "dpo,my_dpo", "--json", "--plugin", dpo_clone], capsys)
    assert code == 0, err
    recs = {r["loss"]: r for r in json.loads(out)["records"]}
    assert recs["my_dpo"]["counterpart"] == recs["dpo"]["counterpart"] == "rlhf[reverse_kl]"
    assert abs(recs["my_dpo"]["exact_distance"] - recs["dpo"]["exact_distance"]) < 1e-12
    assert recs["dpo"]["exact_distance"] > 1e-2  # weight decay separates them (Kong Prop. 3.2)
    # --out: without it the sweep writes runs/early-stopping-TIMESTAMP/ into the working directory (the clone)
    code, out, err = run_cli(["run", "early-stopping", "--steps", "300", "--n-log", "5", "--no-compare-constant",
                              "--loss", "my_dpo", "--json", "--plugin", dpo_clone, "--out", str(tmp_path / "es")], capsys)
    assert code == 0, err
    assert json.loads(out)["exact"]["my_dpo"]["exact_distance"] < 1e-9


def test_example_plugin_meets_its_declared_oracle(capsys, clean_plugins):
    """examples/my_losses.py: the solver's optimum of tempered DPO equals the derived closed
    form π ∝ π_ref·exp(τr/β) (an independent derivation, the loss's ``oracle``)."""
    spec = os.path.join(ROOT, "examples", "tempered_dpo.json")
    code, out, err = run_cli(["--plugin", EXAMPLE, "solve", spec, "--json"], capsys)
    assert code == 0, err
    r = json.loads(out)
    assert r["oracle_applies"] and r["exact_vs_oracle_tv"] < 1e-12 and r["adam_vs_oracle_tv"] < 1e-8
    # Kong Eq. 27: BT preferences of π*, so e^r ∝ π*; β = 1, τ = 0.5: π ∝ π_ref·π*^0.5
    want = np.array([0.4, 0.4, 0.2]) * np.array([0.6, 0.3, 0.1]) ** 0.5
    assert np.abs(np.asarray(r["exact"]) - want / want.sum()).max() < 1e-12
    code, _, err = run_cli(["--plugin", EXAMPLE, "solve", spec], capsys)
    assert code == 0


@pytest.mark.parametrize("body, msg", [
    ("x = 1 / 0\n", "ZeroDivisionError (line 1): division by zero"),
    ("def f(:\n", "syntax error at line 1"),
    ("import bandit_lab as bl\n@bl.loss()\ndef dpo(inputs, hp):\n    return 0.0\n", "'dpo' is already registered"),
    ("import bandit_lab as bl\n@bl.loss()\ndef vec(inputs, hp):\n    return inputs.logp\n", "must return a scalar"),
    ("import bandit_lab as bl\n@bl.loss()\ndef broken(inputs, hp):\n    return hp['nope']\n", "fails on a 3-response bandit: KeyError"),
    ("import bandit_lab as bl\n@bl.loss(defaults={'beta': 'x'})\ndef s(inputs, hp):\n    return 0.0\n", "defaults must map names to numbers"),
    ("import bandit_lab as bl\n@bl.loss(name='Bad Name')\ndef s(inputs, hp):\n    return 0.0\n", "loss name must be"),
])
def test_bad_plugins_are_one_line_exit_2(tmp_path, body, msg, capsys, clean_plugins):
    p = tmp_path / "bad.py"
    p.write_text(body)
    before = set(bl.loss_registry())
    code, out, err = run_cli(["--plugin", str(p), "list", "losses"], capsys)
    assert code == 2 and msg in err and err.startswith("bandit-lab: error: --plugin") and len(err.strip().splitlines()) == 1
    assert set(bl.loss_registry()) == before  # nothing half-registered


def test_missing_or_non_python_plugin(tmp_path, capsys):
    code, _, err = run_cli(["--plugin", str(tmp_path / "nope.py"), "list"], capsys)
    assert code == 2 and "no such file" in err
    (tmp_path / "x.json").write_text("{}")
    code, _, err = run_cli(["--plugin", str(tmp_path / "x.json"), "list"], capsys)
    assert code == 2 and "a Python file" in err


def test_plugin_option_anywhere():
    assert hoist_plugins(["run", "weight-decay", "--plugin", "a.py", "--loss", "x", "--plugin=b.py"]) == \
        ["--plugin", "a.py", "--plugin=b.py", "run", "weight-decay", "--loss", "x"]
    assert hoist_plugins(["solve", "--", "--plugin", "a.py"]) == ["solve", "--", "--plugin", "a.py"]


def test_registered_in_python_without_a_file(clean_plugins):
    @bl.loss(defaults={"beta": 1.0}, counterpart=("rlhf", {"reward": "ipo"}))
    def py_ipo(inputs, hp):
        hw, hl = bl.log_ratios(inputs)
        return bl.expect(inputs.data, (hw - hl - 0.5 / hp["beta"]) ** 2)

    try:
        with bl.x64():
            pb = bl.Problem.create([0.5, 0.3, 0.2], pi_star=[0.5, 0.3, 0.2], pairs="uniform")
            o = bl.make_objective(pb, "py_ipo", {"beta": 0.3}, weight_decay=0.2)
            mine, ref = bl.solve_exact(o), bl.solve_exact(bl.make_objective(pb, "ipo", {"beta": 0.3}, weight_decay=0.2))
            assert o.counterpart().label == "rlhf[reverse_kl,ipo]"
        assert np.abs(mine.policy - ref.policy).max() < 1e-12
    finally:
        bl.unregister_loss("py_ipo")
    with pytest.raises(bl.BanditError, match="built in"):
        bl.unregister_loss("dpo")


def _reregistered(name: str, run) -> list:
    """Register a scaled DPO under ``name`` four times (β_eff = 1, 3, 1, 3), ``run(pb)`` after each,
    unregistering and collecting garbage in between (so a freed LossSpec's id could be reused)."""
    pb = bl.Problem.create([0.4, 0.4, 0.2], pi_star=[0.6, 0.3, 0.1], pairs="uniform")
    out = []
    for scale in (1.0, 3.0, 1.0, 3.0):
        def fn(inputs, hp, scale=scale):
            hw, hl = bl.log_ratios(inputs)
            return bl.expect(inputs.data, -jax.nn.log_sigmoid(scale * hp["beta"] * (hw - hl)))
        bl.loss(name=name, defaults={"beta": 1.0})(fn)
        with bl.x64():
            out.append(run(pb))
        bl.unregister_loss(name)
        gc.collect()
    return out


def test_reregistered_name_does_not_reuse_the_old_compiled_program(clean_plugins):
    """Compiled trainers/solvers are cached by objective signature: it includes the LossSpec's
    identity, so a loss re-registered under the same name runs its new function."""
    def run(pb):
        exact = bl.solve_exact(bl.make_objective(pb, "reused")).policy
        tr = bl.train_policy(bl.make_objective(pb, "reused"), bl.TrainConfig(steps=3000))
        assert np.abs(tr.policy - exact).max() < 1e-8
        return exact

    out = _reregistered("reused", run)
    assert all(np.abs(out[i] - out[i + 1]).max() > 0.05 for i in range(3))  # β_eff = 1 vs 3: different optima


def test_mixture_of_a_reregistered_term_runs_the_new_term(clean_plugins):
    """A mixture names its terms: re-registering a user term must not reuse the compiled program."""
    out = _reregistered("term", lambda pb: bl.solve_exact(bl.make_objective(pb, "mixture", {"terms": ["term", "sft"]})).policy)
    assert all(np.abs(out[i] - out[i + 1]).max() > 1e-3 for i in range(3))
