"""verl 0.9.1's and OpenRLHF 0.11.2's option names, verbatim, for the losses ``"verl"`` and
``"openrlhf"`` (:mod:`bandit_lab.losses.libraries`; issue 21).

``LossSpec.translate`` hooks: a ``loss_params`` dict written with the library's own names becomes
native hyperparameters and static options. Names may be given as leaves (``adv_estimator``,
``kl_loss_coef``), as dotted paths as the library writes them (``algorithm.adv_estimator``,
``actor_rollout_ref.actor.policy_loss.loss_mode``, ``algo.kl.estimator``) or as nested dicts
(a YAML config loaded as is). A dict that names any library field is read as a whole config: every
field it leaves out takes the library's default. Native names pass through (idempotent).

verl 0.9.1 fields and defaults (``verl/trainer/config/actor/actor.yaml``, ``algorithm.py``,
``rollout/rollout.yaml``): ``adv_estimator`` gae, ``norm_adv_by_std_in_grpo`` true,
``use_kl_in_reward`` false, ``kl_penalty`` kl, ``kl_ctrl.type`` fixed, ``kl_ctrl.kl_coef`` 0.001,
``n`` 1 (``rollout.n``; ``actor.rollout_n`` mirrors it), ``policy_loss.loss_mode`` vanilla,
``clip_ratio`` / ``clip_ratio_low`` / ``clip_ratio_high`` 0.2, ``clip_ratio_c`` 3.0,
``loss_agg_mode`` token-mean, ``loss_scale_factor`` null, ``entropy_coeff`` 0, ``use_kl_loss``
false, ``kl_loss_coef`` 0.001, ``kl_loss_type`` low_var_kl, ``ppo_epochs`` 1.

OpenRLHF 0.11.2 fields and defaults (``openrlhf/cli/train_ppo_ray.py``): ``algo.advantage.estimator``
gae, ``algo.advantage.no_std_norm`` false, ``algo.kl.use_loss`` false, ``algo.kl.estimator`` k1,
``algo.kl.init_coef`` 0.01, ``algo.kl.unbiased_gradient`` false, ``algo.kl.target`` null,
``rollout.n_samples_per_prompt`` 1, ``actor.eps_clip`` 0.2, ``actor.eps_clip_low_high`` null,
``actor.dual_clip`` null, ``actor.policy_loss_type`` ppo, ``actor.loss_agg_mode`` token-mean,
``actor.entropy_coef`` null, ``reward.clip_range`` [−10, 10], ``train.max_epochs`` 1.

``policy_loss.loss_mode`` geo_mean (GMPO) and sapo (``tau_pos`` 1.0, ``tau_neg`` 1.05) are exact
(GMPO refused with a KL loss or entropy bonus: its policy term is a per-micro-batch mean); clip_cov
(``policy_loss.clip_cov_ratio/lb/ub``: 0.0002, 1, 5) and kl_cov (``policy_loss.kl_cov_ratio`` in
(0, 1], 0.0002; ``policy_loss.ppo_kl_coef`` ≥ 0, 0.1 — ``verl/workers/config/actor.py``
``PolicyLossConfig``) through their population limits, at any ``ppo_epochs`` (later epochs
re-select from the current log-probs, as verl does);
``loss_agg_mode: token-sum`` scales the update by ``ppo_mini_batch_size``·``n`` (default 256·n), the
responses of one optimiser step (docs/onpolicy-verl.md).

``policy_loss.loss_mode`` dppo_tv / dppo_kl (DPPO-Binary: −A·sg(min(ρ, clip_ratio_c))·log π where the
token's TV |π − π_old| or binary KL stays within ``clip_ratio_low/high`` on the advantage's side) and
dro (``policy_loss.dro_beta`` > 0 required: −(A·log π − ½β_dro·(log π − log π_old)²)) are exact; on-policy
(ρ = 1) all three have vanilla's update.

``algorithm.rollout_correction`` with ``bypass_mode: true`` (or ``policy_loss.loss_mode: bypass_mode``) is
exact with π_rollout = π_old (a bandit has one exact policy): ``loss_type`` ppo_clip (vanilla on the tokens the
``rollout_rs`` options keep) or reinforce (−A·log π·sg(w), w the truncated — TIS — or IcePop IS weight when
``rollout_is`` is set); ``rollout_is_batch_normalize`` is refused (a per-micro-batch mean), and so is a
non-default correction without bypass (decoupled mode compares π_old with itself on a bandit).

Refused, naming the field: values not implemented exactly (verl ``gdpo``, the optimal
token baselines,
``kl_penalty: full``, an adaptive KL controller), fields that cannot matter on a bandit (γ, λ and the
other per-token / generation / system settings, with the reason), and unknown fields.
"""
from __future__ import annotations

from bandit_lab.errors import BanditError

VERL_VERSION = "0.9.1"
OPENRLHF_VERSION = "0.11.2"

