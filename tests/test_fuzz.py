"""Property-based fuzz of the command line (issue 24 item 6): random JSON specs and random option
strings, end to end through ``cli.main.main(argv)`` in process. The promise, for every input:
exit 0, 1 (a check failed), 2 (bad input: exactly one stderr line ``bandit-lab: error: …``) or 4
(diverged: one line) — never a traceback, never "internal error", never a NaN/Infinity printed,
never a temporary file left behind.

The default variant caps every job with ``--max-work 0.001s`` (every command checks its budget
before it compiles, so valid inputs end as one budget line, exit 2, in milliseconds) and stops
drawing after :data:`BUDGET_S` seconds; the ``slow`` variant runs valid inputs for real (a
``--max-work 20s`` cap) with many more examples."""
from __future__ import annotations

import functools
import json
import os
import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli.main import main

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
BUDGET_S = 6.0  # wall-clock seconds of work in each default fuzz test (hypothesis has no time budget of its own)
NONFINITE = re.compile(r"\b(nan|NaN|inf|Infinity)\b")
NAN = re.compile(r"\b(nan|NaN)\b")
GLOBAL = ("--max-work", "--max-memory", "--plugin", "--plugin-timeout", "--float32", "--no-cache")


# ----------------------------------------------------------------------------- harness
def _check_promise(argv, capsys, strict_json):
    code = None
    try:
        main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    finally:  # main() resets the budget when it starts, not when it ends: keep --max-work out of later tests
        import sys

        if "bandit_lab.infra.budget" in sys.modules:
            sys.modules["bandit_lab.infra.budget"].set_limits()
    out, err = capsys.readouterr()
    assert code in (0, 1, 2, 4), (argv, code, err[-1500:])
    assert "Traceback" not in err and "internal error" not in err, (argv, err[-1500:])
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("bandit-lab: warning:")]
    if code in (2, 4):
        assert len(lines) == 1 and lines[0].startswith(("bandit-lab: error: ", "bandit-lab: diverged: ")), (argv, err)
    # a refused or diverged run prints no number at all; a finished one prints no NaN (prose may say "inf")
    assert not (NONFINITE if code != 0 else NAN).search(out), (argv, out[-800:])
    if code == 0 and strict_json and "--json" in argv and out.strip():
        json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} in --json output"))
    for d, _, fs in os.walk("."):
        assert not [f for f in fs if f.endswith(".tmp")], (argv, d, fs)
    return code


class Budget:
    """Stop doing work after ``seconds`` (later examples pass trivially): a bounded default test."""

    def __init__(self, seconds):
        self.end = time.monotonic() + seconds

    def spent(self) -> bool:
        return time.monotonic() > self.end


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ----------------------------------------------------------------------------- random JSON specs
def _examples():
    out = []
    for f in sorted(os.listdir(EXAMPLES)):
        if f.endswith(".json"):
            with open(os.path.join(EXAMPLES, f)) as fh:
                out.append(json.load(fh))
    return out


_SCALARS = (st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.sampled_from([0, 1, -1, 2, 3, 10**30, -0.0])
            | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=6)
            | st.sampled_from(["dpo", "ipo", "rlhf", "softmax", "uniform", "adam", "cosine", "params", "1e300", ""]))
_JSON = st.recursive(_SCALARS, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4),
                     max_leaves=12)
_KEYS = st.sampled_from(["pi_ref", "preference", "pi_star", "reward", "matrix", "loss", "loss_params", "beta", "optimizer", "lr",
                         "steps", "schedule", "data", "sampled", "pairs", "init", "weight_decay", "penalty", "seed",
                         "parameterization", "name", "context_weight", "reward_floor", "features", "pi0", "pi1", "x"])


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:4]):
            yield from _paths(v, prefix + (i,))


