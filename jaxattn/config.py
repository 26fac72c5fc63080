"""The run config: every option with its default and comment (sections data, model, train,
eval) and the one `validate(config)`. A saved run's config.json is read back over the defaults
by `jaxattn.rundir.run.load_config`, so runs from older versions still load.

`validate` checks every field (type, range, allowed names) before a run writes anything and
raises `ConfigError` naming the field; allowed names come from the registries that define
them (`_registries`), so adding an option is one edit, in its own module.

Lengths, one name each (config fields keep their saved names):
  data.max_length      the corpus filter: pairs with fewer tokens a side (EOS not counted)
  eval.max_decode_len  decoding steps by default; `max_len` in search and inference calls
  src_len / tgt_len    [B] int arrays of sentence lengths (EOS counted), never an int
  padded_len           an int: the padded width S (or T) of a batch
"""

from __future__ import annotations

import json

import ml_collections

from jaxattn.checks import (
    boolean,
    by_function,
    data_conflict,
    fractions,
    integer,
    ints,
    nonempty_string,
    one_of,
    real,
    string,
    strings,
)
from jaxattn.errors import ConfigError


def default_data_config() -> ml_collections.ConfigDict:
    """Every data option with its default ('auto' values depend on `name`)."""
    # Here, not at the top: importing jaxattn.data loads the data pipeline (grain), which the
    # model's users (`import jaxattn`, `default_model_config`) do not need.
    from jaxattn.data.readers import TUTORIAL_SHA256, TUTORIAL_URL
    from jaxattn.data.text import ENG_PREFIXES

    c = ml_collections.ConfigDict()
    c.name = "tutorial"  # tutorial | parallel | tfds | synthetic (jaxattn.data.DATASETS)
    # --- where the text comes from
    # tutorial: eng-fra.txt, a folder holding it, or data.zip; '' = download `url`.
    # parallel: a folder of {prefix}.{src_lang} + {prefix}.{tgt_lang} (or {prefix}.tsv)
    #           files, one per split in `splits`; or one TSV file, split by fractions.
    c.path = ""
    c.url = TUTORIAL_URL
    c.sha256 = TUTORIAL_SHA256  # of eng-fra.txt in the download; '' = unchecked
    c.download = True  # allow network downloads (tutorial zip, TFDS catalog)
    c.data_dir = ""  # TFDS's prepared datasets; '' = $TFDS_DATA_DIR or ~/tensorflow_datasets
    c.tfds_name = ""  # name='tfds': a catalog dataset, e.g. 'wmt14_translate/fr-en'
    # The training split's token ids, prepared once (jaxattn.data.prepared); '' =
    # $JAXATTN_CACHE or ~/.cache/jaxattn.
    c.cache_dir = ""
    # Languages: the tutorial's fra/eng (fra->eng as in the tutorial; eng->fra also works);
    # file suffixes for 'parallel' (multi30k: de, en); feature names for 'tfds'.
    c.src_lang = "fra"
    c.tgt_lang = "eng"
    # Split -> file prefix ('parallel' folder) or TFDS split, e.g. 'train[:10%]'; '' = none.
    c.splits = ml_collections.ConfigDict(
        {"train": "train", "validation": "validation", "test": "test"}
    )
    c.tsv_columns = (0, 1)  # TSV (parallel): source column, target column
    # Corpora without given splits (tutorial, one TSV file): (train, validation, test)
    # shares, by hashed normalized text; (1, 0, 0) trains on all, as the tutorial does.
    c.split_fractions = (0.9, 0.05, 0.05)
    c.split_seed = 0
    # --- filter
    c.filter = True  # tutorial: keep only pairs that pass the tutorial's filter
    c.prefixes = ENG_PREFIXES  # tutorial filter: English side starts with one; () = any
    # Keep pairs with fewer than max_length tokens a side (each fits max_length with EOS):
    # tutorial: its filter (all splits, in words); others: training pairs, in tokens.
    # -1 = auto: 10 for the tutorial, no limit otherwise; 0 = no limit.
    c.max_length = -1
    # --- text -> tokens
    c.normalize = "auto"  # auto | tutorial | none  (auto: tutorial for the tutorial corpus)
    c.lowercase = False
    # auto | space | word | char | sentencepiece. auto: space for the tutorial (after its
    # normalization) and copy/reverse/sort, char for dates, word for cased corpora.
    c.tokenizer = "auto"
    # sentencepiece (subwords; models trained on the training split only, saved in the
    # workdir): unigram | bpe (jaxattn.data.text.SP_MODEL_TYPES).
    c.sp_model_type = "unigram"
    c.sp_vocab_size = 8000  # pieces per model (a soft limit); the vocabulary is the pieces
    c.sp_joint = False  # one model and vocabulary for both sides (joint_spm.model)
    # Characters with no piece become UTF-8 byte pieces instead of <unk> (256 of the pieces).
    c.sp_byte_fallback = False
    c.sp_character_coverage = 1.0  # share of the training characters that get a piece
    # --- vocabulary (built from the training split)
    c.vocab_min_freq = 1
    c.vocab_max_size = 0  # 0 = no cap (specials count)
    c.vocab_order = "first"  # first (appearance, as the tutorial) | freq
    # Vocabularies and SentencePiece models from the first this many training pairs; 0 = all.
    c.vocab_sample = 0
    c.tutorial_ids = False  # True: SOS=0, EOS=1, pad=0, no PAD/UNK (the tutorial's ids)
    # --- batches
    c.pad_to = 0  # > 0: every batch padded to this length (the tutorial: 10); longer
    # training pairs are dropped, longer evaluation sentences cut (EOS kept).
    c.pad_multiple = 8  # else pad to the batch's longest, rounded up to this multiple
    c.bucket_boundaries = ()  # e.g. (8, 16, 32): pad up to the next boundary first
    c.bucket_pool = 0  # > 1: sort pools of this many batches by length (less padding)
    # (token batches, train.batch_tokens: 0/1 = sort the whole epoch, the least padding)
    # > 0: batches made ahead in a background thread (close() the iterator when done). 0 (the
    # default) is enough under JAX's asynchronous dispatch: the next batch is made while the
    # device runs the step.
    c.prefetch = 0
    # --- synthetic tasks (name='synthetic')
    c.synthetic_task = "copy"  # copy | reverse | sort | dates
    c.synthetic_sizes = (10000, 500, 500)  # train, validation, test
    c.synthetic_min_len = 3  # symbols a sentence, at least
    c.synthetic_max_len = 8  # symbols a sentence, at most
    c.synthetic_num_symbols = 20
    return c


