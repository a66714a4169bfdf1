"""The dataset builder end to end on small fixtures: HeFix+, MBPP-R (mutants and samples),
resumption, malformed rows, stats.json, and loading through tfds.load and SeqIO."""

import json
import os

import pytest

from next_jax.data import build, layout, mbpp_r
from next_jax.data.records import PROMPT_VARIANTS, Sample, TracedTask, read_all, write_records
from tests import REPO

SHARED = os.path.join(REPO, "..", "shared", "data")
OPTIONS = build.DatasetBuildConfig(workers=1, test_timeout_s=2.0, units_per_shard=2, inputs_length=300)


def _hefix_row(n, entry, args, declaration, buggy, canonical, checks):
    test = "def check(candidate):\n" + "".join(f"    assert {c}\n" for c in checks) + f"\ncheck({entry})\n"
    return {"task_id": f"Python/{n}", "declaration": declaration, "buggy_solution": buggy,
            "canonical_solution": canonical, "test": test, "example_test": test, "entry_point": entry,
            "docstring": f"Spec of {entry}.", "bug_type": "operator misuse", "failure_symptoms": "incorrect output"}


def _write_hefix(tmp_path):
    rows = [
        _hefix_row(0, "add", "a, b", "def add(a, b):\n", "    return a - b\n", "    return a + b\n",
                   ["candidate(1, 2) == 3", "candidate(2, 0) == 2"]),
        _hefix_row(1, "mean", "xs", "def mean(xs):\n", "    return sum(xs) / (len(xs) - 1)\n",
                   "    return sum(xs) / len(xs)\n", ["abs(candidate([1.0, 2.0]) - 1.5) < 1e-6"]),
        # The "bug" changes nothing: the build must keep and report it.
        _hefix_row(2, "double", "x", "def double(x):\n", "    return x + x\n", "    return 2 * x\n",
                   ["candidate(2) == 4"]),
        # HumanEvalFix's canonical solution is wrong where EvalPlus's is right (3 / 2).
        _hefix_row(3, "half", "x", "def half(x):\n", "    return x / 3\n", "    return x // 2\n",
                   ["candidate(4) == 2"]),
    ]
    plus = [
        {"task_id": "HumanEval/0", "entry_point": "add", "prompt": "def add(a, b):\n",
         "canonical_solution": "    return a + b\n", "base_input": [[1, 2]], "plus_input": [[0, 0], [5, -7]], "atol": 0},
        {"task_id": "HumanEval/1", "entry_point": "mean", "prompt": "def mean(xs):\n",
         "canonical_solution": "    return sum(xs) / len(xs)\n", "base_input": [[[1.0, 2.0]]],
         "plus_input": [[[0.1, 0.2, 0.4]]], "atol": 0},
        {"task_id": "HumanEval/2", "entry_point": "double", "prompt": "def double(x):\n",
         "canonical_solution": "    return 2 * x\n", "base_input": [[3]], "plus_input": [[-4]], "atol": 0},
        {"task_id": "HumanEval/3", "entry_point": "half", "prompt": "def half(x):\n",
         "canonical_solution": "    return x / 2\n", "base_input": [[4]], "plus_input": [[3]], "atol": 0},
    ]
    fix_path, plus_path = tmp_path / "hefix.jsonl", tmp_path / "plus.jsonl"
    lines = [json.dumps(r) for r in rows]
    lines.insert(1, json.dumps({"task_id": "Python/9", "declaration": "def f():\n"}))  # malformed
    fix_path.write_text("\n".join(lines) + "\n")
    plus_path.write_text("\n".join(json.dumps(p) for p in plus) + "\n")
    return {"humanevalfix": str(fix_path), "humanevalplus": str(plus_path)}


def _load_everywhere(out_dir, stats):
    """Every split of every variant through SeqIO, and every split through tfds.load."""
    import seqio

    from next_jax import tasks
    from next_jax.data import tfds_builder

    names = tasks.register_built_tasks(out_dir, vocabulary=seqio.ByteVocabulary())
    assert names == [f"next_{stats['dataset']}_{v}" for v in PROMPT_VARIANTS]
    for split, info in stats["splits"].items():
        for name in names:
            ds = seqio.get_mixture_or_task(name).get_dataset(sequence_length=None, split=split, shuffle=False)
            assert len(list(ds.as_numpy_iterator())) == info["tasks"]
        examples = list(tfds_builder.load(out_dir, split=split, data_dir=os.path.join(out_dir, "tfds")).as_numpy_iterator())
        assert len(examples) == info["tasks"]
        assert all(len(e["traces"]["outcome"]) == len(e["tests"]) for e in examples)


