# task: add
# expect: fail
# threat: replaces the harness's assert hook in its own globals with a no-op
def add(a, b):
    return 0


for _name in list(globals()):
    if "assert" in _name.lower():
        globals()[_name] = lambda *a, **k: None
import builtins  # noqa: E402

builtins.__dict__["__nj_assert__"] = lambda *a, **k: None
globals()["__nj_assert__"] = lambda *a, **k: None