VERL_DEFAULTS = {
    "adv_estimator": "gae", "norm_adv_by_std_in_grpo": True, "use_kl_in_reward": False, "kl_penalty": "kl",
    "kl_ctrl.type": "fixed", "kl_ctrl.kl_coef": 0.001, "n": 1, "policy_loss.loss_mode": "vanilla",
    "clip_ratio": 0.2, "clip_ratio_low": 0.2, "clip_ratio_high": 0.2, "clip_ratio_c": 3.0,
    "loss_agg_mode": "token-mean", "loss_scale_factor": None, "entropy_coeff": 0.0, "use_kl_loss": False,
    "kl_loss_coef": 0.001, "kl_loss_type": "low_var_kl", "ppo_epochs": 1, "tau_pos": 1.0, "tau_neg": 1.05,
    "ppo_mini_batch_size": 256, "policy_loss.clip_cov_ratio": 0.0002, "policy_loss.clip_cov_lb": 1.0,
    "policy_loss.clip_cov_ub": 5.0, "policy_loss.kl_cov_ratio": 0.0002, "policy_loss.ppo_kl_coef": 0.1,
    "policy_loss.dro_beta": None,
    # algorithm.rollout_correction (verl/trainer/config/_generated_ppo_trainer.yaml; RolloutCorrectionConfig)
    "rollout_correction.bypass_mode": False, "rollout_correction.loss_type": "ppo_clip",
    "rollout_correction.rollout_is": None, "rollout_correction.rollout_is_threshold": 2.0,
    "rollout_correction.rollout_is_batch_normalize": False, "rollout_correction.rollout_rs": None,
    "rollout_correction.rollout_rs_threshold": None,
}
_RC = "rollout_correction."
_RS_OPTIONS = ("token_k1", "token_k2", "token_k3", "seq_sum_k1", "seq_sum_k2", "seq_sum_k3", "seq_mean_k1", "seq_mean_k2",
               "seq_mean_k3", "seq_max_k2", "seq_max_k3")
OPENRLHF_DEFAULTS = {
    "algo.advantage.estimator": "gae", "algo.advantage.no_std_norm": False, "algo.kl.use_loss": False,
    "algo.kl.estimator": "k1", "algo.kl.init_coef": 0.01, "algo.kl.unbiased_gradient": False, "algo.kl.target": None,
    "rollout.n_samples_per_prompt": 1, "actor.eps_clip": 0.2, "actor.eps_clip_low_high": None, "actor.dual_clip": None,
    "actor.policy_loss_type": "ppo", "actor.loss_agg_mode": "token-mean", "actor.entropy_coef": None,
    "reward.clip_range": [-10.0, 10.0], "train.max_epochs": 1,
}

# where a verl leaf lives in a full trainer config (stripped before matching)
_VERL_PREFIXES = ("actor_rollout_ref.actor.", "actor_rollout_ref.rollout.", "actor_rollout_ref.", "algorithm.", "actor.", "rollout.")
_VERL_ALIASES = {"loss_mode": "policy_loss.loss_mode", "rollout_n": "n", "kl_coef": "kl_ctrl.kl_coef"}

_BANDIT = "one token per response on a bandit"
VERL_NO_EFFECT = {
    **{k: f"{_BANDIT}: GAE's γ and λ act across tokens" for k in ("gamma", "lam")},
    **{k: "generation happens through the bandit's exact policy, not a sampler" for k in (
        "temperature", "top_p", "top_k", "response_length", "prompt_length", "do_sample", "name", "mode")},
    **{k: "a batching / system setting; the expected update is the large-batch limit" for k in (
        "ppo_micro_batch_size", "ppo_micro_batch_size_per_gpu", "use_dynamic_bsz",
        "ppo_max_token_len_per_gpu", "shuffle", "data_loader_seed", "strategy", "use_torch_compile", "use_prefix_grouper",
        "calculate_entropy", "calculate_sum_pi_squared", "freeze_vision_tower", "checkpoint", "optim", "fsdp_config",
        "ulysses_sequence_parallel_size", "grad_clip", "profiler", "_target_", "policy_loss._target_")},
}
VERL_NOT_YET = {
    "clip_ratio_dual": None, "kl_ctrl.target_kl": None, "kl_ctrl.horizon": None,
}
_VERL_ADV = {  # adv_estimator → (advantage, post)
    "gae": ("critic", "whiten"), "grpo": ("group_std", "none"), "grpo_vectorized": ("group_std", "none"),
    "rloo": ("loo", "none"), "rloo_vectorized": ("loo", "none"), "opo": ("group_mean", "none"),
    "reinforce_plus_plus": ("none", "whiten"), "reinforce_plus_plus_baseline": ("group_mean", "whiten"),
    "remax": ("greedy", "none"), "gpg": ("group_mean", "gpg_alpha"), "grpo_passk": ("passk_std", "none"),
}
_VERL_ADV_NOT_YET = ("gdpo", "optimal_token_baseline", "tir_optimal_token_baseline")
_VERL_LOSS = {"vanilla": ("vanilla", "pm20"), "gspo": ("gspo", "max10"), "cispo": ("cispo", "pm20"), "gpg": ("gpg", "none"),
              "geo_mean": ("gmpo", "none"), "sapo": ("sapo", "pm20"), "clip_cov": ("vanilla", "none"),
              "kl_cov": ("ratio", "none"), "dppo_tv": ("dppo_tv", "pm20"), "dppo_kl": ("dppo_kl", "pm20"), "dro": ("dro", "none")}
_VERL_LOSS_NOT_YET: dict = {}
_KL = {"kl": "k1", "k1": "k1", "abs": "abs", "mse": "k2", "k2": "k2", "low_var_kl": "k3", "k3": "k3"}
_AGG = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm", "token-sum")
_SEQ_MEAN = 1.0 / (1.0 + 1e-8)  # agg_loss / GMPO: a per-sequence mean divides by (token count + 1e-8)

