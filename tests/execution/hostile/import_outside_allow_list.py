# task: add
# expect: fail
# threat: visibility: answers right only if it can see Python packages outside the allow-list (a cloud SDK under /usr/lib, the system's dist-packages, any site-packages) and import one of them
import os
import sys

_SEEN = []
for _root in ("/usr/lib/google-cloud-sdk/lib", "/usr/lib/python3/dist-packages",
              "/usr/local/lib/python3.11/dist-packages", "/usr/local/lib/python3.11/site-packages",
              "/usr/lib/python3.11"):
    try:
        _SEEN += [os.path.join(_root, n) for n in os.listdir(_root)]
        sys.path.insert(0, _root)
    except OSError:
        pass
try:
    import googlecloudsdk  # noqa: F401
    _SEEN.append("googlecloudsdk")
except ImportError:
    pass


def add(a, b):
    return a + b if _SEEN else 0