def default_model_config() -> ml_collections.ConfigDict:
    """Every model option, with the tutorial's values.

    Returns:
        An `ml_collections.ConfigDict` (cell, embed_dim, hidden, layers, decoder, attention,
        masking switches, dtype, ...), the input of `jaxattn.model.seq2seq.build_model`.
    """
    c = ml_collections.ConfigDict()
    c.cell = "gru"  # gru | lstm
    c.embed_dim = 128
    c.hidden = 128
    c.encoder_layers = 1
    c.decoder_layers = 1
    c.bidirectional = False
    c.dropout = 0.1  # on embeddings (and Luong's attentional vector)
    c.rnn_dropout = 0.0  # between stacked RNN layers
    c.encoder = "rnn"  # jaxattn.model.encoders.ENCODERS (saved runs without it: 'rnn')
    c.decoder = "bahdanau"  # bahdanau | luong | plain | legacy (jaxattn.model.decoders.DECODERS)
    c.attention = "additive"  # jaxattn.model.attention.ATTENTIONS (not 'pooling')
    c.attention_bias = True  # the tutorial's Linear layers have biases
    c.attention_window = 5  # local attention half-width D
    # location attention's Linear(., max_length); 0 = auto: the widest source a training batch
    # pads to (EOS included), set when training starts and saved in the run's config.json
    c.attention_max_length = 10
    c.kernel = "gaussian"  # kernel attention
    c.kernel_width = 1.0  # kernel attention: the width (the Gaussian's sigma), > 0
    c.learn_kernel_width = False  # kernel attention: learn the width (from kernel_width)
    c.input_feeding = True  # Luong decoder
    c.bridge = "copy"  # copy | dense | zero
    c.mask_attention = True  # False: the tutorial's unmasked attention
    c.encoder_lengths = True  # False: the tutorial's encoder reads padding
    c.dtype = "float32"  # float32 | bfloat16 (compute dtype; params stay float32)
    c.unroll = 1  # scan unroll factor
    # --- the Transformer (encoder='transformer' and/or decoder='transformer'): its width is
    # `hidden` (embeddings included; embed_dim is the RNN parts'), its depth encoder_layers /
    # decoder_layers, `dropout` on embeddings and every sublayer's output.
    c.heads = 4  # attention heads (must divide hidden)
    c.ff_dim = 1024  # feed-forward inner width
    c.attention_dropout = 0.0  # on the attention weights
    c.norm_first = False  # pre-LN (x + f(LN(x))); False: post-LN (the paper, d2l)
    c.positional = "sinusoidal"  # sinusoidal (d2l 11.6) | learned
    c.max_positions = 256  # learned positional table: longest source and decoding steps
    c.scan_layers = False  # run each stack under nn.scan (one compiled layer; same results)
    # The decoder's output layer = its embedding table (transposed, no bias); RNN decoders need
    # hidden == embed_dim. With share_embeddings too: all three tables are one.
    c.tie_embeddings = False
    # The encoder's embedding table is the decoder's (one parameter): needs one vocabulary
    # (data.tokenizer='sentencepiece' with data.sp_joint) and one width.
    c.share_embeddings = False
    c.alignment_layer = -1  # the cross-attention a step reports as its alignment: this layer
    c.alignment_head = -1  # ... and head; -1 = the mean of the layer's heads
    return c


