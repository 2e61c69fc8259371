"""On-policy distillation as on-policy losses: TRL 1.16's ``DistillationTrainer`` (``"distillation"``)
and its experimental ``GKDTrainer`` (``"gkd"``), with exact expected updates on bandits and token trees.

Source (TRL 1.16.0): ``trl/trainer/distillation_config.py`` / ``distillation_trainer.py``
(``_compute_loss`` → ``_chunked_divergence_loss`` → ``trl/kernels/chunked_divergence.py``
``ChunkedDivergenceFunction``), ``trl/experimental/gkd/gkd_config.py`` / ``gkd_trainer.py``
(``GKDTrainer.generalized_jsd_loss``, ``compute_loss``, ``training_step``); Agarwal et al. 2024,
"On-Policy Distillation of Language Models" (GKD), Eq. (1) and Algorithm 1.

The loss of one step, as TRL computes it: at every completion position (a token-tree *state* s on
the way to the sampled response; on a bandit the prompt itself) the generalised JSD between the
student's and the teacher's full next-token distributions,

    D_β(p_s, p_t) = KL(p_t‖p_s)                              β = 0 (forward KL)
                  = KL(p_s‖p_t)                              β = 1 (reverse KL)
                  = β·KL(p_t‖m) + (1−β)·KL(p_s‖m),  m = (1−β)p_s + βp_t   otherwise

(``F.kl_div(a, b, log_target=True) = KL(b‖a)``; the mixture weights 1−β on the *student*, as in
both TRL implementations). β = 0 and β = 1 are TRL's special branches, the limits of D_β/β and
D_β/(1−β): D_β itself → 0 at both ends. Summed over the batch's positions and divided by its
number of tokens (``num_items_in_batch``): in exact expectation (large batch)
``L = Σ_x ρ(x) Σ_s w(x, s)·D_β(x, s) / Σ_x ρ(x) Σ_s w(x, s)`` with w(x, s) = P(the sampled
completion passes through s), detached.

- ``distillation`` (``DistillationConfig``: ``beta`` = 1.0, ``temperature`` = 1.0): always
  on-policy; completions sampled from the student at ``temperature`` (HF generation divides the
  logits of every step by it), and the divergence is taken between ``softmax(z/τ)`` of the
  student and of the teacher (the kernel's ``inv_t``).
- ``gkd`` (``GKDConfig``: ``beta`` = 0.5, ``temperature`` = 0.9, ``lmbda`` = 0.5, ``seq_kd`` =
  False): each step is on-policy with probability ``lmbda`` (student samples at ``temperature``),
  else the batch's own completions — the teacher's samples at ``temperature`` when ``seq_kd``, the
  dataset's otherwise. ``compute_loss`` calls ``generalized_jsd_loss`` *without* a temperature,
  so GKD's temperature shapes the sampling only; the loss compares the untempered distributions.
  Each branch divides by its own batch's tokens: L = λ·L_on + (1−λ)·L_off.

The teacher is given in the spec: ``loss_params.teacher`` (probabilities over the K responses,
``[K]`` or ``[X, K]``, every entry > 0) or ``teacher_logits`` (any finite reals); on a token tree it
is the sequence distribution, whose per-state conditionals (the unique autoregressive
factorisation, :meth:`bandit_lab.tokens.tree.TokenTree.conditionals`) are the teacher's next-token
distributions.

**Stationary point** (derived in docs/onpolicy-libraries.md, checked in tests/test_distillation.py):
per state, with p = softmax(z/τ) and g_i = ∂D_β/∂p_i, ∂D_β/∂z = (1/τ)·p ⊙ (g − ⟨p, g⟩):
g = −p_t/p_s (β = 0: ∂D/∂z = (p_s − p_t)/τ), g = log(p_s/p_t) + 1 (β = 1),
g = (1−β)·log(p_s/m) (0 < β < 1; the terms through m cancel); each
vanishes iff p_s = p_t. A state's logits enter only its own term and w > 0 at every state (the
student's softmax is positive), so with a full parameterisation (softmax bandit, per-state token
logits) the unique zero of the expected update is **student = teacher** — π_θ(·|s) = π_t(·|s) at
every state, hence at the sequence level — for every β ∈ [0, 1], τ > 0, λ and seq_kd: softmax(z/τ)
= softmax(z_t/τ) ⇔ z = z_t + c. The student then *samples* the per-step tempered teacher
softmax(z_t/τ). The Jacobian there is w(s)·τ⁻²·c_β·(diag p − ppᵀ) per state (the state's own
dependence on θ multiplies ∇D = 0): symmetric, positive definite off the gauge — attracting.
What is not exact in closed form: a restricted student (``loglinear`` features), where β, τ and
the visitation law w (λ, seq_kd) all move the point; the stationary solver still finds it.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from bandit_lab.core import draws
from bandit_lab.errors import BanditError
from bandit_lab.losses.base import LossInputs, LossSpec, register
from bandit_lab.tokens.tree import to_slots

# TRL 1.16.0 defaults, read from dataclasses.fields (tests/test_distillation.py checks them against
# tests/data/trl_distillation_reference.json, which the generator reads from TRL itself)
DISTILLATION_DEFAULTS = {"beta": 1.0, "temperature": 1.0}
GKD_DEFAULTS = {"beta": 0.5, "temperature": 0.9, "lmbda": 0.5, "seq_kd": False}
TRAINERS = ("distillation", "gkd")


# --------------------------------------------------------------------------- the divergence

def generalized_jsd(ls, lt, beta):
    """TRL's per-position divergence of log-probabilities ``ls`` (student) and ``lt`` (teacher)
    over the last axis (module docstring; ``GKDTrainer.generalized_jsd_loss``,
    ``ChunkedDivergenceFunction``): forward KL(p_t‖p_s) at β = 0, reverse KL(p_s‖p_t) at β = 1,
    the generalised JSD with m = (1−β)p_s + βp_t between."""
    ps, pt = jnp.exp(ls), jnp.exp(lt)
    fwd = jnp.sum(pt * (lt - ls), -1)
    rev = jnp.sum(ps * (ls - lt), -1)
    b = jnp.clip(beta, 1e-300, 1.0 - 1e-16)  # the branch is selected below; keeps its gradient finite at the ends
    lm = jnp.logaddexp(ls + jnp.log1p(-b), lt + jnp.log(b))
    jsd = b * jnp.sum(pt * (lt - lm), -1) + (1.0 - b) * jnp.sum(ps * (ls - lm), -1)
    return jnp.where(beta == 0, fwd, jnp.where(beta == 1, rev, jsd))


# --------------------------------------------------------------------------- the teacher

def _teacher_table(static) -> np.ndarray:
    t, tl = static.get("teacher"), static.get("teacher_logits")
    return np.asarray(t if t is not None else tl, dtype=np.float64)


def teacher_logp(static, shape) -> np.ndarray:
    """The teacher's normalised log-probabilities over the responses, ``[X, K]`` (numpy, float64)."""
    X, K = shape
    a = _teacher_table(static)
    name = "teacher" if static.get("teacher") is not None else "teacher_logits"
    if a.shape == (K,):
        a = np.broadcast_to(a, (X, K))
    if a.shape != (X, K):
        raise BanditError(f"{name} must have shape ({K},) or ({X}, {K}) (one entry per response); got {a.shape}")
    if name == "teacher":
        return np.log(a / a.sum(-1, keepdims=True))
    m = a.max(-1, keepdims=True)
    return a - m - np.log(np.exp(a - m).sum(-1, keepdims=True))


