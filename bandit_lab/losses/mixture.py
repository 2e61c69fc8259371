"""Mixtures of registered losses — TRL's ``DPOConfig(loss_type=[...], loss_weights=[...])`` — with
TRL's two batch-level options, WPO weighting (``use_weighting``) and the f-divergence of the
implicit reward (``f_divergence_type``), as one general mechanism.

``mixture`` (static option ``terms``: any registered pairwise losses, as a list or ``"a+b+c"``)
is ``Σ_t w_t·L_t`` with float weights ``w_<term>`` (sweepable; TRL's ``loss_weights``, default 1).
Its float hyperparameters are the union of the terms' (a name shared by several terms is *one*
hyperparameter, as TRL's single ``beta``/``label_smoothing`` serve every loss type; where the
terms' defaults disagree, the first term's default is used). Named instances:

- ``mpo`` — Mixed Preference Optimization, TRL's example
  ``loss_type=["sigmoid", "bco_pair", "sft"]``, ``loss_weights=[0.8, 0.2, 1.0]`` (Wang et al. 2024,
  "Enhancing the Reasoning Ability of Multimodal LLMs via Mixed Preference Optimization", §3.2:
  preference + quality (BCO) + generation (SFT) losses);
- ``wpo`` — DPO with WPO weighting (Zhou et al. 2024, "WPO: Enhancing RLHF with Weighted
  Preference Optimization", Eq. 2 and the aligned weights of §3.2).

**WPO weighting** (``use_weighting``): every pair is weighted by ``w(y_w)·w(y_l)``, detached, with
``w(y) = exp((1/|y|) Σ_t [log π(y_t|s_t) − log Σ_v π(v|s_t)²])`` — TRL 1.16's "aligned" weight
(``log_sum_sq_probs``); for single-token responses ``w(y) = π(y)/Σ_v π(v)²``. For a pairwise loss
``E_D[w_w w_l ℓ]`` is the loss on the reweighted data ``D·w_w·w_l``, which is how it is computed
here. TRL multiplies the already-averaged SFT scalar by the per-pair weights, so its weighted SFT
term is ``E_D[w_w w_l]·E_D[−log π_w]`` (static ``sft_weighting="trl"``, default); ``"pair"`` gives
``E_D[w_w w_l·(−log π_w)]``. Sorting losses (``aot*``) reject weighting, as TRL does (the sort
would misalign the per-pair weights).

**f-divergence** (``divergence``, TRL's ``f_divergence_type``): every term that reads the
reference sees the *score* ``s = f'(π/π_ref) − f'(1)`` in place of the log-ratio ``h`` (TRL's
``chosen_scores``: ``1 − e^{−h}`` for forward KL, ``log 2 + log σ(h)`` for JS, α-divergence with
our α = 1 − TRL's coefficient). Only losses of the difference ``s_w − s_l`` accept it — TRL's rule,
and a theorem: the f-RLHF optimum has ``β f'(π/π_ref) = r − λ(x)``, and the context's multiplier
``λ(x)`` cancels only in differences. Per-response losses (NCA, BCO, SPPO, APO, KTO) pin each score
on its own, so ``λ(x)`` stays and the f-RLHF optimum is not their fixed point; ``bandit-lab
verify`` checks both halves (``checks/fdiv_table.py``). Reference-free terms (SFT, SimPO, CPO) do
not read π_ref and are unaffected (TRL allows ``sft``).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from bandit_lab.core import divergences
from bandit_lab.core.data import PreferenceData
from bandit_lab.errors import BanditError
from bandit_lab.losses import LossInputs, LossSpec, bind, get, pair_grid, register
from bandit_lab.losses import zoo

SFT_WEIGHTING = ("trl", "pair")
SORTED = ("aot", "aot_unpaired")
_NOT_TERMS = ("mixture", "mpo", "wpo", "rlhf")


def scores(inputs: LossInputs, divergence: str, f_alpha) -> LossInputs:
    """The inputs with ``log π`` replaced so that ``log π − log π_ref = f'(π/π_ref) − f'(1)``
    (TRL's f-divergence scores); the identity for reverse KL."""
    if divergence == "reverse_kl":
        return inputs
    h = inputs.logp - inputs.logp_ref
    s = divergences.fprime(divergence, h, f_alpha) - divergences.fprime(divergence, jnp.zeros(()), f_alpha)
    return inputs._replace(logp=inputs.logp_ref + s)


def wpo_log_weights(inputs: LossInputs) -> jax.Array:
    """``log w(y)`` of WPO's aligned weight, ``[X, K]``, detached (see the module docstring)."""
    lp = jax.lax.stop_gradient(inputs.logp)
    aux = inputs.aux
    if aux is not None and "logp_state" in aux:
        ls = jax.lax.stop_gradient(aux["logp_state"])  # [X, S, V]
        lss = jax.nn.logsumexp(2.0 * ls, axis=-1)  # log Σ_v π(v|s)²  [X, S]
        from bandit_lab.tokens.tree import along_states

        lens = jnp.sum(jnp.where(aux["mask"], 1.0, 0.0), -1)  # [K] tokens per response
        return (lp - along_states(lss, aux)) / lens
    return lp - jax.nn.logsumexp(2.0 * lp, axis=-1, keepdims=True)


def mixture(inputs: LossInputs, hp: dict, *, terms: tuple = ("dpo",), use_weighting: bool = False,
            divergence: str = "reverse_kl", sft_weighting: str = "trl") -> jax.Array:
    """``Σ_t w_t·L_t`` over the registered losses ``terms`` (module docstring)."""
    data = inputs.data
    pair_w = None
    if use_weighting:
        lw = wpo_log_weights(inputs)
        a, b = pair_grid(lw)
        pair_w = jax.lax.stop_gradient(jnp.exp(a + b))
        weighted = inputs._replace(data=PreferenceData(data.weight * pair_w))
    total = 0.0
    for name in terms:
        spec = get(name)
        fn = bind(spec, spec.static)
        inp = weighted if use_weighting else inputs
        if name == "sft" and use_weighting and sft_weighting == "trl":
            val = fn(inputs, hp) * jnp.sum(data.weight * pair_w)
        else:
            if name not in zoo.REFERENCE_FREE:
                inp = scores(inp, divergence, hp.get("f_alpha", 0.5))
            val = fn(inp, hp)
        total = total + hp[f"w_{name}"] * val
    return total


def _terms(static) -> tuple:
    t = static.get("terms", ("dpo",))
    if isinstance(t, str):
        t = tuple(x.strip() for x in t.split("+") if x.strip())
    try:
        t = tuple(str(x) for x in t)
    except TypeError:
        raise BanditError("mixture terms must be a list of loss names or 'a+b+c'") from None
    if not t:
        raise BanditError("mixture terms must name at least one loss")
    if len(set(t)) != len(t):
        raise BanditError(f"mixture terms must be distinct; got {list(t)}")
    for name in t:
        spec = get(name)
        if name in _NOT_TERMS or spec.kind != "pairwise" or spec.state_init is not None:
            raise BanditError(f"mixture term {name!r} is not a pairwise preference loss")
    return t


def _configure(static):
    static = dict(static)
    static["terms"] = _terms(static)
    static["use_weighting"] = bool(static.get("use_weighting", False))
    hp: dict = {}
    for name in static["terms"]:
        for k, v in get(name).defaults.items():
            hp.setdefault(k, v)
    for name in static["terms"]:
        hp[f"w_{name}"] = 1.0
    hp.setdefault("f_alpha", 0.5)
    return static, hp


def _check(hp, static):
    div = static.get("divergence", "reverse_kl")
    divergences.check(div, hp.get("f_alpha"))
    if static.get("sft_weighting") not in SFT_WEIGHTING:
        raise BanditError(f"sft_weighting must be one of {', '.join(SFT_WEIGHTING)}; got {static.get('sft_weighting')!r}")
    for name in static["terms"]:
        spec = get(name)
        if hp[f"w_{name}"] < 0 or not jnp.isfinite(hp[f"w_{name}"]):
            raise BanditError(f"w_{name} must be ≥ 0; got {hp[f'w_{name}']}")
        if spec.check is not None:
            spec.check({k: hp[k] for k in spec.defaults}, spec.static)
        if static["use_weighting"] and name in SORTED:
            raise BanditError(f"WPO weighting is not defined for {name!r}: it sorts pairs across the batch, "
                              "which misaligns the per-pair weights (TRL raises too)")
        if div != "reverse_kl" and name not in zoo.DIFFERENCE_BASED and name not in zoo.REFERENCE_FREE:
            raise BanditError(
                f"{name!r} has no f-divergence generalisation: the f-RLHF optimum satisfies β·f'(π/π_ref) = r − λ(x), and "
                f"the context's multiplier λ(x) cancels only in chosen-minus-rejected differences; {name!r} reads each "
                "log-ratio on its own (or sorts them), so its fixed point is not the f-RLHF optimum (see `bandit-lab verify "
                "--only fdiv-...`)")


def _register(name, terms, weights, summary, citation, **static):
    st = {"terms": tuple(terms), "use_weighting": False, "divergence": "reverse_kl", "sft_weighting": "trl", **static}
    st, defaults = _configure(st)
    for t, w in zip(terms, weights):
        defaults[f"w_{t}"] = float(w)
    base_defaults = dict(defaults)

    def configure(static, _name=name):
        st2, d = _configure(static)
        if tuple(st2["terms"]) == tuple(terms):  # the named mixture's own weights are its defaults
            d = {**d, **{k: v for k, v in base_defaults.items() if k.startswith("w_")}}
        return st2, d

    register(LossSpec(name, mixture, defaults, st, summary=summary, citation=citation, check=_check, configure=configure,
                      exact=zoo._exact_piecewise_linear))


_register("mixture", ["dpo"], [1.0], "Σ_t w_t·L_t over registered losses (TRL loss_type list); WPO weighting, f-divergence",
          "TRL DPOConfig loss_type/loss_weights; Wang et al. 2024 (MPO)")
_register("mpo", ["dpo", "bco_pair", "sft"], [0.8, 0.2, 1.0], "MPO: 0.8·sigmoid + 0.2·bco_pair + 1.0·sft (TRL's example)",
          "Wang et al. 2024 (MPO) §3.2; TRL docs")
_register("wpo", ["dpo"], [1.0], "WPO: DPO with detached pair weights w(y_w)w(y_l), w = π(y)/Σπ²", "Zhou et al. 2024 (WPO) Eq. 2",
          use_weighting=True)
