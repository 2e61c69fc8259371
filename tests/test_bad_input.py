"""Bad input, table-driven: every malformed or extreme spec and option is one stderr line naming
the field, with its documented exit code — never a traceback, never "internal error", never a
NaN printed, never a file changed.

The CLI runs in-process (``cli.main.main(argv)``, catching ``SystemExit``; ``capsys`` captures
the streams), in a fresh working directory so a stray ``runs/`` would be seen. The wrong-type
and extreme-number tables are generated from the spec's JSON Schema (``bandit-lab schema``) and
from each experiment's typed options, so a new field is covered without a new line here; the
hypothesis sets over them run a representative subset by default and in full with ``-m slow``.
"""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "examples")
BASE = {"pi_ref": [0.4, 0.4, 0.2], "preference": {"reward": [1.0, 0.0, -1.0]}}


# ----------------------------------------------------------------------------- harness

# ``snapshot`` and the ``cli`` fixture (the bad-input contract) live in tests/conftest.py, shared with
# tests/test_bad_input_surfaces.py
from conftest import snapshot  # noqa: E402


def spec_file(tmp_path, obj, name="spec.json", raw: str | None = None):
    p = tmp_path / name
    p.write_text(raw if raw is not None else json.dumps(obj))
    return str(p)


def with_path(obj, path, value):
    """A deep copy of ``obj`` with the value at ``path`` (keys/indices) replaced."""
    obj = json.loads(json.dumps(obj))
    node = obj
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return obj


def render(path) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out


# ----------------------------------------------------------------------------- tables from the schema

def _schema():
    from bandit_lab import schema

    return schema.Spec.model_json_schema()


def _resolve(js, node):
    while "$ref" in node:
        node = js["$defs"][node["$ref"].split("/")[-1]]
    return node


FULL = [  # base specs in which every object of the schema is present
    {**BASE, "optimizer": {"name": "adam", "lr": 0.05, "steps": 20, "schedule": "cosine"}, "data": {"sampled": 50},
     "weight_decay": 0.1, "penalty": "params", "seed": 1, "reward_floor": 1e-12, "loss": "dpo", "loss_params": {"beta": 1.0},
     "context_weight": [1.0], "pairs": [[0, 1, 1.0], [1, 2, 2.0]], "init": [0.0, 0.0, 0.0], "name": "x", "description": "y"},
    {**BASE, "parameterization": {"name": "mixture", "pi0": [0.4, 0.3, 0.3], "pi1": [1.0, 0.0, 0.0]}, "init": 0.5},
    {**BASE, "parameterization": {"name": "loglinear", "features": [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]}},
    {"pi_ref": [0.4, 0.4, 0.2], "preference": {"pi_star": [0.6, 0.3, 0.1]}},
    {"pi_ref": [0.4, 0.4, 0.2], "preference": {"matrix": [[0.5, 0.8, 0.3], [0.2, 0.5, 0.9], [0.7, 0.1, 0.5]]}},
]


def leaves():
    """(base index, path, json-schema node) for every scalar leaf present in a base spec."""
    js = _schema()
    out = []

    def walk(i, node, value, path):
        node = _resolve(js, node)
        branches = node.get("anyOf") or node.get("oneOf")
        if branches and isinstance(value, dict):  # pick the object branch that names this value
            for b in branches:
                b = _resolve(js, b)
                if "properties" in b and set(value) <= set(b["properties"]):
                    name = b["properties"].get("name", {})
                    if "const" in name and value.get("name") != name["const"]:
                        continue
                    node = b
                    break
        if "properties" in node and isinstance(value, dict):
            for k, v in value.items():
                walk(i, node["properties"][k], v, path + (k,))
        elif isinstance(node.get("additionalProperties"), dict) and isinstance(value, dict):  # loss_params
            for k, v in value.items():
                out.append((i, path + (k,), {"type": "number"} if isinstance(v, (int, float)) else {"type": "string", "enum": []}))
        elif isinstance(value, list):
            out.append((i, path, {"type": "array"}))
        else:
            out.append((i, path, node))

    for i, base in enumerate(FULL):
        walk(i, js, base, ())
    return out


WRONG = {  # values of the wrong JSON type for each kind of leaf
    "number": ["0.1", True, False, None, [0.1], {"v": 1}, float("nan"), float("inf"), float("-inf"), 1e300, -1e300, 10**400],
    "integer": [2.5, 2.0, "3", True, None, [3], -1, 2**64, 10**30, float("nan")],
    "string": [1, 0.5, True, None, ["dpo"], {"name": "x"}, "no-such-name"],
    "array": ["0.1", 1, True, None, {}, [], [[[[0.1]]]], [0.4, "0.4", 0.2], [0.4, None, 0.2], [0.4, True, 0.2],
              [0.4, float("nan"), 0.2], [[0.5, 0.5], [0.5]]],
    "mixed": [None, True, "no-such-name", {"v": 1}, [[[0.1]]], float("nan"), float("inf"), 1e300],  # a union (init)
}


def _kind(node) -> str:
    if node.get("type") in ("number", "integer", "array"):
        return node["type"]
    if "anyOf" in node or "oneOf" in node:
        return "mixed"
    return "string"


def _is_valid(node, v) -> bool:
    """Values of WRONG that happen to be valid for a leaf (e.g. 2.0 ≥ 1 is still not an integer, but
    "no-such-name" is a valid free-text name)."""
    if node.get("type") == "string" and "enum" not in node and "const" not in node:
        return isinstance(v, str)
    return False


