"""Token-level preference optimisation on exact token trees (issue 5).

A sequence response space is one more problem + parameterization of the core sandbox:
:func:`make_tree_problem` builds a core :class:`~bandit_lab.core.problems.Problem` over all sequences
of a :class:`TokenTree`; :class:`TokenTreeParam` is a policy with per-state logits; the token
losses (TDPO1/2, Ra-DPO1/2, UE-DPO) live in :mod:`bandit_lab.losses.token`; exact soft
dynamic programming and nested-CVaR recursions in :mod:`bandit_lab.tokens.dp`.
"""
from bandit_lab.tokens.dp import lemma34_policy, nested_values, soft_dp
from bandit_lab.tokens.param import TokenTreeParam, make_param, ue_arrays_from_perturbed, ue_masks
from bandit_lab.tokens.risk import cvar, cvar_np
from bandit_lab.tokens.tree import TokenTree, TreeProblem, make_tree_problem, random_tree_problem

__all__ = [
    "TokenTree", "TreeProblem", "make_tree_problem", "random_tree_problem", "TokenTreeParam", "make_param",
    "ue_masks", "ue_arrays_from_perturbed", "soft_dp", "nested_values", "lemma34_policy", "cvar", "cvar_np",
]
