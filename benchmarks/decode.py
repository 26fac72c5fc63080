"""Decoding speed on the eng-fra held-out split (test): jaxattn's `search.decode`, batched, greedy
and beam, against the tutorial's greedy `evaluate` one sentence at a time (as the tutorial
translates) and batched. Sentences/s for each, and jaxattn's speedups.

Models are randomly initialized, so no sentence ends early: every system runs all max_len
steps. With --checkpoint, a trained run's best checkpoint is also decoded (its sentences end at
EOS and the loop stops early).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import torch

from benchmarks import common
from benchmarks import torch_tutorial as tt
from benchmarks.common import med
from jaxattn import search
from jaxattn.inference.translator import Translator
from jaxattn.model.seq2seq import build_model
from jaxattn.training import loop as train_lib


def split_rows(data, split: str, limit: int) -> dict:
    """The first `limit` rows of a split (0: all), in order: {'src', 'tgt': [N, L], ...}."""
    rows = data.eval_batches(split, 2**31)[0]  # the whole split, one batch
    n = min(limit or len(rows["src_len"]), len(rows["src_len"]))
    return {k: v[:n] for k, v in rows.items()}


def batched(rows: dict, size: int) -> list[dict]:
    """`rows` in batches of `size` rows, the last padded with empty rows (one shape a size)."""
    n = len(rows["src_len"])
    return [
        train_lib.pad_batch({k: v[i : i + size] for k, v in rows.items()}, size)
        for i in range(0, n, size)
    ]


def jax_task(model, variables, batches, **options):
    """A timed task: `search.decode` over `batches` (dispatched back to back, then waited on)."""
    inputs = [(jnp.asarray(b["src"]), jnp.asarray(b["src_len"])) for b in batches]

    def run():
        t = time.perf_counter()
        jax.block_until_ready(
            [search.decode(model, variables, s, sl, **options).tokens for s, sl in inputs]
        )
        return time.perf_counter() - t

    return run


def jax_tasks(args, rows, sizes, model, variables, eos_id, suffix="") -> dict:
    """Greedy at each batch size; beam search and nucleus sampling at the first: name -> timed
    task."""
    greedy = dict(eos_id=eos_id, max_len=args.max_len, method="greedy")
    beam = dict(eos_id=eos_id, max_len=args.max_len, method="beam", beam_size=args.beam_size)
    sample = dict(
        eos_id=eos_id, max_len=args.max_len, method="sample", top_p=0.9, rng=jax.random.key(0)
    )
    tasks = {
        f"jax_greedy{suffix}_b{size}": jax_task(model, variables, batched(rows, size), **greedy)
        for size in sizes
    }
    first = batched(rows, sizes[0])
    tasks[f"jax_beam{args.beam_size}{suffix}_b{sizes[0]}"] = jax_task(
        model, variables, first, **beam
    )
    tasks[f"jax_sample_top_p{suffix}_b{sizes[0]}"] = jax_task(model, variables, first, **sample)
    return tasks


def per_model_step(runs: dict, size: int, beam_size: int) -> dict:
    """Decoding speed per model step relative to greedy at the same batch size (1 = as fast):
    sampling and an ensemble of 2 greedy (2 model steps a step) against greedy; beam search per
    hypothesis (beam_size model rows a step)."""
    greedy = med(runs[f"jax_greedy_b{size}"])
    return {
        "sample_top_p": greedy / med(runs[f"jax_sample_top_p_b{size}"]),
        "ensemble2_greedy": 2 * greedy / med(runs[f"jax_ensemble2_greedy_b{size}"]),
        f"beam{beam_size}": beam_size * greedy / med(runs[f"jax_beam{beam_size}_b{size}"]),
    }


def torch_tasks(args, rows, sentences, vocab) -> tuple[dict, int, dict, int]:
    """The tutorial's `evaluate`, one sentence at a time and in batches of 128 (and at
    torch's default thread count on a sample). Returns (tasks, threads, calibration, sample)."""
    torch.manual_seed(0)
    encoder, decoder = common.make_torch_models(*vocab, args.decode_hidden, False, args.max_len)
    encoder.eval(), decoder.eval()
    one = [torch.tensor([s], dtype=torch.long) for s in sentences]
    padded = [torch.from_numpy(b["src"]).long() for b in batched(rows, 128)]

    def run(inputs, scale=1.0):
        t = time.perf_counter()
        for x in inputs:
            tt.evaluate(encoder, decoder, x)
        return (time.perf_counter() - t) * scale

    run(one[:20])  # warm-up
    threads, calib = common.torch_threads(args.torch_threads, lambda: run(one[:50]))
    sample = one[:50]  # default threads can be very slow on a loaded machine: a sample

    def at_default_threads():
        torch.set_num_threads(args.torch_default)
        seconds = run(sample, len(one) / len(sample))
        torch.set_num_threads(threads)
        return seconds

    tasks = {
        "torch_evaluate": lambda: run(one),  # the tutorial: one sentence at a time
        "torch_evaluate_b128": lambda: run(padded),
    }
    if args.torch_default_threads and args.torch_default != threads:
        tasks["torch_evaluate_default_threads"] = at_default_threads
    return tasks, threads, calib, len(sample)


