"""Reading text files, once for every use: training corpora (TSV and line-aligned files) and
evaluation input (source/reference files, stdin) go through the same functions.

Bad lines are skipped and counted where a corpus is read (`read_tsv_pairs`,
`read_aligned_pairs`: `(pairs, counts)`, pairs of stripped text in file order, counts 'lines'
read, 'pairs' kept and one 'skipped_*' entry per reason), and named where every line counts
(`read_lines`, `read_parallel`). Hopeless input is a clear error: ValueError or
FileNotFoundError saying what is wrong and what to do.

Every file is read through `read_bytes`: plain UTF-8 text, or a zip archive holding the
tutorial's eng-fra.txt. A damaged archive (a truncated download, a corrupted member, a file
named .zip that is none) and a compressed file (gzip, bzip2, xz, zstd, 7z, tar: not read) are
a DataError naming the file and what to do, never a zlib/zipfile traceback.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import lzma
import os
import re
import struct
import sys
import zipfile
import zlib
from collections.abc import Iterator

from jaxattn.errors import DataError

log = logging.getLogger(__name__)

TUTORIAL_URL = "https://download.pytorch.org/tutorial/data.zip"
# sha256 of data/eng-fra.txt inside the tutorial's data.zip (135,842 lines).
TUTORIAL_SHA256 = "6b0f3decdb78600485b58efb541f5a2ab69ba888742ac04180e013084e40de7c"
TUTORIAL_MEMBER = "eng-fra.txt"


# Leading bytes of the compressed and archive formats that are no text: (format, how to unpack).
_PACKED = (
    (b"\x1f\x8b", "gzip", "gunzip"),
    (b"\xfd7zXZ\x00", "xz", "unxz"),
    (b"\x28\xb5\x2f\xfd", "zstd", "unzstd"),
    (b"7z\xbc\xaf\x27\x1c", "7z", "7z x"),
    (b"Rar!\x1a\x07", "rar", "unrar x"),
)
_BZIP2 = re.compile(rb"BZh[1-9](1AY&SY|\x17rE8P\x90)")  # a block, or the end of an empty stream
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")  # a member; an empty zip; split
# What zipfile raises for damaged data: bad headers, CRC, a truncated or corrupt stream (zlib,
# bz2, lzma), unsupported compression, an encrypted member.
_ZIP_DAMAGE = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    NotImplementedError,
    RuntimeError,
    lzma.LZMAError,
    struct.error,
    ValueError,
)


def read_bytes(path: str | os.PathLike) -> bytes:
    """A file's bytes; '-' reads stdin; `archive.zip` finds TUTORIAL_MEMBER inside (as in the
    tutorial's data.zip, data/eng-fra.txt). DataError naming the file for a damaged zip, a
    file named .zip that is none, or a compressed file (see the module's doc)."""
    path = os.fspath(path)
    if path == "-":
        return sys.stdin.buffer.read()
    if _checked_is_zip(path):
        return _read_zip(path)
    with open(path, "rb") as f:
        return f.read()


_SHA256_MEMO: dict[tuple, str] = {}  # (path, size, mtime_ns) -> sha256, see file_sha256


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of `read_bytes(path)`, a plain file read in 1 MB blocks (never whole), memoized
    by (path, size, mtime) within the process: corpora are fingerprinted at every start."""
    path = os.path.abspath(os.fspath(path))
    if _checked_is_zip(path):
        return sha256(_read_zip(path))
    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime_ns)
    if key not in _SHA256_MEMO:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
        _SHA256_MEMO[key] = h.hexdigest()
    return _SHA256_MEMO[key]


def _checked_is_zip(path: str) -> bool:
    """Whether `path` is a zip archive; FileNotFoundError, IsADirectoryError or a DataError
    (see `read_bytes`) unless it is a zip or a plain file."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"No such file: {path}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a directory, not a text file")
    with open(path, "rb") as f:
        head = f.read(512)
    if zipfile.is_zipfile(path):
        return True
    if head.startswith(_ZIP_MAGIC) or path.lower().endswith(".zip"):
        why = (
            "it starts like one but its end (the member list) is missing or damaged"
            if head.startswith(_ZIP_MAGIC)
            else "it is no zip archive at all"
        )
        raise DataError(
            f"{path} is not a readable zip archive: {why}. A truncated or "
            "damaged download? Delete it and download it again, or give the "
            "unpacked text file."
        )
    packed = next(((kind, tool) for magic, kind, tool in _PACKED if head.startswith(magic)), None)
    if packed is None and _BZIP2.match(head):
        packed = ("bzip2", "bunzip2")
    if packed is None and head[257:262] == b"ustar" and head[262:263] in (b"\x00", b" "):
        packed = ("tar", "tar xf")
    if packed:
        kind, tool = packed
        what = "an archive" if kind in ("7z", "rar", "tar") else "compressed"
        raise DataError(
            f"{path} is {what} ({kind}); jaxattn reads plain UTF-8 text (and the "
            f"tutorial's data.zip): unpack it first ({tool} {path}) and give the "
            "text file."
        )
    return False


def _read_zip(path: str) -> bytes:
    """TUTORIAL_MEMBER's bytes from the zip at `path` (the shortest path: data/eng-fra.txt
    before deeper copies); DataError naming the file and member if its data is damaged."""
    member = None
    try:
        with zipfile.ZipFile(path) as z:
            listing = z.namelist()
            names = [n for n in listing if os.path.basename(n) == TUTORIAL_MEMBER]
            if names:
                member = min(names, key=len)
                return z.read(member)
    except _ZIP_DAMAGE + (OSError,) as e:
        if isinstance(e, OSError) and e.errno not in (None, errno.EINVAL):
            raise  # the system's (permissions, I/O), not the data's; EINVAL: a bad offset
        what = f"its member {member}" if member else "its member list"
        kind = type(e).__name__ if type(e).__name__ != "error" else f"{type(e).__module__}.error"
        raise DataError(
            f"{path} is a damaged zip archive: {what} cannot be read "
            f"({kind}: {str(e) or 'no details'}). A truncated or "
            "corrupted download? Delete it and download it again, or give the "
            "unpacked text file."
        ) from None
    raise FileNotFoundError(
        f"{path} is a zip without {TUTORIAL_MEMBER} inside (it holds {listing[:5]}...); "
        "give the text file's path instead."
    )


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
    lines = [_decode_line(line, name, n) for n, line in enumerate(raw, 1)]
    return lines, [n for n, line in enumerate(lines, 1) if line is None]


def _decode_line(line: bytes, name: str, n: int) -> str | None:
    """Line n (no line end) decoded, its '\\r' removed; None if it is not UTF-8."""
    try:
        return line.decode("utf-8").removesuffix("\r")
    except UnicodeDecodeError as e:
        log.debug("%s line %d: %s", name, n, e)
        return None


def _streamed_lines(path: str) -> tuple[int, Iterator[str | None]]:
    """(line count, lines) of a file as `_decoded(read_bytes(path))` gives them, read line by
    line (a zip archive: whole): the count (a first pass over the bytes, in 1 MB blocks)
    comes before any line, so that misaligned files fail before any work."""
    if _checked_is_zip(path):
        lines, _ = _decoded(read_bytes(path), path)
        return len(lines), iter(lines)
    newlines, size, last, blank = 0, 0, b"", True
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            if not size and block.startswith(b"\xef\xbb\xbf"):
                blank, block = False, block[3:]  # `_decoded` sees the mark as text
            newlines, size, last = newlines + block.count(b"\n"), size + len(block), block[-1:]
            blank = blank and not block.strip()
    if blank:
        raise DataError(f"{path} is empty: there is no text to read.")
    count = newlines + (size > 0 and last != b"\n")

    def lines() -> Iterator[str | None]:
        with open(path, "rb") as f:
            for n, line in enumerate(f, 1):
                if n == 1 and line.startswith(b"\xef\xbb\xbf"):
                    line = line[3:]
                yield _decode_line(line.removesuffix(b"\n"), path, n)

    return count, lines()


def bad_lines_message(name: str, bad: list[int]) -> str:
    """'NAME: 2 line(s) are not valid UTF-8 (line 3, 9); convert the file ...'."""
    shown = ", ".join(map(str, bad[:10])) + (", ..." if len(bad) > 10 else "")
    return (
        f"{name}: {len(bad)} line(s) are not valid UTF-8 (line {shown}); convert the file "
        "to UTF-8 (e.g. iconv -f latin1 -t utf-8)"
    )


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
        raise DataError(
            f"{src_path} has {len(sources)} lines but {ref_path} has "
            f"{len(references)}: they must align, one sentence a line."
        )
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
        log.warning(
            "%s: skipped %s of %d lines (%s)%s.",
            name,
            sum(skipped.values()),
            counts["lines"],
            ", ".join(f"{k[8:]}: {v}" for k, v in skipped.items()),
            "; " + bad_lines_message(name, bad) if bad else "",
        )
    return counts


def read_tsv_pairs(data: bytes, name: str, columns: tuple[int, int] = (0, 1)):
    """Tab-separated lines -> (column columns[0], column columns[1]) pairs, and counts.

    Skipped and counted: lines with too few tab-separated fields ('no_tab'), undecodable
    bytes ('undecodable'), an empty sentence on either side ('empty').
    """
    lines, bad = _decoded(data, name)
    counts = dict(
        lines=len(lines), pairs=0, skipped_no_tab=0, skipped_undecodable=len(bad), skipped_empty=0
    )
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
    (src_lines, _), (tgt_lines, _) = _decoded(src_data, src_name), _decoded(tgt_data, tgt_name)
    counts: dict = {}
    pairs = list(_aligned(src_lines, tgt_lines, src_name, tgt_name, counts))
    return pairs, counts


def stream_aligned_pairs(src_path: str, tgt_path: str, counts: dict) -> Iterator[tuple[str, str]]:
    """`read_aligned_pairs` of two files, line by line (no list of all lines): the line
    counts are checked now (DataError before any work), the pairs are yielded as they are
    read, and `counts` is complete (and reported) once the last one is."""
    (n_src, src_lines), (n_tgt, tgt_lines) = _streamed_lines(src_path), _streamed_lines(tgt_path)
    _check_aligned(n_src, n_tgt, src_path, tgt_path)
    return _aligned(src_lines, tgt_lines, src_path, tgt_path, counts, n_src)


def _check_aligned(n_src: int, n_tgt: int, src_name: str, tgt_name: str) -> None:
    if n_src != n_tgt:
        raise DataError(
            f"{src_name} has {n_src} lines but {tgt_name} has {n_tgt}: "
            "line-aligned files need one line per sentence on both sides. Fix the files "
            "(a missing or extra line shifts every later pair)."
        )


def _aligned(src_lines, tgt_lines, src_name, tgt_name, counts: dict, lines: int | None = None):
    """Pairs of line i of each side (stripped), skipping and counting undecodable and empty
    ones into `counts`, reported (`_report`) after the last."""
    if lines is None:
        lines = len(src_lines)
        _check_aligned(lines, len(tgt_lines), src_name, tgt_name)
    counts.update(lines=lines, pairs=0, skipped_undecodable=0, skipped_empty=0)
    bad = []
    for n, (src, tgt) in enumerate(zip(src_lines, tgt_lines, strict=True), 1):
        if src is None or tgt is None:
            counts["skipped_undecodable"] += 1
            bad.append(n)
        elif not src.strip() or not tgt.strip():
            counts["skipped_empty"] += 1
        else:
            counts["pairs"] += 1
            yield src.strip(), tgt.strip()
    _report(counts, f"{src_name} + {tgt_name}", bad)
