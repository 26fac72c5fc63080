"""TensorFlow Datasets builders (array_record, read back without TensorFlow through
`builder.as_data_source()`), and access to any TFDS catalog dataset by name.

Every example is {'src': bytes, 'tgt': bytes}, raw UTF-8 text in the translation direction.
- `JaxattnEngFra` ('jaxattn_eng_fra'): the tutorial's eng-fra.txt, reversed to fra->eng (or
  not), filtered like the tutorial, split into train/validation/test.
- `JaxattnParallelText` ('jaxattn_parallel_text'): any line-aligned source/target files per
  split, a TSV file per split, or one TSV file split by fractions (Multi30k, users' corpora).
- `catalog_builder`: a catalog dataset such as 'wmt14_translate/fr-en', downloaded and prepared
  as array_record (needs network the first time).

Splits by fraction come from `jaxattn.data.splits` (hashed normalized text). Each
builder's config name is a digest of its options and of the input files' contents, so a
changed option or file prepares a new dataset instead of reusing a stale one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import json
import logging
import os
import resource
import struct
from collections.abc import Sequence

import tensorflow_datasets as tfds

from jaxattn.data.download import default_data_dir, tutorial_source
from jaxattn.data.readers import (
    TUTORIAL_SHA256,
    TUTORIAL_URL,
    file_sha256,
    read_aligned_pairs,
    read_bytes,
    read_tsv_pairs,
    stream_aligned_pairs,
)
from jaxattn.data.splits import SPLITS, assign_splits, check_fractions, split_rows
from jaxattn.data.text import ENG_PREFIXES, tutorial_pairs, tutorial_reverse
from jaxattn.errors import DataError

log = logging.getLogger(__name__)

CITATION = "Tatoeba (tatoeba.org) and manythings.org/anki, CC-BY 2.0 FR."


def _features() -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict({"src": tfds.features.Text(), "tgt": tfds.features.Text()})


def _digest(params: dict) -> str:
    return "c" + hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


# -------------------------------------------------------------------------------- tutorial
@dataclasses.dataclass
class EngFraConfig(tfds.core.BuilderConfig):
    source: str = ""  # a local eng-fra.txt, or a zip holding it
    source_sha256: str = ""
    reverse: bool = True  # True: fra->eng, as in the tutorial
    apply_filter: bool = True
    max_length: int = 10
    prefixes: tuple[str, ...] = ENG_PREFIXES
    split_fractions: tuple[float, float, float] = (0.9, 0.05, 0.05)
    split_seed: int = 0


class JaxattnEngFra(tfds.core.GeneratorBasedBuilder):
    """The tutorial's English-French pairs, normalized only to decide filter and splits: the
    stored text is the raw line's, so `sources` shows the original sentences."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.__doc__,
            features=_features(),
            supervised_keys=("src", "tgt"),
            homepage="https://www.manythings.org/anki/",
            citation=CITATION,
            metadata=tfds.core.MetadataDict(),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        c = self.builder_config
        pairs, counts = read_tsv_pairs(read_bytes(c.source), c.source)  # (eng, fra)
        kept = list(
            tutorial_pairs(
                pairs,
                reverse=c.reverse,
                apply_filter=c.apply_filter,
                max_length=c.max_length,
                prefixes=c.prefixes,
            )
        )
        rows = [(i, src, tgt) for i, src, tgt, _, _ in kept]
        keys = [(nsrc, ntgt) for _, _, _, nsrc, ntgt in kept]
        counts["filtered"] = len(pairs) - len(rows)
        counts["kept"] = len(rows)
        if not rows:
            raise DataError(
                f"The tutorial filter kept no pairs of {c.source} ({counts}); "
                "check max_length/prefixes or set filter=False."
            )
        by_split = split_rows(rows, assign_splits(keys, c.split_fractions, c.split_seed))
        counts.update({f"split_{k}": len(v) for k, v in by_split.items()})
        self.info.metadata.update(counts, source_sha256=c.source_sha256)
        return {k: self._generate_examples(v) for k, v in by_split.items() if v}

    def _generate_examples(self, rows):
        for key, src, tgt in rows:
            yield key, {"src": src, "tgt": tgt}


