"""eng-fra (fra -> eng) on subwords: configs/engfra_tuned.py with one joint SentencePiece BPE
model (4000 pieces shared by French and English, trained on the training split only and saved
in the workdir) instead of words, so a held-out word is spelt in known pieces, not <unk>. The
pairs are the tutorial's (its filter counts words); output is detokenized plain text.

    python scripts/train.py --config configs/engfra_subwords.py \
        --workdir runs/engfra_subwords --config.data.path=../shared/data/eng-fra/eng-fra.txt
"""

import os
import runpy

_words = runpy.run_path(os.path.join(os.path.dirname(__file__), "engfra_tuned.py"))


def get_config():
    config = _words["get_config"]()
    d = config.data
    d.tokenizer = "sentencepiece"
    d.sp_model_type, d.sp_vocab_size, d.sp_joint = "bpe", 4000, True
    d.sp_byte_fallback = True  # an unseen character is spelt in bytes, never <unk>
    d.vocab_min_freq = 1  # the vocabulary is the model's pieces
    d.pad_to = 0  # batches padded to their longest (in pieces) rounded up to 8
    config.eval.max_decode_len = 32
    return config
