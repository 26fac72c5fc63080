"""Training speed: steps/s and target tokens/s of jaxattn and the PyTorch tutorial on the same
batches, plus jaxattn's compile time, XLA memory analysis and achieved FLOP/s.

Configurations (`CONFIGS`): the tutorial's (GRU 128, batch 32, length 10) and a larger one
(bidirectional GRU 512, batch 128, lengths up to 30, a dense bridge and an attention over
2H-wide keys on both sides). Batches are random ids over the vocabulary sizes with lengths
drawn uniformly from [3, length] (padding shapes and token counts are what matter for speed).
FLOP/s counts the analytic matmul FLOPs of forward + backward (3 x forward), as a fraction of
the matmul peak measured in the same repeat.
"""

from __future__ import annotations

import functools
import time

import jax
import numpy as np
import torch

from benchmarks import common
from benchmarks import torch_tutorial as tt
from benchmarks.common import med
from jaxattn.model.seq2seq import build_model
from jaxattn.training import loop as train_lib
from jaxattn.training.optim import make_optimizer

CONFIGS = {  # name: (hidden = embedding, batch, length, bidirectional)
    "tutorial": dict(hidden=128, batch=32, length=10, bidirectional=False),
    "large": dict(hidden=512, batch=128, length=30, bidirectional=True),
}


def random_batches(n, batch, length, src_vocab, tgt_vocab, seed=0) -> list[dict]:
    """jaxattn-style batches (pad 0, EOS 2, words >= 3), lengths uniform in [3, length]:
    {'src', 'tgt': [B, length] int32, 'src_len', 'tgt_len': [B]}."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        b = {}
        for side, vocab in (("src", src_vocab), ("tgt", tgt_vocab)):
            lens = rng.integers(min(3, length), length + 1, batch)  # [B]
            ids = rng.integers(3, vocab, (batch, length))  # [B, length]
            ids[np.arange(batch), lens - 1] = 2  # EOS
            ids[np.arange(length)[None, :] >= lens[:, None]] = 0
            b[side], b[f"{side}_len"] = ids.astype(np.int32), lens.astype(np.int32)
        out.append(b)
    return out


def train_flops(*, batch, src_len, tgt_len, embed, hidden, directions, tgt_vocab):
    """Matmul FLOPs (2 M N K each) of one training step: 3 x the forward pass (the backward
    pass costs about twice the forward). Elementwise work, the embedding lookups and the
    optimizer are left out. Attention hidden size = hidden (as both implementations)."""
    b, s, t, e, h, d, v = batch, src_len, tgt_len, embed, hidden, directions, tgt_vocab
    key = d * h
    encoder = d * (2 * b * s * e * 3 * h + 2 * b * s * h * 3 * h)
    once = 2 * b * s * key * h + (2 * b * key * h if d > 1 else 0)  # U_a keys, dense bridge
    per_step = (
        2 * b * h * h  # W_a query
        + 2 * b * s * h  # v_a energies
        + 2 * b * s * key  # context
        + 2 * b * (e + key) * 3 * h
        + 2 * b * h * 3 * h  # GRU
        + 2 * b * h * v
    )  # output projection
    forward = encoder + once + t * per_step
    return 3 * forward


def memory_analysis(compiled) -> dict:
    """XLA's memory analysis of a compiled step in MiB (argument, output, temp, ..., peak)."""
    try:
        m = compiled.memory_analysis()
    except Exception as e:  # noqa: BLE001 (not every backend has it)
        return {"error": repr(e)}
    if m is None:
        return {}
    fields = (
        "argument_size_in_bytes",
        "output_size_in_bytes",
        "alias_size_in_bytes",
        "temp_size_in_bytes",
        "generated_code_size_in_bytes",
    )
    mb = {f.replace("_size_in_bytes", "_mb"): round(getattr(m, f, 0) / 2**20, 2) for f in fields}
    mb["peak_mb"] = round(mb["argument_mb"] + mb["output_mb"] - mb["alias_mb"] + mb["temp_mb"], 2)
    return mb


def jax_trainer(args, spec: dict, vocab, batches) -> tuple:
    """The base config's train_step (masked loss, Adam, dropout 0.1), jitted with the state
    donated, warmed up. Returns (run: steps -> seconds, compile figures)."""
    config = common.base_config(args.data_path)
    mc = common.model_config(config, spec["hidden"], spec["bidirectional"], args.unroll)
    model = build_model(mc, *vocab, bos_id=1)
    return compiled_trainer(args, model, config.train, batches)


def compiled_trainer(args, model, tc, batches) -> tuple:
    """`train_lib.train_step` of `model` under train config `tc` (its optimizer, loss), jitted
    with the state donated, compiled ahead of time once per batch shape (the figures: the
    first batch's), warmed up on every batch then --warmup steps. Returns (run: --steps steps
    cycling through `batches` -> seconds, compile figures)."""
    tx = make_optimizer(tc, 1000)
    jb = [jax.device_put(b) for b in batches]
    state = train_lib.create_train_state(model, tx, jax.random.PRNGKey(0), jb[0])
    key = jax.random.PRNGKey(1)
    step = jax.jit(functools.partial(train_lib.train_step, model=model, tc=tc), donate_argnums=0)
    t0 = time.perf_counter()
    lowered = step.lower(state, jb[0], key)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    state, metrics = compiled(state, jb[0], key)
    jax.block_until_ready(metrics)
    first_run = time.perf_counter() - t2

    def shape(b):
        return tuple(sorted((k, v.shape) for k, v in b.items()))

    by_shape = {shape(jb[0]): compiled}
    for b in jb[1:]:  # other padded widths: compiled here, not in the timed steps
        if shape(b) not in by_shape:
            by_shape[shape(b)] = step.lower(state, b, key).compile()
            state, metrics = by_shape[shape(b)](state, b, key)
    fns = [by_shape[shape(b)] for b in jb]
    for i in range(args.warmup):
        state, metrics = fns[i % len(jb)](state, jb[i % len(jb)], key)
    jax.block_until_ready(metrics)
    box = {"state": state}

    def run():
        s, t = box["state"], time.perf_counter()
        for i in range(args.steps):
            s, m = fns[i % len(jb)](s, jb[i % len(jb)], key)
        jax.block_until_ready((s, m))
        box["state"] = s
        return time.perf_counter() - t

    figures = {
        "lower_s": t1 - t0,
        "compile_s": t2 - t1,
        "first_step_s": first_run,
        "batch_shapes_compiled": len(by_shape),
        "memory": memory_analysis(compiled),
        "max_rss_mb_after": common.max_rss_mb(),
    }
    return run, figures


