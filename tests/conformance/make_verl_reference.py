"""Regenerate ``tests/data/verl_reference.json`` from verl's and OpenRLHF's *own* functions.

    python -m pip install -e ".[verl]"   # torch==2.13.0 (CPU), verl==0.9.1 and openrlhf==0.11.2 (--no-deps,
                                          # see pyproject's comment for the few imports they need)
    python tests/conformance/make_verl_reference.py [--out tests/data/verl_reference.json]

No model: a batch of X contexts, each with one group of n one-token responses ``y[x, i]`` drawn
from K = 4, and softmax policies over the K responses whose logits are leaf tensors: current θ,
behaviour θ_old, reference θ_ref (so ``torch.autograd`` gives each library's gradient in the very
logits bandit-lab's softmax policy uses). float64 throughout, except where OpenRLHF casts to float32
(``compute_approx_kl``: ``log_probs.float()``) — the test then uses a float32 tolerance.

What is called (verl 0.9.1 ``verl/trainer/ppo/core_algos.py``; OpenRLHF 0.11.2):
- ``kl_penalty`` for every ``kl_penalty`` / ``kl_loss_type`` value (kl, k1, abs, mse, k2,
  low_var_kl, k3 and the '+' straight-through forms): values and ∇θ of their sum;
- OpenRLHF ``models/utils.py::compute_approx_kl`` (k1, k2, k3 × ``unbiased_gradient``);
- every supported ``@register_adv_est`` estimator (gae with the critic's values given, grpo ±
  std, grpo_vectorized, rloo, rloo_vectorized, opo, reinforce_plus_plus, reinforce_plus_plus_baseline,
  remax with the greedy response's reward, gpg, grpo_passk ± std), with and without the in-reward KL
  (``token_level_scores − β·kl_penalty(old, ref)``, what ``ray_trainer.apply_kl_penalty`` does);
- OpenRLHF ``RemoteExperienceMaker.compute_advantages_and_returns`` (every estimator, no_std_norm,
  k1/k3 in the reward, reward clip) on a bare object;
- verl ``get_policy_loss_fn(mode)`` for vanilla (dual clip), gspo, cispo, gpg, geo_mean (GMPO; without
  the KL loss / entropy, which bandit-lab refuses for it), sapo with every loss_agg_mode (token-sum too),
  clip_cov with clip_cov_ratio = 1 (every eligible token zeroed: no randomness) in two windows,
  kl_cov (``torch.topk`` of the covariances: deterministic) at kl_cov_ratio 0.0002 (one token), 0.25, 1,
  plus the actor's KL loss and entropy bonus composed as ``workers/utils/losses.py::ppo_loss`` does;
  OpenRLHF ``PolicyLoss`` (ppo, dual clip, gspo) plus its KL loss as ``ppo_actor.training_step``;
- verl ``dppo_tv``, ``dppo_kl`` and ``dro`` (``policy_loss.dro_beta`` 0.5, 2) ± KL loss / entropy, and
  ``bypass_mode`` (``algorithm.rollout_correction``: ppo_clip / reinforce, TIS and IcePop IS weights, rejection
  by k1/k2/k3 statistics; the worker's ``global_batch_info``) — appended in round 3 session 6 with
  ``--append``: the earlier rows are kept as they were.

``tests/test_verl_conformance.py`` recomputes every row with bandit-lab's JAX code.
OpenRLHF's package ``__init__`` files import DeepSpeed, PEFT and Ray; the three files used are loaded
by path with those imports stubbed (``_load_openrlhf``): the functions themselves need only torch.
"""
from __future__ import annotations

import argparse
import importlib.metadata as md
import importlib.util
import json
import os
import sys
import types

import numpy as np
import torch

X, K, N = 8, 4, 4
SEED = 20261205
OUT = os.path.join(os.path.dirname(__file__), "..", "data", "verl_reference.json")