def test_hefix_plus_build_checks_reports_resumes_and_loads(tmp_path):
    inputs = _write_hefix(tmp_path)
    out = str(tmp_path / "built")
    stats = build.build_dataset(dataset="hefix_plus", out_dir=out, inputs=inputs, options=OPTIONS)
    assert stats["splits"] == {"test": {"problems": 4, "shards": 2, "tasks": 4}}
    assert stats["malformed_rows"] == 1 and f"{inputs['humanevalfix']}:2" in stats["malformed_examples"][0]
    tasks = {t.task_id: t for f in layout.split_files(out, "test") for t in read_all(f, TracedTask)}
    add = tasks["hefix_plus/0"]
    assert add.tests == ["assert add(1, 2) == 3", "assert add(2, 0) == 2"]
    assert add.eval_tests == ["assert add(1, 2) == 3", "assert add(0, 0) == 0", "assert add(5, -7) == -2"]
    assert [t.outcome for t in add.traces] == ["fail", "pass"] and "__return__=-1" in add.traces[0].traced_code
    assert add.meta["checks"] == {"reference_tests": "pass", "buggy_tests": "fail", "reference_eval_tests": "pass",
                                  "buggy_eval_tests": "fail", "evalplus_canonical_eval_tests": "pass"}
    assert add.meta["reference_from"] == "humanevalfix"
    assert tasks["hefix_plus/1"].eval_tests[1].startswith("assert abs(mean([0.1, 0.2, 0.4]) - 0.2333")
    assert stats["notes"]["violations"] == [{"task_id": "hefix_plus/2", "why": "buggy program passes every eval test"}]
    assert stats["counts"]["check"]["reference_eval_tests"] == {"pass": 3, "fail": 1}
    assert stats["counts"]["check"]["evalplus_canonical_eval_tests"] == {"pass": 4}
    assert stats["counts"]["reference_from"] == {"humanevalfix": 3, "evalplus": 1}
    assert tasks["hefix_plus/3"].reference_fix == "def half(x):\n    return x / 2\n"
    assert stats["counts"]["trace_outcome"] == {"fail": 3, "pass": 2}
    assert stats["trace_tokens"]["n"] == 5 and stats["prompt_tokens"]["trace"]["n"] == 4
    assert stats["prompts_over_inputs_length"]["no_trace"]["limit"] == 300
    on_disk = json.loads(open(os.path.join(out, "stats.json")).read())
    assert on_disk["splits"] == stats["splits"] and on_disk["throughput"]["shards_built"] == 2

    again = build.build_dataset(dataset="hefix_plus", out_dir=out, inputs=inputs, options=OPTIONS)
    assert again["throughput"]["shards_built"] == 0 and again["throughput"]["shards_skipped"] == 2
    assert again["counts"] == stats["counts"]
    first = layout.split_files(out, "test")[0]
    before = open(layout.split_files(out, "test")[1]).read()
    os.remove(first)
    resumed = build.build_dataset(dataset="hefix_plus", out_dir=out, inputs=inputs, options=OPTIONS)
    assert resumed["throughput"]["shards_built"] == 1 and resumed["splits"] == stats["splits"]
    assert open(layout.split_files(out, "test")[1]).read() == before
    _load_everywhere(out, resumed)


def _write_mbpp(tmp_path):
    code = {
        "clip": "def clip(xs, lo, hi):\n    out = []\n    for x in xs:\n        if x < lo:\n            out.append(lo)\n"
                "        elif x > hi:\n            out.append(hi)\n        else:\n            out.append(x)\n    return out\n",
        "total": "def total(xs):\n    s = 0\n    for i in range(len(xs)):\n        s += xs[i]\n    return s\n",
        "count_up": "def count_up(n):\n    return [i for i in range(1, n + 1)]\n",
    }
    tests = {"clip": ["assert clip([0, 5, 9], 2, 6) == [2, 5, 6]", "assert clip([], 0, 1) == []",
                      "assert clip([3], 3, 3) == [3]"],
             "total": ["assert total([1, 2, 3]) == 6", "assert total([]) == 0", "assert total([5]) == 5"],
             "count_up": ["assert count_up(3) == [1, 2, 3]", "assert count_up(0) == []", "assert count_up(1) == [1]"]}
    rows = [(5, "total"), (12, "clip"), (13, "total"), (520, "count_up")]
    path = tmp_path / "mbpp.jsonl"
    path.write_text("\n".join(json.dumps({"text": f"Write {name}.", "code": code[name], "task_id": n,
                                          "test_setup_code": "", "test_list": tests[name],
                                          "challenge_test_list": []}) for n, name in rows) + "\n")
    return str(path)


def test_mbpp_r_from_mutants_splits_by_problem_and_counts(tmp_path):
    out = str(tmp_path / "built")
    options = build.DatasetBuildConfig(workers=1, test_timeout_s=2.0, units_per_shard=4, max_per_problem=3,
                                 max_candidates=12)
    stats = build.build_dataset(dataset="mbpp_r", out_dir=out, inputs={"mbpp": _write_mbpp(tmp_path)},
                                options=options)
    assert set(stats["splits"]) == {"train", "dev"}
    assert stats["splits"]["train"]["problems"] == 2 and stats["splits"]["dev"]["problems"] == 1
    problems = {}
    for split in ("train", "dev"):
        for f in layout.split_files(out, split):
            for task in read_all(f, TracedTask):
                problems.setdefault(task.meta["problem_id"], set()).add(split)
                assert task.meta["split"] == split and task.meta["check_status"] in ("fail", "error")
                assert task.meta["bug_source"] == "mutation" and task.meta["bug_operator"]
                assert task.buggy_code != task.reference_fix and len(task.traces) == 3
    assert problems == {12: {"train"}, 13: {"train"}, 520: {"dev"}}  # 5 is an MBPP prompt problem
    assert stats["splits"]["train"]["tasks"] == 6 and stats["splits"]["dev"]["tasks"] == 3
    assert sum(stats["counts"]["bug_operator"].values()) == 9
    assert stats["counts"]["problems"] == 3 and stats["counts"]["eval_tests_from"] == {"mbpp": 3}
    _load_everywhere(out, stats)


