"""TRL 1.16's option names, verbatim, for the on-policy losses ``grpo`` and ``rloo``.

``LossSpec.translate`` hooks (:mod:`bandit_lab.losses.base`): a ``loss_params`` dict written with
TRL's own ``GRPOConfig`` / ``RLOOConfig`` field names (TRL 1.16.0, ``trl/trainer/grpo_config.py``,
``rloo_config.py``; loss in ``grpo_trainer.py`` ``_compute_loss``) becomes bandit-lab's native
hyperparameters and static options (:mod:`bandit_lab.losses.onpolicy`). Native names pass through.

A dict that names any TRL-only field (anything but ``beta``) is read as a whole TRL config: every
field it leaves out takes TRL 1.16's default (so ``{"loss_type": "dapo", "beta": 0.04}`` carries
TRL's ``use_bias_correction_kl=True`` and ``num_generations=8``). A dict of native names only (or
``beta`` alone) keeps bandit-lab's native defaults, so existing specs are unchanged.

Every field name, allowed value and default below was read from TRL 1.16.0's code
(``dataclasses.fields(GRPOConfig)``; ``GRPOTrainer.__init__``; ``GRPOTrainer._compute_loss``;
the advantage block of ``GRPOTrainer._generate_and_score_completions``; ``RLOOTrainer`` likewise)
and the loss is checked against TRL's own code in ``tests/test_trl_onpolicy_conformance.py``.

Translated (exact in bandit-lab's native implementation):

- ``num_generations`` → ``group_size``; ``num_iterations`` → ``epochs``; ``beta`` → ``beta``;
- ``epsilon`` → ``clip``; ``epsilon_high`` → ``clip_high`` (``None`` means ``epsilon``, TRL's
  ``GRPOTrainer.__init__``); for ``cispo`` ``epsilon_high`` is the absolute cap of the detached
  ratio, so TRL's default (``None`` → 0.2) scales the policy gradient by 0.2 on-policy (TRL's docs
  recommend 5.0);
- ``delta`` → ``delta`` (INTELLECT-2's two-sided clip: ρ capped at δ before the min; loss types
  with the clip surrogate only — TRL ignores it for cispo/sapo/vespo, so it is refused there);
- ``importance_sampling_level`` token → ``ratio_level="token"``, sequence → ``"geometric"``
  (GSPO: exp of the *mean* token log-ratio of a completion; on a bandit the same as token);
- ``scale_rewards`` group (``True``) → ``normalize="group_std"`` (ddof 1, ε = 1e-4), none
  (``False``) → ``"group_mean"``, batch → ``"group_std"`` when TRL's generation batch holds one
  prompt's group (TRL's default geometry: 8 = per_device_train_batch_size · steps_per_generation =
  num_generations; nanstd over that batch *is* the group's std), refused otherwise;
- ``loss_type`` → ``surrogate`` × ``length_norm``: grpo (clip, sequence), bnpo/dapo (clip, token),
  dr_grpo (clip, constant), luspo (clip, sum), cispo (−sg(min(ρ, ε_high))·A·log π, token),
  sapo (−(4/τ)σ(τ(ρ−1))·A with τ = ``sapo_temperature_pos``/``_neg`` by the sign of A, sequence),
  vespo (−sg(φ(w))·A·log π with φ(w) = e^{λ+k log w−λw}, w the product ratio of the completion,
  ``vespo_k_pos``/``vespo_lambda_pos``/``_neg``, token). On-policy (ρ = 1) every surrogate but
  cispo's has the gradient of grpo's (φ(1) = 1, ∂/∂ρ of (4/τ)σ(τ(ρ−1)) at 1 is 1), so their
  stationary points are those of the matching clip loss type; cispo's is at β/min(1, ε_high);
- ``use_bias_correction_kl`` → ``kl_bias_correction``: k3 in the loss times the differentiable
  importance ratio (``per_token_kl * coef_1``), whose expected gradient is ∇KL(π‖π_ref). With it,
  dr_grpo + ``scale_rewards="none"`` is Gibbs at β·G/(G−1) (:func:`bandit_lab.onpolicy.closed_forms`).

RLOO (``RLOOConfig``): ``normalize_advantages`` → ``batch_whiten`` (RLOOTrainer: ``(A − A.mean())/
(A.std() + 1e-4)`` over the whole batch; exact in the large-batch limit; the stationary point stays
Gibbs at β, tests/test_audit_rows.py); ``reward_clip_range`` → ``reward_clip``.

``entropy_coef`` → ``entropy_coef`` + ``entropy_bonus``: loss − coef·(mean token entropy), on a
bandit −coef·H(π(·|x)) (a token tree is refused).

Refused, with the reason, rather than silently approximated: fields that change the update but are
not implemented exactly (adaptive entropy, entropy masking, temperature/top-p/top-k ≠ neutral, a moving
reference, off-policy masking, ``normalize_then_sum``) unless they hold their neutral value; and
every field that cannot matter on a bandit (generation backends, vLLM, logging, model loading).
An unknown field falls through to the loss's own one-line "has no parameter" message.
"""

