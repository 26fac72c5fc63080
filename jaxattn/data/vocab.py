"""Vocabulary: tokens <-> ids, with special tokens, saved as a plain text file.

Two layouts, told apart by the file's first line:
- default: <pad>=0, <s>=1 (BOS), </s>=2 (EOS), <unk>=3, then the words;
- tutorial (`tutorial_ids=True`): SOS=0, EOS=1, then the words; padding reuses id 0 (the
  tutorial's zero fill) and there is no UNK, so an unknown word is an error as it is there.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence

from jaxattn.errors import DataError

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
TUTORIAL_SOS, TUTORIAL_EOS = "SOS", "EOS"
SPECIALS = (PAD, BOS, EOS, UNK)
TUTORIAL_SPECIALS = (TUTORIAL_SOS, TUTORIAL_EOS)
ORDERS = ("first", "freq")


class Vocab:
    """An immutable token list; a token's id is its position."""

    def __init__(self, tokens: Sequence[str]):
        tokens = tuple(tokens)
        if tokens[:2] == TUTORIAL_SPECIALS:
            self.tutorial_ids = True
            self.bos_id, self.eos_id, self.pad_id, self.unk_id = 0, 1, 0, None
            specials = TUTORIAL_SPECIALS
        elif tokens[:4] == SPECIALS:
            self.tutorial_ids = False
            self.pad_id, self.bos_id, self.eos_id, self.unk_id = 0, 1, 2, 3
            specials = SPECIALS
        else:
            raise ValueError(
                f"A vocabulary must start with {list(SPECIALS)} or, in the tutorial layout, "
                f"{list(TUTORIAL_SPECIALS)}; this one starts with {list(tokens[:4])}."
            )
        self.tokens = tokens
        self.num_specials = len(specials)
        self._ids = {t: i for i, t in enumerate(tokens)}
        if len(self._ids) != len(tokens):
            dup = next(t for t, n in Counter(tokens).items() if n > 1)
            raise ValueError(f"Token {dup!r} occurs twice in the vocabulary.")
        if any(not t or "\n" in t or "\r" in t for t in tokens):
            raise ValueError("Vocabulary tokens must be non-empty and hold no line breaks.")
        self._strip = {self.pad_id, self.bos_id}  # dropped by decode(strip_special=True)

    @classmethod
    def build(
        cls,
        token_lists: Iterable[Sequence[str]],
        *,
        min_freq: int = 1,
        max_size: int | None = None,
        order: str = "first",
        tutorial_ids: bool = False,
    ) -> Vocab:
        """Counts tokens and keeps those seen at least `min_freq` times.

        order='first': in order of first appearance (the tutorial's Lang); 'freq': most frequent
        first, ties in order of first appearance. Either way the same input gives the same ids.
        `max_size` caps the total size, specials included (None or 0: no cap).
        """
        if order not in ORDERS:
            raise ValueError(f"Unknown vocabulary order {order!r}; choose one of {ORDERS}.")
        if min_freq < 1:
            raise ValueError(f"min_freq must be >= 1, got {min_freq}.")
        specials = TUTORIAL_SPECIALS if tutorial_ids else SPECIALS
        counts = Counter()  # insertion order = first appearance
        for tokens in token_lists:
            counts.update(tokens)
        words = [t for t, n in counts.items() if n >= min_freq and t not in specials]
        if order == "freq":
            words.sort(key=lambda t: -counts[t])  # stable: ties keep first appearance
        if max_size:
            if max_size <= len(specials):
                raise ValueError(
                    f"max_size={max_size} leaves no room beside the {len(specials)} special tokens."
                )
            words = words[: max_size - len(specials)]
        return cls(specials + tuple(words))

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self._ids

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocab) and self.tokens == other.tokens

    def __repr__(self) -> str:
        layout = "tutorial" if self.tutorial_ids else "default"
        return f"Vocab({len(self)} tokens, {layout} layout)"

    def id(self, token: str) -> int:
        return self.encode([token])[0]

    def encode(self, tokens: Sequence[str]) -> list[int]:
        """Token ids; unknown tokens get unk_id (tutorial layout: ValueError, it has no UNK)."""
        if self.unk_id is not None:
            get, unk = self._ids.get, self.unk_id
            return [get(t, unk) for t in tokens]
        try:
            return [self._ids[t] for t in tokens]
        except KeyError as e:
            raise ValueError(
                f"Word {e.args[0]!r} is not in the vocabulary, and the tutorial layout "
                "(tutorial_ids=True) has no UNK id: set tutorial_ids=False to map unknown "
                "words to <unk>."
            ) from None

    def decode(self, ids: Iterable[int], strip_special: bool = True) -> list[str]:
        """Tokens up to the first EOS. strip_special: drop PAD/BOS (SOS) and the EOS itself;
        otherwise keep them, EOS included."""
        if hasattr(ids, "tolist"):  # numpy / jax arrays
            ids = ids.tolist()
        out = []
        for i in ids:
            if i == self.eos_id:
                if not strip_special:
                    out.append(self.tokens[i])
                break
            if strip_special and i in self._strip:
                continue
            out.append(self.tokens[i])
        return out

    def save(self, path: str | os.PathLike) -> None:
        """One token a line, UTF-8, specials first; written atomically (temp file + rename)."""
        from jaxattn.rundir.files import write_bytes

        write_bytes(os.fspath(path), ("\n".join(self.tokens) + "\n").encode("utf-8"))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocab:
        try:
            with open(path, encoding="utf-8", newline="") as f:
                text = f.read()
        except FileNotFoundError:
            raise FileNotFoundError(
                f"No vocabulary file at {path}: train first (it saves the vocabularies next "
                "to its checkpoints) or point to the run's directory."
            ) from None
        tokens = text.split("\n")
        if tokens and tokens[-1] == "":
            tokens.pop()
        try:
            return cls(tokens)
        except ValueError as e:
            raise DataError(f"{path} is not a vocabulary file: {e}") from None