CASES = []
for _i, _path, _node in leaves():
    for _v in WRONG[_kind(_node)]:
        if not _is_valid(_node, _v):
            CASES.append((_i, _path, _v))


def _id(c):
    i, path, v = c
    return f"{i}:{render(path)}={str(v)[:12]}"


def representative(cases, key, per_key: int = 2):
    """The first ``per_key`` cases of each key run by default; the rest are marked slow."""
    seen: dict = {}
    out = []
    for c in cases:
        k = key(c)
        seen[k] = seen.get(k, 0) + 1
        out.append(c if seen[k] <= per_key else pytest.param(*c if isinstance(c, tuple) and len(c) == 2 else (c,), marks=pytest.mark.slow))
    return out


@pytest.mark.parametrize("case", representative(CASES, key=lambda c: (c[1], type(c[2]).__name__), per_key=1), ids=[_id(c) for c in CASES])
def test_spec_wrong_value_names_the_field(case, cli):
    i, path, value = case
    bad = with_path(FULL[i], path, value)
    err = cli(["solve", spec_file(cli.tmp, None, raw=json.dumps(bad, allow_nan=True))])
    # the line names the field (or, for an array entry, the field it belongs to)
    assert render(path) in err, err


def test_case_table_is_large_and_covers_every_field():
    paths = {render(p) for _, p, _ in CASES}
    assert len(CASES) >= 200, len(CASES)
    for f in ("optimizer.lr", "optimizer.steps", "optimizer.name", "optimizer.schedule", "data.sampled", "seed", "weight_decay",
              "penalty", "loss", "loss_params.beta", "parameterization.pi0", "parameterization.features", "pi_ref", "init",
              "preference.reward", "preference.matrix", "context_weight", "pairs", "reward_floor"):
        assert f in paths, f


# ----------------------------------------------------------------------------- hand-written spec cases

