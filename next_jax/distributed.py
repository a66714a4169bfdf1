"""Starting a multi-process JAX job, and stopping all of it when one process stops.

A job spans several processes (the hosts of a TPU pod, the GPUs of a cluster, or several CPU
processes on one machine for testing) that must each call ``jax.distributed.initialize`` before
anything touches a device. Two ways to say who is who:

- explicitly, with the names JAX and T5X use: ``coordinator_address`` (``host:port`` of process 0),
  ``num_processes``, ``process_id`` and, where one host runs several processes on its accelerators,
  ``local_device_ids``; all three of the first are needed, since a process that knows the address
  but not its own id could only guess;
- detected by JAX from the environment (``auto_detect``: TPU pod metadata, SLURM, Open MPI, ...),
  which is what ``launch/tpu_run.sh --tpu=...`` asks for with ``--multihost``.

A multi-process job must never wait forever. Three deadlines cover the ways one process can leave
the others waiting:

- ``initialization_timeout_s``: a process that cannot reach the coordinator (process 0 never
  started, a wrong address) gives up after this long;
- ``heartbeat_timeout_s``: JAX's coordination service declares a process dead when it stops sending
  heartbeats (killed, its host gone) and stops the others; a collective whose peer's connection
  closes fails at once;
- ``collective_timeout_s``: every barrier and broadcast this code does itself (``deadline``) stops
  the process with a one-line error when the other processes have not arrived in time, which also
  covers a peer that is alive but stuck. Process 0 alone runs some stages (checking samples in the
  sandbox) while the others wait for its result, so this is long by default.

A process whose run fails stops at once (``stop_job_on_failure``) instead of waiting in JAX's
shutdown barrier for peers that may never come; the others then fail their next collective.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import sys
import threading
import time
from typing import Iterator, Optional, Tuple

_ADDRESS = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")


class DistributedConfigError(ValueError):
    """Settings that cannot start a job; the message names the flag to fix."""


class JoinError(RuntimeError):
    """This process could not join the job in time (no coordinator at the address, a wrong count)."""


@dataclasses.dataclass(frozen=True)
class DistributedConfig:
    """Who this process is in a multi-process job, and how long it waits for the others.

    Attributes:
      coordinator_address: ``host:port`` where process 0 serves the coordination service.
      num_processes: how many processes the job has.
      process_id: this process's index, ``0 <= process_id < num_processes``.
      local_device_ids: the local accelerators this process uses (None: all of this host's).
      auto_detect: let JAX detect the cluster from the environment (TPU pods, SLURM, MPI).
      initialization_timeout_s: how long to keep trying to reach the coordinator.
      heartbeat_timeout_s: after this long without a heartbeat a process counts as dead and the
        job stops.
      collective_timeout_s: the longest this code waits at one of its own barriers or broadcasts.
    """

    coordinator_address: Optional[str] = None
    num_processes: Optional[int] = None
    process_id: Optional[int] = None
    local_device_ids: Optional[Tuple[int, ...]] = None
    auto_detect: bool = False
    initialization_timeout_s: int = 300
    heartbeat_timeout_s: int = 100
    collective_timeout_s: float = 3600.0

    @property
    def explicit(self) -> bool:
        return any(v is not None for v in (self.coordinator_address, self.num_processes, self.process_id))

    @property
    def enabled(self) -> bool:
        """Whether this process joins a multi-process job (and must initialize first)."""
        return self.explicit or self.auto_detect

    def validate(self) -> None:
        """Raises DistributedConfigError naming the flag when the settings cannot start a job."""
        given = {"--coordinator_address": self.coordinator_address, "--num_processes": self.num_processes,
                 "--process_id": self.process_id}
        missing = [name for name, value in given.items() if value is None]
        if self.explicit and missing:
            present = [name for name, value in given.items() if value is not None]
            raise DistributedConfigError(
                f"{' and '.join(present)} given without {' and '.join(missing)}: a multi-process job "
                "needs --coordinator_address=HOST:PORT, --num_processes=N and --process_id=I together "
                "(or --multihost alone, to detect them on a TPU pod or under SLURM)")
        if self.explicit:
            if not _ADDRESS.match(self.coordinator_address):
                raise DistributedConfigError(
                    f"--coordinator_address={self.coordinator_address!r}: expected HOST:PORT, e.g. "
                    "10.0.0.2:8476 (process 0's host; every process gives the same address)")
            if not 0 < int(self.coordinator_address.rsplit(":", 1)[1]) < 65536:
                raise DistributedConfigError(
                    f"--coordinator_address={self.coordinator_address!r}: the port must be in 1..65535")
            if self.num_processes < 1:
                raise DistributedConfigError(f"--num_processes={self.num_processes}: must be at least 1")
            if not 0 <= self.process_id < self.num_processes:
                raise DistributedConfigError(
                    f"--process_id={self.process_id}: must be in 0..{self.num_processes - 1} "
                    f"(--num_processes={self.num_processes})")
        if self.local_device_ids is not None:
            if not self.enabled:
                raise DistributedConfigError(
                    "--local_device_ids is only meaningful in a multi-process job: give it with "
                    "--coordinator_address, --num_processes and --process_id, or with --multihost")
            if not self.local_device_ids or any(i < 0 for i in self.local_device_ids):
                raise DistributedConfigError(
                    f"--local_device_ids={','.join(map(str, self.local_device_ids))}: expected a "
                    "comma-separated list of non-negative device numbers")
        for name, value in (("--initialization_timeout", self.initialization_timeout_s),
                            ("--heartbeat_timeout", self.heartbeat_timeout_s),
                            ("--collective_timeout", self.collective_timeout_s)):
            if value <= 0:
                raise DistributedConfigError(f"{name}={value}: must be a positive number of seconds")


# The deadline of this process's own barriers and broadcasts (set by ``initialize``).
_COLLECTIVE_TIMEOUT_S = [DistributedConfig.collective_timeout_s]


def describe(settings: DistributedConfig) -> str:
    if settings.explicit:
        return (f"process {settings.process_id} of {settings.num_processes} "
                f"(coordinator {settings.coordinator_address})")
    return "a process of a detected cluster"


def initialize(settings: DistributedConfig) -> None:
    """Validates ``settings`` and joins the job (``jax.distributed.initialize``), within its deadline.

    Raises DistributedConfigError for settings that cannot work, and JoinError (one line: which
    process, which coordinator, what failed) when the coordinator cannot be reached in time.
    """
    settings.validate()
    if not settings.enabled:
        return
    import jax

    _COLLECTIVE_TIMEOUT_S[0] = float(settings.collective_timeout_s)
    kwargs = dict(initialization_timeout=int(settings.initialization_timeout_s),
                  heartbeat_timeout_seconds=int(settings.heartbeat_timeout_s))
    if settings.explicit:
        kwargs.update(coordinator_address=settings.coordinator_address, num_processes=settings.num_processes,
                      process_id=settings.process_id, cluster_detection_method="deactivate")
    if settings.local_device_ids is not None:
        kwargs["local_device_ids"] = list(settings.local_device_ids)
    started = time.monotonic()
    if settings.explicit and settings.process_id != 0:
        # JAX's client aborts the whole process (a C++ fatal error and a stack dump) when it cannot
        # register in time; reaching the coordinator's port first turns the common case (process 0
        # not started, a wrong address) into this process's own one-line error.
        _wait_for_coordinator(settings, started)
    try:
        jax.distributed.initialize(**kwargs)
    except (RuntimeError, ValueError, jax.errors.JaxRuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise JoinError(
            f"{describe(settings)} could not join the job within {time.monotonic() - started:.0f} s "
            f"(--initialization_timeout={settings.initialization_timeout_s}): {first}") from None


def _wait_for_coordinator(settings: DistributedConfig, started: float) -> None:
    import socket

    host, port = settings.coordinator_address.rsplit(":", 1)
    host = host.strip("[]")
    last = None
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=2):
                return
        except OSError as e:
            last = e
        waited = time.monotonic() - started
        if waited >= settings.initialization_timeout_s:
            raise JoinError(
                f"{describe(settings)} could not join the job: nothing answered at the coordinator address "
                f"within {waited:.0f} s (--initialization_timeout={settings.initialization_timeout_s}; last "
                f"error: {last}); is process 0 running, and is the address its host's?")
        time.sleep(0.5)


def collective_timeout_s() -> float:
    return _COLLECTIVE_TIMEOUT_S[0]


def _stop(message: str, status: int) -> None:
    """Writes ``message`` and ends this process now, from any thread, without JAX's shutdown wait."""
    try:
        sys.stdout.flush()
    except Exception:  # noqa: BLE001 - a closed stdout must not keep the process alive
        pass
    try:
        sys.stderr.write(message.rstrip("\n") + "\n")
        sys.stderr.flush()
    finally:
        os._exit(status)


# Exit status of a process stopped because the others did not arrive in time.
TIMED_OUT_STATUS = 3
# Exit status of a process whose run failed in a multi-process job.
FAILED_STATUS = 1


@contextlib.contextmanager
def deadline(what: str, seconds: Optional[float] = None) -> Iterator[None]:
    """Stops this process (one-line error, exit status 3) if the block takes longer than ``seconds``.

    For waits on the other processes (barriers, broadcasts): a wait that outlives the deadline means
    one of them stopped or hangs, and the whole job must stop rather than wait forever; the
    coordination service then sees this process go and stops the rest.
    """
    import jax

    if jax.process_count() == 1:
        yield
        return
    limit = collective_timeout_s() if seconds is None else float(seconds)
    index, count = jax.process_index(), jax.process_count()

    def expire():
        _stop(f"next_jax: process {index} of {count} waited more than {limit:g} s at {what!r} for the other "
              "processes (--collective_timeout): one of them stopped or hangs; see its log. Stopping this "
              "process; rerun the job to resume.", TIMED_OUT_STATUS)

    timer = threading.Timer(limit, expire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


@contextlib.contextmanager
def stop_job_on_failure(settings: DistributedConfig, passthrough: Tuple[type, ...] = ()) -> Iterator[None]:
    """In a multi-process job, a failed run prints its traceback and one summary line, then exits.

    Exiting directly (rather than unwinding into JAX's shutdown barrier, which waits for every
    process) makes the others' next collective fail at once, so the whole job stops together.
    Errors of the ``passthrough`` types (those the caller reports itself) propagate.
    """
    if not settings.enabled:
        yield
        return
    try:
        yield
    except (SystemExit, KeyboardInterrupt):
        raise
    except Exception as e:  # noqa: BLE001 - every failure ends the job the same way
        import traceback

        import jax

        if isinstance(e, passthrough):
            raise
        traceback.print_exc()
        first = (str(e).strip().splitlines() or [""])[0][:500]
        collective = isinstance(e, jax.errors.JaxRuntimeError) and _PEER_GONE.search(str(e))
        why = ("a collective with the other processes failed (another process stopped?)" if collective
               else "the run failed")
        _stop(f"next_jax: process {jax.process_index()} of {jax.process_count()}: {why}: "
              f"{type(e).__name__}: {first}", FAILED_STATUS)


_PEER_GONE = re.compile(r"Gloo|Connection closed|connection reset|heartbeat|UNAVAILABLE|DEADLINE_EXCEEDED|"
                        r"coordination service", re.IGNORECASE)


def parse_device_ids(text: Optional[str]) -> Optional[Tuple[int, ...]]:
    """'0,1' -> (0, 1); None or '' -> None. Raises DistributedConfigError naming the flag."""
    if not text:
        return None
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise DistributedConfigError(
            f"--local_device_ids={text}: expected a comma-separated list of device numbers, e.g. 0,1") from None


def settings_from_flags(flag_values) -> DistributedConfig:
    """The settings given by the binary's absl flags (see ``define_flags``)."""
    return DistributedConfig(
        coordinator_address=flag_values.coordinator_address or None,
        num_processes=flag_values.num_processes,
        process_id=flag_values.process_id,
        local_device_ids=parse_device_ids(flag_values.local_device_ids),
        auto_detect=bool(flag_values.multihost),
        initialization_timeout_s=flag_values.initialization_timeout,
        heartbeat_timeout_s=flag_values.heartbeat_timeout,
        collective_timeout_s=flag_values.collective_timeout,
    )


def define_flags(flags) -> None:
    """Defines the binary's multi-process flags (names as in JAX and T5X)."""
    defaults = DistributedConfig()
    flags.DEFINE_bool("multihost", False, "Join a multi-process job whose layout JAX detects (TPU pods, SLURM, "
                      "MPI); see also --coordinator_address.")
    flags.DEFINE_string("coordinator_address", None, "HOST:PORT of process 0 in a multi-process job (with "
                        "--num_processes and --process_id).")
    flags.DEFINE_integer("num_processes", None, "Number of processes of the job.")
    flags.DEFINE_integer("process_id", None, "This process's index, 0..num_processes-1.")
    flags.DEFINE_string("local_device_ids", None, "Comma-separated local accelerator ids this process uses.")
    flags.DEFINE_integer("initialization_timeout", defaults.initialization_timeout_s,
                         "Seconds to keep trying to reach the coordinator.")
    flags.DEFINE_integer("heartbeat_timeout", defaults.heartbeat_timeout_s,
                         "Seconds without a heartbeat after which a process counts as dead and the job stops.")
    flags.DEFINE_float("collective_timeout", defaults.collective_timeout_s,
                       "Longest wait, in seconds, at one of next_jax's own barriers or broadcasts.")
