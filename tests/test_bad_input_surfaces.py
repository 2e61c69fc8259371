"""Bad input by surface (issue 24): check-loss, fixed-points, the on-policy experiments' options and
the Python API. Each case is one reproduction from the issue: exit 2 with one line naming the field
(CLI), or a ``bandit_lab.BanditError`` naming it (API), never an error from inside JAX/NumPy and never
silently accepted. All cases are refused before any compile, so the module costs well under a second
beyond the imports."""
from __future__ import annotations


import pytest

import bandit_lab as bl
from bandit_lab.errors import BanditError


# the ``cli`` fixture (the bad-input contract: exit code, one stderr line, no file changed) is
# tests/conftest.py's, shared with tests/test_bad_input.py


# ----------------------------------------------------------------------------- check-loss
@pytest.mark.parametrize("param, match", [
    ('beta="1"', r"beta must be a number; got '1'"),          # a JSON string is not a number
    ("beta=true", r"beta must be a number"),
    ("beta=1e300", r"beta: must be a finite number"),          # was "internal error: LinAlgError"
    ("beta=nan", r"beta must be a number"),
    ("beta=-1e7", r"beta: must be a finite number"),
])
def test_check_loss_param(cli, param, match):
    cli(["check-loss", "dpo", "--param", param], match=match)


# ----------------------------------------------------------------------------- fixed-points
@pytest.mark.parametrize("only, match", [
    ("tdpo1", r"only: 'tdpo1' is a token-tree loss"),
    ("radpo2", r"token-tree loss"),
    ("bogus", r"--only: unknown loss 'bogus'"),
])
def test_fixed_points_only(cli, only, match):
    cli(["fixed-points", "--only", only], match=match)


def test_grpo_fixed_point_std_eps_zero(cli):
    # was "internal error: ZeroDivisionError" (ε = 0 divides by a zero std on a constant group)
    cli(["run", "grpo-fixed-point", "--std-eps", "0"], match=r"--std-eps: must be a finite number in \(0")


# ----------------------------------------------------------------------------- Python API
def _raises(fn, match):
    with pytest.raises(BanditError, match=match):
        fn()


@pytest.mark.parametrize("kwargs, match", [
    ({"only": "dpo"}, r"only: a list of loss names"),           # was 0 records (iterated the string)
    ({"only": ["bogus"]}, r"only: unknown loss 'bogus'"),       # was 0 records
    ({"only": []}, r"only: an empty list"),
    ({"only": ["tdpo1"]}, r"token-tree loss"),
    ({"only": [1]}, r"only: a list of loss names"),
])
def test_api_find_fixed_points(kwargs, match):
    _raises(lambda: bl.find_fixed_points(**kwargs), match)


@pytest.mark.parametrize("kwargs, match", [
    ({"instances": 0}, r"instances: an integer ≥ 1"),           # was: ran the default 20
    ({"instances": -3}, r"instances"),
    ({"instances": 2.5}, r"instances"),
    ({"instances": True}, r"instances"),
    ({"seed": -1}, r"seed: an integer in \[0, 2\^32"),
    ({"seed": 2**40}, r"seed"),
    ({"only": "dpo-rlhf"}, r"only: a list of check names"),
    ({"only": ["bogus"]}, r"unknown check"),
])
def test_api_verify(kwargs, match):
    _raises(lambda: bl.verify(**kwargs), match)


@pytest.mark.parametrize("kwargs, match", [
    ({"b1": 2.0}, r"b1 must be a number in \[0, 1\)"),          # was accepted by validate()
    ({"b1": -0.1}, r"b1"),
    ({"b2": 1.0}, r"b2"),
    ({"b2": "0.9"}, r"b2"),
    ({"eps": float("nan")}, r"eps must be a finite number"),
    ({"eps": -1.0}, r"eps"),
])
def test_api_train_config(kwargs, match):
    _raises(lambda: bl.TrainConfig(**kwargs).validate(), match)


@pytest.fixture(scope="module")
def objective():
    pb = bl.Problem.from_lists(pi_ref=[0.4, 0.4, 0.2], pi_star=[0.6, 0.3, 0.1]) if hasattr(bl.Problem, "from_lists") else None
    if pb is None:
        from bandit_lab import spec as spec_mod

        obj, *_ = spec_mod.build({"pi_ref": [0.4, 0.4, 0.2], "preference": {"pi_star": [0.6, 0.3, 0.1]}, "loss": "ipo"})
        return obj
    return bl.make_objective(pb, "ipo", {"beta": 1.0})


@pytest.mark.parametrize("kwargs, match", [
    ({"seed": -1}, r"seed: an integer in \[0, 2\^32"),           # was silently accepted
    ({"seed": 1.5}, r"seed"),
    ({"lr": 0.0}, r"lr: must be"),
    ({"lr": float("inf")}, r"lr: must be"),
    ({"lr": "0.1"}, r"lr: a number"),
    ({"hp": [1, 2]}, r"hp: a dict"),
    ({"config": {"steps": 3}}, r"config: a TrainConfig"),
])
def test_api_train_policy(objective, kwargs, match):
    _raises(lambda: bl.train_policy(objective, **kwargs), match)


def test_api_train_policy_objective():
    _raises(lambda: bl.train_policy("dpo"), r"objective: an Objective")


# ----------------------------------------------------------------------------- global options anywhere (issue 23 item 5)
def test_global_options_anywhere():
    from cli.main import hoist_globals

    argv = ["run", "weight-decay", "--alpha", "0.1", "--no-cache", "--max-work=2h", "--float32", "--max-memory", "1G"]
    assert hoist_globals(argv) == ["--no-cache", "--max-work=2h", "--float32", "--max-memory", "1G",
                                   "run", "weight-decay", "--alpha", "0.1"]
    assert hoist_globals(["solve", "--", "--no-cache"]) == ["solve", "--", "--no-cache"]


def test_global_option_after_command_applied(cli):
    # was "No such option: --max-memory"; now the 1 kB limit is applied to the command it follows
    cli(["run", "weight-decay", "--alpha", "0.1", "--no-cache", "--max-memory", "1k"], match=r"memory")