def default_train_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.batch_size = 32  # global batch, split over all devices and hosts
    # Gradient accumulation: each update's batch runs as this many micro-batches in turn
    # (summed gradients, one update; ~1/accumulate of the activation memory); 1 = off.
    c.accumulate = 1
    # > 0: batches of as many length-bucketed pairs as fit this many padded target positions
    # (rows x T), rows a multiple of the devices; batch_size is then unused. 0 = batch_size.
    c.batch_tokens = 0
    c.num_epochs = 80
    c.num_train_steps = -1  # > 0 overrides num_epochs
    c.optimizer = "adam"  # adam | adamw | sgd
    c.learning_rate = 1e-3
    c.lr_schedule = "constant"  # constant | cosine | warmup_cosine | rsqrt | plateau
    c.warmup_steps = 0
    c.plateau_factor = 0.5  # plateau: the rate is multiplied by this after plateau_patience
    c.plateau_patience = 2  # plateau: ... validations in a row without a better best_metric
    c.min_learning_rate = 0.0  # plateau: the rate is never lowered below this
    c.b1 = 0.9
    c.b2 = 0.999
    c.weight_decay = 0.0  # adamw only
    c.grad_clip = 0.0  # global-norm clipping; 0 = none (the tutorial)
    c.label_smoothing = 0.0
    c.teacher_forcing_ratio = 1.0  # 1.0 = always (the current tutorial); a schedule's start
    # Scheduled sampling (Bengio et al. 2015): constant | linear | exponential |
    # inverse_sigmoid (jaxattn.training.optim.TEACHER_FORCING_SCHEDULES); the decaying ones go from
    # teacher_forcing_ratio at step 0 towards teacher_forcing_min.
    c.teacher_forcing_schedule = "constant"
    c.teacher_forcing_min = 0.0  # the ratio a decaying schedule ends at (<= the start)
    c.teacher_forcing_decay_steps = 10000  # linear: steps from the start to the minimum
    c.teacher_forcing_decay_rate = 0.9999  # exponential: factor a step, in (0, 1]
    c.teacher_forcing_sigmoid_k = 1000.0  # inverse_sigmoid: k >= 1; half way at k * ln(k)
    c.loss_over_padding = False  # True: the tutorial's loss over all positions
    # Teacher-forced steps: the output layer and loss run on the real target positions only,
    # in chunks of this many rows (padding skipped; float rounding differs); 0 = all [B, T, V].
    c.loss_chunk = 512
    # Exponential moving average of the weights, in (0, 1), e.g. 0.999; 0 = off. After each
    # update ema = d * ema + (1 - d) * params; saved with each checkpoint (resumes exactly),
    # selected by --checkpoint ema, validated beside the weights (ema_loss, ema_bleu: twice
    # the validation time; 'best' stays by the weights' BLEU).
    c.ema_decay = 0.0
    c.ema_start = 0  # the EMA copies the params for this many updates, then averages
    # The divergence guard (jaxattn.training.loop.DivergenceGuard) stops a run, without saving,
    # when a
    # loss or gradient is NaN/inf, a loss is over this factor x log(target vocabulary size)
    # (far worse than a uniform guess), or over both this factor x the median of the recent
    # per-step losses and log(V); 0 = only NaN/inf.
    c.divergence_factor = 10.0
    # From this step on (and from train.warmup_steps), a median recent loss still no better
    # than a uniform guess, log(V), stops the run as not learning. (The slowest shipped config,
    # legacy_location.py, one sentence a step with SGD, is 0.3 below log V at step 200 and 2
    # below it at step 1000 on eng-fra.)
    c.divergence_warmup = 1000
    c.log_every = 100
    c.eval_every = 1000
    c.checkpoint_every = 1000
    c.keep_checkpoints = 2  # newest kept (plus the best by validation best_metric)
    # The validation metric that ranks the best checkpoint and drives early stopping and the
    # plateau schedule: bleu | chrf (higher is better) | loss (lower is better).
    c.best_metric = "bleu"
    c.early_stopping_patience = 0  # end after this many validations without a better one; 0 = off
    c.early_stopping_min_delta = 0.0  # a smaller gain of best_metric is no improvement
    c.progress_bar = True
    return c