from __future__ import annotations

from bandit_lab.errors import BanditError

# TRL 1.16.0 defaults of the fields that affect the update, read from the code (``dataclasses.fields``
# of trl/trainer/grpo_config.py GRPOConfig and rloo_config.py RLOOConfig; epsilon_high=None means
# epsilon: GRPOTrainer.__init__ ``self.epsilon_high = args.epsilon_high if … else args.epsilon``)
GRPO_DEFAULTS = {"loss_type": "dapo", "beta": 0.0, "num_generations": 8, "epsilon": 0.2, "epsilon_high": None,
                 "delta": None, "scale_rewards": "group", "importance_sampling_level": "token",
                 "num_iterations": 1, "use_bias_correction_kl": True,
                 "sapo_temperature_pos": 1.0, "sapo_temperature_neg": 1.05,
                 "vespo_k_pos": 2.0, "vespo_lambda_pos": 3.0, "vespo_k_neg": 3.0, "vespo_lambda_neg": 2.0,
                 "entropy_coef": 0.0}
RLOO_DEFAULTS = {"beta": 0.05, "num_generations": 2, "epsilon": 0.2, "epsilon_high": None,
                 "num_iterations": 1, "normalize_advantages": False, "reward_clip_range": None}

LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo")
# GRPOTrainer._compute_loss: the per-token surrogate of each loss_type and its aggregation
# (grpo/sapo: mean over a completion's tokens then over completions → "sequence"; bnpo/dapo/cispo/
# vespo: sum over the batch's tokens / token count → "token" (dapo's num_items_in_batch and bnpo's
# local count agree in exact expectation); dr_grpo: / (B·max_completion_length) → "constant";
# luspo: sum over a completion's tokens, mean over completions → "sum")
_LOSS_TYPE = {"grpo": ("clip", "sequence"), "bnpo": ("clip", "token"), "dapo": ("clip", "token"),
              "dr_grpo": ("clip", "constant"), "luspo": ("clip", "sum"), "cispo": ("cispo", "token"),
              "sapo": ("sapo", "sequence"), "vespo": ("vespo", "token")}

