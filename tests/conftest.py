"""Shared test setup: float64 for the whole test process (``bandit_lab.enable_x64()``, as the
``bandit-lab`` command does; importing bandit_lab alone leaves JAX's config alone), strict checks."""
import os

# On a GPU, XLA may reduce and scatter with atomics, whose order (and so the last bits) changes from
# run to run; the suite's bit-identity tests (identical solves, blocked sweeps) hold on a GPU only
# with deterministic ops. The flag is read by XLA's GPU backend only (the CPU ignores it), and it
# must be set before JAX's backend starts; subprocesses of the tests inherit it.
if "xla_gpu_deterministic_ops" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_gpu_deterministic_ops=true").strip()

import jax  # noqa: E402

import bandit_lab  # noqa: E402

bandit_lab.enable_x64()
jax.config.update("jax_numpy_rank_promotion", "allow")


def pytest_configure(config):
    assert jax.config.jax_enable_x64, "tests need float64"
