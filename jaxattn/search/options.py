"""The decoding options, in one table (`OPTIONS`): each option's name, type, range, default,
help text and the methods that read it. Everything else is built from the table:

- `DecodeOptions`, the typed, frozen options of one decoding; every value is checked once, when
  it is made (`OptionError`, a UsageError and a ValueError, naming the option and its range);
- `search.decode` takes a DecodeOptions or the same names as keywords (checked the same way);
- `Translator.translate` takes either too (jaxattn.inference.translator);
- the scripts' flags: `cli.define_decoding_flags` defines a --NAME flag for each row (its help
  text is the row's) and `cli.decoding_options` reads them back into a DecodeOptions;
- `check_value`: the range check of one option, for the search functions called directly
  (`beam_search(beta=...)`, `sample(temperature=...)`).

A new decoding option is therefore one `Option` row here, plus the method that reads it:
`decode` passing `o.NAME` to the method's function, which checks it with `check_value(NAME)`
(and `DecodeOptions.describe`, if reports should show it). Before this table it took nine
places: the options dataclass, its check, decode's signature, decode's table of options
other methods ignore, decode's call of the method, the method's own check, the CLI's flag
list, the CLI's list of flags to read back, and the Translator's call of decode.

Not in the table, because they are not settings of the search: max_len and batch_size (how
many steps, how many sentences at once: `decode` and `Translator` arguments, flags of their
own in cli.py), the inference-only options of `Translator` (replace_unk and unk_dictionary:
post-processing of the output; max_input_len and overlong: the input limit), checked by
`jaxattn.inference.translation.check_options`; and `decode`'s rng (the PRNG key a seed makes)
and keep_greedy (a detail of beam search, no flag), checked by `decode` and `beam_search`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from jaxattn.checks import is_finite_real, is_int
from jaxattn.errors import OptionError

METHODS = ("greedy", "beam", "sample")  # the search methods, `decode(method=...)`


def concrete(x) -> np.ndarray | None:
    """x's values on the host, or None when they are not known here (a tracer, as when
    `jax.export` traces a search, or an array spread over other hosts)."""
    if isinstance(x, jax.core.Tracer):
        return None
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return None
    return np.asarray(x)


_UNKNOWN = object()  # a value not known here (traced): not checked, counts as given


def _scalar(v):
    """v as a Python number for checks: 0-d arrays (NumPy, JAX) -> .item(); _UNKNOWN when
    traced; other values as they are."""
    if isinstance(v, (np.ndarray, jax.Array)):
        x = concrete(v)
        if x is None:
            return _UNKNOWN
        return x.item() if x.ndim == 0 and np.issubdtype(x.dtype, np.number) else v
    return v


def _number(x) -> str:
    """1 -> '1', 0.5 -> '0.5', 2**32 -> '2**32'."""
    if is_int(x) and x > 2**16 and x & (x - 1) == 0:
        return f"2**{x.bit_length() - 1}"
    return f"{x:g}"


@dataclasses.dataclass(frozen=True)
class Option:
    """One decoding option: a field of `DecodeOptions`, a keyword of `search.decode` and
    `Translator.translate`, and a --NAME flag of the scripts."""

    name: str
    kind: type  # int, float or str (with `choices`): the value's type and its flag's
    default: Any  # DecodeOptions' default; the value a method that does not read it allows
    help: str  # the --NAME flag's help text
    methods: tuple[str, ...] = METHODS  # the methods that read it
    low: float | None = None  # the smallest value (excluded if low_open)
    high: float | None = None  # the largest value (excluded if high_open)
    low_open: bool = False
    high_open: bool = False
    choices: tuple = ()  # the values allowed (kind str)
    off: Any = None  # a value outside [low, high] allowed too, meaning off (no_repeat_ngram's 0)
    none: str = ""  # what None means, if None is allowed ('the run's')
    about: str = ""  # a few words after the name in messages: ' (the coverage penalty)'
    refuse_unused: bool = True  # a value other than the default for another method: an error

    def range(self, typed: bool = True) -> str:
        """'an integer >= 1', 'a finite number >= 0', 'in (0, 1]', "one of ['greedy', ...]";
        typed False (a flag, already parsed as an integer): '>= 1'."""
        if self.choices:
            return f"one of {list(self.choices)}"
        if self.off is not None:
            return f"{self.off} (off) or " + dataclasses.replace(self, off=None).range(typed)
        lo, hi = self.low, self.high
        if self.kind is float and lo is not None and hi is not None:
            return (
                f"in {'(' if self.low_open else '['}{_number(lo)}, "
                f"{_number(hi)}{')' if self.high_open else ']'}"
            )
        parts = [] if self.kind is int and not typed else [_KIND_WORDS[self.kind]]
        if lo is not None:
            parts.append(f"{'>' if self.low_open else '>='} {_number(lo)}")
        if hi is not None:
            parts.append(f"and {'<' if self.high_open else '<='} {_number(hi)}")
        return " ".join(parts)

    def check(
        self,
        value,
        *,
        name: str | None = None,
        typed: bool = True,
        none: bool = True,
        bounded: bool = True,
    ):
        """OptionError unless `value` is of the option's type and range ('{name} must be
        ..., got ...'); name: how the message calls it (default: the option's name); none:
        whether None is allowed where the option allows it; bounded False: the type alone
        (beam_search takes any finite alpha). Traced values are not checked."""
        v = _scalar(value)
        if v is _UNKNOWN or (v is None and self.none and none):
            return
        if self.choices:
            ok = isinstance(v, str) and v in self.choices
        else:
            ok = is_int(v) if self.kind is int else is_finite_real(v)
            if ok and bounded and not (self.off is not None and v == self.off):
                lo, hi = self.low, self.high
                ok = lo is None or (v > lo if self.low_open else v >= lo)
                ok = ok and (hi is None or (v < hi if self.high_open else v <= hi))
        if not ok:
            allowed = f" or None ({self.none})" if self.none and none else ""
            what = self.range(typed) if bounded else _KIND_WORDS[self.kind]
            raise OptionError(
                f"{name or self.name}{self.about} must be {what}{allowed}, got {value!r}."
            )

    def is_default(self, value) -> bool:
        """Whether value is known to equal the default (a traced value is not)."""
        v = _scalar(value)
        if v is _UNKNOWN:
            return False
        try:
            return bool(v is self.default or v == self.default)
        except (TypeError, ValueError):
            return False


_KIND_WORDS = {int: "an integer", float: "a finite number"}

OPTIONS: dict[str, Option] = {
    o.name: o
    for o in (
        Option(
            "method",
            str,
            None,
            "Search; default: beam if the beam size is > 1, else greedy.",
            choices=METHODS,
            none="beam if beam_size > 1, else greedy",
        ),
        Option(
            "beam_size",
            int,
            1,
            "Beam size (1: greedy); default: the run's config.eval.beam_size "
            "(1 for --method=greedy|sample).",
            methods=("beam",),
            low=1,
        ),
        Option(
            "alpha",
            float,
            None,
            "Length penalty exponent; default: the run's config.eval.length_penalty.",
            methods=("beam",),
            low=0,
            none="the run's",
            about=" (the length penalty exponent)",
            refuse_unused=False,  # None is the run's length penalty, whatever the method
        ),
        Option(
            "beta",
            float,
            0.0,
            "Coverage penalty weight of beam search (Wu et al. 2016); default 0.",
            methods=("beam",),
            low=0,
            about=" (the coverage penalty)",
        ),
        Option(
            "n_best",
            int,
            1,
            "Hypotheses per sentence (beam: <= --beam_size; sample: samples); default 1.",
            methods=("beam", "sample"),
            low=1,
        ),
        Option(
            "temperature",
            float,
            1.0,
            "Sampling temperature (0: greedy); default 1.",
            methods=("sample",),
            low=0,
        ),
        Option(
            "top_k",
            int,
            0,
            "Sample among the k most likely tokens (0: all, the default).",
            methods=("sample",),
            low=0,
        ),
        Option(
            "top_p",
            float,
            1.0,
            "Nucleus sampling: among the fewest tokens with this much probability; "
            "default 1 (all).",
            methods=("sample",),
            low=0,
            high=1,
            low_open=True,
        ),
        Option(
            "seed",
            int,
            0,
            "Sampling seed (the same seed, input and --batch_size give the same samples); "
            "default 0.",
            methods=("sample",),
            low=0,
            high=2**32,
            high_open=True,
            refuse_unused=False,  # harmless: scripts pass one whatever the method
        ),
        Option(
            "min_len",
            int,
            0,
            "Fewest output tokens before EOS (EOS not counted; EOS gets probability 0 until "
            "then; needs --max_len > min_len); default 0 (off).",
            low=0,
        ),
        Option(
            "no_repeat_ngram",
            int,
            0,
            "Never repeat an n-gram of a hypothesis's own output (n >= 2; a token that would "
            "complete one gets probability 0); default 0 (off).",
            low=2,
            off=0,
        ),
    )
}


def check_value(name: str, value, *, as_name: str | None = None, bounded: bool = True) -> None:
    """OptionError unless `value` is in option `name`'s range (bounded False: of its type),
    None excluded (the search functions take numbers); messages call it `as_name`
    ('num_samples' for sample's n_best)."""
    OPTIONS[name].check(value, name=as_name, none=False, bounded=bounded)


def check_n_best(n_best, beam_size) -> None:
    """OptionError unless n_best <= beam_size (beam search keeps beam_size hypotheses)."""
    if is_int(n_best) and is_int(beam_size) and n_best > beam_size:
        raise OptionError(
            f"n_best={n_best} > beam_size={beam_size}: beam search returns at most beam_size "
            "hypotheses."
        )


def _unused(method: str, given: dict) -> None:
    """OptionError for the first option in `given` that `method` does not read and that is set
    to other than its default."""
    for name, value in given.items():
        o = OPTIONS.get(name)
        if o is None or not o.refuse_unused or method in o.methods or o.is_default(value):
            continue
        raise OptionError(
            f"{name}={value!r} is for method={' or '.join(map(repr, o.methods))}; "
            f"method={method!r} would ignore it."
        )


class _Checked:
    """DecodeOptions' behaviour; its fields come from OPTIONS (see `_dataclass`)."""

    def __post_init__(self):
        if self.method is None and is_int(self.beam_size):
            object.__setattr__(self, "method", "beam" if self.beam_size > 1 else "greedy")
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name, value in fields.items():
            OPTIONS[name].check(value)
        _unused(self.method, fields)
        if self.method == "beam":
            check_n_best(self.n_best, self.beam_size)

    @classmethod
    def make(cls, options=None, *, defaults: dict | None = None, **fields):
        """`options` (default: DecodeOptions()) with `fields` replaced; OptionError for a name
        that is not an option. A beam_size alone (no method) picks greedy or beam again.
        defaults: values for options not in `fields` (a run's config.eval.beam_size), used
        when the method (given, or to be picked) reads them."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted((set(fields) | set(defaults or ())) - set(names))
        if unknown:
            raise OptionError(f"Unknown decoding option(s) {unknown}; the options are {names}.")
        if options is not None and not isinstance(options, cls):
            raise OptionError(f"options must be a DecodeOptions, not {type(options).__name__}.")
        method = fields.get("method", None if options is None else options.method)
        for name, value in (defaults or {}).items():
            if name not in fields and (method is None or method in OPTIONS[name].methods):
                fields[name] = value
        if options is None:
            return cls(**fields)
        if "beam_size" in fields and "method" not in fields and options.method != "sample":
            fields["method"] = None
        return dataclasses.replace(options, **fields)

    def describe(self) -> str:
        """'greedy', 'beam 5, alpha 0.6, beta 0.2, 3-best', 'sampling (temperature 0.7, ...)',
        then the constraints set: ', min_len 3, no_repeat_ngram 2'."""
        constraints = "".join(
            f", {name} {getattr(self, name)}"
            for name in ("min_len", "no_repeat_ngram")
            if getattr(self, name)
        )
        return self._method_text() + constraints

    def _method_text(self) -> str:
        if self.method == "greedy":
            return "greedy"
        if self.method == "beam":
            alpha = "" if self.alpha is None else f", alpha {self.alpha:g}"
            return (
                f"beam {self.beam_size}{alpha}"
                + (f", beta {self.beta:g}" if self.beta else "")
                + (f", {self.n_best}-best" if self.n_best > 1 else "")
            )
        return (
            f"sampling (temperature {self.temperature:g}, top-k {self.top_k}, top-p "
            f"{self.top_p:g}, seed {self.seed}"
            + (f", {self.n_best} samples" if self.n_best > 1 else "")
            + ")"
        )


def _dataclass(table: dict[str, Option]) -> type:
    """The frozen dataclass of the options in `table`: one typed field per row, in order."""
    fields = [
        (
            o.name,
            o.kind | None if o.none else o.kind,
            dataclasses.field(default=o.default, metadata={"help": o.help}),
        )
        for o in table.values()
    ]
    cls = dataclasses.make_dataclass(
        "DecodeOptions", fields, bases=(_Checked,), frozen=True, namespace={"__doc__": _DOC}
    )
    cls.__module__ = __name__
    return cls


_DOC = """How to decode: one field per row of `OPTIONS` (method, beam_size, alpha, beta, n_best,
temperature, top_k, top_p, seed, min_len, no_repeat_ngram), each checked when made (OptionError
naming the option). method None: beam if beam_size > 1, else greedy; alpha None: the run's
eval.length_penalty (Translator) or 0 (search.decode); min_len and no_repeat_ngram constrain
every method (see `jaxattn.search.core.Constraints`)::

    DecodeOptions(method="beam", beam_size=5, n_best=3, beta=0.2)
    DecodeOptions.make(options, beam_size=1)   # a copy with fields replaced (-> greedy)
"""

DecodeOptions = _dataclass(OPTIONS)
