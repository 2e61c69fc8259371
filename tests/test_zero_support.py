"""π_ref with zeros (bandit_lab.core.support; issue 20 item 3): values and gradients finite and equal to
those of the problem with the zero-reference responses removed (an independent reference: the
full-support code path, which never sees a zero); refusals name pi_ref."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bandit_lab as bl
from bandit_lab.errors import BanditError
from bandit_lab.core.objective import make_objective
from bandit_lab.solvers.oracles import rlhf_optimum
from bandit_lab.core.params import MaskedSoftmax, Softmax
from bandit_lab.core.support import LOG_ZERO

REF3, REF2 = [0.5, 0.3, 0.0, 0.2], [0.5, 0.3, 0.2]
STAR3, STAR2 = [0.6, 0.1, 0.05, 0.25], np.array([0.6, 0.1, 0.25])
KEEP = [0, 1, 3]
THETA = jnp.array([[0.4, -1.1, 2.5, 0.3]])


def _vg(obj, theta):
    return jax.value_and_grad(lambda t: obj.value(t, obj.hp))(theta)


@pytest.fixture(scope="module")
def x64():
    with bl.x64():
        yield


@pytest.mark.parametrize("loss, params", [
    ("rlhf", {"beta": 0.7}), ("rlhf", {"beta": 0.7, "divergence": "forward_kl"}), ("rlhf", {"beta": 0.7, "divergence": "js"}),
    ("reinforce", {"beta": 0.3}), ("grpo", {"beta": 0.3, "group_size": 4}), ("rloo", {"beta": 0.3}),
])
def test_kl_regularised_equals_restricted_problem(x64, loss, params):
    """Masked logits: π = 0 exactly off the support; value and gradient on the support equal those
    of the 3-response problem; the masked logit has gradient exactly 0."""
    full = make_objective(bl.Problem.create(REF3, pi_star=STAR3 / np.sum(STAR3)), loss, params)
    sub = make_objective(bl.Problem.create(REF2, pi_star=STAR2 / STAR2.sum()), loss, params)
    assert type(full.param) is MaskedSoftmax and type(sub.param) is Softmax
    # the reward of the restricted problem must be the same numbers: log π* of the kept responses
    sub = make_objective(bl.Problem.create(REF2, reward=np.log(np.asarray(STAR3) / np.sum(STAR3))[KEEP]), loss, params)
    v3, g3 = _vg(full, THETA)
    v2, g2 = _vg(sub, THETA[:, KEEP])
    assert np.isfinite(float(v3)) and np.all(np.isfinite(np.asarray(g3)))
    assert float(full.policy(THETA)[0, 2]) == 0.0
    assert float(g3[0, 2]) == 0.0
    np.testing.assert_allclose(float(v3), float(v2), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(np.asarray(g3)[:, KEEP], np.asarray(g2), rtol=1e-12, atol=1e-14)


def test_rlhf_optimum_is_zero_off_support(x64):
    """The exact solver (masked Newton) and the closed form π_ref·e^{r/β}/Z: exactly 0 at y3."""
    pb = bl.Problem.create(REF3, pi_star=STAR3)
    closed = rlhf_optimum(pb.pi_ref, pb.reward, 0.7)
    assert closed[0, 2] == 0.0
    ref2 = np.asarray(REF2)
    want = ref2 * np.asarray(STAR2) ** (1 / 0.7)
    np.testing.assert_allclose(closed[0, KEEP], want / want.sum(), rtol=1e-14)
    r = bl.solve_exact(make_objective(pb, "rlhf", {"beta": 0.7}))
    assert r.policy[0, 2] == 0.0
    np.testing.assert_allclose(r.policy, closed, atol=1e-12)
    fk = rlhf_optimum(pb.pi_ref, pb.reward, 0.7, "forward_kl")
    assert fk[0, 2] == 0.0 and abs(fk.sum() - 1) < 1e-14


@pytest.mark.parametrize("loss", ["dpo", "ipo", "fdpo", "gaussian_nll", "hinge", "simpo", "trdpo", "wpo"])
def test_pairwise_response_in_no_pair_is_free(x64, loss):
    """A zero-reference response in no pair is free: at π(y3) = 0 the value and gradient equal those
    of the problem without it; losses that read log π only through pair differences (DPO, IPO, hinge,
    …) are flat along its logit (gradient 0 up to rounding, value unchanged when it moves); others
    (f-DPO's forward-KL f'(π/π_ref), WPO's weights, SimPO's log π) feel its mass through the
    normalisation of π — defined and finite everywhere."""
    pairs = [[0, 1, 1.0], [3, 1, 0.5], [0, 3, 2.0]]
    full = make_objective(bl.Problem.create(REF3, pi_star=STAR3, pairs=pairs), loss, {"beta": 0.5})
    assert type(full.param) is Softmax
    v, g = _vg(full, THETA)
    assert np.isfinite(float(v)) and np.all(np.isfinite(np.asarray(g)))
    at_zero = THETA.at[0, 2].set(LOG_ZERO)
    v0, g0 = _vg(full, at_zero)
    assert float(full.policy(at_zero)[0, 2]) == 0.0 and float(g0[0, 2]) == 0.0
    sub = make_objective(bl.Problem.create(REF2, pi_star=STAR2 / STAR2.sum(), pairs=[[0, 1, 1.0], [2, 1, 0.5], [0, 2, 2.0]]),
                         loss, {"beta": 0.5})
    v2, g2 = _vg(sub, THETA[:, KEEP])
    np.testing.assert_allclose(float(v0), float(v2), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(g0)[:, KEEP], np.asarray(g2), rtol=1e-10, atol=1e-14)
    if loss in ("dpo", "ipo", "gaussian_nll", "hinge", "trdpo"):
        assert abs(float(g[0, 2])) <= 1e-15
        np.testing.assert_allclose(float(v), float(v2), rtol=1e-12)


def test_reference_policy_init_is_exact(x64):
    pb = bl.Problem.create(REF3, pi_star=STAR3, pairs=[[0, 1, 1.0]])
    th = Softmax(pb).init()
    assert float(th[0, 2]) == LOG_ZERO
    np.testing.assert_array_equal(np.asarray(jnp.exp(Softmax(pb).log_probs(th))), [REF3])


def test_refusals_name_pi_ref(x64):
    pb = bl.Problem.create(REF3, pi_star=STAR3)  # uniform pairs: y3 appears in pairs
    with pytest.raises(BanditError, match=r"^pi_ref: response 2 has π_ref = 0 but appears in a labelled pair \(0, 2\); dpo's"):
        make_objective(pb, "dpo")
    make_objective(pb, "simpo")  # reference-free: defined
    with pytest.raises(BanditError, match=r"^pi_ref: has zeros, and rlhf is KL-regularised.*not 'simplex'"):
        make_objective(pb, "rlhf", param=bl.make_parameterization("simplex", pb))
    with pytest.raises(BanditError, match=r"^pi_ref: pairs 'reference'"):
        bl.Problem.create([1.0, 0.0, 0.0], pi_star=[0.2, 0.3, 0.5], pairs="reference")


def test_pi_star_zeros_give_deterministic_labels():
    pb = bl.Problem.create([0.5, 0.5, 0.0], pi_star=[1.0, 0.0, 0.0], pairs=[[0, 1, 1.0]])
    assert pb.pref[0, 0, 1] == 1.0 and pb.pref[0, 1, 0] == 0.0 and pb.pref[0, 1, 2] == 0.5


def test_spec_accepts_zero_reference():
    """The schema says minimum 0 and now means it (`bandit-lab schema`)."""
    from bandit_lab.schema import Spec

    s = Spec.model_validate({"pi_ref": [0.5, 0.5, 0], "preference": {"pi_star": [1, 0, 0]}, "pairs": [[0, 1, 1.0]]})
    assert s.pi_ref.tolist() == [0.5, 0.5, 0.0]


def test_with_loss_rechooses_the_parameterization(x64):
    """A pairwise loss's KL-regularised counterpart lives on the support, and back (fixed-points and
    solve switch losses on one objective)."""
    pb = bl.Problem.create([0.5, 0.5, 0.0], pi_star=[1.0, 0.0, 0.0], pairs=[[0, 1, 1.0]])
    dpo = make_objective(pb, "dpo")
    rl = dpo.counterpart()
    assert type(dpo.param) is Softmax and type(rl.param) is MaskedSoftmax
    assert type(rl.with_loss("ipo").param) is Softmax


def test_onpolicy_closed_forms_live_on_the_support(x64):
    """Vojnovic–Yun (GRPO) and Nash-MD characterisations on π_ref with a zero: the 3-response answer
    embedded with an exact 0 (NumPy oracles, independent of the JAX field)."""
    from bandit_lab.onpolicy.closed_forms import grpo_fixed_point, nash_fixed_point

    r = np.log(np.asarray(STAR3))
    pi, res, _ = grpo_fixed_point(np.asarray(REF3), r, 0.5, 4)
    pi2, _, _ = grpo_fixed_point(np.asarray(REF2), r[KEEP], 0.5, 4)
    assert pi[2] == 0.0 and res < 1e-12
    np.testing.assert_array_equal(pi[KEEP], pi2)
    P = bl.Problem.create(REF3, pi_star=STAR3).pref[0]
    nm, _ = nash_fixed_point(np.asarray(REF3), P, 0.5, 0.5)
    nm2, _ = nash_fixed_point(np.asarray(REF2), P[np.ix_(KEEP, KEEP)], 0.5, 0.5)
    assert nm[2] == 0.0
    np.testing.assert_array_equal(nm[KEEP], nm2)


def test_supports_differ_per_context(x64):
    """Two contexts, a zero only in the first: RLHF's exact optimum is π_ref·e^{r/β}/Z per context
    (0 where π_ref is 0); DPO on uniform pairs is refused naming the context."""
    ref = [[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]]
    star = [[0.6, 0.3, 0.1], [0.6, 0.3, 0.1]]
    pb = bl.Problem.create(ref, pi_star=star)
    r = bl.solve_exact(make_objective(pb, "rlhf", {"beta": 0.7}))
    want = np.asarray(ref) * np.asarray(star) ** (1 / 0.7)
    np.testing.assert_allclose(r.policy, want / want.sum(-1, keepdims=True), atol=1e-12)
    assert r.policy[0, 2] == 0.0 and r.policy[1, 2] > 0.1
    with pytest.raises(BanditError, match=r"^pi_ref: response 2 of context 0 has π_ref = 0"):
        make_objective(pb, "dpo")
