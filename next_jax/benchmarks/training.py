"""Training throughput: next_jax's train step against transformers' Llama with torch.optim.AdamW.

Workload: the decoding benchmark's Llama-shaped presets S and M (random weights, vocab 32000,
untied head), batch 8 x sequence 512 of random tokens (4 pre-drawn batches, cycled), next-token
loss over every position, AdamW (lr 1e-4, betas 0.9/0.999, eps 1e-8, weight decay 0.01, no
clipping) on both sides. Both sides start from the same weights (the transformers model is
saved and imported into next_jax). Each side runs in a process of its own (one at a time), torch
with ``torch.set_num_threads(cores)`` and XLA on the same cores. Two precisions per side:

- float32: float32 parameters and compute on both sides;
- bfloat16: float32 master weights with bfloat16 compute (next_jax ``dtype='bfloat16'``: matrix
  products read bfloat16 and accumulate in float32; torch ``autocast('cpu', bfloat16)``).

After ``--warmup`` untimed steps per side, timed runs of ``--steps`` steps alternate between the
two sides (so background load on a shared machine hits both alike); tokens/s come from the median
run. MFU = 6 x parameters x tokens/s over the measured 2048^3 float32 matmul peak (torch/MKL, the
higher of the two here).
``ratio_vs_pytorch_min`` is the smaller of the presets' float32 ratios (ours over theirs).

Both sides' processes inherit this one's environment, so the figures compare as CPU jobs run
when it is started the way ``launch/tpu_run.sh`` starts them, under its glibc allocator settings
(the JSON line records ``glibc_tunables``; without them XLA's per-step temporaries are faulted in
afresh every step)::

    launch/host_allocator.sh python -m next_jax.benchmarks.training --presets=S,M --steps=2 --repeats=3

With ``--host_loop_steps=N`` it also reports ``host_loop``: seconds per step of ``train.train()``
against the bare compiled step on the CPU demo's model (see ``host_loop``).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

from next_jax.benchmarks.decoding import PRESETS, VOCAB, build_hf_model
from next_jax import startup_log

BATCH, SEQ, NUM_BATCHES = 8, 512, 4
LR, BETAS, EPS, WEIGHT_DECAY = 1e-4, (0.9, 0.999), 1e-8, 0.01


def log(message: str) -> None:
    print(f"[training benchmark] {message}", file=sys.stderr, flush=True)


def torch_matmul_peak(size: int = 2048, repeats: int = 10) -> float:
    import torch

    a = torch.randn(size, size)
    torch.mm(a, a)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, a)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def torch_trainer(model, batches, dtype: str):
    import torch

    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY)
    data = [torch.as_tensor(b, dtype=torch.long) for b in batches]
    state = {"i": 0}

    def step():
        x = data[state["i"] % len(data)]
        state["i"] += 1
        if dtype == "bfloat16":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = model(input_ids=x, labels=x).loss
        else:
            loss = model(input_ids=x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss)

    return step


def jax_trainer(checkpoint_dir: str, batches, dtype: str):
    # Deferred: jax starts in the spawned side worker (a process of its own, with its own heap).
    import jax

    from next_jax import optimizers, partitioning, trainer as trainer_lib
    from next_jax.models import hf_checkpoint
    from next_jax.models import lm as lm_lib

    part = partitioning.Partitioner(partitioning.make_mesh())
    config, params = hf_checkpoint.load_hf_checkpoint(checkpoint_dir, partitioner=part, dtype=dtype,
                                                       max_seq_len=SEQ)
    optimizer = optimizers.AdamW(
        learning_rate=optimizers.Schedule(peak=LR, decay="constant"), b1=BETAS[0], b2=BETAS[1], eps=EPS,
        weight_decay=WEIGHT_DECAY, clip_norm=None,
    ).make(1000)
    trainer = trainer_lib.Trainer(lm_lib.DecoderLM(config), optimizer, part)
    holder = {"state": trainer.state_from_params(params), "i": 0}
    del params
    data = [trainer.global_batch({"decoder_target_tokens": b.astype(np.int32),
                                  "decoder_loss_weights": np.ones_like(b, np.int32)}) for b in batches]

    def step():
        batch = data[holder["i"] % len(data)]
        holder["i"] += 1
        holder["state"], metrics = trainer.train_step(holder["state"], batch)
        return metrics

    def steps(n):
        for _ in range(n):
            metrics = step()
        return float(jax.device_get(metrics["loss"]))

    start = time.perf_counter()
    steps(1)  # compile + first step
    return steps, time.perf_counter() - start, trainer.compile_seconds


def _side_worker(conn, side: str, checkpoint_dir: str, batches, dtype: str, seq: int, threads: int) -> None:
    """One side of the comparison in a process of its own: builds its trainer (the first step
    included), then runs the steps it is asked for and answers (seconds, last loss)."""
    global SEQ
    SEQ = seq
    info = {}
    if side == "jax":
        steps, info["first_step_s"], info["compile_s"] = jax_trainer(checkpoint_dir, batches, dtype)
    else:
        import torch
        import transformers

        torch.set_num_threads(threads)
        model = transformers.LlamaForCausalLM.from_pretrained(checkpoint_dir, dtype=torch.float32,
                                                              attn_implementation="sdpa")
        step = torch_trainer(model, batches, dtype)
        step()  # the jax side took its first step when it compiled: both stay on the same batch

        def steps(n):
            for _ in range(n):
                loss = step()
            return loss
    conn.send(info)
    while (n := conn.recv()) is not None:
        start = time.perf_counter()
        loss = steps(n)
        conn.send((time.perf_counter() - start, loss))


class _Side:
    """A side's worker process. Each side has a process, and so a heap and thread pools, of its
    own: in one process, the other side's allocations between two steps split the free heap and
    a side's next step may have to grow (and fault in) the heap again."""

    def __init__(self, side: str, checkpoint_dir: str, batches, dtype: str, threads: int):
        import multiprocessing

        context = multiprocessing.get_context("spawn")  # a fresh interpreter: glibc reads its settings
        self.side = side
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_side_worker, daemon=True,
                                        args=(child, side, checkpoint_dir, batches, dtype, SEQ, threads))
        self._process.start()
        child.close()
        self.info = self._receive()

    def _receive(self):
        try:
            return self._conn.recv()
        except EOFError:
            self._process.join()
            raise RuntimeError(f"the {self.side} side's process died (exit code {self._process.exitcode})") from None

    def run(self, steps: int):
        self._conn.send(steps)
        return self._receive()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._process.is_alive():
            self._conn.send(None)
            self._process.join(60)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        return False


