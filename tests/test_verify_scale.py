"""`verify`'s compile sharing (issue 22): padded instances and the jitted on-policy field give
the same numbers as the unshared forms they replace."""
import jax
import jax.numpy as jnp
import numpy as np

from bandit_lab.checks import onpolicy
from bandit_lab.core.objective import make_objective
from bandit_lab.core.random_problems import random_problem


def test_padded_problem_repeats_the_last_context():
    rng = np.random.default_rng(0)
    pb = random_problem(rng, k=3, contexts=1, preference="reward")
    assert onpolicy.padded(pb, 1) is pb
    q = onpolicy.padded(pb, 3)
    assert q.pi_ref.shape == (3, 3) and q.reward.shape == (3, 3)
    assert np.array_equal(q.pi_ref, np.repeat(pb.pi_ref, 3, 0)) and np.array_equal(q.reward, np.repeat(pb.reward, 3, 0))
    assert np.allclose(q.context_weight, 1 / 3) and q.preference_kind == pb.preference_kind
    pb2 = random_problem(rng, k=3, contexts=2, preference="pi_star")
    q2 = onpolicy.padded(pb2, 3)
    assert np.array_equal(q2.pi_star[:2], pb2.pi_star) and np.array_equal(q2.pi_star[2], pb2.pi_star[1])
    assert np.array_equal(q2.pref[:2], pb2.pref)


def test_jitted_field_is_the_eager_gradient_and_reads_the_problem_as_data():
    rng = np.random.default_rng(1)
    onpolicy._FIELDS.clear()
    for i in range(2):  # two problems of one shape, other β: one program, each its own numbers
        pb = random_problem(rng, k=3, contexts=2, preference="reward")
        o = make_objective(pb, "rloo", {"beta": 0.5 + i, "group_size": 3})
        th = rng.normal(0, 1.0, pb.pi_ref.shape)
        eager = np.asarray(jax.grad(lambda p: o.value(p, o.hp))(jnp.asarray(th)))
        np.testing.assert_allclose(onpolicy.field(o, th), eager, rtol=0, atol=1e-14)
    assert len(onpolicy._FIELDS) == 1
