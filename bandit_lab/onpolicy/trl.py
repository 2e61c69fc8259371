"""TRL 1.16's option names, verbatim, for the on-policy losses ``grpo`` and ``rloo``.

``LossSpec.translate`` hooks (:mod:`bandit_lab.losses.base`): a ``loss_params`` dict written with
TRL's own ``GRPOConfig`` / ``RLOOConfig`` field names (TRL 1.16.0, ``trl/trainer/grpo_config.py``,
``rloo_config.py``; loss in ``grpo_trainer.py`` ``_compute_loss``) becomes bandit-lab's native
hyperparameters and static options (:mod:`bandit_lab.losses.onpolicy`). Native names pass through.

A dict that names any TRL-only field (anything but ``beta``) is read as a whole TRL config: every
field it leaves out takes TRL 1.16's default (so ``{"loss_type": "dapo", "beta": 0.04}`` carries
TRL's ``use_bias_correction_kl=True`` and ``num_generations=8``). A dict of native names only (or
``beta`` alone) keeps bandit-lab's native defaults, so existing specs are unchanged.

Translated now (exact in bandit-lab's native implementation):

- ``num_generations`` → ``group_size``; ``num_iterations`` → ``epochs``; ``beta`` → ``beta``;
- ``epsilon`` → ``clip``; ``epsilon_high`` → ``clip_high`` (TRL: ``None`` means = ``epsilon``);
- ``importance_sampling_level`` token | sequence → ``ratio_level``;
- ``scale_rewards`` group → ``normalize="group_std"``, none (or ``False``) → ``"group_mean"``
  (``True`` = group, as TRL accepts);
- ``loss_type`` grpo → per-sequence token mean (``length_norm="sequence"``), dapo / bnpo → token
  mean over the batch (``"token"``), dr_grpo → constant normaliser (``"constant"``);
- ``use_bias_correction_kl`` → ``kl_bias_correction``: k3 in the loss times the differentiable
  importance ratio (``per_token_kl * coef_1``), whose expected gradient is ∇KL(π‖π_ref). With it,
  dr_grpo + ``scale_rewards="none"`` is Gibbs at β·G/(G−1) (:func:`bandit_lab.onpolicy.closed_forms`).

Refused, with the reason, rather than silently approximated: the loss types cispo, sapo, luspo,
vespo, ``scale_rewards="batch"`` and ``delta`` (two-sided clip) (not yet implemented exactly); and every field that cannot matter on a bandit
(generation, vLLM, logging, …). An unknown field falls through to the loss's own one-line
"has no parameter" message.
"""

from __future__ import annotations

from bandit_lab.errors import BanditError

# TRL 1.16.0 defaults of the fields that affect the update (grpo_config.py / rloo_config.py)
GRPO_DEFAULTS = {"loss_type": "dapo", "beta": 0.0, "num_generations": 8, "epsilon": 0.2, "epsilon_high": None,
                 "delta": None, "scale_rewards": "group", "importance_sampling_level": "token",
                 "num_iterations": 1, "use_bias_correction_kl": True}
RLOO_DEFAULTS = {"beta": 0.05, "num_generations": 2, "epsilon": 0.2, "epsilon_high": None,
                 "num_iterations": 1, "normalize_advantages": False, "reward_clip_range": None}

LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo")
_LENGTH_NORM = {"grpo": "sequence", "dr_grpo": "constant", "dapo": "token", "bnpo": "token"}

