"""The training split's token ids, prepared once: text -> ids on disk, read by every run.

`train_ids(cfg, resolved, train, tp, corpus)` returns the `TokenIds` of the training pairs:
for each side a flat int32[M] array of every pair's ids (no EOS) and int64[N + 1] offsets,
pair i being ids[offsets[i]:offsets[i + 1]]. A TFDS-backed corpus (tutorial, parallel,
tfds) is tokenized once, side by side, streamed in blocks (never a list of all pairs), into::

    CACHE/<key>/{src,tgt}_ids.npy, {src,tgt}_offsets.npy, meta.json

read by later runs, resumes, evaluation and translation (which then read no training
text) a batch's rows at a time (`FileArray`: `os.pread`, no memory map, so a process holds
a few bytes a pair whatever the corpus size). CACHE is data.cache_dir, else
$JAXATTN_CACHE, else ~/.cache/jaxattn (the corpus folders may be read-only). The key is a
sha256 of the corpus's identity (its TFDS builder's name, which holds its files' sha256
and options, the training split's slice),
the options that turn text into tokens (tokenizer, normalize, lowercase) and the
vocabularies and SentencePiece models: anything else that changes gives another key, so a
stale entry is never read. A corpus file that changed since an entry was prepared is named
in a warning (its size, mtime and sha256 are in meta.json) before it is prepared again.

The vocabularies and SentencePiece models of a fresh run are cached too, in CACHE/vocab-<key>/
(`text_processing`: the files `processing.save_text_processing` writes), keyed by the corpus
and the fields a vocabulary depends on, so a second fresh run reads no training text either.

An entry is written into a temporary folder (.<key>.tmp-<host>-<pid>-*) and renamed into
place once complete, meta.json last: a full disk, an exception or a kill leaves no entry a
later run reads. A kill leaves its temporary folder; the next write on the same host
deletes those whose process is gone (another host's are left: that host may still be
writing). Synthetic corpora (made in memory at every start) get in-memory arrays.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Sequence

import numpy as np

from jaxattn.data.processing import build_processing, load_text_processing, save_text_processing
from jaxattn.data.readers import file_sha256
from jaxattn.errors import DataError
from jaxattn.rundir.layout import SRC_VOCAB_FILE

log = logging.getLogger(__name__)

FORMAT = 1  # bump when the files' layout or the ids' meaning changes
SIDES = ("src", "tgt")
META_FILE = "meta.json"
VOCAB_PREFIX = "vocab-"  # the vocabulary entries' names; the ids entries' are bare keys
_HEADER = 128  # bytes of a 1-D .npy header (numpy pads it to this, whatever the length)
_BLOCK = 4096  # pairs tokenized and written at a time


class FileArray:
    """A 1-D .npy file read by slices with `os.pread`, nothing mapped or held: reading rows
    all over a corpus of tens of millions of pairs leaves the process's resident memory as it
    was (a memory map's touched pages would count in it). `a[i:j]` -> np.ndarray."""

    def __init__(self, path: str):
        self.path = path
        with open(path, "rb") as f:
            read = {(1, 0): np.lib.format.read_array_header_1_0}.get(
                np.lib.format.read_magic(f), np.lib.format.read_array_header_2_0
            )
            shape, fortran, self.dtype = read(f)
            self.start = f.tell()
        if len(shape) != 1 or fortran:
            raise DataError(f"{path} is not a 1-D array; delete its folder to prepare it again.")
        self.size = shape[0]
        self._fd, self._pid = os.open(path, os.O_RDONLY), os.getpid()

    def __getstate__(self):
        return {**self.__dict__, "_fd": None, "_pid": None}

    def __del__(self):
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, item: slice) -> np.ndarray:
        start, stop, step = item.indices(self.size)
        if step != 1:
            raise IndexError("FileArray takes contiguous slices only.")
        count = max(stop - start, 0)
        if self._pid != os.getpid():  # opened per process (a forked or unpickled copy)
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        size = self.dtype.itemsize
        data = os.pread(self._fd, count * size, self.start + start * size)
        if len(data) != count * size:
            raise DataError(f"{self.path} is shorter than its header says: prepare it again.")
        return np.frombuffer(data, self.dtype)