def _load_openrlhf():
    import openrlhf

    root = os.path.dirname(openrlhf.__file__)

    def pkg(name, *sub):
        m = types.ModuleType(name)
        m.__path__ = [os.path.join(root, *sub)]
        sys.modules[name] = m

    def load(name, *parts):
        spec = importlib.util.spec_from_file_location(name, os.path.join(root, *parts))
        m = importlib.util.module_from_spec(spec)
        sys.modules[name] = m
        spec.loader.exec_module(m)
        return m

    sys.modules.setdefault("deepspeed", types.ModuleType("deepspeed"))
    for name, sub in (("openrlhf.models", ("models",)), ("openrlhf.utils", ("utils",)), ("openrlhf.trainer", ("trainer",)),
                      ("openrlhf.trainer.ppo_utils", ("trainer", "ppo_utils")), ("openrlhf.trainer.ray", ("trainer", "ray"))):
        pkg(name, *sub)
    utils = load("openrlhf.models.utils", "models", "utils.py")
    loss = load("openrlhf.models.loss", "models", "loss.py")
    launcher = types.ModuleType("openrlhf.trainer.ray.launcher")
    launcher.RayActorGroup = object
    sys.modules["openrlhf.trainer.ray.launcher"] = launcher
    em = load("openrlhf.trainer.ppo_utils.experience_maker", "trainer", "ppo_utils", "experience_maker.py")
    return utils, loss, em


def make_inputs() -> dict:
    rng = np.random.default_rng(SEED)
    theta_old = rng.normal(0.0, 1.5, (X, K))
    theta = theta_old + rng.normal(0.0, 0.8, (X, K))  # ratios well outside [0.8, 1.28] and beyond c = 3
    ref = rng.normal(0.0, 1.5, (X, K))
    ref[-2] = theta[-2] + np.array([14.0, -14.0, 25.0, -25.0])  # k3 / log-ratio clamps active
    ref[-1] = theta[-1] + np.array([9.0, -9.0, 11.0, -11.0])
    y = rng.integers(0, K, (X, N))
    y[0] = 2  # a degenerate group (every response the same): GRPO's advantage 0
    y[3, 0] = np.argmin(theta_old[3])
    theta[3, y[3, 0]] += 3.0  # a ratio above the dual clip c = 3 (a rare response made likely)
    reward = rng.normal(0.0, 1.0, (X, K))
    reward[1, 0] = 0.0  # zero scores for GPG's α
    reward[2] = [12.0, -11.0, 0.5, 0.0]  # beyond OpenRLHF's reward clip
    adv = rng.normal(0.0, 1.0, (X, N))
    lp = lambda t: t - np.log(np.exp(t).sum(-1, keepdims=True))  # noqa: E731
    rho = np.exp(np.take_along_axis(lp(theta) - lp(theta_old), y, -1))
    adv[rho > 3] = -np.abs(adv[rho > 3])  # the dual clip (c = 3) acts on negative advantages
    return {"theta": theta.tolist(), "theta_old": theta_old.tolist(), "theta_ref": ref.tolist(), "y": y.tolist(),
            "reward": reward.tolist(), "advantages": adv.tolist()}


def _logp(theta, y):
    return torch.log_softmax(theta, -1).gather(-1, y)  # [X, N]: the log-prob of each response token


def _flat(t):
    return t.reshape(-1, 1)  # [X·N, 1]: one sequence of one token per response


