"""Transformer speed: jaxattn's Transformer (encoder='transformer', decoder='transformer')
against PyTorch's `nn.Transformer` of the same size, on the same batches, interleaved.

Training: target tokens/s of one optimizer step (Adam 1e-3; cross-entropy with label
smoothing 0.1 averaged over the real target tokens; dropout 0.1 on embeddings, sublayers,
the feed-forward and the attention weights) on batches of --transformer-batch sentences, each
padded to its longest sentence. Both models are pre-LN (`norm_first`, with a final LayerNorm
on each stack), embed tokens * sqrt(width) + sinusoidal positions and end in an untied output
Linear. Compilation and warm-up are not timed; figures are medians of --repeats repeats.

Decoding: sentences/s of greedy search (and beam search, jaxattn only) on the held-out split
(or random sources), in batches of --transformer-decode-batch. jaxattn runs
`jaxattn.search.decode`, whose Transformer decoder steps with a key/value cache (one new
position a step); `nn.Transformer` has no cache, so the PyTorch greedy loop re-runs the
decoder on the whole prefix every step (quadratic in the length) and projects the last
position. PyTorch always runs --max-len steps; jaxattn stops a batch when every sentence has
emitted EOS, so the steps each took are reported (`mean_steps_per_batch`; with these random
weights all of them). Beam search is not timed for PyTorch (nn.Transformer has none).

The corpus (--data-path, when it exists) gives the vocabulary sizes, the training sentences
(shuffled, from the training split) and the decoded sentences (--decode-split); without it,
random ids over eng-fra's vocabulary sizes with lengths uniform in [3, --transformer-length].
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import torch
from torch import nn

from benchmarks import common
from benchmarks.common import med
from benchmarks.decode import batched
from benchmarks.train import compiled_trainer, random_batches
from jaxattn import data as data_lib
from jaxattn import search
from jaxattn.model.seq2seq import build_model

PAD, BOS, EOS = 0, 1, 2  # jaxattn's ids (synthetic batches use the same)
SIZES = dict(hidden=256, heads=4, ff_dim=1024, encoder_layers=3, decoder_layers=3, batch=64)
SYNTHETIC_SENTENCES = 512  # decoded without a corpus


def add_args(p) -> None:
    """The mode's command-line options (sizes; the shared ones are run.py's)."""
    for k, v in SIZES.items():
        p.add_argument(f"--transformer-{k.replace('_', '-')}", type=int, default=v)
    p.add_argument(
        "--transformer-length", type=int, default=10, help="synthetic sentences: longest"
    )
    p.add_argument("--transformer-steps", type=int, default=4, help="train steps a repeat")
    p.add_argument("--transformer-decode-batch", type=int, default=128)


def spec_of(args) -> dict:
    return {k: getattr(args, f"transformer_{k}") for k in SIZES}


# --------------------------------------------------------------------------------- data
def load(args, n_batches: int = 4):
    """(train batches, decode rows, vocab sizes, source): from the corpus at --data-path,
    padded to each batch's longest (pad_to 0, pad_multiple 1), or synthetic."""
    batch = args.transformer_batch
    if os.path.exists(args.data_path):
        config = common.base_config(args.data_path)
        config.data.pad_to, config.data.pad_multiple = 0, 1
        with contextlib.redirect_stdout(sys.stderr):
            data = data_lib.build(config.data)
        assert (data.tgt_vocab.pad_id, data.tgt_vocab.bos_id, data.tgt_vocab.eos_id) == (
            PAD,
            BOS,
            EOS,
        )
        it = data.train_iterator(batch, seed=0)
        batches = [dict(next(it)) for _ in range(n_batches)]
        rows = data.eval_batches(args.decode_split, 2**31)[0]
        vocab = len(data.src_vocab), len(data.tgt_vocab)
        source = f"{args.data_path} (train batches; decoding: the {args.decode_split} split)"
    else:
        vocab = common.ENG_FRA_VOCAB
        length = args.transformer_length
        batches = random_batches(n_batches, batch, length, *vocab, seed=1)
        n = args.decode_limit or SYNTHETIC_SENTENCES
        rows = random_batches(1, n, length, *vocab, seed=2)[0]
        source = "synthetic (random ids, eng-fra vocabulary sizes)"
    n = min(args.decode_limit or len(rows["src_len"]), len(rows["src_len"]))
    rows = {k: np.asarray(v[:n]) for k, v in rows.items()}
    return batches, rows, vocab, source


