"""Inputs and sizes that cannot work are refused before any decoding (issue #25 item 4): the
input limit (twice the longest training sentence, data_stats.json; older runs: the config's
filter or padding), over-long sentences (an error naming them, or cut with a warning),
bounded line reading (a huge line refused as soon as it is seen), and --max_len bounded by
what the model can decode; through the Python API and the scripts."""

import io
import json
import logging
import os
import shutil
import time

import jax
import numpy as np
import pytest
from shared import run_script

from jaxattn.config import default_config
from jaxattn.data import load_text_processing, readers
from jaxattn.errors import InferenceError, InputTooLongError, UsageError
from jaxattn.inference import eval_input
from jaxattn.inference.translation import (
    CHARS_PER_TOKEN,
    MAX_DECODE_STEPS,
    UNLIMITED_CHARS,
    InputLimit,
    training_limit,
)
from jaxattn.inference.translator import Translator
from jaxattn.rundir.run import load_config

STATS = {"train_pairs": 2000, "max_source_len": 8, "max_target_len": 8}  # the tiny run's
LIMIT = 16  # twice the longest training sentence


@pytest.fixture(scope="module")
def run(tiny_run, tmp_path_factory):
    """A copy of the tiny run whose data_stats.json says what training saw (3..8 symbols)."""
    workdir = tmp_path_factory.mktemp("limits") / "run"
    shutil.copytree(tiny_run.workdir, workdir)
    (workdir / "data_stats.json").write_text(json.dumps(STATS))
    return str(workdir)


@pytest.fixture(scope="module")
def translator(run):
    return Translator.from_workdir(run)


@pytest.fixture
def no_decoding(translator, monkeypatch):
    """Fails the test if anything is decoded."""

    def refuse(*args, **kwargs):
        raise AssertionError("decoded although the input was refused")

    monkeypatch.setattr(translator, "decode_ids", refuse)
    return translator


