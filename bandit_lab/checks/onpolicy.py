"""Theorem checks for on-policy algorithms (issue 12), each over ≥ 20 random float64 bandits.

References: REINFORCE (Williams 1992 Eq. 1), RLOO (Ahmadian et al. 2024 Eq. 6), the KL estimators
k1/k2/k3 (Schulman 2020; Tang & Munos 2025, "On a few pitfalls in KL divergence gradient
estimation for RL"), GRPO (Shao et al. 2024 Eq. 3) and its stationary policies (Vojnovic & Yun
2025), Dr. GRPO (Liu et al. 2025 Eq. 3), Mroueh 2025's success-amplification recurrence, Nash-MD
(Munos et al. 2023). Derivations: ``docs/onpolicy.md``.
"""
from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from bandit_lab.core import metrics
from bandit_lab.checks import Check, padded
from bandit_lab.core.objective import make_objective
from bandit_lab.solvers.oracles import ipo_optimum, rlhf_optimum
from bandit_lab.core.problems import Problem
from bandit_lab.core.random_problems import dirichlet, random_problem
from bandit_lab.infra.xla_flags import run_bound_jit


def _beta(rng, lo=0.3, hi=3.0) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


_FIELDS: dict = {}


def field(obj, theta) -> np.ndarray:
    """The expected update F(θ) = ∇_θ' L(θ'; s(θ)) (state built from θ, detached).

    One jitted program per objective signature (loss, options, shapes) with the problem's arrays
    and the hyperparameters as arguments, kept for the process: evaluated eagerly, every
    primitive compiled a small program of its own per shape (issue 22: ``verify``'s compiles)."""
    key = (obj.signature(), tuple(sorted(obj.hp)))
    if key not in _FIELDS:
        if len(_FIELDS) > 256:
            _FIELDS.clear()
        _FIELDS[key] = jax.jit(lambda p, hp, c, obj=obj: jax.grad(lambda q: obj.value(q, hp, consts=c))(p))
    return np.asarray(_FIELDS[key](jnp.asarray(theta), {k: float(v) for k, v in obj.hp.items()}, obj.consts()))


def _stationary(obj):
    from bandit_lab.onpolicy.stationary import solve

    return solve(obj)


def _stationary_policy(pb, contexts: int, loss: str, params: dict):
    """The exact stationary policy of ``loss`` on ``pb`` (rows of ``pb``'s contexts), solved on
    :func:`padded` ``(pb, contexts)``; ``None`` when the solve did not converge."""
    s = _stationary(make_objective(padded(pb, contexts), loss, params))
    return s.result.policy[: pb.n_contexts], s.result.converged


def _rlhf_grad(pb, theta, beta, div="reverse_kl"):
    return field(make_objective(pb, "rlhf", {"beta": beta, "divergence": div}), theta)  # a plain gradient: no state


# --------------------------------------------------------------------------- gradients

def reinforce_is_rlhf_gradient(n: int, seed: int) -> float:
    """max |E[REINFORCE update, k1 in the reward] − ∇(−E_π r + β KL)| at random θ (also the
    exact-KL variant and the value baseline)."""
    rng = np.random.default_rng(seed)
    worst = 0.0
    for _ in range(n):
        pb = random_problem(rng, k=int(rng.choice([3, 5])), contexts=int(rng.choice([1, 3])))
        beta = _beta(rng)
        th = rng.normal(0, 1.5, pb.pi_ref.shape)
        g = _rlhf_grad(pb, th, beta)
        for lp in ({}, {"baseline": "value"}, {"kl_estimator": "exact", "kl_placement": "loss"}):
            worst = max(worst, np.abs(field(make_objective(pb, "reinforce", {"beta": beta, **lp}), th) - g).max())
    return worst