# --------------------------------------------------------------------------- jaxattn side
def jax_config(args, spec: dict):
    """The base config with the Transformer of `spec`: pre-LN, sinusoidal positions, dropout
    0.1 everywhere (attention weights too, as nn.Transformer), label smoothing 0.1."""
    config = common.base_config(args.data_path)
    m = config.model
    m.encoder = m.decoder = "transformer"
    m.hidden, m.heads, m.ff_dim = spec["hidden"], spec["heads"], spec["ff_dim"]
    m.encoder_layers, m.decoder_layers = spec["encoder_layers"], spec["decoder_layers"]
    m.norm_first, m.positional, m.tie_embeddings = True, "sinusoidal", False
    m.dropout = m.attention_dropout = 0.1
    m.dtype = "float32"
    config.train.label_smoothing = 0.1
    return config


def jax_decode_task(model, variables, batches, steps_seen: list, **options):
    """A timed task: `search.decode` over `batches`, dispatched back to back, then waited on;
    the decoding steps each batch took are appended to `steps_seen`."""
    inputs = [(jnp.asarray(b["src"]), jnp.asarray(b["src_len"])) for b in batches]

    def run():
        t = time.perf_counter()
        results = [search.decode(model, variables, s, sl, **options) for s, sl in inputs]
        jax.block_until_ready([r.tokens for r in results])
        seconds = time.perf_counter() - t
        steps_seen.extend(int(r.steps) for r in results)
        return seconds

    return run


# ----------------------------------------------------------------------------- torch side
def sinusoidal(positions: int, width: int) -> torch.Tensor:
    """jaxattn's (d2l 11.6) encoding: P[t, 2j] = sin(t / 10000^(2j/d)), P[t, 2j+1] = cos."""
    t = torch.arange(positions, dtype=torch.float32)[:, None]
    angles = t / torch.pow(10000.0, torch.arange(0, width, 2, dtype=torch.float32) / width)
    return torch.stack([angles.sin(), angles.cos()], dim=-1).reshape(positions, -1)[:, :width]


class TorchTransformer(nn.Module):
    """nn.Transformer (batch first, pre-LN) with token embeddings * sqrt(width) + sinusoidal
    positions (then dropout) on both sides and an output Linear."""

    def __init__(self, src_vocab, tgt_vocab, spec: dict, dropout=0.1, max_positions=256):
        super().__init__()
        d = self.width = spec["hidden"]
        self.src_embed = nn.Embedding(src_vocab, d)
        self.tgt_embed = nn.Embedding(tgt_vocab, d)
        self.register_buffer("pe", sinusoidal(max_positions, d))
        self.drop = nn.Dropout(dropout)
        with warnings.catch_warnings():  # "enable_nested_tensor ... norm_first was True"
            warnings.simplefilter("ignore", UserWarning)
            self.transformer = nn.Transformer(
                d_model=d,
                nhead=spec["heads"],
                num_encoder_layers=spec["encoder_layers"],
                num_decoder_layers=spec["decoder_layers"],
                dim_feedforward=spec["ff_dim"],
                dropout=dropout,
                batch_first=True,
                norm_first=True,
            )
        self.out = nn.Linear(d, tgt_vocab)

    def _embed(self, table, ids):
        return self.drop(table(ids) * math.sqrt(self.width) + self.pe[: ids.size(1)])

    def encode(self, src, src_pad):
        """src [B, S], src_pad [B, S] True on padding -> memory [B, S, D]."""
        return self.transformer.encoder(
            self._embed(self.src_embed, src), src_key_padding_mask=src_pad
        )

    def decode(self, inputs, memory, src_pad):
        """Decoder inputs [B, T] (BOS first) under a causal mask -> features [B, T, D]."""
        causal = nn.Transformer.generate_square_subsequent_mask(inputs.size(1))
        return self.transformer.decoder(
            self._embed(self.tgt_embed, inputs),
            memory,
            tgt_mask=causal,
            memory_key_padding_mask=src_pad,
            tgt_is_causal=True,
        )

    def forward(self, src, src_pad, inputs):
        """Logits [B, T, V]."""
        return self.out(self.decode(inputs, self.encode(src, src_pad), src_pad))


