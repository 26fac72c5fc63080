"""The pipeline: build(config) -> batches; padding, lengths, determinism, shards, resuming,
bucketing, vocabularies saved and loaded, synthetic tasks."""

import collections
import datetime
import json

import numpy as np
import pytest
from shared import very_pairs

import jaxattn.data as data_lib
from jaxattn.config import default_data_config, validate_section
from jaxattn.data.synthetic import synthetic_splits
from jaxattn.rundir import layout


@pytest.fixture(scope="module")
def eng_fra(tmp_path_factory):
    """A tutorial-style eng-fra.txt (96 pairs that pass the filter, 2 that do not) and a
    TFDS data_dir for it."""
    root = tmp_path_factory.mktemp("engfra")
    lines = very_pairs()
    lines += ["Go.\tVa !", "I run.\tJe cours."]
    (root / "eng-fra.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def tutorial_config(root, **overrides):
    c = default_data_config()
    c.path, c.data_dir = str(root / "eng-fra.txt"), str(root / "tfds")
    c.prefetch = 0
    c.update(overrides)
    return c


def synthetic_config(task="copy", **overrides):
    c = default_data_config()
    c.name, c.synthetic_task, c.synthetic_sizes = "synthetic", task, (300, 20, 20)
    c.prefetch = 0
    c.update(overrides)
    return c


def take(it, n):
    return [next(it) for _ in range(n)]


def assert_batches_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])


def check_batch(batch, vocab_src, vocab_tgt, rows):
    assert set(batch) == {"src", "src_len", "tgt", "tgt_len"}
    for key, vocab in (("src", vocab_src), ("tgt", vocab_tgt)):
        ids, lens = batch[key], batch[key + "_len"]
        assert ids.dtype == np.int32 and lens.dtype == np.int32
        assert ids.shape[0] == lens.shape[0] == rows
        assert (ids[np.arange(rows), lens - 1] == vocab.eos_id).all()  # EOS last, counted
        assert (ids[np.arange(ids.shape[1]) >= lens[:, None]] == vocab.pad_id).all()
        assert (ids[:, 0] != vocab.bos_id).all() or vocab.bos_id == vocab.pad_id  # no BOS


# ----------------------------------------------------------------------- tutorial corpus
def test_tutorial_filter_counts_words_not_tokens(eng_fra):
    """max_length is the tutorial filter's word count: finer tokens (characters here, subword
    pieces in practice) keep every pair that passed it, in training and evaluation."""
    c = tutorial_config(eng_fra, tokenizer="char", pad_to=0, split_fractions=(0.8, 0.1, 0.1))
    data = data_lib.build(c)
    assert data.stats["read"]["kept"] == 96 and data.stats["train_too_long"] == 0
    assert data.stats["train_pairs"] == data.num_examples("train")
    longest = max(len(s) for s in data._texts["test"][0])
    batch = data.eval_batches("test", 64)[0]
    assert longest >= 10 and batch["src_len"].max() == longest + 1  # no cut at 10 (EOS +1)


def test_tutorial_mirror_fixed_length_and_ids(eng_fra):
    c = tutorial_config(eng_fra, pad_to=10, tutorial_ids=True, split_fractions=(1, 0, 0))
    data = data_lib.build(c)
    assert data.splits == ("train",) and data.num_examples("train") == 96
    assert data.stats["read"]["kept"] == 96 and data.stats["read"]["filtered"] == 2
    v = data.src_vocab
    assert (v.tokens[:2], v.bos_id, v.eos_id, v.pad_id) == (("SOS", "EOS"), 0, 1, 0)
    # French words in order of first appearance, as the tutorial's Lang.
    assert v.tokens[2:6] == ("je", "suis", "tres", "tall")
    batch = next(data.train_iterator(8, seed=0))
    assert batch["src"].shape == (8, 10) and batch["tgt"].shape == (8, 10)
    check_batch(batch, data.src_vocab, data.tgt_vocab, 8)
    assert data.encode_source("Je suis très tall !") == v.encode(
        ["je", "suis", "tres", "tall", "!"]
    ) + [1]
    with pytest.raises(ValueError, match="no UNK"):
        data.encode_source("Je suis inconnu.")
    with pytest.raises(ValueError, match="No 'validation' split"):
        data.eval_batches("validation", 4)