def _brute_rloo(pb, th, beta, G):
    """E over all K^G ordered groups of (1/G)Σ_i A_i ∇log π(y_i), A = leave-one-out on the
    k1-shaped reward — plain loops, independent of the loss's composition enumeration."""
    X, K = pb.pi_ref.shape
    out = np.zeros((X, K))
    for x in range(X):
        pi = np.exp(th[x] - th[x].max())
        pi /= pi.sum()
        rt = pb.reward[x] - beta * (np.log(pi) - np.log(pb.pi_ref[x]))
        for ys in itertools.product(range(K), repeat=G):
            p = np.prod(pi[list(ys)])
            rr = rt[list(ys)]
            for i, y in enumerate(ys):
                A = rr[i] - (rr.sum() - rr[i]) / (G - 1)
                out[x] += p * A * (np.eye(K)[y] - pi) / G
    return -out * pb.context_weight[:, None]


def rloo_unbiased(n: int, seed: int) -> float:
    """RLOO's expected update (k1 in the reward) = −∇ of the RLHF objective: max error of the
    loss's exact field and of a brute-force sum over ordered groups, G ∈ {2, 3, 4}."""
    rng = np.random.default_rng(seed)
    worst = 0.0
    for _ in range(n):
        pb = random_problem(rng, k=3, contexts=int(rng.choice([1, 2])))
        beta, G = _beta(rng), int(rng.choice([2, 3, 4]))
        th = rng.normal(0, 1.5, pb.pi_ref.shape)
        g = _rlhf_grad(pb, th, beta)
        f = field(make_objective(pb, "rloo", {"beta": beta, "group_size": G}), th)
        worst = max(worst, np.abs(f - g).max(), np.abs(_brute_rloo(pb, th, beta, G) - g).max())
    return worst


def f_k2(u):
    """The f of the k2-in-the-reward functional: f'(u) = ½ log² u, f(1) = 0 (not convex)."""
    return 0.5 * u * jnp.log(u) ** 2 - u * jnp.log(u) + u - 1.0


DIVERGENCE_OF = {  # (estimator, placement) → the functional whose gradient the expected update is
    ("k1", "reward"): ("KL(π‖π_ref)", lambda p, r: jnp.sum(p * jnp.log(p / r))),
    ("k1", "loss"): ("0 (no gradient)", lambda p, r: 0.0 * jnp.sum(p)),
    ("k2", "reward"): ("Σ π_ref f(π/π_ref), f(u) = ½u log²u − u log u + u − 1", lambda p, r: jnp.sum(r * f_k2(p / r))),
    ("k2", "loss"): ("KL(π‖π_ref)", lambda p, r: jnp.sum(p * jnp.log(p / r))),
    ("k3", "reward"): ("KL(π‖π_ref) − KL(π_ref‖π)", lambda p, r: jnp.sum(p * jnp.log(p / r)) - jnp.sum(r * jnp.log(r / p))),
    ("k3", "loss"): ("KL(π_ref‖π)", lambda p, r: jnp.sum(r * jnp.log(r / p))),
}


@functools.lru_cache(maxsize=None)
def _functional_grad(key):
    """∇_θ Σ_x w_x D(softmax(θ_x), π_ref(x)) for the functional D of ``DIVERGENCE_OF[key]``, jitted
    once (evaluated eagerly it compiled a small program per primitive and shape)."""
    D = DIVERGENCE_OF[key][1]
    return jax.jit(jax.grad(lambda t, w, ref: jnp.sum(w * jax.vmap(D)(jax.nn.softmax(t, -1), ref))))


def kl_gradient_table(pb, th) -> dict:
    """For each (estimator, placement): the expected update of REINFORCE with reward 0 and β = 1
    (= E[gradient of the KL term]), the gradient of the claimed functional, and of KL(π‖π_ref)."""
    zero = Problem.create(pb.pi_ref, reward=np.zeros_like(pb.pi_ref))
    w = jnp.asarray(zero.context_weight)
    ref = jnp.asarray(zero.pi_ref)
    t = jnp.asarray(th)
    kl = np.asarray(_functional_grad(("k1", "reward"))(t, w, ref))
    out = {}
    for (est, place), (name, _D) in DIVERGENCE_OF.items():
        o = make_objective(zero, "reinforce", {"beta": 1.0, "kl_estimator": est, "kl_placement": place})
        f = field(o, th)
        g = np.asarray(_functional_grad((est, place))(t, w, ref))
        out[(est, place)] = {"divergence": name, "error": float(np.abs(f - g).max()),
                             "bias": float(np.linalg.norm(f - kl) / max(np.linalg.norm(kl), 1e-300))}
    return out


