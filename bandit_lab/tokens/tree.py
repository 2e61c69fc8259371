"""Exact token trees: every sequence a response, every prefix a state.

A :class:`TokenTree` is pure structure (vocabulary ``V``, horizon ``T``, optional end token).
States are the prefixes that can still be extended, in breadth-first order (the root ``[x]``
first, so every child has a larger index than its parent); responses are the complete
sequences, in depth-first order. Without an end token every response has exactly ``T`` tokens
(``K = V^T``, ``S = (V^T − 1)/(V − 1)``); with ``eos=True`` the last vocabulary entry ``V − 1``
ends a response early, and a response is cut at ``T`` tokens.

Index arrays link the views (the same for every prompt): response ``k`` takes token
``a = tokens[k, t]`` at state ``s = states_at[k, t]`` for ``t < length[k]`` (``mask[k, t]``), so
- ``log π(y|x) = Σ_t log π(y_t|s_t)`` is a gather and a masked sum over ``t``
  (:func:`along_tokens`, the dense equivalent is ``path @ logπ_state.reshape(-1)``);
- a sequential per-state quantity (Ra-DPO's D_SeqKL, D_SeqRR) summed over the states a response
  visits is :func:`along_states` (dense: ``visits @ f_state``).
Cost and memory are O(K·T), so trees of 10⁴–10⁵ sequences fit; the dense 0/1 matrices ``path
[K, S·V]`` and ``visits [K, S]`` are still available (built on first use) for small trees.

:class:`TreeProblem` wraps an ordinary core :class:`~bandit_lab.core.problems.Problem` whose
``pi_ref`` is the sequence probability under the per-state reference policy and whose
preferences come from a sequence reward ``r(x, y) = Σ_t R(s_t, a_t)`` (Bradley–Terry), a given
``r(x, y)``, or any matrix over sequences. Everything downstream (data, losses, trainer, exact
solver) is the core machinery; only the parameterization (:mod:`bandit_lab.tokens.param`) knows
about the tree.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax.numpy as jnp
import numpy as np

from bandit_lab.errors import BanditError
from bandit_lab.core.problems import Problem

MAX_RESPONSES = 1 << 17  # enumeration limit; pairwise losses are bounded separately (K² grids, data.population)


@dataclasses.dataclass(frozen=True, eq=False)
class TokenTree:
    vocab: int
    horizon: int
    eos: bool
    states: tuple  # prefixes (tuples of tokens), BFS order
    sequences: tuple  # responses (tuples of tokens), DFS order
    child: np.ndarray  # [S, V] index of the next state, −1 when (s, a) ends a response
    leaf: np.ndarray  # [S, V] index of the response (s, a) completes, −1 otherwise
    depth: np.ndarray  # [S] prefix length
    tokens: np.ndarray  # [K, T] token at each position (0 past the end)
    states_at: np.ndarray  # [K, T] state at each position (0 past the end)
    mask: np.ndarray  # [K, T] position t < len(y_k)

    @property
    def flat_index(self) -> np.ndarray:
        """``[K, T]`` index ``s·V + a`` of every (state, token) step into a flattened ``[S·V]``."""
        return self.states_at * self.vocab + self.tokens

    @functools.cached_property
    def path(self) -> np.ndarray:
        """Dense ``[K, S·V]`` 0/1: response ``k`` takes token ``a`` at state ``s`` (small trees)."""
        P = np.zeros((self.n_responses, self.n_states * self.vocab))
        k, t = np.nonzero(self.mask)
        P[k, self.flat_index[k, t]] = 1.0
        return P

    @functools.cached_property
    def visits(self) -> np.ndarray:
        """Dense ``[K, S]`` 0/1: response ``k`` passes through state ``s`` (small trees)."""
        M = np.zeros((self.n_responses, self.n_states))
        k, t = np.nonzero(self.mask)
        M[k, self.states_at[k, t]] = 1.0
        return M

    @property
    def n_states(self) -> int:
        return len(self.states)

    @property
    def n_responses(self) -> int:
        return len(self.sequences)

    @classmethod
    def create(cls, vocab: int, horizon: int, eos: bool = False) -> "TokenTree":
        V, T = int(vocab), int(horizon)
        if V < 2 or T < 1:
            raise BanditError(f"a token tree needs vocab ≥ 2 and horizon ≥ 1; got V={vocab}, T={horizon}")
        if eos and V < 3:
            raise BanditError("with an end token the vocabulary needs ≥ 3 entries (the last one is the end token)")
        end = V - 1 if eos else None
        # count first, so an oversized request fails before enumerating anything
        if eos:
            n_seq = sum((V - 1) ** (t - 1) for t in range(1, T)) + V * (V - 1) ** (T - 1)
        else:
            n_seq = V**T
        if n_seq > MAX_RESPONSES:
            raise BanditError(f"V={V}, T={T}{' with end token' if eos else ''} has {n_seq} responses; exact enumeration "
                              f"is limited to {MAX_RESPONSES} (dense K×K triple grids)")
        states: list[tuple] = [()]
        index = {(): 0}
        head = 0
        while head < len(states):
            s = states[head]
            head += 1
            if len(s) + 1 >= T:
                continue
            for a in range(V):
                if a == end:
                    continue
                index[s + (a,)] = len(states)
                states.append(s + (a,))
        S = len(states)
        child = -np.ones((S, V), dtype=np.int64)
        leaf = -np.ones((S, V), dtype=np.int64)
        seqs: list[tuple] = []

        def dfs(si: int) -> None:
            s = states[si]
            for a in range(V):
                nxt = s + (a,)
                if a == end or len(nxt) == T:
                    leaf[si, a] = len(seqs)
                    seqs.append(nxt)
                else:
                    child[si, a] = index[nxt]
                    dfs(index[nxt])

        dfs(0)
        K = len(seqs)
        assert K == n_seq
        tokens = np.zeros((K, T), dtype=np.int32)
        states_at = np.zeros((K, T), dtype=np.int32)
        mask = np.zeros((K, T), dtype=bool)
        for k, y in enumerate(seqs):
            for t, a in enumerate(y):
                tokens[k, t] = a
                states_at[k, t] = index[y[:t]]
                mask[k, t] = True
        depth = np.array([len(s) for s in states], dtype=np.int64)
        return cls(V, T, bool(eos), tuple(states), tuple(seqs), child, leaf, depth, tokens, states_at, mask)

    # ---- views between sequence and per-state quantities (numpy, float64)
    def seq_logp(self, logp_state: np.ndarray) -> np.ndarray:
        """``[X, S, V]`` per-state log-probs → ``[X, K]`` sequence log-probs."""
        X = logp_state.shape[0]
        g = np.asarray(logp_state).reshape(X, -1)[:, self.flat_index]
        return np.where(self.mask, g, 0.0).sum(-1)

    def seq_sum(self, token_values: np.ndarray) -> np.ndarray:
        """``Σ_t R(s_t, a_t)`` along every response: ``[X, S, V]`` → ``[X, K]``."""
        return self.seq_logp(token_values)

    def conditionals(self, seq_policy: np.ndarray) -> np.ndarray:
        """Per-state policy ``π(a|s) = P(prefix s·a)/P(prefix s)`` of a sequence distribution
        ``[X, K]`` (exact inverse of :meth:`seq_logp` for strictly positive policies)."""
        P = np.asarray(seq_policy, dtype=np.float64)
        X = P.shape[0]
        k, t = np.nonzero(self.mask)
        sa, st = self.flat_index[k, t], self.states_at[k, t]
        mass_sa = np.stack([np.bincount(sa, P[x, k], self.n_states * self.vocab) for x in range(X)])
        mass_s = np.stack([np.bincount(st, P[x, k], self.n_states) for x in range(X)])
        return mass_sa.reshape(X, self.n_states, self.vocab) / mass_s[..., None]

    def prefix_reward(self, token_reward: np.ndarray) -> np.ndarray:
        """``R_{1:t−1}`` of every state (the reward collected on the way to it): ``[X, S]``."""
        X = token_reward.shape[0]
        out = np.zeros((X, self.n_states))
        for s in range(self.n_states):  # BFS order: parents first
            for a in range(self.vocab):
                c = self.child[s, a]
                if c >= 0:
                    out[:, c] = out[:, s] + token_reward[:, s, a]
        return out


def along_tokens(per_step, c: dict):
    """JAX: ``Σ_t f(s_t, a_t)`` along every response, ``[X, S·V]`` (or ``[X, S, V]``) → ``[X, K]``,
    from the index arrays in a token-tree parameterization's ``consts()`` (``c``)."""
    f = per_step.reshape(per_step.shape[0], -1)
    return jnp.sum(jnp.where(c["mask"], f[:, c["flat_index"]], 0.0), -1)


