"""Export (jaxattn.inference.exported, scripts/export.py): artifacts that translate token for token
as
`Translator` does, greedy and beam; plain-JAX use as documented; every broken file named.
One tiny synthetic run (reverse symbols, hidden 16, 40 steps: it need not translate well,
unfinished hypotheses test the decoding length too), exported once per module."""

import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
from shared import ROOT

from jaxattn.errors import ExportError, InferenceError, InputTooLongError
from jaxattn.inference import exported
from jaxattn.inference.translation import Translation
from jaxattn.inference.translator import Translator

pytestmark = pytest.mark.slow  # every test here trains a run or starts a script

SYMBOLS = [str(i) for i in range(12)]
BEAM = 3
MAX_SOURCE_LEN = 20  # source widths 8, 16, 24: three decoding lengths, six artifacts


@pytest.fixture(scope="module")
def run(tmp_path_factory, synthetic_config):
    """A tiny trained run (configs/synthetic.py shrunk to a few seconds of training)."""
    from jaxattn.training.loop import train_and_evaluate

    config = synthetic_config()
    config.model.hidden = config.model.embed_dim = 16
    config.data.synthetic_sizes = (300, 20, 20)
    t = config.train
    t.num_train_steps, t.eval_every, t.checkpoint_every, t.progress_bar = 40, 40, 40, False
    workdir = str(tmp_path_factory.mktemp("export_run"))
    train_and_evaluate(config, workdir)
    return workdir


@pytest.fixture(scope="module")
def export_dir(run, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("exports") / "export")
    exported.export_workdir(
        run,
        out,
        checkpoint="latest",
        beam_size=BEAM,
        max_source_len=MAX_SOURCE_LEN,
        platforms=("cpu", "cuda"),
    )
    return out


@pytest.fixture(scope="module")
def translator(run):
    return Translator.from_workdir(run, max_input_len=MAX_SOURCE_LEN)  # the export's limit


def _sentences(n=24, seed=0):
    rng = np.random.default_rng(seed)
    out = [" ".join(rng.choice(SYMBOLS, rng.integers(1, 9))) for _ in range(n)]
    return out + ["", "1 zz 2", " ".join(SYMBOLS + SYMBOLS[:8])]  # empty, unknown, 20 tokens


