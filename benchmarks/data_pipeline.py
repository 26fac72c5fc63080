"""Benchmarks the data pipeline on the tutorial's eng-fra corpus; prints JSON.

    python -m benchmarks.data_pipeline --path ../shared/data/eng-fra/eng-fra.txt
    python -m benchmarks.data_pipeline --token-batches --path ../shared/data/multi30k

Reports pairs read and kept by the tutorial filter, split and vocabulary sizes, build times
(TFDS preparation, then loading the prepared dataset), and sentences/s of training-batch
production (tokenization, ids, padding) for a few pipeline settings, pinned to one CPU core.

--token-batches: configs/multi30k.py's sentence batches (its batch_size and bucket_pool)
side by side with token batches (train.batch_tokens) of about the same mean padded target
tokens: padding share over an epoch, distinct batch shapes an epoch, and training target
tokens/s of --steps steps after every shape is compiled and 3 warm-up steps (all cores).

--prepared: configs/multi30k.py's training batches (prefetch off, one core) from the
prepared ids read from disk by rows (what training does), from the same ids held in memory,
and from the text tokenized per batch, interleaved over --repeats: batches/s and the time a
batch takes as a share of a training step (--step-seconds, measured by --token-batches).
"""

import argparse
import json
import os
import runpy
import shutil
import tempfile
import time

import numpy as np

import jaxattn.data as data_lib
from jaxattn.config import default_data_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SETTINGS = {
    # the tutorial mirror: every filtered pair trains, its ids, fixed length MAX_LENGTH = 10
    "tutorial_mirror": dict(split_fractions=(1, 0, 0), tutorial_ids=True, pad_to=10),
    # the default: held-out splits, PAD/UNK, padding to the batch's longest, multiple of 8
    "default": dict(),
    "bucketed": dict(bucket_pool=16, pad_multiple=1),
}


def throughput(data, batch_size: int, batches: int) -> float:
    """Sentence pairs per second of training batches (after a warm-up batch)."""
    it = data.train_iterator(batch_size, seed=0)
    next(it)
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    seconds = time.perf_counter() - start
    it.close()  # stops a prefetch thread
    return batch_size * batches / seconds


def epoch_figures(data, **kwargs) -> tuple[dict, list[dict]]:
    """Padding share (padded target positions that are padding), shapes and mean tokens of
    one epoch of training batches; and the batches."""
    steps = data.steps_per_epoch(128, **{k: v for k, v in kwargs.items() if k != "batch_size"})
    it = data.train_iterator(kwargs.pop("batch_size", 128), seed=0, **kwargs)
    batches = [next(it) for _ in range(steps)]
    padded = sum(b["tgt"].size for b in batches)
    real = sum(int(b["tgt_len"].sum()) for b in batches)
    shapes = {(len(b["src"]),) + b["src"].shape[1:] + b["tgt"].shape[1:] for b in batches}
    return {
        "steps_per_epoch": steps,
        "padding_share": round(1 - real / padded, 4),
        "distinct_shapes": len(shapes),
        "mean_padded_tgt_tokens": round(padded / steps, 1),
        "mean_real_tgt_tokens": round(real / steps, 1),
        "mean_rows": round(np.mean([len(b["tgt"]) for b in batches]), 1),
    }, batches


def compare_token_batches(args) -> dict:
    """configs/multi30k.py's sentence batches against token batches of the same mean padded
    target tokens (see the module docstring)."""
    from benchmarks.train import compiled_trainer
    from jaxattn.model.seq2seq import build_model

    config = runpy.run_path(os.path.join(ROOT, "configs", "multi30k.py"))["get_config"]()
    config.data.path = args.path
    data = data_lib.build(config.data)
    sentences, batches = epoch_figures(data)
    budget = args.batch_tokens or int(sentences["mean_padded_tgt_tokens"])
    data.config.bucket_pool = 0  # token batches' default: the whole epoch sorted
    tokens, token_batches = epoch_figures(data, batch_tokens=budget)
    report = {"load_average": os.getloadavg(), "batch_tokens": budget}
    model = build_model(config.model, len(data.src_vocab), len(data.tgt_vocab), bos_id=1)
    timing = argparse.Namespace(steps=args.steps, warmup=3)
    for name, figures, chosen in (
        ("sentences_128", sentences, batches),
        ("tokens", tokens, token_batches),
    ):
        chosen = chosen[: args.steps]
        run, _ = compiled_trainer(timing, model, config.train, chosen)
        seconds = run()
        real = sum(int(b["tgt_len"].sum()) for b in chosen)
        report[name] = dict(
            figures,
            timed_steps=args.steps,
            step_seconds=round(seconds / args.steps, 3),
            tgt_tokens_per_second=round(real / seconds, 1),
        )
    report["load_average_after"] = os.getloadavg()
    return report