def kl_estimator_gradients(n: int, seed: int) -> float:
    """max over the six (estimator, placement) pairs of |E[∇ KL term] − ∇D| for the divergence D
    of Table 1 in docs/onpolicy.md."""
    rng = np.random.default_rng(seed)
    worst = 0.0
    for _ in range(n):
        pb = random_problem(rng, k=int(rng.choice([3, 5])), contexts=2)
        th = rng.normal(0, 1.0, pb.pi_ref.shape)
        worst = max(worst, max(v["error"] for v in kl_gradient_table(pb, th).values()))
    return worst


# --------------------------------------------------------------------------- stationary points

def reinforce_rloo_land_on_gibbs(n: int, seed: int) -> float:
    """max TV(exact stationary point, π_ref·e^{r/β}/Z) for reinforce and rloo with the exact KL and
    with k1 in the reward; K ∈ {2, 3, 5, 8}, 1 or 3 contexts (also asserts ‖F‖ ≤ 1e-10)."""
    rng = np.random.default_rng(seed)
    worst = 0.0
    for i in range(n):
        pb = random_problem(rng)
        beta = _beta(rng, 0.5, 3.0)
        gibbs = rlhf_optimum(pb.pi_ref, pb.reward, beta)
        name = ("reinforce", "rloo")[i % 2]
        for lp in ({}, {"kl_estimator": "exact", "kl_placement": "loss"}):
            pol, ok = _stationary_policy(pb, 3, name, {"beta": beta, **lp})
            if not ok:
                return np.inf
            worst = max(worst, metrics.tv(pol, gibbs, pb.context_weight))
    return worst


def _grpo_instance(rng):
    pb = random_problem(rng, k=3, contexts=int(rng.choice([1, 2])), preference="reward")
    return pb, _beta(rng, 0.5, 2.0), int(rng.choice([2, 3, 4]))


def grpo_vojnovic_yun(n: int, seed: int) -> float:
    """GRPO's exact stationary point (k3 in the loss, group std) = the Vojnovic–Yun oracle (own
    NumPy enumeration, SciPy root), both directions: TV(solver, oracle), the V–Y residual at the
    solver's point, and ‖F‖ at the oracle's point; G ∈ {2, 3, 4} (G = 2 uses the pairwise closed form)."""
    from bandit_lab.onpolicy.closed_forms import abar, abar_pairs, grpo_fixed_point

    rng = np.random.default_rng(seed)
    worst = 0.0
    for _ in range(n):
        pb, beta, G = _grpo_instance(rng)
        o = make_objective(pb, "grpo", {"beta": beta, "group_size": G})
        pol, _ = _stationary_policy(pb, 2, "grpo", {"beta": beta, "group_size": G})
        for x in range(pb.n_contexts):
            pi_o, res, _ = grpo_fixed_point(pb.pi_ref[x], pb.reward[x], beta, G)
            pi_s = pol[x]
            a = abar_pairs(pi_s, pb.reward[x]) if G == 2 else abar(pi_s, pb.reward[x], G, "group_std")
            vy = pb.pi_ref[x] / (1 - a / beta)
            worst = max(worst, res, metrics.tv(pi_s, pi_o), np.abs(vy - pi_s).max())
        th_o = np.log(np.stack([grpo_fixed_point(pb.pi_ref[x], pb.reward[x], beta, G)[0] for x in range(pb.n_contexts)]))
        worst = max(worst, np.abs(field(o, th_o)).max())
    return worst


