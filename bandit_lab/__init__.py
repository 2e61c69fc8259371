"""bandit-lab: preference-optimisation losses optimised exactly on small discrete bandits.

Importing the package turns on float64 in JAX (theorem checks need it). Pass
``--float32`` on the command line, or call :func:`use_float32`, for an explicit speed option.
"""
import jax

jax.config.update("jax_enable_x64", True)


def use_float32() -> None:
    """Switch JAX to float32 for the rest of the process (speed option, not for checks)."""
    jax.config.update("jax_enable_x64", False)


from bandit_lab.errors import BanditError  # noqa: E402
from bandit_lab.problems import Problem  # noqa: E402
from bandit_lab.data import PreferenceData, population, sample  # noqa: E402

__all__ = ["BanditError", "Problem", "PreferenceData", "population", "sample", "use_float32"]