@pytest.mark.parametrize("beam_size", [1, BEAM])
def test_same_tokens_as_translator(export_dir, translator, beam_size):
    sentences = _sentences(seed=beam_size)
    ours = exported.load(export_dir).translate(sentences, beam_size=beam_size)
    theirs = translator.translate(sentences, beam_size=beam_size)
    for a, b in zip(ours, theirs, strict=True):
        assert (a.tokens, a.text, a.finished, a.input_tokens, a.unknown) == (
            b.tokens,
            b.text,
            b.finished,
            b.input_tokens,
            b.unknown,
        )
        np.testing.assert_allclose(a.score, b.score, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(a.log_prob, b.log_prob, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(a.weights, b.weights, atol=1e-5)
    assert all(isinstance(t, Translation) for t in ours)  # as Translator.translate's


def test_default_beam_and_unknown_beam(export_dir, translator):
    loaded = exported.load(export_dir)
    assert loaded.default_beam_size == BEAM and loaded.beam_sizes == [1, BEAM]
    sentences = ["1 2 3", "4 5 6 7"]
    assert [t.text for t in loaded.translate(sentences)] == [
        t.text for t in translator.translate(sentences, beam_size=BEAM)
    ]
    with pytest.raises(ExportError, match="beam_size 4.*beam sizes \\[1, 3\\]"):
        loaded.translate(sentences, beam_size=4)
    with pytest.raises(ExportError, match="max_len"):
        loaded.translator.translate(sentences, max_len=7)


@pytest.mark.parametrize(
    "options",
    [dict(method="sample"), dict(beam_size=BEAM, n_best=2), dict(beam_size=BEAM, beta=0.5)],
)
def test_searches_no_artifact_serves(export_dir, options):
    with pytest.raises(
        ExportError,
        match="decodes greedy and beam search of one hypothesis without a coverage penalty, not ",
    ):
        exported.load(export_dir).translator.translate(["1 2 3"], **options)


def test_an_ensemble_is_not_exported(run, tmp_path):
    with pytest.raises(ExportError, match="An ensemble cannot be exported"):
        exported.export_translator(Translator.from_workdirs([run, run]), str(tmp_path / "o"))
    assert not (tmp_path / "o").exists()


def test_too_long_input_is_refused(export_dir):
    loaded = exported.load(export_dir)  # its input limit is the export's max_source_len
    with pytest.raises(InputTooLongError, match="has 24 tokens; this model takes at most 20"):
        loaded.translate([" ".join(SYMBOLS * 2)])  # 24 > 20 tokens
    loaded.translator.max_input_len = 24  # past the limit: no artifact serves it
    with pytest.raises(ExportError, match="max_source_len"):
        loaded.translate([" ".join(SYMBOLS * 2)])


def test_manifest(export_dir, run):
    m = json.load(open(os.path.join(export_dir, exported.MANIFEST_FILE)))
    assert m["format_version"] == exported.FORMAT_VERSION
    assert m["versions"]["jax"] == jax.__version__
    assert m["source"]["step"] == 40 and m["source"]["workdir"] == os.path.abspath(run)
    assert isinstance(m["validation"]["bleu"], float)
    assert m["platforms"] == ["cpu", "cuda"]
    names = sorted(os.listdir(export_dir))
    assert sorted(m["files"]) == [n for n in names if n != exported.MANIFEST_FILE]
    assert {"config.json", "src_vocab.txt", "tgt_vocab.txt", "params.npz"} <= set(names)
    assert [
        (a["method"], a["beam_size"], a["max_len"], a["src_widths"]) for a in m["artifacts"]
    ] == [
        (meth, k, t, [w])
        for t, w in ((32, 8), (48, 16), (64, 24))
        for meth, k in (("greedy", 1), ("beam", BEAM))
    ]


def test_plain_jax_as_documented(export_dir, translator):
    """The module docstring's recipe, without jaxattn: deserialize, call, same tokens."""
    m = json.load(open(os.path.join(export_dir, "manifest.json")))
    flat, params = np.load(os.path.join(export_dir, "params.npz")), {}
    for path in flat.files:
        *parents, leaf = path.split("/")
        node = params
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = flat[path]
    art = m["artifacts"][0]
    with open(os.path.join(export_dir, art["file"]), "rb") as f:
        exp = jax.export.deserialize(bytearray(f.read()))
    vocab = translator.src_vocab
    rows = [vocab.encode(s.split()) + [vocab.eos_id] for s in ("1 2 3", "4 5 6 7 8")]
    src = np.full((2, art["src_widths"][0]), vocab.pad_id, np.int32)
    for r, ids in enumerate(rows):
        src[r, : len(ids)] = ids
    tokens, lengths, *_ = exp.call(params, src, np.array([len(r) for r in rows], np.int32))
    want = translator.translate(["1 2 3", "4 5 6 7 8"])
    for r, t in enumerate(want):
        ids = np.asarray(tokens[r, : int(lengths[r])]).tolist()
        assert translator.tgt_vocab.decode(ids) == t.tokens


def _break(directory, how):
    """Damages a copy of the export; returns the file name the error must name."""
    if how == "manifest version":
        path = os.path.join(directory, exported.MANIFEST_FILE)
        m = json.load(open(path))
        m["format_version"] = 99
        json.dump(m, open(path, "w"))
        return exported.MANIFEST_FILE
    if how == "missing vocabulary":
        os.remove(os.path.join(directory, "tgt_vocab.txt"))
        return "tgt_vocab.txt"
    name = "beam3_T32.bin"
    data = bytearray(open(os.path.join(directory, name), "rb").read())
    if how == "flipped bytes":
        for i in range(len(data) // 2, len(data) // 2 + 4):
            data[i] ^= 0xFF
    else:  # truncated
        data = data[: len(data) // 2]
    open(os.path.join(directory, name), "wb").write(data)
    return name


@pytest.mark.parametrize(
    "how, says",
    [
        ("flipped bytes", "corrupted"),
        ("truncated", "truncated"),
        ("manifest version", "format version 99"),
        ("missing vocabulary", "vocabulary file .* is missing"),
    ],
)
def test_broken_export_names_the_file(export_dir, tmp_path, how, says):
    broken = str(tmp_path / "broken")
    shutil.copytree(export_dir, broken)
    name = _break(broken, how)
    with pytest.raises(ExportError, match=says) as e:
        exported.load(broken)
    assert os.path.join(broken, name) in str(e.value)


def test_no_checkpoint_and_busy_out(run, export_dir, tmp_path):
    empty = tmp_path / "no_checkpoint"
    empty.mkdir()
    for name in ("config.json", "src_vocab.txt", "tgt_vocab.txt"):
        shutil.copy(os.path.join(run, name), empty / name)
    with pytest.raises(InferenceError, match="No checkpoint"):
        exported.export_workdir(str(empty), str(tmp_path / "out"))
    with pytest.raises(ExportError, match="not empty.*--overwrite"):
        exported.export_workdir(run, export_dir)
    again = tmp_path / "again"
    shutil.copytree(export_dir, again)
    exported.export_workdir(run, str(again), beam_size=0, max_source_len=6, overwrite=True)
    assert exported.load(str(again)).beam_sizes == [1] and len(os.listdir(again)) == 7
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]  # no temporary left
    with pytest.raises(ExportError, match="Unknown platform"):
        exported.export_workdir(run, str(tmp_path / "out"), platforms=("tpux",))
    assert not (tmp_path / "out").exists()


def _script(*args):
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "export.py"), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )


def test_script_end_to_end(run, tmp_path):
    out = str(tmp_path / "greedy_only")
    p = _script("--workdir", run, "--out", out, "--beam_size", "0", "--max_source_len", "6")
    assert p.returncode == 0, p.stderr
    assert out in p.stdout and "1 artifact for cpu" in p.stdout
    loaded = exported.load(out)
    assert loaded.beam_sizes == [1] and len(loaded.translate(["1 2 3"])) == 1
    p = _script("--workdir", str(tmp_path / "nope"), "--out", str(tmp_path / "x"))
    assert p.returncode == 1
    errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "nope" in errors[0], p.stderr


def test_constraints_are_exported(run, export_dir, translator, tmp_path):
    """min_len and no_repeat_ngram baked into the artifacts: the loaded export translates as
    Translator (and an ensemble of the run with itself) does with them, refuses other values,
    and an export made before them (no such keys in its manifest) still loads, unconstrained."""
    out = str(tmp_path / "constrained")
    constraints = dict(min_len=3, no_repeat_ngram=2)
    exported.export_workdir(run, out, beam_size=BEAM, max_source_len=6, **constraints)
    loaded = exported.load(out)
    sentences = ["1 2 3", "4 5", "7 7 7 7 7", "9"]
    ensemble = Translator.from_workdirs([run, run], max_input_len=MAX_SOURCE_LEN)
    for k in (1, BEAM):
        ours = loaded.translate(sentences, beam_size=k)
        theirs = translator.translate(sentences, beam_size=k, **constraints)
        both = ensemble.translate(sentences, beam_size=k, **constraints)
        for a, b, e in zip(ours, theirs, both, strict=True):
            assert a.tokens == b.tokens == e.tokens and a.text == b.text
            np.testing.assert_allclose(a.score, b.score, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(e.score, b.score, rtol=1e-5, atol=1e-5)
            bigrams = list(zip(a.tokens, a.tokens[1:], strict=False))
            assert len(bigrams) == len(set(bigrams)) and len(a.tokens) >= 3
    plain = translator.translate(sentences, beam_size=1)
    assert [t.tokens for t in plain] != [t.tokens for t in loaded.translate(sentences, beam_size=1)]
    with pytest.raises(
        ExportError, match="exported with min_len 3, no_repeat_ngram 2, not min_len 0"
    ):
        loaded.translator.translate(sentences, beam_size=1)

    old = str(tmp_path / "old")  # as an export made before the constraints
    shutil.copytree(export_dir, old)
    path = os.path.join(old, exported.MANIFEST_FILE)
    m = json.load(open(path))
    for a in m["artifacts"]:
        assert (a.pop("min_len"), a.pop("no_repeat_ngram")) == (0, 0)
    json.dump(m, open(path, "w"))
    ours = exported.load(old).translate(sentences, beam_size=BEAM)
    assert [t.tokens for t in ours] == [
        t.tokens for t in translator.translate(sentences, beam_size=BEAM)
    ]
    with pytest.raises(
        ExportError, match="exported with min_len 0, no_repeat_ngram 0, not min_len 3"
    ):
        exported.load(old).translator.translate(sentences, **constraints)
