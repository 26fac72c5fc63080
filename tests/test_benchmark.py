"""benchmarks/ runs on tiny sizes and prints valid JSON (a smoke test, not a benchmark)."""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("torch")

from shared import ROOT, SUBJECTS, very_pairs

TINY = [
    "--steps",
    "1",
    "--large-steps",
    "1",
    "--repeats",
    "1",
    "--warmup",
    "0",
    "--torch-threads",
    "1",
    "--no-torch-default-threads",
    "--peak-sizes",
    "64",
    "--peak-size",
    "64",
]


def run(*args, **env):
    env = dict(os.environ, JAX_PLATFORMS="cpu", **env)
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


@pytest.mark.slow
def test_train_mode_tiny(tmp_path):
    out = tmp_path / "results.json"
    report = run(
        "--mode",
        "train",
        "--configs",
        "tutorial,large",
        "--tutorial-hidden",
        "8",
        "--tutorial-batch",
        "2",
        "--tutorial-length",
        "4",
        "--large-hidden",
        "8",
        "--large-batch",
        "2",
        "--large-length",
        "5",
        "--src-vocab",
        "11",
        "--tgt-vocab",
        "13",
        "--out",
        str(out),
        *TINY,
    )
    assert json.loads(out.read_text()) == report
    assert report["matmul_peak_start"]["gflops"] > 0
    for name, bidirectional in (("tutorial", False), ("large", True)):
        r = report["train"][name]
        assert r["bidirectional"] is bidirectional and r["src_vocab"] == 11
        for side in ("jax", "torch"):
            assert r[side]["tokens_per_s"] > 0 and r[side]["step_s_median"] > 0
        assert r["speedup_tokens_per_s"] > 0 and r["train_gflop_per_step"] > 0
        assert 0 < r["jax_fraction_of_session_peak"]
        assert r["jax"]["compile_s"] > 0 and r["jax"]["memory"]


def test_train_flops_counts_matmuls(monkeypatch):
    monkeypatch.syspath_prepend(ROOT)
    from benchmarks.train import train_flops

    b, s, e, h, v = 2, 3, 4, 5, 7
    flops = train_flops(batch=b, src_len=s, tgt_len=1, embed=e, hidden=h, directions=1, tgt_vocab=v)
    encoder = 2 * b * s * e * 3 * h + 2 * b * s * h * 3 * h
    keys = 2 * b * s * h * h
    step = (
        2 * b * h * h
        + 2 * b * s * h
        + 2 * b * s * h
        + 2 * b * (e + h) * 3 * h
        + 2 * b * h * 3 * h
        + 2 * b * h * v
    )
    assert flops == 3 * (encoder + keys + step)


def test_transformer_sides_are_the_same_model(monkeypatch):
    """The transformer mode's PyTorch model has jaxattn's parameter count and positional
    encoding (same size, same embedding)."""
    monkeypatch.syspath_prepend(ROOT)
    import jax
    import jax.numpy as jnp

    from benchmarks import transformer as tb
    from jaxattn.model.seq2seq import build_model
    from jaxattn.model.transformer import sinusoidal_encoding

    pe = tb.sinusoidal(7, 6).numpy()
    assert abs(pe - sinusoidal_encoding(jnp.arange(7), 6)).max() < 1e-6
    spec = dict(hidden=8, heads=2, ff_dim=12, encoder_layers=1, decoder_layers=2, batch=2)
    args = tb.argparse.Namespace(data_path="")
    model = build_model(tb.jax_config(args, spec).model, 11, 13, bos_id=tb.BOS)
    src = jnp.ones((2, 3), jnp.int32)
    params = model.init(jax.random.PRNGKey(0), src, jnp.array([3, 2]), src)["params"]
    torch_model = tb.TorchTransformer(11, 13, spec)
    assert tb.n_params(params) == sum(p.numel() for p in torch_model.parameters())


@pytest.mark.slow
def test_decode_mode_tiny(tmp_path):
    """Decode mode on a tiny tutorial-format corpus: every task timed, the per-model-step
    ratios of sampling, a 2-model ensemble and beam search against greedy reported."""
    lines = very_pairs([s for s in SUBJECTS if s[0] in ("I am", "He is", "We are")])
    corpus = tmp_path / "eng-fra.txt"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = run(
        "--mode",
        "decode",
        "--data-path",
        str(corpus),
        "--decode-hidden",
        "8",
        "--decode-batch",
        "2,4",
        "--max-len",
        "3",
        "--beam-size",
        "2",
        "--decode-split",
        "train",
        "--decode-limit",
        "4",
        *TINY,
        TFDS_DATA_DIR=str(tmp_path / "tfds"),
    )["decode"]
    for task in (
        "jax_greedy_b2",
        "jax_greedy_b4",
        "jax_beam2_b2",
        "jax_sample_top_p_b2",
        "jax_ensemble2_greedy_b2",
        "torch_evaluate",
    ):
        assert report[task]["sentences_per_s"] > 0, task
    ratios = report["per_model_step_vs_greedy"]
    assert set(ratios) == {"sample_top_p", "ensemble2_greedy", "beam2"}
    assert all(r > 0 for r in ratios.values())


