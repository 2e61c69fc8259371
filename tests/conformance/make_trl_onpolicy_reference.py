"""Regenerate ``tests/data/trl_onpolicy_reference.json`` from TRL 1.16's *own* GRPO/RLOO code.

    python -m pip install -e ".[trl]"        # torch==2.13.0 (CPU wheel) and trl==1.16.0
    python tests/conformance/make_trl_onpolicy_reference.py [--out PATH] [--check]

No model, no data set, no generation: each trainer is a bare object (``GRPOTrainer.__new__``)
given only the attributes its loss method reads, and a *stub language model* whose per-token
log-probabilities are those of a softmax table ``π = softmax(θ[x])`` over V one-token completions
(``θ`` a float64 leaf tensor, so ``torch.autograd`` gives TRL's gradient in the very logits
bandit-lab's softmax policy uses). X contexts ("prompts") × G completions each form the batch.

What is called, verbatim:

- ``GRPOTrainer._compute_loss`` for every ``loss_type`` × ``importance_sampling_level`` ×
  ``use_bias_correction_kl`` × {on-policy (``old_per_token_logps`` absent: ratio 1),
  off-policy (``num_iterations > 1``: ``old_per_token_logps`` from other logits θ_old, ratios far
  from 1 so the clips act)}, plus ``delta``, cispo's ``epsilon_high`` above 1, non-default
  sapo/vespo parameters: the loss value and its gradient w.r.t. θ;
- ``RLOOTrainer._compute_loss`` (sequence ratio, clip) likewise;
- ``trl.experimental.a2po.A2POTrainer.compute_loss`` (A*-PO's regression) with given per-prompt V*;
- the advantage code of ``GRPOTrainer._generate_and_score_completions`` (``scale_rewards`` group /
  batch / none, one prompt per generation batch — TRL's default geometry — and a whole batch)
  and of ``RLOOTrainer._generate_and_score_completions`` (leave-one-out, k1 in the reward,
  ``reward_clip_range``, ``normalize_advantages``): these blocks sit inside the generation
  method, so their source is cut out of TRL's installed file by ``inspect`` between two marker
  lines and executed as is (TRL's text, not a copy typed here);
- ``dataclasses.fields`` of ``GRPOConfig``/``RLOOConfig`` minus ``TrainingArguments``': every
  field and its default (``tests/test_trl_options.py`` checks bandit_lab.onpolicy.trl against it).

``torch.set_default_dtype(torch.float64)``: TRL builds its sapo temperatures with
``torch.where(cond, python_float, python_float)``, which takes the default dtype; under float64
every quantity TRL computes here is float64, so the default suite compares to 1e-12.
Token-tree rows (``tree_rows``): completions of 1–2 tokens from the tree V = 3, horizon 2, token 2
ends a response (bandit-lab's ``TokenTree.create(3, 2, eos=True)``: 3 states, 7 responses; its
index arrays are stored and the test checks them), per-state logits θ[x, s] — where GSPO's
geometric-mean ratio, luspo's length weighting and the per-loss-type normalisers differ.
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import os
import sys
import textwrap
import types
import warnings
from collections import defaultdict

import numpy as np
import torch

torch.set_default_dtype(torch.float64)
warnings.simplefilter("ignore")

X, V, G = 5, 4, 4
SEED = 20261205
BETA = 0.1
OUT = os.path.join(os.path.dirname(__file__), "..", "data", "trl_onpolicy_reference.json")


def make_inputs() -> dict:
    rng = np.random.default_rng(SEED)
    theta = rng.normal(0.0, 1.0, (X, V))
    theta_old = theta + rng.normal(0.0, 0.6, (X, V))  # ratios ≈ e^{±1}: every clip acts somewhere
    theta_ref = rng.normal(0.0, 1.0, (X, V))
    y = rng.integers(0, V, (X, G))
    r = rng.integers(0, 3, (X, G)).astype(float) + rng.choice([0.0, 0.25], (X, G))
    r[0] = 1.0  # a degenerate group (all rewards equal: advantage 0 under every scaling)
    y[1] = [0, 0, 1, 1]  # repeated completions in a group
    return {"theta": theta.tolist(), "theta_old": theta_old.tolist(), "theta_ref": theta_ref.tolist(),
            "completions": y.tolist(), "rewards": r.tolist(), "X": X, "V": V, "G": G}


# --------------------------------------------------------------------------- stubs

class Accel:
    device = torch.device("cpu")
    num_processes = 1
    process_index = 0
    sync_gradients = True

    def gather(self, t):
        return t

    gather_for_metrics = gather

    def reduce(self, t, reduction="sum"):
        return t


def _logps(theta, prompt_ids, completion_ids):
    lp = torch.log_softmax(theta, -1)[prompt_ids[:, 0]]  # [B, V]
    return torch.gather(lp, 1, completion_ids)  # [B, 1]


def grpo_stub(cfg: dict, theta):
    from trl import GRPOTrainer

    t = GRPOTrainer.__new__(GRPOTrainer)
    args = types.SimpleNamespace(use_bias_correction_kl=cfg["use_bias_correction_kl"], delta=cfg.get("delta"),
                                 sapo_temperature_pos=cfg.get("sapo_temperature_pos", 1.0),
                                 sapo_temperature_neg=cfg.get("sapo_temperature_neg", 1.05),
                                 vespo_k_pos=cfg.get("vespo_k_pos", 2.0), vespo_lambda_pos=cfg.get("vespo_lambda_pos", 3.0),
                                 vespo_k_neg=cfg.get("vespo_k_neg", 3.0), vespo_lambda_neg=cfg.get("vespo_lambda_neg", 2.0),
                                 steps_per_generation=1)
    eps = cfg.get("epsilon", 0.2)
    eh = cfg.get("epsilon_high")
    vals = dict(args=args, loss_type=cfg["loss_type"], importance_sampling_level=cfg["importance_sampling_level"],
                beta=cfg["beta"], epsilon_low=eps, epsilon_high=eh if eh is not None else eps,
                top_entropy_quantile=1.0, off_policy_mask_threshold=None, use_vllm=False,
                vllm_importance_sampling_correction=False, aux_loss_enabled=False,
                _entropy_bonus_enabled=cfg.get("entropy_coef", 0.0) != 0.0, entropy_coef=cfg.get("entropy_coef", 0.0),
                use_adaptive_entropy=False,
                current_gradient_accumulation_steps=1, max_completion_length=1,
                model=types.SimpleNamespace(training=True), accelerator=Accel(),
                _metrics={"train": defaultdict(list), "eval": defaultdict(list)})
    for k, v in vals.items():
        object.__setattr__(t, k, v)

    def per_token(self, model, input_ids, attention_mask, logits_to_keep, compute_entropy=False, **kw):
        from trl.trainer.utils import entropy_from_logits

        lp = _logps(theta, input_ids[:, :1], input_ids[:, 1:])
        return lp, entropy_from_logits(theta[input_ids[:, 0]])[:, None], None  # TRL's entropy of the full distribution
    object.__setattr__(t, "_get_per_token_logps_and_entropies", types.MethodType(per_token, t))
    return t


def _batch(inp, adv, old: bool):
    th_old = torch.tensor(inp["theta_old"])
    th_ref = torch.tensor(inp["theta_ref"])
    pid = torch.arange(X).repeat_interleave(G)[:, None]
    cid = torch.tensor(inp["completions"]).reshape(-1, 1)
    b = {"prompt_ids": pid, "prompt_mask": torch.ones_like(pid), "completion_ids": cid,
         "completion_mask": torch.ones_like(cid), "advantages": torch.tensor(adv, dtype=torch.float64),
         "ref_per_token_logps": _logps(th_ref, pid, cid), "num_items_in_batch": torch.tensor(float(X * G))}
    if old:
        b["old_per_token_logps"] = _logps(th_old, pid, cid)
    return b


def grpo_loss(inp, cfg, adv, old):
    theta = torch.tensor(inp["theta"], requires_grad=True)
    loss = grpo_stub(cfg, theta)._compute_loss(None, _batch(inp, adv, old))
    (g,) = torch.autograd.grad(loss, theta)
    return float(loss), g.numpy().tolist()


def rloo_loss(inp, cfg, adv, old):
    from trl import RLOOTrainer

    theta = torch.tensor(inp["theta"], requires_grad=True)
    t = RLOOTrainer.__new__(RLOOTrainer)
    eps = cfg.get("epsilon", 0.2)
    eh = cfg.get("epsilon_high")
    for k, v in dict(epsilon_low=eps, epsilon_high=eh if eh is not None else eps, aux_loss_enabled=False,
                     model=types.SimpleNamespace(training=True), accelerator=Accel(),
                     _metrics={"train": defaultdict(list), "eval": defaultdict(list)}).items():
        object.__setattr__(t, k, v)

    def per_token(self, model, input_ids, attention_mask, logits_to_keep, compute_entropy=False, **kw):
        lp = _logps(theta, input_ids[:, :1], input_ids[:, 1:])
        return lp, torch.zeros_like(lp), None
    object.__setattr__(t, "_get_per_token_logps_and_entropies", types.MethodType(per_token, t))
    b = _batch(inp, adv, True)
    src = torch.tensor(inp["theta_old"] if old else inp["theta"])
    b["old_logps"] = _logps(src, b["prompt_ids"], b["completion_ids"])[:, 0]
    loss = t._compute_loss(None, b)
    (g,) = torch.autograd.grad(loss, theta)
    return float(loss), g.numpy().tolist()


# --------------------------------------------------------------------------- token trees

TREE = {"vocab": 3, "horizon": 2, "n_states": 3,
        "tokens": [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2], [2, 0]],
        "states_at": [[0, 1], [0, 1], [0, 1], [0, 2], [0, 2], [0, 2], [0, 0]],
        "mask": [[1, 1], [1, 1], [1, 1], [1, 1], [1, 1], [1, 1], [1, 0]]}
XT, GT = 3, 4


def make_tree_inputs() -> dict:
    rng = np.random.default_rng(SEED + 1)
    S, V = TREE["n_states"], TREE["vocab"]
    theta = rng.normal(0.0, 1.0, (XT, S, V))
    return {"theta": theta.tolist(), "theta_old": (theta + rng.normal(0.0, 0.5, (XT, S, V))).tolist(),
            "theta_ref": rng.normal(0.0, 1.0, (XT, S, V)).tolist(),
            "responses": rng.integers(0, len(TREE["tokens"]), (XT, GT)).tolist(),
            "advantages": rng.normal(0.0, 1.0, (XT, GT)).tolist(), "X": XT, "G": GT}


def _tree_logps(theta, k):
    """Per-token log-probabilities [B, T] of responses ``k`` [B] (row b in context b // GT), 0 past the end."""
    lp = torch.log_softmax(theta, -1)  # [X, S, V]
    st, tok, m = (torch.tensor(TREE[n])[k] for n in ("states_at", "tokens", "mask"))
    x = torch.arange(len(k)) // GT
    return lp[x[:, None], st, tok] * m


def _tree_batch(ti, old: bool, k):
    b = {"prompt_ids": (torch.arange(XT * GT) // GT)[:, None], "completion_ids": torch.tensor(TREE["tokens"])[k],
         "completion_mask": torch.tensor(TREE["mask"])[k], "advantages": torch.tensor(np.ravel(ti["advantages"])),
         "ref_per_token_logps": _tree_logps(torch.tensor(ti["theta_ref"]), k)}
    b["prompt_mask"] = torch.ones_like(b["prompt_ids"])
    b["num_items_in_batch"] = b["completion_mask"].sum().double()
    if old:
        b["old_per_token_logps"] = _tree_logps(torch.tensor(ti["theta_old"]), k)
    return b


def grpo_tree_loss(ti, cfg, old):
    k = torch.tensor(np.ravel(ti["responses"]))
    theta = torch.tensor(ti["theta"], requires_grad=True)
    t = grpo_stub(cfg, theta)
    object.__setattr__(t, "max_completion_length", TREE["horizon"])

    def per_token(self, model, input_ids, attention_mask, logits_to_keep, compute_entropy=False, **kw):
        lp = _tree_logps(theta, k)
        return lp, torch.zeros_like(lp), None
    object.__setattr__(t, "_get_per_token_logps_and_entropies", types.MethodType(per_token, t))
    loss = t._compute_loss(None, _tree_batch(ti, old, k))
    (g,) = torch.autograd.grad(loss, theta)
    return float(loss), g.numpy().tolist()


# --------------------------------------------------------------------------- A*-PO

def a2po_loss(inp, beta2: float, v_star, r_table) -> tuple[float, list]:
    """``A2POTrainer.compute_loss`` (TRL 1.16 experimental) on one completion per row, the sequence
    log-probabilities from the table; ``v_star`` per prompt given (the test derives the same)."""
    from trl.experimental.a2po import A2POTrainer

    theta = torch.tensor(inp["theta"], requires_grad=True)
    t = A2POTrainer.__new__(A2POTrainer)
    for k, v in dict(args=types.SimpleNamespace(beta2=beta2), model=types.SimpleNamespace(training=True),
                     _metrics={"train": defaultdict(list), "eval": defaultdict(list)}).items():
        object.__setattr__(t, k, v)
    pid = torch.arange(X).repeat_interleave(G)[:, None]
    cid = torch.tensor(inp["completions"]).reshape(-1, 1)
    object.__setattr__(t, "_get_sequence_logps", types.MethodType(
        lambda self, model, input_ids, attention_mask, logits_to_keep: _logps(theta, input_ids[:, :1], input_ids[:, 1:])[:, 0], t))
    r = torch.tensor(np.take_along_axis(np.asarray(r_table), np.asarray(inp["completions"]), 1).reshape(-1))
    b = {"input_ids": torch.cat([pid, cid], 1), "attention_mask": torch.ones(X * G, 2), "logits_to_keep": 1,
         "ref_logps": _logps(torch.tensor(inp["theta_ref"]), pid, cid)[:, 0], "rewards": r,
         "v_star": torch.tensor(v_star).repeat_interleave(G)}
    loss = t.compute_loss(None, b)
    (g,) = torch.autograd.grad(loss, theta)
    return float(loss), g.numpy().tolist()


# --------------------------------------------------------------------------- TRL's advantage code, cut out verbatim

def _block(cls, first: str, last: str) -> str:
    src = textwrap.dedent(inspect.getsource(cls._generate_and_score_completions))
    lines = src.splitlines()
    i = next(n for n, s in enumerate(lines) if s.strip().startswith(first))
    j = next(n for n in range(i, len(lines)) if lines[n].strip().startswith(last))
    return textwrap.dedent("\n".join(lines[i:j + 1]))


def grpo_advantages(rewards: np.ndarray, scale: str, num_generations: int) -> list:
    from trl import GRPOTrainer
    from trl.trainer.utils import nanstd

    code = _block(GRPOTrainer, 'if self.multi_objective_aggregation == "sum_then_normalize":',
                  "advantages = torch.nan_to_num(advantages, nan=0.0)")
    r = torch.tensor(rewards.reshape(-1, 1))
    self = types.SimpleNamespace(multi_objective_aggregation="sum_then_normalize", scale_rewards=scale,
                                 reward_weights=torch.ones(1), reward_funcs=[None])
    ns = {"self": self, "rewards_per_func": r, "device": "cpu", "num_generations": num_generations,
          "unscorable_mask": torch.isnan(r).all(dim=1), "torch": torch, "nanstd": nanstd}
    exec(code, ns)
    return ns["advantages"].numpy().tolist()


def rloo_advantages(inp, cfg: dict) -> list:
    from trl import RLOOTrainer
    from trl.trainer.utils import nanstd

    code = _block(RLOOTrainer, "rewards = (rewards_per_func * self.reward_weights", "advantages = torch.nan_to_num(advantages, nan=0.0)")
    pid = torch.arange(X).repeat_interleave(G)[:, None]
    cid = torch.tensor(inp["completions"]).reshape(-1, 1)
    r = torch.tensor(np.asarray(inp["rewards"]).reshape(-1, 1))
    self = types.SimpleNamespace(reward_weights=torch.ones(1), reward_clip_range=cfg.get("reward_clip_range"),
                                 beta=cfg["beta"], normalize_advantages=cfg.get("normalize_advantages", False))
    ns = {"self": self, "rewards_per_func": r, "device": "cpu", "num_generations": G, "torch": torch, "nanstd": nanstd,
          "unscorable_mask": torch.isnan(r).all(dim=1), "gather": lambda t: t, "completion_mask": torch.ones_like(cid),
          "old_per_token_logps": _logps(torch.tensor(inp["theta"]), pid, cid),
          "ref_per_token_logps": _logps(torch.tensor(inp["theta_ref"]), pid, cid)}
    exec(code, ns)
    return ns["advantages"].numpy().tolist()


# --------------------------------------------------------------------------- the table

LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo")


def grpo_configs():
    for lt in LOSS_TYPES:
        for lv in ("token", "sequence"):
            for bc in (True, False):
                yield {"loss_type": lt, "importance_sampling_level": lv, "use_bias_correction_kl": bc, "beta": BETA,
                       "epsilon": 0.2, "epsilon_high": 0.28}
    for lt in ("grpo", "dapo", "luspo"):
        yield {"loss_type": lt, "importance_sampling_level": "token", "use_bias_correction_kl": True, "beta": BETA,
               "epsilon": 0.2, "epsilon_high": 0.28, "delta": 1.4}
    yield {"loss_type": "cispo", "importance_sampling_level": "token", "use_bias_correction_kl": True, "beta": BETA,
           "epsilon": 0.2, "epsilon_high": 1.3}
    yield {"loss_type": "sapo", "importance_sampling_level": "token", "use_bias_correction_kl": True, "beta": BETA,
           "sapo_temperature_pos": 0.7, "sapo_temperature_neg": 2.5}
    yield {"loss_type": "vespo", "importance_sampling_level": "token", "use_bias_correction_kl": False, "beta": 0.0,
           "vespo_k_pos": 1.5, "vespo_lambda_pos": 2.0, "vespo_k_neg": 4.0, "vespo_lambda_neg": 1.0}
    yield {"loss_type": "dapo", "importance_sampling_level": "token", "use_bias_correction_kl": True, "beta": 0.0}
    for lt in ("dapo", "grpo", "cispo"):  # the entropy bonus (bandit rows only)
        yield {"loss_type": lt, "importance_sampling_level": "token", "use_bias_correction_kl": True, "beta": BETA,
               "entropy_coef": 0.05}


def config_fields() -> dict:
    from trl import GRPOConfig, RLOOConfig

    targs = next(c for c in GRPOConfig.__mro__ if c.__name__ == "TrainingArguments")  # transformers', via TRL
    base = {f.name for f in dataclasses.fields(targs)}
    out = {}
    for name, C in (("grpo", GRPOConfig), ("rloo", RLOOConfig)):
        d = {}
        for f in dataclasses.fields(C):
            if f.name in base:
                continue
            v = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
            d[f.name] = v
        out[name] = d
    return out


def build() -> dict:
    import trl

    inp = make_inputs()
    rw = np.asarray(inp["rewards"])
    adv = {"one_group_per_batch": {s: [grpo_advantages(rw[x], s, G) for x in range(X)] for s in ("group", "batch", "none")},
           "whole_batch": {s: grpo_advantages(rw, s, G) for s in ("group", "batch", "none")}}
    rloo_cfgs = [{"beta": 0.05}, {"beta": 0.0}, {"beta": 0.05, "reward_clip_range": [0.5, 2.0]},
                 {"beta": 0.05, "normalize_advantages": True}]
    adv_rloo = [{"config": c, "advantages": rloo_advantages(inp, c)} for c in rloo_cfgs]
    A = np.ravel(adv["whole_batch"]["group"]).tolist()
    rows = []
    for cfg in grpo_configs():
        for old in (False, True):
            val, grad = grpo_loss(inp, cfg, A, old)
            rows.append({"trainer": "GRPOTrainer", "config": cfg, "off_policy": old, "value": val, "grad": grad})
    A_r = np.ravel(adv_rloo[0]["advantages"]).tolist()
    for cfg in ({"beta": 0.05, "epsilon": 0.2}, {"beta": 0.05, "epsilon": 0.2, "epsilon_high": 0.28}):
        for old in (False, True):
            val, grad = rloo_loss(inp, cfg, A_r, old)
            rows.append({"trainer": "RLOOTrainer", "config": cfg, "off_policy": old, "value": val, "grad": grad})
    ti = make_tree_inputs()
    tree_rows = []
    for cfg in (c for c in grpo_configs() if "entropy_coef" not in c):
        for old in (False, True):
            val, grad = grpo_tree_loss(ti, cfg, old)
            tree_rows.append({"trainer": "GRPOTrainer", "config": cfg, "off_policy": old, "value": val, "grad": grad})
    a2po_rows = []
    rng = np.random.default_rng(SEED + 2)
    for beta2, beta1 in ((0.3, 0.5), (1e-3, 0.5)):
        v_star = (rng.normal(0.0, 1.0, X)).tolist()  # any per-prompt constant (A*-PO's V* estimate)
        r_table = rng.normal(0.0, 1.0, (X, V)).tolist()  # r(x, y): one reward per (prompt, completion)
        val, grad = a2po_loss(inp, beta2, v_star, r_table)
        a2po_rows.append({"trainer": "A2POTrainer", "config": {"beta2": beta2, "beta1": beta1}, "v_star": v_star,
                          "reward_table": r_table, "value": val, "grad": grad})
    return {"generator": "tests/conformance/make_trl_onpolicy_reference.py",
            "versions": {"trl": trl.__version__, "torch": torch.__version__, "numpy": np.__version__},
            "dtype": "float64 (torch.set_default_dtype)", "inputs": inp,
            "loss_advantages": "whole_batch.group (the advantages fed to every GRPOTrainer row); RLOO rows: rloo_advantages[0]",
            "advantages": adv, "rloo_advantages": adv_rloo, "rows": rows, "config_fields": config_fields(),
            "tree": TREE, "tree_inputs": ti, "tree_rows": tree_rows,
            "a2po_rows": a2po_rows, "a2po_rewards": "row reward_table[x][y] per completion, one completion per row"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=OUT)
    ap.add_argument("--check", action="store_true", help="recompute and compare with --out (1e-12) instead of writing")
    a = ap.parse_args(argv)
    data = build()
    if a.check:
        with open(a.out) as fh:
            old = json.load(fh)
        pairs = list(zip(old["rows"] + old["tree_rows"] + old["a2po_rows"], data["rows"] + data["tree_rows"] + data["a2po_rows"]))
        bad = [i for i, (p, q) in enumerate(pairs)
               if abs(p["value"] - q["value"]) > 1e-12 or np.max(np.abs(np.subtract(p["grad"], q["grad"]))) > 1e-12]
        if bad or len(pairs) != len(data["rows"]) + len(data["tree_rows"]) + len(data["a2po_rows"]):
            print(f"differs from TRL {data['versions']['trl']}: rows {bad[:10]}", file=sys.stderr)
            return 1
        print(f"{len(pairs)} rows agree with TRL {data['versions']['trl']}")
        return 0
    with open(a.out, "w") as fh:
        json.dump(data, fh, indent=1, default=lambda o: list(o) if isinstance(o, tuple) else str(o))
        fh.write("\n")
    print(f"wrote {len(data['rows'])} + {len(data['tree_rows'])} tree rows to {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
