"""One path layer for every file next_jax reads or writes, and the one atomic writer.

Paths are ``etils.epath`` paths (the library orbax reads and writes through): a local path goes
to the operating system, ``gs://``, ``s3://`` and the other schemes epath knows to their
backends, so ``MODEL_DIR=gs://bucket/run`` works wherever TensorFlow (or fsspec) reaches the
bucket. TensorFlow's in-memory ``ram://``, which the tests use and epath does not know, goes to
``tf.io.gfile`` behind the same few methods. Every module uses these functions instead of
``open``/``os.path`` on paths a user gives.

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
import time
import types
import uuid
from typing import IO, Iterator, List

_SCHEME_SEP = "://"
_GLOB_MAGIC = ("*", "?", "[")


def is_remote(path: str) -> bool:
    """Whether ``path`` names a filesystem other than the local one (has a ``scheme://``)."""
    return _SCHEME_SEP in str(path)


class _GfilePath:
    """The few path methods this module uses, over ``tf.io.gfile``, for ``ram://`` paths."""

    def __init__(self, path: str):
        import tensorflow as tf  # deferred: only ram:// paths (tests) need TensorFlow here

        self._gfile, self._path = tf.io.gfile, path

    def exists(self):
        return self._gfile.exists(self._path)

    def is_dir(self):
        return self._gfile.isdir(self._path)

    def mkdir(self, parents=True, exist_ok=True):
        self._gfile.makedirs(self._path)

    def iterdir(self):
        return [posixpath.join(self._path, name.rstrip("/")) for name in self._gfile.listdir(self._path)]

    def glob(self, pattern):
        return self._gfile.glob(posixpath.join(self._path, pattern))

    def unlink(self):
        self._gfile.remove(self._path)

    def rmtree(self, missing_ok=False):
        if self._gfile.exists(self._path):
            self._gfile.rmtree(self._path)

    def replace(self, target):
        self._gfile.rename(self._path, os.fspath(target), overwrite=True)

    def open(self, mode="r", encoding=None):
        return self._gfile.GFile(self._path, mode)

    def stat(self):
        return types.SimpleNamespace(mtime=self._gfile.stat(self._path).mtime_nsec / 1e9)


def _path(path):
    """The path object behind one of this module's functions."""
    path = os.fspath(path)
    if path.startswith("ram://"):
        return _GfilePath(path)
    # Deferred: 0.2 s and asyncio; sandbox workers import this module (through the records) and
    # never touch a path.
    from etils import epath

    return epath.Path(path)


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
    return _path(path).exists()


def isdir(path: str) -> bool:
    return _path(path).is_dir()


def makedirs(path: str) -> None:
    _path(path).mkdir(parents=True, exist_ok=True)


def listdir(path: str) -> List[str]:
    return sorted(posixpath.basename(os.fspath(p).rstrip("/")) for p in _path(path).iterdir())


def glob(pattern: str) -> List[str]:
    """The paths matching ``pattern``, sorted; wildcards may stand in any component after the first."""
    pattern = os.fspath(pattern)
    sep = "/" if is_remote(pattern) else os.sep
    parts = pattern.split(sep)
    first = next((i for i, part in enumerate(parts) if any(c in part for c in _GLOB_MAGIC)), len(parts))
    if first == len(parts):
        return [pattern] if exists(pattern) else []
    base = sep.join(parts[:first]) or sep
    if not isdir(base):
        return []
    found = (os.fspath(p) for p in _path(base).glob(sep.join(parts[first:])))
    if not is_remote(pattern):  # as the OS's glob: names starting with a dot only when asked for
        found = (p for p in found if not any(name.startswith(".") and not pat.startswith(".")
                                             for name, pat in zip(p.split(sep)[first:], parts[first:])))
    return sorted(found)


def remove(path: str) -> None:
    _path(path).unlink()


def rmtree(path: str) -> None:
    _path(path).rmtree(missing_ok=True)


def rename(src: str, dst: str) -> None:
    """Moves ``src`` onto ``dst``, replacing it (atomic on a local filesystem)."""
    _path(src).replace(os.fspath(dst))


def open_file(path: str, mode: str = "r") -> IO:
    """Opens ``path`` for reading or (non-atomic) writing; text unless ``mode`` has ``b``."""
    return _path(path).open(mode) if "b" in mode else _path(path).open(mode, encoding="utf-8")


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


def match(name: str, pattern: str) -> bool:
    return fnmatch.fnmatch(name, pattern)


def mtime(path: str) -> float:
    """When ``path`` was last written, in seconds since the epoch (the filesystem's clock)."""
    path = os.fspath(path)
    return os.path.getmtime(path) if not is_remote(path) else float(_path(path).stat().mtime)


def create_exclusive(path: str, text: str, settle_s: float = 1.0) -> bool:
    """Creates ``path`` holding ``text`` unless it exists; True if this call created it.

    Local files use ``O_CREAT | O_EXCL``, which the kernel makes atomic: of several processes
    racing, exactly one gets True. Object stores offer no create-if-absent, so there it is
    write-then-verify: the file is written only if absent, then read back after ``settle_s``
    (enough for a rival who saw it absent at the same moment to have written too; the store keeps
    the last write); True only if the content is still ``text``. ``text`` must be unique to the
    caller (e.g. hold a random token) for the check to mean anything. ``ram://`` lives in one
    process, so it needs no settling.
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
