"""Sandboxed execution of untrusted programs (model-written fixes, traced programs).

Public API (imported lazily, so that sandbox workers, which import this package, stay small;
a smaller worker forks faster):
  * ``sandbox``: ``run_isolated`` / ``SandboxPool`` run a ``"module:function"`` target in an
    isolated child (namespaces, rlimits, uid drop, read-only file tree) and return a
    ``SandboxResult``; ``emit`` streams plain-data messages out of a target.
  * ``checker``: ``Checker`` turns (RepairTask, Sample) into Verdicts: the
    tests run in a judge process, the program alone in a candidate process that only answers
    calls (``judge``, ``candidate``).
  * ``__main__``: the CLI (``python -m next_jax.execution``); ``beam_checks``: the Beam transform
    ``CheckSamples``.
"""

import importlib

_EXPORTS = {
    "CheckConfig": "checker", "Checker": "checker", "UnknownTaskError": "checker",
    "Limits": "sandbox", "SandboxPool": "sandbox",
    "SandboxResult": "sandbox", "emit": "sandbox", "run_isolated": "sandbox",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'next_jax.execution' has no attribute {name!r}")
    return getattr(importlib.import_module(f"next_jax.execution.{module}"), name)


def __dir__():
    return __all__
