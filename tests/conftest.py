"""Shared test setup: float64 for the whole test process (``bandit_lab.enable_x64()``, as the
``bandit-lab`` command does; importing bandit_lab alone leaves JAX's config alone), strict checks."""
import os
import re

import numpy as np
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


# ----------------------------------------------------------------------------- on-policy references
# shared by tests/test_explain.py and tests/test_variant_points.py

def group_std_point_by_enumeration(pi_ref, r, G, beta, eps=1e-4):
    """Independent NumPy computation (no bandit-lab code): the interior zero of group-std GRPO with
    an expected KL(π‖π_ref) gradient (TRL's bias-corrected k3). Zero ⇔ g_k − ḡ = β(h_k − h̄) for all
    k, g_k = E[(r_k − mean)/(std_ddof1 + ε) | focal k] over the G − 1 others ~ π (0 for a degenerate
    group), h = log π/π_ref; solved as the fixed point θ_k − θ_0 = log π_ref,k/π_ref,0 + (g_k − g_0)/β."""
    import itertools

    from scipy.special import gammaln

    K = len(r)
    comps = np.array([np.bincount(c, minlength=K) for c in itertools.combinations_with_replacement(range(K), G - 1)], float)
    logc = gammaln(G) - gammaln(comps + 1).sum(1)

    def g_of(lp):
        P = np.exp(logc + np.where(comps > 0, comps * lp, 0).sum(1))
        out = np.zeros(K)
        for k in range(K):
            A = []
            for n in comps:
                rs = np.concatenate([np.repeat(r, n.astype(int)), [r[k]]])
                A.append(0.0 if np.all(rs == rs[0]) else (r[k] - rs.mean()) / (rs.std(ddof=1) + eps))
            out[k] = P @ np.asarray(A)
        return out

    th = np.log(pi_ref)
    for _ in range(100):
        g = g_of(th - np.logaddexp.reduce(th))
        new = np.log(pi_ref / pi_ref[0]) + (g - g[0]) / beta
        if np.max(np.abs(new - (th - th[0]))) < 1e-13:
            break
        th = new
    return new


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
