"""``aot_unpaired`` on Kong App. B (the fixed-points table's bandit, β = 1): its verdict, checked
against an extended-precision (mpmath) computation of the quantile-coupled loss.

The loss (TRL 1.16 ``aot_unpaired``, Melnyk et al. 2024; ``bandit_lab.losses.zoo.aot_unpaired``)
is ``∫₀¹ softplus(−β(F_w⁻¹(q) − F_l⁻¹(q))) dq`` over the quantile coupling of the chosen and the
rejected log-ratio laws. On App. B (π* = (.6, .3, .1) Bradley–Terry, π_ref = (.4, .4, .2), uniform
pairs) the triple weights are ``w_ij = p_ij/3``; the chosen law puts ``a_k = Σ_j w_kj`` on ``h_k``,
the rejected law ``b_k = Σ_i w_ik = 2/3 − a_k``: a = (32/63, 13/36, 11/84), b = (10/63, 11/36, 15/28).
Where ``h3 < h2 < h1`` the merged breakpoints are 11/84 < 31/63 < 15/28 < 53/63 and (u = h1 − h2,
v = h2 − h3; in logits u = θ1 − θ2, v = θ2 − θ3 − log 2)::

    L = (a3 + b1)·log 2 + a2·sp(−βv) + c·sp(−β(u + v)) + b2·sp(−βu),   c = 15/28 − 31/63 = 11/252,

``a3 + b1 = 73/252``. Every term but the constant falls strictly in u and v, so
``∂L/∂θ3 = β[a2 σ(−βv) + c σ(−β(u+v))] > 0`` and ``∂L/∂θ1 = −β[b2 σ(−βu) + c σ(−β(u+v))] < 0``
everywhere in that region. The certificate's ray ``d ∝ (0, −1, −2)`` raises u and v at the same rate,
and ``∇L·d = −β[a2 σ(−βv) + b2 σ(−βu) + 2c σ(−β(u+v))]/√5 < 0`` for every t: no turn. Its slope per
unit of the mass lowered tends to ``β[b2 + 2a2·e^{θ1 − 2θ2 + θ3}] > 0`` (a constant along the ray).
For every finite θ the interval(s) pairing a response with itself give exactly log 2 each and every
other interval gives sp(·) > 0, so ``L(θ) > m·log 2`` with ``m`` the smallest such self-paired length
over the six orders (73/252, only for h3 < h2 < h1, computed below): **no finite minimiser**,
infimum ``(73/252)·log 2 = 0.2007926356383969…``, reached along the ray; the limit policy is (1, 0, 0).

The verdict used to depend on the CPU ("not certified" on one machine): written as ``h_k − h_k``,
a self-paired interval added ``∓len/2`` to ``∂L/∂h_k`` twice, and the true ~1e-20 gradient was
absorbed by that O(0.1) partial sum or not, according to XLA's summation order. The loss now gives
those intervals no gradient (``zoo._coupled_loss``): float64's signs equal mpmath's (tested here).
"""
from fractions import Fraction
import math

import jax
import jax.numpy as jnp
import mpmath as mp
import numpy as np
import pytest

from bandit_lab import fixed_points as fp
from bandit_lab.spec import build

PI_STAR = (Fraction(6, 10), Fraction(3, 10), Fraction(1, 10))
PI_REF = (Fraction(4, 10), Fraction(4, 10), Fraction(2, 10))
K = 3
# the ray the 2026-12-05 machine probed ("not certified" there): its start and direction, from that run's record
OLD_START = np.array([10.335348439087076, -6.611881146949667, -24.257407713679704])
RAY = np.array([0.0, -1.0, -2.0]) / math.sqrt(5.0)


def exact_weights():
    """``w_ij = p_ij / 3`` (uniform pairs, BT from π*), as Fractions: ``bandit_lab.core.data.population``."""
    return [[Fraction(0) if i == j else PI_STAR[i] / (PI_STAR[i] + PI_STAR[j]) / 3 for j in range(K)] for i in range(K)]


