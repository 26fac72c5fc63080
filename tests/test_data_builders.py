"""TFDS builders from tiny local files: the tutorial corpus (file, folder, zip, download
errors), line-aligned and TSV parallel text, a catalog dataset by name, and bad input."""

import zipfile

import pytest
import tensorflow_datasets as tfds
from shared import SUBJECTS

from jaxattn.data import builders, download, readers
from jaxattn.data import splits as splits_lib
from jaxattn.data.text import normalize_tutorial

ADJECTIVES = [
    ("tall", "grand"),
    ("happy", "heureux"),
    ("tired", "fatigué"),
    ("ready", "prêt"),
    ("hungry", "affamé"),
    ("late", "en retard"),
    ("sick", "malade"),
    ("rich", "riche"),
    ("young", "jeune"),
    ("angry", "fâché"),
    ("calm", "calme"),
    ("cold", "froid"),
]


def eng_fra_lines():
    """72 tutorial-style pairs that pass the filter, then 3 that do not."""
    lines = [f"{e} {a}.\t{f} {b}." for e, f in SUBJECTS for a, b in ADJECTIVES]
    lines += [
        "Go.\tVa !",
        "I run.\tJe cours.",
        "I am sure that this is a very long sentence indeed.\tJe suis sûr.",
    ]
    return lines


def write(path, lines, encoding="utf-8"):
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


def texts(builder, split):
    src = builder.as_data_source(split=split)
    return [(ex["src"].decode(), ex["tgt"].decode()) for ex in (src[i] for i in range(len(src)))]


# -------------------------------------------------------------------------------- tutorial
def test_tutorial_builder_filters_reverses_and_splits(tmp_path):
    path = write(tmp_path / "eng-fra.txt", eng_fra_lines())
    b = builders.tutorial_builder(
        path=str(path), data_dir=str(tmp_path / "tfds"), split_fractions=(0.6, 0.2, 0.2)
    )
    meta = b.info.metadata
    assert (meta["lines"], meta["kept"], meta["filtered"]) == (75, 72, 3)
    splits = {s: texts(b, s) for s in ("train", "validation", "test")}
    assert sum(map(len, splits.values())) == 72 and all(splits.values())
    file_pairs = [tuple(line.split("\t")[::-1]) for line in eng_fra_lines()]  # (fra, eng)
    positions = [file_pairs.index(p) for p in splits["train"]]  # raw text, fra->eng
    assert positions == sorted(positions)  # in file order
    for side in (0, 1):  # no normalized sentence on two sides of a split
        seen = [{normalize_tutorial(p[side]) for p in v} for v in splits.values()]
        assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
    # The same options give the same prepared dataset; all-train is the tutorial's setting.
    again = builders.tutorial_builder(
        path=str(path), data_dir=str(tmp_path / "tfds"), split_fractions=(0.6, 0.2, 0.2)
    )
    assert again.data_dir == b.data_dir
    whole = builders.tutorial_builder(
        path=str(path),
        data_dir=str(tmp_path / "tfds"),
        split_fractions=(1, 0, 0),
        src_lang="eng",
        tgt_lang="fra",
        apply_filter=False,
    )
    assert list(whole.info.splits.keys()) == ["train"]
    assert texts(whole, "train")[0] == ("I am tall.", "Je suis grand.")
    assert whole.info.splits["train"].num_examples == 75


def test_assign_splits_groups_shared_sentences():
    keys = [("a", "x"), ("b", "x"), ("b", "y"), ("c", "z")]  # a-x-b-y is one group
    for seed in range(20):
        s = splits_lib.assign_splits(keys, (0.34, 0.33, 0.33), seed)
        assert s[0] == s[1] == s[2]
    assert set(splits_lib.assign_splits(keys, (1, 0, 0), 0)) == {0}
    with pytest.raises(ValueError, match="split_fractions"):
        splits_lib.check_fractions((0, 0.5, 0.5))