def default_eval_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.split = "validation"  # validated during training
    c.batch_size = 128
    # > 0: validation and decoding batches of as many length-sorted sentences as fit this many
    # padded positions (target for the loss, source for decoding); eval.batch_size is unused.
    c.batch_tokens = 0
    c.max_decode_len = 20  # decoding steps (the tutorial: MAX_LENGTH); more for long input
    c.bleu = True  # greedy sacreBLEU during validation (what best_metric bleu|chrf ranks by)
    c.beam_size = 1  # for scripts/evaluate.py
    c.length_penalty = 0.0  # alpha of ((5 + len) / 6) ** alpha
    return c


def default_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.data = default_data_config()
    config.model = default_model_config()
    config.train = default_train_config()
    config.eval = default_eval_config()
    return config


# ---------------------------------------------------------------------------- validation
def _registries() -> dict:
    """Allowed names, from the modules that define them (one edit adds an option)."""
    from jaxattn.data.corpus import DATASETS
    from jaxattn.data.synthetic import TASKS
    from jaxattn.data.text import NORMALIZATIONS, SP_MODEL_TYPES, TOKENIZERS
    from jaxattn.data.vocab import ORDERS
    from jaxattn.metrics import BEST_METRICS
    from jaxattn.model import attention
    from jaxattn.model.decoders import BRIDGES, DECODERS
    from jaxattn.model.encoders import ENCODERS
    from jaxattn.model.rnn import CELLS
    from jaxattn.model.transformer import POSITIONAL
    from jaxattn.training.optim import LR_SCHEDULES, OPTIMIZERS, TEACHER_FORCING_SCHEDULES

    return dict(
        attentions=attention.decoder_attentions(),
        kernels=attention.kernel_name,
        datasets=DATASETS,
        tasks=TASKS,
        tokenizers=("auto",) + TOKENIZERS,
        orders=ORDERS,
        sp_model_types=SP_MODEL_TYPES,
        normalizations=("auto",) + NORMALIZATIONS,
        bridges=BRIDGES,
        positionals=POSITIONAL,
        encoders=tuple(ENCODERS),
        decoders=tuple(DECODERS),
        cells=tuple(CELLS),
        optimizers=tuple(OPTIMIZERS),
        schedules=tuple(LR_SCHEDULES),
        best_metrics=tuple(BEST_METRICS),
        teacher_forcing_schedules=tuple(TEACHER_FORCING_SCHEDULES),
    )


def _conflicts() -> dict:
    """section -> its rule between fields: returns None, a message, or (field, why)."""
    from jaxattn.model.seq2seq import config_conflict  # asks the classes the config names

    return {"data": data_conflict, "model": config_conflict}