@pytest.mark.slow
def test_transformer_mode_tiny(tmp_path):
    """Transformer mode on a tiny tutorial-format corpus: jaxattn's Transformer and
    torch.nn.Transformer of the same size (same parameter count) trained and decoded."""
    lines = very_pairs([s for s in SUBJECTS if s[0] in ("I am", "He is", "We are")])
    corpus = tmp_path / "eng-fra.txt"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "results.json"
    report = run(
        "--mode",
        "transformer",
        "--data-path",
        str(corpus),
        "--transformer-hidden",
        "8",
        "--transformer-heads",
        "2",
        "--transformer-ff-dim",
        "16",
        "--transformer-encoder-layers",
        "1",
        "--transformer-decoder-layers",
        "1",
        "--transformer-batch",
        "4",
        "--transformer-steps",
        "1",
        "--transformer-decode-batch",
        "2",
        "--decode-split",
        "train",
        "--decode-limit",
        "4",
        "--max-len",
        "3",
        "--beam-size",
        "2",
        "--out",
        str(out),
        *TINY,
        TFDS_DATA_DIR=str(tmp_path / "tfds"),
    )
    assert json.loads(out.read_text()) == report
    r = report["transformer"]
    assert r["data"].startswith(str(corpus)) and r["hidden"] == 8 and r["norm_first"]
    train = r["train"]
    for side in ("jax", "torch"):
        assert train[side]["tokens_per_s"] > 0 and train[side]["step_s_median"] > 0
    assert train["jax"]["parameters"] == train["torch"]["parameters"] > 0
    assert train["speedup_tokens_per_s"] > 0 and train["jax"]["compile_s"] > 0
    decode = r["decode"]
    assert decode["sentences"] == 4 and decode["batch"] == 2
    for task in ("jax_greedy_b2", "jax_beam2_b2", "torch_greedy_no_cache_b2"):
        assert decode[task]["sentences_per_s"] > 0, task
        assert 1 <= decode[task]["mean_steps_per_batch"] <= 3, task
    assert decode["speedup_greedy"] > 0 and "cache" in decode["torch_greedy"]


def _multi30k_config():
    import runpy

    return runpy.run_path(os.path.join(ROOT, "configs", "multi30k.py"))["get_config"]()


def test_peer_yaml_maps_multi30k(monkeypatch):
    """The JoeyNMT config written from configs/multi30k.py has the issue's mapping, and its
    YAML reads back with numbers as numbers (JoeyNMT reads JSON's 1e-08 as a string)."""
    monkeypatch.syspath_prepend(ROOT)
    import yaml

    from benchmarks import peer_joeynmt as pj

    cfg = yaml.safe_load(yaml.safe_dump(pj.joey_config(_multi30k_config(), "/d", "/m")))
    enc, dec = cfg["model"]["encoder"], cfg["model"]["decoder"]
    for part in (enc, dec):
        assert (part["type"], part["rnn_type"], part["hidden_size"]) == ("recurrent", "gru", 512)
        assert part["embeddings"]["embedding_dim"] == 256 and part["num_layers"] == 1
    assert enc["bidirectional"] is True
    assert (dec["attention"], dec["init_hidden"], dec["input_feeding"]) == (
        "bahdanau",
        "bridge",
        True,
    )
    t = cfg["training"]
    assert (t["batch_size"], t["batch_type"], t["optimizer"]) == (128, "sentence", "adam")
    assert t["clip_grad_norm"] == 1.0 and t["label_smoothing"] == 0.1
    assert t["normalization"] == "tokens" and t["learning_rate"] == 1e-3
    assert isinstance(t["learning_rate_min"], float) and t["learning_rate_min"] < 1e-6
    assert cfg["testing"]["max_output_length"] == 60 and cfg["testing"]["beam_alpha"] == 0.0
    d = cfg["data"]
    assert d["train"] == "/d/train" and d["test"] == "/d/test"
    for side, lang in (("src", "de"), ("trg", "en")):
        assert d[side]["lang"] == lang and d[side]["level"] == "word"
        assert d[side]["max_length"] == 39  # jaxattn keeps pairs under 40 tokens a side
        assert d[side]["lowercase"] is False and d[side]["pretokenizer"] == "none"


def test_peer_python_lookup(monkeypatch, tmp_path):
    """--peer-python wins over $JAXATTN_PEER_PYTHON, which wins over .peer-venv; none: an
    error naming the setup."""
    monkeypatch.syspath_prepend(ROOT)
    from benchmarks import peer_joeynmt as pj

    flag, env = tmp_path / "flag", tmp_path / "env"
    flag.touch(), env.touch()
    monkeypatch.setenv("JAXATTN_PEER_PYTHON", str(env))
    assert pj.peer_python(str(flag)) == str(flag)
    assert pj.peer_python("") == str(env)
    monkeypatch.delenv("JAXATTN_PEER_PYTHON")
    monkeypatch.setattr(pj, "PEER_VENV_PYTHON", str(tmp_path / "none"))
    with pytest.raises(SystemExit, match="joeynmt==2.3.0"):
        pj.peer_python("")


