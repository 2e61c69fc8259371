"""Stochastic training (a fresh mini-batch of B pairs at every step, ``TrainConfig.batch_size``),
Azar et al.'s mini-batch protocol, and trajectories of any parameterization in the public API.

References are independent of the code under test: the multinomial / hypergeometric law of a
batch (enumerated), the population gradient, an SGD step recomputed by hand, the exact solver,
closed forms of a log-linear softmax."""
from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bandit_lab as bl
from bandit_lab.core.data import minibatch, sample
from bandit_lab.errors import BanditError
from bandit_lab.experiments import azar_minibatch as az
from bandit_lab.runner import train_batch


def _bt_problem():
    return bl.Problem.create([0.5, 0.3, 0.2], reward=[1.0, 0.0, -0.5], pairs="uniform")


def _grad(obj, params, data):
    return np.asarray(jax.grad(lambda p: obj.value(p, obj.hp, data))(params))


# --------------------------------------------------------------------------- the batch law

def test_minibatch_with_replacement_is_the_multinomial_law_and_unbiased():
    """B = 2 draws with replacement from a population with 6 labelled triples: the sampler's
    composition frequencies match the multinomial law, and the expected batch gradient — exactly
    by enumerating the law, and by averaging the sampler's draws — is the population gradient."""
    pb = _bt_problem()
    obj = bl.make_objective(pb, "dpo", {"beta": 0.7})
    w = np.asarray(obj.data.weight).reshape(-1)
    support = np.flatnonzero(w > 0)
    assert support.size == 6
    B, n = 2, 40_000
    draws = jax.vmap(lambda k: minibatch(obj.data, B, k).weight.reshape(-1))(jax.random.split(jax.random.key(7), n))
    counts = np.rint(np.asarray(draws) * B).astype(int)
    assert np.all(counts[:, w == 0] == 0) and np.all(counts.sum(1) == B)
    # law of the composition: P(c) = B!/∏c_i! ∏ w_i^c_i
    law = {}
    for combo in itertools.combinations_with_replacement(support, B):
        c = np.bincount(combo, minlength=w.size)
        law[tuple(c)] = math.factorial(B) / np.prod([math.factorial(v) for v in c]) * np.prod(w ** c)
    assert abs(sum(law.values()) - 1) < 1e-12
    freq = {}
    for c in map(tuple, counts):
        freq[c] = freq.get(c, 0) + 1
    for c, p in law.items():
        se = math.sqrt(p * (1 - p) / n)
        assert abs(freq.get(c, 0) / n - p) < 5 * se + 1e-12, (c, freq.get(c, 0) / n, p)
    # exact: Σ_c P(c) ∇L(c/B) = ∇L(population)
    theta = jnp.asarray(np.log(pb.pi_ref) + np.array([[0.3, -0.2, 0.1]]))
    g_pop = _grad(obj, theta, obj.data)
    g_exact = sum(p * _grad(obj, theta, bl.PreferenceData(jnp.asarray(np.array(c, float) / B).reshape(obj.data.weight.shape)))
                  for c, p in law.items())
    np.testing.assert_allclose(g_exact, g_pop, rtol=0, atol=1e-13)
    # Monte-Carlo: mean of the sampler's batch gradients within 5 standard errors
    gs = jax.vmap(lambda d: jax.grad(lambda p: obj.value(p, obj.hp, bl.PreferenceData(d.reshape(obj.data.weight.shape))))(theta))(draws)
    gs = np.asarray(gs)
    se = gs.std(0) / math.sqrt(n)
    assert np.all(np.abs(gs.mean(0) - g_pop) < 5 * se + 1e-12), (gs.mean(0), g_pop, se)


