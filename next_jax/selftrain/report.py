"""What a NExT run shows: ``MODEL_DIR/report.md``, ``report.png`` beside it, TensorBoard under
``MODEL_DIR/next``.

Per iteration: |D_H|, coverage (hard problems with at least one accepted pair), |B(i)|, accepted
pairs per problem, dev pass@k with and without traces, greedy pass@1, proxy pass@k, and the wall
time of each stage; then a few (trace, rationale, fix, verdict) examples per iteration, accepted
and rejected, so a reader sees what the model actually wrote.
"""

from __future__ import annotations

import io
from typing import Mapping, Sequence

from absl import logging

from next_jax import io as nj_io
from next_jax import trainer as trainer_lib
from next_jax.evaluation.repair import flat_metrics

TRACE_CHARS = 1200


def examples(samples, verdicts, tasks: Mapping, count: int) -> list:
    """Up to ``count`` accepted and ``count`` rejected samples, each from a different problem."""
    picked, seen = {"pass": [], "other": []}, {"pass": set(), "other": set()}
    for sample, verdict in zip(samples, verdicts):
        kind = "pass" if verdict.passed else "other"
        if len(picked[kind]) >= count or sample.task_id in seen[kind]:
            continue
        task = tasks[sample.task_id]
        traces = getattr(task, "traces", None) or []
        trace = traces[0].traced_code if traces else task.buggy_code
        picked[kind].append({"task_id": sample.task_id, "trace": trace[:TRACE_CHARS], "rationale": sample.rationale,
                             "fix": sample.fix, "verdict": verdict.status, "detail": verdict.detail[:300]})
        seen[kind].add(sample.task_id)
    return picked["pass"] + picked["other"]


def iteration_scalars(row: Mapping) -> dict:
    scalars = flat_metrics(row.get("dev") or {}, prefix="dev/")
    scalars.update(flat_metrics(row.get("test") or {}, prefix="test/"))
    if "build" in row:
        b = row["build"]
        scalars.update({"hard_problems": row["hard"], "coverage": b["coverage"], "b_size": b["size"],
                        "accepted_per_problem_mean": b["accepted_per_problem_mean"],
                        "accepted_per_problem_max": b["accepted_per_problem_max"],
                        "samples_passed": row["samples_passed"], "finetune_steps": row["finetune"]["num_steps"]})
    scalars.update({f"time_s/{stage}": s for stage, s in row.get("timings_s", {}).items()})
    return scalars


def write_iteration_scalars(model_dir: str, row: Mapping) -> None:
    """TensorBoard scalars (and the examples as text) of one iteration, step = iteration."""
    writer = trainer_lib.metric_writer(model_dir, "next")
    step = int(row["iteration"])
    writer.write_scalars(step, iteration_scalars(row))
    if row.get("build", {}).get("examples"):
        writer.write_texts(step, {"examples": _examples_markdown(row["build"]["examples"])})
    writer.flush()
    writer.close()


def _pct(value) -> str:
    return "" if value is None else f"{100 * value:.1f}"


def _examples_markdown(items: Sequence[Mapping]) -> str:
    out = []
    for item in items:
        out += [f"**{item['task_id']}**: verdict `{item['verdict']}`" + (f" ({item['detail']})" if item["detail"] else ""),
                "", "Trace (first test):", "```python", item["trace"].rstrip(), "```", "",
                "Rationale:", "", "> " + (item["rationale"] or "(empty)").strip().replace("\n", "\n> "), "",
                "Fix:", "```python", (item["fix"] or "(no fix parsed)").rstrip(), "```", ""]
    return "\n".join(out)


