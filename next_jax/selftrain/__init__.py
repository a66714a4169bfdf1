"""NExT's self-training loop (Algorithm 1): choose the hard problems once, then per iteration sample
rationale+fix pairs from the current model, keep those whose fix passes the tests, fine-tune the
base model on them, and evaluate on dev; the result is the best dev iteration.

From the command line: ``--run_mode=next`` with ``gin_configs/runs/next.gin``. From Python, one
``NextConfig`` with a config per role::

    from next_jax import selftrain
    from next_jax.evaluation.runs import SamplingConfig, ExecutionConfig
    from next_jax.execution.checker import CheckConfig
    from next_jax.evaluation.repair import EvalConfig
    from next_jax.models import ModelRef

    result = selftrain.run_next(selftrain.NextConfig(
        model_dir="/tmp/next_run",
        model=ModelRef(
            model=config,                    # a ModelConfig (the gin MODEL)
            vocabulary=vocabulary,           # the seqio vocabulary of the model
            task_feature_lengths={"inputs": 160, "targets": 32},
            checkpoint="/tmp/boot/checkpoints/400",   # the base model: orbax or Hugging Face dir; None = random init
            partitioner=None),               # the sampler's mesh (default: the training mesh)
        files=selftrain.FilesConfig(
            train_file="train.jsonl",        # TracedTask JSON Lines: D (any file may be a glob over shards)
            dev_file="dev.jsonl",            # TracedTask JSON Lines: D_dev (scored on eval_tests)
            test_file=None,                  # optional: another set every iteration is scored on (HeFix+)
            seed_file="seed.jsonl",          # optional: tasks with meta['answer'] (the answer text)
            exemplars_file=None,             # optional: few-shot exemplars (meta['answer']) for the base model
            few_shot=True),                  # base model prompted with them (default: the format's own,
                                             # the 3 paper-style ones for 'fenced', none for 'line_edit')
        num_iterations=2,
        prompt_variant="trace",              # or 'no_trace' (the ablation: no traces anywhere)
        answer_format="line_edit",           # 'fenced' (default) or any formats.register_format name/object
        selection=selftrain.SelectionConfig(threshold=0.1, sampling=SamplingConfig(num_samples=32)),
        sampling=SamplingConfig(num_samples=32, temperature=0.8, max_new_tokens=24, batch_size=256),
        build=selftrain.BuildConfig(dedup="none", max_per_problem=None, accumulate=False, include_seed=False),
        finetune=selftrain.FinetuneConfig(epochs=2.0, batch_size=32, from_previous=False,
                                          optimizer=optimizers.AdamW(learning_rate=1e-3)),
        evaluation=EvalConfig(sampling=SamplingConfig(num_samples=1, temperature=0.7),
                              variants=("trace",), greedy=False, ks=(1,)),
        execution=ExecutionConfig(workers=2, check=CheckConfig(test_timeout_s=1.0)),
        train_partitioner=None,              # a partitioning.Partitioner; default: all devices, data parallel
    ))
    result["dev_pass_at_1"]    # [base model, after iteration 0's fine-tune, ...]  (fractions)
    result["best_iteration"], result["best_checkpoint"]
    result["iterations"][i]    # {"dev": {...pass@k per variant, greedy, proxy}, "test", "hard", "samples",
                               #  "samples_passed", "build": {size, coverage, accepted_per_problem_*,
                               #  examples}, "finetune": {checkpoint, num_steps}, "timings_s": {...}}

Every stage writes under ``model_dir/iteration_{i}/`` with a manifest; rerunning the same call
skips finished stages and resumes unfinished ones, and a changed setting is an error naming it
(see ``stages``). The layout and the defaults (the paper's) are described in ``loop`` and
``settings``.
"""


from next_jax.selftrain.loop import FilesConfig, NextConfig, run_next
from next_jax.selftrain.settings import BuildConfig, FinetuneConfig, SelectionConfig
from next_jax.selftrain.stages import SettingsChangedError

__all__ = ["BuildConfig", "FilesConfig", "FinetuneConfig", "NextConfig", "SelectionConfig", "SettingsChangedError",
           "run_next"]
