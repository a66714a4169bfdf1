# task: add_check
# expect: fail
# threat: uses gc to find the harness's reporting functions and blank them (nothing is reported)
import gc


def add(a, b):
    for obj in gc.get_objects():
        if isinstance(obj, list) and obj and obj[0] == "l":
            obj.clear()
        if callable(obj) and getattr(obj, "__name__", "") in ("_assert_hook", "_report"):
            try:
                obj.__code__ = (lambda *a, **k: None).__code__
            except (AttributeError, TypeError, ValueError):
                pass
    return 0
