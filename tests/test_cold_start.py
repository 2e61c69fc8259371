"""Cold starts with a warm cache skip tracing (bandit_lab.infra.export_cache, issue 13): exported
programs give bit-identical results to the traced ones, and a missing, corrupt or unwritable
cache only means tracing again."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bandit_lab.infra import export_cache
from bandit_lab.core.objective import Stack, make_objective
from bandit_lab.core.problems import Problem

# jax < 0.4.31 has no public jax.export: the cache is off there (export_cache.supported), which the
# minimum-versions run (docs/dependencies.md) checks by running everything else
needs_export = pytest.mark.skipif(not export_cache.supported(), reason="this jax has no public jax.export (< 0.4.31)")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def export_dir(tmp_path):
    before = export_cache.directory()
    d = tmp_path / "exported"
    export_cache.set_dir(str(d))
    try:
        yield d
    finally:
        export_cache.set_dir(before)


def _counted():
    traces = []

    def f(x, hp):
        traces.append(1)
        return jnp.sum(jnp.exp(x) * hp["a"]), jnp.cumsum(x) * hp["b"]

    return f, traces


@needs_export
def test_exported_program_round_trip(export_dir):
    x, hp = np.linspace(-1.0, 1.0, 7), {"a": np.float64(0.3), "b": np.float64(2.0)}
    f, traces = _counted()
    want = jax.jit(f)(x, hp)
    a = export_cache.jit(f, ("test", "round-trip"))(x, hp)  # traced, exported, saved
    assert len(traces) == 2 and len(os.listdir(export_dir)) == 1
    g, traces2 = _counted()
    b = export_cache.jit(g, ("test", "round-trip"))(x, hp)  # as a new process would: from disk
    assert traces2 == []
    for u, v, w in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), jax.tree_util.tree_leaves(want)):
        assert np.asarray(u).tobytes() == np.asarray(v).tobytes() == np.asarray(w).tobytes()
    # another shape is another entry; no key or no directory is plain jit
    export_cache.jit(g, ("test", "round-trip"))(x[:3], hp)
    assert len(traces2) == 1 and len(os.listdir(export_dir)) == 2
    export_cache.jit(g, None)(x, hp)
    assert len(traces2) == 2


@needs_export
def test_corrupt_or_unwritable_entries_fall_back_to_tracing(export_dir):
    x, hp = np.arange(4.0), {"a": np.float64(1.5), "b": np.float64(-1.0)}
    f, _ = _counted()
    want = export_cache.jit(f, ("test", "corrupt"))(x, hp)
    (entry,) = export_dir.iterdir()
    entry.write_bytes(b"not a serialized program")
    g, traces = _counted()
    got = export_cache.jit(g, ("test", "corrupt"))(x, hp)
    assert traces, "a corrupt entry must be traced again"
    assert all(np.array_equal(u, v) for u, v in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)))
    h, traces = _counted()
    export_cache.jit(h, ("test", "corrupt"))(x, hp)
    assert traces == [], "the corrupt entry was replaced by a good one"
    # a cache directory that cannot be written (here: a file stands where it should be)
    blocked = export_dir.parent / "blocked"
    blocked.write_text("x")
    export_cache.set_dir(str(blocked))
    k, traces = _counted()
    got = export_cache.jit(k, ("test", "corrupt"))(x, hp)
    assert traces and all(np.array_equal(u, v) for u, v in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)))


def test_stable_signature_names_only_own_code():
    pb = Problem.create([0.4, 0.4, 0.2], pi_star=[0.6, 0.3, 0.1], pairs="uniform")
    dpo = make_objective(pb, "dpo", {"beta": 1.0})
    sig = dpo.stable_signature()
    assert sig is not None and id(dpo.loss) not in sig and sig == make_objective(pb, "dpo", {"beta": 2.0}).stable_signature()
    assert Stack((dpo, dpo.counterpart())).stable_signature() is not None

    import bandit_lab as bl

    @bl.loss(defaults={"beta": 1.0}, summary="a plugin")
    def cold_start_plugin(inputs, hp):
        hw, hl = bl.log_ratios(inputs)
        return bl.expect(inputs.data, -jax.nn.log_sigmoid(hp["beta"] * (hw - hl)))

    try:
        plug = make_objective(pb, "cold_start_plugin", {})
        assert plug.stable_signature() is None and Stack((dpo, plug)).stable_signature() is None
        # a built-in loss whose static options name a plugin (a mixture's terms) traces the plugin too
        mix = make_objective(pb, "mixture", {"terms": ("dpo", "cold_start_plugin")})
        assert mix.stable_signature() is None
        assert make_objective(pb, "mixture", {"terms": ("dpo", "ipo")}).stable_signature() is not None
    finally:
        bl.unregister_loss("cold_start_plugin")


# A new process: weight decay at one α, 2 objectives, 50 steps; prints its records and how often
# Objective.value was traced (0 when every program came from the export cache).
_SCRIPT = """
import json, sys
import bandit_lab
bandit_lab.enable_x64()
from bandit_lab.infra import cache
from bandit_lab.core import objective
if sys.argv[1] == "cache":
    cache.enable()
calls = []
value = objective.Objective.value
def counted(self, *a, **k):
    calls.append(1)
    return value(self, *a, **k)
objective.Objective.value = counted
from bandit_lab.experiments import weight_decay as wd
from bandit_lab.runner import jsonable
res = wd.run(wd.Settings(alpha=0.1, steps=50, loss=("dpo",)))
print(json.dumps({"traced": len(calls), "records": jsonable(res["records"])}))
"""


def _run(mode: str, cache_dir) -> dict:
    env = {**os.environ, "BANDIT_LAB_CACHE_DIR": str(cache_dir)}
    env.pop("BANDIT_LAB_NO_CACHE", None)
    r = subprocess.run([sys.executable, "-c", _SCRIPT, mode], capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@needs_export
def test_new_process_from_the_export_cache_is_bit_identical(tmp_path):
    d = tmp_path / "cache"
    first = _run("cache", d)  # fills the compilation and export caches
    assert first["traced"] > 0 and len(os.listdir(d / "exported")) >= 2  # trainer + Newton programs
    again = _run("cache", d)
    assert again["traced"] == 0, "a warm cache must not trace the trainer or the solver"
    plain = _run("nocache", tmp_path / "unused")
    assert plain["traced"] > 0 and not (tmp_path / "unused").exists()
    # json of Python floats: repr round-trips float64 exactly, so equal text is equal bits
    assert json.dumps(first["records"]) == json.dumps(again["records"]) == json.dumps(plain["records"])


@pytest.mark.slow
def test_new_process_with_damaged_entries_traces_again(tmp_path):
    d = tmp_path / "cache"
    first = _run("cache", d)
    for f in (d / "exported").iterdir():  # every entry truncated
        f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2])
    damaged = _run("cache", d)
    assert damaged["traced"] > 0 and json.dumps(damaged["records"]) == json.dumps(first["records"])
    assert _run("cache", d)["traced"] == 0  # rewritten


@pytest.mark.slow
def test_cli_no_cache_writes_no_exported_programs(tmp_path):
    env = {**os.environ, "BANDIT_LAB_CACHE_DIR": str(tmp_path / "c"), "BANDIT_LAB_NO_CACHE": "1"}
    cmd = [sys.executable, "-m", "cli.main", "run", "weight-decay", "--alpha", "0.1", "--steps", "50", "--loss", "dpo", "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "c").exists()
