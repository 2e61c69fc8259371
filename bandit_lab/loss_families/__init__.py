"""Loss families beyond the core four (the practical zoo, SPO, token-level losses).

Each module here calls :func:`bandit_lab.losses.register` at import time; the registry imports
every module of this package on first use, so adding a family means adding one file.
"""
