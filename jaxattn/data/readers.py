"""Reading text files, once for every use: training corpora (TSV and line-aligned files) and
evaluation input (source/reference files, stdin) go through the same functions.

Bad lines are skipped and counted where a corpus is read (`read_tsv_pairs`,
`read_aligned_pairs`: `(pairs, counts)`, pairs of stripped text in file order, counts 'lines'
read, 'pairs' kept and one 'skipped_*' entry per reason), and named where every line counts
(`read_lines`, `read_parallel`). Hopeless input is a clear error: ValueError or
FileNotFoundError saying what is wrong and what to do.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import zipfile

from jaxattn.errors import DataError

log = logging.getLogger(__name__)

TUTORIAL_URL = "https://download.pytorch.org/tutorial/data.zip"
# sha256 of data/eng-fra.txt inside the tutorial's data.zip (135,842 lines).
TUTORIAL_SHA256 = "6b0f3decdb78600485b58efb541f5a2ab69ba888742ac04180e013084e40de7c"
TUTORIAL_MEMBER = "eng-fra.txt"


def read_bytes(path: str | os.PathLike) -> bytes:
    """A file's bytes; '-' reads stdin; `archive.zip` finds TUTORIAL_MEMBER inside (as in the
    tutorial's data.zip, data/eng-fra.txt)."""
    path = os.fspath(path)
    if path == "-":
        return sys.stdin.buffer.read()
    if not os.path.exists(path):
        raise FileNotFoundError(f"No such file: {path}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a directory, not a text file")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if os.path.basename(n) == TUTORIAL_MEMBER]
            if not names:
                raise FileNotFoundError(
                    f"{path} is a zip without {TUTORIAL_MEMBER} inside (it holds "
                    f"{z.namelist()[:5]}...); give the text file's path instead."
                )
            return z.read(min(names, key=len))  # data/eng-fra.txt before deeper copies
    with open(path, "rb") as f:
        return f.read()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode_lines(data: bytes, name: str) -> tuple[list[str | None], list[int]]:
    """UTF-8 lines (no line ends, no byte order mark; a final newline adds no line), None for
    each undecodable one. Returns (lines, 1-based numbers of the undecodable lines)."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    raw = data.split(b"\n")
    if raw and raw[-1] == b"":
        raw.pop()
    lines, bad = [], []
    for n, line in enumerate(raw, 1):
        try:
            lines.append(line.decode("utf-8").removesuffix("\r"))
        except UnicodeDecodeError as e:
            lines.append(None)
            bad.append(n)
            log.debug("%s line %d: %s", name, n, e)
    return lines, bad


def bad_lines_message(name: str, bad: list[int]) -> str:
    """'NAME: 2 line(s) are not valid UTF-8 (line 3, 9); convert the file ...'."""
    shown = ", ".join(map(str, bad[:10])) + (", ..." if len(bad) > 10 else "")
    return (f"{name}: {len(bad)} line(s) are not valid UTF-8 (line {shown}); convert the file "
            "to UTF-8 (e.g. iconv -f latin1 -t utf-8)")


def summary(counts: dict) -> str:
    """'7 lines, 2 pairs kept, skipped 1 undecodable, 1 no tab' from reading counts."""
    skipped = {k[8:]: v for k, v in counts.items() if k.startswith("skipped_") and v}
    kept = counts.get("kept", counts.get("pairs"))
    text = f"{counts['lines']} lines, {kept} pairs kept"
    if skipped:
        text += ", skipped " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in skipped.items())
    return text


# ------------------------------------------------------------ every line counts (evaluation)
def read_lines(path: str) -> list[str]:
    """A UTF-8 text file's lines ('-' = stdin); ValueError naming the undecodable lines."""
    lines, bad = decode_lines(read_bytes(path), path)
    if bad:
        raise DataError(bad_lines_message(path, bad) + ".")
    return lines