OPENRLHF_NO_EFFECT = {
    **{k: f"{_BANDIT}: GAE's γ and λ act across tokens" for k in ("algo.advantage.gamma", "algo.advantage.lambd")},
    **{k: "the adaptive KL controller's horizon: only with algo.kl.target" for k in ("algo.kl.horizon",)},
    **{k: "a batching / system setting; the expected update is the large-batch limit" for k in (
        "rollout.batch_size", "rollout.micro_batch_size", "train.micro_batch_size", "train.batch_size", "actor.adam.lr",
        "critic.adam.lr", "actor.max_norm", "actor.aux_loss_coef", "vllm.num_engines", "rollout.temperature",
        "rollout.top_p", "rollout.max_new_tokens", "seed", "train.seed")},
}
_OPENRLHF_ADV = {  # estimator → (advantage, post, minimum n)
    "gae": ("critic", "whiten_clamp", 1), "reinforce": ("none", "whiten_clamp", 1), "rloo": ("loo", "none", 2),
    "reinforce_baseline": ("group_mean", "whiten_clamp", 2), "group_norm": ("group_std", "none", 2),
    "dr_grpo": ("group_mean", "none", 2), "flash_reinforce": ("batch_mean", "none", 1),
}
_OPENRLHF_NOT_YET = {"algo.dynamic_filtering_enable": False, "algo.advantage.is_correction_level": "off",
                     "reward.overlong_buffer_len": None,
                     # these act only with the switch above them on (is_correction_level, overlong_buffer_len,
                     # dynamic_filtering_enable); at their defaults they are accepted, otherwise refused
                     "algo.advantage.is_correction_mode": "mask", "algo.advantage.is_correction_gating": "ratio",
                     "algo.advantage.is_correction_threshold": [0.5, 5.0], "reward.overlong_penalty_factor": 1.0,
                     "reward.stop_properly_penalty_coef": None, "algo.dynamic_filtering_range": [0.0, 1.0]}


