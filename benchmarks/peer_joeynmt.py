"""jaxattn against the peer toolkit JoeyNMT 2.3.0 (issue #29): the same model, tokens and
vocabularies, training and decoding timed interleaved in one run.

    python -m benchmarks.run --mode peer --out peer.json
    python -m benchmarks.run --mode peer --peer-sentences 50 --peer-updates 4 --peer-repeats 1

JoeyNMT runs in its own virtual environment (it pins other torch/numpy needs than jaxattn's);
this module installs nothing. The environment's python is --peer-python, else
$JAXATTN_PEER_PYTHON, else .peer-venv/bin/python at the repository root; set it up once with

    python3 -m venv .peer-venv
    .peer-venv/bin/pip install torch==2.13.0 joeynmt==2.3.0 importlib_metadata

The JoeyNMT side is `benchmarks/peer_joeynmt_driver.py`, a subprocess of that python that
answers JSON commands; the jaxattn side runs in this process. From configs/multi30k.py
(`joey_config` is the mapping): both read the training pairs jaxattn keeps, pre-tokenized by
jaxattn's tokenizer and written one sentence a line, and jaxattn's vocabularies (JoeyNMT's
specials first, then jaxattn's words: the same sizes). Each side is trained --peer-pretrain
updates first (warm-up and compilation, and so that outputs end at EOS as a trained model's do;
jaxattn first compiles its step for every batch shape the run will draw), then every task runs
once a repeat, order alternating: --peer-updates training updates (target tokens/s, batches
drawn inside the timed window), and greedy and beam decoding of the first --peer-sentences test
sentences at batch 1 and --peer-batch (sentences/s, mean output tokens, share cut at the length
limit). jaxattn also runs `decoder=luong, input_feeding=True` (JoeyNMT's decoder order),
trained the same way.
"""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
import time

import jax
import yaml

from benchmarks import common
from benchmarks.common import med
from jaxattn import data as data_lib
from jaxattn.data.processing import TextProcessing
from jaxattn.inference.translator import Translator
from jaxattn.model.seq2seq import build_model
from jaxattn.training import loop as train_lib
from jaxattn.training.optim import make_optimizer

DEFAULT_DATA = os.path.normpath(os.path.join(common.ROOT, "..", "shared", "data", "multi30k"))
PEER_VENV_PYTHON = os.path.join(common.ROOT, ".peer-venv", "bin", "python")
DRIVER = os.path.join(common.ROOT, "benchmarks", "peer_joeynmt_driver.py")
LR_MIN = 1e-8  # JoeyNMT stops when the rate falls below learning_rate_min (warm-up starts low)


def add_args(p) -> None:
    """The peer mode's flags (the shared --data-path, --torch-threads, --out, ...: run.py)."""
    p.add_argument("--peer-python", default="", help="JoeyNMT's python (see the module doc)")
    p.add_argument("--peer-config", default="configs/multi30k.py", help="the jaxattn config")
    p.add_argument("--peer-sentences", type=int, default=500, help="test sentences decoded")
    p.add_argument("--peer-pretrain", type=int, default=150, help="untimed updates first")
    p.add_argument("--peer-updates", type=int, default=40, help="timed updates a repeat")
    p.add_argument("--peer-repeats", type=int, default=2, help="timed repeats, interleaved")
    p.add_argument("--peer-batch", type=int, default=128, help="the large decoding batch")
    p.add_argument("--peer-workdir", default="", help="JoeyNMT's files ('' : a temp dir)")


def peer_python(flag: str = "") -> str:
    """JoeyNMT's python: `flag`, else $JAXATTN_PEER_PYTHON, else .peer-venv/bin/python;
    SystemExit naming the setup when there is none."""
    path = flag or os.environ.get("JAXATTN_PEER_PYTHON", "") or PEER_VENV_PYTHON
    if not os.path.exists(path):
        raise SystemExit(
            f"No JoeyNMT python at {path}. Set it up once: python3 -m venv .peer-venv && "
            ".peer-venv/bin/pip install torch==2.13.0 joeynmt==2.3.0 importlib_metadata "
            "(or pass --peer-python / set JAXATTN_PEER_PYTHON)."
        )
    return path


