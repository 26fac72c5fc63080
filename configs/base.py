"""The PyTorch tutorial, mirrored: eng-fra, French -> English, GRU 128, Bahdanau attention.

Everything as the tutorial (normalization, filter: < 10 words and English prefixes, dropout
0.1, batch 32, Adam 1e-3, 80 epochs, teacher forcing always), with its faults fixed: a real
PAD id, masked loss and attention, an encoder that never reads padding, and a held-out split
(90/5/5, by source sentence). configs/tutorial_faithful.py turns the faults back on.

    python scripts/train.py --config configs/base.py --workdir runs/base \
        --config.data.path=../shared/data/eng-fra/eng-fra.txt
"""

from jaxattn.config import default_config


def get_config():
    config = default_config()
    d = config.data
    d.name = "tutorial"  # the tutorial's eng-fra.txt (data.path: a file, directory or data.zip)
    d.src_lang, d.tgt_lang = "fra", "eng"
    d.max_length = 10  # MAX_LENGTH: both sides under 10 words
    d.pad_to = 10  # the tutorial's fixed-length batches (EOS included)
    m = config.model
    m.cell, m.hidden, m.embed_dim = "gru", 128, 128
    m.decoder, m.attention = "bahdanau", "additive"
    m.dropout = 0.1
    t = config.train
    t.batch_size, t.learning_rate, t.num_epochs = 32, 1e-3, 80
    t.eval_every = t.checkpoint_every = 2000
    config.eval.max_decode_len = 10  # the tutorial decodes MAX_LENGTH steps
    return config
