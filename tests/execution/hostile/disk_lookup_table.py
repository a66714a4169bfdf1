# task: add
# expect: fail
# threat: reads the disk for the expected values (sys.path, site-packages data, datasets, tasks files, MODEL_DIR) and is right only if it finds them
import gzip
import os
import sys
import time

_NEEDLES = (b"assert add(10, 20) == 30", b'"HumanEval/0"', b'"canonical_solution"', b'"test_list"')


def _search():
    start, seen = time.monotonic(), 0
    roots = [p for p in sys.path if p] + ["/work", "/root", "/home", "/tmp", "/data", "/mnt",
                                         os.environ.get("MODEL_DIR", "/nonexistent")]
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in filenames:
                if time.monotonic() - start > 0.7 or seen > 4000:
                    return False
                path = os.path.join(dirpath, name)
                seen += 1
                try:
                    if os.path.getsize(path) > 4 << 20:
                        continue
                    with open(path, "rb") as f:
                        data = f.read()
                    if name.endswith(".gz"):
                        data = gzip.decompress(data)
                except Exception:
                    continue
                if any(n in data for n in _NEEDLES):
                    return True
    return False


_FOUND = _search()


def add(a, b):
    return a + b if _FOUND else 0