def test_tutorial_builder_reads_zip_and_folder(tmp_path):
    lines = eng_fra_lines()
    with zipfile.ZipFile(tmp_path / "data.zip", "w") as z:  # as data.zip is laid out
        z.writestr("data/eng-fra.txt", "\n".join(lines) + "\n")
        z.writestr("data/fra-eng.txt", "junk")
    kw = dict(data_dir=str(tmp_path / "tfds"), split_fractions=(1, 0, 0))
    from_zip = builders.tutorial_builder(path=str(tmp_path / "data.zip"), **kw)
    assert from_zip.info.metadata["kept"] == 72
    folder = tmp_path / "corpus" / "data"
    folder.mkdir(parents=True)
    write(folder / "eng-fra.txt", lines)
    from_dir = builders.tutorial_builder(path=str(tmp_path / "corpus"), **kw)
    assert texts(from_dir, "train") == texts(from_zip, "train")


def test_tutorial_download_path(tmp_path):
    """The download code path, offline: a file:// URL stands in for the tutorial's data.zip."""
    text = ("\n".join(eng_fra_lines()) + "\n").encode()
    with zipfile.ZipFile(tmp_path / "data.zip", "w") as z:
        z.writestr("data/eng-fra.txt", text)
    url = (tmp_path / "data.zip").as_uri()
    with pytest.raises(ValueError, match="sha256"):
        builders.tutorial_builder(url=url, data_dir=str(tmp_path / "bad"))  # the real checksum
    b = builders.tutorial_builder(
        url=url,
        sha256_check=readers.sha256(text),
        data_dir=str(tmp_path / "tfds"),
        split_fractions=(1, 0, 0),
    )
    assert b.info.metadata["kept"] == 72
    assert (tmp_path / "tfds" / "downloads" / download.TUTORIAL_ZIP).exists()
    # Downloaded once: later builds need no network.
    again = builders.tutorial_builder(
        url="http://127.0.0.1:9/data.zip",
        data_dir=str(tmp_path / "tfds"),
        split_fractions=(1, 0, 0),
    )
    assert again.data_dir == b.data_dir


def test_tutorial_builder_errors_name_both_options(tmp_path):
    kw = dict(data_dir=str(tmp_path / "tfds"))
    with pytest.raises(FileNotFoundError, match="does not exist.*eng-fra.txt.*data.zip"):
        builders.tutorial_builder(path=str(tmp_path / "nope.txt"), **kw)
    with pytest.raises(FileNotFoundError, match="No eng-fra.txt"):
        builders.tutorial_builder(path=str(tmp_path), **kw)
    with pytest.raises(FileNotFoundError, match="download=False.*config.data.path"):
        builders.tutorial_builder(download=False, **kw)
    # No network here: a refused connection fails fast with both options named.
    with pytest.raises(FileNotFoundError, match="Could not download.*config.data.path"):
        builders.tutorial_builder(url="http://127.0.0.1:9/data.zip", **kw)
    with pytest.raises(ValueError, match="fra and eng"):
        builders.tutorial_builder(path=str(tmp_path), src_lang="de", **kw)


def test_bad_lines_are_skipped_and_counted(tmp_path):
    good = eng_fra_lines()[:10]
    raw = (
        "\n".join(
            good[:5] + ["no tab here", "", "   ", "\tJe suis.", "I am x.\t"] + good[5:]
        ).encode()
        + b"\nI am bad \xff\xfe.\tJe suis.\n"
    )
    path = tmp_path / "eng-fra.txt"
    path.write_bytes(raw)
    b = builders.tutorial_builder(
        path=str(path), data_dir=str(tmp_path / "tfds"), split_fractions=(1, 0, 0)
    )
    meta = b.info.metadata
    assert meta["kept"] == 10 and meta["lines"] == 16
    assert (meta["skipped_no_tab"], meta["skipped_empty"], meta["skipped_undecodable"]) == (1, 4, 1)