def host_loop(steps: int) -> dict:
    """Seconds per step of ``train.train`` against the bare compiled step, on the CPU demo's model.

    The demo (cpu_demo.gin: d=64, 2 layers, tied bytes vocabulary, batch 16 of 256 + 48 packed
    tokens, a checkpoint every 50 steps, metrics every 25) runs hundreds of steps through
    ``train()``, so whatever the host loop adds per step (input pipeline, batch placement, metric
    fetches, checkpoint checks) is paid hundreds of times. ``train()`` is timed at 5 and at
    5 + ``steps`` steps (fresh MODEL_DIRs) so compilation and start-up cancel out of the per-step
    figure; they are reported as ``train_startup_s``.
    """
    # Deferred: --help and the torch-only runs never start XLA.
    import jax

    from next_jax import checkpoints, inputs, optimizers, partitioning, train as train_lib, trainer as trainer_lib
    from next_jax.demo import task as demo_task
    from next_jax.models import ModelConfig
    from next_jax.models import lm as lm_lib

    config = ModelConfig(vocab_size=384, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=4, head_dim=16,
                         mlp_dim=256, tie_embeddings=True, max_seq_len=512)
    lengths, rows = {"inputs": 256, "targets": 48}, 16
    task = demo_task.demo_repair_task(num_train=256, num_eval=8)
    part = partitioning.Partitioner(partitioning.make_mesh())

    trainer = trainer_lib.Trainer(lm_lib.DecoderLM(config), optimizers.AdamW().make(1000), part)
    state = trainer.init_state(0)
    dataset = inputs.get_dataset(task, lengths, split="train", batch_size=rows, shuffle=True, seed=0, pack=True,
                                 repeat=True).as_numpy_iterator()
    batches = [trainer.global_batch(next(dataset)) for _ in range(4)]
    state, metrics = trainer.train_step(state, batches[0])
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for i in range(steps):
        state, metrics = trainer.train_step(state, batches[i % len(batches)])
    jax.block_until_ready(metrics)
    bare = (time.perf_counter() - start) / steps

    def run(n: int) -> float:
        with tempfile.TemporaryDirectory() as model_dir:
            start = time.perf_counter()
            train_lib.train(train_lib.TrainConfig(
                model=config, dataset_cfg=inputs.DatasetConfig(task_name=task, task_feature_lengths=lengths,
                                                               batch_size=rows),
                train_steps=n, model_dir=model_dir, checkpoint_cfg=checkpoints.CheckpointConfig(period=50, keep=1),
                logging_cfg=train_lib.LoggingConfig(summary_period=25), seed=0, partitioner=part))
            return time.perf_counter() - start

    short, long = run(5), run(5 + steps)
    per_step = (long - short) / steps
    return dict(steps=steps, bare_step_s=round(bare, 4), train_step_s=round(per_step, 4),
                overhead=round(per_step / bare - 1, 3), train_startup_s=round(short - 5 * per_step, 2),
                load_avg=round(os.getloadavg()[0], 2))