# fields of TRL's configs that cannot change the expected update on a bandit, with the reason
_NO_EFFECT = {
    **{k: "generation happens through the bandit's exact policy, not a sampler" for k in (
        "generation_kwargs", "cache_implementation", "chat_template_kwargs", "max_tool_calling_iterations",
        "use_transformers_continuous_batching", "transformers_continuous_batching_config", "use_transformers_paged",
        "pad_to_multiple_of", "num_generations_eval")},
    "max_completion_length": ("bandit responses are never truncated; its only other role, dr_grpo's normaliser "
                              "1/max_completion_length, is a constant loss scale (bandit-lab uses the longest response)"),
    "mask_truncated_completions": "bandit responses are never truncated",
    **{k: "vLLM is a generation backend; the bandit samples its policy exactly" for k in (
        "use_vllm", "vllm_mode", "vllm_server_host", "vllm_server_port", "vllm_gpu_memory_utilization",
        "vllm_tensor_parallel_size", "vllm_importance_sampling_correction", "vllm_importance_sampling_cap",
        "vllm_importance_sampling_mode", "vllm_importance_sampling_clip_max", "vllm_importance_sampling_clip_min",
        "vllm_model_impl", "vllm_enable_sleep_mode", "vllm_server_base_url", "vllm_server_timeout",
        "vllm_group_port", "vllm_max_model_length", "vllm_structured_outputs_regex")},
    **{k: "logging / bookkeeping only" for k in (
        "log_completions", "log_multimodal", "num_completions_to_print", "log_unique_prompts",
        "log_completions_hub_repo", "logging_steps", "output_dir", "report_to", "save_steps", "seed")},
    **{k: "a model/memory setting; the bandit's policy is a table" for k in (
        "model_init_kwargs", "trust_remote_code", "router_aux_loss_coef", "cast_lm_head_to_fp32", "disable_dropout",
        "gradient_checkpointing", "ds3_gather_for_generation", "use_liger_kernel", "torch_empty_cache_steps", "bf16",
        "fp16", "shuffle_dataset", "remove_unused_columns")},
}
# fields that do change the update but are not (yet) implemented exactly: their neutral value
# (TRL's default) is accepted, anything else refused, never ignored
_NOT_YET = {
    "temperature": "TRL divides the logits by it in sampling and in the loss (a reparametrised policy); only 1.0 is implemented",
    "top_p": "sampling from a truncated policy while the loss scores the full one is not implemented; only 1.0",
    "top_k": "sampling from a truncated policy while the loss scores the full one is not implemented; only 0",
    "min_p": "sampling from a truncated policy while the loss scores the full one is not implemented; only None",
    "repetition_penalty": "a bandit response is one token; only 1.0",
    "use_adaptive_entropy": "adaptive entropy control not implemented exactly yet",
    "top_entropy_quantile": "entropy masking (top_entropy_quantile < 1) not implemented exactly yet",
    "reward_weights": "a bandit has one reward; weights other than [1.0] do not apply",
    "multi_objective_aggregation": ("a bandit has one reward; 'normalize_then_sum' re-normalises over the batch "
                                    "and is not implemented exactly"),
    "sync_ref_model": "a moving reference (sync_ref_model) is not implemented; π_ref is fixed",
    "off_policy_mask_threshold": "off-policy sequence masking is not implemented exactly yet",
}
_DEFAULT_OFF = {"temperature": (1.0,), "top_p": (1.0,), "top_k": (0, None), "min_p": (None,),
                "repetition_penalty": (1.0,), "use_adaptive_entropy": (False,),
                "top_entropy_quantile": (1.0,), "reward_weights": (None, [1.0]),
                "multi_objective_aggregation": ("sum_then_normalize",), "sync_ref_model": (False,),
                "off_policy_mask_threshold": (None,)}
# fields that act only together with a switched-off one above (entropy control, TR-DPO sync): accepted
_INERT_WITH = {"entropy_coef_min": "use_adaptive_entropy", "entropy_coef_max": "use_adaptive_entropy",
               "entropy_coef_delta": "use_adaptive_entropy", "entropy_target": "use_adaptive_entropy",
               "ref_model_mixup_alpha": "sync_ref_model", "ref_model_sync_steps": "sync_ref_model"}
# batch geometry: read only to decide scale_rewards="batch" (one group per generation batch ⇒ = group)
_BATCH = ("per_device_train_batch_size", "gradient_accumulation_steps", "steps_per_generation",
          "generation_batch_size")


def _neutral(v, allowed) -> bool:
    """``v`` is one of the neutral values (type-strict: ``True`` is not 1, ``"1"`` is not 1)."""
    for a in allowed:
        if a is None or isinstance(a, bool):
            if v is a:
                return True
        elif isinstance(a, (int, float)):
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v == a:
                return True
        elif isinstance(a, str):
            if v == a:
                return True
        elif isinstance(v, (list, tuple)) and list(v) == a:
            return True
    return False