SPECS = [  # (spec, expected text in the error line)
    ({**BASE, "loss": ["dpo"]}, r"loss: must be a string"),
    ({**BASE, "optimizer": "adam"}, r"optimizer: must be an object, got \"adam\""),
    ({**BASE, "optimizer": None}, r"optimizer: must be an object, got null"),
    ({**BASE, "optimizer": {"steps": "abc"}}, r"optimizer\.steps: must be an integer"),
    ({**BASE, "optimizer": {"lr": [0.1]}}, r"optimizer\.lr: must be a finite number"),
    ({**BASE, "optimizer": {"lr": float("inf")}}, r"optimizer\.lr: must be a finite number in \(0, 1e\+06\], got inf"),
    ({**BASE, "optimizer": {"lr": 1e300}}, r"optimizer\.lr: .*got 1e\+300"),
    ({**BASE, "optimizer": {"steps": 2.5}}, r"optimizer\.steps: must be an integer"),
    ({**BASE, "optimizer": {"steps": 0}}, r"optimizer\.steps: must be an integer in \[1,"),
    ({**BASE, "optimizer": {"steps": 2**63}}, r"optimizer\.steps: must be an integer"),
    ({**BASE, "optimizer": {"lrr": 0.1}}, r"optimizer\.lrr: unknown key; did you mean 'lr'\?"),
    ({**BASE, "optimizer": {"name": "adamw"}}, r"optimizer\.name: must be one of adam, sgd, got \"adamw\"; did you mean 'adam'\?"),
    ({**BASE, "weight_decay": "0.1"}, r"weight_decay: must be a finite number .*\(a string\)"),
    ({**BASE, "weight_decay": True}, r"weight_decay: .*\(a boolean\)"),
    ({**BASE, "weight_decay": 1e300}, r"weight_decay: .*got 1e\+300"),
    ({**BASE, "parameterization": {"name": "softmax", "temperature": 2}}, r"parameterization\.temperature: unknown key"),
    ({**BASE, "parameterization": "mixtur"}, r"parameterization\.name: .*did you mean 'mixture'\?"),
    ({**BASE, "parameterization": "mixture"}, r"parameterization\.pi0: is required"),
    ({**BASE, "parameterization": {"pi0": [1, 0, 0]}}, r"parameterization\.name: is required"),
    ({**BASE, "parameterization": 3}, r"parameterization: must be a name"),
    ({**BASE, "parameterization": {"name": "mixture", "pi0": [0.5, float("nan"), 0.5], "pi1": [1, 0, 0]}}, r"parameterization\.pi0\[1\]: .*got nan"),
    ({**BASE, "parameterization": {"name": "mixture", "pi0": [0.5, 0.5], "pi1": [1, 0, 0]}}, r"parameterization\.pi0: has shape \[2\]; needs K = 3"),
    ({**BASE, "parameterization": {"name": "mixture", "pi0": [0.5, 0.6, 0.1], "pi1": [1, 0, 0]}}, r"parameterization\.pi0: must sum to 1"),
    ({**BASE, "parameterization": {"name": "loglinear", "features": [[1, 2], [3], [4, 5]]}}, r"parameterization\.features: rows have different shapes"),
    ({**BASE, "parameterization": {"name": "loglinear", "features": [[1, "a"], [3, 4], [5, 6]]}}, r"parameterization\.features\[0\]\[1\]: .*\"a\""),
    ({**BASE, "parameterization": {"name": "loglinear", "features": [[1, 2], [3, 4]]}}, r"parameterization\.features: has shape \[2, 2\]; needs \[K = 3"),
    ({**BASE, "parameterization": {"name": "loglinear", "features": [[1.0], [2.0], [3.0]]}, "init": [0.0, 0.0]}, r"init: log-linear weights: needs D = 1"),
    ({**BASE, "parameterization": {"name": "mixture", "pi0": [0.4, 0.3, 0.3], "pi1": [1, 0, 0]}, "init": 1.5}, r"init: θ must lie in \[0, 1\]"),
    ({**BASE, "parameterization": {"name": "mixture", "pi0": [0.4, 0.3, 0.3], "pi1": [1, 0, 0]}, "init": "reference"}, r"init: a mixture starts from a number"),
    ({**BASE, "init": [0.0, 0.0]}, r"init: has shape \[2\]; softmax parameters need shape \[3\]"),
    ({**BASE, "init": 0.5}, r"init: softmax parameters are an array"),
    ({**BASE, "init": [0.0, float("inf"), 0.0]}, r"init\[1\]: .*got inf"),
    ({**BASE, "init": "zeros"}, r"init: must be \"reference\" or \"uniform\" for softmax"),
    ({**BASE, "pairs": [[True, 1, 1.0]]}, r"pairs\[0\]\[0\]: a response index must be an integer, got true"),
    ({**BASE, "pairs": [[0, False, 1.0]]}, r"pairs\[0\]\[1\]: a response index must be an integer"),
    ({**BASE, "pairs": [[0, 1, None]]}, r"pairs\[0\]\[2\]: the weight must be"),
    ({**BASE, "pairs": [[0, 1, "1"]]}, r"pairs\[0\]\[2\]: the weight must be"),
    ({**BASE, "pairs": [[0, 1, [1]]]}, r"pairs\[0\]\[2\]: the weight must be"),
    ({**BASE, "pairs": [[0, 1, -1.0]]}, r"pairs\[0\]\[2\]: the weight must be"),
    ({**BASE, "pairs": [[0, 1]]}, r"pairs\[0\]: must be \[i, j, weight\]"),
    ({**BASE, "pairs": [[0, 3, 1.0]]}, r"pairs\[0\]\[1\]: response index 3 is out of range: K = 3"),
    ({**BASE, "pairs": [[1, 1, 1.0]]}, r"pairs\[0\]: must name two distinct responses"),
    ({**BASE, "pairs": [[[0, 1, 1.0]], [[1, 2, 1.0]]]}, r"pairs: gives 2 lists of pairs \(one per context\); pi_ref has X = 1"),
    ({**BASE, "pairs": "uniformly"}, r"pairs: .*did you mean 'uniform'\?"),
    ({**BASE, "pairs": None}, r"pairs: must be"),
    ({**BASE, "data": {"sampled": {"n": 5}}}, r"data\.sampled: must be an integer"),
    ({**BASE, "data": {"sampled": 0}}, r"data\.sampled: must be an integer in \[1,"),
    ({**BASE, "data": {"sampld": 5}}, r"data\.sampld: unknown key; did you mean 'sampled'\?"),
    ({**BASE, "data": "sampled"}, r"data: must be \"population\" or"),
    ({**BASE, "data": 5}, r"data: must be \"population\" or"),
    ({**BASE, "seed": -1}, r"seed: must be an integer in \[0, 2\^32 − 1\], got -1"),
    ({**BASE, "seed": 2**64 + 1}, r"seed: must be an integer in \[0, 2\^32 − 1\]"),
    ({**BASE, "seed": 1.5}, r"seed: must be an integer"),
    ({**BASE, "seed": "0"}, r"seed: must be an integer"),
    ({**BASE, "loss_params": {"beta": "1"}}, r"loss_params\.beta: must be a finite number .*\(a string\)"),
    ({**BASE, "loss_params": {"beta": True}}, r"loss_params\.beta: .*\(a boolean\)"),
    ({**BASE, "loss_params": {"beta": [1]}}, r"loss_params\.beta: must be a finite number in \[1e-06, 1e\+06\], got \[1\] \(a list\)"),
    ({**BASE, "loss_params": {"beta": None}}, r"loss_params\.beta: must be a finite number in \[1e-06, 1e\+06\], got null"),
    ({**BASE, "loss_params": {"beta": 1e-300}}, r"loss_params\.beta: must be a finite number in \[1e-06, 1e\+06\], got 1e-300"),
    ({**BASE, "loss_params": {"beta": 1e300}}, r"loss_params\.beta: .*got 1e\+300"),
    ({**BASE, "loss_params": {"betta": 1}}, r"loss_params\.betta: loss 'dpo' has no parameter 'betta'; did you mean 'beta'\?"),
    ({**BASE, "loss_params": "beta=1"}, r"loss_params: must be an object"),
    ({**BASE, "loss": "fdpo", "loss_params": {"divergence": "klx"}}, r"loss_params\.divergence: unknown divergence 'klx'"),
    ({**BASE, "loss": "fdpo", "loss_params": {"divergence": 1}}, r"loss_params\.divergence: must be a string"),
    ({**BASE, "loss": "rlhf", "loss_params": {"reward": "bta"}}, r"loss_params\.reward: rlhf reward must be 'bt' or 'ipo'"),
    ({**BASE, "loss": "dpoo"}, r"loss: unknown loss 'dpoo'; did you mean 'dpo'\?"),
    ({**BASE, "context_weight": [float("nan")]}, r"context_weight\[0\]: .*got nan"),
    ({**BASE, "context_weight": [0.5, 0.5]}, r"context_weight: has 2 entries; pi_ref has X = 1"),
    ({"pi_ref": [[0.5, 0.5], [0.5, 0.5]], "preference": {"reward": [[0, 1], [1, 0]]}, "context_weight": [0.7, 0.7]}, r"context_weight: must be 2 positive numbers summing to 1"),
    ({**BASE, "preference": {"reward": [0, 1]}}, r"preference\.reward: has shape \[2\]; pi_ref has 1 context\(s\) of K = 3"),
    ({**BASE, "preference": {"reward": [0, 1, 2], "pi_star": [1, 0, 0]}}, r"preference: give exactly one of pi_star, reward, matrix"),
    ({**BASE, "preference": {}}, r"preference: give exactly one"),
    ({**BASE, "preference": {"rewards": [0, 1, 2]}}, r"preference\.rewards: unknown key; did you mean 'reward'\?"),
    ({**BASE, "preference": {"reward": [0, 1e300, 2]}}, r"preference\.reward\[1\]: .*got 1e\+300"),
    ({**BASE, "preference": {"matrix": [[0.5, 0.5], [0.5, 0.5]]}}, r"preference\.matrix: has shape \[2, 2\]; .*\[K, K\] per context"),
    ({**BASE, "preference": {"matrix": [[0.5, 0.9, 0.5], [0.2, 0.5, 0.5], [0.5, 0.5, 0.5]]}}, r"preference\.matrix: must satisfy P \+ Pᵀ = 1"),
    ({**BASE, "preference": {"pi_star": [0.5, 0.6, 0.1]}}, r"preference\.pi_star: must sum to 1"),
    ({**BASE, "preference": [1, 2, 3]}, r"preference: must be an object"),
    ({"pi_ref": [0.5, 0.6, 0.2], "preference": {"reward": [0, 1, 2]}}, r"pi_ref: must sum to 1 within 1e-09"),
    # π_ref may have zeros (bandit_lab.core.support), but DPO on a pair with a zero-reference response is undefined
    ({"pi_ref": [1.0, 0.0], "preference": {"reward": [0, 1]}}, r"^bandit-lab: error: pi_ref: response 1 has π_ref = 0 but appears in a labelled pair \(0, 1\)"),
    ({"pi_ref": [1.0, -0.0001, 0.0001], "preference": {"reward": [0, 1, 0]}}, r"pi_ref\[1\]: .*got -0.0001"),
    ({"pi_ref": [1.0], "preference": {"reward": [0]}}, r"pi_ref: needs at least 2 responses"),
    ({"pi_ref": [[0.5, 0.5], [0.5]], "preference": {"reward": [0, 1]}}, r"pi_ref: rows have different shapes"),
    ({"pi_ref": [0.5, 0.5]}, r"preference: is required"),
    ({"preference": {"reward": [0, 1]}}, r"pi_ref: is required"),
    ({**BASE, "colour": "red"}, r"colour: unknown spec key"),
    ({**BASE, "optimzer": {}}, r"optimzer: unknown spec key; did you mean 'optimizer'\?"),
    ({**BASE, "reward_floor": 0.0}, r"reward_floor: must be a finite number in \(0, 1\)"),
    ({**BASE, "penalty": "param"}, r"penalty: .*did you mean 'params'\?"),
    ({**BASE, "description": ["x"]}, r"description: must be a string"),
    ([1, 2, 3], r"must be an object, got \[1, 2, 3\]"),
    ("dpo", r"must be an object"),
    ({**BASE, "optimizer": {"steps": 10**12}}, r"needs ≈ .* of memory .*--max-memory"),  # the budget, in < 1 s
    ({**BASE, "data": {"sampled": 10**12}}, r"needs ≈ .*sampling 1e\+12 pairs"),
    ({"pi_ref": [1 / 20000] * 20000, "preference": {"reward": [0.0] * 20000}}, r"needs ≈ 89.4 GB of memory"),
    ({**BASE, "loss": "tdpo1"}, r"loss: tdpo1: token-level losses need the token_tree parameterization"),
]