def to_slots(per_response, c: dict, n_slots: int):
    """JAX, the transpose of :func:`along_tokens`: per-response values ``[X, K]`` added onto the
    (state, token) slots each response takes, ``[X, S·V]`` (dense: ``values @ path``)."""
    vals = jnp.where(c["mask"], per_response[:, :, None], 0.0)  # [X, K, T]
    out = jnp.zeros((per_response.shape[0], n_slots), per_response.dtype)
    return out.at[:, c["flat_index"]].add(vals)


def along_states(per_state, c: dict):
    """JAX: ``Σ_t f(s_t)`` over the states every response visits, ``[X, S]`` → ``[X, K]``."""
    return jnp.sum(jnp.where(c["mask"], per_state[:, c["states_at"]], 0.0), -1)


def _per_context(a: Any, name: str, X: int, shape: tuple) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.shape == shape:
        arr = np.broadcast_to(arr, (X,) + shape).copy()
    if arr.shape != (X,) + shape or not np.all(np.isfinite(arr)):
        raise BanditError(f"{name} must be finite with shape {(X,) + shape} or {shape}; got {np.shape(a)}")
    return arr


def log_softmax_np(z: np.ndarray) -> np.ndarray:
    m = z.max(-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))


@dataclasses.dataclass(frozen=True, eq=False)
class TreeProblem:
    """A core :class:`Problem` over the responses of a :class:`TokenTree`, plus the per-state
    views: reference log-probs ``ref_logp [X, S, V]`` and, when preferences come from token
    rewards, ``token_reward [X, S, V]`` (``None`` otherwise)."""

    tree: TokenTree
    problem: Problem
    ref_logp: np.ndarray
    token_reward: np.ndarray | None

    @property
    def seq_reward(self) -> np.ndarray | None:
        return self.problem.reward