@pytest.fixture
def warnings():
    """The jaxattn warnings logged during a test, as one text (whatever the logger's
    propagation: the scripts' logging setup turns it off)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setLevel(logging.WARNING)
    logger = logging.getLogger("jaxattn")
    logger.addHandler(handler)
    yield stream
    logger.removeHandler(handler)


def _symbols(n):
    return " ".join(str(i % 12) for i in range(n))


def _variant(translator, workdir=None, **data):
    """The same model and text, with config.data fields changed (an older run's config)."""
    config = load_config(translator.workdir)
    for k, v in data.items():
        config.data[k] = v
    text = load_text_processing(config.data, translator.workdir)
    return Translator(config, translator.variables["params"], text, workdir=workdir)


# ----------------------------------------------------------------------------- the limit
@pytest.mark.slow
def test_limit_from_data_stats_and_older_runs(translator, tmp_path):
    limit = translator.input_limit()
    assert translator.max_input_len == limit.tokens == LIMIT and not limit.hard
    assert "twice the longest training source sentence (8 tokens, data_stats.json)" in limit.why
    assert translator.input_limit(side="target").tokens == LIMIT
    assert limit.chars == LIMIT * CHARS_PER_TOKEN
    # runs from before data_stats.json: the corpus filter, the padding, else none
    assert _variant(translator, max_length=10).max_input_len == 18
    assert "data.max_length=10" in _variant(translator, max_length=10).input_limit().why
    assert _variant(translator, pad_to=6).max_input_len == 10
    assert _variant(translator, max_length=10, pad_to=6).max_input_len == 10
    old = _variant(translator)  # synthetic: no filter, no fixed padding
    assert old.max_input_len is None and old.input_limit().chars == UNLIMITED_CHARS
    assert old.max_decode_steps() == MAX_DECODE_STEPS
    # a workdir's data_stats.json wins over the config; unreadable: the config's
    (tmp_path / "data_stats.json").write_text(json.dumps({**STATS, "max_source_len": 20}))
    assert _variant(translator, str(tmp_path), max_length=10).max_input_len == 40
    (tmp_path / "data_stats.json").write_text("{not json")
    assert _variant(translator, str(tmp_path), max_length=10).max_input_len == 18


def test_training_limit_counts_tokens_only():
    cfg = default_config()  # the tutorial: its filter counts words (max_length 10), pad_to 0
    cfg.data.pad_to = 0
    assert training_limit(cfg, {}, "source", "space")[0] == 18  # words are its tokens
    assert training_limit(cfg, {}, "source", "sentencepiece") is None  # pieces: unknown
    assert training_limit(cfg, {"max_source_len": 30}, "source", "sentencepiece")[0] == 60
    assert training_limit(cfg, {"max_source_len": 0}, "source", "space")[0] == 18


@pytest.mark.slow
def test_ensemble_takes_the_least_limit(translator, tmp_path):
    (tmp_path / "data_stats.json").write_text(json.dumps({**STATS, "max_source_len": 5}))
    p, config = translator.variables["params"], translator.config
    text = load_text_processing(config.data, translator.workdir)
    both = Translator(
        config, p, text, workdir=translator.workdir, ensemble=[(config, p, 300, str(tmp_path))]
    )
    assert both.max_input_len == 10 and "5 tokens" in both.input_limit().why


# ----------------------------------------------------------------------------- over-long input
@pytest.mark.slow
@pytest.mark.parametrize("n", [LIMIT + 1, 48, 504])
def test_overlong_is_an_error_naming_it(no_decoding, n):
    with pytest.raises(InputTooLongError) as e:
        no_decoding.translate(["1 2 3", _symbols(n)])
    msg = str(e.value)
    assert msg.startswith(f"sentences[1] has {n} tokens; this model takes at most {LIMIT} tokens")
    assert "--max_input_len" in msg and "--truncate_long" in msg and "overlong='truncate'" in msg
    assert isinstance(e.value, InferenceError) and e.value.exit_code == 1


@pytest.mark.slow
def test_overlong_everywhere_in_the_api(no_decoding):
    t, long = no_decoding, _symbols(40)
    with pytest.raises(InputTooLongError, match=r"^sources\[0\] has 40 tokens"):
        t.evaluate([long], ["x"])
    with pytest.raises(InputTooLongError, match=r"^line 3 of in.txt has 40 tokens"):
        t.evaluate(["1", "2", long], ["1", "2", "3"], where=lambda i: f"line {i + 1} of in.txt")
    with pytest.raises(InputTooLongError, match=r"^sources\[0\] has 40 tokens"):
        t.score([long], ["1"])
    with pytest.raises(InputTooLongError, match=r"^targets\[0\] has 40 tokens.*target sentence"):
        t.score(["1"], [long])
    with pytest.raises(InputTooLongError, match=r"^the sentence has 40 tokens"):
        t.attention(long)
    with pytest.raises(InputTooLongError, match=r"^sentences\[0\] has 40 tokens"):
        t.warmup([long])
    with pytest.raises(InputTooLongError, match=r"^sentences\[1\] has 40 tokens"):
        t.check_inputs(["1", long])
    # characters are counted before tokenizing: a huge sentence is refused at once
    huge = "1 " * 3_000_000
    start = time.perf_counter()
    with pytest.raises(
        InputTooLongError,
        match=r"has 6,000,000 characters; this model takes "
        r"at most 1,600 characters: 100 a token",
    ):
        t.translate([huge])
    assert time.perf_counter() - start < 1
    with pytest.raises(UsageError, match="overlong must be one of"):
        t.translate(["1"], overlong="cut")


@pytest.mark.slow
@pytest.mark.parametrize("n", [LIMIT + 1, 504, 100_000])
def test_truncate_cuts_with_a_warning(translator, warnings, n):
    short, long = translator.translate(["1 2 3", _symbols(n)], overlong="truncate")
    text = warnings.getvalue()
    assert short.text == "3 2 1" and not short.truncated
    assert long.truncated and long.input_tokens == _symbols(n).split()[:LIMIT]
    assert long.weights.shape[1] == LIMIT + 1
    unit = f"{n:,} tokens" if len(_symbols(n)) <= LIMIT * CHARS_PER_TOKEN else "characters"
    assert "sentences[1] has" in text and unit in text
    assert f"cut to its first {LIMIT} tokens" in text


@pytest.mark.slow
def test_truncate_as_the_translators_default_and_counts(run, warnings):
    t = Translator.from_workdir(run, overlong="truncate")
    sentences = [_symbols(20)] * 12 + ["4 5 6"]
    r = t.evaluate(sentences, ["x"] * 13, warmup=False)
    text = warnings.getvalue()
    assert r["truncated_inputs"] == 12 and r["max_input_len"] == LIMIT
    assert text.count("cut to its first") == 10 and "2 more sentence(s) cut" in text
    [s] = t.score(["1 2"], [_symbols(30)])
    assert len(s.tokens) == LIMIT + 1  # the target cut, then EOS
    with pytest.raises(InputTooLongError):
        t.translate([_symbols(20)], overlong="error")  # a call's choice wins


@pytest.mark.slow
def test_max_input_len_raises_or_lowers_the_limit(run, translator):
    long = _symbols(40)
    t = Translator.from_workdir(run, max_input_len=48)
    assert t.max_input_len == 48 and "max_input_len" in t.input_limit().why
    [x] = t.translate([long])
    assert not x.truncated and len(x.input_tokens) == 40
    [y] = translator.translate([long], max_input_len=40)  # per call
    assert len(y.input_tokens) == 40
    with pytest.raises(InputTooLongError, match=r"has 4 tokens; this model takes at most 3"):
        translator.translate(["1 2 3 4"], max_input_len=3)
    translator.max_input_len = 48
    try:
        assert translator.max_decode_steps() == 4 * 48
        assert translator.translate([long])[0].input_tokens == long.split()
    finally:
        translator.max_input_len = None
    assert translator.max_input_len == LIMIT
    for bad in (0, -1, 2.5, "9", True):
        with pytest.raises(UsageError, match="max_input_len must be an integer >= 1"):
            translator.translate(["1"], max_input_len=bad)


@pytest.mark.slow
def test_location_attention_positions_are_a_hard_limit(translator):
    config = load_config(translator.workdir)
    config.model.decoder, config.model.attention = "legacy", "location"
    config.model.attention_max_length = 6
    config.data.max_length = 10  # an older run: the filter allows 9 tokens (18), positions 5
    text = load_text_processing(config.data, translator.workdir)
    model = Translator(config, {}, text).model
    shapes = jax.eval_shape(
        model.init,
        jax.random.PRNGKey(0),
        np.ones((1, 6), np.int32),
        np.array([6]),
        np.ones((1, 3), np.int32),
    )["params"]
    t = Translator(config, jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes), text)
    limit = t.input_limit()
    assert limit.tokens == 5 and limit.hard and "6 source positions" in limit.why
    with pytest.raises(InputTooLongError) as e:
        t.translate([_symbols(8)], max_len=4)
    assert "--max_input_len" not in str(e.value) and "--truncate_long" in str(e.value)
    [x] = t.translate([_symbols(8)], max_len=4, overlong="truncate")
    assert x.truncated and len(x.input_tokens) == 5
    with pytest.raises(UsageError, match="more than this model can read: at most 5 tokens"):
        t.translate(["1"], max_input_len=6)


