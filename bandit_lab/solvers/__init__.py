"""Exact answers: the float64 Newton solvers, the constrained solvers and the closed forms.

``solver`` (dense / matrix-free Newton on an objective) → ``exact_solvers`` (simplex, LP/QP and
self-consistent solvers for losses Newton cannot take) ; ``f_rlhf`` (the f-RLHF optimum, NumPy)
→ ``oracles`` (which closed form a registered loss should reach) ; ``thresholding_loss`` (Kong
et al. §5.2's one-dimensional loss in closed form). Built on :mod:`bandit_lab.core`.
Importing this package imports nothing (no JAX): modules load on use.
"""
