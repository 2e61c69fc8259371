"""The pieces behind trustworthy input, each against an independent reference: the printed JSON
Schema read by another library (``jsonschema``), budget estimates against the arrays a run really
allocates and against enumeration, guards against trajectories whose first bad step is known,
atomic writes against injected failures, the CLI's generated options against ``command_line``."""
from __future__ import annotations

import dataclasses
import io
import json
import os
import subprocess
import sys
import tomllib
import warnings

import jsonschema
import numpy as np
import pytest

from bandit_lab.infra import budget, files, guards, progress
from bandit_lab import errors, experiments, schema
from bandit_lab.errors import BanditError, DivergenceError

ROOT = os.path.join(os.path.dirname(__file__), "..")
EXAMPLES = os.path.join(ROOT, "examples")


# specs whose loss comes from the example plugin (examples/my_losses.py; tests/test_api.py runs them)
PLUGIN_SPECS = ("tempered_dpo.json",)


def _examples():
    for name in sorted(os.listdir(EXAMPLES)):
        if not name.endswith((".json", ".toml")) or name in PLUGIN_SPECS:
            continue
        p = os.path.join(EXAMPLES, name)
        with open(p, "rb") as fh:
            yield name, (tomllib.load(fh) if name.endswith(".toml") else json.load(fh))


# ----------------------------------------------------------------------------- JSON Schema

@pytest.fixture(scope="module")
def validator(capsysbinary=None):
    from cli.main import main

    buf = io.StringIO()
    old = sys.stdout
    sys.stdout = buf
    try:
        with pytest.raises(SystemExit) as e:
            main(["schema"])
    finally:
        sys.stdout = old
    assert e.value.code == 0
    js = json.loads(buf.getvalue())  # `bandit-lab schema` prints exactly one JSON document
    jsonschema.Draft202012Validator.check_schema(js)
    return jsonschema.Draft202012Validator(js)


def test_schema_accepts_every_example(validator):
    names = []
    for name, spec in _examples():
        assert not list(validator.iter_errors(spec)), (name, [e.message for e in validator.iter_errors(spec)])
        schema.parse(spec, name)  # and the model agrees
        names.append(name)
    assert len(names) >= 5


MALFORMED = [
    {"pi_ref": [0.5, 0.5]},  # no preference
    {"pi_ref": [0.5, 0.5], "preference": {"reward": [0, 1]}, "optimizer": {"lr": "0.1"}},
    {"pi_ref": [0.5, 0.5], "preference": {"reward": [0, 1]}, "optimizer": {"lr": 0}},
    {"pi_ref": [0.5, 0.5], "preference": {"reward": [0, 1]}, "optimizer": {"steps": 2.5}},
    {"pi_ref": [0.5, 0.5], "preference": {"reward": [0, 1]}, "optimizer": {"lrr": 0.1}},
    {"pi_ref": [0.5, 0.5], "preference": {"reward": [0, 1]}, "optimizer": "adam"},
    {"pi_ref": [0.5, 0.5], "preference": {"reward": [0, 1]}, "weight_decay": "0.1"},
    {"pi_ref": [0.5, 0.5], "preference": {"reward": [0, 1]}, "weight_decay": True},
    {"pi_ref": [0.5, 0.5], "preference": {"reward": [0, 1]}, "seed": -1},
    {"pi_ref": [0.5, 0.5], "preference": {"reward": [0, 1]}, "parameterization": {"name": "softmax", "temperature": 2}},
    {"pi_ref": [0.5, 0.5], "preference": {"reward": [0, 1]}, "parameterization": "softmaxx"},
    {"pi_ref": [0.5, 0.5], "preference": {"reward": [0, 1]}, "data": {"sampled": 0}},
    {"pi_ref": [0.5, 0.5], "preference": {"reward": [0, 1]}, "loss": "nope"},
    {"pi_ref": [0.5, 0.5], "preference": {"reward": [0, 1]}, "loss_params": {"betta": 1}},
    {"pi_ref": [0.5, 0.5], "preference": {"reward": [0, 1]}, "loss": "fdpo", "loss_params": {"beta": "1"}},
    {"pi_ref": [0.5, 0.5], "preference": {"reward": [0, 1]}, "pairs": [[0, 1]]},
    {"pi_ref": [0.5, 0.5], "preference": {"reward": [0, 1], "pi_star": [1, 0]}},
    {"pi_ref": [0.5, 0.5], "preference": {"reward": ["0", 1]}},
    {"pi_ref": [0.5, 0.5], "preference": {"reward": [0, 1]}, "colour": "red"},
]