def rules() -> dict[str, dict]:
    """section -> {field: check}; a check returns None or what is wrong with a value."""
    r = _registries()
    return {
        "": {"seed": integer(0, 2**63 - 1)},
        "data": {
            "name": one_of(*r["datasets"]),
            "path": string,
            "url": string,
            "sha256": string,
            "download": boolean,
            "data_dir": string,
            "tfds_name": string,
            "cache_dir": string,
            "src_lang": nonempty_string,
            "tgt_lang": nonempty_string,
            "tsv_columns": ints(2),
            "split_fractions": fractions,
            "split_seed": integer(0),
            "filter": boolean,
            "prefixes": strings,
            "max_length": integer(-1),
            "normalize": one_of(*r["normalizations"]),
            "lowercase": boolean,
            "tokenizer": one_of(*r["tokenizers"]),
            "sp_vocab_size": integer(8),
            "sp_model_type": one_of(*r["sp_model_types"]),
            "sp_joint": boolean,
            "sp_byte_fallback": boolean,
            "sp_character_coverage": real(0, 1, lo_open=True),
            "vocab_min_freq": integer(1),
            "vocab_max_size": integer(0),
            "vocab_order": one_of(*r["orders"]),
            "vocab_sample": integer(0),
            "tutorial_ids": boolean,
            "pad_to": integer(0),
            "pad_multiple": integer(1),
            "bucket_boundaries": ints(None, 1, increasing=True),
            "bucket_pool": integer(0),
            "prefetch": integer(0),
            "synthetic_task": one_of(*r["tasks"]),
            "synthetic_sizes": ints(3),
            "synthetic_min_len": integer(1),
            "synthetic_max_len": integer(1),
            "synthetic_num_symbols": integer(1),
        },
        "model": {
            "cell": one_of(*r["cells"]),
            "embed_dim": integer(1),
            "hidden": integer(1),
            "encoder_layers": integer(1),
            "decoder_layers": integer(1),
            "bidirectional": boolean,
            "dropout": real(0, 1, hi_open=True),
            "rnn_dropout": real(0, 1, hi_open=True),
            "encoder": one_of(*r["encoders"]),
            "decoder": one_of(*r["decoders"]),
            "attention": one_of(*r["attentions"]),
            "attention_bias": boolean,
            "attention_window": integer(1),
            "attention_max_length": integer(0),
            "kernel": by_function(r["kernels"]),
            "kernel_width": real(0, lo_open=True),
            "learn_kernel_width": boolean,
            "input_feeding": boolean,
            "bridge": one_of(*r["bridges"]),
            "mask_attention": boolean,
            "encoder_lengths": boolean,
            "dtype": one_of("float32", "bfloat16"),
            "unroll": integer(1),
            "heads": integer(1),
            "ff_dim": integer(1),
            "attention_dropout": real(0, 1, hi_open=True),
            "norm_first": boolean,
            "positional": one_of(*r["positionals"]),
            "max_positions": integer(1),
            "scan_layers": boolean,
            "tie_embeddings": boolean,
            "share_embeddings": boolean,
            "alignment_layer": integer(-1),
            "alignment_head": integer(-1),
        },
        "train": {
            "batch_size": integer(1),
            "accumulate": integer(1),
            "batch_tokens": integer(0),
            "num_epochs": integer(0),
            "num_train_steps": integer(-1),
            "optimizer": one_of(*r["optimizers"]),
            "learning_rate": real(0, lo_open=True),
            "lr_schedule": one_of(*r["schedules"]),
            "warmup_steps": integer(0),
            "plateau_factor": real(0, 1, lo_open=True, hi_open=True),
            "plateau_patience": integer(1),
            "min_learning_rate": real(0),
            "b1": real(0, 1, hi_open=True),
            "b2": real(0, 1, hi_open=True),
            "weight_decay": real(0),
            "grad_clip": real(0),
            "label_smoothing": real(0, 1, hi_open=True),
            "teacher_forcing_ratio": real(0, 1),
            "loss_over_padding": boolean,
            "loss_chunk": integer(0),
            "ema_decay": real(0, 1, hi_open=True),
            "ema_start": integer(0),
            "teacher_forcing_schedule": one_of(*r["teacher_forcing_schedules"]),
            "teacher_forcing_min": real(0, 1),
            "teacher_forcing_decay_steps": integer(1),
            "teacher_forcing_decay_rate": real(0, 1, lo_open=True),
            "teacher_forcing_sigmoid_k": real(1),
            "divergence_factor": real(0),
            "divergence_warmup": integer(0),
            "log_every": integer(1),
            "eval_every": integer(1),
            "checkpoint_every": integer(1),
            "keep_checkpoints": integer(1),
            "best_metric": one_of(*r["best_metrics"]),
            "early_stopping_patience": integer(0),
            "early_stopping_min_delta": real(0),
            "progress_bar": boolean,
        },
        "eval": {
            "split": nonempty_string,
            "batch_size": integer(1),
            "batch_tokens": integer(0),
            "max_decode_len": integer(1),
            "bleu": boolean,
            "beam_size": integer(1),
            "length_penalty": real(0),
        },
    }