def grpo_differs_from_gibbs(n: int, seed: int) -> float:
    """smallest TV(GRPO's stationary point, π_ref·e^{r/β}/Z) over instances (k3 in the loss)."""
    rng = np.random.default_rng(seed)
    smallest = np.inf
    for _ in range(n):
        pb, beta, G = _grpo_instance(rng)
        pol, _ = _stationary_policy(pb, 2, "grpo", {"beta": beta, "group_size": G})
        smallest = min(smallest, metrics.tv(pol, rlhf_optimum(pb.pi_ref, pb.reward, beta), pb.context_weight))
    return smallest


def dr_grpo_removes_std(n: int, seed: int) -> float:
    """Dr. GRPO (advantage r − mean, no std) lands on an RLHF optimum, GRPO does not: max TV of
    Dr. GRPO (exact KL, and TRL 1.16's bias-corrected k3 under TRL's names) to Gibbs at β·G/(G−1), Dr. GRPO (k3 in the loss) to the forward-KL
    optimum at β·G/(G−1), and GRPO *and* Dr. GRPO with k1 in the reward to Gibbs at β."""
    rng = np.random.default_rng(seed)
    worst = 0.0
    for _ in range(n):
        pb, beta, G = _grpo_instance(rng)
        be = beta * G / (G - 1)
        cases = [("dr_grpo", {"kl_estimator": "exact"}, rlhf_optimum(pb.pi_ref, pb.reward, be)),
                 ("dr_grpo", {}, rlhf_optimum(pb.pi_ref, pb.reward, be, "forward_kl")),
                 ("grpo", {"kl_estimator": "k1", "kl_placement": "reward", "std_eps": 0.1}, rlhf_optimum(pb.pi_ref, pb.reward, beta)),
                 ("dr_grpo", {"kl_estimator": "k1", "kl_placement": "reward"}, rlhf_optimum(pb.pi_ref, pb.reward, beta))]
        for name, lp, ref in cases:
            pol, _ = _stationary_policy(pb, 2, name, {"beta": beta, "group_size": G, **lp})
            worst = max(worst, metrics.tv(pol, ref, pb.context_weight))
        # TRL 1.16 names: dr_grpo + scale_rewards="none" + bias-corrected k3 (TRL's default) → Gibbs at β·G/(G−1)
        trl = {"loss_type": "dr_grpo", "scale_rewards": "none", "num_generations": G, "beta": beta}
        pol, _ = _stationary_policy(pb, 2, "grpo", trl)
        worst = max(worst, metrics.tv(pol, rlhf_optimum(pb.pi_ref, pb.reward, be), pb.context_weight))
    return worst


def nash_md_equilibria(n: int, seed: int) -> float:
    """Nash-MD's stationary point = π ∝ π_ref e^{P(y≻π^μ)/β} (oracle); at m = 0 it equals online
    IPO's stationary point (the regularised Nash equilibrium), at m = 1 IPO's optimum with the
    π_ref⊗π_ref pair law. Max TV over the three identities, intransitive matrices included."""
    from bandit_lab.onpolicy.closed_forms import nash_fixed_point

    rng = np.random.default_rng(seed)
    worst = 0.0
    for i in range(n):
        pb = random_problem(rng, k=3, contexts=1, preference=("matrix", "reward")[i % 2], pairs="reference")
        beta = _beta(rng, 0.3, 2.0)
        m = float(rng.uniform(0, 1))
        s = _stationary(make_objective(pb, "nash_md", {"beta": beta, "mixture": m}))
        worst = max(worst, metrics.tv(s.result.policy[0], nash_fixed_point(pb.pi_ref[0], pb.pref[0], beta, m)[0]))
        s0 = _stationary(make_objective(pb, "nash_md", {"beta": beta, "mixture": 0.0}))
        sipo = _stationary(make_objective(pb, "online_dpo", {"beta": beta, "loss_type": "ipo"}))
        s1 = _stationary(make_objective(pb, "nash_md", {"beta": beta, "mixture": 1.0}))
        worst = max(worst, metrics.tv(s0.result.policy, sipo.result.policy), metrics.tv(s1.result.policy, ipo_optimum(pb, beta)))
    return worst


