"""Record types: round trips, validation messages that name file, line and field, atomic writes."""

import json
import os

import pytest

from next_jax.data import records
from next_jax.data.records import RecordError, RepairTask, Sample, Trace, TracedTask, Verdict


def _task(**kw):
    fields = dict(
        task_id="mbpp/11",
        source="mbpp",
        description="Remove first and last occurrence of a char.",
        buggy_code="def f(s):\n    return s\n",
        entry_point="f",
        tests=["assert f('a') == ''"],
    )
    fields.update(kw)
    return RepairTask(**fields)


def test_repair_task_round_trip_and_eval_tests_default(tmp_path):
    task = _task()
    assert task.eval_tests == task.tests
    path = tmp_path / "tasks.jsonl"
    assert records.write_records(str(path), [task, _task(task_id="mbpp/12", eval_tests=["assert 1"])]) == 2
    back = records.read_all(str(path), RepairTask)
    assert back[0] == task
    assert back[1].eval_tests == ["assert 1"]
    assert json.loads(path.read_text().splitlines()[0])["schema_version"] == records.SCHEMA_VERSION


def test_traced_task_round_trip(tmp_path):
    traced = TracedTask.from_repair_task(
        _task(), [Trace(test="assert f('a') == ''", traced_code="def f(s):  # (0) s='a';", outcome="fail")]
    )
    path = str(tmp_path / "traced.jsonl")
    records.write_records(path, [traced])
    (back,) = records.read_all(path, TracedTask)
    assert back == traced
    assert back.repair_task() == _task()
    assert not back.truncated


def test_sample_and_verdict_round_trip(tmp_path):
    s = Sample(task_id="t", iteration=0, sample_id="t/0", prompt_variant="trace", text="x", rationale="r",
               fix=None, logprob=-1.5, model="m", seed=7)
    v = Verdict(task_id="t", sample_id="t/0", status="no_code", tests_passed=0, tests_total=3)
    records.write_records(str(tmp_path / "s.jsonl"), [s])
    records.write_records(str(tmp_path / "v.jsonl"), [v])
    assert records.read_all(str(tmp_path / "s.jsonl"), Sample) == [s]
    assert records.read_all(str(tmp_path / "v.jsonl"), Verdict) == [v]


@pytest.mark.parametrize(
    "mutate, field, message",
    [
        (lambda d: d.pop("entry_point"), "entry_point", "missing required field"),
        (lambda d: d.update(tests="assert x"), "tests", "expected list"),
        (lambda d: d.update(tests=["ok", 3]), "tests[1]", "should be str"),
        (lambda d: d.update(colour="red"), "colour", "unknown field"),
        (lambda d: d.update(schema_version=99), "schema_version", "not supported"),
    ],
)
def test_bad_record_names_file_line_and_field(tmp_path, mutate, field, message):
    good = _task().to_dict()
    bad = dict(good)
    mutate(bad)
    path = tmp_path / "tasks.jsonl"
    path.write_text(json.dumps(good) + "\n\n" + json.dumps(bad) + "\n")
    reader = records.read_records(str(path), RepairTask)
    assert next(reader) == _task()
    with pytest.raises(RecordError) as info:
        next(reader)
    assert f"{path}:3" in str(info.value)
    assert f"field '{field}'" in str(info.value)
    assert message in str(info.value)


def test_invalid_json_and_bad_choices(tmp_path):
    path = tmp_path / "v.jsonl"
    path.write_text("{not json}\n")
    with pytest.raises(RecordError, match=rf"{path}:1: invalid JSON"):
        records.read_all(str(path), Verdict)
    v = Verdict(task_id="t", sample_id="s", status="pass", tests_passed=1, tests_total=1).to_dict()
    path.write_text(json.dumps(dict(v, status="passed")) + "\n")
    with pytest.raises(RecordError, match="field 'status'.*not one of"):
        records.read_all(str(path), Verdict)
    path.write_text(json.dumps(dict(v, tests_passed=2)) + "\n")
    with pytest.raises(RecordError, match="field 'tests_passed'"):
        records.read_all(str(path), Verdict)
    path.write_text(json.dumps(dict(v, tests_total=True)) + "\n")
    with pytest.raises(RecordError, match="field 'tests_total': expected int, got bool"):
        records.read_all(str(path), Verdict)


def test_atomic_writer_keeps_old_file_on_failure(tmp_path):
    path = str(tmp_path / "tasks.jsonl")
    records.write_records(path, [_task()])
    before = open(path).read()

    def broken():
        yield _task(task_id="new")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        records.write_records(path, broken())
    assert open(path).read() == before
    assert os.listdir(tmp_path) == ["tasks.jsonl"]


def test_read_tasks_accepts_both_task_files_and_gzip(tmp_path):
    import gzip

    traced = TracedTask.from_repair_task(_task(task_id="b"), [Trace(test="assert 1", traced_code="x", outcome="pass")])
    path = tmp_path / "mixed.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.write(_task().to_json() + "\n" + traced.to_json() + "\n")
    got = list(records.read_tasks(str(path)))
    assert got == [_task(), traced] and type(got[1]) is TracedTask and type(got[0]) is RepairTask


def test_collected_errors_skip_bad_rows_and_keep_good_ones(tmp_path):
    good = RepairTask(task_id="t/1", source="unit", description="d", buggy_code="x = 1\n", entry_point="f",
                      tests=["assert True"])
    path = tmp_path / "tasks.jsonl"
    path.write_text("\n".join([good.to_json(), "{oops", json.dumps({"task_id": "t/2"}), good.to_json()]) + "\n")
    errors = []
    rows = records.read_json_lines(str(path), on_error=errors.append)
    parsed = list(records.parse_rows(rows, lambda obj, where: RepairTask.from_dict(obj, where=where), errors.append))
    assert parsed == [good, good]
    assert [(e.where, e.field) for e in errors] == [(f"{path}:2", ""), (f"{path}:3", "source")]
    with pytest.raises(RecordError, match=rf"{path}:2: invalid JSON"):
        list(records.read_json_lines(str(path)))


def test_tasks_by_id_from_a_file_or_records_names_a_repeated_id(tmp_path):
    task = RepairTask(task_id="t/1", source="unit", description="d", buggy_code="def f():\n    return 1\n",
                      entry_point="f", tests=["assert f() == 2"])
    other = RepairTask(**dict(task.__dict__, task_id="t/2"))
    path = str(tmp_path / "tasks.jsonl")
    records.write_records(path, [task, other, task])
    assert list(records.tasks_by_id([task, other])) == ["t/1", "t/2"]
    with pytest.raises(RecordError, match=r"tasks.jsonl, task #3: field 'task_id': duplicate task_id 't/1'"):
        records.tasks_by_id(path)
    with pytest.raises(RecordError, match=r"^task #2: field 'task_id'"):
        records.tasks_by_id([task, task])