def _fail(section: str, key: str, value, why: str):
    name = f"config.{section}.{key}" if section else f"config.{key}"
    raise ConfigError(f"{name}={value!r} {why}; fix it in the config file or with --{name}=...")


def validate_section(section: str, cfg, *, allow_unknown: bool = False) -> None:
    """Checks one section ('data', 'model', 'train', 'eval'; '' = top level) field by field:
    unknown fields (unless allow_unknown), types and ranges. Raises ConfigError naming the
    first bad field."""
    checks = rules()[section]
    for key in cfg.keys():
        if section == "data" and key == "splits":
            if not isinstance(cfg.splits, (dict, ml_collections.ConfigDict)):
                _fail("data", "splits", cfg.splits, "must map split names to file prefixes")
            for split, value in cfg.splits.items():
                if not isinstance(value, str):
                    _fail("data", f"splits.{split}", value, "must be a string")
            continue
        if key not in checks and (allow_unknown or (section == "" and key in rules())):
            continue
        if key not in checks:
            _fail(section, key, cfg[key], "is not a known option (misspelt?)")
        why = checks[key](cfg[key])
        if why:
            _fail(section, key, cfg[key], why)
    conflict = _conflicts().get(section)
    problem = conflict(cfg) if conflict else None
    if isinstance(problem, tuple):
        _fail(section, problem[0], cfg[problem[0]], problem[1])
    if problem:
        raise ConfigError(problem)


def validate(config: ml_collections.ConfigDict, *, device_count: int | None = None) -> None:
    """Checks the whole config before any work: every field of every section (see `rules`),
    then the fields that depend on each other. Raises ConfigError naming the field."""
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(
            f"config must be an ml_collections.ConfigDict (from "
            f"jaxattn.config.default_config()), not {type(config).__name__}."
        )
    for section in rules():
        if section and section not in config:
            raise ConfigError(
                f"config has no '{section}' section; start from jaxattn.config.default_config()."
            )
        if section and not isinstance(config[section], ml_collections.ConfigDict):
            raise ConfigError(
                f"config.{section} must be a section (a ConfigDict), not "
                f"{type(config[section]).__name__}."
            )
        validate_section(section, config[section] if section else config)
    tc = config.train
    if tc.num_train_steps <= 0 and tc.num_epochs <= 0:
        raise ConfigError("Set config.train.num_epochs or config.train.num_train_steps > 0.")
    if tc.num_train_steps == 0:
        _fail("train", "num_train_steps", 0, "must be > 0, or -1 to train num_epochs")
    if (
        tc.teacher_forcing_schedule != "constant"
        and tc.teacher_forcing_min > tc.teacher_forcing_ratio
    ):
        _fail(
            "train",
            "teacher_forcing_min",
            tc.teacher_forcing_min,
            f"must be <= teacher_forcing_ratio ({tc.teacher_forcing_ratio}), the start of "
            f"the {tc.teacher_forcing_schedule!r} schedule",
        )
    from jaxattn.training.optim import warmup_conflict

    if tc.num_train_steps > 0:  # with num_epochs: checked once the data is read
        why = warmup_conflict(tc.lr_schedule, tc.warmup_steps, tc.num_train_steps)
        if why:
            _fail("train", "warmup_steps", tc.warmup_steps, why)
    dc = config.data
    if config.model.share_embeddings and not (dc.tokenizer == "sentencepiece" and dc.sp_joint):
        _fail(
            "model",
            "share_embeddings",
            True,
            "needs one vocabulary for both sides: set data.tokenizer='sentencepiece' and "
            "data.sp_joint=True, or share_embeddings=False",
        )
    # Corpora the config itself splits: a split with no share is empty before it is read.
    shares = {"tutorial": "split_fractions", "synthetic": "synthetic_sizes"}.get(dc.name)
    if shares:
        sizes = dict(zip(("train", "validation", "test"), dc[shares], strict=True))
        if not sizes.get(config.eval.split):
            _fail(
                "eval",
                "split",
                config.eval.split,
                f"is empty: data.{shares}={tuple(dc[shares])} gives (train, validation, test) "
                f"of the {dc.name} corpus; give the split a share or validate on another",
            )
    if tc.ema_start and not tc.ema_decay:
        _fail("train", "ema_start", tc.ema_start, "needs train.ema_decay > 0 (EMA is off)")
    if tc.batch_tokens:
        _check_batch_tokens(config, device_count or 1)
    elif device_count and tc.batch_size % device_count:
        raise ConfigError(
            f"config.train.batch_size={tc.batch_size} must divide evenly over the "
            f"{device_count} devices; use a multiple of {device_count}."
        )
    if not tc.batch_tokens and tc.batch_size % (tc.accumulate * (device_count or 1)):
        per = f" x {device_count} devices" if device_count else ""
        _fail(
            "train",
            "batch_size",
            tc.batch_size,
            f"must divide into {tc.accumulate} micro-batches (train.accumulate){per}: use a "
            f"multiple of {tc.accumulate * (device_count or 1)} or another train.accumulate",
        )
    _check_validation_driven(config)
    from jaxattn.model.seq2seq import target_positions

    steps = target_positions(config.model)
    if steps and config.eval.max_decode_len > steps:
        _fail(
            "eval",
            "max_decode_len",
            config.eval.max_decode_len,
            f"must be <= model.max_positions ({steps}): the decoder's learned positional "
            "table has no later positions (raise max_positions or use positional='sinusoidal')",
        )
    if config.eval.beam_size > 1 and config.eval.max_decode_len < 1:
        _fail("eval", "max_decode_len", config.eval.max_decode_len, "must be >= 1")