def tutorial_builder(
    *,
    path: str = "",
    url: str = TUTORIAL_URL,
    sha256_check: str = TUTORIAL_SHA256,
    download: bool = True,
    data_dir: str = "",
    src_lang: str = "fra",
    tgt_lang: str = "eng",
    apply_filter: bool = True,
    max_length: int = 10,
    prefixes: Sequence[str] = ENG_PREFIXES,
    split_fractions: Sequence[float] = (0.9, 0.05, 0.05),
    split_seed: int = 0,
) -> JaxattnEngFra:
    """A prepared `JaxattnEngFra` builder (prepares it on first use)."""
    reverse = tutorial_reverse(src_lang, tgt_lang)
    source = tutorial_source(path, url, sha256_check, download, data_dir)
    params = dict(
        source_sha256=file_sha256(source),
        reverse=reverse,
        apply_filter=bool(apply_filter),
        max_length=int(max_length),
        prefixes=tuple(prefixes),
        split_fractions=check_fractions(split_fractions),
        split_seed=int(split_seed),
    )
    config = EngFraConfig(
        name=_digest(params), source=source, description=json.dumps(params), **params
    )
    return _prepare(JaxattnEngFra(config=config, data_dir=default_data_dir(data_dir)))


# --------------------------------------------------------------------------- parallel text
@dataclasses.dataclass
class ParallelTextConfig(tfds.core.BuilderConfig):
    # (split, source file, target file); target '' means a TSV file; split '*' means one TSV
    # file split by split_fractions.
    files: tuple[tuple[str, str, str], ...] = ()
    tsv_columns: tuple[int, int] = (0, 1)
    split_fractions: tuple[float, float, float] = (0.9, 0.05, 0.05)
    split_seed: int = 0