def mp_loss(theta, beta=1):
    """The quantile-coupled loss in mpmath at the current precision: the two laws sorted, the
    cumulative weights merged (exact Fractions), each interval's quantiles paired — the definition,
    written independently of ``zoo.quantile_coupling`` (no ``searchsorted``, no masking)."""
    W = exact_weights()
    lse = mp.log(mp.fsum(mp.exp(t) for t in theta))
    h = [theta[k] - lse - mp.log(mp.mpf(PI_REF[k].numerator) / PI_REF[k].denominator) for k in range(K)]
    chosen = sorted(((h[i], W[i][j]) for i in range(K) for j in range(K) if W[i][j] > 0), key=lambda x: x[0])
    rejected = sorted(((h[j], W[i][j]) for i in range(K) for j in range(K) if W[i][j] > 0), key=lambda x: x[0])

    def cum(law):
        out, s = [], Fraction(0)
        for v, w in law:
            s += w
            out.append((s, v))
        return out

    ca, cb = cum(chosen), cum(rejected)
    assert ca[-1][0] == cb[-1][0] == 1
    cuts = sorted({c for c, _ in ca} | {c for c, _ in cb} | {Fraction(0)})
    total = mp.mpf(0)
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        q = (lo + hi) / 2
        ua = next(v for c, v in ca if c >= q)
        ub = next(v for c, v in cb if c >= q)
        total += mp.mpf((hi - lo).numerator) / (hi - lo).denominator * mp.log1p(mp.exp(-beta * (ua - ub)))
    return total


def closed_form(theta, beta=1):
    """The hand-derived form on h3 < h2 < h1 (module docstring)."""
    a2, b2, c = mp.mpf(13) / 36, mp.mpf(11) / 36, mp.mpf(11) / 252
    sp = lambda x: mp.log1p(mp.exp(x))  # noqa: E731
    u = theta[0] - theta[1]
    v = theta[1] - theta[2] - mp.log(2)
    return mp.mpf(73) / 252 * mp.log(2) + a2 * sp(-beta * v) + c * sp(-beta * (u + v)) + b2 * sp(-beta * u)


def mp_grad(z):
    """``∂L/∂θ_k`` by mpmath's numerical differentiation, at a precision that resolves the smallest
    mass (the gradient is ~π(y2) against a loss of 0.2): 60 digits beyond ``−log10 min π``."""
    z = [float(x) for x in z]
    lo = max(z) - min(z)  # −log π_min ≤ this + log 3
    with mp.workdps(60 + int(lo / math.log(10)) + 2):
        th = [mp.mpf(x) for x in z]
        g = []
        for k in range(K):
            e = [mp.mpf(int(i == k)) for i in range(K)]
            g.append(mp.diff(lambda s: mp_loss([t + s * ek for t, ek in zip(th, e)]), 0))
        return g


@pytest.fixture(scope="module")
def objective():
    obj, *_ = build({**fp.DEFAULT_SPEC, "loss": "aot_unpaired"})
    return obj


@pytest.fixture(scope="module")
def row():
    res = fp.fixed_points(only=["aot_unpaired"])
    (r,) = res["records"]
    return res, r


def _f64_grad(obj, z):
    return np.asarray(jax.grad(lambda q: obj.value(q[None], obj.hp))(jnp.asarray(z, dtype=jnp.float64)), dtype=np.float64)


def test_exact_weights_are_the_libraries(objective):
    W = np.asarray(objective.data.weight)[0]
    np.testing.assert_allclose(W, np.array([[float(w) for w in r] for r in exact_weights()]), rtol=0, atol=1e-16)


def test_closed_form_and_infimum():
    """The hand-derived form equals the definition (mpmath, 50 digits) on the region h3 < h2 < h1,
    and the infimum is (73/252)·log 2: the smallest self-paired length over all six orders."""
    import itertools

    W = exact_weights()
    a = [sum(W[k]) for k in range(K)]
    b = [sum(W[i][k] for i in range(K)) for k in range(K)]
    assert a == [Fraction(32, 63), Fraction(13, 36), Fraction(11, 84)] and b == [Fraction(10, 63), Fraction(11, 36), Fraction(15, 28)]

    def not_above(order):
        """Length of [0, 1] where the chosen atom is not above the rejected one for h ordered as
        ``order`` (smallest first; ties allowed): there Δ ≤ 0 and ℓ = sp(−βΔ) ≥ log 2."""
        rank = {k: r for r, k in enumerate(order)}
        ends = lambda w: list(itertools.accumulate(w[k] for k in order))  # noqa: E731
        ea, eb = ends(a), ends(b)
        cuts = sorted(set(ea) | set(eb) | {Fraction(0)})
        tot = Fraction(0)
        for lo, hi in zip(cuts[:-1], cuts[1:]):
            q = (lo + hi) / 2
            ka = order[next(i for i, e in enumerate(ea) if e >= q)]
            kb = order[next(i for i, e in enumerate(eb) if e >= q)]
            tot += (hi - lo) if rank[ka] <= rank[kb] else 0
        return tot

    # L(θ) ≥ not_above·log 2, strictly (the other intervals have sp > 0): the smallest bound is 73/252,
    # for h3 < h2 < h1 only — where it is the self-paired length a3 + b1, and the infimum along the ray
    m = {o: not_above(o) for o in itertools.permutations(range(K))}
    assert min(m.values()) == Fraction(73, 252) == a[2] + b[0] and [o for o, v in m.items() if v == Fraction(73, 252)] == [(2, 1, 0)], m
    with mp.workdps(50):
        for z in ([0.0, -1.0, -3.0], [5.0, -2.0, -30.0], [24.5, -2.86, -32.25]):
            th = [mp.mpf(x) for x in z]
            assert abs(mp_loss(th) - closed_form(th)) <= mp.mpf(10) ** -48


