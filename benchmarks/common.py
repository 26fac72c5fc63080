"""What every benchmark mode shares: load and memory readings, the matmul peak, interleaved
timing, JSON rounding, torch thread choice, and the models and configs of both sides.

Every figure is measured in one process with the two frameworks interleaved repeat by repeat
(in alternating order), so load from other work on the machine falls on both alike; the load
average is recorded with each repeat.
"""

from __future__ import annotations

import json
import math
import os
import resource
import runpy
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import torch
from torch import nn

from benchmarks import torch_tutorial as tt
from jaxattn import data as data_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA = os.path.normpath(
    os.path.join(ROOT, "..", "shared", "data", "eng-fra", "eng-fra.txt")
)
ENG_FRA_VOCAB = (4174, 2727)  # source (French), target (English) sizes of configs/base.py's data


# ---------------------------------------------------------------------------- readings
def log(what: str, value) -> None:
    """Progress on stderr (stdout carries only the JSON)."""
    print(f"[benchmark] {what}: {json.dumps(rounded(value))}", file=sys.stderr, flush=True)


def load() -> float:
    """The 1-minute load average (1.0 = one core busy with other work)."""
    return round(os.getloadavg()[0], 2)


def max_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def med(xs):
    """The median (NaN for no values)."""
    return statistics.median(xs) if xs else float("nan")


def rounded(x, digits=4):
    """x with floats rounded (NaN/inf -> None) through dicts, lists and tuples: the JSON."""
    if isinstance(x, float):
        return None if not math.isfinite(x) else round(x, digits)
    if isinstance(x, dict):
        return {k: rounded(v, digits) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [rounded(v, digits) for v in x]
    return x


# ------------------------------------------------------------------------- matmul peak
def prepare_matmul(n: int):
    """A compiled float32 n x n matmul and its operands."""
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
    f = jax.jit(jnp.matmul)
    f(a, b).block_until_ready()
    return f, a, b


def matmul_gflops(n: int, seconds: float = 0.3, prepared=None) -> float:
    """Best GFLOP/s of a jitted float32 n x n matmul over about `seconds`."""
    f, a, b = prepared or prepare_matmul(n)
    flops, best, spent = 2.0 * n**3, math.inf, 0.0
    while spent < seconds or best == math.inf:
        t = time.perf_counter()
        f(a, b).block_until_ready()
        dt = time.perf_counter() - t
        best, spent = min(best, dt), spent + dt
    return flops / best / 1e9


def matmul_peak(sizes, seconds: float) -> dict:
    """The best matmul GFLOP/s over `sizes`: the machine's float32 peak as XLA reaches it."""
    per_size = {str(n): round(matmul_gflops(n, seconds), 1) for n in sizes}
    best = max(per_size, key=per_size.get)
    return {"gflops": per_size[best], "size": int(best), "per_size": per_size, "load": load()}


# ------------------------------------------------------------------------------ timing
def interleave(tasks: dict, repeats: int) -> dict:
    """Runs each task once a repeat, order alternating; returns name -> list of results (and
    'load' -> the load average after each repeat)."""
    out = {name: [] for name in tasks}
    out["load"] = []
    names = list(tasks)
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            out[name].append(tasks[name]())
        out["load"].append(load())
    return out


def pick_threads(run_once, candidates=(1, 2)) -> tuple[int, dict]:
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


def torch_threads(setting: str, run_once) -> tuple[int, dict]:
    """--torch-threads: 'auto' (timed with `pick_threads`) or a number; set, and returned with
    the calibration timings ({} for a number)."""
    if setting == "auto":
        return pick_threads(run_once)
    torch.set_num_threads(int(setting))
    return int(setting), {}


# ----------------------------------------------------------------------- jaxattn side
def base_config(data_path: str):
    """configs/base.py (the tutorial mirror) reading the corpus at `data_path`."""
    config = runpy.run_path(os.path.join(ROOT, "configs", "base.py"))["get_config"]()
    config.data.path = data_path
    return config


def model_config(config, hidden: int, bidirectional: bool, unroll: int):
    """config.model resized: hidden = embedding size; bidirectional with a dense bridge."""
    m = config.model
    m.hidden = m.embed_dim = hidden
    m.bidirectional = bidirectional
    m.bridge = "dense" if bidirectional else "copy"
    m.unroll = unroll
    return m


def build_data(data_path: str):
    """The base config's corpus (eng-fra, its filter and splits)."""
    return data_lib.build(base_config(data_path).data)


# ------------------------------------------------------------------------- torch side
class BiEncoder(tt.RNNEncoder):
    """The tutorial's encoder, bidirectional: outputs [B, S, 2H], final state [1, B, 2H]."""

    def forward(self, input):
        output, hidden = super().forward(input)  # [B, S, 2H], [2, B, H]
        return output, torch.cat([hidden[0], hidden[1]], dim=-1)[None]  # [1, B, 2H]


class WideKeyAttention(tt.BahdanauAttention):
    """Bahdanau attention over keys `key_size` wide (U_a: key_size -> hidden)."""

    def __init__(self, hidden_size, key_size):
        super().__init__(hidden_size)
        self.Ua = nn.Linear(key_size, hidden_size)


class BiAttnDecoder(tt.AttnDecoderRNN):
    """The tutorial's decoder over 2H-wide keys, started by a dense tanh bridge from the
    bidirectional final state (what jaxattn's bridge='dense' computes)."""

    def __init__(self, hidden_size, output_size, max_length):
        super().__init__(hidden_size, output_size, max_length=max_length)
        self.attention = WideKeyAttention(hidden_size, 2 * hidden_size)
        self.gru = nn.GRU(3 * hidden_size, hidden_size, batch_first=True)
        self.bridge = nn.Linear(2 * hidden_size, hidden_size)

    def forward(self, encoder_outputs, encoder_hidden, target_tensor=None):
        hidden = torch.tanh(self.bridge(encoder_hidden))  # [1, B, H]
        return super().forward(encoder_outputs, hidden, target_tensor)


def make_torch_models(src_vocab, tgt_vocab, hidden, bidirectional, max_length):
    """(encoder, decoder): the tutorial's EncoderRNN + AttnDecoderRNN, or their bidirectional
    variant (`BiEncoder` + `BiAttnDecoder`)."""
    if not bidirectional:
        return (
            tt.EncoderRNN(src_vocab, hidden),
            tt.AttnDecoderRNN(hidden, tgt_vocab, max_length=max_length),
        )
    return (
        BiEncoder(src_vocab, hidden, hidden, bidirectional=True),
        BiAttnDecoder(hidden, tgt_vocab, max_length),
    )


def torch_batch(batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """A jaxattn batch's (src [B, S], tgt [B, T]) as torch LongTensors for `tt.train_step`."""
    return torch.from_numpy(batch["src"]).long(), torch.from_numpy(batch["tgt"]).long()
