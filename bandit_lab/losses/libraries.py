"""verl 0.9.1 and OpenRLHF 0.11.2 as registered on-policy losses ``"verl"`` and ``"openrlhf"``,
with their exact expected updates on a K-response bandit (issue 21).

The user writes the library's own config names (``bandit_lab.onpolicy.verl`` translates them,
through ``LossSpec.translate``); this module holds the numerics, in bandit-lab's native option
names. The per-step state follows :mod:`bandit_lab.losses.onpolicy` (behaviour policy π_old, the
detached expected positive/negative advantage parts ``c±`` of every response, the sample
frequencies); the surrogate differs in what the libraries add: verl's dual clip, their log-ratio
and KL clamps, the straight-through ("k3+", OpenRLHF ``unbiased_gradient``) KL gradients, CISPO's
and GPG's surrogates, batch whitening, ReMax's greedy baseline, GPG's α, the entropy bonus.

A bandit response is one token, so every per-token quantity is a per-response one. The pieces, with
their source (verl 0.9.1 ``verl/trainer/ppo/core_algos.py``; OpenRLHF 0.11.2
``openrlhf/trainer/ppo_utils/experience_maker.py``, ``openrlhf/models/utils.py``, ``models/loss.py``):

- **shaped reward.** verl ``use_kl_in_reward``: ``s = r − β_r·kl_penalty(logπ_old, logπ_ref)``
  *before* the advantage estimator (``ray_trainer.apply_kl_penalty``); OpenRLHF (``kl.use_loss``
  false): the baseline acts on the raw reward, then ``compute_reward`` clamps it to
  ``reward.clip_range`` and subtracts ``β_r·compute_approx_kl`` *after* it.
- **advantage** of a response ``y`` in a group of ``n`` i.i.d. draws (exact: every composition of
  the other ``n − 1``, :func:`~bandit_lab.losses.onpolicy.compositions`): ``group_std``
  ``(s − mean)/(std + ε)`` (verl ``grpo``, ε = 1e-6; OpenRLHF ``group_norm``, ε = 1e-9; torch.std,
  ddof 1), ``group_mean`` ``s − mean`` (verl grpo without std, ``opo`` — its length weights are 1
  here — ``reinforce_plus_plus_baseline`` before whitening, ``gpg`` before α; OpenRLHF
  ``reinforce_baseline``, ``dr_grpo``), ``loo`` (verl/OpenRLHF ``rloo``), ``none`` (REINFORCE++,
  OpenRLHF ``reinforce``), ``greedy`` (verl ``remax``: minus the reward of the greedy response
  argmax π), ``critic`` (``gae``, λ = γ = 1 on one token: ``s − V`` with the critic at its fixed
  point V = E_π[s]), ``batch_mean`` (OpenRLHF ``flash_reinforce``: minus the batch mean of the raw
  reward, before the clip and the KL), ``passk``/``passk_std`` (verl ``grpo_passk``: only the group's
  strict best gets r_max − r_second, ÷ (std + ε) with ``norm_adv_by_std_in_grpo``). A group of one (verl ``rollout.n = 1``) has mean 0 and std
  1, as in verl.
- **post-processing** over the whole batch (the large-batch limit, context-weighted): ``whiten``
  ``(A − μ)/sqrt(σ² + 1e-8)`` (verl ``masked_whiten``: gae, reinforce_plus_plus(_baseline)),
  ``whiten_clamp`` ``(A − μ)/sqrt(max(σ², 1e-8))`` (OpenRLHF gae/reinforce/reinforce_baseline),
  ``center`` ``A − μ`` (OpenRLHF ``no_std_norm``), ``gpg_alpha``
  ``A/P(s ≠ 0)`` (verl gpg's α = bsz/#nonzero scores).
- **surrogate** per response with ρ = π/π_old (exact expectation, as in the native module):
  ``vanilla`` ``c⁺·min(ρ, 1+ε_h) − c⁻·min(max(ρ, 1−ε_l), c)`` (dual clip c = ``clip_ratio_c``,
  OpenRLHF ``dual_clip``; log ρ clamped to ±20), ``gspo`` (the same without dual clip; on one
  token the sequence ratio is the token ratio; verl clamps log ρ ≤ 10), ``cispo``
  ``(c⁺ − c⁻)·sg(clip(ρ))·log π``, ``gpg`` ``(c⁺ − c⁻)·log π``, ``gmpo`` (verl ``geo_mean``)
  ``c⁺·e^{min(log ρ, ε_h)·s} − c⁻·e^{max(log ρ, −ε_l)·s}``, s = 1/(1 + 1e-8), ``sapo``
  ``c⁺·g(τ₊) − c⁻·g(τ₋)``, ``g(τ) = σ(τ(ρ − 1))·4/τ``, ``ratio`` (verl ``kl_cov``) ``(c⁺ − c⁻)·ρ``
  unclipped. ``clip_c = 0``: no dual clip.
- **covariance rules** (verl ``clip_cov`` / ``kl_cov``, ``cov_select``): the token covariance
  ``(A − mean A)(log π − mean log π)`` over the batch; clip_cov zeroes the advantage of a random
  ``clip_cov_ratio`` of the tokens inside ``(clip_cov_lb, clip_cov_ub)``, kl_cov adds
  ``ppo_kl_coef·|log ρ|`` to the top ``kl_cov_ratio`` (per-response frequencies ``csel`` in the
  state). Exact state: their population limits (:func:`_clip_cov_limit`, :func:`_kl_cov_limit`);
  sampled: verl's finite-batch rules (:func:`clip_cov_batch`, :func:`kl_cov_batch`).
- **KL in the loss** ``+β·Σ_y f_y·k̂(y)`` (f: sample frequencies), k̂ from verl's
  ``kl_penalty`` (k1 ``kl``, ``abs``, k2 ``mse``, k3 ``low_var_kl`` with log-ratio clamp ±20 and
  value clamp ±10; a ``+`` suffix keeps the value and takes k2's gradient, straight-through) or
  OpenRLHF's ``compute_approx_kl`` (values clamped to ±10, k3's log ratio ≥ −10;
  ``unbiased_gradient``: gradient of ``w·½(log π − log π_ref)²`` with w = min(ρ, 10), detached).
- **entropy bonus** ``−entropy_coeff·H(π(·|x))`` (verl ``entropy_coeff``, OpenRLHF
  ``entropy_coef``: the full-vocabulary entropy at each sampled token = H(π_x) on a bandit).
- **aggregation** (``loss_agg_mode``): with one token per response ``token-mean``,
  ``seq-mean-token-mean`` and ``seq-mean-token-sum`` are the same mean over responses;
  ``seq-mean-token-sum-norm`` divides by ``loss_scale_factor`` (default: the response length, 1),
  carried as ``loss_scale``; ``token-sum`` multiplies by ``ppo_mini_batch_size·n`` (``loss_scale``).
  The sequence means divide by (token count + 1e-8): a factor 1/(1 + 1e-8) on a bandit, kept
  (``loss_scale`` in verl, where the KL and entropy terms share the mode; ``pg_scale`` in OpenRLHF,
  whose KL and entropy are always token means) so values agree with the libraries to 1e-12.

Only bandits (softmax/simplex policies over single-token responses) are accepted; token trees are
refused (GSPO's geometric-mean sequence ratio and the per-sequence aggregations differ there).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from bandit_lab.core import draws
from bandit_lab.errors import BanditError
from bandit_lab.losses.base import LossInputs, LossSpec, register
from bandit_lab.losses.onpolicy import _param_views, _views, check_enumeration, compositions, group_advantage, normalise_sampling

ADVANTAGES = ("group_std", "group_mean", "loo", "none", "greedy", "critic", "batch_mean", "passk", "passk_std")
GROUP = ("group_std", "group_mean", "loo", "passk", "passk_std")
POSTS = ("none", "whiten", "whiten_clamp", "center", "gpg_alpha")
SURROGATES = ("vanilla", "gspo", "cispo", "gpg", "gmpo", "sapo", "ratio", "dppo_tv", "dppo_kl", "dro", "bypass")
BYPASS_LOSSES = ("ppo_clip", "reinforce")
COV_SELECT = ("none", "clip_cov", "kl_cov")
KL_KINDS = ("none", "k1", "abs", "k2", "k3")
KL_GRADS = ("pathwise", "k2", "k2_is")  # the estimator's own | k2's (verl '+') | w·k2 (OpenRLHF unbiased_gradient)
KL_CLAMPS = ("verl", "openrlhf", "none")
RATIO_CLAMPS = ("pm20", "max10", "none")


def kl_value(logp, logp_ref, kind: str, clamp: str):
    """The library's per-token KL estimate (value; the gradient is that of this expression):
    verl ``kl_penalty_forward`` (clamp "verl": k3 from ``clamp(log π_ref − log π, ±20)``, value
    clamped to ±10) or OpenRLHF ``compute_approx_kl`` (clamp "openrlhf": every value clamped to
    ±10, k3's ``log π − log π_ref`` clamped ≥ −10)."""
    h = logp - logp_ref
    if kind == "k1":
        v = h
    elif kind == "abs":
        v = jnp.abs(h)
    elif kind == "k2":
        v = 0.5 * h**2
    elif kind == "k3":
        if clamp == "verl":
            lu = jnp.clip(-h, -20.0, 20.0)
            return jnp.clip(jnp.exp(lu) - lu - 1.0, -10.0, 10.0)
        hh = jnp.maximum(h, -10.0) if clamp == "openrlhf" else h
        v = jnp.expm1(-hh) + hh
    else:
        raise BanditError(f"KL estimator must be one of {', '.join(KL_KINDS[1:])}; got {kind!r}")
    return jnp.clip(v, -10.0, 10.0) if clamp == "openrlhf" else v


def kl_loss_term(logp, logp_ref, logq, kind: str, grad: str, clamp: str):
    """Per-response KL-loss term: value of :func:`kl_value`, gradient by ``grad`` (see KL_GRADS)."""
    v = kl_value(logp, logp_ref, kind, clamp)
    if grad == "pathwise":
        return v
    s = 0.5 * (logp - logp_ref) ** 2
    if grad == "k2_is":
        s = jax.lax.stop_gradient(jnp.minimum(jnp.exp(logp - logq), 10.0)) * s  # OpenRLHF KL_IS_WEIGHT_CLIP
    return jax.lax.stop_gradient(v) + s - jax.lax.stop_gradient(s)


def _bandit_only(aux):
    if aux is not None and "logp_state" in aux:
        raise BanditError("the verl/OpenRLHF forms are exact on bandits (one token per response) only; token trees are "
                          "not implemented for them yet (GSPO's geometric-mean ratio and the per-sequence aggregations)")


def _shape_before(st, hp, r, logq, ref):
    """verl: the in-reward KL acts on the reward before the advantage."""
    if st["kl_reward"] != "none" and not st["kl_after_advantage"]:
        return r - hp["beta_reward"] * kl_value(logq, ref, st["kl_reward"], st["kl_clamp"])
    return r


def _shape_after(st, hp, A, logq_of, ref_of):
    """OpenRLHF: reward clip of the baseline-subtracted reward, then minus β_r·KL."""
    if not st["kl_after_advantage"]:
        return A
    rc = jnp.where(hp["reward_clip"] > 0, hp["reward_clip"], jnp.inf)  # 0: no clip
    A = jnp.clip(A, -rc, rc)
    if st["kl_reward"] != "none":
        A = A - hp["beta_reward"] * kl_value(logq_of, ref_of, st["kl_reward"], st["kl_clamp"])
    return A


def _post(st, hp, A, w, s_resp, wresp, bessel: int | None = None):
    """Batch-level post-processing of advantages ``A`` with sample weights ``w`` (same shape,
    summing to 1 over the batch); ``s_resp``/``wresp``: per-response scores and weights (GPG's α)."""
    post = st["post"]
    if post == "none":
        return A
    if post == "gpg_alpha":
        p = jnp.sum(wresp * (s_resp != 0))
        return A * jnp.where(p > 0, 1.0 / jnp.where(p > 0, p, 1.0), 0.0)
    # verl on a finite batch of B tokens: masked_mean divides by (B + 1e-8), masked_var(unbiased=True)
    # multiplies by B/(B − 1) (verl/utils/torch_functional.py); kept so values match verl to 1e-12
    fin = 1.0 if bessel is None or post != "whiten" else bessel / (bessel + 1e-8)
    mu = jnp.sum(w * A) * fin
    if post == "center":
        return A - mu
    var = jnp.sum(w * (A - mu) ** 2) * fin
    if bessel is not None and post == "whiten":
        var = var * bessel / (bessel - 1)
    den = jnp.sqrt(var + 1e-8) if post == "whiten" else jnp.sqrt(jnp.maximum(var, 1e-8))
    return (A - mu) / den


def _passk(adv, lead, D, Q, G, eps):
    """verl ``grpo_passk`` (Pass@k): only a group's strict best response gets r_max − r_second
    (``lead`` = its reward minus the best of the others; a tie gives 0), divided by the group's std
    + ε when ``norm_adv_by_std_in_grpo``. Without the std its expected update is (1/G)·∇E_π[max of G
    rewards] (the leave-one-out max baseline)."""
    gap = jnp.maximum(lead, 0.0)
    if adv == "passk":
        return gap
    std = jnp.sqrt(jnp.maximum(Q - D**2 / G, 0.0) / (G - 1))
    return gap / (std + eps)


def _exact_adv(st, hp, s, r, logp, q, ref, cw):
    """Advantages over every composition: ``(A [X, C, K], P(composition) [X, C])``."""
    X, K = q.shape
    adv = st["advantage"]
    G = int(st["group_size"]) if adv in GROUP else 1
    if adv in GROUP and G > 1:
        check_enumeration(G, K, X)
        counts, logcoef = compositions(G - 1, K)
        cj = jnp.asarray(counts)
        lq = jnp.where(cj[None] > 0, cj[None] * logp[:, None, :], 0.0).sum(-1)
        Pc = jnp.exp(jnp.asarray(logcoef)[None] + lq)
        d = s[:, :, None] - s[:, None, :]
        D = jnp.einsum("cj,xjk->xck", cj, d)
        Q = jnp.einsum("cj,xjk->xck", cj, d**2)
        if adv.startswith("passk"):  # the others' best reward: max over the responses the composition holds
            M = jnp.max(jnp.where(cj[None] > 0, s[:, None, :], -jnp.inf), -1)  # [X, C]
            A = _passk(adv, s[:, None, :] - M[:, :, None], D, Q, G, hp["std_eps"])
        else:
            A = group_advantage(D, Q, s[:, None, :], G, adv, 1, hp["std_eps"])
    else:
        Pc = jnp.ones((X, 1))
        if adv == "group_std":  # a group of one: mean 0, std 1 (verl compute_grpo_outcome_advantage)
            A = s / (1.0 + hp["std_eps"])
        elif adv == "greedy":  # ReMax: minus the (unpenalised) reward of the greedy response
            A = s - jnp.take_along_axis(r, jnp.argmax(logp, -1)[:, None], -1)
        elif adv == "batch_mean":  # OpenRLHF flash_reinforce: minus the batch mean (large batch: E over x and π)
            A = s - jnp.sum(cw[:, None] * q * s)
        else:
            A = s
        A = A[:, None, :]
    A = _shape_after(st, hp, A, logp[:, None, :], ref[:, None, :])
    if adv == "critic":  # GAE with λ = γ = 1 on one token: A = s − V, the critic at its fixed point V = E_π[s]
        A = A - jnp.sum(q[:, None, :] * A, -1, keepdims=True)
    return A, Pc


def batch_advantages(st, hp, y, s, r, logp, ref, cw):
    """Advantages of a finite batch as the library computes them: responses ``y [N, G, X]`` (N
    groups of G per context; a group estimator groups along axis 1), shaped rewards ``s [X, K]``,
    raw rewards ``r``, current log-probs ``logp`` (= π_old on-policy), ``ref``, context weights
    ``cw``. Batch statistics weight a sample by ``cw/(N·G)``; verl's whitening uses the unbiased
    variance (``masked_var``, Bessel's B/(B−1) with B = N·G·X samples), OpenRLHF's the biased one.
    ``tests/data/verl_reference.json`` holds the libraries' own values for this function."""
    N, G, X = y.shape
    K = logp.shape[-1]
    adv = st["advantage"]
    pick = lambda a: jnp.take_along_axis(jnp.broadcast_to(a, (N, G, X, K)), y[..., None], -1)[..., 0]  # noqa: E731
    ss = pick(s)
    if adv in GROUP and G > 1:
        dev = ss[:, :, None, :] - ss[:, None, :, :]
        if adv.startswith("passk"):
            others = jnp.where(jnp.eye(G, dtype=bool)[None, :, :, None], -jnp.inf, ss[:, None, :, :])  # [N, i, j, X]
            A = _passk(adv, ss - jnp.max(others, 2), jnp.sum(dev, 1), jnp.sum(dev**2, 1), G, hp["std_eps"])
        else:
            A = group_advantage(jnp.sum(dev, 1), jnp.sum(dev**2, 1), ss, G, adv, 1, hp["std_eps"])
    elif adv == "group_std":
        A = ss / (1.0 + hp["std_eps"])
    elif adv == "greedy":
        A = ss - jnp.take_along_axis(r, jnp.argmax(logp, -1)[:, None], -1)[:, 0]
    elif adv == "batch_mean":
        A = ss - jnp.sum(cw / (N * G) * ss)
    else:
        A = ss
    A = _shape_after(st, hp, A, pick(logp), pick(ref))
    if adv == "critic":  # the critic at its fixed point (exact V = E_π[s̃]); sampled advantages around it
        Aall = _shape_after(st, hp, s[:, None, :], logp[:, None, :], ref[:, None, :])[:, 0]
        A = A - jnp.sum(jnp.exp(logp) * Aall, -1)
    wts = jnp.broadcast_to(cw / (N * G), A.shape)
    return _post(st, hp, A, wts, ss, wts, bessel=N * G * X)


def _cov(A, lp, w):
    """verl's token covariance ``(A − mean A)(log π − mean log π)`` with batch weights ``w`` (sum 1)."""
    return (A - jnp.sum(w * A)) * (lp - jnp.sum(w * lp))


def clip_cov_batch(hp, A, lp, w, key, clipped=None):
    """verl 0.9.1 ``compute_policy_loss_clip_cov`` on a finite batch: the tokens with
    ``clip_cov_lb < cov < clip_cov_ub`` (``lp`` the current log-probs) that the PPO clip does not
    already clip (``clipped``, none on-policy) are eligible, and ``min(max(int(clip_cov_ratio·B), 1),
    #eligible)`` of them, uniformly at random (``randperm``), get loss 0. Returns the 0/1 mask of the
    zeroed tokens (B = the batch's token count)."""
    cov = _cov(A, lp, w)
    elig = (cov > hp["clip_cov_lb"]) & (cov < hp["clip_cov_ub"])
    if clipped is not None:
        elig = elig & ~clipped
    B = A.size
    num = jnp.maximum(jnp.floor(hp["clip_cov_ratio"] * B), 1.0)
    u = jnp.where(elig, jax.random.uniform(key, A.shape), 2.0)  # a random order of the eligible tokens
    rank = jnp.argsort(jnp.argsort(u.ravel())).reshape(A.shape)
    return (elig & (rank < num)).astype(A.dtype)


def _clip_cov_limit(hp, A, lp, w, clipped=None):
    """The population limit of :func:`clip_cov_batch` (docs/onpolicy-verl.md): the batch means become
    E[A] and E[log π] under the atom weights ``w`` (context, composition, response), an atom is
    eligible when its limiting covariance lies strictly inside (lb, ub), and each eligible token is
    zeroed with probability ``min(1, clip_cov_ratio/P(eligible))``; ``clipped`` (later epochs: the
    atoms the PPO clip clips at the current ratio) are not eligible. Returns that probability per atom."""
    cov = _cov(A, lp, w)
    elig = (cov > hp["clip_cov_lb"]) & (cov < hp["clip_cov_ub"])
    elig = (elig if clipped is None else elig & ~clipped).astype(A.dtype)
    pe = jnp.sum(w * elig)
    kappa = jnp.where(pe > 0, jnp.minimum(1.0, hp["clip_cov_ratio"] / jnp.where(pe > 0, pe, 1.0)), 0.0)
    # no stop_gradient: the stationary solver differentiates the state (κ depends on θ through P(eligible));
    # the eligibility indicator is piecewise constant (no derivative), and the trainer detaches the state
    return kappa * elig


def kl_cov_batch(hp, A, lp, w):
    """verl 0.9.1 ``compute_policy_loss_kl_cov`` on a finite batch: the ``k = max(1, int(kl_cov_ratio·B))``
    tokens with the largest covariance ``(A − mean A)(log π − mean log π)`` (``torch.topk``; ``lp`` the
    current log-probs, detached) get ``+ppo_kl_coef·|log ρ|``. Returns their 0/1 mask (B = the batch's
    token count). With batch weights ``w`` (sum 1) a token is selected when the weight of the tokens
    ranked above it is below (k − ½)/B: with equal weights 1/B exactly the top k (ties by position, as
    the samples are i.i.d.); with unequal context weights the weighted analogue, whose limit is
    :func:`_kl_cov_limit`."""
    cov = _cov(A, lp, w).ravel()
    B = A.size
    k = jnp.maximum(jnp.floor(hp["kl_cov_ratio"] * B), 1.0)
    order = jnp.argsort(-cov, stable=True)
    ws = w.ravel()[order]
    before = jnp.cumsum(ws) - ws
    sel = jnp.zeros(B, A.dtype).at[order].set((before < (k - 0.5) / B * jnp.sum(w)).astype(A.dtype))
    return sel.reshape(A.shape)


def _kl_cov_limit(hp, A, lp, w):
    """The population limit of :func:`kl_cov_batch` (docs/onpolicy-verl.md): the batch means become
    E[A] and E[log π] under the atom weights ``w`` (context, composition, response), and the top
    ``kl_cov_ratio`` of the covariance's distribution is selected: an atom with ``P(c > c_atom) +
    P(c = c_atom) ≤ ratio`` always, one with ``P(c > c_atom) ≥ ratio`` never, and the atoms tied at
    the quantile each with probability ``(ratio − P(c > q*))/P(c = q*)`` (topk's tie order is a random
    order of i.i.d. tokens). Returns that probability per atom (differentiable in the weights)."""
    c, ww = _cov(A, lp, w).ravel(), w.ravel()
    order = jnp.argsort(c)
    cs, cum = c[order], jnp.cumsum(ww[order])
    tot = cum[-1]
    le = jnp.where(jnp.searchsorted(cs, c, side="right") > 0, cum[jnp.searchsorted(cs, c, side="right") - 1], 0.0)
    lt = jnp.where(jnp.searchsorted(cs, c, side="left") > 0, cum[jnp.searchsorted(cs, c, side="left") - 1], 0.0)
    gt, eq = tot - le, le - lt  # P(c > c_atom), P(c = c_atom)
    ratio = hp["kl_cov_ratio"]
    part = jnp.clip((ratio - gt) / jnp.where(eq > 0, eq, 1.0), 0.0, 1.0)
    return jnp.where(eq > 0, part, (gt < ratio).astype(A.dtype)).reshape(A.shape)


def _state(objective, params, hp, key, consts, prev=None):
    """The detached per-step state at ``params`` (module docstring); ``key`` None ⇒ exact."""
    st = objective.static
    c = objective.consts() if consts is None else consts
    logp, _, ref, path = _param_views(objective, params, c)
    _bandit_only(None if path is None else {"logp_state": 1})
    X, K = logp.shape
    q = jnp.exp(logp)
    cw = jnp.asarray(c["context_weight"])
    r = jnp.asarray(c["reward"])
    s = _shape_before(st, hp, r, logp, ref)
    N = 0 if key is None or st.get("sampling", "exact") == "exact" else int(st["sampling"])
    held = st.get("cov_select", "none") != "none" and int(st.get("epochs", 1)) > 1
    extra = {}
    if N == 0:
        A, Pc = _exact_adv(st, hp, s, r, logp, q, ref, cw)
        w = cw[:, None, None] * Pc[:, :, None] * q[:, None, :]
        A = _post(st, hp, A, w, s, cw[:, None] * q)
        sel = None
        if held:  # later epochs re-select from the current log-probs (_cov_rules): keep the atoms
            extra = {"atom_adv": A, "atom_pq": Pc[:, :, None] * q[:, None, :]}
        if st.get("cov_select", "none") == "clip_cov":
            A = A * (1.0 - _clip_cov_limit(hp, A, jnp.broadcast_to(logp[:, None, :], A.shape), w))
        elif st.get("cov_select", "none") == "kl_cov":
            sel = q * jnp.einsum("xc,xck->xk", Pc, _kl_cov_limit(hp, A, jnp.broadcast_to(logp[:, None, :], A.shape), w))
        cp = q * jnp.einsum("xc,xck->xk", Pc, jnp.maximum(A, 0.0))
        cm = q * jnp.einsum("xc,xck->xk", Pc, jnp.maximum(-A, 0.0))
        freq = q
    else:
        G = int(st["group_size"]) if st["advantage"] in GROUP else 1
        key, sub = jax.random.split(key) if st.get("cov_select", "none") != "none" else (key, None)
        y = draws.categorical(key, logp, (N, G, X))
        A = batch_advantages(st, hp, y, s, r, logp, ref, cw)
        sel = None
        if held:  # the batch's tokens, and a fresh key for every step's randperm (state_update)
            extra = {"tok_adv": A, "tok_y": y, "key": jax.random.split(sub)[0]}
        lpy = jnp.take_along_axis(jnp.broadcast_to(logp, (N, G, X, K)), y[..., None], -1)[..., 0]
        if st.get("cov_select", "none") == "clip_cov":
            A = A * (1.0 - clip_cov_batch(hp, A, lpy, jnp.broadcast_to(cw / (N * G), A.shape), sub))
        oh = jax.nn.one_hot(y, K)
        if st.get("cov_select", "none") == "kl_cov":
            sel = jnp.sum(oh * kl_cov_batch(hp, A, lpy, jnp.broadcast_to(cw / (N * G), A.shape))[..., None], (0, 1)) / (N * G)
        cp = jnp.sum(oh * jnp.maximum(A, 0.0)[..., None], (0, 1)) / (N * G)
        cm = jnp.sum(oh * jnp.maximum(-A, 0.0)[..., None], (0, 1)) / (N * G)
        freq = jnp.sum(oh, (0, 1)) / (N * G)
    out = {"logq": logp, "cp": cp, "cm": cm, "ckl": freq, **extra}
    if sel is not None:
        out["csel"] = sel  # kl_cov: per-response frequency of the selected (top-covariance) tokens
    return out


def _cov_rules(hp, st, state, logp, cw):
    """verl ``clip_cov`` / ``kl_cov`` at a later epoch (``ppo_epochs`` > 1): the held batch (the exact
    atoms, or the sampled tokens) re-selected from the *current* log-probs ``logp`` (detached, as verl's
    ``log_prob.detach()``), with the old ones ``state['logq']``: clip_cov's covariance window and its
    PPO-clip exclusion (``−A·clip(ρ) > −A·ρ``), kl_cov's top-``kl_cov_ratio`` ranking. Returns ``(c⁺,
    c⁻, csel)`` per response (csel None for clip_cov). At ρ = 1 they equal the state's own."""
    logq = state["logq"]
    lo, hi = 1.0 - hp["clip"], 1.0 + hp["clip_high"]
    if "atom_adv" in state:
        A, pq = state["atom_adv"], state["atom_pq"]
        w = cw[:, None, None] * pq
        lp = jnp.broadcast_to(logp[:, None, :], A.shape)
        csel = None
        if st["cov_select"] == "clip_cov":
            rho = jnp.exp(lp - logq[:, None, :])
            A = A * (1.0 - _clip_cov_limit(hp, A, lp, w, -A * jnp.clip(rho, lo, hi) > -A * rho))
        else:
            csel = jnp.sum(pq * _kl_cov_limit(hp, A, lp, w), 1)
        return jnp.sum(pq * jnp.maximum(A, 0.0), 1), jnp.sum(pq * jnp.maximum(-A, 0.0), 1), csel
    A, y = state["tok_adv"], state["tok_y"]
    N, G, X = A.shape
    K = logp.shape[-1]
    w = jnp.broadcast_to(cw / (N * G), A.shape)
    pick = lambda a: jnp.take_along_axis(jnp.broadcast_to(a, (N, G, X, K)), y[..., None], -1)[..., 0]  # noqa: E731
    lp = pick(logp)
    oh = jax.nn.one_hot(y, K)
    csel = None
    if st["cov_select"] == "clip_cov":
        rho = jnp.exp(lp - pick(logq))
        A = A * (1.0 - clip_cov_batch(hp, A, lp, w, state["key"], -A * jnp.clip(rho, lo, hi) > -A * rho))
    else:
        csel = jnp.sum(oh * kl_cov_batch(hp, A, lp, w)[..., None], (0, 1)) / (N * G)
    cp = jnp.sum(oh * jnp.maximum(A, 0.0)[..., None], (0, 1)) / (N * G)
    cm = jnp.sum(oh * jnp.maximum(-A, 0.0)[..., None], (0, 1)) / (N * G)
    return cp, cm, csel


def state_init(objective, params, hp, key, consts):
    return _state(objective, params, hp, key, consts)


def state_update(objective, params, hp, key, state, t, consts):
    """New samples every ``epochs`` steps (verl ``ppo_epochs``), the same batch in between."""
    new = _state(objective, params, hp, key, consts, prev=state)
    E = int(objective.static.get("epochs", 1))
    if E == 1:
        return new
    out = jax.tree_util.tree_map(lambda a, b: jnp.where((t % E) == 0, a, b), new, state)
    if "key" in out:  # clip_cov's randperm is drawn afresh at every epoch
        out["key"] = new["key"]
    return out


def library_loss(inputs: LossInputs, hp: dict, **st) -> jax.Array:
    """The library's actor loss in expectation over its batch, given the detached state."""
    state = inputs.state
    if not state:
        raise BanditError("the verl/OpenRLHF losses need their per-step state (build the objective with make_objective)")
    _bandit_only(inputs.aux)
    logp, _, ref, _ = _views(inputs.logp, inputs.aux, inputs.logp_ref)
    logq = state["logq"]
    cp, cm, csel = state["cp"], state["cm"], state.get("csel")
    if "atom_adv" in state or "tok_adv" in state:
        cp, cm, csel = _cov_rules(hp, st, state, jax.lax.stop_gradient(logp), inputs.context_weight)
    lr = logp - logq
    rc = st["ratio_clamp"]
    lr = jnp.clip(lr, -20.0, 20.0) if rc == "pm20" else (jnp.minimum(lr, 10.0) if rc == "max10" else lr)
    ratio = jnp.exp(lr)
    sur = st["surrogate"]
    if sur in ("vanilla", "gspo"):
        c = jnp.where(hp["clip_c"] > 0, hp["clip_c"], jnp.inf) if sur == "vanilla" else jnp.inf  # 0: no dual clip
        pg = jnp.sum(cp * jnp.minimum(ratio, 1.0 + hp["clip_high"])
                     - cm * jnp.minimum(jnp.maximum(ratio, 1.0 - hp["clip"]), c), -1)
    elif sur == "cispo":
        w = jax.lax.stop_gradient(jnp.clip(ratio, 1.0 - hp["clip"], 1.0 + hp["clip_high"]))
        pg = jnp.sum((cp - cm) * w * logp, -1)
    elif sur == "gpg":
        pg = jnp.sum((cp - cm) * logp, -1)
    elif sur == "gmpo":  # verl geo_mean: log ρ clipped on the advantage's side only, exp(Σ log ρ'/(len + 1e-8))
        s = 1.0 / (1.0 + 1e-8)
        pg = jnp.sum(cp * jnp.exp(jnp.minimum(lr, hp["clip_high"]) * s) - cm * jnp.exp(jnp.maximum(lr, -hp["clip"]) * s), -1)
    elif sur == "sapo":  # verl sapo: the soft gate σ(τ(ρ − 1))·4/τ, τ_pos where A > 0, τ_neg where A ≤ 0
        def gate(tau):
            return jax.nn.sigmoid(tau * (ratio - 1.0)) * (4.0 / tau)
        pg = jnp.sum(cp * gate(hp["sapo_tau_pos"]) - cm * gate(hp["sapo_tau_neg"]), -1)
    elif sur == "ratio":  # verl kl_cov: −A·ρ, no clip of any kind
        pg = jnp.sum((cp - cm) * ratio, -1)
    elif sur in ("dppo_tv", "dppo_kl"):  # verl dppo_*: −A·sg(min(ρ, c))·log π·sg(valid), valid by the sign of A
        p, q = jnp.exp(logp), jnp.exp(logq)
        if sur == "dppo_tv":
            pos, neg = p - q <= hp["clip_high"], p - q >= -hp["clip"]
        else:  # the binary KL between Bernoulli(π_old(y)) and Bernoulli(π(y)), with verl's 1e-8
            bkl = q * (logq - logp) + (1.0 - q) * jnp.log((1.0 - q + 1e-8) / (1.0 - p + 1e-8))
            pos, neg = (bkl <= hp["clip_high"]) | (p <= q), (bkl <= hp["clip"]) | (p >= q)
        w = jax.lax.stop_gradient(jnp.minimum(ratio, hp["clip_c"]))
        # the masks are booleans (no derivative); c± stay differentiable: the stationary solver's Jacobian
        # follows the state's dependence on θ (a stop_gradient here would hide it from jacfwd)
        pg = jnp.sum(w * logp * (cp * pos - cm * neg), -1)
    elif sur == "dro":  # verl dro: −(log π·A − ½β_dro·(log π − log π_old)²) per sampled token
        pg = jnp.sum((cp - cm) * logp - 0.5 * hp["dro_beta"] * state["ckl"] * (logp - logq) ** 2, -1)
    elif sur == "bypass":  # verl bypass_mode, π_rollout = π_old (one exact policy): rejection mask × the loss type
        keep, w = bypass_weights(hp, st, jax.lax.stop_gradient(logp - logq))
        if st["bypass_loss"] == "ppo_clip":  # compute_policy_loss_vanilla on the kept tokens, no IS weights
            c = jnp.where(hp["clip_c"] > 0, hp["clip_c"], jnp.inf)
            per = cp * jnp.minimum(ratio, 1.0 + hp["clip_high"]) - cm * jnp.minimum(jnp.maximum(ratio, 1.0 - hp["clip"]), c)
        else:  # compute_policy_loss_reinforce: −A·log π·sg(w)
            per = (cp - cm) * w * logp
        pg = jnp.sum(keep * per, -1)
    else:
        raise BanditError(f"surrogate must be one of {', '.join(SURROGATES)}; got {sur!r}")
    if st.get("cov_select", "none") == "kl_cov":
        # + ppo_kl_coef·|log ρ| on the selected tokens (log ρ unclamped); torch's abs has derivative sign(x),
        # 0 at 0 (JAX's is 1 there), so on-policy (ρ = 1) the term adds nothing to the update
        h = logp - logq
        pg = pg - hp["ppo_kl_coef"] * jnp.sum(csel * h * jax.lax.stop_gradient(jnp.sign(h)), -1)
    total = -hp["pg_scale"] * pg
    if st["kl_loss"] != "none":
        per = kl_loss_term(logp, ref, logq, st["kl_loss"], st["kl_grad"], st["kl_clamp"])
        total = total + hp["beta"] * jnp.sum(state["ckl"] * per, -1)
    p = jnp.exp(logp)
    ent = -jnp.sum(jnp.where(p > 0, p * logp, 0.0), -1)
    total = total - hp["entropy_coeff"] * ent
    return hp["loss_scale"] * jnp.sum(inputs.context_weight * total)


def bypass_weights(hp, st, log_ratio):
    """verl 0.9.1 bypass mode (``rollout_corr_helper.compute_rollout_correction_and_rejection_mask`` with
    ``old_log_prob`` = the current log-probs and the rollout's = π_old): per response, the rejection mask
    (every ``rollout_rs`` option must pass; on one token the seq_sum/seq_mean/seq_max statistics are the
    token's: k1 = −log r in [log lo, log hi], k2 = ½log²r ≤ hi, k3 = r − 1 − log r ≤ hi, log r clamped ±20;
    a bound 0 is none) and the IS weight (``rollout_is`` token or sequence, equal here: exp(log r) clamped
    at ``is_hi`` (TIS) or zeroed outside [is_lo, is_hi] (IcePop, is_lo > 0); 1 without ``rollout_is``).
    Both detached. Returns ``(keep, w)``."""
    lr = jnp.clip(log_ratio, -20.0, 20.0)
    k1, k2, k3 = -lr, 0.5 * lr**2, jnp.expm1(lr) - lr
    keep = jnp.ones_like(lr)
    keep = keep * jnp.where(hp["rs_k1_lo"] > 0, k1 >= jnp.log(jnp.where(hp["rs_k1_lo"] > 0, hp["rs_k1_lo"], 1.0)), True)
    keep = keep * jnp.where(hp["rs_k1_hi"] > 0, k1 <= jnp.log(jnp.where(hp["rs_k1_hi"] > 0, hp["rs_k1_hi"], 1.0)), True)
    keep = keep * jnp.where(hp["rs_k2_hi"] > 0, k2 <= hp["rs_k2_hi"], True) * jnp.where(hp["rs_k3_hi"] > 0, k3 <= hp["rs_k3_hi"], True)
    if not st.get("bypass_is", False):
        return keep, jnp.ones_like(lr)
    raw = jnp.exp(lr)
    w = jnp.where(hp["is_lo"] > 0, jnp.where((raw >= hp["is_lo"]) & (raw <= hp["is_hi"]), raw, 0.0), jnp.minimum(raw, hp["is_hi"]))
    return keep, w


def _check(hp: dict, static: dict) -> None:
    static["sampling"] = normalise_sampling(static.get("sampling"))
    choice = {"advantage": ADVANTAGES, "post": POSTS, "surrogate": SURROGATES, "kl_reward": KL_KINDS, "kl_loss": KL_KINDS,
              "kl_grad": KL_GRADS, "kl_clamp": KL_CLAMPS, "ratio_clamp": RATIO_CLAMPS}
    for k, allowed in choice.items():
        if static[k] not in allowed:
            raise BanditError(f"{k} must be one of {', '.join(allowed)}; got {static[k]!r}")
    for k, lo in (("group_size", 1), ("epochs", 1)):
        v = static[k]
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or int(v) < lo:
            raise BanditError(f"{k} must be an integer ≥ {lo}; got {v!r}")
        static[k] = int(v)
    if not isinstance(static["kl_after_advantage"], bool):
        raise BanditError(f"kl_after_advantage must be true or false; got {static['kl_after_advantage']!r}")
    for k in ("beta", "beta_reward", "clip", "clip_high", "std_eps", "entropy_coeff"):
        if not (np.isfinite(hp[k]) and hp[k] >= 0):
            raise BanditError(f"{k} must be ≥ 0; got {hp[k]}")
    if not (hp["clip_c"] > 1.0 or hp["clip_c"] == 0.0):
        raise BanditError(f"clip_c (verl clip_ratio_c, OpenRLHF dual_clip) must be > 1, or 0 for none; got {hp['clip_c']}")
    if static.get("cov_select", "none") not in COV_SELECT:
        raise BanditError(f"cov_select must be one of {', '.join(COV_SELECT)}; got {static['cov_select']!r}")
    if not 0.0 < hp["kl_cov_ratio"] <= 1.0:
        raise BanditError(f"kl_cov_ratio (verl policy_loss.kl_cov_ratio) must be in (0, 1]; got {hp['kl_cov_ratio']}")
    if not (np.isfinite(hp["ppo_kl_coef"]) and hp["ppo_kl_coef"] >= 0):
        raise BanditError(f"ppo_kl_coef (verl policy_loss.ppo_kl_coef) must be ≥ 0; got {hp['ppo_kl_coef']}")
    if not (hp["sapo_tau_pos"] > 0 and hp["sapo_tau_neg"] > 0):
        raise BanditError(f"sapo_tau_pos and sapo_tau_neg (verl tau_pos, tau_neg) must be > 0; got {hp['sapo_tau_pos']}, "
                          f"{hp['sapo_tau_neg']}")
    if static["surrogate"] == "dro" and not (np.isfinite(hp["dro_beta"]) and hp["dro_beta"] > 0):
        raise BanditError(f"dro_beta (verl policy_loss.dro_beta) must be > 0 with the dro surrogate; got {hp['dro_beta']}")
    if static.get("bypass_loss", "ppo_clip") not in BYPASS_LOSSES:
        raise BanditError(f"bypass_loss must be one of {', '.join(BYPASS_LOSSES)}; got {static['bypass_loss']!r}")
    for k in ("is_lo", "is_hi", "rs_k1_lo", "rs_k1_hi", "rs_k2_hi", "rs_k3_hi"):
        if not (np.isfinite(hp[k]) and hp[k] >= 0):
            raise BanditError(f"{k} must be ≥ 0 (0: no bound); got {hp[k]}")
    if static["surrogate"] in ("dppo_tv", "dppo_kl") and not hp["clip_c"] > 0:
        raise BanditError(f"clip_c (verl clip_ratio_c: DPPO's truncation of the detached ratio) must be > 0; got {hp['clip_c']}")
    if not hp["loss_scale"] > 0 or not hp["pg_scale"] > 0 or not hp["reward_clip"] >= 0:
        raise BanditError("loss_scale and pg_scale must be > 0 and reward_clip ≥ 0 (0: no clip)")


def _clamp_ok(pol, ref, static, kind) -> bool:
    """Is the library's KL clamp inactive at ``pol`` (so the unclamped closed form holds)?"""
    h = np.log(pol) - np.log(ref)
    if kind == "k3":
        v = np.expm1(-h) + h
        return bool(np.all(v < 10.0) and (static["kl_clamp"] != "openrlhf" or np.all(h > -10.0)))
    return bool(static["kl_clamp"] != "openrlhf" or np.all(np.abs(h) < 10.0))


def oracle(problem, hp: dict, static: dict):
    """``LossSpec.oracle``: the closed form of :func:`_oracle` (on-policy verl ``kl_cov`` has vanilla's
    field: its ``|log ρ|`` term has derivative 0 at ρ = 1). ``clip_cov``: vanilla's point only where no
    atom's covariance lies in the closed window [lb, ub] there — then no atom is eligible in a
    neighbourhood and the two fields coincide on it; otherwise no closed form."""
    pol, tag = _oracle(problem, hp, static)
    if pol is None or static.get("cov_select", "none") != "clip_cov":
        return pol, tag
    cov, w = _exact_cov(problem, hp, static, pol)
    near = (cov >= hp["clip_cov_lb"]) & (cov <= hp["clip_cov_ub"]) & (w > 0)
    if near.any():
        return None, (f"clip_cov: atoms of mass {float(w[near].sum()):.3g} have their covariance in [lb, ub] at the "
                      "vanilla point, so the rule moves it: no closed form")
    return pol, tag + "; clip_cov's window holds no atom there"


def _exact_cov(problem, hp, static, pol):
    """The limiting covariance of every atom at policy ``pol`` and the atoms' weights (NumPy arrays)."""
    st = {**static}
    hpj = {k: jnp.asarray(v) for k, v in hp.items()}
    lp = jnp.log(jnp.asarray(pol))
    ref = jnp.log(jnp.asarray(problem.pi_ref, float))
    cw = jnp.asarray(problem.context_weight, float)
    r = jnp.asarray(problem.reward, float)
    q = jnp.exp(lp)
    s = _shape_before(st, hpj, r, lp, ref)
    A, Pc = _exact_adv(st, hpj, s, r, lp, q, ref, cw)
    w = cw[:, None, None] * Pc[:, :, None] * q[:, None, :]
    A = _post(st, hpj, A, w, s, cw[:, None] * q)
    return np.asarray(_cov(A, jnp.broadcast_to(lp[:, None, :], A.shape), w)), np.asarray(w)


CLIP_COV_MARGIN = 1e-9  # an atom's covariance closer than this (relative) to lb or ub: no verdict


def clip_cov_verdict(objective, hp: dict, st):
    """verl ``clip_cov``'s field is piecewise smooth: the eligibility ``lb < c < ub`` of each atom
    jumps where its covariance crosses an edge, and the solver's Jacobian (hence its verdict) holds
    only where it does not. At a root (status attracting / not attracting) the distance of every
    atom's covariance (of positive weight) to lb and ub is measured: above ``CLIP_COV_MARGIN``·max(1,
    |lb|, |ub|) the selection is constant on a neighbourhood and the verdict stands (the margin is
    appended to the note); below it the status becomes "not converged" with the reason."""
    if objective.static.get("cov_select", "none") != "clip_cov":
        return st
    if st.status not in ("attracting", "not attracting") or objective.problem.reward is None:
        return st
    cov, w = _exact_cov(objective.problem, hp, objective.static, np.asarray(st.result.policy))
    lb, ub = float(hp["clip_cov_lb"]), float(hp["clip_cov_ub"])
    d = np.minimum(np.abs(cov - lb), np.abs(cov - ub))[w > 0]
    margin = float(d.min()) if d.size else np.inf
    cert = {**st.certificate, "clip_cov_edge_margin": margin}
    if margin <= CLIP_COV_MARGIN * max(1.0, abs(lb), abs(ub)):
        return st._replace(status="not converged", certificate={k: v for k, v in cert.items() if k != "stability"},
                           note=f"a root where an atom's covariance is {margin:.1e} from clip_cov's window edge (lb "
                                f"{lb:g}, ub {ub:g}): the selection, hence the field, jumps there; no verdict")
    pe = float(w[(cov > lb) & (cov < ub)].sum())
    return st._replace(certificate=cert, note=st.note + f"; clip_cov: P(eligible) = {pe:.3g}, every atom's covariance "
                                                          f"≥ {margin:.2e} from the window's edges (selection constant nearby)")


def _oracle(problem, hp: dict, static: dict):
    """The closed-form stationary point where one exists (single-token responses).

    The expected update is ``m·(κ·∇E_π r − β_rw·∇KL(π‖π_ref)) − β_l·∇D − α·∇(−H)``: κ = 1 for
    loo / none / critic / greedy baselines, (n−1)/n for the group mean (the focal's own reward in the
    mean); β_rw = κ·β_r when verl shapes the reward *before* the baseline, β_r when OpenRLHF subtracts
    the KL after it; m the batch post-processing (1, 1/σ(π) whitening, GPG's α(π) = 1/P(s ≠ 0)); D =
    KL(π‖π_ref) for a straight-through / k2 / unbiased-gradient KL loss, KL(π_ref‖π) for k3
    differentiated, nothing for k1 (E_π[∇log π] = 0). The zero is
    ``log π = (mκ·r + (mβ_rw + β_l)·log π_ref)/(mβ_rw + β_l + α) + c`` for D = KL(π‖π_ref) (m fixed
    by iteration where it depends on π); the forward-KL optimum β·π_ref/(λ − κr) for k3; the
    Vojnovic–Yun point (:func:`bandit_lab.onpolicy.closed_forms.grpo_fixed_point`) for the group std.
    A clamp active at the answer, or an estimator in the reward other than k1, gives no closed form."""
    from bandit_lab.onpolicy.closed_forms import grpo_fixed_point
    from bandit_lab.solvers.oracles import rlhf_optimum

    r = problem.reward
    if r is None:
        return None, "no reward for this preference matrix (not Bradley–Terry)"
    ref, cw = np.asarray(problem.pi_ref, float), np.asarray(problem.context_weight, float)
    r = np.asarray(r, float)
    adv, post, G = static["advantage"], static["post"], int(static["group_size"])
    kr, kl, grad = static["kl_reward"], static["kl_loss"], static["kl_grad"]
    br = hp["beta_reward"] if kr != "none" else 0.0
    # the policy term carries pg_scale (and GMPO's 1/(1 + 1e-8)² at ρ = 1), the KL loss and entropy do not:
    # relative to the policy term they weigh β/ps and α/ps (SAPO's gate has slope 1 at ρ = 1)
    ps = hp["pg_scale"] * (1.0 / (1.0 + 1e-8) ** 2 if static["surrogate"] == "gmpo" else 1.0)
    if static["surrogate"] == "bypass":  # on-policy (log r = 0) the mask and the IS weight are constants
        from bandit_lab.onpolicy.verl import bypass_on_policy

        m = bypass_on_policy(hp, static)
        if m == 0:
            return None, "bypass_mode rejects (or zero-weights) every on-policy sample: no policy gradient"
        ps *= m
    bl = hp["beta"] / ps if kl != "none" else 0.0
    ent = hp["entropy_coeff"] / ps
    if kr not in ("none", "k1") and br > 0:
        return None, f"{kr} in the reward differentiates a non-convex functional (docs/onpolicy.md): no closed form"
    if adv.startswith("passk"):
        return None, "pass@k advantage: (1/G)·∇E_π[max of G rewards] (no std) or its std-normalised form: no closed form"
    if adv == "group_mean" and G > 1:
        kappa = (G - 1) / G
    elif adv == "group_std" and G > 1:
        if br > 0 or ent > 0 or post != "none" or bl == 0:
            return None, "group-std advantage with a reward KL, an entropy bonus or no KL loss: no closed form here"
        fwd = grad == "pathwise" and kl == "k3"
        if not (fwd or grad != "pathwise" or kl == "k2"):
            return None, f"{kl} in the loss, differentiated: no closed form"
        rows = []
        for x in range(ref.shape[0]):
            pi, res, _ = grpo_fixed_point(ref[x], r[x], bl, G, normalize="group_std", ddof=1, eps=hp["std_eps"],
                                          penalty="forward" if fwd else "reverse")
            if res > 1e-12:
                return None, f"Vojnovic–Yun characterisation: no solution found (residual {res:.1e})"
            rows.append(pi)
        pol = np.stack(rows)
        if fwd and not _clamp_ok(pol, ref, static, kl):  # a straight-through gradient ignores the value's clamp
            return None, "the library's KL clamp is active at the Vojnovic–Yun point: no closed form"
        return pol, "Vojnovic–Yun point of the group-std advantage (closed_forms.grpo_fixed_point)"
    else:
        kappa = 1.0
    brw = kappa * br if not static["kl_after_advantage"] else br
    if kl != "none" and bl > 0 and grad == "pathwise" and kl != "k2":
        if kl == "k1":
            bl = 0.0  # E_π[∇ log(π/π_ref)] = 0: k1 in the loss penalises nothing
        elif kl == "k3" and br == 0 and ent == 0 and post in ("none", "center"):
            pol = rlhf_optimum(ref, kappa * r, bl, "forward_kl")
            if not _clamp_ok(pol, ref, static, "k3"):
                return None, "the library's k3 clamp (value ≤ 10) is active at the forward-KL point: no finite closed form"
            return pol, f"k3 in the loss, differentiated: forward-KL RLHF optimum β·π_ref/(λ − κ·r), κ = {kappa:.6g}"
        else:
            return None, f"{kl} in the loss, differentiated, with these other terms: no closed form"
    if brw + bl + ent == 0:
        return None, "no KL penalty and no entropy bonus: no finite stationary point (π → argmax r)"
    loss_side = bl > 0 or ent > 0
    if post in ("whiten", "whiten_clamp") and loss_side:
        return None, "whitened advantages with a KL loss or entropy bonus: the batch std rescales β (no closed form)"
    m = 1.0

    def point(m):
        b = m * brw + bl
        lg = (m * kappa * r + b * np.log(ref)) / (b + ent)
        w = np.exp(lg - lg.max(-1, keepdims=True))
        return w / w.sum(-1, keepdims=True)

    pol = point(m)
    if post == "gpg_alpha" and loss_side:
        for _ in range(500):
            s = r - br * np.log(pol / ref) if kr == "k1" else r  # verl gpg counts nonzero *scores* (shaped rewards)
            p_nz = float(np.sum(cw[:, None] * pol * (s != 0)))
            m_new = 1.0 / p_nz if p_nz > 0 else 0.0
            if abs(m_new - m) < 1e-15 * max(1.0, m):
                break
            m = m_new
            pol = point(m)
    if kr == "k1" and not _clamp_ok(pol, ref, static, "k1"):
        return None, "OpenRLHF's ±10 clamp of k1 is active at the Gibbs point: no closed form"
    tag = f"π ∝ π_ref^(b/(b+α))·e^(mκ·r/(b+α)), κ = {kappa:.6g}, b = {m * brw + bl:.6g}, α = {ent:.6g}, m = {m:.6g}"
    return pol, tag


def _exact(objective, hp, init=None):
    from bandit_lab.onpolicy.stationary import solve

    return solve(objective, hp, init).result


_HP = {"beta": 0.001, "beta_reward": 0.001, "clip": 0.2, "clip_high": 0.2, "clip_c": 3.0, "std_eps": 1e-6,
       "entropy_coeff": 0.0, "reward_clip": 0.0, "loss_scale": 1.0, "pg_scale": 1.0, "sapo_tau_pos": 1.0, "sapo_tau_neg": 1.05,
       "clip_cov_ratio": 0.0002, "clip_cov_lb": 1.0, "clip_cov_ub": 5.0, "kl_cov_ratio": 0.0002, "ppo_kl_coef": 0.1,
       "dro_beta": 0.0, "is_lo": 0.0, "is_hi": 2.0, "rs_k1_lo": 0.0, "rs_k1_hi": 0.0, "rs_k2_hi": 0.0, "rs_k3_hi": 0.0}
_STATIC = {"advantage": "critic", "post": "whiten", "group_size": 1, "kl_reward": "none", "kl_after_advantage": False,
           "kl_loss": "none", "kl_grad": "pathwise", "kl_clamp": "verl", "surrogate": "vanilla", "ratio_clamp": "pm20",
           "epochs": 1, "sampling": "exact", "reward": "bt", "cov_select": "none", "bypass_loss": "ppo_clip", "bypass_is": False}


def _spec(name, hp, static, summary, citation, translate):
    return LossSpec(name, functools.partial(library_loss), hp, static, kind="onpolicy", summary=summary, citation=citation,
                    check=_check, exact=_exact, state_init=state_init, state_update=state_update, translate=translate,
                    oracle=oracle, field_verdict=clip_cov_verdict)


def _register():
    from bandit_lab.onpolicy import verl as lib

    register(_spec("verl", {**_HP, **lib.native(lib.VERL_DEFAULTS, "verl")[0]},
                   {**_STATIC, **lib.native(lib.VERL_DEFAULTS, "verl")[1]},
                   "verl 0.9.1 actor loss with its config names verbatim (adv_estimator, policy_loss.loss_mode, "
                   "kl_loss_type, loss_agg_mode, clip_ratio_*, rollout n, …); defaults: verl's",
                   "verl 0.9.1 verl/trainer/ppo/core_algos.py; Sheng et al. 2024 (HybridFlow)", lib.translate_verl))
    register(_spec("openrlhf", {**_HP, **lib.native(lib.OPENRLHF_DEFAULTS, "openrlhf")[0]},
                   {**_STATIC, **lib.native(lib.OPENRLHF_DEFAULTS, "openrlhf")[1]},
                   "OpenRLHF 0.11.2 PPO/REINFORCE actor loss with its CLI names verbatim (algo.advantage.estimator, "
                   "algo.kl.*, rollout.n_samples_per_prompt, actor.eps_clip, …); defaults: OpenRLHF's",
                   "OpenRLHF 0.11.2 openrlhf/trainer/ppo_utils/experience_maker.py, models/utils.py; Hu et al. 2024",
                   lib.translate_openrlhf))


_register()
