"""A run's corpus as text: config.data -> {split: (sources, targets)}, and evaluation files read
the way that corpus was read.

`resolve(cfg)` makes the 'auto' options concrete; `load_texts` opens every split (TFDS
builders, or the offline synthetic tasks); `read_tsv` reads a TSV file for evaluation with the
corpus's columns, direction, normalization and filter, through the same readers.

A config is validated once, where it enters (`jaxattn.config.validate` before training, the
saved run's config when it is loaded); the code here trusts it, so a saved run whose data
section holds a field of another version still loads.
"""

from __future__ import annotations

import os

import ml_collections

from jaxattn.data.readers import read_bytes, read_tsv_pairs, summary
from jaxattn.data.synthetic import synthetic_splits
from jaxattn.data.text import tutorial_pairs, tutorial_reverse
from jaxattn.errors import DataError

DATASETS = ("tutorial", "parallel", "tfds", "synthetic")  # config.data.name


def resolve(cfg: ml_collections.ConfigDict) -> dict:
    """The 'auto' options made concrete (tokenizer, normalize, max_length) of a validated data
    config."""
    tokenizer = cfg.tokenizer
    if tokenizer == "auto":
        tokenizer = {"tutorial": "space", "synthetic": "space"}.get(cfg.name, "word")
        if cfg.name == "synthetic" and cfg.synthetic_task == "dates":
            tokenizer = "char"
    normalize = cfg.normalize
    if normalize == "auto":
        normalize = "tutorial" if cfg.name == "tutorial" else "none"
    max_length = cfg.max_length
    if max_length == -1:
        max_length = 10 if cfg.name == "tutorial" else 0
    return dict(tokenizer=tokenizer, normalize=normalize, max_length=max_length)


def load_texts(cfg: ml_collections.ConfigDict, max_length: int) -> tuple[dict, dict, dict | None]:
    """{split: (sources, targets)} for the splits that exist, reading statistics, and what
    identifies the training split for `data.prepared` (None: synthetic, made in memory).

    The training split's (sources, targets) are sequences that read a TFDS corpus on demand
    (`builders.TextColumn`); the other splits are lists."""
    if cfg.name == "synthetic":
        texts = synthetic_splits(
            cfg.synthetic_task,
            tuple(cfg.synthetic_sizes),
            seed=cfg.split_seed,
            min_len=cfg.synthetic_min_len,
            max_len=cfg.synthetic_max_len,
            num_symbols=cfg.synthetic_num_symbols,
        )
        return texts, {}, None
    from jaxattn.data import builders  # imports tensorflow_datasets: only when needed

    src_key, tgt_key, splits = "src", "tgt", None
    if cfg.name == "tutorial":
        builder = builders.tutorial_builder(
            path=cfg.path,
            url=cfg.url,
            sha256_check=cfg.sha256,
            download=cfg.download,
            data_dir=cfg.data_dir,
            src_lang=cfg.src_lang,
            tgt_lang=cfg.tgt_lang,
            apply_filter=cfg.filter,
            max_length=max_length,
            prefixes=tuple(cfg.prefixes),
            split_fractions=tuple(cfg.split_fractions),
            split_seed=cfg.split_seed,
        )
    elif cfg.name == "parallel":
        builder = builders.parallel_builder(
            cfg.path,
            src_lang=cfg.src_lang,
            tgt_lang=cfg.tgt_lang,
            splits=dict(cfg.splits),
            tsv_columns=tuple(cfg.tsv_columns),
            split_fractions=tuple(cfg.split_fractions),
            split_seed=cfg.split_seed,
            data_dir=cfg.data_dir,
        )
    elif cfg.name == "tfds":
        if not cfg.tfds_name:
            raise DataError(
                "name='tfds' needs config.data.tfds_name, e.g. 'wmt14_translate/fr-en'."
            )
        builder = builders.catalog_builder(
            cfg.tfds_name, data_dir=cfg.data_dir, download=cfg.download
        )
        src_key, tgt_key, splits = cfg.src_lang, cfg.tgt_lang, dict(cfg.splits)
    else:
        raise DataError(f"config.data.name={cfg.name!r} is not one of {DATASETS}.")
    sources = builders.data_sources(builder, splits)
    if "train" not in sources:
        raise DataError(
            f"{builder.name} has no training split (it has "
            f"{list(builder.info.splits.keys())}); set config.data.splits.train."
        )
    texts = {  # the training split read on demand (data.prepared), the others into memory
        k: (
            tuple(builders.TextColumn(v, key, builder.name) for key in (src_key, tgt_key))
            if k == "train"
            else builders.read_texts(v, src_key, tgt_key, builder.name)
        )
        for k, v in sources.items()
    }
    corpus = dict(
        dataset=builder.info.full_name,  # a jaxattn builder's name holds its files' sha256
        split=(splits or {}).get("train", "train"),
        data_dir=os.path.abspath(builder.data_dir) if not builders.input_files(builder) else "",
        files=builders.input_files(builder),
    )
    return texts, dict(builder.info.metadata or {}), corpus


def read_tsv(
    path: str, cfg: ml_collections.ConfigDict, max_length: int
) -> tuple[list[str], list[str], dict]:
    """Source and reference sentences of a TSV file, prepared as the run's corpus was.

    The tutorial's format (English<TAB>French, further columns ignored): the direction is the
    run's (fra->eng: the source is column 2), and pairs are normalized and filtered exactly as
    the training corpus was (config.data.filter, `max_length` resolved, prefixes). Other
    corpora: the columns config.data.tsv_columns, no filter. Returns (sources, references,
    counts): lines, kept, and one skipped_* entry per reason (skipped_filter included).
    """
    tutorial = cfg.name == "tutorial"
    columns = (0, 1) if tutorial else tuple(cfg.tsv_columns)
    pairs, counts = read_tsv_pairs(read_bytes(path), path, columns)
    if tutorial:
        kept = [
            (src, tgt)
            for _, src, tgt, _, _ in tutorial_pairs(
                pairs,
                reverse=tutorial_reverse(cfg.src_lang, cfg.tgt_lang),
                apply_filter=cfg.filter,
                max_length=max_length,
                prefixes=tuple(cfg.prefixes),
            )
        ]
    else:
        kept = pairs
    counts = dict(
        lines=counts["lines"],
        kept=len(kept),
        **{k: counts[k] for k in ("skipped_undecodable", "skipped_empty", "skipped_no_tab")},
        skipped_filter=len(pairs) - len(kept),
    )
    if not kept:
        raise DataError(
            f"No usable sentence pairs in {path} ({summary(counts)}): the "
            "tutorial filter kept none. Expected the tutorial's English<TAB>French "
            "lines, as the run was trained on."
        )
    return [s for s, _ in kept], [t for _, t in kept], counts