# ----------------------------------------------------------------------------- decoding steps
@pytest.mark.slow
@pytest.mark.parametrize("max_len", [65, 1000, MAX_DECODE_STEPS + 1, 10**9])
def test_absurd_max_len_is_refused_before_work(no_decoding, max_len):
    t = no_decoding
    assert t.max_decode_steps() == 64  # 4 x 16, and what the default gives 16 tokens
    for call in (
        lambda: t.translate(["1 2"], max_len=max_len),
        lambda: t.evaluate(["1 2"], ["2 1"], max_len=max_len),
        lambda: t.warmup(["1 2"], max_len=max_len),
        lambda: t.attention("1 2", max_len=max_len),
        lambda: t.check_limits(max_len),
    ):
        with pytest.raises(
            UsageError,
            match=rf"max_len={max_len:,} \(--max_len\) decoding "
            r"steps is more than this model can use: at most "
            r"64 \(4 x the input limit of 16 tokens",
        ):
            call()


@pytest.mark.slow
def test_max_len_bound_without_a_known_limit(translator):
    old = _variant(translator)
    assert old.max_decode_steps() == MAX_DECODE_STEPS
    with pytest.raises(UsageError, match="at most 10,000 .*the cap on decoding steps"):
        old.translate(["1 2"], max_len=MAX_DECODE_STEPS + 1)
    assert old.decode_len(10**6, None) == MAX_DECODE_STEPS  # the default never passes it
    [t] = translator.translate(["1 2 3"], max_len=64)  # the bound itself decodes
    assert t.text == "3 2 1"