def bench_decode(args, data) -> dict:
    """Every task interleaved for --repeats repeats; sentences/s and speedups."""
    split = args.decode_split
    vocab = src_vocab, tgt_vocab = len(data.src_vocab), len(data.tgt_vocab)
    config = common.base_config(args.data_path)
    mc = common.model_config(config, args.decode_hidden, False, args.unroll)
    eos = data.tgt_vocab.eos_id
    sizes = [int(x) for x in args.decode_batch.split(",") if x]
    rows = split_rows(data, split, args.decode_limit)
    n = len(rows["src_len"])
    sentences = [rows["src"][i, : rows["src_len"][i]].tolist() for i in range(n)]
    result = {
        "split": split,
        "sentences": n,
        "hidden": args.decode_hidden,
        "max_len": args.max_len,
        "jax_batches": sizes,
        "beam_size": args.beam_size,
        "src_vocab": src_vocab,
        "tgt_vocab": tgt_vocab,
        "repeats": args.repeats,
        "weights": "random init (no sentence ends early; all max_len steps run)",
    }

    model = build_model(mc, src_vocab, tgt_vocab, bos_id=data.tgt_vocab.bos_id)
    b0 = {k: jnp.asarray(v) for k, v in batched(rows, sizes[0])[0].items()}
    variables = jax.jit(lambda k: model.init({"params": k}, b0["src"], b0["src_len"], b0["tgt"]))(
        jax.random.PRNGKey(0)
    )
    tasks = jax_tasks(args, rows, sizes, model, variables, eos)
    other = jax.jit(lambda k: model.init({"params": k}, b0["src"], b0["src_len"], b0["tgt"]))(
        jax.random.PRNGKey(1)
    )
    tasks[f"jax_ensemble2_greedy_b{sizes[0]}"] = jax_task(
        search.Ensemble((model, model)),
        (variables, other),
        batched(rows, sizes[0]),
        eos_id=eos,
        max_len=args.max_len,
        method="greedy",
    )
    if args.checkpoint:  # a trained model: sentences end at EOS, the loop stops early
        tr = Translator.from_workdir(args.checkpoint, "best")
        if (len(tr.src_vocab), len(tr.tgt_vocab)) != vocab:
            raise SystemExit(f"{args.checkpoint}: vocabularies differ from the corpus'.")
        result["checkpoint"] = {
            "workdir": args.checkpoint,
            "step": tr.step,
            "hidden": tr.config.model.hidden,
        }
        tasks.update(jax_tasks(args, rows, sizes, tr.model, tr.variables, eos, "_trained"))
    first = {name: task() for name, task in tasks.items()}  # compiles

    more, threads, calib, sample = torch_tasks(args, rows, sentences, vocab)
    tasks.update(more)
    runs = common.interleave(tasks, args.repeats)
    for k in tasks:
        result[k] = {
            "seconds_median": med(runs[k]),
            "seconds_all": runs[k],
            "sentences_per_s": n / med(runs[k]),
        }
        if k in first:
            result[k]["first_call_s"] = first[k]
    result["torch_evaluate"].update(threads=threads, thread_calibration_s=calib)
    if "torch_evaluate_default_threads" in runs:
        result["torch_evaluate_default_threads"].update(
            threads=args.torch_default, sentences_timed=sample
        )
    jax_names = [k for k in tasks if k.startswith("jax_")]
    tutorial, batched_torch = med(runs["torch_evaluate"]), med(runs["torch_evaluate_b128"])
    result["speedup_vs_tutorial_evaluate"] = {k: tutorial / med(runs[k]) for k in jax_names}
    result["speedup_vs_torch_evaluate_b128"] = {k: batched_torch / med(runs[k]) for k in jax_names}
    result["per_model_step_vs_greedy"] = per_model_step(runs, sizes[0], args.beam_size)
    result["speedup_greedy_per_repeat"] = {
        f"jax_greedy_b{size}": [
            t / j for j, t in zip(runs[f"jax_greedy_b{size}"], runs["torch_evaluate"], strict=True)
        ]
        for size in sizes
    }
    result["load_per_repeat"] = runs["load"]
    result["max_rss_mb_after"] = common.max_rss_mb()
    return result