def load_config(path: str, data_path: str):
    """A jaxattn config file's config reading the corpus at `data_path`."""
    config = runpy.run_path(os.path.join(common.ROOT, path))["get_config"]()
    config.data.path = data_path
    return config


# -------------------------------------------------------------------- the mapping
def joey_config(config, data_dir: str, model_dir: str) -> dict:
    """JoeyNMT 2.3.0's config for jaxattn's `config` (an RNN config): the files written by
    `write_corpus` in `data_dir` (pre-tokenized: word level, no pre-tokenizer, no lowercasing
    or normalization), the same model sizes, optimizer and decoding limits."""
    d, m, t, e = config.data, config.model, config.train, config.eval
    if m.encoder != "rnn" or m.attention != "additive":
        raise SystemExit(
            f"The peer mode maps RNN models with additive attention; this config has encoder "
            f"{m.encoder!r}, attention {m.attention!r}."
        )

    def side(lang: str, vocab: str) -> dict:
        return {
            "lang": lang,
            "level": "word",
            "lowercase": False,
            "normalize": False,
            "max_length": d.max_length - 1 if d.max_length > 0 else -1,  # jaxattn: < max
            "voc_file": os.path.join(data_dir, vocab),
            "tokenizer_type": "none",
            "pretokenizer": "none",
        }

    rnn = {
        "type": "recurrent",
        "rnn_type": m.cell,
        "hidden_size": m.hidden,
        "dropout": m.dropout,
        "embeddings": {"embedding_dim": m.embed_dim, "dropout": m.dropout},
    }
    return {
        "name": "jaxattn_peer",
        "joeynmt_version": "2.3.0",
        "model_dir": model_dir,
        "use_cuda": False,
        "data": {
            "train": os.path.join(data_dir, "train"),
            "dev": os.path.join(data_dir, "val"),
            "test": os.path.join(data_dir, "test"),
            "dataset_type": "plain",
            "src": side(d.src_lang, "vocab.src"),
            "trg": side(d.tgt_lang, "vocab.trg"),
        },
        "training": {
            "random_seed": config.seed,
            "optimizer": t.optimizer,
            "adam_betas": [t.b1, t.b2],
            "learning_rate": t.learning_rate,
            "learning_rate_min": LR_MIN,
            "scheduling": "warmupinversesquareroot",  # no cosine in JoeyNMT; speed alike
            "learning_rate_warmup": max(t.warmup_steps, 1),
            "clip_grad_norm": t.grad_clip,
            "label_smoothing": t.label_smoothing,
            "loss": "crossentropy",
            "normalization": "tokens",  # jaxattn: the mean over target tokens
            "batch_size": t.batch_size,
            "batch_type": "sentence",
            "shuffle": True,
            "epochs": t.num_epochs,
            "overwrite": True,
            "keep_best_ckpts": 1,
            "logging_freq": 10**9,
            "validation_freq": 10**9,
        },
        "testing": {
            "beam_size": 1,
            "beam_alpha": e.length_penalty,
            "batch_size": e.batch_size,
            "batch_type": "sentence",
            "max_output_length": e.max_decode_len,
            "eval_metrics": [],
        },
        "model": {
            "tied_embeddings": False,
            "encoder": {
                **rnn,
                "num_layers": m.encoder_layers,
                "bidirectional": m.bidirectional,
            },
            "decoder": {
                **rnn,
                "num_layers": m.decoder_layers,
                "hidden_dropout": m.dropout,
                "attention": "bahdanau",  # additive, bias-free (as attention_bias=False)
                "input_feeding": True,  # JoeyNMT's only RNN decoder (Luong-ordered)
                "init_hidden": {"dense": "bridge", "copy": "last", "zero": "zero"}[m.bridge],
            },
        },
    }


