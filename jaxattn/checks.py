"""Value checks for config rules (`config.rules()`): each `check(value)` returns None when the
value is fine, else what is wrong with it ("must be an integer"), which `config.validate`
turns into a ConfigError naming the field. The rules between data fields are here
(`data_conflict`); those between model fields belong to the classes the model config names
(`jaxattn.model.seq2seq.config_conflict`)."""

from __future__ import annotations

import math
import numbers


def is_int(v) -> bool:
    """An integer (Python or NumPy), not a bool."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def is_real(v) -> bool:
    """A real number (Python or NumPy), not a bool."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def is_finite_real(v) -> bool:
    """A real number that is neither inf nor NaN."""
    return is_real(v) and math.isfinite(v)


def integer(lo: int | None = None, hi: int | None = None):
    def check(v):
        if not is_int(v):
            return "must be an integer"
        if lo is not None and v < lo:
            return f"must be >= {lo}"
        if hi is not None and v > hi:
            return f"must be <= {hi}"

    return check


def real(
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
):
    def check(v):
        if not is_real(v) or not math.isfinite(v):
            return "must be a finite number"
        if lo is not None and (v <= lo if lo_open else v < lo):
            return f"must be {'>' if lo_open else '>='} {lo}"
        if hi is not None and (v >= hi if hi_open else v > hi):
            return f"must be {'<' if hi_open else '<='} {hi}"

    return check


def one_of(*allowed):
    def check(v):
        if v not in allowed:
            return f"is not one of {allowed}"

    return check


def by_function(normalize):
    """Valid when `normalize(v)` (a registry's own name check) accepts it."""

    def check(v):
        try:
            normalize(v)
        except (ValueError, TypeError, AttributeError) as e:
            return f"is not valid ({e})"

    return check


def _check(ok, why: str):
    """A check from a predicate: None when ok(v), else `why`."""
    return lambda v: None if ok(v) else why


boolean = _check(lambda v: isinstance(v, bool), "must be True or False")
string = _check(lambda v: isinstance(v, str), "must be a string")
nonempty_string = _check(lambda v: isinstance(v, str) and bool(v), "must be a non-empty string")
strings = _check(
    lambda v: isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v),
    "must be a sequence of strings",
)


def ints(n: int | None, lo: int = 0, increasing: bool = False):
    """A sequence of n (any number if None) integers >= lo."""

    def check(v):
        if not isinstance(v, (list, tuple)) or (n is not None and len(v) != n):
            return f"must be a sequence of {n or 'any number of'} integers"
        if not all(is_int(x) and x >= lo for x in v):
            return f"must hold integers >= {lo}"
        if increasing and list(v) != sorted(set(v)):
            return "must be increasing"

    return check


def fractions(v):
    if not isinstance(v, (list, tuple)) or len(v) != 3:
        return "must be three numbers (train, validation, test)"
    if not all(is_real(x) and math.isfinite(x) and x >= 0 for x in v) or v[0] <= 0:
        return "must be >= 0 each, with a positive train share"


# ----------------------------------------------------------------- rules between fields
def data_conflict(c):
    """The first rule between data fields that c breaks: (field, why) for one field, a
    message for a combination of fields, or None."""
    if c.synthetic_max_len < c.synthetic_min_len:
        return "synthetic_max_len", f"must be >= synthetic_min_len ({c.synthetic_min_len})"
    if c.synthetic_sizes[0] < 1:
        return "synthetic_sizes", "needs a training size >= 1"
    if c.tsv_columns[0] == c.tsv_columns[1]:
        return "tsv_columns", "must name two different columns (source, target)"
    if c.tutorial_ids and (c.vocab_min_freq > 1 or c.vocab_max_size):
        return (
            "config.data.tutorial_ids=True has no UNK id, so every training word needs an "
            "id: leave vocab_min_freq=1 and vocab_max_size=0, or set tutorial_ids=False."
        )
    if 0 < c.vocab_max_size < 8:
        return (
            "vocab_max_size",
            "leaves no room for words (the 4 special tokens count): use 0 or >= 8",
        )
    if c.tokenizer == "sentencepiece" and (c.vocab_min_freq > 1 or c.vocab_max_size):
        return (
            "config.data.tokenizer='sentencepiece': the vocabulary is the model's pieces, "
            "so vocab_min_freq and vocab_max_size do not apply; set sp_vocab_size instead."
        )
    if c.sp_byte_fallback and c.sp_vocab_size <= 256:
        return "sp_vocab_size", "must be > 256 with sp_byte_fallback (the 256 byte pieces count)"
    return None