def _peer_python_with_joeynmt():
    """The peer python if it exists and imports joeynmt, else None."""
    path = os.environ.get("JAXATTN_PEER_PYTHON") or os.path.join(ROOT, ".peer-venv/bin/python")
    if not os.path.exists(path):
        return None
    ok = subprocess.run([path, "-c", "import joeynmt"], capture_output=True, timeout=120)
    return path if ok.returncode == 0 else None


def _tiny_peer_run(tmp_path):
    """(corpus dir, config file): a tiny Multi30k-format corpus (1-4 words and a full stop)
    and configs/multi30k.py shrunk to it, padded to multiples of 2 (several batch shapes)."""
    data = tmp_path / "data"
    data.mkdir()
    words = [
        ("ein", "a"),
        ("Hund", "dog"),
        ("läuft", "runs"),
        ("Katze", "cat"),
        ("schläft", "sleeps"),
    ]
    rng = __import__("random").Random(0)
    for split, n in (("train", 60), ("val", 6), ("test_2016_flickr", 6)):
        pairs = [rng.sample(words, rng.randint(1, 4)) for _ in range(n)]
        for k, lang in ((0, "de"), (1, "en")):
            lines = [" ".join(w[k] for w in p) + " ." for p in pairs]
            (data / f"{split}.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = tmp_path / "tiny.py"
    config.write_text(
        "import runpy\n"
        f"_m = runpy.run_path({os.path.join(ROOT, 'configs', 'multi30k.py')!r})\n"
        "def get_config():\n"
        "    c = _m['get_config']()\n"
        "    c.model.embed_dim, c.model.hidden, c.train.batch_size = 8, 8, 8\n"
        "    c.data.vocab_min_freq, c.eval.max_decode_len, c.data.bucket_pool = 1, 6, 2\n"
        "    c.data.pad_multiple, c.train.warmup_steps = 2, 10\n"
        "    return c\n"
    )
    return data, config


@pytest.mark.slow
def test_peer_jax_side_compiles_no_shape_in_a_timed_window(monkeypatch, tmp_path):
    """`JaxSide.warm(n)` compiles the step for every batch shape of the next n batches, so
    that training them compiles nothing; without it, the same batches compile in the window."""
    monkeypatch.syspath_prepend(ROOT)
    from benchmarks import peer_joeynmt as pj
    from jaxattn import data as data_lib

    data_dir, config_file = _tiny_peer_run(tmp_path)
    config = pj.load_config(str(config_file), str(data_dir))
    config.data.data_dir = str(tmp_path / "tfds")
    data = data_lib.build(config.data)
    cold, warm = pj.JaxSide(config, data, []), pj.JaxSide(config, data, [])
    shapes = warm.warm(12)
    assert shapes >= 2  # the tiny corpus's batches come in several widths
    assert warm.train(12)["compiled_in_window"] == 0
    assert cold.train(12)["compiled_in_window"] == shapes


@pytest.mark.slow
def test_peer_mode_tiny(tmp_path):
    """Peer mode on a tiny Multi30k-format corpus and a tiny model: both toolkits trained and
    timed, every decoding task reported with output lengths, the ratios computed; jaxattn's
    timed windows compile nothing."""
    python = _peer_python_with_joeynmt()
    if python is None:
        pytest.skip("no JoeyNMT python (.peer-venv or $JAXATTN_PEER_PYTHON with joeynmt)")
    data, config = _tiny_peer_run(tmp_path)
    report = run(
        "--mode", "peer", "--peer-python", python, "--peer-config", str(config),
        "--data-path", str(data), "--peer-sentences", "4", "--peer-pretrain", "2",
        "--peer-updates", "1", "--peer-repeats", "1", "--peer-batch", "4",
        "--peer-workdir", str(tmp_path / "work"), "--torch-threads", "1", "--peak-sizes", "64",
        TFDS_DATA_DIR=str(tmp_path / "tfds"),
    )["peer"]  # fmt: skip
    assert report["corpus"]["test"] == 4
    for side in ("jaxattn", "jaxattn_luong", "joeynmt"):
        assert report[side]["train"]["per_s_median"] > 0
        for task in ("greedy_b1", "greedy_b4", "beam5_b1", "beam5_b4"):
            r = report[side][task]
            assert r["per_s_median"] > 0 and 0 <= r["cut"] <= 1 and r["mean_len"] <= 6, task
            assert r["tokens_per_s_median"] == pytest.approx(r["per_s_median"] * r["mean_len"])
    assert report["ratio_vs_joeynmt"]["jaxattn"]["train"] > 0
    for side in ("jaxattn", "jaxattn_luong"):
        assert report[side]["train"]["compiled_in_window"] == 0
        assert report["pretrain"][side]["shapes_warmed"] >= 1
    from benchmarks.peer_joeynmt import table

    assert "| greedy_b4: output tokens/s |" in table(report)
