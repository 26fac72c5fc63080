"""Bad input to the Python API gets a ValueError (ConfigError, UsageError) naming the problem,
never a deep JAX traceback or a silent wrong answer: search arguments (ids out of the
vocabulary, lengths out of range, options a method would ignore), ensembles of unlike models,
Translator arguments and configs. Valid-but-unusual input (padding rows, NumPy scalars, a
list of ensemble members) still decodes, and padding does not change a sentence's output."""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxattn import config as config_lib
from jaxattn.config import default_model_config
from jaxattn.data.processing import TextProcessing
from jaxattn.data.text import Tokenizer
from jaxattn.data.vocab import Vocab
from jaxattn.errors import ConfigError, UsageError
from jaxattn.inference.translator import Translator
from jaxattn.model.seq2seq import build_model
from jaxattn.rundir import run as run_lib
from jaxattn.search import DecodeOptions, Ensemble, decode, force_decode

V, BOS, EOS = 10, 1, 2  # the vocabulary layout of jaxattn.data.Vocab (pad 0, unk 3)
SRC = np.array([[4, 5, 6, EOS], [7, EOS, 0, 0]], np.int32)
SRC_LEN = np.array([4, 2], np.int32)
KW = dict(eos_id=EOS, max_len=5)


def _model_config(**overrides):
    c = default_model_config()
    c.hidden = c.embed_dim = 8
    c.dropout = 0.0
    c.update(overrides)
    return c


def _init(src_vocab=V, tgt_vocab=V, seed=0):
    model = build_model(_model_config(), src_vocab, tgt_vocab, BOS)
    shapes = jax.eval_shape(model.init, jax.random.key(0), SRC, SRC_LEN, SRC[:, :2])
    rng = np.random.default_rng(seed)
    return model, jax.tree.map(
        lambda s: jnp.asarray(rng.normal(size=s.shape) * 0.5, s.dtype), shapes
    )


@pytest.fixture(scope="module")
def tiny():
    return _init()


# ------------------------------------------------------------------------------ search
@pytest.mark.parametrize(
    "src, src_len, kwargs, message",
    [
        (np.where(SRC == 5, V, SRC), SRC_LEN, {}, "src holds 10, not one of the model's 10"),
        (np.where(SRC == 5, -1, SRC), SRC_LEN, {}, "src holds -1"),
        (SRC, np.array([5, 2]), {}, r"src_len holds 5: lengths must be in \[0, 4\]"),
        (SRC, np.array([-1, 2]), {}, "src_len holds -1"),
        (SRC[:, :0], np.array([0, 0]), {}, "src is empty"),
        (SRC[:0], SRC_LEN[:0], {}, "src is empty"),
        (SRC.astype(np.float32), SRC_LEN, {}, "src must be integer token ids"),
        (SRC, SRC_LEN[:1], {}, r"src_len must be integer lengths shaped \[2\]"),
        (SRC, SRC_LEN, dict(eos_id=V), "eos_id must be a target token id"),
        (SRC, SRC_LEN, dict(bos_id=V), "bos_id must be a target token id"),
        (SRC, SRC_LEN, dict(bos_id=1.0), "bos_id must be a target token id"),
        (SRC, SRC_LEN, dict(pad_id="0"), "pad_id must be an integer"),
        (
            SRC,
            SRC_LEN,
            dict(method=None),
            r"method must be one of \['greedy', 'beam', 'sample'\], got None",
        ),
        (SRC, SRC_LEN, dict(method="beam", beam_size=2, alpha=np.float32("nan")), "alpha"),
        (SRC, SRC_LEN, dict(method="beam", beam_size=2, alpha="0.6"), "alpha"),
        (SRC, SRC_LEN, dict(method="beam", beam_size=2, beta=np.float32("inf")), "beta"),
        (SRC, SRC_LEN, dict(method="beam", beam_size=2, beta="0.2"), "beta"),
        (SRC, SRC_LEN, dict(method="beam", beam_size=2, keep_greedy="no"), "keep_greedy"),
        (SRC, SRC_LEN, dict(temperature=0.5), "temperature=0.5 is for method='sample'"),
        (SRC, SRC_LEN, dict(top_k=3), "top_k=3 is for method='sample'"),
        (SRC, SRC_LEN, dict(rng=jax.random.key(0)), "rng is for method='sample'"),
        (SRC, SRC_LEN, dict(method="beam", beam_size=2, top_p=0.9), "top_p=0.9 is for"),
        (
            SRC,
            SRC_LEN,
            dict(method="sample", rng=jax.random.key(0), beam_size=3),
            "beam_size=3 is for method='beam'",
        ),
        (SRC, SRC_LEN, dict(method="sample", rng=jax.random.key(0), beta=0.2), "beta=0.2 is for"),
        (
            SRC,
            SRC_LEN,
            dict(method="sample", rng=jax.random.key(0), temperature=np.float32(-1)),
            "temperature must be a finite number >= 0",
        ),
        (SRC, SRC_LEN, dict(method="sample"), "Sampling needs a PRNG key"),
    ],
)
def test_bad_search_arguments_are_named(tiny, src, src_len, kwargs, message):
    model, variables = tiny
    with pytest.raises(ValueError, match=message):
        decode(model, variables, src, src_len, **{**KW, **kwargs})


