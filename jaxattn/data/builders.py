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

import dataclasses
import hashlib
import json
import logging
import os
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
        """Examples of a streamed split, keyed by their index; its reading `counts` (complete
        after the last pair) go into the metadata, written once every split is generated."""
        for key, (src, tgt) in enumerate(pairs):
            yield key, {"src": src, "tgt": tgt}
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
        builder.download_and_prepare(file_format="array_record")
    return builder


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

    def __len__(self) -> int:
        return len(self.source)

    def _read(self, idx: range) -> list[str]:
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


def input_files(builder) -> tuple[str, ...]:
    """The text files a jaxattn builder reads (its content digest covers them); () for a
    catalog dataset (TFDS's own files)."""
    c = builder.builder_config
    if isinstance(c, ParallelTextConfig):
        return tuple(f for _, a, b in c.files for f in (a, b) if f)
    if isinstance(c, EngFraConfig):
        return (c.source,)
    return ()