def teacher_policy(problem, static) -> np.ndarray:
    return np.exp(teacher_logp(static, np.shape(problem.pi_ref)))


def _teacher_state(lt_resp, path):
    """Per-state teacher log-probabilities ``[X, S, V]`` of a sequence distribution on a tree
    (P(prefix·a)/P(prefix); every slot of a state is a continuation)."""
    X = lt_resp.shape[0]
    n = path["ref_logp"][0].size
    V = path["ref_logp"].shape[-1]
    mass = to_slots(jnp.exp(lt_resp), path, n).reshape(X, -1, V)
    return jnp.log(mass) - jnp.log(jnp.sum(mass, -1, keepdims=True))


# --------------------------------------------------------------------------- views and state

def _views(inputs_or_logp, aux):
    """``(student per-state log-probs [X, S, V], tree index arrays or None)``; a bandit is one state."""
    if aux is not None and "logp_state" in aux:
        return aux["logp_state"], aux
    return inputs_or_logp[:, None, :], None


def _visits(q_resp, path, X):
    """P(a completion drawn from ``q_resp`` [X, K] passes through each state): ``[X, S]``."""
    if path is None:
        return jnp.ones((X, 1), q_resp.dtype)
    n = path["ref_logp"][0].size
    V = path["ref_logp"].shape[-1]
    return jnp.sum(to_slots(q_resp, path, n).reshape(X, -1, V), -1)


