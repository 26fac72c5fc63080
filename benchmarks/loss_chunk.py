"""A/B of the training step on Multi30k: train.loss_chunk=0 (the output layer and loss on
every target position, [B, T, V]) against the default (real positions only, in chunks),
interleaved in one process; prints JSON.

    python -m benchmarks.loss_chunk --path ../shared/data/multi30k --steps 6 --repeats 3

configs/multi30k.py's sentence batches (its batch_size, bucket_pool) and token batches of the same
mean padded target tokens (`benchmarks.data_pipeline.epoch_figures`): the first --steps
batches of an epoch, every shape compiled and 3 warm-up steps first, then --repeats rounds
that time --steps steps of each variant in turn; medians of target tokens/s.
"""

import argparse
import json
import os
import runpy

import numpy as np

import jaxattn.data as data_lib
from benchmarks.data_pipeline import ROOT, epoch_figures
from benchmarks.train import compiled_trainer
from jaxattn.model.seq2seq import build_model


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--path", required=True, help="the Multi30k folder")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--chunk", type=int, default=0, help="0: the config's train.loss_chunk")
    args = p.parse_args(argv)
    config = runpy.run_path(os.path.join(ROOT, "configs", "multi30k.py"))["get_config"]()
    config.data.path = args.path
    chunk = args.chunk or config.train.loss_chunk
    data = data_lib.build(config.data)
    sentences, batches = epoch_figures(data)
    budget = int(sentences["mean_padded_tgt_tokens"])
    data.config.bucket_pool = 0
    tokens, token_batches = epoch_figures(data, batch_tokens=budget)
    model = build_model(config.model, len(data.src_vocab), len(data.tgt_vocab), bos_id=1)
    timing = argparse.Namespace(steps=args.steps, warmup=3)
    report = {"load_average": os.getloadavg(), "batch_tokens": budget, "loss_chunk": chunk}
    for name, figures, chosen in (
        ("sentences_128", sentences, batches),
        ("tokens", tokens, token_batches),
    ):
        chosen = chosen[: args.steps]
        real = sum(int(b["tgt_len"].sum()) for b in chosen)
        runs = {}
        for c in (0, chunk):
            tc = config.train.copy_and_resolve_references()
            tc.loss_chunk = c
            runs[c], _ = compiled_trainer(timing, model, tc, chosen)
        seconds = {c: [] for c in runs}
        for _ in range(args.repeats):
            for c, run in runs.items():
                seconds[c].append(run())
        report[name] = dict(
            padding_share=figures["padding_share"],
            **{
                f"loss_chunk_{c}": dict(
                    step_seconds=round(float(np.median(s)) / args.steps, 3),
                    tgt_tokens_per_second=round(real / float(np.median(s)), 1),
                    repeats_s=[round(x, 2) for x in s],
                )
                for c, s in seconds.items()
            },
        )
    report["load_average_after"] = os.getloadavg()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