def test_hopeless_input_is_a_clear_error(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"\n\n")
    with pytest.raises(ValueError, match="empty"):
        builders.tutorial_builder(path=str(empty), data_dir=str(tmp_path / "tfds"))
    junk = write(tmp_path / "junk.txt", ["no tabs", "at all"])
    with pytest.raises(ValueError, match="No usable sentence pairs.*no_tab"):
        builders.tutorial_builder(path=str(junk), data_dir=str(tmp_path / "tfds"))
    nothing_kept = write(tmp_path / "unfiltered.txt", ["Go.\tVa !"])
    with pytest.raises(ValueError, match="kept no pairs"):
        builders.tutorial_builder(path=str(nothing_kept), data_dir=str(tmp_path / "tfds"))


# --------------------------------------------------------------------------- parallel text
def multi30k_like(folder, n_train=20, n_val=4):
    folder.mkdir(exist_ok=True)
    for split, n in (("train", n_train), ("val", n_val)):
        write(folder / f"{split}.de", [f"Ein Hund Nummer {i} läuft." for i in range(n)])
        write(folder / f"{split}.en", [f"A dog, number {i}, runs." for i in range(n)])
    return folder


def test_parallel_builder_line_aligned_and_tsv(tmp_path):
    folder = multi30k_like(tmp_path / "m30k")
    write(folder / "test.tsv", ["Hallo Welt.\tHello world.", "Gut.\tGood."])
    b = builders.parallel_builder(
        str(folder),
        src_lang="de",
        tgt_lang="en",
        data_dir=str(tmp_path / "tfds"),
        splits={"train": "train", "validation": "val", "test": "test"},
    )
    assert {k: v.num_examples for k, v in b.info.splits.items()} == {
        "train": 20,
        "validation": 4,
        "test": 2,
    }
    assert texts(b, "train")[3] == ("Ein Hund Nummer 3 läuft.", "A dog, number 3, runs.")
    assert texts(b, "test")[1] == ("Gut.", "Good.")
    sources = builders.data_sources(b, {"train": "train", "validation": "validation", "test": ""})
    assert set(sources) == {"train", "validation"}
    assert builders.read_texts(sources["validation"])[1][0] == "A dog, number 0, runs."


def test_a_split_larger_than_the_buffer_spills_without_tensorflow(tmp_path):
    """A streamed split over TFDS's memory buffer goes to its 1,000 bucket files: with
    TensorFlow unimportable (as in every jaxattn install) and a 4 KB buffer, the prepared
    split holds the same examples in the same order as one prepared in memory, spread over
    many buckets (the keys span 128 bits); the fast reader equals TFDS's own. (TFDS's own
    bucket files need tf.io.gfile: without the patch this fails in a TensorFlow-free install
    such as jaxattn's.)"""
    import subprocess
    import sys

    from shared import ROOT

    folder = tmp_path / "big"
    folder.mkdir()
    n = 3000
    write(folder / "train.de", [f"Satz {i} ist {'lang ' * (i % 7)}hier." for i in range(n)])
    write(folder / "train.en", [f"Sentence {i} is {'long ' * (i % 7)}here." for i in range(n)])
    script = f"""
import collections
from tensorflow_datasets.core import shuffle
from jaxattn.data import builders
added = collections.Counter()
real_add = shuffle.Shuffler._add_to_bucket
def counting(self, hkey, data):
    added[shuffle.get_bucket_number(hkey=hkey, num_buckets=shuffle.BUCKETS_NUMBER)] += 1
    return real_add(self, hkey, data)
shuffle.Shuffler._add_to_bucket = counting
builders.SPILL_BUFFER = 4096
b = builders.parallel_builder({str(folder)!r}, src_lang="de", tgt_lang="en",
    data_dir={str(tmp_path / "spilled")!r}, splits={{"train": "train"}})
print(sum(added.values()), len(added), max(added.values()))
"""
    p = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert p.returncode == 0, p.stderr[-3000:]
    spilled_pairs, buckets, largest = map(int, p.stdout.strip().splitlines()[-1].split())
    assert spilled_pairs == n and buckets > 500 and largest < 20  # spread over the buckets
    spilled, in_memory = (
        builders.parallel_builder(
            str(folder),
            src_lang="de",
            tgt_lang="en",
            data_dir=str(tmp_path / name),
            splits={"train": "train"},
        )
        for name in ("spilled", "memory")
    )
    assert texts(spilled, "train") == texts(in_memory, "train")
    assert texts(spilled, "train")[7] == ("Satz 7 ist hier.", "Sentence 7 is here.")
    source = builders.data_sources(spilled)["train"]
    column = builders.TextColumn(source, "tgt")
    assert column._raw is not None  # the fast reader is in use, and reads what TFDS reads
    tfds_own = [ex["tgt"].decode() for ex in source.__getitems__(list(range(n)))]
    assert list(column) == tfds_own and column[5:8] == tfds_own[5:8]