def render_markdown(result: Mapping, ks: Sequence[int]) -> str:
    rows = result["iterations"]
    lines = ["# NExT self-training report", "",
             f"Best iteration: **{result['best_iteration']}** (dev pass@1 with {result['select_by']} prompts); "
             f"wall time {result['wall_s']:.0f} s (this invocation).", ""]
    selection = result.get("selection")
    if selection:
        lines += [f"Hard problems |D_H| = {selection['hard']} of {selection['train_tasks']} training tasks "
                  f"(threshold m = {selection['threshold']}; base pass@1 on train "
                  f"{_pct(selection.get('base_train_pass_at_1'))}%).", ""]
    lines += ["![dev pass@k per iteration](report.png)", ""]
    for key, title in (("dev", "Dev set"), ("test", "Test set")):
        if not any(row.get(key) for row in rows):
            continue
        lines += [f"## {title} (percent)", ""]
        head = ["iteration"] + [f"pass@{k}" for k in ks] + [f"no-trace pass@{k}" for k in ks] + \
            ["greedy pass@1", "no-trace greedy"] + [f"proxy pass@{k}" for k in ks]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for row in rows:
            dev = row.get(key) or {}
            cells = [str(row["iteration"])]
            cells += [_pct((dev.get("trace") or {}).get(f"pass@{k}")) for k in ks]
            cells += [_pct((dev.get("no_trace") or {}).get(f"pass@{k}")) for k in ks]
            cells += [_pct((dev.get("greedy") or {}).get(v)) for v in ("trace", "no_trace")]
            cells += [_pct((dev.get("proxy") or {}).get(f"pass@{k}")) for k in ks]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["", "## Self-training data", "",
              "| iteration | \\|D_H\\| | samples | passing | coverage % | \\|B(i)\\| | accepted/problem mean | max | fine-tune steps |",
              "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        if "build" not in row:
            continue
        b = row["build"]
        lines.append(f"| {row['iteration']} | {row['hard']} | {row['samples']} | {row['samples_passed']} | "
                     f"{_pct(b['coverage'])} | {b['size']} | {b['accepted_per_problem_mean']:.2f} | "
                     f"{b['accepted_per_problem_max']} | {row['finetune']['num_steps']} |")
    stages = ["select", "eval", "test", "sample", "check", "build", "finetune"]
    lines += ["", "## Wall time per stage (s; a stage done in an earlier invocation shows its recorded time)", "",
              "| iteration | " + " | ".join(stages) + " |", "|---|" + "---|" * len(stages)]
    for row in rows:
        t = row.get("timings_s", {})
        lines.append(f"| {row['iteration']} | " + " | ".join(f"{t[s]:.1f}" if s in t else "" for s in stages) + " |")
    lines += ["", "## Examples (trace, rationale, fix, verdict)", ""]
    for row in rows:
        items = row.get("build", {}).get("examples")
        if items:
            lines += [f"### Iteration {row['iteration']}", "", _examples_markdown(items)]
    return "\n".join(lines) + "\n"


def plot_png(result: Mapping, ks: Sequence[int]) -> bytes:
    """Dev pass@k per iteration (solid: with traces, dashed: without, dotted: proxy) as PNG bytes."""
    import matplotlib  # deferred: only the report's plot needs it, and it is slow to import

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    rows = result["iterations"]
    xs = [row["iteration"] for row in rows]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    for index, k in enumerate(ks):  # one colour per k; solid, dashed, dotted per variant
        for key, style, label in (("trace", "-o", "traces"), ("no_trace", "--s", "no traces"),
                                  ("proxy", ":^", "proxy")):
            ys = [(row["dev"].get(key) or {}).get(f"pass@{k}") for row in rows]
            if any(y is not None for y in ys):
                ax.plot(xs, [100 * y if y is not None else float("nan") for y in ys], style, color=f"C{index}",
                        label=f"pass@{k} ({label})")
    ax.set_xlabel("iteration")
    ax.set_ylabel("dev pass@k (%)")
    ax.set_xticks(xs)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("NExT: dev pass@k per iteration")
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def write_report(model_dir: str, result: Mapping, ks: Sequence[int]) -> str:
    path = nj_io.join(model_dir, "report.md")
    nj_io.write_text(path, render_markdown(result, ks))
    try:
        nj_io.write_bytes(nj_io.join(model_dir, "report.png"), plot_png(result, ks))
    except ImportError:
        logging.warning("matplotlib is not installed: report.png not written (pip install matplotlib)")
    logging.info("next: report written to %s", path)
    return path