def test_minibatch_without_replacement_is_a_simple_random_sample():
    """From a dataset of n = 5 pairs, B = 3 distinct items: every 3-subset of the 5 items equally
    likely, so the composition follows the multivariate hypergeometric law, and E[weight] = data."""
    pb = _bt_problem()
    data = sample(bl.population(pb), 5, jax.random.key(3))
    c = np.rint(np.asarray(data.weight).reshape(-1) * 5).astype(int)
    assert c.sum() == 5
    items = np.repeat(np.arange(c.size), c)  # the dataset, item by item
    law = {}
    for sub in itertools.combinations(range(5), 3):
        k = tuple(np.bincount(items[list(sub)], minlength=c.size))
        law[k] = law.get(k, 0) + 1 / math.comb(5, 3)
    n = 30_000
    draws = jax.vmap(lambda k: minibatch(data, 3, k, replacement=False, pool=5).weight.reshape(-1))(jax.random.split(jax.random.key(1), n))
    counts = np.rint(np.asarray(draws) * 3).astype(int)
    assert np.all(counts <= c)  # never more copies of a pair than the dataset holds
    freq = {}
    for k in map(tuple, counts):
        freq[k] = freq.get(k, 0) + 1
    assert set(freq) <= set(law)
    for k, p in law.items():
        assert abs(freq.get(k, 0) / n - p) < 5 * math.sqrt(p * (1 - p) / n), (k, p)
    np.testing.assert_allclose(sum(p * np.array(k) / 3 for k, p in law.items()), c / 5, atol=1e-15)


# --------------------------------------------------------------------------- the trainer

def test_each_step_uses_its_own_fresh_batch():
    """SGD at a constant rate: step t's update is −lr·∇L(minibatch(data, B, batch_key(seed, t))),
    recomputed by hand for t = 0, 1, 2 and compared with the logged policies — so each step
    draws a new batch, keyed by (seed, step)."""
    pb = _bt_problem()
    obj = bl.make_objective(pb, "ipo", {"beta": 0.5})
    lr, B, seed = 0.1, 4, 11
    cfg = bl.TrainConfig(optimizer="sgd", schedule="constant", steps=3, batch_size=B, log_steps=(0, 1, 2, 3))
    tr = bl.train_policy(obj, cfg, lr=lr, seed=seed)
    theta = jnp.asarray(np.log(pb.pi_ref))
    batches = []
    for t in range(3):
        batch = minibatch(obj.data, B, bl.batch_key(float(seed), t))
        batches.append(np.asarray(batch.weight))
        theta = theta - lr * _grad(obj, theta, batch)
        np.testing.assert_allclose(tr.policies[t + 1], np.asarray(jax.nn.softmax(theta, -1)), rtol=0, atol=1e-14)
    np.testing.assert_allclose(np.asarray(tr.params), np.asarray(theta), rtol=0, atol=1e-14)
    assert not np.array_equal(batches[0], batches[1]) or not np.array_equal(batches[1], batches[2])
    # the full-batch run differs (a batch is not the population)
    full = bl.train_policy(obj, bl.TrainConfig(optimizer="sgd", schedule="constant", steps=3), lr=lr, seed=seed)
    assert np.abs(np.asarray(full.params) - np.asarray(theta)).max() > 1e-3


def test_reproducible_bit_for_bit_and_seeds_differ():
    pb = az.problem("D1")
    obj = bl.make_objective(pb, "ipo", {"beta": 1.0})
    cfg = bl.TrainConfig(steps=300, schedule="constant", batch_size=9, log_steps=(0, 100, 300))
    hps = [[{**obj.hp, "lr": 0.01, "seed": s} for s in range(10)]]
    (a,) = train_batch([obj], cfg, hps)
    (b,) = train_batch([obj], cfg, hps)
    assert np.array_equal(a.policies, b.policies) and np.array_equal(a.loss, b.loss) and np.array_equal(a.params, b.params)
    P = a.policy[:, 0]
    gaps = [float(np.abs(P[i] - P[j]).max()) for i in range(10) for j in range(i + 1, 10)]
    assert min(gaps) > 1e-6, min(gaps)  # every pair of seeds trained on different batches
    one = bl.train_policy(obj, cfg, lr=0.01, seed=4)
    two = bl.train_policy(obj, cfg, lr=0.01, seed=4)
    assert np.array_equal(one.policies, two.policies)