def test_tutorial_held_out_splits_and_references(eng_fra):
    data = data_lib.build(tutorial_config(eng_fra, split_fractions=(0.7, 0.15, 0.15)))
    assert set(data.splits) == {"train", "validation", "test"}
    total = sum(data.num_examples(s) for s in data.splits)
    assert total == 96
    refs, srcs = data.references("test"), data.sources("test")
    assert len(refs) == len(srcs) == data.num_examples("test")
    assert all(r.islower() and "." not in r for r in refs)  # normalized English
    assert any("è" in s or "ê" in s or "!" in s for s in srcs)  # raw French
    # Decoding the eval targets gives back the references (the vocab covers them or UNK).
    batches = data.eval_batches("train", 7)
    assert sum(len(b["src_len"]) for b in batches) == data.num_examples("train")
    assert len(batches[-1]["src_len"]) == (data.num_examples("train") % 7 or 7)  # partial kept
    hyps = [data.decode_target(row) for b in batches for row in b["tgt"]]
    assert hyps == data.references("train")
    for b in batches:
        check_batch(b, data.src_vocab, data.tgt_vocab, len(b["src_len"]))
        assert b["src"].shape[1] % 8 == 0  # pad_multiple


def test_tutorial_ids_with_held_out_unknown_words_is_a_clear_error(eng_fra):
    data = data_lib.build(
        synthetic_config(tutorial_ids=True, synthetic_num_symbols=200, synthetic_sizes=(10, 10, 10))
    )
    with pytest.raises(ValueError, match="'validation' split.*no UNK.*split_fractions"):
        data.eval_batches("validation", 100)
    with pytest.raises(ValueError, match="no UNK id"):  # checked where a config enters
        validate_section("data", tutorial_config(eng_fra, tutorial_ids=True, vocab_min_freq=2))


def test_vocab_saved_and_loaded(eng_fra, tmp_path):
    data = data_lib.build(tutorial_config(eng_fra))
    data.save_vocabs(str(tmp_path))
    assert (tmp_path / layout.SRC_VOCAB_FILE).read_text().startswith("<pad>\n<s>\n</s>\n<unk>\n")
    # Another split of the corpus would build other vocabularies; the saved ones win.
    other = tutorial_config(eng_fra, split_seed=5)
    assert data_lib.build(other).src_vocab != data.src_vocab
    loaded = data_lib.build(other, vocab_dir=str(tmp_path))
    assert loaded.src_vocab == data.src_vocab and loaded.tgt_vocab == data.tgt_vocab
    # An empty directory: built from the corpus; a layout mismatch: an error.
    assert data_lib.build(other, vocab_dir=str(tmp_path / "none")).src_vocab != data.src_vocab
    with pytest.raises(ValueError, match="layout"):
        data_lib.build(tutorial_config(eng_fra, tutorial_ids=True), vocab_dir=str(tmp_path))
    (tmp_path / layout.TGT_VOCAB_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="only one of"):
        data_lib.build(other, vocab_dir=str(tmp_path))


# ----------------------------------------------------------------------- training stream
def test_shapes_padding_and_epoch_coverage():
    data = data_lib.build(synthetic_config("reverse", synthetic_max_len=12, pad_multiple=4))
    n = data.num_examples("train")
    assert n == 300
    it = data.train_iterator(10, seed=1, num_epochs=2)
    batches = list(it)
    assert len(batches) == 2 * n // 10
    seen = collections.Counter()
    for b in batches:
        check_batch(b, data.src_vocab, data.tgt_vocab, 10)
        assert b["src"].shape[1] % 4 == 0 and b["src"].shape[1] - 4 < b["src_len"].max()
        seen.update(tuple(r[:n_]) for r, n_ in zip(b["src"], b["src_len"], strict=True))
    expected = collections.Counter(tuple(data.encode_source(s)) for s in data.sources("train"))
    assert seen == expected + expected  # every pair once per epoch


