"""Splitting a corpus without given splits into train/validation/test by hashed text.

Pairs that share a source or a target sentence form a group, and a group lies in one split,
so no sentence is on both sides; a group's split depends on its text and the seed only, not on
file order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from jaxattn.errors import DataError

SPLITS = ("train", "validation", "test")


def _unit_hash(seed: int, key: str) -> float:
    h = hashlib.blake2b(f"{seed}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") / 2.0**64


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    if len(fractions) != 3 or min(fractions) < 0 or fractions[0] <= 0:
        raise DataError(
            f"split_fractions must be 3 numbers >= 0 for (train, validation, test) with a "
            f"positive train share, got {tuple(fractions)}."
        )
    total = float(sum(fractions))
    return tuple(f / total for f in fractions)


def assign_splits(
    keys: Sequence[tuple[str, str]], fractions: Sequence[float], seed: int
) -> np.ndarray:
    """Index into SPLITS for each (source key, target key) pair.

    Pairs sharing a source or a target key are grouped (union-find); a group's split comes
    from a hash of its smallest source key and `seed`, so it does not depend on file order.
    """
    parent: dict = {}

    def find(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for s, t in keys:
        a, b = find(("s", s)), find(("t", t))
        if a != b:
            parent[a] = b
    smallest: dict = {}
    for s, _ in keys:
        root = find(("s", s))
        smallest[root] = min(smallest.get(root, s), s)
    cum = np.cumsum(check_fractions(fractions))
    cum[-1] = 1.0
    return np.array(
        [
            np.searchsorted(cum, _unit_hash(seed, smallest[find(("s", s))]), side="right")
            for s, _ in keys
        ],
        dtype=np.int64,
    ).reshape(-1)


def split_rows(rows: list, split_of: np.ndarray) -> dict[str, list]:
    return {
        name: [r for r, k in zip(rows, split_of, strict=True) if k == i]
        for i, name in enumerate(SPLITS)
    }