@st.composite
def random_specs(draw):
    """A mutated example spec (1–3 keys replaced, added or deleted, anywhere) or any JSON value."""
    if draw(st.integers(0, 9)) == 0:
        return draw(_JSON)
    spec = json.loads(json.dumps(draw(st.sampled_from(_examples()))))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(list(_paths(spec))[1:] or [("loss",)]))
        parent = spec
        for k in path[:-1]:
            parent = parent[k]
        how = draw(st.sampled_from(["replace", "add", "delete"]))
        key = path[-1]
        if how == "replace" or not isinstance(parent, dict):
            parent[key] = draw(_JSON)
        elif how == "add":
            parent[draw(_KEYS)] = draw(_JSON)
        else:
            del parent[key]
    return spec


def _fuzz_spec(spec, capsys, cap, budget, command="solve"):
    if budget is not None and budget.spent():
        return
    text = json.dumps(spec, allow_nan=True)
    with open("spec.json", "w") as fh:
        fh.write(text)
    _check_promise(["--max-work", cap, command, "spec.json", "--json"], capsys, strict_json=True)


_BUDGETS: dict = {}


def _budget(name):
    return _BUDGETS.setdefault(name, Budget(BUDGET_S))


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(spec=random_specs())
def test_fuzz_specs(workdir, capsys, spec):
    _fuzz_spec(spec, capsys, "0.001s", _budget("specs"))


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(spec=random_specs(), command=st.sampled_from(["solve", "explore"]))
def test_fuzz_specs_full(workdir, capsys, spec, command):
    _fuzz_spec(spec, capsys, "20s", None, command)


# ----------------------------------------------------------------------------- random option strings
@functools.lru_cache(maxsize=None)
def _commands() -> dict:
    """Command (argv prefix) → its option flags, read from the typer/click commands themselves."""
    import typer

    from cli import main as cli_main

    group = typer.main.get_command(cli_main.app)
    out = {}
    for name, cmd in group.commands.items():
        if name == "run":
            for exp, info in cli_main.experiment_index().items():
                c = cli_main.experiment_command(cli_main._load_experiment(info))
                out[("run", exp)] = tuple(o for p in c.params for o in p.opts if o.startswith("--"))
            continue
        out[(name,)] = tuple(o for p in cmd.params for o in getattr(p, "opts", ()) + getattr(p, "secondary_opts", ())
                             if o.startswith("--"))
    return out


_VALUES = st.one_of(
    st.sampled_from(["0", "1", "-1", "2", "0.5", "1e300", "-1e300", "1e-320", "nan", "inf", "-inf", "1_000", "0x10", "", " ",
                     "1,2", "0.1,nan", ",", "true", "none", "dpo", "ipo,dpo", "bogus", "1e12", "2.5", "99999999999999999999",
                     "/proc/x", "/nonexistent/dir/x", "-", "--", "é", "\x00"]),
    st.text(max_size=8).filter(lambda s: "\x00" not in s),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-10**20, 10**20).map(str),
)


@st.composite
def random_argv(draw):
    commands = _commands()
    prefix = draw(st.sampled_from(sorted(commands)))
    flags = [f for f in commands[prefix] if f not in GLOBAL and f not in ("--help", "--serve", "--plugin")]
    argv = list(prefix)
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.integers(0, 9))
        if kind == 0:
            argv.append(draw(_VALUES))                                   # a stray positional
        elif kind == 1:
            argv.append("--" + draw(st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=10)))   # an unknown option
        elif flags:
            flag = draw(st.sampled_from(flags))
            if draw(st.booleans()):
                argv += [flag, draw(_VALUES)]
            else:
                argv.append(f"{flag}={draw(_VALUES)}" if draw(st.booleans()) else flag)
    return [a for a in argv if "\x00" not in a]


def _fuzz_argv(argv, capsys, cap, budget):
    if budget is not None and budget.spent():
        return
    _check_promise(["--max-work", cap, *argv], capsys, strict_json=False)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(argv=random_argv())
def test_fuzz_options(workdir, capsys, argv):
    _fuzz_argv(argv, capsys, "0.001s", _budget("options"))


@pytest.mark.slow
@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(argv=random_argv())
def test_fuzz_options_full(workdir, capsys, argv):
    _fuzz_argv(argv, capsys, "20s", None)
