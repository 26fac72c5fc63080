"""jaxattn.inference.predict: the one prediction path of validation and `Translator` (batch
plan, search call, ids to text), and that validation translates as the Translator does."""

from __future__ import annotations

import functools
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxattn import data as data_lib
from jaxattn import search
from jaxattn.config import default_model_config
from jaxattn.data.vocab import SPECIALS, Vocab
from jaxattn.inference import predict
from jaxattn.inference.predict import Batch
from jaxattn.inference.translator import Translator
from jaxattn.model.seq2seq import build_model
from jaxattn.training import loop as train_lib

V = 9
VOCAB = Vocab(list(SPECIALS) + [f"w{i}" for i in range(V - 4)])  # pad 0, bos 1, eos 2, unk 3


def test_length_batches_sort_by_length_and_pad_rows_to_powers_of_two():
    lengths = [5, 2, 9, 3, 7]
    assert predict.length_batches(lengths, 2) == [([1, 3], 2), ([0, 4], 2), ([2], 1)]
    assert predict.length_batches(lengths, 8) == [([1, 3, 0, 4, 2], 8)]
    assert predict.length_batches(lengths, 3) == [([1, 3, 0], 3), ([4, 2], 2)]
    assert predict.round_up(9, 8) == 16 and predict.round_up(16, 8) == 16


def test_plan_skips_eos_only_rows_and_pads_as_told():
    lengths = [5, 1, 9, 3]  # row 1 holds EOS alone: nothing to decode
    batches = predict.plan(lengths, 2, lambda n: predict.round_up(n, 4), lambda w: 2 * w)
    assert batches == [Batch([3, 0], 2, 8, 16), Batch([2], 1, 12, 24)]
    b = Batch([3, 0], 4, 8, 16)
    assert b.order == [3, 0, 0, 0]  # rows past the sentences repeat the last
    rows = [[4, 5, 6, 7, 2], [2], [4] * 8 + [2], [6, 7, 2]]
    src, src_len = b.source(rows, pad_id=0)  # [4, 8], [4]
    assert src.shape == (4, 8) and src_len.tolist() == [3, 5, 5, 5]
    assert src[0].tolist() == [6, 7, 2, 0, 0, 0, 0, 0] and src[3].tolist() == rows[0] + [0] * 3


def test_source_width_pads_as_training_and_caps_at_location_positions(synthetic_config):
    config = synthetic_config({"data.pad_multiple": 8})
    width = predict.source_width(config)
    assert [width(n) for n in (1, 8, 9, 17)] == [8, 8, 16, 24]
    config.model.attention, config.model.attention_max_length = "location", 12
    width = predict.source_width(config)
    assert [width(n) for n in (8, 9, 17)] == [8, 12, 12]


def test_target_text_cuts_specials_and_takes_given_words():
    tok = SimpleNamespace(detokenize=" ".join)
    assert predict.target_text(tok, VOCAB, [4, 1, 5, 0, 3]) == "w0 w1 <unk>"
    assert predict.target_text(tok, VOCAB, [4, 3], ["w0", "chat"]) == "w0 chat"
    r = SimpleNamespace(
        tokens=np.array([[[4, 5, 2, 0]], [[6, 7, 8, 4]]]),
        lengths=np.array([[3], [4]]),
        finished=np.array([[True], [False]]),
    )
    assert predict.hypothesis_ids(r, 0) == ([4, 5], True)  # EOS cut
    assert predict.hypothesis_ids(r, 1) == ([6, 7, 8, 4], False)  # max_len reached


def test_greedy_texts_in_input_order_through_search_decode(random_init):
    """Validation's translations: one text per source in input order ('' for EOS alone), each
    the text of `search.decode`'s greedy hypothesis of its row in the length-sorted batch."""
    c = default_model_config()
    c.hidden = c.embed_dim = 8
    model = build_model(c, V, V, bos_id=VOCAB.bos_id)
    sources = [[4, 5, 6, 2], [2], [6, 7, 8, 5, 4, 2], [5, 2]]
    src, src_len = Batch([3, 0, 2], 4, 8, 5).source(sources, VOCAB.pad_id)  # the sorted batch
    variables = random_init(  # seed 2: three different outputs
        model, jnp.asarray(src), jnp.asarray(src_len), jnp.asarray(src), seed=2, scale=1.0
    )
    tok = SimpleNamespace(detokenize=" ".join)
    texts = predict.greedy_texts(
        model,
        variables,
        sources,
        tgt_vocab=VOCAB,
        tgt_tokenizer=tok,
        src_pad_id=VOCAB.pad_id,
        batch_size=4,
        padded_len=lambda n: 8,
        max_len=5,
    )
    r = search.greedy_search(
        model, variables, src, src_len, eos_id=VOCAB.eos_id, bos_id=VOCAB.bos_id, max_len=5
    )
    tokens = np.asarray(r.tokens)  # [4, 5]
    want = {i: " ".join(VOCAB.decode(tokens[row])) for row, i in enumerate([3, 0, 2])}
    assert texts == [want[0], "", want[2], want[3]]
    assert len(set(texts)) > 2, texts  # the rows are told apart


def test_validation_translates_as_the_translator(tiny_run):
    """At the half-trained checkpoint (step 150: mistakes to tell apart), validation's greedy
    texts are `Translator.translate`'s, and its BLEU `Translator.evaluate`'s, exactly."""
    tr = Translator.from_workdir(tiny_run.workdir, 150)
    config, split = tr.config, tr.config.eval.split
    data = data_lib.build(config.data, vocab_dir=tiny_run.workdir, seed=config.seed)
    sources, references = data.sources(split), data.references(split)
    params = tr.variables["params"]
    max_len = config.eval.max_decode_len
    texts = predict.greedy_texts(
        tr.model,
        {"params": params},
        predict.source_rows(data.eval_batches(split, config.eval.batch_size)),
        tgt_vocab=data.tgt_vocab,
        tgt_tokenizer=data.tgt_tokenizer,
        src_pad_id=data.src_vocab.pad_id,
        batch_size=config.eval.batch_size,
        padded_len=predict.source_width(config),
        max_len=max_len,
    )
    assert texts == [t.text for t in tr.translate(sources, max_len=max_len)]
    replicated = NamedSharding(train_lib.make_mesh(), P())
    p_eval_step = jax.jit(
        functools.partial(
            train_lib.eval_step,
            model=tr.model,
            loss_over_padding=config.train.loss_over_padding,
        ),
        out_shardings=replicated,
    )
    valid = train_lib.validation_scores(
        tr.model,
        params,
        data,
        split,
        config=config,
        p_eval_step=p_eval_step,
        replicated=replicated,
    )
    evaluated = tr.evaluate(sources, references, max_len=max_len)
    assert valid["bleu"] == evaluated["bleu"] and valid["chrf"] == evaluated["chrf"]
    assert 5 < valid["bleu"] < 99, valid  # a checkpoint that still makes mistakes
