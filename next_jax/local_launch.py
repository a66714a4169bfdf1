r"""Runs one next_jax job as N CPU processes on this machine: a multi-host run, tested on one host.

    python -m next_jax.local_launch --num_processes=2 --devices_per_process=2 -- \
        --gin_file=gin_configs/experiments/train_tiny_cpu.gin --gin.MODEL_DIR=\"/tmp/train_2x2\" --gin.TRAIN_STEPS=4

(``launch/tpu_run.sh --local_processes=2 --devices_per_process=2`` runs this.) Every argument
after ``--`` goes to each ``python -m next_jax.main``, which is also given
``--coordinator_address=127.0.0.1:PORT --num_processes=N --process_id=I`` (a free port on the
loopback interface). Each process sees its own ``devices_per_process`` fake CPU devices
(``--xla_force_host_platform_device_count``), and the processes' collectives go through JAX's CPU
collectives (gloo over TCP), as a pod's go through its interconnect; process 0 serves the
coordinator, as on a pod.

Every output line is prefixed with its process (``[1] ...``). The launcher waits for all
processes; when one fails (a non-zero status or a signal), it says which and stops the others
(SIGTERM, then SIGKILL after ``--grace_s``), and exits with the failed process's status (128 +
signal number for a signal). Ctrl-C or SIGTERM to the launcher stops every process the same way.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import List, Optional, Sequence

COUNT_FLAG = "--xla_force_host_platform_device_count"


def free_port() -> int:
    """A TCP port nothing listens on now (the coordinator binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_env(base: dict, devices: int) -> dict:
    """``base`` with ``devices`` fake CPU devices and CPU collectives, for one process of the job."""
    env = dict(base)
    flags = re.sub(rf"{COUNT_FLAG}=\S+", "", env.get("XLA_FLAGS", "")).split()
    env["XLA_FLAGS"] = " ".join(flags + [f"{COUNT_FLAG}={devices}"])
    env["JAX_PLATFORMS"] = "cpu"
    env["JAX_CPU_COLLECTIVES_IMPLEMENTATION"] = "gloo"
    env["PYTHONUNBUFFERED"] = "1"  # lines reach the prefixer (and the log) when they are written
    return env


def commands(num_processes: int, port: int, args: Sequence[str], python: str = sys.executable) -> List[List[str]]:
    """The command of each process."""
    return [[python, "-m", "next_jax.main", *args, f"--coordinator_address=127.0.0.1:{port}",
             f"--num_processes={num_processes}", f"--process_id={i}"] for i in range(num_processes)]


def _describe(status: int) -> str:
    if status < 0:
        try:
            return f"was killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"was killed by signal {-status}"
    return f"exited with status {status}"


def _relay(index: int, stream, out, lock: threading.Lock) -> None:
    for line in iter(stream.readline, b""):
        with lock:
            out.write(f"[{index}] ".encode() + line)
            out.flush()
    stream.close()


class LocalJob:
    """N processes of one job; ``wait`` returns the job's exit status."""

    def __init__(self, cmds: Sequence[Sequence[str]], env: dict, grace_s: float = 10.0):
        self.grace_s = grace_s
        self.procs: List[subprocess.Popen] = []
        self._threads = []
        lock = threading.Lock()
        out = sys.stdout.buffer
        for i, cmd in enumerate(cmds):
            # A session of its own: stopping a process also stops whatever it started (sandbox workers).
            proc = subprocess.Popen(list(cmd), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            self.procs.append(proc)
            print(f"local_launch: process {i} of {len(cmds)}: pid {proc.pid}", file=sys.stderr, flush=True)
            thread = threading.Thread(target=_relay, args=(i, proc.stdout, out, lock), daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """SIGTERM to every running process's group, SIGKILL to those still there after the grace."""
        for proc in self.procs:
            if proc.poll() is None:
                _signal_group(proc, signum)
        end = time.monotonic() + self.grace_s
        while any(p.poll() is None for p in self.procs) and time.monotonic() < end:
            time.sleep(0.1)
        for proc in self.procs:
            if proc.poll() is None:
                _signal_group(proc, signal.SIGKILL)
            proc.wait()

    def wait(self) -> int:
        failed: Optional[int] = None
        try:
            while True:
                statuses = [p.poll() for p in self.procs]
                failed = next((i for i, s in enumerate(statuses) if s not in (None, 0)), None)
                if failed is not None or all(s == 0 for s in statuses):
                    break
                time.sleep(0.1)
        except KeyboardInterrupt:
            print("local_launch: interrupted; stopping every process", file=sys.stderr, flush=True)
            self.stop()
            self._join()
            return 130
        if failed is None:
            self._join()
            print(f"local_launch: all {len(self.procs)} processes finished", file=sys.stderr, flush=True)
            return 0
        status = self.procs[failed].returncode
        running = [i for i, p in enumerate(self.procs) if p.poll() is None]
        print(f"local_launch: process {failed} {_describe(status)}; stopping "
              f"{'processes ' + ', '.join(map(str, running)) if running else 'nothing (all ended)'}",
              file=sys.stderr, flush=True)
        self.stop()
        self._join()
        return status if status > 0 else 128 - status

    def _join(self) -> None:
        for thread in self._threads:
            thread.join(timeout=5)


def _signal_group(proc: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(proc.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def main(argv: Optional[Sequence[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m next_jax.local_launch", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_processes", type=int, required=True, help="processes of the job (>= 1)")
    parser.add_argument("--devices_per_process", type=int, default=1, help="fake CPU devices of each process")
    parser.add_argument("--port", type=int, default=0, help="coordinator port on 127.0.0.1 (0: a free one)")
    parser.add_argument("--grace_s", type=float, default=10.0, help="SIGTERM to SIGKILL, when stopping")
    parser.add_argument("--dry_run", action="store_true", help="print the commands instead of running them")
    parser.add_argument("args", nargs="*", help="arguments of next_jax.main (after --)")
    opts = parser.parse_args(argv)
    if opts.num_processes < 1 or opts.devices_per_process < 1:
        parser.error("--num_processes and --devices_per_process must be at least 1")
    port = opts.port or free_port()
    cmds = commands(opts.num_processes, port, opts.args)
    env = process_env(dict(os.environ), opts.devices_per_process)
    if opts.dry_run:
        import shlex

        for cmd in cmds:
            prefix = f"XLA_FLAGS={shlex.quote(env['XLA_FLAGS'])} JAX_PLATFORMS=cpu JAX_CPU_COLLECTIVES_IMPLEMENTATION=gloo"
            print(prefix, shlex.join(cmd))
        return 0
    job = LocalJob(cmds, env, grace_s=opts.grace_s)

    def on_term(signum, frame):
        del frame
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    return job.wait()


if __name__ == "__main__":
    sys.exit(main())