def make_tree_problem(
    vocab: int,
    horizon: int,
    *,
    eos: bool = False,
    contexts: int = 1,
    ref_logits: Any = None,
    token_reward: Any = None,
    seq_reward: Any = None,
    matrix: Any = None,
    pairs: Any = "uniform",
    context_weight: Any = None,
    tree: TokenTree | None = None,
) -> TreeProblem:
    """Build a tree problem. The reference policy is ``softmax(ref_logits)`` per state
    (``[X, S, V]`` or ``[S, V]``; uniform when omitted). Exactly one preference model:
    ``token_reward`` (``R(s, a)``, sequence reward ``r = Σ_t R``, Bradley–Terry), ``seq_reward``
    (``r(x, y)`` as ``[X, K]``) or ``matrix`` (``[X, K, K]`` over sequences, any P with P+Pᵀ=1)."""
    tree = tree or TokenTree.create(vocab, horizon, eos)
    X = int(contexts)
    if X < 1:
        raise BanditError("contexts must be ≥ 1")
    S, V, K = tree.n_states, tree.vocab, tree.n_responses
    logits = np.zeros((X, S, V)) if ref_logits is None else _per_context(ref_logits, "ref_logits", X, (S, V))
    ref_logp = log_softmax_np(logits)
    pi_ref = np.exp(tree.seq_logp(ref_logp))
    pi_ref = pi_ref / pi_ref.sum(-1, keepdims=True)  # exact up to roundoff; renormalise the last ulp
    given = [n for n, v in (("token_reward", token_reward), ("seq_reward", seq_reward), ("matrix", matrix)) if v is not None]
    if len(given) != 1:
        raise BanditError("give exactly one preference model: token_reward, seq_reward or matrix")
    R = None
    if token_reward is not None:
        R = _per_context(token_reward, "token_reward", X, (S, V))
        problem = Problem.create(pi_ref, reward=tree.seq_sum(R), pairs=pairs, context_weight=context_weight)
    elif seq_reward is not None:
        r = _per_context(seq_reward, "seq_reward", X, (K,))
        problem = Problem.create(pi_ref, reward=r, pairs=pairs, context_weight=context_weight)
    else:
        problem = Problem.create(pi_ref, matrix=_per_context(matrix, "matrix", X, (K, K)), pairs=pairs, context_weight=context_weight)
    return TreeProblem(tree, problem, ref_logp, R)


def random_tree_problem(rng: np.random.Generator, *, vocab: int | None = None, horizon: int | None = None,
                        eos: bool | None = None, contexts: int | None = None, pairs: str | None = None,
                        reward_scale: float = 1.0, ref_scale: float = 1.0) -> TreeProblem:
    """A random tree problem (NumPy generator ⇒ reproducible): V ∈ {2, 3}, T ∈ {1, 2, 3}
    (V = 3 with an end token half the time), 1 or 2 prompts, Gaussian reference logits and
    token rewards, uniform or reference pair law. Few distinct shapes on purpose (compile reuse)."""
    V = int(rng.choice([2, 3])) if vocab is None else vocab
    T = int(rng.choice([1, 2, 3])) if horizon is None else horizon
    e = (V >= 3 and T >= 2 and bool(rng.random() < 0.5)) if eos is None else eos
    X = int(rng.choice([1, 2])) if contexts is None else contexts
    tree = TokenTree.create(V, T, e)
    S = tree.n_states
    return make_tree_problem(V, T, eos=e, contexts=X, tree=tree,
                             ref_logits=rng.normal(0, ref_scale, (X, S, V)),
                             token_reward=rng.normal(0, reward_scale, (X, S, V)),
                             pairs=pairs or str(rng.choice(["uniform", "reference"])))
