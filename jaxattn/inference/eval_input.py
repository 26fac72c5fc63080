"""Evaluation input: the (sources, references) a run is evaluated on, from line-aligned files,
a TSV file read as the run's corpus was, or a split of the run's corpus (rebuilt with the run's
own vocabularies, nothing retrained). InferenceError for anything unreadable.

Lines are read one at a time with a bound on their length (`iter_lines`: the input limit's
characters, `InputLimit.chars`), so a huge line is refused (InputTooLongError) or cut as soon
as it is seen, never held in memory whole; `names` says how messages name sentence i. The
scripts' input-limit flags: --max_input_len, --truncate_long (`limit_options`).
"""

from __future__ import annotations

import logging
import os
import sys
import zipfile
from collections.abc import Callable, Iterator
from typing import BinaryIO

import ml_collections

from jaxattn import data as data_lib
from jaxattn.data.readers import bad_lines_message, read_parallel
from jaxattn.errors import DataError, InferenceError, UsageError
from jaxattn.inference.translation import InputLimit

log = logging.getLogger(__name__)

_BOM = b"\xef\xbb\xbf"


# ------------------------------------------------------------------------ flags
def limit_options(default_overlong: str = "error") -> dict:
    """translate()/evaluate()/score() keywords from --max_input_len and --truncate_long:
    {'max_input_len', 'overlong'} ('truncate' with --truncate_long, else `default_overlong`)."""
    from absl import flags

    value = flags.FLAGS.max_input_len
    if value is not None and value < 1:
        raise UsageError(f"--max_input_len must be >= 1, got {value}.")
    return dict(
        max_input_len=value, overlong="truncate" if flags.FLAGS.truncate_long else default_overlong
    )


# ------------------------------------------------------------------------ bounded lines
def iter_lines(
    stream: BinaryIO, name: str, limit: InputLimit, overlong: str = "error"
) -> Iterator[tuple[int, str | None]]:
    """(1-based number, text) of each line of a binary stream, as readers.decode_lines reads
    them (UTF-8, no line end, no byte order mark; None for an undecodable line), reading at
    most 4 x limit.chars bytes of a line: a longer one raises InputTooLongError naming it
    (`overlong` 'error'), or ('truncate') gives its first part, the rest of it skipped unread
    into memory (its text then has more than limit.chars characters: the Translator cuts it)."""
    most = 4 * limit.chars + 8  # bytes: UTF-8 takes at most 4 a character, and \r\n
    n = 0
    while True:
        raw = stream.readline(most + 1)
        if not raw:
            return
        n += 1
        if n == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        if len(raw) > most and not raw.endswith(b"\n"):
            if overlong == "error":
                raise limit.error(f"line {n} of {name}", limit.chars, "characters", at_least=True)
            while (rest := stream.readline(1 << 20)) and not rest.endswith(b"\n"):
                pass  # the rest of the line, a megabyte at a time
            yield n, _decode_cut(raw)
            continue
        try:
            yield n, raw.removesuffix(b"\n").decode("utf-8").removesuffix("\r")
        except UnicodeDecodeError:
            yield n, None


def _decode_cut(raw: bytes) -> str | None:
    """The text of a line's first bytes, which may end inside a character."""
    for end in range(len(raw), max(len(raw) - 4, 0), -1):
        try:
            return raw[:end].decode("utf-8")
        except UnicodeDecodeError:
            continue
    return None


def read_lines(path: str, limit: InputLimit, overlong: str = "error") -> list[str]:
    """A UTF-8 file's lines ('-': stdin) through `iter_lines`; DataError naming the undecodable
    lines, FileNotFoundError / IsADirectoryError for a path that is no file."""
    if path != "-" and not os.path.exists(path):
        raise FileNotFoundError(f"No such file: {path}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a directory, not a text file")
    if path == "-":
        lines = list(iter_lines(sys.stdin.buffer, "stdin", limit, overlong))
    else:
        with open(path, "rb") as f:
            lines = list(iter_lines(f, path, limit, overlong))
    bad = [n for n, line in lines if line is None]
    if bad:
        raise DataError(bad_lines_message(path, bad) + ".")
    return [line for _, line in lines]