def test_spread_shrinks_as_the_batch_grows_onto_the_exact_optimum():
    """Azar et al.'s D1, IPO (unique minimiser, certified by the exact solver), Adam lr 0.01 on
    fresh batches (with replacement), 16 seeds: the mean TV to the optimum falls with B, and
    the seed mean approaches it. Measured (2000 steps): mean TV 1.2e-2, 6.0e-3, 2.5e-3 at B = 1,
    9, 81; TV of the seed mean 4.0e-3, 2.5e-3, 4.7e-4."""
    pb = az.problem("D1")
    obj = bl.make_objective(pb, "ipo", {"beta": 1.0})
    ex = bl.solve_exact(obj)
    assert ex.converged and ex.residual < 1e-12
    # the optimum is the IPO closed form π_ref·exp(r/β)/Z with the dataset's r_IPO (Azar Prop. 4)
    np.testing.assert_allclose(ex.policy, bl.solve_exact(obj.counterpart()).policy, atol=1e-10)
    spread, centre = [], []
    for B in (1, 9, 81):
        cfg = bl.TrainConfig(steps=2000, schedule="constant", batch_size=B, log_steps=(0, 2000))
        (tr,) = train_batch([obj], cfg, [[{**obj.hp, "lr": 0.01, "seed": s} for s in range(16)]])
        P = tr.policy[:, 0]
        spread.append(float(np.mean(0.5 * np.abs(P - ex.policy[0]).sum(-1))))
        centre.append(float(0.5 * np.abs(P.mean(0) - ex.policy[0]).sum()))
    assert spread[0] > 1.4 * spread[1] > 1.4 * 1.4 * spread[2], spread
    assert spread[2] < 5e-3 and centre[2] < 1.5e-3 and centre[2] < centre[0], (spread, centre)


def test_azar_d3_zero_full_batch_gradient_noise_is_the_only_driver():
    """D3 = {(y_a, y_b), (y_b, y_a)}: at π_ref the full-batch gradient is exactly 0 for IPO and DPO,
    so full-batch Adam never leaves π_ref (bit for bit); on mini-batches π_a − π_b jitters about 0
    while the direction the loss does not see (½(θ_a + θ_b) − θ_c) stays put to rounding."""
    pb = az.problem("D3")
    objs = [bl.make_objective(pb, loss, {"beta": 1.0}) for loss in ("ipo", "dpo")]
    for obj in objs:
        assert np.all(_grad(obj, obj.param.init(), obj.data) == 0.0), obj.label
    seeds = [[{**o.hp, "lr": 0.01, "seed": s} for s in range(10)] for o in objs]
    full = train_batch(objs, bl.TrainConfig(steps=500, schedule="constant", log_steps=(0, 500)), seeds)
    mini = train_batch(objs, bl.TrainConfig(steps=1000, schedule="constant", batch_size=9, log_steps=(0, 1000)), seeds)
    for obj, f, tr in zip(objs, full, mini):
        assert np.array_equal(f.policy[:, 0], np.broadcast_to(pb.pi_ref, (10, 3))), obj.label  # never leaves π_ref
        P = tr.policy[:, 0]
        assert np.sqrt(np.mean((P[:, 0] - P[:, 1]) ** 2)) > 5e-3, obj.label  # the noise moves it
        assert np.abs(az.flat(P) - az.flat(pb.pi_ref)).max() < 1e-12, obj.label  # ... only along the seen direction


def test_azar_experiment_reports_limits_not_optima(tmp_path):
    """The experiment's reference for DPO on D1 is the limit of a loss without a minimiser, said
    so; IPO's is the certified optimum; the spread falls with B for IPO."""
    s = az.Settings(datasets=("D1",), batches=(1, 81), seeds=8, steps=1500)
    res = az.run(s)
    rows = {(r["loss"], r["batch"]): r for r in res["summary"]}
    assert rows[("dpo", 1)]["reference"] == [1.0, 0.0, 0.0]
    assert rows[("dpo", 1)]["reference_is"].startswith("no finite minimiser")
    assert rows[("ipo", 1)]["reference_is"].startswith("exact minimiser")
    assert rows[("ipo", 81)]["mean_tv"] < rows[("ipo", 1)]["mean_tv"] / 2
    text = az.report(res)
    assert "converged" not in text and "exact optimum" not in text
    assert "regenerate: bandit-lab run azar-minibatch" in text
    (path,) = az.plot(res, str(tmp_path))
    assert path.endswith("azar_minibatch.png")