@pytest.mark.parametrize("spec", MALFORMED)
def test_schema_rejects_malformed_specs(validator, spec):
    assert list(validator.iter_errors(spec)), spec
    with pytest.raises(BanditError):
        schema.parse(spec)


def test_schema_lists_every_loss_with_its_parameters(validator):
    from bandit_lab import losses

    js = validator.schema
    assert set(js["properties"]["loss"]["enum"]) == set(losses.registry())
    ok = {"pi_ref": [0.5, 0.5], "preference": {"reward": [0, 1]}, "loss": "fdpo", "loss_params": {"beta": 2.0, "divergence": "js"}}
    assert not list(validator.iter_errors(ok))
    assert list(validator.iter_errors({**ok, "loss": "dpo"}))  # dpo has no `divergence`


def test_messages_name_the_field_and_suggest():
    cases = {
        '"optimizer": {"lr": Infinity}': "optimizer.lr: must be a finite number in (0, 1e+06], got inf",
        '"optimizer": {"lrr": 1}': "optimizer.lrr: unknown key; did you mean 'lr'?",
        '"parameterization": {"name": "mixture", "pi0": [0.5, 0.5], "pi1": [1, 0], "temprature": 1}': "parameterization.temprature: unknown key",
        '"loss_params": {"bta": 1}': "loss_params.bta: loss 'dpo' has no parameter 'bta'; did you mean 'beta'?",
        '"pairs": [[0, true, 1.0]]': "pairs[0][1]: a response index must be an integer, got true (a boolean)",
        '"odd key\\nwith newline": 1': 'spec.json: ["odd key\\nwith newline"]: unknown spec key',
    }
    for text, msg in cases.items():
        raw = json.loads('{"pi_ref": [0.5, 0.5], "preference": {"reward": [0, 1]}, ' + text + "}")
        with pytest.raises(BanditError) as e:
            schema.parse(raw, "spec.json")
        assert msg in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_parse_is_the_one_validator_of_build():
    """spec.build accepts exactly what the schema accepts (a dict or a validated Spec)."""
    from bandit_lab import spec as spec_mod

    for name, raw in _examples():
        s = schema.parse(raw)
        a, b = spec_mod.build(raw), spec_mod.build(s)
        assert a[0].label == b[0].label and a[1] == b[1] and a[2] == b[2]


# ----------------------------------------------------------------------------- experiment options

def _perturbed(exp):
    """Settings with every field moved off its default (the CLI round trip must carry each)."""
    kw = {}
    for o in experiments.options(exp.settings):
        d = o.default
        if o.kind is bool and not o.many:
            kw[o.name] = not d
        elif o.many:
            kw[o.name] = tuple(d[:1]) if len(d) > 1 else (tuple(o.choices[:1]) if o.choices else tuple(d) * 2)
        elif o.choices:
            kw[o.name] = next(c for c in o.choices if c != d)
        elif o.kind is int:
            kw[o.name] = d + 1
        elif o.kind is float:
            kw[o.name] = 1 / 3 if d is None else d * (1 + 1 / 3) + (1 / 7 if d == 0 else 0)
        else:
            kw[o.name] = d
    return exp.settings(**kw)


@pytest.mark.parametrize("name", sorted(experiments.registry()))
def test_command_line_round_trips_through_the_cli(name):
    """``command_line`` writes what the generated typer command parses back, exactly."""
    import shlex

    from cli.main import experiment_command

    exp = experiments.registry()[name]
    s = _perturbed(exp)
    argv = shlex.split(experiments.command_line(name, s))
    assert argv[:3] == ["bandit-lab", "run", name]
    cmd = experiment_command(exp, action=lambda exp, overrides, common: overrides)
    parsed = cmd.main(args=argv[3:], standalone_mode=False)
    assert exp.settings(**parsed) == s
    # and the defaults give the bare command
    assert experiments.command_line(name, exp.settings()) == f"bandit-lab run {name}"


@pytest.mark.parametrize("name", sorted(experiments.registry()))
def test_every_option_is_typed_ranged_and_costed(name):
    exp = experiments.registry()[name]
    for o in experiments.options(exp.settings):
        assert o.help, (name, o.name)
        if o.kind in (int, float):
            assert o.valid is not None, f"{name} --{o.name}: declare its range (bandit_lab.infra.bounds)"
    s = exp.settings()
    assert callable(getattr(s, "cost", None)), f"{name}: settings need a cost() for the budget"
    c = s.cost()
    assert 0 < c.memory < budget.memory_limit() and 0 <= c.work < budget.work_limit()
    experiments.make_settings(exp, exp.quick)  # the CI settings pass validation and the budget


