"""The demo's picture (``demo.png``) and ``report.md``: every arm against the iteration, on the
test split, with error bars, the guessing baselines as lines; the table, the domain, examples of
trace, rationale and fix, and the time per stage."""

from __future__ import annotations

import io as std_io
import json
from typing import Any, Mapping, Sequence

from next_jax import io as nj_io


def _pct(figure: Mapping[str, Any]) -> str:
    return f"{100 * figure['mean']:.1f} ± {100 * figure['stderr']:.1f}"


def plot_png(summary: Mapping[str, Any]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    iters = list(range(len(summary["next_trace"])))
    fig, ax = plt.subplots(figsize=(10, 5), dpi=110)

    def curve(figures, label, style, xs=None):
        xs = iters if xs is None else xs
        ax.errorbar(xs, [100 * f["mean"] for f in figures], yerr=[100 * f["stderr"] for f in figures], fmt=style,
                    capsize=4, label=label, linewidth=2, markersize=6)

    curve(summary["next_trace"], "NExT with traces", "o-")
    if "control" in summary:
        curve(summary["control"], "same-budget control (seed set only)", "s--")
    if "next_no_trace" in summary:
        curve(summary["next_no_trace"], "NExT without traces", "^-")
    last = iters[-1]
    if "upper_bound" in summary:
        curve([summary["upper_bound"]], "upper bound (correct answers, all train tasks)", "*", xs=[last])
    curve([summary["ablation_no_trace_at_test"]], "best NExT model, traces removed at test", "X",
          xs=[summary["best_iteration"]])
    colors = ["grey", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "black", "tab:gray", "darkkhaki"]
    for k, (name, figure) in enumerate(sorted(summary["baselines"].items())):
        color = colors[k % len(colors)]
        ax.axhline(100 * figure["mean"], color=color, linestyle=":", linewidth=1.2, label=f"guess: {name}")
    ax.set_ylim(0, 100)
    ax.set_xlim(-0.3, last + 0.3)
    ax.set_xticks(iters)
    ax.set_xlabel("NExT iteration (0 = bootstrap)")
    ax.set_ylabel("test pass@1 (%), mean over seeds")
    # Each arm's bar holds the seed variance; the gains are paired over the same tasks, so their
    # standard errors are smaller than the bars suggest: say them on the picture.
    gains = [f"{label} {100 * summary[key]['mean']:+.1f} ± {100 * summary[key]['stderr']:.1f}"
             for key, label in (("gain_over_control", "over control"), ("gain_over_no_trace", "over no-trace"),
                                ("gain_over_bootstrap", "over bootstrap")) if key in summary]
    ax.set_title(f"CPU demo: {len(summary['seeds'])} seeds, error bars = 1 standard error")
    ax.text(0.02, 0.97, f"best NExT iteration ({summary['best_iteration']}),\npaired gains in points:\n"
            + "\n".join(gains), transform=ax.transAxes, va="top", fontsize=8,
            bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8})
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    buffer = std_io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def render_markdown(config, summary: Mapping[str, Any], rows: Sequence[Mapping[str, Any]],
                    line: Mapping[str, Any]) -> str:
    best = summary["best_iteration"]
    out = ["# CPU demo report", "",
           f"Seeds {summary['seeds']}; best iteration (chosen on validation) {best}; test split, "
           f"{config.data.num_test} tasks per seed. Figures: mean ± standard error (seed variance plus the "
           "paired task variance), in points.", "", "![arms](demo.png)", "",
           "| arm | test pass@1 | per seed |", "|---|---|---|"]

    def row(name, figure):
        out.append(f"| {name} | {_pct(figure)} | {', '.join(f'{100 * v:.1f}' for v in figure['per_seed'])} |")

    for j, figure in enumerate(summary["next_trace"]):
        row("bootstrap" if j == 0 else f"NExT with traces, iteration {j}", figure)
    for j, figure in enumerate(summary.get("control", [])[1:], start=1):
        row(f"control, {j * config.next.finetune_steps} extra steps on the seed set", figure)
    for j, figure in enumerate(summary.get("next_no_trace", [])):
        row(f"NExT without traces, iteration {j}", figure)
    row("best NExT model, traces removed at test", summary["ablation_no_trace_at_test"])
    if "upper_bound" in summary:
        row("upper bound", summary["upper_bound"])
    for name, figure in sorted(summary["baselines"].items()):
        row(f"guess: {name}", figure)
    out += ["", "| difference | points |", "|---|---|"]
    for key in ("gain_over_control", "gain_over_no_trace", "gain_over_bootstrap", "gain_over_best_baseline"):
        if key in summary:
            out.append(f"| {key} | {_pct(summary[key])} |")
    if "counterfactual_follows_edit" in summary:
        out.append(f"| counterfactual: answers that follow the edited trace | "
                   f"{_pct(summary['counterfactual_follows_edit'])} |")
        out.append(f"| counterfactual: answers that keep the original answer | "
                   f"{_pct(summary['counterfactual_keeps_original'])} |")
    out += ["", "Rationale quality (share of greedy test answers whose rationale states the trace's facts and "
            "agrees with its own fix), per iteration: "
            + ", ".join(_pct(f) for f in summary["rationale_consistent"]) + "; among the kept samples "
            "(fix filter): " + ", ".join(f"{100 * v:.1f}" for v in summary["kept_rationale_consistent"]) + ".", ""]
    out += ["## Per iteration (seed by seed)", "", "| seed | iteration | samples | passing | tasks covered | "
            "kept | kept and consistent | training pairs |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for j, it in enumerate(r["trace"]["iterations"], start=1):
            out.append(f"| {r['seed']} | {j} | {it['samples']} | {it['passed']} | {it['covered']} | {it['kept']} | "
                       f"{it['kept_consistent']} | {it['train_pairs']} |")
    first = rows[0]
    out += ["", "## Domain", "",
            f"Loops over a list of digits that mix {config.data.loops.num_accumulators} accumulators and return the "
            "last one without the final shift the tests expect; the fix shifts it by the expected value minus the "
            "value the trace shows it return (a guess among 9 shifts without the trace). "
            + (f"Every arm starts from a base model trained for {config.pretrain.steps} steps to predict the next "
               f"token of {config.data.num_pretrain} unlabelled traced programs (no repairs). "
               if config.pretrain.steps and config.data.num_pretrain else "Every arm starts from random weights. ")
            + f"The bootstrap trains {config.bootstrap.steps} steps on {config.data.num_seed} labelled seed tasks. "
            "Example test prompt (traced by the real tracer) and the best model's answer:", "", "```",
            first["examples"]["prompt"].rstrip(), first["examples"]["answer"], "```", ""]
    if "counterfactual" in first:
        out += ["The same prompt with the returned value its trace shows edited (an answer that reads the trace "
                "follows the edit), and the answer:", "", "```", first["counterfactual"]["example"]["prompt"].rstrip(),
                first["counterfactual"]["example"]["answer"], "```", ""]
    example = next((it["example"] for it in first["trace"]["iterations"] if it["example"]), None)
    if example:
        out += [f"A kept self-training sample ({example['task']}):", "", "```", example["answer"], "```", ""]
    out += ["## Time", "", f"Wall time {line['wall_s']} s; load average at start {summary['load_average']['start']}, "
            f"at end {summary['load_average']['end']} (2 cores); {summary['training_steps']} training steps in all.",
            "", "| stage | seconds |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in summary["stage_wall_s"].items()]
    out += ["", "## The line", "", "```", json.dumps(dict(line)), "```", ""]
    return "\n".join(out)


def write(config, summary, rows, line) -> None:
    nj_io.write_text(nj_io.join(config.model_dir, "report.md"), render_markdown(config, summary, rows, line))
    with nj_io.open_file(nj_io.join(config.model_dir, "demo.png"), "wb") as f:
        f.write(plot_png(summary))
