"""Records, per process, every path a multi-process run writes through ``next_jax.io``.

Imported by a gin file of the run (``import write_audit``) when ``WRITE_AUDIT_DIR`` is set: each
write-like call (opening for writing, makedirs, rename, remove) appends its path to
``WRITE_AUDIT_DIR/process_<index>.txt``, so a test can check which process wrote what.
"""

import os

from next_jax import io as nj_io

_DIR = os.environ.get("WRITE_AUDIT_DIR")


def _record(path: str) -> None:
    import jax

    with open(os.path.join(_DIR, f"process_{jax.process_index()}.txt"), "a") as f:
        f.write(f"{path}\n")


def _wrap(name: str, writes=lambda *a, **k: True):
    original = getattr(nj_io, name)

    def wrapper(path, *args, **kwargs):
        if writes(path, *args, **kwargs):
            _record(str(path))
        return original(path, *args, **kwargs)

    setattr(nj_io, name, wrapper)


if _DIR:
    _wrap("open_file", lambda path, mode="r", *a, **k: any(c in mode for c in "wax+"))
    for _name in ("makedirs", "rename", "remove", "rmtree"):
        _wrap(_name)