def compare_prepared(args) -> dict:
    """Training-batch production from prepared ids on disk, in memory, and from text."""
    from jaxattn.data.batching import encode
    from jaxattn.data.prepared import TokenIds

    config = runpy.run_path(os.path.join(ROOT, "configs", "multi30k.py"))["get_config"]()
    config.data.update(path=args.path, prefetch=0)
    if args.data_dir:
        config.data.update(data_dir=args.data_dir, cache_dir=os.path.join(args.data_dir, "cache"))
    data = data_lib.build(config.data)
    on_disk = data._train_ids
    in_memory = TokenIds([tuple(np.asarray(a[:]) for a in side) for side in on_disk.sides])
    src_text, tgt_text = (list(col) for col in data._texts["train"])

    class FromText:  # ids tokenized per batch, as evaluation batches are made
        def rows(self, side, pairs):
            text, tok, vocab = (
                (src_text, data.src_tokenizer, data.src_vocab)
                if side == 0
                else (tgt_text, data.tgt_tokenizer, data.tgt_vocab)
            )
            return [encode(tok, vocab, text[i])[:-1] for i in pairs]

    sources = {"disk": on_disk, "memory": in_memory, "text": FromText()}
    rates: dict[str, list[float]] = {k: [] for k in sources}
    for _ in range(args.repeats):
        for name, ids in sources.items():
            data._train_ids = ids
            rates[name].append(throughput(data, 128, args.batches) / 128)
    data._train_ids = on_disk
    best = {k: max(v) for k, v in rates.items()}
    return {
        "load_average": os.getloadavg(),
        "cpu_cores_used": len(os.sched_getaffinity(0)),
        "batches_per_second": {k: [round(x, 1) for x in v] for k, v in rates.items()},
        "ms_per_batch_best": {k: round(1000 / v, 2) for k, v in best.items()},
        "share_of_a_step": {k: round(1 / v / args.step_seconds, 5) for k, v in best.items()},
        "step_seconds": args.step_seconds,
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--path", required=True, help="eng-fra.txt, a folder holding it, or data.zip")
    p.add_argument("--data-dir", default="", help="TFDS data_dir (default: a temporary one)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--batches", type=int, default=2000)
    p.add_argument("--all-cores", action="store_true", help="do not pin to one CPU core")
    p.add_argument(
        "--token-batches",
        action="store_true",
        help="compare sentence and token batches on Multi30k (--path: its folder)",
    )
    p.add_argument("--batch-tokens", type=int, default=0, help="0: sentence batches' mean")
    p.add_argument("--steps", type=int, default=10, help="timed steps (--token-batches)")
    p.add_argument(
        "--prepared",
        action="store_true",
        help="Multi30k training batches from prepared ids on disk / in memory / from text",
    )
    p.add_argument("--repeats", type=int, default=3, help="interleaved repeats (--prepared)")
    p.add_argument(
        "--step-seconds", type=float, default=2.12, help="a Multi30k step's time (--prepared)"
    )
    args = p.parse_args(argv)
    if args.prepared:
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        print(json.dumps(compare_prepared(args), indent=2))
        return
    if args.token_batches:
        print(json.dumps(compare_token_batches(args), indent=2))
        return
    if not args.all_cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    data_dir = args.data_dir or tempfile.mkdtemp(prefix="jaxattn_bench_")
    report = {
        "path": args.path,
        "cpu_cores_used": len(os.sched_getaffinity(0)),
        "batch_size": args.batch_size,
        "batches": args.batches,
    }
    try:
        for name, overrides in SETTINGS.items():
            c = default_data_config()
            c.path, c.data_dir = args.path, data_dir
            c.update(overrides)
            for prefetch in (0, 2):
                c.prefetch = prefetch
                start = time.perf_counter()
                data = data_lib.build(c)
                build_s = time.perf_counter() - start
                key = f"{name}_prefetch{prefetch}"
                report[key] = dict(
                    build_seconds=round(build_s, 3),
                    splits={s: data.num_examples(s) for s in data.splits},
                    src_vocab=len(data.src_vocab),
                    tgt_vocab=len(data.tgt_vocab),
                    sentences_per_second=round(throughput(data, args.batch_size, args.batches)),
                )
        read = data.stats["read"]
        report.update(
            pairs_read=read["lines"],
            pairs_kept=read["kept"],
            skipped={k: v for k, v in read.items() if k.startswith("skipped_")},
        )
    finally:
        if not args.data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
