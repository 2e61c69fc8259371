"""On-policy RL algorithms as registered losses, with their exact expected updates.

What practitioners run as "RLHF" is a sampled on-policy algorithm: REINFORCE, RLOO, GRPO (and
Dr. GRPO, DAPO), PPO, online DPO, Nash-MD. Each step draws responses from the *current* policy
(detached), scores them, forms advantages and takes a gradient step on a surrogate. Here every
algorithm is one loss of the ordinary architecture, through the per-step loss state
(``LossSpec.state_init``/``state_update``): the state holds the behaviour policy π_old and the
detached per-response coefficients of the surrogate, built either

- *exactly* (``sampling = "exact"``, the default, and always when ``key`` is None, e.g. inside the
  exact solver): the expectation over responses — and, for group methods, over every composition
  of a group of G i.i.d. responses (multinomial enumeration, see :func:`compositions`); or
- *by sampling* (``sampling = {"samples": N}``): N draws (or N groups) per context per step from
  the trainer's step key (derived from ``hp["seed"]`` and the step, so a seed sweep is one vmap).

The surrogate (one formula for every policy-gradient algorithm; PPO Eq. 7, GRPO Eq. 3)::

    L(θ) = Σ_x ρ(x) [ −Σ_s ( c⁺_s·min(ρ_s, 1+ε_high) − c⁻_s·max(ρ_s, 1−ε_low) ) + β·KL̂_loss(θ) ]

with ``ρ_s = π_θ(s)/π_old(s)`` the ratio of a response (``ratio_level="sequence"``) or of a token
slot (``"token"``, token trees), and ``c± = E[(n_y/G)·max(±A, 0)]`` the expected positive and
negative parts of the advantage each response receives (``min(ρA, clip(ρ)A)`` is
``A·min(ρ, 1+ε)`` for A > 0 and ``A·max(ρ, 1−ε)`` for A < 0, so clipping acts on the two parts
separately and the expectation stays exact). At θ = θ_old the ratio is 1, the clip is inert and
``∇L = −Σ (c⁺ − c⁻)∇log π + β∇KL̂``: ``Objective.value`` with the state built from θ itself has
exactly the algorithm's expected update as its gradient, a field that is in general not the
gradient of any function. Its zeros are found by :mod:`bandit_lab.onpolicy.stationary` (the
``exact`` hook); closed forms are in :mod:`bandit_lab.onpolicy.closed_forms`.

KL estimators (Schulman 2020, "Approximating KL divergence"; Tang & Munos 2025, "On a few pitfalls
in KL divergence gradient estimation for RL"), with ``u = π_ref/π`` at a sampled token:
``k1 = −log u``, ``k2 = ½ log² u``, ``k3 = u − 1 − log u``; ``exact`` = the analytic
KL(π‖π_ref) over all responses. Placement ``reward``: ``r̃ = r − β·sg(k̂)`` (summed over tokens)
before the advantage; ``loss``: ``+β·mean k̂(θ)`` over the sampled tokens, differentiated. Which
divergence each combination's expected gradient differentiates is derived in ``docs/onpolicy.md``
and checked in ``verify`` (k1-reward and k2-loss: KL(π‖π_ref); k3-loss: KL(π_ref‖π); k1-loss:
nothing; k2-reward: a non-convex f-functional; k3-reward: KL(π‖π_ref) − KL(π_ref‖π)).

Responses are single tokens on a bandit; on a token tree (:class:`~bandit_lab.tokens.TokenTreeParam`)
rewards are sequence-level, KL estimators and (for GRPO/DAPO/PPO) ratios token-level, and the
length normalisations differ: ``sum`` = no normalisation (REINFORCE, RLOO and Nash-MD in TRL sum a
response's token log-probabilities), ``sequence`` = mean over a response's tokens then over the group
(GRPO, Shao et al. Eq. 3), ``token`` = sum over all tokens / expected tokens in the batch (DAPO
Eq. 8 "token-level policy gradient loss", the large-batch limit), ``constant`` = /max length
(Dr. GRPO Eq. 3 / TRL ``dr_grpo``). On a bandit all three coincide.

Defaults follow TRL: GRPO/Dr. GRPO/DAPO/RLOO from TRL 1.16.0 (GRPOConfig, RLOOConfig), PPO, online
DPO and Nash-MD from TRL 0.19.1 (PPOConfig, OnlineDPOConfig, NashMDConfig; PPO and Nash-MD are no
longer in TRL 1.x). Each default is listed per algorithm in ``docs/onpolicy.md``.
"""
from __future__ import annotations

import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np

from bandit_lab.core import draws
from bandit_lab.core.rewards import REWARD_NOISE, success_probability
from bandit_lab.errors import BanditError
from bandit_lab.losses.base import LossInputs, LossSpec, register
from bandit_lab.tokens.tree import along_tokens, to_slots

ALGORITHMS = ("reinforce", "rloo", "grpo", "dr_grpo", "dapo", "ppo", "online_dpo", "nash_md", "a2po")
GROUP_ALGORITHMS = ("rloo", "grpo", "dr_grpo", "dapo")
KL_ESTIMATORS = ("exact", "k1", "k2", "k3")
KL_PLACEMENTS = ("reward", "loss")
NORMALIZE = ("group_std", "group_mean", "none", "loo", "population")
LENGTH_NORMS = ("sum", "sequence", "token", "constant")
BASELINES = ("none", "value", "learned")
LABELS = ("preference", "argmax")
SURROGATES = ("clip", "cispo", "sapo", "vespo")  # TRL 1.16 GRPO loss_type families (grpo_trainer.py _compute_loss)
DPO_LOSSES = ("sigmoid", "ipo")
# exact enumeration limit: compositions × responses (memory/time of one expected update)
MAX_COMPOSITION_ENTRIES = 1 << 20


# --------------------------------------------------------------------------- enumeration