def test_mbpp_r_from_samples_dedups_by_ast_and_keeps_failing_programs(tmp_path):
    fixes = ["def total(xs):\n    s = 0\n    for i in range(len(xs)):\n        s += xs[i]  # same program\n    return s\n",
             "def total(xs):\n    return sum(xs) - 1\n",
             "def total(xs):\n    return sum(xs[1:])\n",
             "def total(xs):\n    return sum(xs)\n",
             "def total(xs) return 0\n",
             None,
             "def total(xs):\n    return sum(xs) - 1  # again\n"]
    samples = [Sample(task_id="mbpp/13", iteration=0, sample_id=f"s{i}", prompt_variant="no_trace", text="",
                      rationale="", fix=f, model="m") for i, f in enumerate(fixes)]
    samples_path = str(tmp_path / "samples.jsonl")
    write_records(samples_path, samples)
    with open(samples_path, "a") as f:
        f.write(json.dumps({"task_id": "humaneval/1", "iteration": 0, "sample_id": "x", "prompt_variant": "trace",
                            "text": "", "fix": "pass"}) + "\n")
    out = str(tmp_path / "built")
    stats = build.build_dataset(dataset="mbpp_r", out_dir=out, options=OPTIONS,
                                inputs={"mbpp": _write_mbpp(tmp_path), "samples": samples_path})
    tasks = [t for f in layout.split_files(out, "train") for t in read_all(f, TracedTask)]
    kept = sorted((t.meta["problem_id"], t.meta["sample_id"]) for t in tasks)
    assert kept == [(13, "s1"), (13, "s2")]
    assert stats["counts"]["candidates"] == {"duplicate": 2, "fail": 2, "no_code": 1, "pass": 1, "syntax_error": 1}
    assert stats["malformed_rows"] == 1 and "field 'task_id'" in stats["malformed_examples"][0]
    assert stats["counts"]["problems_without_tasks"] == 2  # 12 and 520 have no samples


def test_split_rule():
    assert [mbpp_r.split_of(i) for i in (3, 11, 510, 511, 600, 601, 974)] == [
        None, "train", "train", "dev", "dev", "train", "train"]


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(SHARED), reason=f"public datasets not at {SHARED}")
def test_hefix_plus_build_on_the_real_files(tmp_path):
    # The first 40 of the 164 problems (a quarter of the full build's 7-8 minutes on 2 busy cores);
    # the whole set is the README's build command.
    inputs = {"humanevalfix": os.path.join(SHARED, "humanevalpack", "humanevalpack_python.jsonl"),
              "humanevalplus": os.path.join(SHARED, "evalplus", "HumanEvalPlus-v0.1.10.jsonl.gz")}
    stats = build.build_dataset(dataset="hefix_plus", out_dir=str(tmp_path / "hefix_plus"), inputs=inputs,
                                options=build.DatasetBuildConfig(units_per_shard=16), limit=40)
    assert stats["splits"]["test"]["tasks"] == 40 and stats["malformed_rows"] == 0
    assert stats["counts"]["check"]["reference_tests"] == {"pass": 40}
    violations = stats["notes"].get("violations", [])
    assert len(violations) == stats["counts"].get("violations_total", 0) <= 5, violations


def test_a_shard_whose_every_reference_errors_is_not_written(tmp_path):
    import types

    from next_jax.data import build_stats
    from next_jax.data.records import Verdict

    class BrokenChecker:  # what a sandbox that cannot start programs answers
        def check(self, tasks, samples):
            for s in samples:
                yield Verdict(task_id=s.task_id, sample_id=s.sample_id, status="error", tests_passed=0,
                              tests_total=3, detail="program: OSError: [Errno 9] Bad file descriptor")

    ctx = types.SimpleNamespace(checker=BrokenChecker(), pool=None, seed=0, max_candidates=4, max_per_problem=2,
                                keep_timeouts=False, test_timeout_s=1.0)
    units = [unit for _, unit in mbpp_r.read_units(_write_mbpp(tmp_path))]
    stats = build_stats.Stats()
    with pytest.raises(RuntimeError, match="is the sandbox working"):
        list(mbpp_r.process_units(units, ctx, stats))
    assert stats.counts["problems_dropped/reference_error"] == 3
    assert "Bad file descriptor" in stats.notes["reference_failures"][0]["detail"]