class TokenIds:
    """Training pairs' token ids: per side (flat int32[M] ids, int64[N + 1] offsets), numpy
    arrays (a synthetic corpus) or `FileArray`s (a prepared entry)."""

    def __init__(self, sides: Sequence[tuple]):
        self.sides = tuple(sides)
        if len({len(off) for _, off in self.sides}) != 1:
            raise DataError("The prepared source and target ids hold different pair counts.")

    def __len__(self) -> int:
        return len(self.sides[0][1]) - 1

    def counts(self) -> np.ndarray:
        """[N, 2] tokens (no EOS) of each pair's source and target, from the offsets read in
        blocks (no int64[N] temporary), in the smallest of uint8/uint16/int32 that holds the
        longest plus one (what training keeps per pair: a few bytes). DataError if the
        offsets are not those of the ids (a damaged entry)."""
        blocks = [[], []]
        for side, (ids, off) in enumerate(self.sides):
            ends = off[0:1].tolist() + off[len(off) - 1 : len(off)].tolist()
            if ends != [0, len(ids)]:
                self._damaged(
                    side, f"offsets run from {ends[0]} to {ends[-1]}, not 0 to {len(ids)}"
                )
            for start in range(0, len(self), 1 << 20):
                block = np.diff(np.asarray(off[start : start + (1 << 20) + 1]))
                if len(block) and block.min() < 0:
                    self._damaged(side, f"offsets decrease after pair {start}")
                blocks[side].append(block.astype(count_dtype(int(block.max(initial=0)))))
        top = max((int(b.max(initial=0)) for side in blocks for b in side), default=0)
        out = np.empty((len(self), 2), count_dtype(top))
        for side in (0, 1):
            out[:, side] = np.concatenate(blocks[side]) if blocks[side] else []
        return out

    def _damaged(self, side: int, what: str):
        where = getattr(self.sides[side][1], "path", "the in-memory ids")
        raise DataError(
            f"The prepared training ids are damaged: {where}: {what}. Delete its folder; the "
            "next run (or scripts/prepare.py) prepares them again."
        )

    def rows(self, side: int, pairs: Sequence[int]) -> list[list[int]]:
        """The ids of `pairs` on side 0 (source) or 1 (target)."""
        ids, off = self.sides[side]
        out = []
        for i in pairs:
            a, b = (int(x) for x in off[i : i + 2])
            out.append(ids[a:b].tolist())
        return out

    @classmethod
    def load(cls, directory: str) -> TokenIds:
        """Read by slices (`FileArray`), from a prepared entry."""
        return cls(
            [
                tuple(
                    FileArray(os.path.join(directory, f"{side}_{part}.npy"))
                    for part in ("ids", "offsets")
                )
                for side in SIDES
            ]
        )


def count_dtype(top: int):
    """The smallest of uint8/uint16/int32 that holds `top` + 1 (a count plus its EOS)."""
    return np.uint8 if top < 255 else np.uint16 if top < 65535 else np.int32


class _NpyWriter:
    """A 1-D .npy file written block by block, its length unknown until `close`."""

    def __init__(self, path: str, dtype):
        self.dtype, self.count = np.dtype(dtype), 0
        self.file = open(path, "wb")  # noqa: SIM115 (closed by close())
        self.file.write(b"\0" * _HEADER)

    def write(self, values) -> None:
        block = np.asarray(values, self.dtype)
        self.file.write(block.tobytes())
        self.count += block.size

    def close(self) -> None:
        self.file.seek(0)
        np.lib.format.write_array_header_1_0(
            self.file,
            {
                "descr": np.lib.format.dtype_to_descr(self.dtype),
                "fortran_order": False,
                "shape": (self.count,),
            },
        )
        assert self.file.tell() == _HEADER, self.file.tell()
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()


def _encode_side(texts: Sequence[str], tok, vocab, side: str, write_ids, write_offsets) -> None:
    """Tokenizes `texts` in blocks; writes their ids and the running offsets (0 first)."""
    end = 0
    write_offsets([0])
    for start in range(0, len(texts), _BLOCK):
        try:
            block = [vocab.encode(tok.tokenize(t)) for t in texts[start : start + _BLOCK]]
        except ValueError as e:  # an unknown word with tutorial_ids
            raise DataError(
                f"Training pair {start}+ ({side}): {e} (The vocabulary comes from the first "
                "data.vocab_sample pairs; raise it, or 0 = all.)"
            ) from None
        lengths = np.fromiter(map(len, block), np.int64, len(block))
        write_ids(np.fromiter((i for ids in block for i in ids), np.int32, int(lengths.sum())))
        write_offsets(end + np.cumsum(lengths))
        end += int(lengths.sum())