def run() -> dict:
    import verl
    from verl.trainer.ppo import core_algos as ca
    from verl.utils import torch_functional as vf
    from verl.workers.config import ActorConfig

    o_utils, o_loss, o_em = _load_openrlhf()
    torch.set_default_dtype(torch.float64)
    inp = make_inputs()
    T = lambda k: torch.tensor(inp[k], dtype=torch.float64)  # noqa: E731
    y = torch.tensor(inp["y"])
    th_old, th_ref, r_tab = T("theta_old"), T("theta_ref"), T("reward")
    lq = _logp(th_old, y)
    lr_ = _logp(th_ref, y)
    r = r_tab.gather(-1, y)
    out = {"versions": {"verl": verl.__version__, "openrlhf": md.version("openrlhf"), "torch": torch.__version__},
           "inputs": inp, "shape": {"contexts": X, "responses": K, "group": N}}

    def grad_of(fn):
        th = T("theta").requires_grad_(True)
        v = fn(th)
        (g,) = torch.autograd.grad(v.sum(), th)
        return v.detach(), g

    # ---- KL estimators
    rows = []
    for kind in ("kl", "k1", "abs", "mse", "k2", "low_var_kl", "k3", "k1+", "k3+", "abs+", "low_var_kl+", "k2+"):
        v, g = grad_of(lambda th: ca.kl_penalty(_logp(th, y), lr_, kind))
        rows.append({"lib": "verl", "kl_penalty": kind, "value": v.tolist(), "grad": g.tolist()})
    for est in ("k1", "k2", "k3"):
        for ub in (False, True):
            v, g = grad_of(lambda th: o_utils.compute_approx_kl(_logp(th, y), lr_, log_probs_old=lq, kl_estimator=est,
                                                                 unbiased_gradient=ub))
            rows.append({"lib": "openrlhf", "kl_estimator": est, "unbiased_gradient": ub, "value": v.tolist(),
                         "grad": g.tolist(), "float32": True})
    out["kl"] = rows

    # ---- verl advantage estimators
    index = np.repeat(np.arange(X), N)
    mask = torch.ones(X * N, 1)
    pi_old = torch.softmax(th_old, -1)
    rows = []
    for kl_in_reward in (None, "kl", "low_var_kl"):
        beta_r = 0.3
        if kl_in_reward is None:
            s = r
            s_tab = r_tab
        else:
            s = r - beta_r * ca.kl_penalty(lq, lr_, kl_in_reward)
            s_tab = r_tab - beta_r * ca.kl_penalty(torch.log_softmax(th_old, -1), torch.log_softmax(th_ref, -1), kl_in_reward)
        class Cfg(dict):  # verl reads AlgoConfig both as attributes and with .get (grpo_passk)
            __getattr__ = dict.__getitem__
        for est, kw in (("gae", {}), ("grpo", {"norm_adv_by_std_in_grpo": True}), ("grpo", {"norm_adv_by_std_in_grpo": False}),
                        ("grpo_vectorized", {"norm_adv_by_std_in_grpo": True}), ("rloo", {}), ("rloo_vectorized", {}),
                        ("opo", {}), ("reinforce_plus_plus", {}), ("reinforce_plus_plus_baseline", {}), ("remax", {}),
                        ("gpg", {}), ("grpo_passk", {"norm_adv_by_std_in_grpo": True}),
                        ("grpo_passk", {"norm_adv_by_std_in_grpo": False})):
            fn = ca.get_adv_estimator_fn(est)
            cfg = Cfg(gamma=1.0, lam=1.0, **kw)
            args = {"token_level_rewards": _flat(s), "response_mask": mask, "config": cfg,
                    **({} if est == "grpo_passk" else kw)}
            if est == "gae":
                V = (pi_old * s_tab).sum(-1, keepdim=True).expand(X, N)  # the critic at its fixed point E_π_old[s]
                args = {"token_level_rewards": _flat(s), "values": _flat(V), "response_mask": mask, "gamma": 1.0, "lam": 1.0}
            elif est == "remax":
                greedy = th_old.argmax(-1, keepdim=True)
                args["reward_baselines"] = r_tab.gather(-1, greedy).expand(X, N).reshape(-1)
            else:
                args["index"] = index
            if est in ("reinforce_plus_plus", "remax"):
                args.pop("index", None)
            A, _ = fn(**args)
            row = {"lib": "verl", "adv_estimator": est, **kw, "kl_in_reward": kl_in_reward, "kl_coef": beta_r,
                   "advantages": A.reshape(X, N).tolist()}
            if est == "grpo_vectorized":  # verl/utils/groupwise.py group_mean_std returns float32 mean/std
                row["float32"] = True
            rows.append(row)
    # ---- OpenRLHF advantage estimators
    for est in ("gae", "reinforce", "rloo", "reinforce_baseline", "group_norm", "dr_grpo", "flash_reinforce"):
        for no_std in (False, True):
            for kl_est, coef in (("k1", 0.0), ("k1", 0.3), ("k3", 0.3)):
                if no_std and est not in ("gae", "reinforce", "reinforce_baseline"):
                    continue
                ns = types.SimpleNamespace
                args = ns(rollout=ns(n_samples_per_prompt=N), algo=ns(advantage=ns(estimator=est, gamma=1.0, lambd=1.0,
                                                                                   no_std_norm=no_std)),
                          reward=ns(clip_range=(-10.0, 10.0), overlong_buffer_len=None, stop_properly_penalty_coef=None))
                maker = o_em.RemoteExperienceMaker.__new__(o_em.RemoteExperienceMaker)
                maker.strategy = ns(args=args)
                maker.advantage_estimator = est
                maker.kl_ctl = ns(value=coef)
                kl = o_utils.compute_approx_kl(lq, lr_, kl_estimator=kl_est) if coef > 0 else torch.zeros(X, N)
                pi_kl = (r_tab.clamp(-10, 10) - coef * o_utils.compute_approx_kl(
                    torch.log_softmax(th_old, -1), torch.log_softmax(th_ref, -1), kl_estimator=kl_est)) if coef > 0 else r_tab.clamp(-10, 10)
                values = (pi_old * pi_kl).sum(-1, keepdim=True).expand(X, N)  # critic at E_π_old[clip(r) − β·kl]
                exps = []
                for x in range(X):  # one experience per prompt, its N samples in order
                    exps.append(ns(rewards=r[x].clone(), index=list(range(x * N, (x + 1) * N)), kl=kl[x].reshape(N, 1),
                                   action_mask=torch.ones(N, 1), values=values[x].reshape(N, 1), info={}))
                maker.compute_advantages_and_returns(exps)
                A = torch.stack([e.advantages.reshape(N) for e in exps])
                rows.append({"lib": "openrlhf", "estimator": est, "no_std_norm": no_std, "kl_estimator": kl_est,
                             "init_coef": coef, "reward_clip": 10.0, "advantages": A.tolist(),
                             # the KL is float32 (compute_approx_kl), and so is the batch whitening (`.float()`)
                             "float32": coef > 0 or est in ("gae", "reinforce", "reinforce_baseline")})
    out["advantages"] = rows

    # ---- policy losses (+ KL loss and entropy as the actors compose them)
    from verl.workers.config.actor import PolicyLossConfig

    A = T("advantages")
    rows = []

    def loss_row(mode, agg, kl_type, coef, ent, **pl):
        """verl's policy loss ``mode`` + the KL loss and entropy bonus as ``workers/utils/losses.py::ppo_loss``
        composes them; ``pl``: PolicyLossConfig fields (clip_cov / kl_cov)."""
        cfg = ActorConfig(strategy="fsdp", rollout_n=N, ppo_micro_batch_size_per_gpu=1, clip_ratio=0.2,
                          clip_ratio_low=0.2, clip_ratio_high=0.28, clip_ratio_c=3.0, loss_agg_mode=agg,
                          tau_pos=1.0, tau_neg=1.05, **({"policy_loss": PolicyLossConfig(loss_mode=mode, **pl)} if pl else {}))

        def actor(th):
            lp = _flat(_logp(th, y))
            pg, _ = ca.get_policy_loss_fn(mode)(old_log_prob=_flat(lq), log_prob=lp, advantages=_flat(A),
                                                response_mask=mask, loss_agg_mode=agg, config=cfg)
            loss = pg
            if ent:
                H = vf.entropy_from_logits(th).unsqueeze(-1).expand(X, N).reshape(-1, 1)
                loss = loss - ent * ca.agg_loss(H, mask, agg)
            if kl_type:
                loss = loss + coef * ca.agg_loss(ca.kl_penalty(lp, _flat(lr_), kl_type), mask, agg)
            return loss

        v, g = grad_of(actor)
        # token-sum: the batch is one mini-batch of X prompts × N responses (X·N tokens)
        return {"lib": "verl", "loss_mode": mode, "loss_agg_mode": agg, "clip_ratio_low": 0.2, "clip_ratio_high": 0.28,
                "clip_ratio_c": 3.0, "kl_loss_type": kl_type, "kl_loss_coef": coef, "entropy_coeff": ent, "tau_pos": 1.0,
                "tau_neg": 1.05, "ppo_mini_batch_size": X, **pl, "value": float(v), "grad": g.tolist()}

    for mode in ("vanilla", "gspo", "cispo", "gpg", "geo_mean", "sapo"):
        for agg in ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm", "token-sum"):
            for kl_type, coef, ent in ((None, 0.0, 0.0), ("low_var_kl", 0.2, 0.0), ("k3+", 0.2, 0.05)):
                if mode == "geo_mean" and kl_type:  # refused by bandit-lab (GMPO's per-micro-batch mean)
                    continue
                rows.append(loss_row(mode, agg, kl_type, coef, ent))
    # clip_cov with clip_cov_ratio = 1: every eligible token is zeroed (clip_num = B ≥ #eligible), so the
    # randperm does not matter; two covariance windows, ± KL loss / entropy. kl_cov: torch.topk of the batch
    # covariances (deterministic: no ties on this batch), from one token (the default ratio 0.0002:
    # max(1, int(32·0.0002)) = 1) to every token; ± KL loss / entropy
    for lb, ub in ((0.2, 5.0), (-5.0, -0.1)):
        for agg in ("token-mean", "seq-mean-token-mean"):
            for kl_type, coef, ent in ((None, 0.0, 0.0), ("k3+", 0.2, 0.05)):
                rows.append(loss_row("clip_cov", agg, kl_type, coef, ent, clip_cov_ratio=1.0, clip_cov_lb=lb, clip_cov_ub=ub))
    for ratio, kcoef in ((0.0002, 0.1), (0.25, 0.1), (0.25, 0.7), (1.0, 0.5)):
        for agg in ("token-mean", "seq-mean-token-mean", "token-sum"):
            for kl_type, coef, ent in ((None, 0.0, 0.0), ("k3+", 0.2, 0.05)):
                if agg == "token-sum" and kl_type:
                    continue
                rows.append(loss_row("kl_cov", agg, kl_type, coef, ent, kl_cov_ratio=ratio, ppo_kl_coef=kcoef))
    # DPPO-Binary (TV and KL trust masks, the detached ratio truncated at clip_ratio_c = 3) and DRO (quadratic
    # log-ratio penalty, policy_loss.dro_beta), ± KL loss / entropy
    for mode, pls in (("dppo_tv", ({},)), ("dppo_kl", ({},)), ("dro", ({"dro_beta": 0.5}, {"dro_beta": 2.0}))):
        for pl in pls:
            for agg in ("token-mean", "seq-mean-token-mean", "token-sum"):
                for kl_type, coef, ent in ((None, 0.0, 0.0), ("k3+", 0.2, 0.05)):
                    if agg == "token-sum" and kl_type:
                        continue
                    rows.append(loss_row(mode, agg, kl_type, coef, ent, **pl))
    # bypass mode (algorithm.rollout_correction.bypass_mode: the trainer's apply_bypass_mode sets old_log_prob =
    # rollout_log_prob and loss_mode = bypass_mode; here the rollout policy is θ_old). global_batch_info as the
    # worker sets it (workers/utils/losses.py): the token count before rejection divides token-mean
    from verl.trainer.config.algorithm import RolloutCorrectionConfig

    def bypass_row(rc, agg, kl_type, coef, ent):
        gbi = {"dp_size": 1, "batch_num_tokens": X * N, "global_batch_size": X * N, "loss_scale_factor": None}
        cfg = ActorConfig(strategy="fsdp", rollout_n=N, ppo_micro_batch_size_per_gpu=1, clip_ratio=0.2,
                          clip_ratio_low=0.2, clip_ratio_high=0.28, clip_ratio_c=3.0, loss_agg_mode=agg, global_batch_info=gbi,
                          policy_loss=PolicyLossConfig(loss_mode="bypass_mode", rollout_correction=RolloutCorrectionConfig(
                              bypass_mode=True, **rc)))

        def actor(th):
            lp = _flat(_logp(th, y))
            pg, _ = ca.get_policy_loss_fn("bypass_mode")(old_log_prob=_flat(lq), log_prob=lp, advantages=_flat(A),
                                                         response_mask=mask, loss_agg_mode=agg, config=cfg)
            loss = pg
            if ent:
                H = vf.entropy_from_logits(th).unsqueeze(-1).expand(X, N).reshape(-1, 1)
                loss = loss - ent * ca.agg_loss(H, mask, agg, **gbi)
            if kl_type:
                loss = loss + coef * ca.agg_loss(ca.kl_penalty(lp, _flat(lr_), kl_type), mask, agg, **gbi)
            return loss

        v, g = grad_of(actor)
        return {"lib": "verl", "loss_mode": "bypass_mode", "rollout_correction": {"bypass_mode": True, **rc},
                "loss_agg_mode": agg, "clip_ratio_low": 0.2, "clip_ratio_high": 0.28, "clip_ratio_c": 3.0,
                "kl_loss_type": kl_type, "kl_loss_coef": coef, "entropy_coeff": ent, "tau_pos": 1.0, "tau_neg": 1.05,
                "ppo_mini_batch_size": X, "value": float(v), "grad": g.tolist()}

    for rc, aggs in (({"loss_type": "ppo_clip", "rollout_is": None}, ("token-mean",)),
                     ({"loss_type": "ppo_clip", "rollout_is": "token", "rollout_is_threshold": 1.5, "rollout_rs": "token_k1,seq_mean_k3",
                       "rollout_rs_threshold": "0.5_2.0,0.6"}, ("token-mean", "seq-mean-token-mean", "token-sum")),
                     ({"loss_type": "reinforce", "rollout_is": None}, ("token-mean",)),
                     ({"loss_type": "reinforce", "rollout_is": "token", "rollout_is_threshold": 1.5, "rollout_rs": "token_k2",
                       "rollout_rs_threshold": 0.3}, ("token-mean", "seq-mean-token-mean")),
                     ({"loss_type": "reinforce", "rollout_is": "sequence", "rollout_is_threshold": "0.6_1.6",
                       "rollout_rs": "seq_max_k2", "rollout_rs_threshold": 0.4}, ("token-mean", "token-sum")),
                     ({"loss_type": "reinforce", "rollout_is": "token", "rollout_is_threshold": 2.0, "rollout_rs": "seq_sum_k1",
                       "rollout_rs_threshold": 2.0}, ("token-mean",))):
        for agg in aggs:
            for kl_type, coef, ent in ((None, 0.0, 0.0), ("k3+", 0.2, 0.05)):
                if agg == "token-sum" and kl_type:
                    continue
                rows.append(bypass_row(rc, agg, kl_type, coef, ent))
    for ptype in ("ppo", "gspo"):
        for dual in (None, 3.0):
            for agg in ("token-mean", "seq-mean-token-mean"):
                for kl_est, ub, coef in ((None, False, 0.0), ("k3", False, 0.2), ("k2", True, 0.2)):
                    if ptype == "gspo" and dual is not None:
                        continue
                    pl = o_loss.PolicyLoss(clip_eps_low=0.2, clip_eps_high=0.28, dual_clip=dual,
                                           token_level_loss=agg == "token-mean", policy_loss_type=ptype)

                    def actor(th):
                        lp = _flat(_logp(th, y))
                        loss, *_ = pl(lp, _flat(lq), _flat(A), action_mask=mask)
                        if kl_est:
                            kl = o_utils.compute_approx_kl(lp, _flat(lr_), log_probs_old=_flat(lq), kl_estimator=kl_est,
                                                           unbiased_gradient=ub)
                            loss = loss + coef * o_loss.aggregate_loss(kl, mask)
                        return loss

                    v, g = grad_of(actor)
                    rows.append({"lib": "openrlhf", "policy_loss_type": ptype, "dual_clip": dual, "loss_agg_mode": agg,
                                 "eps_clip_low_high": [0.2, 0.28], "kl_estimator": kl_est, "unbiased_gradient": ub,
                                 "init_coef": coef, "value": float(v), "grad": g.tolist(), "float32": kl_est is not None})
    out["policy_losses"] = rows
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=OUT)
    ap.add_argument("--append", action="store_true",
                    help="keep every row of --out as it is and add only the rows it does not have yet (same inputs)")
    a = ap.parse_args(argv)
    data = run()
    if a.append:
        with open(a.out) as fh:
            old = json.load(fh)
        assert old["inputs"] == data["inputs"] and old["versions"] == data["versions"], "not the same batch or versions"

        def key(r):
            return json.dumps({k: v for k, v in r.items() if k not in ("value", "grad", "advantages", "float32")}, sort_keys=True)
        for part in ("kl", "advantages", "policy_losses"):
            have = {key(r) for r in old[part]}
            old[part] += [r for r in data[part] if key(r) not in have]
        data = old
    with open(a.out, "w") as fh:
        json.dump(data, fh, indent=None, separators=(",", ":"))
        fh.write("\n")
    print(f"wrote {a.out}: {len(data['kl'])} KL rows, {len(data['advantages'])} advantage rows, "
          f"{len(data['policy_losses'])} policy-loss rows ({data['versions']})")


if __name__ == "__main__":
    main()
