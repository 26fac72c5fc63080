"""Registries that construct: a new attention, decoder or encoder is its module plus one registry
line (config validation and `build_model` name none of them), the registered classes carry
their own size rules, and a config is validated once, where it enters: a run saved by another
version (a data field since dropped, no `model.encoder`) still loads for evaluation."""

from __future__ import annotations

import json
import shutil

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxattn import config as config_lib
from jaxattn import search
from jaxattn.errors import ConfigError
from jaxattn.inference.eval_input import load_pairs
from jaxattn.inference.translator import Translator
from jaxattn.model import attention, decoders, encoders
from jaxattn.model.attention_core import Attention, masked_softmax
from jaxattn.model.rnn import valid_mask
from jaxattn.model.seq2seq import build_model
from jaxattn.rundir.layout import CONFIG_FILE

SRC_V, TGT_V, BOS, EOS = 13, 11, 0, 1
B, S, T = 3, 6, 5
LENGTHS = np.array([6, 3, 1], np.int32)


# ------------------------------------------------- three throwaway modules, one line each
class CosineAttention(Attention):
    """weights = softmax(sharpness * cos(q, k_s)): compares q with k directly (same size)."""

    sharpness: float = 1.0
    same_size = True  # a ClassVar on the base

    @classmethod
    def config_fields(cls, c, query_dim):
        return {"sharpness": float(c.attention_window)}  # any config field will do

    def attention_weights(self, query, keys, mask, *, step, cache):
        q = query / (jnp.linalg.norm(query, axis=-1, keepdims=True) + 1e-6)  # [B, D]
        k = keys / (jnp.linalg.norm(keys, axis=-1, keepdims=True) + 1e-6)  # [B, S, D]
        return masked_softmax(self.sharpness * jnp.einsum("bd,bsd->bs", q, k), mask)  # [B, S]


class EmbeddingQueryDecoder(decoders.Decoder):
    """Attends with the previous token's embedding (query [B, E]); the RNN reads [emb; ctx]."""

    @classmethod
    def query_size(cls, c):
        return c.embed_dim

    def _features(self, memory, state, emb, t, *, train=False):
        query = emb.astype(memory.keys.dtype)
        context, weights = self.attention(
            query, memory.keys, mask=memory.mask, step=t, cache=memory.cache
        )  # [B, D_enc], [B, S]
        rnn, h = self._run_rnn(state.rnn, jnp.concatenate([query, context], axis=-1), train)
        return state.replace(rnn=rnn), h, weights


class BagEncoder(nn.Module):
    """Embeddings as keys (zero on padding); the final state is their tanh'd mean."""

    vocab_size: int
    hidden: int

    @classmethod
    def from_config(cls, c, vocab_size):
        return cls(vocab_size=vocab_size, hidden=c.hidden)

    @property
    def output_dim(self):
        return self.hidden

    @nn.compact
    def __call__(self, src, lengths=None, *, train=False):
        x = nn.Embed(self.vocab_size, self.hidden)(src)  # [B, S, H]
        if lengths is None:
            lengths = jnp.full(src.shape[:1], src.shape[1])
        x = jnp.where(valid_mask(lengths, src.shape[1])[..., None], x, 0.0)
        mean = x.sum(axis=1) / jnp.maximum(lengths, 1)[:, None]  # [B, H]
        return x, ((jnp.tanh(mean),),)


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(attention.ATTENTIONS, "cosine", (CosineAttention, {}))
    monkeypatch.setitem(decoders.DECODERS, "embedding_query", EmbeddingQueryDecoder)
    monkeypatch.setitem(encoders.ENCODERS, "bag", BagEncoder)


def _config(**model):
    config = config_lib.default_config()
    config.model.update(dict(hidden=8, embed_dim=8, attention_window=3, dropout=0.0))
    config.model.update(model)
    return config


NEW = dict(encoder="bag", decoder="embedding_query", attention="cosine")


