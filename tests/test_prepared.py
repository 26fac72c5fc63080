"""Training ids prepared once (jaxattn.data.prepared): the cache, its fingerprint, its atomic
write, batches from the prepared ids equal to batches encoded from the text, vocab_sample."""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from shared import synthetic_config as shared_synthetic_config

import jaxattn.data as data_lib
from jaxattn.config import default_data_config
from jaxattn.data import prepared
from jaxattn.data.batching import encode
from jaxattn.data.pipeline import _TrainBatches
from jaxattn.data.prepared import FileArray
from jaxattn.data.text import Tokenizer
from jaxattn.errors import DataError

WORDS = "alpha beta gamma delta eps zeta eta theta iota kappa lambda mu nu xi pi rho".split()


def write_corpus(root, n=240, seed=0, extra=""):
    """A Multi30k-style folder: train/val/test_2016_flickr .de/.en, 1-9 words a side."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for split, size in (("train", n), ("val", 20), ("test_2016_flickr", 20)):
        src, tgt = [], []
        for _ in range(size):
            words = list(rng.choice(WORDS, rng.integers(1, 10)))
            src.append(" ".join(words) + " .")
            tgt.append(" ".join(w.upper() for w in reversed(words)) + " !")
        if split == "train" and extra:
            src[-1] = tgt[-1] = extra
        (root / f"{split}.de").write_text("\n".join(src) + "\n", "utf-8")
        (root / f"{split}.en").write_text("\n".join(tgt) + "\n", "utf-8")
    return str(root)


def corpus_fields(path, cache) -> dict:
    """The data fields that point a config at the corpus `path` and the cache `cache`."""
    return dict(
        name="parallel",
        path=path,
        src_lang="de",
        tgt_lang="en",
        cache_dir=str(cache),
        data_dir=os.path.join(os.path.dirname(path), "tfds"),
    )


def corpus_config(path, cache, **overrides):
    cfg = default_data_config()
    cfg.update(corpus_fields(path, cache))
    cfg.splits.validation, cfg.splits.test = "val", "test_2016_flickr"
    cfg.update(overrides)
    return cfg


def entries(cache, vocab=False) -> list[str]:
    """The ids entries (with vocab=True the vocabulary entries), temporary folders included."""
    names = sorted(os.listdir(cache)) if os.path.isdir(cache) else []
    return [n for n in names if n.lstrip(".").startswith(prepared.VOCAB_PREFIX) == vocab]


def take(it, n):
    return [next(it) for _ in range(n)]


def assert_rows_are_the_texts(data, batch, pairs):
    """Row r of `batch` holds training pair pairs[r]'s text encoded as `encode` does."""
    src_text, tgt_text = data._texts["train"]
    for r, row in enumerate(data._train_rows[pairs]):
        for key, text, tok, vocab in (
            ("src", src_text, data.src_tokenizer, data.src_vocab),
            ("tgt", tgt_text, data.tgt_tokenizer, data.tgt_vocab),
        ):
            ids = encode(tok, vocab, text[row], data.config.pad_to)
            assert batch[f"{key}_len"][r] == len(ids)
            assert batch[key][r, : len(ids)].tolist() == ids
            assert (batch[key][r, len(ids) :] == vocab.pad_id).all()


@pytest.fixture
def corpus(tmp_path):
    return write_corpus(tmp_path / "corpus"), tmp_path / "cache"


def test_prepared_once_then_memory_mapped_and_no_text_tokenized(corpus, tmp_path, monkeypatch):
    path, cache = corpus
    first = data_lib.build(corpus_config(path, cache))
    assert len(entries(cache)) == 1  # one complete entry, no leftover temporary folder
    (key,) = entries(cache)
    assert sorted(os.listdir(cache / key)) == [
        "meta.json",
        "src_ids.npy",
        "src_offsets.npy",
        "tgt_ids.npy",
        "tgt_offsets.npy",
    ]
    assert isinstance(first._train_ids.sides[0][0], FileArray)
    assert len(first._train_ids) == 240
    first.save_vocabs(str(tmp_path / "work"))
    reference = take(first.train_iterator(8, seed=3), 5)

    def no_tokenizing(*args, **kwargs):
        raise AssertionError("the training text was tokenized again")

    monkeypatch.setattr(Tokenizer, "tokenize", no_tokenizing)  # a resume: vocabs saved
    again = data_lib.build(corpus_config(path, cache), vocab_dir=str(tmp_path / "work"))
    assert entries(cache) == [key]
    for a, b in zip(reference, take(again.train_iterator(8, seed=3), 5), strict=True):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    assert again.stats == first.stats