def _in_memory(train, tp) -> TokenIds:
    sides = []
    for side, (tok, vocab) in enumerate(
        ((tp.src_tokenizer, tp.src_vocab), (tp.tgt_tokenizer, tp.tgt_vocab))
    ):
        ids, offsets = [], []
        _encode_side(train[side], tok, vocab, SIDES[side], ids.append, offsets.append)
        sides.append((np.concatenate(ids or [np.zeros(0, np.int32)]), np.concatenate(offsets)))
    return TokenIds(sides)


def cache_root(cfg) -> str:
    """Where prepared entries live: data.cache_dir, $JAXATTN_CACHE or ~/.cache/jaxattn."""
    root = cfg.get("cache_dir", "") or os.environ.get("JAXATTN_CACHE", "")
    return os.path.abspath(os.path.expanduser(root or "~/.cache/jaxattn"))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _corpus_identity(corpus: dict) -> dict:
    return {k: corpus[k] for k in ("dataset", "split", "data_dir")}


def fingerprint(cfg, resolved: dict, tp, corpus: dict) -> str:
    """The entry's key: what the training ids depend on (see the module's doc)."""
    parts = dict(
        format=FORMAT,
        corpus=_corpus_identity(corpus),
        tokenizer=resolved["tokenizer"],
        normalize=resolved["normalize"],
        lowercase=bool(cfg.lowercase),
        vocabs=[_sha("\n".join(v.tokens).encode()) for v in (tp.src_vocab, tp.tgt_vocab)],
        sp_models=[
            _sha(t.sp_model) if t.sp_model else "" for t in (tp.src_tokenizer, tp.tgt_tokenizer)
        ],
    )
    return _sha(json.dumps(parts, sort_keys=True).encode())[:24]


def _file_stamps(files: Sequence[str]) -> dict[str, dict]:
    stamps = {}
    for path in files:
        st = os.stat(path)
        stamps[os.path.abspath(path)] = dict(
            size=st.st_size, mtime_ns=st.st_mtime_ns, sha256=file_sha256(path)
        )
    return stamps


def _report_changed(root: str, stamps: dict[str, dict]) -> None:
    """Warns about each corpus file that changed since an entry of the same files was made."""
    if not stamps or not os.path.isdir(root):
        return
    for name in sorted(os.listdir(root)):
        try:
            with open(os.path.join(root, name, META_FILE), encoding="utf-8") as f:
                old = json.load(f).get("files", {})
        except (OSError, ValueError, AttributeError):
            continue
        if set(old) != set(stamps):
            continue
        for path, now in stamps.items():
            if old[path] != now:
                log.warning(
                    "%s changed since its token ids were prepared in %s (size %s -> %s, "
                    "sha256 %s... -> %s...): preparing them again.",
                    path,
                    os.path.join(root, name),
                    old[path].get("size"),
                    now["size"],
                    str(old[path].get("sha256"))[:12],
                    now["sha256"][:12],
                )


def _tmp_prefix(name: str, host: str | None = None, pid: int | None = None) -> str:
    host = socket.gethostname() if host is None else host
    return f".{name}.tmp-{host.replace('-', '_')}-{os.getpid() if pid is None else pid}-"


def remove_stale(root: str) -> list[str]:
    """Deletes the temporary folders in `root` left by a killed write on this host (their
    process is gone); returns their names. Another host's are left alone."""
    host, removed = socket.gethostname().replace("-", "_"), []
    for entry in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        parts = entry.rsplit(".tmp-", 1)
        fields = parts[1].split("-") if len(parts) == 2 and entry.startswith(".") else []
        if len(fields) < 3 or fields[0] != host or not fields[1].isdigit():
            continue
        try:
            os.kill(int(fields[1]), 0)
            continue  # alive: it may be writing now
        except ProcessLookupError:
            pass
        except PermissionError:  # alive, another user's
            continue
        shutil.rmtree(os.path.join(root, entry), ignore_errors=True)
        removed.append(entry)
    if removed:
        log.info(
            "Deleted %d unfinished prepared folder(s) of killed runs in %s.", len(removed), root
        )
    return removed


