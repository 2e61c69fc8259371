"""Bad input by surface (issue 24): check-loss, fixed-points, the on-policy experiments' options and
the Python API. Each case is one reproduction from the issue: exit 2 with one line naming the field
(CLI), or a ``bandit_lab.BanditError`` naming it (API), never an error from inside JAX/NumPy and never
silently accepted. All cases are refused before any compile, so the module costs well under a second
beyond the imports."""
from __future__ import annotations


import numpy as np
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


# ----------------------------------------------------------------------------- Python API, the rest (session 4)
# Each raised from inside JAX/NumPy (AttributeError, shape/broadcast errors, ValueError from
# float()/dict()), ran without bound (OOM, 10⁹ instances), or was silently accepted (a negative
# β, an unknown hp key, `only=[]` running every check, `cite("dpo")` citing 'd', 'p', 'o').
# All are refused before any compile.
@pytest.fixture(scope="module")
def solved():
    with bl.x64():
        pb = bl.Problem.create([0.4, 0.4, 0.2], pi_star=[0.6, 0.3, 0.1], pairs="uniform")
        dpo = bl.make_objective(pb, "dpo", {"beta": 1.0})
        pb2 = bl.Problem.create([0.5, 0.5], pi_star=[0.6, 0.4], pairs="uniform")
        other = bl.make_objective(pb2, "dpo", {"beta": 1.0})
        return pb, dpo, bl.solve_exact(dpo), bl.solve_exact(other)


_API = {
    "train_policy steps=0": (lambda s: bl.train_policy(s[1], steps=0), r"steps: must be an integer in \[1"),
    "train_policy steps=2.5": (lambda s: bl.train_policy(s[1], steps=2.5), r"steps: "),
    "train_policy steps='10'": (lambda s: bl.train_policy(s[1], steps="10"), r"steps: "),  # was TypeError
    "train_policy steps=1e12": (lambda s: bl.train_policy(s[1], steps=10**12), r"train_policy .*memory"),  # was XLA OOM
    "train_policy hp beta str": (lambda s: bl.train_policy(s[1], hp={"beta": "x"}), r"hp\.beta: must be a finite number"),
    "train_policy hp beta -1": (lambda s: bl.train_policy(s[1], hp={"beta": -1.0}), r"hp\.beta: must be > 0"),
    "train_policy hp unknown": (lambda s: bl.train_policy(s[1], hp={"bogus": 1.0}), r"hp: 'dpo' has no hyperparameter 'bogus'"),
    "train_policy hp list": (lambda s: bl.train_policy(s[1], hp={"beta": [1.0, 2.0]}), r"hp\.beta"),
    "train_policy init shape": (lambda s: bl.train_policy(s[1], init=np.zeros(7)), r"init: parameters of shape \(1, 3\)"),
    "train_policy init str": (lambda s: bl.train_policy(s[1], init="x"), r"init: "),
    "train_policy init nan": (lambda s: bl.train_policy(s[1], init=np.full((1, 3), np.nan)), r"init: every parameter must be finite"),
    "TrainConfig steps str": (lambda s: bl.TrainConfig(steps="5").validate(), r"steps must be an integer"),
    "solve_exact objective str": (lambda s: bl.solve_exact("dpo"), r"objective: an Objective"),  # was AttributeError
    "solve_exact hp str": (lambda s: bl.solve_exact(s[1], hp="x"), r"hp: a dict"),
    "solve_exact hp beta str": (lambda s: bl.solve_exact(s[1], hp={"beta": "x"}), r"hp\.beta"),
    "solve_exact hp beta -1": (lambda s: bl.solve_exact(s[1], hp={"beta": -1.0}), r"hp\.beta: must be > 0"),
    "solve_exact init shape": (lambda s: bl.solve_exact(s[1], init=np.zeros(7)), r"init: parameters of shape"),
    "certify objective str": (lambda s: bl.certify("dpo", s[2]), r"objective: an Objective"),
    "certify result None": (lambda s: bl.certify(s[1], None), r"result: an ExactResult"),
    "certify result other problem": (lambda s: bl.certify(s[1], s[3]), r"result: the exact result of another problem"),
    "certify hp str": (lambda s: bl.certify(s[1], s[2], hp="x"), r"hp: a dict"),
    "closed_form problem str": (lambda s: bl.closed_form("x"), r"problem: a Problem"),
    "closed_form loss int": (lambda s: bl.closed_form(s[0], 3), r"loss: a loss name"),
    "closed_form params str": (lambda s: bl.closed_form(s[0], "dpo", "beta=1"), r"loss_params: a dict"),
    "solve int": (lambda s: bl.solve(3), r"spec: a dict or the path"),
    "solve pathlib missing": (lambda s: bl.solve(__import__("pathlib").Path("/nonexistent.json")), r"nonexistent"),
    "find_fixed_points spec int": (lambda s: bl.find_fixed_points(spec=3), r"spec: a dict or the path"),
    "find_fixed_points only int": (lambda s: bl.find_fixed_points(only=3), r"only: a list of loss names"),
    "find_fixed_points only dict": (lambda s: bl.find_fixed_points(only={"dpo": 1}), r"only: a list of loss names"),
    "verify only int": (lambda s: bl.verify(only=3), r"only: a list of check names"),
    "verify only [1]": (lambda s: bl.verify(only=[1]), r"only: a list of check names"),
    "verify only []": (lambda s: bl.verify(only=[]), r"only: an empty list"),  # ran every check
    "verify instances 1e9": (lambda s: bl.verify(only=["dpo-rlhf"], instances=10**9), r"instances: .*over the limit"),
    "make_objective problem str": (lambda s: bl.make_objective("x", "dpo"), r"problem: a Problem"),
    "make_objective params list": (lambda s: bl.make_objective(s[0], "dpo", [1]), r"loss_params: a dict"),
    "check_loss params str": (lambda s: bl.check_loss("dpo", "beta=1"), r"loss_params: a dict"),
    "check_loss seed -1": (lambda s: bl.check_loss("dpo", seed=-1), r"seed: an integer"),
    "cite str": (lambda s: bl.cite("dpo"), r"names: a list of names"),  # cited 'd', 'p', 'o'
    "cite int": (lambda s: bl.cite(3), r"names: a list of names"),
    "load_plugin int": (lambda s: bl.load_plugin(3), r"path: the path of a plugin file"),
    "register_loss str": (lambda s: bl.register_loss("x"), r"spec: a LossSpec"),
}