@pytest.mark.parametrize("tokenizer", ["word", "sentencepiece"])
def test_a_second_fresh_run_reads_no_training_text_and_tokenizes_nothing(
    corpus, monkeypatch, tokenizer
):
    """Vocabularies (and SentencePiece models) come from the cache like the ids: a fresh run
    on a prepared corpus neither reads the training split's text nor tokenizes."""
    from jaxattn.data import builders, processing

    path, cache = corpus
    overrides = dict(tokenizer=tokenizer, sp_vocab_size=40)
    first = data_lib.build(corpus_config(path, cache, **overrides))
    (vocab_entry,) = entries(cache, vocab=True)
    reference = take(first.train_iterator(8, seed=3), 4)
    read = []
    real_read = builders.TextColumn._read

    def recording_read(self, idx):
        read.append(len(self))
        return real_read(self, idx)

    def fail(*args, **kwargs):
        raise AssertionError("the training text was tokenized or a model trained again")

    monkeypatch.setattr(builders.TextColumn, "_read", recording_read)
    monkeypatch.setattr(Tokenizer, "tokenize", fail)
    monkeypatch.setattr(processing, "train_sentencepiece", fail)
    again = data_lib.build(corpus_config(path, cache, **overrides))
    assert 240 not in read and read  # validation and test (20 pairs) are read, train not
    assert entries(cache, vocab=True) == [vocab_entry]
    assert again.src_vocab.tokens == first.src_vocab.tokens
    assert again.tgt_vocab.tokens == first.tgt_vocab.tokens
    assert again.src_tokenizer.sp_model == first.src_tokenizer.sp_model
    assert again.stats == first.stats
    for a, b in zip(reference, take(again.train_iterator(8, seed=3), 4), strict=True):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.slow
def test_prepare_script_prepares_what_training_then_reads(corpus, monkeypatch):
    """scripts/prepare.py with a config and data overrides writes the ids and vocabulary
    entries that a later build of the same data config reads without tokenizing; rerun, it
    prepares nothing; a bad field fails before any reading."""
    import runpy

    from shared import run_script

    path, cache = corpus
    data = corpus_fields(path, cache)
    flags = ["--config=configs/multi30k.py", *(f"--config.data.{k}={v}" for k, v in data.items())]
    flags += ["--config.data.splits.validation=val", "--config.data.splits.test=test_2016_flickr"]
    out, err = run_script("prepare", *flags)
    assert "train 240, validation 20, test 20 pairs" in out, out
    assert "Preparing the training token ids of 240 pairs" in err
    assert len(entries(cache)) == 1 and len(entries(cache, vocab=True)) == 1
    out, err = run_script("prepare", *flags)
    assert "Preparing" not in err and "Training token ids from" in err
    monkeypatch.setattr(Tokenizer, "tokenize", lambda *a: pytest.fail("tokenized again"))
    cfg = runpy.run_path("configs/multi30k.py")["get_config"]().data
    cfg.update(data)
    cfg.splits.validation, cfg.splits.test = "val", "test_2016_flickr"
    assert len(data_lib.build(cfg)._train_ids) == 240
    _, err = run_script("prepare", *flags, "--config.data.vocab_min_freq=-1", code=2)
    assert "vocab_min_freq" in err and "Preparing" not in err