def mroueh_recurrence(n: int, seed: int) -> float:
    """Binary rewards, GRPO with population mean/std and the exact KL (Mroueh 2025's model): the
    stationary success probability = the fixed point of p_n = h(p_{n−1}), which exceeds p_ref.
    Returns max |p_solver − p*| (and ∞ if some p* ≤ p_ref)."""
    from bandit_lab.onpolicy.closed_forms import mroueh_fixed_point

    rng = np.random.default_rng(seed)
    worst = 0.0
    for _ in range(n):
        K = 3
        ref = dirichlet(rng, (1, K))
        good = np.zeros((1, K))
        good[0, : int(rng.integers(1, K))] = 1.0
        beta, eps = _beta(rng, 1.0, 4.0), 1e-4
        pb = Problem.create(ref, reward=good)
        s = _stationary(make_objective(pb, "grpo", {"beta": beta, "normalize": "population", "kl_estimator": "exact", "std_eps": eps}))
        p_ref = float(ref[0][good[0] == 1].sum())
        p_star, _ = mroueh_fixed_point(p_ref, beta, eps)
        if not p_star > p_ref:
            return np.inf
        worst = max(worst, abs(float(s.result.policy[0][good[0] == 1].sum()) - p_star))
    return worst


# --------------------------------------------------------------------------- sampled mode

SAMPLE_SIZES = (64, 256, 1024, 4096)  # `verify --slow`: the paper-size tier (≈ 150 s on 2 idle cores)
# the default tier: the same claims at N = 16…128 draws per step (≈ 1/40 of the work; the fit's
# exponent was −0.46 there, −0.43 at 64…4096, seed 0): the rate is visible at small N already
QUICK_SIZES = (16, 32, 64, 128)


def sampled_convergence(n_seeds: int, seed: int, sizes=SAMPLE_SIZES, steps: int = 1500) -> dict:
    """TV(sampled-mode trained policy, exact stationary point) per N (REINFORCE without baseline,
    k1 in the reward — its per-sample noise does not vanish at the solution), averaged over
    ``n_seeds`` seeds vmapped in one compiled call per N; and the fitted exponent of TV ∝ N^a."""
    tvs = [_sampled_tv(n_seeds, seed, int(N), steps) for N in sizes]
    slope = float(np.polyfit(np.log(sizes), np.log(tvs), 1)[0]) if len(set(sizes)) > 1 else float("nan")
    return {"sizes": list(sizes), "tv": tvs, "exponent": slope}


_SAMPLED: dict = {}


def _sampled_tv(n_seeds: int, seed: int, N: int, steps: int) -> float:
    """Mean TV at one N, kept for the process: ``sampled-rate`` and ``sampled-4096`` train the very
    same N = 4,096 runs (same bandit, same seeds), which took 150 s each on 2 cores; ``verify``
    now trains them once."""
    key = (n_seeds, seed, N, steps)
    if key not in _SAMPLED:
        from bandit_lab.core.train import TrainConfig, make_endpoint

        rng = np.random.default_rng(seed)
        pb = random_problem(rng, k=5, contexts=3, preference="reward")
        beta = 1.0
        exact = rlhf_optimum(pb.pi_ref, pb.reward, beta)
        cfg = TrainConfig(optimizer="adam", steps=steps, schedule="cosine", log_steps=(0, steps))
        o = make_objective(pb, "reinforce", {"beta": beta, "sampling": N})
        hps = [{**o.hp, "lr": 0.05, "seed": float(seed * 1000 + s)} for s in range(n_seeds)]
        # the trainer's final parameters only (make_endpoint: make_train's steps, half its compile;
        # the same TVs to the last bit as train_batch's final policies, measured at N = 16 and 128)
        # seconds of training, not milliseconds: LLVM -O2 even in verify's fast-compile mode
        params = run_bound_jit(jax.vmap(make_endpoint(o, cfg), in_axes=(0, None, None)))(
            {k: np.asarray([h[k] for h in hps]) for k in hps[0]}, o.consts(), o.param.init())
        pols = np.asarray(jax.vmap(o.policy)(params))
        _SAMPLED[key] = float(np.mean([metrics.tv(p, exact, pb.context_weight) for p in pols]))
    return _SAMPLED[key]