@pytest.mark.parametrize("case", list(_API))
def test_api_bad_argument(solved, case):
    fn, match = _API[case]
    with bl.x64():
        _raises(lambda: fn(solved), match)


def test_explore_max_memory_after_the_command_applied(cli):
    # was: a 1 kB --max-memory not applied to explore (the root form is tests/test_explore.py's)
    cli(["explore", "--max-memory", "1k"], match=r"over the limit of 1 kB")


# ----------------------------------------------------------------------------- output files
def test_explore_out_on_a_full_device_is_one_line(tmp_path, monkeypatch):
    # was: an internal error; a write failing with ENOSPC leaves the old page and no temporary file
    import errno
    import os

    from bandit_lab import explore

    real_fdopen = os.fdopen

    class Full:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.fh.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: Full(real_fdopen(fd, *a, **k)))
    target = tmp_path / "p.html"
    target.write_text("old page")
    _raises(lambda: explore.write("<html></html>", str(target), overwrite=True), rf"cannot write {target}: No space left on device")
    assert [p.name for p in tmp_path.iterdir()] == ["p.html"] and target.read_text() == "old page"


@pytest.mark.parametrize("where", ["probe", "atomic"])
def test_signal_right_after_a_temporary_file_is_created_leaves_nothing(tmp_path, monkeypatch, where):
    # was (slow interrupt test, `run` at 3.13 s): a SIGINT landing inside tempfile.mkstemp after the
    # file was made, before it returned, left '.bandit-lab-probe-…' in the --out directory
    import os

    from bandit_lab.infra import files

    real = files.create_exclusive

    def then_interrupted(path):
        real(path)
        raise KeyboardInterrupt

    monkeypatch.setattr(files, "create_exclusive", then_interrupted)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        if where == "probe":
            files.prepare_out(str(out))
        else:
            os.mkdir(out)
            files.write_text(str(out / "records.json"), "{}")
    assert not out.exists() if where == "probe" else list(out.iterdir()) == []
