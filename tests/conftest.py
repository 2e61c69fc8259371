"""Shared test setup: float64 everywhere (importing bandit_lab enables it), strict checks."""
import jax

import bandit_lab  # noqa: F401  (enables float64)

jax.config.update("jax_numpy_rank_promotion", "allow")


def pytest_configure(config):
    assert jax.config.jax_enable_x64, "tests need float64"