def torch_trainer(args, spec: dict, vocab, batches) -> tuple:
    """The tutorial's models and train_step (two Adams, NLLLoss over all positions), warmed
    up. Returns (run: thread count -> seconds for --steps steps, threads, calibration)."""
    torch.manual_seed(0)
    encoder, decoder = common.make_torch_models(
        *vocab, spec["hidden"], spec["bidirectional"], spec["length"]
    )
    encoder.train(), decoder.train()
    optimizers = tt.make_optimizers(encoder, decoder)
    criterion = torch.nn.NLLLoss()
    tb = [common.torch_batch(b) for b in batches]

    def step(i):
        return tt.train_step(*tb[i % len(tb)], encoder, decoder, *optimizers, criterion)

    for i in range(args.warmup):
        step(i)
    threads, calib = common.torch_threads(args.torch_threads, lambda: step(0))

    def run(n_threads):
        torch.set_num_threads(n_threads)
        t = time.perf_counter()
        for i in range(args.steps):
            step(i)
        return time.perf_counter() - t

    return run, threads, calib


def bench_train(args, spec: dict, vocab) -> dict:
    """One configuration `spec` ({'hidden', 'batch', 'length', 'bidirectional'}), both sides
    interleaved with the matmul peak for --repeats repeats of --steps steps."""
    hidden, batch, length, bi = spec["hidden"], spec["batch"], spec["length"], spec["bidirectional"]
    src_vocab, tgt_vocab = vocab
    batches = random_batches(4, batch, length, src_vocab, tgt_vocab, seed=1)
    tokens = [int(b["tgt_len"].sum()) for b in batches]
    mean_tokens = sum(tokens) / len(tokens)
    result = {
        "hidden": hidden,
        "embed": hidden,
        "batch": batch,
        "length": length,
        "bidirectional": bi,
        "src_vocab": src_vocab,
        "tgt_vocab": tgt_vocab,
        "unroll": args.unroll,
        "steps_per_repeat": args.steps,
        "repeats": args.repeats,
        "mean_target_tokens_per_batch": mean_tokens,
    }
    run_jax, result["jax"] = jax_trainer(args, spec, vocab, batches)
    run_torch, threads, calib = torch_trainer(args, spec, vocab, batches)
    default = args.torch_default
    prepared = common.prepare_matmul(args.peak_size)
    tasks = {
        "jax": run_jax,
        "torch": lambda: run_torch(threads),
        "peak": lambda: common.matmul_gflops(args.peak_size, 0.2, prepared),
    }
    if args.torch_default_threads and default != threads:
        tasks["torch_default_threads"] = lambda: run_torch(default)
    runs = common.interleave(tasks, args.repeats)
    torch.set_num_threads(threads)

    flops = train_flops(
        batch=batch,
        src_len=length,
        tgt_len=length,
        embed=hidden,
        hidden=hidden,
        directions=2 if bi else 1,
        tgt_vocab=tgt_vocab,
    )
    timed = [k for k in ("jax", "torch", "torch_default_threads") if k in runs]
    per_step = {k: [t / args.steps for t in runs[k]] for k in timed}
    fractions = [flops / s / 1e9 / p for s, p in zip(per_step["jax"], runs["peak"], strict=True)]
    for k in timed:
        step_s = med(per_step[k])
        result[k] = {
            **result.get(k, {}),
            "step_s_median": step_s,
            "step_s_all": per_step[k],
            "tokens_per_s": mean_tokens / step_s,
            "positions_per_s": batch * length / step_s,
            "gflops_per_s": flops / step_s / 1e9,
        }
    result["torch"].update(
        threads=threads, thread_calibration_s=calib, max_rss_mb_after=common.max_rss_mb()
    )
    if "torch_default_threads" in per_step:
        result["torch_default_threads"]["threads"] = default
        result["speedup_vs_torch_default_threads"] = med(per_step["torch_default_threads"]) / med(
            per_step["jax"]
        )
    ratios = [t / j for j, t in zip(per_step["jax"], per_step["torch"], strict=True)]
    result.update(
        train_gflop_per_step=flops / 1e9,
        speedup_tokens_per_s=med(per_step["torch"]) / med(per_step["jax"]),
        speedup_per_repeat=ratios,
        matmul_peak_gflops_per_repeat=runs["peak"],
        jax_fraction_of_peak_median=med(fractions),
        jax_fraction_of_peak_per_repeat=fractions,
        load_per_repeat=runs["load"],
    )
    j = result["jax"]
    j["compile_minus_step_s"] = (
        j["lower_s"] + j["compile_s"] + j["first_step_s"] - j["step_s_median"]
    )
    return result
