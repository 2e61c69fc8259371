"""Shared test setup: float64 for the whole test process (``bandit_lab.enable_x64()``, as the
``bandit-lab`` command does; importing bandit_lab alone leaves JAX's config alone), strict checks."""
import os
import re

import pytest

# On a GPU, XLA may reduce and scatter with atomics, whose order (and so the last bits) changes from
# run to run; the suite's bit-identity tests (identical solves, blocked sweeps) hold on a GPU only
# with deterministic ops. The flag is read by XLA's GPU backend only (the CPU ignores it), and it
# must be set before JAX's backend starts; subprocesses of the tests inherit it.
if "xla_gpu_deterministic_ops" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_gpu_deterministic_ops=true").strip()

import jax  # noqa: E402

import bandit_lab  # noqa: E402

bandit_lab.enable_x64()
jax.config.update("jax_numpy_rank_promotion", "allow")


def pytest_configure(config):
    assert jax.config.jax_enable_x64, "tests need float64"


# ----------------------------------------------------------------------------- the bad-input contract
# shared by tests/test_bad_input.py and tests/test_bad_input_surfaces.py

def sampled_states_match_exact(o, th, n_keys: int):
    """On-policy sampled mode: the state ``init_state`` draws under ``n_keys`` keys, and whether the
    mean of its surrogate coefficients ``cp − cm`` is the exact-mode state's within 6 standard
    errors (a Monte Carlo test). Returns ``(keys, states, ok)``."""
    import numpy as np

    ex = o.init_state(th, o.hp, None)
    keys = jax.random.split(jax.random.key(0), n_keys)
    st = jax.vmap(lambda k: o.init_state(th, o.hp, k))(keys)
    w = np.asarray(st["cp"] - st["cm"])
    se = w.std(0) / np.sqrt(w.shape[0])
    return keys, st, bool(np.all(np.abs(w.mean(0) - np.asarray(ex["cp"] - ex["cm"])) <= 6 * se + 1e-12))


def snapshot(root) -> dict:
    out = {}
    for d, _, fs in os.walk(root):
        for f in fs:
            p = os.path.join(d, f)
            try:
                st_ = os.lstat(p)
            except OSError:
                continue
            out[p] = (st_.st_size, st_.st_mtime_ns)
        out[d] = "dir"
    return out


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    """``cli(argv, code=2)``: run in-process in an empty cwd; assert the bad-input contract."""
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)

    from cli.main import main  # here, not at the top: most test modules never need the CLI

    def run(argv, code=2, match=None, before=None):
        snap = snapshot(tmp_path) if before is None else before
        with pytest.raises(SystemExit) as e:
            main([str(a) for a in argv])
        out, err = capsys.readouterr()
        lines = err.strip().splitlines()
        assert e.value.code == code, (argv, e.value.code, err, out[-500:])
        assert len(lines) == 1, (argv, err)
        assert "Traceback" not in err and "internal error" not in err and "Warning" not in err, err
        assert not re.search(r"\b(nan|NaN|inf|Infinity)\b", out), out[-500:]
        assert snapshot(tmp_path) == snap, "a file changed"
        if match is not None:
            assert re.search(match, err), (match, err)
        return err

    run.tmp = tmp_path
    return run
