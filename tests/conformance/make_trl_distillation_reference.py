"""Regenerate ``tests/data/trl_distillation_reference.json`` from TRL 1.16's *own* distillation code.

    python -m pip install -e ".[trl]"        # torch==2.13.0 (CPU wheel) and trl==1.16.0
    python tests/conformance/make_trl_distillation_reference.py [--out PATH]

No model, no generation. What is called, verbatim:

- ``trl.experimental.gkd.GKDTrainer.generalized_jsd_loss`` (a staticmethod; pure torch, float64 here:
  ``torch.set_default_dtype(torch.float64)`` and float64 logits) on a bandit (student logits θ[x],
  one position per prompt, ``reduction="batchmean"``) and on the token tree V = 3, T = 2 with an end
  token (the student's per-state logits θ[x, s] gathered along given completions, ``labels = -100``
  past a completion's end): the loss value and its gradient w.r.t. θ, for β ∈ {0, 0.3, 0.5, 1} ×
  temperature ∈ {1, 0.7, 2};
- ``trl.trainer.distillation_trainer._chunked_divergence_loss`` (``DistillationTrainer._compute_loss``'s
  loss: ``ChunkedDivergenceFunction``, which computes in **float32** whatever its inputs) with one-hot
  hidden states and an ``lm_head`` weight holding the logits table (``W[v, h] = θ[h, v]``), so its
  weight gradient is the gradient in θ: same grid, bandit and tree;
- ``dataclasses.fields`` of ``DistillationConfig`` and ``GKDConfig``: the defaults of ``beta``,
  ``temperature``, ``lmbda``, ``seq_kd`` (tests/test_distillation_conformance.py checks bandit-lab's).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import warnings

import numpy as np
import torch

torch.set_default_dtype(torch.float64)
warnings.simplefilter("ignore")

X, V = 3, 4
SEED = 20261205
OUT = os.path.join(os.path.dirname(__file__), "..", "data", "trl_distillation_reference.json")
GRID = [(b, t) for b in (0.0, 0.3, 0.5, 1.0) for t in (1.0, 0.7, 2.0)]
# the token tree of bandit_lab.tokens.tree.TokenTree.create(3, 2, eos=True): 3 states, 7 responses
TREE_V, TREE_T = 3, 2


def _tree():
    """States (), (0,), (1,); responses in DFS order (state at each position, mask)."""
    states = [(), (0,), (1,)]
    seqs = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (2,)]
    states_at = [[states.index(y[:t]) if t < len(y) else 0 for t in range(TREE_T)] for y in seqs]
    mask = [[t < len(y) for t in range(TREE_T)] for y in seqs]
    return states, seqs, states_at, mask


def config_fields() -> dict:
    from trl import DistillationConfig
    from trl.experimental.gkd import GKDConfig

    out = {}
    for name, cls, keys in (("DistillationConfig", DistillationConfig, ("beta", "temperature")),
                            ("GKDConfig", GKDConfig, ("beta", "temperature", "lmbda", "seq_kd"))):
        f = {x.name: x.default for x in dataclasses.fields(cls)}
        out[name] = {k: f[k] for k in keys}
        out[name]["has_lmbda"] = "lmbda" in f
    return out


def gkd_rows(theta, teacher, positions, valid) -> list:
    """generalized_jsd_loss on rows of positions: ``positions [B, T]`` index rows of the flattened
    logits table (``theta.reshape(-1, V)``), ``valid [B, T]``."""
    from trl.experimental.gkd import GKDTrainer

    rows = []
    for beta, tau in GRID:
        th = torch.tensor(theta, requires_grad=True)
        flat = th.reshape(-1, th.shape[-1])
        s_logits = flat[torch.tensor(positions)]
        t_logits = torch.tensor(teacher).reshape(-1, th.shape[-1])[torch.tensor(positions)]
        labels = torch.where(torch.tensor(valid), 0, -100)
        loss = GKDTrainer.generalized_jsd_loss(s_logits, t_logits, labels=labels, beta=beta, temperature=tau)
        (g,) = torch.autograd.grad(loss, th)
        rows.append({"beta": beta, "temperature": tau, "value": float(loss), "grad": g.numpy().tolist()})
    return rows


def chunked_rows(theta, teacher, positions, valid) -> list:
    """DistillationTrainer's loss (``_chunked_divergence_loss``, float32 kernel) with hidden states
    one-hot in the table's rows and lm_head weights = the tables (transposed)."""
    from trl.trainer.distillation_trainer import _chunked_divergence_loss

    rows = []
    H = int(np.prod(np.shape(theta)[:-1]))
    Vv = np.shape(theta)[-1]
    onehot = torch.eye(H, dtype=torch.float32)[torch.tensor(positions)]  # [B, T, H]
    for beta, tau in GRID:
        W = torch.tensor(np.reshape(theta, (H, Vv)).T.copy(), dtype=torch.float32, requires_grad=True)  # [V, H]
        Wt = torch.tensor(np.reshape(teacher, (H, Vv)).T.copy(), dtype=torch.float32)
        loss, _, _ = _chunked_divergence_loss(onehot, onehot, W, Wt, torch.tensor(valid, dtype=torch.float32), beta,
                                              temperature=tau)
        (g,) = torch.autograd.grad(loss, W)
        rows.append({"beta": beta, "temperature": tau, "value": float(loss),
                     "grad": g.T.reshape(np.shape(theta)).double().numpy().tolist()})
    return rows