def n_compositions(n: int, k: int) -> int:
    """Number of count vectors ``(n_1..n_k) ≥ 0`` with ``Σ n_i = n``: ``C(n+k−1, k−1)``."""
    return math.comb(n + k - 1, k - 1)


@functools.lru_cache(maxsize=32)
def compositions(n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Every composition of ``n`` i.i.d. draws over ``k`` responses and its log multinomial
    coefficient ``log(n!/Π n_i!)``: ``(counts [C, k] float, logcoef [C])``. The probability of a
    composition under π is ``exp(logcoef + counts·log π)``."""
    rows = [np.bincount(c, minlength=k) for c in itertools.combinations_with_replacement(range(k), n)] if n > 0 else [np.zeros(k, int)]
    counts = np.asarray(rows, dtype=np.float64).reshape(-1, k)
    from scipy.special import gammaln  # lazy

    logcoef = gammaln(n + 1.0) - gammaln(counts + 1.0).sum(-1)
    return counts, logcoef


def check_enumeration(group_size: int, k: int, contexts: int = 1) -> None:
    """Refuse an exact group expectation that is too large to enumerate, with the count."""
    c = n_compositions(group_size - 1, k)
    if c * k > MAX_COMPOSITION_ENTRIES:
        raise BanditError(
            f"exact mode: a group of G={group_size} over K={k} responses needs {c:,} compositions of the other "
            f"G−1 draws ({c * k:,} entries per context, limit {MAX_COMPOSITION_ENTRIES:,}); use sampled mode, "
            f'"sampling": {{"samples": N}}, or a smaller group_size')


# --------------------------------------------------------------------------- estimators

def kl_estimate(logp, logp_ref, which: str):
    """Per-sample KL(π‖π_ref) estimator at a token with log-probabilities ``logp`` (policy) and
    ``logp_ref``: with ``log u = logp_ref − logp``, k1 = −log u, k2 = ½ log² u, k3 = u − 1 − log u
    (Schulman 2020; Tang & Munos 2025 Eq. 2–4)."""
    lu = logp_ref - logp
    if which == "k1":
        return -lu
    if which == "k2":
        return 0.5 * lu**2
    if which == "k3":
        return jnp.expm1(lu) - lu
    raise BanditError(f"kl_estimator must be one of {', '.join(KL_ESTIMATORS)}; got {which!r}")


def group_advantage(D, Q, r_focal, G: int, normalize: str, ddof: int, eps):
    """Advantage of the focal member of a group, from its reward ``r_focal`` and the others'
    deviations: ``D = Σ_j n_j (r_j − r_focal)``, ``Q = Σ_j n_j (r_j − r_focal)²`` over the G−1
    others. Group mean ``m = r_focal + D/G``; sum of squares ``Σ (r − m)² = Q − D²/G``.

    - ``group_std``: ``(r − m)/(std + ε)``, std with ``ddof`` (TRL: torch.std, ddof 1, ε = 1e-4;
      Shao et al. Eq. 3 outcome supervision);
    - ``group_mean``: ``r − m`` (Dr. GRPO, Liu et al. 2025 Eq. 3);
    - ``loo``: ``r − mean of the others`` (RLOO, Ahmadian et al. 2024 Eq. 6 / Kool et al. 2019);
    - ``none``: ``r``.
    A degenerate group (all rewards equal) gets advantage 0 under ``group_std`` for any ε ≥ 0."""
    dev = -D / G  # r_focal − m, exactly 0 when every member has the focal reward
    if normalize == "group_mean":
        return dev
    if normalize == "loo":
        return -D / (G - 1)
    if normalize == "none":
        return jnp.broadcast_to(r_focal, D.shape)
    ss = jnp.maximum(Q - D**2 / G, 0.0)
    std = jnp.sqrt(ss / (G - ddof))
    den = std + eps
    live = (Q > 0) & (den > 0)
    return jnp.where(live, dev / jnp.where(live, den, 1.0), 0.0)


def batch_normalize(A, w, eps, bessel: float = 1.0):
    """TRL 1.16 ``RLOOTrainer._generate_and_score_completions`` with ``normalize_advantages=True``:
    ``(A − A.mean())/(A.std() + 1e-4)`` over the whole batch (``std``: torch's unbiased; ε is
    ``std_eps``), checked against TRL's own code in tests/test_audit_rows.py. ``w``: each advantage's
    weight in the batch (summing to 1; exact mode: context × composition × response probability, the
    large-batch limit); ``bessel`` n/(n − 1) for a finite batch. Where every advantage is equal the
    std is 0 (a safe sqrt: no infinite derivative for the solver's Jacobian)."""
    mu = jnp.sum(w * A)
    var = jnp.sum(w * (A - mu) ** 2) * bessel
    pos = var > 0
    sd = jnp.where(pos, jnp.sqrt(jnp.where(pos, var, 1.0)), 0.0)
    return (A - mu) / (sd + eps)


# --------------------------------------------------------------------------- views of the policy

def _views(logp, aux, logp_ref):
    """``(logp [X,K], slot logp [X,M], slot ref logp [X,M], tree index arrays or None)``: token
    slots of a token tree (per-state log-probabilities, flattened), or the responses themselves."""
    if aux is not None and "logp_state" in aux:
        X = logp.shape[0]
        return logp, aux["logp_state"].reshape(X, -1), jnp.asarray(aux["ref_logp"]).reshape(X, -1), aux
    return logp, logp, logp_ref, None


def _param_views(objective, params, c):
    pc = c["param"]
    logp = objective.param.log_probs(params, pc)
    aux_fn = getattr(objective.param, "aux", None)
    aux = None if aux_fn is None else aux_fn(params, pc)
    return _views(logp, aux, jnp.asarray(c["logp_ref"]))


def _seq(slot_values, path):
    """Per-slot values summed along every response: ``[X, M] → [X, K]`` (``path``: the tree's
    index arrays, :func:`bandit_lab.tokens.tree.along_tokens`)."""
    return slot_values if path is None else along_tokens(slot_values, path)


def _slot(seq_values, path):
    """Per-response coefficients spread onto the slots each response visits: ``[X, K] → [X, M]``."""
    return seq_values if path is None else to_slots(seq_values, path, path["ref_logp"][0].size)


def preference_matrix(data_weight):
    """``P(i ≻ j)`` recovered from population data weights ``w[x,i,j] ∝ law·P`` (symmetric law):
    ``w_ij/(w_ij + w_ji)``, ½ on the diagonal and on pairs the law never shows."""
    w = jnp.asarray(data_weight)
    tot = w + jnp.swapaxes(w, -1, -2)
    return jnp.where(tot > 0, w / jnp.where(tot > 0, tot, 1.0), 0.5)


def _scatter(y, A, K):
    """Empirical ``(c⁺, c⁻, freq)`` [X, K] from sampled responses ``y [..., X]`` with advantages ``A``."""
    oh = jax.nn.one_hot(y, K)  # [..., X, K]
    axes = tuple(range(oh.ndim - 2))
    n = float(np.prod(y.shape[:-1]))
    cp = jnp.sum(oh * jnp.maximum(A, 0.0)[..., None], axes) / n
    cm = jnp.sum(oh * jnp.maximum(-A, 0.0)[..., None], axes) / n
    return cp, cm, jnp.sum(oh, axes) / n


# --------------------------------------------------------------------------- stochastic rewards

def with_outcomes(logp, succ, kl_part):
    """The sample space of a stochastic 0/1 reward: outcome ``(k, s)`` for response k with reward
    s ∈ {1, 0}, as ``2K`` "responses" ``[(k, 1) for k] + [(k, 0) for k]`` with log-probabilities
    ``log π_k + log q_k`` and ``log π_k + log(1 − q_k)`` (``support.LOG_ZERO`` for log 0: exact
    zeros), shaped rewards ``s + kl_part_k`` (the KL estimator placed in the reward, if any). Every
    exact expectation (group compositions over 2K outcomes, population moments, whitening) and
    every draw (one categorical over 2K: y ~ π, then s ~ Bernoulli(q(y))) then holds as it is;
    the caller sums the two halves back. Returns ``(logp, q, shaped, 2K)``."""
    from bandit_lab.core.support import LOG_ZERO

    def safe_log(p):
        ok = p > 0
        return jnp.where(ok, jnp.log(jnp.where(ok, p, 1.0)), LOG_ZERO)

    succ = jnp.broadcast_to(succ, logp.shape)
    lp = jnp.concatenate([logp + safe_log(succ), logp + safe_log(1.0 - succ)], -1)
    shaped = jnp.concatenate([1.0 + kl_part, 0.0 + kl_part], -1)
    return lp, jnp.exp(lp), shaped, 2 * logp.shape[-1]


# --------------------------------------------------------------------------- the state

def _samples(static) -> int:
    s = static.get("sampling", "exact")
    return 0 if s == "exact" else int(s)


def _state(objective, params, hp, key, consts, prev=None):
    """The detached per-step state of an on-policy algorithm at ``params`` (see module docstring).
    Reads problem arrays from ``consts`` only (compiled trainers are shared across problems)."""
    algo = objective.loss.name
    st = objective.static
    c = objective.consts() if consts is None else consts
    logp, lp_slot, ref_slot, path = _param_views(objective, params, c)
    X, K = logp.shape
    q = jnp.exp(logp)
    beta = hp["beta"]
    N = _samples(st) if key is not None else 0
    est, place = st.get("kl_estimator", "exact"), st.get("kl_placement", "loss")
    out = {"logq": logp, "logq_slot": lp_slot}

    if algo == "online_dpo":
        P = preference_matrix(c["data"].weight)
        L = P if st["labels"] == "preference" else jnp.where(P > 0.5, 1.0, jnp.where(P < 0.5, 0.0, 0.5))
        if N == 0:
            W = 2.0 * q[:, :, None] * q[:, None, :] * L  # (winner, loser) law of an on-policy labelled pair
        else:
            k1, k2, k3 = jax.random.split(key, 3)
            y1 = draws.categorical(k1, logp, (N, X))
            y2 = draws.categorical(k2, logp, (N, X))
            p12 = jnp.take_along_axis(jnp.broadcast_to(L, (N,) + L.shape).reshape(N, X, K * K), (y1 * K + y2)[..., None], -1)[..., 0]
            first = draws.uniform(k3, (N, X)) < p12
            w, l = jnp.where(first, y1, y2), jnp.where(first, y2, y1)
            W = jnp.sum(jax.nn.one_hot(w * K + l, K * K), 0).reshape(X, K, K) / N
        out["pairs"] = W
        return out

    if algo == "a2po":  # one completion per prompt from the current policy (TRL A2POTrainer._prepare_inputs)
        if N == 0:
            out["ckl"] = q
        else:
            y = draws.categorical(key, logp, (N, X))
            out["ckl"] = jnp.sum(jax.nn.one_hot(y, K), 0) / N
        return out

    reward = jnp.asarray(c["reward"])
    if st.get("reward_clip") is not None:  # TRL RLOOTrainer reward_clip_range: clamp(r, lo, hi) before the KL penalty
        lo, hi = st["reward_clip"]
        reward = jnp.clip(reward, lo, hi)
    if algo == "nash_md":
        P = preference_matrix(c["data"].weight)
        m = hp["mixture"]
        lm_slot = (1.0 - m) * lp_slot + m * ref_slot  # TRL GeometricMixtureWrapper: logits mixed per token
        if path is None:
            lm = jax.nn.log_softmax(lm_slot, -1)
        else:  # per-state normalisation, then sequence log-probs
            V = int(objective.param.tree_problem.tree.vocab)  # structure, not problem data
            lm = _seq(jax.nn.log_softmax(lm_slot.reshape(X, -1, V), -1).reshape(X, -1), path)
        mu = jnp.exp(lm)
    if est != "exact" and place == "reward":
        shaped = reward - beta * _seq(kl_estimate(lp_slot, ref_slot, est), path)
    else:
        shaped = reward
    noise = st.get("reward_noise", "none")
    if noise != "none":  # stochastic 0/1 rewards: a draw is (response, outcome), one of 2K (see with_outcomes)
        logp, q, shaped, K = with_outcomes(logp, success_probability(reward, noise, st.get("reward_margin", 1.0)), shaped - reward)

    if algo in GROUP_ALGORITHMS:
        G = int(st["group_size"])
        norm = st["normalize"]
        if norm == "population":  # Mroueh 2025: (r − E_π r)/sqrt(Var_π r + ε), the G → ∞ idealisation
            mean = jnp.sum(q * shaped, -1, keepdims=True)
            var = jnp.sum(q * (shaped - mean) ** 2, -1, keepdims=True)
            A = (shaped - mean) / jnp.sqrt(var + hp["std_eps"])
            if N == 0:
                cp, cm, freq = q * jnp.maximum(A, 0), q * jnp.maximum(-A, 0), q
            else:
                y = draws.categorical(key, logp, (N, G, X))
                cp, cm, freq = _scatter(y, jnp.take_along_axis(jnp.broadcast_to(A, (N, G, X, K)), y[..., None], -1)[..., 0], K)
        elif N == 0:
            check_enumeration(G, K, X)
            counts, logcoef = compositions(G - 1, K)
            counts_j = jnp.asarray(counts)
            lq = jnp.where(counts_j[None] > 0, counts_j[None] * logp[:, None, :], 0.0).sum(-1)  # [X, C]
            Pc = jnp.exp(jnp.asarray(logcoef)[None] + lq)
            d = shaped[:, :, None] - shaped[:, None, :]  # d[x, j, k] = r_j − r_k
            D = jnp.einsum("cj,xjk->xck", counts_j, d)
            Q = jnp.einsum("cj,xjk->xck", counts_j, d**2)
            A = group_advantage(D, Q, shaped[:, None, :], G, norm, int(st["std_ddof"]), hp["std_eps"])
            if st.get("batch_whiten", False):  # TRL RLOO: whitened over the whole batch (large-batch limit)
                cw = jnp.asarray(c["context_weight"])
                A = batch_normalize(A, cw[:, None, None] * Pc[:, :, None] * q[:, None, :], hp["std_eps"])
            cp = q * jnp.einsum("xc,xck->xk", Pc, jnp.maximum(A, 0.0))
            cm = q * jnp.einsum("xc,xck->xk", Pc, jnp.maximum(-A, 0.0))
            freq = q
            if st.get("dynamic_sampling", False):  # DAPO Eq. 11: groups whose rewards all agree are dropped
                live = jnp.einsum("xc,xck->xk", Pc, (Q > 0).astype(Pc.dtype))  # P(non-degenerate | focal k), no cancellation
                pnd = jnp.sum(q * live, -1, keepdims=True)
                ok = pnd > 0
                inv = jnp.where(ok, 1.0 / jnp.where(ok, pnd, 1.0), 0.0)
                cp, cm, freq = cp * inv, cm * inv, q * live * inv
        else:
            y = draws.categorical(key, logp, (N, G, X))
            rr = jnp.take_along_axis(jnp.broadcast_to(shaped, (N, G, X, K)), y[..., None], -1)[..., 0]  # [N, G, X]
            dev = rr[:, :, None, :] - rr[:, None, :, :]  # [N, G(j), G(focal), X]: r_j − r_focal
            D = jnp.sum(dev, 1) - 0.0  # the focal's own term is 0
            Q = jnp.sum(dev**2, 1)
            A = group_advantage(D, Q, rr, G, norm, int(st["std_ddof"]), hp["std_eps"])
            if st.get("batch_whiten", False):  # torch .mean()/.std() over the batch's N·G·X completions
                cw = jnp.asarray(c["context_weight"])
                B = N * G * X
                A = batch_normalize(A, jnp.broadcast_to(cw / (N * G), A.shape), hp["std_eps"], bessel=B / (B - 1) if B > 1 else 1.0)
            if st.get("dynamic_sampling", False):
                keep = (jnp.max(rr, 1) > jnp.min(rr, 1)).astype(rr.dtype)  # [N, X]
                oh = jax.nn.one_hot(y, K) * keep[:, None, :, None]
                n_keep = jnp.maximum(jnp.sum(keep, 0) * G, 1.0)[:, None]  # [X, 1]
                cp = jnp.sum(oh * jnp.maximum(A, 0)[..., None], (0, 1)) / n_keep
                cm = jnp.sum(oh * jnp.maximum(-A, 0)[..., None], (0, 1)) / n_keep
                freq = jnp.sum(oh, (0, 1)) / n_keep
            else:
                cp, cm, freq = _scatter(y, A, K)
    else:  # reinforce, ppo, nash_md: one response per draw
        if algo == "nash_md":
            adv = jnp.einsum("xkj,xj->xk", P, mu) - 0.5  # P(y ≻ π^μ) − ½ (TRL's control variate)
            A_resp = adv + (shaped - reward)  # reward-placed KL estimator (TRL: k1 via REINFORCE)
        else:
            A_resp = shaped
        base = st.get("baseline", "none")
        if base == "value" or (base == "learned" and key is None):
            V = jnp.sum(q * shaped, -1)  # exact V^π(x) (the learned critic's fixed point in exact mode)
        elif base == "learned":
            V = jnp.zeros(X) if prev is None else prev["value"]
        else:
            V = jnp.zeros(X)
        if N == 0:
            A = A_resp - V[:, None]
            if st.get("whiten", False):  # TRL PPO: advantages whitened over the batch
                cw = jnp.asarray(c["context_weight"])[:, None]
                mean = jnp.sum(cw * q * A)
                var = jnp.sum(cw * q * (A - mean) ** 2)
                A = (A - mean) / jnp.sqrt(var + 1e-8)
            cp, cm, freq = q * jnp.maximum(A, 0), q * jnp.maximum(-A, 0), q
            batch_r = jnp.sum(q * shaped, -1)
        else:
            ky, km = jax.random.split(key)
            y = draws.categorical(ky, logp, (N, X))
            A = jnp.take_along_axis(jnp.broadcast_to(A_resp, (N, X, K)), y[..., None], -1)[..., 0] - V
            if algo == "nash_md":  # the opponent is a *sample* y' ~ π^μ: P(y ≻ y') − ½
                y2 = draws.categorical(km, lm, (N, X))
                pyy = jnp.take_along_axis(P.reshape(X, K * K)[None].repeat(N, 0), (y * K + y2)[..., None], -1)[..., 0]
                kl_part = jnp.take_along_axis(jnp.broadcast_to(shaped - reward, (N, X, K)), y[..., None], -1)[..., 0]
                A = pyy - 0.5 + kl_part - V
            if st.get("whiten", False):
                w = jnp.asarray(c["context_weight"])[None, :] * jnp.ones((N, 1)) / N
                mean = jnp.sum(w * A)
                A = (A - mean) / jnp.sqrt(jnp.sum(w * (A - mean) ** 2) + 1e-8)
            cp, cm, freq = _scatter(y, A, K)
            batch_r = jnp.mean(jnp.take_along_axis(jnp.broadcast_to(shaped, (N, X, K)), y[..., None], -1)[..., 0], 0)
        if base == "learned":
            lr_v = hp["value_lr"]
            out["value"] = V + lr_v * (batch_r - V) if key is not None else V  # one SGD step on ½(V − r̃)²

    if noise != "none":  # back from (response, outcome) to responses: E[· | y = k] sums both outcomes
        K //= 2
        cp, cm, freq = (a[..., :K] + a[..., K:] for a in (cp, cm, freq))

    # length normalisation (inert on a bandit: every response is one token)
    if path is not None:
        lens = jnp.sum(jnp.where(path["mask"], 1.0, 0.0), -1)  # tokens per response
        ln = st.get("length_norm", "sum")
        if ln == "sum":
            norm = jnp.ones_like(lens)
        elif ln == "sequence":
            norm = 1.0 / lens
        elif ln == "constant":
            norm = jnp.full_like(lens, 1.0 / float(np.max(np.asarray(c["param"]["mask"]).sum(-1))))
        else:
            cw = jnp.asarray(c["context_weight"])
            norm = jnp.ones_like(lens) / jnp.sum(cw[:, None] * freq * lens[None, :])
        cp, cm, freq = cp * norm, cm * norm, freq * norm
    out.update(cp=cp, cm=cm, ckl=freq)
    return out


def state_init(objective, params, hp, key, consts):
    """``LossSpec.state_init`` of every on-policy algorithm (``key`` None ⇒ exact expectation)."""
    return _state(objective, params, hp, key, consts)


def state_update(objective, params, hp, key, state, t, consts):
    """``LossSpec.state_update``: new samples of the current policy every ``epochs`` steps (PPO's
    epochs per batch, GRPO's μ = num_iterations), the same batch in between; a learned critic
    takes its SGD step at each renewal."""
    new = _state(objective, params, hp, key, consts, prev=state)
    E = int(objective.static.get("epochs", 1))
    if E == 1:
        return new
    renew = (t % E) == 0
    return jax.tree_util.tree_map(lambda a, b: jnp.where(renew, a, b), new, state)


# --------------------------------------------------------------------------- the loss

def onpolicy_loss(inputs: LossInputs, hp: dict, *, algo: str = "reinforce", **static) -> jax.Array:
    """The surrogate of an on-policy algorithm given its detached state (module docstring)."""
    st = inputs.state
    if not st:
        raise BanditError(f"{algo} needs its per-step state (build the objective with make_objective)")
    logp, lp_slot, ref_slot, path = _views(inputs.logp, inputs.aux, inputs.logp_ref)
    cw = inputs.context_weight
    beta = hp["beta"]
    if algo == "online_dpo":
        h = logp - inputs.logp_ref
        u = h[..., :, None] - h[..., None, :]
        if static.get("loss_type", "sigmoid") == "ipo":  # TRL OnlineDPO loss_type="ipo" (Azar et al. Eq. 17)
            per = (u - 0.5 / beta) ** 2
        else:  # DPO Eq. 7 on on-policy pairs (Guo et al. 2024, OAIF)
            per = -jax.nn.log_sigmoid(beta * u)
        W = st["pairs"]
        return jnp.sum(cw * jnp.sum(jnp.where(W > 0, W * per, 0.0), (-1, -2)))
    if algo == "a2po":
        # TRL 1.16 experimental/a2po/a2po_trainer.py A2POTrainer.compute_loss: mean over on-policy samples of
        # (β₂·log(π/π_ref) − (r − V*))², V*(x) = β₁·log mean_i e^{r(x, y_i)/β₁} over reference samples
        # (_estimate_optimal_values); here its n → ∞ value β₁·log E_{π_ref} e^{r/β₁}. V* is a per-prompt
        # constant, and E_π[c·∇log π] = 0, so it (hence β₁ and num_value_samples) does not move the
        # expected update: 2β₂·∇_θ[β₂·KL(π‖π_ref) − E_π r], the RLHF gradient (Brantley et al. 2025 §3).
        r = inputs.reward
        vstar = st.get("v_star")  # a finite-sample estimate [X, 1] when the state carries one
        if vstar is None:
            vstar = hp["beta1"] * jax.nn.logsumexp(r / hp["beta1"] + inputs.logp_ref, axis=-1, keepdims=True)
        per = (beta * (logp - inputs.logp_ref) - (r - vstar)) ** 2
        return jnp.sum(cw * jnp.sum(jnp.where(st["ckl"] > 0, st["ckl"] * per, 0.0), -1))
    clipped = algo in ("rloo", "grpo", "dr_grpo", "dapo", "ppo")
    eps_l = hp["clip"] if clipped else jnp.inf
    eps_h = hp["clip_high"] if clipped else jnp.inf
    level = static.get("ratio_level", "token")
    token = path is not None and level == "token"
    lens = None if path is None else jnp.sum(jnp.where(path["mask"], 1.0, 0.0), -1)  # tokens per response
    if token:
        log_ratio = lp_slot - st["logq_slot"]
        cp, cm, lp_pg = _slot(st["cp"], path), _slot(st["cm"], path), lp_slot
    else:
        log_ratio = logp - st["logq"]
        if level == "geometric" and path is not None:  # GSPO: exp(mean log-ratio over the response's tokens)
            log_ratio = log_ratio / lens
        cp, cm, lp_pg = st["cp"], st["cm"], logp
    ratio = jnp.exp(log_ratio)
    surrogate = static.get("surrogate", "clip")
    # TRL 1.16 grpo_trainer.py GRPOTrainer._compute_loss, per loss_type; c± carry the loss-type's
    # normaliser. A (B, 1) sequence-level term broadcast over a response's tokens (TRL's
    # importance_sampling_level="sequence") is counted once per token: ×len for the ratio surrogates.
    bcast = lens if (level == "geometric" and path is not None) else 1.0
    if surrogate == "clip":  # grpo, bnpo, dr_grpo, dapo, luspo: −min(ρ₁A, clip(ρ, 1−ε, 1+ε_h)A)
        delta = hp.get("delta", 0.0)
        r1 = jnp.where(delta > 0, jnp.minimum(ratio, jnp.where(delta > 0, delta, 1.0)), ratio)  # INTELLECT-2 two-sided clip
        r2 = jnp.clip(ratio, 1.0 - eps_l, 1.0 + eps_h)
        pg = jnp.sum(bcast * (cp * jnp.minimum(r1, r2) - cm * jnp.maximum(r1, r2)), -1)
    elif surrogate == "cispo":  # −sg(min(ρ, ε_high))·A·log π (MiniMax-M1 Eq. 4; ε_high is an absolute cap)
        w = jax.lax.stop_gradient(jnp.minimum(ratio, hp["clip_high"]))
        pg = jnp.sum((cp - cm) * w * lp_pg, -1)
    elif surrogate == "sapo":  # −(4/τ)·σ(τ(ρ − 1))·A, τ = τ_pos for A > 0 else τ_neg (SAPO, Gao et al. 2025)
        tp, tn = hp["sapo_temperature_pos"], hp["sapo_temperature_neg"]
        gate = lambda t: 4.0 / t * jax.nn.sigmoid(t * (ratio - 1.0))  # noqa: E731
        pg = jnp.sum(bcast * (cp * gate(tp) - cm * gate(tn)), -1)
    elif surrogate == "vespo":  # −sg(φ(w))·A·log π, φ(w) = e^{λ + k log w − λw}, w = Π_t ρ_t (GRPOTrainer.get_gamma_weights)
        lr_t = jnp.clip((lp_slot - st["logq_slot"]) if path is not None else (logp - st["logq"]), -20.0, 20.0)
        lw = jnp.clip(_seq(lr_t, path), math.log(1e-8), 20.0)

        def phi(k, lam):
            lam = jnp.maximum(lam, 1e-4)
            return jax.lax.stop_gradient(jnp.exp(lam + k * lw - lam * jnp.exp(lw)))
        pg = jnp.sum((st["cp"] * phi(hp["vespo_k_pos"], hp["vespo_lambda_pos"])
                      - st["cm"] * phi(hp["vespo_k_neg"], hp["vespo_lambda_neg"])) * logp, -1)
    else:
        raise BanditError(f"surrogate must be one of {', '.join(SURROGATES)}; got {surrogate!r}")
    est = static.get("kl_estimator", "exact")
    if est == "exact":
        p = jnp.exp(logp)
        kl = jnp.sum(jnp.where(p > 0, p * (logp - inputs.logp_ref), 0.0), -1)
    elif static.get("kl_placement", "loss") == "loss":
        per = kl_estimate(lp_slot, ref_slot, est)
        if static.get("kl_bias_correction", False):
            # TRL 1.16 grpo_trainer.py (use_bias_correction_kl): per_token_kl * coef_1, the importance
            # ratio π/π_old (value 1 on-policy, differentiable): E_π[∇(k3·ρ)] = ∇E_π[k3] = ∇KL(π‖π_ref)
            if path is not None and not token:  # a per-response weight (B, 1) broadcast onto the token KL
                kl = jnp.sum(st["ckl"] * ratio * _seq(per, path), -1)
            elif est == "k3":
                # the same k3·ρ, written without the cancellation of two terms ±π_ref/π_old that swamps its
                # gradient where π ≪ π_ref (k3·ρ = e^{ref−old} − ρ + ρ·(log π − ref), ρ = e^{log π − old}; the
                # first term is constant): ∂/∂log π = ρ·(log π − log π_ref), exact to rounding at any π
                lq = st["logq_slot"]
                rho = jnp.exp(lp_slot - lq)
                per = jnp.exp(ref_slot - lq) - rho + rho * (lp_slot - ref_slot)
                kl = jnp.sum(_slot(st["ckl"], path) * per, -1)
            else:
                kl = jnp.sum(_slot(st["ckl"], path) * per * jnp.exp(lp_slot - st["logq_slot"]), -1)
        else:
            kl = jnp.sum(_slot(st["ckl"], path) * per, -1)
    else:
        kl = 0.0
    if static.get("entropy_bonus", False):
        # TRL 1.16 GRPOTrainer._compute_loss: loss − entropy_coef·(mean per-token entropy of the full
        # next-token distribution at the completion's positions), differentiable; one position on a bandit
        if path is not None:
            raise BanditError("entropy_coef on a token tree is not implemented exactly yet (the bonus is a token mean "
                              "over on-policy positions)")
        p = jnp.exp(logp)
        H = -jnp.sum(jnp.where(p > 0, p * logp, 0.0), -1)
        return jnp.sum(cw * (-pg + beta * kl - hp["entropy_coef"] * H))
    return jnp.sum(cw * (-pg + beta * kl))


# --------------------------------------------------------------------------- options and registry

def normalise_sampling(v):
    """``"exact"`` | N | ``{"samples": N}`` (| ``{"samples": N, "seed": s}``, the seed handled by
    the spec) → ``"exact"`` or the int N (hashable, so it can key compiled functions)."""
    if v in (None, "exact"):
        return "exact"
    if isinstance(v, dict):
        extra = set(v) - {"samples", "seed"}
        if "samples" not in v or extra:
            raise BanditError('sampling must be "exact" or {"samples": N} (optionally with "seed")')
        v = v["samples"]
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or int(v) < 1:
        raise BanditError(f'sampling must be "exact" or {{"samples": N}} with an integer N ≥ 1; got {v!r}')
    return int(v)


def _check(hp: dict, static: dict) -> None:
    static["sampling"] = normalise_sampling(static.get("sampling"))  # canonical, hashable form
    noise = static.get("reward_noise", "none")
    if noise not in REWARD_NOISE:
        raise BanditError(f"reward_noise must be one of {', '.join(REWARD_NOISE)}; got {noise!r}")
    if noise != "none" and ("labels" in static or "mixture" in hp):
        raise BanditError("reward_noise: online DPO and Nash-MD read preferences, not rewards (no stochastic reward)")
    m = static.get("reward_margin", 1.0)
    if isinstance(m, bool) or not isinstance(m, (int, float, np.floating, np.integer)) or not 0.0 <= float(m) <= 1.0:
        raise BanditError(f"reward_margin must be a number γ in [0, 1]; got {m!r}")
    static["reward_margin"] = float(m)
    choice = {"kl_estimator": KL_ESTIMATORS, "kl_placement": KL_PLACEMENTS, "normalize": NORMALIZE, "length_norm": LENGTH_NORMS,
              "baseline": BASELINES, "labels": LABELS, "loss_type": DPO_LOSSES, "ratio_level": ("token", "sequence", "geometric"),
              "surrogate": SURROGATES}
    for k, allowed in choice.items():
        if k in static and static[k] not in allowed:
            raise BanditError(f"{k} must be one of {', '.join(allowed)}; got {static[k]!r}")
    for k, lo in (("group_size", 2), ("epochs", 1)):
        if k in static:
            v = static[k]
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or float(v) != int(v) or int(v) < lo:
                raise BanditError(f"{k} must be an integer ≥ {lo}; got {v!r}")
            static[k] = int(v)
    if static.get("reward_clip") is not None:
        rc = static["reward_clip"]
        if (not isinstance(rc, (list, tuple)) or len(rc) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in rc)
                or not rc[0] <= rc[1]):
            raise BanditError(f"reward_clip must be [lo, hi] with lo ≤ hi (TRL's reward_clip_range); got {rc!r}")
        static["reward_clip"] = (float(rc[0]), float(rc[1]))  # hashable
    if "std_ddof" in static and static["std_ddof"] not in (0, 1):
        raise BanditError(f"std_ddof must be 0 or 1; got {static['std_ddof']!r}")
    if static.get("batch_whiten", False) and static.get("dynamic_sampling", False):
        raise BanditError("batch_whiten (TRL normalize_advantages) with dynamic_sampling is not implemented (TRL's RLOO has no dynamic sampling)")
    for k in ("dynamic_sampling", "whiten", "kl_bias_correction", "entropy_bonus", "batch_whiten"):
        if k in static and not isinstance(static[k], bool):
            raise BanditError(f"{k} must be true or false; got {static[k]!r}")
    for k in ("clip", "clip_high", "std_eps", "value_lr", "delta", "sapo_temperature_pos", "sapo_temperature_neg",
              "vespo_k_pos", "vespo_lambda_pos", "vespo_k_neg", "vespo_lambda_neg"):
        if k in hp and not (np.isfinite(hp[k]) and hp[k] >= 0):
            raise BanditError(f"{k} must be ≥ 0; got {hp[k]}")
    if "labels" in static or "mixture" in hp:  # online DPO / Nash-MD: β is a temperature
        if not hp["beta"] > 0:
            raise BanditError(f"beta must be > 0 for online DPO and Nash-MD; got {hp['beta']}")
    for k in ("sapo_temperature_pos", "sapo_temperature_neg"):
        if k in hp and not hp[k] > 0:
            raise BanditError(f"{k} must be > 0; got {hp[k]}")
    if "delta" in hp and 0 < hp["delta"] <= 1:
        raise BanditError(f"delta must be > 1 (TRL: an upper cap on the ratio, recommended > 1 + ε) or 0 for off; got {hp['delta']}")
    if "mixture" in hp and not (0.0 <= hp["mixture"] <= 1.0):
        raise BanditError(f"mixture must lie in [0, 1]; got {hp['mixture']}")
    if static.get("normalize") == "population" and static.get("std_ddof", 1) not in (0, 1):
        raise BanditError("population normalisation has no ddof")


def _exact(objective, hp, init=None):
    """``LossSpec.exact``: the stationary point of the expected update (a root of a non-gradient
    field), :func:`bandit_lab.onpolicy.stationary.solve`."""
    from bandit_lab.onpolicy.stationary import solve

    return solve(objective, hp, init).result


def _spec(name, defaults, static, summary, citation, *, epochs=False):
    fn = functools.partial(onpolicy_loss, algo=name)
    static = {"sampling": "exact", "reward_noise": "none", "reward_margin": 1.0, **static}
    from bandit_lab.onpolicy.trl import TRANSLATORS  # TRL 1.16 field names, verbatim (issue 21)

    return LossSpec(name, fn, defaults, static, kind="onpolicy", summary=summary, citation=citation, check=_check,
                    exact=_exact, state_init=state_init, state_update=state_update if epochs else None,
                    translate=TRANSLATORS.get(name))


_PG = {"kl_estimator": "k1", "kl_placement": "reward", "reward": "bt"}
_GROUP = {"group_size": 8, "normalize": "group_std", "std_ddof": 1, "dynamic_sampling": False, "epochs": 1,
          "length_norm": "token", "ratio_level": "token"}

for _s in (
    _spec("reinforce", {"beta": 0.05}, {**_PG, "baseline": "none", "length_norm": "sum"},
          "REINFORCE: −E[(r − β·k̂ − b)∇log π], baseline none | value (exact V^π, detached)",
          "Williams 1992 Eq. 1; Ahmadian et al. 2024 Eq. 2–3"),
    _spec("rloo", {"beta": 0.05, "clip": 0.2, "clip_high": 0.2, "std_eps": 1e-4},
          {**_PG, **_GROUP, "group_size": 2, "normalize": "loo", "ratio_level": "sequence", "length_norm": "sum",
           "reward_clip": None, "batch_whiten": False},
          "RLOO: leave-one-out baseline over G samples (TRL RLOOTrainer 1.16: k1 in reward, sequence ratio; "
          "normalize_advantages: batch (A − mean)/(std + std_eps))",
          "Ahmadian et al. 2024 Eq. 6; Kool et al. 2019", epochs=True),
    _spec("grpo", {"beta": 0.0, "clip": 0.2, "clip_high": 0.2, "std_eps": 1e-4, "delta": 0.0,
                   "sapo_temperature_pos": 1.0, "sapo_temperature_neg": 1.05, "vespo_k_pos": 2.0, "vespo_lambda_pos": 3.0,
                   "vespo_k_neg": 3.0, "vespo_lambda_neg": 2.0, "entropy_coef": 0.0},
          {**_GROUP, "kl_estimator": "k3", "kl_placement": "loss", "kl_bias_correction": False, "reward": "bt",
           "surrogate": "clip", "entropy_bonus": False},
          "GRPO: group-normalised advantage (r − mean)/(std + ε), clip ε, k3 KL in the loss (TRL 1.16 defaults)",
          "Shao et al. 2024 Eq. 3–4; Vojnovic & Yun 2025", epochs=True),
    _spec("dr_grpo", {"beta": 0.0, "clip": 0.2, "clip_high": 0.2, "std_eps": 1e-4},
          {**_GROUP, "normalize": "group_mean", "length_norm": "constant", "kl_estimator": "k3", "kl_placement": "loss", "kl_bias_correction": False, "reward": "bt"},
          "Dr. GRPO: advantage r − mean (no std), constant length normaliser",
          "Liu et al. 2025 Eq. 3 (Dr. GRPO)", epochs=True),
    _spec("dapo", {"beta": 0.0, "clip": 0.2, "clip_high": 0.28, "std_eps": 1e-4},
          {**_GROUP, "group_size": 16, "dynamic_sampling": True, "length_norm": "token", "kl_estimator": "k3", "kl_placement": "loss", "kl_bias_correction": False, "reward": "bt"},
          "DAPO: clip-higher (ε_low 0.2, ε_high 0.28), dynamic sampling, token-mean loss, no KL",
          "Yu et al. 2025 Eq. 8–11 (DAPO)", epochs=True),
    _spec("ppo", {"beta": 0.05, "clip": 0.2, "clip_high": 0.2, "value_lr": 0.1},
          {**_PG, "baseline": "learned", "epochs": 4, "whiten": True, "ratio_level": "token", "length_norm": "token"},
          "PPO: clipped ratio, E epochs per batch, learned per-context value baseline, whitened advantages, k1 KL in reward",
          "Schulman et al. 2017 Eq. 7; TRL PPOConfig 0.19", epochs=True),
    _spec("online_dpo", {"beta": 0.1}, {"labels": "preference", "loss_type": "sigmoid"},
          "online DPO: pairs sampled from the current policy, labelled by the preference model",
          "Guo et al. 2024 (OAIF) Alg. 1; Rafailov et al. Eq. 7"),
    _spec("a2po", {"beta": 1e-3, "beta1": 0.5}, {"reward": "bt"},
          "A*-PO: on-policy regression of β·log(π/π_ref) onto r − V*, V* = β₁·log E_ref e^{r/β₁} (TRL A2POTrainer)",
          "Brantley et al. 2025 (A*-PO) Eq. 5–6; TRL 1.16 experimental A2POTrainer"),
    _spec("nash_md", {"beta": 0.1, "mixture": 0.5}, {"kl_estimator": "k1", "kl_placement": "reward", "length_norm": "sum"},
          "Nash-MD (policy gradient): y ~ π, y' ~ π^μ ∝ π^{1−m}π_ref^m, score P(y ≻ y') − ½, k1 KL in reward",
          "Munos et al. 2023 §6–7 (Nash-MD, Nash-MD-PG); TRL NashMDTrainer 0.19"),
):
    register(_s)

ONPOLICY = ALGORITHMS