# fields of TRL's configs that cannot change the expected update on a bandit, with the reason
_NO_EFFECT = {
    **{k: "generation happens through the bandit's exact policy, not a sampler" for k in (
        "temperature", "top_p", "top_k", "min_p", "repetition_penalty", "max_completion_length", "max_prompt_length",
        "generation_kwargs", "generation_batch_size", "steps_per_generation", "cache_implementation",
        "mask_truncated_completions", "chat_template_kwargs")},
    **{k: "vLLM is a generation backend; the bandit samples its policy exactly" for k in (
        "use_vllm", "vllm_mode", "vllm_server_host", "vllm_server_port", "vllm_gpu_memory_utilization",
        "vllm_tensor_parallel_size", "vllm_importance_sampling_correction", "vllm_importance_sampling_cap",
        "vllm_importance_sampling_mode", "vllm_model_impl", "vllm_enable_sleep_mode", "vllm_server_base_url",
        "vllm_server_timeout", "vllm_guided_decoding_regex")},
    **{k: "logging / bookkeeping only" for k in (
        "log_completions", "num_completions_to_print", "wandb_log_unique_prompts", "log_unique_prompts",
        "logging_steps", "output_dir", "report_to", "save_steps", "seed")},
    **{k: "a model/memory setting; the bandit's policy is a table" for k in (
        "model_init_kwargs", "disable_dropout", "gradient_checkpointing", "ds3_gather_for_generation",
        "use_liger_loss", "use_liger_kernel", "torch_empty_cache_steps", "bf16", "fp16", "shuffle_dataset",
        "remove_unused_columns", "per_device_train_batch_size", "gradient_accumulation_steps")},
}
# fields that do change the update but are not (yet) implemented exactly: refused, never ignored
_NOT_YET = {
    "delta": "TRL's two-sided clip (delta) is not implemented exactly yet; leave it None",
    "entropy_coef": "entropy bonus not implemented exactly yet",
    "top_entropy_quantile": "entropy masking (top_entropy_quantile < 1) not implemented exactly yet",
    "reward_weights": "a bandit has one reward; multi-reward weighting does not apply yet",
    "multi_objective_aggregation": "a bandit has one reward; multi-objective aggregation does not apply yet",
    "sync_ref_model": "a moving reference (sync_ref_model) is not implemented; π_ref is fixed",
    "off_policy_mask_threshold": "off-policy sequence masking is not implemented exactly yet",
}
_DEFAULT_OFF = {"delta": None, "entropy_coef": 0.0, "top_entropy_quantile": 1.0, "reward_weights": None,
                "multi_objective_aggregation": None, "sync_ref_model": False, "off_policy_mask_threshold": None}


def _common(p: dict, out: dict, lib: str) -> None:
    for k in list(p):
        if k in _NO_EFFECT:
            raise BanditError(f"{k}: a {lib} field that cannot matter on a bandit ({_NO_EFFECT[k]}); remove it")
        if k in _NOT_YET:
            if p[k] == _DEFAULT_OFF[k]:
                p.pop(k)
                continue
            raise BanditError(f"{k}={p[k]!r}: {_NOT_YET[k]}")
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


def translate_grpo(params: dict) -> dict:
    """TRL 1.16 ``GRPOConfig`` field names → native ``grpo`` options (see the module docstring)."""
    p = dict(params)
    if any(k in p for k in GRPO_DEFAULTS if k != "beta"):  # TRL mode: TRL's defaults for every field not given
        p = {**{k: v for k, v in GRPO_DEFAULTS.items() if k not in ("beta", "delta")}, **p}
    out: dict = {}
    _common(p, out, "TRL GRPOConfig")
    if "loss_type" in p:
        lt = p.pop("loss_type")
        if lt not in LOSS_TYPES:
            raise BanditError(f"loss_type must be one of {', '.join(LOSS_TYPES)} (TRL 1.16); got {lt!r}")
        if lt not in _LENGTH_NORM:
            raise BanditError(f"loss_type={lt!r}: TRL's {lt} loss is not implemented exactly yet "
                              f"(available: {', '.join(_LENGTH_NORM)})")
        out["length_norm"] = _LENGTH_NORM[lt]
    if "importance_sampling_level" in p:
        lv = p.pop("importance_sampling_level")
        if lv not in ("token", "sequence"):
            raise BanditError(f"importance_sampling_level must be token or sequence; got {lv!r}")
        out["ratio_level"] = lv
    if "scale_rewards" in p:
        sr = p.pop("scale_rewards")
        sr = {True: "group", False: "none"}.get(sr, sr) if isinstance(sr, bool) else sr
        if sr == "batch":
            raise BanditError('scale_rewards="batch": batch-level std scaling is not implemented exactly yet')
        if sr not in ("group", "none"):
            raise BanditError(f"scale_rewards must be group, batch or none; got {sr!r}")
        out["normalize"] = "group_std" if sr == "group" else "group_mean"
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
        p = {**{k: v for k, v in RLOO_DEFAULTS.items() if k != "beta"}, **p}
    out: dict = {}
    _common(p, out, "TRL RLOOConfig")
    if "normalize_advantages" in p:
        v = p.pop("normalize_advantages")
        if v not in (False, True):
            raise BanditError(f"normalize_advantages must be true or false; got {v!r}")
        if v:
            raise BanditError("normalize_advantages=True is not implemented exactly yet; leave it false (TRL's default)")
    if "reward_clip_range" in p:
        v = p.pop("reward_clip_range")
        if v is not None:
            raise BanditError(f"reward_clip_range={v!r}: reward clipping is not implemented exactly yet; leave it None")
    return {**p, **out}


TRANSLATORS = {"grpo": translate_grpo, "rloo": translate_rloo}
