"""Evaluation input: the (sources, references) a run is evaluated on, from line-aligned files,
a TSV file read as the run's corpus was, or a split of the run's corpus (rebuilt with the run's
own vocabularies, nothing retrained). InferenceError for anything unreadable."""

from __future__ import annotations

import ml_collections

from jaxattn import data as data_lib
from jaxattn.data.readers import read_parallel
from jaxattn.translation import InferenceError, UsageError


def load_pairs(translator, *, split: str | None = None, src: str | None = None,
               ref: str | None = None, tsv: str | None = None,
               data_path: str = "") -> tuple[list[str], list[str], dict | None]:
    """(sources, references, TSV reading counts or None) to evaluate a run on: line-aligned
    `src` + `ref` files, a `tsv` file (read as the run's corpus was: columns, direction,
    filter), or a `split` of the run's corpus (default 'test'). InferenceError if unreadable.
    """
    try:
        if src is not None:
            return *read_parallel(src, ref), None
        if tsv is not None:
            return data_lib.read_tsv(tsv, translator.config.data, translator.max_length)
    except (OSError, ValueError) as e:
        raise InferenceError(str(e)) from None
    return *load_split(translator.config, translator.workdir, split or "test", data_path), None


def load_split(config: ml_collections.ConfigDict, workdir: str, split: str,
               data_path: str = "") -> tuple[list[str], list[str]]:
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
            "corpus with --data_path.") from None
    if split not in data.splits:
        raise UsageError(f"No {split!r} split in this run's corpus; it has "
                         f"{', '.join(data.splits)}.")
    sources, references = data.sources(split), data.references(split)
    if not sources:
        raise InferenceError(f"The {split!r} split is empty; use another --split.")
    return sources, references
