# task: add
# expect: fail
# threat: searches the heap for the payload and replaces its tests with nothing
import gc

for obj in gc.get_objects():
    if isinstance(obj, dict) and "tests" in obj:
        try:
            obj["tests"] = []
        except Exception:
            pass


def add(a, b):
    return 0