def test_the_vocabulary_entry_is_keyed_by_what_makes_the_vocabulary(corpus):
    path, cache = corpus
    base = data_lib.build(corpus_config(path, cache))
    data_lib.build(corpus_config(path, cache, pad_to=16, bucket_pool=4))  # same vocabulary
    assert len(entries(cache, vocab=True)) == 1
    rare = data_lib.build(corpus_config(path, cache, vocab_min_freq=400))
    assert len(rare.src_vocab) < len(base.src_vocab)  # really another vocabulary
    data_lib.build(corpus_config(path, cache, vocab_sample=30))
    data_lib.build(corpus_config(path, cache, vocab_order="freq"))
    assert len(entries(cache, vocab=True)) == 4
    # ids are keyed by the vocabularies: the first 30 pairs hold every word, so vocab_sample=30
    # makes base's vocabulary and shares its ids
    assert len(entries(cache)) == 3


def test_per_pair_arrays_are_small(corpus):
    """What training holds per pair is its token counts, uint8 (uint16 once a sentence has
    255+ tokens); widths, kept-pair indices and sort keys are computed from them where used,
    and the epoch's permutation is int32 (numpy's permutation, so the same batches as before);
    the ids are read from disk by slices, not mapped."""
    from jaxattn.data.pipeline import permutation
    from jaxattn.data.prepared import count_dtype

    path, cache = corpus
    data = data_lib.build(corpus_config(path, cache, bucket_pool=2))
    for a in (data._train_counts, data._train_widths(), data._train_ids.counts()):
        assert a.dtype == np.uint8, a.dtype
    assert [count_dtype(n) for n in (0, 254, 255, 65534, 65535)] == [
        np.uint8,
        np.uint8,
        np.uint16,
        np.uint16,
        np.int32,
    ]
    assert data._train_widths().tolist() == [
        [data._pad_length(int(n) + 1) for n in c] for c in data._train_counts
    ]
    plan = _TrainBatches(data, 5, 8, 0, 1, 2)
    assert not hasattr(plan, "sort_key") and plan._stream(0, 240).dtype == np.int32
    assert not hasattr(data._token_batches(64, 1), "sort_key")
    for seed, n in (([5, 0], 240), ([2**63, 7], 1001)):
        np.testing.assert_array_equal(
            permutation(seed, n), np.random.default_rng(seed).permutation(n)
        )
    ids, offsets = data._train_ids.sides[0]
    assert isinstance(offsets, FileArray) and offsets.dtype == np.int64
    assert offsets[3:5].tolist() == np.load(offsets.path)[3:5].tolist()
    assert pickle.loads(pickle.dumps(offsets))[3:5].tolist() == offsets[3:5].tolist()
    with pytest.raises(IndexError):
        offsets[0:4:2]


def test_the_example_batch_reads_only_its_rows(corpus, monkeypatch):
    """A run's example batch (model init) is the first kept training pairs, read alone: a
    start of a training run costs nothing per training pair here."""
    path, cache = corpus
    data = data_lib.build(corpus_config(path, cache, max_length=6))
    assert data.stats["train_too_long"] > 0  # pairs dropped: rows skip them
    read = []
    real = prepared.TokenIds.rows
    monkeypatch.setattr(
        prepared.TokenIds,
        "rows",
        lambda self, side, pairs: read.append(list(pairs)) or real(self, side, pairs),
    )
    batch = data.example_batch(3)
    kept = data._train_rows[np.arange(3)].tolist()
    assert read == [kept, kept]
    assert_rows_are_the_texts(data, batch, np.arange(3))


@pytest.mark.parametrize("dropped", [[], [0], [5], [0, 1, 2, 9], [3, 4, 7, 8, 9]])
def test_kept_rows_skip_the_dropped_pairs(dropped):
    """_Rows maps the k-th kept pair to its index in the split, the dropped ones skipped."""
    from jaxattn.data.pipeline import _Rows

    kept = [i for i in range(10) if i not in dropped]
    rows = _Rows(10, np.array(dropped, np.int64))
    assert len(rows) == len(kept)
    assert rows[np.arange(len(kept))].tolist() == kept
    assert rows[np.arange(len(kept))[::-1]].tolist() == kept[::-1]