@pytest.mark.parametrize("spec, match", SPECS, ids=[m[:40] for _, m in SPECS])
def test_bad_spec(spec, match, cli):
    cli(["solve", spec_file(cli.tmp, None, raw=json.dumps(spec, allow_nan=True))], match=match)


RAW = [  # (file name, raw text, expected)
    ("s.json", "{not json", r"malformed spec .*s\.json"),
    ("s.json", "", r"malformed spec"),
    ("s.json", "[" * 100_000 + "]" * 100_000, r"malformed spec .*nested too deeply"),
    ("s.json", '{"a":' * 50_000 + "1" + "}" * 50_000, r"malformed spec .*nested too deeply"),
    ("s.json", json.dumps({**BASE, "loss_params": {"beta": 1}}).replace('"beta": 1', '"beta": ' + "[" * 900 + "]" * 900),
     r"loss_params\.beta: must be a number, a string, a boolean, null, an object or a list \(of loss names or numbers\), got \[\[\[…\]\]\] \(a list\)"),
    ("s.json", '{"seed": ' + "9" * 5000 + "}", r"malformed spec"),
    ("s.json", '{"pi_ref": [0.5, 0.5], "pi_ref": [0.5, 0.5]}', r"duplicate key 'pi_ref'"),
    ("s.json", '{"pi_ref": [NaN, 0.5], "preference": {"reward": [0, 1]}}', r"pi_ref\[0\]: .*got nan"),
    ("s.json", '{"pi_ref": [0.5, 0.5], "preference": {"reward": [Infinity, 1]}}', r"preference\.reward\[0\]: .*got inf"),
    ("s.json", '{"pi_ref": [0.5, 0.5], "preference": {"reward": [1e400, 1]}}', r"preference\.reward\[0\]: .*got inf"),
    ("s.toml", "pi_ref = [0.5, 0.5\n", r"malformed spec"),
    ("s.toml", "x = " + "[" * 5000 + "]" * 5000 + "\n", r"malformed spec .*nested too deeply|x: unknown spec key"),
    ("s.toml", 'pi_ref = [0.5, 0.5]\n[preference]\nreward = [0, "1"]\n', r"preference\.reward\[1\]: .*\"1\""),
    ("s.toml", 'pi_ref = [0.5, 0.5]\nweight_decay = "0.1"\n[preference]\nreward = [0, 1]\n', r"weight_decay: .*\(a string\)"),
    ("s.toml", 'pi_ref = [0.5, 0.5]\n[preference]\nreward = [0, 1]\n[parameterization]\nname = "softmax"\ntemperature = 2\n',
     r"parameterization\.temperature: unknown key"),
]