def names(
    *,
    split: str | None = None,
    src: str | None = None,
    ref: str | None = None,
    tsv: str | None = None,
    target: bool = False,
    **_,
) -> Callable[[int], str]:
    """How messages name sentence i of `load_pairs`' input (`target`: its reference): 'line 3
    of test.fr', 'pair 3 kept from pairs.tsv', 'sentence 3 of the test split'."""
    if src is not None:
        return lambda i: f"line {i + 1} of {ref if target else src}"
    what = "the target of " if target else ""
    if tsv is not None:
        return lambda i: f"{what}pair {i + 1} kept from {tsv}"
    return lambda i: f"{what}sentence {i + 1} of the {split or 'test'} split"


def load_pairs(
    translator,
    *,
    split: str | None = None,
    src: str | None = None,
    ref: str | None = None,
    tsv: str | None = None,
    data_path: str = "",
    max_input_len: int | None = None,
    overlong: str | None = None,
) -> tuple[list[str], list[str], dict | None]:
    """(sources, references, TSV reading counts or None) to evaluate a run on: line-aligned
    `src` + `ref` files, a `tsv` file (read as the run's corpus was: columns, direction,
    filter), or a `split` of the run's corpus (default 'test'). InferenceError if unreadable.
    Lines of `src` and `ref` are bounded by the translator's input limit (for `max_input_len`;
    `iter_lines`, with `overlong`, None: the translator's): a huge line stops the reading.
    """
    try:
        if src is not None:
            return *_read_files(translator, src, ref, max_input_len, overlong), None
        if tsv is not None:
            return data_lib.read_tsv(tsv, translator.config.data, translator.max_length)
    except InferenceError:  # InputTooLongError: already what to say
        raise
    except (OSError, ValueError) as e:
        raise InferenceError(str(e)) from None
    return *load_split(translator.config, translator.workdir, split or "test", data_path), None


def _read_files(
    translator, src: str, ref: str, max_input_len: int | None, overlong: str | None
) -> tuple[list[str], list[str]]:
    """read_parallel's (sources, references), each line bounded (`read_lines`)."""
    if any(p != "-" and zipfile.is_zipfile(p) for p in (src, ref) if os.path.isfile(p)):
        return read_parallel(src, ref)  # the tutorial's data.zip: read whole, as before
    if hasattr(translator, "input_limit"):
        overlong = overlong or translator.overlong
        src_limit = translator.input_limit(max_input_len)
        limit = translator.input_limit(max_input_len, side="target")
    else:  # any object: lines bounded only by UNLIMITED_CHARS
        overlong, src_limit = overlong or "error", InputLimit(max_input_len, "max_input_len")
        limit = src_limit
    sources = read_lines(src, src_limit, overlong)
    references = read_lines(ref, limit, overlong)
    long = [i for i, r in enumerate(references) if len(r) > limit.chars]
    if long and overlong == "error":  # sources: the Translator checks them
        i = long[0]
        raise limit.error(f"line {i + 1} of {ref}", len(references[i]), "characters")
    if long:
        references = [r[: limit.chars] for r in references]
        log.warning(
            "%s: %d reference line(s) cut to %s characters (line %s).",
            ref,
            len(long),
            f"{limit.chars:,}",
            ", ".join(str(i + 1) for i in long[:10]) + (", ..." if len(long) > 10 else ""),
        )
    if len(sources) != len(references):
        raise DataError(
            f"{src} has {len(sources)} lines but {ref} has {len(references)}: "
            "they must align, one sentence a line."
        )
    if not sources:
        raise DataError(f"{src} is empty: nothing to evaluate.")
    return sources, references


def load_split(
    config: ml_collections.ConfigDict, workdir: str, split: str, data_path: str = ""
) -> tuple[list[str], list[str]]:
    """(sources, references) of a split of the run's corpus, built with the run's own
    vocabularies (nothing is retrained; a prepared TFDS dataset is reused)."""
    data_cfg = ml_collections.ConfigDict(config.data.to_dict())
    if data_path:
        data_cfg.path = data_path
    try:
        data = data_lib.build(data_cfg, vocab_dir=workdir)
    except (FileNotFoundError, ValueError, OSError) as e:
        raise InferenceError(
            f"Cannot read this run's corpus (config.data.path={data_cfg.path!r}): {e}\n"
            "Evaluate on files instead (--src FILE --ref FILE, or --tsv FILE), or point to the "
            "corpus with --data_path."
        ) from None
    if split not in data.splits:
        raise UsageError(
            f"No {split!r} split in this run's corpus; it has {', '.join(data.splits)}."
        )
    sources, references = data.sources(split), data.references(split)
    if not sources:
        raise InferenceError(f"The {split!r} split is empty; use another --split.")
    return sources, references
