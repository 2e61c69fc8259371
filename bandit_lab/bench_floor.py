"""The plain-JAX floor the benchmark compares against: the weight-decay sweep's *training* written
directly in ``jax.numpy`` + optax, as a user who knows JAX would write it for this one problem —
six objectives (DPO, f-DPO forward KL, IPO and their RLHF counterparts) on Kong et al.'s App. B
bandit, softmax logits, ``α‖θ‖²``, Adam with a cosine schedule, one ``jit(vmap(scan))`` over
the α grid. No exact solver, no records, no generality: what the library's sweep may be
compared with. ``bandit_lab.bench`` imports it; it shares no code with the library.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

PI_REF = np.array([0.4, 0.4, 0.2])
PI_STAR = np.array([0.6, 0.3, 0.1])


def _objectives(beta: float):
    logref = jnp.log(PI_REF)
    r = jnp.log(PI_STAR)
    P = PI_STAR[:, None] / (PI_STAR[:, None] + PI_STAR[None, :])  # p(i ≻ j), Kong Eq. 27
    off = 1.0 - np.eye(3)
    W = jnp.asarray(off * P / 3.0)  # uniform pairs, labelled: weight of (y_w = i, y_l = j)
    mu = jnp.full(3, 1.0 / 3)
    r_ipo = jnp.asarray(P) @ mu

    def grid(h):
        return h[:, None] - h[None, :]

    def dpo(lp):
        return jnp.sum(W * jax.nn.softplus(-beta * grid(lp - logref)))

    def fdpo_fkl(lp):  # f'(u) = −1/u
        return jnp.sum(W * jax.nn.softplus(-beta * grid(-jnp.exp(logref - lp))))

    def ipo(lp):
        return jnp.sum(W * (grid(lp - logref) - 0.5 / beta) ** 2)

    def rlhf(lp, rew):
        p = jnp.exp(lp)
        return -jnp.sum(p * rew) + beta * jnp.sum(p * (lp - logref))

    def rlhf_fkl(lp):
        p = jnp.exp(lp)
        return -jnp.sum(p * r) + beta * jnp.sum(PI_REF * (logref - lp))

    return [dpo, lambda lp: rlhf(lp, r), fdpo_fkl, rlhf_fkl, ipo, lambda lp: rlhf(lp, r_ipo)]


def make_sweep(steps: int = 3000, lr: float = 0.05, beta: float = 1.0):
    """``sweep(alphas) -> final policies [6, len(alphas), 3]``, jitted."""
    objs = _objectives(beta)
    sched = optax.cosine_decay_schedule(lr, steps)
    opt = optax.chain(optax.scale_by_adam(eps=1e-12), optax.scale_by_schedule(lambda t: -sched(t)))

    def train_one(alpha):
        def loss(theta):
            return sum(f(jax.nn.log_softmax(th)) + alpha * jnp.sum(th**2) for f, th in zip(objs, theta))

        theta0 = tuple(jnp.log(jnp.asarray(PI_REF)) for _ in objs)
        g = jax.grad(loss)

        def step(carry, _):
            th, st = carry
            upd, st = opt.update(g(th), st, th)
            return (optax.apply_updates(th, upd), st), None

        (th, _), _ = jax.lax.scan(step, (theta0, opt.init(theta0)), None, length=steps)
        return jnp.stack([jax.nn.softmax(t) for t in th])

    return jax.jit(jax.vmap(train_one))


def alphas(n: int = 64) -> np.ndarray:
    return np.concatenate([[0.0], np.geomspace(1e-3, 10.0, n - 1)])


if __name__ == "__main__":  # the cold floor: a new process runs `python -m bandit_lab.bench_floor N`
    import sys

    jax.config.update("jax_enable_x64", True)
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 64
    grid = alphas(n) if n > 1 else np.array([0.1])
    print(np.asarray(make_sweep()(grid)).shape)
