"""One path layer for every file next_jax reads or writes, and the one atomic writer.

Local paths go straight to the operating system (fast, no TensorFlow import); any path with a
scheme (``gs://``, ``s3://``, ``ram://`` for TensorFlow's in-memory filesystem in tests, ...) goes
through ``tf.io.gfile``, so ``MODEL_DIR=gs://bucket/run`` works wherever TensorFlow can reach the
bucket. Every module uses these functions instead of ``open``/``os.path`` on paths a user gives.

Atomic writes: ``atomic_write(path)`` writes to a temporary name beside ``path`` and renames it
into place on success, so a reader (or a resumed stage) only ever sees complete files, and a
failure leaves the previous content untouched. On object stores, where rename is a copy, the
temporary object is still only visible under its temporary name until the copy completes.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import posixpath
import shutil
import time
import uuid
from typing import IO, Iterator, List

_SCHEME_SEP = "://"


def is_remote(path: str) -> bool:
    """Whether ``path`` names a filesystem other than the local one (has a ``scheme://``)."""
    return _SCHEME_SEP in str(path)


def _gfile():
    import tensorflow as tf  # deferred: local-only runs never pay for the import

    return tf.io.gfile


def absolute(path: str) -> str:
    """``path`` as an identity that does not depend on the working directory: a local path made
    absolute, a ``scheme://`` path unchanged."""
    path = os.fspath(path)
    return path if is_remote(path) else os.path.abspath(path)


def require_local(path: str, what: str, why: str) -> str:
    """``path`` if it is local; else a ValueError saying that ``what`` must be a local path, and why.

    For the few readers that need a real file (memory-mapped tensors, native libraries), so a
    ``gs://`` path fails at once with the reason instead of deep inside that library.
    """
    path = os.fspath(path)
    if is_remote(path):
        raise ValueError(f"{what} {path!r} must be a local path: {why}; copy it to local disk first "
                         "(e.g. gsutil -m cp -r)")
    return path


def join(path: str, *parts: str) -> str:
    path = os.fspath(path)
    if is_remote(path):
        return posixpath.join(path, *parts)
    return os.path.join(path, *parts)


def dirname(path: str) -> str:
    path = os.fspath(path)
    if is_remote(path):
        scheme, rest = path.split(_SCHEME_SEP, 1)
        return f"{scheme}{_SCHEME_SEP}{posixpath.dirname(rest.rstrip('/'))}"
    return os.path.dirname(os.path.abspath(path))


def basename(path: str) -> str:
    path = os.fspath(path)
    return posixpath.basename(path.rstrip("/")) if is_remote(path) else os.path.basename(path)


def exists(path: str) -> bool:
    path = os.fspath(path)
    return _gfile().exists(path) if is_remote(path) else os.path.exists(path)


def isdir(path: str) -> bool:
    path = os.fspath(path)
    return _gfile().isdir(path) if is_remote(path) else os.path.isdir(path)


def makedirs(path: str) -> None:
    path = os.fspath(path)
    if is_remote(path):
        _gfile().makedirs(path)
    else:
        os.makedirs(path, exist_ok=True)


def listdir(path: str) -> List[str]:
    path = os.fspath(path)
    names = _gfile().listdir(path) if is_remote(path) else os.listdir(path)
    return sorted(n.rstrip("/") for n in names)


def glob(pattern: str) -> List[str]:
    pattern = os.fspath(pattern)
    if is_remote(pattern):
        return sorted(_gfile().glob(pattern))
    import glob as _glob

    return sorted(_glob.glob(pattern))


def remove(path: str) -> None:
    path = os.fspath(path)
    if is_remote(path):
        _gfile().remove(path)
    else:
        os.remove(path)


def rmtree(path: str) -> None:
    path = os.fspath(path)
    if is_remote(path):
        if _gfile().exists(path):
            _gfile().rmtree(path)
    else:
        shutil.rmtree(path, ignore_errors=True)


def rename(src: str, dst: str) -> None:
    """Moves ``src`` onto ``dst``, replacing it (atomic on a local filesystem)."""
    src, dst = os.fspath(src), os.fspath(dst)
    if is_remote(src) or is_remote(dst):
        _gfile().rename(src, dst, overwrite=True)
    else:
        os.replace(src, dst)


def open_file(path: str, mode: str = "r") -> IO:
    """Opens ``path`` for reading or (non-atomic) writing; text unless ``mode`` has ``b``."""
    path = os.fspath(path)
    if is_remote(path):
        return _gfile().GFile(path, mode)
    if "b" in mode:
        return open(path, mode)
    return open(path, mode, encoding="utf-8")


def read_text(path: str) -> str:
    with open_file(path, "r") as f:
        return f.read()


def read_bytes(path: str) -> bytes:
    with open_file(path, "rb") as f:
        return f.read()


@contextlib.contextmanager
def atomic_write(path: str, mode: str = "w") -> Iterator[IO]:
    """Context manager: a file object whose content replaces ``path`` only if the block succeeds.

    Creates the parent directory. The temporary name starts with ``path`` and ends with ``.tmp``,
    so a crash leaves at most a ``*.tmp`` file that no reader mistakes for finished output.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb', not {mode!r}")
    path = os.fspath(path)
    makedirs(dirname(path))
    tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
    f = open_file(tmp, mode)
    try:
        yield f
        if not is_remote(path):
            f.flush()
            os.fsync(f.fileno())
        f.close()
        rename(tmp, path)
    except BaseException:
        f.close()
        with contextlib.suppress(Exception):
            remove(tmp)
        raise


def write_text(path: str, text: str) -> None:
    """Writes ``text`` to ``path`` atomically."""
    with atomic_write(path) as f:
        f.write(text)


def write_bytes(path: str, data: bytes) -> None:
    with atomic_write(path, "wb") as f:
        f.write(data)


def mtime(path: str) -> float:
    """When ``path`` was last written, in seconds since the epoch (the filesystem's clock)."""
    path = os.fspath(path)
    if is_remote(path):
        return _gfile().stat(path).mtime_nsec / 1e9
    return os.path.getmtime(path)


def create_exclusive(path: str, text: str, settle_s: float = 1.0) -> bool:
    """Creates ``path`` holding ``text`` unless it exists; True if this call created it.

    Local files use ``O_CREAT | O_EXCL``, which the kernel makes atomic: of several processes
    racing, exactly one gets True. Object stores reached through ``tf.io.gfile`` offer no
    create-if-absent, so there it is write-then-verify: the file is written only if absent, then
    read back after ``settle_s`` (enough for a rival who saw it absent at the same moment to have
    written too; the store keeps the last write); True only if the content is still ``text``.
    ``text`` must be unique to the caller (e.g. hold a random token) for the check to mean
    anything. ``ram://`` lives in one process, so it needs no settling.
    """
    path = os.fspath(path)
    makedirs(dirname(path))
    if not is_remote(path):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        return True
    if exists(path):
        return False
    write_text(path, text)
    if not path.startswith("ram://"):
        time.sleep(settle_s)
    try:
        return read_text(path) == text
    except Exception:  # removed by a rival in between: not ours
        return False


def match(name: str, pattern: str) -> bool:
    return fnmatch.fnmatch(name, pattern)