def write_corpus(data, out_dir: str, *, sentences: int) -> dict:
    """Writes {train,val,test}.{src_lang,tgt_lang} (jaxattn's tokens joined by spaces, one
    sentence a line: the training pairs jaxattn keeps, the first 100 validation and `sentences` test
    pairs) and vocab.{src,trg} (jaxattn's vocabularies without their 4 specials). Returns the
    counts."""
    os.makedirs(out_dir, exist_ok=True)
    tok_s, tok_t = data.src_tokenizer.tokenize, data.tgt_tokenizer.tokenize
    limit = data.config.max_length if data.config.max_length > 0 else 2**31
    counts = {}
    splits = {"train": ("train", 0), "val": ("validation", 100), "test": ("test", sentences)}
    for name, (split, n) in splits.items():
        pairs = [
            (tok_s(s), tok_t(t))
            for s, t in zip(data.sources(split), data.references(split), strict=True)
        ]
        if name == "train":
            pairs = [p for p in pairs if len(p[0]) < limit and len(p[1]) < limit]
            if len(pairs) != data.num_examples("train"):
                raise SystemExit(
                    f"{len(pairs)} training pairs fit, jaxattn keeps "
                    f"{data.num_examples('train')}: the length filter differs."
                )
        pairs = [p for p in pairs if p[0] and p[1]][: n or None]
        for suffix, k in ((data.config.src_lang, 0), (data.config.tgt_lang, 1)):
            with open(os.path.join(out_dir, f"{name}.{suffix}"), "w", encoding="utf-8") as f:
                f.writelines(" ".join(p[k]) + "\n" for p in pairs)
        counts[name] = len(pairs)
    for suffix, vocab in (("src", data.src_vocab), ("trg", data.tgt_vocab)):
        with open(os.path.join(out_dir, f"vocab.{suffix}"), "w", encoding="utf-8") as f:
            f.writelines(t + "\n" for t in vocab.tokens[vocab.num_specials :])
    return counts


