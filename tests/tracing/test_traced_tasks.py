"""Tracing in the sandbox: TracedTask building, files, the CLI and the Beam transform."""

import json
import subprocess
import sys

import pytest

from next_jax.data.records import RecordError, RepairTask, TracedTask, read_records, write_records
from next_jax.execution.sandbox import Limits, SandboxPool
from next_jax.tracing.config import TraceConfig
from next_jax.tracing.traced_tasks import trace_file, trace_tasks
from next_jax.tracing.sandboxed import TARGET, TraceJob, trace_jobs, trace_program

ADD = "def add(a, b):\n    c = a - b\n    return c\n"
LOOP = "def spin(n):\n    i = 0\n    while i < n:\n        i = i * 1\n    return i\n"
SLEEP = "import time\ndef nap():\n    time.sleep(60)\n    return 1\n"


def task(task_id, code, tests, setup=""):
    return RepairTask(task_id=task_id, source="unit", description="d", buggy_code=code,
                      entry_point="f", tests=tests, setup_code=setup)


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(workers=2, targets=[TARGET]) as p:
        yield p


def test_trace_tasks_gives_one_trace_per_test_in_order(pool):
    tasks = [
        task("t1", ADD, ["assert add(2, 1) == 1", "assert add(1, 2) == 3"]),
        task("t0", ADD, []),
        task("t2", LOOP, ["assert spin(3) == 3"]),
    ]
    out = list(trace_tasks(tasks, TraceConfig(max_events=2000, timeout_s=None), pool=pool))
    assert [t.task_id for t in out] == ["t1", "t0", "t2"]
    first, empty, loop = out
    assert [tr.test for tr in first.traces] == first.tests
    assert [tr.outcome for tr in first.traces] == ["pass", "fail"]
    assert first.traces[1].traced_code.endswith("# (3) __exception__ = AssertionError()")
    assert "# (2) __return__=-1;" in first.traces[1].traced_code
    assert empty.traces == []
    assert loop.traces[0].outcome == "timeout"
    assert "__timeout__ = 'stopped after 2000 trace events'" in loop.traces[0].traced_code


def test_a_run_the_sandbox_kills_still_gives_a_marked_trace(pool):
    data = list(trace_jobs([TraceJob(SLEEP, "nap()")], TraceConfig(), pool=pool,
                           limits=Limits(timeout_s=1.0, cpu_s=1.0)))[0]
    assert data["outcome"] == "timeout" and data["sandbox_status"] == "timeout"
    from next_jax.tracing.render import render_trace

    text = render_trace(SLEEP, "nap()", data)
    assert text.split("\n")[-1].startswith("nap()  # (0) __timeout__ = 'killed by the sandbox (")


def test_program_output_and_exit_do_not_break_tracing(pool):
    code = "import os\ndef f():\n    print('x' * 100000)\n    os._exit(3)\n"
    data = trace_program(code, ["f()"], pool=pool)[0]
    assert data["outcome"] == "error" and "run died" in json.dumps(data)


def test_same_job_gives_the_same_trace_on_every_worker(pool):
    code = "import random\ndef f(n):\n    d = {}\n    for i in range(n):\n        d[i] = random.random()\n    return d\n"
    datas = list(trace_jobs([TraceJob(code, "f(3)")] * 4, TraceConfig(), pool=pool))
    assert all(json.dumps(d) == json.dumps(datas[0]) for d in datas)


def test_string_hashing_is_fixed_so_set_orders_repeat_on_every_worker(pool):
    # Sets of strings iterate in an order set by the interpreter's hash seed: traces repeat
    # across runs and machines only if the sandbox fixes it (PYTHONHASHSEED).
    code = "def f(words):\n    s = set(words)\n    return list(s)\n"
    test = "f(['apple', 'banana', 'cherry', 'date', 'elder', 'fig'])"
    datas = list(trace_jobs([TraceJob(code, test)] * 6, TraceConfig(), pool=pool))
    assert {d["hash_randomization"] for d in datas} == {0}
    assert len({json.dumps(d) for d in datas}) == 1


