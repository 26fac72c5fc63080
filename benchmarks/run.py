"""Benchmarks jaxattn against the PyTorch tutorial on this machine, in one run; prints JSON.

    python -m benchmarks.run --mode all --out results.json
    python -m benchmarks.run --mode train --configs large --repeats 5
    python -m benchmarks.run --mode quality --epochs 10 --out quality.json
    python -m benchmarks.run --mode transformer --data-path ../shared/data/eng-fra/eng-fra.txt
    python -m benchmarks.run --mode peer --peer-python /path/to/joeynmt-venv/bin/python

The PyTorch side is benchmarks.torch_tutorial, the independent implementation of the tutorial that
the parity tests use (EncoderRNN, AttnDecoderRNN, its train_step with two Adam optimizers and
NLLLoss, its greedy `evaluate`). Modes: train (benchmarks/train.py), decode
(benchmarks/decode.py), all = train + decode, quality (benchmarks/quality.py: long, run it
on its own) and transformer (benchmarks/transformer.py: jaxattn's Transformer against
torch.nn.Transformer of the same size, training and greedy/beam decoding) and peer
(benchmarks/peer_joeynmt.py: configs/multi30k.py against the same model in JoeyNMT 2.3.0, run
in its own virtual environment). The matmul peak
(the best GFLOP/s of a jitted float32 JAX matmul at a few sizes) is measured at the start and
the end; FLOP/s fractions are against the session's best.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import sys

import torch

from benchmarks import common, peer_joeynmt, system, transformer
from benchmarks.decode import bench_decode
from benchmarks.quality import bench_quality
from benchmarks.train import CONFIGS, bench_train


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--mode",
        default="all",
        choices=("train", "decode", "quality", "transformer", "peer", "all"),
        help="all = train + decode (quality is long: run it on its own); transformer: "
        "jaxattn's Transformer against torch.nn.Transformer (benchmarks/transformer.py); "
        "peer: against JoeyNMT 2.3.0 in its own venv (benchmarks/peer_joeynmt.py)",
    )
    p.add_argument("--out", default="", help="also write the JSON here")
    p.add_argument("--data-path", default=common.DEFAULT_DATA, help="eng-fra.txt (the tutorial's)")
    p.add_argument(
        "--configs",
        default="tutorial,large",
        help="train configurations, comma separated: tutorial, large",
    )
    for name, spec in CONFIGS.items():
        for k in ("hidden", "batch", "length"):
            p.add_argument(f"--{name}-{k}", type=int, default=spec[k])
    p.add_argument("--src-vocab", type=int, default=0, help="train mode; 0: eng-fra's")
    p.add_argument("--tgt-vocab", type=int, default=0, help="train mode; 0: eng-fra's")
    p.add_argument("--unroll", type=int, default=1, help="config.model.unroll")
    p.add_argument("--steps", type=int, default=10, help="train steps per timed repeat")
    p.add_argument("--large-steps", type=int, default=2, help="--steps for the large config")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats, interleaved")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--torch-threads", default="auto", help="'auto' (fastest of 1, 2) or N")
    p.add_argument(
        "--torch-default-threads",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time PyTorch at its default thread count",
    )
    p.add_argument("--peak-sizes", default="512,1024,2048", help="matmul sizes for the peak")
    p.add_argument(
        "--peak-size", type=int, default=1024, help="matmul size re-measured in every train repeat"
    )
    p.add_argument("--decode-split", default="test")
    p.add_argument(
        "--decode-batch",
        default="128,576",
        help="jaxattn greedy batch sizes, comma separated (beam: the first)",
    )
    p.add_argument(
        "--checkpoint",
        default="",
        help="also decode with a trained jaxattn run's best checkpoint (a workdir "
        "trained on the same corpus config, e.g. configs/base.py)",
    )
    p.add_argument("--decode-hidden", type=int, default=128)
    p.add_argument("--decode-limit", type=int, default=0, help="sentences; 0 = the split")
    p.add_argument("--beam-size", type=int, default=5)
    p.add_argument("--max-len", type=int, default=10, help="decoding steps (MAX_LENGTH)")
    transformer.add_args(p)
    peer_joeynmt.add_args(p)
    p.add_argument("--epochs", type=int, default=5, help="quality mode")
    p.add_argument("--eval-every", type=int, default=1, help="quality mode, in epochs")
    return p.parse_args(argv)


def load_data(args):
    """The corpus when a mode needs it (decode, quality, or train without --*-vocab); the
    transformer mode reads its own (or none: synthetic)."""
    if args.mode in ("transformer", "peer") or (
        args.mode == "train" and args.src_vocab and args.tgt_vocab
    ):
        return None
    if os.path.exists(args.data_path):
        return common.build_data(args.data_path)
    if args.mode != "train":
        raise SystemExit(f"No corpus at {args.data_path}; pass --data-path.")
    return None


def run_train(args, vocab) -> dict:
    """Each --configs configuration, with its sizes from the command line."""
    out = {}
    for name in [c for c in args.configs.split(",") if c]:
        spec = dict(CONFIGS[name])
        for k in ("hidden", "batch", "length"):
            spec[k] = getattr(args, f"{name}_{k}")
        steps = args.large_steps if name == "large" else args.steps
        out[name] = bench_train(argparse.Namespace(**{**vars(args), "steps": steps}), spec, vocab)
        common.log(
            f"train/{name}",
            {
                k: v
                for k, v in out[name].items()
                if k.startswith("speedup") or k == "load_per_repeat"
            },
        )
    return out


def run_modes(args, report: dict) -> None:
    """The --mode's benchmarks into `report` (their prints go to stderr: see main)."""
    data = load_data(args)
    vocab = (
        args.src_vocab or (len(data.src_vocab) if data else common.ENG_FRA_VOCAB[0]),
        args.tgt_vocab or (len(data.tgt_vocab) if data else common.ENG_FRA_VOCAB[1]),
    )
    if args.mode in ("train", "all"):
        report["train"] = run_train(args, vocab)
    if args.mode in ("decode", "all"):
        report["decode"] = bench_decode(args, data)
        common.log("decode", report["decode"]["speedup_vs_tutorial_evaluate"])
    if args.mode == "quality":
        report["quality"] = bench_quality(args, data)
    if args.mode == "transformer":
        report["transformer"] = transformer.bench_transformer(args)
        common.log(
            "transformer",
            {
                "train_speedup": report["transformer"]["train"]["speedup_tokens_per_s"],
                "greedy_speedup": report["transformer"]["decode"]["speedup_greedy"],
            },
        )
    if args.mode == "peer":
        report["peer"] = peer_joeynmt.bench_peer(args)
        print(peer_joeynmt.table(report["peer"]), file=sys.stderr)


def main(argv=None) -> dict:
    args = parse_args(argv)
    args.torch_default = torch.get_num_threads()  # before any mode changes it
    argv = sys.argv[1:] if argv is None else argv
    report = {
        "command": shlex.join(["python", "-m", "benchmarks.run", *argv]),
        "machine": {**system.machine_info(), "torch": torch.__version__},
    }
    sizes = [int(s) for s in args.peak_sizes.split(",") if s]
    report["matmul_peak_start"] = common.matmul_peak(sizes, 0.5)
    with contextlib.redirect_stdout(sys.stderr):  # TFDS prints its first builds: stdout is JSON
        run_modes(args, report)
    report["matmul_peak_end"] = common.matmul_peak(sizes, 0.5)
    best = max(report["matmul_peak_start"]["gflops"], report["matmul_peak_end"]["gflops"])
    for r in report.get("train", {}).values():
        session = max([best] + r["matmul_peak_gflops_per_repeat"])
        r["matmul_peak_session_gflops"] = session
        r["jax_fraction_of_session_peak"] = r["jax"]["gflops_per_s"] / session
    report["max_rss_mb"] = common.max_rss_mb()
    report = common.rounded(report)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return report


if __name__ == "__main__":
    main()