def _common(p: dict, out: dict, lib: str) -> None:
    for k in list(p):
        if k in _NO_EFFECT:
            raise BanditError(f"{k}: a {lib} field that cannot matter on a bandit ({_NO_EFFECT[k]}); remove it")
        if k in _NOT_YET:
            if _neutral(p[k], _DEFAULT_OFF[k]):
                p.pop(k)
                continue
            raise BanditError(f"{k}={p[k]!r}: {_NOT_YET[k]}")
        if k in _INERT_WITH:
            p.pop(k)
    if "num_generations" in p:
        out["group_size"] = p.pop("num_generations")
    if "num_iterations" in p:
        out["epochs"] = p.pop("num_iterations")
    if "epsilon" in p:
        out["clip"] = p.pop("epsilon")
    if "epsilon_high" in p:
        v = p.pop("epsilon_high")
        if v is not None:
            out["clip_high"] = v
        elif "clip" in out:
            out["clip_high"] = out["clip"]
    elif "clip" in out and "clip_high" not in p:
        out["clip_high"] = out["clip"]  # TRL: epsilon_high None → epsilon


def _one_group_per_batch(p: dict) -> bool | None:
    """Whether TRL's generation batch holds one prompt's group (GRPOConfig.__post_init__:
    generation_batch_size = per_device_train_batch_size · num_processes · steps_per_generation,
    steps_per_generation defaulting to gradient_accumulation_steps; defaults 8·1·1 = 8 = G)."""
    G = p.get("num_generations", GRPO_DEFAULTS["num_generations"])
    gbs = p.get("generation_batch_size")
    if gbs is None:
        steps = p.get("steps_per_generation") or p.get("gradient_accumulation_steps", 1)
        gbs = p.get("per_device_train_batch_size", 8) * steps
    return gbs == G


# TRL fields that are also bandit-lab's own hyperparameter names: alone they do not make a dict a TRL config
_SHARED = ("beta", "delta", "entropy_coef", "sapo_temperature_pos", "sapo_temperature_neg", "vespo_k_pos", "vespo_lambda_pos",
           "vespo_k_neg", "vespo_lambda_neg")
# native option → the TRL field that sets it (a TRL config must not also carry the native name)
_NATIVE_OF = {"reward_clip": "reward_clip_range", "group_size": "num_generations", "epochs": "num_iterations", "clip": "epsilon", "clip_high": "epsilon_high",
              "length_norm": "loss_type", "surrogate": "loss_type", "normalize": "scale_rewards",
              "ratio_level": "importance_sampling_level", "kl_bias_correction": "use_bias_correction_kl"}


def _no_mixing(params: dict, cfg: str) -> None:
    for k, trl_name in _NATIVE_OF.items():
        if k in params:
            raise BanditError(f"{k}: a native option in a TRL {cfg} (read as a whole config with TRL's defaults); "
                              f"write TRL's {trl_name} instead")