@pytest.mark.parametrize("damage", ["header_as_data", "decreasing", "short_ids"])
def test_a_damaged_entry_is_named_not_read(corpus, damage):
    """Offsets that are not those of the ids (a file overwritten or cut) are one DataError
    naming the file and what to do, before any batch."""
    path, cache = corpus
    data_lib.build(corpus_config(path, cache))
    (key,) = entries(cache)
    name = "tgt_ids.npy" if damage == "short_ids" else "src_offsets.npy"
    array = np.load(cache / key / name)
    if damage == "header_as_data":
        array[:16] = np.frombuffer(b"\x93NUMPY" + bytes(122), np.int64)
    elif damage == "decreasing":
        array[100] = array[99] - 1
    else:
        array = array[:-1]
    np.save(cache / key / name, array)
    side = "tgt" if damage == "short_ids" else "src"
    with pytest.raises(DataError, match=f"damaged: .*{side}_offsets.npy.*Delete its folder"):
        data_lib.build(corpus_config(path, cache))


def test_long_sentences_widen_the_counts(tmp_path):
    """A training sentence of 300 tokens makes counts uint16, and its batch holds all of it."""
    path = write_corpus(tmp_path / "corpus")
    with open(Path(path) / "train.de", "a", encoding="utf-8") as f:
        f.write(" ".join(["mot"] * 300) + "\n")
    with open(Path(path) / "train.en", "a", encoding="utf-8") as f:
        f.write("word\n")
    data = data_lib.build(corpus_config(path, tmp_path / "cache"))
    assert data._train_counts.dtype == np.uint16
    assert int(data._train_counts[:, 0].max()) == 300 == data.stats["max_source_len"]
    longest = int(np.argmax(data._train_counts[:, 0]))
    batch = data._batch("train", data._train_rows[[longest]].tolist())
    assert batch["src_len"].tolist() == [301]


def test_a_new_vocabulary_or_tokenizer_is_a_new_entry(corpus):
    path, cache = corpus
    data_lib.build(corpus_config(path, cache))
    data_lib.build(corpus_config(path, cache, vocab_max_size=8))  # another vocabulary
    data_lib.build(corpus_config(path, cache, lowercase=True))  # other tokens
    assert len(entries(cache)) == 3
    data_lib.build(corpus_config(path, cache, pad_to=16, bucket_pool=4))  # the same ids
    assert len(entries(cache)) == 3


def test_a_changed_corpus_file_is_named_and_prepared_again(corpus, caplog):
    path, cache = corpus
    before = data_lib.build(corpus_config(path, cache))
    write_corpus(Path(path), extra="pi pi pi")
    with caplog.at_level(logging.WARNING, logger="jaxattn.data.prepared"):
        after = data_lib.build(corpus_config(path, cache))
    changed = [r.getMessage() for r in caplog.records if "changed since" in r.getMessage()]
    assert any(os.path.join(path, "train.de") in m for m in changed), changed
    assert len(entries(cache)) == 2
    last = len(after._train_ids) - 1
    assert after._train_ids.rows(0, [last]) == [after.src_vocab.encode("pi pi pi".split())]
    assert before._train_ids.rows(0, [last]) != after._train_ids.rows(0, [last])


def test_an_interrupted_prepare_leaves_nothing_a_later_run_reads(corpus, monkeypatch):
    path, cache = corpus
    real = prepared._NpyWriter.close
    closed = []

    def fail_on_the_third_file(self):
        closed.append(self)
        if len(closed) == 3:  # source written, target half written: a full disk, a kill
            raise OSError(28, "No space left on device")
        real(self)

    monkeypatch.setattr(prepared._NpyWriter, "close", fail_on_the_third_file)
    with pytest.raises(OSError, match="No space"):
        data_lib.build(corpus_config(path, cache))
    assert entries(cache) == []  # neither an entry nor its temporary folder
    monkeypatch.undo()
    data = data_lib.build(corpus_config(path, cache))
    assert len(entries(cache)) == 1 and len(data._train_ids) == 240