def _seq_tempered(lstate, path, tau):
    """Sequence log-probabilities of per-step sampling at temperature τ (HF generation):
    Σ_t log softmax(z(s_t)/τ)[a_t]."""
    lt = jax.nn.log_softmax(lstate / tau, -1)
    if path is None:
        return lt[:, 0, :]
    from bandit_lab.tokens.tree import along_tokens

    return along_tokens(lt.reshape(lt.shape[0], -1), path)


def _draw(key, lq, N):
    X, K = lq.shape
    y = draws.categorical(key, lq, (N, X))
    return jnp.sum(jax.nn.one_hot(y, K, dtype=lq.dtype), 0) / N


def state_init(objective, params, hp, key, consts):
    """The detached per-step state: which positions the batch scores (visit weights of the on-policy
    and off-policy branches) and the branch weights (λ, 1 − λ) — exact when ``key`` is None."""
    from bandit_lab.losses.onpolicy import _param_views

    st = objective.static
    c = objective.consts() if consts is None else consts
    gkd = objective.loss.name == "gkd"
    logp, _, _, path = _param_views(objective, params, c)
    X, K = logp.shape
    lstate, _ = _views(logp, path)
    tau = hp["temperature"]
    N = 0 if key is None or st.get("sampling", "exact") == "exact" else int(st["sampling"])
    lam = hp.get("lmbda", 1.0) if gkd else 1.0
    k_on, k_off, k_branch = jax.random.split(key, 3) if N else (None, None, None)
    l_on = _seq_tempered(lstate, path, tau)
    q_on = jnp.exp(l_on) if not N else _draw(k_on, l_on, N)
    out = {"w_on": _visits(q_on, path, X)}
    if gkd:
        if st.get("seq_kd", False):  # the teacher's samples at the generation temperature
            lt = jnp.asarray(teacher_logp(st, (X, K)))
            lt_state = lt[:, None, :] if path is None else _teacher_state(lt, path)
            l_off = _seq_tempered(lt_state, path, tau)
            q_off = jnp.exp(l_off) if not N else _draw(k_off, l_off, N)
            out["w_off"] = _visits(q_off, path, X)
        elif path is None:  # the dataset's completion: on a bandit its only position is the prompt
            out["w_off"] = jnp.ones((X, 1), logp.dtype)
        else:  # a tree: the dataset's completions are not part of the problem — only lmbda = 1 is exact
            if float(objective.hp.get("lmbda", 1.0)) != 1.0:  # the objective's own (concrete) value
                raise BanditError("lmbda < 1 without seq_kd scores the dataset's completions, which a token-tree problem "
                                  "does not hold; set lmbda=1 or seq_kd=true")
            out["w_off"] = jnp.zeros_like(out["w_on"])
            lam = 1.0  # (a sweep over lmbda on a tree needs seq_kd=true)
        if N:  # TRL GKDTrainer.training_step: `random.random() <= self.lmbda` picks the whole batch's branch
            on = (jax.random.uniform(k_branch, ()) <= lam).astype(logp.dtype)
            out["lam"] = jnp.stack([on, 1.0 - on])
        else:
            out["lam"] = jnp.stack([jnp.asarray(lam, logp.dtype), 1.0 - jnp.asarray(lam, logp.dtype)])
    return out


# --------------------------------------------------------------------------- the loss

def distillation_loss(inputs: LossInputs, hp: dict, *, trainer: str = "distillation", **static) -> jax.Array:
    """The surrogate of one step given its detached state (module docstring)."""
    st = inputs.state
    if not st:
        raise BanditError(f"{trainer} needs its per-step state (build the objective with make_objective)")
    lstate, path = _views(inputs.logp, inputs.aux)
    X, K = inputs.logp.shape
    lt = jnp.asarray(teacher_logp(static, (X, K)))
    lt_state = lt[:, None, :] if path is None else _teacher_state(lt, path)
    tau = hp["temperature"] if trainer == "distillation" else 1.0  # GKD: the loss is untempered
    ls = jax.nn.log_softmax(lstate / tau, -1)
    lts = jax.nn.log_softmax(lt_state / tau, -1)
    D = generalized_jsd(ls, lts, hp["beta"])  # [X, S]
    cw = inputs.context_weight[:, None]

    def branch(w):
        tokens = jnp.sum(cw * w)
        return jnp.sum(cw * w * D) / jnp.where(tokens > 0, tokens, 1.0)

    if trainer == "gkd":
        return st["lam"][0] * branch(st["w_on"]) + st["lam"][1] * branch(st["w_off"])
    return branch(st["w_on"])


