"""Problems and preference data: validation, hand-computed matrices and weights, sampling."""
import jax
import numpy as np
import pytest

from bandit_lab import BanditError, Problem
from bandit_lab.core.data import make_data, population, sample
from bandit_lab.core.problems import bt_matrix, bt_reward_of_matrix, target_matrix


def kong():
    return Problem.create([0.4, 0.4, 0.2], pi_star=[0.6, 0.3, 0.1])


@pytest.mark.parametrize(
    "kwargs, msg",
    [
        (dict(pi_ref=[-0.1, 0.6, 0.5], pi_star=[0.6, 0.3, 0.1]), "non-negative"),
        (dict(pi_ref=[0.4, 0.4, 0.3], pi_star=[0.6, 0.3, 0.1]), "sum to 1"),
        (dict(pi_ref=[0.4, 0.4, 0.2 + 2e-9], pi_star=[0.6, 0.3, 0.1]), "sum to 1"),
        (dict(pi_ref=[0.4, 0.4, 0.2], pi_star=[0.6, 0.4]), "responses"),
        (dict(pi_ref=[0.5, 0.5]), "exactly one preference"),
        (dict(pi_ref=[0.5, 0.5], pi_star=[0.5, 0.5], reward=[0, 1]), "exactly one preference"),
        (dict(pi_ref=[0.5, 0.5], matrix=[[0.5, 0.7], [0.7, 0.5]]), r"P \+ Pᵀ = 1"),
        (dict(pi_ref=[0.5, 0.5], matrix=[[0.5, 1.2], [-0.2, 0.5]]), "probabilities"),
        (dict(pi_ref=[0.5, 0.5], reward=[0.0, 1.0], pairs="everything"), "pairs must be"),
        (dict(pi_ref=[0.5, 0.5], reward=[0.0, 1.0], pairs=[[0, 0, 1.0]]), "two distinct"),
        (dict(pi_ref=[0.5, 0.5], reward=[0.0, 1.0], pairs=[[0, 1, -1.0]]), "positive"),
        (dict(pi_ref=[0.5, 0.5], reward=[0.0, float("nan")]), "non-finite"),
        (dict(pi_ref=[1.0], reward=[0.0]), "at least 2"),
    ],
)
def test_validation_rejects_bad_input(kwargs, msg):
    with pytest.raises(BanditError, match=msg):
        Problem.create(**kwargs)


def test_sum_tolerance_is_1e9():
    Problem.create([0.4, 0.4, 0.2 + 5e-10], pi_star=[0.6, 0.3, 0.1])  # within 1e-9: accepted


def test_target_matrix_by_hand():
    P = target_matrix(np.array([0.6, 0.3, 0.1]))
    assert P[0, 1] == pytest.approx(0.6 / 0.9, abs=1e-15)
    assert P[1, 2] == pytest.approx(0.75, abs=1e-15)
    assert P[2, 0] == pytest.approx(0.1 / 0.7, abs=1e-15)
    np.testing.assert_allclose(P + P.T, 1.0, atol=1e-15)
    # zero-mass responses: p(a ≻ b) = 1 when π*(b) = 0, ½ when both are 0
    Q = target_matrix(np.array([0.5, 0.0, 0.5, 0.0]))
    assert Q[0, 1] == 1.0 and Q[1, 3] == 0.5


def test_bt_reward_round_trip_and_intransitive_matrix():
    r = np.array([0.3, -1.0, 2.0, 0.1])
    rec = bt_reward_of_matrix(bt_matrix(r)[None])
    np.testing.assert_allclose(rec[0], r - r.mean(), atol=1e-12)
    rps = np.array([[0.5, 0.8, 0.3], [0.2, 0.5, 0.9], [0.7, 0.1, 0.5]])
    assert bt_reward_of_matrix(rps[None]) is None
    pb = Problem.create([0.3, 0.3, 0.4], matrix=rps)
    assert pb.reward is None and pb.preference_kind == "matrix"


def test_population_weights_by_hand():
    pb = kong()
    W = np.asarray(population(pb).weight)[0]
    P = target_matrix(np.array([0.6, 0.3, 0.1]))
    # uniform over the three unordered pairs: weight(w=i, l=j) = p(i ≻ j) / 3
    np.testing.assert_allclose(W, (P / 3.0) * (1 - np.eye(3)), atol=1e-15)
    assert W.sum() == pytest.approx(1.0, abs=1e-15)


def test_reference_pairs_and_ipo_reward_by_hand():
    ref = np.array([0.5, 0.3, 0.2])
    pb = Problem.create(ref, reward=[1.0, 0.0, -1.0], pairs="reference")
    np.testing.assert_allclose(pb.mu[0], ref, atol=1e-15)  # marginal of π_ref ⊗ π_ref
    P = bt_matrix(np.array([1.0, 0.0, -1.0]))
    np.testing.assert_allclose(pb.r_ipo[0], P @ ref, atol=1e-15)
    W = np.asarray(population(pb).weight)[0]
    expect = 2 * np.outer(ref, ref) * P * (1 - np.eye(3))
    np.testing.assert_allclose(W, expect / expect.sum(), atol=1e-15)


def test_explicit_pairs_and_several_contexts():
    pb = Problem.create([0.5, 0.5], reward=[0.0, 1.0], pairs=[[0, 1, 2.0]])
    assert pb.pairs.shape == (1, 2, 2)
    pb2 = Problem.create([[0.2, 0.8], [0.6, 0.4]], reward=[[0.0, 1.0], [1.0, 0.0]], pairs=[[[0, 1, 1.0]], [[1, 0, 3.0]]],
                         context_weight=[0.25, 0.75])
    W = np.asarray(population(pb2).weight)
    assert W[0].sum() == pytest.approx(0.25) and W[1].sum() == pytest.approx(0.75)


def test_sampled_data_is_reproducible_and_unbiased():
    pb = kong()
    a = make_data(pb, "sampled", 500, seed=3)
    b = make_data(pb, "sampled", 500, seed=3)
    c = make_data(pb, "sampled", 500, seed=4)
    assert np.array_equal(np.asarray(a.weight), np.asarray(b.weight))
    assert not np.array_equal(np.asarray(a.weight), np.asarray(c.weight))
    counts = np.asarray(a.weight) * 500
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-9)
    # law of large numbers: 5e4 draws within 5 standard errors of the population weights
    pop = np.asarray(population(pb).weight)
    big = np.asarray(sample(population(pb), 50_000, jax.random.key(0)).weight)
    se = np.sqrt(pop * (1 - pop) / 50_000)
    assert np.all(np.abs(big - pop) <= 5 * se + 1e-12)


def test_make_data_rejects_bad_kind():
    with pytest.raises(BanditError):
        make_data(kong(), "sampled", 0)
    with pytest.raises(BanditError):
        make_data(kong(), "bootstrap")
