"""Synthetic translation tasks, generated offline from a seed: for tests, demos, quick configs.

- copy:    '7 3 12' -> '7 3 12'
- reverse: '7 3 12' -> '12 3 7'
- sort:    '7 3 12' -> '3 7 12'  (symbols are the numbers 0..num_symbols-1, sorted as numbers)
- dates:   'friday, march 5, 2021' / '05/03/2021' / '5th of march 2021' ... -> '2021-03-05'
  (dates from 1950 to 2049 in eight human formats; best with character tokens)

Validation and test are drawn first; training pairs whose source is in either are redrawn,
so held-out sentences are never trained on.
"""

from __future__ import annotations

import datetime

import numpy as np

TASKS = ("copy", "reverse", "sort", "dates")
MONTHS = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_FIRST_DAY = datetime.date(1950, 1, 1).toordinal()
_LAST_DAY = datetime.date(2049, 12, 31).toordinal()


def _ordinal(day: int) -> str:
    suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def format_date(d: datetime.date, style: int) -> str:
    """One of eight human spellings of `d` (style 0..7)."""
    month = MONTHS[d.month - 1]
    return (
        f"{d.day} {month} {d.year}",
        f"{month} {d.day}, {d.year}",
        f"{month[:3]} {d.day} {d.year}",
        f"{WEEKDAYS[d.weekday()]}, {month} {d.day}, {d.year}",
        f"{d.day:02d}/{d.month:02d}/{d.year}",
        f"{_ordinal(d.day)} of {month} {d.year}",
        f"{month.capitalize()} {d.day}, {d.year}",
        f"{d.day}.{d.month}.{d.year}",
    )[style]


def sample_pair(
    task: str,
    rng: np.random.Generator,
    *,
    min_len: int = 3,
    max_len: int = 8,
    num_symbols: int = 20,
) -> tuple[str, str]:
    """One (source, target) pair of `task`."""
    if task == "dates":
        d = datetime.date.fromordinal(int(rng.integers(_FIRST_DAY, _LAST_DAY + 1)))
        return format_date(d, int(rng.integers(8))), d.isoformat()
    if task not in TASKS:
        raise ValueError(f"Unknown synthetic task {task!r}; choose one of {TASKS}.")
    n = int(rng.integers(min_len, max_len + 1))
    xs = rng.integers(num_symbols, size=n).tolist()
    ys = {"copy": xs, "reverse": xs[::-1], "sort": sorted(xs)}[task]
    return " ".join(map(str, xs)), " ".join(map(str, ys))


def synthetic_splits(
    task: str,
    sizes: tuple[int, int, int] = (10000, 500, 500),
    *,
    seed: int = 0,
    min_len: int = 3,
    max_len: int = 8,
    num_symbols: int = 20,
) -> dict[str, tuple[list[str], list[str]]]:
    """{'train'|'validation'|'test': (sources, targets)}; splits of size 0 are left out."""
    if task not in TASKS:
        raise ValueError(f"Unknown synthetic task {task!r}; choose one of {TASKS}.")
    if not 1 <= min_len <= max_len or num_symbols < 1 or len(sizes) != 3 or sizes[0] < 1:
        raise ValueError(
            "Synthetic data needs 1 <= min_len <= max_len, num_symbols >= 1 and sizes "
            f"(train >= 1, validation, test); got min_len={min_len}, max_len={max_len}, "
            f"num_symbols={num_symbols}, sizes={tuple(sizes)}."
        )
    kw = dict(min_len=min_len, max_len=max_len, num_symbols=num_symbols)
    out, held_out = {}, set()
    for i, split in ((1, "validation"), (2, "test"), (0, "train")):
        rng = np.random.default_rng([seed, i])
        pairs, tries = [], 0
        while len(pairs) < sizes[i]:
            tries += 1
            if tries > 20 * sizes[i] + 1000:
                raise ValueError(
                    f"The {task} task with these settings has too few distinct sentences for "
                    f"{sizes[i]} training pairs beside the held-out ones: raise max_len or "
                    "num_symbols, or lower the sizes."
                )
            pair = sample_pair(task, rng, **kw)
            if split == "train" and pair[0] in held_out:
                continue
            pairs.append(pair)
        if split != "train":
            held_out.update(p[0] for p in pairs)
        if pairs:
            out[split] = ([p[0] for p in pairs], [p[1] for p in pairs])
    return {s: out[s] for s in ("train", "validation", "test") if s in out}