def read_parallel(src_path: str, ref_path: str) -> tuple[list[str], list[str]]:
    """Line-aligned source and reference files, every line kept (empty ones too)."""
    sources, references = read_lines(src_path), read_lines(ref_path)
    if len(sources) != len(references):
        raise DataError(f"{src_path} has {len(sources)} lines but {ref_path} has "
                         f"{len(references)}: they must align, one sentence a line.")
    if not sources:
        raise DataError(f"{src_path} is empty: nothing to evaluate.")
    return sources, references


# ------------------------------------------------------- skipped and counted (corpora)
def _decoded(data: bytes, name: str) -> tuple[list[str | None], list[int]]:
    if not data.strip():
        raise DataError(f"{name} is empty: there is no text to read.")
    return decode_lines(data, name)


def _report(counts: dict, name: str, bad: list[int]) -> dict:
    skipped = {k: v for k, v in counts.items() if k.startswith("skipped_") and v}
    if not counts["pairs"]:
        raise DataError(
            f"No usable sentence pairs in {name}: {counts['lines']} lines, skipped {skipped}. "
            "Expected UTF-8 text, one sentence pair a line."
        )
    if skipped:
        log.warning("%s: skipped %s of %d lines (%s)%s.", name, sum(skipped.values()),
                    counts["lines"], ", ".join(f"{k[8:]}: {v}" for k, v in skipped.items()),
                    "; " + bad_lines_message(name, bad) if bad else "")
    return counts


def read_tsv_pairs(data: bytes, name: str, columns: tuple[int, int] = (0, 1)):
    """Tab-separated lines -> (column columns[0], column columns[1]) pairs, and counts.

    Skipped and counted: lines with too few tab-separated fields ('no_tab'), undecodable
    bytes ('undecodable'), an empty sentence on either side ('empty').
    """
    lines, bad = _decoded(data, name)
    counts = dict(lines=len(lines), pairs=0, skipped_no_tab=0, skipped_undecodable=len(bad),
                  skipped_empty=0)
    pairs = []
    for line in lines:
        if line is None:
            continue
        fields = line.split("\t")
        if not line.strip():
            counts["skipped_empty"] += 1
        elif len(fields) <= max(columns):
            counts["skipped_no_tab"] += 1
        elif not (src := fields[columns[0]].strip()) or not (tgt := fields[columns[1]].strip()):
            counts["skipped_empty"] += 1
        else:
            pairs.append((src, tgt))
    counts["pairs"] = len(pairs)
    return pairs, _report(counts, name, bad)


def read_aligned_pairs(src_data: bytes, tgt_data: bytes, src_name: str, tgt_name: str):
    """Two line-aligned files -> pairs of line i of each, and counts.

    Different line counts mean the alignment is unknown: a ValueError, naming both files.
    Skipped and counted: pairs with undecodable bytes or an empty line on either side.
    """
    (src_lines, src_bad), (tgt_lines, tgt_bad) = (_decoded(src_data, src_name),
                                                  _decoded(tgt_data, tgt_name))
    if len(src_lines) != len(tgt_lines):
        raise DataError(
            f"{src_name} has {len(src_lines)} lines but {tgt_name} has {len(tgt_lines)}: "
            "line-aligned files need one line per sentence on both sides. Fix the files "
            "(a missing or extra line shifts every later pair)."
        )
    counts = dict(lines=len(src_lines), pairs=0, skipped_undecodable=0, skipped_empty=0)
    pairs = []
    for src, tgt in zip(src_lines, tgt_lines, strict=True):
        if src is None or tgt is None:
            counts["skipped_undecodable"] += 1
        elif not src.strip() or not tgt.strip():
            counts["skipped_empty"] += 1
        else:
            pairs.append((src.strip(), tgt.strip()))
    counts["pairs"] = len(pairs)
    bad = sorted(set(src_bad) | set(tgt_bad))
    return pairs, _report(counts, f"{src_name} + {tgt_name}", bad)