def test_parallel_builder_one_tsv_split_by_fractions(tmp_path):
    lines = [f"Satz {i}.\tSentence {i}." for i in range(50)] + ["Satz 0.\tSentence 0."]
    path = write(tmp_path / "corpus.tsv", lines)
    b = builders.parallel_builder(
        str(path),
        src_lang="de",
        tgt_lang="en",
        splits={},
        split_fractions=(0.8, 0.1, 0.1),
        data_dir=str(tmp_path / "t"),
    )
    got = {s: texts(b, s) for s in b.info.splits.keys()}
    assert sum(map(len, got.values())) == 51 and len(got["train"]) > 30
    assert sum(("Satz 0.", "Sentence 0.") in v for v in got.values()) == 1  # duplicates: one side


def test_parallel_builder_bad_input(tmp_path):
    folder = multi30k_like(tmp_path / "m30k")
    kw = dict(src_lang="de", tgt_lang="en", data_dir=str(tmp_path / "tfds"))
    with pytest.raises(FileNotFoundError, match="Split 'test'.*splits.test"):
        builders.parallel_builder(str(folder), splits={"train": "train", "test": "test"}, **kw)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        builders.parallel_builder(str(tmp_path / "missing"), splits={"train": "x"}, **kw)
    write(folder / "val.en", ["one line only"])
    with pytest.raises(ValueError, match="val.de has 4 lines but .*val.en has 1"):
        builders.parallel_builder(str(folder), splits={"train": "train", "validation": "val"}, **kw)
    # An empty line and undecodable bytes: those pairs are skipped and counted.
    (folder / "train.de").write_bytes(b"Eins.\n\nDrei \xff.\nVier.\n")
    (folder / "train.en").write_bytes(b"One.\nTwo.\nThree.\nFour.\n")
    b = builders.parallel_builder(str(folder), splits={"train": "train"}, **kw)
    meta = b.info.metadata
    assert (meta["pairs"], meta["skipped_empty"], meta["skipped_undecodable"]) == (2, 1, 1)
    (folder / "train.de").write_bytes(b"")
    with pytest.raises(ValueError, match="train.de is empty"):
        builders.parallel_builder(str(folder), splits={"train": "train"}, **kw)


# --------------------------------------------------------------------------------- catalog
class TinyTranslate(tfds.core.GeneratorBasedBuilder):
    """Stands in for a catalog translation dataset (e.g. wmt14_translate/fr-en)."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self, features=tfds.features.Translation(languages=("en", "fr"))
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(30), "validation": self._generate_examples(5)}

    def _generate_examples(self, n):
        for i in range(n):
            yield i, {"en": f"I am number {i}.", "fr": f"Je suis le numéro {i}."}


def test_catalog_builder_by_name(tmp_path):
    b = builders.catalog_builder("tiny_translate", data_dir=str(tmp_path))
    sources = builders.data_sources(
        b, {"train": "train[:10]", "validation": "validation", "test": "test"}
    )
    assert set(sources) == {"train", "validation"}
    fr, en = builders.read_texts(sources["train"], "fr", "en")
    assert len(fr) == 10 and all(s.startswith("Je suis") for s in fr)
    with pytest.raises(ValueError, match="no feature 'de'.*'en', 'fr'"):
        builders.read_texts(sources["train"], "de", "en")
    with pytest.raises(ValueError, match="TFDS has no dataset"):
        builders.catalog_builder("no_such_dataset_xyz", data_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="download=False"):
        builders.catalog_builder("tiny_translate", data_dir=str(tmp_path / "x"), download=False)
