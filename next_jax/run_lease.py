"""One run per MODEL_DIR: a lease file taken before the run writes anything, released at exit.

Two runs writing one MODEL_DIR overwrite each other's checkpoints and interleave their event
files without an error. So every run mode that writes a MODEL_DIR first creates
``MODEL_DIR/RUN_LEASE.json`` (holder's host, pid, start time, command, a heartbeat), through
``next_jax.io`` so it works on local disks, ``gs://`` and ``ram://`` alike:

- creation is atomic where the filesystem offers it (``O_EXCL`` on local disks) and
  write-then-verify elsewhere (see ``nj_io.create_exclusive``);
- a second run finds the lease and stops at once (:class:`LeaseHeldError`, one line naming the
  holder and what to do);
- a stale lease is taken over with a warning: on the same host, the holder's pid is gone (or now
  belongs to a process started later: pid reuse); from another host, where pids cannot be checked,
  the holder's heartbeat (rewritten every ``heartbeat_s``) is older than ``stale_after_s``;
- released (removed, if still ours) when the run ends, however it ends short of SIGKILL; a killed
  run's lease is stale by the rule above, so resuming a killed or finished run just works.

On a pod only process 0 takes the lease (``next_jax.main`` decides); the other processes write
only through process 0's decisions or into per-process shard files orbax coordinates.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shlex
import socket
import sys
import threading
import time
import uuid
from typing import Optional, Sequence

from absl import logging

from next_jax import io as nj_io
from next_jax.errors import UserError

LEASE_NAME = "RUN_LEASE.json"


class LeaseHeldError(UserError):
    """Another live run holds the MODEL_DIR."""


class ModelDirNotWritableError(UserError):
    """The MODEL_DIR cannot be created or written."""


@dataclasses.dataclass(frozen=True)
class LeaseConfig:
    """How the lease is kept fresh and when another host's lease counts as abandoned.

    Attributes:
      heartbeat_s: the holder rewrites its heartbeat this often.
      stale_after_s: a lease from another host whose heartbeat is older than this is stale (a
        multiple of ``heartbeat_s``, so a slow filesystem or a long pause does not lose it).
    """

    heartbeat_s: float = 60.0
    stale_after_s: float = 600.0


def lease_path(model_dir: str) -> str:
    return nj_io.join(model_dir, LEASE_NAME)


def _pid_start_ticks(pid: int) -> Optional[int]:
    """When ``pid`` started (clock ticks since boot; Linux), to tell a reused pid from the holder."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[19]) if len(fields) > 19 else None


def _pid_state(pid: int) -> Optional[str]:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _pid_alive(pid: int, start_ticks: Optional[int]) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    if _pid_state(pid) in ("Z", "X"):  # exited, not yet reaped by its parent
        return False
    if start_ticks is not None:
        now_ticks = _pid_start_ticks(pid)
        if now_ticks is not None and now_ticks != start_ticks:
            return False  # the pid was reused by a later process
    return True