@pytest.mark.slow
def test_azar_full_protocol_18000_steps():
    """The paper's protocol in full: Adam lr 0.01, 18,000 steps, batches drawn with replacement,
    ≥ 10 seeds; IPO on D1: the spread shrinks at every ×9 of B and the centre approaches the optimum."""
    res = az.run(az.Settings(datasets=("D1",), batches=(1, 9, 81, 729), seeds=16, steps=18000))
    ipo = [r for r in res["summary"] if r["loss"] == "ipo"]
    tvs = [r["mean_tv"] for r in ipo]
    assert all(a > b for a, b in zip(tvs, tvs[1:])), tvs
    assert tvs[-1] < tvs[0] / 3 and ipo[-1]["centre_tv"] < ipo[0]["centre_tv"], ipo


# --------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("kw, field", [({"batch_size": -1}, "batch_size"), ({"batch_size": True}, "batch_size"),
                                       ({"batch_size": 3, "batch_replacement": "yes"}, "batch_replacement"),
                                       ({"batch_size": 3, "batch_replacement": False}, "batch_replacement"),
                                       ({"batch_size": 3, "batch_pool": -2}, "batch_pool")])
def test_bad_train_config(kw, field):
    with pytest.raises(BanditError, match=field):
        bl.TrainConfig(**kw).validate()


def test_without_replacement_needs_a_finite_dataset():
    pb = _bt_problem()
    pop = bl.make_objective(pb, "dpo")
    with pytest.raises(BanditError, match="not a dataset of 7 pairs"):
        bl.train_policy(pop, bl.TrainConfig(steps=5, batch_size=3, batch_replacement=False, batch_pool=7))
    ds = bl.make_objective(pb, "dpo", data=sample(bl.population(pb), 7, jax.random.key(0)))
    tr = bl.train_policy(ds, bl.TrainConfig(steps=5, batch_size=3, batch_replacement=False, batch_pool=7))
    assert np.isfinite(tr.policy).all()


def test_batch_on_an_objective_without_pairs_is_refused():
    pb = _bt_problem()
    with pytest.raises(BanditError, match=r"batch_size: rlhf\[reverse_kl\] reads no labelled pairs"):
        bl.train_policy(bl.make_objective(pb, "rlhf"), bl.TrainConfig(steps=5, batch_size=3))


def _spec(batch, **extra):
    return {"pi_ref": [0.4, 0.4, 0.2], "preference": {"pi_star": [0.6, 0.3, 0.1]}, "loss": "ipo", "batch": batch,
            "optimizer": {"steps": 200, "schedule": "constant", "lr": 0.01}, **extra}