# ----------------------------------------------------------------------------- reading lines
@pytest.mark.parametrize(
    "data",
    [
        b"\xef\xbb\xbfone\r\n\xff\xfe\n\nfour",
        b"a\n",
        b"",
        b"\n",
        b"x\ny\n\n",
        "caf\u00e9 \u00e0\n".encode(),
    ],
)
def test_bounded_lines_read_as_decode_lines(data):
    lines, bad = readers.decode_lines(data, "x")
    got = list(eval_input.iter_lines(io.BytesIO(data), "x", InputLimit(4, "test")))
    assert [line for _, line in got] == lines
    assert [n for n, line in got if line is None] == bad


def test_a_huge_line_is_refused_as_soon_as_seen():
    limit = InputLimit(4, "test")  # 400 characters, at most 1,608 bytes read of a line
    stream = io.BytesIO(b"1 2\n" + b"9" * 10_000_000 + b"\n3 4\n")
    lines = eval_input.iter_lines(stream, "stdin", limit)
    assert next(lines) == (1, "1 2")
    with pytest.raises(InputTooLongError, match=r"^line 2 of stdin has more than 400 characters"):
        next(lines)
    assert stream.tell() < 2_000  # the rest of the line was never read
    stream = io.BytesIO(b"1 2\n" + "\u00e9".encode() * 5_000_000 + b"\n3 4\n")
    got = list(eval_input.iter_lines(stream, "stdin", limit, "truncate"))
    assert [n for n, _ in got] == [1, 2, 3] and got[2][1] == "3 4"
    assert 400 < len(got[1][1]) <= 1_000 and set(got[1][1]) == {"\u00e9"}


@pytest.mark.slow
def test_evaluation_files_are_read_bounded(translator, tmp_path):
    src, ref = tmp_path / "src.txt", tmp_path / "ref.txt"
    src.write_bytes(b"1 2\n" + b"7 " * 2_000_000 + b"\n")
    ref.write_text("2 1\n1\n")
    with pytest.raises(InputTooLongError, match=f"^line 2 of {src} has more than 1,600 char"):
        eval_input.load_pairs(translator, src=str(src), ref=str(ref))
    sources, refs, _ = eval_input.load_pairs(
        translator, src=str(src), ref=str(ref), overlong="truncate"
    )
    assert refs == ["2 1", "1"] and len(sources[1]) > 1_600
    assert translator.check_inputs(sources, overlong="truncate") == 1
    ref.write_text("2 1\n" + "x" * 5_000 + "\n")
    src.write_text("1 2\n3\n")
    with pytest.raises(InputTooLongError, match=f"^line 2 of {ref} has 5,000 characters"):
        eval_input.load_pairs(translator, src=str(src), ref=str(ref))
    assert eval_input.names(src="a", ref="b", target=True)(2) == "line 3 of b"
    assert eval_input.names(split="test")(0) == "sentence 1 of the test split"