def translate_grpo(params: dict) -> dict:
    """TRL 1.16 ``GRPOConfig`` field names → native ``grpo`` options (see the module docstring;
    trl/trainer/grpo_trainer.py ``GRPOTrainer._compute_loss`` for the loss, and
    ``_generate_and_score_completions`` for the advantages)."""
    p = dict(params)
    if any(k in p for k in GRPO_DEFAULTS if k not in _SHARED):  # TRL mode: TRL's defaults for every field not given
        _no_mixing(p, "GRPOConfig")
        p = {**{k: v for k, v in GRPO_DEFAULTS.items() if k not in ("beta", "delta")}, **p}
    one_group = _one_group_per_batch(p)
    for k in _BATCH:
        p.pop(k, None)
    out: dict = {}
    _common(p, out, "TRL GRPOConfig")
    if "delta" in p:
        d = p.pop("delta")
        if isinstance(d, (int, float)) and not isinstance(d, bool) and d == 0:
            out["delta"] = 0.0  # bandit-lab's native "off" passes through (idempotent: Objective.with_loss re-translates hp)
        elif d is not None:
            if isinstance(d, bool) or not isinstance(d, (int, float)) or not d > 1:
                raise BanditError(f"delta must be None (0: off) or a number > 1 (TRL: the upper cap of the two-sided clip); got {d!r}")
            out["delta"] = float(d)
    if "loss_type" in p:
        lt = p.pop("loss_type")
        if lt not in LOSS_TYPES:
            raise BanditError(f"loss_type must be one of {', '.join(LOSS_TYPES)} (TRL 1.16); got {lt!r}")
        out["surrogate"], out["length_norm"] = _LOSS_TYPE[lt]
        if out.get("delta") and out["surrogate"] != "clip":
            raise BanditError(f"delta: TRL applies the two-sided clip only to loss_type grpo/bnpo/dr_grpo/dapo/luspo "
                              f"and ignores it for {lt}; remove it")
    if out.get("delta") and p.get("surrogate", "clip") != "clip":
        raise BanditError(f"delta: the two-sided clip acts on the clip surrogate only, not {p['surrogate']}")
    if "importance_sampling_level" in p:
        lv = p.pop("importance_sampling_level")
        if lv not in ("token", "sequence"):
            raise BanditError(f"importance_sampling_level must be token or sequence; got {lv!r}")
        out["ratio_level"] = "geometric" if lv == "sequence" else "token"  # GSPO: exp(mean token log-ratio)
    if "scale_rewards" in p:
        sr = p.pop("scale_rewards")
        sr = {True: "group", False: "none"}.get(sr, sr) if isinstance(sr, bool) else sr
        if sr not in ("group", "batch", "none"):
            raise BanditError(f"scale_rewards must be group, batch or none; got {sr!r}")
        if sr == "batch" and not one_group:
            raise BanditError('scale_rewards="batch" with more than one prompt per generation batch: the batch std '
                              "couples the groups and is not implemented exactly (one prompt per batch, TRL's "
                              "default geometry, is exactly group scaling)")
        # batch with one group per generation batch: nanstd over the batch = the group's std (ddof 1)
        out["normalize"] = "group_mean" if sr == "none" else "group_std"
    if "entropy_coef" in p:  # TRL: loss − entropy_coef·mean token entropy (a fixed coefficient; adaptive refused)
        ec = p.pop("entropy_coef")
        if isinstance(ec, bool) or not isinstance(ec, (int, float)):
            raise BanditError(f"entropy_coef must be a number; got {ec!r}")
        if ec != 0:
            out["entropy_coef"], out["entropy_bonus"] = float(ec), True
    if "use_bias_correction_kl" in p:
        bc = p.pop("use_bias_correction_kl")
        if not isinstance(bc, bool):
            raise BanditError(f"use_bias_correction_kl must be true or false; got {bc!r}")
        out["kl_bias_correction"] = bc  # k3 × the differentiable ratio: ∇ of KL(π‖π_ref) in expectation
    return {**p, **out}


def translate_rloo(params: dict) -> dict:
    """TRL 1.16 ``RLOOConfig`` field names → native ``rloo`` options (k1 penalty in the reward)."""
    p = dict(params)
    if any(k in p for k in RLOO_DEFAULTS if k != "beta"):  # TRL mode: TRL's defaults for every field not given
        _no_mixing(p, "RLOOConfig")
        p = {**{k: v for k, v in RLOO_DEFAULTS.items() if k != "beta"}, **p}
    for k in _BATCH:  # RLOO's loss does not read the batch geometry (normalize_advantages: the large-batch limit)
        p.pop(k, None)
    out: dict = {}
    _common(p, out, "TRL RLOOConfig")
    if "normalize_advantages" in p:
        v = p.pop("normalize_advantages")
        if v not in (False, True):
            raise BanditError(f"normalize_advantages must be true or false; got {v!r}")
        if v:  # RLOOTrainer: (A − A.mean())/(A.std() + 1e-4) over the whole (gathered) batch
            out["batch_whiten"], out["std_eps"] = True, 1e-4
    if "reward_clip_range" in p:
        v = p.pop("reward_clip_range")
        if v is not None:  # RLOOTrainer: rewards.clamp(lo, hi) before the k1 penalty (checked in the conformance data)
            out["reward_clip"] = v
    return {**p, **out}


