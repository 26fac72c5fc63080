"""Unknown-word replacement (Luong et al. 2015; JoeyNMT's and OpenNMT's `replace_unk`): each
`<unk>` a word-level model outputs becomes the source token it attended to most at that step,
or that token's translation from a user dictionary.

The dictionary is a UTF-8 text file of `source<TAB>target` lines (blank lines skipped; the
first line of a repeated source word wins), e.g. a lexical table of the corpus:

    Hauptbahnhof<TAB>central station
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from jaxattn.errors import InferenceError


def replace_unknown(
    tokens: Sequence[str],
    src_tokens: Sequence[str],
    weights: np.ndarray,
    unk: str,
    dictionary: Mapping[str, str] | None = None,
) -> list[str]:
    """`tokens` with each `unk` replaced by the most attended source token (looked up in
    `dictionary` when it has the token).

    Args:
        tokens: Output tokens (without EOS).
        src_tokens: The source tokens the model read (without EOS).
        weights: Attention [>= len(tokens), >= len(src_tokens)]: row j is output token j's
            weights over the source positions; columns past the source tokens (EOS, padding)
            are never chosen.
        unk: The unknown token of the target vocabulary ('<unk>').
        dictionary: Source token -> replacement; tokens it lacks are copied as they are.
    """
    weights = np.asarray(weights)
    if unk not in tokens or not src_tokens:
        return list(tokens)
    if weights.ndim != 2 or weights.shape[0] < len(tokens) or weights.shape[1] < len(src_tokens):
        raise ValueError(
            f"weights must be shaped [>= {len(tokens)}, >= {len(src_tokens)}], got "
            f"{list(weights.shape)}."
        )
    dictionary = dictionary or {}
    out = list(tokens)
    for j, token in enumerate(tokens):
        if token == unk:
            source = src_tokens[int(np.argmax(weights[j, : len(src_tokens)]))]
            out[j] = dictionary.get(source, source)
    return out


def read_dictionary(path: str) -> dict[str, str]:
    """{source: target} from a `source<TAB>target` file; InferenceError naming the file and
    line for anything else."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise InferenceError(
            f"Cannot read the unknown-word dictionary {path}: {e.strerror or e}."
        ) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise InferenceError(
            f"The unknown-word dictionary {path} is not valid UTF-8 (line {line})."
        ) from None
    out: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        source, tab, target = line.partition("\t")
        if not tab or not source.strip() or not target.strip() or "\t" in target:
            raise InferenceError(
                f"{path}, line {n}: {line[:80]!r} is not 'source<TAB>target' (two non-empty "
                "columns separated by one tab)."
            )
        out.setdefault(source.strip(), target.strip())
    if not out:
        raise InferenceError(
            f"The unknown-word dictionary {path} has no entries ('source<TAB>target' lines)."
        )
    return out