@pytest.mark.parametrize("name, raw, match", RAW, ids=[f"{n}:{m[:30]}" for n, _, m in RAW])
def test_malformed_files(name, raw, match, cli):
    cli(["solve", spec_file(cli.tmp, None, name, raw=raw)], match=match)


def test_unreadable_spec_paths(cli, tmp_path):
    cli(["solve", tmp_path / "missing.json"], match="spec file not found")
    cli(["solve", tmp_path], match="is not a regular file")
    p = tmp_path / "bin.json"
    p.write_bytes(b"\xff\xfe\x00{")
    cli(["solve", p], match="malformed spec")
    big = tmp_path / "big.json"
    with open(big, "wb") as fh:  # sparse: 100 MB without writing them
        fh.truncate(100 * 2**20)
    cli(["solve", big], match="is 100 MB; a spec is limited to 64 MB")
    cli(["fixed-points", tmp_path / "missing.json"], match="spec file not found")


def test_k_5000_needs_its_memory(cli):
    """K = 5000 DPO: ≈ 5.6 GB estimated (matrix-free exact solver, 2.5e7-cell triple grid) — run on a
    machine with ≥ 4× that RAM, refused below; here the limit is set to 1G to show the refusal."""
    path = spec_file(cli.tmp, {"pi_ref": [1 / 5000] * 5000, "preference": {"reward": [0.0] * 5000}})
    cli(["--max-memory", "1G", "solve", path], match=r"needs ≈ 5.59 GB of memory .* over the limit of 1 GB")


@pytest.mark.timing
def test_steps_1e12_refused_in_under_a_second(cli):
    path = spec_file(cli.tmp, {**BASE, "optimizer": {"steps": 10**12}})
    t0 = time.perf_counter()
    err = cli(["solve", path], match=r"needs ≈ 14.6 TB of memory \(loss trajectories")
    assert time.perf_counter() - t0 < 1.0
    assert "lift the limit with `bandit-lab --max-memory SIZE" in err


# ----------------------------------------------------------------------------- experiment options

def _experiments():
    from bandit_lab import experiments

    return experiments.registry()


def option_cases():
    """Wrong types and out-of-range values for every option of every experiment, from its
    declared type and range (bandit_lab.infra.bounds)."""
    from bandit_lab import experiments

    cases = []
    for name, exp in _experiments().items():
        for o in experiments.options(exp.settings):
            bad = []
            if o.kind is bool and not o.many:
                bad = [[f"{o.flag}=yes"], [f"--no-{o.flag[2:]}=1"]]
            elif o.many:
                bad = [[o.flag, "a,b"] if o.kind is not str else [o.flag, "nonsense"], [o.flag, ","]]
                if o.kind is float:
                    bad += [[o.flag, "inf"], [o.flag, "0.1,nan"]]
                r = o.valid
                if r is not None and getattr(r, "le", None) is not None and r.le < 1e300:
                    bad.append([o.flag, repr(r.le * 10 + 1.0) if o.kind is float else str(int(r.le) + 1)])
                if r is not None and getattr(r, "ge", None) is not None:
                    bad.append([o.flag, repr(r.ge - 1.0) if o.kind is float else str(r.ge - 1)])
            elif o.kind is float:
                bad = [[o.flag, "abc"], [o.flag, "inf"], [o.flag, "nan"], [o.flag, "1e400"]]
                r = o.valid
                if r is not None and (r.le is not None or r.lt is not None):
                    hi = r.le if r.le is not None else r.lt
                    bad.append([o.flag, repr(hi * 10 + 1.0) if r.le is not None else repr(float(hi))])
                if r is not None and (r.ge is not None or r.gt is not None):
                    bad.append([o.flag, repr(r.ge - 1.0) if r.ge is not None else repr(float(r.gt))])
            elif o.kind is int:
                bad = [[o.flag, "2.5"], [o.flag, "abc"], [o.flag, "true"]]
                r = o.valid
                if r is not None and r.ge is not None:
                    bad.append([o.flag, str(r.ge - 1)])
                if r is not None and r.le is not None:
                    bad.append([o.flag, str(r.le + 1)])
            elif o.choices:
                bad = [[o.flag, "nonsense"]]
            for b in bad:
                cases.append((name, b))
    return cases