# ---------------------------------------------------------------------- the sides
class Peer:
    """The JoeyNMT driver subprocess: `call(cmd)` sends one JSON command, returns its answer."""

    def __init__(self, python: str, config_path: str, threads: int):
        self.proc = subprocess.Popen(
            [python, DRIVER, config_path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=sys.stderr,
            text=True,
        )
        self.ready = self._answer()
        self.call({"cmd": "threads", "n": threads})

    def _answer(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"The JoeyNMT driver ended (exit {self.proc.wait()}); see stderr.")
        return json.loads(line)

    def call(self, cmd: dict) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._answer()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write('{"cmd": "quit"}\n')
            self.proc.stdin.close()
            self.proc.wait(60)


class JaxSide:
    """jaxattn training (`train_step`, jitted, state donated, batches from
    `Data.train_iterator`) and decoding (`Translator.translate`) of one config."""

    def __init__(self, config, data, sentences: list[str]):
        self.config, self.data, self.sentences = config, data, sentences
        v = (len(data.src_vocab), len(data.tgt_vocab))
        self.model = build_model(config.model, *v, bos_id=data.tgt_vocab.bos_id)
        tc = config.train
        self.batches = data.train_iterator(tc.batch_size, seed=config.seed)
        first = next(self.batches)
        tx = make_optimizer(tc, data.steps_per_epoch(tc.batch_size) * tc.num_epochs)
        self.state = train_lib.create_train_state(self.model, tx, jax.random.PRNGKey(0), first)
        self.key = jax.random.PRNGKey(1)
        self.step = jax.jit(
            lambda s, b, k: train_lib.train_step(s, b, k, model=self.model, tc=tc),
            donate_argnums=0,
        )
        self.text = TextProcessing(
            data.src_tokenizer, data.tgt_tokenizer, data.src_vocab, data.tgt_vocab,
            config.data.max_length,
        )  # fmt: skip
        self.translator = None

    def warm(self, batches: int) -> int:
        """Compiles the training step for every batch shape among the iterator's next
        `batches` batches (read from a second iterator of the same seed, which draws the same
        batches), each on a copy of the state, so that no timed window compiles; -> the number
        of shapes compiled. Bucketed batches have many shapes; a window that compiles one
        times XLA, not training."""
        tc, seen = self.config.train, set()
        ahead = self.data.train_iterator(tc.batch_size, seed=self.config.seed)
        next(ahead)  # __init__ drew the first batch
        compiled = self.step._cache_size()
        for _ in range(batches):
            batch = next(ahead)
            shape = tuple(v.shape for v in batch.values())
            if shape not in seen:
                seen.add(shape)
                copy = jax.tree.map(jax.numpy.copy, self.state)  # the step donates its state
                jax.block_until_ready(self.step(copy, batch, self.key))
        return self.step._cache_size() - compiled

    def train(self, updates: int) -> dict:
        """`updates` updates, the pipeline inside the timed window; seconds, target tokens,
        and the shapes compiled in the window (0 after `warm`)."""
        compiled, tokens, t = self.step._cache_size(), 0, time.perf_counter()
        state, metrics = self.state, None
        for _ in range(updates):
            batch = next(self.batches)
            tokens += int(batch["tgt_len"].sum())
            state, metrics = self.step(state, batch, self.key)
        jax.block_until_ready((state, metrics))
        self.state, self.translator = state, None
        return {
            "seconds": time.perf_counter() - t,
            "tokens": tokens,
            "updates": updates,
            "loss": float(metrics["loss"]) if metrics else float("nan"),
            "compiled_in_window": self.step._cache_size() - compiled,
        }

    def decode(self, beam: int, batch: int) -> dict:
        """The test sentences through `Translator.translate` (its public path)."""
        if self.translator is None:
            self.translator = Translator(self.config, self.state.params, self.text)
        t = time.perf_counter()
        out = self.translator.translate(  # the limit JoeyNMT gets (max_output_length)
            self.sentences,
            batch_size=batch,
            beam_size=beam,
            max_len=self.config.eval.max_decode_len,
        )
        seconds = time.perf_counter() - t
        return {
            "seconds": seconds,
            "sentences": len(out),
            "mean_len": sum(len(x.tokens) for x in out) / max(len(out), 1),
            "cut": sum(not x.finished for x in out) / max(len(out), 1),
        }


# -------------------------------------------------------------------- the benchmark
def decode_tasks(args) -> list[tuple[str, int, int]]:
    """(name, beam, batch) of every decoding task."""
    return [
        (f"{kind}_b{b}", beam, b)
        for kind, beam in (("greedy", 1), ("beam5", 5))
        for b in (1, args.peer_batch)
    ]


def summary(runs: list[dict], kind: str) -> dict:
    """The median of repeats: tokens/s (training) or sentences/s and output tokens/s
    (decoding: the two models' outputs differ in length, so also the tokens decoded)."""
    per_s = [r["tokens" if kind == "train" else "sentences"] / r["seconds"] for r in runs]
    out = {"per_s_median": med(per_s), "per_s_all": per_s}
    if kind != "train":
        out["tokens_per_s_median"] = med(
            [r["mean_len"] * r["sentences"] / r["seconds"] for r in runs]
        )
    for k in ("mean_len", "cut"):
        if k in runs[0]:
            out[k] = runs[-1][k]
    if "compiled_in_window" in runs[0]:  # over all repeats: 0 when no window timed XLA
        out["compiled_in_window"] = sum(r["compiled_in_window"] for r in runs)
    return out


def bench_peer(args) -> dict:
    """Both toolkits (and jaxattn's Luong variant), interleaved; see the module doc."""
    python = peer_python(args.peer_python)
    data_path = DEFAULT_DATA if args.data_path == common.DEFAULT_DATA else args.data_path
    config = load_config(args.peer_config, data_path)
    data = data_lib.build(config.data)
    work = args.peer_workdir or os.path.join(
        os.environ.get("TMPDIR", "/tmp"), f"jaxattn_peer_{os.getpid()}"
    )
    counts = write_corpus(data, work, sentences=args.peer_sentences)
    os.makedirs(os.path.join(work, "model"), exist_ok=True)
    yaml_path = os.path.join(work, "joeynmt.yaml")
    with open(yaml_path, "w") as f:  # yaml: JoeyNMT reads 1e-08 in JSON as a string
        yaml.safe_dump(joey_config(config, work, os.path.join(work, "model")), f)
    sentences = [line for line in data.sources("test") if line.strip()][: args.peer_sentences]

    luong = load_config(args.peer_config, data_path)
    luong.data = config.data
    luong.model.decoder, luong.model.input_feeding = "luong", True
    threads = int(args.torch_threads) if args.torch_threads != "auto" else os.cpu_count()
    sides = {"jaxattn": JaxSide(config, data, sentences)}
    sides["jaxattn_luong"] = JaxSide(luong, data, sentences)
    peer = Peer(python, yaml_path, threads)
    try:
        sides["joeynmt"] = peer
        pretrain = {}
        for name, side in sides.items():
            t = time.perf_counter()
            if name == "joeynmt":
                pretrain[name] = peer.call({"cmd": "train", "updates": args.peer_pretrain})
            else:
                ahead = args.peer_pretrain + args.peer_repeats * args.peer_updates
                warmed = side.warm(ahead)
                pretrain[name] = side.train(args.peer_pretrain)
                pretrain[name]["shapes_warmed"] = warmed
                for _, beam, b in decode_tasks(args):  # compiles the decoding shapes
                    side.decode(beam, b)
            pretrain[name]["wall_s"] = time.perf_counter() - t
            common.log(f"peer/pretrain/{name}", pretrain[name])

        def task(name, what, *a):
            if name == "joeynmt":
                cmd = {"cmd": what}
                cmd.update({"updates": a[0]} if what == "train" else {"beam": a[0], "batch": a[1]})
                return lambda: peer.call(cmd)
            side = sides[name]
            return (lambda: side.train(*a)) if what == "train" else (lambda: side.decode(*a))

        tasks = {}
        for name in sides:
            tasks[f"{name}/train"] = task(name, "train", args.peer_updates)
            for label, beam, b in decode_tasks(args):
                tasks[f"{name}/{label}"] = task(name, "decode", beam, b)
        runs = common.interleave(tasks, args.peer_repeats)
    finally:
        peer.close()

    result = {
        "config": args.peer_config,
        "data_path": data_path,
        "joeynmt_yaml": yaml_path,
        "corpus": counts,
        "vocab": [len(data.src_vocab), len(data.tgt_vocab)],
        "pretrain_updates": args.peer_pretrain,
        "timed_updates": args.peer_updates,
        "repeats": args.peer_repeats,
        "torch_threads": threads,
        "joeynmt_torch": peer.ready.get("torch"),
        "pretrain": pretrain,
        "load_per_repeat": runs.pop("load"),
    }
    for key, rs in runs.items():
        name, what = key.split("/")
        result.setdefault(name, {})[what] = summary(rs, "train" if what == "train" else "")
        result[name][what]["all"] = rs
    result["ratio_vs_joeynmt"] = {
        name: {
            what: r["per_s_median"] / result["joeynmt"][what]["per_s_median"]
            for what, r in result[name].items()
        }
        for name in sides
        if name != "joeynmt"
    }
    return result


def table(result: dict) -> str:
    """The side-by-side table (markdown): per second figures, ratios, output lengths."""
    names = [n for n in ("jaxattn", "jaxattn_luong", "joeynmt") if n in result]
    head = "| | " + " | ".join(names) + " | jaxattn / joeynmt | luong / joeynmt |"
    lines = [head, "|---" * (len(names) + 3) + "|"]
    for what in result["joeynmt"]:
        unit = "target tokens/s" if what == "train" else "sentences/s"
        cells = [f"{result[n][what]['per_s_median']:.1f}" for n in names]
        ratios = [f"{result['ratio_vs_joeynmt'][n][what]:.2f}x" for n in names[:-1]]
        lines.append(f"| {what}: {unit} | " + " | ".join(cells + ratios) + " |")
    decoding = [what for what in result["joeynmt"] if what != "train"]
    for what in decoding:
        rates = [result[n][what]["tokens_per_s_median"] for n in names]
        cells = [f"{r:.0f}" for r in rates] + [f"{r / rates[-1]:.2f}x" for r in rates[:-1]]
        lines.append(f"| {what}: output tokens/s | " + " | ".join(cells) + " |")
    for what in decoding:
        cells = [
            f"{result[n][what]['mean_len']:.1f} / {100 * result[n][what]['cut']:.0f}%"
            for n in names
        ]
        lines.append(f"| {what}: mean output tokens / cut | " + " | ".join(cells) + " | | |")
    return "\n".join(lines)
