"""Random draws inside compiled programs: ``jax.random``'s own draws, bit for bit, cheaper to compile.

XLA's CPU compiler takes several times longer on JAX's threefry random bits over a multi-
dimensional shape than over the same number of bits as a flat vector (measured with JAX 0.10.2:
``jax.random.gumbel(key, (16, 3, 5))`` 1.16 s, ``gumbel(key, (240,)).reshape(16, 3, 5)`` 0.36 s;
vmapped over 20 keys at (128, 3, 5): 1.64 s vs 0.36 s). The bits of an array are those of its
row-major flat index in both of JAX's threefry modes (``jax_threefry_partitionable`` on or off),
and the uniform and Gumbel maps act elementwise, so drawing flat and reshaping gives the very same
numbers — ``tests/test_verify_scale.py`` checks that against ``jax.random`` itself. Every sampled
on-policy step draws responses this way (issue 22: the compile of ``verify``'s sampled checks).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def uniform(key, shape, dtype=float, minval=0.0, maxval=1.0):
    """``jax.random.uniform(key, shape, dtype, minval, maxval)``, the same numbers."""
    shape = tuple(int(s) for s in shape)
    return jax.random.uniform(key, (math.prod(shape),), dtype, minval, maxval).reshape(shape)


def categorical(key, logits, shape):
    """``jax.random.categorical(key, logits, axis=-1, shape=shape)``, the same draws: the argmax
    over the last axis of ``logits`` plus Gumbel noise of shape ``shape + (K,)`` (JAX's own method,
    ``jax/_src/random/core.py`` ``_categorical``), the noise drawn flat."""
    logits = jnp.asarray(logits)
    shape = tuple(int(s) for s in shape)
    full = shape + (logits.shape[-1],)
    g = jax.random.gumbel(key, (math.prod(full),), logits.dtype).reshape(full)
    lead = len(shape) - (logits.ndim - 1)
    return jnp.argmax(g + jax.lax.expand_dims(logits, tuple(range(lead))), axis=-1)
