"""One run per MODEL_DIR: the lease file, its staleness rules, and what the binary does with it."""

import json
import multiprocessing
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from next_jax import run_lease

from next_jax import io as nj_io
from next_jax.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_lease(model_dir, **fields):
    record = {"host": socket.gethostname(), "pid": os.getpid(), "pid_start": None, "started": time.time(),
              "heartbeat": time.time(), "command": "python -m next_jax.main --gin_file=other.gin", "token": "theirs"}
    record.update(fields)
    os.makedirs(model_dir, exist_ok=True)
    with open(os.path.join(model_dir, run_lease.LEASE_NAME), "w") as f:
        json.dump(record, f)


def test_acquire_writes_holder_and_release_removes_it(tmp_path):
    lease = run_lease.acquire(str(tmp_path / "run"), argv=["python", "-m", "next_jax.main", "--gin.X=1"])
    record = json.loads((tmp_path / "run" / run_lease.LEASE_NAME).read_text())
    assert record["host"] == socket.gethostname() and record["pid"] == os.getpid()
    assert record["command"] == "python -m next_jax.main --gin.X=1" and record["started"] <= time.time()
    with pytest.raises(run_lease.LeaseHeldError) as held:  # this very process counts as a live holder
        run_lease.acquire(str(tmp_path / "run"))
    message = str(held.value)
    assert f"pid {os.getpid()}" in message and socket.gethostname() in message and "--gin.X=1" in message
    assert "\n" not in message and isinstance(held.value, UserError)
    lease.release()
    assert not (tmp_path / "run" / run_lease.LEASE_NAME).exists()
    run_lease.acquire(str(tmp_path / "run")).release()  # free again


def test_a_dead_holder_on_this_host_is_taken_over_with_a_warning(tmp_path, caplog):
    _write_lease(str(tmp_path), pid=_dead_pid())
    with run_lease.acquire(str(tmp_path)) as lease:
        assert json.loads((tmp_path / run_lease.LEASE_NAME).read_text())["token"] == lease.record["token"]
    assert any("taking over" in r.getMessage() and "no longer runs" in r.getMessage() for r in caplog.records)


def test_a_reused_pid_does_not_keep_a_lease(tmp_path):
    _write_lease(str(tmp_path), pid=os.getpid(), pid_start=1)  # our pid, but started at another time
    run_lease.acquire(str(tmp_path)).release()


def test_another_hosts_lease_is_held_until_its_heartbeat_is_stale(tmp_path):
    _write_lease(str(tmp_path), host="other-host", pid=1)
    with pytest.raises(run_lease.LeaseHeldError, match="host other-host pid 1"):
        run_lease.acquire(str(tmp_path))
    old = time.time() - 3600
    _write_lease(str(tmp_path), host="other-host", pid=1, heartbeat=old)
    os.utime(tmp_path / run_lease.LEASE_NAME, (old, old))
    run_lease.acquire(str(tmp_path), settings=run_lease.LeaseConfig(stale_after_s=600)).release()


def test_heartbeat_keeps_the_lease_fresh(tmp_path):
    settings = run_lease.LeaseConfig(heartbeat_s=0.05, stale_after_s=1)
    with run_lease.acquire(str(tmp_path), settings=settings):
        first = json.loads((tmp_path / run_lease.LEASE_NAME).read_text())["heartbeat"]
        time.sleep(0.5)
        later = json.loads((tmp_path / run_lease.LEASE_NAME).read_text())["heartbeat"]
    assert later > first


def test_unwritable_model_dir_is_a_user_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(run_lease.ModelDirNotWritableError, match="MODEL_DIR=.*cannot be written"):
        run_lease.acquire(str(tmp_path / "file" / "run"))


def test_ram_filesystem_lease():
    model_dir = f"ram://lease_test_{os.getpid()}"
    lease = run_lease.acquire(model_dir)
    assert nj_io.exists(run_lease.lease_path(model_dir))
    with pytest.raises(run_lease.LeaseHeldError):
        run_lease.acquire(model_dir)
    lease.release()
    assert not nj_io.exists(run_lease.lease_path(model_dir))


def _race(model_dir, barrier, results):
    barrier.wait()
    try:
        run_lease.acquire(model_dir)  # kept until the process exits
        results.put("won")
    except run_lease.LeaseHeldError:
        results.put("held")
    time.sleep(0.5)