OPTION_CASES = option_cases()


@pytest.mark.parametrize("name, args", representative(OPTION_CASES, key=lambda c: (c[0], c[1][0]), per_key=1),
                         ids=[f"{n}{' '.join(a)}"[:60] for n, a in OPTION_CASES])
def test_bad_option(name, args, cli):
    err = cli(["run", name, *args])
    flag = args[0].split("=")[0]
    assert flag in err or flag.replace("--no-", "--") in err, err


def test_option_table_covers_every_experiment():
    names = {n for n, _ in OPTION_CASES}
    assert names == set(_experiments()) and len(OPTION_CASES) >= 200, len(OPTION_CASES)


EXTREME = [  # budgets and tree sizes: refused before any work starts
    (["run", "weight-decay", "--n-alphas", "1e9"], r"needs ≈ .* of memory"),
    (["run", "weight-decay", "--steps", "1e8", "--alpha", "0.1"], r"needs ≈ .* of memory \(loss trajectories"),
    # a sweep keeps its loss at the logged steps only (issue 22): refused by its work, not its memory
    (["run", "weight-decay", "--steps", "1e12"], r"needs ≈|would take ≈"),
    (["run", "weight-decay", "--data", "sampled", "--n-pairs", "1e12"], r"sampling 1e\+12 pairs"),
    (["run", "weight-decay", "--pi-ref", ",".join(["0.0002"] * 5000), "--pi-star", ",".join(["0.0002"] * 5000)], r"needs ≈"),
    (["run", "early-stopping", "--n-log", "1e12"], r"needs ≈"),
    (["run", "early-stopping", "--steps", "1e8"], r"needs ≈"),
    (["run", "token-drift", "--horizon", "1e12"], r"V=3, T=1000000000000 has ≈ 10\^4.77e\+11 sequences"),
    (["run", "token-drift", "--horizon", "1e12", "--eos"], r"sequences; exact enumeration is limited to 131072 sequences"),
    (["run", "ue-dpo-exploration", "--horizon", "40"], r"V=3, T=40 has ≈ 10\^19.1 sequences"),
    (["run", "ue-dpo-exploration", "--n-lambdas", "1e12"], r"needs ≈|would take ≈"),
    (["run", "mode-seeking", "--sample-sizes", "1e9"], r"finite-sample law of n = 1000000000"),
    (["run", "mode-seeking", "--grid-steps", "1e10"], r"needs ≈"),
    (["run", "noise-adaptive", "--n-contexts", "1e9"], r"needs ≈"),
    (["run", "win-rate-dynamics", "--n-pairs", "1e9"], r"needs ≈"),
    (["run", "win-rate-dynamics", "--seeds", "1e6"], r"needs ≈|would take ≈"),
    # an explicit --max-memory: the default limit is a quarter of the machine's RAM, and the 24 GB this
    # needs fit a 128 GiB machine's quarter (the H200 host of issue 22 ran it instead of refusing)
    (["--max-memory", "8G", "run", "ipo-vs-dpo", "--n-responses", "5000"], r"needs ≈"),
    (["run", "spo-softness", "--n-grid", "1e9"], r"needs ≈"),
    (["run", "thresholding", "--steps", "1e12"], r"needs ≈"),
    (["run", "single-step", "--n-ratios", "1e12"], r"needs ≈"),
    (["run", "simplex", "--steps", "1e9"], r"needs ≈"),
    (["verify", "--instances", "1e6"], r"`bandit-lab verify` would take ≈ .* days of compute"),
    (["verify", "--instances", "0"], r"--instances: must be an integer in \[1, 2\^63 − 1\], got 0"),
    (["verify", "--instances", "2.5"], r"--instances.*must be an integer"),
    (["verify", "--seed", "-1"], r"--seed: must be an integer in \[0, 2\^32 − 1\]"),
    (["verify", "--seed", str(2**64 + 1)], r"--seed: must be an integer in \[0, 2\^32 − 1\]"),
    (["verify", "--only", "dpo-rlfh"], r"unknown check\(s\) dpo-rlfh; did you mean 'dpo-rlhf'\?"),
    (["--max-memory", "1k", "run", "weight-decay", "--alpha", "0.1"], r"over the limit of 1 kB"),
    (["--max-work", "1s", "run", "weight-decay"], r"would take ≈ .* over the limit of 1 s"),
    (["--max-memory", "lots", "run", "weight-decay"], r"--max-memory: expected a size"),
    (["--max-work", "-5m", "list"], r"--max-work: expected a duration"),
    (["run", "weight-decay", "--alpha", "0.1", "--seed", "-1"], r"--seed: must be an integer in \[0, 2\^32 − 1\], got -1"),
    (["run", "weight-decay", "--alpha", "0.1", "--seed", str(2**64)], r"--seed: must be"),
    (["run", "weight-decay", "--alpha", "0.1", "--pi-ref", "0.5,0.6,0.2"], r"--pi-ref: must sum to 1"),
    (["run", "weight-decay", "--alpha", "0.1", "--pi-ref", "-0.2,0.6,0.6"], r"--pi-ref: entry 1 must be a finite number in \[0, 1\]"),
    (["run", "weight-decay", "--alpha", "0.1", "--pi-ref", "0.5,0.5"], r"--pi-ref and --pi-star must have the same number"),
    (["run", "weight-decay", "--alpha-min", "5", "--alpha-max", "1"], r"--alpha-min must be < --alpha-max"),
    (["run", "ipo-vs-dpo", "--betas", "inf"], r"--betas: entry 1 must be a finite number .*got inf"),
    (["run", "mode-seeking", "--grid-lrs", "inf"], r"--grid-lrs: entry 1 .*got inf"),
    (["run", "weight-decay", "--with-js=yes"], r"'--with-js' does not take a value"),
    # click ≥ 8.2 (typer < 0.26) words it "No such option '--x'.", typer's vendored copy "No such option: --x"
    (["run", "weight-decay", "--no-such-option", "1"], r"No such option:? '?--no-such-option"),
    (["run", "weight-decy"], r"unknown experiment 'weight-decy'; did you mean 'weight-decay'\?"),
    (["run", "weight-decay", "--distance", "hellinger"], r"--distance: must be one of tv, l2, kl, reverse_kl"),
    (["list", "nonsense"], r"list what\?"),
    (["frobnicate"], r"No such command"),
]