def test_same_seed_same_batches_other_seed_other_batches():
    data = data_lib.build(synthetic_config())
    a = take(data.train_iterator(16, seed=3), 5)
    assert_batches_equal(a, take(data_lib.build(synthetic_config()).train_iterator(16, seed=3), 5))
    b = take(data.train_iterator(16, seed=4), 5)
    assert not all(np.array_equal(x["src"], y["src"]) for x, y in zip(a, b, strict=True))
    epoch1 = take(data.train_iterator(15, seed=3), 40)  # epochs are shuffled differently
    assert not np.array_equal(epoch1[0]["src"], epoch1[20]["src"])


@pytest.mark.parametrize("bucket_pool", [0, 4])
def test_shards_split_each_global_batch(bucket_pool):
    data = data_lib.build(synthetic_config(bucket_pool=bucket_pool, synthetic_max_len=20))
    whole = take(data.train_iterator(12, seed=7), 6)
    shards = [
        take(data.train_iterator(4, seed=7, shard_index=i, shard_count=3), 6) for i in range(3)
    ]
    for j, batch in enumerate(whole):
        for k in batch:  # the shards are the global batch's rows, padded alike
            np.testing.assert_array_equal(
                np.concatenate([shards[i][j][k] for i in range(3)]), batch[k]
            )
    with pytest.raises(ValueError, match="shard_index"):
        data.train_iterator(4, shard_index=3, shard_count=3)


@pytest.mark.parametrize("overrides", [dict(), dict(bucket_pool=3), dict(prefetch=3)])
def test_iterator_state_resumes_exactly(overrides):
    data = data_lib.build(synthetic_config(**overrides))
    it = data.train_iterator(32, seed=0)
    take(it, 3)
    state = json.loads(json.dumps(it.get_state()))  # plain data, as Orbax stores it
    expected = take(it, 12)  # crosses an epoch boundary (300 pairs / 32)
    fresh = data.train_iterator(32, seed=0)
    fresh.set_state(state)
    assert_batches_equal(take(fresh, 12), expected)
    it.close()  # stops a prefetch thread
    fresh.close()


def test_bucketing_cuts_padding():
    def padding(bucket_pool):
        data = data_lib.build(
            synthetic_config(
                bucket_pool=bucket_pool, pad_multiple=1, synthetic_min_len=1, synthetic_max_len=30
            )
        )
        batches = take(data.train_iterator(10, seed=0), 30)
        return sum(b["src"].size - b["src_len"].sum() for b in batches)

    assert padding(10) < padding(0) / 3


def test_bucket_boundaries_and_max_length():
    c = synthetic_config(
        bucket_boundaries=(4, 6, 9), synthetic_min_len=1, synthetic_max_len=12, max_length=9
    )
    data = data_lib.build(c)
    assert data.stats["train_too_long"] > 0
    assert data.num_examples("train") == 300 - data.stats["train_too_long"]
    for b in take(data.train_iterator(8, seed=0), 20):
        assert b["src"].shape[1] in (4, 6, 9) and b["src_len"].max() <= 9
    # Evaluation keeps long sentences (no filter) and pads past the last boundary.
    widths = {b["src"].shape[1] for b in data.eval_batches("test", 4)}
    assert widths <= {4, 6, 9, 16}


def test_errors_for_bad_options():
    # Checked once, where a config enters (jaxattn.config.validate): `build` trusts its config.
    bad = [("name", "wmt"), ("tokenizer", "bpe"), ("vocab_order", "abc"), ("pad_multiple", 0)]
    for key, value in bad:
        with pytest.raises(ValueError, match=f"config.data.{key}"):
            validate_section("data", synthetic_config(**{key: value}))
    # The names `build` dispatches on are still named there.
    with pytest.raises(ValueError, match="config.data.name='wmt'"):
        data_lib.build(synthetic_config(name="wmt"))
    with pytest.raises(ValueError, match="Unknown tokenizer 'bpe'"):
        data_lib.build(synthetic_config(tokenizer="bpe"))
    with pytest.raises(ValueError, match="needs more than the 300 training pairs"):
        data_lib.build(synthetic_config()).train_iterator(400)