A2PO_DEFAULTS = {"beta1": 0.5, "beta2": 1e-3, "num_value_samples": 8, "filter_all_incorrect": True}


def translate_a2po(params: dict) -> dict:
    """TRL 1.16 ``experimental.a2po.A2POConfig`` names → native ``a2po``: ``beta2`` → ``beta`` (the
    regression temperature), ``beta1`` → ``beta1``. ``num_value_samples`` (V*'s reference samples)
    is accepted at any value: V* is a per-prompt constant and E_π[c·∇log π] = 0, so it does not move
    the expected update (only its variance). ``filter_all_incorrect`` (A2POTrainer.
    _estimate_optimal_values drops a prompt whose n reference rewards sum to 0) is accepted: bandit-lab
    keeps every context, which is TRL's behaviour unless a context's rewards are 0 on all of π_ref's
    samples (then A*-PO's update there is 2β²·∇KL, whose zero, π_ref, is where such a context starts)."""
    p = dict(params)
    if "beta2" in p:
        if "beta" in p:
            raise BanditError("beta: give A2POConfig's beta2 (the regression temperature) or beta, not both")
        p["beta"] = p.pop("beta2")
    if "num_value_samples" in p:
        n = p.pop("num_value_samples")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise BanditError(f"num_value_samples must be an integer ≥ 1; got {n!r}")
    if p.pop("filter_all_incorrect", False) not in (False, True):
        raise BanditError("filter_all_incorrect must be true or false")
    _common(p, {}, "TRL A2POConfig")
    return p


TRANSLATORS = {"grpo": translate_grpo, "rloo": translate_rloo, "a2po": translate_a2po}


# TRL 1.16 DistillationConfig / experimental GKDConfig (bandit_lab.losses.distillation): fields that
# name the teacher model, and GKD's generation length, cannot matter once the teacher is a table
_DISTILL_NO_EFFECT = {
    **{k: "the teacher is given as loss_params.teacher (probabilities) or teacher_logits, not a model" for k in (
        "teacher_model_name_or_path", "teacher_model_revision", "teacher_model_init_kwargs")},
    "max_new_tokens": "bandit responses are never truncated",
    "max_tool_calling_iterations": "a bandit response has no tool calls",
}


def translate_distillation(params: dict, trainer: str = "distillation") -> dict:
    """TRL 1.16 ``DistillationConfig`` (``trainer="distillation"``) or ``experimental.gkd.GKDConfig``
    (``"gkd"``) names → the native ones of :mod:`bandit_lab.losses.distillation` (the same names:
    ``beta``, ``temperature``, ``lmbda``, ``seq_kd``; ``teacher``/``teacher_logits`` are bandit-lab's).
    Generation-only fields are refused with the reason, or accepted at their neutral value (top_p,
    top_k, min_p, repetition_penalty); DistillationConfig has no ``lmbda``/``seq_kd`` (always
    on-policy): those are refused there, never ignored."""
    p = dict(params)
    cfg = "DistillationConfig" if trainer == "distillation" else "GKDConfig"
    for k in list(p):
        if k in _DISTILL_NO_EFFECT:
            raise BanditError(f"{k}: a TRL {cfg} field that cannot matter on a bandit ({_DISTILL_NO_EFFECT[k]}); remove it")
        if k in _NO_EFFECT:
            raise BanditError(f"{k}: a TRL {cfg} field that cannot matter on a bandit ({_NO_EFFECT[k]}); remove it")
        if k in ("top_p", "top_k", "min_p", "repetition_penalty"):
            if _neutral(p[k], _DEFAULT_OFF[k]):
                p.pop(k)
                continue
            raise BanditError(f"{k}={p[k]!r}: {_NOT_YET[k]}")
        if trainer == "distillation" and k in ("lmbda", "seq_kd"):
            raise BanditError(f"{k}: not a DistillationConfig field (TRL 1.16's DistillationTrainer is always on-policy); "
                              f"use loss gkd (TRL's experimental GKDTrainer) for {k}")
    return p


TRANSLATORS.update(distillation=translate_distillation)