def test_racing_processes_exactly_one_wins(tmp_path):
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(6), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(str(tmp_path), barrier, results)) for _ in range(6)]
    for p in procs:
        p.start()
    outcomes = sorted(results.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert outcomes == ["held"] * 5 + ["won"]


# ---------------------------------------------------------------------------------------------
# Through the binary (a throwaway entry function, so no model is built).


@pytest.fixture
def entry(tmp_path):
    pkg = tmp_path / "lease_entry_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "entry.py").write_text(textwrap.dedent("""
        import os, time
        from next_jax.errors import UserError
        def go(*, model_dir, steps: int, sleep: float = 0.0, fail: str = ''):
            if fail == 'user':
                raise UserError('tasks.jsonl:3: field "tests": expected a list')
            if fail == 'bug':
                {}['missing']
            with open(os.path.join(model_dir, 'started'), 'w') as f:
                f.write(str(os.getpid()))
            time.sleep(sleep)
            return steps
    """))
    (tmp_path / "exp.gin").write_text(textwrap.dedent("""
        from __gin__ import dynamic_registration
        from lease_entry_pkg import entry
        RUN_MODE = 'demo'
        MODEL_DIR = %gin.REQUIRED
        STEPS = 2
        entry.go.model_dir = %MODEL_DIR
        entry.go.steps = %STEPS
    """))
    return tmp_path


def _main(args, root, wait=True):
    env = dict(os.environ, PYTHONPATH=f"{root}:{REPO}")
    code = ("import sys\nfrom next_jax import main\nmain.RUN_MODES['demo'] = 'lease_entry_pkg.entry:go'\n"
            "sys.exit(main.main())")
    cmd = [sys.executable, "-c", code, "--gin_file=exp.gin", *args]
    if not wait:
        return subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=120)


def _error_lines(stderr: str) -> list:
    return [line for line in stderr.splitlines() if line.startswith("next_jax:")]


@pytest.mark.heavy
def test_second_run_stops_at_once_naming_the_holder_and_a_killed_run_resumes(entry):
    run = entry / "run"
    first = _main([f"--gin.MODEL_DIR='{run}'", "--gin.entry.go.sleep=60"], entry, wait=False)
    try:
        deadline = time.time() + 60
        while not (run / "started").exists() and time.time() < deadline:
            time.sleep(0.2)
        assert (run / "started").exists(), first.stderr.read() if first.poll() is not None else "not started"
        second = _main([f"--gin.MODEL_DIR='{run}'"], entry)
        assert second.returncode == 2
        lines = _error_lines(second.stderr)
        assert len(lines) == 1 and "Traceback" not in second.stderr, second.stderr
        assert f"pid {first.pid}" in lines[0] and "in use by another run" in lines[0]
        assert "--gin.entry.go.sleep=60" in lines[0] and str(run / run_lease.LEASE_NAME) in lines[0]
        assert (run / "started").read_text() == str(first.pid)  # the second run wrote nothing
    finally:
        first.kill()
        first.wait()
    assert (run / run_lease.LEASE_NAME).exists()  # SIGKILL leaves the lease behind ...
    resumed = _main([f"--gin.MODEL_DIR='{run}'"], entry)  # ... and the rerun takes it over
    assert resumed.returncode == 0, resumed.stderr
    assert "taking over the lease" in resumed.stderr and f"process {first.pid} no longer runs" in resumed.stderr
    assert not (run / run_lease.LEASE_NAME).exists()  # released at exit
    again = _main([f"--gin.MODEL_DIR='{run}'"], entry)  # a finished run's directory is free
    assert again.returncode == 0 and "taking over" not in again.stderr


@pytest.mark.heavy
def test_user_errors_are_one_line_exit_2_and_internal_errors_keep_tracebacks(entry):
    run = entry / "run"
    typed = _main([f"--gin.MODEL_DIR='{run}'", '--gin.STEPS="abc"'], entry)
    assert typed.returncode == 2 and "Traceback" not in typed.stderr
    assert _error_lines(typed.stderr) == [
        "next_jax: gin binding entry.go.steps = 'abc' through macro STEPS (set by --gin.STEPS=\"abc\"): steps takes "
        "an int, not a string; set STEPS to an int (numbers and booleans are written without quotes)"]
    assert not run.exists()  # refused before anything was written

    user = _main([f"--gin.MODEL_DIR='{run}'", "--gin.entry.go.fail='user'"], entry)
    assert user.returncode == 2 and "Traceback" not in user.stderr
    assert _error_lines(user.stderr) == ['next_jax: tasks.jsonl:3: field "tests": expected a list']
    assert not (run / run_lease.LEASE_NAME).exists()  # released on the way out

    bug = _main([f"--gin.MODEL_DIR='{run}'", "--gin.entry.go.fail='bug'"], entry)
    assert bug.returncode == 1 and "Traceback" in bug.stderr and "KeyError: 'missing'" in bug.stderr
    assert not (run / run_lease.LEASE_NAME).exists()

    (entry / "a_file").write_text("")
    unwritable = _main([f"--gin.MODEL_DIR='{entry / 'a_file' / 'run'}'"], entry)
    assert unwritable.returncode == 2 and "Traceback" not in unwritable.stderr
    [line] = _error_lines(unwritable.stderr)
    assert "MODEL_DIR=" in line and "cannot be written (NotADirectoryError" in line and "--gin.MODEL_DIR" in line