def test_new_attention_decoder_and_encoder_are_one_line_each(registered):
    config = _config(**NEW)
    config_lib.validate(config)
    model = build_model(config.model, SRC_V, TGT_V, bos_id=BOS)
    assert type(model.encoder) is BagEncoder and type(model.decoder) is EmbeddingQueryDecoder
    assert type(model.decoder.attention) is CosineAttention
    assert model.decoder.attention.sharpness == 3.0  # read by the class, from the config
    rng = np.random.default_rng(0)
    src = jnp.asarray(rng.integers(2, SRC_V, (B, S)), jnp.int32)
    tgt = jnp.asarray(rng.integers(2, TGT_V, (B, T)), jnp.int32)
    src_len = jnp.asarray(LENGTHS)
    variables = model.init(jax.random.key(0), src, src_len, tgt)
    assert set(variables["params"]["encoder"]) == {"Embed_0"}

    logits, weights = model.apply(variables, src, src_len, tgt)  # teacher forced
    assert logits.shape == (B, T, TGT_V) and weights.shape == (B, T, S)
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)
    assert not np.asarray(weights)[1, :, 3:].any() and not np.asarray(weights)[2, :, 1:].any()

    # Greedy search through the new modules = the free-running loop's argmax, to each end.
    result = search.decode(model, variables, src, src_len, eos_id=EOS, max_len=T).top()
    free_logits, free_weights = model.apply(variables, src, src_len, max_len=T)
    argmax = np.asarray(free_logits.argmax(-1))
    for b, n in enumerate(np.asarray(result.lengths)):
        assert n >= 1
        np.testing.assert_array_equal(np.asarray(result.tokens)[b, :n], argmax[b, :n])
        np.testing.assert_allclose(result.weights[b, :n], free_weights[b, :n], atol=1e-5)


def test_the_registered_classes_carry_the_size_rules(registered):
    # The new decoder's query is the embedding: it must be as wide as the keys for cosine.
    with pytest.raises(ConfigError, match="attention='cosine' compares .*sizes must match"):
        config_lib.validate(_config(**NEW, embed_dim=6))
    config_lib.validate(_config(**{**NEW, "decoder": "bahdanau"}, embed_dim=6))  # query: hidden
    # The encoder's output size: a bidirectional RNN encoder doubles it, the bag does not.
    with pytest.raises(ConfigError, match=r"state \(8\) with encoder outputs \(16\)"):
        config_lib.validate(_config(**{**NEW, "encoder": "rnn"}, bidirectional=True))
    config_lib.validate(_config(**NEW, bidirectional=True))
    with pytest.raises(ValueError, match="sizes must match"):
        build_model(_config(**NEW, embed_dim=6).model, SRC_V, TGT_V, BOS)
    # Query-free attentions are registered for make_attention, not for decoders.
    assert "pooling" in attention.ATTENTIONS and "pooling" not in attention.decoder_attentions()
    assert "cosine" in attention.decoder_attentions()


def test_unregistered_names_are_config_errors():
    for field, value in [("encoder", "bag"), ("decoder", "embedding_query"), ("attention", "x")]:
        with pytest.raises(ConfigError, match=f"config.model.{field}='{value}' is not one of"):
            config_lib.validate(_config(**{field: value}))
    with pytest.raises(ValueError, match="Unknown encoder 'bag'; choose one of"):
        build_model(_config(encoder="bag").model, SRC_V, TGT_V, BOS)


def test_decoder_legacy_query_is_embedding_and_hidden():
    c = _config(decoder="legacy", attention="general", embed_dim=6).model
    assert decoders.DECODERS["legacy"].query_size(c) == 14
    assert build_model(c, SRC_V, TGT_V, BOS).decoder.attention.query_dim == 14


# ------------------------------------------------------- a run saved by another version
def test_run_saved_by_another_version_loads_for_evaluation(tiny_run, tmp_path):
    """A data field a later version dropped, and no model.encoder (older than the field): the
    saved config is checked once as it loads, and the data code does not check it again."""
    workdir = tmp_path / "run"
    shutil.copytree(tiny_run.workdir, workdir)
    path = workdir / CONFIG_FILE
    saved = json.loads(path.read_text())
    assert saved["model"].pop("encoder") == "rnn"
    saved["data"]["from_another_version"] = 1
    path.write_text(json.dumps(saved))

    translator = Translator.from_workdir(str(workdir))
    assert translator.config.model.encoder == "rnn"
    assert translator.config.data.from_another_version == 1
    sources, references, _ = load_pairs(translator, split="test")
    assert len(sources) == len(references) == 100
    assert translator.evaluate(sources, references)["bleu"] > 90