@pytest.mark.parametrize("argv, match", EXTREME, ids=[" ".join(a)[:60] for a, _ in EXTREME])
def test_extreme_and_bad_options(argv, match, cli):
    t0 = time.perf_counter()
    cli(argv, match=match)
    assert time.perf_counter() - t0 < 5.0, "refusals are immediate (the first call of an experiment imports it)"


@pytest.mark.parametrize("name", sorted(__import__("cli.main", fromlist=["experiment_index"]).experiment_index()))
def test_steps_zero_refused_everywhere(name, cli):
    from bandit_lab import experiments

    exp = _experiments()[name]
    opts = [o for o in experiments.options(exp.settings) if o.kind is int and not o.many and "steps" in o.name]
    for o in opts:
        cli(["run", name, o.flag, "0"], match=rf"{o.flag}: must be an integer in \[1,")


def test_steps_zero_refused_in_a_spec(cli):
    cli(["solve", spec_file(cli.tmp, {**BASE, "optimizer": {"steps": 0}})], match=r"optimizer\.steps: must be an integer in \[1,")


# ----------------------------------------------------------------------------- divergence: exit 4

DIVERGING = [
    ({**BASE, "loss": "ipo", "optimizer": {"name": "sgd", "lr": 1e3, "steps": 100, "schedule": "constant"}},
     r"training diverged: ipo \(beta=1, weight_decay=0, lr=1000\): the loss is (nan|inf) at step \d+ of 100; likely cause: the learning rate lr=1000 is too large for sgd"),
    ({**BASE, "weight_decay": 1e6, "optimizer": {"name": "sgd", "lr": 1e6, "steps": 50}},
     r"training diverged: dpo .*weight_decay=1e\+06.*the loss is inf at step \d+ of 50; likely cause: the learning rate"),
]


@pytest.mark.parametrize("spec, match", DIVERGING, ids=["ipo-sgd-lr1e3", "dpo-decay-lr1e6"])
def test_divergence_has_its_own_exit_code(spec, match, cli):
    path = spec_file(cli.tmp, spec)
    before = snapshot(cli.tmp)
    cli(["solve", path, "--json"], code=4, match=match, before=before)
    cli(["solve", path], code=4, match=match, before=before)


def test_divergence_in_an_experiment(cli):
    cli(["run", "weight-decay", "--alpha", "1e6", "--optimizer", "sgd", "--lr", "1e6", "--steps", "50"], code=4,
        match=r"training diverged: dpo \+ rlhf\[reverse_kl\] \+ .* the loss is inf at step \d+ of 50")


# ----------------------------------------------------------------------------- output paths

def _chattr(path, flag) -> bool:
    try:
        return subprocess.run(["chattr", flag, str(path)], capture_output=True).returncode == 0
    except OSError:
        return False


def test_out_paths_that_cannot_be_written(cli, tmp_path):
    args = ["run", "weight-decay", "--n-alphas", "3", "--steps", "10"]
    f = tmp_path / "file"
    f.write_text("x")
    cli([*args, "--out", f / "sub"], match=rf"cannot create {f}/sub: Not a directory")
    cli([*args, "--out", f], match=r"exists and is not a directory")
    link = tmp_path / "dangling"
    os.symlink(tmp_path / "nowhere" / "x", link)
    cli([*args, "--out", link], match=r"dangling symbolic link")
    cli([*args, "--out", tmp_path / ("a" * 300)], match=r"File name too long")
    cli([*args, "--out", "/proc/bandit-lab-test"], match=r"cannot create /proc/bandit-lab-test: ")
    full = tmp_path / "full"
    full.mkdir()
    (full / "old.txt").write_text("keep")
    cli([*args, "--out", full], match=r"exists; pass --overwrite")
    cli(["reproduce", "--quick", "--out", full], match=r"exists; pass --overwrite")
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() != 0:
        os.chmod(ro, 0o500)
        cli([*args, "--out", ro / "sub"], match=r"Permission denied")
        os.chmod(ro, 0o700)
    if _chattr(ro, "+i"):
        try:
            cli([*args, "--out", ro], match=rf"cannot write {ro}: Operation not permitted")
            cli([*args, "--out", ro / "sub"], match=r"Operation not permitted")
        finally:
            _chattr(ro, "-i")