def torch_batch(b: dict):
    """A jaxattn batch -> (src, src padding mask, decoder inputs [BOS, tgt[:-1]], tgt)."""
    src, tgt = torch.from_numpy(b["src"]).long(), torch.from_numpy(b["tgt"]).long()
    src_pad = torch.arange(src.size(1))[None, :] >= torch.from_numpy(b["src_len"]).long()[:, None]
    inputs = torch.cat([torch.full_like(tgt[:, :1], BOS), tgt[:, :-1]], dim=1)
    return src, src_pad, inputs, tgt


def torch_trainer(args, model, batches) -> tuple:
    """Adam 1e-3, CrossEntropyLoss(ignore_index=PAD, label_smoothing=0.1), warmed up.
    Returns (run: thread count -> seconds for --transformer-steps steps, threads, calibration)."""
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss(ignore_index=PAD, label_smoothing=0.1)
    tb = [torch_batch(b) for b in batches]

    def step(i):
        src, src_pad, inputs, tgt = tb[i % len(tb)]
        opt.zero_grad()
        logits = model(src, src_pad, inputs)
        loss = loss_fn(logits.reshape(-1, logits.size(-1)), tgt.reshape(-1))
        loss.backward()
        opt.step()
        return loss.item()

    for i in range(max(args.warmup, 1)):
        step(i)
    threads, calib = common.torch_threads(args.torch_threads, lambda: step(0))

    def run(n_threads):
        torch.set_num_threads(n_threads)
        t = time.perf_counter()
        for i in range(args.transformer_steps):
            step(i)
        return time.perf_counter() - t

    return run, threads, calib


def torch_greedy(model, src, src_pad, max_len: int):
    """Greedy decoding without a cache: every step re-runs the decoder on the whole prefix
    and projects only the last position to the vocabulary (its argmax is the next token).
    Always `max_len` steps, as the tutorial's `evaluate` (random weights emit EOS at random,
    so stopping early would time different work). Returns (tokens [B, max_len], steps)."""
    with torch.no_grad():
        memory = model.encode(src, src_pad)
        ys = torch.full((src.size(0), 1), BOS, dtype=torch.long)
        for _ in range(max_len):
            nxt = model.out(model.decode(ys, memory, src_pad)[:, -1]).argmax(-1)
            ys = torch.cat([ys, nxt[:, None]], dim=1)
        return ys[:, 1:], max_len


def torch_decode_task(model, batches, max_len: int, steps_seen: list):
    inputs = [torch_batch(b)[:2] for b in batches]

    def run():
        t = time.perf_counter()
        for src, src_pad in inputs:
            steps_seen.append(torch_greedy(model, src, src_pad, max_len)[1])
        return time.perf_counter() - t

    return run


# ---------------------------------------------------------------------------------- mode
def n_params(tree) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))


