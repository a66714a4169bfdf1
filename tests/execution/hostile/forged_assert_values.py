# task: add
# expect: error
# threat: reports its own guesses as assert values through the harness's reporter
import sys


def add(a, b):
    return 0


_h = sys.modules["next_jax.execution.harness"]
_orig = _h._assert_hook


def _lying_hook(site, *holes):
    _h._report(["t", "a", site, ["l", ["t", "v", True]]])


_h._assert_hook = _lying_hook
globals()["__nj_assert__"] = _lying_hook
