"""Token-level preference losses on exact token trees: TDPO1/2, Ra-DPO1/2, UE-DPO.

They read the per-state views of a :class:`~bandit_lab.tokens.param.TokenTreeParam` from
``LossInputs.aux`` (``logp_state`` = log π_θ(·|s), ``ref_logp`` = log π_ref(·|s), the tree's
index arrays — sums along responses go through ``tokens.tree.along_tokens``/``along_states`` —
and the UE-DPO token arrays). Sequence-level DPO on a tree is the core ``dpo`` loss on that parameterization (UE-DPO Eq. 29). Notation (Ra-DPO §3):
``u = β log π_θ(y_w)/π_ref(y_w) − β log π_θ(y_l)/π_ref(y_l)`` (Eq. 15); per-response
``D_SeqKL(x, y; π_ref‖π_θ) = Σ_t KL(π_ref(·|s_t) ‖ π_θ(·|s_t))`` and
``D_SeqRR(x, y; π_ref‖π_θ) = Σ_t Φ^μ_{z∼π_ref(·|s_t)}(log π_ref(z|s_t)/π_θ(z|s_t))`` (Thm 3.6),
summed over the states ``s_t`` the response visits.

Tail of the CVaR in D_SeqRR (static option ``tail``, default ``"upper"``): Eq. 21 read
literally averages the *lowest* μ mass, which makes D_SeqRR ≤ D_SeqKL; the paper's §4.1 remark
that the risk ratio is *slightly larger* than the KL for μ near 1 (μ ∈ {0.95, …, 0.99}) only
holds for the upper tail (the highest μ mass of log π_ref/π_θ, ≥ its mean = KL). The upper tail
is also the one that makes Thm 3.6 exact: in its proof (App. B.6, Eq. 41–42) the advantage
subtracts the Eq. 21 (lower-tail) CVaR of ``log π*/π_ref``, and ``−CVaR^low(Z) = CVaR^up(−Z)``,
so ``Σ_t Ã = β log π*(y)/π_ref(y) + β·D_SeqRR^up`` (``bandit-lab verify`` checks both tails).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from bandit_lab.errors import BanditError
from bandit_lab.losses import LossInputs, LossSpec, expect, log_ratios, pair_grid, register
from bandit_lab.tokens.risk import TAILS, cvar
from bandit_lab.tokens.tree import along_states, along_tokens


def _aux(inputs: LossInputs) -> dict:
    if inputs.aux is None or "logp_state" not in inputs.aux:
        raise BanditError("token-level losses need the token_tree parameterization (per-state log-probabilities)")
    return inputs.aux


def _per_response(aux: dict, per_state):
    """``Σ_{t} f(s_t)`` over the states each response visits: ``[X, S]`` → ``[X, K]``."""
    return along_states(per_state, aux)


def seq_kl(inputs: LossInputs):
    """``D_SeqKL(x, y; π_ref‖π_θ)`` for every response, ``[X, K]`` (Ra-DPO Fig. 1; Zeng et al. 2024)."""
    a = _aux(inputs)
    lr = jnp.asarray(a["ref_logp"])
    kl_state = jnp.sum(jnp.exp(lr) * (lr - a["logp_state"]), axis=-1)
    return _per_response(a, kl_state)


def seq_rr(inputs: LossInputs, mu, tail: str = "upper"):
    """``D_SeqRR(x, y; π_ref‖π_θ)`` (Ra-DPO Thm 3.6, Eq. 16) with Φ^μ the CVaR of Eq. 20–21 of
    ``log π_ref(z|s)/π_θ(z|s)`` under ``z ∼ π_ref(·|s)``, ``[X, K]``."""
    a = _aux(inputs)
    lr = jnp.asarray(a["ref_logp"])
    rr_state = cvar(lr - a["logp_state"], jnp.exp(lr), mu, tail)
    return _per_response(a, rr_state)


def _u(inputs: LossInputs, beta):
    hw, hl = log_ratios(inputs)
    return beta * (hw - hl)


def tdpo1(inputs: LossInputs, hp: dict) -> jax.Array:
    """TDPO1 (Zeng et al. 2024; as restated in Ra-DPO Fig. 1/Eq. 14–17 with Φ = E):
    ``−E_D log σ(u − δ)``, ``δ = β D_SeqKL(x, y_l) − β D_SeqKL(x, y_w)``."""
    b = hp["beta"]
    kw, kl = pair_grid(seq_kl(inputs))
    return expect(inputs.data, -jax.nn.log_sigmoid(_u(inputs, b) - (b * kl - b * kw)))


def tdpo2(inputs: LossInputs, hp: dict) -> jax.Array:
    """TDPO2 (Ra-DPO Fig. 1): ``−E_D log σ(u − α(β D_SeqKL(y_l) − sg(β D_SeqKL(y_w))))``;
    ``sg`` = ``jax.lax.stop_gradient`` (so the training gradient is not the gradient of the value)."""
    b = hp["beta"]
    kw, kl = pair_grid(seq_kl(inputs))
    delta2 = b * kl - jax.lax.stop_gradient(b * kw)
    return expect(inputs.data, -jax.nn.log_sigmoid(_u(inputs, b) - hp["alpha"] * delta2))


def radpo1(inputs: LossInputs, hp: dict, *, tail: str = "upper") -> jax.Array:
    """Ra-DPO1 (Ra-DPO Eq. 17): ``−E_D log σ(u − δ)``, ``δ = β D_SeqRR(y_l) − β D_SeqRR(y_w)``
    (Eq. 16), Φ^μ = CVaR at level ``μ = hp["mu"]`` (Eq. 20–21; tail: module docstring)."""
    _check_tail(tail)
    b = hp["beta"]
    rw, rl = pair_grid(seq_rr(inputs, hp["mu"], tail))
    return expect(inputs.data, -jax.nn.log_sigmoid(_u(inputs, b) - (b * rl - b * rw)))


def radpo2(inputs: LossInputs, hp: dict, *, tail: str = "upper") -> jax.Array:
    """Ra-DPO2 (Ra-DPO Eq. 19): ``−E_D log σ(u − α δ₂)``,
    ``δ₂ = β D_SeqRR(y_l) − sg(β D_SeqRR(y_w))``."""
    _check_tail(tail)
    b = hp["beta"]
    rw, rl = pair_grid(seq_rr(inputs, hp["mu"], tail))
    delta2 = b * rl - jax.lax.stop_gradient(b * rw)
    return expect(inputs.data, -jax.nn.log_sigmoid(_u(inputs, b) - hp["alpha"] * delta2))


def uedpo(inputs: LossInputs, hp: dict) -> jax.Array:
    """UE-DPO (UE-DPO supplement, Algorithm 1 line 15):
    ``−E_D log σ(β Σ_t log[π_θ(a_t^w|s_t)^{λ_w}/π_ref(a_t^w|s_t)] − β Σ_t log[π_θ(a_t^l|s_t)^{λ_l}/π_ref(a_t^l|s_t)])``,
    ``λ_w = 1 + α·I_w·σ(Normalize(u))``, ``λ_l = 1 − α·I_l·σ(Normalize(u))`` per token slot
    (lines 10, 13), ``α = hp["alpha"]``; masks and σ(Normalize(u)) come from the
    parameterization (fixed arrays, no gradient). λ ≡ 1 gives DPO (Eq. 29)."""
    a = _aux(inputs)
    b = hp["beta"]
    lp, lr = a["logp_state"], jnp.asarray(a["ref_logp"])
    lam_w = 1.0 + hp["alpha"] * a["ue_iw"] * a["ue_su"]
    lam_l = 1.0 - hp["alpha"] * a["ue_il"] * a["ue_su"]
    gw = along_tokens(lam_w * lp - lr, a)  # [X, K]
    gl = along_tokens(lam_l * lp - lr, a)
    return expect(inputs.data, -jax.nn.log_sigmoid(b * (gw[..., :, None] - gl[..., None, :])))


def _lengths(inputs: LossInputs, like):
    """``|y|`` per response broadcast like ``like`` ``[X, K]`` (1 without a token tree)."""
    if inputs.aux is None or "mask" not in inputs.aux:
        return jnp.ones_like(like)
    return jnp.broadcast_to(jnp.sum(jnp.where(inputs.aux["mask"], 1.0, 0.0), -1), like.shape).astype(like.dtype)


def sigmoid_norm(inputs: LossInputs, hp: dict) -> jax.Array:
    """Length-normalised DPO (TRL ``sigmoid_norm``): ``−E_D log σ(β(h_w/|y_w| − h_l/|y_l|))``,
    ``h`` the *sequence* log-ratio and ``|y|`` the number of tokens. Equal to DPO when all
    responses have the same length up to β → β/T; on single tokens it is DPO.

    Reference: TRL 1.16 ``DPOConfig(loss_type="sigmoid_norm")`` (the per-token average of the
    implicit reward, as its IPO loss and SimPO (Meng et al. 2024 Eq. 4) use)."""
    h = inputs.logp - inputs.logp_ref
    a = h / _lengths(inputs, h)
    aw, al = pair_grid(a)
    return expect(inputs.data, -jax.nn.log_sigmoid(hp["beta"] * (aw - al)))


def _prefix_logp(aux: dict, logp_state):
    """``C[x, k, d] = Σ_{t < d} log π(y_t|s_t)`` for response k, ``d = 0…T`` ``[X, K, T+1]``
    (a cumulative sum along the tree's index arrays)."""
    flat = logp_state.reshape(logp_state.shape[0], -1)
    g = jnp.where(aux["mask"], flat[:, aux["flat_index"]], 0.0)  # [X, K, T]
    return jnp.concatenate([jnp.zeros(g.shape[:2] + (1,), g.dtype), jnp.cumsum(g, -1)], -1)


def lddpo(inputs: LossInputs, hp: dict) -> jax.Array:
    """LD-DPO (TRL ``ld_alpha``): DPO on ``log π̃(y) = Σ_{t ≤ m} log π(y_t|s_t) + α·Σ_{t > m} log π(y_t|s_t)``,
    ``m = min(|y_w|, |y_l|)`` the pair's shared length, for the policy and the reference alike:
    tokens beyond the shorter response are down-weighted by α (α = 1 is DPO, α = 0 masks them).

    Reference: Liu et al. 2024, "Length Desensitization in Direct Preference Optimization"
    (LD-DPO), the decomposition of the likelihood into a public-length part and a verbose tail;
    TRL 1.16 ``DPOConfig(ld_alpha=α)`` (``shared_logps + ld_alpha * tail_logps``). Needs a token tree."""
    a = _aux(inputs)
    C = _prefix_logp(a, a["logp_state"])
    Cr = _prefix_logp(a, jnp.asarray(a["ref_logp"]))
    L = jnp.sum(jnp.asarray(a["mask"]), -1).astype(jnp.int32)  # [K] tokens per response
    m = jnp.minimum(L[:, None], L[None, :])  # [K, K]
    X, K, _ = C.shape
    al = hp["ld_alpha"]

    def ld(Cx):
        """``log π̃`` of the chosen (row) and rejected (column) response of every pair ``[X, K, K]``."""
        tot = jnp.take_along_axis(Cx, jnp.broadcast_to(L[None, :, None], (X, K, 1)), axis=-1)[..., 0]  # [X, K]
        shared = jnp.take_along_axis(Cx, jnp.broadcast_to(m[None], (X, K, K)), axis=-1)  # [X, k, k′] = C[x, k, m_kk′]
        full = shared + al * (tot[:, :, None] - shared)
        return full, jnp.swapaxes(full, 1, 2)  # (for y_w = row, y_l = column), (y_l's value at [x, w, l])

    pw, pl = ld(C)
    rw, rl = ld(Cr)
    hw, hl = pw - rw, pl - rl
    return expect(inputs.data, -jax.nn.log_sigmoid(hp["beta"] * (hw - hl)))


def _check_ld(hp, static):
    if not (0.0 <= hp["ld_alpha"] <= 1.0):
        raise BanditError(f"ld_alpha must be in [0, 1]; got {hp['ld_alpha']}")


def _check_tail(tail: str) -> None:
    if tail not in TAILS:
        raise BanditError(f"Ra-DPO CVaR tail must be one of {', '.join(TAILS)}; got {tail!r}")


for _spec in (
    LossSpec("tdpo1", tdpo1, {"beta": 1.0}, summary="TDPO1: DPO − β(SeqKL_l − SeqKL_w) (token trees)",
             citation="Ra-DPO Fig. 1 / Eq. 17 with Φ = E; Zeng et al. 2024"),
    LossSpec("tdpo2", tdpo2, {"beta": 1.0, "alpha": 0.5}, summary="TDPO2: stop-gradient on the chosen SeqKL, coefficient α",
             citation="Ra-DPO Fig. 1; Zeng et al. 2024"),
    LossSpec("radpo1", radpo1, {"beta": 1.0, "mu": 0.95}, {"tail": "upper"}, summary="Ra-DPO1: sequential risk ratio, nested CVaR_μ",
             citation="Ra-DPO Eq. 17, Thm 3.6, Eq. 20–21"),
    LossSpec("radpo2", radpo2, {"beta": 1.0, "mu": 0.95, "alpha": 0.5}, {"tail": "upper"},
             summary="Ra-DPO2: stop-gradient on the chosen SeqRR, coefficient α", citation="Ra-DPO Eq. 19"),
    LossSpec("uedpo", uedpo, {"beta": 1.0, "alpha": 0.5}, summary="UE-DPO: per-token exponents λ_w, λ_l",
             citation="UE-DPO supplement Algorithm 1"),
    LossSpec("sigmoid_norm", sigmoid_norm, {"beta": 1.0}, summary="length-normalised DPO: β(h_w/|y_w| − h_l/|y_l|)",
             citation="TRL sigmoid_norm; Meng et al. 2024 Eq. 4"),
    LossSpec("lddpo", lddpo, {"beta": 1.0, "ld_alpha": 0.5}, summary="LD-DPO: tokens past the shared length weighted by α (token trees)",
             citation="Liu et al. 2024 (LD-DPO); TRL ld_alpha", check=_check_ld),
):
    register(_spec)

TOKEN_LOSSES = ("tdpo1", "tdpo2", "radpo1", "radpo2", "uedpo", "lddpo")
STOP_GRADIENT = ("tdpo2", "radpo2")
