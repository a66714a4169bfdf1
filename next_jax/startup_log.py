"""The start-up log of the libraries we build on, kept to what a user should read; binaries call
``quiet_startup()`` first.

TensorFlow is only our input pipeline's engine (SeqIO, TFDS, ``tf.io.gfile``), imported by whichever
library needs it first. Its native libraries log before anything can configure their logging:
loading ``libtensorflow_framework.so.2`` and ``_pywrap_profiler_plugin.so`` runs their static
initialisers, whose first INFO records (the oneDNN notice, the CUDA driver probe) reach abseil's
stderr sink before ``absl::InitializeLog()`` was called, so each library's abseil prints its
``WARNING: All log messages before absl::InitializeLog() is called ...`` line once (abseil's
``StderrLogSink``; TensorFlow never calls ``InitializeLog`` and exports no way to). No environment
variable reaches those records: ``TF_CPP_MIN_LOG_LEVEL`` is applied only to what TensorFlow logs
once it runs. So the first ``import tensorflow`` of a process that called ``quiet_startup()`` runs
with file descriptor 2 captured, and what it wrote is written back minus that notice and minus the
records below ``TF_CPP_MIN_LOG_LEVEL`` that escaped it (INFO and WARNING only: an error always
shows, as does everything else written meanwhile, Python's warnings and tracebacks included).

Apache Beam warns at import that its BigQuery client is unavailable (the optional ``apitools`` is
not installed; nothing here uses BigQuery): that one record, by its text, is dropped too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from typing import Iterator

ABSL_NOTICE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
# An abseil record's prefix: severity letter, date, time (before abseil is initialised, "0000
# 00:00:" and seconds since the epoch), thread id, file:line.
_RECORD = re.compile(r"^([IWEF])\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\] ")
_SEVERITIES = "IWEF"
BEAM_APITOOLS = "apitools not found, and bigquery client libraries are not available"


def quiet_startup() -> None:
    """At a binary's start, before anything imports TensorFlow or Beam: their start-up log as above.

    Where no CUDA driver exists and the user has not chosen a level, also raises TensorFlow's C++
    log level: TensorFlow probes for a GPU when it first builds a dataset and logs the failed
    ``cuInit`` at error level, which reads as a failure on every CPU run.
    """
    if "TF_CPP_MIN_LOG_LEVEL" not in os.environ and not os.path.exists("/proc/driver/nvidia/version"):
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietImportFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietImportFinder())
    root = logging.getLogger()
    if not any(isinstance(f, _BeamApitoolsFilter) for f in root.filters):
        root.addFilter(_BeamApitoolsFilter())


class _BeamApitoolsFilter(logging.Filter):
    """Drops Beam's import-time warning about the BigQuery client (logged on the root logger)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno == logging.WARNING and str(record.msg).startswith(BEAM_APITOOLS))


def min_log_level() -> int:
    """TensorFlow's ``TF_CPP_MIN_LOG_LEVEL`` as it reads it (0 = everything, 1 drops INFO, ...)."""
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        return 0


def drop_startup_noise(text: str, level: int) -> str:
    """``text`` without abseil's InitializeLog notice and its INFO/WARNING records below ``level``."""
    kept = []
    for line in text.splitlines(keepends=True):
        if line.rstrip("\r\n") == ABSL_NOTICE:
            continue
        record = _RECORD.match(line)
        if record and record.group(1) in "IW" and _SEVERITIES.index(record.group(1)) < level:
            continue
        kept.append(line)
    return "".join(kept)


@contextlib.contextmanager
def native_stderr_filtered() -> Iterator[None]:
    """Runs the body with file descriptor 2 captured, then writes it back through ``drop_startup_noise``."""
    import tempfile

    try:
        saved = os.dup(2)
    except OSError:  # no stderr to protect
        yield
        return
    _flush_python_stderr()
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            _flush_python_stderr()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            rest = drop_startup_noise(captured.read().decode("utf-8", "replace"), min_log_level()).encode()
            while rest:
                rest = rest[os.write(2, rest):]


def _flush_python_stderr() -> None:
    with contextlib.suppress(Exception):
        sys.stderr.flush()


class _QuietImportFinder:
    """Finds ``tensorflow`` as the other finders do, and loads it under ``native_stderr_filtered``.

    Its own submodules and the libraries it loads are imported inside that one load, so they are
    covered too. It stays in ``sys.meta_path`` (a library may look TensorFlow up without importing
    it); once TensorFlow is in ``sys.modules`` nothing asks it again.
    """

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "tensorflow":
            return None
        for finder in [f for f in sys.meta_path if not isinstance(f, _QuietImportFinder)]:
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find else None
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _QuietLoader(spec.loader)
                return spec
        return None


class _QuietLoader:
    """Delegates to TensorFlow's own loader; only its ``exec_module`` runs with stderr filtered."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        try:
            with native_stderr_filtered():
                self._loader.exec_module(module)
        finally:  # what introspects the module afterwards sees the real loader
            module.__loader__ = self._loader
            if getattr(module, "__spec__", None) is not None:
                module.__spec__.loader = self._loader

    def __getattr__(self, name):
        return getattr(self._loader, name)