def bench_transformer(args) -> dict:
    """Training then decoding, each interleaved jaxattn / PyTorch for --repeats repeats."""
    spec = spec_of(args)
    batches, rows, vocab, source = load(args)
    tokens = [int(b["tgt_len"].sum()) for b in batches]
    mean_tokens = sum(tokens) / len(tokens)
    result = {
        **spec,
        "norm_first": True,
        "positional": "sinusoidal",
        "dropout": 0.1,
        "label_smoothing": 0.1,
        "dtype": "float32",
        "data": source,
        "src_vocab": vocab[0],
        "tgt_vocab": vocab[1],
        "train_batch_shapes": [list(b["tgt"].shape) for b in batches],
        "mean_target_tokens_per_batch": mean_tokens,
        "steps_per_repeat": args.transformer_steps,
        "repeats": args.repeats,
    }

    # ---- training
    config = jax_config(args, spec)
    model = build_model(config.model, *vocab, bos_id=BOS)
    steps_args = argparse.Namespace(**{**vars(args), "steps": args.transformer_steps})
    run_jax, jax_figures = compiled_trainer(steps_args, model, config.train, batches)
    torch.manual_seed(0)
    tmodel = TorchTransformer(*vocab, spec)
    run_torch, threads, calib = torch_trainer(args, tmodel, batches)
    tasks = {"jax": run_jax, "torch": lambda: run_torch(threads)}
    default = args.torch_default
    if args.torch_default_threads and default != threads:
        tasks["torch_default_threads"] = lambda: run_torch(default)
    runs = common.interleave(tasks, args.repeats)
    torch.set_num_threads(threads)
    train = {}
    for k in tasks:
        step_s = [t / args.transformer_steps for t in runs[k]]
        train[k] = {
            "step_s_median": med(step_s),
            "step_s_all": step_s,
            "tokens_per_s": mean_tokens / med(step_s),
        }
    train["jax"].update(jax_figures)
    train["torch"].update(
        threads=threads,
        thread_calibration_s=calib,
        parameters=sum(p.numel() for p in tmodel.parameters()),
    )
    if "torch_default_threads" in train:
        train["torch_default_threads"]["threads"] = default
    train["speedup_tokens_per_s"] = train["torch"]["step_s_median"] / train["jax"]["step_s_median"]
    train["speedup_per_repeat"] = [t / j for j, t in zip(runs["jax"], runs["torch"], strict=True)]
    train["load_per_repeat"] = runs["load"]
    result["train"] = train
    common.log(
        "transformer/train",
        {k: train[k] for k in ("speedup_tokens_per_s", "load_per_repeat")},
    )

    # ---- decoding (random weights: the timing does not depend on them, only the steps taken)
    size, max_len, k = args.transformer_decode_batch, args.max_len, args.beam_size
    dec_batches = batched(rows, size)
    b0 = {key: jnp.asarray(v) for key, v in dec_batches[0].items()}
    variables = jax.jit(lambda r: model.init({"params": r}, b0["src"], b0["src_len"], b0["tgt"]))(
        jax.random.PRNGKey(0)
    )
    train["jax"]["parameters"] = n_params(variables["params"])
    tmodel.eval()
    steps = {}
    names = {
        f"jax_greedy_b{size}": ("greedy", {}),
        f"jax_beam{k}_b{size}": ("beam", {"beam_size": k}),
    }
    dtasks = {}
    for name, (method, extra) in names.items():
        steps[name] = []
        dtasks[name] = jax_decode_task(
            model,
            variables,
            dec_batches,
            steps[name],
            eos_id=EOS,
            max_len=max_len,
            method=method,
            **extra,
        )
    torch_name = f"torch_greedy_no_cache_b{size}"
    steps[torch_name] = []
    dtasks[torch_name] = torch_decode_task(tmodel, dec_batches, max_len, steps[torch_name])
    first = {name: task() for name, task in dtasks.items()}  # compiles (jax), warms up (torch)
    for s in steps.values():
        s.clear()
    druns = common.interleave(dtasks, args.repeats)
    n = len(rows["src_len"])
    decode = {
        "sentences": n,
        "batch": size,
        "max_len": max_len,
        "beam_size": k,
        "weights": "random init",
        "torch_greedy": "nn.Transformer has no key/value cache: each step re-runs the decoder "
        "on the whole prefix (BOS + the tokens so far) and projects the last position; "
        "always max_len steps",
        "torch_beam": "not timed (nn.Transformer has no beam search)",
    }
    for name in dtasks:
        decode[name] = {
            "seconds_median": med(druns[name]),
            "seconds_all": druns[name],
            "sentences_per_s": n / med(druns[name]),
            "first_call_s": first[name],
            "mean_steps_per_batch": float(np.mean(steps[name])) if steps[name] else None,
        }
    decode["speedup_greedy"] = med(druns[torch_name]) / med(druns[f"jax_greedy_b{size}"])
    decode["speedup_greedy_per_repeat"] = [
        t / j for j, t in zip(druns[f"jax_greedy_b{size}"], druns[torch_name], strict=True)
    ]
    decode["load_per_repeat"] = druns["load"]
    result["decode"] = decode
    result["max_rss_mb_after"] = common.max_rss_mb()
    return result