def test_a_killed_prepare_leaves_a_folder_the_next_run_on_this_host_deletes(corpus):
    """A write killed with SIGKILL (no cleanup runs) leaves its temporary folder; the next
    write deletes it, and leaves those of a live process and of another host."""
    import signal
    import subprocess
    import sys
    import time

    path, cache = corpus
    cache.mkdir()
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"]
    )  # a live process on this host: its folder stays
    try:
        live = cache / (prepared._tmp_prefix("live", pid=child.pid) + "x")
        other = cache / (prepared._tmp_prefix("other", host="elsewhere", pid=1) + "x")
        script = (
            "import os, sys, tempfile, time; sys.path.insert(0, '.');"
            "from jaxattn.data import prepared;"
            f"d = tempfile.mkdtemp(prefix=prepared._tmp_prefix('k'), dir={str(cache)!r});"
            "open(os.path.join(d, 'src_ids.npy'), 'wb').write(b'0' * 1000);"
            "print(d, flush=True); time.sleep(60)"
        )
        killed = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        dead = killed.stdout.readline().strip()
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        for d in (live, other):
            d.mkdir()
        assert os.path.isdir(dead)
        time.sleep(0.1)
        data = data_lib.build(corpus_config(path, cache))
        assert len(data._train_ids) == 240
        assert not os.path.exists(dead)
        assert live.is_dir() and other.is_dir()
        assert prepared.remove_stale(str(cache)) == []
    finally:
        child.kill()
        child.wait()
    assert prepared.remove_stale(str(cache)) == [live.name]  # its process is gone now


@pytest.mark.parametrize("overrides", [{}, {"bucket_pool": 3}, {"pad_to": 12}])
def test_sentence_batches_from_the_ids_are_the_encoded_text(corpus, overrides):
    path, cache = corpus
    data = data_lib.build(corpus_config(path, cache, **overrides))
    plan = _TrainBatches(data, 5, 8, 0, 1, max(data.config.bucket_pool, 1))
    it = data.train_iterator(8, seed=5)
    for j, batch in enumerate(take(it, 40)):  # 40 x 8 > 240 pairs: into the second epoch
        assert_rows_are_the_texts(data, batch, plan.global_batch_pairs(j))
    state = it.get_state()
    expected = take(it, 3)
    restored = data.train_iterator(8, seed=5)
    restored.set_state(state)
    for a, b in zip(expected, take(restored, 3), strict=True):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])


def test_token_batches_from_the_ids_are_the_encoded_text(corpus):
    path, cache = corpus
    data = data_lib.build(corpus_config(path, cache))
    plan = data._token_batches(64, 2, seed=1)
    n = plan.epoch_batches(0)
    for j, batch in enumerate(
        take(data.train_iterator(0, batch_tokens=64, row_multiple=2, seed=1), n)
    ):
        pairs, rows = plan.global_batch(j)
        assert len(batch["src_len"]) == rows
        assert_rows_are_the_texts(data, batch, pairs)
        assert (batch["tgt_len"][len(pairs) :] == 0).all()


def test_vocab_sample_builds_the_vocabulary_from_the_first_pairs(corpus):
    path, cache = corpus
    path = write_corpus(Path(path), extra="omega omega")  # in the last pair only
    full = data_lib.build(corpus_config(path, cache))
    assert "omega" in full.src_vocab
    sample = data_lib.build(corpus_config(path, cache, vocab_sample=30))
    tok = sample.src_tokenizer
    first = [t for text in list(sample._texts["train"][0])[:30] for t in tok.tokenize(text)]
    assert sample.src_vocab.tokens[4:] == tuple(dict.fromkeys(first))  # first appearance
    assert "omega" not in sample.src_vocab
    unk = sample.src_vocab.unk_id
    assert sample._train_ids.rows(0, [239]) == [[unk, unk]]  # unknown words: <unk> ids