def _write_entry(root: str, name: str, write, meta: dict) -> str:
    """CACHE/<name>/: `write(folder)` fills a temporary folder, META_FILE (`meta`) is written
    last and the folder renamed into place: a failure leaves no entry (see the module's doc)."""
    directory = os.path.join(root, name)
    try:
        os.makedirs(root, exist_ok=True)
        remove_stale(root)
        tmp = tempfile.mkdtemp(prefix=_tmp_prefix(name), dir=root)
    except OSError as e:
        raise DataError(
            f"Cannot write the prepared training data to {root} ({e}): set "
            "--config.data.cache_dir (or $JAXATTN_CACHE) to a writable folder."
        ) from None
    try:
        write(tmp)
        with open(os.path.join(tmp, META_FILE), "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=1)
        try:
            os.rename(tmp, directory)
        except OSError:  # another process prepared it first
            if not os.path.exists(os.path.join(directory, META_FILE)):
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def processing_key(cfg, resolved: dict, corpus: dict) -> str:
    """The vocabulary entry's key: the corpus and every field a vocabulary or SentencePiece
    model depends on (tokenizer, normalize, lowercase, tutorial_ids, vocab_*, sp_*)."""
    fields = {
        k: cfg[k]
        for k in sorted(cfg.keys())
        if k.startswith(("vocab_", "sp_")) or k in ("lowercase", "tutorial_ids")
    }
    fields["vocab_sample"] = cfg.get("vocab_sample", 0)  # old configs lack the field
    parts = dict(
        format=FORMAT,
        corpus=_corpus_identity(corpus),
        tokenizer=resolved["tokenizer"],
        normalize=resolved["normalize"],
        fields=fields,
    )
    return VOCAB_PREFIX + _sha(json.dumps(parts, sort_keys=True, default=list).encode())[:24]


def text_processing(cfg, resolved: dict, train, corpus: dict | None, vocab_dir: str | None):
    """A run's `processing.TextProcessing`: from vocab_dir when it holds the vocabularies (a
    resume, evaluation), else for a TFDS-backed corpus from its cache entry (built from
    `train` and written there first if there is none), else built from `train`."""
    if corpus is None or (vocab_dir and os.path.exists(os.path.join(vocab_dir, SRC_VOCAB_FILE))):
        return build_processing(cfg, resolved, train, vocab_dir)
    root = cache_root(cfg)
    name = processing_key(cfg, resolved, corpus)
    directory = os.path.join(root, name)
    if os.path.exists(os.path.join(directory, META_FILE)):
        log.info("Vocabularies from %s.", directory)
        return load_text_processing(cfg, directory)
    tp = build_processing(cfg, resolved, train, None)
    meta = {
        **_corpus_identity(corpus),
        "format": FORMAT,
        "vocab_sizes": [len(tp.src_vocab), len(tp.tgt_vocab)],
    }
    _write_entry(root, name, lambda folder: save_text_processing(cfg, tp, folder), meta)
    return tp


def train_ids(cfg, resolved: dict, train, tp, corpus: dict | None) -> TokenIds:
    """The training pairs' ids: from the cache entry of this corpus and text processing,
    prepared first if there is none; in memory for a synthetic corpus (`corpus` None).
    `train` is (sources, targets), sequences of the training split's text."""
    if corpus is None:
        return _in_memory(train, tp)
    root = cache_root(cfg)
    key = fingerprint(cfg, resolved, tp, corpus)
    directory = os.path.join(root, key)
    stamps = _file_stamps(corpus["files"])
    if os.path.exists(os.path.join(directory, META_FILE)):
        log.info("Training token ids from %s.", directory)
        return TokenIds.load(directory)
    _report_changed(root, stamps)
    log.info("Preparing the training token ids of %d pairs in %s.", len(train[0]), directory)

    def write(folder: str) -> None:
        for side, (tok, vocab) in enumerate(
            ((tp.src_tokenizer, tp.src_vocab), (tp.tgt_tokenizer, tp.tgt_vocab))
        ):
            ids = _NpyWriter(os.path.join(folder, f"{SIDES[side]}_ids.npy"), np.int32)
            offsets = _NpyWriter(os.path.join(folder, f"{SIDES[side]}_offsets.npy"), np.int64)
            _encode_side(train[side], tok, vocab, SIDES[side], ids.write, offsets.write)
            ids.close()
            offsets.close()

    meta = {**corpus, "format": FORMAT, "pairs": len(train[0]), "files": stamps}
    return TokenIds.load(_write_entry(root, key, write, meta))