@pytest.mark.parametrize(
    "tgt, tgt_len, message",
    [
        (np.array([[4, EOS], [V, EOS]]), None, "tgt holds 10, not one of the model's 10 target"),
        (np.array([[4, EOS], [5, EOS]]), np.array([3, 2]), r"tgt_len holds 3: .* \[0, 2\]"),
        (np.array([[4, EOS], [5, EOS]]), np.array([2.0, 2.0]), "tgt_len must be integer lengths"),
        (np.zeros((2, 0), np.int32), None, "tgt has no positions"),
        (np.array([[4, EOS]]), None, r"tgt must be integer ids shaped \[2, length\]"),
    ],
)
def test_bad_forced_targets_are_named(tiny, tgt, tgt_len, message):
    model, variables = tiny
    with pytest.raises(ValueError, match=message):
        force_decode(model, variables, SRC, SRC_LEN, tgt, tgt_len)


@pytest.mark.parametrize("sizes", [(V, V + 3), (V + 3, V)])
def test_ensemble_of_unlike_vocabularies_is_refused(tiny, sizes):
    other, _ = _init(*sizes)
    with pytest.raises(ValueError, match="different .* vocabulary sizes"):
        Ensemble((tiny[0], other))


def test_padding_rows_and_batches_of_one_decode_alike(tiny):
    """A sentence decodes the same alone (batch of 1, no padding) as in a padded batch beside
    an empty padding row (src_len 0, as training's validation pads), which stays finite."""
    model, variables = tiny
    alone = decode(model, variables, SRC[1:, :2], None, **KW)
    padded = decode(model, variables, SRC[[1, 1]], np.array([2, 0]), **KW)
    np.testing.assert_array_equal(alone.tokens[0], padded.tokens[0])
    np.testing.assert_allclose(alone.scores[0], padded.scores[0], rtol=1e-5)
    assert np.isfinite(np.asarray(padded.scores)).all()


def test_numpy_scalars_and_a_list_of_members_are_accepted(tiny):
    model, variables = tiny
    key = jax.random.key(3)
    plain = decode(
        model, variables, SRC, SRC_LEN, method="sample", rng=key, top_p=0.5, temperature=0.5, **KW
    )
    numpy = decode(
        model,
        variables,
        SRC,
        SRC_LEN,
        method="sample",
        rng=key,
        top_p=np.float32(0.5),
        temperature=np.float32(0.5),
        **KW,
    )
    np.testing.assert_array_equal(plain.tokens, numpy.tokens)
    members = Ensemble([model, model])  # a list: must still work as a jit static argument
    assert isinstance(members.models, tuple)
    both = decode(members, (variables, variables), SRC, SRC_LEN, **KW)
    one = decode(model, variables, SRC, SRC_LEN, **KW)
    np.testing.assert_array_equal(both.tokens, one.tokens)


# ------------------------------------------------------------------------------ Translator
@pytest.fixture(scope="module")
def translator(tiny):
    vocab = Vocab.build([["a", "b", "c", "d", "e", "f"]])
    assert len(vocab) == V
    config = config_lib.default_config()
    config.model = _model_config()
    config.eval.max_decode_len = 5
    text = TextProcessing(Tokenizer("space"), Tokenizer("space"), vocab, vocab, 0)
    return Translator(config, tiny[1]["params"], text)