def test_failed_write_leaves_nothing(cli, tmp_path, monkeypatch):
    """A write that fails mid-way (disk full) is one line, and no temporary or partial file stays."""
    import bandit_lab.infra.files as files

    real = os.replace

    def full_disk(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", full_disk)
    out = tmp_path / "new" / "deeper"
    # --no-cache: the patched os.replace would fail the compile cache's writes too (one warning line more)
    cli(["--no-cache", "run", "single-step", "--n-ratios", "3", "--out", out], match=rf"cannot write {out}/records.json: No space left")
    monkeypatch.setattr(files.os, "replace", real)
    assert not (tmp_path / "new").exists()  # created for the run, removed with it (parents too)


# ----------------------------------------------------------------------------- real processes

def test_a_few_real_subprocesses(tmp_path):
    """No in-process shortcut hides a traceback: the installed entry point, a handful of cases."""
    bad = tmp_path / "s.json"
    bad.write_text(json.dumps({**BASE, "optimizer": {"lr": "0.1"}}))
    deep = tmp_path / "d.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    for argv, code, match in [
        (["solve", str(bad)], 2, r"optimizer\.lr: must be a finite number"),
        (["solve", str(deep)], 2, r"nested too deeply"),
        (["run", "token-drift", "--horizon", "1e12"], 2, r"sequences"),
    ]:
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-c", "from cli.main import main; main()", *argv], capture_output=True, text=True,
                           cwd=tmp_path, timeout=120)
        assert r.returncode == code, (argv, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
        assert re.search(match, r.stderr), r.stderr
        assert time.perf_counter() - t0 < 60
    assert sorted(os.listdir(tmp_path)) == ["d.json", "s.json"]


# ----------------------------------------------------------------------------- generated (hypothesis)

def _number_leaves():
    return [(i, p, n) for i, p, n in leaves() if n.get("type") in ("number", "integer")]


def _outside(node):
    """Numbers a leaf must refuse: non-finite, or beyond its declared JSON Schema bounds."""
    parts = [st.sampled_from([float("nan"), float("inf"), float("-inf")])]
    if "maximum" in node:
        parts.append(st.floats(min_value=float(node["maximum"]), allow_nan=False, allow_infinity=False).filter(lambda x: x > node["maximum"]))
    if "exclusiveMaximum" in node:
        parts.append(st.floats(min_value=float(node["exclusiveMaximum"]), allow_nan=False, allow_infinity=False))
    if "minimum" in node:
        parts.append(st.floats(max_value=float(node["minimum"]), allow_nan=False, allow_infinity=False).filter(lambda x: x < node["minimum"]))
    if "exclusiveMinimum" in node:
        parts.append(st.floats(max_value=float(node["exclusiveMinimum"]), allow_nan=False, allow_infinity=False))
    if node.get("type") == "integer":
        parts.append(st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: x != int(x) if math.isfinite(x) else True))
        if "minimum" in node:
            parts.append(st.integers(max_value=node["minimum"] - 1))
        if "maximum" in node:
            parts.append(st.integers(min_value=node["maximum"] + 1))
    return st.one_of(parts)


_WRONG_TYPES = st.one_of(st.text(max_size=8), st.booleans(), st.none(), st.lists(st.floats(), max_size=3),
                         st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@st.composite
def bad_numbers(draw):
    i, path, node = draw(st.sampled_from(_number_leaves()))
    value = draw(st.one_of(_outside(node), _WRONG_TYPES))
    return i, path, value


def _check_refused(case, tmp_path):
    from bandit_lab import schema
    from bandit_lab.errors import BanditError

    i, path, value = case
    bad = with_path(FULL[i], path, value)
    with pytest.raises(BanditError) as e:
        schema.parse(json.loads(json.dumps(bad, allow_nan=True)), "spec.json")
    msg = str(e.value)
    assert msg.startswith("spec.json: " + render(path) + ":"), msg
    assert "\n" not in msg


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bad_numbers())
def test_generated_bad_numbers_fast(tmp_path, case):
    _check_refused(case, tmp_path)


@pytest.mark.slow
@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bad_numbers())
def test_generated_bad_numbers_full(tmp_path, case):
    _check_refused(case, tmp_path)


def _json_values():
    return st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=5),
                        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3), max_leaves=8)


@st.composite
def mutated_specs(draw):
    """A valid spec with one key added, removed or replaced by an arbitrary JSON value."""
    base = json.loads(json.dumps(draw(st.sampled_from(FULL))))
    path = list(draw(st.sampled_from([p for _, p, _ in leaves()])))
    node = base
    for k in path[:-1]:
        if not isinstance(node, dict) or k not in node:
            break
        node = node[k]
    how = draw(st.sampled_from(["replace", "add", "delete"]))
    if isinstance(node, dict):
        key = path[-1]
        if how == "replace" and key in node:
            node[key] = draw(_json_values())
        elif how == "add":
            node[draw(st.text(min_size=1, max_size=6))] = draw(_json_values())
        elif key in node:
            del node[key]
    return base


def _never_internal(spec):
    """Any JSON value: either a valid Spec or one BanditError line — never another exception."""
    from bandit_lab import schema
    from bandit_lab.errors import BanditError

    try:
        schema.parse(spec, "spec.json")
    except BanditError as e:
        assert "\n" not in str(e)


@settings(max_examples=80, deadline=None)
@given(mutated_specs())
def test_generated_mutations_fast(spec):
    _never_internal(spec)


@pytest.mark.slow
@settings(max_examples=3000, deadline=None)
@given(mutated_specs())
def test_generated_mutations_full(spec):
    _never_internal(spec)