def _probes(start):
    """The per-mass test's own probes (``certificates._per_mass_turn``: 24 t's from 2^-6 until the
    largest lowered log-mass reaches RAY_FAR_LOGP); at the last ones y3's mass is 0 in float64
    (log π(y3) ≈ −1150) but its logit is finite."""
    from bandit_lab import certificates as C

    lp = start - np.logaddexp.reduce(start)
    t_max = (float(lp[1]) - C.RAY_FAR_LOGP) / (-RAY[1])
    return [start + t * RAY for t in np.geomspace(2.0 ** -6, t_max, 24)]


@pytest.mark.parametrize("which", ["old machine's ray", "the solver's ray"])
def test_float64_gradient_signs_equal_mpmath(objective, row, which):
    """At every probe of the certificate's ray the float64 gradient (the library's ``jax.grad``) has
    mpmath's sign in every component and in ``∇L·d``, and agrees to 1e-10 relative (measured
    ≤ 1e-12: logits up to |θ| ≈ 1200 carry ~1e-13 of rounding into e^{−u}, and ∂L/∂θ2 =
    −a2σ(−v) + b2σ(−u) cancels by a factor of a few).
    The ray from the old machine's point is where its float64 gradient had y1's and y3's
    components 0 (absorbed) and ∇L·d > 0 at log π(y2) ≈ −45 — the spurious "turn"."""
    if which == "old machine's ray":
        start = OLD_START
    else:
        import bandit_lab as bl

        ex = bl.solve_exact(objective)
        v = bl.certify(objective, ex)
        assert v.kind.value == "no finite minimiser", v.summary
        start = np.asarray(ex.params, dtype=np.float64).reshape(-1)
        np.testing.assert_allclose(v.certificate["direction"], RAY, atol=1e-12)  # the ray analysed above
    for z in _probes(start):
        g64 = _f64_grad(objective, z)
        gmp = mp_grad(z)
        for k in range(K):
            assert np.sign(g64[k]) == int(mp.sign(gmp[k])), (z, k, g64, gmp)
            assert abs(g64[k] - float(gmp[k])) <= 1e-10 * abs(float(gmp[k])), (z, k, g64[k], gmp[k])
        slope_mp = mp.fsum(mp.mpf(float(dk)) * gk for dk, gk in zip(RAY, gmp))
        assert slope_mp < 0 and float(g64 @ RAY) < 0, (z, g64 @ RAY, slope_mp)
        # the analytic sign structure: ∂3 > 0 > ∂1 in mpmath
        assert gmp[2] > 0 > gmp[0]


def test_per_mass_slope_tends_to_its_closed_form_limit(objective):
    """Along the ray the float64 per-mass slope −(∇L·d)/Σ|d_k|π_k approaches
    b2 + 2a2·e^{θ1 − 2θ2 + θ3} (β = 1), which is constant along d: it never turns."""
    lim = 11 / 36 + 2 * 13 / 36 * math.exp(OLD_START[0] - 2 * OLD_START[1] + OLD_START[2])
    for z in _probes(OLD_START)[-8:]:  # log π(y2) from ≈ −110 to −575
        p = np.exp(z - np.logaddexp.reduce(z))
        o = -float(_f64_grad(objective, z) @ RAY) / float(-RAY[1] * p[1] - RAY[2] * p[2])
        assert o == pytest.approx(lim, rel=1e-12)


def test_library_verdict_is_no_finite_minimiser_with_the_mpmath_infimum(row):
    """The fixed-points row: "no finite minimiser", y2 and y3 vanishing, limit (1, 0, 0), infimum
    (73/252)·log 2 to 4 ulp (float64 sums nine intervals' len·log 2)."""
    res, r = row
    v = r["verdict"]
    assert v["kind"] == "no finite minimiser" and r["finite"] is False, v["summary"]
    assert v["vanishing"] == ["y2", "y3"] and v["limit"] == [[1.0, 0.0, 0.0]]
    assert res["no_finite_minimiser"] == ["aot_unpaired"] and res["not_certified"] == []
    with mp.workdps(50):
        inf = mp.mpf(73) / 252 * mp.log(2)
    assert abs(v["certificate"]["infimum"] - float(inf)) <= 4 * np.spacing(float(inf)), (v["certificate"]["infimum"], inf)
    assert "per_mass_turn" not in v["certificate"]
