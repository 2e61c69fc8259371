"""Shared test setup: float64 for the whole test process (``bandit_lab.enable_x64()``, as the
``bandit-lab`` command does; importing bandit_lab alone leaves JAX's config alone), strict checks."""
import jax

import bandit_lab

bandit_lab.enable_x64()
jax.config.update("jax_numpy_rank_promotion", "allow")


def pytest_configure(config):
    assert jax.config.jax_enable_x64, "tests need float64"