def _define_flags() -> None:
    flags.DEFINE_list("presets", ["S", "M"], f"Model presets to run, of {sorted(PRESETS)}.")
    flags.DEFINE_list("dtypes", ["float32", "bfloat16"], "Precisions to run (float32 decides the ratio).")
    flags.DEFINE_integer("steps", 2, "Training steps per timed run.")
    flags.DEFINE_integer("repeats", 3, "Timed runs per side (median reported).")
    flags.DEFINE_integer("warmup", 2, "Untimed steps per side before the timed runs (alternating).")
    flags.DEFINE_integer("seq", SEQ, "Sequence length (512 for the measurement; smaller for a smoke run).")
    flags.DEFINE_integer("host_loop_steps", 0, "Also time train() against the bare step on the CPU demo's model "
                         "for this many steps (0 = skip).")


def _main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    args = flags.FLAGS
    global SEQ
    SEQ = args.seq
    import jax
    import torch
    import transformers

    cores = len(os.sched_getaffinity(0))
    torch.set_num_threads(cores)
    load_before = os.getloadavg()
    peak = torch_matmul_peak()
    log(f"load {load_before}, {cores} cores, torch fp32 matmul peak {peak / 1e9:.0f} GFLOP/s")
    result = dict(
        benchmark="training", jax=jax.__version__, torch=torch.__version__, transformers=transformers.__version__,
        torch_threads=torch.get_num_threads(), cpu=platform.processor() or platform.machine(),
        workload=dict(batch=BATCH, seq=SEQ, vocab=VOCAB, optimizer="AdamW", steps_per_run=args.steps,
                      repeats=args.repeats, warmup_steps=args.warmup),
        matmul_peak_gflop_s=round(peak / 1e9, 1), glibc_tunables=os.environ.get("GLIBC_TUNABLES", ""),
    )
    rng = np.random.default_rng(1234)
    ratios = {}
    tokens_per_run = BATCH * SEQ * args.steps
    for name in args.presets:
        batches = [rng.integers(3, VOCAB, size=(BATCH, SEQ)) for _ in range(NUM_BATCHES)]
        result[name] = {}
        for dtype in args.dtypes:
            hf_model = build_hf_model(PRESETS[name])
            n_params = sum(p.numel() for p in hf_model.parameters())
            with tempfile.TemporaryDirectory() as tmp:
                hf_model.save_pretrained(tmp)
                del hf_model
                with _Side("jax", tmp, batches, dtype, cores) as ours_side, \
                        _Side("torch", tmp, batches, dtype, cores) as theirs_side:
                    for _ in range(args.warmup):  # alternating, like the timed runs
                        theirs_side.run(1)
                        ours_side.run(1)
                    ours, theirs = [], []
                    for repeat in range(args.repeats):
                        seconds, ours_loss = ours_side.run(args.steps)
                        ours.append(seconds)
                        seconds, theirs_loss = theirs_side.run(args.steps)
                        theirs.append(seconds)
                        log(f"{name} {dtype} run {repeat + 1}: next_jax {ours[-1]:.2f} s, torch {theirs[-1]:.2f} s "
                            f"(losses {ours_loss:.3f} / {theirs_loss:.3f}), load {os.getloadavg()[0]:.1f}")
                    first_s, compile_s = ours_side.info["first_step_s"], ours_side.info["compile_s"]
            ours_tok_s = tokens_per_run / float(np.median(ours))
            theirs_tok_s = tokens_per_run / float(np.median(theirs))
            ratio = ours_tok_s / theirs_tok_s
            if dtype == "float32":
                ratios[name] = ratio
            result[name][dtype] = dict(
                params_m=round(n_params / 1e6, 2), next_jax_tok_s=round(ours_tok_s, 1),
                pytorch_tok_s=round(theirs_tok_s, 1), ratio=round(ratio, 2),
                next_jax_mfu=round(6 * n_params * ours_tok_s / peak, 3),
                pytorch_mfu=round(6 * n_params * theirs_tok_s / peak, 3),
                next_jax_runs_s=[round(t, 2) for t in ours], pytorch_runs_s=[round(t, 2) for t in theirs],
                next_jax_compile_s=round(compile_s, 1), next_jax_first_step_s=round(first_s, 1),
                final_loss=dict(next_jax=round(ours_loss, 4), pytorch=round(theirs_loss, 4)),
            )
    if ratios:
        result["ratio_vs_pytorch_min"] = round(min(ratios.values()), 2)
    if args.host_loop_steps:
        result["host_loop"] = host_loop(args.host_loop_steps)
        log(f"host loop: {result['host_loop']}")
    result["load_avg"] = {"before": [round(x, 2) for x in load_before],
                          "after": [round(x, 2) for x in os.getloadavg()]}
    print(json.dumps(result))


def main(argv=None) -> None:
    startup_log.quiet_startup()  # first: TensorFlow's native libraries and Beam print warnings as they load
    _define_flags()
    app.run(_main, argv=argv)


if __name__ == "__main__":
    main()