def _utc(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def describe(holder: dict) -> str:
    """One line about a lease's holder, for messages."""
    command = holder.get("command") or "?"
    if len(command) > 160:
        command = command[:157] + "..."
    return (f"host {holder.get('host', '?')} pid {holder.get('pid', '?')}, started "
            f"{_utc(float(holder.get('started', 0)))}, command: {command}")


class Lease:
    """A held lease: keeps its heartbeat fresh until :meth:`release` (also a context manager)."""

    def __init__(self, path: str, record: dict, settings: LeaseConfig):
        self.path = path
        self.record = dict(record)
        self.settings = settings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="run-lease-heartbeat", daemon=True)
        self._thread.start()

    def _ours(self) -> bool:
        try:
            return json.loads(nj_io.read_text(self.path)).get("token") == self.record["token"]
        except Exception:  # gone or unreadable: not ours to touch
            return False

    def _beat(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_s):
            try:
                if not self._ours():
                    logging.error("run lease %s is no longer this run's (taken over as stale?); "
                                  "another run may now write this MODEL_DIR", self.path)
                    return
                self.record["heartbeat"] = time.time()
                nj_io.write_text(self.path, json.dumps(self.record, sort_keys=True))
            except Exception as e:  # a failed heartbeat must not kill the run; the next may succeed
                logging.info("run lease heartbeat failed: %s", e)

    def release(self) -> None:
        """Stops the heartbeat and removes the lease file if it is still this run's."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            if self._ours():
                nj_io.remove(self.path)
        except Exception as e:
            logging.info("run lease %s not removed: %s", self.path, e)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def _command(argv: Optional[Sequence[str]]) -> str:
    argv = list(sys.argv if argv is None else argv)
    words = [shlex.quote(a) for a in argv]
    if argv and argv[0].endswith(("next_jax/main.py", "next_jax\\main.py")):
        words[0] = "python -m next_jax.main"  # how it was typed (``-m`` puts the file's path in argv[0])
    return " ".join(words)


def _read(path: str, attempts: int = 20) -> Optional[dict]:
    """The lease's record; None if it vanished. A file another process has just created but not
    yet filled reads as empty for a moment: retried before being taken as unreadable."""
    for _ in range(attempts):
        try:
            text = nj_io.read_text(path)
        except Exception:
            if not nj_io.exists(path):
                return None
            text = ""
        try:
            record = json.loads(text)
            if isinstance(record, dict):
                return record
        except ValueError:
            pass
        time.sleep(0.1)
    return {"unreadable": True}


def _stale_reason(holder: dict, path: str, settings: LeaseConfig) -> Optional[str]:
    """Why ``holder``'s lease is stale, or None if it may still be running."""
    if holder.get("unreadable"):
        return "the lease file is unreadable"
    pid = holder.get("pid")
    if holder.get("host") == socket.gethostname() and isinstance(pid, int):
        if not _pid_alive(pid, holder.get("pid_start")):
            return f"process {pid} no longer runs on this host"
        return None
    try:
        written = max(float(holder.get("heartbeat", 0)), nj_io.mtime(path))
    except Exception:
        written = float(holder.get("heartbeat", 0))
    age = time.time() - written
    if age > settings.stale_after_s:
        return f"its last heartbeat is {age:.0f} s old (stale after {settings.stale_after_s:.0f} s)"
    return None


def acquire(model_dir: str, *, argv: Optional[Sequence[str]] = None,
            settings: LeaseConfig = LeaseConfig(), what: str = "MODEL_DIR") -> Lease:
    """Takes the lease of ``model_dir`` or raises (held: LeaseHeldError; not writable:
    ModelDirNotWritableError). ``what`` names the setting in messages (e.g. the gin macro)."""
    path = lease_path(model_dir)
    now = time.time()
    record = {"host": socket.gethostname(), "pid": os.getpid(), "pid_start": _pid_start_ticks(os.getpid()),
              "started": now, "heartbeat": now, "command": _command(argv), "token": uuid.uuid4().hex}
    text = json.dumps(record, sort_keys=True)
    for _ in range(3):
        try:
            created = nj_io.create_exclusive(path, text)
        except Exception as e:  # OSError locally; tf.errors.* (not OSError) on object stores
            raise ModelDirNotWritableError(
                f"{what}={model_dir!r} cannot be written ({type(e).__name__}: {e}); "
                f"choose a directory this user can create and write (--gin.MODEL_DIR=\\\"...\\\")") from None
        if created:
            return Lease(path, record, settings)
        holder = _read(path)
        if holder is None:
            continue  # released between our attempt and the read: try again
        reason = _stale_reason(holder, path, settings)
        if reason is None:
            raise LeaseHeldError(
                f"{what}={model_dir!r} is in use by another run ({describe(holder)}); wait for it to end or "
                f"use another {what}; if that run is gone for good, delete {path}")
        logging.warning("%s: taking over the lease of a run that is gone (%s): %s", model_dir,
                        describe(holder) if not holder.get("unreadable") else path, reason)
        current = _read(path, attempts=1)
        if current is not None and current.get("token") == holder.get("token"):
            try:
                nj_io.remove(path)
            except Exception:
                pass  # a rival removed it first; the exclusive create decides
    raise LeaseHeldError(f"{what}={model_dir!r}: could not take {path} (other runs keep taking it); "
                         "make sure only one run uses this directory")