# ------------------------------------------------------------------------ other corpora
def test_parallel_corpus_keeps_case_and_punctuation(tmp_path):
    folder = tmp_path / "m30k"
    folder.mkdir()
    for split, n in (("train", 40), ("val", 5), ("test_2016_flickr", 5)):
        (folder / f"{split}.de").write_text(
            "".join(f"Ein Hund, Nr. {i}, läuft.\n" for i in range(n)), encoding="utf-8"
        )
        (folder / f"{split}.en").write_text(
            "".join(f"A dog (number {i}) runs!\n" for i in range(n)), encoding="utf-8"
        )
    c = default_data_config()
    c.name, c.path, c.data_dir = "parallel", str(folder), str(tmp_path / "tfds")
    c.src_lang, c.tgt_lang, c.prefetch = "de", "en", 0
    c.splits.validation, c.splits.test = "val", "test_2016_flickr"
    data = data_lib.build(c)
    assert data.references("test")[2] == "A dog (number 2) runs!"
    assert data.sources("validation")[0] == "Ein Hund, Nr. 0, läuft."
    hyps = [data.decode_target(r) for b in data.eval_batches("test", 3) for r in b["tgt"]]
    assert hyps == data.references("test")
    check_batch(next(data.train_iterator(8)), data.src_vocab, data.tgt_vocab, 8)


def test_sentencepiece_pipeline(tmp_path):
    pytest.importorskip("sentencepiece")
    c = synthetic_config("dates", tokenizer="sentencepiece", sp_vocab_size=80)
    data = data_lib.build(c)
    hyps = [data.decode_target(r) for b in data.eval_batches("test", 8) for r in b["tgt"]]
    assert hyps == data.references("test")
    data.save_vocabs(str(tmp_path))
    assert (tmp_path / layout.SRC_SPM_FILE).exists()
    again = data_lib.build(c, vocab_dir=str(tmp_path))
    assert again.src_tokenizer.sp_model == data.src_tokenizer.sp_model
    assert again.encode_source("march 3, 2001") == data.encode_source("march 3, 2001")


def test_tfds_catalog_dataset_through_the_pipeline(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")

    class TinyPipelineTranslate(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self, features=tfds.features.Translation(languages=("en", "fr"))
            )

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(40), "test": self._generate_examples(6)}

        def _generate_examples(self, n):
            for i in range(n):
                yield i, {"en": f"I have {i} cats.", "fr": f"J'ai {i} chats."}

    c = default_data_config()
    c.name, c.tfds_name, c.data_dir = "tfds", "tiny_pipeline_translate", str(tmp_path)
    c.prefetch = 0
    c.src_lang, c.tgt_lang = "fr", "en"
    data = data_lib.build(c)
    assert data.splits == ("train", "test") and data.num_examples("train") == 40
    assert sorted(data.references("test")) == [f"I have {i} cats." for i in range(6)]


# ------------------------------------------------------------------------ synthetic tasks
def test_synthetic_tasks():
    def ints(s):
        return [int(x) for x in s.split()]

    for task, check in [
        ("copy", lambda s, t: s == t),
        ("reverse", lambda s, t: ints(s)[::-1] == ints(t)),
        ("sort", lambda s, t: sorted(ints(s)) == ints(t)),
    ]:
        splits = synthetic_splits(task, (200, 30, 30), seed=1, min_len=2, max_len=6)
        for src, tgt in zip(*splits["train"], strict=True):
            assert check(src, tgt) and 2 <= len(src.split()) <= 6
        held_out = set(splits["validation"][0]) | set(splits["test"][0])
        assert not held_out & set(splits["train"][0])
    dates = synthetic_splits("dates", (100, 10, 0), seed=0)
    assert set(dates) == {"train", "validation"}
    for src, tgt in zip(*dates["train"], strict=True):
        d = datetime.date.fromisoformat(tgt)
        assert str(d.year) in src and 1950 <= d.year <= 2049
    assert synthetic_splits("dates", (50, 5, 5), seed=3) == synthetic_splits(
        "dates", (50, 5, 5), seed=3
    )
    with pytest.raises(ValueError, match="too few distinct"):
        synthetic_splits("copy", (100, 10, 10), min_len=1, max_len=1, num_symbols=3)