def test_trace_file_round_trip(tmp_path):
    src = tmp_path / "tasks.jsonl"
    out = tmp_path / "traced.jsonl"
    write_records(str(src), [task("a", ADD, ["assert add(1, 1) == 2"]), task("b", ADD, ["add(3, 1)"])])
    counts = trace_file(str(src), str(out), workers=1)
    assert counts["tasks"] == 2 and counts["traces"] == 2 and counts["fail"] == 1 and counts["pass"] == 1
    traced = list(read_records(str(out), TracedTask))
    assert [t.task_id for t in traced] == ["a", "b"]
    assert traced[1].traces[0].traced_code.endswith("add(3, 1)")


def test_trace_file_rejects_bad_input_before_writing(tmp_path):
    src = tmp_path / "tasks.jsonl"
    src.write_text(task("a", ADD, ["add(1, 1)"]).to_json() + "\n" + '{"task_id": "b"}\n')
    out = tmp_path / "traced.jsonl"
    with pytest.raises(RecordError, match=r"tasks.jsonl:2"):
        trace_file(str(src), str(out))
    assert not out.exists()


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "next_jax.tracing", *args], capture_output=True,
                          text=True, timeout=300)


@pytest.mark.heavy
def test_cli_traces_one_program(tmp_path):
    program = tmp_path / "prog.py"
    program.write_text(ADD)
    proc = _cli(f"--program={program}", "--test=assert add(2, 1) == 1", "--test=add(1, 1)")
    assert proc.returncode == 0, proc.stderr
    program_1, test_1, program_2, test_2 = proc.stdout.strip("\n").split("\n\n")
    assert program_1.startswith("def add(a, b):  # (0) a=2; b=1;\n") and test_1 == "assert add(2, 1) == 1"
    assert program_2.endswith("return c  # (2) __return__=0") and test_2 == "add(1, 1)"


@pytest.mark.heavy
def test_cli_traces_a_task_file_and_reports_bad_input(tmp_path):
    src = tmp_path / "tasks.jsonl"
    out = tmp_path / "traced.jsonl"
    write_records(str(src), [task("a", ADD, ["add(1, 1)"])])
    proc = _cli(f"--tasks={src}", f"--out={out}")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["tasks"] == 1
    assert len(list(read_records(str(out), TracedTask))) == 1
    src.write_text("not json\n")
    proc = _cli(f"--tasks={src}", f"--out={out}")
    assert proc.returncode == 2 and "tasks.jsonl:1" in proc.stderr
    assert _cli(f"--program={src}").returncode == 2  # no --test
    assert _cli("--max_events=lots").returncode == 1  # absl: not an integer


@pytest.mark.heavy
def test_beam_transform_traces_a_file(tmp_path):
    from next_jax.tracing.beam_traces import parse_traced, trace_file_with_beam

    src = tmp_path / "tasks.jsonl"
    out = tmp_path / "traced.jsonl"
    write_records(str(src), [task("a", ADD, ["assert add(1, 1) == 2"]), task("b", LOOP, ["spin(0)"])])
    assert trace_file_with_beam(str(src), str(out)) == 2
    traced = sorted((parse_traced(line) for line in out.read_text().splitlines()), key=lambda t: t.task_id)
    assert [t.task_id for t in traced] == ["a", "b"]
    assert traced[0].traces[0].outcome == "fail"
    assert traced[1].traces[0].traced_code.startswith("def spin(n):  # (0) n=0;")


def test_fixed_hash_rerun_gives_the_recorder_result():
    from next_jax.tracing.record_run import _record_with_fixed_hashing, record

    payload = TraceJob(ADD, "add(2, 1)").payload(TraceConfig())
    data = _record_with_fixed_hashing(payload)
    assert data.pop("rerun_for_fixed_hashing") is True
    assert data["hash_randomization"] == 0
    expected = record(ADD, "add(2, 1)")
    expected["hash_randomization"] = 0
    assert data == expected