# ----------------------------------------------------------------------------- the scripts
@pytest.fixture(scope="module")
def env(tmp_path_factory):
    cache = tmp_path_factory.getbasetemp() / "jax_cache"
    return dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        JAX_COMPILATION_CACHE_DIR=str(cache),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
    )


def script(env, name, *args, stdin=None, code=0):
    return run_script(name, *args, env=env, stdin=stdin, code=code)


@pytest.mark.slow
def test_translate_refuses_a_huge_stdin_line_quickly(run, env):
    start = time.perf_counter()
    out, err = script(
        env,
        "translate",
        f"--workdir={run}",
        stdin=b"1 2 3\n" + b"1 " * 50_000_000 + b"\n4 5\n",
        code=1,
    )
    assert time.perf_counter() - start < 120  # minutes before; the line is never read whole
    assert err.startswith("error: line 2 of stdin has more than 1,600 characters")
    assert err.count("\n") == 1 and out == ""


@pytest.mark.slow
def test_translate_overlong_lines_and_flags(run, env):
    lines = b"1 2 3\n" + _symbols(40).encode() + b"\n4 5\n"
    _, err = script(env, "translate", f"--workdir={run}", stdin=lines, code=1)
    assert (
        err.startswith(
            f"error: line 2 of stdin has 40 tokens; this model takes at most {LIMIT} tokens"
        )
        and "--max_input_len N" in err
    )
    out, err = script(env, "translate", f"--workdir={run}", "--truncate_long", stdin=lines)
    assert out.split("\n")[0::2] == ["3 2 1", "5 4"] and len(out.split("\n")) == 4
    assert "warning: line 2 of stdin has 40 tokens: cut to its first 16 tokens" in err
    out, _ = script(env, "translate", f"--workdir={run}", "--max_input_len=40", "1 2", _symbols(40))
    assert out.split("\n")[0] == "2 1"
    _, err = script(env, "translate", f"--workdir={run}", "--max_len=1000000000", "1 2", code=2)
    assert (
        err.startswith(
            "error: max_len=1,000,000,000 (--max_len) decoding steps is more "
            "than this model can use: at most 64"
        )
        and err.count("\n") == 1
    )


@pytest.mark.slow
def test_evaluate_files_and_split_limits(run, env, tmp_path):
    src, ref = tmp_path / "src.txt", tmp_path / "ref.txt"
    src.write_text("1 2 3\n" + _symbols(30) + "\n")
    ref.write_text("3 2 1\n1\n")
    _, err = script(env, "evaluate", f"--workdir={run}", f"--src={src}", f"--ref={ref}", code=1)
    assert err.startswith(f"error: line 2 of {src} has 30 tokens")
    _, err = script(
        env, "evaluate", f"--workdir={run}", f"--src={ref}", f"--ref={src}", "--score", code=1
    )
    assert err.startswith(f"error: line 2 of {src} has 30 tokens") and "target" in err
    # the run's own split is cut (with a count), as training's validation cuts it
    out, err = script(
        env, "evaluate", f"--workdir={run}", "--split=test", "--max_input_len=5", "--nowarmup"
    )
    assert "of the test split has" in err and "cut to its first 5 tokens" in err
    assert "source sentence(s) cut to the input limit" in err and "BLEU|" in out


@pytest.mark.slow
def test_parts_sample_as_the_whole(translator):
    """translate.py decodes stdin in chunks: index_offset keeps sampling by input position."""
    sentences = ["1 2 3", "4 5 6 7", "8 9", "10 11 1"]
    kw = dict(method="sample", temperature=3.0, n_best=2, seed=5)
    whole = translator.translate(sentences, **kw)
    parts = translator.translate(sentences[:2], **kw) + translator.translate(
        sentences[2:], index_offset=2, **kw
    )
    assert [[h.text for h in t.hypotheses()] for t in whole] == [
        [h.text for h in t.hypotheses()] for t in parts
    ]
    with pytest.raises(UsageError, match="index_offset must be an integer >= 0"):
        translator.translate(sentences, index_offset=-1)