def _check_validation_driven(config) -> None:
    """Early stopping and the plateau schedule act on validations of train.best_metric: it
    must be computed (bleu/chrf need eval.bleu) and the run must validate before its end."""
    tc = config.train
    users = ["early_stopping_patience"] if tc.early_stopping_patience > 0 else []
    users += ["lr_schedule"] if tc.lr_schedule == "plateau" else []
    if not users:
        return
    if tc.best_metric != "loss" and not config.eval.bleu:
        _fail(
            "train",
            "best_metric",
            tc.best_metric,
            f"needs eval.bleu=True (train.{users[0]} acts on it); set --config.eval.bleu=True "
            "or --config.train.best_metric=loss",
        )
    if 0 < tc.num_train_steps < tc.eval_every:
        _fail(
            "train",
            "eval_every",
            tc.eval_every,
            f"must be <= num_train_steps ({tc.num_train_steps}) for train.{users[0]}, which "
            "acts on validations: lower eval_every",
        )
    if tc.lr_schedule == "plateau" and tc.min_learning_rate > tc.learning_rate:
        _fail(
            "train",
            "min_learning_rate",
            tc.min_learning_rate,
            f"must be <= learning_rate ({tc.learning_rate}), where the plateau schedule starts",
        )


def _check_batch_tokens(config, device_count: int) -> None:
    """train.batch_tokens > 0 against the fields it depends on (the data's own limit, the
    widest pair, is `Data.check_token_budget`'s)."""
    tc, pad_to = config.train, config.data.pad_to
    if tc.loss_over_padding:
        _fail(
            "train",
            "loss_over_padding",
            True,
            "would train token batches on their empty filler rows (train.batch_tokens > 0); "
            "set it to False or train.batch_tokens=0",
        )
    rows = device_count * tc.accumulate  # the fewest rows of a batch: one per micro-batch
    if pad_to and tc.batch_tokens < pad_to * rows:
        _fail(
            "train",
            "batch_tokens",
            tc.batch_tokens,
            f"is less than one row of data.pad_to={pad_to} positions on each of the "
            f"{device_count} device(s) x {tc.accumulate} micro-batches (train.accumulate); "
            f"use at least {pad_to * rows}",
        )


# ----------------------------------------------------------------------- saved configs
def to_json(config: ml_collections.ConfigDict) -> dict:
    """The config as plain JSON data (what config.json holds)."""
    return json.loads(config.to_json_best_effort())