def _flatten(d: dict, pre: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{pre}{k}"
        if isinstance(v, dict) and k not in ("sampling",):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _num(field: str, v, lo: float | None = None, strict: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise BanditError(f"{field} must be a number; got {v!r}")
    v = float(v)
    if lo is not None and (v < lo or (strict and v == lo)):
        raise BanditError(f"{field} must be {'>' if strict else '≥'} {lo}; got {v}")
    return v


def _bool(field: str, v) -> bool:
    if not isinstance(v, bool):
        raise BanditError(f"{field} must be true or false; got {v!r}")
    return v


def _int(field: str, v, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise BanditError(f"{field} must be an integer ≥ {lo}; got {v!r}")
    return v


def _verl_key(k: str) -> str:
    for p in _VERL_PREFIXES:
        if k.startswith(p):
            k = k[len(p):]
            break
    return _VERL_ALIASES.get(k, k)


def native(cfg: dict, lib: str) -> tuple[dict, dict]:
    """A *complete* library config (every field of the defaults) → ``(hp, static)`` natively."""
    return (_verl_native if lib == "verl" else _openrlhf_native)(dict(cfg))


def _kl_type(field: str, v) -> tuple[str, str]:
    """verl kl type → (estimator, gradient): a '+' suffix keeps the value, takes k2's gradient."""
    if not isinstance(v, str):
        raise BanditError(f"{field} must be a string; got {v!r}")
    if v == "full":
        raise BanditError(f"{field}='full': verl 0.9.1 raises NotImplementedError for it")
    base, plus = (v[:-1], True) if v.endswith("+") else (v, False)
    if base not in _KL:
        raise BanditError(f"{field} must be one of kl, k1, abs, mse, k2, low_var_kl, k3 (optionally with '+'); got {v!r}")
    return _KL[base], ("k2" if plus and _KL[base] != "k2" else "pathwise")


def _verl_native(c: dict) -> tuple[dict, dict]:
    hp, st = {}, {"kl_clamp": "verl", "kl_after_advantage": False}
    for f in ("kl_loss_coef", "kl_ctrl.kl_coef"):  # checked even where switched off: a typo is never ignored
        _num(f, c[f], 0.0)
    if c["loss_scale_factor"] is not None:
        _num("loss_scale_factor", c["loss_scale_factor"], 0.0, strict=True)
    est = c["adv_estimator"]
    if est in _VERL_ADV_NOT_YET:
        raise BanditError(f"adv_estimator={est!r}: not implemented exactly yet (available: {', '.join(_VERL_ADV)})")
    if est not in _VERL_ADV:
        raise BanditError(f"adv_estimator must be one of {', '.join(_VERL_ADV)} (verl {VERL_VERSION}); got {est!r}")
    adv, post = _VERL_ADV[est]
    if est == "grpo" and not _bool("norm_adv_by_std_in_grpo", c["norm_adv_by_std_in_grpo"]):
        adv = "group_mean"
    if est == "grpo_passk":
        if not _bool("norm_adv_by_std_in_grpo", c["norm_adv_by_std_in_grpo"]):
            adv = "passk"
        if c["n"] == 1:
            raise BanditError("n=1: adv_estimator='grpo_passk' needs a group of ≥ 2 (verl raises ValueError)")
    _bool("norm_adv_by_std_in_grpo", c["norm_adv_by_std_in_grpo"])
    st.update(advantage=adv, post=post, group_size=_int("n", c["n"], 1))
    hp["std_eps"] = 1e-6
    if _bool("use_kl_in_reward", c["use_kl_in_reward"]):
        if c["kl_ctrl.type"] != "fixed":
            raise BanditError(f"kl_ctrl.type={c['kl_ctrl.type']!r}: an adaptive KL controller changes β during training; "
                              "the stationary point needs a fixed β (kl_ctrl.type: fixed)")
        st["kl_reward"] = _kl_type("kl_penalty", c["kl_penalty"])[0]  # in the reward only the value counts (detached)
        hp["beta_reward"] = _num("kl_ctrl.kl_coef", c["kl_ctrl.kl_coef"], 0.0)
    else:
        _kl_type("kl_penalty", c["kl_penalty"])
        st["kl_reward"], hp["beta_reward"] = "none", 0.0
    mode = c["policy_loss.loss_mode"]
    if mode in _VERL_LOSS_NOT_YET:
        raise BanditError(f"policy_loss.loss_mode={mode!r}: {_VERL_LOSS_NOT_YET[mode]}")
    bypass = _rollout_correction(c, mode, hp, st)
    if bypass:
        mode = "bypass_mode"
    elif mode not in _VERL_LOSS:
        raise BanditError(f"policy_loss.loss_mode must be one of {', '.join(_VERL_LOSS)}, bypass_mode (verl {VERL_VERSION}); "
                          f"got {mode!r}")
    else:
        st["surrogate"], st["ratio_clamp"] = _VERL_LOSS[mode]
    eps = _num("clip_ratio", c["clip_ratio"], 0.0)
    hp["clip"] = eps if c["clip_ratio_low"] is None else _num("clip_ratio_low", c["clip_ratio_low"], 0.0)
    hp["clip_high"] = eps if c["clip_ratio_high"] is None else _num("clip_ratio_high", c["clip_ratio_high"], 0.0)
    hp["clip_c"] = _num("clip_ratio_c", c["clip_ratio_c"], 1.0, strict=True)
    agg = c["loss_agg_mode"]
    if agg not in _AGG:
        raise BanditError(f"loss_agg_mode must be one of {', '.join(_AGG)}; got {agg!r}")
    mb = _int("ppo_mini_batch_size", c["ppo_mini_batch_size"], 1)
    hp["loss_scale"] = _SEQ_MEAN if agg == "seq-mean-token-mean" else 1.0  # agg_loss: / (token count + 1e-8)
    if agg == "token-sum":
        # agg_loss 'token-sum': masked_sum·dp_size per micro-batch; the engine back-propagates every micro-batch
        # and DDP averages the ranks, so one optimiser step follows the *sum* over the global mini-batch of
        # ppo_mini_batch_size·n one-token responses (ray_trainer: ppo_mini_batch_size *= rollout.n)
        hp["loss_scale"] = float(mb * c["n"])
    hp["pg_scale"] = 1.0
    if agg == "seq-mean-token-sum-norm" and c["loss_scale_factor"] is not None:
        hp["loss_scale"] = 1.0 / _num("loss_scale_factor", c["loss_scale_factor"], 0.0, strict=True)
    hp["entropy_coeff"] = _num("entropy_coeff", c["entropy_coeff"], 0.0)
    hp["sapo_tau_pos"] = _num("tau_pos", c["tau_pos"], 0.0, strict=True)
    hp["sapo_tau_neg"] = _num("tau_neg", c["tau_neg"], 0.0, strict=True)
    if mode in ("sapo", "geo_mean"):
        # SAPO aggregates its policy term as seq-mean-token-mean whatever loss_agg_mode says; GMPO takes
        # torch.mean over sequences of (A·mask).sum/(len + 1e-8)·exp(Σ log ρ'/(len + 1e-8)) (its own 1e-8
        # in the exponent is kept in the surrogate); the KL loss and entropy follow loss_agg_mode
        hp["pg_scale"] = _SEQ_MEAN / hp["loss_scale"]
    if _bool("use_kl_loss", c["use_kl_loss"]):
        st["kl_loss"], st["kl_grad"] = _kl_type("kl_loss_type", c["kl_loss_type"])
        hp["beta"] = _num("kl_loss_coef", c["kl_loss_coef"], 0.0)
    else:
        _kl_type("kl_loss_type", c["kl_loss_type"])
        st["kl_loss"], st["kl_grad"], hp["beta"] = "none", "pathwise", 0.0
    if mode == "geo_mean" and (hp["beta"] > 0 or hp["entropy_coeff"] > 0):
        bad = "use_kl_loss" if hp["beta"] > 0 else "entropy_coeff"
        raise BanditError(f"{bad} with policy_loss.loss_mode='geo_mean': GMPO's policy term is a torch.mean over one "
                          "micro-batch (core_algos.compute_policy_loss_geo_mean ignores global_batch_info), summed over "
                          "the micro-batches of a step, while the KL loss and entropy are global-batch means, so their "
                          "relative weight is the number of micro-batches per GPU, which a bandit does not have; use "
                          "use_kl_in_reward for the KL")
    st["epochs"] = _int("ppo_epochs", c["ppo_epochs"], 1)
    hp["clip_cov_ratio"] = _num("policy_loss.clip_cov_ratio", c["policy_loss.clip_cov_ratio"], 0.0, strict=True)
    hp["clip_cov_lb"] = _num("policy_loss.clip_cov_lb", c["policy_loss.clip_cov_lb"])
    hp["clip_cov_ub"] = _num("policy_loss.clip_cov_ub", c["policy_loss.clip_cov_ub"])
    hp["kl_cov_ratio"] = _num("policy_loss.kl_cov_ratio", c["policy_loss.kl_cov_ratio"])
    if not 0.0 < hp["kl_cov_ratio"] <= 1.0:
        raise BanditError(f"policy_loss.kl_cov_ratio must be in (0, 1] (verl's torch.topk takes int(ratio·tokens) of the "
                          f"batch's tokens); got {hp['kl_cov_ratio']}")
    hp["ppo_kl_coef"] = _num("policy_loss.ppo_kl_coef", c["policy_loss.ppo_kl_coef"], 0.0)
    if hp["ppo_kl_coef"] == float("inf") or hp["ppo_kl_coef"] != hp["ppo_kl_coef"]:
        raise BanditError(f"policy_loss.ppo_kl_coef must be a finite number ≥ 0; got {hp['ppo_kl_coef']}")
    hp["dro_beta"] = 0.0
    if c["policy_loss.dro_beta"] is not None:  # verl reads it only for loss_mode dro; a typo is still refused
        hp["dro_beta"] = _num("policy_loss.dro_beta", c["policy_loss.dro_beta"], 0.0, strict=True)
    if mode == "dro" and c["policy_loss.dro_beta"] is None:
        raise BanditError("policy_loss.dro_beta must be a positive number with policy_loss.loss_mode='dro' (verl raises "
                          "ValueError when it is null)")
    if mode != "dro":
        hp["dro_beta"] = 0.0
    st["cov_select"] = "none"
    if mode == "clip_cov":
        # compute_policy_loss_clip_cov: max(pg1, pg2) with no dual clip and no log-ratio clamp, then the
        # covariance selection (libraries.clip_cov_batch; its population limit libraries._clip_cov_limit)
        st["cov_select"], hp["clip_c"] = "clip_cov", 0.0
    if mode == "kl_cov":
        # compute_policy_loss_kl_cov: −A·ρ (no PPO clip, no dual clip, no log-ratio clamp) plus
        # ppo_kl_coef·|log ρ| on the top kl_cov_ratio of the batch covariances (libraries.kl_cov_batch; its
        # population limit libraries._kl_cov_limit)
        st["cov_select"], hp["clip_c"] = "kl_cov", 0.0
    hp["reward_clip"] = 0.0  # no clip
    return hp, st


def _positive(field: str, text) -> float:
    try:
        v = float(text)
    except (TypeError, ValueError):
        raise BanditError(f"{field}: {text!r} is not a number") from None
    if not (v > 0 and v != float("inf")):
        raise BanditError(f"{field}: thresholds must be positive and finite; got {text!r}")
    return v


def _rollout_correction(c: dict, mode: str, hp: dict, st: dict) -> bool:
    """verl's ``algorithm.rollout_correction`` (``rollout_corr_helper.py``; the trainer's
    ``apply_bypass_mode`` sets ``old_log_prob = rollout_log_prob`` and ``loss_mode = bypass_mode``).
    On a bandit the rollout engine *is* the exact policy, so π_rollout = π_old: in bypass mode the
    rejection mask and IS weights compare the current policy with π_old (``bypass_weights``);
    without it (decoupled mode) they compare π_old with itself — weights 1, nothing rejected — and
    a non-default setting is refused with that reason. Fills ``hp``/``st``; True in bypass mode."""
    rc = {k[len(_RC):]: c[k] for k in VERL_DEFAULTS if k.startswith(_RC)}
    bypass = _bool(_RC + "bypass_mode", rc["bypass_mode"]) or mode == "bypass_mode"
    hp.update(is_lo=0.0, is_hi=2.0, rs_k1_lo=0.0, rs_k1_hi=0.0, rs_k2_hi=0.0, rs_k3_hi=0.0)
    st.update(bypass_loss="ppo_clip", bypass_is=False)
    if not bypass:
        changed = [k for k in rc if rc[k] != VERL_DEFAULTS[_RC + k]]
        if changed:
            raise BanditError(f"{_RC}{changed[0]}: decoupled rollout correction (bypass_mode false) weights and rejects by "
                              "π_old/π_rollout, and on a bandit the rollout engine is the exact policy (ratio 1: weights 1, "
                              "nothing rejected); set rollout_correction.bypass_mode: true or leave it out")
        return False
    if mode not in ("vanilla", "bypass_mode"):
        raise BanditError(f"policy_loss.loss_mode={mode!r} with rollout_correction.bypass_mode: verl's apply_bypass_mode "
                          "replaces the loss mode by bypass_mode (ppo_clip or reinforce); leave loss_mode at vanilla")
    lt = rc["loss_type"]
    if lt not in ("ppo_clip", "reinforce"):
        raise BanditError(f"{_RC}loss_type must be ppo_clip or reinforce; got {lt!r}")
    st.update(surrogate="bypass", ratio_clamp="pm20", bypass_loss=lt)
    if _bool(_RC + "rollout_is_batch_normalize", rc["rollout_is_batch_normalize"]):
        raise BanditError(f"{_RC}rollout_is_batch_normalize: true divides the IS weights by their mean over one micro-batch "
                          "inside the loss function, a finite-sample statistic whose limit depends on the micro-batch size, "
                          "which a bandit does not have")
    level, thr = rc["rollout_is"], rc["rollout_is_threshold"]
    if level not in (None, "token", "sequence"):
        raise BanditError(f"{_RC}rollout_is must be null, token or sequence; got {level!r}")
    if isinstance(thr, bool) or not isinstance(thr, (int, float, str)):
        raise BanditError(f"{_RC}rollout_is_threshold must be a number or 'lower_upper'; got {thr!r}")
    lo_s, hi_s = str(thr).strip().split("_", 1) if isinstance(thr, str) and "_" in thr else (None, thr)
    hp["is_hi"] = _positive(_RC + "rollout_is_threshold", hi_s)
    hp["is_lo"] = 0.0 if lo_s is None else _positive(_RC + "rollout_is_threshold", lo_s)
    if hp["is_lo"] > hp["is_hi"]:
        raise BanditError(f"{_RC}rollout_is_threshold: lower bound above the upper; got {thr!r}")
    st["bypass_is"] = level is not None  # token = sequence on one token; applied by loss_type reinforce only
    rs, rst = rc["rollout_rs"], rc["rollout_rs_threshold"]
    if rs is None:
        return True
    if not isinstance(rs, str) or not [o for o in rs.split(",") if o.strip()]:
        raise BanditError(f"{_RC}rollout_rs must be a comma-separated list of {', '.join(_RS_OPTIONS)}; got {rs!r}")
    opts = list(dict.fromkeys(o.strip() for o in rs.split(",") if o.strip()))
    bad = [o for o in opts if o not in _RS_OPTIONS]
    if bad:
        raise BanditError(f"{_RC}rollout_rs: {bad[0]!r} is not one of {', '.join(_RS_OPTIONS)}")
    if rst is None or isinstance(rst, bool) or not isinstance(rst, (int, float, str)):
        raise BanditError(f"{_RC}rollout_rs_threshold must be given with rollout_rs (a number or a comma list); got {rst!r}")
    specs = [str(rst)] if not isinstance(rst, str) else [p.strip() for p in rst.split(",") if p.strip()]
    if len(specs) not in (1, len(opts)):
        raise BanditError(f"{_RC}rollout_rs_threshold: one threshold or one per rollout_rs option ({len(opts)}); got {rst!r}")
    specs = specs * len(opts) if len(specs) == 1 else specs
    for o, spec in zip(opts, specs):  # one token: token_, seq_sum_, seq_mean_, seq_max_ statistics coincide; AND
        if o.endswith("k1"):
            lo_s, hi_s = spec.split("_", 1) if "_" in spec else (str(1.0 / _positive(_RC + "rollout_rs_threshold", spec)), spec)
            lo, hi = _positive(_RC + "rollout_rs_threshold", lo_s), _positive(_RC + "rollout_rs_threshold", hi_s)
            if lo > hi:
                raise BanditError(f"{_RC}rollout_rs_threshold for {o}: lower bound above the upper; got {spec!r}")
            hp["rs_k1_lo"] = max(hp["rs_k1_lo"], lo)
            hp["rs_k1_hi"] = hi if hp["rs_k1_hi"] == 0 else min(hp["rs_k1_hi"], hi)
        else:
            if "_" in spec:
                raise BanditError(f"{_RC}rollout_rs_threshold for {o}: a single upper bound (no '_'); got {spec!r}")
            key = "rs_k2_hi" if o.endswith("k2") else "rs_k3_hi"
            hi = _positive(_RC + "rollout_rs_threshold", spec)
            hp[key] = hi if hp[key] == 0 else min(hp[key], hi)
    return True


def bypass_on_policy(hp: dict, static: dict) -> float:
    """The factor verl's bypass mode puts on the policy term on-policy (log r = 0, r = 1;
    ``bandit_lab.losses.libraries.bypass_weights`` there): every rejection statistic is 0, kept unless
    the k1 window [lo, hi] excludes ratio 1; reinforce with ``rollout_is`` weighs by min(1, TIS bound),
    or by 1 inside an IcePop window holding 1 (0 outside)."""
    lo, hi = float(hp.get("rs_k1_lo", 0.0)), float(hp.get("rs_k1_hi", 0.0))
    keep = (lo == 0 or lo <= 1.0) and (hi == 0 or hi >= 1.0)
    if static.get("bypass_loss") != "reinforce" or not static.get("bypass_is", False):
        return float(keep)
    ilo, ihi = float(hp["is_lo"]), float(hp["is_hi"])
    w = (1.0 if ilo <= 1.0 <= ihi else 0.0) if ilo > 0 else min(1.0, ihi)
    return float(keep) * w


def _openrlhf_native(c: dict) -> tuple[dict, dict]:
    hp, st = {}, {"kl_clamp": "openrlhf", "kl_after_advantage": True}
    est = c["algo.advantage.estimator"]
    if est not in _OPENRLHF_ADV:
        raise BanditError(f"algo.advantage.estimator must be one of {', '.join(_OPENRLHF_ADV)} (OpenRLHF {OPENRLHF_VERSION}); "
                          f"got {est!r}")
    adv, post, nmin = _OPENRLHF_ADV[est]
    n = _int("rollout.n_samples_per_prompt", c["rollout.n_samples_per_prompt"], 1)
    if n < nmin:
        raise BanditError(f"rollout.n_samples_per_prompt={n}: algo.advantage.estimator={est!r} needs a group of ≥ {nmin} "
                          "(OpenRLHF divides by n − 1 or by the std of one sample, or the advantage is 0)")
    if _bool("algo.advantage.no_std_norm", c["algo.advantage.no_std_norm"]) and post == "whiten_clamp":
        post = "center"
    st.update(advantage=adv, post=post, group_size=n)
    hp["std_eps"] = 1e-9
    kl = c["algo.kl.estimator"]
    if kl not in ("k1", "k2", "k3"):
        raise BanditError(f"algo.kl.estimator must be one of k1, k2, k3; got {kl!r}")
    if c["algo.kl.target"] is not None:
        raise BanditError("algo.kl.target: an adaptive KL controller changes β during training; the stationary point "
                          "needs a fixed β (leave algo.kl.target null)")
    coef = _num("algo.kl.init_coef", c["algo.kl.init_coef"])
    coef = max(coef, 0.0)  # compute_reward: kl_coef <= 0 → 0
    unbiased = _bool("algo.kl.unbiased_gradient", c["algo.kl.unbiased_gradient"])
    if _bool("algo.kl.use_loss", c["algo.kl.use_loss"]):
        st.update(kl_reward="none", kl_loss=kl if coef > 0 else "none", kl_grad="k2_is" if unbiased else "pathwise")
        hp.update(beta=coef, beta_reward=0.0)
    else:
        st.update(kl_reward=kl if coef > 0 else "none", kl_loss="none", kl_grad="pathwise")
        hp.update(beta=0.0, beta_reward=coef)
    ptype = c["actor.policy_loss_type"]
    if ptype not in ("ppo", "gspo"):
        raise BanditError(f"actor.policy_loss_type must be ppo or gspo; got {ptype!r}")
    st["surrogate"], st["ratio_clamp"] = ("vanilla", "pm20") if ptype == "ppo" else ("gspo", "none")
    eps = _num("actor.eps_clip", c["actor.eps_clip"], 0.0)
    lh = c["actor.eps_clip_low_high"]
    if lh is None:
        hp["clip"] = hp["clip_high"] = eps
    else:
        if not isinstance(lh, (list, tuple)) or len(lh) != 2:
            raise BanditError(f"actor.eps_clip_low_high must be [low, high]; got {lh!r}")
        hp["clip"], hp["clip_high"] = (_num("actor.eps_clip_low_high", x, 0.0) for x in lh)
    dc = c["actor.dual_clip"]
    hp["clip_c"] = 0.0 if dc is None else _num("actor.dual_clip", dc, 1.0, strict=True)
    agg = c["actor.loss_agg_mode"]
    if agg not in ("token-mean", "seq-mean-token-mean"):
        raise BanditError(f"actor.loss_agg_mode must be token-mean or seq-mean-token-mean; got {agg!r}")
    hp["loss_scale"] = 1.0
    # models/loss.py aggregate_loss, per-sample mode (gspo forces it): / (token count + 1e-8); KL and entropy: token mean
    hp["pg_scale"] = 1.0 / (1.0 + 1e-8) if (ptype == "gspo" or agg == "seq-mean-token-mean") else 1.0
    ec = c["actor.entropy_coef"]
    hp["entropy_coeff"] = 0.0 if ec is None else _num("actor.entropy_coef", ec, 0.0)
    rc = c["reward.clip_range"]
    if rc is None:
        hp["reward_clip"] = 0.0
    else:
        if not isinstance(rc, (list, tuple)) or len(rc) != 2 or float(rc[0]) != -float(rc[1]):
            raise BanditError(f"reward.clip_range must be a symmetric [−c, c] here (got {rc!r}); asymmetric ranges are "
                              "not implemented yet")
        hp["reward_clip"] = _num("reward.clip_range", rc[1], 0.0, strict=True)
    st["epochs"] = _int("train.max_epochs", c["train.max_epochs"], 1)
    return hp, st


def _translate(params: dict, lib: str) -> dict:
    flat = _flatten(dict(params))
    defaults = VERL_DEFAULTS if lib == "verl" else OPENRLHF_DEFAULTS
    no_effect = VERL_NO_EFFECT if lib == "verl" else OPENRLHF_NO_EFFECT
    name = f"verl {VERL_VERSION}" if lib == "verl" else f"OpenRLHF {OPENRLHF_VERSION}"
    lib_cfg, rest = {}, {}
    for k, v in flat.items():
        key = _verl_key(k) if lib == "verl" else k
        if key in no_effect:
            raise BanditError(f"{k}: a {name} field that cannot matter on a bandit ({no_effect[key]}); remove it")
        if lib == "verl" and key in VERL_NOT_YET:
            raise BanditError(f"{k}: belongs to a verl loss mode that is not implemented exactly yet")
        if lib == "openrlhf" and key in _OPENRLHF_NOT_YET:
            if v == _OPENRLHF_NOT_YET[key]:
                continue
            raise BanditError(f"{k}={v!r}: not implemented exactly yet (leave it at {_OPENRLHF_NOT_YET[key]!r})")
        if key in defaults:
            lib_cfg[key] = v
        else:
            rest[k] = v
    if not lib_cfg:
        return rest  # native names only: the loss's own (= the library's) defaults
    hp, st = native({**defaults, **lib_cfg}, lib)
    return {**hp, **st, **rest}


def translate_verl(params: dict) -> dict:
    """verl 0.9.1 config names → native options of the ``verl`` loss (module docstring)."""
    return _translate(params, "verl")


def translate_openrlhf(params: dict) -> dict:
    """OpenRLHF 0.11.2 CLI names → native options of the ``openrlhf`` loss (module docstring)."""
    return _translate(params, "openrlhf")


# --------------------------------------------------------------------------- explain

def _strip_dashes(cfg: dict) -> dict:
    return {(k[2:] if isinstance(k, str) and k.startswith("--") else k): v for k, v in cfg.items()}


def _interpolation(v) -> bool:
    return isinstance(v, str) and "${" in v  # an OmegaConf interpolation verl resolves at run time


def read_verl(cfg: dict) -> tuple[str, dict]:
    """``bandit-lab explain verl CONFIG``: a verl trainer or actor config as verl writes it (the
    ``_generated_ppo_trainer.yaml`` layout, or the ``actor`` section alone, or dotted overrides) →
    ``("verl", loss_params)``: the fields that act on the update, everything else (optimiser,
    FSDP, checkpoint, batch sizes, interpolations such as ``rollout_n: ${oc.select:…}``) skipped."""
    out = {}
    for k, v in _flatten(_strip_dashes(dict(cfg))).items():
        key = _verl_key(k)
        if key in VERL_DEFAULTS and not _interpolation(v):
            out[key] = v
    return "verl", out


def read_openrlhf(cfg: dict) -> tuple[str, dict]:
    """``bandit-lab explain openrlhf CONFIG``: OpenRLHF's ``train_ppo_ray`` arguments (dotted names,
    with or without the leading ``--``, or nested) → ``("openrlhf", loss_params)``."""
    flat = _flatten(_strip_dashes(dict(cfg)))
    return "openrlhf", {k: v for k, v in flat.items() if k in OPENRLHF_DEFAULTS or k in _OPENRLHF_NOT_YET}


def describe(hp: dict, static: dict) -> tuple[str, str, float]:
    """``(objective, divergence, β of the Gibbs reference)`` of a verl/OpenRLHF expected update in
    words (single-token responses; the derivation is in :func:`bandit_lab.losses.libraries.oracle`)."""
    adv, post, G = static["advantage"], static["post"], int(static["group_size"])
    kr, kl, grad = static["kl_reward"], static["kl_loss"], static["kl_grad"]
    br = hp["beta_reward"] if kr != "none" else 0.0
    bl = hp["beta"] if kl != "none" else 0.0
    before = not static["kl_after_advantage"]
    if adv == "passk" and br == 0:
        obj = f"gradient of (1/G)·E_π[max of G rewards] with G = {G} (pass@k: the leave-one-out max baseline)"
    elif adv.startswith("passk"):
        obj = "not the gradient of a known objective (pass@k gap" + (" / group std)" if adv == "passk_std" else " of shaped rewards)")
    elif adv == "group_std" and G > 1:
        obj = "not the gradient of a known objective (group-std normalisation; Vojnovic & Yun 2025)"
    else:
        scale = f"((G−1)/G)·" if adv == "group_mean" and G > 1 else ""
        if br > 0 and before:
            obj = f"gradient of {scale}(E_π[r] − β_r·D_r)" + (f" with G = {G}" if scale else "")
        else:
            obj = f"gradient of {scale}E_π[r]" + (" − β_r·D_r" if br > 0 else "") + (f" with G = {G}" if scale else "")
        if post in ("whiten", "whiten_clamp"):
            obj += ", divided by the batch std of the advantage (whitening)" + (
                ": the std rescales the loss-side terms, not a fixed objective" if bl > 0 or hp["entropy_coeff"] > 0 else "")
        elif post == "gpg_alpha":
            obj += ", times α = 1/P(score ≠ 0) (GPG)"
    if bl > 0:
        obj += " − β·D_loss"
    if hp["entropy_coeff"] > 0:
        obj += f" + {hp['entropy_coeff']:g}·H(π)"
    cov = static.get("cov_select", "none")
    if cov == "clip_cov":
        obj += (f"; clip_cov zeroes the advantage of a fraction min(1, {hp['clip_cov_ratio']:g}/P(eligible)) of the tokens "
                f"whose covariance lies in ({hp['clip_cov_lb']:g}, {hp['clip_cov_ub']:g}) — a field, not a gradient, where "
                "it acts")
    elif cov == "kl_cov":
        obj += (f"; kl_cov's {hp['ppo_kl_coef']:g}·|log ρ| on the top {hp['kl_cov_ratio']:g} of the covariances adds "
                "nothing on-policy (ρ = 1, torch's d|x|/dx = 0 at 0)")
    if static.get("surrogate") == "bypass":
        m = bypass_on_policy(hp, static)
        obj += (f"; bypass_mode ({static['bypass_loss']}, π_rollout = π_old on a bandit): on-policy its rejection mask and "
                f"IS weight put {m:g} on the policy term" + (" (they act off-policy, ppo_epochs > 1)" if m == 1 else ""))
    divs = []
    if br > 0:
        divs.append({"k1": "D_r = KL(π‖π_ref) (k1 in the reward)",
                     "k3": "D_r: k3 in the reward, E = KL(π‖π_ref) − KL(π_ref‖π) (not a divergence)",
                     "k2": "D_r: k2 in the reward, a non-convex f-functional",
                     "abs": "D_r: |log π/π_ref| in the reward, no known divergence"}[kr] + f", β_r = {br:g}")
    if bl > 0:
        if grad != "pathwise" or kl == "k2":
            d = "D_loss = KL(π‖π_ref)" + (" (straight-through: k2's gradient)" if grad == "k2" else
                                          " (unbiased_gradient: w·k2's gradient)" if grad == "k2_is" else " (k2)")
        elif kl == "k3":
            d = "D_loss = KL(π_ref‖π) (k3 differentiated: E_π[∇k3] = ∇KL(π_ref‖π); clamped at 10, no force where π_ref/π ≳ 12.9)"
        elif kl == "k1":
            d = "none (k1 in the loss differentiated: E_π[∇ log π/π_ref] = 0)"
        else:
            d = "D_loss: |log π/π_ref| differentiated, E_π[sign(h)∇log π], no known divergence"
        divs.append(d + f", β = {bl:g}")
    div = "; ".join(divs) if divs else "none (no KL penalty)"
    return obj, div, (bl if bl > 0 else br)