def build() -> dict:
    import trl

    rng = np.random.default_rng(SEED)
    theta = rng.normal(0, 1.5, (X, V))
    teacher = rng.normal(0, 1.5, (X, V))
    bandit_pos = [[x] for x in range(X)]  # one position (the prompt) per completion
    bandit_valid = [[True] for _ in range(X)]
    states, seqs, states_at, mask = _tree()
    S = len(states)
    t_theta = rng.normal(0, 1.5, (X, S, TREE_V))
    t_teacher = rng.normal(0, 1.5, (X, S, TREE_V))
    # completions: 5 per prompt, drawn once (fixed here; any batch of completions works)
    comp = [[int(k) for k in rng.integers(0, len(seqs), 5)] for _ in range(X)]
    pos = [[x * S + states_at[k][t] for t in range(TREE_T)] for x in range(X) for k in comp[x]]
    val = [[mask[k][t] for t in range(TREE_T)] for x in range(X) for k in comp[x]]
    return {"generator": "tests/conformance/make_trl_distillation_reference.py",
            "versions": {"trl": trl.__version__, "torch": torch.__version__, "numpy": np.__version__},
            "config_fields": config_fields(),
            "bandit": {"theta": theta.tolist(), "teacher_logits": teacher.tolist()},
            "tree": {"vocab": TREE_V, "horizon": TREE_T, "eos": True, "states": states, "sequences": seqs,
                     "theta": t_theta.tolist(), "teacher_state_logits": t_teacher.tolist(), "completions": comp},
            "gkd": {"dtype": "float64", "trl": trl.__version__,
                    "bandit": gkd_rows(theta, teacher, bandit_pos, bandit_valid),
                    "tree": gkd_rows(t_theta, t_teacher, pos, val)},
            "distillation": {"dtype": "float32 (ChunkedDivergenceFunction computes in float32)", "trl": trl.__version__,
                             "bandit": chunked_rows(theta, teacher, bandit_pos, bandit_valid),
                             "tree": chunked_rows(t_theta, t_teacher, pos, val)}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=OUT)
    a = ap.parse_args(argv)
    data = build()
    with open(a.out, "w") as fh:
        json.dump(data, fh, indent=1)
        fh.write("\n")
    print(f"wrote {sum(len(v) for k in ('gkd', 'distillation') for v in data[k].values() if isinstance(v, list))} rows to {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