class JaxattnParallelText(tfds.core.GeneratorBasedBuilder):
    """Sentence pairs from line-aligned files or TSV, raw text, in file order."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.__doc__,
            features=_features(),
            supervised_keys=("src", "tgt"),
            metadata=tfds.core.MetadataDict(),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        """Line-aligned files of a given split are streamed line by line (a WMT-size training
        split is never a list), their counts added to the metadata once read; TSV files and
        a corpus split by fractions (its grouped assignment needs every pair) are read whole.
        """
        c = self.builder_config
        by_split, streamed, counts = {}, {}, {}
        for split, a, b in c.files:
            if b and split != "*":
                n: dict = {}
                streamed[split] = n, stream_aligned_pairs(a, b, n)  # line counts checked now
                continue
            if b:
                pairs, n = read_aligned_pairs(read_bytes(a), read_bytes(b), a, b)
            else:
                pairs, n = read_tsv_pairs(read_bytes(a), a, tuple(c.tsv_columns))
            _add(counts, n)
            rows = [(i, s, t) for i, (s, t) in enumerate(pairs)]
            if split == "*":
                keys = [
                    (" ".join(s.lower().split()), " ".join(t.lower().split())) for s, t in pairs
                ]
                by_split = split_rows(rows, assign_splits(keys, c.split_fractions, c.split_seed))
            else:
                by_split[split] = rows
        counts.update({f"split_{k}": len(v) for k, v in by_split.items()})
        self.info.metadata.update(counts)
        return {
            **{k: self._generate_examples(v) for k, v in by_split.items() if v},
            **{k: self._stream_examples(k, *v) for k, v in streamed.items()},
        }

    def _generate_examples(self, rows):
        for key, src, tgt in rows:
            yield key, {"src": src, "tgt": tgt}

    def _stream_examples(self, split: str, counts: dict, pairs):
        """Examples of a streamed split in file order; its reading `counts` (complete after
        the last pair) go into the metadata, written once every split is generated.

        Keys are the pair's index times 2^(128 - bits of the line count): the same order
        (TFDS sorts by key), spread over the whole 128-bit range, so that when TFDS spills a
        split larger than its memory buffer to its 1,000 buckets (by the key's top bits)
        each bucket holds a thousandth of it, not all of it."""
        pairs = iter(pairs)
        first = next(pairs, None)  # reading starts: counts["lines"] is known
        shift = 128 - max(counts.get("lines", 1), 1).bit_length()
        for i, (src, tgt) in enumerate(itertools.chain([first] if first else [], pairs)):
            yield i << shift, {"src": src, "tgt": tgt}
        _add(self.info.metadata, counts)
        self.info.metadata[f"split_{split}"] = counts["pairs"]


def _add(total: dict, counts: dict) -> None:
    """Adds reading counts into `total`, key by key."""
    for k, v in counts.items():
        total[k] = total.get(k, 0) + v


def _parallel_files(
    path: str, src_lang: str, tgt_lang: str, splits: dict[str, str]
) -> tuple[tuple[str, str, str], ...]:
    path = os.path.expanduser(path)
    if not path:
        raise DataError(
            "name='parallel' needs config.data.path: a folder with "
            "{split}.{src_lang} and {split}.{tgt_lang} (or {split}.tsv) files, "
            "or one TSV file."
        )
    if os.path.isfile(path):
        return (("*", path, ""),)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"config.data.path={path} does not exist.")
    files = []
    for split, prefix in splits.items():
        if not prefix:
            continue
        a, b = (os.path.join(path, f"{prefix}.{lang}") for lang in (src_lang, tgt_lang))
        tsv = os.path.join(path, f"{prefix}.tsv")
        if os.path.isfile(a) and os.path.isfile(b):
            files.append((split, a, b))
        elif os.path.isfile(tsv):
            files.append((split, tsv, ""))
        else:
            raise FileNotFoundError(
                f"Split {split!r}: neither {a} + {b} nor {tsv} exists (the folder holds "
                f"{sorted(os.listdir(path))[:12]}). Set config.data.splits.{split} to the "
                f"files' prefix, or to '' to do without this split."
            )
    if not any(f[0] == "train" for f in files):
        raise DataError("config.data.splits.train is empty: a training split is required.")
    return tuple(files)


def parallel_builder(
    path: str,
    *,
    src_lang: str,
    tgt_lang: str,
    splits: dict[str, str],
    tsv_columns: Sequence[int] = (0, 1),
    split_fractions: Sequence[float] = (0.9, 0.05, 0.05),
    split_seed: int = 0,
    data_dir: str = "",
) -> JaxattnParallelText:
    """A prepared `JaxattnParallelText` builder.

    `path` is a folder with `{prefix}.{src_lang}` + `{prefix}.{tgt_lang}` (or `{prefix}.tsv`)
    for each (split, prefix) in `splits`, or one TSV file split by `split_fractions`.
    """
    files = _parallel_files(path, src_lang, tgt_lang, splits)
    params = dict(
        files=[(s, file_sha256(a), file_sha256(b) if b else "") for s, a, b in files],
        tsv_columns=list(tsv_columns),
        split_fractions=check_fractions(split_fractions),
        split_seed=int(split_seed),
    )
    config = ParallelTextConfig(
        name=_digest(params),
        description=json.dumps(params),
        files=files,
        tsv_columns=tuple(tsv_columns),
        split_fractions=params["split_fractions"],
        split_seed=params["split_seed"],
    )
    return _prepare(JaxattnParallelText(config=config, data_dir=default_data_dir(data_dir)))


def _prepare(builder: tfds.core.DatasetBuilder) -> tfds.core.DatasetBuilder:
    if not builder.is_prepared():
        with spill_without_tensorflow():
            builder.download_and_prepare(file_format="array_record")
    return builder


SPILL_BUFFER = 128 << 20  # bytes of serialized examples TFDS holds before it spills to disk


@contextlib.contextmanager
def spill_without_tensorflow(buffer: int | None = None):
    """TFDS writes a split larger than its memory buffer (1 GB) into 1,000 temporary bucket
    files through tf.io.gfile, which without TensorFlow fails (ModuleNotFoundError) after
    the first GB: any WMT-size corpus. Within this context its buckets use Python files,
    and the buffer is `buffer` bytes (default SPILL_BUFFER), so preparing holds about that
    much. Relies on TFDS 4.9's `shuffle._Bucket` (pinned in pyproject.toml;
    tests/test_data_builders.py spills a corpus and compares it with one prepared in
    memory)."""
    from tensorflow_datasets.core import shuffle

    def add(self, key, data: bytes) -> None:
        if not self._fobj:
            os.makedirs(os.path.dirname(self._path), exist_ok=True)
            self._fobj = open(self._path, "wb")  # noqa: SIM115 (closed by flush())
        self._fobj.write(shuffle._hkey_to_bytes(key) + struct.pack("=Q", len(data)) + data)
        self._length += 1
        self._size += len(data)

    def read_values(self):
        self.flush()
        if not os.path.exists(self._path):  # a bucket nothing was added to
            return
        with open(self._path, "rb") as f:
            while head := f.read(shuffle.HKEY_SIZE_BYTES):
                (size,) = struct.unpack("=Q", f.read(8))
                yield shuffle._read_hkey(head), f.read(size)

    def del_file(self):
        if os.path.exists(self._path):
            os.remove(self._path)

    saved = {k: getattr(shuffle._Bucket, k) for k in ("add", "read_values", "del_file")}
    saved_buffer = shuffle.MAX_MEM_BUFFER_SIZE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(max(soft, shuffle.BUCKETS_NUMBER + 256), hard)
    if want > soft:  # one open file per bucket
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    shuffle._Bucket.add, shuffle._Bucket.read_values, shuffle._Bucket.del_file = (
        add,
        read_values,
        del_file,
    )
    shuffle.MAX_MEM_BUFFER_SIZE = SPILL_BUFFER if buffer is None else buffer
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(shuffle._Bucket, k, v)
        shuffle.MAX_MEM_BUFFER_SIZE = saved_buffer


# --------------------------------------------------------------------------------- catalog
def catalog_builder(name: str, *, data_dir: str = "", download: bool = True):
    """A prepared catalog builder, e.g. 'wmt14_translate/fr-en', in array_record format.

    Preparing downloads the data (network needed once; WMT takes hours and many GB).
    """
    try:
        builder = tfds.builder(name, data_dir=default_data_dir(data_dir))
    except Exception as e:
        raise DataError(
            f"TFDS has no dataset {name!r} ({e}). See "
            "https://www.tensorflow.org/datasets/catalog/overview."
        ) from e
    if not builder.is_prepared():
        if not download:
            raise FileNotFoundError(
                f"{name} is not prepared in {builder.data_dir} and "
                "download=False: set config.data.download=True."
            )
        with spill_without_tensorflow():
            builder.download_and_prepare(file_format="array_record")
    fmt = builder.info.file_format
    if fmt is not None and fmt != tfds.core.FileFormat.ARRAY_RECORD:
        raise DataError(
            f"{name} in {builder.data_dir} was prepared as {fmt.value}; reading without "
            "TensorFlow needs array_record. Delete that folder or use another "
            "config.data.data_dir, and it will be prepared again as array_record."
        )
    return builder


def data_sources(builder, splits: dict[str, str] | None = None) -> dict[str, Sequence]:
    """{our split name: random-access data source}; `splits` maps our names (train,
    validation, test) to the builder's (also slices such as 'train[:10%]'); splits the
    builder lacks are left out."""
    available = set(builder.info.splits.keys())
    splits = splits or {s: s for s in SPLITS}
    order = sorted(splits, key=lambda s: (SPLITS.index(s) if s in SPLITS else len(SPLITS), s))
    return {
        ours: builder.as_data_source(split=splits[ours])
        for ours in order
        if splits[ours] and splits[ours].split("[")[0] in available
    }


def read_texts(
    source: Sequence, src_key: str = "src", tgt_key: str = "tgt", name: str = ""
) -> tuple[list[str], list[str]]:
    """A data source's examples -> (source texts, target texts), decoded from UTF-8."""
    src, tgt = TextColumn(source, src_key, name), TextColumn(source, tgt_key, name)
    return list(src), list(tgt)