@pytest.mark.parametrize(
    "sentences, message",
    [
        (["a b", None], r"sentences\[1\] is NoneType None, not a string"),
        (["a b", 3], r"sentences\[1\] is int 3, not a string"),
        ([b"a b"], r"sentences\[0\] is bytes"),
        ("a b", "wrap one sentence in a list"),
    ],
)
def test_bad_sentences_are_named(translator, sentences, message):
    with pytest.raises(UsageError, match=message):
        translator.translate(sentences)
    with pytest.raises(UsageError, match=message):  # warmup read a bare str as characters
        translator.warmup(sentences)


def test_decode_ids_options(translator):
    src, src_len = SRC, SRC_LEN
    default = translator.decode_ids(src, src_len, max_len=5, options=None)
    greedy = translator.decode_ids(src, src_len, max_len=5, options=DecodeOptions())
    np.testing.assert_array_equal(default.tokens, greedy.tokens)
    with pytest.raises(UsageError, match="options must be a DecodeOptions"):
        translator.decode_ids(src, src_len, max_len=5, options={"beam_size": 2})
    with pytest.raises(ValueError, match="src holds 99"):
        translator.decode_ids(np.full((1, 4), 99), np.array([4]), max_len=5, options=None)


# ------------------------------------------------------------------------------ config
def _config(**fields):
    c = config_lib.default_config()
    for key, value in fields.items():
        section, name = key.split(".")
        c[section][name] = value
    return c


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"model.attention": "dot", "model.bidirectional": True}, "attention='dot' compares"),
        ({"model.attention": "scaled_dot", "model.decoder": "legacy"}, "sizes must match"),
        ({"data.tsv_columns": (1, 1)}, "tsv_columns=.* two different columns"),
    ],
)
def test_contradictory_configs_fail_validation(fields, message):
    with pytest.raises(ConfigError, match=message):
        config_lib.validate(_config(**fields))


def test_dot_attention_with_matching_sizes_is_valid():
    config_lib.validate(_config(**{"model.attention": "dot", "model.decoder": "luong"}))


@pytest.mark.parametrize("splits", [["train"], "train", 3])
def test_hand_edited_splits_fail_to_load(tmp_path, splits):
    saved = config_lib.to_json(config_lib.default_config())
    saved["data"]["splits"] = splits
    (tmp_path / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ConfigError, match="config.data.splits=.* must map split names"):
        run_lib.load_config(os.fspath(tmp_path))


def test_a_section_that_is_not_a_section():
    c = config_lib.default_config()
    bad = ml_collections.ConfigDict({k: c[k] for k in c.keys() if k != "model"})
    bad.model = 5
    with pytest.raises(ConfigError, match="config.model must be a section"):
        config_lib.validate(bad)


# ------------------------------------------------------------------ data and workdir files
def test_unusable_corpora_raise_data_errors_the_scripts_print_as_one_line(tmp_path):
    """Empty, undecodable and all-filtered corpora: DataError (a JaxattnError, so the scripts
    print one line, and a ValueError, so older handlers still catch it), naming the file."""
    from jaxattn import data as data_lib
    from jaxattn.config import default_config
    from jaxattn.errors import DataError, JaxattnError

    cases = {
        "empty.txt": b"",
        "latin1.txt": b"\xff\xfe bad\tx\n",
        "filtered.txt": b"hello there my friend\tbonjour\n",
    }
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        cfg = default_config().data
        cfg.path, cfg.data_dir = str(path), str(tmp_path / "tfds")
        with pytest.raises(DataError, match=name) as e:
            data_lib.build(cfg)
        assert isinstance(e.value, JaxattnError) and isinstance(e.value, ValueError)


def test_config_json_saved_with_a_bom_loads(tmp_path):
    from jaxattn.rundir.files import read_json

    (tmp_path / "config.json").write_bytes(b'\xef\xbb\xbf{"seed": 3}')
    assert read_json(str(tmp_path / "config.json")) == {"seed": 3}


def test_negative_alpha_is_refused_by_the_python_api_as_by_the_config():
    with pytest.raises(ValueError, match="alpha .* >= 0"):
        DecodeOptions(beam_size=2, alpha=-0.5)
    assert DecodeOptions(beam_size=2, alpha=0.0).alpha == 0.0