@pytest.mark.parametrize("batch, extra, msg", [
    ({"size": 0}, {}, r"batch\.size: must be an integer in \[1"),
    ({"size": 9, "replacement": "yes"}, {}, r"batch\.replacement: must be true or false"),
    ({"size": 9, "replacment": True}, {}, r"batch\.replacment: unknown key; did you mean 'replacement'"),
    ({"size": 9, "replacement": False}, {}, r"batch\.replacement: false draws 9 distinct pairs"),
    ({"size": 9, "replacement": False}, {"data": {"sampled": 5}}, r"n ≥ 9 \(got n = 5\)"),
    ({"size": 9}, {"loss": "rlhf"}, r"batch: applies to losses that read labelled pairs; 'rlhf'"),
    (9, {}, r"batch: must be an object"),
])
def test_bad_batch_in_a_spec_is_one_line_exit_2(tmp_path, capsys, batch, extra, msg):
    import json
    import re

    from cli.main import main

    path = tmp_path / "spec.json"
    path.write_text(json.dumps(_spec(batch, **extra)))
    with pytest.raises(SystemExit) as e:
        main(["solve", str(path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and re.search(msg, err[0]), err


def test_spec_batch_trains_on_minibatches_reproducibly():
    """``"batch": {"size": 9}`` reaches the trainer: the spec's run equals the API run with
    ``TrainConfig(batch_size=9)``, bit for bit, and differs from full-batch training."""
    spec = _spec({"size": 9})
    a, b = bl.solve(spec), bl.solve(spec)
    assert a.policy == b.policy
    full = bl.solve({k: v for k, v in spec.items() if k != "batch"})
    assert max(abs(x - y) for x, y in zip(a.policy, full.policy)) > 1e-4
    with bl.x64():
        pb = bl.Problem.create([0.4, 0.4, 0.2], pi_star=[0.6, 0.3, 0.1])
        tr = bl.train_policy(bl.make_objective(pb, "ipo"), bl.TrainConfig(steps=200, schedule="constant", batch_size=9, log_steps=(0, 200)),
                             lr=0.01, seed=0)
    assert a.policy == tr.policy[0].tolist()
    # without replacement, from the spec's sampled dataset
    c = bl.solve(_spec({"size": 4, "replacement": False}, data={"sampled": 20}))
    assert abs(sum(c.policy) - 1) < 1e-12


# --------------------------------------------------------------------------- parameterizations

def test_likelihood_displacement_under_shared_loglinear_features():
    """One pair y1 ≻ y2, π ∝ exp(w·φ) with φ = (1, 2, −1): DPO lowers w, and both π(y_w) and π(y_l)
    fall at every logged step; the logged values equal the closed form of the softmax at the
    logged weights' policy (checked against the final weight, recomputed by hand)."""
    pb = bl.Problem.create([1 / 3, 1 / 3, 1 / 3], matrix=[[.5, 1, .5], [0, .5, .5], [.5, .5, .5]], pairs=[[0, 1, 1.0]])
    phi = bl.make_parameterization("loglinear", pb, features=[[1.0], [2.0], [-1.0]])
    tr = bl.train_policy(bl.make_objective(pb, "dpo", {"beta": 1.0}, param=phi), bl.TrainConfig(steps=300), lr=0.01)
    ch, rj = np.asarray(tr.chosen), np.asarray(tr.rejected)
    assert ch.shape == rj.shape == (len(tr.steps),)
    assert np.all(np.diff(ch) < 0) and np.all(np.diff(rj) < 0)
    assert ch[0] == pytest.approx(1 / 3, abs=1e-15) and rj[0] == pytest.approx(1 / 3, abs=1e-15)
    w = float(np.asarray(tr.params)[0])
    z = np.exp(w) + np.exp(2 * w) + np.exp(-w)
    assert w < -1.0
    assert ch[-1] == pytest.approx(np.exp(w) / z, rel=1e-12) and rj[-1] == pytest.approx(np.exp(2 * w) / z, rel=1e-12)
    assert ch[-1] < 0.08 and rj[-1] < 0.025  # measured 0.0708 and 0.0197: the mass went to y3
    np.testing.assert_allclose(tr.policies[:, 0, 0], ch, rtol=0, atol=1e-15)


def test_make_parameterization_names_and_errors():
    pb = _bt_problem()
    for name, kw in (("softmax", {}), ("simplex", {}), ("mixture", {"pi0": [1 / 3] * 3, "pi1": [1, 0, 0]}),
                     ("loglinear", {"features": np.eye(3)})):
        p = bl.make_parameterization(name, pb, **kw)
        obj = bl.make_objective(pb, "ipo", param=p)
        tr = bl.train_policy(obj, bl.TrainConfig(steps=50))
        assert tr.chosen is not None and np.isfinite(tr.policy).all() and obj.param is p
    with pytest.raises(BanditError, match="unknown parameterization 'logit'"):
        bl.make_parameterization("logit", pb)
    with pytest.raises(BanditError, match="needs 'features'"):
        bl.make_parameterization("loglinear", pb)