def test_help_shows_types_ranges_and_defaults(capsys):
    from cli.main import main

    with pytest.raises(SystemExit) as e:
        main(["run", "weight-decay", "--help"])
    out = " ".join(capsys.readouterr().out.replace("│", " ").split())  # rich wraps the help into a box
    assert e.value.code == 0
    for text in ("--beta", "NUMBER", "in [1e-06, 1e+06]", "default: 1.0", "--with-js", "--no-with-js", "adam|sgd", "INTEGER",
                 "0.6,0.3,0.1", "--n-alphas", "in [2,"):
        assert text in out, text


def test_index_equals_registry():
    """``bandit-lab run``'s import-free index (ast) agrees with the imported registry."""
    from cli.main import experiment_index

    idx = experiment_index()
    reg = experiments.registry()
    assert list(idx) == list(reg)
    for n, e in reg.items():
        assert (idx[n].summary, idx[n].reference) == (e.summary, e.reference)
        assert __import__(f"bandit_lab.experiments.{idx[n].module}", fromlist=["EXPERIMENT"]).EXPERIMENT is e


def test_cold_run_imports_one_experiment_and_help_no_jax():
    code = """
import sys
from cli.main import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
mods = sorted(m for m in sys.modules if m.startswith("bandit_lab.experiments."))
print("RESULT", "jax" in sys.modules, ",".join(mods), "bandit_lab.schema" in sys.modules, "rich" in sys.modules, file=sys.stderr)
"""
    # (the persistent compilation cache, on by default, configures JAX in the root callback)
    r = subprocess.run([sys.executable, "-c", code, "--no-cache", "run", "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert "RESULT False" in r.stderr and "early-stopping" in r.stdout, r.stderr[-500:]
    r = subprocess.run([sys.executable, "-c", code, "run", "weight-decay", "--steps", "1e12"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    line = [x for x in r.stderr.splitlines() if x.startswith("RESULT")][0]
    assert line.split()[2] == "bandit_lab.experiments.weight_decay", line  # one experiment module
    assert line.split()[3] == "False" and line.split()[4] == "False", line  # no spec schema, no rich without a terminal
    # `simplex` lives in simplex_view.py: found through the index, not by guessing the file name
    r = subprocess.run([sys.executable, "-c", code, "run", "simplex", "--steps", "1e12"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    line = [x for x in r.stderr.splitlines() if x.startswith("RESULT")][0]
    assert set(line.split()[2].split(",")) == {"bandit_lab.experiments.simplex_view", "bandit_lab.experiments.mode_seeking"}, line


# ----------------------------------------------------------------------------- budget

def test_loss_trajectory_estimate_matches_the_real_arrays():
    """The dominant memory term of a long run, against what train_batch really returns."""
    from bandit_lab.core.objective import make_objective
    from bandit_lab.core.problems import Problem
    from bandit_lab.runner import train_batch
    from bandit_lab.core.train import TrainConfig

    pb = Problem.create([0.4, 0.4, 0.2], pi_star=[0.6, 0.3, 0.1])
    objs = [make_objective(pb, "dpo"), make_objective(pb, "ipo")]
    steps, points = 700, 5
    hps = [[{**o.hp, "lr": 0.05, "weight_decay": 0.01 * k} for k in range(points)] for o in objs]
    trajs = train_batch(objs, TrainConfig(steps=steps, log_steps=(0, steps)), hps)
    real = sum(np.asarray(t.loss).nbytes for t in trajs)
    est = budget.training(steps=steps, responses=3, runs=2 * points)
    traj_part = 2 * points * (steps + 1) * 8
    assert real == traj_part  # one float64 per step, per run
    assert est.memory >= 2 * real  # the estimate counts the scan's copy as well


def test_sampling_estimate_matches_jax_categorical():
    """jax.random.categorical draws one Gumbel variate per sample *and per category*."""
    import jax

    n, cells = 64, 9
    jaxpr = jax.make_jaxpr(lambda k: jax.random.categorical(k, np.zeros(cells), shape=(n,)))(jax.random.key(0))
    sizes = [int(np.prod(v.aval.shape)) for eq in jaxpr.jaxpr.eqns for v in eq.outvars if hasattr(v.aval, "shape")]
    assert max(sizes) == n * cells
    assert budget.sampling(n, 3).memory >= n * cells * 8


@pytest.mark.parametrize("V, T, eos", [(2, 1, False), (2, 5, False), (3, 4, False), (4, 6, False), (3, 3, True), (4, 5, True), (5, 2, True)])
def test_tree_size_matches_enumeration(V, T, eos):
    from bandit_lab.tokens import TokenTree

    n = budget.tree_responses(V, T, eos)
    assert n == TokenTree.create(V, T, eos).n_responses


@pytest.mark.timing
def test_tree_refused_without_computing_v_to_the_t():
    import time

    t0 = time.perf_counter()
    for V, T, eos in [(3, 10**12, False), (3, 10**15, True), (10**6, 10**6, False), (2, 10**18, False)]:
        with pytest.raises(budget.BudgetError, match="sequences; exact enumeration is limited to"):
            budget.tree_responses(V, T, eos)
    assert time.perf_counter() - t0 < 0.1


def test_limits_parse_and_lift():
    assert budget.parse_size("16G") == 16 * 2**30 and budget.parse_size("512m") == 512 * 2**20 and budget.parse_size("2e9") == 2e9
    assert budget.parse_duration("90s") == 90 and budget.parse_duration("2h") == 7200 and budget.parse_duration("30m") == 1800
    for bad in ("", "x", "-1G", "1Q", "nanG", "infG"):
        with pytest.raises(BanditError):
            budget.parse_size(bad)
    big = budget.training(steps=10**9, responses=3, runs=6)
    with pytest.raises(budget.BudgetError, match="--max-memory"):
        budget.check(big, "x")
    try:
        budget.set_limits(memory=1e14, work_seconds=1e9)
        budget.check(big, "x")  # lifted
    finally:
        budget.set_limits()
    assert budget.memory_limit() == 0.25 * budget.physical_memory()


# ----------------------------------------------------------------------------- guards

class _T:
    def __init__(self, loss, policy):
        self.loss, self.policy = np.asarray(loss, float), np.asarray(policy, float)


class _O:
    label = "dpo"
    hp = {"beta": 1.0}


def test_guard_reports_the_first_bad_step():
    loss = np.linspace(1, 50, 11)[None].repeat(3, 0)
    loss[1, 7:] = np.inf
    loss[1, 9] = np.nan
    pol = np.full((3, 1, 2), 0.5)
    ok = [_T(loss[[0, 2]], pol[[0, 2]])]
    assert guards.check_training([_O()], None, [[{"lr": 1.0}, {"lr": 2.0}]], ok) is ok
    with pytest.raises(DivergenceError) as e:
        guards.check_training([_O()], type("C", (), {"optimizer": "sgd"})(), [[{"lr": 1.0}, {"lr": 2.0}, {"lr": 3.0}]], [_T(loss, pol)])
    msg = str(e.value)
    assert "dpo (beta=1, lr=2)" in msg and "the loss is inf at step 7 of 10" in msg
    assert "the learning rate lr=2 is too large for sgd" in msg and "the loss was growing" in msg
    loss0 = np.ones((1, 5))
    loss0[0, 0] = np.nan
    with pytest.raises(DivergenceError, match="at step 0 of 4.*already non-finite at the initial point"):
        guards.check_training([_O()], None, [[{"lr": 1.0}]], [_T(loss0, pol[:1])])
    badpol = pol[:1].copy()
    badpol[0, 0, 1] = np.nan
    with pytest.raises(DivergenceError, match="final policy is non-finite after 10 steps"):
        guards.check_training([_O()], None, [[{"lr": 1.0}]], [_T(loss[:1], badpol)])


def test_guard_on_a_real_divergence_agrees_with_the_trajectory():
    from bandit_lab.core.objective import make_objective
    from bandit_lab.core.problems import Problem
    from bandit_lab.core.train import TrainConfig, make_train, run_many

    pb = Problem.create([0.4, 0.4, 0.2], reward=[1.0, 0.0, -1.0])
    o = make_objective(pb, "ipo")
    cfg = TrainConfig(optimizer="sgd", steps=100, schedule="constant", log_steps=(0, 100))
    (traj,) = run_many([make_train(o, cfg)], [{"beta": np.array([1.0]), "weight_decay": np.array([0.0]), "lr": np.array([1e3])}])
    first = int(np.argmax(~np.isfinite(np.asarray(traj.loss[0]))))  # the independent reading
    assert first > 0
    with pytest.raises(DivergenceError, match=rf"at step {first} of 100"):
        guards.check_training([o], cfg, [[{"lr": 1e3}]], [traj])


def test_nonfinite_result_paths():
    assert guards.first_nonfinite({"a": [1.0, {"b": np.array([0.0, np.nan])}]}) == "a[1].b[1]"
    assert guards.first_nonfinite({"records": [{"policy": [0.5, float("inf")]}]}) == "records[0].policy[1]"
    assert guards.first_nonfinite({"x": None, "y": "nan", "z": [1, 2]}) is None
    with pytest.raises(DivergenceError, match="non-finite value at records\\[0\\].tv"):
        guards.check_result({"records": [{"tv": float("nan")}]}, "run x")


def test_exit_codes_are_one_table():
    import cli.main as m

    assert (m.EXIT_BAD_INPUT, m.EXIT_INTERNAL, m.EXIT_DIVERGED, m.EXIT_INTERRUPTED) == (
        errors.EXIT_BAD_INPUT, errors.EXIT_INTERNAL, errors.EXIT_DIVERGED, errors.EXIT_INTERRUPTED) == (2, 3, 4, 130)
    assert issubclass(budget.BudgetError, BanditError) and not issubclass(DivergenceError, BanditError)


def test_runtime_warnings_never_precede_the_error_line(capsys, monkeypatch, tmp_path):
    from bandit_lab import spec as spec_mod
    from cli.main import main

    def noisy(path):
        warnings.warn("overflow encountered in exp", RuntimeWarning)
        np.log(np.zeros(1))
        raise BanditError("spec x: optimizer.lr: must be a finite number")

    monkeypatch.setattr(spec_mod, "load", noisy)
    with pytest.raises(SystemExit) as e:
        main(["solve", str(tmp_path / "x.json")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.strip().splitlines() == ["bandit-lab: error: spec x: optimizer.lr: must be a finite number"]


# ----------------------------------------------------------------------------- files

def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    p = tmp_path / "r.json"
    files.write_json(str(p), {"a": 1})
    with pytest.raises(RuntimeError):
        with files.atomic(str(p)) as fh:
            fh.write('{"half": ')
            raise RuntimeError("killed mid-write")
    assert json.loads(p.read_text()) == {"a": 1}
    assert sorted(os.listdir(tmp_path)) == ["r.json"]  # no temporary left
    with pytest.raises(ValueError):
        files.write_json(str(p), {"x": float("nan")})  # NaN is never written
    assert json.loads(p.read_text()) == {"a": 1} and sorted(os.listdir(tmp_path)) == ["r.json"]
    with pytest.raises(BanditError, match=r"cannot write .*: No such file or directory"):
        files.write_text(str(tmp_path / "missing" / "x.txt"), "x")


def test_prepare_out_creates_probes_and_discards(tmp_path):
    out = files.prepare_out(str(tmp_path / "a" / "b" / "c"))
    assert os.path.isdir(out) and os.listdir(out) == []
    out.discard()
    assert os.listdir(tmp_path) == []  # every directory it created, innermost first
    keep = tmp_path / "keep"
    keep.mkdir()
    o2 = files.prepare_out(str(keep))
    o2.discard()
    assert keep.is_dir()  # not ours: left alone
    (keep / "f").write_text("x")
    with pytest.raises(BanditError, match="--overwrite"):
        files.prepare_out(str(keep))
    assert files.prepare_out(str(keep), overwrite=True) == str(keep)


# ----------------------------------------------------------------------------- progress

class _TTY(io.StringIO):
    def isatty(self):
        return True


def test_progress_is_silent_off_a_terminal_and_never_on_stdout(capsys):
    with progress.bar("x", total=3) as p:
        p.advance()
        p.update("y")
    out, err = capsys.readouterr()
    assert out == "" and err == ""
    stream = _TTY()
    with progress.bar("reproduce: weight-decay", total=2, stream=stream) as p:
        p.advance()
        p.advance()
    assert "reproduce" in stream.getvalue()  # drawn on the given (stderr) stream
    assert capsys.readouterr().out == ""


def test_progress_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("BANDIT_LAB_NO_PROGRESS", "1")
    assert not progress.enabled(_TTY())


def test_settings_dataclasses_are_frozen_and_typed():
    for name, exp in experiments.registry().items():
        assert dataclasses.is_dataclass(exp.settings) and exp.settings.__dataclass_params__.frozen, name