# --------------------------------------------------------------------------- options, registry

def _check(hp: dict, static: dict) -> None:
    from bandit_lab.losses.onpolicy import normalise_sampling

    static["sampling"] = normalise_sampling(static.get("sampling"))
    b = hp["beta"]
    if not 0.0 <= b <= 1.0:
        raise BanditError(f"beta must be in [0, 1] (TRL: 0 forward KL, 0.5 JSD, 1 reverse KL); got {b}")
    if not hp["temperature"] > 0:
        raise BanditError(f"temperature must be > 0; got {hp['temperature']}")
    if "lmbda" in hp and not 0.0 <= hp["lmbda"] <= 1.0:
        raise BanditError(f"lmbda must be in [0, 1] (the fraction of on-policy student batches); got {hp['lmbda']}")
    if "seq_kd" in static and not isinstance(static["seq_kd"], bool):
        raise BanditError(f"seq_kd must be true or false; got {static['seq_kd']!r}")
    t, tl = static.get("teacher"), static.get("teacher_logits")
    if (t is None) == (tl is None):
        raise BanditError("teacher: give the teacher policy as teacher (probabilities over the responses, [K] or [X, K]) "
                          "or teacher_logits (reals), exactly one")
    name = "teacher" if t is not None else "teacher_logits"
    try:
        a = np.asarray(t if t is not None else tl, dtype=np.float64)
    except (TypeError, ValueError):
        raise BanditError(f"{name} must be a list (or list of lists) of numbers; got {t if t is not None else tl!r}") from None
    if a.ndim not in (1, 2) or a.size == 0 or not np.all(np.isfinite(a)):
        raise BanditError(f"{name} must be a finite [K] or [X, K] array; got shape {a.shape}")
    if name == "teacher":
        if not np.all(a > 0):
            raise BanditError("teacher: every probability must be > 0 (a zero makes the reverse KL infinite; give "
                              "teacher_logits for a sharp teacher)")
        if not np.allclose(a.sum(-1), 1.0, rtol=0, atol=1e-6):
            raise BanditError(f"teacher: each row must sum to 1 (within 1e-6); got sums {np.round(a.sum(-1), 9).tolist()}")
    static[name] = tuple(map(tuple, a)) if a.ndim == 2 else tuple(a.tolist())  # hashable: a static option


def _exact(objective, hp, init=None):
    from bandit_lab.onpolicy.stationary import solve

    return solve(objective, hp, init).result


def _oracle(problem, hp, static):
    return teacher_policy(problem, static), ("the teacher (every β, τ, λ: each state's D_β vanishes only at p_student = "
                                             "p_teacher; full softmax / per-state parameterisation)")


def _translator(trainer: str):
    def translate(params: dict) -> dict:
        from bandit_lab.onpolicy.trl import translate_distillation

        return translate_distillation(params, trainer)
    return translate


def _spec(name, defaults, static, summary, citation):
    return LossSpec(name, functools.partial(distillation_loss, trainer=name), defaults,
                    {"sampling": "exact", "teacher": None, "teacher_logits": None, **static}, kind="onpolicy",
                    summary=summary, citation=citation, check=_check, exact=_exact, state_init=state_init,
                    oracle=_oracle, translate=_translator(name), beta_zero=True)


register(_spec("distillation", dict(DISTILLATION_DEFAULTS), {},
               "on-policy distillation (TRL DistillationTrainer): generalised JSD_β to a teacher at temperature τ "
               "on the student's own samples (β 0 forward KL, 0.5 JSD, 1 reverse KL)",
               "Agarwal et al. 2024 (GKD) Eq. 1; TRL 1.16 DistillationTrainer"))
register(_spec("gkd", {k: v for k, v in GKD_DEFAULTS.items() if k != "seq_kd"}, {"seq_kd": False},
               "GKD (TRL experimental GKDTrainer): JSD_β to a teacher on student samples w.p. lmbda, else dataset or "
               "teacher (seq_kd) samples; temperature shapes the sampling only",
               "Agarwal et al. 2024 (GKD) Eq. 1, Alg. 1; TRL 1.16 experimental GKDTrainer"))
