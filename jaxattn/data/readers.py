"""Reading parallel text robustly: bad lines are skipped and counted, hopeless input is a clear
error (ValueError / FileNotFoundError saying what is wrong and what to do).

Both readers return `(pairs, counts)`: pairs of stripped str, in file order, and a dict of
counts: 'lines' read, 'pairs' kept, and one 'skipped_*' entry per reason.
"""

from __future__ import annotations

import hashlib
import logging
import os
import zipfile

log = logging.getLogger(__name__)

TUTORIAL_URL = "https://download.pytorch.org/tutorial/data.zip"
# sha256 of data/eng-fra.txt inside the tutorial's data.zip (135,842 lines).
TUTORIAL_SHA256 = "6b0f3decdb78600485b58efb541f5a2ab69ba888742ac04180e013084e40de7c"
TUTORIAL_MEMBER = "eng-fra.txt"


def read_bytes(path: str | os.PathLike) -> bytes:
    """A file's bytes; `archive.zip` finds TUTORIAL_MEMBER inside (as in the tutorial's
    data.zip, data/eng-fra.txt)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No such file: {path}")
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


def _lines(data: bytes, name: str) -> list[bytes]:
    """Lines without line ends; a final newline does not make an empty last line."""
    if not data.strip():
        raise ValueError(f"{name} is empty: there is no text to read.")
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return [line[:-1] if line.endswith(b"\r") else line for line in lines]


def _decode(line: bytes) -> str | None:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _report(counts: dict, name: str) -> dict:
    skipped = {k: v for k, v in counts.items() if k.startswith("skipped_") and v}
    if not counts["pairs"]:
        raise ValueError(
            f"No usable sentence pairs in {name}: {counts['lines']} lines, skipped {skipped}. "
            "Expected UTF-8 text, one sentence pair a line."
        )
    if skipped:
        log.warning("%s: skipped %s of %d lines (%s).", name, sum(skipped.values()),
                    counts["lines"], ", ".join(f"{k[8:]}: {v}" for k, v in skipped.items()))
    return counts


def read_tsv_pairs(data: bytes, name: str, columns: tuple[int, int] = (0, 1)):
    """Tab-separated lines -> (column columns[0], column columns[1]) pairs.

    Skipped and counted: lines with too few tab-separated fields ('no_tab'), undecodable
    bytes ('undecodable'), an empty sentence on either side ('empty').
    """
    counts = dict(lines=0, pairs=0, skipped_no_tab=0, skipped_undecodable=0, skipped_empty=0)
    pairs = []
    need = max(columns) + 1
    for raw in _lines(data, name):
        counts["lines"] += 1
        line = _decode(raw)
        if line is None:
            counts["skipped_undecodable"] += 1
            continue
        if not line.strip():
            counts["skipped_empty"] += 1
            continue
        fields = line.split("\t")
        if len(fields) < need:
            counts["skipped_no_tab"] += 1
            continue
        src, tgt = fields[columns[0]].strip(), fields[columns[1]].strip()
        if not src or not tgt:
            counts["skipped_empty"] += 1
            continue
        pairs.append((src, tgt))
    counts["pairs"] = len(pairs)
    return pairs, _report(counts, name)


def read_aligned_pairs(src_data: bytes, tgt_data: bytes, src_name: str, tgt_name: str):
    """Two line-aligned files -> pairs of line i of each.

    Different line counts mean the alignment is unknown: a ValueError, naming both files.
    Skipped and counted: pairs with undecodable bytes or an empty line on either side.
    """
    src_lines, tgt_lines = _lines(src_data, src_name), _lines(tgt_data, tgt_name)
    if len(src_lines) != len(tgt_lines):
        raise ValueError(
            f"{src_name} has {len(src_lines)} lines but {tgt_name} has {len(tgt_lines)}: "
            "line-aligned files need one line per sentence on both sides. Fix the files "
            "(a missing or extra line shifts every later pair)."
        )
    counts = dict(lines=len(src_lines), pairs=0, skipped_undecodable=0, skipped_empty=0)
    pairs = []
    for s, t in zip(src_lines, tgt_lines, strict=True):
        src, tgt = _decode(s), _decode(t)
        if src is None or tgt is None:
            counts["skipped_undecodable"] += 1
            continue
        src, tgt = src.strip(), tgt.strip()
        if not src or not tgt:
            counts["skipped_empty"] += 1
        else:
            pairs.append((src, tgt))
    counts["pairs"] = len(pairs)
    return pairs, _report(counts, f"{src_name} + {tgt_name}")
