"""Multi30k de -> en (task 1, test_2016_flickr), tuned for quality: bidirectional GRU 512,
embeddings 256, Bahdanau attention, dropout 0.3, Adam with warmup + cosine decay, label
smoothing, cased word tokens detokenized for sacreBLEU.

    python scripts/train.py --config configs/multi30k.py --workdir runs/multi30k \
        --config.data.path=../shared/data/multi30k

Measured (2-core CPU, quiet, 57 min): best checkpoint by validation (step 3,000, valid 34.45),
test_2016_flickr sacreBLEU 36.20 greedy, 38.49 beam 5. Batches are padded to multiples of 4
and sorted by length in pools of 100 (20% of the target positions are padding, 21 compiled
shapes an epoch); with multiples of 8 and pools of 20 (37% padding, 7 shapes) an earlier
version scored 35.71 and 38.16 (valid 34.66) in 91 minutes. docs/benchmarks.md, "Against
JoeyNMT", has the speed measurements.
"""

import os
import runpy

_base = runpy.run_path(os.path.join(os.path.dirname(__file__), "base.py"))


def get_config():
    config = _base["get_config"]()
    d = config.data
    d.name = "parallel"  # a folder of {split}.de / {split}.en files
    d.src_lang, d.tgt_lang = "de", "en"
    d.splits.train, d.splits.validation, d.splits.test = "train", "val", "test_2016_flickr"
    d.tokenizer = "word"
    d.max_length = 40  # training pairs longer than this are dropped
    d.pad_to, d.pad_multiple = 0, 4  # 21 (S, T) shapes an epoch, each compiled once
    d.vocab_min_freq = 2
    d.bucket_pool = 100  # 100 batches' pairs sorted by length, cut, then shuffled
    m = config.model
    m.cell, m.bidirectional, m.bridge = "gru", True, "dense"
    m.embed_dim, m.hidden = 256, 512
    m.decoder, m.attention, m.attention_bias = "bahdanau", "additive", False
    m.dropout = 0.3
    t = config.train
    t.batch_size, t.num_epochs = 128, 15
    t.learning_rate, t.lr_schedule, t.warmup_steps = 1e-3, "warmup_cosine", 500
    t.grad_clip, t.label_smoothing = 1.0, 0.1
    t.eval_every = t.checkpoint_every = 1000
    config.eval.max_decode_len = 60
    config.eval.batch_size = 256
    return config
