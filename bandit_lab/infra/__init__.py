"""Plumbing: no numerics of the method, only what every command needs around it.

``precision`` (float64 rule), ``bounds`` / ``guards`` / ``budget`` (refusals before work starts),
``cache`` / ``export_cache`` (JAX's compilation cache and traced programs), ``files`` (atomic
writes), ``records`` (columnar result files), ``progress`` (stderr progress on a terminal),
``timing`` (per-phase wall time). The exceptions stay in :mod:`bandit_lab.errors` (the plugin
contract). Importing this package imports nothing (no JAX): modules load on use.
"""
