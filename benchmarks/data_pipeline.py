"""Benchmarks the data pipeline on the tutorial's eng-fra corpus; prints JSON.

    python -m benchmarks.data_pipeline --path ../shared/data/eng-fra/eng-fra.txt

Reports pairs read and kept by the tutorial filter, split and vocabulary sizes, build times
(TFDS preparation, then loading the prepared dataset), and sentences/s of training-batch
production (tokenization, ids, padding) for a few pipeline settings, pinned to one CPU core.
"""

import argparse
import json
import os
import shutil
import tempfile
import time

import jaxattn.data as data_lib
from jaxattn.config import default_data_config

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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--path", required=True, help="eng-fra.txt, a folder holding it, or data.zip")
    p.add_argument("--data-dir", default="", help="TFDS data_dir (default: a temporary one)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--batches", type=int, default=2000)
    p.add_argument("--all-cores", action="store_true", help="do not pin to one CPU core")
    args = p.parse_args(argv)
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