@pytest.mark.slow
def test_training_on_prepared_ids_resumes_bit_exactly(corpus, tmp_path):
    """10 steps + a resume to 20 on a parallel corpus (ids prepared by the first run, memory
    mapped by the resume) give the parameters of 20 uninterrupted steps."""
    import jax

    from jaxattn.training import loop as train_lib

    path, cache = corpus

    def config(steps):
        cfg = shared_synthetic_config(
            {
                "model.hidden": 16,
                "model.embed_dim": 16,
                "train.log_every": 5,
                "train.checkpoint_every": 10,
                "train.eval_every": 1000,
                "train.num_train_steps": steps,
                "train.progress_bar": False,
                "train.batch_size": 16,
            }
        )
        cfg.data = corpus_config(path, cache, tokenizer="word")
        return cfg

    def params(state):
        return {
            jax.tree_util.keystr(k): np.asarray(v)
            for k, v in jax.tree_util.tree_leaves_with_path(state.params)
        }

    ref, _ = train_lib.train_and_evaluate(config(20), str(tmp_path / "ref"))
    train_lib.train_and_evaluate(config(10), str(tmp_path / "w"))
    resumed, _ = train_lib.train_and_evaluate(config(20), str(tmp_path / "w"))
    assert len(entries(cache)) == 1
    a, b = params(ref), params(resumed)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize(
    "src,tgt",
    [
        (b"\xef\xbb\xbfa b\r\nc\n\n\xff x\nlast", b"A B\r\nC\nD\nE\nLAST"),  # BOM, CRLF, no end
        (b"one\ntwo\n", b"ONE\n\n"),
    ],
)
def test_streamed_aligned_pairs_are_the_read_ones(tmp_path, src, tgt):
    from jaxattn.data.readers import read_aligned_pairs, stream_aligned_pairs

    a, b = tmp_path / "x.de", tmp_path / "x.en"
    a.write_bytes(src)
    b.write_bytes(tgt)
    pairs, counts = read_aligned_pairs(src, tgt, str(a), str(b))
    streamed: dict = {}
    assert list(stream_aligned_pairs(str(a), str(b), streamed)) == pairs
    assert streamed == counts


def test_streamed_files_of_another_length_fail_before_any_pair(tmp_path):
    from jaxattn.data.readers import stream_aligned_pairs

    (tmp_path / "x.de").write_text("a\nb\nc\n", "utf-8")
    (tmp_path / "x.en").write_text("A\nB\n", "utf-8")
    with pytest.raises(ValueError, match="has 3 lines but .* has 2"):
        stream_aligned_pairs(str(tmp_path / "x.de"), str(tmp_path / "x.en"), {})


def test_the_streaming_builder_prepares_the_pairs_and_counts_of_the_whole_files(tmp_path):
    """Given split files are streamed into TFDS: the same examples, in order, and the same
    reading counts in the metadata as the files read whole (the builder before streaming)."""
    from jaxattn.data import builders
    from jaxattn.data.readers import read_aligned_pairs

    path = Path(write_corpus(tmp_path / "c"))
    for lang, extra in (("de", b"\n\xff bad\nlast\n"), ("en", b"x\nok\nLAST\n")):
        with open(path / f"train.{lang}", "ab") as f:
            f.write(extra)
    builder = builders.parallel_builder(
        str(path),
        src_lang="de",
        tgt_lang="en",
        splits={"train": "train", "validation": "val"},
        data_dir=str(tmp_path / "tfds"),
    )
    sources = builders.data_sources(builder)
    expected_counts: dict = {}
    for split, prefix in (("train", "train"), ("validation", "val")):
        a, b = (str(path / f"{prefix}.{lang}") for lang in ("de", "en"))
        pairs, counts = read_aligned_pairs(Path(a).read_bytes(), Path(b).read_bytes(), a, b)
        assert list(zip(*builders.read_texts(sources[split]), strict=True)) == pairs
        builders._add(expected_counts, counts)
        expected_counts[f"split_{split}"] = len(pairs)
    assert expected_counts["skipped_empty"] == expected_counts["skipped_undecodable"] == 1
    assert dict(builder.info.metadata) == expected_counts
    again = builders.parallel_builder(  # the prepared dataset, its metadata read from disk
        str(path),
        src_lang="de",
        tgt_lang="en",
        splits={"train": "train", "validation": "val"},
        data_dir=str(tmp_path / "tfds"),
    )
    assert dict(again.info.metadata) == expected_counts
