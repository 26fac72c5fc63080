"""jaxattn.data (pipeline, batching): evaluation sentences longer than training allowed are
cut to the training limit with their EOS kept (lengths, ids and the EOS position checked row by
row)."""

from __future__ import annotations

import numpy as np

from jaxattn import data as data_lib
from jaxattn.config import default_data_config
from jaxattn.data.batching import encode


def test_eval_sentences_cut_to_the_training_limit_keeping_eos():
    """With max_length 9, a long test target keeps its first 8 ids and then EOS (9 positions);
    shorter ones are untouched. Guards against a cut that drops EOS or overshoots the limit."""
    c = default_data_config()
    c.name, c.synthetic_task, c.synthetic_sizes = "synthetic", "copy", (300, 20, 20)
    c.prefetch, c.synthetic_min_len, c.synthetic_max_len, c.max_length = 0, 1, 12, 9
    data = data_lib.build(c)
    eos = data.tgt_vocab.eos_id
    refs = data.references("test")
    rows = [
        (b["tgt"][i], int(b["tgt_len"][i]), b["src"][i], int(b["src_len"][i]))
        for b in data.eval_batches("test", 8)
        for i in range(len(b["tgt_len"]))
    ]
    assert len(rows) == len(refs) == 20
    cut = 0
    for (tgt, tgt_len, src, src_len), ref in zip(rows, refs, strict=True):
        full = encode(data.tgt_tokenizer, data.tgt_vocab, ref)  # uncut
        want = full if len(full) <= 9 else full[:8] + [eos]
        cut += len(full) > 9
        assert tgt[:tgt_len].tolist() == want
        assert src_len <= 9 and src[src_len - 1] == data.src_vocab.eos_id
    assert cut > 0  # some test sentences were long enough to be cut
    assert np.all([t[1] <= 9 for t in rows])
