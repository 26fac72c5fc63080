"""Benchmarks jaxattn against the PyTorch tutorial on this machine, in one run; prints JSON.

    python scripts/benchmark.py --mode all --out results.json
    python scripts/benchmark.py --mode train --configs large --repeats 5
    python scripts/benchmark.py --mode quality --epochs 10 --out quality.json

The PyTorch side is tests/torch_tutorial.py, the independent implementation of the tutorial
that the parity tests use (EncoderRNN, AttnDecoderRNN, its train_step with two Adam optimizers
and NLLLoss, its greedy `evaluate`). Every figure is measured in the same process, the two
frameworks interleaved repeat by repeat (in alternating order), so load from other work on the
machine falls on both alike; the load average is recorded with each repeat.

Modes:
- train: training steps per second and target tokens/s (the real target tokens of each batch,
  EOS included; both frameworks step through the same batches) at the tutorial's configuration
  (GRU 128, batch 32, length 10) and a larger one (bidirectional GRU 512, batch 128, lengths up
  to 30, a dense bridge and an attention over 2H-wide keys on both sides); for jaxattn also the
  train step's compile time, XLA's memory analysis, and its achieved FLOP/s (analytic matmul
  FLOPs of forward + backward = 3 x forward) as a fraction of the matmul peak measured in the
  same repeat.
- decode: greedy decoding of the eng-fra held-out split (test): jaxattn batched
  (`greedy_search`) against the tutorial's `evaluate` one sentence at a time (as the tutorial
  translates) and batched; beam search (k=5) sentences/s. Models are randomly initialized, so
  no sentence ends early: every system runs all max_len steps.
- quality: trains the base config (configs/base.py) and the PyTorch tutorial on the same
  training split for --epochs epochs, scores test-split greedy translations with sacreBLEU after
  every --eval-every epochs, and reports the wall time jaxattn needs to reach the tutorial's
  final BLEU.

The matrix-multiply peak is the best GFLOP/s of a jitted float32 JAX matmul at a few sizes.
Batches for the train mode are random ids over the eng-fra vocabulary sizes with lengths drawn
uniformly from [3, length] (padding shapes and token counts are what matter for speed).
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import math
import os
import platform
import resource
import runpy
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxattn import search
from jaxattn import train as train_lib
from jaxattn.models import build_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA = os.path.normpath(os.path.join(ROOT, "..", "shared", "data", "eng-fra",
                                             "eng-fra.txt"))
ENG_FRA_VOCAB = (4174, 2727)  # source (French), target (English) sizes of configs/base.py's data
CONFIGS = {  # name: (hidden = embedding, batch, length, bidirectional)
    "tutorial": dict(hidden=128, batch=32, length=10, bidirectional=False),
    "large": dict(hidden=512, batch=128, length=30, bidirectional=True),
}


# ------------------------------------------------------------------------------ environment
def load_torch_tutorial():
    """tests/torch_tutorial.py, imported by path (it needs torch)."""
    spec = importlib.util.spec_from_file_location(
        "torch_tutorial", os.path.join(ROOT, "tests", "torch_tutorial.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules["torch_tutorial"] = module
    spec.loader.exec_module(module)
    return module


def log(what: str, value) -> None:
    """Progress on stderr (stdout carries only the JSON)."""
    print(f"[benchmark] {what}: {json.dumps(rounded(value))}", file=sys.stderr, flush=True)


def load() -> float:
    return round(os.getloadavg()[0], 2)


def max_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def machine_info() -> dict:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), cpu)
    except OSError:
        pass
    import torch

    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(d) for d in jax.devices()],
        "torch": torch.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
        "load_at_start": list(map(lambda x: round(x, 2), os.getloadavg())),
    }


def _matmul(n: int):
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
    f = jax.jit(jnp.matmul)
    f(a, b).block_until_ready()
    return f, a, b


def matmul_gflops(n: int, seconds: float = 0.3, prepared=None) -> float:
    """Best GFLOP/s of a jitted float32 n x n matmul over about `seconds`."""
    f, a, b = prepared or _matmul(n)
    flops, best, spent = 2.0 * n**3, math.inf, 0.0
    while spent < seconds or best == math.inf:
        t = time.perf_counter()
        f(a, b).block_until_ready()
        dt = time.perf_counter() - t
        best, spent = min(best, dt), spent + dt
    return flops / best / 1e9


def matmul_peak(sizes, seconds: float) -> dict:
    per_size = {str(n): round(matmul_gflops(n, seconds), 1) for n in sizes}
    best = max(per_size, key=per_size.get)
    return {"gflops": per_size[best], "size": int(best), "per_size": per_size, "load": load()}


def interleave(tasks: dict, repeats: int) -> dict:
    """Runs each task once a repeat, order alternating; returns name -> list of results."""
    out = {name: [] for name in tasks}
    out["load"] = []
    names = list(tasks)
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            out[name].append(tasks[name]())
        out["load"].append(load())
    return out


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def rounded(x, digits=4):
    if isinstance(x, float):
        return None if not math.isfinite(x) else round(x, digits)
    if isinstance(x, dict):
        return {k: rounded(v, digits) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [rounded(v, digits) for v in x]
    return x


TORCH_DEFAULT_THREADS = [0]  # torch.get_num_threads() before this script changed it


def pick_threads(torch, run_once, candidates=(1, 2)) -> tuple[int, dict]:
    """Torch's intra-op threads that run `run_once` fastest here (on a loaded machine one
    thread is often much faster: OpenMP workers wait for descheduled peers)."""
    seen = {}
    for _ in range(2):
        for n in candidates:
            torch.set_num_threads(n)
            t = time.perf_counter()
            run_once()
            seen.setdefault(n, []).append(time.perf_counter() - t)
    best = min(candidates, key=lambda n: min(seen[n]))
    torch.set_num_threads(best)
    return best, {str(n): round(min(v), 4) for n, v in seen.items()}


# ----------------------------------------------------------------------------------- models
def base_config(data_path: str):
    config = runpy.run_path(os.path.join(ROOT, "configs", "base.py"))["get_config"]()
    config.data.path = data_path
    return config


def model_config(config, hidden: int, bidirectional: bool, unroll: int):
    m = config.model
    m.hidden = m.embed_dim = hidden
    m.bidirectional = bidirectional
    m.bridge = "dense" if bidirectional else "copy"
    m.unroll = unroll
    return m


def make_torch_models(tt, src_vocab, tgt_vocab, hidden, bidirectional, max_length):
    """The tutorial's EncoderRNN + AttnDecoderRNN; bidirectional: the same decoder over 2H-wide
    keys with a dense tanh bridge (what jaxattn's bridge='dense' computes)."""
    import torch
    from torch import nn

    if not bidirectional:
        return (tt.EncoderRNN(src_vocab, hidden),
                tt.AttnDecoderRNN(hidden, tgt_vocab, max_length=max_length))

    class BiEncoder(tt.RNNEncoder):
        def forward(self, input):
            output, hidden = super().forward(input)  # [B, S, 2H], [2, B, H]
            return output, torch.cat([hidden[0], hidden[1]], dim=-1)[None]  # [1, B, 2H]

    class Attention(tt.BahdanauAttention):
        def __init__(self, hidden_size, key_size):
            super().__init__(hidden_size)
            self.Ua = nn.Linear(key_size, hidden_size)

    class BiAttnDecoder(tt.AttnDecoderRNN):
        def __init__(self, hidden_size, output_size, max_length):
            super().__init__(hidden_size, output_size, max_length=max_length)
            self.attention = Attention(hidden_size, 2 * hidden_size)
            self.gru = nn.GRU(3 * hidden_size, hidden_size, batch_first=True)
            self.bridge = nn.Linear(2 * hidden_size, hidden_size)

        def forward(self, encoder_outputs, encoder_hidden, target_tensor=None):
            hidden = torch.tanh(self.bridge(encoder_hidden))  # [1, B, H]
            return super().forward(encoder_outputs, hidden, target_tensor)

    return (BiEncoder(src_vocab, hidden, hidden, bidirectional=True),
            BiAttnDecoder(hidden, tgt_vocab, max_length))


def train_flops(*, batch, src_len, tgt_len, embed, hidden, directions, tgt_vocab):
    """Matmul FLOPs (2 M N K each) of one training step: 3 x the forward pass (the backward
    pass costs about twice the forward). Elementwise work, the embedding lookups and the
    optimizer are left out. Attention hidden size = hidden (as both implementations)."""
    b, s, t, e, h, d, v = batch, src_len, tgt_len, embed, hidden, directions, tgt_vocab
    key = d * h
    encoder = d * (2 * b * s * e * 3 * h + 2 * b * s * h * 3 * h)
    once = 2 * b * s * key * h + (2 * b * key * h if d > 1 else 0)  # U_a keys, dense bridge
    per_step = (2 * b * h * h  # W_a query
                + 2 * b * s * h  # v_a energies
                + 2 * b * s * key  # context
                + 2 * b * (e + key) * 3 * h + 2 * b * h * 3 * h  # GRU
                + 2 * b * h * v)  # output projection
    forward = encoder + once + t * per_step
    return 3 * forward


# ------------------------------------------------------------------------------------ train
def random_batches(n, batch, length, src_vocab, tgt_vocab, seed=0):
    """jaxattn-style batches (pad 0, EOS 2, words >= 3), lengths uniform in [3, length]."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        b = {}
        for side, vocab in (("src", src_vocab), ("tgt", tgt_vocab)):
            lens = rng.integers(min(3, length), length + 1, batch)
            ids = rng.integers(3, vocab, (batch, length))
            ids[np.arange(batch), lens - 1] = 2  # EOS
            ids[np.arange(length)[None, :] >= lens[:, None]] = 0
            b[side], b[f"{side}_len"] = ids.astype(np.int32), lens.astype(np.int32)
        out.append(b)
    return out


def memory_analysis(compiled) -> dict:
    try:
        m = compiled.memory_analysis()
    except Exception as e:  # noqa: BLE001 (not every backend has it)
        return {"error": repr(e)}
    if m is None:
        return {}
    fields = ("argument_size_in_bytes", "output_size_in_bytes", "alias_size_in_bytes",
              "temp_size_in_bytes", "generated_code_size_in_bytes")
    mb = {f.replace("_size_in_bytes", "_mb"): round(getattr(m, f, 0) / 2**20, 2)
          for f in fields}
    mb["peak_mb"] = round(mb["argument_mb"] + mb["output_mb"] - mb["alias_mb"]
                          + mb["temp_mb"], 2)
    return mb


def bench_train(args, name: str, spec: dict, tt, torch, vocab) -> dict:
    hidden, batch, length, bi = spec["hidden"], spec["batch"], spec["length"], spec["bidirectional"]
    src_vocab, tgt_vocab = vocab
    config = base_config(args.data_path)
    mc = model_config(config, hidden, bi, args.unroll)
    tc = config.train
    batches = random_batches(4, batch, length, src_vocab, tgt_vocab, seed=1)
    tokens = [int(b["tgt_len"].sum()) for b in batches]
    result = {"hidden": hidden, "embed": hidden, "batch": batch, "length": length,
              "bidirectional": bi, "src_vocab": src_vocab, "tgt_vocab": tgt_vocab,
              "unroll": args.unroll, "steps_per_repeat": args.steps, "repeats": args.repeats,
              "mean_target_tokens_per_batch": sum(tokens) / len(tokens)}

    # jaxattn: base config's train_step (masked loss, Adam, dropout 0.1), jitted, donated state
    model = build_model(mc, src_vocab, tgt_vocab, bos_id=1)
    tx = train_lib.make_optimizer(tc, 1000)
    jb = [{k: jnp.asarray(v) for k, v in b.items()} for b in batches]
    params = jax.jit(lambda k: model.init({"params": k}, jb[0]["src"], jb[0]["src_len"],
                                          jb[0]["tgt"])["params"])(jax.random.PRNGKey(0))
    state = train_lib.TrainState.create(apply_fn=model.apply, params=params, tx=tx)
    key = jax.random.PRNGKey(1)
    step = jax.jit(functools.partial(train_lib.train_step, model=model, tc=tc),
                   donate_argnums=0)
    t0 = time.perf_counter()
    lowered = step.lower(state, jb[0], key)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    state, metrics = compiled(state, jb[0], key)
    jax.block_until_ready(metrics)
    first_run = time.perf_counter() - t2
    for i in range(args.warmup):
        state, metrics = compiled(state, jb[i % len(jb)], key)
    jax.block_until_ready(metrics)
    box = {"state": state}

    def run_jax():
        s, t = box["state"], time.perf_counter()
        for i in range(args.steps):
            s, m = compiled(s, jb[i % len(jb)], key)
        jax.block_until_ready((s, m))
        box["state"] = s
        return time.perf_counter() - t

    result["jax"] = {"lower_s": t1 - t0, "compile_s": t2 - t1, "first_step_s": first_run,
                     "memory": memory_analysis(compiled), "max_rss_mb_after": max_rss_mb()}

    # PyTorch: the tutorial's models, train_step (two Adams, NLLLoss over all positions)
    torch.manual_seed(0)
    encoder, decoder = make_torch_models(tt, src_vocab, tgt_vocab, hidden, bi, length)
    encoder.train(), decoder.train()
    optimizers = tt.make_optimizers(encoder, decoder)
    criterion = torch.nn.NLLLoss()
    tb = [(torch.from_numpy(b["src"]).long(), torch.from_numpy(b["tgt"]).long())
          for b in batches]

    def torch_step(i):
        return tt.train_step(*tb[i % len(tb)], encoder, decoder, *optimizers, criterion)

    for i in range(args.warmup):
        torch_step(i)
    if args.torch_threads == "auto":
        threads, calib = pick_threads(torch, lambda: torch_step(0))
    else:
        threads, calib = int(args.torch_threads), {}
    default = TORCH_DEFAULT_THREADS[0]

    def run_torch(n_threads):
        torch.set_num_threads(n_threads)
        t = time.perf_counter()
        for i in range(args.steps):
            torch_step(i)
        return time.perf_counter() - t

    peak_size = args.peak_size
    prepared = _matmul(peak_size)
    tasks = {"jax": run_jax, "torch": lambda: run_torch(threads),
             "peak": lambda: matmul_gflops(peak_size, 0.2, prepared)}
    if args.torch_default_threads and default != threads:
        tasks["torch_default_threads"] = lambda: run_torch(default)
    runs = interleave(tasks, args.repeats)
    torch.set_num_threads(threads)
    mean_tokens = sum(tokens) / len(tokens)
    flops = train_flops(batch=batch, src_len=length, tgt_len=length, embed=hidden,
                        hidden=hidden, directions=2 if bi else 1, tgt_vocab=tgt_vocab)
    timed = [k for k in ("jax", "torch", "torch_default_threads") if k in runs]
    per_step = {k: [t / args.steps for t in runs[k]] for k in timed}
    fractions = [flops / s / 1e9 / p for s, p in zip(per_step["jax"], runs["peak"],
                                                        strict=True)]
    for k in timed:
        step_s = med(per_step[k])
        result[k] = {**result.get(k, {}), "step_s_median": step_s,
                     "step_s_all": per_step[k],
                     "tokens_per_s": mean_tokens / step_s,
                     "positions_per_s": batch * length / step_s,
                     "gflops_per_s": flops / step_s / 1e9}
    result["torch"].update(threads=threads, thread_calibration_s=calib,
                           max_rss_mb_after=max_rss_mb())
    if "torch_default_threads" in per_step:
        result["torch_default_threads"]["threads"] = default
        result["speedup_vs_torch_default_threads"] = (
            med(per_step["torch_default_threads"]) / med(per_step["jax"]))
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
    result["jax"]["compile_minus_step_s"] = (result["jax"]["lower_s"] + result["jax"]["compile_s"]
                                             + first_run - result["jax"]["step_s_median"])
    return result


# ----------------------------------------------------------------------------------- decode
def build_data(data_path: str):
    from jaxattn import data as data_lib

    return data_lib.build(base_config(data_path).data)


def bench_decode(args, tt, torch, data) -> dict:
    split = args.decode_split
    src_vocab, tgt_vocab = len(data.src_vocab), len(data.tgt_vocab)
    config = base_config(args.data_path)
    mc = model_config(config, args.decode_hidden, False, args.unroll)
    max_len = args.max_len
    eos, bos = data.tgt_vocab.eos_id, data.tgt_vocab.bos_id
    sizes = [int(x) for x in args.decode_batch.split(",") if x]
    rows = data.eval_batches(split, 2**31)[0]  # the whole split, in order
    n = min(args.decode_limit or len(rows["src_len"]), len(rows["src_len"]))
    rows = {k: v[:n] for k, v in rows.items()}
    sentences = [rows["src"][i, : rows["src_len"][i]].tolist() for i in range(n)]

    def batched(size):  # [(src, src_len)] padded to `size` rows (one compilation per size)
        return [train_lib.pad_batch({k: v[i:i + size] for k, v in rows.items()}, size)
                for i in range(0, n, size)]

    result = {"split": split, "sentences": n, "hidden": args.decode_hidden,
              "max_len": max_len, "jax_batches": sizes, "beam_size": args.beam_size,
              "src_vocab": src_vocab, "tgt_vocab": tgt_vocab, "repeats": args.repeats,
              "weights": "random init (no sentence ends early; all max_len steps run)"}

    model = build_model(mc, src_vocab, tgt_vocab, bos_id=bos)
    b0 = {k: jnp.asarray(v) for k, v in batched(sizes[0])[0].items()}
    variables = jax.jit(lambda k: model.init({"params": k}, b0["src"], b0["src_len"],
                                             b0["tgt"]))(jax.random.PRNGKey(0))

    def jax_task(fn, size, model=model, variables=variables):
        inputs = [(jnp.asarray(b["src"]), jnp.asarray(b["src_len"])) for b in batched(size)]

        def run():
            t = time.perf_counter()
            jax.block_until_ready([fn(model, variables, s, sl) for s, sl in inputs])
            return time.perf_counter() - t

        return run

    def greedy(model, variables, s, sl):
        return search.greedy_search(model, variables, s, sl, eos_id=eos, max_len=max_len).tokens

    def beam(model, variables, s, sl):
        return search.beam_search(model, variables, s, sl, eos_id=eos, max_len=max_len,
                                  beam_size=args.beam_size).tokens

    tasks, first = {}, {}
    for size in sizes:
        tasks[f"jax_greedy_b{size}"] = jax_task(greedy, size)
    tasks[f"jax_beam{args.beam_size}_b{sizes[0]}"] = jax_task(beam, sizes[0])
    if args.checkpoint:  # a trained model: sentences end at EOS, the loop stops early
        from jaxattn.inference import Translator

        tr = Translator.from_workdir(args.checkpoint, "best")
        if (len(tr.src_vocab), len(tr.tgt_vocab)) != (src_vocab, tgt_vocab):
            raise SystemExit(f"{args.checkpoint}: vocabularies differ from the corpus'.")
        result["checkpoint"] = {"workdir": args.checkpoint, "step": tr.step,
                                "hidden": tr.config.model.hidden}
        for size in sizes:
            tasks[f"jax_greedy_trained_b{size}"] = jax_task(greedy, size, tr.model, tr.variables)
        tasks[f"jax_beam{args.beam_size}_trained_b{sizes[0]}"] = jax_task(
            beam, sizes[0], tr.model, tr.variables)
    for name, task in tasks.items():
        first[name] = task()  # compiles

    torch.manual_seed(0)
    encoder, decoder = make_torch_models(tt, src_vocab, tgt_vocab, args.decode_hidden, False,
                                         max_len)
    encoder.eval(), decoder.eval()
    one = [torch.tensor([s], dtype=torch.long) for s in sentences]
    padded = [torch.from_numpy(b["src"]).long() for b in batched(128)]

    def torch_run(inputs, scale=1.0):
        t = time.perf_counter()
        for x in inputs:
            tt.evaluate(encoder, decoder, x)
        return (time.perf_counter() - t) * scale

    for x in one[:20]:
        tt.evaluate(encoder, decoder, x)
    if args.torch_threads == "auto":
        threads, calib = pick_threads(torch, lambda: torch_run(one[:50]))
    else:
        threads, calib = int(args.torch_threads), {}
    torch.set_num_threads(threads)
    default = TORCH_DEFAULT_THREADS[0]
    tasks["torch_evaluate"] = lambda: torch_run(one)  # the tutorial: one sentence at a time
    tasks["torch_evaluate_b128"] = lambda: torch_run(padded)
    sample = one[:50]  # default threads can be very slow on a loaded machine: a sample

    def torch_default():
        torch.set_num_threads(default)
        seconds = torch_run(sample, n / len(sample))
        torch.set_num_threads(threads)
        return seconds

    if args.torch_default_threads and default != threads:
        tasks["torch_evaluate_default_threads"] = torch_default
    runs = interleave(tasks, args.repeats)
    for k in tasks:
        result[k] = {"seconds_median": med(runs[k]), "seconds_all": runs[k],
                     "sentences_per_s": n / med(runs[k])}
        if k in first:
            result[k]["first_call_s"] = first[k]
    result["torch_evaluate"].update(threads=threads, thread_calibration_s=calib)
    if "torch_evaluate_default_threads" in runs:
        result["torch_evaluate_default_threads"].update(
            threads=default, sentences_timed=len(sample))
    tutorial = med(runs["torch_evaluate"])
    result["speedup_vs_tutorial_evaluate"] = {
        k: tutorial / med(runs[k]) for k in tasks if k.startswith("jax_")}
    result["speedup_vs_torch_evaluate_b128"] = {
        k: med(runs["torch_evaluate_b128"]) / med(runs[k]) for k in tasks if k.startswith("jax_")}
    result["speedup_greedy_per_repeat"] = {
        f"jax_greedy_b{size}": [t / j for j, t in zip(runs[f"jax_greedy_b{size}"],
                                                     runs["torch_evaluate"], strict=True)]
        for size in sizes}
    result["load_per_repeat"] = runs["load"]
    result["max_rss_mb_after"] = max_rss_mb()
    return result


# ---------------------------------------------------------------------------------- quality
def bench_quality(args, tt, torch, data) -> dict:
    """Trains both for --epochs epochs on the same split, greedy test BLEU along the way."""
    from jaxattn import metrics as metrics_lib

    split = args.decode_split
    config = base_config(args.data_path)
    tc = config.train
    batch = tc.batch_size
    steps_per_epoch = data.steps_per_epoch(batch)
    refs = data.references(split)
    eos, bos = data.tgt_vocab.eos_id, data.tgt_vocab.bos_id
    max_len = config.eval.max_decode_len
    eval_batches = [train_lib.pad_batch(b, config.eval.batch_size)
                    for b in data.eval_batches(split, config.eval.batch_size)]
    src_vocab, tgt_vocab = len(data.src_vocab), len(data.tgt_vocab)

    def to_text(ids) -> str:
        ids = list(ids)
        ids = ids[: ids.index(eos)] if eos in ids else ids
        return data.decode_target(ids)

    def bleu(hyps) -> float:
        return metrics_lib.corpus_scores(hyps, refs)["bleu"]

    result = {"split": split, "epochs": args.epochs, "steps_per_epoch": steps_per_epoch,
              "batch": batch, "eval_every_epochs": args.eval_every}

    # jaxattn: the base config's model, optimizer and train_step; greedy_search for BLEU
    model = build_model(config.model, src_vocab, tgt_vocab, bos_id=bos)
    tx = train_lib.make_optimizer(tc, args.epochs * steps_per_epoch)
    it = data.train_iterator(batch, seed=config.seed)
    first = {k: jnp.asarray(v) for k, v in next(it).items()}
    init_key, base_key = jax.random.split(jax.random.PRNGKey(config.seed))
    params = model.init({"params": init_key}, first["src"], first["src_len"],
                        first["tgt"])["params"]
    state = train_lib.TrainState.create(apply_fn=model.apply, params=params, tx=tx)
    step = jax.jit(functools.partial(train_lib.train_step, model=model, tc=tc),
                   donate_argnums=0)

    def jax_bleu(params):
        hyps = []
        for b in eval_batches:
            r = search.greedy_search(model, {"params": params}, b["src"], b["src_len"],
                                     eos_id=eos, max_len=max_len)
            tokens = np.asarray(r.tokens)
            hyps += [to_text(tokens[i]) for i in range(len(tokens)) if b["src_len"][i] > 0]
        return bleu(hyps)

    curve, train_s, t0 = [], 0.0, time.perf_counter()
    pending = [first]
    for epoch in range(1, args.epochs + 1):
        for _ in range(steps_per_epoch):
            state, m = step(state, pending.pop() if pending else next(it), base_key)
        jax.block_until_ready(m)
        if epoch % args.eval_every == 0 or epoch == args.epochs:
            train_s = time.perf_counter() - t0
            curve.append({"epoch": epoch, "train_wall_s": train_s, "bleu": jax_bleu(state.params),
                          "load": load()})
            log("quality/jax", curve[-1])
            t0 = time.perf_counter() - train_s  # evaluation time is not training time
    result["jax"] = {"curve": curve}

    # PyTorch tutorial: same training pairs (jaxattn's ids; padding 0 is also its SOS, as in the
    # tutorial), its train_step and one-sentence-at-a-time evaluate
    torch.manual_seed(config.seed)
    encoder, decoder = make_torch_models(tt, src_vocab, tgt_vocab, 128, False, max_len)
    optimizers = tt.make_optimizers(encoder, decoder)
    criterion = torch.nn.NLLLoss()
    it = data.train_iterator(batch, seed=config.seed)
    if args.torch_threads == "auto":
        b = next(iter(data.train_iterator(batch, seed=config.seed + 1)))
        probe = (torch.from_numpy(b["src"]).long(), torch.from_numpy(b["tgt"]).long())
        p_enc, p_dec = make_torch_models(tt, src_vocab, tgt_vocab, 128, False, max_len)
        p_opt = tt.make_optimizers(p_enc, p_dec)
        tt.train_step(*probe, p_enc, p_dec, *p_opt, criterion)
        pick_threads(torch, lambda: tt.train_step(*probe, p_enc, p_dec, *p_opt, criterion))
    else:
        torch.set_num_threads(int(args.torch_threads))
    sources = [data.encode_source(s) for s in data.sources(split)]

    def torch_bleu():
        encoder.eval(), decoder.eval()
        hyps = []
        for s in sources:
            ids, _ = tt.evaluate(encoder, decoder, torch.tensor([s], dtype=torch.long))
            hyps.append(to_text(ids[0].tolist()))
        encoder.train(), decoder.train()
        return bleu(hyps)

    curve, train_s, t0 = [], 0.0, time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        for _ in range(steps_per_epoch):
            b = next(it)
            tt.train_step(torch.from_numpy(b["src"]).long(), torch.from_numpy(b["tgt"]).long(),
                          encoder, decoder, *optimizers, criterion)
        if epoch % args.eval_every == 0 or epoch == args.epochs:
            train_s = time.perf_counter() - t0
            curve.append({"epoch": epoch, "train_wall_s": train_s, "bleu": torch_bleu(),
                          "load": load()})
            log("quality/torch", curve[-1])
            t0 = time.perf_counter() - train_s
    result["torch"] = {"curve": curve, "threads": torch.get_num_threads()}
    target = curve[-1]["bleu"]
    reached = next((p for p in result["jax"]["curve"] if p["bleu"] >= target), None)
    result["tutorial_bleu"] = target
    result["jax_time_to_tutorial_bleu_s"] = reached["train_wall_s"] if reached else None
    result["jax_epochs_to_tutorial_bleu"] = reached["epoch"] if reached else None
    result["torch_time_to_its_bleu_s"] = curve[-1]["train_wall_s"]
    return result


# ------------------------------------------------------------------------------------- main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mode", default="all", choices=("train", "decode", "quality", "all"),
                   help="all = train + decode (quality is long: run it on its own)")
    p.add_argument("--out", default="", help="also write the JSON here")
    p.add_argument("--data-path", default=DEFAULT_DATA, help="eng-fra.txt (the tutorial's)")
    p.add_argument("--configs", default="tutorial,large",
                   help="train configurations, comma separated: tutorial, large")
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
    p.add_argument("--torch-default-threads", action=argparse.BooleanOptionalAction,
                   default=True, help="also time PyTorch at its default thread count")
    p.add_argument("--peak-sizes", default="512,1024,2048", help="matmul sizes for the peak")
    p.add_argument("--peak-size", type=int, default=1024,
                   help="matmul size re-measured in every train repeat")
    p.add_argument("--decode-split", default="test")
    p.add_argument("--decode-batch", default="128,576",
                   help="jaxattn greedy batch sizes, comma separated (beam: the first)")
    p.add_argument("--checkpoint", default="",
                   help="also decode with a trained jaxattn run's best checkpoint (a workdir "
                   "trained on the same corpus config, e.g. configs/base.py)")
    p.add_argument("--decode-hidden", type=int, default=128)
    p.add_argument("--decode-limit", type=int, default=0, help="sentences; 0 = the split")
    p.add_argument("--beam-size", type=int, default=5)
    p.add_argument("--max-len", type=int, default=10, help="decoding steps (MAX_LENGTH)")
    p.add_argument("--epochs", type=int, default=5, help="quality mode")
    p.add_argument("--eval-every", type=int, default=1, help="quality mode, in epochs")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import torch

    TORCH_DEFAULT_THREADS[0] = torch.get_num_threads()

    tt = load_torch_tutorial()
    report = {"command": " ".join([os.path.basename(sys.argv[0])] + (argv or sys.argv[1:])),
              "machine": machine_info()}
    sizes = [int(s) for s in args.peak_sizes.split(",") if s]
    report["matmul_peak_start"] = matmul_peak(sizes, 0.5)
    data = None
    if args.mode in ("decode", "quality", "all") or not (args.src_vocab and args.tgt_vocab):
        data = build_data(args.data_path) if os.path.exists(args.data_path) else None
        if data is None and args.mode != "train":
            raise SystemExit(f"No corpus at {args.data_path}; pass --data-path.")
    vocab = (args.src_vocab or (len(data.src_vocab) if data else ENG_FRA_VOCAB[0]),
             args.tgt_vocab or (len(data.tgt_vocab) if data else ENG_FRA_VOCAB[1]))
    if args.mode in ("train", "all"):
        report["train"] = {}
        for name in [c for c in args.configs.split(",") if c]:
            spec = dict(CONFIGS[name])
            for k in ("hidden", "batch", "length"):
                spec[k] = getattr(args, f"{name}_{k}")
            steps = args.steps
            if name == "large":
                args.steps = args.large_steps
            report["train"][name] = bench_train(args, name, spec, tt, torch, vocab)
            log(f"train/{name}", {k: v for k, v in report["train"][name].items()
                                  if k.startswith("speedup") or k == "load_per_repeat"})
            args.steps = steps
    if args.mode in ("decode", "all"):
        report["decode"] = bench_decode(args, tt, torch, data)
        log("decode", report["decode"]["speedup_vs_tutorial_evaluate"])
    if args.mode == "quality":
        report["quality"] = bench_quality(args, tt, torch, data)
    report["matmul_peak_end"] = matmul_peak(sizes, 0.5)
    best = max(report["matmul_peak_start"]["gflops"], report["matmul_peak_end"]["gflops"])
    for r in report.get("train", {}).values():
        session = max([best] + r["matmul_peak_gflops_per_repeat"])
        r["matmul_peak_session_gflops"] = session
        r["jax_fraction_of_session_peak"] = r["jax"]["gflops_per_s"] / session
    report["max_rss_mb"] = max_rss_mb()
    report = rounded(report)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return report


if __name__ == "__main__":
    main()