def sampled_rate(n: int, seed: int) -> float:
    return sampled_convergence(n, seed, sizes=QUICK_SIZES)["exponent"]


def sampled_rate_full(n: int, seed: int) -> float:
    return sampled_convergence(n, seed)["exponent"]


def sampled_at_128(n: int, seed: int) -> float:
    return sampled_convergence(n, seed, sizes=(QUICK_SIZES[-1],))["tv"][0]


def sampled_at_4096(n: int, seed: int) -> float:
    return sampled_convergence(n, seed, sizes=(4096,))["tv"][0]


CHECKS = [
    Check("reinforce-rlhf-grad", "expected REINFORCE update, k1 in the reward (or exact KL) = −∇(−E_π r + β KL(π‖π_ref)) (Williams 1992)",
          1e-12, reinforce_is_rlhf_gradient),
    Check("rloo-unbiased", "RLOO's expected update (leave-one-out, G=2..4) = −∇ RLHF objective; loss and brute force (Ahmadian et al. Eq. 6)",
          1e-12, rloo_unbiased),
    Check("kl-estimator-grads", "E[∇ KL term]: k1/k2-reward, k1/k2/k3-loss = ∇ of KL, f_k2, 0, KL, KL(ref‖π), KL−KL(ref‖π) (Tang & Munos 2025)",
          1e-12, kl_estimator_gradients),
    Check("reinforce-rloo-gibbs", "reinforce/rloo stationary point (exact KL, k1 in reward) = π_ref·e^{r/β}/Z, K ≤ 8, several contexts",
          1e-8, reinforce_rloo_land_on_gibbs),
    Check("grpo-vojnovic-yun", "GRPO stationary point (k3 in loss) = Vojnovic–Yun π = π_ref/(1 − ā(π)/β), both directions (V–Y 2025)",
          1e-8, grpo_vojnovic_yun),
    Check("grpo-not-gibbs", "finding: GRPO's stationary point differs from π_ref·e^{r/β}/Z: smallest TV over instances (V–Y 2025)",
          1e-3, grpo_differs_from_gibbs, direction="≥"),
    Check("dr-grpo-rlhf", "Dr. GRPO lands on RLHF optima at β·G/(G−1); GRPO/Dr. GRPO with k1 in reward on Gibbs at β (Liu et al. Eq. 3)",
          1e-8, dr_grpo_removes_std),
    Check("nash-md-equilibria", "Nash-MD zero = π_ref·e^{P(y≻π^μ)/β}/Z; m=0 = online IPO's; m=1 = IPO optimum, π_ref⊗π_ref pairs (Munos et al.)",
          1e-8, nash_md_equilibria),
    Check("mroueh-recurrence", "binary rewards, population-std GRPO + exact KL: success prob. = fixed point of Mroueh's h > p_ref (Mroueh 2025)",
          1e-8, mroueh_recurrence),
    Check("sampled-rate", "sampled mode → exact stationary point: fitted exponent of mean TV ∝ N^a, N = 16…128 (≥ 20 seeds; --slow: 64…4096)",
          -0.3, sampled_rate, slow=sampled_rate_full,
          slow_claim="sampled mode → exact stationary point: fitted exponent of mean TV ∝ N^a, N = 64…4096 (≥ 20 seeds)"),
    Check("sampled-4096", "sampled mode at N = 128 per step (--slow: 4096): mean TV to the exact stationary point (≥ 20 seeds)",
          1e-2, sampled_at_128, slow=sampled_at_4096,
          slow_claim="sampled mode at N = 4096 per step: mean TV to the exact stationary point (≥ 20 seeds)"),
]
