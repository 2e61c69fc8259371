"""The batched per-point certificate of sweeps (bandit_lab.solvers.sweep_certificate) against the
single-point ``certify`` (bandit_lab.certificates), on converged and deliberately unconverged points."""
from __future__ import annotations

import numpy as np
import pytest

import bandit_lab

bandit_lab.enable_x64()

from bandit_lab.certificates import STEP_TOL, certify  # noqa: E402
from bandit_lab.core.objective import Stack, make_objective  # noqa: E402
from bandit_lab.core.problems import Problem  # noqa: E402
from bandit_lab.experiments import with_counterpart  # noqa: E402
from bandit_lab.runner import solve_certified  # noqa: E402
from bandit_lab.solvers.solver import _unravel_batch, newton_free  # noqa: E402
from bandit_lab.solvers.sweep_certificate import certify_sweep  # noqa: E402
from bandit_lab.verdict import Kind  # noqa: E402

ALPHAS = [0.0, 1e-3, 0.1, 3.0]


@pytest.fixture(scope="module")
def sweep():
    problem = Problem.create([0.4, 0.4, 0.2], pi_star=[0.6, 0.3, 0.1], pairs="uniform")
    objs = []
    for name in ("dpo", "ipo"):
        o, c, _ = with_counterpart(make_objective(problem, name, {"beta": 1.0}))
        objs += [o, c]
    hps = [[{"weight_decay": a} for a in ALPHAS] for _ in objs]
    exact, certs = solve_certified(objs, hps)
    return objs, exact, certs


def test_converged_points_match_single_point_certify(sweep):
    objs, exact, certs = sweep
    assert certs is not None and len(certs) == len(objs)
    for m, o in enumerate(objs):
        for b, a in enumerate(ALPHAS):
            v = certify(o, exact[m][b].params, {"weight_decay": a})
            assert v.kind is Kind.UNIQUE, (o.label, a, v.summary)
            c = certs[m]
            assert c.certified[b] and c.verdict()[b] == "unique minimiser"
            assert c.newton_step[b] <= STEP_TOL and v.certificate["newton_step"] <= STEP_TOL
            assert c.tangent_dim[b] == v.certificate["tangent_dim"] == (2 if a == 0 else 3)
            # the spectrum on the tangent space: finite-difference Hessian vs jax.hessian
            np.testing.assert_allclose(c.lambda_min[b], v.certificate["lambda_min"], rtol=1e-6)
            np.testing.assert_allclose(c.lambda_max[b], v.certificate["lambda_max"], rtol=1e-6)


def test_unconverged_point_is_not_certified_and_its_step_matches_certify(sweep):
    """Two Newton iterations from π_ref: far from converged; the batched Newton step must equal
    certify's (same definition, FD vs exact Hessian) and the verdict must be "not certified"."""
    objs = sweep[0]
    st = Stack(tuple(objs))
    hps = [{"weight_decay": a} for a in ALPHAS]
    arrays: dict = {}
    newton_free(st, hps, iters=1, arrays=arrays)
    certs = certify_sweep(st, hps, arrays)
    params = _unravel_batch(st.param.init())(arrays["z"])
    n_bad = 0
    for m, o in enumerate(objs):
        for b, a in enumerate(ALPHAS):
            v = certify(o, params[b][m], {"weight_decay": a})
            step = v.certificate["newton_step"]
            if step > 1e-6:  # clearly unconverged: both say so, with the same step
                n_bad += 1
                assert not certs[m].certified[b] and certs[m].verdict()[b] == "not certified"
                assert v.kind is not Kind.UNIQUE
                np.testing.assert_allclose(certs[m].newton_step[b], step, rtol=1e-5)
                np.testing.assert_allclose(certs[m].decrement[b], v.certificate["newton_decrement"], rtol=1e-5)
                assert "not certified" in certs[m].reason(b)
    assert n_bad >= 8  # most points are still far from their optimum after one iteration


def test_weight_decay_sweep_records_a_verdict_per_point():
    from bandit_lab.experiments import weight_decay as wd
    from bandit_lab.infra.records import as_table

    res = wd.run(wd.Settings(n_alphas=4, steps=200))
    t = as_table(res["records"])
    assert set(t.column("verdict").tolist()) == {"unique minimiser"}
    assert set(t.column("counterpart_verdict").tolist()) == {"unique minimiser"}
    assert np.all(t.column("newton_step") <= STEP_TOL)
    assert res["not_certified"] == 0 and "0 not certified" in wd.report(res)