class TextColumn(Sequence):
    """One feature of a data source's examples as a sequence of str, read on demand in blocks
    of 4096 (a training split is iterated, never held as a list)."""

    def __init__(self, source: Sequence, key: str, name: str = ""):
        self.source, self.key, self.name = source, key, name
        if len(source):
            first = source[0]
            if key not in first:
                raise DataError(
                    f"{name or 'The dataset'} has no feature {key!r}; its examples "
                    f"have {sorted(first)}. Set src_lang/tgt_lang to two of these."
                )
        self._raw = _raw_text_reader(source, key)  # None: TFDS's own deserialization

    def __len__(self) -> int:
        return len(self.source)

    def _read(self, idx: range) -> list[str]:
        if self._raw is not None:
            return [v.decode("utf-8") for v in self._raw(idx)]
        get_many = getattr(self.source, "__getitems__", None)
        examples = get_many(idx) if get_many else [self.source[i] for i in idx]
        values = (ex[self.key] for ex in examples)
        return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]

    def __getitem__(self, i):
        if isinstance(i, slice):
            return self._read(range(len(self))[i])
        return self._read(range(len(self))[i : i + 1 or None])[0]

    def __iter__(self):
        n = len(self)
        for start in range(0, n, 4096):
            yield from self._read(range(start, min(n, start + 4096)))


def _raw_text_reader(source, key: str):
    """For a TFDS array_record data source whose `key` is a top-level Text feature: a
    function range -> [bytes] that parses each record's tf.Example proto for that one
    feature, about 5x faster than TFDS's generic deserialization (a 20-million-pair
    training split is read four times when it is prepared). Checked against TFDS's own
    reading on the first record; None (use TFDS's) when it does not apply or differs."""
    try:
        from tensorflow_datasets.proto import tf_example_pb2

        raw_source = source.data_source
        if not isinstance(source.dataset_info.features[key], tfds.features.Text):
            return None
    except (AttributeError, KeyError, ImportError, TypeError):
        return None

    def read(idx) -> list[bytes]:
        parse = tf_example_pb2.Example.FromString
        records = raw_source.__getitems__(list(idx))
        return [parse(r).features.feature[key].bytes_list.value[0] for r in records]

    try:
        if len(source) and read(range(1)) != [source[0][key]]:
            return None
    except Exception:  # noqa: BLE001 - any surprise: TFDS's own path
        return None
    return read


def input_files(builder) -> tuple[str, ...]:
    """The text files a jaxattn builder reads (its content digest covers them); () for a
    catalog dataset (TFDS's own files)."""
    c = builder.builder_config
    if isinstance(c, ParallelTextConfig):
        return tuple(f for _, a, b in c.files for f in (a, b) if f)
    if isinstance(c, EngFraConfig):
        return (c.source,)
    return ()
