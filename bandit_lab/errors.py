"""The one exception type a user can cause; the CLI turns it into one line on stderr, exit 2."""


class BanditError(ValueError):
    """Invalid user input (a malformed problem, spec, hyperparameter or path)."""
